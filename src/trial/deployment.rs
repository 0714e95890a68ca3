//! A group's deployment settings beyond its capacity that a trial changes for its runs: the warm
//! pool, the scaling policy, the health checks and what its instances launch from
//! (`infra.<group>.warm-pool`, `.policy`, `.health-check`, `.instance-type`, `.launch-template`,
//! `.instance-refresh`). What is written here is the grammar and its checks; the provider reads the
//! originals, applies these and puts the originals back.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::quantities::Span;

/// The largest group or pool size a trial may ask for (as `infra`'s capacities).
const CAPACITY_MAX: i64 = super::limits::CAPACITY;

/// A setting a trial either sets or removes (`none`) for its runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting<T> {
    /// `none`: the group has none during the trial.
    None,
    /// The setting to apply.
    Set(T),
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Setting<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml::Value::deserialize(d)?;
        if let serde_yaml::Value::String(s) = &v {
            if s.trim() == "none" {
                return Ok(Setting::None);
            }
            return Err(serde::de::Error::custom(format!(
                "`{s}`: write `none` or a mapping"
            )));
        }
        serde_yaml::from_value(v)
            .map(Setting::Set)
            .map_err(serde::de::Error::custom)
    }
}

impl<T: Serialize> Serialize for Setting<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Setting::None => s.serialize_str("none"),
            Setting::Set(t) => t.serialize(s),
        }
    }
}

impl<T: JsonSchema> JsonSchema for Setting<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("{}OrNone", T::schema_name()).into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let set = g.subschema_for::<T>();
        json_schema!({"anyOf": [{"const": "none"}, set]})
    }
}

/// A percentage written `60%` or `60`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = |t: String| {
            serde::de::Error::custom(format!("invalid percentage {t}: write it like 60%"))
        };
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::Number(n) => {
                n.as_f64().map(Percent).ok_or_else(|| bad(n.to_string()))
            }
            serde_yaml::Value::String(t) => t
                .trim()
                .trim_end_matches('%')
                .trim()
                .parse()
                .map(Percent)
                .map_err(|_| bad(format!("`{t}`"))),
            _ => Err(bad("(not a number)".into())),
        }
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A percentage: `60%` or 60.",
            "anyOf": [{"type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*%\\s*$"}, {"type": "number"}]
        })
    }
}

/// The state of a warm pool's prepared instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum PoolState {
    /// Stopped: pays for volumes only; the slowest to join.
    Stopped,
    /// Running: pays as an instance; joins soonest.
    Running,
    /// Hibernated: pays for volumes; memory restored on join.
    Hibernated,
}

impl PoolState {
    /// The AWS name.
    pub fn as_str(&self) -> &'static str {
        match self {
            PoolState::Stopped => "Stopped",
            PoolState::Running => "Running",
            PoolState::Hibernated => "Hibernated",
        }
    }
}

/// `warm-pool: { min: 2, max: 4, state: Stopped, reuse-on-scale-in: true }`. Fields left out
/// keep the group's current pool's values (AWS's defaults when it has none).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WarmPoolSpec {
    /// Instances kept prepared at least.
    #[serde(default)]
    pub min: Option<i64>,
    /// Group plus pool at most (AWS's `MaxGroupPreparedCapacity`; default: the group's max).
    #[serde(default)]
    pub max: Option<i64>,
    /// The state of the prepared instances (default `Stopped`).
    #[serde(default)]
    pub state: Option<PoolState>,
    /// Instances scaled in go back to the pool instead of being terminated.
    #[serde(default)]
    pub reuse_on_scale_in: Option<bool>,
}

/// A custom metric a target-tracking policy follows.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricTarget {
    /// CloudWatch namespace.
    pub namespace: String,
    /// Metric name.
    pub name: String,
    /// Dimensions.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// Statistic (default `Average`).
    #[serde(default)]
    pub statistic: Option<String>,
    /// The value the policy holds the metric at.
    pub target: f64,
}

/// `policy: { cpu: 60% }`, `{ requests-per-target: 200 }` or `{ metric: {…} }`, optionally with
/// `disable-scale-in: true`: one target-tracking policy that replaces the group's own
/// target-tracking policies for the trial.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicySpec {
    /// Average CPU utilisation of the group.
    #[serde(default)]
    pub cpu: Option<Percent>,
    /// Load-balancer requests per target (per minute).
    #[serde(default)]
    pub requests_per_target: Option<f64>,
    /// A custom metric.
    #[serde(default)]
    pub metric: Option<MetricTarget>,
    /// The policy never scales in.
    #[serde(default)]
    pub disable_scale_in: Option<bool>,
}

/// The health check a group's type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum HealthCheckType {
    /// The instance's status checks only.
    #[serde(rename = "EC2")]
    Ec2,
    /// The load balancer's health check too.
    #[serde(rename = "ELB")]
    Elb,
}

impl HealthCheckType {
    /// The AWS name.
    pub fn as_str(&self) -> &'static str {
        match self {
            HealthCheckType::Ec2 => "EC2",
            HealthCheckType::Elb => "ELB",
        }
    }
}

/// `health-check: { type: ELB, grace: 30s, path: /ready, interval: 10s, healthy-threshold: 2,
/// unhealthy-threshold: 2 }`: the group's (type, grace) and its target group's (the rest).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthCheckSpec {
    /// `EC2` or `ELB`.
    #[serde(default, rename = "type")]
    pub kind: Option<HealthCheckType>,
    /// Grace period after launch before health counts.
    #[serde(default)]
    pub grace: Option<Span>,
    /// The target group's health-check path.
    #[serde(default)]
    pub path: Option<String>,
    /// The target group's health-check interval (5 s to 300 s).
    #[serde(default)]
    pub interval: Option<Span>,
    /// Consecutive successes before a target is healthy (2 to 10).
    #[serde(default)]
    pub healthy_threshold: Option<i64>,
    /// Consecutive failures before a target is unhealthy (2 to 10).
    #[serde(default)]
    pub unhealthy_threshold: Option<i64>,
}

impl HealthCheckSpec {
    /// True when it changes the target group's health check.
    pub fn touches_target_group(&self) -> bool {
        self.path.is_some()
            || self.interval.is_some()
            || self.healthy_threshold.is_some()
            || self.unhealthy_threshold.is_some()
    }
}

/// `launch-template: { version: 7 }`: the version of the group's own launch template its
/// instances launch from during the trial.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LaunchTemplateSpec {
    /// The template's version number (1 or more).
    pub version: i64,
}

/// The minimum healthy percentage of an instance refresh when the trial gives none (AWS's own
/// default).
pub const DEFAULT_MIN_HEALTHY: f64 = 90.0;

/// How long a rollout may take when the trial gives no `instance-refresh.timeout`.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// `instance-refresh: { min-healthy: 90%, timeout: 30m }`: how the group's instances are
/// replaced when its instance type or launch template version changes (an Instance Refresh).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RefreshSpec {
    /// The share of the group kept in service while instances are replaced (default 90%).
    #[serde(default)]
    pub min_healthy: Option<Percent>,
    /// How long the rollout may take before the trial gives up (default 30m).
    #[serde(default)]
    pub timeout: Option<Span>,
}

impl RefreshSpec {
    /// The minimum healthy percentage, whole (AWS takes an integer).
    pub fn min_healthy_pct(&self) -> i32 {
        self.min_healthy
            .map(|p| p.0)
            .unwrap_or(DEFAULT_MIN_HEALTHY)
            .round() as i32
    }

    /// How long the rollout may take.
    pub fn timeout(&self) -> Duration {
        self.timeout.map(|t| t.0).unwrap_or(DEFAULT_REFRESH_TIMEOUT)
    }
}

/// True when `t` reads as an EC2 instance type (`c6i.xlarge`, `t3a.micro`, `m7i-flex.large`).
pub fn is_instance_type(t: &str) -> bool {
    let Some((family, size)) = t.split_once('.') else {
        return false;
    };
    family.starts_with(|c: char| c.is_ascii_lowercase())
        && family
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !size.is_empty()
        && size
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// What a trial changes of one group besides its capacity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GroupSettings {
    /// The warm pool (`none`: no pool during the trial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_pool: Option<Setting<WarmPoolSpec>>,
    /// The scaling policy (`none`: the group's target-tracking policies removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Setting<PolicySpec>>,
    /// The health checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    /// The instance type its instances launch as (a new version of its launch template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// The version of its launch template its instances launch from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template: Option<LaunchTemplateSpec>,
    /// How a changed instance type or template version is rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_refresh: Option<RefreshSpec>,
}

impl GroupSettings {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.warm_pool.is_none()
            && self.policy.is_none()
            && self.health_check.is_none()
            && !self.changes_launch()
    }

    /// True when it changes what the group's instances launch from (type or template version),
    /// so they are replaced by an instance refresh.
    pub fn changes_launch(&self) -> bool {
        self.instance_type.is_some() || self.launch_template.is_some()
    }

    /// What is wrong with it: (field under the group, message, hint).
    pub fn problems(&self) -> Vec<(String, String, Option<&'static str>)> {
        let mut out = Vec::new();
        let mut bad = |f: &str, m: String, h: Option<&'static str>| out.push((f.to_string(), m, h));
        let count = |f: &str,
                     v: Option<i64>,
                     lo: i64,
                     hi: i64,
                     bad: &mut dyn FnMut(&str, String, Option<&'static str>)| {
            if let Some(v) = v.filter(|v| *v < lo || *v > hi) {
                bad(f, format!("must be between {lo} and {hi}, got {v}"), None);
            }
        };
        if let Some(Setting::Set(w)) = &self.warm_pool {
            count("warm-pool.min", w.min, 0, CAPACITY_MAX, &mut bad);
            count("warm-pool.max", w.max, 0, CAPACITY_MAX, &mut bad);
            if let (Some(lo), Some(hi)) = (w.min, w.max) {
                if lo > hi {
                    bad(
                        "warm-pool.min",
                        format!("min ({lo}) is greater than max ({hi})"),
                        None,
                    );
                }
            }
        }
        if let Some(Setting::Set(p)) = &self.policy {
            let kinds = [
                p.cpu.is_some(),
                p.requests_per_target.is_some(),
                p.metric.is_some(),
            ]
            .iter()
            .filter(|k| **k)
            .count();
            if kinds != 1 {
                bad(
                    "policy",
                    "give exactly one of `cpu`, `requests-per-target` or `metric`".into(),
                    Some("e.g. policy: { cpu: 60% }, or `policy: none`"),
                );
            }
            if let Some(c) = p.cpu.filter(|c| !(c.0 > 0.0 && c.0 <= 100.0)) {
                bad(
                    "policy.cpu",
                    format!("must be above 0% and at most 100%, got {}%", c.0),
                    None,
                );
            }
            if let Some(r) = p
                .requests_per_target
                .filter(|r| !(*r > 0.0 && r.is_finite()))
            {
                bad(
                    "policy.requests-per-target",
                    format!("must be above zero, got {r}"),
                    None,
                );
            }
            if let Some(m) = p
                .metric
                .as_ref()
                .filter(|m| !(m.target > 0.0 && m.target.is_finite()))
            {
                bad(
                    "policy.metric.target",
                    format!("must be above zero, got {}", m.target),
                    None,
                );
            }
        }
        if let Some(t) = self.instance_type.as_ref().filter(|t| !is_instance_type(t)) {
            bad(
                "instance-type",
                format!("`{t}` is not an EC2 instance type"),
                Some("e.g. instance-type: c6i.xlarge"),
            );
        }
        if let Some(v) = self.launch_template.as_ref().filter(|l| l.version < 1) {
            bad(
                "launch-template.version",
                format!("must be 1 or more, got {}", v.version),
                Some("the version number of the group's own launch template, e.g. { version: 7 }"),
            );
        }
        if let Some(r) = &self.instance_refresh {
            if !self.changes_launch() {
                bad(
                    "instance-refresh",
                    "rolls out a new instance type or launch template version, and the group sets neither".into(),
                    Some("add instance-type or launch-template, or drop instance-refresh"),
                );
            }
            if let Some(p) = r.min_healthy.filter(|p| !(0.0..=100.0).contains(&p.0)) {
                bad(
                    "instance-refresh.min-healthy",
                    format!("must be between 0% and 100%, got {}%", p.0),
                    None,
                );
            }
            if let Some(t) = r
                .timeout
                .filter(|t| t.0.is_zero() || t.0 > Duration::from_secs(6 * 3600))
            {
                bad(
                    "instance-refresh.timeout",
                    format!("must be above zero and at most 6h, got {t}"),
                    None,
                );
            }
        }
        if let Some(h) = &self.health_check {
            if let Some(g) = h.grace.filter(|g| g.0 > Duration::from_secs(7200)) {
                bad("health-check.grace", format!("at most 2h, got {g}"), None);
            }
            if let Some(i) = h
                .interval
                .filter(|i| i.0 < Duration::from_secs(5) || i.0 > Duration::from_secs(300))
            {
                bad(
                    "health-check.interval",
                    format!("must be between 5s and 300s, got {i}"),
                    None,
                );
            }
            if let Some(p) = h
                .path
                .as_ref()
                .filter(|p| !p.starts_with('/') || p.len() > 1024)
            {
                bad(
                    "health-check.path",
                    format!("`{p}` is not a path"),
                    Some("e.g. /.well-known/veraison/verification"),
                );
            }
            count(
                "health-check.healthy-threshold",
                h.healthy_threshold,
                2,
                10,
                &mut bad,
            );
            count(
                "health-check.unhealthy-threshold",
                h.unhealthy_threshold,
                2,
                10,
                &mut bad,
            );
        }
        out
    }
}

impl fmt::Display for WarmPoolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(m) = self.min {
            parts.push(format!("min {m}"));
        }
        if let Some(m) = self.max {
            parts.push(format!("max {m}"));
        }
        if let Some(s) = self.state {
            parts.push(s.as_str().to_string());
        }
        if let Some(r) = self.reuse_on_scale_in {
            parts.push(format!("reuse on scale-in {r}"));
        }
        write!(f, "{}", parts.join(", "))
    }
}

impl fmt::Display for PolicySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = self.cpu {
            write!(f, "target tracking: CPU {}%", c.0)?;
        } else if let Some(r) = self.requests_per_target {
            write!(f, "target tracking: {r} requests per target")?;
        } else if let Some(m) = &self.metric {
            write!(
                f,
                "target tracking: {}/{} at {}",
                m.namespace, m.name, m.target
            )?;
        }
        if self.disable_scale_in == Some(true) {
            write!(f, ", no scale-in")?;
        }
        Ok(())
    }
}
