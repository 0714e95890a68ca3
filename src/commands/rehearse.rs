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
    /// The whole rehearsal of the 2025 campaign into this results root, against the emulator
    /// of `--aws-endpoint` and the PostgreSQL of `--postgres` (see `scripts/rehearse`): the
    /// deployment, its twin, every trial of trials/rehearsal with its report, Trial 1 against
    /// Trial 2.
    #[arg(long, requires = "postgres", conflicts_with_all = ["env", "twin"])]
    pub campaign: Option<PathBuf>,
    /// With `--campaign`: only this trial of the rehearsal (by name, e.g.
    /// `rehearsal-warm-pool`; repeat for more).
    #[arg(long, requires = "campaign", value_name = "TRIAL")]
    pub only: Vec<String>,
    /// Print the `max_connections` the rehearsal's PostgreSQL must run with, and exit.
    #[arg(long, exclusive = true)]
    pub print_max_connections: bool,
    /// The rehearsal environment file (with `--twin`, or to seed CloudWatch).
    #[arg(long, required_unless_present_any = ["campaign", "print_max_connections"])]
    pub env: Option<PathBuf>,
    /// Hours of CloudWatch series to seed ahead (without `--twin`; the twin publishes what
    /// happened instead).
    #[arg(long, default_value_t = 2.0)]
    pub hours: f64,
    /// Then serve the deployment's twin here until stopped: one stand-in per instance of the
    /// emulated groups behind a load balancer on this address (point the services' URLs at it).
    #[arg(long)]
    pub twin: Option<std::net::SocketAddr>,
    /// The twin's instances keep their K-V store in this PostgreSQL database, each through
    /// sessions of its own, so the server's `max_connections` decides when they run out
    /// (default: memory).
    #[arg(long)]
    pub postgres: Option<String>,
    /// One instance's capacity, `WORKERSxSERVICE` (default: the rehearsal campaign's, 2x80ms).
    #[arg(long, requires = "twin", value_parser = parse_capacity)]
    pub capacity: Option<crate::standin::faults::InstanceCapacity>,
    /// How long a launched instance is Pending before it is routed to.
    #[arg(long, requires = "twin", value_parser = humantime::parse_duration)]
    pub spin_up: Option<std::time::Duration>,
    /// After that, how long its VTS is not up (its requests fail).
    #[arg(long, requires = "twin", value_parser = humantime::parse_duration)]
    pub not_ready: Option<std::time::Duration>,
    /// The span over which the groups' scaling policies judge their metric (AWS: 1m).
    #[arg(long, requires = "twin", value_parser = humantime::parse_duration)]
    pub policy_window: Option<std::time::Duration>,
    /// Without `--postgres`: the database's max_connections, counted; connections past it
    /// fail with "too many clients".
    #[arg(long, requires = "twin", conflicts_with = "postgres")]
    pub db_max_connections: Option<usize>,
    /// Connections each instance's pool opens at most (default 0: no limit, as Go's).
    #[arg(long, requires = "twin")]
    pub db_pool: Option<usize>,
    /// Connections each instance keeps open between requests (default 2, as Go's).
    #[arg(long, requires = "twin")]
    pub db_idle: Option<usize>,
    /// Also serve the emulator as the twin's instances are (Pending while they spin up) on
    /// this address: point the environment's `aws.endpoint` there, and deploy with
    /// `--aws-endpoint` naming the emulator itself.
    #[arg(long, requires = "twin")]
    pub aws_view: Option<std::net::SocketAddr>,
    /// The live dashboard of `--campaign` (each trial in turn).
    #[command(flatten)]
    pub live: super::live::DashboardArgs,
}

/// `4x10ms`: workers and service time.
fn parse_capacity(
    s: &str,
) -> std::result::Result<crate::standin::faults::InstanceCapacity, String> {
    let (w, t) = s
        .split_once('x')
        .ok_or_else(|| format!("`{s}`: write WORKERSxSERVICE, e.g. 4x10ms"))?;
    let workers: usize = w
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{w}` is not a number of workers"))?;
    let service = humantime::parse_duration(t.trim()).map_err(|e| format!("`{t}`: {e}"))?;
    Ok(crate::standin::faults::InstanceCapacity::new(
        workers, service,
    ))
}

/// The whole rehearsal: one line per trial at the end, exit 0 only when every trial completed.
fn campaign(out: &std::path::Path, args: &Args, global: &Global) -> Result<i32> {
    let emulator = global.aws_endpoint.clone().ok_or_else(|| {
        Error::Usage("rehearse --campaign: give the emulator with --aws-endpoint URL".into())
    })?;
    let opts = crate::rehearsal::campaign::RehearsalOptions {
        emulator,
        postgres: args.postgres.clone().unwrap_or_default(),
        out: crate::results::absolute(out),
        progress: true,
        only: args.only.clone(),
    };
    let live = args.live.addr()?;
    let interrupts = crate::exec::Interrupts::default();
    let outcome = runtime().block_on(async {
        crate::exec::signals::watch(&interrupts);
        let dashboard = super::live::start(live).await?;
        let outcome =
            crate::rehearsal::campaign::run_watched(&opts, &interrupts, dashboard.as_ref()).await;
        let reports = outcome
            .as_ref()
            .map(|o| o.trials.iter().filter_map(|t| t.report.clone()).collect())
            .unwrap_or_default();
        super::live::finish(dashboard, reports).await;
        outcome
    })?;
    crate::outln!("\nrehearsal: {}", opts.out.display());
    let mut failed = false;
    for t in &outcome.trials {
        match (&t.error, &t.report) {
            (None, Some(r)) => crate::outln!("  ✓ {:<32} {}", t.name, r.display()),
            (Some(e), _) => {
                failed = true;
                crate::outln!("  ✗ {:<32} {e}", t.name)
            }
            (None, None) => crate::outln!("  ? {:<32} no report", t.name),
        }
    }
    if let Some(c) = &outcome.compare {
        crate::outln!("  Trial 1 against Trial 2: {}", c.display());
    }
    if interrupts.soft.is_cancelled() {
        return Ok(interrupts.exit_code());
    }
    Ok(if failed {
        exit::CHECKS_FAILED
    } else {
        exit::OK
    })
}

/// Deploys and seeds, serves the twin, or runs the whole rehearsal.
pub fn run(args: Args, global: &Global) -> Result<i32> {
    if args.print_max_connections {
        crate::outln!("{}", crate::rehearsal::campaign::POSTGRES_MAX_CONNECTIONS);
        return Ok(exit::OK);
    }
    if let Some(out) = &args.campaign {
        return campaign(out, &args, global);
    }
    let env = trial::load_environment(args.env.as_deref().expect("clap requires --env"))?;
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
        if args.twin.is_none() {
            let n = crate::rehearsal::seed_cloudwatch(&ctx, &all, &resources, args.hours).await?;
            crate::outln!(
                "deployment `{d}` ready in {}; {n} CloudWatch datapoints seeded",
                ctx.endpoint
            );
        } else {
            crate::outln!(
                "deployment `{d}` ready in {}; its CloudWatch series will come from the twin",
                ctx.endpoint
            );
        }
        let Some(listen) = args.twin else {
            return Ok::<_, Error>(());
        };
        // The rehearsal campaign's twin, unless a flag says otherwise.
        let mut config = crate::rehearsal::campaign::twin_config();
        config.deployment = d.clone();
        config.release = env.release.clone();
        if let Some(c) = args.capacity {
            config.capacity = Some(c);
        }
        config.spin_up = args.spin_up.unwrap_or(config.spin_up);
        config.not_ready = args.not_ready.unwrap_or(config.not_ready);
        config.policy_window = args.policy_window.unwrap_or(config.policy_window);
        config.resources = Some(resources);
        config.db_max_connections = args.db_max_connections;
        config.db_pool = args.db_pool.unwrap_or(config.db_pool);
        config.db_idle = args.db_idle.unwrap_or(config.db_idle);
        config.postgres = args.postgres.clone();
        config.aws_view = args.aws_view;
        let store = match &args.postgres {
            Some(conninfo) => crate::standin::store::KvStore::postgres(conninfo, 4)
                .await
                .map_err(|e| Error::Infra(e.to_string()))?,
            None => crate::standin::store::KvStore::memory(),
        };
        let twin = crate::rehearsal::twin::Twin::start(&ctx, listen, config.clone(), store).await?;
        crate::outln!(
            "twin of `{d}` at {} ({} instances; each {}; spin-up {:?}, then {:?} not ready; policies judged every {:?}); Ctrl-C stops it",
            twin.url(),
            twin.instances().len(),
            config
                .capacity
                .map(|c| format!("{} workers x {:?} = {:.0} requests/s", c.workers, c.service, c.per_second()))
                .unwrap_or_else(|| "unbounded".into()),
            config.spin_up,
            config.not_ready,
            config.policy_window
        );
        if let Some(view) = &twin.aws_view {
            crate::outln!("the emulator as the instances are: {}", view.url());
        }
        let _ = tokio::signal::ctrl_c().await;
        Ok::<_, Error>(())
    })?;
    Ok(exit::OK)
}
