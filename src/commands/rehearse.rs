//! `trialrunner rehearse --env ENV`: a Veraison-shaped deployment in a local AWS emulator, with
//! CloudWatch series seeded.

use std::path::PathBuf;

use super::{runtime, Global};
use crate::error::{exit, Error, Result};
use crate::trial::model::MetricName;
use crate::{setup, trial};

/// Arguments of `rehearse`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The rehearsal environment file.
    #[arg(long)]
    pub env: PathBuf,
    /// Hours of CloudWatch series to seed ahead.
    #[arg(long, default_value_t = 2.0)]
    pub hours: f64,
}

/// Deploys and seeds.
pub fn run(args: Args, global: &Global) -> Result<i32> {
    let env = trial::load_environment(&args.env)?;
    let d = env
        .spec
        .deployment
        .clone()
        .ok_or_else(|| Error::Usage("the rehearsal environment needs `deployment`".into()))?;
    runtime().block_on(async {
        let ctx = setup::aws_for(&env, &global.setup())
            .await?
            .ok_or_else(|| {
                Error::Usage("the rehearsal environment needs an `aws` section".into())
            })?;
        crate::rehearsal::deploy_emulated(&ctx, &d).await?;
        let all = [
            MetricName::AsgInstances,
            MetricName::AsgCpu,
            MetricName::RdsConnections,
            MetricName::RdsCpu,
            MetricName::RdsIo,
            MetricName::AlbRequests,
            MetricName::Alb5xx,
            MetricName::TargetHealth,
        ];
        let resources = crate::aws::cloudwatch::resolve(&ctx, &env).await?;
        let n = crate::rehearsal::seed_cloudwatch(&ctx, &all, &resources, args.hours).await?;
        println!(
            "deployment `{d}` ready in {}; {n} CloudWatch datapoints seeded",
            ctx.endpoint
        );
        Ok::<_, Error>(())
    })?;
    Ok(exit::OK)
}
