//! The arguments of `run`, in a module of their own: `run` hands a trial with variants to
//! `variants`, which runs each variant's campaign with a copy of them (its own folder), so both
//! read them and neither imports the other for them.

use std::path::PathBuf;

/// Arguments of `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The trial file.
    pub trial: PathBuf,
    /// Environment file instead of the one the trial names.
    #[arg(long)]
    pub env: Option<PathBuf>,
    /// Results directory (default results/<trial>-<UTC time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the campaign in this results directory: completed runs are kept. Refused while
    /// the campaign still runs.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// With --resume: take the campaign over from a process on another host whose lease on the
    /// deployment still runs (only once you know it has ended).
    #[arg(long, requires = "resume")]
    pub force: bool,
    /// Do not ask before clearing stores.
    #[arg(long)]
    pub yes: bool,
    /// Gate: compare with this baseline results directory after the run.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Thresholds for the gate (YAML list); the trial's own `thresholds` are checked too.
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
    /// Write the gate's result as JUnit XML.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Append one line per run to this history file (default: history.jsonl beside the results).
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// The live dashboard.
    #[command(flatten)]
    pub live: super::live::DashboardArgs,
}
