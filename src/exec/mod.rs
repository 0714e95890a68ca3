//! The step executor: runs a [`Plan`] through the [`Providers`], writing results as it goes.
//!
//! Invariants:
//! * the undo journal is on disk before the first infrastructure change;
//! * infrastructure is restored on every way out (end, error, a panic, a stop request), within
//!   [`restore_budget`] of the moment the steps stop, and a failed restore is said loudly;
//! * every completed step is in the [`ledger`] before the next begins, so `--resume` does exactly
//!   what is left (see [`Step::kept_on_resume`]);
//! * a stop request abandons any step that only talks to AWS or waits at once; a load run stops
//!   its users and writes its files first; nothing talks to AWS before the restore;
//! * a cloud-metrics failure never aborts a campaign: it is recorded and the results are partial.

pub mod journal;
pub mod ledger;
pub mod metrics;
pub mod preflight;
pub mod signals;

use std::collections::{BTreeMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use serde_json::json;

use crate::error::{Error, Result};
use crate::provider::{Providers, StoreCounts};
pub use crate::results::StoreSnapshot;
use crate::results::{self, unix_now, ResultsDir, RunSummary};
use crate::trial::{LoadPhase, Plan, Step, Trial};
use journal::UndoJournal;
use ledger::Ledger;
pub use signals::Interrupts;

/// How long the restore may take once the steps have stopped (90 s; `TRIALRUNNER_RESTORE_BUDGET`
/// overrides it, e.g. `10s` in tests). With the load's own stop (a few seconds) this keeps every
/// way out within two minutes of the stop request, even against a frozen AWS endpoint.
pub fn restore_budget() -> Duration {
    std::env::var("TRIALRUNNER_RESTORE_BUDGET")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(Duration::from_secs(90))
}

/// What a campaign did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Runs completed (including resumed ones).
    pub runs: Vec<RunSummary>,
    /// Store counts over time.
    pub stores: Vec<StoreSnapshot>,
    /// What is missing from the results (cloud metrics that could not be pulled).
    pub partial: Vec<String>,
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
        "trial": {"file": results::absolute(&trial.file), "sha256": trial.hash, "spec": trial.spec},
        "environment": {"file": results::absolute(&trial.env.file), "sha256": trial.env.hash, "spec": trial.env.spec},
        "release": trial.env.release,
        "plan": {"steps": plan.steps.len(), "load_runs": plan.load_phases().count(), "expected_s": plan.total().as_secs_f64()},
        "generator": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), "host": journal::hostname()},
    });
    for (k, v) in extra {
        m[k] = v.clone();
    }
    m
}

/// The campaign's id: the one its manifest recorded (a resume continues it), else a new one
/// (`<trial>-<UTC time>-<random>`), unique among campaigns.
fn campaign_id(trial: &Trial, dir: &ResultsDir) -> String {
    let recorded = results::read_json::<serde_json::Value>(&dir.root.join("manifest.json"))
        .ok()
        .and_then(|m| m["campaign"].as_str().map(str::to_string));
    recorded.unwrap_or_else(|| {
        format!(
            "{}-{}-{}",
            trial.spec.name,
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    })
}

/// A resumed campaign must be the same trial in the same environment.
fn check_same_campaign(trial: &Trial, dir: &ResultsDir) -> Result<()> {
    let Ok(m) = results::read_json::<serde_json::Value>(&dir.root.join("manifest.json")) else {
        return Ok(());
    };
    for (what, file, hash) in [
        ("trial", &trial.file, &trial.hash),
        ("environment", &trial.env.file, &trial.env.hash),
    ] {
        if m[what]["sha256"].as_str().is_some_and(|h| h != hash) {
            return Err(Error::Usage(format!(
                "{} changed since {} was started: a resumed campaign must run the same {what} (or start a new results directory)",
                file.display(),
                dir.root.display()
            )));
        }
    }
    Ok(())
}

/// The text of a panic payload.
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a task panicked".into())
}

struct Campaign<'a> {
    trial: &'a Trial,
    plan: &'a Plan,
    providers: &'a Providers,
    dir: &'a ResultsDir,
    interrupts: &'a Interrupts,
    journal: Option<UndoJournal>,
    ledger: Ledger,
    outcome: Outcome,
    extra: BTreeMap<String, serde_json::Value>,
    last_run: Option<String>,
    /// Runs of the plan that are not complete: the clears that prepare them run again.
    unfinished: HashSet<String>,
}

/// The journal of this campaign: the one its results directory holds (resume: the originals
/// recorded before the first change, whatever the groups look like now), else a new one.
/// Refuses when another journal over the same groups is pending.
fn open_journal(
    trial: &Trial,
    providers: &Providers,
    dir: &ResultsDir,
) -> Result<Option<UndoJournal>> {
    let Some(target) = &providers.journal_target else {
        return Ok(None);
    };
    journal::refuse_others(target, Some(&dir.root))?;
    Ok(Some(match UndoJournal::resume(&dir.root)? {
        Some(j) => j,
        None => UndoJournal::begin(
            target.clone(),
            &trial.env.spec.name,
            &trial.env.file,
            Some(&dir.root),
            journal::restore_command(&trial.env, target),
        ),
    }))
}

/// Runs a plan in `dir`; a directory that holds a ledger is resumed.
pub async fn execute(
    trial: &Trial,
    plan: &Plan,
    providers: &Providers,
    dir: &ResultsDir,
    interrupts: &Interrupts,
) -> Result<Outcome> {
    check_same_campaign(trial, dir)?;
    let journal = open_journal(trial, providers, dir)?;
    let ledger = Ledger::open(&dir.root)?;
    let unfinished = plan
        .load_phases()
        .filter(|p| !ledger.is_done(&load_key(plan, &p.run_id)))
        .map(|p| p.run_id.clone())
        .collect();
    let mut c = Campaign {
        trial,
        plan,
        providers,
        dir,
        interrupts,
        journal,
        ledger,
        outcome: Outcome::default(),
        extra: BTreeMap::new(),
        last_run: None,
        unfinished,
    };
    if let Ok(previous) = results::read_json::<Vec<StoreSnapshot>>(&dir.root.join("stores.json")) {
        c.outcome.stores = previous;
    }
    let campaign = campaign_id(trial, dir);
    providers.load.campaign(&campaign);
    c.extra.insert("campaign".into(), json!(campaign));
    c.extra
        .insert("started_at".into(), json!(chrono::Utc::now().to_rfc3339()));
    results::write_json(
        &dir.root.join("manifest.json"),
        &manifest(trial, plan, "running", &c.extra),
    )?;
    let result = AssertUnwindSafe(c.steps())
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(Error::Internal(panic_message(p))));
    // Restore on every way out, even after a second stop request: before any other AWS call.
    let restore_failure = c.restore_on_the_way_out().await;
    let status = match (&result, &restore_failure) {
        (_, Some(_)) => "failed",
        (Ok(()), None) if !c.outcome.partial.is_empty() => "partial",
        (Ok(()), None) => "complete",
        (Err(Error::Interrupted), None) => "interrupted",
        _ => "failed",
    };
    c.extra
        .insert("ended_at".into(), json!(chrono::Utc::now().to_rfc3339()));
    if let Some(sig) = interrupts.signal() {
        c.extra
            .insert("stopped_by".into(), json!(signals::signal_name(sig)));
    }
    if let Err(e) = &result {
        c.extra.insert("error".into(), json!(e.to_string()));
    }
    if !c.outcome.partial.is_empty() {
        c.extra.insert("partial".into(), json!(c.outcome.partial));
    }
    results::write_json(
        &dir.root.join("manifest.json"),
        &manifest(trial, plan, status, &c.extra),
    )?;
    if let Some(message) = restore_failure {
        if let Err(e) = &result {
            crate::terminal::say(&format!("the campaign stopped: {e}"));
        }
        return Err(Error::Infra(message));
    }
    result?;
    Ok(c.outcome)
}

/// The ledger key of a plan's step.
fn step_key(index: usize, step: &Step) -> String {
    format!("{index:03}-{}", step.kind())
}

/// The ledger key of a load run.
fn load_key(plan: &Plan, run_id: &str) -> String {
    plan.steps
        .iter()
        .enumerate()
        .find(|(_, s)| matches!(&s.step, Step::Load(p) if p.run_id == run_id))
        .map(|(i, s)| step_key(i, &s.step))
        .unwrap_or_default()
}

impl Campaign<'_> {
    async fn steps(&mut self) -> Result<()> {
        let total = self.plan.steps.len();
        for (index, planned) in self.plan.steps.iter().enumerate() {
            if self.interrupts.soft.is_cancelled() {
                return Err(Error::Interrupted);
            }
            let step = &planned.step;
            let key = step_key(index, step);
            if step.kept_on_resume() && self.ledger.is_done(&key) && !self.redo(step) {
                self.kept(step)?;
                continue;
            }
            tracing::info!(step = %step, "step");
            crate::terminal::say(&self.step_line(index, total));
            // A stop request abandons AWS calls and waits at once; a load run stops itself
            // (users first, then its files); the restore only stops for the second.
            let stop = if step.abandoned_on_stop() {
                self.interrupts.soft.clone()
            } else {
                self.interrupts.hard.clone()
            };
            let note = tokio::select! {
                biased;
                _ = stop.cancelled() => return Err(Error::Interrupted),
                r = self.step(step) => r?,
            };
            self.ledger.record(&key, &step.to_string(), note)?;
        }
        Ok(())
    }

    /// The line announcing a step: its place, the time the plan says is left, and for a load
    /// run its place among the runs.
    fn step_line(&self, index: usize, total: usize) -> String {
        let steps = &self.plan.steps;
        let left: Duration = steps[index..].iter().map(|s| s.estimate).sum();
        let left = humantime::format_duration(Duration::from_secs(left.as_secs()));
        let step = &steps[index].step;
        let run = match step {
            Step::Load(_) => {
                let runs = steps.iter().filter(|s| matches!(s.step, Step::Load(_)));
                let before = steps[..index]
                    .iter()
                    .filter(|s| matches!(s.step, Step::Load(_)))
                    .count();
                format!("run {}/{} · ", before + 1, runs.count())
            }
            _ => String::new(),
        };
        format!("[{}/{total} · {left} left] {run}{step}", index + 1)
    }

    /// A completed clear is done again only when it prepares a run that is not complete.
    fn redo(&self, step: &Step) -> bool {
        matches!(step, Step::ClearStores { before_run: Some(r), .. } if self.unfinished.contains(r))
    }

    /// A step the ledger says is complete: take its results into the outcome.
    fn kept(&mut self, step: &Step) -> Result<()> {
        if let Step::Load(phase) = step {
            tracing::info!(run = %phase.run_id, "already complete, kept");
            let summary =
                results::read_json(&self.dir.run_dir(&phase.run_id).join("summary.json"))?;
            self.outcome.runs.push(summary);
            self.last_run = Some(phase.run_id.clone());
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

    /// Runs one step; returns a note for the ledger.
    async fn step(&mut self, step: &Step) -> Result<Option<String>> {
        let p = self.providers;
        match step {
            Step::Preflight => {
                let found = preflight::preflight(self.trial, p).await?;
                self.extra.insert("preflight".into(), json!(found));
            }
            Step::SnapshotInfra { services } => {
                let settings = Self::need(&p.scaler, "auto-scaling")?
                    .snapshot(services)
                    .await?;
                self.extra.insert("infra_before".into(), json!(settings));
                let journal = self.journal.as_mut().ok_or_else(|| {
                    Error::Infra("no undo journal for a trial that changes infrastructure".into())
                })?;
                // On a resume the journal already holds the originals: `record` keeps them.
                journal.record(settings)?;
                self.extra
                    .insert("infra_original".into(), json!(journal.state().original));
            }
            Step::SetCapacity { service, capacity } => {
                if !self.journal.as_ref().is_some_and(UndoJournal::pending) {
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
            Step::ClearStores { flush_sessions, .. } => self.clear_stores(*flush_sessions).await?,
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
            Step::Load(phase) => self.load(phase).await?,
            Step::Cooldown { duration } => tokio::time::sleep(*duration).await,
            Step::PullMetrics { run_id } => {
                let source = Self::need(&p.metrics, "metrics")?;
                let outcome = metrics::pull_run(source, self.dir, run_id).await;
                if let Err(why) = outcome {
                    self.outcome.partial.push(format!("{run_id}: {why}"));
                    return Ok(Some(format!("failed: {why}")));
                }
            }
            Step::RestoreInfra => {
                if let (Some(scaler), Some(journal)) = (&p.scaler, self.journal.as_mut()) {
                    let report = journal.restore(scaler.as_ref(), restore_budget()).await;
                    if !report.complete() {
                        return Err(Error::Infra(journal.failure_message(&report)));
                    }
                    let services: Vec<_> = self.trial.capacities.iter().map(|(r, _)| *r).collect();
                    let after = scaler.snapshot(&services).await?;
                    self.extra.insert("infra_after".into(), json!(after));
                }
            }
            Step::SettleMetrics { settle } => {
                let source = Self::need(&p.metrics, "metrics")?;
                let still = metrics::settle(source, self.dir, *settle, false).await?;
                self.outcome.partial = still;
            }
        }
        Ok(None)
    }

    async fn clear_stores(&mut self, flush_sessions: bool) -> Result<()> {
        let p = self.providers;
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
        if flush_sessions {
            Self::need(&p.sessions, "session cache")?.flush().await?;
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

    /// A load run (with the infra sampler beside it when there is a scaler). The folder of an
    /// earlier attempt that did not complete is kept aside, never deleted.
    async fn load(&mut self, phase: &LoadPhase) -> Result<()> {
        let run_dir = self.dir.run_dir(&phase.run_id);
        if run_dir.exists() {
            let aside = self.dir.set_aside(&phase.run_id)?;
            tracing::info!(run = %phase.run_id, "an earlier attempt did not complete: kept in {}", aside.display());
        }
        let p = self.providers;
        // A trial that counts its stores knows the rows each run ran against.
        if self.trial.spec.stores.count != crate::trial::model::CountPolicy::Never {
            if let Some(stores) = &p.stores {
                let counts = stores.count().await?;
                let label = format!("before {}", phase.run_id);
                self.snapshot(&label, counts);
            }
        }
        let sampler = p.scaler.clone().map(|scaler| {
            let every = self
                .trial
                .spec
                .infra
                .sample_every
                .map(|s| s.0)
                .unwrap_or(Duration::from_secs(5));
            metrics::InfraSampler::start(scaler, every, run_dir.join("infra.jsonl"))
        });
        let result = p.load.run(phase, &run_dir, &self.interrupts.soft).await;
        if let Some(s) = sampler {
            s.stop().await;
        }
        let summary = result?;
        self.last_run = Some(phase.run_id.clone());
        self.outcome.runs.push(summary.clone());
        if summary.interrupted {
            return Err(Error::Interrupted);
        }
        if let Some(scaler) = &p.scaler {
            let window = scaler.spin_up_timeline(
                summary.started_unix,
                summary.started_unix + summary.duration_s,
            );
            match tokio::time::timeout(Duration::from_secs(60), window).await {
                Ok(Ok(t)) => results::write_json(&run_dir.join("scaling.json"), &t)?,
                Ok(Err(e)) => tracing::warn!("scaling activities for {}: {e}", phase.run_id),
                Err(_) => {
                    tracing::warn!("scaling activities for {}: no answer in 60 s", phase.run_id)
                }
            }
        }
        self.unfinished.remove(&phase.run_id);
        Ok(())
    }

    /// The restore after the steps stopped, whatever the reason; bounded by
    /// [`restore_budget`]. Returns the loud message when groups are left changed.
    async fn restore_on_the_way_out(&mut self) -> Option<String> {
        let (Some(scaler), Some(journal)) = (&self.providers.scaler, self.journal.as_mut()) else {
            return None;
        };
        if !journal.pending() {
            return None;
        }
        crate::terminal::say("restoring the auto-scaling groups…");
        let report = journal.restore(scaler.as_ref(), restore_budget()).await;
        self.extra.insert(
            "restore".into(),
            json!({
                "restored": report.restored,
                "failed": report.failed.iter().map(|(s, why)| json!({"group": s, "why": why})).collect::<Vec<_>>(),
                "missing": report.missing,
            }),
        );
        if report.complete() {
            for o in &report.restored {
                crate::terminal::say(&format!(
                    "restored {} to min {} max {} desired {}",
                    o.name, o.min, o.max, o.desired
                ));
            }
            None
        } else {
            Some(journal.failure_message(&report))
        }
    }
}
