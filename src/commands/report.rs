//! `trialrunner report DIR`: (re)build `report.html` and `report.md` of a results directory.

use std::path::PathBuf;

use crate::error::{exit, Result};

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The results directory.
    pub dir: PathBuf,
}

/// Builds the report.
pub fn run(args: Args) -> Result<i32> {
    let path = crate::report::build(&args.dir)?;
    println!("report: {}", path.display());
    Ok(exit::OK)
}
