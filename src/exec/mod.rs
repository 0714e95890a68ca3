//! The step executor: runs a [`Plan`] through the [`Providers`], writing results as it goes.
//!
//! Invariants:
//! * one campaign per results directory at a time (an exclusive lock on it for the campaign's
//!   lifetime);
//! * the deployment lock (the campaign's claim on the groups it changes, on AWS) is taken before
//!   the first change and refuses a deployment another campaign holds; it is released after the
//!   groups are back;
//! * the undo journal is on disk before the first infrastructure change;
//! * infrastructure is restored on every way out (end, error, a panic, a stop request), within
//!   [`restore_budget`] of the moment the steps stop, and a failed restore is said loudly;
//! * every completed step is in the [`ledger`] before the next begins, so `--resume` does exactly
//!   what is left (see [`Step::kept_on_resume`]);
//! * a stop request abandons any step that only talks to AWS or waits at once; a load run stops
//!   its users and writes its files first; nothing talks to AWS before the restore;
//! * a cloud-metrics failure never aborts a campaign: it is recorded and the results are partial.

pub mod background;
pub mod journal;
pub mod lease;
pub mod ledger;
pub mod metrics;
pub mod preflight;
pub mod signals;

use std::collections::{BTreeMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
pub use crate::provider::Takeover;
use crate::provider::{Providers, StoreCounts};
pub use crate::results::StoreSnapshot;
use crate::results::{self, unix_now, ResultsDir, RunSummary};
use crate::trial::{LoadPhase, Plan, Step, Trial};
use journal::{RestoreReport, UndoJournal};
use lease::Heartbeat;
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
    /// The first stop request, or the deployment lock broken under the campaign.
    stop: CancellationToken,
    /// Why the lock was lost, when it was.
    lock_lost: Arc<Mutex<Option<String>>>,
    takeover: Takeover,
    /// True while this campaign's claim is on the groups.
    locked: bool,
    heartbeat: Option<Heartbeat>,
    journal: Option<UndoJournal>,
    ledger: Ledger,
    outcome: Outcome,
    extra: BTreeMap<String, serde_json::Value>,
    last_run: Option<String>,
    /// Runs of the plan that are not complete: the clears that prepare them run again.
    unfinished: HashSet<String>,
    /// True once a restore waited for the database (a second one on the way out does not wait
    /// as long again).
    database_waited: bool,
}

/// The journal of this campaign: the one its results directory holds (resume: the originals
/// recorded before the first change, whatever the groups look like now), else a new one; and
/// whether it was resumed. Refuses when another journal over the same groups is pending.
fn open_journal(
    trial: &Trial,
    providers: &Providers,
    dir: &ResultsDir,
) -> Result<(Option<UndoJournal>, bool)> {
    let Some(target) = &providers.journal_target else {
        return Ok((None, false));
    };
    journal::refuse_others(target, Some(&dir.root))?;
    Ok(match UndoJournal::resume(&dir.root)? {
        Some(j) => (Some(j), true),
        None => (
            Some(UndoJournal::begin(
                target.clone(),
                &trial.env.spec.name,
                &trial.env.file,
                Some(&dir.root),
                journal::restore_command(&trial.env, target),
            )),
            false,
        ),
    })
}

/// A resumed campaign whose earlier process still holds its claim on the deployment (on
/// another host: on this one the results directory's lock already said so) is refused with the
/// owner named, unless `--force` says it has ended. Reads only.
async fn refuse_live_owner(
    providers: &Providers,
    journal: &UndoJournal,
    takeover: Takeover,
    interrupts: &Interrupts,
) -> Result<()> {
    let Some(scaler) = &providers.scaler else {
        return Ok(());
    };
    let held = tokio::select! {
        h = scaler.held() => h?,
        _ = interrupts.soft.cancelled() => return Err(Error::Interrupted),
    };
    let me = lease::claim_of(journal.state());
    for h in held.iter().filter(|h| h.claim.id == me.id) {
        if let Some(why) = h.claim.blocks(&me, takeover) {
            return Err(Error::Usage(format!(
                "refusing to resume {}: {why}",
                journal
                    .state()
                    .results_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// Runs a plan in `dir`; a directory that holds a ledger is resumed (its earlier process must
/// be gone: see [`execute_with`]).
pub async fn execute(
    trial: &Trial,
    plan: &Plan,
    providers: &Providers,
    dir: &ResultsDir,
    interrupts: &Interrupts,
) -> Result<Outcome> {
    execute_with(trial, plan, providers, dir, interrupts, Takeover::WhenGone).await
}

/// [`execute`], taking a resumed campaign's claim on the deployment over as `takeover` says
/// (`--force`: from a process on another host whose lease still runs).
pub async fn execute_with(
    trial: &Trial,
    plan: &Plan,
    providers: &Providers,
    dir: &ResultsDir,
    interrupts: &Interrupts,
    takeover: Takeover,
) -> Result<Outcome> {
    // Before anything is read or written: one process per results directory.
    let _held = dir.lock()?;
    check_same_campaign(trial, dir)?;
    let (journal, resumed) = open_journal(trial, providers, dir)?;
    if let (Some(j), true) = (&journal, resumed) {
        refuse_live_owner(providers, j, takeover, interrupts).await?;
    }
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
        stop: interrupts.soft.child_token(),
        lock_lost: Default::default(),
        takeover,
        locked: false,
        heartbeat: None,
        journal,
        ledger,
        outcome: Outcome::default(),
        extra: BTreeMap::new(),
        last_run: None,
        unfinished,
        database_waited: false,
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
    mirror(providers, dir).await;
    if let Some(message) = restore_failure {
        if let Err(e) = &result {
            crate::terminal::say(&format!("the campaign stopped: {e}"));
        }
        return Err(Error::Infra(message));
    }
    result?;
    Ok(c.outcome)
}

/// Sends what changed in the results directory to its mirror, if it has one. A failure is said
/// and the campaign goes on: what was not sent is sent at the next step.
async fn mirror(providers: &Providers, dir: &ResultsDir) {
    if let Some(m) = &providers.results_mirror {
        if let Err(e) = m.sync(&dir.root).await {
            crate::terminal::say(&format!(
                "warning: copying the results to {}: {e} (tried again after the next step)",
                m.location()
            ));
        }
    }
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
    /// Why the steps stopped early: the deployment lock lost under the campaign, else a stop
    /// request.
    fn stopped(&self) -> Error {
        match self.lock_lost.lock().expect("lost lock").clone() {
            Some(why) if !self.interrupts.soft.is_cancelled() => Error::Infra(why),
            _ => Error::Interrupted,
        }
    }

    async fn steps(&mut self) -> Result<()> {
        for (index, planned) in self.plan.steps.iter().enumerate() {
            if self.stop.is_cancelled() {
                return Err(self.stopped());
            }
            let step = &planned.step;
            let key = step_key(index, step);
            if step.kept_on_resume() && self.ledger.is_done(&key) && !self.redo(step) {
                self.kept(step)?;
                continue;
            }
            tracing::info!(step = %step, "step");
            crate::terminal::say(&self.plan.position(index).to_string());
            // A stop request abandons AWS calls and waits at once; a load run stops itself
            // (users first, then its files); the restore only stops for the second.
            let stop = if step.abandoned_on_stop() {
                self.stop.clone()
            } else {
                self.interrupts.hard.clone()
            };
            let note = tokio::select! {
                biased;
                _ = stop.cancelled() => return Err(self.stopped()),
                r = self.step(step) => r?,
            };
            self.ledger.record(&key, &step.to_string(), note)?;
            // A stop request does not wait for the copy: the one after the restore sends it.
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => {}
                _ = mirror(self.providers, self.dir) => {}
            }
        }
        Ok(())
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
                let scaler = Self::need(&p.scaler, "auto-scaling")?;
                let journal = self.journal.as_mut().ok_or_else(|| {
                    Error::Infra("no undo journal for a trial that changes infrastructure".into())
                })?;
                // The claim on the groups first: their settings are read in the same look that
                // finds them free (a group another campaign pinned is refused, never taken for
                // an original).
                let claim = lease::claim_of(journal.state());
                let settings = scaler
                    .lock(services, &claim, self.takeover)
                    .await
                    .map_err(|e| match e {
                        Error::Usage(why) => {
                            let restore = &journal.state().restore_command;
                            Error::Usage(format!(
                                "{why}\nWho holds what: `{}`. Once a holder has ended, `{restore}` puts its groups back and releases them (with --force for one on another host or whose lease expired).",
                                restore.replacen("infra restore", "infra status", 1)
                            ))
                        }
                        e => e,
                    })?;
                self.locked = true;
                self.heartbeat = Some(Heartbeat::start(
                    p.scaler.clone().expect("checked above"),
                    claim,
                    self.stop.clone(),
                    self.lock_lost.clone(),
                ));
                let mut settings = settings;
                // A group the trial only holds (it changes only the database) is left as it is.
                for s in settings.iter_mut() {
                    s.held = !self.trial.capacities.iter().any(|(r, _)| *r == s.service);
                }
                // The warm pools, policies and health checks the trial changes, read now.
                for (role, group) in &self.trial.settings {
                    let read = scaler.read_settings(*role, group.changes_launch()).await?;
                    if let Some(s) = settings.iter_mut().find(|s| s.service == *role) {
                        s.deployment = Some(read);
                    }
                }
                self.extra.insert("infra_before".into(), json!(settings));
                // On a resume the journal already holds the originals: `record` keeps them.
                journal.record(settings)?;
                self.extra
                    .insert("infra_original".into(), json!(journal.state().original));
                // The database the trial changes, read now, journaled the same way.
                if let Some(db) = &self.trial.spec.infra.database {
                    let read = scaler.read_database(db).await?;
                    self.extra.insert("database_before".into(), json!(read));
                    journal.record_database(read)?;
                    self.extra
                        .insert("database_original".into(), json!(journal.state().database));
                }
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
            Step::ChangeSettings { service, settings } => {
                let journaled = self.journal.as_ref().is_some_and(|j| {
                    j.pending()
                        && j.state()
                            .original
                            .iter()
                            .any(|o| o.service == *service && o.deployment.is_some())
                });
                if !journaled {
                    return Err(Error::Infra(format!(
                        "refusing to change {service}'s warm pool, policy or health checks before their originals are journaled"
                    )));
                }
                Self::need(&p.scaler, "auto-scaling")?
                    .change_settings(*service, settings, &self.stop)
                    .await?;
            }
            Step::ChangeDatabase { database } => {
                let original = self
                    .journal
                    .as_ref()
                    .filter(|j| j.pending())
                    .and_then(|j| j.state().database.clone())
                    .ok_or_else(|| {
                        Error::Infra(
                            "refusing to change the database before its original settings are journaled"
                                .into(),
                        )
                    })?;
                Self::need(&p.scaler, "auto-scaling")?
                    .change_database(database, &original, &self.stop)
                    .await?;
            }
            Step::WaitReady { services, timeout } => {
                let report = Self::need(&p.scaler, "auto-scaling")?
                    .wait_ready(services, *timeout, &self.stop)
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
                if let Some(report) = self.restore_groups(self.database_budget()).await {
                    if !report.complete() {
                        let journal = self.journal.as_ref().expect("a restore had a journal");
                        return Err(Error::Infra(journal.failure_message(&report)));
                    }
                    say_restored(&report);
                }
                if let (Some(scaler), Some(_)) = (&p.scaler, &self.journal) {
                    let services = self.trial.held_services();
                    let mut after = Vec::new();
                    for group in scaler.snapshot(&services).await? {
                        // Its own policy may move a group's desired capacity as soon as the
                        // restore frees it: the report tells that from a failed restore.
                        let policies = match scaler.scaling_policies(group.service).await {
                            Ok(names) => json!(names),
                            Err(e) => json!(format!("not read: {e}")),
                        };
                        let mut entry = json!(group);
                        entry["scaling_policies"] = policies;
                        after.push(entry);
                    }
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
        let result = p.load.run(phase, &run_dir, &self.stop).await;
        if let Some(s) = sampler {
            s.stop().await;
        }
        let summary = result?;
        self.last_run = Some(phase.run_id.clone());
        self.outcome.runs.push(summary.clone());
        if summary.interrupted {
            return Err(self.stopped());
        }
        if let Some(sink) = &p.publish {
            metrics::publish_run(sink.as_ref(), &run_dir, &phase.run_id).await;
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

    /// How long the database's restore may wait for RDS: the trial's database `timeout` (a
    /// class change takes minutes), but only [`restore_budget`] once a stop was requested (a
    /// stop ends within two minutes: what RDS still applies is said, `infra restore` finishes it).
    fn database_budget(&self) -> Duration {
        let budget = restore_budget();
        match &self.trial.spec.infra.database {
            Some(db) if !self.interrupts.soft.is_cancelled() && !self.database_waited => {
                db.timeout().max(budget)
            }
            _ => budget,
        }
    }

    /// Stops renewing the lease, puts the journalled groups back (when something is pending)
    /// within [`restore_budget`] (the database within `database_budget`), and releases the
    /// deployment lock once nothing of this campaign is left changed. `None` when there was
    /// nothing to restore.
    async fn restore_groups(&mut self, database_budget: Duration) -> Option<RestoreReport> {
        // The lease is renewed while the restore runs (a database's wait may outlast it, and
        // another operator must not take the groups meanwhile); the heartbeat stops before the
        // unlock, so no renewal puts a claim back after it.
        let (Some(scaler), Some(journal)) = (&self.providers.scaler, self.journal.as_mut()) else {
            if let Some(h) = self.heartbeat.take() {
                h.stop().await;
            }
            return None;
        };
        let budget = restore_budget();
        let deadline = tokio::time::Instant::now() + budget;
        let report = if journal.pending() {
            let started = std::time::Instant::now();
            let report = journal
                .restore(scaler.as_ref(), budget, database_budget)
                .await;
            self.database_waited |= journal.state().database.is_some();
            self.extra
                .insert("restore_s".into(), json!(started.elapsed().as_secs_f64()));
            Some(report)
        } else {
            None
        };
        if let Some(h) = self.heartbeat.take() {
            h.stop().await;
        }
        if self.locked && report.as_ref().is_none_or(RestoreReport::complete) {
            let state = journal.state();
            let by = deadline.max(tokio::time::Instant::now() + Duration::from_secs(10));
            match scaler.unlock(&state.lock_id, &state.target.groups, by).await {
                Ok(()) => self.locked = false,
                Err(e) => crate::terminal::say(&format!(
                    "warning: the lock on {} could not be removed ({e}); it expires within {} (`{} --force` removes it sooner)",
                    state.target.groups.join(", "),
                    humantime::format_duration(lease::lease()),
                    state.restore_command
                )),
            }
        }
        report
    }

    /// The restore after the steps stopped, whatever the reason; bounded by
    /// [`restore_budget`]. Returns the loud message when groups are left changed.
    async fn restore_on_the_way_out(&mut self) -> Option<String> {
        let pending = self.journal.as_ref().is_some_and(UndoJournal::pending);
        if pending {
            crate::terminal::say("restoring the auto-scaling groups…");
        }
        let report = self.restore_groups(self.database_budget()).await?;
        self.extra.insert(
            "restore".into(),
            json!({
                "restored": report.restored,
                "failed": report.failed.iter().map(|(s, why)| json!({"group": s, "why": why})).collect::<Vec<_>>(),
                "missing": report.missing,
                "held_by_others": report.held_by_others.iter().map(|(s, who)| json!({"group": s, "holder": who})).collect::<Vec<_>>(),
                "database": report.database_restored,
                "database_failed": report.database_failed.as_ref().map(|(d, why)| json!({"database": d, "why": why})),
            }),
        );
        if report.complete() {
            say_restored(&report);
            None
        } else {
            let journal = self.journal.as_ref().expect("a restore had a journal");
            Some(journal.failure_message(&report))
        }
    }
}

/// One line per group a restore put back or left to another campaign.
fn say_restored(report: &RestoreReport) {
    for o in &report.restored {
        if o.held {
            crate::terminal::say(&format!(
                "left {} as it is (held for the trial, never changed)",
                o.name
            ));
            continue;
        }
        let settings = o
            .deployment
            .as_ref()
            .map(|d| {
                format!(
                    "; warm pool {}; policies {}; health check {} ({}s grace){}",
                    d.describe("warm-pool"),
                    d.describe("policy"),
                    d.health_check_type,
                    d.health_check_grace_s,
                    d.launch
                        .as_ref()
                        .map(|l| format!(
                            "; launches from {} as {}",
                            l.describe(),
                            l.instance_type.as_deref().unwrap_or("?")
                        ))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        crate::terminal::say(&format!(
            "restored {} to min {} max {} desired {}{settings}",
            o.name, o.min, o.max, o.desired
        ));
    }
    for (o, who) in &report.held_by_others {
        crate::terminal::say(&format!("not restored {}: {who}", o.name));
    }
    if let Some(d) = &report.database_restored {
        crate::terminal::say(&format!("restored database {}", d.summary()));
    }
}
