//! `trialrunner metrics pull`: CloudWatch metrics for a window outside a trial.

use std::path::PathBuf;

use super::{runtime, Global};
use crate::error::{exit, Error, Result};
use crate::trial::model::MetricName;
use crate::{setup, trial};

/// `metrics` sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Pull the named metric sets for [FROM, TO] into DIR/cloudwatch.json.
    Pull {
        /// The environment file.
        #[arg(long)]
        env: PathBuf,
        /// Start: RFC 3339 (`2026-11-27T21:00:00Z`) or Unix seconds.
        #[arg(long)]
        from: String,
        /// End: RFC 3339 or Unix seconds.
        #[arg(long)]
        to: String,
        /// Metric sets (default: all).
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<String>,
        /// Where cloudwatch.json goes.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

/// Parses RFC 3339 or Unix seconds.
pub fn parse_time(s: &str) -> Result<f64> {
    s.parse::<f64>()
        .ok()
        .filter(|t| t.is_finite())
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp() as f64)
        })
        .ok_or_else(|| {
            Error::Usage(format!(
                "`{s}` is not a time: use RFC 3339 (2026-11-27T21:00:00Z) or Unix seconds"
            ))
        })
}

/// Every metric set, in a stable order.
pub const ALL_METRICS: [MetricName; 10] = [
    MetricName::AsgInstances,
    MetricName::AsgCpu,
    MetricName::RdsConnections,
    MetricName::RdsCpu,
    MetricName::RdsIo,
    MetricName::Cache,
    MetricName::AlbRequests,
    MetricName::Alb5xx,
    MetricName::TargetHealth,
    MetricName::ErrorLogs,
];

/// Pulls one window.
pub fn run(action: Action, global: &Global) -> Result<i32> {
    let Action::Pull {
        env,
        from,
        to,
        metrics,
        out,
    } = action;
    let (from, to) = (parse_time(&from)?, parse_time(&to)?);
    if to <= from {
        return Err(Error::Usage("--to must be after --from".into()));
    }
    let names: Vec<MetricName> = if metrics.is_empty() {
        ALL_METRICS.to_vec()
    } else {
        metrics
            .iter()
            .map(|m| {
                serde_yaml::from_str::<MetricName>(m)
                    .map_err(|_| Error::Usage(format!("unknown metric set `{m}`")))
            })
            .collect::<Result<_>>()?
    };
    let env = trial::load_environment(&env)?;
    runtime().block_on(async {
        let ctx = setup::aws_for(&env, &global.setup())
            .await?
            .ok_or_else(|| Error::Usage("the environment has no `aws` section".into()))?;
        let source = crate::aws::cloudwatch::CloudWatchSource::new(ctx, env.clone(), names);
        std::fs::create_dir_all(&out)
            .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
        crate::provider::MetricsSource::pull(&source, from, to, &out).await
    })?;
    crate::outln!("wrote {}", out.join("cloudwatch.json").display());
    let page = crate::report::build(&out)?;
    crate::outln!("report: {}", page.display());
    Ok(exit::OK)
}
