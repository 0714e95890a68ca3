//! `trialrunner stores count|clear --env ENV`: the stores outside a trial.

use std::path::PathBuf;

use super::{confirm, runtime, Global};
use crate::error::{exit, Error, Result};
use crate::{setup, trial};

/// `stores` sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Print rows per table.
    Count {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
    },
    /// Delete every row (the environment must say `disposable: true`).
    Clear {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

/// Counts or clears.
pub fn run(action: Action, global: &Global) -> Result<i32> {
    let (env_file, clear, yes) = match action {
        Action::Count { env } => (env, false, false),
        Action::Clear { env, yes } => (env, true, yes),
    };
    let env = trial::load_environment(&env_file)?;
    let rt = runtime();
    let aws = if setup::stores_need_aws(&env) || (clear && env.spec.aws.is_some()) {
        rt.block_on(setup::aws_for(&env, &global.setup()))?
    } else {
        None
    };
    let (driver, _) = setup::stores_for(&env, aws.as_ref())?;
    let driver = driver.ok_or_else(|| {
        Error::Usage(format!(
            "{}: the environment names no stores",
            env_file.display()
        ))
    })?;
    if clear {
        if !env.spec.stores.as_ref().is_some_and(|s| s.disposable) {
            return Err(Error::Usage(format!(
                "{}: stores.disposable is not true: clearing is refused",
                env_file.display()
            )));
        }
        confirm(
            &format!(
                "clear every store of environment `{}` ({})",
                env.spec.name,
                driver.describe()
            ),
            yes,
        )?;
    }
    let counts = rt.block_on(async {
        if clear {
            driver.clear().await
        } else {
            driver.count().await
        }
    })?;
    for (table, n) in &counts {
        crate::outln!("{table:<16} {n}");
    }
    if clear {
        crate::outln!("(counts before clearing)");
    }
    Ok(exit::OK)
}
