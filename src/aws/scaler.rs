//! Auto-scaling control of a Veraison deployment: discover its ASGs (`D-prov-asg`, …) and target
//! groups, pin (min = max = desired) or free (min..max) them, wait until every instance is
//! InService, every target healthy and the service's well-known READY, sample the infra during
//! load, and put everything back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::AwsContext;
use crate::error::{Error, Result};
use crate::provider::{
    AsgSettings, DatabaseOriginal, DeploymentSettings, HeldLock, LockClaim, ReadyReport, Restored,
    Scaler, Takeover,
};
use crate::trial::database::DatabaseSpec;
use crate::trial::deployment::GroupSettings;
use crate::trial::model::ServiceRole;
use crate::trial::{Capacity, Environment};

/// The group metrics turned on for a trial (1-minute granularity), what CloudWatch pulls later.
pub const GROUP_METRICS: [&str; 5] = [
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
];

/// One service's ASG, target groups and well-known URL.
#[derive(Debug, Clone)]
pub struct ServiceInfra {
    /// Which service.
    pub role: ServiceRole,
    /// ASG name.
    pub asg: String,
    /// Target group name, if the deployment has one.
    pub target_group: Option<String>,
    /// The well-known URL that must answer READY.
    pub well_known: Option<url::Url>,
}

/// The scaler's read-only calls (IAM actions; `iam-policy` grants them on `*`: none of them
/// has resource-level permissions). A call added to this file must be listed here or in
/// [`GROUP_WRITES`] (the `iam` tests read the source).
pub const READS: &[&str] = &[
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribePolicies",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeInstances",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
];

/// The scaler's changes to a group (pin, restore, group metrics, processes): `iam-policy`
/// grants them only on the groups the trial changes.
pub const GROUP_WRITES: &[&str] = &[
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:EnableMetricsCollection",
    "autoscaling:DisableMetricsCollection",
    "autoscaling:SuspendProcesses",
    "autoscaling:ResumeProcesses",
];

/// The ASG provider.
pub struct AwsScaler {
    pub(super) ctx: AwsContext,
    pub(super) asg: aws_sdk_autoscaling::Client,
    /// The same with the tighter restore timeouts (see [`super::AwsTimeouts::restore`]).
    pub(super) asg_restore: aws_sdk_autoscaling::Client,
    pub(super) elb: aws_sdk_elasticloadbalancingv2::Client,
    pub(super) ec2: aws_sdk_ec2::Client,
    pub(super) services: Vec<ServiceInfra>,
    http: reqwest::Client,
    /// How often readiness is polled.
    pub poll: Duration,
    /// How a group's instances are replaced: AWS's Instance Refresh, or against an emulator
    /// (which has none) acted out by the tool.
    pub(super) refresh: std::sync::Arc<dyn super::refresh::InstanceRefresh>,
    /// The RDS client (the trial's database).
    pub(super) rds: aws_sdk_rds::Client,
    /// The same with the tighter restore timeouts.
    pub(super) rds_restore: aws_sdk_rds::Client,
    /// The trial's database, when it changes it ([`AwsScaler::with_database`]).
    pub(super) database: Option<DatabaseInfra>,
}

/// The ASG and target-group names of an environment's services.
pub fn services_of(env: &Environment) -> Vec<ServiceInfra> {
    ServiceRole::ALL
        .into_iter()
        .chain(Some(ServiceRole::Generators))
        .filter_map(|role| {
            let asg = env.asg_name(role)?;
            let well_known = env
                .spec
                .services
                .get(role)
                .and_then(|s| s.url.join(&format!("/.well-known/veraison/{role}")).ok());
            Some(ServiceInfra {
                role,
                asg,
                target_group: env.target_group_name(role),
                well_known,
            })
        })
        .collect()
}

/// One group as read: its settings, instances, target groups and tags.
pub(super) struct GroupState {
    pub(super) settings: AsgSettings,
    /// (instance id, lifecycle state, health status).
    instances: Vec<(String, String, String)>,
    pub(super) target_group_arns: Vec<String>,
    /// (key, value) of every tag (the deployment lock's among them).
    pub(super) tags: Vec<(String, String)>,
}

impl AwsScaler {
    /// A scaler for these services.
    pub fn new(ctx: AwsContext, services: Vec<ServiceInfra>) -> AwsScaler {
        AwsScaler {
            asg: aws_sdk_autoscaling::Client::new(&ctx.config),
            asg_restore: aws_sdk_autoscaling::Client::new(
                &ctx.with_timeouts(super::AwsTimeouts::restore()).config,
            ),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&ctx.config),
            ec2: aws_sdk_ec2::Client::new(&ctx.config),
            rds: aws_sdk_rds::Client::new(&ctx.config),
            rds_restore: aws_sdk_rds::Client::new(
                &ctx.with_timeouts(super::AwsTimeouts::restore()).config,
            ),
            database: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client builds"),
            refresh: if super::is_emulator(&ctx.endpoint) {
                std::sync::Arc::new(super::refresh::ActedOutRefresh::default())
            } else {
                std::sync::Arc::new(super::refresh::ApiRefresh)
            },
            ctx,
            services,
            poll: Duration::from_secs(5),
        }
    }

    /// Replaces the group's instances this way instead (a test's or the twin's own).
    pub fn with_refresh(
        self,
        refresh: std::sync::Arc<dyn super::refresh::InstanceRefresh>,
    ) -> AwsScaler {
        AwsScaler { refresh, ..self }
    }

    /// Checks the services' well-knowns with these CA bundles and client certificate.
    pub fn with_tls(self, tls: &crate::load::tls::ClientTls) -> AwsScaler {
        AwsScaler {
            http: tls
                .builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client builds"),
            ..self
        }
    }

    pub(super) fn service(&self, role: ServiceRole) -> Result<&ServiceInfra> {
        self.services
            .iter()
            .find(|s| s.role == role)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "the environment names no auto-scaling group for {role}"
                ))
            })
    }

    pub(super) async fn group(&self, svc: &ServiceInfra) -> Result<GroupState> {
        let deadline = tokio::time::Instant::now() + self.ctx.timeouts.operation;
        self.group_until(&self.asg, svc, deadline).await
    }

    async fn group_until(
        &self,
        client: &aws_sdk_autoscaling::Client,
        svc: &ServiceInfra,
        deadline: tokio::time::Instant,
    ) -> Result<GroupState> {
        let out = self
            .ctx
            .call_until("autoscaling:DescribeAutoScalingGroups", deadline, || {
                client
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(&svc.asg)
                    .send()
            })
            .await?;
        let g = out.auto_scaling_groups().first().ok_or_else(|| {
            Error::Missing(format!(
                "auto-scaling group `{}` ({}) not found in {}",
                svc.asg, svc.role, self.ctx.endpoint
            ))
        })?;
        Ok(GroupState {
            settings: AsgSettings {
                service: svc.role,
                name: svc.asg.clone(),
                min: g.min_size().unwrap_or(0),
                max: g.max_size().unwrap_or(0),
                desired: g.desired_capacity().unwrap_or(0),
                suspended_processes: g
                    .suspended_processes()
                    .iter()
                    .filter_map(|p| p.process_name().map(str::to_string))
                    .collect(),
                enabled_metrics: g
                    .enabled_metrics()
                    .iter()
                    .filter_map(|m| m.metric().map(str::to_string))
                    .collect(),
                deployment: None,
                held: false,
            },
            instances: g
                .instances()
                .iter()
                .map(|i| {
                    (
                        i.instance_id().unwrap_or("?").to_string(),
                        i.lifecycle_state()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                        i.health_status().unwrap_or("").to_string(),
                    )
                })
                .collect(),
            target_group_arns: g.target_group_arns().to_vec(),
            tags: g
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
                .collect(),
        })
    }

    /// The target groups of a service: those attached to its ASG, else the named one.
    pub(super) async fn target_groups(
        &self,
        svc: &ServiceInfra,
        attached: &[String],
    ) -> Result<Vec<String>> {
        if !attached.is_empty() {
            return Ok(attached.to_vec());
        }
        let Some(name) = &svc.target_group else {
            return Ok(Vec::new());
        };
        let found = self
            .ctx
            .call("elasticloadbalancing:DescribeTargetGroups", || {
                self.elb.describe_target_groups().names(name).send()
            })
            .await;
        match found {
            Ok(out) => Ok(out
                .target_groups()
                .iter()
                .filter_map(|t| t.target_group_arn().map(str::to_string))
                .collect()),
            Err(err) if err.to_string().contains("TargetGroupNotFound") => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }

    /// (target id, state) of every target of a group.
    async fn target_health(&self, arn: &str) -> Result<Vec<(String, String)>> {
        let out = self
            .ctx
            .call("elasticloadbalancing:DescribeTargetHealth", || {
                self.elb
                    .describe_target_health()
                    .target_group_arn(arn)
                    .send()
            })
            .await?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .map(|d| {
                (
                    d.target().and_then(|t| t.id()).unwrap_or("?").to_string(),
                    d.target_health()
                        .and_then(|h| h.state())
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect())
    }

    async fn well_known_ready(
        &self,
        svc: &ServiceInfra,
        budget: Duration,
    ) -> std::result::Result<(), String> {
        let Some(url) = &svc.well_known else {
            return Ok(());
        };
        let budget = budget.clamp(Duration::from_millis(200), Duration::from_secs(10));
        let resp = self
            .http
            .get(url.clone())
            .header("accept", "*/*")
            .timeout(budget)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("{url}: no answer within {budget:?}")
                } else {
                    format!("{url}: {e}")
                }
            })?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        let v: Value = resp.json().await.map_err(|e| format!("{url}: {e}"))?;
        match v.get("service-state").and_then(Value::as_str) {
            Some("READY") => Ok(()),
            other => Err(format!("{url}: service-state {other:?}")),
        }
    }

    /// One readiness look at a service: (ready, what is missing).
    async fn readiness(&self, svc: &ServiceInfra, budget: Duration) -> Result<(bool, String)> {
        let g = self.group(svc).await?;
        let want = g.settings.desired.max(0) as usize;
        let in_service = g
            .instances
            .iter()
            .filter(|(_, l, h)| l == "InService" && h == "Healthy")
            .count();
        if in_service < want || g.instances.len() > want {
            return Ok((
                false,
                format!(
                    "{in_service}/{want} instances InService and healthy ({} in the group)",
                    g.instances.len()
                ),
            ));
        }
        for arn in self.target_groups(svc, &g.target_group_arns).await? {
            let targets = self.target_health(&arn).await?;
            let healthy = targets.iter().filter(|(_, s)| s == "healthy").count();
            if healthy < want {
                return Ok((false, format!("{healthy}/{want} targets healthy in {arn}")));
            }
        }
        match self.well_known_ready(svc, budget).await {
            Ok(()) => Ok((true, String::new())),
            Err(e) => Ok((false, format!("well-known not READY: {e}"))),
        }
    }
}

impl AwsScaler {
    /// EC2 instances tagged `veraison-deployment=D`, as (id, `deployment-instance-name`, state).
    pub async fn tagged_instances(
        &self,
        deployment: &str,
    ) -> Result<Vec<(String, String, String)>> {
        let filter = aws_sdk_ec2::types::Filter::builder()
            .name("tag:veraison-deployment")
            .values(deployment)
            .build();
        let out = self
            .ctx
            .call("ec2:DescribeInstances", || {
                self.ec2.describe_instances().filters(filter.clone()).send()
            })
            .await?;
        let mut found = Vec::new();
        for r in out.reservations() {
            for i in r.instances() {
                let name = i
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some("deployment-instance-name"))
                    .and_then(|t| t.value())
                    .unwrap_or("")
                    .to_string();
                let state = i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default();
                found.push((i.instance_id().unwrap_or("?").to_string(), name, state));
            }
        }
        found.sort();
        Ok(found)
    }
}

#[async_trait]
impl Scaler for AwsScaler {
    async fn snapshot(&self, services: &[ServiceRole]) -> Result<Vec<AsgSettings>> {
        let mut out = Vec::new();
        for role in services {
            out.push(self.group(self.service(*role)?).await?.settings);
        }
        Ok(out)
    }

    async fn scaling_policies(&self, service: ServiceRole) -> Result<Vec<String>> {
        let svc = self.service(service)?;
        let out = self
            .ctx
            .call("autoscaling:DescribePolicies", || {
                self.asg
                    .describe_policies()
                    .auto_scaling_group_name(&svc.asg)
                    .send()
            })
            .await?;
        Ok(out
            .scaling_policies()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_string))
            .collect())
    }

    async fn set_capacity(&self, service: ServiceRole, capacity: Capacity) -> Result<()> {
        let svc = self.service(service)?;
        let current = self.group(svc).await?.settings;
        let (min, max, desired) = capacity.bounds();
        self.ctx
            .call("autoscaling:UpdateAutoScalingGroup", || {
                self.asg
                    .update_auto_scaling_group()
                    .auto_scaling_group_name(&svc.asg)
                    .min_size(min as i32)
                    .max_size(max as i32)
                    .set_desired_capacity(desired.map(|d| d as i32))
                    .send()
            })
            .await?;
        if current.enabled_metrics.is_empty() {
            self.ctx
                .call("autoscaling:EnableMetricsCollection", || {
                    self.asg
                        .enable_metrics_collection()
                        .auto_scaling_group_name(&svc.asg)
                        .granularity("1Minute")
                        .set_metrics(Some(GROUP_METRICS.iter().map(|m| m.to_string()).collect()))
                        .send()
                })
                .await?;
        }
        tracing::info!(asg = %svc.asg, %capacity, "capacity set");
        Ok(())
    }

    async fn read_settings(
        &self,
        service: ServiceRole,
        launch: bool,
    ) -> Result<DeploymentSettings> {
        let deadline = tokio::time::Instant::now() + self.ctx.timeouts.operation;
        let svc = self.service(service)?;
        let mut read = self.read_deployment(&self.asg, svc, deadline).await?;
        if launch {
            read.launch = Some(self.read_launch(&self.asg, &svc.asg, deadline).await?);
        }
        Ok(read)
    }

    async fn change_settings(
        &self,
        service: ServiceRole,
        settings: &GroupSettings,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let svc = self.service(service)?;
        self.apply_deployment(svc, settings).await?;
        self.apply_launch(svc, settings, cancel).await
    }

    async fn read_database(&self, spec: &DatabaseSpec) -> Result<DatabaseOriginal> {
        self.read_db(spec).await
    }

    async fn change_database(
        &self,
        spec: &DatabaseSpec,
        original: &DatabaseOriginal,
        cancel: &CancellationToken,
    ) -> Result<()> {
        self.change_db(spec, original, cancel).await
    }

    async fn restore_database(
        &self,
        original: &DatabaseOriginal,
        deadline: tokio::time::Instant,
    ) -> Result<()> {
        self.restore_db(original, deadline).await
    }

    async fn wait_ready(
        &self,
        services: &[ServiceRole],
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<ReadyReport> {
        let started = Instant::now();
        let mut report = ReadyReport {
            seconds: BTreeMap::new(),
        };
        let mut last_note = Instant::now() - Duration::from_secs(3600);
        loop {
            let mut missing = Vec::new();
            for role in services {
                if report.seconds.contains_key(role.name()) {
                    continue;
                }
                let svc = self.service(*role)?;
                // A transient error (a throttled or failed call) is one more look that did not
                // see readiness; only a group that does not exist ends the wait early.
                let (ready, why) = match self
                    .readiness(svc, timeout.saturating_sub(started.elapsed()))
                    .await
                {
                    Ok(r) => r,
                    Err(e @ Error::Missing(_)) => return Err(e),
                    Err(e) => (false, format!("{e} (retrying)")),
                };
                if ready {
                    report
                        .seconds
                        .insert(role.name().into(), started.elapsed().as_secs_f64());
                    crate::terminal::say(&format!(
                        "{role}: ready after {:.0} s",
                        started.elapsed().as_secs_f64()
                    ));
                } else {
                    missing.push(format!("{role}: {why}"));
                }
            }
            if missing.is_empty() {
                return Ok(report);
            }
            if started.elapsed() >= timeout {
                return Err(Error::Infra(format!(
                    "not ready after {}: {}",
                    humantime::format_duration(timeout),
                    missing.join("; ")
                )));
            }
            if last_note.elapsed() >= Duration::from_secs(30) {
                crate::terminal::say(&format!(
                    "waiting for readiness ({:.0} s): {}",
                    started.elapsed().as_secs_f64(),
                    missing.join("; ")
                ));
                last_note = Instant::now();
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = cancel.cancelled() => return Err(Error::Interrupted),
            }
        }
    }

    async fn restore(
        &self,
        original: &AsgSettings,
        lock: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> Result<Restored> {
        let svc = ServiceInfra {
            role: original.service,
            asg: original.name.clone(),
            target_group: None,
            well_known: None,
        };
        let client = &self.asg_restore;
        let group = self.group_until(client, &svc, deadline).await?;
        // A group another campaign holds now is that campaign's to put back.
        let claims = super::claim_tags::claims_on(&group.tags, svc.role, &svc.asg);
        if !claims.is_empty() && !claims.iter().any(|(c, _)| Some(c.id.as_str()) == lock) {
            let (holder, _) = &claims[0];
            return Ok(Restored::HeldByAnother(format!(
                "another campaign holds it now ({}): left as it is",
                holder.owner
            )));
        }
        // A group the trial only held was never changed: its own policy owns it now.
        if original.held {
            return Ok(Restored::Done);
        }
        let current = group.settings;
        if (current.min, current.max, current.desired)
            != (original.min, original.max, original.desired)
        {
            self.ctx
                .call_until("autoscaling:UpdateAutoScalingGroup", deadline, || {
                    client
                        .update_auto_scaling_group()
                        .auto_scaling_group_name(&original.name)
                        .min_size(original.min)
                        .max_size(original.max)
                        .desired_capacity(original.desired)
                        .send()
                })
                .await?;
        }
        // The warm pool, policies and health checks and the scaling processes must come back as
        // the capacity must: before the best-effort metrics last, which may spend seconds on an
        // API that fails.
        if let Some(deployment) = &original.deployment {
            self.restore_deployment(client, &svc, deployment, deadline)
                .await?;
        }
        let to_resume: Vec<String> = current
            .suspended_processes
            .iter()
            .filter(|p| !original.suspended_processes.contains(p))
            .cloned()
            .collect();
        if !to_resume.is_empty() {
            self.ctx
                .call_until("autoscaling:ResumeProcesses", deadline, || {
                    client
                        .resume_processes()
                        .auto_scaling_group_name(&original.name)
                        .set_scaling_processes(Some(to_resume.clone()))
                        .send()
                })
                .await?;
        }
        let to_suspend: Vec<String> = original
            .suspended_processes
            .iter()
            .filter(|p| !current.suspended_processes.contains(p))
            .cloned()
            .collect();
        if !to_suspend.is_empty() {
            self.ctx
                .call_until("autoscaling:SuspendProcesses", deadline, || {
                    client
                        .suspend_processes()
                        .auto_scaling_group_name(&original.name)
                        .set_scaling_processes(Some(to_suspend.clone()))
                        .send()
                })
                .await?;
        }
        // Last, after everything that must come back: turn off exactly the group metrics the
        // trial turned on (`*`: the list did not fit
        // the lock's tag: leave them). Best effort, within a short bound: group metrics cost
        // nothing, and capacity (above) is what must come back; a failure is a warning.
        let added: Vec<String> = current
            .enabled_metrics
            .iter()
            .filter(|m| !original.enabled_metrics.contains(m))
            .filter(|_| original.enabled_metrics != ["*"])
            .cloned()
            .collect();
        if !added.is_empty() {
            let best_effort = deadline.min(tokio::time::Instant::now() + Duration::from_secs(10));
            if let Err(e) = self
                .ctx
                .call_until("autoscaling:DisableMetricsCollection", best_effort, || {
                    client
                        .disable_metrics_collection()
                        .auto_scaling_group_name(&original.name)
                        .set_metrics(Some(added.clone()))
                        .send()
                })
                .await
            {
                crate::terminal::say(&format!(
                    "warning: {}: group metrics {} left enabled ({e})",
                    original.name,
                    added.join(", ")
                ));
            }
        }
        tracing::info!(asg = %original.name, min = original.min, max = original.max, desired = original.desired, "restored");
        Ok(Restored::Done)
    }

    async fn lock(
        &self,
        services: &[ServiceRole],
        claim: &LockClaim,
        takeover: Takeover,
    ) -> Result<Vec<AsgSettings>> {
        self.take_lock(services, claim, takeover).await
    }

    async fn renew(&self, claim: &LockClaim) -> Result<bool> {
        self.renew_lock(claim).await
    }

    async fn unlock(
        &self,
        claim_id: &str,
        groups: &[String],
        deadline: tokio::time::Instant,
    ) -> Result<()> {
        self.remove_claim(claim_id, groups, deadline).await
    }

    async fn held(&self) -> Result<Vec<HeldLock>> {
        self.held_locks().await
    }

    async fn sample(&self) -> Result<Value> {
        let mut groups = Vec::new();
        for svc in &self.services {
            let g = match self.group(svc).await {
                Ok(g) => g,
                Err(_) => continue,
            };
            let mut targets = Vec::new();
            for arn in self
                .target_groups(svc, &g.target_group_arns)
                .await
                .unwrap_or_default()
            {
                for (id, state) in self.target_health(&arn).await.unwrap_or_default() {
                    targets.push(json!({"target_group": arn, "id": id, "state": state}));
                }
            }
            groups.push(json!({
                "service": svc.role, "asg": svc.asg,
                "min": g.settings.min, "max": g.settings.max, "desired": g.settings.desired,
                "instances": g.instances.iter().map(|(id, l, h)| json!({"id": id, "lifecycle": l, "health": h})).collect::<Vec<_>>(),
                "targets": targets,
            }));
        }
        Ok(json!({"groups": groups}))
    }

    async fn preflight(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for svc in &self.services {
            let g = self.group(svc).await?;
            let s = &g.settings;
            found.push(format!(
                "auto-scaling group {} ({}): min {} max {} desired {}, {} instance(s)",
                s.name,
                svc.role,
                s.min,
                s.max,
                s.desired,
                g.instances.len()
            ));
            for arn in self.target_groups(svc, &g.target_group_arns).await? {
                let targets = self.target_health(&arn).await?;
                found.push(format!("  target group {arn}: {} target(s)", targets.len()));
            }
        }
        // The spin-up timeline reads scaling activities and launch times.
        if let Some(svc) = self.services.first() {
            self.ctx
                .call("autoscaling:DescribeScalingActivities", || {
                    self.asg
                        .describe_scaling_activities()
                        .auto_scaling_group_name(&svc.asg)
                        .max_records(1)
                        .send()
                })
                .await?;
            // The restore reads the groups' policies (a policy may move a restored group).
            self.ctx
                .call("autoscaling:DescribePolicies", || {
                    self.asg
                        .describe_policies()
                        .auto_scaling_group_name(&svc.asg)
                        .max_records(1)
                        .send()
                })
                .await?;
        }
        self.ctx
            .call("ec2:DescribeInstances", || {
                self.ec2.describe_instances().max_results(5).send()
            })
            .await?;
        Ok(found)
    }

    async fn spin_up_timeline(&self, from_unix: f64, to_unix: f64) -> Result<Value> {
        // AWS timestamps onto the generator's clock.
        let offset = self.ctx.clock_offset().await;
        let mut activities = Vec::new();
        let mut instance_ids = Vec::new();
        for svc in &self.services {
            let out = self
                .ctx
                .call("autoscaling:DescribeScalingActivities", || {
                    self.asg
                        .describe_scaling_activities()
                        .auto_scaling_group_name(&svc.asg)
                        .send()
                })
                .await?;
            for a in out.activities() {
                let start = a
                    .start_time()
                    .map(|t| t.as_secs_f64() - offset)
                    .unwrap_or(0.0);
                if start < from_unix - 600.0 || start > to_unix {
                    continue;
                }
                activities.push(json!({
                    "service": svc.role, "asg": svc.asg, "start": start,
                    "end": a.end_time().map(|t| t.as_secs_f64() - offset),
                    "status": a.status_code().map(|s| s.as_str()), "cause": a.cause(), "description": a.description(),
                }));
            }
            if let Ok(g) = self.group(svc).await {
                instance_ids.extend(g.instances.into_iter().map(|(id, _, _)| (svc.role, id)));
            }
        }
        let mut instances = Vec::new();
        if !instance_ids.is_empty() {
            let ids: Vec<String> = instance_ids.iter().map(|(_, id)| id.clone()).collect();
            let out = self
                .ctx
                .call("ec2:DescribeInstances", || {
                    self.ec2
                        .describe_instances()
                        .set_instance_ids(Some(ids.clone()))
                        .send()
                })
                .await?;
            for r in out.reservations() {
                for i in r.instances() {
                    let id = i.instance_id().unwrap_or("?");
                    let role = instance_ids.iter().find(|(_, x)| x == id).map(|(r, _)| *r);
                    instances.push(json!({"id": id, "service": role, "launch_time": i.launch_time().map(|t| t.as_secs_f64() - offset)}));
                }
            }
        }
        Ok(json!({"activities": activities, "instances": instances, "clock_offset_s": offset}))
    }
}

/// The trial's database, as the environment names it.
#[derive(Debug, Clone)]
pub struct DatabaseInfra {
    /// An instance identifier, or `auto` (the deployment's `D-support-…` instance).
    pub instance: String,
    /// The deployment name `D`, which `auto` looks for.
    pub deployment: String,
    /// The trial's name (it names the parameter group the trial creates).
    pub trial: String,
}
