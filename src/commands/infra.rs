//! `trialrunner infra status|restore --env ENV`: the ASGs beside the undo journals' originals,
//! and the replay of a journal a crashed trial left.
//!
//! Journals are found by what they changed (account, region, endpoint, groups), not by the
//! environment's name. `restore` refuses while the trial that wrote a journal is still running
//! (`--force` overrides), and `--forget` drops a journal whose groups are gone.

use std::path::PathBuf;

use super::{runtime, Global};
use crate::aws::scaler::{services_of, AwsScaler};
use crate::error::{exit, Error, Result};
use crate::exec::journal::{Liveness, UndoJournal};
use crate::exec::restore_budget;
use crate::provider::Scaler;
use crate::{setup, trial};

/// `infra` sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Current ASG settings beside the journals' originals; exit 1 while a journal is pending.
    Status {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
    },
    /// Put the ASGs back as the pending journals recorded them (idempotent).
    Restore {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
        /// Restore even though the trial that wrote the journal still runs (it will find its
        /// groups un-pinned).
        #[arg(long)]
        force: bool,
        /// Drop the pending journals without restoring (their groups no longer exist, or you
        /// restored by hand).
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
        let scaler = AwsScaler::new(ctx, services);
        let pending = UndoJournal::pending_for(&target)?;
        match action {
            Action::Status { .. } => status(&scaler, &env, pending).await,
            Action::Restore { force, forget, .. } => restore(&scaler, pending, force, forget).await,
        }
    })
}

fn describe_owner(j: &UndoJournal) -> String {
    let s = j.state();
    match s.owner.liveness() {
        Liveness::Alive | Liveness::ThisProcess => format!(
            "written by a trial that is still running ({}): do not restore while it runs",
            s.owner
        ),
        Liveness::Unknown => format!(
            "written on another host ({}): make sure that trial has ended before restoring",
            s.owner
        ),
        Liveness::Gone => format!(
            "written by a trial that ended without restoring ({}): run `{}`",
            s.owner, s.restore_command
        ),
    }
}

async fn status(
    scaler: &AwsScaler,
    env: &trial::Environment,
    pending: Vec<UndoJournal>,
) -> Result<i32> {
    crate::outln!(
        "{:<24} {:>5} {:>5} {:>8}   journal (original)",
        "asg",
        "min",
        "max",
        "desired"
    );
    for svc in services_of(env) {
        let orig = pending
            .iter()
            .flat_map(|j| j.state().original.iter())
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
    if pending.is_empty() {
        return Ok(exit::OK);
    }
    for j in &pending {
        let s = j.state();
        crate::outln!(
            "\nPENDING journal for {}\n  {}\n  results: {}",
            s.target,
            describe_owner(j),
            s.results_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        );
    }
    Ok(exit::CHECKS_FAILED)
}

async fn restore(
    scaler: &AwsScaler,
    pending: Vec<UndoJournal>,
    force: bool,
    forget: bool,
) -> Result<i32> {
    if pending.is_empty() {
        crate::outln!("nothing to restore: no pending journal for these auto-scaling groups");
        return Ok(exit::OK);
    }
    let mut code = exit::OK;
    for mut j in pending {
        let live = j.state().owner.liveness();
        if matches!(live, Liveness::Alive | Liveness::Unknown) {
            if !force {
                return Err(Error::Usage(format!(
                    "refusing: the journal for {} was {}; pass --force to restore anyway",
                    j.state().target,
                    describe_owner(&j)
                )));
            }
            crate::terminal::say(&format!(
                "warning: --force: {} will find its groups restored under it",
                j.state().owner
            ));
        }
        if forget {
            j.forget("dropped with `infra restore --forget`")?;
            crate::outln!(
                "forgot the journal for {} (nothing restored)",
                j.state().target
            );
            continue;
        }
        let report = j.restore(scaler as &dyn Scaler, restore_budget()).await;
        for o in &report.restored {
            crate::outln!(
                "restored {:<24} min {} max {} desired {}",
                o.name,
                o.min,
                o.max,
                o.desired
            );
        }
        if !report.complete() {
            crate::terminal::say(&j.failure_message(&report));
            code = exit::INFRA;
        }
    }
    Ok(code)
}
