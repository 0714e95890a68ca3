//! Planning: a checked [`Trial`] becomes an ordered list of [`Step`]s with time estimates.
//! Pure: no I/O, no clock. `trialrunner plan` prints it; the executor runs it.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::checked::{Capacity, TaskRef, Trial};
use super::database::DatabaseSpec;
use super::deployment::{GroupSettings, Setting};
use super::load_phase::{LoadPhase, REQUEST_TIMEOUT};
use super::model::{ArrivalSpec, ClearPolicy, CountPolicy, ServiceRole, TaskMode};

/// One step of a campaign.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Resolve and check everything the campaign needs (groups, target groups, database and
    /// its password, cache nodes, log groups, permissions) with cheap reads; changes nothing.
    Preflight,
    /// Record the current ASG settings in the undo journal (before any change).
    SnapshotInfra {
        /// Services whose ASGs will change.
        services: Vec<ServiceRole>,
    },
    /// Set an ASG's capacity.
    SetCapacity {
        /// Which service.
        service: ServiceRole,
        /// To what.
        capacity: Capacity,
    },
    /// Change a group's warm pool, scaling policy or health checks (the originals journaled).
    ChangeSettings {
        /// Which service.
        service: ServiceRole,
        /// What it changes.
        settings: GroupSettings,
    },
    /// Change the database's instance class and `max_connections` (the originals journaled),
    /// waiting for RDS to apply them (a reboot for `max_connections`).
    ChangeDatabase {
        /// What it changes.
        database: DatabaseSpec,
    },
    /// Wait until the services' instances are InService, healthy and READY.
    WaitReady {
        /// Which services.
        services: Vec<ServiceRole>,
        /// Upper bound.
        timeout: Duration,
    },
    /// Readiness gate: well-known READY, and one provision + verify succeeds semantically.
    CheckTarget,
    /// Clear the stores (and flush sessions).
    ClearStores {
        /// Also flush the session cache.
        flush_sessions: bool,
        /// The run this clear prepares (`before-each-run`); `None` for the whole trial.
        before_run: Option<String>,
    },
    /// Count store rows.
    CountStores {
        /// When, e.g. `after u010-verify`.
        label: String,
    },
    /// A load run.
    Load(LoadPhase),
    /// Pause.
    Cooldown {
        /// How long.
        duration: Duration,
    },
    /// Pull CloudWatch metrics for a run's window.
    PullMetrics {
        /// Which run.
        run_id: String,
    },
    /// Put ASGs back as the journal recorded them.
    RestoreInfra,
    /// Wait until CloudWatch has published the last window (datapoints arrive 1–3 minutes
    /// after their period), then pull again every window pulled too early or that failed.
    SettleMetrics {
        /// How long after a window's end its datapoints are complete.
        settle: Duration,
    },
}

impl Step {
    /// The step's kind, as in results (`clear-stores`, `load`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::SnapshotInfra { .. } => "snapshot-infra",
            Step::SetCapacity { .. } => "set-capacity",
            Step::ChangeSettings { .. } => "change-settings",
            Step::ChangeDatabase { .. } => "change-database",
            Step::WaitReady { .. } => "wait-ready",
            Step::CheckTarget => "check-target",
            Step::ClearStores { .. } => "clear-stores",
            Step::CountStores { .. } => "count-stores",
            Step::Load(_) => "load",
            Step::Cooldown { .. } => "cooldown",
            Step::PullMetrics { .. } => "pull-metrics",
            Step::RestoreInfra => "restore-infra",
            Step::SettleMetrics { .. } => "settle-metrics",
        }
    }

    /// True when a completed step is kept on `--resume` (it changed or measured something
    /// that must not be done twice); false for idempotent steps that run again (pinning,
    /// waiting for readiness: the groups may have been restored in between).
    pub fn kept_on_resume(&self) -> bool {
        matches!(
            self,
            Step::ClearStores { .. }
                | Step::CountStores { .. }
                | Step::Load(_)
                | Step::Cooldown { .. }
                | Step::PullMetrics { .. }
        )
    }

    /// True when the step acts on AWS or waits, and a stop request may abandon it at once.
    pub fn abandoned_on_stop(&self) -> bool {
        !matches!(self, Step::Load(_) | Step::RestoreInfra)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Preflight => write!(f, "preflight (resolve and check everything; no change)"),
            Step::SnapshotInfra { services } => write!(f, "snapshot infra ({})", names(services)),
            Step::SetCapacity { service, capacity } => write!(f, "set {service} ASG {capacity}"),
            Step::ChangeSettings { service, settings } => {
                let what: Vec<String> = setting_changes(settings)
                    .into_iter()
                    .map(|c| format!("{} {}", c.setting, c.after))
                    .collect();
                write!(f, "set {service} {}", what.join("; "))
            }
            Step::ChangeDatabase { database } => {
                let what: Vec<String> = database_changes(database)
                    .into_iter()
                    .map(|c| format!("{} {}", c.setting, c.after))
                    .collect();
                write!(
                    f,
                    "set database {}; wait for it, up to {}",
                    what.join("; "),
                    humantime::format_duration(database.timeout())
                )
            }
            Step::WaitReady { services, timeout } => {
                write!(
                    f,
                    "wait ready ({}; up to {})",
                    names(services),
                    humantime::format_duration(*timeout)
                )
            }
            Step::CheckTarget => {
                write!(f, "check target (well-known READY, one provision + verify)")
            }
            Step::ClearStores { flush_sessions, .. } => {
                write!(
                    f,
                    "clear stores{}",
                    if *flush_sessions {
                        " and flush sessions"
                    } else {
                        ""
                    }
                )
            }
            Step::CountStores { label } => write!(f, "count stores ({label})"),
            Step::Load(p) => {
                let who = match (p.users, &p.arrival) {
                    (Some(u), _) => format!("{u} users"),
                    (None, Some(a)) => format!("{:.1}/s arrivals", a.rate.0),
                    _ => String::new(),
                };
                let tasks: Vec<&str> = p.tasks.iter().map(TaskRef::name).collect();
                write!(
                    f,
                    "load {} [{}] {who} for {}",
                    p.run_id,
                    tasks.join(","),
                    humantime::format_duration(p.duration)
                )
            }
            Step::Cooldown { duration } => {
                write!(f, "cooldown {}", humantime::format_duration(*duration))
            }
            Step::PullMetrics { run_id } => write!(f, "pull metrics for {run_id}"),
            Step::RestoreInfra => write!(f, "restore infra"),
            Step::SettleMetrics { settle } => write!(
                f,
                "settle metrics (wait until {} after the last window, pull again what was early)",
                humantime::format_duration(*settle)
            ),
        }
    }
}

fn names(services: &[ServiceRole]) -> String {
    services
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A step and how long it is expected to take.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    /// The step.
    pub step: Step,
    /// Expected duration.
    pub estimate: Duration,
}

/// The ordered steps of a trial.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The trial's name.
    pub trial: String,
    /// Steps in execution order.
    pub steps: Vec<PlannedStep>,
}

impl Plan {
    /// Expected total time.
    pub fn total(&self) -> Duration {
        self.steps.iter().map(|s| s.estimate).sum()
    }

    /// The load runs, in order.
    pub fn load_phases(&self) -> impl Iterator<Item = &LoadPhase> {
        self.steps.iter().filter_map(|s| match &s.step {
            Step::Load(p) => Some(p),
            _ => None,
        })
    }

    /// Where the campaign is when step `index` (0-based) begins: its place, the time the plan
    /// says is left (that step included), and for a load run its place among the runs. The
    /// executor's step line and the live dashboard both say it from here.
    pub fn position(&self, index: usize) -> Position {
        let index = index.min(self.steps.len().saturating_sub(1));
        let is_load = |s: &&PlannedStep| matches!(s.step, Step::Load(_));
        let run =
            matches!(self.steps.get(index).map(|s| &s.step), Some(Step::Load(_))).then(|| {
                let before = self.steps[..index].iter().filter(is_load).count();
                (before + 1, self.steps.iter().filter(is_load).count())
            });
        Position {
            index,
            of: self.steps.len(),
            left: self
                .steps
                .get(index..)
                .into_iter()
                .flatten()
                .map(|s| s.estimate)
                .sum(),
            run,
            step: self
                .steps
                .get(index)
                .map(|s| s.step.to_string())
                .unwrap_or_default(),
        }
    }
}

/// Where a campaign is: a step of its plan (see [`Plan::position`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Position {
    /// The step, 0-based.
    pub index: usize,
    /// Steps in the plan.
    pub of: usize,
    /// The time the plan says is left, from this step's beginning.
    pub left: Duration,
    /// For a load run: its place among the runs (1-based) and their number.
    pub run: Option<(usize, usize)>,
    /// The step as `plan` prints it.
    pub step: String,
}

impl fmt::Display for Position {
    /// `[3/12 · 5m 10s left] run 1/4 · load u010-verify …`, as the executor announces a step.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let left = humantime::format_duration(Duration::from_secs(self.left.as_secs()));
        write!(f, "[{}/{} · {left} left] ", self.index + 1, self.of)?;
        if let Some((i, n)) = self.run {
            write!(f, "run {i}/{n} · ")?;
        }
        write!(f, "{}", self.step)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plan for trial `{}`:", self.trial)?;
        let mut at = Duration::ZERO;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "{:>4}. [{:>9}] {}", i + 1, clock(at), s.step)?;
            at += s.estimate;
        }
        let runs = self.load_phases().count();
        write!(
            f,
            "{runs} load runs; expected total time {} ({:.0} s)",
            clock(self.total()),
            self.total().as_secs_f64()
        )
    }
}

/// `h:mm:ss`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Rough durations of the steps that are not load, from the seed campaign's experience.
mod estimate {
    use std::time::Duration;
    pub const API_CALL: Duration = Duration::from_secs(2);
    /// Instances take more than 5 minutes to join on AWS (seed Trial 4).
    pub const AWS_READY: Duration = Duration::from_secs(330);
    pub const LOCAL_READY: Duration = Duration::from_secs(1);
    pub const STORES: Duration = Duration::from_secs(3);
    pub const METRICS: Duration = Duration::from_secs(5);
    /// CloudWatch publishes a minute's datapoints 1–3 minutes after it ends.
    pub const SETTLE: Duration = Duration::from_secs(180);
    /// RDS moves an instance to another class in several minutes.
    pub const DB_CLASS: Duration = Duration::from_secs(600);
    /// A reboot of an RDS instance (for a static parameter) takes about a minute.
    pub const DB_REBOOT: Duration = Duration::from_secs(90);
}

/// How long the database's change (and as long again, its restore) is expected to take.
fn database_estimate(trial: &Trial, db: &DatabaseSpec) -> Duration {
    if trial.env.spec.aws.is_none() {
        return estimate::API_CALL;
    }
    let class = if db.instance_class.is_some() {
        estimate::DB_CLASS
    } else {
        Duration::ZERO
    };
    let reboot = if db.max_connections.is_some() {
        estimate::DB_REBOOT
    } else {
        Duration::ZERO
    };
    (class + reboot).min(db.timeout())
}

fn run_id(
    trial: &Trial,
    iteration: u32,
    users: Option<u32>,
    arrival: Option<&ArrivalSpec>,
    tasks: &[TaskRef],
) -> String {
    let mut id = String::new();
    if trial.iterations > 1 {
        id.push_str(&format!("it{iteration}-"));
    }
    match (users, arrival) {
        (Some(u), _) => id.push_str(&format!("u{u:03}")),
        (None, Some(a)) => id.push_str(&format!("r{}", a.rate.0)),
        _ => {}
    }
    let task_part = if tasks.len() == 1 {
        tasks[0].name().to_string()
    } else {
        "all".to_string()
    };
    id.push('-');
    id.push_str(&task_part);
    id
}

/// Builds the plan of a checked trial.
pub fn plan(trial: &Trial) -> Plan {
    let spec = &trial.spec;
    let mut steps: Vec<PlannedStep> = Vec::new();
    let mut push = |step: Step, estimate: Duration| steps.push(PlannedStep { step, estimate });
    push(Step::Preflight, estimate::API_CALL);
    infra_steps(trial, &mut push);
    push(Step::CheckTarget, estimate::API_CALL);
    if spec.stores.clear == ClearPolicy::BeforeTrial {
        push(
            Step::ClearStores {
                flush_sessions: spec.stores.flush_sessions,
                before_run: None,
            },
            estimate::STORES,
        );
    }
    load_steps(trial, &mut push);
    if !trial.held_services().is_empty() {
        let database = spec
            .infra
            .database
            .as_ref()
            .map(|db| database_estimate(trial, db))
            .unwrap_or_default();
        push(Step::RestoreInfra, estimate::API_CALL + database);
    }
    if !spec.metrics.is_empty() {
        let settle = spec.metrics_settle.map(|s| s.0).unwrap_or(estimate::SETTLE);
        push(Step::SettleMetrics { settle }, settle);
    }
    Plan {
        trial: spec.name.clone(),
        steps,
    }
}

/// Snapshot, set capacity, wait until ready: for a trial that changes infrastructure.
fn infra_steps(trial: &Trial, push: &mut impl FnMut(Step, Duration)) {
    let spec = &trial.spec;
    let aws = trial.env.spec.aws.is_some();
    let services = trial.held_services();
    if !services.is_empty() {
        push(
            Step::SnapshotInfra {
                services: services.clone(),
            },
            estimate::API_CALL,
        );
        for (service, capacity) in &trial.capacities {
            push(
                Step::SetCapacity {
                    service: *service,
                    capacity: *capacity,
                },
                estimate::API_CALL,
            );
        }
        for (service, settings) in &trial.settings {
            push(
                Step::ChangeSettings {
                    service: *service,
                    settings: settings.clone(),
                },
                estimate::API_CALL,
            );
        }
        if let Some(db) = &spec.infra.database {
            push(
                Step::ChangeDatabase {
                    database: db.clone(),
                },
                database_estimate(trial, db),
            );
        }
        let timeout = spec
            .infra
            .ready_timeout
            .map(|s| s.0)
            .unwrap_or(Duration::from_secs(900));
        let est = if aws {
            estimate::AWS_READY.min(timeout)
        } else {
            estimate::LOCAL_READY
        };
        push(Step::WaitReady { services, timeout }, est);
    }
}

/// The load runs with what goes around each: clears, cooldowns, counts, metric pulls.
fn load_steps(trial: &Trial, push: &mut impl FnMut(Step, Duration)) {
    let spec = &trial.spec;
    let runs = &spec.runs;
    let task_groups: Vec<Vec<TaskRef>> = match runs.mode {
        TaskMode::PerTask => trial.tasks.iter().map(|t| vec![t.clone()]).collect(),
        TaskMode::Together => vec![trial.tasks.clone()],
    };
    let load_points: Vec<Option<u32>> = if trial.user_steps.is_empty() {
        vec![None]
    } else {
        trial.user_steps.iter().copied().map(Some).collect()
    };
    let cooldown = runs.cooldown.map(|c| c.0).unwrap_or_default();
    for iteration in 1..=trial.iterations {
        for users in &load_points {
            for tasks in &task_groups {
                let id = run_id(trial, iteration, *users, runs.arrival.as_ref(), tasks);
                if spec.stores.clear == ClearPolicy::BeforeEachRun {
                    push(
                        Step::ClearStores {
                            flush_sessions: spec.stores.flush_sessions,
                            before_run: Some(id.clone()),
                        },
                        estimate::STORES,
                    );
                }
                let phase = LoadPhase {
                    run_id: id,
                    iteration,
                    users: *users,
                    arrival: runs.arrival,
                    tasks: tasks.clone(),
                    duration: runs.duration.0,
                    spawn: runs.spawn_rate,
                    wait: runs.wait,
                    warmup: runs.warmup.map(|w| w.0).unwrap_or_default(),
                    request_timeout: runs.request_timeout.map(|t| t.0).unwrap_or(REQUEST_TIMEOUT),
                    nonce: runs.nonce,
                    fleet: runs.fleet,
                };
                let run_id = phase.run_id.clone();
                let est = phase.duration + phase.ramp_time();
                push(Step::Load(phase), est);
                if !cooldown.is_zero() {
                    push(Step::Cooldown { duration: cooldown }, cooldown);
                }
                if spec.stores.count == CountPolicy::AfterEachRun {
                    push(
                        Step::CountStores {
                            label: format!("after {run_id}"),
                        },
                        estimate::STORES,
                    );
                }
                if !spec.metrics.is_empty() {
                    push(Step::PullMetrics { run_id }, estimate::METRICS);
                }
            }
        }
        if spec.stores.count == CountPolicy::AfterEachIteration {
            push(
                Step::CountStores {
                    label: format!("after iteration {iteration}"),
                },
                estimate::STORES,
            );
        }
    }
}

/// An auto-scaling group a trial changes.
#[derive(Debug, Clone, Serialize)]
pub struct GroupChange {
    /// The service it runs.
    pub service: ServiceRole,
    /// Its name.
    pub asg: String,
    /// What the trial sets.
    pub planned: Capacity,
    /// (min, max, desired) now, when it was read.
    pub current: Option<(i32, i32, i32)>,
    /// Why the current settings are unknown, when they are.
    pub note: Option<String>,
    /// Every other setting of the group the trial changes, before → after.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<SettingChange>,
}

/// One setting of a group a trial changes: what it is now and what the trial makes it.
#[derive(Debug, Clone, Serialize)]
pub struct SettingChange {
    /// Which (`warm-pool`, `policy`, `health-check.type`, `health-check.path`, …).
    pub setting: String,
    /// What it is now, when it was read (`none` when the group has none).
    pub before: Option<String>,
    /// What the trial sets.
    pub after: String,
}

/// The settings a group's [`GroupSettings`] change, with what each becomes (before unknown).
pub fn setting_changes(s: &GroupSettings) -> Vec<SettingChange> {
    let mut out = Vec::new();
    let mut push = |setting: &str, after: String| {
        out.push(SettingChange {
            setting: setting.into(),
            before: None,
            after,
        })
    };
    match &s.warm_pool {
        Some(Setting::None) => push("warm-pool", "none".into()),
        Some(Setting::Set(w)) => push("warm-pool", w.to_string()),
        None => {}
    }
    match &s.policy {
        Some(Setting::None) => push("policy", "none".into()),
        Some(Setting::Set(p)) => push("policy", p.to_string()),
        None => {}
    }
    if let Some(h) = &s.health_check {
        if let Some(k) = h.kind {
            push("health-check.type", k.as_str().into());
        }
        if let Some(g) = h.grace {
            push("health-check.grace", g.to_string());
        }
        if let Some(p) = &h.path {
            push("health-check.path", p.clone());
        }
        if let Some(i) = h.interval {
            push("health-check.interval", i.to_string());
        }
        if let Some(n) = h.healthy_threshold {
            push("health-check.healthy-threshold", n.to_string());
        }
        if let Some(n) = h.unhealthy_threshold {
            push("health-check.unhealthy-threshold", n.to_string());
        }
    }
    if let Some(t) = &s.instance_type {
        push("instance-type", t.clone());
    }
    if let Some(l) = &s.launch_template {
        push("launch-template", format!("version {}", l.version));
    }
    if s.changes_launch() {
        let r = s.instance_refresh.unwrap_or_default();
        push(
            "instance-refresh",
            format!(
                "every instance replaced, {}% kept healthy, up to {}",
                r.min_healthy_pct(),
                humantime::format_duration(r.timeout())
            ),
        );
    }
    out
}

/// The settings of the database a [`DatabaseSpec`] changes, with what each becomes (before
/// unknown): `instance-class`, `max-connections`, `parameter-group`.
pub fn database_changes(d: &DatabaseSpec) -> Vec<SettingChange> {
    let mut out = Vec::new();
    let mut push = |setting: &str, after: String| {
        out.push(SettingChange {
            setting: setting.into(),
            before: None,
            after,
        })
    };
    if let Some(c) = &d.instance_class {
        push("instance-class", c.clone());
    }
    if let Some(n) = d.max_connections {
        push("max-connections", format!("{n} (applied by a reboot)"));
        push(
            "parameter-group",
            match &d.parameter_group {
                Some(g) => g.clone(),
                None => "a copy of its own made for the trial (deleted on restore)".into(),
            },
        );
    }
    out
}

/// The database a trial changes.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseChange {
    /// The RDS instance as the environment names it (`auto`: the deployment's).
    pub instance: String,
    /// Why the current settings are unknown, when they are.
    pub note: Option<String>,
    /// Each setting the trial changes, before → after.
    pub settings: Vec<SettingChange>,
}

/// Everything a trial will change, and where: what `plan` shows before anything runs.
#[derive(Debug, Clone, Serialize)]
pub struct Changes {
    /// The environment file it bound.
    pub environment_file: std::path::PathBuf,
    /// Account, region and endpoint, for an AWS environment.
    pub aws: Option<(String, String, String)>,
    /// Whose credentials were found (filled by the caller when it reads AWS).
    pub credentials: Option<String>,
    /// The groups it pins or frees.
    pub groups: Vec<GroupChange>,
    /// The groups it only holds: locked for its runs as they are, never changed (a trial that
    /// changes only the database).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
    /// The database it changes (instance class, `max_connections`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseChange>,
    /// The stores it clears, and when.
    pub clears: Option<String>,
    /// The session cache it flushes.
    pub flushes: Option<String>,
    /// Cloud metric sets it reads.
    pub reads: Vec<super::model::MetricName>,
    /// The generator fleet and its share of the load, when the environment names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generators: Option<String>,
    /// For a fleet on AWS, the binary its instances will run and what it needs of them (filled
    /// by the caller, which can read the binary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ships: Option<String>,
}

/// The fleet line of `plan`: who generates the load, each worker's share in the largest run,
/// and for a fleet on AWS the group it pins and the instance-hours the campaign costs.
fn describe_generators(trial: &Trial) -> Option<String> {
    let g = trial.env.spec.generators.as_ref()?;
    let plan = plan(trial);
    let largest = plan
        .load_phases()
        .max_by_key(|p| p.users.unwrap_or(0))?
        .clone();
    let (workers, what) = match (g.local, &g.aws) {
        (Some(n), _) => (n, format!("{n} worker processes on this host")),
        (None, Some(a)) => {
            let hours = a.count as f64 * plan.total().as_secs_f64() / 3600.0;
            let kind = a.instance_type.as_deref().unwrap_or("instances");
            (
                a.count,
                format!(
                    "{} {kind} of {} (pinned to {} for the campaign, restored after; about {hours:.2} instance-hours), through SSM, specs and results in {}",
                    a.count, a.asg, a.count, a.bucket
                ),
            )
        }
        (None, None) => return None,
    };
    let shares = super::share::split(&largest, workers);
    let share = match largest.users {
        Some(u) => format!(
            "{u} users of run {} as {}",
            largest.run_id,
            shares
                .iter()
                .map(|(p, _)| p.users.unwrap_or(0).to_string())
                .collect::<Vec<_>>()
                .join("/")
        ),
        None => format!("arrival rates ÷ {}", shares.len()),
    };
    Some(format!("{what}; {share}"))
}

/// What a database or cache description says, without reaching it.
fn describe_stores(env: &super::environment::Environment) -> (Option<String>, Option<String>) {
    let Some(s) = &env.spec.stores else {
        return (None, None);
    };
    let d = env.spec.deployment.as_deref().unwrap_or("?");
    let db = if let Some(pg) = &s.postgres {
        let at = match (&pg.host, &pg.rds_instance) {
            (Some(h), _) => format!("{h}:{}", pg.port.unwrap_or(5432)),
            (None, Some(i)) if i == "auto" => format!("the RDS instance of deployment `{d}`"),
            (None, Some(i)) => format!("RDS instance `{i}`"),
            (None, None) => "?".into(),
        };
        let via = pg
            .tunnel
            .as_ref()
            .map(|t| format!(", through {}", t.ssh))
            .unwrap_or_default();
        Some(format!(
            "PostgreSQL database `{}` as `{}` at {at}{via}",
            pg.database, pg.user
        ))
    } else if let Some(sq) = &s.sqlite {
        Some(format!("SQLite stores in {}", sq.dir.display()))
    } else if let Some(c) = &s.command {
        Some(format!("by running `{}`", c.clear))
    } else {
        s.standin
            .as_ref()
            .map(|st| format!("the stand-in's store at {}", st.url))
    };
    let cache = s.sessions.as_ref().map(|m| {
        if m.memcached.iter().any(|x| x == "auto") {
            format!("memcached: the ElastiCache cluster of deployment `{d}`")
        } else {
            format!("memcached {}", m.memcached.join(", "))
        }
    });
    (db, cache)
}

/// What a checked trial will change (pure: the current settings are left for the caller).
pub fn changes(trial: &Trial) -> Changes {
    let env = &trial.env;
    let aws = env.spec.aws.as_ref().map(|a| {
        (
            a.account.clone(),
            a.region.clone(),
            a.endpoint
                .clone()
                .unwrap_or_else(|| format!("AWS {}", a.region)),
        )
    });
    let groups = trial
        .capacities
        .iter()
        .filter_map(|(role, cap)| {
            Some(GroupChange {
                service: *role,
                asg: env.asg_name(*role)?,
                planned: *cap,
                current: None,
                note: None,
                settings: trial
                    .settings
                    .iter()
                    .find(|(r, _)| r == role)
                    .map(|(_, s)| setting_changes(s))
                    .unwrap_or_default(),
            })
        })
        .collect();
    let (db, cache) = describe_stores(env);
    let when = match trial.spec.stores.clear {
        ClearPolicy::Never => None,
        ClearPolicy::BeforeTrial => Some("once, before the first run"),
        ClearPolicy::BeforeEachRun => Some("before every run"),
    };
    Changes {
        environment_file: tidy_path(&env.file),
        aws,
        credentials: None,
        groups,
        held: trial
            .held_services()
            .into_iter()
            .filter(|r| !trial.capacities.iter().any(|(c, _)| c == r))
            .filter_map(|r| env.asg_name(r))
            .collect(),
        database: trial.spec.infra.database.as_ref().map(|d| DatabaseChange {
            instance: env.rds_instance().unwrap_or_else(|| "?".into()),
            note: None,
            settings: database_changes(d),
        }),
        clears: when.and_then(|w| db.map(|d| format!("{d}: {w}"))),
        flushes: cache.filter(|_| trial.spec.stores.flush_sessions),
        reads: trial.spec.metrics.clone(),
        generators: describe_generators(trial),
        ships: None,
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "what it changes:")?;
        writeln!(f, "  environment   {}", self.environment_file.display())?;
        match &self.aws {
            Some((account, region, endpoint)) => {
                writeln!(
                    f,
                    "  AWS           account {account}, region {region}, {endpoint}"
                )?;
                if let Some(c) = &self.credentials {
                    writeln!(f, "  credentials   {c}")?;
                }
            }
            None => writeln!(f, "  AWS           none (a local environment)")?,
        }
        for g in &self.groups {
            let (min, max, desired) = g.planned.bounds();
            let planned = match desired {
                Some(d) => format!("min {min} max {max} desired {d}"),
                None => format!("min {min} max {max}"),
            };
            let now = match (g.current, &g.note) {
                (Some((a, b, c)), _) => format!("min {a} max {b} desired {c}"),
                (None, Some(n)) => format!("unknown ({n})"),
                (None, None) => "not read (--offline)".into(),
            };
            writeln!(
                f,
                "  group         {} ({}): now {now} → {planned}",
                g.asg, g.service
            )?;
            for c in &g.settings {
                let before = match (&c.before, &g.note, g.current) {
                    (Some(b), _, _) => b.clone(),
                    (None, Some(n), _) => format!("unknown ({n})"),
                    (None, None, Some(_)) => "unknown".into(),
                    (None, None, None) => "not read (--offline)".into(),
                };
                writeln!(f, "    {:<32} {before} → {}", c.setting, c.after)?;
            }
        }
        if self.groups.is_empty() && self.held.is_empty() {
            writeln!(f, "  groups        none changed")?;
        } else if self.groups.is_empty() {
            writeln!(
                f,
                "  groups        none changed; locked as they are for the runs: {}",
                self.held.join(", ")
            )?;
        }
        if let Some(d) = &self.database {
            let instance = if d.instance == "auto" {
                "the deployment's RDS instance".to_string()
            } else {
                format!("RDS instance {}", d.instance)
            };
            writeln!(f, "  database      {instance}")?;
            for c in &d.settings {
                let before = match (&c.before, &d.note) {
                    (Some(b), _) => b.clone(),
                    (None, Some(n)) => format!("unknown ({n})"),
                    (None, None) => "not read (--offline)".into(),
                };
                writeln!(f, "    {:<32} {before} → {}", c.setting, c.after)?;
            }
        }
        writeln!(
            f,
            "  clears        {}",
            self.clears.as_deref().unwrap_or("nothing")
        )?;
        if let Some(c) = &self.flushes {
            writeln!(f, "  flushes       {c}")?;
        }
        if let Some(g) = &self.generators {
            writeln!(f, "  generators    {g}")?;
        }
        if let Some(s) = &self.ships {
            writeln!(f, "  ships         {s}")?;
        }
        if !self.reads.is_empty() {
            let names: Vec<String> = self
                .reads
                .iter()
                .map(|m| {
                    serde_json::to_value(m)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                })
                .collect();
            writeln!(f, "  reads         CloudWatch {}", names.join(", "))?;
        }
        Ok(())
    }
}

/// A file's path as a user reads it: relative to the working directory when under it, else
/// absolute, with `.` and `..` resolved (the file need not exist).
fn tidy_path(file: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let mut tidy = std::path::PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                tidy.pop();
            }
            Component::CurDir => {}
            other => tidy.push(other),
        }
    }
    match std::env::current_dir() {
        Ok(here) => tidy
            .strip_prefix(&here)
            .map(|p| p.to_path_buf())
            .unwrap_or(tidy),
        Err(_) => tidy,
    }
}
