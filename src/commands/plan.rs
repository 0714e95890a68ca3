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
use crate::trial::database::DatabaseSpec;
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

/// Fills in whose credentials these are and the groups' and the database's current settings
/// (read-only, each call bounded at 15 s: a plan is a quick look); false when something could
/// not be read. `database` is what the trial (or the variant) sets of the database.
async fn read_current(
    t: &trial::Trial,
    changes: &mut Changes,
    database: Option<&DatabaseSpec>,
    global: &Global,
) -> bool {
    let Some(spec) = &t.env.spec.aws else {
        return true;
    };
    let timeouts = AwsTimeouts {
        operation: std::time::Duration::from_secs(15),
        ..AwsTimeouts::default()
    };
    let ctx = match AwsContext::load(spec, global.aws_endpoint.as_deref(), timeouts).await {
        Ok(ctx) => ctx,
        Err(e) => {
            changes.credentials = Some(format!("not checked: {e}"));
            for g in &mut changes.groups {
                g.note = Some("no AWS access".into());
            }
            if let Some(d) = &mut changes.database {
                d.note = Some("no AWS access".into());
            }
            return false;
        }
    };
    if let Err(e) = ctx.check_account().await {
        let e = e.to_string();
        let unreachable = e.contains("could not reach") || e.contains("timed out");
        changes.credentials = Some(if unreachable {
            format!("not checked: {e}")
        } else {
            format!("REFUSED: {e}")
        });
        for g in &mut changes.groups {
            g.note = Some("not read: no AWS access, see credentials".into());
        }
        if let Some(d) = &mut changes.database {
            d.note = Some("not read: no AWS access, see credentials".into());
        }
        return false;
    }
    changes.credentials = Some(format!("for account {} (the environment's)", ctx.account));
    let mut scaler = AwsScaler::new(ctx, services_of(&t.env));
    if let Some(instance) = t.env.rds_instance() {
        scaler = scaler.with_database(
            &instance,
            t.env.spec.deployment.as_deref().unwrap_or_default(),
            &t.spec.name,
        );
    }
    let services: Vec<_> = changes.groups.iter().map(|g| g.service).collect();
    let reads = services
        .iter()
        .map(|service| scaler.snapshot(std::slice::from_ref(service)));
    let mut all_read = true;
    for (g, read) in changes
        .groups
        .iter_mut()
        .zip(futures::future::join_all(reads).await)
    {
        match read {
            Ok(s) => g.current = s.first().map(|s| (s.min, s.max, s.desired)),
            Err(e) => {
                g.note = Some(e.to_string());
                all_read = false;
            }
        }
        if g.settings.is_empty() || g.note.is_some() {
            continue;
        }
        let launch = g
            .settings
            .iter()
            .any(|c| c.setting == "instance-type" || c.setting == "launch-template");
        match scaler.read_settings(g.service, launch).await {
            Ok(now) => {
                for c in &mut g.settings {
                    c.before = Some(now.describe(&c.setting));
                }
            }
            Err(e) => {
                g.note = Some(e.to_string());
                all_read = false;
            }
        }
    }
    if let (Some(spec), Some(d)) = (database, &mut changes.database) {
        match scaler.read_database(spec).await {
            Ok(now) => {
                for c in &mut d.settings {
                    c.before = Some(now.describe(&c.setting));
                }
            }
            Err(e) => {
                d.note = Some(e.to_string());
                all_read = false;
            }
        }
    }
    all_read
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
            under.spec.infra.database.clone(),
        ));
    }
    eprintln!(
        "plan: environment `{}` from {}{}",
        t.env.spec.name,
        changes.environment_file.display(),
        if args.env.is_some() {
            " (--env)".to_string()
        } else {
            " (the one the trial names; --env FILE for another)".to_string()
        }
    );
    let read_all = args.offline
        || runtime().block_on(async {
            let mut all =
                read_current(&t, &mut changes, t.spec.infra.database.as_ref(), global).await;
            for (_, _, c, db) in &mut variants {
                all &= read_current(&t, c, db.as_ref(), global).await;
            }
            all
        });
    if args.json {
        let mut doc = serde_json::json!({"plan": p, "changes": changes});
        if !variants.is_empty() {
            doc["variants"] = variants
                .iter()
                .map(|(name, plan, changes, _)| {
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
        for (name, plan, changes, _) in &variants {
            crate::outln!("\n=== variant {name} ===\n{plan}\n\n{changes}");
        }
    }
    if !read_all {
        eprintln!(
            "plan: the current settings could not be read from AWS (above); exit 3 (--offline plans without them)"
        );
        return Ok(exit::INFRA);
    }
    Ok(exit::OK)
}
