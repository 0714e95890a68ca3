//! A campaign from start to report, as `run`, `demo` and the rehearsal run one: the executor's
//! steps, then the report, built once whatever way the steps ended (a second stop request skips
//! it). The executor knows nothing of reports; this is where the two meet.

use std::path::{Path, PathBuf};

use serde_json::json;

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

/// One variant's campaign as it ended (see [`finish_variants`]).
pub struct VariantRun<'t> {
    /// The variant.
    pub variant: &'t crate::trial::checked::Variant,
    /// Its results folder.
    pub dir: PathBuf,
    /// Its campaign's exit code.
    pub exit: i32,
}

/// After a trial's variants ran into `base`: `variants.json` (each variant's name, folder,
/// exit code, the `infra` it ran under and how its groups scaled), then every variant compared
/// with the first per load step (`compare-<first>-<variant>.html`, the `compare` command's own
/// page, and the table on stdout). Returns the comparison pages written.
pub fn finish_variants(base: &Path, t: &Trial, ran: &[VariantRun]) -> Result<Vec<PathBuf>> {
    write_variants_index(base, t, ran)?;
    if ran.iter().any(|r| r.exit >= 128) {
        // A stop request ended the sequence: nothing to compare.
        return Ok(Vec::new());
    }
    compare_with_first(base, ran)
}

/// `variants.json`: each variant's name, folder, exit code, the `infra` it ran under and how its
/// groups scaled (written after each variant too, so a resumed sequence knows which finished).
pub fn write_variants_index(base: &Path, t: &Trial, ran: &[VariantRun]) -> Result<()> {
    let scaling = |dir: &Path| {
        crate::report::data::ReportData::read(dir)
            .map(|d| crate::report::autoscaling::scaling(&d))
            .unwrap_or_default()
    };
    let doc = json!({
        "trial": t.spec.name,
        "variants": ran.iter().map(|r| json!({
            "name": r.variant.name, "dir": r.dir, "exit": r.exit, "infra": r.variant.infra,
            "scaling": scaling(&r.dir),
        })).collect::<Vec<_>>(),
    });
    crate::results::write_json(&base.join("variants.json"), &doc)
}

/// Every variant against the first, per load step: the table on stdout and the page beside them.
fn compare_with_first(base: &Path, ran: &[VariantRun]) -> Result<Vec<PathBuf>> {
    let Some((first, rest)) = ran.split_first() else {
        return Ok(Vec::new());
    };
    let mut pages = Vec::new();
    for r in rest {
        let (a, b) = (&first.variant.name, &r.variant.name);
        let c = match crate::report::compare::compare(&first.dir, &r.dir, &[]) {
            Ok(c) => c,
            Err(e) => {
                crate::terminal::say(&format!("warning: comparing {b} with {a}: {e}"));
                continue;
            }
        };
        crate::outln!("\nvariant {b} against {a}");
        crate::out!("{}", c.table());
        let page = crate::report::comparison_page(&first.dir, &r.dir, &c)?;
        for f in &page.verdict.findings {
            crate::outln!("{f}");
        }
        let file = base.join(format!("compare-{a}-{b}.html"));
        crate::results::write_atomic(&file, page.html()?.as_bytes())?;
        crate::terminal::say(&format!("comparison: {}", file.display()));
        pages.push(file);
    }
    Ok(pages)
}
