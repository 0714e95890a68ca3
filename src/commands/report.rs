//! `trialrunner report DIR`: (re)build `report.html` and `report.md` of a results directory;
//! with `--refresh-metrics`, pull every run's CloudWatch window again first (datapoints arrive
//! 1–3 minutes late, and a pull that failed during the campaign can be redone).

use std::path::PathBuf;
use std::time::Duration;

use super::{runtime, Global};
use crate::aws::cloudwatch::CloudWatchSource;
use crate::error::{exit, Error, Result};
use crate::results::{self, ResultsDir};
use crate::trial::model::TrialFile;
use crate::{setup, trial};

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The results directory.
    pub dir: PathBuf,
    /// Pull every run's cloud metrics again before building.
    #[arg(long)]
    pub refresh_metrics: bool,
    /// The environment to pull from (default: the file the campaign used).
    #[arg(long, requires = "refresh_metrics")]
    pub env: Option<PathBuf>,
}

/// Pulls again every window of a results directory; returns what is still missing.
async fn refresh(
    dir: &ResultsDir,
    env_file: Option<PathBuf>,
    global: &Global,
) -> Result<Vec<String>> {
    let manifest: serde_json::Value = results::read_json(&dir.root.join("manifest.json"))?;
    let spec: TrialFile = serde_json::from_value(manifest["trial"]["spec"].clone())
        .map_err(|e| Error::Usage(format!("{}: the manifest's trial: {e}", dir.root.display())))?;
    if spec.metrics.is_empty() {
        return Err(Error::Usage(format!(
            "trial `{}` pulls no cloud metrics",
            spec.name
        )));
    }
    let env_file = env_file
        .or_else(|| manifest["environment"]["file"].as_str().map(PathBuf::from))
        .ok_or_else(|| Error::Usage("the manifest names no environment file: pass --env".into()))?;
    let env = trial::load_environment(&env_file)?;
    let ctx = setup::aws_for(&env, &global.setup())
        .await?
        .ok_or_else(|| Error::Usage(format!("{}: no `aws` section", env_file.display())))?;
    let source = CloudWatchSource::new(ctx, env, spec.metrics);
    crate::exec::metrics::settle(&source, dir, Duration::ZERO, true).await
}

/// Builds the report (refreshing the metrics first when asked).
pub fn run(args: Args, global: &Global) -> Result<i32> {
    if !args.refresh_metrics && !args.dir.join("runs").is_dir() {
        // A `metrics pull` directory (cloudwatch.json alone), or an error naming what is missing.
        let path = crate::report::build(&args.dir)?;
        crate::outln!("report: {}", path.display());
        return Ok(exit::OK);
    }
    let dir = ResultsDir::open(&args.dir)?;
    let mut code = exit::OK;
    if args.refresh_metrics {
        let missing = runtime().block_on(refresh(&dir, args.env.clone(), global))?;
        let path = dir.root.join("manifest.json");
        let mut manifest: serde_json::Value = results::read_json(&path)?;
        manifest["partial"] = serde_json::json!(missing);
        if manifest["status"] == "partial" && missing.is_empty() {
            manifest["status"] = "complete".into();
        }
        results::write_json(&path, &manifest)?;
        if !missing.is_empty() {
            crate::terminal::say(&format!("still missing: {}", missing.join("; ")));
            code = exit::PARTIAL;
        }
    }
    let path = crate::report::build(&dir.root)?;
    crate::outln!("report: {}", path.display());
    Ok(code)
}
