//! A group's warm pool, target-tracking policies and health checks (its own and its target
//! groups'): read before a trial changes them, changed, and put back exactly. A warm pool or a
//! policy that did not exist before is gone after; a policy the trial removed comes back with
//! its name, type and configuration. Step, simple and predictive policies are never touched.

use aws_sdk_autoscaling::types::{
    CustomizedMetricSpecification, InstanceReusePolicy, MetricDimension, MetricStatistic,
    MetricType, PredefinedMetricSpecification, TargetTrackingConfiguration, WarmPoolState,
};
use tokio::time::Instant;

use super::scaler::{AwsScaler, ServiceInfra};
use crate::error::{Error, Result};
use crate::provider::deployment::{
    DeploymentSettings, TargetGroupCheck, TargetTracking, TrackedMetric, WarmPool,
};
use crate::trial::deployment::{GroupSettings, PolicySpec, Setting};

/// The reads of a group's settings (IAM actions, granted on `*`). A call added to this file
/// must be listed here, in [`GROUP_WRITES`] or [`TARGET_GROUP_WRITES`] (the `iam` tests read
/// the source).
pub const READS: &[&str] = &[
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeWarmPool",
    "autoscaling:DescribePolicies",
    "elasticloadbalancing:DescribeTargetGroups",
];

/// The changes of a group's settings: `iam-policy` grants them on the groups the trial changes.
pub const GROUP_WRITES: &[&str] = &[
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:PutWarmPool",
    "autoscaling:DeleteWarmPool",
    "autoscaling:PutScalingPolicy",
    "autoscaling:DeletePolicy",
];

/// The health checks of a target group: granted on the target groups of the groups changed.
pub const TARGET_GROUP_WRITES: &[&str] = &["elasticloadbalancing:ModifyTargetGroup"];

/// The name of the policy a trial puts on a group (removed on restore).
pub fn trial_policy_name(asg: &str) -> String {
    format!("trialrunner-{asg}")
}

/// The resource label of a target group behind a load balancer, as `ALBRequestCountPerTarget`
/// names it: `app/<lb>/<lb id>/targetgroup/<tg>/<tg id>`, from the two ARNs.
pub fn resource_label(lb_arn: &str, tg_arn: &str) -> String {
    let lb = lb_arn
        .split_once(":loadbalancer/")
        .map(|(_, l)| l)
        .unwrap_or(lb_arn);
    let tg = tg_arn.rsplit(':').next().unwrap_or(tg_arn);
    format!("{lb}/{tg}")
}

impl AwsScaler {
    /// The group's warm pool, policies and health checks now, read with `client` until
    /// `deadline`.
    pub(super) async fn read_deployment(
        &self,
        client: &aws_sdk_autoscaling::Client,
        svc: &ServiceInfra,
        deadline: Instant,
    ) -> Result<DeploymentSettings> {
        let asg = svc.asg.as_str();
        let pool = self
            .ctx
            .call_until("autoscaling:DescribeWarmPool", deadline, || {
                client
                    .describe_warm_pool()
                    .auto_scaling_group_name(asg)
                    .send()
            })
            .await?;
        let warm_pool = pool.warm_pool_configuration().map(|w| WarmPool {
            min: w.min_size().unwrap_or(0),
            max_prepared: w.max_group_prepared_capacity().filter(|m| *m >= 0),
            state: w
                .pool_state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "Stopped".into()),
            reuse_on_scale_in: w
                .instance_reuse_policy()
                .and_then(|r| r.reuse_on_scale_in())
                .unwrap_or(false),
        });
        let out = self
            .ctx
            .call_until("autoscaling:DescribePolicies", deadline, || {
                client
                    .describe_policies()
                    .auto_scaling_group_name(asg)
                    .send()
            })
            .await?;
        let mut policies = Vec::new();
        let mut other_policies = Vec::new();
        for p in out.scaling_policies() {
            let name = p.policy_name().unwrap_or("?").to_string();
            match (p.policy_type(), p.target_tracking_configuration()) {
                (Some("TargetTrackingScaling"), Some(t)) => {
                    let metric = if let Some(m) = t.customized_metric_specification() {
                        TrackedMetric::Custom {
                            namespace: m.namespace().unwrap_or("").to_string(),
                            name: m.metric_name().unwrap_or("").to_string(),
                            dimensions: m
                                .dimensions()
                                .iter()
                                .map(|d| {
                                    (
                                        d.name().unwrap_or("").to_string(),
                                        d.value().unwrap_or("").to_string(),
                                    )
                                })
                                .collect(),
                            statistic: m
                                .statistic()
                                .map(|s| s.as_str().to_string())
                                .unwrap_or_else(|| "Average".into()),
                            unit: m.unit().map(str::to_string),
                        }
                    } else {
                        let m = t.predefined_metric_specification();
                        TrackedMetric::Predefined {
                            metric: m
                                .and_then(|m| {
                                    m.predefined_metric_type().map(|t| t.as_str().to_string())
                                })
                                .unwrap_or_default(),
                            label: m.and_then(|m| m.resource_label()).map(str::to_string),
                        }
                    };
                    policies.push(TargetTracking {
                        name,
                        metric,
                        target: t.target_value().unwrap_or(0.0),
                        disable_scale_in: t.disable_scale_in(),
                        estimated_instance_warmup: p.estimated_instance_warmup(),
                    });
                }
                _ => other_policies.push(name),
            }
        }
        let group = self
            .ctx
            .call_until("autoscaling:DescribeAutoScalingGroups", deadline, || {
                client
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(asg)
                    .send()
            })
            .await?;
        let g = group.auto_scaling_groups().first().ok_or_else(|| {
            Error::Missing(format!(
                "auto-scaling group `{asg}` not found in {}",
                self.ctx.endpoint
            ))
        })?;
        let arns = self.target_groups(svc, g.target_group_arns()).await?;
        let target_groups = self.target_group_checks(&arns, deadline).await?;
        Ok(DeploymentSettings {
            warm_pool,
            policies,
            other_policies,
            health_check_type: g.health_check_type().unwrap_or("EC2").to_string(),
            health_check_grace_s: g.health_check_grace_period().unwrap_or(0),
            target_groups,
            launch: None,
        })
    }

    async fn target_group_checks(
        &self,
        arns: &[String],
        deadline: Instant,
    ) -> Result<Vec<TargetGroupCheck>> {
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .ctx
            .call_until(
                "elasticloadbalancing:DescribeTargetGroups",
                deadline,
                || {
                    self.elb
                        .describe_target_groups()
                        .set_target_group_arns(Some(arns.to_vec()))
                        .send()
                },
            )
            .await?;
        Ok(out
            .target_groups()
            .iter()
            .map(|t| TargetGroupCheck {
                arn: t.target_group_arn().unwrap_or("").to_string(),
                path: t.health_check_path().map(str::to_string),
                interval_s: t.health_check_interval_seconds(),
                healthy_threshold: t.healthy_threshold_count(),
                unhealthy_threshold: t.unhealthy_threshold_count(),
            })
            .collect())
    }

    /// The resource label of a group's target group (`app/lb/id/targetgroup/tg/id`), what a
    /// request-count policy names it by.
    async fn resource_label(&self, svc: &ServiceInfra) -> Result<String> {
        let g = self.group(svc).await?;
        let arns = self.target_groups(svc, &g.target_group_arns).await?;
        let arn = arns.first().ok_or_else(|| {
            Error::Usage(format!(
                "{}: a requests-per-target policy needs a target group, and the group has none",
                svc.asg
            ))
        })?;
        let out = self
            .ctx
            .call("elasticloadbalancing:DescribeTargetGroups", || {
                self.elb
                    .describe_target_groups()
                    .target_group_arns(arn)
                    .send()
            })
            .await?;
        let lb = out
            .target_groups()
            .first()
            .and_then(|t| t.load_balancer_arns().first())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{}: its target group {arn} is behind no load balancer",
                    svc.asg
                ))
            })?;
        Ok(resource_label(lb, arn))
    }

    /// Applies what the trial sets of a group's warm pool, policy and health checks.
    pub(super) async fn apply_deployment(
        &self,
        svc: &ServiceInfra,
        settings: &GroupSettings,
    ) -> Result<()> {
        let deadline = Instant::now() + self.ctx.timeouts.operation;
        let now = self.read_deployment(&self.asg, svc, deadline).await?;
        let asg = svc.asg.as_str();
        match &settings.warm_pool {
            Some(Setting::None) if now.warm_pool.is_some() => {
                self.delete_warm_pool(&self.asg, asg, deadline).await?;
            }
            None | Some(Setting::None) => {}
            Some(Setting::Set(w)) => {
                let was = now.warm_pool.clone();
                let pool = WarmPool {
                    min: w
                        .min
                        .map(|m| m as i32)
                        .or(was.as_ref().map(|p| p.min))
                        .unwrap_or(0),
                    max_prepared: w
                        .max
                        .map(|m| m as i32)
                        .or(was.as_ref().and_then(|p| p.max_prepared)),
                    state: w
                        .state
                        .map(|s| s.as_str().to_string())
                        .or(was.as_ref().map(|p| p.state.clone()))
                        .unwrap_or_else(|| "Stopped".into()),
                    reuse_on_scale_in: w
                        .reuse_on_scale_in
                        .or(was.as_ref().map(|p| p.reuse_on_scale_in))
                        .unwrap_or(false),
                };
                self.put_warm_pool(&self.asg, asg, &pool, deadline).await?;
            }
        }
        if let Some(policy) = &settings.policy {
            // The group's own target-tracking policies make way for the trial's (or for none).
            for p in &now.policies {
                self.delete_policy(&self.asg, asg, &p.name, deadline)
                    .await?;
            }
            if let Setting::Set(spec) = policy {
                let tracking = self.trial_policy(svc, spec).await?;
                self.put_policy(&self.asg, asg, &tracking, deadline).await?;
            }
        }
        if let Some(h) = &settings.health_check {
            if h.kind.is_some() || h.grace.is_some() {
                self.ctx
                    .call_until("autoscaling:UpdateAutoScalingGroup", deadline, || {
                        self.asg
                            .update_auto_scaling_group()
                            .auto_scaling_group_name(asg)
                            .set_health_check_type(h.kind.map(|k| k.as_str().to_string()))
                            .set_health_check_grace_period(h.grace.map(|g| g.0.as_secs() as i32))
                            .send()
                    })
                    .await?;
            }
            if h.touches_target_group() {
                if now.target_groups.is_empty() {
                    return Err(Error::Usage(format!(
                        "{asg}: the trial sets the target group's health check, and the group has no target group"
                    )));
                }
                for tg in &now.target_groups {
                    let want = TargetGroupCheck {
                        arn: tg.arn.clone(),
                        path: h.path.clone().or(tg.path.clone()),
                        interval_s: h.interval.map(|i| i.0.as_secs() as i32).or(tg.interval_s),
                        healthy_threshold: h
                            .healthy_threshold
                            .map(|n| n as i32)
                            .or(tg.healthy_threshold),
                        unhealthy_threshold: h
                            .unhealthy_threshold
                            .map(|n| n as i32)
                            .or(tg.unhealthy_threshold),
                    };
                    self.modify_target_group(&want, deadline).await?;
                }
            }
        }
        tracing::info!(%asg, "deployment settings changed");
        Ok(())
    }

    async fn trial_policy(&self, svc: &ServiceInfra, spec: &PolicySpec) -> Result<TargetTracking> {
        let (metric, target) = if let Some(c) = spec.cpu {
            (
                TrackedMetric::Predefined {
                    metric: "ASGAverageCPUUtilization".into(),
                    label: None,
                },
                c.0,
            )
        } else if let Some(r) = spec.requests_per_target {
            (
                TrackedMetric::Predefined {
                    metric: "ALBRequestCountPerTarget".into(),
                    label: Some(self.resource_label(svc).await?),
                },
                r,
            )
        } else if let Some(m) = &spec.metric {
            (
                TrackedMetric::Custom {
                    namespace: m.namespace.clone(),
                    name: m.name.clone(),
                    dimensions: m.dimensions.clone().into_iter().collect(),
                    statistic: m.statistic.clone().unwrap_or_else(|| "Average".into()),
                    unit: None,
                },
                m.target,
            )
        } else {
            return Err(Error::Usage("a policy names no metric".into()));
        };
        Ok(TargetTracking {
            name: trial_policy_name(&svc.asg),
            metric,
            target,
            disable_scale_in: spec.disable_scale_in,
            estimated_instance_warmup: None,
        })
    }

    /// Puts back a group's warm pool, policies and health checks as `original` has them;
    /// idempotent (only what differs is changed).
    pub(super) async fn restore_deployment(
        &self,
        client: &aws_sdk_autoscaling::Client,
        svc: &ServiceInfra,
        original: &DeploymentSettings,
        deadline: Instant,
    ) -> Result<()> {
        let asg = svc.asg.as_str();
        let now = self.read_deployment(client, svc, deadline).await?;
        if now.warm_pool != original.warm_pool {
            match &original.warm_pool {
                None => self.delete_warm_pool(client, asg, deadline).await?,
                Some(pool) => self.put_warm_pool(client, asg, pool, deadline).await?,
            }
        }
        for p in &now.policies {
            if !original.policies.iter().any(|o| o.name == p.name) {
                self.delete_policy(client, asg, &p.name, deadline).await?;
            }
        }
        for o in &original.policies {
            if !now.policies.contains(o) {
                self.put_policy(client, asg, o, deadline).await?;
            }
        }
        if (now.health_check_type.as_str(), now.health_check_grace_s)
            != (
                original.health_check_type.as_str(),
                original.health_check_grace_s,
            )
        {
            self.ctx
                .call_until("autoscaling:UpdateAutoScalingGroup", deadline, || {
                    client
                        .update_auto_scaling_group()
                        .auto_scaling_group_name(asg)
                        .health_check_type(&original.health_check_type)
                        .health_check_grace_period(original.health_check_grace_s)
                        .send()
                })
                .await?;
        }
        for o in &original.target_groups {
            if !now.target_groups.contains(o) {
                self.modify_target_group(o, deadline).await?;
            }
        }
        if let Some(launch) = &original.launch {
            self.restore_launch(client, asg, launch, deadline).await?;
        }
        Ok(())
    }

    async fn put_warm_pool(
        &self,
        client: &aws_sdk_autoscaling::Client,
        asg: &str,
        pool: &WarmPool,
        deadline: Instant,
    ) -> Result<()> {
        self.ctx
            .call_until("autoscaling:PutWarmPool", deadline, || {
                client
                    .put_warm_pool()
                    .auto_scaling_group_name(asg)
                    .min_size(pool.min)
                    .set_max_group_prepared_capacity(pool.max_prepared)
                    .pool_state(WarmPoolState::from(pool.state.as_str()))
                    .instance_reuse_policy(
                        InstanceReusePolicy::builder()
                            .reuse_on_scale_in(pool.reuse_on_scale_in)
                            .build(),
                    )
                    .send()
            })
            .await?;
        Ok(())
    }

    async fn delete_warm_pool(
        &self,
        client: &aws_sdk_autoscaling::Client,
        asg: &str,
        deadline: Instant,
    ) -> Result<()> {
        self.ctx
            .call_until("autoscaling:DeleteWarmPool", deadline, || {
                client
                    .delete_warm_pool()
                    .auto_scaling_group_name(asg)
                    .force_delete(true)
                    .send()
            })
            .await?;
        Ok(())
    }

    async fn delete_policy(
        &self,
        client: &aws_sdk_autoscaling::Client,
        asg: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<()> {
        self.ctx
            .call_until("autoscaling:DeletePolicy", deadline, || {
                client
                    .delete_policy()
                    .auto_scaling_group_name(asg)
                    .policy_name(name)
                    .send()
            })
            .await?;
        Ok(())
    }

    async fn put_policy(
        &self,
        client: &aws_sdk_autoscaling::Client,
        asg: &str,
        p: &TargetTracking,
        deadline: Instant,
    ) -> Result<()> {
        let mut config = TargetTrackingConfiguration::builder()
            .target_value(p.target)
            .set_disable_scale_in(p.disable_scale_in);
        config = match &p.metric {
            TrackedMetric::Predefined { metric, label } => config.predefined_metric_specification(
                PredefinedMetricSpecification::builder()
                    .predefined_metric_type(MetricType::from(metric.as_str()))
                    .set_resource_label(label.clone())
                    .build(),
            ),
            TrackedMetric::Custom {
                namespace,
                name,
                dimensions,
                statistic,
                unit,
            } => config.customized_metric_specification(
                CustomizedMetricSpecification::builder()
                    .namespace(namespace)
                    .metric_name(name)
                    .set_dimensions(Some(
                        dimensions
                            .iter()
                            .map(|(n, v)| MetricDimension::builder().name(n).value(v).build())
                            .collect(),
                    ))
                    .statistic(MetricStatistic::from(statistic.as_str()))
                    .set_unit(unit.clone())
                    .build(),
            ),
        };
        let config = config.build();
        self.ctx
            .call_until("autoscaling:PutScalingPolicy", deadline, || {
                client
                    .put_scaling_policy()
                    .auto_scaling_group_name(asg)
                    .policy_name(&p.name)
                    .policy_type("TargetTrackingScaling")
                    .target_tracking_configuration(config.clone())
                    .set_estimated_instance_warmup(p.estimated_instance_warmup)
                    .send()
            })
            .await?;
        Ok(())
    }

    async fn modify_target_group(&self, tg: &TargetGroupCheck, deadline: Instant) -> Result<()> {
        self.ctx
            .call_until("elasticloadbalancing:ModifyTargetGroup", deadline, || {
                self.elb
                    .modify_target_group()
                    .target_group_arn(&tg.arn)
                    .set_health_check_path(tg.path.clone())
                    .set_health_check_interval_seconds(tg.interval_s)
                    .set_healthy_threshold_count(tg.healthy_threshold)
                    .set_unhealthy_threshold_count(tg.unhealthy_threshold)
                    .send()
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_count_policy_names_its_target_group_as_aws_documents() {
        assert_eq!(
            super::resource_label(
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/veraison-lb/50dc6c495c0c9188",
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/veraison-verif-tg/943f017f100becff"
            ),
            "app/veraison-lb/50dc6c495c0c9188/targetgroup/veraison-verif-tg/943f017f100becff"
        );
    }
}
