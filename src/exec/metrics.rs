//! The cloud side of a campaign: CloudWatch pulls per run window (a failure is recorded, never
//! fatal), the settle re-pull (CloudWatch publishes a minute's datapoints 1–3 minutes after it
//! ends, so a window pulled right after its run is pulled again once it has settled), and the
//! infra sampler beside each load run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::background::Background;
use crate::error::Result;
use crate::provider::{ClientMetricsSink, MetricsSource, Scaler};
use crate::results::{self, unix_now, ResultsDir, RunSummary};

/// How long publishing a run's client figures may take before the campaign moves on.
const PUBLISH_BUDGET: Duration = Duration::from_secs(60);

/// Publishes a finished run's client figures (`publish`), bounded by [`PUBLISH_BUDGET`]; what
/// was sent, or why not, lands in the run's `published.json`. A failure is said once and never
/// stops the campaign.
pub async fn publish_run(sink: &dyn ClientMetricsSink, run_dir: &Path, run_id: &str) {
    let outcome = match tokio::time::timeout(PUBLISH_BUDGET, sink.publish(run_id, run_dir)).await {
        Ok(Ok(p)) => json!(p),
        Ok(Err(e)) => json!({"error": e.to_string()}),
        Err(_) => json!({"error": format!("no answer within {} s", PUBLISH_BUDGET.as_secs())}),
    };
    if let Some(e) = outcome["error"].as_str() {
        crate::terminal::say(&format!(
            "warning: the client's figures of {run_id} were not published: {e}"
        ));
    }
    if let Err(e) = results::write_json(&run_dir.join("published.json"), &outcome) {
        tracing::warn!("writing published.json of {run_id}: {e}");
    }
}

/// Seconds of context pulled on each side of a run.
pub const WINDOW_PAD_S: f64 = 60.0;

/// The CloudWatch window of a run: its span with a minute of context on each side.
pub fn window(run: &RunSummary) -> (f64, f64) {
    (
        run.started_unix - WINDOW_PAD_S,
        run.started_unix + run.duration_s + WINDOW_PAD_S,
    )
}

/// Pulls a run's window into its `cloudwatch.json`; on failure the file records the error
/// (so the report says what is missing) and the reason is returned.
pub async fn pull_run(
    source: &dyn MetricsSource,
    dir: &ResultsDir,
    run_id: &str,
) -> std::result::Result<(), String> {
    let run_dir = dir.run_dir(run_id);
    let summary: RunSummary =
        results::read_json(&run_dir.join("summary.json")).map_err(|e| e.to_string())?;
    pull_window(source, &run_dir, window(&summary)).await
}

async fn pull_window(
    source: &dyn MetricsSource,
    run_dir: &Path,
    (from, to): (f64, f64),
) -> std::result::Result<(), String> {
    let attempted = unix_now();
    match source.pull(from, to, run_dir).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let why = e.to_string();
            tracing::warn!("cloud metrics for {}: {why}", run_dir.display());
            let doc = json!({
                "window": {"from": from, "to": to},
                "pulled_unix": attempted,
                "error": why,
                "series": [],
                "logs": [],
            });
            let _ = results::write_json(&run_dir.join("cloudwatch.json"), &doc);
            Err(why)
        }
    }
}

/// When a run ended (the settle wait counts from there; the minute of context after it is
/// covered by any realistic settle time).
fn run_end(run: &RunSummary) -> f64 {
    run.started_unix + run.duration_s
}

/// True when a run's metrics should be pulled (again): missing, failed, or pulled before the
/// window had settled.
fn needs_pull(doc: Option<&Value>, window_end: f64, settle: Duration) -> bool {
    let Some(doc) = doc else { return true };
    if doc.get("error").is_some_and(|e| !e.is_null()) {
        return true;
    }
    let pulled = doc["pulled_unix"].as_f64().unwrap_or(0.0);
    pulled < window_end + settle.as_secs_f64()
}

/// Pulls again every window that needs it (all of them with `force`), after waiting until the
/// latest has settled. Returns what is still missing.
pub async fn settle(
    source: &dyn MetricsSource,
    dir: &ResultsDir,
    settle: Duration,
    force: bool,
) -> Result<Vec<String>> {
    let mut due: Vec<(RunSummary, PathBuf)> = Vec::new();
    for run in dir.summaries()? {
        let run_dir = dir.run_dir(&run.run_id);
        let doc: Option<Value> = results::read_json(&run_dir.join("cloudwatch.json")).ok();
        if force || needs_pull(doc.as_ref(), run_end(&run), settle) {
            due.push((run, run_dir));
        }
    }
    let Some(latest) = due.iter().map(|(r, _)| run_end(r)).reduce(f64::max) else {
        return Ok(Vec::new());
    };
    let wait = latest + settle.as_secs_f64() - unix_now();
    if wait > 0.0 {
        crate::terminal::say(&format!(
            "waiting {wait:.0} s for CloudWatch to publish the last window"
        ));
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
    let mut missing = Vec::new();
    for (run, run_dir) in &due {
        if let Err(why) = pull_window(source, run_dir, window(run)).await {
            missing.push(format!("{}: {why}", run.run_id));
        }
    }
    Ok(missing)
}

/// Samples the infrastructure (instances, lifecycle, target health) into `infra.jsonl` while a
/// run goes; each row is stamped with the moment its calls began.
pub struct InfraSampler(Background);

impl InfraSampler {
    /// Starts sampling every `every`.
    pub fn start(scaler: Arc<dyn Scaler>, every: Duration, path: PathBuf) -> InfraSampler {
        InfraSampler(Background::spawn(move |stop| async move {
            sample(scaler, every, &path, stop).await
        }))
    }

    /// Stops it; a call in flight is abandoned after two seconds.
    pub async fn stop(self) {
        self.0.stop().await
    }
}

async fn sample(scaler: Arc<dyn Scaler>, every: Duration, path: &Path, stop: CancellationToken) {
    let mut file = match results::AppendFile::create(path) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("infra sampler: {e}");
            return;
        }
    };
    loop {
        let asked = unix_now();
        let sampled = tokio::select! {
            r = scaler.sample() => r,
            _ = stop.cancelled() => break,
        };
        match sampled {
            Ok(mut v) => {
                v["unix"] = json!(asked);
                let _ = file.write(&format!("{v}\n"));
                let _ = file.flush();
            }
            Err(e) => tracing::warn!("infra sample: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => break,
        }
    }
    let _ = file.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_pulled_again_until_it_has_settled() {
        let settle = Duration::from_secs(180);
        let end = 1_000.0;
        assert!(needs_pull(None, end, settle), "never pulled");
        let early = json!({"pulled_unix": end + 10.0});
        assert!(needs_pull(Some(&early), end, settle), "pulled too early");
        let late = json!({"pulled_unix": end + 200.0});
        assert!(!needs_pull(Some(&late), end, settle), "settled");
        let failed = json!({"pulled_unix": end + 200.0, "error": "Throttling"});
        assert!(needs_pull(Some(&failed), end, settle), "failed");
    }
}
