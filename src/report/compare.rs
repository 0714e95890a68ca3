//! Comparing two results directories (a baseline and a contender), per load step (runs matched
//! by id: `u010-verify`, `it2-u015-provision`) and per endpoint over all matched steps, with
//! the tests of [`super::stats`] on the steady seconds: throughput, p95 and failure rate each
//! compared over their per-second samples (each whole second one sample, the correlation
//! between seconds accounted for, the baseline's uncertainty included; steps as strata when
//! pooled), every verdict beside its effect and the test's name and sample sizes:
//! `p95 +12 % [+8, +16] (Welch t, 10 vs 10 s), significant`.
//!
//! Thresholds are checked on the pooled figures per endpoint; one that matches no endpoint, or
//! a relative one without a baseline, is an error, never a silent pass. `+N% if significant`
//! breaks only when the change is also significant and at least N %.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use super::comparison_text::checks_text;
use super::stats::{self, Change, Options, Verdict};
use crate::error::{Error, Result};
use crate::results::cells::Kind;
use crate::results::{EndpointSummary, Figures, ResultsDir, RunSummary, SteadySamples};
use crate::trial::thresholds::{Figure, Threshold};

/// The steady histograms of endpoint summaries merged: pooled percentiles, never a mean of
/// percentiles. `None` when a summary predates kept histograms.
pub fn pooled(items: &[&EndpointSummary]) -> Option<Histogram<u64>> {
    let mut h = crate::results::cells::new_hist();
    for e in items {
        if e.histograms.steady.is_empty() && e.steady.count > e.steady.failures {
            return None;
        }
        h.add(crate::results::cells::decode(&e.histograms.steady)?)
            .expect("auto-resizing histograms merge");
    }
    Some(h)
}

/// The corrected (open model) p95 of endpoint summaries, pooled from their corrected
/// histograms; `None` for the closed model.
fn corrected_p95(items: &[&EndpointSummary]) -> Option<f64> {
    let mut h = crate::results::cells::new_hist();
    for e in items {
        e.corrected.as_ref()?;
        h.add(crate::results::cells::decode(&e.histograms.corrected)?)
            .expect("auto-resizing histograms merge");
    }
    (!h.is_empty()).then(|| h.value_at_quantile(0.95) as f64 / 1000.0)
}

/// An endpoint's figures over one or more runs.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointFigures {
    /// Requests.
    pub count: u64,
    /// Failure rate, %.
    pub failure_rate: f64,
    /// Mean steady throughput per run.
    pub rps: f64,
    /// Steady latency percentiles, pooled over the runs' histograms, ms.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 95th.
    pub p95: f64,
    /// 99th.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
    /// Open model: p95 from the intended start, pooled over the runs (beside the raw p95), ms.
    pub corrected_p95: Option<f64>,
}

impl EndpointFigures {
    fn of(items: &[&EndpointSummary]) -> EndpointFigures {
        let count: u64 = items.iter().map(|e| e.steady.count).sum();
        let failures: u64 = items.iter().map(|e| e.steady.failures).sum();
        let hist = pooled(items);
        let q = |q: f64, fallback: &dyn Fn(&Figures) -> f64| match &hist {
            Some(h) if !h.is_empty() => h.value_at_quantile(q) as f64 / 1000.0,
            Some(_) => 0.0,
            // Old results without histograms: a count-weighted mean, the best there is.
            None if count > 0 => {
                items
                    .iter()
                    .map(|e| fallback(&e.steady) * e.steady.count as f64)
                    .sum::<f64>()
                    / count as f64
            }
            None => 0.0,
        };
        EndpointFigures {
            count,
            failure_rate: if count == 0 {
                0.0
            } else {
                100.0 * failures as f64 / count as f64
            },
            rps: items.iter().map(|e| e.steady.rps).sum::<f64>() / items.len().max(1) as f64,
            p50: q(0.5, &|f| f.p50_ms),
            p90: q(0.9, &|f| f.p90_ms),
            p95: q(0.95, &|f| f.p95_ms),
            p99: q(0.99, &|f| f.p99_ms),
            max: items.iter().map(|e| e.steady.max_ms).fold(0.0, f64::max),
            corrected_p95: corrected_p95(items),
        }
    }

    /// The value of a figure.
    pub fn get(&self, f: Figure) -> f64 {
        match f {
            Figure::P50 => self.p50,
            Figure::P90 => self.p90,
            Figure::P95 => self.p95,
            Figure::P99 => self.p99,
            Figure::Max => self.max,
            Figure::Rps => self.rps,
            Figure::FailureRate => self.failure_rate,
        }
    }
}

/// The per-second samples a figure is tested on: the steady rates, the p95 of each second with
/// successes, the failure rate (%) of each second with requests. `None` for the figures not
/// kept per second (p50, p90, p99, max).
pub fn seconds_of(samples: &SteadySamples, figure: Figure) -> Option<Vec<f64>> {
    match figure {
        Figure::Rps => Some(samples.rps.clone()),
        Figure::P95 => Some(samples.p95_ms.clone()),
        Figure::FailureRate => Some(
            samples
                .failures
                .iter()
                .zip(&samples.rps)
                .filter(|(_, n)| **n > 0.0)
                .map(|(f, n)| 100.0 * f / n)
                .collect(),
        ),
        _ => None,
    }
}

/// How a figure's change reads: throughput and p95 relative (`+12 % [+8, +16]`), the failure
/// rate in percentage points (a change from nearly nothing is not "+300 %").
fn describe(change: &Change, figure: Figure) -> String {
    match figure {
        Figure::FailureRate if no_failures(change) => "none on either side".into(),
        Figure::FailureRate => change.describe_absolute(" pp"),
        _ => change.describe(),
    }
}

fn no_failures(change: &Change) -> bool {
    change.base_mean == 0.0 && change.contender_mean == 0.0
}

/// One load step compared: each figure's change tested on that step's own steady seconds
/// (baseline first). What `compare`, its page, the gate and the report's findings judge a step
/// by; steps are never averaged into one verdict.
#[derive(Debug, Clone, Serialize)]
pub struct StepChanges {
    /// The run (load step), `u010-verify`.
    pub run: String,
    /// Throughput's change, tested over the steady per-second rates.
    pub rps: Change,
    /// p95's change, tested over the per-second p95s.
    pub p95: Change,
    /// The failure rate's change (percentage points), tested over the per-second rates.
    pub failure_rate: Change,
    /// The steady seconds tested, baseline first (to judge again with a minimum effect).
    #[serde(skip)]
    seconds: (SteadySamples, SteadySamples),
}

impl StepChanges {
    /// The changes from a baseline's steady seconds to a contender's at one load step.
    pub fn of(run: &str, base: &SteadySamples, contender: &SteadySamples) -> StepChanges {
        let seconds = (base.clone(), contender.clone());
        let tested = |figure| {
            change_of(&seconds, figure, Options::default()).expect("a figure kept per second")
        };
        StepChanges {
            run: run.into(),
            rps: tested(Figure::Rps),
            p95: tested(Figure::P95),
            failure_rate: tested(Figure::FailureRate),
            seconds,
        }
    }

    /// A figure's change as tested; `None` for a figure not kept per second.
    pub fn get(&self, figure: Figure) -> Option<&Change> {
        match figure {
            Figure::Rps => Some(&self.rps),
            Figure::P95 => Some(&self.p95),
            Figure::FailureRate => Some(&self.failure_rate),
            _ => None,
        }
    }

    /// A figure's change judged with `options` (a threshold's minimum effect); `None` for a
    /// figure not kept per second.
    pub fn judged(&self, figure: Figure, options: Options) -> Option<Change> {
        change_of(&self.seconds, figure, options)
    }

    /// The three changes in words: `rps −1.2 % [−4.0, +1.7] (Welch t, 10 vs 10 s), not
    /// significant; p95 …; failures …`.
    pub fn note(&self) -> String {
        format!(
            "rps {}; p95 {}; failures {}",
            describe(&self.rps, Figure::Rps),
            describe(&self.p95, Figure::P95),
            describe(&self.failure_rate, Figure::FailureRate)
        )
    }
}

/// A figure's change over one step's steady seconds, baseline first.
fn change_of(
    seconds: &(SteadySamples, SteadySamples),
    figure: Figure,
    options: Options,
) -> Option<Change> {
    Some(stats::compare_seconds(
        &seconds_of(&seconds.0, figure)?,
        &seconds_of(&seconds.1, figure)?,
        options,
    ))
}

/// The verdicts of one figure over several steps, counted, never averaged: `significant at 2
/// of 5 steps (+12 % to +40 %), not significant at 2, cannot tell at 1 (n = 4)`. One step: its
/// change in full.
fn tally(changes: &[&Change], figure: Figure) -> String {
    if let [one] = changes {
        return describe(one, figure);
    }
    if figure == Figure::FailureRate && changes.iter().all(|c| no_failures(c)) {
        return "none on either side".into();
    }
    let effect = |c: &Change| match (figure, c.relative) {
        (Figure::FailureRate, _) | (_, None) => (c.difference, figure == Figure::FailureRate),
        (_, Some(r)) => (r, false),
    };
    let range = |of: &[&&Change]| {
        let mut values: Vec<(f64, bool)> = of.iter().map(|c| effect(c)).collect();
        values.sort_by(|a, b| a.0.total_cmp(&b.0));
        let text = |(v, absolute): (f64, bool)| {
            if absolute {
                format!("{v:+.2} pp")
            } else {
                stats::signed_pct(v)
            }
        };
        match (values.first(), values.last()) {
            (Some(lo), Some(hi)) if text(*lo) != text(*hi) => {
                format!(" ({} to {})", text(*lo), text(*hi))
            }
            (Some(one), _) => format!(" ({})", text(*one)),
            _ => String::new(),
        }
    };
    let mut parts = Vec::new();
    let of = |pick: &dyn Fn(Verdict) -> bool| -> Vec<&&Change> {
        changes.iter().filter(|c| pick(c.verdict)).collect()
    };
    let significant = of(&|v| v == Verdict::Significant);
    let below = of(&|v| v == Verdict::BelowMinimum);
    let not = of(&|v| v == Verdict::NotSignificant);
    let cannot = of(&|v| matches!(v, Verdict::CannotTell { .. }));
    let total = changes.len();
    let mut first = true;
    let mut count = |k: usize| {
        let text = if first {
            format!("{k} of {total} steps")
        } else {
            k.to_string()
        };
        first = false;
        text
    };
    if !significant.is_empty() {
        parts.push(format!(
            "significant at {}{}",
            count(significant.len()),
            range(&significant)
        ));
    }
    if !below.is_empty() {
        parts.push(format!(
            "significant but under the minimum at {}{}",
            count(below.len()),
            range(&below)
        ));
    }
    if !not.is_empty() {
        parts.push(format!("not significant at {}", count(not.len())));
    }
    if !cannot.is_empty() {
        let n = cannot
            .iter()
            .map(|c| match c.verdict {
                Verdict::CannotTell { n } => n,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        parts.push(format!(
            "cannot tell at {} (n ≤ {n}, under {} s)",
            count(cannot.len()),
            stats::MIN_SECONDS
        ));
    }
    format!(
        "{} (Welch t, each step on its own seconds)",
        parts.join(", ")
    )
}

/// One endpoint compared, at one load step or over all matched steps.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointDelta {
    /// The run (load step) it is from, or `all matched runs`.
    pub run: String,
    /// The load (`10`, `20/s`).
    pub load: String,
    /// `METHOD name`, or the task's unit.
    pub endpoint: String,
    /// The task issuing it.
    pub task: String,
    /// The task's unit.
    pub unit: bool,
    /// Baseline figures (pooled over the steps for `all matched runs`).
    pub base: EndpointFigures,
    /// Contender figures.
    pub contender: EndpointFigures,
    /// Each matched step's changes, tested on its own seconds: one for a step's row, every
    /// matched step for `all matched runs`.
    pub changes: Vec<StepChanges>,
    /// The changes in words: a step's three changes, each with its effect, interval, test,
    /// samples and verdict; over several steps, each figure's verdicts counted.
    pub note: String,
}

impl EndpointDelta {
    /// `pairs`: the endpoint in each matched step (its run id), baseline first.
    fn new(
        run: &str,
        load: &str,
        pairs: &[(&str, &EndpointSummary, &EndpointSummary)],
    ) -> EndpointDelta {
        let e = pairs[0].2;
        let base: Vec<&EndpointSummary> = pairs.iter().map(|p| p.1).collect();
        let contender: Vec<&EndpointSummary> = pairs.iter().map(|p| p.2).collect();
        let changes: Vec<StepChanges> = pairs
            .iter()
            .map(|(id, b, c)| StepChanges::of(id, &b.samples, &c.samples))
            .collect();
        let note = match changes.as_slice() {
            [one] => one.note(),
            all => {
                let of =
                    |figure| -> Vec<&Change> { all.iter().filter_map(|s| s.get(figure)).collect() };
                format!(
                    "rps {}; p95 {}; failures {}",
                    tally(&of(Figure::Rps), Figure::Rps),
                    tally(&of(Figure::P95), Figure::P95),
                    tally(&of(Figure::FailureRate), Figure::FailureRate)
                )
            }
        };
        EndpointDelta {
            run: run.into(),
            load: load.into(),
            endpoint: super::charts::endpoint_label(e),
            task: e.task.clone(),
            unit: e.kind == Kind::Task,
            base: EndpointFigures::of(&base),
            contender: EndpointFigures::of(&contender),
            changes,
            note,
        }
    }
}

/// A matched step's change of one figure, as a threshold judged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepChange {
    /// The run (load step).
    pub run: String,
    /// The change, tested on the step's own seconds.
    pub change: Change,
}

pub use super::format::pct;

/// A threshold checked against one endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// The threshold as written.
    pub threshold: String,
    /// The endpoint.
    pub endpoint: String,
    /// Contender value.
    pub value: f64,
    /// Baseline value.
    pub baseline: Option<f64>,
    /// The figure's unit.
    pub unit: String,
    /// Passed.
    pub passed: bool,
    /// Against a baseline, for a figure kept per second: each matched step's change, tested on
    /// its own seconds (with the threshold's percentage as the minimum effect when it says `if
    /// significant`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<StepChange>,
    /// Those changes in words: effect, interval, test, samples and verdict (counted over
    /// several steps, the worst significant one named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub significance: Option<String>,
}

/// The result of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Per load step and endpoint.
    pub steps: Vec<EndpointDelta>,
    /// Per endpoint, pooled over the matched steps.
    pub endpoints: Vec<EndpointDelta>,
    /// Threshold checks.
    pub checks: Vec<Check>,
    /// Runs matched by id in both.
    pub matched_runs: usize,
}

impl Comparison {
    /// True when every threshold held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Reads thresholds from a YAML file: a list of strings, or `thresholds:` with one.
pub fn read_thresholds(path: &Path) -> Result<Vec<Threshold>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let list = v.get("thresholds").cloned().unwrap_or(v);
    let items: Vec<String> = serde_yaml::from_value(list).map_err(|_| {
        Error::Usage(format!(
            "{}: expected a list of thresholds like `verify p95 < 800ms`",
            path.display()
        ))
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Threshold::parse(t)
                .map_err(|m| Error::Usage(format!("{}: thresholds[{i}]: {m}", path.display())))
        })
        .collect()
}

/// What identifies an endpoint across runs: task, method and name.
fn endpoint_key(e: &EndpointSummary) -> String {
    format!("{}\u{1}{}\u{1}{}", e.task, e.method, e.name)
}

/// The endpoint of `key` in run `id`.
fn endpoint_in<'a>(runs: &'a [RunSummary], id: &str, key: &str) -> Option<&'a EndpointSummary> {
    runs.iter()
        .find(|r| r.run_id == id)?
        .endpoints
        .iter()
        .find(|e| endpoint_key(e) == key)
}

/// Per endpoint of the matched runs: its summaries.
fn group<'a>(runs: &'a [RunSummary], ids: &[String]) -> Vec<(String, Vec<&'a EndpointSummary>)> {
    let mut order = Vec::new();
    let mut map: BTreeMap<String, Vec<&EndpointSummary>> = BTreeMap::new();
    for r in runs.iter().filter(|r| ids.contains(&r.run_id)) {
        for e in r.endpoints.iter().filter(|e| e.task != "auth") {
            let key = endpoint_key(e);
            if !order.contains(&key) {
                order.push(key.clone());
            }
            map.entry(key).or_default().push(e);
        }
    }
    order
        .into_iter()
        .map(|k| {
            let v = map.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect()
}

/// Checks thresholds against the pooled endpoints; an error when one matches none, or is
/// relative without a baseline.
fn check(
    endpoints: &[EndpointDelta],
    thresholds: &[Threshold],
    has_baseline: bool,
) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for th in thresholds {
        if th.relative() && !has_baseline {
            return Err(Error::Usage(format!(
                "threshold `{}` is relative: it needs a baseline (--baseline DIR, or compare BASE CONTENDER)",
                th.text
            )));
        }
        let mut matched = false;
        for d in endpoints {
            let has_unit = endpoints.iter().any(|x| x.task == d.task && x.unit);
            let name = d
                .endpoint
                .split_once(' ')
                .map(|x| x.1)
                .unwrap_or(&d.endpoint);
            if !th.applies(&d.task, name, d.unit, has_unit) {
                continue;
            }
            matched = true;
            let value = d.contender.get(th.figure);
            let baseline = has_baseline.then(|| d.base.get(th.figure));
            let changes: Vec<StepChange> = if has_baseline && th.relative() {
                let min_effect = if th.if_significant {
                    th.min_effect()
                } else {
                    0.0
                };
                let options = Options::default().with_min_effect(min_effect);
                d.changes
                    .iter()
                    .filter_map(|s| {
                        Some(StepChange {
                            run: s.run.clone(),
                            change: s.judged(th.figure, options)?,
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let worst = changes
                .iter()
                .filter(|s| significantly_worse(&s.change, th.figure))
                .max_by(|a, b| {
                    let size = |c: &Change| c.relative.unwrap_or(c.difference).abs();
                    size(&a.change).total_cmp(&size(&b.change))
                });
            if let Some(within) = th.check(value, baseline) {
                // `if significant`: breaks when a step's change is significantly worse by at
                // least the bound, each step judged on its own seconds.
                let passed = if th.if_significant {
                    worst.is_none()
                } else {
                    within
                };
                let significance = (!changes.is_empty()).then(|| {
                    let all: Vec<&Change> = changes.iter().map(|s| &s.change).collect();
                    let counted = tally(&all, th.figure);
                    match worst {
                        Some(w) if changes.len() > 1 => format!(
                            "{counted}; worst at {}: {}",
                            w.run,
                            describe(&w.change, th.figure)
                        ),
                        _ => counted,
                    }
                });
                checks.push(Check {
                    threshold: th.text.clone(),
                    endpoint: d.endpoint.clone(),
                    value,
                    baseline,
                    unit: th.figure.unit().into(),
                    passed,
                    changes,
                    significance,
                });
            }
        }
        if !matched {
            let known: Vec<String> = endpoints
                .iter()
                .map(|d| format!("{} ({})", d.endpoint, d.task))
                .collect();
            return Err(Error::Usage(format!(
                "threshold `{}` matches no endpoint; there are: {}",
                th.text,
                known.join(", ")
            )));
        }
    }
    Ok(checks)
}

/// True when a change is significant (and at least its minimum effect) in the direction that
/// is worse for the figure.
fn significantly_worse(c: &Change, figure: Figure) -> bool {
    c.verdict == Verdict::Significant
        && if figure.higher_is_worse() {
            c.difference > 0.0
        } else {
            c.difference < 0.0
        }
}

/// Compares two results directories (runs matched by id).
pub fn compare(base: &Path, contender: &Path, thresholds: &[Threshold]) -> Result<Comparison> {
    let b = ResultsDir::open(base)?.summaries()?;
    let c = ResultsDir::open(contender)?.summaries()?;
    compare_runs(&b, &c, thresholds, true).map_err(|e| match e {
        Error::Usage(m) if m.starts_with("no run in common") => Error::Usage(format!(
            "{} and {} have no run in common (runs are matched by id, e.g. u010-verify)",
            base.display(),
            contender.display()
        )),
        e => e,
    })
}

/// Compares two sets of runs.
pub fn compare_runs(
    b: &[RunSummary],
    c: &[RunSummary],
    thresholds: &[Threshold],
    has_baseline: bool,
) -> Result<Comparison> {
    let ids: Vec<String> = c
        .iter()
        .map(|r| r.run_id.clone())
        .filter(|id| b.iter().any(|r| &r.run_id == id))
        .collect();
    if ids.is_empty() {
        return Err(Error::Usage("no run in common".into()));
    }
    let mut steps = Vec::new();
    for id in &ids {
        let (rb, rc) = (
            b.iter().find(|r| &r.run_id == id).expect("matched"),
            c.iter().find(|r| &r.run_id == id).expect("matched"),
        );
        for e in rc.endpoints.iter().filter(|e| e.task != "auth") {
            let Some(eb) = rb
                .endpoints
                .iter()
                .find(|x| endpoint_key(x) == endpoint_key(e))
            else {
                continue;
            };
            steps.push(EndpointDelta::new(id, &rc.load_label(), &[(id, eb, e)]));
        }
    }
    // Per endpoint over the matched steps: figures pooled, each step's changes its own.
    let mut endpoints = Vec::new();
    for (key, _) in group(c, &ids) {
        let pairs: Vec<(&str, &EndpointSummary, &EndpointSummary)> = ids
            .iter()
            .filter_map(|id| {
                Some((
                    id.as_str(),
                    endpoint_in(b, id, &key)?,
                    endpoint_in(c, id, &key)?,
                ))
            })
            .collect();
        if !pairs.is_empty() {
            endpoints.push(EndpointDelta::new("all matched runs", "", &pairs));
        }
    }
    let checks = check(&endpoints, thresholds, has_baseline)?;
    Ok(Comparison {
        steps,
        endpoints,
        checks,
        matched_runs: ids.len(),
    })
}

/// Checks thresholds on one results directory alone (absolute bounds only; a relative one is
/// an error).
pub fn check_absolute(dir: &Path, thresholds: &[Threshold]) -> Result<Comparison> {
    let runs = ResultsDir::open(dir)?.summaries()?;
    compare_runs(&runs, &runs, thresholds, false)
}

/// One line of a regression history: when, what trial in what environment, per-endpoint
/// figures pooled over its runs.
pub fn history_line(dir: &Path) -> Result<String> {
    let manifest: serde_json::Value = crate::results::read_json(&dir.join("manifest.json"))?;
    let runs = ResultsDir::open(dir)?.summaries()?;
    let ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    let figures: BTreeMap<String, EndpointFigures> = group(&runs, &ids)
        .into_iter()
        .map(|(_, v)| (super::charts::endpoint_label(v[0]), EndpointFigures::of(&v)))
        .collect();
    Ok(serde_json::json!({
        "date": manifest["ended_at"],
        "trial": manifest["trial"]["spec"]["name"],
        "trial_sha256": manifest["trial"]["sha256"],
        "environment": manifest["environment"]["spec"]["name"],
        "status": manifest["status"],
        "campaign": manifest["campaign"],
        "results": dir,
        "endpoints": figures,
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Figures;

    /// One run of one endpoint: `seconds` steady seconds around `rps` and `p95` (a deterministic
    /// wobble of ±5 % that differs between `seed`s), `failures` in its first seconds.
    fn run(id: &str, rps: f64, p95: f64, seconds: usize, seed: usize) -> RunSummary {
        let wobble = |i: usize| (((i + seed) * 7919) % 11) as f64 / 100.0 - 0.05;
        let samples = SteadySamples {
            rps: (0..seconds).map(|i| rps * (1.0 + wobble(i))).collect(),
            p95_ms: (0..seconds).map(|i| p95 * (1.0 + wobble(i + 3))).collect(),
            failures: (0..seconds)
                .map(|i| if i < 2 { 1.0 } else { 0.0 })
                .collect(),
        };
        let count = samples.rps.iter().sum::<f64>() as u64;
        let steady = Figures {
            count,
            failures: 2,
            rps,
            p95_ms: p95,
            ..Default::default()
        };
        RunSummary {
            run_id: id.into(),
            endpoints: vec![EndpointSummary {
                method: "POST".into(),
                name: "/verify".into(),
                task: "verify".into(),
                total: steady.clone(),
                steady,
                samples,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn failure_rates_are_per_second_shares_of_the_seconds_with_requests() {
        let s = SteadySamples {
            rps: vec![10.0, 0.0, 20.0],
            p95_ms: vec![5.0, 6.0],
            failures: vec![1.0, 0.0, 5.0],
        };
        assert_eq!(seconds_of(&s, Figure::FailureRate), Some(vec![10.0, 25.0]));
        assert_eq!(seconds_of(&s, Figure::P95), Some(vec![5.0, 6.0]));
        assert_eq!(seconds_of(&s, Figure::P99), None);
    }

    #[test]
    fn each_change_says_its_effect_test_samples_and_verdict() {
        let c = compare_runs(
            &[run("u010-verify", 100.0, 50.0, 20, 0)],
            &[run("u010-verify", 100.0, 60.0, 20, 5)],
            &[],
            true,
        )
        .unwrap();
        let d = &c.steps[0];
        assert_eq!(d.changes[0].p95.verdict, Verdict::Significant);
        assert_eq!(d.changes[0].rps.verdict, Verdict::NotSignificant);
        assert!(
            d.note.contains("p95 +2") && d.note.contains("(Welch t, 20 vs 20 s), significant"),
            "{}",
            d.note
        );
        assert!(
            d.note.contains("; failures ") && d.note.contains(" pp ["),
            "{}",
            d.note
        );
        // Too short a step: cannot tell, never a verdict.
        let short = compare_runs(
            &[run("u010-verify", 100.0, 50.0, 4, 0)],
            &[run("u010-verify", 100.0, 500.0, 4, 5)],
            &[],
            true,
        )
        .unwrap();
        assert_eq!(
            short.steps[0].changes[0].p95.verdict,
            Verdict::CannotTell { n: 4 }
        );
        assert!(
            short.steps[0].note.contains("cannot tell (n = 4)"),
            "{}",
            short.steps[0].note
        );
    }

    #[test]
    fn an_if_significant_threshold_breaks_only_on_a_significant_change_beyond_its_bound() {
        let th = |s: &str| Threshold::parse(s).unwrap();
        let gate = |base: RunSummary, contender: RunSummary, t: &str| {
            let c = compare_runs(&[base], &[contender], &[th(t)], true).unwrap();
            c.checks[0].clone()
        };
        // +20 % over 20 quiet seconds: beyond 10 % and significant.
        let real = gate(
            run("u010-verify", 100.0, 50.0, 20, 0),
            run("u010-verify", 100.0, 60.0, 20, 5),
            "verify p95 +10% if significant",
        );
        assert!(!real.passed, "{real:?}");
        assert!(
            real.significance.as_ref().unwrap().ends_with("significant"),
            "{real:?}"
        );
        // The same +20 % over 4 seconds: beyond the bound, but the test cannot tell.
        let short = (
            run("u010-verify", 100.0, 50.0, 4, 0),
            run("u010-verify", 100.0, 60.0, 4, 5),
        );
        assert!(
            gate(
                short.0.clone(),
                short.1.clone(),
                "verify p95 +10% if significant"
            )
            .passed
        );
        assert!(!gate(short.0, short.1, "verify p95 +10%").passed);
        // +3 % over 60 quiet seconds, significant: within `+10% if significant`, beyond
        // `+2% if significant`.
        let small = (
            run("u010-verify", 100.0, 50.0, 60, 0),
            run("u010-verify", 100.0, 51.5, 60, 0),
        );
        let within = gate(
            small.0.clone(),
            small.1.clone(),
            "verify p95 +10% if significant",
        );
        assert!(within.passed, "{within:?}");
        assert!(!gate(small.0, small.1, "verify p95 +2% if significant").passed);
        // What the gate decided reads back from checks.json, the change with it.
        let json = serde_json::to_string(&real).unwrap();
        let back: Check = serde_json::from_str(&json).unwrap();
        assert_eq!(back.changes, real.changes);
        assert!(
            json.contains(r#""verdict":{"kind":"significant"}"#),
            "{json}"
        );
        // A throughput drop is worse, a rise is not.
        let faster = gate(
            run("u010-verify", 100.0, 50.0, 20, 0),
            run("u010-verify", 150.0, 50.0, 20, 5),
            "verify rps +10% if significant",
        );
        assert!(faster.passed, "{faster:?}");
    }

    /// Two load steps, the contender 20 % slower at the first and unchanged at the second:
    /// each step judged on its own seconds, the endpoint's row counting those verdicts (never
    /// one averaged over the steps, which would read +4 %).
    #[test]
    fn each_step_is_judged_on_its_own_and_never_averaged() {
        let mut base = run("u010-verify", 100.0, 60.0, 20, 0);
        base.endpoints[0]
            .samples
            .p95_ms
            .iter_mut()
            .for_each(|v| *v *= 50.0 / 60.0);
        base.endpoints[0].steady.p95_ms = 50.0;
        let slower = run("u010-verify", 100.0, 60.0, 20, 5);
        let (base2, same2) = (
            run("u020-verify", 100.0, 200.0, 20, 0),
            run("u020-verify", 100.0, 200.0, 20, 3),
        );
        let th = |s: &str| Threshold::parse(s).unwrap();
        let c = compare_runs(
            &[base, base2],
            &[slower, same2],
            &[th("verify p95 +10% if significant"), th("verify p95 +10%")],
            true,
        )
        .unwrap();
        assert_eq!(c.steps.len(), 2);
        assert_eq!(c.steps[0].changes[0].p95.verdict, Verdict::Significant);
        assert_eq!(c.steps[1].changes[0].p95.verdict, Verdict::NotSignificant);
        let all = &c.endpoints[0];
        assert_eq!(all.changes.len(), 2);
        assert!(
            all.note.contains("p95 significant at 1 of 2 steps (+2")
                && all
                    .note
                    .contains("not significant at 1 (Welch t, each step on its own seconds)"),
            "{}",
            all.note
        );
        assert!(
            all.note.starts_with("rps not significant at 2 of 2 steps"),
            "{}",
            all.note
        );
        // The pooled p95 is within +10 % (+4 %): the plain bound holds; the first step is
        // significantly worse by more than 10 %: `if significant` breaks, naming it.
        let (gated, plain) = (&c.checks[0], &c.checks[1]);
        assert!(!gated.passed, "{gated:?}");
        assert!(plain.passed, "{plain:?}");
        let why = gated.significance.as_ref().unwrap();
        assert!(why.contains("worst at u010-verify: +2"), "{why}");
        assert_eq!(gated.changes.len(), 2);
        // The text names every step's verdict under its endpoint.
        let text = c.table();
        assert!(
            text.contains("  u010-verify") && text.contains("  u020-verify"),
            "{text}"
        );
    }
}
