//! `trialrunner run TRIAL`: run a campaign, then build its report and check its gate.

use std::path::{Path, PathBuf};

use super::{confirm, runtime, Global};
use crate::error::{exit, Error, Result};
use crate::exec::{self, signals, Interrupts};
use crate::results::ResultsDir;
use crate::trial::model::ClearPolicy;
use crate::{report, setup, trial};

pub use super::run_args::Args;

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

/// The regression gate after a run: the trial's thresholds and `--thresholds`, against
/// `--baseline`, else the latest results of the trial's `compare-with` (relative bounds need
/// one). Prints the k6-style ✓/✗ list; exit 1 when one breaks (with the list, for the webhook).
fn gate(t: &trial::Trial, dir: &ResultsDir, args: &Args) -> Result<(i32, String)> {
    let mut list: Vec<crate::trial::thresholds::Threshold> = t
        .spec
        .thresholds
        .iter()
        .filter_map(|s| crate::trial::thresholds::Threshold::parse(s).ok())
        .collect();
    if let Some(f) = &args.thresholds {
        list.extend(report::compare::read_thresholds(f)?);
    }
    let baseline = args.baseline.clone().or_else(|| {
        let data = report::data::ReportData::read(&dir.root).ok()?;
        report::compare_with_baseline(&data).map(|(_, p)| p)
    });
    if list.is_empty() && args.baseline.is_none() {
        crate::outln!("\nthresholds: none set (the trial's `thresholds`, or --thresholds FILE)");
        return Ok((exit::OK, String::new()));
    }
    let c = match report::gate(&dir.root, &list, baseline.as_deref()) {
        Ok(c) => c,
        Err(e @ Error::Usage(_)) => {
            // The run's results stand; the gate could not judge them, so it fails.
            crate::outln!("\nthresholds\n✗ {e}");
            return Ok((exit::CHECKS_FAILED, format!("✗ {e}")));
        }
        Err(e) => return Err(e),
    };
    if let Some(b) = &baseline {
        crate::outln!("\nagainst {}", b.display());
        crate::out!("{}", c.table());
    } else {
        crate::outln!("\nthresholds");
        crate::out!("{}", report::compare::checks_text(&c.checks));
    }
    if let Some(j) = &args.junit {
        crate::results::write_atomic(j, c.junit().as_bytes())?;
    }
    let list = report::compare::checks_text(&c.checks);
    Ok(if c.passed() {
        (exit::OK, list)
    } else {
        (exit::CHECKS_FAILED, list)
    })
}

/// The results directory: a new one (refused when it exists and holds anything), or the one
/// being resumed. Paths are made absolute, so journals and messages name them from anywhere.
fn results_dir(args: &Args, t: &trial::Trial) -> Result<ResultsDir> {
    match (&args.resume, &args.out) {
        (Some(r), _) => ResultsDir::open(r),
        (None, Some(o)) => ResultsDir::create(o),
        (None, None) => {
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
            ResultsDir::create(&PathBuf::from("results").join(format!("{}-{stamp}", t.spec.name)))
        }
    }
}

/// Runs the campaign (one per variant, when the trial has variants), then the report and the
/// gate.
pub fn run(args: Args, global: &Global) -> Result<i32> {
    let t = trial::load_trial(&args.trial, args.env.as_deref())?;
    if !t.variants.is_empty() {
        return super::variants::run(&t, &args, global, campaign);
    }
    campaign(t, args, global)
}

/// One campaign of `t`, then its report and gate.
fn campaign(t: trial::Trial, args: Args, global: &Global) -> Result<i32> {
    let p = trial::plan(&t);
    let live = args.live.addr()?;
    let interrupts = Interrupts::default();
    let rt = runtime();
    let ran = rt.block_on(async {
        signals::watch(&interrupts);
        // Bound before anything changes: an address in use is bad input.
        let dashboard = super::live::start(live).await?;
        // Inputs and secrets are checked, and the account guard passed, before anything changes;
        // a stop request ends the wait at once (an AWS endpoint may not be answering).
        let options = global.setup();
        let providers = tokio::select! {
            p = setup::providers_for(&t, &options) => p?,
            _ = interrupts.soft.cancelled() => return Err(Error::Interrupted),
        };
        if t.spec.stores.clear != ClearPolicy::Never {
            confirm(
                &format!(
                    "trial `{}` will clear the stores of environment `{}`",
                    t.spec.name, t.env.spec.name
                ),
                args.yes,
            )?;
        }
        // Another trial's pending journal over these groups is refused before anything is made.
        if let Some(target) = &providers.journal_target {
            crate::exec::journal::refuse_others(target, args.resume.as_deref())?;
        }
        let dir = results_dir(&args, &t)?;
        crate::terminal::say(&format!("results: {}", dir.root.display()));
        if let Some(d) = &dashboard {
            d.follow(crate::dashboard::Watched::new(&t.spec.name, &dir, &p));
        }
        let takeover = if args.force {
            exec::Takeover::Forced
        } else {
            exec::Takeover::WhenGone
        };
        let outcome = exec::execute_with(&t, &p, &providers, &dir, &interrupts, takeover).await;
        Ok::<_, Error>((dir, outcome, dashboard))
    });
    let (dir, outcome, dashboard) = match ran {
        Ok(ran) => ran,
        Err(Error::Interrupted) => return Ok(interrupts.exit_code()),
        Err(e) => return Err(e),
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            // Partial results still get their report, unless a second stop request said not to.
            let html = crate::campaign::report_unless_skipped(&dir, &interrupts);
            if let Some(html) = &html {
                crate::terminal::say(&format!("report: {}", html.display()));
            }
            rt.block_on(super::live::finish(dashboard, html.into_iter().collect()));
            return match e {
                Error::Interrupted => Ok(interrupts.exit_code()),
                e => Err(e),
            };
        }
    };
    let history = args.history.clone().unwrap_or_else(|| {
        dir.root
            .parent()
            .unwrap_or(Path::new("."))
            .join("history.jsonl")
    });
    let line = report::compare::history_line(&dir.root)?;
    append_line(&history, &line)?;
    crate::out!(
        "{}",
        report::tables::terminal_summary(&report::data::ReportData::read(&dir.root)?)
    );
    // The gate first: the report shows what it decided.
    let (code, checks) = gate(&t, &dir, &args)?;
    let html = report::build(&dir.root)?;
    crate::terminal::say(&format!("report: {}", html.display()));
    if code == exit::CHECKS_FAILED {
        let link = std::env::var(crate::notify::REPORT_URL_VAR)
            .unwrap_or_else(|_| html.display().to_string());
        let body = crate::notify::message(&t.spec.name, &t.env.spec.name, &checks, &link);
        rt.block_on(crate::notify::post_if_configured(&body));
    }
    rt.block_on(super::live::finish(dashboard, vec![html]));
    if code == exit::OK && !outcome.partial.is_empty() {
        crate::terminal::say(&format!(
            "results are partial (exit {}): {}",
            exit::PARTIAL,
            outcome.partial.join("; ")
        ));
        return Ok(exit::PARTIAL);
    }
    Ok(code)
}
