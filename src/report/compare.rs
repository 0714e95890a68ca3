//! Comparing two results directories (a baseline and a contender), per load step (runs matched
//! by id: `u010-verify`, `it2-u015-provision`) and per endpoint over all matched steps, with
//! significance tests on the right samples:
//! * throughput: Welch's t on the steady per-second rates (whole seconds only);
//! * p95: the share of the contender's steady requests slower than the baseline's p95, against
//!   the 5 % it would be if nothing changed (a binomial z over every request, not per-second
//!   percentiles), so a +190 % p95 can never read "not significant";
//! * failures: a two-proportion z.
//!
//! Thresholds are checked on the pooled figures per endpoint; one that matches no endpoint, or
//! a relative one without a baseline, is an error, never a silent pass.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::results::cells::Kind;
use crate::results::{EndpointSummary, Figures, ResultsDir, RunSummary};
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
    /// Steady per-second rates (for significance).
    #[serde(skip)]
    pub rps_samples: Vec<f64>,
    /// The pooled steady histogram.
    #[serde(skip)]
    pub hist: Option<Histogram<u64>>,
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
            rps_samples: items
                .iter()
                .flat_map(|e| e.samples.rps.iter().copied())
                .collect(),
            hist,
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

/// Welch's t statistic of two samples (0 when either is too small).
pub fn welch_t(a: &[f64], b: &[f64]) -> f64 {
    let stats = |x: &[f64]| {
        let n = x.len() as f64;
        let m = x.iter().sum::<f64>() / n;
        let v = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0);
        (n, m, v)
    };
    if a.len() < 2 || b.len() < 2 {
        return 0.0;
    }
    let ((na, ma, va), (nb, mb, vb)) = (stats(a), stats(b));
    let se = (va / na + vb / nb).sqrt();
    if se == 0.0 {
        if ma == mb {
            0.0
        } else {
            f64::INFINITY.copysign(mb - ma)
        }
    } else {
        (mb - ma) / se
    }
}

/// The z of a p95 shift: how far the share of the contender's requests slower than the
/// baseline's p95 is from the 5 % it would be if nothing changed.
pub fn p95_shift_z(base: &Histogram<u64>, contender: &Histogram<u64>) -> f64 {
    if base.is_empty() || contender.is_empty() {
        return 0.0;
    }
    let p95 = base.value_at_quantile(0.95);
    let above = contender.count_between(p95 + 1, contender.max().max(p95 + 1));
    let n = contender.len() as f64;
    let share = above as f64 / n;
    (share - 0.05) / (0.05 * 0.95 / n).sqrt()
}

/// A two-proportion z of failure rates.
pub fn failures_z(base: (u64, u64), contender: (u64, u64)) -> f64 {
    let (fa, na) = (base.0 as f64, base.1 as f64);
    let (fb, nb) = (contender.0 as f64, contender.1 as f64);
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    let p = (fa + fb) / (na + nb);
    let se = (p * (1.0 - p) * (1.0 / na + 1.0 / nb)).sqrt();
    if se == 0.0 {
        0.0
    } else {
        (fb / nb - fa / na) / se
    }
}

/// Whether a change with this statistic is significant at 95 % (two-sided, normal).
pub fn significant(z: f64) -> bool {
    z.abs() > 1.96
}

/// How a change reads in tables.
fn verdict(z: f64) -> &'static str {
    if significant(z) {
        "significant"
    } else {
        "not significant"
    }
}

/// One endpoint compared, at one load step or pooled over all.
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
    /// Baseline figures.
    pub base: EndpointFigures,
    /// Contender figures.
    pub contender: EndpointFigures,
    /// Welch's t of the rates.
    pub t_rps: f64,
    /// z of the p95 shift.
    pub z_p95: f64,
    /// z of the failure rates.
    pub z_failures: f64,
    /// Significance in words.
    pub note: String,
}

impl EndpointDelta {
    fn new(
        run: &str,
        load: &str,
        e: &EndpointSummary,
        base: EndpointFigures,
        contender: EndpointFigures,
    ) -> EndpointDelta {
        let t_rps = welch_t(&base.rps_samples, &contender.rps_samples);
        let z_p95 = match (&base.hist, &contender.hist) {
            (Some(a), Some(b)) => p95_shift_z(a, b),
            _ => 0.0,
        };
        let fails = |f: &EndpointFigures| {
            (
                (f.failure_rate / 100.0 * f.count as f64).round() as u64,
                f.count,
            )
        };
        let z_failures = failures_z(fails(&base), fails(&contender));
        let note = format!(
            "rps {} (t = {t_rps:.1}); p95 {} (z = {z_p95:.1}); failures {} (z = {z_failures:.1})",
            verdict(t_rps),
            verdict(z_p95),
            verdict(z_failures)
        );
        EndpointDelta {
            run: run.into(),
            load: load.into(),
            endpoint: super::charts::endpoint_label(e),
            task: e.task.clone(),
            unit: e.kind == Kind::Task,
            base,
            contender,
            t_rps,
            z_p95,
            z_failures,
            note,
        }
    }
}

pub use super::format::pct;

/// A threshold checked against one endpoint.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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

/// Per endpoint of the matched runs: its summaries.
fn group<'a>(runs: &'a [RunSummary], ids: &[String]) -> Vec<(String, Vec<&'a EndpointSummary>)> {
    let mut order = Vec::new();
    let mut map: BTreeMap<String, Vec<&EndpointSummary>> = BTreeMap::new();
    for r in runs.iter().filter(|r| ids.contains(&r.run_id)) {
        for e in r.endpoints.iter().filter(|e| e.task != "auth") {
            let key = format!("{}\u{1}{}\u{1}{}", e.task, e.method, e.name);
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
            if let Some(passed) = th.check(value, baseline) {
                checks.push(Check {
                    threshold: th.text.clone(),
                    endpoint: d.endpoint.clone(),
                    value,
                    baseline,
                    unit: th.figure.unit().into(),
                    passed,
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
                .find(|x| x.method == e.method && x.name == e.name && x.task == e.task)
            else {
                continue;
            };
            steps.push(EndpointDelta::new(
                id,
                &rc.load_label(),
                e,
                EndpointFigures::of(&[eb]),
                EndpointFigures::of(&[e]),
            ));
        }
    }
    let (gb, gc) = (group(b, &ids), group(c, &ids));
    let mut endpoints = Vec::new();
    for (key, items) in &gc {
        let Some((_, base_items)) = gb.iter().find(|(k, _)| k == key) else {
            continue;
        };
        endpoints.push(EndpointDelta::new(
            "all matched runs",
            "",
            items[0],
            EndpointFigures::of(base_items),
            EndpointFigures::of(items),
        ));
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

/// A ✓/✗ line per threshold check, as k6 ends a test.
pub fn checks_text(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let base = c
            .baseline
            .map(|b| format!(" (baseline {} {}, {})", fmt(b), c.unit, pct(b, c.value)))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{} {:<28} {}: {} {}{base}",
            if c.passed { "✓" } else { "✗" },
            c.threshold,
            c.endpoint,
            fmt(c.value),
            c.unit
        );
    }
    s
}

fn fmt(v: f64) -> String {
    super::format::fmt_ms(v)
}

impl Comparison {
    /// A plain-text table: per endpoint pooled, then the thresholds.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<52} {:>16} {:>18} {:>18} {:>12}",
            "endpoint (all matched runs)", "rps", "p95 ms", "p99 ms", "failures %"
        );
        for d in &self.endpoints {
            let (b, c) = (&d.base, &d.contender);
            let cell = |x: f64, y: f64| format!("{} ({})", fmt(y), pct(x, y));
            let _ = writeln!(
                s,
                "{:<52} {:>16} {:>18} {:>18} {:>12}",
                d.endpoint.chars().take(52).collect::<String>(),
                cell(b.rps, c.rps),
                cell(b.p95, c.p95),
                cell(b.p99, c.p99),
                format!("{:.2}", c.failure_rate)
            );
            let _ = writeln!(s, "{:<52} {}", "", d.note);
        }
        s.push_str(&checks_text(&self.checks));
        s
    }

    /// JUnit XML: one test case per threshold and endpoint.
    pub fn junit(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let failures = self.checks.iter().filter(|c| !c.passed).count();
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(x, "<testsuites><testsuite name=\"trialrunner.thresholds\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">", self.checks.len());
        for c in &self.checks {
            let _ = write!(
                x,
                "<testcase classname=\"{}\" name=\"{}\">",
                esc(&c.endpoint),
                esc(&c.threshold)
            );
            if !c.passed {
                let _ = write!(
                    x,
                    "<failure message=\"{}\">value {:.3}{}</failure>",
                    esc(&format!("{} broke", c.threshold)),
                    c.value,
                    c.baseline
                        .map(|b| format!(", baseline {b:.3}"))
                        .unwrap_or_default()
                );
            }
            x.push_str("</testcase>\n");
        }
        x.push_str("</testsuite></testsuites>\n");
        x
    }
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
        "results": dir,
        "endpoints": figures,
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welch_t_tells_shifted_from_same() {
        let a: Vec<f64> = (0..50).map(|i| 100.0 + (i % 5) as f64).collect();
        let b: Vec<f64> = (0..50).map(|i| 120.0 + (i % 5) as f64).collect();
        assert!(welch_t(&a, &b) > 10.0);
        assert!(welch_t(&a, &a).abs() < 1e-9);
    }

    #[test]
    fn a_large_p95_shift_is_significant_and_none_is_not() {
        let hist = |scale: u64| {
            let mut h = crate::results::cells::new_hist();
            for i in 1..=2000u64 {
                h.record(i * scale).unwrap();
            }
            h
        };
        assert!(p95_shift_z(&hist(10), &hist(29)) > 10.0, "+190 %");
        assert!(p95_shift_z(&hist(10), &hist(10)).abs() < 1.96);
        assert!(failures_z((5, 1000), (50, 1000)) > 1.96);
        assert!(failures_z((5, 1000), (6, 1000)).abs() < 1.96);
    }
}
