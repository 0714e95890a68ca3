//! `trialrunner plan TRIAL [--env ENV]`: print the steps, their order and the expected time.
//! Touches nothing.

use std::path::PathBuf;

use crate::error::{exit, Result};
use crate::trial;

/// Arguments of `plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The trial file.
    pub trial: PathBuf,
    /// Environment file instead of the one the trial names.
    #[arg(long)]
    pub env: Option<PathBuf>,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints the plan.
pub fn run(args: Args) -> Result<i32> {
    let t = trial::load_trial(&args.trial, args.env.as_deref())?;
    let p = trial::plan(&t);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&p).expect("plan serializes")
        );
    } else {
        println!("{p}");
    }
    Ok(exit::OK)
}
