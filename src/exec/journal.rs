//! The undo journal: the original settings of every ASG a trial will touch, written (to the
//! results dir and to a state file outside it) *before* the first change, and replayed to
//! restore — at the end, on error, on a stop request, or later by `trialrunner infra restore`.
//!
//! A journal is keyed by what it changed ([`JournalTarget`]: account, region, endpoint,
//! deployment and group names), never by an environment's name: two copies of the same
//! environment template must not restore each other's deployments. It names its owner (host,
//! pid, process start) so that `infra restore` can refuse to un-pin a trial that is still
//! running, and the id of the campaign's lock on the deployment (its claim on the groups, which
//! carries the same originals for operators on other hosts). Every path in it is absolute, so a
//! restore from any directory updates the right results directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::owner::{hostname, Liveness, Owner};
pub use crate::provider::JournalTarget;
use crate::provider::{AsgSettings, DatabaseOriginal, HeldLock, Restored, Scaler};
use crate::results;
use crate::results::absolute;

/// What the journal holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JournalState {
    /// What the changes apply to.
    pub target: JournalTarget,
    /// The environment's name (informational: never a key).
    pub environment: String,
    /// The environment file, absolute.
    #[serde(default)]
    pub environment_file: Option<PathBuf>,
    /// The results directory of the trial that wrote it, absolute.
    pub results_dir: Option<PathBuf>,
    /// Who wrote it.
    #[serde(default)]
    pub owner: Owner,
    /// The command that restores by hand.
    #[serde(default)]
    pub restore_command: String,
    /// Original settings, one per ASG.
    pub original: Vec<AsgSettings>,
    /// The database's original settings, when the trial changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseOriginal>,
    /// True once everything was put back (or the journal was forgotten).
    pub restored: bool,
    /// Set when the user dropped the journal without restoring (`infra restore --forget`).
    #[serde(default)]
    pub forgotten: Option<String>,
    /// The id of the campaign's claim on the groups (the deployment lock), the same across its
    /// resumes (empty in journals written before there was one).
    #[serde(default)]
    pub lock_id: String,
}

/// The journal and where it is kept.
pub struct UndoJournal {
    state: JournalState,
    files: Vec<PathBuf>,
}

/// The directory of state files (`$TRIALRUNNER_STATE_DIR`, else `$XDG_STATE_HOME/trialrunner`,
/// else `~/.local/state/trialrunner`).
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TRIALRUNNER_STATE_DIR") {
        return absolute(Path::new(&d));
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    absolute(&base.join("trialrunner"))
}

/// The state file of a target's journal.
pub fn state_file(target: &JournalTarget) -> PathBuf {
    state_dir().join(format!("journal-{}.json", target.key()))
}

/// The command that restores a target's groups by hand: `infra restore` with the environment
/// file (absolute) and the endpoint when it is not the environment's own.
pub fn restore_command(env: &crate::trial::Environment, target: &JournalTarget) -> String {
    let mut cmd = format!(
        "trialrunner infra restore --env {}",
        absolute(&env.file).display()
    );
    let own = env.spec.aws.as_ref().and_then(|a| a.endpoint.as_deref());
    if target.endpoint.starts_with("http") && own != Some(target.endpoint.as_str()) {
        cmd.push_str(&format!(" --aws-endpoint {}", target.endpoint));
    }
    cmd
}

/// Refuses when a journal over any of `target`'s groups is pending, other than the one of the
/// results directory being resumed: a running trial must not be disturbed, and a crashed one
/// must be restored (or resumed) first.
pub fn refuse_others(target: &JournalTarget, resuming: Option<&Path>) -> Result<()> {
    let resuming = resuming.map(absolute);
    for other in UndoJournal::pending_for(target)? {
        let s = other.state();
        if s.results_dir.is_some() && s.results_dir == resuming {
            continue;
        }
        let who = match s.owner.liveness() {
            Liveness::Alive | Liveness::ThisProcess => {
                format!("a trial that is still running ({}) has them changed", s.owner)
            }
            Liveness::Unknown => format!("a trial on another host ({}) has them changed", s.owner),
            Liveness::Gone => format!(
                "a trial that ended without restoring ({}) left them changed; restore with `{}`, or continue it with --resume {}",
                s.owner,
                s.restore_command,
                s.results_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default()
            ),
        };
        return Err(Error::Usage(format!(
            "auto-scaling groups {}: {who}",
            s.target
        )));
    }
    Ok(())
}

/// The outcome of a restore attempt.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Groups put back.
    pub restored: Vec<AsgSettings>,
    /// Groups that could not be put back, with why.
    pub failed: Vec<(AsgSettings, String)>,
    /// Groups that no longer exist.
    pub missing: Vec<AsgSettings>,
    /// Groups another campaign holds now, left as they are, with who holds them.
    pub held_by_others: Vec<(AsgSettings, String)>,
    /// The database, put back.
    pub database_restored: Option<DatabaseOriginal>,
    /// The database, not (or not yet: RDS still applying) put back, with why.
    pub database_failed: Option<(DatabaseOriginal, String)>,
}

impl RestoreReport {
    /// True when every group is back (or gone), and the database.
    pub fn complete(&self) -> bool {
        self.failed.is_empty() && self.missing.is_empty() && self.database_failed.is_none()
    }
}

impl UndoJournal {
    /// A new journal for `target`, kept in `results_dir/journal.json` and the state file.
    pub fn begin(
        target: JournalTarget,
        environment: &str,
        environment_file: &Path,
        results_dir: Option<&Path>,
        restore_command: String,
    ) -> UndoJournal {
        let results_dir = results_dir.map(absolute);
        let mut files = vec![state_file(&target)];
        if let Some(d) = &results_dir {
            files.insert(0, d.join("journal.json"));
        }
        UndoJournal {
            state: JournalState {
                target,
                environment: environment.into(),
                environment_file: Some(absolute(environment_file)),
                results_dir,
                owner: Owner::current(),
                restore_command,
                lock_id: crate::provider::LockClaim::new_id(),
                ..Default::default()
            },
            files,
        }
    }

    /// A journal in memory (never written) of a lock found on the groups: what an operator on
    /// another host, or whose state folder has no journal, restores from.
    ///
    /// The lock's tags carry each group's capacity only; when the campaign's results directory
    /// (named in the lock) is readable here (the same machine, or a shared folder) and holds
    /// that campaign's journal, that whole journal is used instead (pools, policies, health
    /// checks, launch settings, the database), and the restore's progress is written there.
    pub fn of_lock(target: JournalTarget, lock: &HeldLock, restore_command: String) -> UndoJournal {
        if let Some(journal) = Self::of_lock_results(&target, lock, &restore_command) {
            return journal;
        }
        UndoJournal {
            state: JournalState {
                target,
                results_dir: lock.claim.results_dir.as_ref().map(PathBuf::from),
                owner: lock.claim.owner.clone(),
                restore_command,
                original: lock.groups.iter().filter_map(|(_, o)| o.clone()).collect(),
                lock_id: lock.claim.id.clone(),
                ..Default::default()
            },
            files: Vec::new(),
        }
    }

    /// The journal in a lock's results directory, when it is readable here and is that
    /// campaign's (the same claim id, account and region).
    fn of_lock_results(
        target: &JournalTarget,
        lock: &HeldLock,
        restore_command: &str,
    ) -> Option<UndoJournal> {
        let file = PathBuf::from(lock.claim.results_dir.as_ref()?).join("journal.json");
        if !file.is_file() {
            return None;
        }
        let state: JournalState = match results::read_json(&file) {
            Ok(state) => state,
            Err(e) => {
                crate::terminal::say(&format!(
                    "warning: the lock's journal {} is unreadable ({e}): restoring from the lock's tags",
                    file.display()
                ));
                return None;
            }
        };
        let same = state.lock_id == lock.claim.id
            && state.target.account == target.account
            && state.target.region == target.region;
        // Kept where it is (never in this host's state folder, whose file for the same groups
        // may be another campaign's journal): the restore marks it restored there.
        same.then(|| UndoJournal {
            state: JournalState {
                restore_command: restore_command.to_string(),
                ..state
            },
            files: vec![file],
        })
    }

    /// Where a restore takes the originals from: a journal file, or the lock's tags alone.
    pub fn source(&self) -> String {
        match self.files.first() {
            Some(f) => format!("the journal {}", f.display()),
            None => "the lock's tags (each group's capacity only: not its warm pool, policies, health checks, launch settings or the database)".into(),
        }
    }

    /// The journal a results directory holds (a campaign being resumed), taken over by this
    /// process: its originals are kept, whatever the groups look like now.
    pub fn resume(results_dir: &Path) -> Result<Option<UndoJournal>> {
        let file = absolute(results_dir).join("journal.json");
        if !file.is_file() {
            return Ok(None);
        }
        let mut state: JournalState = results::read_json(&file)?;
        state.owner = Owner::current();
        state.results_dir = Some(absolute(results_dir));
        if state.lock_id.is_empty() {
            state.lock_id = crate::provider::LockClaim::new_id();
        }
        let files = vec![file, state_file(&state.target)];
        Ok(Some(UndoJournal { state, files }))
    }

    fn load(file: &Path) -> Result<UndoJournal> {
        let state: JournalState = results::read_json(file)?;
        let mut files = vec![file.to_path_buf()];
        if let Some(d) = &state.results_dir {
            files.insert(0, d.join("journal.json"));
        }
        Ok(UndoJournal { state, files })
    }

    /// Every pending journal in the state directory whose target overlaps `target`.
    pub fn pending_for(target: &JournalTarget) -> Result<Vec<UndoJournal>> {
        let dir = state_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("journal-") && name.ends_with(".json")) {
                continue;
            }
            match UndoJournal::load(&e.path()) {
                Ok(j) if j.pending() && j.state.target.overlaps(target) => out.push(j),
                Ok(_) => {}
                Err(err) => tracing::warn!("ignoring unreadable journal {}: {err}", name),
            }
        }
        out.sort_by(|a, b| {
            a.state
                .owner
                .started_unix
                .total_cmp(&b.state.owner.started_unix)
        });
        Ok(out)
    }

    /// The journal's contents.
    pub fn state(&self) -> &JournalState {
        &self.state
    }

    /// Where it is kept (results dir first).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Records the database's original settings (the first record wins: a resumed campaign
    /// keeps what it read before its first change) and persists before returning.
    pub fn record_database(&mut self, original: DatabaseOriginal) -> Result<()> {
        if self.state.database.is_none() {
            self.state.database = Some(original);
        }
        self.state.restored = false;
        self.state.forgotten = None;
        self.persist()
    }

    /// Records original settings (the first record of an ASG wins) and persists before
    /// returning: nothing may change before this is on disk.
    pub fn record(&mut self, settings: Vec<AsgSettings>) -> Result<()> {
        for s in settings {
            if !self.state.original.iter().any(|o| o.name == s.name) {
                self.state.original.push(s);
            }
        }
        self.state.restored = false;
        self.state.forgotten = None;
        self.persist()
    }

    fn persist(&self) -> Result<()> {
        for f in &self.files {
            results::write_json(f, &self.state)?;
        }
        Ok(())
    }

    /// True when there is something to restore.
    pub fn pending(&self) -> bool {
        !self.state.restored && (!self.state.original.is_empty() || self.state.database.is_some())
    }

    fn close(&mut self) -> Result<()> {
        self.state.restored = true;
        self.persist()?;
        // The state file has done its job; the results dir keeps the record (a journal adopted
        // from a results directory has no state file here, and is kept).
        if let Some(state) = self.files.last().filter(|f| f.starts_with(state_dir())) {
            let _ = std::fs::remove_file(state);
        }
        Ok(())
    }

    /// Puts every ASG back, all at once, each trying until the budget is spent (throttling and
    /// transient failures are tried again), and the database beside them within
    /// `database_budget` (RDS takes minutes to change a class); idempotent. A group another
    /// campaign holds now is left to it. The journal is closed only when everything is back.
    pub async fn restore(
        &mut self,
        scaler: &dyn Scaler,
        budget: Duration,
        database_budget: Duration,
    ) -> RestoreReport {
        let mut report = RestoreReport::default();
        if !self.pending() {
            return report;
        }
        let deadline = tokio::time::Instant::now() + budget;
        let database_deadline = tokio::time::Instant::now() + database_budget;
        let lock = Some(self.state.lock_id.as_str()).filter(|id| !id.is_empty());
        let groups = futures::future::join_all(self.state.original.iter().map(|original| {
            tokio::time::timeout_at(deadline, scaler.restore(original, lock, deadline))
        }));
        let database_original = self.state.database.clone();
        let database = async {
            match &database_original {
                Some(original) => Some(
                    // A moment past its own deadline: its own error says what is in flight.
                    tokio::time::timeout_at(
                        database_deadline + Duration::from_secs(5),
                        scaler.restore_database(original, database_deadline),
                    )
                    .await,
                ),
                None => None,
            }
        };
        let (outcomes, database) = tokio::join!(groups, database);
        if let (Some(original), Some(outcome)) = (&database_original, database) {
            match outcome {
                Ok(Ok(())) => report.database_restored = Some(original.clone()),
                Ok(Err(e)) => report.database_failed = Some((original.clone(), e.to_string())),
                Err(_) => {
                    report.database_failed = Some((
                        original.clone(),
                        format!(
                            "not back within {} (RDS may still be applying it: `infra restore` finishes it)",
                            humantime::format_duration(database_budget)
                        ),
                    ))
                }
            }
        }
        for (original, outcome) in self.state.original.iter().zip(outcomes) {
            match outcome {
                Ok(Ok(Restored::Done)) => report.restored.push(original.clone()),
                Ok(Ok(Restored::HeldByAnother(who))) => {
                    report.held_by_others.push((original.clone(), who))
                }
                Ok(Err(Error::Missing(_))) => report.missing.push(original.clone()),
                Ok(Err(e)) => report.failed.push((original.clone(), e.to_string())),
                Err(_) => report.failed.push((
                    original.clone(),
                    format!(
                        "no answer within the restore budget ({})",
                        humantime::format_duration(budget)
                    ),
                )),
            }
        }
        if report.complete() {
            if let Err(e) = self.close() {
                tracing::warn!("writing the restored journal: {e}");
            }
        }
        report
    }

    /// Drops the journal without restoring (its groups are gone, or the user said so).
    pub fn forget(&mut self, why: &str) -> Result<()> {
        self.state.forgotten = Some(why.to_string());
        self.close()
    }

    /// The loud message for groups (and the database) a restore left changed: which, their
    /// originals, the command.
    pub fn failure_message(&self, report: &RestoreReport) -> String {
        let mut s = String::new();
        if let Some((d, why)) = &report.database_failed {
            s.push_str(&format!(
                "RESTORE FAILED: the database may still be changed:\n  {}\n    why: {why}\n",
                d.summary()
            ));
        }
        if !report.failed.is_empty() || !report.missing.is_empty() {
            s.push_str("RESTORE FAILED: these auto-scaling groups may still be changed:\n");
        }
        for (o, why) in &report.failed {
            s.push_str(&format!(
                "  {} ({}): original min {} max {} desired {}\n    why: {why}\n",
                o.name, o.service, o.min, o.max, o.desired
            ));
        }
        for o in &report.missing {
            s.push_str(&format!(
                "  {} ({}): no longer exists in {} (original min {} max {} desired {})\n",
                o.name, o.service, self.state.target.endpoint, o.min, o.max, o.desired
            ));
        }
        s.push_str(&format!(
            "The undo journal is kept in {}.\nTo restore: {}\n",
            self.files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" and "),
            self.state.restore_command
        ));
        if !report.missing.is_empty() {
            s.push_str(&format!(
                "If the deployment is gone for good: {} --forget\n",
                self.state.restore_command
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: &str, deployment: &str) -> JournalTarget {
        JournalTarget::new(
            "123456789012",
            "eu-west-1",
            endpoint,
            Some(deployment),
            [
                format!("{deployment}-verif-asg"),
                format!("{deployment}-prov-asg"),
            ],
        )
    }

    #[test]
    fn targets_are_keyed_by_what_they_change_not_by_a_name() {
        let a = target("http://127.0.0.1:5000", "alpha");
        let b = target("http://127.0.0.1:5000", "beta");
        assert_ne!(a.key(), b.key());
        assert!(!a.overlaps(&b), "different groups do not overlap");
        assert!(a.overlaps(&a.clone()));
        let elsewhere = target("http://127.0.0.1:5001", "alpha");
        assert!(!a.overlaps(&elsewhere), "another endpoint is another world");
        assert_eq!(a.groups, ["alpha-prov-asg", "alpha-verif-asg"], "sorted");
    }
}
