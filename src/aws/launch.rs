//! What a group's instances launch from and as (`instance-type`, `launch-template`): read before
//! a trial changes it, changed (a new version of the group's launch template with the instance
//! type, marked as the tool's; the group set to it), rolled out to the instances by an instance
//! refresh ([`super::refresh`]), waited for within the trial's bound with progress shown, and
//! abandoned (the refresh cancelled) on a stop request. The restore sets the group's original
//! template and version (or launch configuration) back, deletes the versions the tool created
//! (so `$Latest` means what it meant), and rolls the instances back.

use std::time::Duration;

use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::refresh::{RefreshCall, RefreshState};
use super::scaler::{AwsScaler, ServiceInfra};
use crate::error::{Error, Result};
use crate::provider::deployment::{Launch, LaunchSource};
use crate::trial::deployment::{GroupSettings, DEFAULT_MIN_HEALTHY};

/// Reads of what a group launches from (granted on `*`).
pub const READS: &[&str] = &[
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeLaunchConfigurations",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:DescribeInstances",
];

/// The change of the group itself (granted on the groups the trial changes).
pub const GROUP_WRITES: &[&str] = &["autoscaling:UpdateAutoScalingGroup"];

/// Changes of a group's launch template: new versions and their removal (granted on the
/// account's launch templates: the template is the group's, not named by the trial).
pub const TEMPLATE_WRITES: &[&str] = &[
    "ec2:CreateLaunchTemplateVersion",
    "ec2:DeleteLaunchTemplateVersions",
];

/// The description of a launch template version the tool created: what the restore deletes.
pub const VERSION_MARK: &str = "trialrunner: for a trial, deleted on restore";

impl AwsScaler {
    /// What the group's instances launch from and as, now.
    pub(super) async fn read_launch(
        &self,
        client: &aws_sdk_autoscaling::Client,
        asg: &str,
        deadline: Instant,
    ) -> Result<Launch> {
        let out = self
            .ctx
            .call_until("autoscaling:DescribeAutoScalingGroups", deadline, || {
                client
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(asg)
                    .send()
            })
            .await?;
        let g = out.auto_scaling_groups().first().ok_or_else(|| {
            Error::Missing(format!(
                "auto-scaling group `{asg}` not found in {}",
                self.ctx.endpoint
            ))
        })?;
        if let Some(t) = g.launch_template() {
            let id = t.launch_template_id().unwrap_or("").to_string();
            let version = t.version().unwrap_or("$Default").to_string();
            let (resolved_version, instance_type) =
                self.template_version(&id, &version, deadline).await?;
            return Ok(Launch {
                source: LaunchSource::Template {
                    id,
                    name: t.launch_template_name().unwrap_or("").to_string(),
                    version,
                },
                resolved_version: Some(resolved_version),
                instance_type,
            });
        }
        if let Some(name) = g.launch_configuration_name() {
            let out = self
                .ctx
                .call_until("autoscaling:DescribeLaunchConfigurations", deadline, || {
                    client
                        .describe_launch_configurations()
                        .launch_configuration_names(name)
                        .send()
                })
                .await?;
            return Ok(Launch {
                source: LaunchSource::Configuration {
                    name: name.to_string(),
                },
                resolved_version: None,
                instance_type: out
                    .launch_configurations()
                    .first()
                    .and_then(|c| c.instance_type())
                    .map(str::to_string),
            });
        }
        Err(Error::Usage(format!(
            "{asg}: its instances launch from a mixed instances policy; a trial can change the instance type or template version only of a group with one launch template or configuration"
        )))
    }

    /// A template version's number and instance type (`version` as a group names it).
    async fn template_version(
        &self,
        id: &str,
        version: &str,
        deadline: Instant,
    ) -> Result<(i64, Option<String>)> {
        let out = self
            .ctx
            .call_until("ec2:DescribeLaunchTemplateVersions", deadline, || {
                self.ec2
                    .describe_launch_template_versions()
                    .launch_template_id(id)
                    .versions(version)
                    .send()
            })
            .await?;
        let v = out.launch_template_versions().first().ok_or_else(|| {
            Error::Missing(format!("launch template {id} has no version {version}"))
        })?;
        Ok((
            v.version_number().unwrap_or(0),
            v.launch_template_data()
                .and_then(|d| d.instance_type())
                .map(|t| t.as_str().to_string()),
        ))
    }

    /// Sets what the trial asks the group's instances to launch from, then rolls it out.
    pub(super) async fn apply_launch(
        &self,
        svc: &ServiceInfra,
        settings: &GroupSettings,
        cancel: &CancellationToken,
    ) -> Result<()> {
        if !settings.changes_launch() {
            return Ok(());
        }
        let asg = svc.asg.as_str();
        let deadline = Instant::now() + self.ctx.timeouts.operation;
        let now = self.read_launch(&self.asg, asg, deadline).await?;
        let LaunchSource::Template { id, .. } = &now.source else {
            return Err(Error::Usage(format!(
                "{asg}: its instances launch from a launch configuration, and instance-type and launch-template need a launch template"
            )));
        };
        if self
            .already_rolled_out(asg, &now, settings, deadline)
            .await?
        {
            // A resumed campaign: the rollout it did before stands.
            crate::terminal::say(&format!(
                "{asg}: its instances already launch from {} as the trial asks: kept",
                now.describe()
            ));
            return Ok(());
        }
        let source = settings
            .launch_template
            .as_ref()
            .map(|l| l.version)
            .or(now.resolved_version)
            .unwrap_or(1);
        let version = match &settings.instance_type {
            None => {
                // The version exists: the read fails now, before the group changes, if not.
                self.template_version(id, &source.to_string(), deadline)
                    .await?;
                source
            }
            Some(t) => {
                let out = self
                    .ctx
                    .call_not_repeated("ec2:CreateLaunchTemplateVersion", || {
                        self.ec2
                            .create_launch_template_version()
                            .launch_template_id(id)
                            .source_version(source.to_string())
                            .version_description(VERSION_MARK)
                            .launch_template_data(
                                RequestLaunchTemplateData::builder()
                                    .instance_type(InstanceType::from(t.as_str()))
                                    .build(),
                            )
                            .send()
                    })
                    .await?;
                out.launch_template_version()
                    .and_then(|v| v.version_number())
                    .ok_or_else(|| {
                        Error::Infra(format!("{asg}: the new template version has no number"))
                    })?
            }
        };
        self.set_launch_template(&self.asg, asg, id, &version.to_string(), deadline)
            .await?;
        crate::terminal::say(&format!(
            "{asg}: instances now launch from version {version} of its template{}; rolling out",
            settings
                .instance_type
                .as_ref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        ));
        let refresh = settings.instance_refresh.unwrap_or_default();
        self.roll_out(asg, refresh.min_healthy_pct(), refresh.timeout(), cancel)
            .await
    }

    /// True when the group already launches what `settings` ask and every instance runs it (a
    /// campaign resumed after its rollout): the instance type, read from EC2; for a template
    /// version alone, the version each instance launched from, as the group lists it.
    async fn already_rolled_out(
        &self,
        asg: &str,
        now: &Launch,
        settings: &GroupSettings,
        deadline: Instant,
    ) -> Result<bool> {
        let LaunchSource::Template { version, .. } = &now.source else {
            return Ok(false);
        };
        if let Some(l) = &settings.launch_template {
            if settings.instance_type.is_none() && *version != l.version.to_string() {
                return Ok(false);
            }
        }
        if let Some(t) = &settings.instance_type {
            if now.instance_type.as_deref() != Some(t.as_str()) || version.parse::<i64>().is_err() {
                return Ok(false);
            }
            let types = self.instance_types(&self.asg, asg, deadline).await?;
            return Ok(!types.is_empty() && types.iter().all(|x| x == t));
        }
        let out = self
            .ctx
            .call_until("autoscaling:DescribeAutoScalingGroups", deadline, || {
                self.asg
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(asg)
                    .send()
            })
            .await?;
        let launched: Vec<Option<&str>> = out
            .auto_scaling_groups()
            .iter()
            .flat_map(|g| g.instances())
            .map(|i| i.launch_template().and_then(|l| l.version()))
            .collect();
        Ok(!launched.is_empty() && launched.iter().all(|v| *v == Some(version.as_str())))
    }

    async fn set_launch_template(
        &self,
        client: &aws_sdk_autoscaling::Client,
        asg: &str,
        id: &str,
        version: &str,
        deadline: Instant,
    ) -> Result<()> {
        self.ctx
            .call_until("autoscaling:UpdateAutoScalingGroup", deadline, || {
                client
                    .update_auto_scaling_group()
                    .auto_scaling_group_name(asg)
                    .launch_template(
                        LaunchTemplateSpecification::builder()
                            .launch_template_id(id)
                            .version(version)
                            .build(),
                    )
                    .send()
            })
            .await?;
        Ok(())
    }

    /// Replaces the group's instances and waits until they all are, `timeout` at most, saying
    /// how far it is; a stop request cancels the refresh (the restore then rolls back).
    async fn roll_out(
        &self,
        asg: &str,
        min_healthy: i32,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let started = Instant::now();
        let call = |deadline| RefreshCall {
            ctx: &self.ctx,
            client: &self.asg,
            asg,
            deadline,
        };
        let op = || Instant::now() + self.ctx.timeouts.operation;
        let id = self.refresh.start(&call(op()), min_healthy).await?;
        let mut said = (-1, Instant::now());
        loop {
            match self.refresh.progress(&call(op()), &id).await? {
                RefreshState::Done => {
                    crate::terminal::say(&format!(
                        "{asg}: every instance replaced after {:.0} s",
                        started.elapsed().as_secs_f64()
                    ));
                    return Ok(());
                }
                RefreshState::Failed(why) => {
                    return Err(Error::Infra(format!(
                        "{asg}: the instance refresh ended without replacing every instance: {why}"
                    )))
                }
                RefreshState::InProgress(percent, what) => {
                    if percent != said.0 || said.1.elapsed() >= Duration::from_secs(30) {
                        crate::terminal::say(&format!(
                            "{asg}: instance refresh {percent}% ({what}, {:.0} s)",
                            started.elapsed().as_secs_f64()
                        ));
                        said = (percent, Instant::now());
                    }
                }
            }
            if started.elapsed() >= timeout {
                self.refresh.cancel(&call(op())).await?;
                return Err(Error::Infra(format!(
                    "{asg}: the instance refresh did not finish within {} (cancelled; the restore rolls back)",
                    humantime::format_duration(timeout)
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(self.refresh_poll()) => {}
                _ = cancel.cancelled() => {
                    self.refresh.cancel(&call(op())).await?;
                    return Err(Error::Interrupted);
                }
            }
        }
    }

    /// How often a refresh is looked at: seconds on AWS, a moment against an emulator.
    fn refresh_poll(&self) -> Duration {
        if self.refresh.carries_on() {
            self.poll
        } else {
            Duration::from_millis(100)
        }
    }

    /// Puts back what the group launches from and rolls its instances back onto it; idempotent
    /// (nothing is done when the group and its instances are as `original` has them).
    pub(super) async fn restore_launch(
        &self,
        client: &aws_sdk_autoscaling::Client,
        asg: &str,
        original: &Launch,
        deadline: Instant,
    ) -> Result<()> {
        let now = self.read_launch(client, asg, deadline).await?;
        let mut roll_back = now.source != original.source;
        if roll_back {
            match &original.source {
                LaunchSource::Template { id, version, .. } => {
                    self.set_launch_template(client, asg, id, version, deadline)
                        .await?
                }
                LaunchSource::Configuration { name } => {
                    self.ctx
                        .call_until("autoscaling:UpdateAutoScalingGroup", deadline, || {
                            client
                                .update_auto_scaling_group()
                                .auto_scaling_group_name(asg)
                                .launch_configuration_name(name)
                                .send()
                        })
                        .await?;
                }
            }
        }
        // The versions the tool created go, so that `$Latest` means what it meant.
        if let LaunchSource::Template { id, .. } = &original.source {
            self.delete_marked_versions(id, deadline).await?;
        }
        if let Some(want) = &original.instance_type {
            roll_back |= self
                .instance_types(client, asg, deadline)
                .await?
                .iter()
                .any(|t| t != want);
        }
        if !roll_back {
            return Ok(());
        }
        let call = RefreshCall {
            ctx: &self.ctx,
            client,
            asg,
            deadline,
        };
        // A refresh of the trial's still going (a stop mid-rollout) makes way for the rollback.
        self.refresh.cancel(&call).await?;
        let id = self
            .refresh
            .start(&call, DEFAULT_MIN_HEALTHY as i32)
            .await?;
        crate::terminal::say(&format!(
            "{asg}: rolling its instances back to {}{}",
            original.describe(),
            if self.refresh.carries_on() {
                " (AWS carries the refresh on)"
            } else {
                ""
            }
        ));
        if self.refresh.carries_on() {
            return Ok(());
        }
        loop {
            match self.refresh.progress(&call, &id).await? {
                RefreshState::Done => return Ok(()),
                RefreshState::Failed(why) => {
                    return Err(Error::Infra(format!("{asg}: rollback failed: {why}")))
                }
                RefreshState::InProgress(..) if Instant::now() >= deadline => {
                    return Err(Error::Infra(format!(
                        "{asg}: its instances were not all rolled back in time"
                    )))
                }
                RefreshState::InProgress(..) => {
                    tokio::time::sleep(self.refresh_poll()).await;
                }
            }
        }
    }

    /// Deletes the versions of template `id` the tool created (never its default).
    async fn delete_marked_versions(&self, id: &str, deadline: Instant) -> Result<()> {
        let out = self
            .ctx
            .call_until("ec2:DescribeLaunchTemplateVersions", deadline, || {
                self.ec2
                    .describe_launch_template_versions()
                    .launch_template_id(id)
                    .send()
            })
            .await?;
        let marked: Vec<String> = out
            .launch_template_versions()
            .iter()
            .filter(|v| {
                v.version_description() == Some(VERSION_MARK) && v.default_version() != Some(true)
            })
            .filter_map(|v| v.version_number().map(|n| n.to_string()))
            .collect();
        if marked.is_empty() {
            return Ok(());
        }
        let out = self
            .ctx
            .call_until("ec2:DeleteLaunchTemplateVersions", deadline, || {
                self.ec2
                    .delete_launch_template_versions()
                    .launch_template_id(id)
                    .set_versions(Some(marked.clone()))
                    .send()
            })
            .await?;
        // AWS answers 200 and lists what it could not delete; gone already is what we want.
        let kept: Vec<String> = out
            .unsuccessfully_deleted_launch_template_versions()
            .iter()
            .filter(|v| {
                v.response_error()
                    .and_then(|e| e.code())
                    .is_none_or(|c| c.as_str() != "launchTemplateVersionDoesNotExist")
            })
            .map(|v| {
                format!(
                    "{} ({})",
                    v.version_number().unwrap_or(0),
                    v.response_error()
                        .and_then(|e| e.message())
                        .unwrap_or("no reason given")
                )
            })
            .collect();
        if !kept.is_empty() {
            return Err(Error::Infra(format!(
                "launch template {id}: the trial's versions {} could not be deleted",
                kept.join(", ")
            )));
        }
        Ok(())
    }

    /// The instance types the group's instances run as.
    async fn instance_types(
        &self,
        client: &aws_sdk_autoscaling::Client,
        asg: &str,
        deadline: Instant,
    ) -> Result<Vec<String>> {
        let out = self
            .ctx
            .call_until("autoscaling:DescribeAutoScalingGroups", deadline, || {
                client
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(asg)
                    .send()
            })
            .await?;
        let ids: Vec<String> = out
            .auto_scaling_groups()
            .iter()
            .flat_map(|g| g.instances())
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .ctx
            .call_until("ec2:DescribeInstances", deadline, || {
                self.ec2
                    .describe_instances()
                    .set_instance_ids(Some(ids.clone()))
                    .send()
            })
            .await?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_type().map(|t| t.as_str().to_string()))
            .collect())
    }
}
