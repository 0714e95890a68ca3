//! `trialrunner compare BASE CONTENDER`: per-endpoint deltas; exit 1 when a threshold breaks.

use std::path::PathBuf;

use crate::error::{exit, Result};
use crate::report;

/// Arguments of `compare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Baseline results directory.
    pub base: PathBuf,
    /// Contender results directory.
    pub contender: PathBuf,
    /// Thresholds (YAML list, e.g. `- verify p95 < 800ms`, `- "* p95 +10%"`).
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write compare.html here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// Compares and gates.
pub fn run(args: Args) -> Result<i32> {
    let list = match &args.thresholds {
        Some(f) => report::compare::read_thresholds(f)?,
        None => Vec::new(),
    };
    let c = report::compare::compare(&args.base, &args.contender, &list)?;
    crate::out!("{}", c.table());
    if let Some(j) = &args.junit {
        crate::results::write_atomic(j, c.junit().as_bytes())?;
    }
    if let Some(h) = &args.html {
        let page = report::comparison_page(&args.base, &args.contender, &c)?;
        crate::results::write_atomic(h, page.html()?.as_bytes())?;
        crate::outln!("comparison: {}", h.display());
    }
    Ok(if c.passed() {
        exit::OK
    } else {
        exit::CHECKS_FAILED
    })
}
