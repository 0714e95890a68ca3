//! The rehearsal's twin of a Veraison deployment: one stand-in per instance of each emulated
//! auto-scaling group (as the AWS emulator lists them), behind a local load balancer that
//! routes each service's requests only to its instances that have finished spinning up. Each
//! instance has a bounded capacity (workers × service time, as a small EC2 instance has), and
//! all share the deployment's store, session cache and EAR key. Pinning a group to 1 or to 3
//! therefore changes what the client sees, as it does on AWS; an instance the group launches
//! mid-run is Pending for its spin-up, then answers 500 while its VTS is not up, then serves.
//!
//! The groups' target-tracking policies (read from the emulator) are acted out: every policy
//! window the twin measures the policy's metric from what its instances served (requests per
//! target, or CPU as the share of the instances' workers busy) and sets the group's desired
//! capacity in the emulator as AWS would (`ceil(desired × metric / target)` within min..max,
//! out at once, in after a few windows below target); the instances then launch with their
//! spin-up. A group's warm pool and its target group's health-check path shape each join
//! ([`super::join`]): an instance from the pool starts in seconds, and a readiness path keeps a
//! not-ready instance out of the balancer. An instance's type (as the emulator launched it, from
//! the group's launch template) scales its capacity by its vCPUs ([`super::sizes`]), so a trial
//! that changes the instance type sees its effect.
//!
//! CloudWatch series come from what happened, never seeded: every `publish_every` the twin
//! puts into the emulator, timestamped with the current UTC minute, the groups' instance counts
//! (in service = routable, pending = still spinning up), the instances' CPU (workers busy), and
//! per target group the requests and 5xx answers the balancer passed (as deltas, summed by the
//! minute's `Sum`) and the healthy hosts (routable and ready).
//!
//! The database is one. Each instance pools its connections as VTS's `database/sql` does
//! ([`crate::standin::pool`]): opened on demand (at most `db_pool`), `db_idle` kept
//! between requests, the rest closed. With `postgres` they are real sessions on that server,
//! so its own `max_connections` refuses the one too many with "sorry, too many clients
//! already", under load, as the 2025 campaign saw; without a server, `db_max_connections`
//! counts them alike, and the count's limit follows the emulated RDS instance's
//! `max_connections` ([`database`]: what a trial's `infra.database.max-connections` sets).
//! The 5xx answers' messages go to the services' log groups, one stream per instance, where
//! the campaign's error-log counts find them; RDS `DatabaseConnections` is what the server's
//! `pg_stat_activity` lists (or the count).
//!
//! A provider for `rehearse` and the tests only: nothing in a campaign's path depends on it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

mod database;
mod policy;

use crate::aws::{sdk_error, AwsContext};
use crate::error::{Error, Result};
pub use crate::results::twin::{InstanceRecord, TwinModel, TwinObservations, TwinSecond};
use crate::standin::faults::{Faults, InstanceCapacity};
use crate::standin::pool::{DbAccount, Opener, SessionPool};
use crate::standin::store::KvStore;
use crate::standin::{Cluster, Standin, StandinConfig};
use crate::trial::model::ServiceRole;
use crate::veraison::release::ReleaseProfile;

/// The twin's knobs: set them to resemble the deployment before the first AWS run.
#[derive(Debug, Clone)]
pub struct TwinConfig {
    /// The deployment name `D` (groups `D-prov-asg`, `D-verif-asg`).
    pub deployment: String,
    /// The release the instances speak.
    pub release: ReleaseProfile,
    /// What one instance serves (none: as much as this machine can).
    pub capacity: Option<InstanceCapacity>,
    /// The instance type `capacity` describes; instances of other types serve in proportion
    /// to their vCPUs (default `t2.micro`, the emulated deployment's).
    pub capacity_type: String,
    /// How long a newly launched instance is Pending (not routed to).
    pub spin_up: Duration,
    /// Pending of an instance taken from a Running warm pool (see [`super::join`]).
    pub warm_running: Duration,
    /// Pending of an instance taken from a Stopped or Hibernated warm pool.
    pub warm_stopped: Duration,
    /// After that, how long its VTS is not up (its requests fail, as the 2025 campaign saw).
    pub not_ready: Duration,
    /// How often the groups are read from the emulator.
    pub poll: Duration,
    /// The span over which a group's scaling policy judges its metric (AWS: one minute).
    pub policy_window: Duration,
    /// Windows below target before a group scales in (scale-out is at once).
    pub scale_in_after: u32,
    /// How often the derived CloudWatch series are put into the emulator (none: never).
    pub publish_every: Option<Duration>,
    /// The deployment's target groups and load balancer, as CloudWatch names them
    /// (`resolve` finds them); without them no ELB series are published.
    pub resources: Option<crate::aws::cloudwatch::Resources>,
    /// The instances' database: real sessions on this PostgreSQL server (`conninfo`), whose
    /// own `max_connections` decides when they run out.
    pub postgres: Option<String>,
    /// Without `postgres`: the database's `max_connections`, counted (none, and no server:
    /// connections never run out).
    pub db_max_connections: Option<usize>,
    /// Connections each instance's pool opens at most (0: no limit, Go's default).
    pub db_pool: usize,
    /// Connections each instance keeps open between requests (Go's default: 2).
    pub db_idle: usize,
    /// Also serve the emulator as the instances are (see [`super::view`]) on this address.
    pub aws_view: Option<SocketAddr>,
}

impl TwinConfig {
    /// Defaults for `D`: 4 workers × 10 ms per instance (400 requests/s, where the 2025
    /// campaign saw throughput flatten), 20 s spin-up, 10 s before VTS is up, 0.5 s polls.
    pub fn new(deployment: &str) -> TwinConfig {
        TwinConfig {
            deployment: deployment.to_string(),
            release: ReleaseProfile::parse("v0.0.2602").expect("known release"),
            capacity: Some(InstanceCapacity::new(4, Duration::from_millis(10))),
            capacity_type: "t2.micro".into(),
            spin_up: Duration::from_secs(20),
            warm_running: Duration::from_secs(2),
            warm_stopped: Duration::from_secs(5),
            not_ready: Duration::from_secs(10),
            poll: Duration::from_millis(500),
            policy_window: Duration::from_secs(60),
            scale_in_after: 3,
            publish_every: Some(Duration::from_secs(5)),
            resources: None,
            postgres: None,
            db_max_connections: None,
            db_pool: 0,
            db_idle: 2,
            aws_view: None,
        }
    }
}

/// One emulated instance.
struct Instance {
    id: String,
    role: ServiceRole,
    /// Its EC2 instance type, as the emulator launched it.
    instance_type: Option<String>,
    /// What it serves (its type's share), when the twin models capacity.
    capacity: Option<InstanceCapacity>,
    standin: Standin,
    /// When the load balancer starts routing to it.
    routable_at: Instant,
    /// Requests the balancer sent it.
    routed: AtomicUsize,
    /// Of which answered 5xx.
    failed: AtomicUsize,
    /// When its VTS is up (after `routable_at`).
    ready_at: Instant,
    /// Its database connections, when the twin has a database to count.
    db: Option<Arc<SessionPool>>,
}

/// A 5xx answer's message, for the service's log group.
struct LogLine {
    role: ServiceRole,
    instance: String,
    at_ms: i64,
    message: String,
}

struct TwinState {
    instances: Mutex<Vec<Arc<Instance>>>,
    /// One reconciliation at a time (the follow loop and the emulator's view both ask).
    reconciling: tokio::sync::Mutex<()>,
    /// 5xx messages not yet put into the log groups (bounded).
    log_lines: Mutex<Vec<LogLine>>,
    next: AtomicUsize,
    client: reqwest::Client,
    /// The counted database (without a PostgreSQL server).
    db_account: Option<Arc<DbAccount>>,
    /// Every instance the twin has run, gone ones included.
    records: Mutex<Vec<InstanceRecord>>,
    /// Database connections the instances' pools opened, by UTC second.
    pool_opens: Mutex<BTreeMap<i64, u64>>,
    /// Per group, its warm pool's instances taken and not yet replaced.
    warm_pools: Mutex<BTreeMap<String, super::join::PoolLedger>>,
}

/// A running twin: its load balancer's address, and the instances behind it.
pub struct Twin {
    /// The load balancer (point the environment's service URLs here).
    pub addr: SocketAddr,
    /// The emulator as the instances are, when asked for (point `aws.endpoint` here).
    pub aws_view: Option<super::view::AwsView>,
    state: Arc<TwinState>,
    cluster: Cluster,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Twin {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl TwinState {
    /// Adds the connections each instance's pool opened since the last look to this second.
    fn count_pool_opens(&self, seen: &mut BTreeMap<String, usize>) {
        let mut new = 0;
        for i in self.instances.lock().expect("instances lock").iter() {
            let now = i.db.as_ref().map_or(0, |p| p.opened());
            let before = seen.insert(i.id.clone(), now).unwrap_or(0);
            new += now.saturating_sub(before);
        }
        if new > 0 {
            let second = crate::results::unix_now().floor() as i64;
            *self
                .pool_opens
                .lock()
                .expect("pool opens lock")
                .entry(second)
                .or_default() += new as u64;
        }
    }

    /// Where an instance stands, if the twin runs it.
    fn phase(&self, id: &str) -> Option<super::view::Phase> {
        let now = Instant::now();
        let instances = self.instances.lock().expect("instances lock");
        let i = instances.iter().find(|i| i.id == id)?;
        Some(if now < i.routable_at {
            super::view::Phase::Pending
        } else if now < i.ready_at {
            super::view::Phase::NotReady
        } else {
            super::view::Phase::Serving
        })
    }
}

/// One line per instance, for people and tests: role, id, routable, requests routed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    /// Its service.
    pub role: ServiceRole,
    /// The EC2 instance id in the emulator.
    pub id: String,
    /// Routed to now.
    pub routable: bool,
    /// Requests routed to it so far.
    pub routed: usize,
    /// Database connections its pool holds open now.
    pub db_connections: usize,
    /// Connections the database refused it so far.
    pub db_refused: usize,
    /// Its EC2 instance type, as the emulator launched it.
    pub instance_type: Option<String>,
    /// Requests it serves at once (its type's share of the twin's capacity), when modelled.
    pub workers: Option<usize>,
}

/// Which service a request is for, by its path (the load balancer's listener rules).
fn role_of(path: &str) -> ServiceRole {
    if path.starts_with("/endorsement-provisioning") || path.ends_with("/provisioning") {
        ServiceRole::Provisioning
    } else {
        ServiceRole::Verification
    }
}

/// InService instances of a group in the emulator.
async fn in_service(ctx: &AwsContext, asg: &str) -> Result<Vec<String>> {
    let out = aws_sdk_autoscaling::Client::new(&ctx.config)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "autoscaling:DescribeAutoScalingGroups", e))?;
    Ok(out
        .auto_scaling_groups()
        .iter()
        .flat_map(|g| g.instances())
        .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect())
}

/// The instance types of these instances in the emulator.
async fn instance_types(ctx: &AwsContext, ids: &[String]) -> Result<BTreeMap<String, String>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let out = aws_sdk_ec2::Client::new(&ctx.config)
        .describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "ec2:DescribeInstances", e))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| {
            Some((
                i.instance_id()?.to_string(),
                i.instance_type()?.as_str().to_string(),
            ))
        })
        .collect())
}

impl Twin {
    /// Reads the deployment's groups, starts an instance for each InService one (those already
    /// running are routable at once), binds the load balancer on `listen`, and follows the
    /// groups every `poll` from then on.
    pub async fn start(
        ctx: &AwsContext,
        listen: SocketAddr,
        config: TwinConfig,
        store: KvStore,
    ) -> Result<Twin> {
        if !crate::aws::is_emulator(&ctx.endpoint) {
            return Err(Error::Usage(format!(
                "the twin follows an emulator on this machine, not {}",
                ctx.endpoint
            )));
        }
        let cluster = Cluster::new(store);
        let state = Arc::new(TwinState {
            instances: Mutex::new(Vec::new()),
            reconciling: tokio::sync::Mutex::new(()),
            log_lines: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(1024)
                .build()
                .map_err(|e| Error::Infra(format!("the twin's balancer client: {e}")))?,
            db_account: match (&config.postgres, config.db_max_connections) {
                (None, Some(max)) => Some(DbAccount::new(max)),
                _ => None,
            },
            records: Mutex::new(Vec::new()),
            pool_opens: Mutex::new(BTreeMap::new()),
            warm_pools: Mutex::new(BTreeMap::new()),
        });
        reconcile(ctx, &config, &cluster, &state, true).await?;
        if let (Some(account), Some(configured)) = (&state.db_account, config.db_max_connections) {
            if let Err(e) = database::follow(ctx, &config.deployment, account, configured).await {
                tracing::warn!("twin: reading the database's parameters: {e}");
            }
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::io(format!("binding the twin's balancer on {listen}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("the twin's address", e))?;
        let app = axum::Router::new()
            .fallback(balance)
            .with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        let aws_view = match config.aws_view {
            Some(listen) => {
                let s = state.clone();
                let phase: super::view::PhaseOf = Arc::new(move |id: &str| s.phase(id));
                let (c, cfg, cl, s) = (ctx.clone(), config.clone(), cluster.clone(), state.clone());
                let catch_up: super::view::CatchUp = Arc::new(move || {
                    let (c, cfg, cl, s) = (c.clone(), cfg.clone(), cl.clone(), s.clone());
                    Box::pin(async move {
                        if let Err(e) = reconcile(&c, &cfg, &cl, &s, false).await {
                            tracing::warn!("twin: reading the groups: {e}");
                        }
                    })
                });
                Some(super::view::AwsView::start(listen, &ctx.endpoint, phase, catch_up).await?)
            }
            None => None,
        };
        let cluster_of_twin = cluster.clone();
        let follow = {
            let (ctx, state) = (ctx.clone(), state.clone());
            tokio::spawn(async move {
                let mut policy = policy::PolicyState::default();
                let mut window = Instant::now();
                let mut published = Instant::now();
                let mut series = SeriesState::default();
                let mut opened = BTreeMap::new();
                loop {
                    tokio::time::sleep(config.poll).await;
                    if let Err(e) = reconcile(&ctx, &config, &cluster, &state, false).await {
                        tracing::warn!("twin: reading the groups: {e}");
                    }
                    if let (Some(account), Some(configured)) =
                        (&state.db_account, config.db_max_connections)
                    {
                        if let Err(e) =
                            database::follow(&ctx, &config.deployment, account, configured).await
                        {
                            tracing::warn!("twin: reading the database's parameters: {e}");
                        }
                    }
                    state.count_pool_opens(&mut opened);
                    if config
                        .publish_every
                        .is_some_and(|p| published.elapsed() >= p)
                    {
                        let span = published.elapsed();
                        published = Instant::now();
                        if let Err(e) =
                            publish(&ctx, &config, &cluster, &state, &mut series, span).await
                        {
                            tracing::warn!("twin: publishing CloudWatch series: {e}");
                        }
                    }
                    if window.elapsed() >= config.policy_window {
                        let span = window.elapsed();
                        window = Instant::now();
                        if let Err(e) =
                            policy::act_out_policies(&ctx, &config, &state, &mut policy, span).await
                        {
                            tracing::warn!("twin: acting out the scaling policies: {e}");
                        }
                    }
                }
            })
        };
        Ok(Twin {
            addr,
            aws_view,
            state,
            cluster: cluster_of_twin,
            shutdown: Some(tx),
            tasks: vec![serve, follow],
        })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).expect("valid URL")
    }

    /// The deployment's store, as its instances share it (its counts and rows read).
    pub fn store(&self) -> &KvStore {
        self.cluster.store()
    }

    /// What the twin saw over `[from, to)` (Unix seconds): its configuration, what this
    /// machine added to its instances' modelled work each second, the connections their pools
    /// opened, and every instance that lived in the window. A rehearsal keeps it beside each
    /// run (`rehearsal.json`), so the report can tell the deployment's figures from the
    /// machine's.
    pub fn observations(&self, config: &TwinConfig, from: f64, to: f64) -> TwinObservations {
        let (a, b) = (from.floor() as i64, to.ceil() as i64);
        let overhead = self.cluster.overhead();
        let opens = self
            .state
            .pool_opens
            .lock()
            .expect("pool opens lock")
            .clone();
        let mut pooled = crate::results::cells::new_hist();
        let seconds = (a..b)
            .map(|t| {
                let h = overhead.get(&t);
                if let Some(h) = h {
                    pooled.add(h).expect("auto-resizing histograms merge");
                }
                TwinSecond {
                    unix: t,
                    requests: h.map_or(0, |h| h.len()),
                    overhead_p95_ms: h
                        .filter(|h| !h.is_empty())
                        .map(|h| h.value_at_quantile(0.95) as f64 / 1000.0),
                    pool_opens: opens.get(&t).copied().unwrap_or(0),
                }
            })
            .collect();
        let instances = self
            .state
            .records
            .lock()
            .expect("records lock")
            .iter()
            .filter(|r| r.launched < to && r.gone.is_none_or(|g| g >= from))
            .cloned()
            .collect();
        TwinObservations {
            model: config.capacity.map(|c| TwinModel {
                workers: c.workers,
                service_ms: c.service.as_secs_f64() * 1000.0,
                per_row_us: c.per_row.as_secs_f64() * 1e6,
                db_open_ms: c.db_open.as_secs_f64() * 1000.0,
                spin_up_s: config.spin_up.as_secs_f64(),
                not_ready_s: config.not_ready.as_secs_f64(),
            }),
            overhead_p95_ms: (!pooled.is_empty())
                .then(|| pooled.value_at_quantile(0.95) as f64 / 1000.0),
            seconds,
            instances,
        }
    }

    /// The counted database's `max_connections` now (`None`: no counted database).
    pub fn db_max_connections(&self) -> Option<usize> {
        self.state.db_account.as_ref().map(|a| a.max_connections())
    }

    /// The instances behind the balancer.
    pub fn instances(&self) -> Vec<InstanceView> {
        let now = Instant::now();
        self.state
            .instances
            .lock()
            .expect("instances lock")
            .iter()
            .map(|i| InstanceView {
                role: i.role,
                id: i.id.clone(),
                routable: i.routable_at <= now,
                routed: i.routed.load(Ordering::Relaxed),
                db_connections: i.db.as_ref().map_or(0, |p| p.open()),
                db_refused: i.db.as_ref().map_or(0, |p| p.refused()),
                instance_type: i.instance_type.clone(),
                workers: i.capacity.map(|c| c.workers),
            })
            .collect()
    }
}

/// 5xx messages held between two puts at most (a flood is sampled, not stored).
const MAX_LOG_LINES: usize = 10_000;

/// The line a service would log for a 5xx answer: its problem detail, else its body.
fn log_message(body: &[u8]) -> String {
    let detail = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string));
    let text = detail.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    format!(
        "level=error msg={:?}",
        text.chars().take(500).collect::<String>()
    )
}

/// What the publisher remembers between puts: requests and 5xx per instance at the last one,
/// and the log streams it made.
#[derive(Default)]
struct SeriesState {
    counted: BTreeMap<String, (usize, usize)>,
    streams: std::collections::BTreeSet<(String, String)>,
}

/// Puts the held 5xx messages into `D-<service>` log groups, one stream per instance.
async fn publish_logs(
    ctx: &AwsContext,
    config: &TwinConfig,
    state: &TwinState,
    memory: &mut SeriesState,
) -> Result<usize> {
    let lines = std::mem::take(&mut *state.log_lines.lock().expect("log lines lock"));
    let mut by_stream: BTreeMap<(String, String), Vec<&LogLine>> = BTreeMap::new();
    for l in &lines {
        by_stream
            .entry((
                format!("{}-{}", config.deployment, l.role),
                l.instance.clone(),
            ))
            .or_default()
            .push(l);
    }
    let logs = aws_sdk_cloudwatchlogs::Client::new(&ctx.config);
    for ((group, stream), lines) in &by_stream {
        if memory.streams.insert((group.clone(), stream.clone())) {
            logs.create_log_stream()
                .log_group_name(group)
                .log_stream_name(stream)
                .send()
                .await
                .map_err(|e| sdk_error(ctx, "logs:CreateLogStream", e))?;
        }
        for chunk in lines.chunks(1000) {
            logs.put_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .set_log_events(Some(
                    chunk
                        .iter()
                        .map(|l| {
                            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                                .timestamp(l.at_ms)
                                .message(&l.message)
                                .build()
                                .expect("timestamp and message are set")
                        })
                        .collect(),
                ))
                .send()
                .await
                .map_err(|e| sdk_error(ctx, "logs:PutLogEvents", e))?;
        }
    }
    Ok(lines.len())
}

/// One put of the derived series (see the module's documentation), stamped with the current
/// UTC minute.
async fn publish(
    ctx: &AwsContext,
    config: &TwinConfig,
    cluster: &Cluster,
    state: &TwinState,
    memory: &mut SeriesState,
    span: Duration,
) -> Result<usize> {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let minute = (crate::results::unix_now() / 60.0).floor() * 60.0;
    let stamp = aws_smithy_types::DateTime::from_secs_f64(minute);
    let datum = |metric: &str, value: f64, dims: &[(&str, &str)]| {
        let mut d = MetricDatum::builder()
            .metric_name(metric)
            .value(value)
            .timestamp(stamp);
        for (k, v) in dims {
            d = d.dimensions(Dimension::builder().name(*k).value(*v).build());
        }
        d.build()
    };
    let now = Instant::now();
    // Per role: (in service, pending, healthy, requests, 5xx) over the span.
    let mut per_role: BTreeMap<ServiceRole, [f64; 5]> = BTreeMap::new();
    for i in state.instances.lock().expect("instances lock").iter() {
        let e = per_role.entry(i.role).or_default();
        if i.routable_at <= now {
            e[0] += 1.0;
        } else {
            e[1] += 1.0;
        }
        if i.ready_at <= now {
            e[2] += 1.0;
        }
        let (routed, failed) = (
            i.routed.load(Ordering::Relaxed),
            i.failed.load(Ordering::Relaxed),
        );
        let (r0, f0) = memory.counted.get(&i.id).copied().unwrap_or((0, 0));
        memory.counted.insert(i.id.clone(), (routed, failed));
        e[3] += routed.saturating_sub(r0) as f64;
        e[4] += failed.saturating_sub(f0) as f64;
    }
    let mut autoscaling = Vec::new();
    let mut ec2 = Vec::new();
    let mut elb = Vec::new();
    let mut rds = Vec::new();
    let connections = match &state.db_account {
        Some(account) => Some(account.open() as u64),
        None if config.postgres.is_some() => cluster.store().sessions().await.ok().flatten(),
        None => None,
    };
    if let (Some(held), Some(db)) = (
        connections,
        config
            .resources
            .as_ref()
            .and_then(|r| r.rds_instance.as_ref()),
    ) {
        rds.push(datum(
            "DatabaseConnections",
            held as f64,
            &[("DBInstanceIdentifier", db.as_str())],
        ));
    }
    for role in [ServiceRole::Provisioning, ServiceRole::Verification] {
        let [in_service, pending, healthy, requests, failed] =
            per_role.get(&role).copied().unwrap_or_default();
        let asg = format!("{}-{}-asg", config.deployment, role.asg_suffix());
        let dims = [("AutoScalingGroupName", asg.as_str())];
        autoscaling.push(datum("GroupInServiceInstances", in_service, &dims));
        autoscaling.push(datum("GroupPendingInstances", pending, &dims));
        autoscaling.push(datum("GroupTotalInstances", in_service + pending, &dims));
        if let Some(c) = config.capacity {
            let per_s = requests / span.as_secs_f64().max(1e-3);
            let busy = per_s * c.service.as_secs_f64() / (c.workers as f64 * in_service.max(1.0));
            ec2.push(datum("CPUUtilization", 100.0 * busy.min(1.0), &dims));
        }
        let marker = format!("-{}-", role.asg_suffix());
        for (tg, lb) in config
            .resources
            .iter()
            .flat_map(|r| r.target_groups.iter())
            .filter(|(tg, _)| tg.contains(&marker))
        {
            let dims = [("TargetGroup", tg.as_str()), ("LoadBalancer", lb.as_str())];
            elb.push(datum("RequestCount", requests, &dims));
            elb.push(datum("HTTPCode_Target_5XX_Count", failed, &dims));
            elb.push(datum("HealthyHostCount", healthy, &dims));
            elb.push(datum(
                "UnHealthyHostCount",
                in_service - healthy.min(in_service),
                &dims,
            ));
        }
    }
    let cw = aws_sdk_cloudwatch::Client::new(&ctx.config);
    let mut total = 0;
    for (namespace, data) in [
        ("AWS/AutoScaling", autoscaling),
        ("AWS/EC2", ec2),
        ("AWS/ApplicationELB", elb),
        ("AWS/RDS", rds),
    ] {
        if data.is_empty() {
            continue;
        }
        total += data.len();
        cw.put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(data))
            .send()
            .await
            .map_err(|e| sdk_error(ctx, "cloudwatch:PutMetricData", e))?;
    }
    Ok(total + publish_logs(ctx, config, state, memory).await?)
}

/// Brings the instances in line with the groups: new InService instances start (Pending for
/// the spin-up, then not ready for a while, unless they were there from the start), instances
/// gone from a group stop.
async fn reconcile(
    ctx: &AwsContext,
    config: &TwinConfig,
    cluster: &Cluster,
    state: &TwinState,
    initial: bool,
) -> Result<()> {
    let _one = state.reconciling.lock().await;
    let mut wanted: BTreeMap<String, ServiceRole> = BTreeMap::new();
    for role in [ServiceRole::Provisioning, ServiceRole::Verification] {
        let asg = format!("{}-{}-asg", config.deployment, role.asg_suffix());
        for id in in_service(ctx, &asg).await? {
            wanted.insert(id, role);
        }
    }
    let known: Vec<String> = {
        let instances = state.instances.lock().expect("instances lock");
        instances.iter().map(|i| i.id.clone()).collect()
    };
    let mut started = Vec::new();
    let mut groups: BTreeMap<String, super::join::GroupJoin> = BTreeMap::new();
    let fresh: Vec<String> = wanted
        .keys()
        .filter(|id| !known.contains(id))
        .cloned()
        .collect();
    let types = instance_types(ctx, &fresh).await?;
    for (id, role) in &wanted {
        if known.contains(id) {
            continue;
        }
        let join = if initial {
            super::join::Join {
                pending: Duration::ZERO,
                not_ready: Duration::ZERO,
                routed_when_ready: false,
                from_pool: false,
            }
        } else {
            let asg = format!("{}-{}-asg", config.deployment, role.asg_suffix());
            let group = match groups.get(&asg) {
                Some(g) => g.clone(),
                None => {
                    let g = super::join::read(ctx, &asg).await?;
                    groups.insert(asg.clone(), g.clone());
                    g
                }
            };
            state
                .warm_pools
                .lock()
                .expect("warm pools lock")
                .entry(asg)
                .or_default()
                .join(
                    &group,
                    config.spin_up,
                    config.not_ready,
                    config.warm_running,
                    config.warm_stopped,
                )
        };
        let (spin_up, not_ready) = (join.pending, join.not_ready);
        // Its pool opens what it needs on the deployment's one database.
        let opener = match (&config.postgres, &state.db_account) {
            (Some(conninfo), _) => Some(Opener::Postgres(conninfo.clone())),
            (None, Some(account)) => Some(Opener::Counted(account.clone())),
            (None, None) => None,
        };
        let instance_type = types.get(id).cloned();
        let capacity = config.capacity.map(|c| match &instance_type {
            Some(t) => super::sizes::scaled(c, &config.capacity_type, t),
            None => c,
        });
        let open_cost = config.capacity.map_or(Duration::ZERO, |c| c.db_open);
        let db = opener.map(|o| {
            Arc::new(SessionPool::new(o, config.db_pool, config.db_idle).with_open_cost(open_cost))
        });
        let standin = Standin::start_in(
            "127.0.0.1:0".parse().expect("an address"),
            StandinConfig {
                release: config.release.clone(),
                faults: Faults {
                    capacity,
                    slow_start: spin_up + not_ready,
                    db_pool: db.clone(),
                    ..Faults::default()
                },
                memcached_sessions: true,
                ..StandinConfig::default()
            },
            cluster,
        )
        .await
        .map_err(|e| Error::io(format!("starting the twin's instance {id}"), e))?;
        started.push(Arc::new(Instance {
            id: id.clone(),
            role: *role,
            instance_type,
            capacity,
            standin,
            // A readiness health check keeps it out of the balancer until its VTS is up.
            routable_at: Instant::now()
                + if join.routed_when_ready {
                    spin_up + not_ready
                } else {
                    spin_up
                },
            routed: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            ready_at: Instant::now() + spin_up + not_ready,
            db,
        }));
    }
    let now = crate::results::unix_now();
    let mut records = state.records.lock().expect("records lock");
    for i in &started {
        let since = |at: Instant| now + at.saturating_duration_since(Instant::now()).as_secs_f64();
        records.push(InstanceRecord {
            id: i.id.clone(),
            service: i.role,
            launched: now,
            routable: since(i.routable_at),
            ready: since(i.ready_at),
            gone: None,
        });
    }
    let mut instances = state.instances.lock().expect("instances lock");
    for gone in instances.iter().filter(|i| !wanted.contains_key(&i.id)) {
        if let Some(r) = records.iter_mut().find(|r| r.id == gone.id) {
            r.gone.get_or_insert(now);
        }
    }
    instances.retain(|i| wanted.contains_key(&i.id));
    instances.extend(started);
    Ok(())
}

/// The load balancer: the request's service by path, round robin over its routable instances,
/// 503 when it has none (as an ALB without healthy targets).
async fn balance(
    State(state): State<Arc<TwinState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let role = role_of(uri.path());
    let target = {
        let now = Instant::now();
        let instances = state.instances.lock().expect("instances lock");
        let ready: Vec<&Arc<Instance>> = instances
            .iter()
            .filter(|i| i.role == role && i.routable_at <= now)
            .collect();
        if ready.is_empty() {
            None
        } else {
            let i = ready[state.next.fetch_add(1, Ordering::Relaxed) % ready.len()].clone();
            i.routed.fetch_add(1, Ordering::Relaxed);
            Some(i)
        }
    };
    let Some(target) = target else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no healthy {role} targets"),
        )
            .into_response();
    };
    let base = target.standin.url();
    match super::view::forward(&state.client, base.as_str(), method, &uri, &headers, body).await {
        Ok(super::view::Forwarded {
            status,
            headers,
            body,
        }) => {
            if status.is_server_error() {
                target.failed.fetch_add(1, Ordering::Relaxed);
                let mut lines = state.log_lines.lock().expect("log lines lock");
                if lines.len() < MAX_LOG_LINES {
                    lines.push(LogLine {
                        role,
                        instance: target.id.clone(),
                        at_ms: (crate::results::unix_now() * 1000.0) as i64,
                        message: log_message(&body),
                    });
                }
            }
            (status, headers, body).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{}: {e}", target.id)).into_response(),
    }
}
