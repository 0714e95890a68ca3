//! The small traits the executor acts through. Each has an AWS/real implementation and a local
//! one; the executor knows only these. Errors are [`crate::Error`] values (`Infra` for
//! provider failures), so exit codes follow from them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::owner::{Liveness, Owner};
use crate::results::RunSummary;
use crate::trial::database::DatabaseSpec;
use crate::trial::deployment::GroupSettings;
use crate::trial::model::ServiceRole;
use crate::trial::{Capacity, LoadPhase};

pub mod database;
pub mod deployment;
pub use database::DatabaseOriginal;
pub use deployment::DeploymentSettings;

/// An ASG's settings as found before a trial: what restoring puts back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsgSettings {
    /// The service it runs.
    pub service: ServiceRole,
    /// ASG name.
    pub name: String,
    /// Minimum size.
    pub min: i32,
    /// Maximum size.
    pub max: i32,
    /// Desired capacity.
    pub desired: i32,
    /// Suspended scaling processes.
    #[serde(default)]
    pub suspended_processes: Vec<String>,
    /// Group metrics enabled (empty when collection is off).
    #[serde(default)]
    pub enabled_metrics: Vec<String>,
    /// Its warm pool, policies and health checks, when the trial changes them (`None`: not
    /// read, and left as they are on restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentSettings>,
    /// Held as it is, not changed (a trial that changes only the database locks the
    /// deployment's groups): the restore leaves it as it is then, whatever its own policy did.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// What a journal's changes apply to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalTarget {
    /// AWS account id.
    pub account: String,
    /// Region.
    pub region: String,
    /// Where the API calls went (`AWS eu-west-1`, or an emulator's URL).
    pub endpoint: String,
    /// The Veraison deployment name, when the environment gives one.
    pub deployment: Option<String>,
    /// The auto-scaling groups, sorted.
    pub groups: Vec<String>,
    /// The RDS instance, as the environment names it, when the trial changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

impl JournalTarget {
    /// A target; group names are sorted and deduplicated.
    pub fn new(
        account: &str,
        region: &str,
        endpoint: &str,
        deployment: Option<&str>,
        groups: impl IntoIterator<Item = String>,
    ) -> JournalTarget {
        let mut groups: Vec<String> = groups.into_iter().collect();
        groups.sort();
        groups.dedup();
        JournalTarget {
            account: account.into(),
            region: region.into(),
            endpoint: endpoint.into(),
            deployment: deployment.map(str::to_string),
            groups,
            database: None,
        }
    }

    /// The same, with the RDS instance the trial changes (as the environment names it).
    pub fn with_database(self, database: Option<String>) -> JournalTarget {
        JournalTarget { database, ..self }
    }

    /// A short stable key (names the state file).
    pub fn key(&self) -> String {
        let text = serde_json::to_string(self).expect("target serializes");
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    }

    /// True when both act on the same account, region and endpoint and share a group or the
    /// database.
    pub fn overlaps(&self, other: &JournalTarget) -> bool {
        self.account == other.account
            && self.region == other.region
            && self.endpoint == other.endpoint
            && (self.groups.iter().any(|g| other.groups.contains(g))
                || (self.database.is_some() && self.database == other.database))
    }
}

impl std::fmt::Display for JournalTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{} in account {} ({}, {})",
            self.groups.join(", "),
            self.database
                .as_ref()
                .map(|d| format!(" and database {d}"))
                .unwrap_or_default(),
            self.account,
            self.region,
            self.endpoint
        )
    }
}

/// A campaign's claim on the auto-scaling groups it changes: the lock held on the deployment
/// itself (written on every group, so that any host and any state folder sees it), renewed by
/// the campaign while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LockClaim {
    /// The campaign's id: the same across its resumes.
    pub id: String,
    /// The process that holds it now.
    pub owner: Owner,
    /// When the lease ends unless renewed (Unix seconds).
    pub expires_unix: f64,
    /// The campaign's results directory, as far as it fits.
    pub results_dir: Option<String>,
}

/// Who may take a claim over from its holder: a resumed campaign takes its own claim back when
/// the process that held it is gone (or `--force` says it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Takeover {
    /// Only from a holder known to be gone: ended on this host, or its lease expired.
    #[default]
    WhenGone,
    /// Also from a holder on another host whose lease runs (the operator says it has ended).
    Forced,
}

/// A claim found on the groups, with the original settings of each group it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldLock {
    /// The claim.
    pub claim: LockClaim,
    /// The groups it holds (sorted), each with the original settings it carries when they
    /// could be read.
    pub groups: Vec<(String, Option<AsgSettings>)>,
}

impl LockClaim {
    /// A new campaign id: 12 hex digits of a random UUID.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
    }

    /// True when its lease has run out.
    pub fn expired(&self) -> bool {
        self.expires_unix <= crate::results::unix_now()
    }

    /// When the lease ends, as people read it.
    pub fn lease_text(&self) -> String {
        let at = chrono::DateTime::from_timestamp(self.expires_unix as i64, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "?".into());
        if self.expired() {
            format!("its lease expired at {at}: its owner stopped renewing it")
        } else {
            format!("lease until {at}, renewed while it runs")
        }
    }

    /// Why this claim stops `taker` (another claim of the same campaign, or of another one)
    /// from taking the groups, or `None` when it does not.
    pub fn blocks(&self, taker: &LockClaim, takeover: Takeover) -> Option<String> {
        let dir = self
            .results_dir
            .as_deref()
            .map(|d| format!(", results {d}"))
            .unwrap_or_default();
        if self.id != taker.id {
            let why = match (self.owner.liveness(), self.expired()) {
                (Liveness::Gone, _) => "a campaign that ended without restoring them holds them",
                (_, true) => "a campaign whose lease expired holds them",
                (Liveness::Unknown, false) => "a campaign on another host holds them",
                _ => "a campaign that is still running holds them",
            };
            return Some(format!(
                "{why} ({}, {}{dir})",
                self.owner,
                self.lease_text()
            ));
        }
        if self.owner.same_process(&taker.owner) {
            return None;
        }
        match (self.owner.liveness(), self.expired(), takeover) {
            (Liveness::Gone, _, _) | (_, true, _) => None,
            (Liveness::Unknown, false, Takeover::Forced) => None,
            (Liveness::Unknown, false, Takeover::WhenGone) => Some(format!(
                "this campaign still runs on another host ({}, {}{dir}): make sure it has ended, then resume with --force",
                self.owner,
                self.lease_text()
            )),
            _ => Some(format!(
                "this campaign is still running ({}{dir})",
                self.owner
            )),
        }
    }
}

/// What became of one group a restore was asked to put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// Put back (or already as it was).
    Done,
    /// Another campaign holds it now: its settings are that campaign's to put back.
    HeldByAnother(String),
}

/// How long it took for a service to become ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadyReport {
    /// Per service: seconds until every instance was InService, healthy and READY.
    pub seconds: BTreeMap<String, f64>,
}

/// Auto-scaling control.
#[async_trait]
pub trait Scaler: Send + Sync {
    /// Current settings of the services' ASGs (for the undo journal).
    async fn snapshot(&self, services: &[ServiceRole]) -> Result<Vec<AsgSettings>>;
    /// Names of a group's scaling policies (of any kind). A group with one has the desired
    /// capacity its policy sets as soon as its min and max allow: after a restore that may
    /// already differ from the original, which is the group's doing, not the restore's.
    async fn scaling_policies(&self, _service: ServiceRole) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// Applies a capacity (and turns on 1-minute group metrics).
    async fn set_capacity(&self, service: ServiceRole, capacity: Capacity) -> Result<()>;
    /// A group's warm pool, policies and health checks as they are now (what the journal keeps
    /// before [`Scaler::change_settings`]); also the preflight's cheap read of them.
    /// What its instances launch from is read too when `launch` (the trial changes it).
    async fn read_settings(
        &self,
        _service: ServiceRole,
        _launch: bool,
    ) -> Result<DeploymentSettings> {
        Err(crate::Error::Infra(
            "this scaler cannot read warm pools, policies or health checks".into(),
        ))
    }
    /// Applies a group's warm pool, policy, health checks and instance type or template version
    /// (the originals already journaled), the last rolled out to its instances; a stop request
    /// (`cancel`) abandons the rollout.
    async fn change_settings(
        &self,
        _service: ServiceRole,
        _settings: &GroupSettings,
        _cancel: &CancellationToken,
    ) -> Result<()> {
        Err(crate::Error::Infra(
            "this scaler cannot change warm pools, policies or health checks".into(),
        ))
    }
    /// The deployment's database as it is now (its class, parameter group and the values of
    /// the parameters `spec` sets): what the journal keeps before
    /// [`Scaler::change_database`]; also the preflight's cheap read of it.
    async fn read_database(&self, _spec: &DatabaseSpec) -> Result<DatabaseOriginal> {
        Err(crate::Error::Infra(
            "this scaler cannot read the database's class or parameters".into(),
        ))
    }
    /// Applies the database's class and parameters (`original` already journaled) and waits
    /// until RDS has applied them (a reboot for a static parameter), within `spec`'s timeout; a
    /// stop request (`cancel`) abandons the wait.
    async fn change_database(
        &self,
        _spec: &DatabaseSpec,
        _original: &DatabaseOriginal,
        _cancel: &CancellationToken,
    ) -> Result<()> {
        Err(crate::Error::Infra(
            "this scaler cannot change the database".into(),
        ))
    }
    /// Puts the database back as `original` has it (class, parameter group, parameters; a
    /// group the trial created deleted), waiting for RDS until `deadline`; idempotent.
    async fn restore_database(
        &self,
        _original: &DatabaseOriginal,
        _deadline: tokio::time::Instant,
    ) -> Result<()> {
        Err(crate::Error::Infra(
            "this scaler cannot restore the database".into(),
        ))
    }
    /// Waits until the services are ready, or the timeout/cancel.
    async fn wait_ready(
        &self,
        services: &[ServiceRole],
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<ReadyReport>;
    /// Puts one ASG back as it was, trying until `deadline`; idempotent. A group that another
    /// campaign than `lock` holds is left alone.
    async fn restore(
        &self,
        original: &AsgSettings,
        lock: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> Result<Restored>;
    /// Takes the deployment lock on the services' groups for `claim` (written on the groups,
    /// read back to catch a concurrent writer) and returns their original settings: read in
    /// the same look that found them free, or the ones its own earlier claim carries. Refuses
    /// (bad input, nothing changed) naming the holder when another campaign holds any of them.
    async fn lock(
        &self,
        services: &[ServiceRole],
        claim: &LockClaim,
        takeover: Takeover,
    ) -> Result<Vec<AsgSettings>>;
    /// Renews the claim's lease on its groups; `Ok(false)` when the claim is gone from one of
    /// them (another operator broke it).
    async fn renew(&self, claim: &LockClaim) -> Result<bool>;
    /// Removes a claim from these groups, trying until `deadline` (only that claim's marks).
    async fn unlock(
        &self,
        claim_id: &str,
        groups: &[String],
        deadline: tokio::time::Instant,
    ) -> Result<()>;
    /// Every claim on the groups.
    async fn held(&self) -> Result<Vec<HeldLock>>;
    /// One infra sample (instances, lifecycle, target health) as a JSON line for `infra.jsonl`.
    async fn sample(&self) -> Result<serde_json::Value>;
    /// After a run: scaling activities and instance launch times for its window.
    async fn spin_up_timeline(&self, from_unix: f64, to_unix: f64) -> Result<serde_json::Value>;
    /// Cheap reads of everything it will use (groups, target groups, activities, instances);
    /// one line per thing found. Changes nothing.
    async fn preflight(&self) -> Result<Vec<String>>;
}

pub use crate::results::StoreCounts;

/// Clearing and counting the endorsement stores.
#[async_trait]
pub trait StoreDriver: Send + Sync {
    /// What this driver talks to (no secrets).
    fn describe(&self) -> String;
    /// Rows per table.
    async fn count(&self) -> Result<StoreCounts>;
    /// Deletes every row; returns the counts before. Callers check the counts after.
    async fn clear(&self) -> Result<StoreCounts>;
    /// Reaches the store (locating it, its password, the tunnel) and counts; changes nothing.
    async fn preflight(&self) -> Result<Vec<String>> {
        let counts = self.count().await?;
        Ok(vec![format!(
            "{}: {} rows in {} tables",
            self.describe(),
            counts.values().sum::<u64>(),
            counts.len()
        )])
    }
}

/// The verification session cache.
#[async_trait]
pub trait SessionCache: Send + Sync {
    /// Drops every session, and checks that none is left.
    async fn flush(&self) -> Result<()>;
    /// Reaches every node; changes nothing.
    async fn preflight(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// Cloud metrics for a window, written into a run's folder.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Pulls the metrics for `[from, to]` (Unix seconds) into `dir/cloudwatch.json`.
    async fn pull(&self, from_unix: f64, to_unix: f64, dir: &Path) -> Result<()>;
    /// Resolves every resource the metrics need and checks read access; changes nothing.
    async fn preflight(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// What publishing a run's client figures sent.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Published {
    /// Where (`cloudwatch:trialrunner`).
    pub to: String,
    /// Datapoints sent.
    pub datapoints: usize,
    /// API calls it took.
    pub calls: usize,
    /// Whole seconds added to each timestamp: AWS's clock ahead of ours, rounded (the offset is
    /// known to about half a second, and each datapoint must stay in its own second).
    pub clock_offset_s: f64,
}

/// Where the client's own figures go after each run (CloudWatch custom metrics), so a team's
/// dashboards show them beside the deployment's.
#[async_trait]
pub trait ClientMetricsSink: Send + Sync {
    /// Publishes the per-second figures of run `run_id` from its folder `dir` (`timeline.csv`).
    async fn publish(&self, run_id: &str, dir: &Path) -> Result<Published>;
}

/// What the readiness gate found.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TargetReport {
    /// `version` of each service's well-known.
    pub versions: BTreeMap<String, String>,
    /// Notes from the smoke run.
    pub notes: Vec<String>,
}

/// Readiness of the target service itself.
#[async_trait]
pub trait TargetCheck: Send + Sync {
    /// Well-known READY, and one provision + verify succeeding semantically.
    async fn check(&self) -> Result<TargetReport>;
}

/// The load engine, as the executor sees it.
#[async_trait]
pub trait LoadRunner: Send + Sync {
    /// The campaign the coming runs belong to: its id is unique per campaign and the same
    /// across `--resume` (the manifest keeps it). A fleet names what it leaves in shared places
    /// (a bucket, its instances' disks) by it, so one campaign never reads another's files.
    fn campaign(&self, _id: &str) {}

    /// Runs one load phase, writing its files into `dir`.
    async fn run(
        &self,
        phase: &LoadPhase,
        dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<RunSummary>;
}

/// A copy of the results directory kept elsewhere as the campaign goes (`--out s3://…`): the
/// executor hands it the directory after each completed step; it sends what changed since.
#[async_trait]
pub trait ResultsMirror: Send + Sync {
    /// Where the copy is (`s3://bucket/prefix`), for messages.
    fn location(&self) -> String;

    /// Sends every file of `dir` that changed since the last sync (the ledger last, so the copy
    /// never lists a step whose files it lacks). A file that could not be sent is tried again
    /// at the next sync; the error names what is still missing.
    async fn sync(&self, dir: &Path) -> Result<()>;
}

/// The providers a plan executes against; absent ones are caught by validation.
#[derive(Clone)]
pub struct Providers {
    /// ASG control.
    pub scaler: Option<Arc<dyn Scaler>>,
    /// Stores.
    pub stores: Option<Arc<dyn StoreDriver>>,
    /// Session cache.
    pub sessions: Option<Arc<dyn SessionCache>>,
    /// Cloud metrics.
    pub metrics: Option<Arc<dyn MetricsSource>>,
    /// Where the client's figures are published after each run (`publish`).
    pub publish: Option<Arc<dyn ClientMetricsSink>>,
    /// Readiness gate.
    pub target: Arc<dyn TargetCheck>,
    /// Load.
    pub load: Arc<dyn LoadRunner>,
    /// What the undo journal is keyed by (account, region, endpoint, groups), when the trial
    /// changes infrastructure.
    pub journal_target: Option<JournalTarget>,
    /// Where the results directory is mirrored after each step (`--out s3://…`), if anywhere.
    pub results_mirror: Option<Arc<dyn ResultsMirror>>,
}
