//! The typed model of trial and environment files, exactly as written in YAML.
//!
//! A *trial* says what to do (pin, clear, load, measure); an *environment* says where things are
//! (URLs, ASG names, databases). Deserialization is strict: unknown keys and wrong types are
//! errors. Semantic checks (0 users, `to < from`, …) live in `validate.rs` (the trial) and
//! `environment.rs` (the environment).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::quantities::{Rate, Span};

/// The groups of a deployment a trial can act on: Veraison's services, and the load
/// generators' own group when the environment names a fleet on AWS.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceRole {
    /// Endorsement provisioning (port 9443).
    Provisioning,
    /// Challenge-response verification (port 8443).
    Verification,
    /// Policy management (port 10443).
    Management,
    /// The load generators' group (`generators.aws.asg`): not a Veraison service, pinned to
    /// the fleet's size for the campaign and restored with the others.
    Generators,
}

impl ServiceRole {
    /// Veraison's services, in a stable order (the generators' group is not one).
    pub const ALL: [ServiceRole; 3] = [Self::Provisioning, Self::Verification, Self::Management];

    /// The kebab-case name used in files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Verification => "verification",
            Self::Management => "management",
            Self::Generators => "generators",
        }
    }

    /// The suffix of the ASG name in a Veraison deployment (`D-prov-asg`).
    pub fn asg_suffix(self) -> &'static str {
        match self {
            Self::Provisioning => "prov",
            Self::Verification => "verif",
            Self::Management => "manage",
            Self::Generators => "generators",
        }
    }
}

impl fmt::Display for ServiceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Trials
// ---------------------------------------------------------------------------------------------

/// A trial file: what a campaign does.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrialFile {
    /// Short name, used in result directory names.
    pub name: String,
    /// What the trial is for.
    #[serde(default)]
    pub description: String,
    /// The environment, by name (looked up beside the trial and in `environments/`, `templates/`) or path.
    #[serde(default)]
    pub environment: Option<String>,
    /// Another trial this one is compared with in reports (by name).
    #[serde(default)]
    pub compare_with: Option<String>,
    /// Auto-scaling group settings per service; absent services are left alone.
    #[serde(default)]
    pub infra: InfraSpec,
    /// Store clearing and counting.
    #[serde(default)]
    pub stores: StoresSpec,
    /// The load runs.
    pub runs: RunsSpec,
    /// Plain HTTP tasks, by the name `runs.tasks` uses.
    #[serde(default)]
    pub http_tasks: BTreeMap<String, HttpTaskSpec>,
    /// CloudWatch metrics to pull for each run's window.
    #[serde(default)]
    pub metrics: Vec<MetricName>,
    /// How long after a run's window CloudWatch's datapoints are complete (default 3m): at the
    /// end of the campaign, windows pulled earlier than that are pulled again.
    #[serde(default)]
    pub metrics_settle: Option<Span>,
    /// Where to publish the client's own figures after each run: `cloudwatch` puts requests,
    /// failures and p50/p95/p99 per second, per endpoint and per task, in the `trialrunner`
    /// namespace (dimensions trial, environment, run, endpoint). A failure to publish is
    /// recorded in the run's `published.json` and never stops the campaign.
    #[serde(default)]
    pub publish: Vec<PublishTo>,
    /// Regression thresholds checked at the end of the run (same format as `compare --thresholds`).
    #[serde(default)]
    pub thresholds: Vec<String>,
    /// With a generator fleet: what a run does when a worker fails or stops reporting. Its
    /// results are kept and marked partial either way.
    #[serde(default)]
    pub on_generator_loss: GeneratorLoss,
    /// Variants of `infra`: the same runs under each in turn, each merged over `infra`, the
    /// groups restored between them, each variant's results in its own folder.
    #[serde(default)]
    pub variants: Vec<VariantSpec>,
    /// The variant this copy of the trial runs under: set by the campaign for each variant's
    /// results (their manifest and report name it), never written in a trial file.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub variant: Option<String>,
}

/// One variant of a trial's `infra` (see [`InfraSpec::merged`]).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VariantSpec {
    /// Its name (names its results folder).
    pub name: String,
    /// What it changes of the trial's `infra`.
    #[serde(default)]
    pub infra: InfraSpec,
}

/// Where a trial publishes the client's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PublishTo {
    /// CloudWatch custom metrics, namespace `trialrunner`, high resolution (1 s).
    Cloudwatch,
}

/// What a campaign does when a generator worker is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorLoss {
    /// End the campaign after the run (restoring everything, as on any error).
    #[default]
    Stop,
    /// Go on with the next run.
    Continue,
}

/// Per-service capacity, plus how long to wait for readiness.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InfraSpec {
    /// Provisioning ASG capacity.
    #[serde(default)]
    pub provisioning: Option<CapacitySpec>,
    /// Verification ASG capacity.
    #[serde(default)]
    pub verification: Option<CapacitySpec>,
    /// Management ASG capacity.
    #[serde(default)]
    pub management: Option<CapacitySpec>,
    /// The deployment's RDS database for the trial: its instance class and `max_connections`
    /// (`{ instance-class: db.t3.medium, max-connections: 200 }`).
    #[serde(default)]
    pub database: Option<super::database::DatabaseSpec>,
    /// Upper bound for instances to become InService, healthy and READY (default 15m).
    #[serde(default)]
    pub ready_timeout: Option<Span>,
    /// Sampling interval of ASG and target health during load (default 5s).
    #[serde(default)]
    pub sample_every: Option<Span>,
}

impl InfraSpec {
    /// The services this trial sets capacity for, with their capacity.
    pub fn capacities(&self) -> Vec<(ServiceRole, CapacitySpec)> {
        [
            (ServiceRole::Provisioning, &self.provisioning),
            (ServiceRole::Verification, &self.verification),
            (ServiceRole::Management, &self.management),
        ]
        .into_iter()
        .filter_map(|(r, c)| c.clone().map(|c| (r, c)))
        .collect()
    }

    /// A variant's `infra` over this one: per group, a capacity it gives replaces this one's,
    /// and each of `warm-pool`, `policy`, `health-check` it gives replaces this one's (a warm
    /// pool's and a health check's fields one by one); the database's fields one by one.
    pub fn merged(&self, over: &InfraSpec) -> InfraSpec {
        let group = |base: &Option<CapacitySpec>, over: &Option<CapacitySpec>| match (base, over) {
            (b, None) => b.clone(),
            (None, Some(o)) => Some(o.clone()),
            (Some(b), Some(o)) => Some(b.merged(o)),
        };
        InfraSpec {
            provisioning: group(&self.provisioning, &over.provisioning),
            verification: group(&self.verification, &over.verification),
            management: group(&self.management, &over.management),
            database: match (&self.database, &over.database) {
                (Some(b), Some(o)) => Some(b.merged(o)),
                (b, o) => o.clone().or_else(|| b.clone()),
            },
            ready_timeout: over.ready_timeout.or(self.ready_timeout),
            sample_every: over.sample_every.or(self.sample_every),
        }
    }
}

/// `{ pin: 3 }` or `{ min: 1, max: 3 }` (optionally with `desired`), and what else of the
/// group the trial changes (`warm-pool`, `policy`, `health-check`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacitySpec {
    /// min = max = desired = pin.
    #[serde(default)]
    pub pin: Option<i64>,
    /// Lower bound when free.
    #[serde(default)]
    pub min: Option<i64>,
    /// Upper bound when free.
    #[serde(default)]
    pub max: Option<i64>,
    /// Initial desired capacity when free (default: min).
    #[serde(default)]
    pub desired: Option<i64>,
    /// The group's warm pool for the trial, or `none`.
    #[serde(default, rename = "warm-pool")]
    pub warm_pool: Option<super::deployment::Setting<super::deployment::WarmPoolSpec>>,
    /// The group's scaling policy for the trial, or `none`.
    #[serde(default)]
    pub policy: Option<super::deployment::Setting<super::deployment::PolicySpec>>,
    /// The group's and its target group's health checks for the trial.
    #[serde(default, rename = "health-check")]
    pub health_check: Option<super::deployment::HealthCheckSpec>,
    /// The instance type the group's instances run as for the trial (`c6i.xlarge`): a new
    /// version of its launch template, rolled out by an instance refresh.
    #[serde(default, rename = "instance-type")]
    pub instance_type: Option<String>,
    /// The version of the group's launch template its instances run for the trial
    /// (`{ version: 7 }`), rolled out by an instance refresh.
    #[serde(default, rename = "launch-template")]
    pub launch_template: Option<super::deployment::LaunchTemplateSpec>,
    /// How a new instance type or template version is rolled out (`{ min-healthy: 90%,
    /// timeout: 30m }`).
    #[serde(default, rename = "instance-refresh")]
    pub instance_refresh: Option<super::deployment::RefreshSpec>,
}

impl CapacitySpec {
    /// What the trial changes of the group besides its capacity.
    pub fn settings(&self) -> super::deployment::GroupSettings {
        super::deployment::GroupSettings {
            warm_pool: self.warm_pool.clone(),
            policy: self.policy.clone(),
            health_check: self.health_check.clone(),
            instance_type: self.instance_type.clone(),
            launch_template: self.launch_template.clone(),
            instance_refresh: self.instance_refresh,
        }
    }

    /// `over`'s fields over this one's (see [`InfraSpec::merged`]).
    pub fn merged(&self, over: &CapacitySpec) -> CapacitySpec {
        use super::deployment::Setting;
        let capacity_given = over.pin.is_some() || over.min.is_some() || over.max.is_some();
        let (pin, min, max, desired) = if capacity_given {
            (over.pin, over.min, over.max, over.desired)
        } else {
            (self.pin, self.min, self.max, over.desired.or(self.desired))
        };
        let warm_pool = match (&self.warm_pool, &over.warm_pool) {
            (Some(Setting::Set(b)), Some(Setting::Set(o))) => {
                Some(Setting::Set(super::deployment::WarmPoolSpec {
                    min: o.min.or(b.min),
                    max: o.max.or(b.max),
                    state: o.state.or(b.state),
                    reuse_on_scale_in: o.reuse_on_scale_in.or(b.reuse_on_scale_in),
                }))
            }
            (b, o) => o.clone().or_else(|| b.clone()),
        };
        let health_check = match (&self.health_check, &over.health_check) {
            (Some(b), Some(o)) => Some(super::deployment::HealthCheckSpec {
                kind: o.kind.or(b.kind),
                grace: o.grace.or(b.grace),
                path: o.path.clone().or_else(|| b.path.clone()),
                interval: o.interval.or(b.interval),
                healthy_threshold: o.healthy_threshold.or(b.healthy_threshold),
                unhealthy_threshold: o.unhealthy_threshold.or(b.unhealthy_threshold),
            }),
            (b, o) => o.clone().or_else(|| b.clone()),
        };
        CapacitySpec {
            pin,
            min,
            max,
            desired,
            warm_pool,
            policy: over.policy.clone().or_else(|| self.policy.clone()),
            health_check,
            instance_type: over
                .instance_type
                .clone()
                .or_else(|| self.instance_type.clone()),
            launch_template: over
                .launch_template
                .clone()
                .or_else(|| self.launch_template.clone()),
            instance_refresh: over.instance_refresh.or(self.instance_refresh),
        }
    }
}

/// When stores are cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ClearPolicy {
    /// Never clear.
    #[default]
    Never,
    /// Once, before the first run.
    BeforeTrial,
    /// Before every run.
    BeforeEachRun,
}

/// When stores are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CountPolicy {
    /// Never count.
    #[default]
    Never,
    /// After every run.
    AfterEachRun,
    /// After each iteration (all runs of one pass).
    AfterEachIteration,
}

/// Store handling for a trial.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoresSpec {
    /// When to clear the endorsement, trust-anchor and policy stores.
    #[serde(default)]
    pub clear: ClearPolicy,
    /// When to count their rows.
    #[serde(default)]
    pub count: CountPolicy,
    /// Flush the session cache whenever stores are cleared.
    #[serde(default)]
    pub flush_sessions: bool,
}

/// `users: 15`, `users: [2, 10]`, or `users: { from: 2, to: 106, step: 8 }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum UsersSpec {
    /// One user count.
    One(i64),
    /// Explicit user counts.
    List(Vec<i64>),
    /// An arithmetic ramp.
    Steps(UserSteps),
}

/// The forms an untagged enum of the grammar accepts, as a user writes them (for the message
/// when a value matches none).
pub fn shapes_of(enum_name: &str) -> Option<&'static str> {
    match enum_name {
        "UsersSpec" => Some(
            "a whole number (`users: 15`), a list (`users: [2, 10]`) or a ramp \
             (`users: { from: 2, to: 106, step: 8 }`) of whole numbers",
        ),
        _ => None,
    }
}

/// An arithmetic ramp of user counts.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSteps {
    /// First count.
    pub from: i64,
    /// Last count (inclusive when the step lands on it).
    pub to: i64,
    /// Increment.
    #[serde(default = "one")]
    pub step: i64,
}

fn one() -> i64 {
    1
}

/// How virtual users start: `all-at-once` or a rate such as `10/s`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum SpawnSpec {
    /// Every user starts at once (the seed's Locust runs).
    #[default]
    AllAtOnce,
    /// Users start at this many per second.
    Rate(Rate),
}

impl Serialize for SpawnSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SpawnSpec::AllAtOnce => s.serialize_str("all-at-once"),
            SpawnSpec::Rate(r) => r.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for SpawnSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml::Value::deserialize(d)?;
        if v.as_str() == Some("all-at-once") {
            return Ok(SpawnSpec::AllAtOnce);
        }
        Rate::deserialize(v)
            .map(SpawnSpec::Rate)
            .map_err(|_| serde::de::Error::custom("expected `all-at-once` or a rate like 10/s"))
    }
}

/// Think time between task iterations of one virtual user: `none`, `{ constant: 1s }`,
/// `{ between: [0.5s, 1.5s] }` or `{ pacing: 2s }`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitSpec {
    /// No wait: a closed loop (Locust's default).
    #[default]
    None,
    /// The same wait after each iteration.
    Constant(Span),
    /// A uniform random wait between two bounds.
    Between(Span, Span),
    /// Each iteration starts this long after the previous one started (Locust's constant_pacing).
    Pacing(Span),
}

impl<'de> Deserialize<'de> for WaitSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            constant: Option<Span>,
            #[serde(default)]
            between: Option<(Span, Span)>,
            #[serde(default)]
            pacing: Option<Span>,
        }
        let v = serde_yaml::Value::deserialize(d)?;
        if v.as_str() == Some("none") {
            return Ok(WaitSpec::None);
        }
        let raw = Raw::deserialize(v).map_err(serde::de::Error::custom)?;
        match (raw.constant, raw.between, raw.pacing) {
            (Some(c), None, None) => Ok(WaitSpec::Constant(c)),
            (None, Some((a, b)), None) => Ok(WaitSpec::Between(a, b)),
            (None, None, Some(p)) => Ok(WaitSpec::Pacing(p)),
            _ => Err(serde::de::Error::custom(
                "write exactly one of `none`, `{ constant: 1s }`, `{ between: [0.5s, 1.5s] }`, `{ pacing: 2s }`",
            )),
        }
    }
}

/// An open (arrival-rate) model instead of closed-loop users.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArrivalSpec {
    /// Sessions started per second at the beginning of the run.
    pub rate: Rate,
    /// Rate at the end of the run (linear ramp); default: constant.
    #[serde(default)]
    pub to: Option<Rate>,
    /// Cap on sessions in flight; arrivals beyond it are counted as dropped.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: i64,
}

fn default_in_flight() -> i64 {
    1000
}

/// How tasks map onto runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TaskMode {
    /// One run per task per user count (the seed's `user-steps`).
    #[default]
    PerTask,
    /// Every user loops over all tasks in one run.
    Together,
}

/// The load runs of a trial.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunsSpec {
    /// User counts (closed model). Exactly one of `users` and `arrival`.
    #[serde(default)]
    pub users: Option<UsersSpec>,
    /// Arrival rate (open model).
    #[serde(default)]
    pub arrival: Option<ArrivalSpec>,
    /// How long each run lasts.
    pub duration: Span,
    /// How users start.
    #[serde(default)]
    pub spawn_rate: SpawnSpec,
    /// Think time.
    #[serde(default)]
    pub wait: WaitSpec,
    /// Seconds at the start of each run marked as warm-up (excluded from steady-state figures).
    #[serde(default)]
    pub warmup: Option<Span>,
    /// Pause after each run.
    #[serde(default)]
    pub cooldown: Option<Span>,
    /// Task names: `well-known`, `provision`, `verify`, or a key of `http-tasks`.
    pub tasks: Vec<String>,
    /// One run per task, or all tasks together.
    #[serde(default)]
    pub mode: TaskMode,
    /// How many times the whole sequence of runs repeats (seed Trial 3: 6).
    #[serde(default = "one")]
    pub iterations: i64,
    /// Per-request timeout (default 30s).
    #[serde(default)]
    pub request_timeout: Option<Span>,
    /// Verification nonces: the fixed seed nonce, or fresh per session (token re-signed).
    #[serde(default)]
    pub nonce: NonceMode,
    /// Give each virtual user its own device identity (distinct CoRIMs and tokens).
    #[serde(default)]
    pub fleet: bool,
}

/// Where verification nonces come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NonceMode {
    /// One fixed nonce and one pre-signed token (the seed's behaviour).
    #[default]
    Fixed,
    /// A fresh random nonce per session, the token re-signed for it.
    Fresh,
}

/// A plain HTTP task.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpTaskSpec {
    /// Which service's base URL the path is relative to.
    pub service: ServiceRole,
    /// HTTP method (default GET).
    #[serde(default = "get")]
    pub method: String,
    /// Path and query, e.g. `/.well-known/veraison/verification`.
    pub path: String,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A file whose bytes are the body (relative to the trial file).
    #[serde(default)]
    pub body_file: Option<PathBuf>,
    /// The status that counts as success (default 200).
    #[serde(default = "ok_status")]
    pub expect_status: u16,
    /// Send the provisioning bearer token.
    #[serde(default)]
    pub auth: bool,
}

fn get() -> String {
    "GET".into()
}
fn ok_status() -> u16 {
    200
}

/// The CloudWatch metric sets a trial can ask for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum MetricName {
    /// ASG desired / in-service / pending / total instances.
    AsgInstances,
    /// EC2 CPU per ASG.
    AsgCpu,
    /// RDS DatabaseConnections.
    RdsConnections,
    /// RDS CPUUtilization.
    RdsCpu,
    /// RDS read/write latency and freeable memory.
    RdsIo,
    /// ElastiCache connections and CPU.
    Cache,
    /// ALB request count and target response time.
    AlbRequests,
    /// ALB target 5xx count.
    #[serde(rename = "alb-5xx")]
    Alb5xx,
    /// Healthy and unhealthy hosts per target group.
    TargetHealth,
    /// Error-pattern counts from the CloudWatch log groups.
    ErrorLogs,
}

// ---------------------------------------------------------------------------------------------
// Environments
// ---------------------------------------------------------------------------------------------

/// An environment file: where the deployment's parts are. Never what to do.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnvironmentFile {
    /// Name, used by trials to refer to it.
    pub name: String,
    /// AWS account, region and credentials; absent for a local environment.
    #[serde(default)]
    pub aws: Option<AwsSpec>,
    /// Veraison deployment name `D` (resources `D-prov-asg`, `D-verif-asg`, …).
    #[serde(default)]
    pub deployment: Option<String>,
    /// Where each service answers.
    pub services: ServicesSpec,
    /// The Veraison release the deployment runs.
    #[serde(default)]
    pub veraison: VeraisonSpec,
    /// Where the stores are.
    #[serde(default)]
    pub stores: Option<StoresLocation>,
    /// Where the load comes from: this process when absent, worker processes on this host
    /// (`local: N`) or a fleet of instances driven through Systems Manager (`aws: …`).
    #[serde(default)]
    pub generators: Option<GeneratorsSpec>,
    /// Where campaigns' results go when `run` is given no `--out`: a folder, or
    /// `s3://bucket/prefix` (each campaign in `<results>/<trial>-<UTC time>`, copied after each
    /// step; the history beside them: `history/` on S3, `history.jsonl` in a folder). Default:
    /// `results/` under the working directory.
    #[serde(default)]
    pub results: Option<String>,
}

/// A generator fleet: exactly one of `local` and `aws`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GeneratorsSpec {
    /// Worker processes on this host (uses every core; how the suite tests distribution).
    #[serde(default)]
    pub local: Option<u32>,
    /// Instances of an auto-scaling group, started through Systems Manager Run Command.
    #[serde(default)]
    pub aws: Option<AwsGenerators>,
}

/// A generator fleet on AWS.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AwsGenerators {
    /// The generators' auto-scaling group (pinned to `count` for the run, restored after).
    pub asg: String,
    /// Instances, one worker each.
    pub count: u32,
    /// `s3://bucket[/prefix]` carrying the phase spec, the trial and the workers' results.
    pub bucket: String,
    /// Region of the group and bucket; default: the environment's.
    #[serde(default)]
    pub region: Option<String>,
    /// Where the instances fetch the trialrunner binary (a release URL); default: the binary
    /// running the campaign, uploaded to the bucket.
    #[serde(default)]
    pub binary_url: Option<String>,
    /// Instance type of the group, for `plan`'s instance-hours (default: read from AWS).
    #[serde(default)]
    pub instance_type: Option<String>,
}

/// AWS settings of an environment.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AwsSpec {
    /// Region, e.g. `eu-west-1`.
    pub region: String,
    /// Named profile from `~/.aws/config`; default: the default chain.
    #[serde(default)]
    pub profile: Option<String>,
    /// The 12-digit account the deployment lives in; changes are refused in any other.
    pub account: String,
    /// Endpoint override (moto, LocalStack); `--aws-endpoint` wins over it.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// The services of the deployment.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServicesSpec {
    /// Provisioning front end.
    pub provisioning: ServiceSpec,
    /// Verification front end.
    pub verification: ServiceSpec,
    /// Management front end.
    #[serde(default)]
    pub management: Option<ServiceSpec>,
}

impl ServicesSpec {
    /// The service of a role, when the environment has it.
    pub fn get(&self, role: ServiceRole) -> Option<&ServiceSpec> {
        match role {
            ServiceRole::Provisioning => Some(&self.provisioning),
            ServiceRole::Verification => Some(&self.verification),
            ServiceRole::Management => self.management.as_ref(),
            ServiceRole::Generators => None,
        }
    }
}

/// One service front end.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServiceSpec {
    /// Base URL, e.g. `https://services.example.com:8443`.
    pub url: url::Url,
    /// Auto-scaling group name (default `D-<prov|verif|manage>-asg` when `deployment` is set).
    #[serde(default)]
    pub asg: Option<String>,
    /// Target group name (default `D-<prov|verif|manage>-tg`).
    #[serde(default)]
    pub target_group: Option<String>,
    /// How to authenticate (provisioning only needs it).
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    /// TLS beyond the public roots: a CA bundle (a deployment with its own CA, as Veraison's
    /// docker deployment), a client certificate. Certificates are always checked.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
}

/// TLS settings of a service; paths are relative to the environment file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsSpec {
    /// PEM file of CA certificates to trust besides the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain), when the service asks for one.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

/// Authentication for a service (one method).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthSpec {
    /// OAuth2 resource-owner password grant (Keycloak).
    pub oauth2_password: PasswordGrantSpec,
}

/// OAuth2 password grant settings; secrets come from environment variables, never the file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PasswordGrantSpec {
    /// Token endpoint.
    pub token_url: url::Url,
    /// OAuth2 client id.
    pub client_id: String,
    /// Variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// User name.
    pub username: String,
    /// Variable holding the password.
    pub password_env: String,
    /// PEM file of CA certificates to trust for the token endpoint (Keycloak with its own CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// The Veraison release, which fixes media types, nonce encodings and store schema.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VeraisonSpec {
    /// A services tag such as `v0.0.2602`, or `head`.
    #[serde(default = "default_release")]
    pub release: String,
}

impl Default for VeraisonSpec {
    fn default() -> Self {
        VeraisonSpec {
            release: default_release(),
        }
    }
}

fn default_release() -> String {
    "v0.0.2602".into()
}

/// Where the stores are and whether they may be cleared.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoresLocation {
    /// Veraison's PostgreSQL database.
    #[serde(default)]
    pub postgres: Option<PostgresSpec>,
    /// Veraison's SQLite store files (docker / native deployments).
    #[serde(default)]
    pub sqlite: Option<SqliteSpec>,
    /// Commands that clear and count (e.g. the deployment's own `veraison clear-stores`).
    #[serde(default)]
    pub command: Option<CommandStoreSpec>,
    /// The stand-in's own store, cleared and counted over its admin API (local environments).
    #[serde(default)]
    pub standin: Option<StandinStoreSpec>,
    /// The verification session cache.
    #[serde(default)]
    pub sessions: Option<SessionsSpec>,
    /// Clearing is refused unless this is true.
    #[serde(default)]
    pub disposable: bool,
}

/// PostgreSQL connection settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PostgresSpec {
    /// Explicit host; otherwise `rds-instance`.
    #[serde(default)]
    pub host: Option<String>,
    /// Port (default 5432, or the RDS instance's).
    #[serde(default)]
    pub port: Option<u16>,
    /// RDS instance identifier, or `auto` to find the deployment's.
    #[serde(default)]
    pub rds_instance: Option<String>,
    /// Database name (default `veraison`).
    #[serde(default = "veraison")]
    pub database: String,
    /// User (default `veraison`).
    #[serde(default = "veraison")]
    pub user: String,
    /// Variable holding the password; otherwise the `D-support` stack parameter `RdsPassword`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// TLS: `require` (RDS), `prefer`, or `disable`.
    #[serde(default)]
    pub tls: TlsMode,
    /// An SSH jump host to reach a database only visible inside the VPC.
    #[serde(default)]
    pub tunnel: Option<TunnelSpec>,
}

fn veraison() -> String {
    "veraison".into()
}

/// TLS mode of a PostgreSQL connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TLS required (RDS rejects non-TLS with `no pg_hba.conf entry … no encryption`).
    Require,
    /// TLS if the server offers it.
    #[default]
    Prefer,
    /// No TLS.
    Disable,
}

/// An SSH port forward through a jump host.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TunnelSpec {
    /// `user@host`.
    pub ssh: String,
    /// SSH port (default 22).
    #[serde(default)]
    pub port: Option<u16>,
    /// Private key file.
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// Extra `-o` options for ssh, e.g. `StrictHostKeyChecking=accept-new`.
    #[serde(default)]
    pub options: Vec<String>,
}

/// SQLite store files.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqliteSpec {
    /// Directory holding `en-store.sql`, `ta-store.sql`, `po-store.sql`.
    pub dir: PathBuf,
}

/// Commands that clear and count the stores.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CommandStoreSpec {
    /// Clears the stores; run with `sh -c`.
    pub clear: String,
    /// Prints `table count` lines; run with `sh -c`.
    pub count: String,
}

/// The session cache.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SessionsSpec {
    /// memcached servers as `host:port`, or `[auto]` to discover the ElastiCache nodes.
    pub memcached: Vec<String>,
    /// A jump host to reach nodes only visible inside the VPC (default: `stores.postgres.tunnel`).
    #[serde(default)]
    pub tunnel: Option<TunnelSpec>,
}

/// The stand-in service's store, reached over its admin API.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StandinStoreSpec {
    /// Base URL of the stand-in (either of its ports).
    pub url: url::Url,
}

// ---------------------------------------------------------------------------------------------
// JSON Schema of the hand-parsed values (the derived types describe themselves)
// ---------------------------------------------------------------------------------------------

impl JsonSchema for SpawnSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SpawnRate".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let rate = g.subschema_for::<Rate>();
        json_schema!({
            "description": "How virtual users start: `all-at-once` (the seed's Locust runs) or a rate such as `10/s`.",
            "anyOf": [{"const": "all-at-once"}, rate],
            "default": "all-at-once"
        })
    }
}

impl JsonSchema for WaitSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Wait".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let span = g.subschema_for::<Span>();
        json_schema!({
            "description": "Think time after each iteration of a virtual user: `none` (a closed loop, Locust's default), `{ constant: 1s }`, `{ between: [0.5s, 1.5s] }` (uniform), or `{ pacing: 2s }` (each iteration starts this long after the previous one started).",
            "anyOf": [
                {"const": "none"},
                {"type": "object", "properties": {"constant": span}, "required": ["constant"], "additionalProperties": false},
                {"type": "object", "properties": {"between": {"type": "array", "items": span, "minItems": 2, "maxItems": 2}}, "required": ["between"], "additionalProperties": false},
                {"type": "object", "properties": {"pacing": span}, "required": ["pacing"], "additionalProperties": false}
            ],
            "default": "none"
        })
    }
}
