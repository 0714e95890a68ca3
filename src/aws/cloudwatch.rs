//! CloudWatch for a run's window: the metrics a trial names, resolved against the deployment's
//! resources (ASGs, RDS instance, ElastiCache cluster, load balancer and target groups), pulled
//! with GetMetricData (up to 500 queries a call, `NextToken` followed), plus error-pattern
//! counts from the deployment's log groups. The generator's clock is checked against AWS's
//! `Date` header and the offset applied, so cloud series and client timelines share one axis.
//! Everything lands in the run's `cloudwatch.json`: the queries, the series, the log counts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_smithy_types::DateTime;
use serde::Serialize;
use serde_json::json;

use super::AwsContext;
use crate::error::{Error, Result};
use crate::provider::MetricsSource;
use crate::results;
use crate::trial::model::{MetricName, ServiceRole};
use crate::trial::Environment;

/// One metric to fetch.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricQuery {
    /// Query id (`m0`, `m1`, …).
    pub id: String,
    /// Label in results and plots, e.g. `AWS/RDS DatabaseConnections`.
    pub label: String,
    /// Namespace.
    pub namespace: String,
    /// Metric name.
    pub metric: String,
    /// Dimensions.
    pub dimensions: Vec<(String, String)>,
    /// Statistic (`Average`, `Sum`, `Maximum`, `p95`).
    pub stat: String,
}

/// The deployment's resource names the metric dimensions need.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    /// ASG names.
    pub asgs: Vec<String>,
    /// RDS instance identifier.
    pub rds_instance: Option<String>,
    /// ElastiCache cluster id.
    pub cache_cluster: Option<String>,
    /// (`TargetGroup` dimension, `LoadBalancer` dimension) pairs.
    pub target_groups: Vec<(String, String)>,
    /// Log groups searched for error patterns.
    pub log_groups: Vec<String>,
}

/// Error patterns counted in the logs (the seed campaign's failure causes).
pub const ERROR_PATTERNS: [&str; 4] = [
    "too many clients",
    "connection refused",
    "remaining connection slots",
    "no pg_hba.conf entry",
];

/// The metrics source's calls for series, all read-only: the series and the names it resolves
/// them by (target groups, the RDS instance; the cache cluster through
/// [`super::stores::ElastiCacheNodes`], whose reads `iam-policy` adds when there is a
/// deployment).
pub const SERIES_READS: &[&str] = &[
    "cloudwatch:GetMetricData",
    "cloudwatch:ListMetrics",
    "elasticloadbalancing:DescribeTargetGroups",
    "rds:DescribeDBInstances",
];

/// The calls for `error-logs`, read-only.
pub const LOG_READS: &[&str] = &["logs:DescribeLogGroups", "logs:FilterLogEvents"];

/// The queries for a trial's metric sets over the resources.
pub fn queries(metrics: &[MetricName], r: &Resources) -> Vec<MetricQuery> {
    let mut out: Vec<MetricQuery> = Vec::new();
    let mut add = |namespace: &str, metric: &str, dims: Vec<(&str, String)>, stat: &str| {
        let id = format!("m{}", out.len());
        let dim_text: Vec<String> = dims.iter().map(|(_, v)| v.clone()).collect();
        out.push(MetricQuery {
            id,
            label: format!("{namespace} {metric} {} {stat}", dim_text.join(" ")),
            namespace: namespace.into(),
            metric: metric.into(),
            dimensions: dims.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            stat: stat.into(),
        });
    };
    for m in metrics {
        match m {
            MetricName::AsgInstances => {
                for a in &r.asgs {
                    for metric in [
                        "GroupDesiredCapacity",
                        "GroupInServiceInstances",
                        "GroupPendingInstances",
                        "GroupTotalInstances",
                    ] {
                        add(
                            "AWS/AutoScaling",
                            metric,
                            vec![("AutoScalingGroupName", a.clone())],
                            "Average",
                        );
                    }
                }
            }
            MetricName::AsgCpu => {
                for a in &r.asgs {
                    add(
                        "AWS/EC2",
                        "CPUUtilization",
                        vec![("AutoScalingGroupName", a.clone())],
                        "Average",
                    );
                }
            }
            MetricName::RdsConnections | MetricName::RdsCpu | MetricName::RdsIo => {
                let Some(db) = &r.rds_instance else { continue };
                let names: &[&str] = match m {
                    MetricName::RdsConnections => &["DatabaseConnections"],
                    MetricName::RdsCpu => &["CPUUtilization"],
                    _ => &["ReadLatency", "WriteLatency", "FreeableMemory"],
                };
                for n in names {
                    add(
                        "AWS/RDS",
                        n,
                        vec![("DBInstanceIdentifier", db.clone())],
                        if *n == "DatabaseConnections" {
                            "Maximum"
                        } else {
                            "Average"
                        },
                    );
                }
            }
            MetricName::Cache => {
                if let Some(c) = &r.cache_cluster {
                    add(
                        "AWS/ElastiCache",
                        "CurrConnections",
                        vec![("CacheClusterId", c.clone())],
                        "Maximum",
                    );
                    add(
                        "AWS/ElastiCache",
                        "CPUUtilization",
                        vec![("CacheClusterId", c.clone())],
                        "Average",
                    );
                }
            }
            MetricName::AlbRequests | MetricName::Alb5xx | MetricName::TargetHealth => {
                for (tg, lb) in &r.target_groups {
                    let dims = || vec![("TargetGroup", tg.clone()), ("LoadBalancer", lb.clone())];
                    match m {
                        MetricName::AlbRequests => {
                            add("AWS/ApplicationELB", "RequestCount", dims(), "Sum");
                            add("AWS/ApplicationELB", "TargetResponseTime", dims(), "p95");
                        }
                        MetricName::Alb5xx => add(
                            "AWS/ApplicationELB",
                            "HTTPCode_Target_5XX_Count",
                            dims(),
                            "Sum",
                        ),
                        _ => {
                            add("AWS/ApplicationELB", "HealthyHostCount", dims(), "Average");
                            add(
                                "AWS/ApplicationELB",
                                "UnHealthyHostCount",
                                dims(),
                                "Average",
                            );
                        }
                    }
                }
            }
            MetricName::ErrorLogs => {}
        }
    }
    out
}

/// Offset of AWS's clock from ours (seconds; positive when AWS is ahead), from the `Date`
/// header of an HTTP response: several requests, the one with the smallest round trip wins.
pub async fn clock_offset(url: &str) -> Result<f64> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client builds");
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let mut best: Option<(f64, f64)> = None;
    for _ in 0..3 {
        let sent = now();
        let Ok(resp) = client.get(url).send().await else {
            continue;
        };
        let received = now();
        let Some(date) = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(httpdate_to_unix)
        else {
            continue;
        };
        // The Date header has 1 s resolution: its second started somewhere in [date, date + 1).
        let offset = date + 0.5 - (sent + received) / 2.0;
        let rtt = received - sent;
        if best.is_none_or(|(r, _)| rtt < r) {
            best = Some((rtt, offset));
        }
    }
    best.map(|(_, o)| o).ok_or_else(|| {
        Error::Infra(format!(
            "{url} gave no Date header to check the clock against"
        ))
    })
}

fn httpdate_to_unix(s: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc2822(s)
        .ok()
        .map(|t| t.timestamp() as f64)
}

/// The CloudWatch provider.
pub struct CloudWatchSource {
    ctx: AwsContext,
    metrics: Vec<MetricName>,
    resources: tokio::sync::OnceCell<Resources>,
    env: Environment,
    /// Seconds per datapoint (60; 1 for high-resolution metrics).
    pub period: i32,
}

impl CloudWatchSource {
    /// A source for an environment and a trial's metric sets.
    pub fn new(ctx: AwsContext, env: Environment, metrics: Vec<MetricName>) -> CloudWatchSource {
        CloudWatchSource {
            ctx,
            metrics,
            resources: tokio::sync::OnceCell::new(),
            env,
            period: 60,
        }
    }

    /// Resolves the deployment's resources once.
    pub async fn resources(&self) -> Result<&Resources> {
        self.resources
            .get_or_try_init(|| resolve(&self.ctx, &self.env))
            .await
    }

    /// Pulls `queries` for the window; returns the series and the number of API calls made.
    pub async fn fetch(
        &self,
        queries: &[MetricQuery],
        from: f64,
        to: f64,
    ) -> Result<(Vec<serde_json::Value>, usize)> {
        let cw = aws_sdk_cloudwatch::Client::new(&self.ctx.config);
        let mut points: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut calls = 0;
        for chunk in queries.chunks(500) {
            let mut token: Option<String> = None;
            loop {
                let mut req = cw
                    .get_metric_data()
                    .start_time(DateTime::from_secs_f64(from))
                    .end_time(DateTime::from_secs_f64(to))
                    .set_next_token(token.clone());
                for q in chunk {
                    let mut metric = Metric::builder()
                        .namespace(&q.namespace)
                        .metric_name(&q.metric);
                    for (k, v) in &q.dimensions {
                        metric = metric.dimensions(Dimension::builder().name(k).value(v).build());
                    }
                    let stat = MetricStat::builder()
                        .metric(metric.build())
                        .period(self.period)
                        .stat(&q.stat)
                        .build();
                    req = req.metric_data_queries(
                        MetricDataQuery::builder()
                            .id(&q.id)
                            .label(&q.label)
                            .metric_stat(stat)
                            .return_data(true)
                            .build(),
                    );
                }
                calls += 1;
                let out = self
                    .ctx
                    .call("cloudwatch:GetMetricData", || req.clone().send())
                    .await?;
                for r in out.metric_data_results() {
                    let id = r.id().unwrap_or("").to_string();
                    let entry = points.entry(id).or_default();
                    for (t, v) in r.timestamps().iter().zip(r.values()) {
                        entry.push((t.as_secs_f64(), *v));
                    }
                }
                token = out.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        let series = queries
            .iter()
            .map(|q| {
                let mut p = points.remove(&q.id).unwrap_or_default();
                p.sort_by(|a, b| a.0.total_cmp(&b.0));
                json!({"id": q.id, "label": q.label, "namespace": q.namespace, "metric": q.metric, "dimensions": q.dimensions, "stat": q.stat, "points": p})
            })
            .collect();
        Ok((series, calls))
    }

    /// Error-pattern counts per minute and per second (and a few sample lines) in the log
    /// groups: the minutes for charts beside CloudWatch's periods, the seconds to tell a run's
    /// own lines from its neighbours' in the padded window.
    pub async fn error_logs(
        &self,
        groups: &[String],
        from: f64,
        to: f64,
    ) -> Result<serde_json::Value> {
        let logs = aws_sdk_cloudwatchlogs::Client::new(&self.ctx.config);
        let mut out = Vec::new();
        for group in groups {
            for pattern in ERROR_PATTERNS {
                let mut per_minute: BTreeMap<i64, u64> = BTreeMap::new();
                let mut per_second: BTreeMap<i64, u64> = BTreeMap::new();
                let mut samples = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let resp = self
                        .ctx
                        .call("logs:FilterLogEvents", || {
                            logs.filter_log_events()
                                .log_group_name(group)
                                .start_time((from * 1000.0) as i64)
                                .end_time((to * 1000.0) as i64)
                                .filter_pattern(format!("\"{pattern}\""))
                                .set_next_token(token.clone())
                                .send()
                        })
                        .await;
                    let resp = match resp {
                        Ok(r) => r,
                        Err(err) if err.to_string().contains("ResourceNotFound") => break,
                        Err(err) => return Err(err),
                    };
                    for ev in resp.events() {
                        let ts = ev.timestamp().unwrap_or(0);
                        *per_minute.entry(ts.div_euclid(60_000) * 60).or_default() += 1;
                        *per_second.entry(ts.div_euclid(1000)).or_default() += 1;
                        if samples.len() < 3 {
                            samples.push(
                                ev.message()
                                    .unwrap_or("")
                                    .chars()
                                    .take(300)
                                    .collect::<String>(),
                            );
                        }
                    }
                    token = resp.next_token().map(str::to_string);
                    if token.is_none() {
                        break;
                    }
                }
                if !per_minute.is_empty() {
                    // Minutes of AWS's clock, placed on ours.
                    let offset = self.ctx.clock_offset().await;
                    let minutes: Vec<(f64, u64)> = per_minute
                        .iter()
                        .map(|(m, n)| (*m as f64 - offset, *n))
                        .collect();
                    let seconds: Vec<(f64, u64)> = per_second
                        .iter()
                        .map(|(t, n)| (*t as f64 - offset, *n))
                        .collect();
                    out.push(json!({"log_group": group, "pattern": pattern, "total": per_minute.values().sum::<u64>(), "per_minute": minutes, "per_second": seconds, "samples": samples}));
                }
            }
        }
        Ok(json!(out))
    }
}

/// Finds the deployment's resources: ASG names, target groups and their load balancers, the
/// RDS instance and the ElastiCache cluster, and its log groups.
pub async fn resolve(ctx: &AwsContext, env: &Environment) -> Result<Resources> {
    let d = env.spec.deployment.clone().unwrap_or_default();
    let mut r = Resources {
        asgs: ServiceRole::ALL
            .iter()
            .filter_map(|s| env.asg_name(*s))
            .collect(),
        ..Default::default()
    };
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&ctx.config);
    for role in ServiceRole::ALL {
        let Some(name) = env.target_group_name(role) else {
            continue;
        };
        let found = ctx
            .call("elasticloadbalancing:DescribeTargetGroups", || {
                elb.describe_target_groups().names(&name).send()
            })
            .await;
        let out = match found {
            Ok(out) => out,
            Err(err) if err.to_string().contains("TargetGroupNotFound") => continue,
            Err(err) => return Err(err),
        };
        for tg in out.target_groups() {
            let Some(arn) = tg.target_group_arn() else {
                continue;
            };
            let tg_dim = arn.split(':').next_back().unwrap_or("").to_string();
            for lb in tg.load_balancer_arns() {
                let lb_dim = lb.split(":loadbalancer/").nth(1).unwrap_or("").to_string();
                r.target_groups.push((tg_dim.clone(), lb_dim));
            }
        }
    }
    let wanted = env
        .spec
        .stores
        .as_ref()
        .and_then(|s| s.postgres.as_ref())
        .and_then(|p| p.rds_instance.clone());
    match wanted.as_deref() {
        Some(id) if id != "auto" => r.rds_instance = Some(id.to_string()),
        _ => {
            let rds = aws_sdk_rds::Client::new(&ctx.config);
            let out = ctx
                .call("rds:DescribeDBInstances", || {
                    rds.describe_db_instances().send()
                })
                .await?;
            r.rds_instance = out
                .db_instances()
                .iter()
                .filter_map(|i| i.db_instance_identifier())
                .find(|id| !d.is_empty() && id.starts_with(&format!("{d}-support")))
                .map(str::to_string);
        }
    }
    if !d.is_empty() {
        let nodes = super::stores::ElastiCacheNodes {
            ctx: ctx.clone(),
            deployment: d.clone(),
        };
        r.cache_cluster = nodes.cluster_id().await?;
    }
    if !d.is_empty() {
        // Veraison's CloudWatch agent writes `D-{provisioning,verification,management,vts}`.
        r.log_groups = ["vts", "verification", "provisioning"]
            .iter()
            .map(|s| format!("{d}-{s}"))
            .collect();
    }
    Ok(r)
}

impl CloudWatchSource {
    /// The log groups that exist, of those named.
    async fn existing_log_groups(&self, wanted: &[String]) -> Result<Vec<String>> {
        let logs = aws_sdk_cloudwatchlogs::Client::new(&self.ctx.config);
        let mut found = Vec::new();
        for name in wanted {
            let out = self
                .ctx
                .call("logs:DescribeLogGroups", || {
                    logs.describe_log_groups()
                        .log_group_name_prefix(name)
                        .send()
                })
                .await?;
            if out
                .log_groups()
                .iter()
                .any(|g| g.log_group_name() == Some(name.as_str()))
            {
                found.push(name.clone());
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl MetricsSource for CloudWatchSource {
    async fn preflight(&self) -> Result<Vec<String>> {
        let r = self.resources().await?.clone();
        let missing = |what: &str| {
            Err(Error::Missing(format!(
                "metrics {what}: not found for deployment `{}` in {}",
                self.env.spec.deployment.as_deref().unwrap_or("?"),
                self.ctx.endpoint
            )))
        };
        for m in &self.metrics {
            match m {
                MetricName::RdsConnections | MetricName::RdsCpu | MetricName::RdsIo
                    if r.rds_instance.is_none() =>
                {
                    return missing("rds-*: the RDS instance");
                }
                MetricName::Cache if r.cache_cluster.is_none() => {
                    return missing("cache: the ElastiCache cluster")
                }
                MetricName::AlbRequests | MetricName::Alb5xx | MetricName::TargetHealth
                    if r.target_groups.is_empty() =>
                {
                    return missing("alb-*/target-health: a target group behind a load balancer");
                }
                _ => {}
            }
        }
        let mut found = vec![format!(
            "CloudWatch: {} metric queries over {} group(s), RDS {}, cache {}, {} target group(s)",
            queries(&self.metrics, &r).len(),
            r.asgs.len(),
            r.rds_instance.as_deref().unwrap_or("-"),
            r.cache_cluster.as_deref().unwrap_or("-"),
            r.target_groups.len()
        )];
        if self.metrics.contains(&MetricName::ErrorLogs) {
            let have = self.existing_log_groups(&r.log_groups).await?;
            let absent: Vec<&String> = r.log_groups.iter().filter(|g| !have.contains(g)).collect();
            if !absent.is_empty() {
                return Err(Error::Missing(format!(
                    "error-logs: log group(s) {} not found in {}",
                    absent
                        .iter()
                        .map(|g| g.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.ctx.endpoint
                )));
            }
            found.push(format!("log groups: {}", have.join(", ")));
        }
        // Read access to metrics (GetMetricData needs the same permission family).
        let cw = aws_sdk_cloudwatch::Client::new(&self.ctx.config);
        self.ctx
            .call("cloudwatch:ListMetrics", || {
                cw.list_metrics().namespace("AWS/AutoScaling").send()
            })
            .await?;
        Ok(found)
    }

    async fn pull(&self, from_unix: f64, to_unix: f64, dir: &Path) -> Result<()> {
        let offset = self.ctx.clock_offset().await;
        // Our window in AWS time.
        let (from, to) = (from_unix + offset, to_unix + offset);
        let resources = self.resources().await?.clone();
        let qs = queries(&self.metrics, &resources);
        let (mut series, calls) = if qs.is_empty() {
            (Vec::new(), 0)
        } else {
            self.fetch(&qs, from, to).await?
        };
        // Onto the generator's clock, the timeline's axis.
        for s in &mut series {
            if let Some(points) = s["points"].as_array_mut() {
                for p in points {
                    if let Some(t) = p[0].as_f64() {
                        p[0] = json!(t - offset);
                    }
                }
            }
        }
        let logs = if self.metrics.contains(&MetricName::ErrorLogs) {
            self.error_logs(&resources.log_groups, from, to).await?
        } else {
            json!([])
        };
        let doc = json!({
            "window": {"from": from_unix, "to": to_unix, "aws_from": from, "aws_to": to},
            "pulled_unix": crate::results::unix_now(),
            // From an emulator the series are what a rehearsal put there: labelled as such.
            "synthetic": super::is_emulator(&self.ctx.endpoint),
            "clock_offset_s": offset,
            "period_s": self.period,
            "resources": resources,
            "queries": qs,
            "get_metric_data_calls": calls,
            "series": series,
            "logs": logs,
        });
        results::write_json(&dir.join("cloudwatch.json"), &doc)
    }
}

/// Check that the pinned SDK speaks a protocol the emulator answers (see Cargo.toml).
pub async fn protocol_check(ctx: &AwsContext) -> Result<()> {
    let cw = aws_sdk_cloudwatch::Client::new(&ctx.config);
    ctx.call("cloudwatch:ListMetrics", || cw.list_metrics().send())
        .await
        .map(drop)
}
