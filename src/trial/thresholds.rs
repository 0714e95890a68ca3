//! Regression thresholds: `verify p95 < 800ms` (absolute), `* p95 +10%` (relative to a
//! baseline), or `* p95 +10% if significant` (relative, and breaking only when the change is
//! also significant by the per-second test, the percentage then being its minimum effect).
//! Parsed when a trial is validated, checked by `compare` and `run --baseline`.

use std::fmt;

/// The figure a threshold constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Figure {
    /// Latency percentiles and maximum, in ms.
    P50,
    /// 90th percentile.
    P90,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// Maximum latency.
    Max,
    /// Requests per second.
    Rps,
    /// Failures / requests, in percent.
    FailureRate,
}

impl Figure {
    fn parse(s: &str) -> Option<Figure> {
        Some(match s {
            "p50" | "median" => Figure::P50,
            "p90" => Figure::P90,
            "p95" => Figure::P95,
            "p99" => Figure::P99,
            "max" => Figure::Max,
            "rps" | "throughput" => Figure::Rps,
            "failure-rate" | "failures" => Figure::FailureRate,
            _ => return None,
        })
    }

    /// Whether its change can be tested for significance: the figures kept per steady second.
    pub fn tested(self) -> bool {
        matches!(self, Figure::P95 | Figure::Rps | Figure::FailureRate)
    }

    /// Whether a larger value is worse (latency, failures) or better (throughput).
    pub fn higher_is_worse(self) -> bool {
        !matches!(self, Figure::Rps)
    }

    /// The unit its values are in.
    pub fn unit(self) -> &'static str {
        match self {
            Figure::Rps => "/s",
            Figure::FailureRate => "%",
            _ => "ms",
        }
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Figure::P50 => "p50",
            Figure::P90 => "p90",
            Figure::P95 => "p95",
            Figure::P99 => "p99",
            Figure::Max => "max",
            Figure::Rps => "rps",
            Figure::FailureRate => "failure-rate",
        })
    }
}

/// What a threshold compares against.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bound {
    /// Must be below (`<`) this value (ms for latency, req/s, percent).
    Below(f64),
    /// Must be at most (`<=`) this value.
    AtMost(f64),
    /// Must be above (`>`) this value.
    Above(f64),
    /// Must be at least (`>=`) this value.
    AtLeast(f64),
    /// May worsen by at most this percentage relative to the baseline.
    Relative(f64),
}

/// One threshold.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Threshold {
    /// Task or request name, or `*` for every endpoint.
    pub endpoint: String,
    /// The figure.
    pub figure: Figure,
    /// The bound.
    pub bound: Bound,
    /// A relative bound that breaks only when the change is also significant (`if
    /// significant`), with the bound's percentage as the minimum effect.
    pub if_significant: bool,
    /// The text as written.
    pub text: String,
}

/// A number a threshold can hold: finite and not negative (`NaN`, `inf`, `1e400` and `-5`
/// are refused, as every other number of a trial is).
fn bounded(text: &str, v: f64) -> Result<f64, String> {
    if !v.is_finite() {
        return Err(format!("`{text}` is not a finite number"));
    }
    if v < 0.0 {
        return Err(format!("`{text}` is negative: a bound is 0 or more"));
    }
    Ok(v)
}

fn parse_value(s: &str, figure: Figure) -> Result<f64, String> {
    let bad = || format!("`{s}` is not a value (e.g. 800ms, 1.5s, 400, 1%)");
    let latency = !matches!(figure, Figure::Rps | Figure::FailureRate);
    let v = if latency {
        if let Some(v) = s.strip_suffix("ms") {
            v.parse().map_err(|_| bad())?
        } else if let Some(v) = s.strip_suffix('s') {
            v.parse::<f64>().map(|x| x * 1000.0).map_err(|_| bad())?
        } else {
            return Err(format!("`{s}` needs a unit: ms or s"));
        }
    } else {
        s.trim_end_matches('%')
            .trim_end_matches("/s")
            .parse()
            .map_err(|_| bad())?
    };
    bounded(s, v)
}

impl Threshold {
    /// True when it applies to an endpoint of `task` named `name` (a task name means the task's
    /// unit, the session, when there is one; a request name its requests; `*` all).
    pub fn applies(&self, task: &str, name: &str, is_unit: bool, task_has_unit: bool) -> bool {
        match self.endpoint.as_str() {
            "*" => true,
            e if e == task => is_unit || !task_has_unit,
            e => !is_unit && (name == e || name.ends_with(e)),
        }
    }

    /// True when it needs a baseline.
    pub fn relative(&self) -> bool {
        matches!(self.bound, Bound::Relative(_))
    }

    /// The smallest relative change (a fraction) that may break an `if significant` bound.
    pub fn min_effect(&self) -> f64 {
        match self.bound {
            Bound::Relative(pct) => pct / 100.0,
            _ => 0.0,
        }
    }

    /// Parses `ENDPOINT FIGURE (< VALUE | > VALUE | +N% [if significant])`.
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let mut parts: Vec<&str> = text.split_whitespace().collect();
        let if_significant = parts.ends_with(&["if", "significant"]);
        if if_significant {
            parts.truncate(parts.len() - 2);
        }
        let (endpoint, figure, rest) = match parts.as_slice() {
            [e, f, rest @ ..] if !rest.is_empty() => (*e, *f, rest),
            _ => {
                return Err(format!(
                    "`{text}`: expected `ENDPOINT FIGURE < VALUE` or `ENDPOINT FIGURE +N%`"
                ))
            }
        };
        let figure = Figure::parse(figure).ok_or_else(|| {
            format!("unknown figure `{figure}`: use p50, p90, p95, p99, max, rps or failure-rate")
        })?;
        let bound = match rest {
            ["<", v] => Bound::Below(parse_value(v, figure)?),
            ["<=", v] => Bound::AtMost(parse_value(v, figure)?),
            [">", v] => Bound::Above(parse_value(v, figure)?),
            [">=", v] => Bound::AtLeast(parse_value(v, figure)?),
            [rel] if rel.starts_with('+') && rel.ends_with('%') => Bound::Relative(bounded(
                rel,
                rel[1..rel.len() - 1]
                    .parse()
                    .map_err(|_| format!("`{rel}` is not a percentage like +10%"))?,
            )?),
            _ => {
                return Err(format!(
                    "`{}`: expected `< VALUE`, `> VALUE`, `+N%` or `+N% if significant`",
                    rest.join(" ")
                ))
            }
        };
        if if_significant && !matches!(bound, Bound::Relative(_)) {
            return Err(format!(
                "`{text}`: `if significant` applies to a change against a baseline (`+N% if significant`)"
            ));
        }
        if if_significant && !figure.tested() {
            return Err(format!(
                "`{text}`: significance is tested on per-second samples, kept for p95, rps and failure-rate only"
            ));
        }
        Ok(Threshold {
            endpoint: endpoint.to_string(),
            figure,
            bound,
            if_significant,
            text: text.to_string(),
        })
    }

    /// Checks a contender value (and the baseline, for relative bounds); `None` if not applicable.
    pub fn check(&self, contender: f64, baseline: Option<f64>) -> Option<bool> {
        match self.bound {
            Bound::Below(v) => Some(contender < v),
            Bound::AtMost(v) => Some(contender <= v),
            Bound::Above(v) => Some(contender > v),
            Bound::AtLeast(v) => Some(contender >= v),
            Bound::Relative(pct) => {
                let base = baseline?;
                let limit = if self.figure.higher_is_worse() {
                    base * (1.0 + pct / 100.0)
                } else {
                    base * (1.0 - pct / 100.0)
                };
                Some(if self.figure.higher_is_worse() {
                    contender <= limit
                } else {
                    contender >= limit
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let t = Threshold::parse("verify p95 < 800ms").unwrap();
        assert_eq!(t.bound, Bound::Below(800.0));
        assert_eq!(t.check(799.0, None), Some(true));
        assert_eq!(t.check(801.0, None), Some(false));
        let r = Threshold::parse("* p95 +10%").unwrap();
        assert_eq!(r.check(109.0, Some(100.0)), Some(true));
        assert_eq!(r.check(111.0, Some(100.0)), Some(false));
        assert_eq!(r.check(111.0, None), None);
        let rps = Threshold::parse("provision rps +5%").unwrap();
        assert_eq!(rps.check(96.0, Some(100.0)), Some(true));
        assert_eq!(rps.check(94.0, Some(100.0)), Some(false));
        assert_eq!(
            Threshold::parse("verify p95 < 1.5s").unwrap().bound,
            Bound::Below(1500.0)
        );
        assert!(Threshold::parse("verify p97 < 1s").is_err());
        // `<=` is `<=`.
        let at_most = Threshold::parse("verify p90 <= 800ms").unwrap();
        assert_eq!(at_most.figure, Figure::P90);
        assert_eq!(at_most.check(800.0, None), Some(true));
        assert_eq!(
            Threshold::parse("verify p95 < 800ms")
                .unwrap()
                .check(800.0, None),
            Some(false)
        );
        assert!(Threshold::parse("verify p95 < 800").is_err());
    }

    #[test]
    fn a_bound_is_a_finite_number_not_below_zero() {
        for text in [
            "verify p95 < NaNms",
            "verify p95 < infms",
            "verify p95 < 1e400ms",
            "verify p95 < -5ms",
            "verify p95 < -0.5s",
            "verify rps > NaN",
            "verify rps > inf/s",
            "verify failure-rate < -1%",
            "verify failure-rate < 1e400%",
            "* p95 +NaN%",
            "* p95 +inf%",
            "* p95 +-10%",
        ] {
            let err = Threshold::parse(text).expect_err(text);
            assert!(
                err.contains("not a finite number") || err.contains("negative"),
                "{text}: {err}"
            );
        }
        assert_eq!(
            Threshold::parse("verify failure-rate < 0%").unwrap().bound,
            Bound::Below(0.0),
            "zero is a bound"
        );
    }

    #[test]
    fn if_significant_is_a_relative_bound_on_a_tested_figure() {
        let t = Threshold::parse("verify p95 +10% if significant").unwrap();
        assert!(t.if_significant && t.relative());
        assert_eq!((t.bound, t.min_effect()), (Bound::Relative(10.0), 0.1));
        assert!(!Threshold::parse("verify p95 +10%").unwrap().if_significant);
        let absolute = Threshold::parse("verify p95 < 800ms if significant").unwrap_err();
        assert!(absolute.contains("`+N% if significant`"), "{absolute}");
        let untested = Threshold::parse("verify p99 +10% if significant").unwrap_err();
        assert!(untested.contains("p95, rps and failure-rate"), "{untested}");
    }
}
