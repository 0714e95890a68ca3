//! `trialrunner run TRIAL`: run a campaign, then build its report and check its gate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{confirm, runtime, Global};
use crate::aws::results::{bucket_for, cache_dir, location_of, url_of, S3Results};
use crate::error::{exit, Error, Result};
use crate::exec::{self, signals, Interrupts};
use crate::provider::ResultsMirror;
use crate::results::ResultsDir;
use crate::trial::model::ClearPolicy;
use crate::trial::s3::S3Location;
use crate::{report, setup, trial};

pub use super::run_args::Args;

/// The last copy of the results to S3 (the report, the gate's checks): false, said loudly, when
/// something is still not there.
async fn last_copy(mirror: Option<&S3Results>, dir: &ResultsDir) -> bool {
    let Some(m) = mirror else {
        return true;
    };
    match m.sync(&dir.root).await {
        Ok(()) => true,
        Err(e) => {
            crate::terminal::say(&format!(
                "error: the results are not all on {}: {e}; the local copy is {} (exit {})",
                m.location(),
                dir.root.display(),
                exit::PARTIAL
            ));
            false
        }
    }
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

/// The regression gate after a run: the trial's thresholds and `--thresholds`, against
/// `--baseline`, else the latest results of the trial's `compare-with` (relative bounds need
/// one). Prints the k6-style ✓/✗ list; exit 1 when one breaks (with the list, for the webhook).
fn gate(
    t: &trial::Trial,
    dir: &ResultsDir,
    args: &Args,
    found: Option<PathBuf>,
) -> Result<(i32, String)> {
    let mut list: Vec<crate::trial::thresholds::Threshold> = t
        .spec
        .thresholds
        .iter()
        .filter_map(|s| crate::trial::thresholds::Threshold::parse(s).ok())
        .collect();
    if let Some(f) = &args.thresholds {
        list.extend(report::compare::read_thresholds(f)?);
    }
    let baseline = found.or_else(|| args.baseline.clone()).or_else(|| {
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
pub fn run(mut args: Args, global: &Global) -> Result<i32> {
    let t = trial::load_trial(&args.trial, args.env.as_deref())?;
    // The environment's results root, when `--out` names none.
    if let (None, None, Some(root)) = (&args.out, &args.resume, &t.env.spec.results) {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let name = format!("{}-{stamp}", t.spec.name);
        args.out = Some(PathBuf::from(if root.starts_with("s3://") {
            format!("{}/{name}", root.trim_end_matches('/'))
        } else {
            Path::new(root).join(name).to_string_lossy().into_owned()
        }));
    }
    if !t.variants.is_empty() && s3_results(&args)?.is_some() {
        return Err(Error::Usage(
            "results on S3 for a trial with variants are not built yet: give a local --out".into(),
        ));
    }
    if !t.variants.is_empty() {
        return super::variants::run(&t, &args, global, campaign);
    }
    campaign(t, args, global)
}

/// The S3 location of `--out` or `--resume`, when it is one.
fn s3_results(args: &Args) -> Result<Option<S3Location>> {
    let location = match (&args.resume, &args.out) {
        (Some(r), _) => location_of(r, "--resume")?,
        (None, Some(o)) => location_of(o, "--out")?,
        (None, None) => None,
    };
    match location {
        Some(l) if l.prefix.is_empty() => Err(Error::Usage(format!(
            "{}: name the results' own prefix (s3://{}/nightly/trial-1-…)",
            url_of(&l),
            l.bucket
        ))),
        l => Ok(l),
    }
}

/// Where the history goes: `--history`, else one object per run under `history/` beside
/// results on S3, else `history.jsonl` beside local results.
fn history_place(args: &Args, dir: &ResultsDir, s3: Option<&S3Location>) -> Result<History> {
    if let Some(h) = &args.history {
        return Ok(match location_of(h, "--history")? {
            Some(l) => History::S3(l),
            None => History::File(h.clone()),
        });
    }
    Ok(match s3 {
        Some(l) => {
            let parent = l.prefix.rsplit_once('/').map_or("", |(p, _)| p);
            History::S3(S3Location {
                bucket: l.bucket.clone(),
                prefix: S3Location {
                    bucket: l.bucket.clone(),
                    prefix: parent.to_string(),
                }
                .key("history"),
            })
        }
        None => History::File(
            dir.root
                .parent()
                .unwrap_or(Path::new("."))
                .join("history.jsonl"),
        ),
    })
}

/// A history: a local file of lines, or one object per run on S3.
enum History {
    File(PathBuf),
    S3(S3Location),
}

/// Records the campaign in its history. On S3, also brings the trial's history down beside the
/// local copy (the report's trend chart reads it there) and, for a trial that names
/// `compare-with`, the latest complete campaign of that trial the history holds (the gate's
/// baseline; its local copy returned).
async fn record_history(
    t: &trial::Trial,
    dir: &ResultsDir,
    place: History,
    results_url: Option<String>,
    global: &Global,
) -> Result<Option<PathBuf>> {
    let line = report::compare::history_line(&dir.root)?;
    let bucket = match place {
        History::File(path) => {
            append_line(&path, &line)?;
            return Ok(None);
        }
        History::S3(l) => bucket_for(&t.env.spec, global.aws_endpoint.as_deref(), l).await?,
    };
    let mut line: serde_json::Value = serde_json::from_str(&line).expect("a history line");
    if let Some(url) = results_url {
        line["results"] = serde_json::json!(url);
    }
    let key = crate::aws::history::put(&bucket, &line).await?;
    tracing::info!("history: s3://{}/{key}", bucket.location.bucket);
    let parent = dir.root.parent().unwrap_or(Path::new("."));
    crate::aws::history::bring_down(
        &bucket,
        &t.spec.name,
        &t.env.spec.name,
        &parent.join("history"),
    )
    .await?;
    let Some(other) = &t.spec.compare_with else {
        return Ok(None);
    };
    let by = line["date"].as_str().unwrap_or("~").to_string();
    let Some(url) = crate::aws::history::baseline(&bucket, other, &t.env.spec.name, &by).await?
    else {
        return Ok(None);
    };
    fetch_results(t, &url, global).await.map(Some)
}

/// A results directory named by its location: a local path as it is, an S3 one brought down
/// into its local copy (what the copy lacks).
async fn fetch_results(t: &trial::Trial, place: &str, global: &Global) -> Result<PathBuf> {
    let Some(l) = location_of(Path::new(place), "--baseline")? else {
        return Ok(PathBuf::from(place));
    };
    let local = cache_dir(&l);
    let bucket = bucket_for(&t.env.spec, global.aws_endpoint.as_deref(), l.clone()).await?;
    bucket
        .download_except(&l.prefix, &local, |p| p.exists())
        .await?;
    ResultsDir::open(&local).map(|d| d.root)
}

/// One campaign of `t`, then its report and gate.
fn campaign(t: trial::Trial, args: Args, global: &Global) -> Result<i32> {
    let p = trial::plan(&t);
    let live = args.live.addr()?;
    let s3 = s3_results(&args)?;
    let interrupts = Interrupts::default();
    let rt = runtime();
    let ran = rt.block_on(async {
        signals::watch(&interrupts);
        // Bound before anything changes: an address in use is bad input.
        let dashboard = super::live::start(live).await?;
        // Inputs and secrets are checked, and the account guard passed, before anything changes;
        // a stop request ends the wait at once (an AWS endpoint may not be answering).
        let options = global.setup();
        let mut providers = tokio::select! {
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
        let resuming = match (&s3, &args.resume) {
            (Some(l), Some(_)) => Some(cache_dir(l)),
            (_, r) => r.clone(),
        };
        if let Some(target) = &providers.journal_target {
            crate::exec::journal::refuse_others(target, resuming.as_deref())?;
        }
        let (dir, mirror) = match &s3 {
            Some(l) => {
                let bucket = bucket_for(&t.env.spec, options.aws_endpoint.as_deref(), l.clone());
                let mirror = Arc::new(S3Results::new(bucket.await?));
                let dir = if args.resume.is_some() {
                    mirror.resume().await?
                } else {
                    mirror.create().await?
                };
                crate::terminal::say(&format!(
                    "results: {} (local copy: {})",
                    url_of(l),
                    dir.root.display()
                ));
                providers.results_mirror = Some(mirror.clone());
                (dir, Some(mirror))
            }
            None => {
                let dir = results_dir(&args, &t)?;
                crate::terminal::say(&format!("results: {}", dir.root.display()));
                (dir, None)
            }
        };
        if let Some(d) = &dashboard {
            d.follow(crate::dashboard::Watched::new(&t.spec.name, &dir, &p));
        }
        let takeover = if args.force {
            exec::Takeover::Forced
        } else {
            exec::Takeover::WhenGone
        };
        let outcome = exec::execute_with(&t, &p, &providers, &dir, &interrupts, takeover).await;
        Ok::<_, Error>((dir, outcome, dashboard, mirror))
    });
    let (dir, outcome, dashboard, mirror) = match ran {
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
            rt.block_on(last_copy(mirror.as_deref(), &dir));
            rt.block_on(super::live::finish(dashboard, html.into_iter().collect()));
            return match e {
                Error::Interrupted => Ok(interrupts.exit_code()),
                e => Err(e),
            };
        }
    };
    let place = history_place(&args, &dir, s3.as_ref())?;
    let url = mirror.as_ref().map(|m| m.location());
    // The campaign's results stand whatever becomes of its history: a history that could not
    // be written is said, and the exit code says partial.
    let (from_history, recorded) = match rt.block_on(record_history(&t, &dir, place, url, global)) {
        Ok(found) => (found, true),
        Err(e) => {
            crate::terminal::say(&format!(
                "error: recording the campaign in its history: {e}"
            ));
            (None, false)
        }
    };
    let found = match &args.baseline {
        Some(b) => Some(rt.block_on(fetch_results(&t, &b.to_string_lossy(), global))?),
        None => from_history,
    };
    crate::out!(
        "{}",
        report::tables::terminal_summary(&report::data::ReportData::read(&dir.root)?)
    );
    // The gate first: the report shows what it decided.
    let (code, checks) = gate(&t, &dir, &args, found)?;
    let html = report::build(&dir.root)?;
    crate::terminal::say(&format!("report: {}", html.display()));
    let copied = rt.block_on(last_copy(mirror.as_deref(), &dir));
    if code == exit::CHECKS_FAILED {
        let link = std::env::var(crate::notify::REPORT_URL_VAR)
            .unwrap_or_else(|_| html.display().to_string());
        let body = crate::notify::message(&t.spec.name, &t.env.spec.name, &checks, &link);
        rt.block_on(crate::notify::post_if_configured(&body));
    }
    rt.block_on(super::live::finish(dashboard, vec![html]));
    if code == exit::OK && !(copied && recorded) {
        return Ok(exit::PARTIAL);
    }
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
