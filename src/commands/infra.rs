//! `trialrunner infra status|restore --env ENV`: the ASGs beside what is holding them, and the
//! replay of what a crashed campaign left.
//!
//! Two records say a group is changed: the deployment lock on AWS (a campaign's claim on the
//! groups, carrying their originals: seen from any host and any state folder) and the undo
//! journals of this machine's state folder (found by what they changed: account, region,
//! endpoint, groups; never by the environment's name). `restore` refuses while the campaign
//! that holds the groups still runs, or may (on another host, its lease not expired): `--force`
//! overrides; it restores the originals and releases the lock. `--forget` drops a journal (and
//! its lock) whose groups are gone.

use std::path::PathBuf;

use super::{runtime, Global};
use crate::aws::scaler::{services_of, AwsScaler};
use crate::error::{exit, Error, Result};
use crate::exec::journal::{Liveness, RestoreReport, UndoJournal};
use crate::exec::restore_budget;
use crate::provider::{HeldLock, JournalTarget, Scaler};
use crate::{setup, trial};

/// `infra` sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Current ASG settings beside who holds them (the deployment lock on AWS, this machine's
    /// journals) and their originals; exit 1 while any group is held or a journal is pending.
    Status {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
    },
    /// Put the ASGs back as the deployment lock and the pending journals recorded them, and
    /// release the lock (idempotent).
    Restore {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
        /// Restore even though the campaign holding the groups may still run (on another host
        /// with its lease running, or on this one: it will find its groups put back and stop);
        /// breaks an expired lock.
        #[arg(long)]
        force: bool,
        /// Drop the pending journals and their locks without restoring (their groups no longer
        /// exist, or you restored by hand).
        #[arg(long)]
        forget: bool,
    },
}

/// Shows or restores.
pub fn run(action: Action, global: &Global) -> Result<i32> {
    let env_file = match &action {
        Action::Status { env } | Action::Restore { env, .. } => env.clone(),
    };
    let env = trial::load_environment(&env_file)?;
    runtime().block_on(async {
        let ctx = setup::aws_for(&env, &global.setup())
            .await?
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{}: the environment has no `aws` section",
                    env_file.display()
                ))
            })?;
        let services = services_of(&env);
        let target = setup::journal_target(&ctx, &env, &services);
        let command = crate::exec::journal::restore_command(&env, &target);
        let scaler = AwsScaler::new(ctx, services);
        let pending = UndoJournal::pending_for(&target)?;
        let locks = scaler.held().await?;
        let holds = holds(&target, pending, locks, &command);
        match action {
            Action::Status { .. } => status(&scaler, &env, &holds).await,
            Action::Restore { force, forget, .. } => restore(&scaler, holds, force, forget).await,
        }
    })
}

/// Something holding groups changed: a journal of this machine, the lock on AWS, or both (the
/// same campaign's).
struct Hold {
    /// The journal to restore from: this machine's, else one made of the lock's tags.
    journal: UndoJournal,
    /// Its lock on the groups, if it still has one.
    lock: Option<HeldLock>,
}

/// Pairs every lock on the groups with this machine's journal of the same campaign, if any;
/// journals without a lock (older ones, or a lock already released) come after.
fn holds(
    target: &JournalTarget,
    mut pending: Vec<UndoJournal>,
    locks: Vec<HeldLock>,
    command: &str,
) -> Vec<Hold> {
    let mut out = Vec::new();
    for lock in locks {
        let mine = pending
            .iter()
            .position(|j| j.state().lock_id == lock.claim.id);
        let journal = match mine {
            Some(i) => pending.remove(i),
            None => UndoJournal::of_lock(target.clone(), &lock, command.to_string()),
        };
        out.push(Hold {
            journal,
            lock: Some(lock),
        });
    }
    out.extend(pending.into_iter().map(|journal| Hold {
        journal,
        lock: None,
    }));
    out
}

impl Hold {
    /// Whether restoring is safe: the holder's liveness, and for a lock on another host, its
    /// lease. (`None`: safe.)
    fn refusal(&self) -> Option<String> {
        let s = self.journal.state();
        let owner = match &self.lock {
            Some(l) => &l.claim.owner,
            None => &s.owner,
        };
        match owner.liveness() {
            Liveness::Gone => None,
            Liveness::Alive | Liveness::ThisProcess => Some(format!(
                "held by a campaign that is still running ({owner}): do not restore while it runs"
            )),
            Liveness::Unknown => Some(match &self.lock {
                Some(l) if l.claim.expired() => format!(
                    "held by a campaign on another host ({owner}); {}: restore its originals and break the lock with --force once you are sure it has ended",
                    l.claim.lease_text()
                ),
                Some(l) => format!(
                    "held by a campaign on another host ({owner}; {}): make sure it has ended before restoring",
                    l.claim.lease_text()
                ),
                None => format!(
                    "written on another host ({owner}): make sure that campaign has ended before restoring"
                ),
            }),
        }
    }

    /// What it holds and what to do, for `status`.
    fn describe(&self, command: &str) -> String {
        let s = self.journal.state();
        let groups = s
            .original
            .iter()
            .map(|o| format!("{} {} {} {}", o.name, o.min, o.max, o.desired))
            .collect::<Vec<_>>()
            .join("; ");
        let mut text = format!("\nPENDING restore of {}\n", s.target);
        match &self.lock {
            Some(l) => text.push_str(&format!(
                "  locked by {} ({})\n",
                l.claim.owner,
                l.claim.lease_text()
            )),
            None => text.push_str(&format!("  journal of {}\n", s.owner)),
        }
        if let Some(d) = &s.database {
            text.push_str(&format!("  database: {}\n", d.summary()));
        }
        text.push_str(&format!(
            "  originals: {groups}\n  from: {}\n  results: {}\n",
            self.journal.source(),
            s.results_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        ));
        text.push_str(&match self.refusal() {
            None => format!("  ended without restoring: run `{command}`"),
            Some(why) => format!("  {why} (then `{command} --force`)"),
        });
        text
    }
}

async fn status(scaler: &AwsScaler, env: &trial::Environment, holds: &[Hold]) -> Result<i32> {
    crate::outln!(
        "{:<24} {:>5} {:>5} {:>8}   original (held)",
        "asg",
        "min",
        "max",
        "desired"
    );
    for svc in services_of(env) {
        let orig = holds
            .iter()
            .flat_map(|h| h.journal.state().original.iter())
            .find(|o| o.name == svc.asg);
        let note = orig
            .map(|o| format!("{} {} {}", o.min, o.max, o.desired))
            .unwrap_or_else(|| "-".into());
        match scaler.snapshot(&[svc.role]).await {
            Ok(c) => crate::outln!(
                "{:<24} {:>5} {:>5} {:>8}   {note}",
                c[0].name,
                c[0].min,
                c[0].max,
                c[0].desired
            ),
            Err(Error::Missing(_)) => crate::outln!("{:<24} (no such group)", svc.asg),
            Err(e) => crate::outln!("{:<24} {e}", svc.asg),
        }
    }
    if let Some(d) = &env.spec.deployment {
        let instances = scaler.tagged_instances(d).await?;
        let (gone, live): (Vec<_>, Vec<_>) = instances
            .into_iter()
            .partition(|(_, _, state)| state == "terminated" || state == "shutting-down");
        crate::outln!(
            "\n{} live instance(s) tagged veraison-deployment={d}:",
            live.len()
        );
        for (id, name, state) in live {
            crate::outln!("  {id:<22} {name:<14} {state}");
        }
        if !gone.is_empty() {
            crate::outln!("  (and {} terminated)", gone.len());
        }
    }
    if holds.is_empty() {
        return Ok(exit::OK);
    }
    for h in holds {
        crate::outln!("{}", h.describe(&h.journal.state().restore_command));
    }
    Ok(exit::CHECKS_FAILED)
}

async fn restore(scaler: &AwsScaler, holds: Vec<Hold>, force: bool, forget: bool) -> Result<i32> {
    if holds.is_empty() {
        crate::outln!(
            "nothing to restore: no lock and no pending journal on these auto-scaling groups"
        );
        return Ok(exit::OK);
    }
    let mut code = exit::OK;
    for mut h in holds {
        if let Some(why) = h.refusal() {
            if !force {
                return Err(Error::Usage(format!(
                    "refusing: {} are {why}; pass --force to restore anyway",
                    h.journal.state().target
                )));
            }
            crate::terminal::say(&format!(
                "warning: --force: {} will find its groups restored under it",
                h.journal.state().owner
            ));
        }
        if forget {
            if h.journal.pending() {
                h.journal.forget("dropped with `infra restore --forget`")?;
            }
            release(scaler, &h).await;
            crate::outln!(
                "forgot the journal for {} (nothing restored)",
                h.journal.state().target
            );
            continue;
        }
        crate::outln!("restoring from {}", h.journal.source());
        let report = if h.journal.pending() {
            // RDS takes minutes to move a class back: the database gets the trial's default wait.
            let database_budget = trial::database::DEFAULT_DATABASE_TIMEOUT.max(restore_budget());
            h.journal
                .restore(scaler as &dyn Scaler, restore_budget(), database_budget)
                .await
        } else {
            RestoreReport::default()
        };
        for o in report.restored.iter().filter(|o| !o.held) {
            crate::outln!(
                "restored {:<24} min {} max {} desired {}",
                o.name,
                o.min,
                o.max,
                o.desired
            );
        }
        for (o, who) in &report.held_by_others {
            crate::outln!("not restored {:<24} {who}", o.name);
        }
        if let Some(d) = &report.database_restored {
            crate::outln!("restored database {}", d.summary());
        }
        if report.complete() {
            release(scaler, &h).await;
        } else {
            crate::terminal::say(&h.journal.failure_message(&report));
            code = exit::INFRA;
        }
    }
    Ok(code)
}

/// Removes a hold's lock from its groups, saying so.
async fn release(scaler: &AwsScaler, h: &Hold) {
    let Some(lock) = &h.lock else { return };
    let groups: Vec<String> = lock.groups.iter().map(|(g, _)| g.clone()).collect();
    let by = tokio::time::Instant::now() + restore_budget();
    match scaler.unlock(&lock.claim.id, &groups, by).await {
        Ok(()) => crate::outln!(
            "released the lock of {} on {}",
            lock.claim.owner,
            groups.join(", ")
        ),
        Err(e) => crate::terminal::say(&format!(
            "warning: the lock on {} could not be removed: {e}",
            groups.join(", ")
        )),
    }
}
