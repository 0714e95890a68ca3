//! `trialrunner plan TRIAL [--env ENV]`: the steps, their order and the expected time, then
//! what the trial will change: the account, region and endpoint, every auto-scaling group with
//! its current and planned capacity, the database and cache it will clear, the environment file
//! it bound. It changes nothing: the current settings are read (read-only calls) unless
//! `--offline`.

use std::path::PathBuf;

use super::{runtime, Global};
use crate::aws::scaler::{services_of, AwsScaler};
use crate::aws::{AwsContext, AwsTimeouts};
use crate::error::{exit, Result};
use crate::provider::Scaler;
use crate::trial::{self, plan::Changes};

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
    /// Do not read the current settings from AWS.
    #[arg(long)]
    pub offline: bool,
}

/// Fills in whose credentials these are and the groups' current settings (read-only).
async fn read_current(t: &trial::Trial, changes: &mut Changes, global: &Global) {
    let Some(spec) = &t.env.spec.aws else { return };
    let ctx = match AwsContext::load(spec, global.aws_endpoint.as_deref(), AwsTimeouts::default())
        .await
    {
        Ok(ctx) => ctx,
        Err(e) => {
            changes.credentials = Some(format!("not checked: {e}"));
            for g in &mut changes.groups {
                g.note = Some("no AWS access".into());
            }
            return;
        }
    };
    changes.credentials = Some(match ctx.check_account().await {
        Ok(()) => format!("for account {} (the environment's)", ctx.account),
        Err(e) => format!("REFUSED: {e}"),
    });
    let scaler = AwsScaler::new(ctx, services_of(&t.env));
    for g in &mut changes.groups {
        match scaler.snapshot(&[g.service]).await {
            Ok(s) => g.current = s.first().map(|s| (s.min, s.max, s.desired)),
            Err(e) => g.note = Some(e.to_string()),
        }
        if g.settings.is_empty() || g.note.is_some() {
            continue;
        }
        match scaler.read_settings(g.service).await {
            Ok(now) => {
                for c in &mut g.settings {
                    c.before = Some(now.describe(&c.setting));
                }
            }
            Err(e) => g.note = Some(e.to_string()),
        }
    }
}

/// Prints the plan and what it changes (for a trial with variants: what each variant changes).
pub fn run(args: Args, global: &Global) -> Result<i32> {
    let t = trial::load_trial(&args.trial, args.env.as_deref())?;
    let p = trial::plan(&t);
    let mut changes = trial::plan::changes(&t);
    if let Some(fleet) = t.env.spec.generators.as_ref().and_then(|g| g.aws.as_ref()) {
        changes.ships = Some(crate::fleet::aws::shipped(fleet));
    }
    let mut variants = Vec::new();
    for v in &t.variants {
        let under = t.under(v);
        variants.push((
            v.name.clone(),
            trial::plan(&under),
            trial::plan::changes(&under),
        ));
    }
    if !args.offline {
        runtime().block_on(async {
            read_current(&t, &mut changes, global).await;
            for (_, _, c) in &mut variants {
                read_current(&t, c, global).await;
            }
        });
    }
    if args.json {
        let mut doc = serde_json::json!({"plan": p, "changes": changes});
        if !variants.is_empty() {
            doc["variants"] = variants
                .iter()
                .map(|(name, plan, changes)| {
                    serde_json::json!({"name": name, "plan": plan, "changes": changes})
                })
                .collect();
        }
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("plan serializes")
        );
    } else if variants.is_empty() {
        crate::outln!("{p}\n\n{changes}");
    } else {
        crate::outln!(
            "{} variants, run in turn, each restored before the next (results in <out>/<variant>/):",
            variants.len()
        );
        for (name, plan, changes) in &variants {
            crate::outln!("\n=== variant {name} ===\n{plan}\n\n{changes}");
        }
    }
    Ok(exit::OK)
}
