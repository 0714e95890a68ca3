//! A group's deployment settings beyond its capacity, as read before a trial changes them (the
//! warm pool, the target-tracking policies, the health checks of the group and its target
//! groups, what its instances launch from): what the undo journal keeps and a restore puts back exactly, "there was none"
//! included.

use serde::{Deserialize, Serialize};

/// A warm pool as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmPool {
    /// `MinSize`.
    pub min: i32,
    /// `MaxGroupPreparedCapacity` (`None`: not set, or -1: the group's max).
    pub max_prepared: Option<i32>,
    /// `Stopped`, `Running` or `Hibernated`.
    pub state: String,
    /// Instances scaled in return to the pool.
    pub reuse_on_scale_in: bool,
}

/// A target-tracking policy's metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrackedMetric {
    /// A predefined metric (`ASGAverageCPUUtilization`, `ALBRequestCountPerTarget`, …) and its
    /// resource label.
    Predefined {
        /// The metric type.
        metric: String,
        /// The resource label (request counts name their target group by it).
        label: Option<String>,
    },
    /// A customized metric.
    Custom {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Dimensions (name, value).
        dimensions: Vec<(String, String)>,
        /// Statistic.
        statistic: String,
        /// Unit.
        unit: Option<String>,
    },
}

/// A target-tracking scaling policy as read (name, type, configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetTracking {
    /// Policy name.
    pub name: String,
    /// The metric followed.
    pub metric: TrackedMetric,
    /// The value held.
    pub target: f64,
    /// Scale-in disabled (`None`: not given, which AWS reads as false).
    pub disable_scale_in: Option<bool>,
    /// Seconds a new instance warms up before its metrics count.
    pub estimated_instance_warmup: Option<i32>,
}

/// A target group's health check as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetGroupCheck {
    /// The target group's ARN.
    pub arn: String,
    /// Health-check path.
    pub path: Option<String>,
    /// Interval, seconds.
    pub interval_s: Option<i32>,
    /// Successes before healthy.
    pub healthy_threshold: Option<i32>,
    /// Failures before unhealthy.
    pub unhealthy_threshold: Option<i32>,
}

/// Where a group's instances launch from, exactly as the group names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LaunchSource {
    /// A launch template and the version the group asks for (`$Latest`, `$Default` or a number).
    Template {
        /// The template's id.
        id: String,
        /// The template's name.
        name: String,
        /// The version as the group names it.
        version: String,
    },
    /// A launch configuration.
    Configuration {
        /// Its name.
        name: String,
    },
}

/// What a group's instances launch from and as, read before a trial changes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// The template (and version) or configuration.
    pub source: LaunchSource,
    /// The version number `$Latest` or `$Default` stood for when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_version: Option<i64>,
    /// The instance type that version or configuration launches (`None`: it names none).
    pub instance_type: Option<String>,
}

impl Launch {
    /// `veraison-verif-lt version $Latest (1)` or `launch configuration lc-1`.
    pub fn describe(&self) -> String {
        match &self.source {
            LaunchSource::Template { name, version, .. } => format!(
                "{name} version {version}{}",
                self.resolved_version
                    .filter(|v| v.to_string() != *version)
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default()
            ),
            LaunchSource::Configuration { name } => format!("launch configuration {name}"),
        }
    }
}

/// A group's deployment settings beyond its capacity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSettings {
    /// The warm pool (`None`: there was none).
    pub warm_pool: Option<WarmPool>,
    /// The group's target-tracking policies (others are never touched).
    pub policies: Vec<TargetTracking>,
    /// Names of the group's other policies (step, simple, predictive), left as they are.
    #[serde(default)]
    pub other_policies: Vec<String>,
    /// `EC2` or `ELB`.
    pub health_check_type: String,
    /// Grace period, seconds.
    pub health_check_grace_s: i32,
    /// The group's target groups' health checks.
    pub target_groups: Vec<TargetGroupCheck>,
    /// What its instances launch from, when the trial changes it (`None`: not read, and left
    /// as it is on restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
}

impl DeploymentSettings {
    /// One setting as `plan` shows it (`setting` as in [`crate::trial::plan::SettingChange`]).
    pub fn describe(&self, setting: &str) -> String {
        let tg = |f: &dyn Fn(&TargetGroupCheck) -> Option<String>| {
            let v: Vec<String> = self
                .target_groups
                .iter()
                .map(|t| f(t).unwrap_or_else(|| "-".into()))
                .collect();
            if v.is_empty() {
                "no target group".to_string()
            } else {
                v.join(", ")
            }
        };
        match setting {
            "warm-pool" => match &self.warm_pool {
                None => "none".into(),
                Some(w) => format!(
                    "min {}{}, {}, reuse on scale-in {}",
                    w.min,
                    w.max_prepared
                        .map(|m| format!(", max {m}"))
                        .unwrap_or_default(),
                    w.state,
                    w.reuse_on_scale_in
                ),
            },
            "policy" => {
                let mut v: Vec<String> =
                    self.policies.iter().map(TargetTracking::describe).collect();
                v.extend(self.other_policies.iter().map(|n| format!("{n} (kept)")));
                if v.is_empty() {
                    "none".into()
                } else {
                    v.join("; ")
                }
            }
            "health-check.type" => self.health_check_type.clone(),
            "health-check.grace" => format!("{}s", self.health_check_grace_s),
            "health-check.path" => tg(&|t| t.path.clone()),
            "health-check.interval" => tg(&|t| t.interval_s.map(|s| format!("{s}s"))),
            "health-check.healthy-threshold" => tg(&|t| t.healthy_threshold.map(|n| n.to_string())),
            "health-check.unhealthy-threshold" => {
                tg(&|t| t.unhealthy_threshold.map(|n| n.to_string()))
            }
            "instance-type" => match &self.launch {
                Some(l) => l
                    .instance_type
                    .clone()
                    .unwrap_or_else(|| "none named".into()),
                None => "not read".into(),
            },
            "launch-template" => match &self.launch {
                Some(l) => l.describe(),
                None => "not read".into(),
            },
            "instance-refresh" => "none".into(),
            _ => "?".into(),
        }
    }
}

impl TargetTracking {
    /// `name: CPU 50` as people read it.
    pub fn describe(&self) -> String {
        let metric = match &self.metric {
            TrackedMetric::Predefined { metric, .. } => metric.clone(),
            TrackedMetric::Custom {
                namespace, name, ..
            } => format!("{namespace}/{name}"),
        };
        format!(
            "{}: {metric} at {}{}",
            self.name,
            self.target,
            if self.disable_scale_in == Some(true) {
                ", no scale-in"
            } else {
                ""
            }
        )
    }
}
