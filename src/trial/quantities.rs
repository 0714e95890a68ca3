//! The quantities a trial writes by hand: a duration ([`Span`]: `150s`, `2m30s`) and a rate
//! ([`Rate`]: `10/s`, `600/m`), each parsed strictly with an error that says how to write it,
//! and each describing itself in the JSON Schema.

use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as `150s`, `2m30s`, `500ms` (humantime), or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub Duration);

impl Span {
    /// The longest span any field accepts (30 days); each field has its own, tighter bound
    /// checked in validation.
    pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);

    /// Seconds, as a float.
    pub fn secs_f64(&self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = |what: String| {
            serde::de::Error::custom(format!(
                "invalid duration {what}: write it like 150s, 2m30s or 500ms"
            ))
        };
        let too_long = |what: String| {
            serde::de::Error::custom(format!(
                "duration {what} is too long: at most {}",
                humantime::format_duration(Span::MAX)
            ))
        };
        let span = match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::Number(n) => match n.as_f64() {
                Some(s) if s.is_nan() || s.is_infinite() => {
                    return Err(bad(format!("{n} (not a finite number)")))
                }
                Some(s) if s < 0.0 => {
                    return Err(bad(format!("{n} (durations cannot be negative)")))
                }
                Some(s) if s > Span::MAX.as_secs_f64() => return Err(too_long(n.to_string())),
                Some(s) => Duration::from_secs_f64(s),
                None => return Err(bad(n.to_string())),
            },
            serde_yaml::Value::String(t) => {
                humantime::parse_duration(t.trim()).map_err(|_| bad(format!("`{t}`")))?
            }
            other => return Err(bad(format!("(got {})", yaml_kind(&other)))),
        };
        if span > Span::MAX {
            return Err(too_long(humantime::format_duration(span).to_string()));
        }
        Ok(Span(span))
    }
}

/// How a YAML value reads in an error message.
fn yaml_kind(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "nothing",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A rate written `10/s`, `600/m`, or a bare number per second. Always finite and not negative.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Rate(pub f64);

impl Rate {
    /// The highest rate any field accepts (per second): far beyond one generator.
    pub const MAX: f64 = 1_000_000.0;
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = |t: &str| {
            serde::de::Error::custom(format!("invalid rate {t}: write it like 10/s or 600/m"))
        };
        let (rate, text) = match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::Number(n) => (
                n.as_f64().ok_or_else(|| bad(&n.to_string()))?,
                n.to_string(),
            ),
            serde_yaml::Value::String(t) => {
                let (num, unit) = t.split_once('/').ok_or_else(|| bad(&format!("`{t}`")))?;
                let n: f64 = num.trim().parse().map_err(|_| bad(&format!("`{t}`")))?;
                let per = match unit.trim() {
                    "s" => 1.0,
                    "m" | "min" => 60.0,
                    "h" => 3600.0,
                    _ => return Err(bad(&format!("`{t}`"))),
                };
                (n / per, format!("`{t}`"))
            }
            other => return Err(bad(&format!("(got {})", yaml_kind(&other)))),
        };
        if !rate.is_finite() {
            return Err(serde::de::Error::custom(format!(
                "invalid rate {text}: not a finite number"
            )));
        }
        if rate < 0.0 {
            return Err(serde::de::Error::custom(format!(
                "invalid rate {text}: rates cannot be negative"
            )));
        }
        if rate > Rate::MAX {
            return Err(serde::de::Error::custom(format!(
                "invalid rate {text}: at most {} per second",
                Rate::MAX
            )));
        }
        Ok(Rate(rate))
    }
}

impl JsonSchema for Span {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: `150s`, `2m30s`, `500ms`, `1h` (humantime), or a number of seconds. At most 30 days.",
            "anyOf": [
                {"type": "string", "pattern": "^\\s*([0-9]+(\\.[0-9]+)?\\s*(ns|us|µs|ms|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days)\\s*)+$"},
                {"type": "number", "minimum": 0}
            ],
            "examples": ["150s", "2m30s", "500ms"]
        })
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A rate: `10/s`, `600/m`, `36000/h`, or a number per second. Finite, not negative, at most 1000000/s.",
            "anyOf": [
                {"type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*/\\s*(s|m|min|h)\\s*$"},
                {"type": "number", "minimum": 0, "maximum": Rate::MAX}
            ],
            "examples": ["10/s", "600/m"]
        })
    }
}
