//! `trialrunner run TRIAL`: run a campaign, then build its report and check its gate.

use std::path::{Path, PathBuf};

use super::{confirm, runtime, Global};
use crate::error::{exit, Error, Result};
use crate::exec::journal::UndoJournal;
use crate::exec::{self, signals, Interrupts};
use crate::results::ResultsDir;
use crate::trial::model::ClearPolicy;
use crate::{report, setup, trial};

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The trial file.
    pub trial: PathBuf,
    /// Environment file instead of the one the trial names.
    #[arg(long)]
    pub env: Option<PathBuf>,
    /// Results directory (default results/<trial>-<UTC time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the campaign in this results directory: completed runs are kept.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Do not ask before clearing stores.
    #[arg(long)]
    pub yes: bool,
    /// Gate: compare with this baseline results directory after the run.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Thresholds for the gate (YAML list); the trial's own `thresholds` are checked too.
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
    /// Write the gate's result as JUnit XML.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Append one line per run to this history file (default: history.jsonl beside the results).
    #[arg(long)]
    pub history: Option<PathBuf>,
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    writeln!(f, "{line}")
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The regression gate after a run: the trial's thresholds and `--thresholds`, against the
/// baseline when given (relative bounds need one). Exit 1 when one breaks.
fn gate(t: &trial::Trial, dir: &Path, args: &Args) -> Result<i32> {
    let mut list: Vec<report::thresholds::Threshold> = t
        .spec
        .thresholds
        .iter()
        .filter_map(|s| report::thresholds::Threshold::parse(s).ok())
        .collect();
    if let Some(f) = &args.thresholds {
        list.extend(report::compare::read_thresholds(f)?);
    }
    if list.is_empty() && args.baseline.is_none() {
        return Ok(exit::OK);
    }
    let c = match &args.baseline {
        Some(b) => report::compare::compare(b, dir, &list)?,
        None => report::compare::check_absolute(dir, &list)?,
    };
    print!("{}", c.table());
    if let Some(j) = &args.junit {
        crate::results::write_atomic(j, c.junit().as_bytes())?;
    }
    Ok(if c.passed() {
        exit::OK
    } else {
        exit::CHECKS_FAILED
    })
}

/// Runs the campaign, then the report and the gate.
pub fn run(args: Args, global: &Global) -> Result<i32> {
    let t = trial::load_trial(&args.trial, args.env.as_deref())?;
    let p = trial::plan(&t);
    let interrupts = Interrupts::default();
    let outcome = runtime().block_on(async {
        // Inputs and secrets are checked, and the account guard passed, before anything changes.
        let providers = setup::providers_for(&t, &global.setup()).await?;
        if t.spec.stores.clear != ClearPolicy::Never {
            confirm(
                &format!(
                    "trial `{}` will clear the stores of environment `{}`",
                    t.spec.name, t.env.spec.name
                ),
                args.yes,
            )?;
        }
        // A crashed trial's journal must be replayed first, unless this resumes that trial.
        if let Some(j) = UndoJournal::load_pending(&t.env.spec.name)? {
            let same = args
                .resume
                .as_deref()
                .and_then(|r| r.canonicalize().ok())
                .is_some_and(|r| j.state().results_dir.as_deref() == Some(r.as_path()));
            if !same {
                return Err(Error::Usage(format!(
                    "a previous trial ({}) left auto-scaling groups of `{}` changed; run `trialrunner infra restore --env {}` first, or --resume it",
                    j.state().results_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
                    t.env.spec.name,
                    t.env.file.display()
                )));
            }
        }
        let dir = match (&args.resume, &args.out) {
            (Some(r), _) => ResultsDir::open(r)?,
            (None, Some(o)) => ResultsDir::create(o)?,
            (None, None) => {
                let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
                ResultsDir::create(&PathBuf::from("results").join(format!("{}-{stamp}", t.spec.name)))?
            }
        };
        signals::say(&format!("results: {}", dir.root.display()));
        signals::watch(&interrupts);
        exec::execute(&t, &p, &providers, &dir, &interrupts).await?;
        Ok::<_, Error>(dir)
    });
    let dir = match outcome {
        Ok(dir) => dir,
        Err(Error::Interrupted) => return Ok(interrupts.exit_code()),
        Err(e) => return Err(e),
    };
    let history = args.history.clone().unwrap_or_else(|| {
        dir.root
            .parent()
            .unwrap_or(Path::new("."))
            .join("history.jsonl")
    });
    let line = report::compare::history_line(&dir.root)?;
    append_line(&history, &line)?;
    let html = report::build(&dir.root)?;
    signals::say(&format!("report: {}", html.display()));
    gate(&t, &dir.root, &args)
}
