//! `trialrunner dashboard --env ENV --trial TRIAL`: write a CloudWatch dashboard with the
//! trial's client figures (what `publish: [cloudwatch]` puts) and the deployment's series the
//! trial names, on one time axis.

use std::path::PathBuf;

use super::{runtime, Global};
use crate::aws::{cloudwatch, console};
use crate::error::{exit, Error, Result};
use crate::{setup, trial};

/// Arguments of `dashboard`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment file (its `aws` section says where).
    #[arg(long)]
    pub env: PathBuf,
    /// The trial whose figures it shows.
    #[arg(long)]
    pub trial: PathBuf,
}

/// Writes the dashboard and says its name.
pub fn run(args: Args, global: &Global) -> Result<i32> {
    let t = trial::load_trial(&args.trial, Some(&args.env))?;
    runtime().block_on(async {
        let ctx = setup::aws_for(&t.env, &global.setup()).await?.ok_or_else(|| {
            Error::Usage(format!(
                "{}: no `aws` section: a CloudWatch dashboard needs the environment's account and region",
                args.env.display()
            ))
        })?;
        let deployment = if t.spec.metrics.is_empty() {
            Vec::new()
        } else {
            let resources = cloudwatch::resolve(&ctx, &t.env).await?;
            cloudwatch::queries(&t.spec.metrics, &resources)
        };
        let name = console::name(&t.spec.name, &t.env.spec.name);
        let region = ctx.region();
        let body = console::body(&t.spec.name, &t.env.spec.name, &region, &deployment);
        console::put(&ctx, &name, &body).await?;
        crate::outln!(
            "dashboard {name}: the client's figures and {} deployment series\nhttps://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards/dashboard/{name}",
            deployment.len()
        );
        Ok(exit::OK)
    })
}
