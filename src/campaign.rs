//! A campaign from start to report, as `run`, `demo` and the rehearsal run one: the executor's
//! steps, then the report, built once whatever way the steps ended (a second stop request skips
//! it). The executor knows nothing of reports; this is where the two meet.

use std::path::PathBuf;

use crate::error::Result;
use crate::exec::{self, Interrupts, Outcome};
use crate::provider::Providers;
use crate::results::ResultsDir;
use crate::trial::{Plan, Trial};

/// What a campaign left: its outcome (or why it stopped) and its report.
pub struct Finished {
    /// The executor's outcome, or the error that stopped it.
    pub outcome: Result<Outcome>,
    /// The report, when one was built.
    pub report: Option<PathBuf>,
}

/// Runs `plan` into `dir`, then builds the report of what is there (partial results included).
/// A report that cannot be built is a warning: the results stand.
pub async fn execute_and_report(
    trial: &Trial,
    plan: &Plan,
    providers: &Providers,
    dir: &ResultsDir,
    interrupts: &Interrupts,
) -> Finished {
    let outcome = exec::execute(trial, plan, providers, dir, interrupts).await;
    let report = report_unless_skipped(dir, interrupts);
    Finished { outcome, report }
}

/// Builds the report of a results directory, unless a second stop request said to skip all but
/// the restore; a report that cannot be built is a warning (the results stand).
pub fn report_unless_skipped(dir: &ResultsDir, interrupts: &Interrupts) -> Option<PathBuf> {
    if interrupts.hard.is_cancelled() {
        return None;
    }
    match crate::report::build(&dir.root) {
        Ok(html) => Some(html),
        Err(e) => {
            tracing::warn!("building the report of {}: {e}", dir.root.display());
            None
        }
    }
}
