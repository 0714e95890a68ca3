//! The deployment's database (`infra.database`): the RDS instance's class and PostgreSQL's
//! `max_connections`, read before a trial changes them, changed (the parameter in a group the
//! trial names, or in one it creates as a copy of the instance's own, marked as the tool's), and
//! waited for: RDS takes minutes to move an instance to another class, and `max_connections` is a
//! static parameter, applied only by a reboot (about a minute without connections). The waits
//! are bounded by the trial's `database.timeout`, say how far they are, and a stop request
//! abandons them at once. The restore converges on the original: the class and parameter group
//! set back, a named group's parameters put back (reset when they were not set), a reboot when a
//! parameter or the group changed (or the group says one is pending), then the group the tool
//! created deleted; it is idempotent, so `infra restore` finishes what a restore cut short.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_rds::types::{ApplyMethod, Parameter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::scaler::{AwsScaler, DatabaseInfra};
use super::stores::find_rds_instance;
use crate::error::{Error, Result};
use crate::provider::DatabaseOriginal;
use crate::trial::database::{created_group_name, DatabaseSpec};

/// Reads of the database's parameter groups (granted on `*`; finding the instance is
/// [`super::stores::RDS_READS`]).
pub const READS: &[&str] = &["rds:DescribeDBParameterGroups", "rds:DescribeDBParameters"];

/// Changes of the instance (granted on the instance, and on the parameter groups it is set to).
pub const INSTANCE_WRITES: &[&str] = &["rds:ModifyDBInstance", "rds:RebootDBInstance"];

/// Changes of parameter groups (granted on the group the trial names, or on the groups named
/// `trialrunner-*`, which it creates).
pub const GROUP_WRITES: &[&str] = &[
    "rds:CreateDBParameterGroup",
    "rds:CopyDBParameterGroup",
    "rds:ModifyDBParameterGroup",
    "rds:ResetDBParameterGroup",
    "rds:DeleteDBParameterGroup",
];

/// The description of a parameter group the tool created: what the restore deletes.
pub const GROUP_MARK: &str = "trialrunner: for a trial, deleted on restore";

/// The instance as one look sees it.
#[derive(Debug)]
struct InstanceState {
    /// Its identifier.
    id: String,
    /// `available`, `modifying`, `rebooting`, …
    status: String,
    /// Its class.
    class: String,
    /// Its parameter group.
    group: String,
    /// That group's apply status: `in-sync`, `applying` or `pending-reboot`.
    apply: String,
    /// A class RDS has yet to move it to.
    pending_class: Option<String>,
}

impl InstanceState {
    /// True when it is `available` as `class` on `group`, nothing of that pending.
    fn is(&self, class: &str, group: &str) -> bool {
        self.status == "available"
            && self.class == class
            && self.pending_class.is_none()
            && self.group == group
    }

    /// What RDS is doing, as the progress line says it.
    fn doing(&self) -> String {
        let mut s = self.status.clone();
        if let Some(c) = &self.pending_class {
            s.push_str(&format!(", class {} → {c} pending", self.class));
        }
        if self.apply != "in-sync" {
            s.push_str(&format!(", parameter group {} {}", self.group, self.apply));
        }
        s
    }
}

/// Where a wait for the database stops: its end, and the stop request (none for a restore).
struct Bounds<'a> {
    /// The wait ends by then.
    deadline: Instant,
    /// True for a restore: every call may take until the deadline (the restore client's
    /// attempts are short and tried again); a change's calls have the usual bound each.
    restoring: bool,
    /// A stop request abandons the wait.
    cancel: Option<&'a CancellationToken>,
}

impl AwsScaler {
    /// This scaler with the trial's database: `instance` (or `auto`) of deployment `deployment`.
    pub fn with_database(self, instance: &str, deployment: &str, trial: &str) -> AwsScaler {
        let mut scaler = self;
        scaler.database = Some(DatabaseInfra {
            instance: instance.to_string(),
            deployment: deployment.to_string(),
            trial: trial.to_string(),
        });
        scaler
    }

    fn database_infra(&self) -> Result<&DatabaseInfra> {
        self.database.as_ref().ok_or_else(|| {
            Error::Usage(
                "the environment names no RDS instance (stores.postgres.rds-instance)".into(),
            )
        })
    }

    /// How often RDS is looked at: seconds on AWS, a moment against an emulator.
    fn database_poll(&self) -> Duration {
        if super::is_emulator(&self.ctx.endpoint) {
            Duration::from_millis(100)
        } else {
            self.poll
        }
    }

    async fn instance_state(
        &self,
        client: &aws_sdk_rds::Client,
        deployment: &str,
        instance: &str,
        deadline: Instant,
    ) -> Result<InstanceState> {
        let db = find_rds_instance(&self.ctx, client, deployment, instance, deadline).await?;
        let group = db.db_parameter_groups().first();
        Ok(InstanceState {
            id: db.db_instance_identifier().unwrap_or(instance).to_string(),
            status: db.db_instance_status().unwrap_or("unknown").to_string(),
            class: db.db_instance_class().unwrap_or_default().to_string(),
            group: group
                .and_then(|g| g.db_parameter_group_name())
                .unwrap_or_default()
                .to_string(),
            apply: group
                .and_then(|g| g.parameter_apply_status())
                .unwrap_or("in-sync")
                .to_string(),
            pending_class: db
                .pending_modified_values()
                .and_then(|p| p.db_instance_class())
                .map(str::to_string),
        })
    }

    /// The values of `names` in parameter group `group` (`None`: not set, the engine's
    /// default). A group that is not there is [`Error::Missing`].
    async fn parameter_values(
        &self,
        client: &aws_sdk_rds::Client,
        group: &str,
        names: &[String],
        deadline: Instant,
    ) -> Result<BTreeMap<String, Option<String>>> {
        let mut values: BTreeMap<String, Option<String>> =
            names.iter().map(|n| (n.clone(), None)).collect();
        let mut marker: Option<String> = None;
        loop {
            let read = self
                .ctx
                .call_until("rds:DescribeDBParameters", deadline, || {
                    client
                        .describe_db_parameters()
                        .db_parameter_group_name(group)
                        .set_marker(marker.clone())
                        .send()
                })
                .await;
            let out = match read {
                Err(Error::Infra(why)) if why.contains("DBParameterGroupNotFound") => {
                    return Err(Error::Missing(format!(
                        "parameter group {group} not found in {}",
                        self.ctx.endpoint
                    )))
                }
                other => other?,
            };
            for p in out.parameters() {
                if let Some(v) = p.parameter_name().and_then(|n| values.get_mut(n)) {
                    *v = p.parameter_value().map(str::to_string);
                }
            }
            match out.marker().filter(|m| !m.is_empty()) {
                Some(m) => marker = Some(m.to_string()),
                None => return Ok(values),
            }
        }
    }

    /// The database now, with the values of the parameters `spec` sets (see
    /// [`DatabaseOriginal::parameters`]).
    pub(super) async fn read_db(&self, spec: &DatabaseSpec) -> Result<DatabaseOriginal> {
        let infra = self.database_infra()?;
        let deadline = Instant::now() + self.ctx.timeouts.operation;
        let now = self
            .instance_state(&self.rds, &infra.deployment, &infra.instance, deadline)
            .await?;
        if now.group.is_empty() {
            return Err(Error::Infra(format!(
                "RDS instance {}: no parameter group listed",
                now.id
            )));
        }
        let names: Vec<String> = spec
            .parameters()
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        let (changed_group, created) = match (&spec.parameter_group, names.is_empty()) {
            (_, true) => (None, false),
            (Some(g), false) => (Some(g.clone()), false),
            (None, false) => (Some(created_group_name(&infra.trial, &now.id)), true),
        };
        let parameters = match &changed_group {
            None => BTreeMap::new(),
            Some(g) if !created => self
                .parameter_values(&self.rds, g, &names, deadline)
                .await
                .map_err(|e| match e {
                    Error::Missing(why) => Error::Usage(format!("database.parameter-group: {why}")),
                    e => e,
                })?,
            Some(_) => {
                self.parameter_values(&self.rds, &now.group, &names, deadline)
                    .await?
            }
        };
        Ok(DatabaseOriginal {
            instance: now.id,
            class: now.class,
            parameter_group: now.group,
            changed_group,
            created,
            parameters,
        })
    }

    /// Applies `spec` to the database whose originals are `original` (journaled), then waits
    /// until RDS has applied it, within `spec`'s timeout; a stop request abandons the wait.
    pub(super) async fn change_db(
        &self,
        spec: &DatabaseSpec,
        original: &DatabaseOriginal,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let op = || Instant::now() + self.ctx.timeouts.operation;
        let id = original.instance.as_str();
        let bounds = Bounds {
            deadline: Instant::now() + spec.timeout(),
            restoring: false,
            cancel: Some(cancel),
        };
        // RDS takes no change while it applies another (a campaign resumed mid-change).
        let now = self.wait_available(&self.rds, id, &bounds).await?;
        let class = spec
            .instance_class
            .clone()
            .unwrap_or_else(|| original.class.clone());
        let group = original
            .changed_group
            .clone()
            .unwrap_or_else(|| original.parameter_group.clone());
        let values: Vec<(String, Option<String>)> = spec
            .parameters()
            .into_iter()
            .map(|(n, v)| (n.to_string(), Some(v)))
            .collect();
        // A resumed campaign whose database is already as the trial asks keeps it.
        if now.is(&class, &group) && now.apply == "in-sync" {
            let names: Vec<String> = values.iter().map(|(n, _)| n.clone()).collect();
            let set = match &original.changed_group {
                Some(g) => self.parameter_values(&self.rds, g, &names, op()).await?,
                None => BTreeMap::new(),
            };
            if values.iter().all(|(n, v)| set.get(n) == Some(v)) {
                crate::terminal::say(&format!(
                    "database {id}: already class {class} on parameter group {group} as the trial asks: kept"
                ));
                return Ok(());
            }
        }
        if let Some(g) = &original.changed_group {
            if original.created {
                self.create_group(original, g, op()).await?;
            }
            self.set_parameters(&self.rds, g, &values, op()).await?;
        }
        let new_class = (now.class != class
            && now.pending_class.as_deref() != Some(class.as_str()))
        .then_some(class.as_str());
        let new_group = (now.group != group).then_some(group.as_str());
        self.modify_instance(&self.rds, id, new_class, new_group, op())
            .await?;
        let what: Vec<String> = new_class
            .map(|c| format!("class {} → {c}", now.class))
            .into_iter()
            .chain(new_group.map(|g| format!("parameter group {} → {g}", now.group)))
            .chain(
                values
                    .iter()
                    .map(|(n, v)| format!("{n} {}", v.as_deref().unwrap_or("default"))),
            )
            .collect();
        crate::terminal::say(&format!(
            "database {id}: {}; waiting for RDS to apply it (up to {})",
            what.join(", "),
            humantime::format_duration(spec.timeout())
        ));
        self.settle(&self.rds, id, &class, &group, !values.is_empty(), &bounds)
            .await
    }

    /// Puts the database back as `original` has it, waiting for RDS until `deadline`;
    /// idempotent (see the module comment).
    pub(super) async fn restore_db(
        &self,
        original: &DatabaseOriginal,
        deadline: Instant,
    ) -> Result<()> {
        let client = &self.rds_restore;
        let id = original.instance.as_str();
        let bounds = Bounds {
            deadline,
            restoring: true,
            cancel: None,
        };
        // RDS refuses a change while it applies another (a stop mid-change): wait it out.
        let now = self.wait_available(client, id, &bounds).await?;
        let mut reboot = false;
        if let (Some(g), false) = (&original.changed_group, original.created) {
            let names: Vec<String> = original.parameters.keys().cloned().collect();
            let current = self.parameter_values(client, g, &names, deadline).await?;
            let back: Vec<(String, Option<String>)> = original
                .parameters
                .iter()
                .filter(|(n, v)| current.get(*n) != Some(*v))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            self.set_parameters(client, g, &back, deadline).await?;
            reboot |= !back.is_empty();
        }
        let class = (now.class != original.class).then_some(original.class.as_str());
        let group =
            (now.group != original.parameter_group).then_some(original.parameter_group.as_str());
        reboot |= group.is_some();
        self.modify_instance(client, id, class, group, deadline)
            .await?;
        if class.is_some() || group.is_some() || reboot {
            crate::terminal::say(&format!(
                "database {id}: putting back {}",
                original.summary()
            ));
        }
        self.settle(
            client,
            id,
            &original.class,
            &original.parameter_group,
            reboot,
            &bounds,
        )
        .await?;
        if let (Some(g), true) = (&original.changed_group, original.created) {
            self.delete_group(client, g, deadline).await?;
        }
        Ok(())
    }

    /// Creates the trial's parameter group `group`: a copy of the instance's own (its other
    /// parameters kept), or for one of RDS's default groups a new group of its family (the
    /// same: engine defaults). A group of that name the tool created earlier (a resumed
    /// campaign) is used again; anyone else's is refused.
    async fn create_group(
        &self,
        original: &DatabaseOriginal,
        group: &str,
        deadline: Instant,
    ) -> Result<()> {
        if let Some(description) = self.group_description(&self.rds, group, deadline).await? {
            if description == GROUP_MARK {
                return Ok(());
            }
            return Err(Error::Usage(format!(
                "a parameter group named {group} exists and is not the tool's: name it in database.parameter-group, or delete it"
            )));
        }
        let source = &original.parameter_group;
        if source.starts_with("default.") {
            let out = self
                .ctx
                .call_until("rds:DescribeDBParameterGroups", deadline, || {
                    self.rds
                        .describe_db_parameter_groups()
                        .db_parameter_group_name(source)
                        .send()
                })
                .await?;
            let family = out
                .db_parameter_groups()
                .first()
                .and_then(|g| g.db_parameter_group_family())
                .ok_or_else(|| Error::Infra(format!("parameter group {source}: no family listed")))?
                .to_string();
            self.ctx
                .call_not_repeated("rds:CreateDBParameterGroup", || {
                    self.rds
                        .create_db_parameter_group()
                        .db_parameter_group_name(group)
                        .db_parameter_group_family(&family)
                        .description(GROUP_MARK)
                        .send()
                })
                .await?;
        } else {
            self.ctx
                .call_not_repeated("rds:CopyDBParameterGroup", || {
                    self.rds
                        .copy_db_parameter_group()
                        .source_db_parameter_group_identifier(source)
                        .target_db_parameter_group_identifier(group)
                        .target_db_parameter_group_description(GROUP_MARK)
                        .send()
                })
                .await?;
        }
        crate::terminal::say(&format!(
            "database: parameter group {group} created for the trial (from {source}; deleted on restore)"
        ));
        Ok(())
    }

    /// The description of parameter group `group`, `None` when there is none of that name.
    async fn group_description(
        &self,
        client: &aws_sdk_rds::Client,
        group: &str,
        deadline: Instant,
    ) -> Result<Option<String>> {
        let read = self
            .ctx
            .call_until("rds:DescribeDBParameterGroups", deadline, || {
                client
                    .describe_db_parameter_groups()
                    .db_parameter_group_name(group)
                    .send()
            })
            .await;
        match read {
            Ok(out) => Ok(out
                .db_parameter_groups()
                .iter()
                .find(|g| g.db_parameter_group_name() == Some(group))
                .map(|g| g.description().unwrap_or_default().to_string())),
            Err(Error::Infra(why)) if why.contains("DBParameterGroupNotFound") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets `values` in parameter group `group` (`None`: back to the engine's default), each
    /// applied at the instance's next reboot.
    async fn set_parameters(
        &self,
        client: &aws_sdk_rds::Client,
        group: &str,
        values: &[(String, Option<String>)],
        deadline: Instant,
    ) -> Result<()> {
        let parameter = |name: &str, value: Option<&str>| {
            Parameter::builder()
                .parameter_name(name)
                .set_parameter_value(value.map(str::to_string))
                .apply_method(ApplyMethod::PendingReboot)
                .build()
        };
        let set: Vec<Parameter> = values
            .iter()
            .filter_map(|(n, v)| v.as_deref().map(|v| parameter(n.as_str(), Some(v))))
            .collect();
        let reset: Vec<Parameter> = values
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| parameter(n.as_str(), None))
            .collect();
        if !set.is_empty() {
            self.ctx
                .call_until("rds:ModifyDBParameterGroup", deadline, || {
                    client
                        .modify_db_parameter_group()
                        .db_parameter_group_name(group)
                        .set_parameters(Some(set.clone()))
                        .send()
                })
                .await?;
        }
        if !reset.is_empty() {
            self.ctx
                .call_until("rds:ResetDBParameterGroup", deadline, || {
                    client
                        .reset_db_parameter_group()
                        .db_parameter_group_name(group)
                        .set_parameters(Some(reset.clone()))
                        .send()
                })
                .await?;
        }
        Ok(())
    }

    /// Moves the instance to `class` and/or onto parameter group `group`, at once (not in its
    /// maintenance window).
    async fn modify_instance(
        &self,
        client: &aws_sdk_rds::Client,
        instance: &str,
        class: Option<&str>,
        group: Option<&str>,
        deadline: Instant,
    ) -> Result<()> {
        if class.is_none() && group.is_none() {
            return Ok(());
        }
        self.ctx
            .call_until("rds:ModifyDBInstance", deadline, || {
                client
                    .modify_db_instance()
                    .db_instance_identifier(instance)
                    .set_db_instance_class(class.map(str::to_string))
                    .set_db_parameter_group_name(group.map(str::to_string))
                    .apply_immediately(true)
                    .send()
            })
            .await?;
        Ok(())
    }

    /// Deletes parameter group `group` when it is the tool's (gone already is what we want).
    async fn delete_group(
        &self,
        client: &aws_sdk_rds::Client,
        group: &str,
        deadline: Instant,
    ) -> Result<()> {
        match self.group_description(client, group, deadline).await? {
            None => return Ok(()),
            Some(d) if d != GROUP_MARK => {
                crate::terminal::say(&format!(
                    "warning: parameter group {group} is not the tool's: left as it is"
                ));
                return Ok(());
            }
            Some(_) => {}
        }
        let deleted = self
            .ctx
            .call_until("rds:DeleteDBParameterGroup", deadline, || {
                client
                    .delete_db_parameter_group()
                    .db_parameter_group_name(group)
                    .send()
            })
            .await;
        match deleted {
            Err(Error::Infra(why)) if why.contains("DBParameterGroupNotFound") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The bound of one call within a wait.
    fn call_by(&self, bounds: &Bounds<'_>) -> Instant {
        if bounds.restoring {
            bounds.deadline
        } else {
            bounds
                .deadline
                .min(Instant::now() + self.ctx.timeouts.operation)
        }
    }

    /// How long after a reboot call an instance that still says `available` (AWS takes a
    /// moment to show `rebooting`) is taken as rebooted: 60 s on AWS, 2 s against an emulator,
    /// whose reboot is over at once (`TRIALRUNNER_RDS_REBOOT_GRACE` overrides both: the tests'
    /// RDS that takes its time).
    fn reboot_grace(&self) -> Duration {
        std::env::var("TRIALRUNNER_RDS_REBOOT_GRACE")
            .ok()
            .and_then(|v| humantime::parse_duration(&v).ok())
            .unwrap_or(if super::is_emulator(&self.ctx.endpoint) {
                Duration::from_secs(2)
            } else {
                Duration::from_secs(60)
            })
    }

    /// Sleeps a poll, or ends with [`Error::Interrupted`] on a stop request.
    async fn pause(&self, bounds: &Bounds<'_>) -> Result<()> {
        let stop = async {
            match bounds.cancel {
                Some(c) => c.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(self.database_poll()) => Ok(()),
            _ = stop => Err(Error::Interrupted),
        }
    }

    /// Waits until the instance is `available` (RDS takes no change while it applies one).
    async fn wait_available(
        &self,
        client: &aws_sdk_rds::Client,
        instance: &str,
        bounds: &Bounds<'_>,
    ) -> Result<InstanceState> {
        let started = Instant::now();
        let mut said = Instant::now();
        loop {
            let now = self
                .instance_state(client, "", instance, self.call_by(bounds))
                .await?;
            if now.status == "available" {
                return Ok(now);
            }
            if Instant::now() >= bounds.deadline {
                return Err(Error::Infra(format!(
                    "database {instance}: still {} after {:.0} s{}",
                    now.doing(),
                    started.elapsed().as_secs_f64(),
                    if bounds.restoring {
                        " (RDS goes on with it; `infra restore` puts it back once it is available)"
                    } else {
                        ""
                    }
                )));
            }
            if said.elapsed() >= Duration::from_secs(30) {
                crate::terminal::say(&format!(
                    "database {instance}: {} ({:.0} s)",
                    now.doing(),
                    started.elapsed().as_secs_f64()
                ));
                said = Instant::now();
            }
            self.pause(bounds).await?;
        }
    }

    /// Waits until the instance is `available` as `class` on `group` with its parameters in
    /// sync, rebooting it once when `reboot` (a static parameter or the group changed) or when
    /// its group says a reboot is pending; says how far it is on each change and every 30 s.
    async fn settle(
        &self,
        client: &aws_sdk_rds::Client,
        instance: &str,
        class: &str,
        group: &str,
        reboot: bool,
        bounds: &Bounds<'_>,
    ) -> Result<()> {
        let started = Instant::now();
        let mut said = (String::new(), Instant::now());
        // When the reboot was asked for, and whether the instance was seen going down since: AWS
        // may still say `available` for a moment after the call.
        let mut rebooted: Option<Instant> = None;
        let mut went_down = false;
        loop {
            let now = self
                .instance_state(client, "", instance, self.call_by(bounds))
                .await?;
            went_down |= rebooted.is_some() && now.status != "available";
            if now.is(class, group) && now.apply != "applying" {
                if (reboot || now.apply == "pending-reboot") && rebooted.is_none() {
                    self.ctx
                        .call_not_repeated("rds:RebootDBInstance", || {
                            client
                                .reboot_db_instance()
                                .db_instance_identifier(instance)
                                .send()
                        })
                        .await?;
                    rebooted = Some(Instant::now());
                    crate::terminal::say(&format!(
                        "database {instance}: rebooting to apply its parameters (max_connections takes effect only so): no connections for about a minute"
                    ));
                    self.pause(bounds).await?;
                    continue;
                }
                let reboot_over =
                    rebooted.is_none_or(|at| went_down || at.elapsed() >= self.reboot_grace());
                if now.apply != "pending-reboot" && reboot_over {
                    crate::terminal::say(&format!(
                        "database {instance}: class {class}, parameter group {group}, in sync after {:.0} s",
                        started.elapsed().as_secs_f64()
                    ));
                    return Ok(());
                }
            }
            let doing = now.doing();
            if Instant::now() >= bounds.deadline {
                return Err(Error::Infra(format!(
                    "database {instance}: still {doing} after {:.0} s, not yet class {class} on parameter group {group}{}",
                    started.elapsed().as_secs_f64(),
                    if bounds.restoring {
                        " (RDS goes on with it; `infra restore` finishes the restore)"
                    } else {
                        " (the restore puts the originals back)"
                    }
                )));
            }
            if doing != said.0 || said.1.elapsed() >= Duration::from_secs(30) {
                crate::terminal::say(&format!(
                    "database {instance}: {doing} ({:.0} s)",
                    started.elapsed().as_secs_f64()
                ));
                said = (doing, Instant::now());
            }
            self.pause(bounds).await?;
        }
    }
}
