//! `trialrunner iam-policy TRIAL --env ENV`: print the least-privilege IAM policy (JSON) for
//! exactly what a campaign of that trial does in that environment.

use std::path::PathBuf;

use crate::error::{exit, Result};
use crate::{iam, trial};

/// Arguments of `iam-policy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The trial file.
    pub trial: PathBuf,
    /// Environment file instead of the one the trial names.
    #[arg(long)]
    pub env: Option<PathBuf>,
    /// Where results and history go on S3 (`s3://bucket/prefix`, the root the campaigns' `--out`
    /// and `--history` are under; default: the environment's `results` when on S3): objects and
    /// listing granted under that prefix only.
    #[arg(long)]
    pub results: Option<PathBuf>,
}

/// Prints the policy document on stdout (nothing when the campaign calls no AWS API).
pub fn run(args: Args) -> Result<i32> {
    let t = trial::load_trial(&args.trial, args.env.as_deref())?;
    let mut policy = iam::policy_for(&t)?;
    let from_env = t
        .env
        .spec
        .results
        .as_ref()
        .filter(|r| r.starts_with("s3://"))
        .map(PathBuf::from);
    if let Some(r) = args.results.as_ref().or(from_env.as_ref()) {
        let location = crate::aws::results::location_of(r, "--results")?.ok_or_else(|| {
            crate::error::Error::Usage(format!(
                "--results `{}` is not an S3 location: write s3://bucket/prefix",
                r.display()
            ))
        })?;
        iam::grant_results(&mut policy, &t, &location)?;
    }
    if policy.statements.is_empty() {
        crate::terminal::say(&format!(
            "trial `{}` in environment `{}` calls no AWS API: it needs no IAM permissions",
            t.spec.name, t.env.spec.name
        ));
        return Ok(exit::OK);
    }
    let text = serde_json::to_string_pretty(&policy.document()).expect("a JSON value prints");
    crate::outln!("{text}");
    Ok(exit::OK)
}
