//! `trialrunner infra status|restore --env ENV`: the ASGs beside the undo journal's originals,
//! and the replay of a journal a crashed trial left.

use std::path::PathBuf;

use super::{runtime, Global};
use crate::aws::scaler::{services_of, AwsScaler};
use crate::error::{exit, Error, Result};
use crate::exec::journal::UndoJournal;
use crate::provider::Scaler;
use crate::{setup, trial};

/// `infra` sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Current ASG settings beside the journal's originals.
    Status {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
    },
    /// Put the ASGs back as the pending journal recorded them (idempotent).
    Restore {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
    },
}

/// Shows or restores.
pub fn run(action: Action, global: &Global) -> Result<i32> {
    let (env_file, restore) = match action {
        Action::Status { env } => (env, false),
        Action::Restore { env } => (env, true),
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
        let scaler = AwsScaler::new(ctx, services_of(&env));
        let pending = UndoJournal::load_pending(&env.spec.name)?;
        if restore {
            match pending {
                None => println!(
                    "nothing to restore: no pending journal for `{}`",
                    env.spec.name
                ),
                Some(mut j) => {
                    j.restore(&scaler).await?;
                    for o in &j.state().original {
                        println!(
                            "restored {:<24} min {} max {} desired {}",
                            o.name, o.min, o.max, o.desired
                        );
                    }
                }
            }
            return Ok(());
        }
        println!(
            "{:<24} {:>5} {:>5} {:>8}   journal (original)",
            "asg", "min", "max", "desired"
        );
        for svc in services_of(&env) {
            let orig = pending.as_ref().and_then(|j| {
                j.state()
                    .original
                    .iter()
                    .find(|o| o.name == svc.asg)
                    .cloned()
            });
            let note = orig
                .map(|o| format!("{} {} {}", o.min, o.max, o.desired))
                .unwrap_or_else(|| "-".into());
            match scaler.snapshot(&[svc.role]).await {
                Ok(c) => println!(
                    "{:<24} {:>5} {:>5} {:>8}   {note}",
                    c[0].name, c[0].min, c[0].max, c[0].desired
                ),
                Err(e) => println!("{:<24} {e}", svc.asg),
            }
        }
        if let Some(d) = &env.spec.deployment {
            let instances = scaler.tagged_instances(d).await?;
            println!(
                "\n{} instance(s) tagged veraison-deployment={d}:",
                instances.len()
            );
            for (id, name, state) in instances {
                println!("  {id:<22} {name:<14} {state}");
            }
        }
        if pending.is_some() {
            println!(
                "a journal is pending: run `trialrunner infra restore --env {}`",
                env_file.display()
            );
        }
        Ok::<_, Error>(())
    })?;
    Ok(exit::OK)
}
