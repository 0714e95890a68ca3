//! A local rehearsal of a campaign before spending money on AWS: an AWS emulator (moto) holding
//! a deployment shaped like Veraison's (launch templates, `D-prov-asg` and `D-verif-asg` at 1..3
//! behind target groups of the `D-svc-lb` load balancer, tagged instances, an RDS instance, the
//! services' log groups), CloudWatch series seeded for the
//! hours ahead, and the stand-in (on real PostgreSQL) as the target. The ASGs are pinned and
//! restored for real through the SDK; the stores are cleared and counted through the driver.
//!
//! Refuses any endpoint that is not on this machine: it creates resources.

pub mod campaign;
pub mod join;
pub mod sizes;
pub mod twin;
pub mod view;

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};

use crate::aws::cloudwatch::{queries, Resources};
use crate::aws::{sdk_error, AwsContext};
use crate::error::{Error, Result};
use crate::trial::model::MetricName;

use crate::aws::is_emulator as is_local;

/// Creates the deployment `d` in the emulator, unless its ASGs exist already.
pub async fn deploy_emulated(ctx: &AwsContext, d: &str) -> Result<()> {
    if !is_local(&ctx.endpoint) {
        return Err(Error::Usage(format!(
            "rehearsals create resources: only an emulator on this machine is allowed, not {}",
            ctx.endpoint
        )));
    }
    let asg = aws_sdk_autoscaling::Client::new(&ctx.config);
    let existing = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(format!("{d}-verif-asg"))
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "autoscaling:DescribeAutoScalingGroups", e))?;
    if !existing.auto_scaling_groups().is_empty() {
        return Ok(());
    }
    let vpc = default_vpc(ctx).await?;
    let lb = load_balancer(ctx, d, &vpc).await?;
    log_groups(ctx, d).await?;
    for (suffix, svc, port) in [
        ("prov", "provisioning", 9443),
        ("verif", "verification", 8443),
    ] {
        let tg = target_group(
            ctx,
            &ServiceShape {
                d,
                suffix,
                svc,
                port,
            },
            &vpc,
            &lb,
        )
        .await?;
        service_group(
            ctx,
            &ServiceShape {
                d,
                suffix,
                svc,
                port,
            },
            &tg,
        )
        .await?;
    }
    aws_sdk_rds::Client::new(&ctx.config)
        .create_db_instance()
        .db_instance_identifier(format!("{d}-support-rdsinstance-rehearsal"))
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .master_username("veraison")
        .master_user_password("rehearsal-only")
        .allocated_storage(5)
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "rds:CreateDBInstance", e))?;
    Ok(())
}

/// One service of the deployment: `D-<suffix>-asg` behind `D-<suffix>-tg` on `port`.
struct ServiceShape<'a> {
    d: &'a str,
    suffix: &'a str,
    svc: &'a str,
    port: i32,
}

async fn default_vpc(ctx: &AwsContext) -> Result<String> {
    let ec2 = aws_sdk_ec2::Client::new(&ctx.config);
    let vpcs = ec2
        .describe_vpcs()
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "ec2:DescribeVpcs", e))?;
    Ok(vpcs
        .vpcs()
        .first()
        .and_then(|v| v.vpc_id())
        .ok_or_else(|| Error::Infra("the emulator has no VPC".into()))?
        .to_string())
}

/// The services load balancer `D-svc-lb` in two subnets of the VPC; returns its ARN.
async fn load_balancer(ctx: &AwsContext, d: &str, vpc: &str) -> Result<String> {
    let ec2 = aws_sdk_ec2::Client::new(&ctx.config);
    let subnets: Vec<String> = ec2
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(vpc)
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "ec2:DescribeSubnets", e))?
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_string))
        .take(2)
        .collect();
    let lb = aws_sdk_elasticloadbalancingv2::Client::new(&ctx.config)
        .create_load_balancer()
        .name(format!("{d}-svc-lb"))
        .set_subnets(Some(subnets))
        .tags(
            aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key("veraison-deployment")
                .value(d)
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "elasticloadbalancing:CreateLoadBalancer", e))?;
    Ok(lb
        .load_balancers()
        .first()
        .and_then(|l| l.load_balancer_arn())
        .unwrap_or_default()
        .to_string())
}

/// The log groups Veraison's CloudWatch agent writes.
async fn log_groups(ctx: &AwsContext, d: &str) -> Result<()> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&ctx.config);
    for svc in ["provisioning", "verification", "management", "vts"] {
        logs.create_log_group()
            .log_group_name(format!("{d}-{svc}"))
            .send()
            .await
            .map_err(|e| sdk_error(ctx, "logs:CreateLogGroup", e))?;
    }
    Ok(())
}

/// A service's target group with its well-known health check and a listener forwarding the
/// service's port to it; returns the target group's ARN.
async fn target_group(
    ctx: &AwsContext,
    s: &ServiceShape<'_>,
    vpc: &str,
    lb: &str,
) -> Result<String> {
    use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ProtocolEnum};
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&ctx.config);
    let tg = elb
        .create_target_group()
        .name(format!("{}-{}-tg", s.d, s.suffix))
        .protocol(ProtocolEnum::Http)
        .port(s.port)
        .vpc_id(vpc)
        .health_check_path(format!("/.well-known/veraison/{}", s.svc))
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "elasticloadbalancing:CreateTargetGroup", e))?;
    let tg_arn = tg
        .target_groups()
        .first()
        .and_then(|t| t.target_group_arn())
        .unwrap_or_default()
        .to_string();
    elb.create_listener()
        .load_balancer_arn(lb)
        .protocol(ProtocolEnum::Http)
        .port(s.port)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&tg_arn)
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "elasticloadbalancing:CreateListener", e))?;
    Ok(tg_arn)
}

/// A service's launch template and auto-scaling group (1..3, desired 1) in the target group,
/// its instances tagged as Veraison's are, with a target-tracking policy on CPU (60 %).
async fn service_group(ctx: &AwsContext, s: &ServiceShape<'_>, tg_arn: &str) -> Result<()> {
    let lt = format!("{}-{}-lt", s.d, s.suffix);
    aws_sdk_ec2::Client::new(&ctx.config)
        .create_launch_template()
        .launch_template_name(&lt)
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .instance_type(aws_sdk_ec2::types::InstanceType::T2Micro)
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "ec2:CreateLaunchTemplate", e))?;
    let tag = |k: &str, v: &str| {
        Tag::builder()
            .key(k)
            .value(v)
            .propagate_at_launch(true)
            .build()
    };
    aws_sdk_autoscaling::Client::new(&ctx.config)
        .create_auto_scaling_group()
        .auto_scaling_group_name(format!("{}-{}-asg", s.d, s.suffix))
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_name(&lt)
                .version("$Latest")
                .build(),
        )
        .min_size(1)
        .max_size(3)
        .desired_capacity(1)
        .availability_zones(format!("{}a", ctx.region()))
        .target_group_arns(tg_arn)
        .tags(tag("veraison-deployment", s.d))
        .tags(tag("deployment-instance-name", s.svc))
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "autoscaling:CreateAutoScalingGroup", e))?;
    // Scaling on CPU as a deployment would; the twin acts it out (moto runs no policies).
    aws_sdk_autoscaling::Client::new(&ctx.config)
        .put_scaling_policy()
        .auto_scaling_group_name(format!("{}-{}-asg", s.d, s.suffix))
        .policy_name(format!("{}-{}-cpu60", s.d, s.suffix))
        .policy_type("TargetTrackingScaling")
        .target_tracking_configuration(
            aws_sdk_autoscaling::types::TargetTrackingConfiguration::builder()
                .predefined_metric_specification(
                    aws_sdk_autoscaling::types::PredefinedMetricSpecification::builder()
                        .predefined_metric_type(
                            aws_sdk_autoscaling::types::MetricType::AsgAverageCpuUtilization,
                        )
                        .build(),
                )
                .target_value(60.0)
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "autoscaling:PutScalingPolicy", e))?;
    Ok(())
}

/// Seeds every metric of `metrics` over the resources, one point a minute from 10 minutes ago
/// to `hours` ahead, shaped like a busy deployment (connections swell and ebb).
pub async fn seed_cloudwatch(
    ctx: &AwsContext,
    metrics: &[MetricName],
    resources: &Resources,
    hours: f64,
) -> Result<usize> {
    if !is_local(&ctx.endpoint) {
        return Err(Error::Usage(format!(
            "seeding metrics is for an emulator on this machine only, not {}",
            ctx.endpoint
        )));
    }
    let cw = aws_sdk_cloudwatch::Client::new(&ctx.config);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
        .floor();
    let minutes = (hours * 60.0) as i64 + 10;
    let mut total = 0;
    for q in queries(metrics, resources) {
        let points: Vec<MetricDatum> = (0..minutes)
            .map(|k| {
                let t = now - 600.0 + 60.0 * k as f64;
                let wave = (k as f64 / 7.0).sin().abs();
                let v = match q.metric.as_str() {
                    "DatabaseConnections" => 20.0 + 50.0 * wave,
                    "GroupInServiceInstances"
                    | "GroupDesiredCapacity"
                    | "GroupTotalInstances"
                    | "HealthyHostCount" => 1.0 + (2.0 * wave).round(),
                    m if m.contains("CPU") => 30.0 + 60.0 * wave,
                    _ => wave,
                };
                let mut d = MetricDatum::builder()
                    .metric_name(&q.metric)
                    .value(v)
                    .timestamp(aws_smithy_types::DateTime::from_secs_f64(t));
                for (k, val) in &q.dimensions {
                    d = d.dimensions(Dimension::builder().name(k).value(val).build());
                }
                d.build()
            })
            .collect();
        for chunk in points.chunks(500) {
            cw.put_metric_data()
                .namespace(&q.namespace)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| sdk_error(ctx, "cloudwatch:PutMetricData", e))?;
            total += chunk.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_endpoints_are_rehearsal_endpoints() {
        assert!(super::is_local("http://127.0.0.1:5000"));
        assert!(super::is_local("http://localhost:4566"));
        assert!(!super::is_local(
            "https://autoscaling.eu-west-1.amazonaws.com"
        ));
        assert!(!super::is_local("http://10.0.0.5:5000"));
    }
}
