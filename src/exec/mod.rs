//! The step executor: runs a [`Plan`] through the [`Providers`], writing results as it goes.
//!
//! Invariants:
//! * the undo journal is on disk before the first infrastructure change;
//! * infrastructure is restored on every way out (end, error, Ctrl-C);
//! * each run's results are complete on disk when the run ends (a crash loses at most the run in
//!   flight), and `--resume` skips runs whose `summary.json` exists.

pub mod journal;
pub mod signals;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::provider::{Providers, StoreCounts};
pub use crate::results::StoreSnapshot;
use crate::results::{self, ResultsDir, RunSummary};
use crate::trial::{Plan, Step, Trial};
use journal::UndoJournal;

pub use signals::Interrupts;

/// What a campaign did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Runs completed (including resumed ones).
    pub runs: Vec<RunSummary>,
    /// Store counts over time.
    pub stores: Vec<StoreSnapshot>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The manifest: what ran, with what, where, and how it ended.
fn manifest(
    trial: &Trial,
    plan: &Plan,
    status: &str,
    extra: &BTreeMap<String, serde_json::Value>,
) -> serde_json::Value {
    let mut m = json!({
        "tool": {"name": "trialrunner", "version": env!("CARGO_PKG_VERSION")},
        "status": status,
        "trial": {"file": trial.file, "sha256": trial.hash, "spec": trial.spec},
        "environment": {"file": trial.env.file, "sha256": trial.env.hash, "spec": trial.env.spec},
        "release": trial.env.release,
        "plan": {"steps": plan.steps.len(), "load_runs": plan.load_phases().count(), "expected_s": plan.total().as_secs_f64()},
        "generator": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), "host": hostname()},
    });
    for (k, v) in extra {
        m[k] = v.clone();
    }
    m
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

struct Campaign<'a> {
    trial: &'a Trial,
    plan: &'a Plan,
    providers: &'a Providers,
    dir: &'a ResultsDir,
    interrupts: &'a Interrupts,
    journal: UndoJournal,
    outcome: Outcome,
    extra: BTreeMap<String, serde_json::Value>,
    last_run: Option<String>,
}

/// The journal a crashed run of this same results dir left: its originals must be kept (the
/// ASGs are still pinned, so a new snapshot would record the pinned state as "original").
fn resumed_journal(environment: &str, dir: &Path) -> Result<Option<UndoJournal>> {
    Ok(UndoJournal::load_pending(environment)?
        .filter(|j| j.state().results_dir.as_deref() == Some(dir)))
}

/// Runs a plan. `resume` keeps the runs already complete in `dir`.
pub async fn execute(
    trial: &Trial,
    plan: &Plan,
    providers: &Providers,
    dir: &ResultsDir,
    interrupts: &Interrupts,
) -> Result<Outcome> {
    let mut c = Campaign {
        trial,
        plan,
        providers,
        dir,
        interrupts,
        journal: resumed_journal(&trial.env.spec.name, &dir.root)?
            .unwrap_or_else(|| UndoJournal::new(&trial.env.spec.name, Some(&dir.root))),
        outcome: Outcome::default(),
        extra: BTreeMap::new(),
        last_run: None,
    };
    if let Ok(previous) = results::read_json::<Vec<StoreSnapshot>>(&dir.root.join("stores.json")) {
        c.outcome.stores = previous;
    }
    c.extra
        .insert("started_at".into(), json!(chrono::Utc::now().to_rfc3339()));
    results::write_json(
        &dir.root.join("manifest.json"),
        &manifest(trial, plan, "running", &c.extra),
    )?;
    let result = c.steps().await;
    // Restore on every way out, even after a second Ctrl-C.
    let restored = match (&providers.scaler, c.journal.pending()) {
        (Some(scaler), true) => c.journal.restore(scaler.as_ref()).await,
        _ => Ok(()),
    };
    let status = match (&result, &restored) {
        (Ok(()), Ok(())) => "complete",
        (Err(Error::Interrupted), _) => "interrupted",
        _ => "failed",
    };
    c.extra
        .insert("ended_at".into(), json!(chrono::Utc::now().to_rfc3339()));
    if let Err(e) = &result {
        c.extra.insert("error".into(), json!(e.to_string()));
    }
    results::write_json(
        &dir.root.join("manifest.json"),
        &manifest(trial, plan, status, &c.extra),
    )?;
    if result.is_err() && !interrupts.hard.is_cancelled() {
        // Partial results still get a report.
        if let Err(e) = crate::report::build(&dir.root) {
            tracing::warn!("building the report of the partial results: {e}");
        }
    }
    result?;
    restored?;
    Ok(c.outcome)
}

impl Campaign<'_> {
    async fn steps(&mut self) -> Result<()> {
        for planned in &self.plan.steps {
            if self.interrupts.soft.is_cancelled() {
                return Err(Error::Interrupted);
            }
            tracing::info!(step = %planned.step, "step");
            self.step(&planned.step).await?;
        }
        Ok(())
    }

    fn need<'p, T: ?Sized>(p: &'p Option<std::sync::Arc<T>>, what: &str) -> Result<&'p T> {
        p.as_deref().ok_or_else(|| {
            Error::Usage(format!(
                "the environment has no {what} provider for this step"
            ))
        })
    }

    async fn step(&mut self, step: &Step) -> Result<()> {
        let p = self.providers;
        match step {
            Step::SnapshotInfra { services } => {
                let settings = Self::need(&p.scaler, "auto-scaling")?
                    .snapshot(services)
                    .await?;
                self.extra.insert("infra_before".into(), json!(settings));
                self.journal.record(settings)?;
            }
            Step::SetCapacity { service, capacity } => {
                if !self.journal.pending() {
                    return Err(Error::Infra(
                        "refusing to change infrastructure before the undo journal is written"
                            .into(),
                    ));
                }
                Self::need(&p.scaler, "auto-scaling")?
                    .set_capacity(*service, *capacity)
                    .await?;
            }
            Step::WaitReady { services, timeout } => {
                let report = Self::need(&p.scaler, "auto-scaling")?
                    .wait_ready(services, *timeout, &self.interrupts.soft)
                    .await?;
                self.extra.insert("ready".into(), json!(report));
            }
            Step::CheckTarget => {
                let report = p.target.check().await?;
                self.extra.insert("target".into(), json!(report));
            }
            Step::ClearStores { flush_sessions } => {
                let stores = Self::need(&p.stores, "stores")?;
                let before = stores.clear().await?;
                let after = stores.count().await?;
                self.snapshot("before clear", before);
                let left: u64 = after.values().sum();
                self.snapshot("after clear", after);
                if left != 0 {
                    return Err(Error::Infra(format!(
                        "{} still has {left} rows after clearing",
                        stores.describe()
                    )));
                }
                if *flush_sessions {
                    Self::need(&p.sessions, "session cache")?.flush().await?;
                }
            }
            Step::CountStores { label } => {
                let counts = Self::need(&p.stores, "stores")?.count().await?;
                if let Some(run) = &self.last_run {
                    results::write_json(
                        &self.dir.run_dir(run).join("stores.json"),
                        &json!({"label": label, "counts": counts}),
                    )?;
                }
                self.snapshot(label, counts);
            }
            Step::Load(phase) => {
                let run_dir = self.dir.run_dir(&phase.run_id);
                let summary = if self.dir.run_complete(&phase.run_id) {
                    tracing::info!(run = %phase.run_id, "already complete, kept");
                    results::read_json(&run_dir.join("summary.json"))?
                } else {
                    let _ = std::fs::remove_dir_all(&run_dir);
                    self.load(phase, &run_dir).await?
                };
                self.last_run = Some(phase.run_id.clone());
                let interrupted = summary.interrupted;
                self.outcome.runs.push(summary);
                if interrupted {
                    return Err(Error::Interrupted);
                }
            }
            Step::Cooldown { duration } => {
                tokio::select! {
                    _ = tokio::time::sleep(*duration) => {}
                    _ = self.interrupts.soft.cancelled() => return Err(Error::Interrupted),
                }
            }
            Step::PullMetrics { run_id } => {
                let run_dir = self.dir.run_dir(run_id);
                if !run_dir.join("cloudwatch.json").exists() {
                    let s: RunSummary = results::read_json(&run_dir.join("summary.json"))?;
                    let pad = 60.0;
                    Self::need(&p.metrics, "metrics")?
                        .pull(
                            s.started_unix - pad,
                            s.started_unix + s.duration_s + pad,
                            &run_dir,
                        )
                        .await?;
                }
            }
            Step::RestoreInfra => {
                if let Some(scaler) = &p.scaler {
                    self.journal.restore(scaler.as_ref()).await?;
                    let after: Vec<_> = scaler
                        .snapshot(
                            &self
                                .trial
                                .capacities
                                .iter()
                                .map(|(r, _)| *r)
                                .collect::<Vec<_>>(),
                        )
                        .await?;
                    self.extra.insert("infra_after".into(), json!(after));
                }
            }
            Step::Report => {
                crate::report::build(&self.dir.root)?;
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, label: &str, counts: StoreCounts) {
        self.outcome.stores.push(StoreSnapshot {
            label: label.into(),
            unix: unix_now(),
            run_id: self.last_run.clone(),
            counts,
        });
        if let Err(e) =
            results::write_json(&self.dir.root.join("stores.json"), &self.outcome.stores)
        {
            tracing::warn!("writing stores.json: {e}");
        }
    }

    /// A load run, with the infra sampler beside it when there is a scaler.
    async fn load(
        &mut self,
        phase: &crate::trial::LoadPhase,
        run_dir: &Path,
    ) -> Result<RunSummary> {
        let p = self.providers;
        let sampler_stop = CancellationToken::new();
        let sampler = p.scaler.clone().map(|scaler| {
            let every = self
                .trial
                .spec
                .infra
                .sample_every
                .map(|s| s.0)
                .unwrap_or(Duration::from_secs(5));
            let path = run_dir.join("infra.jsonl");
            let stop = sampler_stop.clone();
            tokio::spawn(async move { sample_infra(scaler, every, &path, stop).await })
        });
        let result = p.load.run(phase, run_dir, &self.interrupts.soft).await;
        sampler_stop.cancel();
        if let Some(s) = sampler {
            let _ = s.await;
        }
        let summary = result?;
        if let Some(scaler) = &p.scaler {
            match scaler
                .spin_up_timeline(
                    summary.started_unix,
                    summary.started_unix + summary.duration_s,
                )
                .await
            {
                Ok(t) => results::write_json(&run_dir.join("scaling.json"), &t)?,
                Err(e) => tracing::warn!("scaling activities for {}: {e}", phase.run_id),
            }
        }
        Ok(summary)
    }
}

async fn sample_infra(
    scaler: std::sync::Arc<dyn crate::provider::Scaler>,
    every: Duration,
    path: &Path,
    stop: CancellationToken,
) {
    let mut file = match results::AppendFile::create(path) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("infra sampler: {e}");
            return;
        }
    };
    loop {
        match scaler.sample().await {
            Ok(mut v) => {
                v["unix"] = json!(unix_now());
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
