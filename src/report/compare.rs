//! Comparing two results directories (a baseline and a contender): per-endpoint deltas of
//! throughput, p50/p95/p99 and failure rate, a significance note from the per-second samples
//! (Welch's t), threshold checks (exit 1 when one breaks), JUnit XML for CI, a comparison chart,
//! and the history line a scheduled regression run appends.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::svg::{Chart, Series};
use super::thresholds::{Figure, Threshold};
use crate::error::{Error, Result};
use crate::results::{EndpointSummary, Figures, ResultsDir, RunSummary};

/// One endpoint's figures, aggregated over the matched runs (count-weighted).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointFigures {
    /// Requests.
    pub count: u64,
    /// Failure rate, %.
    pub failure_rate: f64,
    /// Mean steady throughput per run.
    pub rps: f64,
    /// Steady latency percentiles, pooled over the matched runs' histograms, ms.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 95th.
    pub p95: f64,
    /// 99th.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
    /// Per-second rps samples (for significance).
    #[serde(skip)]
    pub rps_samples: Vec<f64>,
    /// Per-second p95 samples.
    #[serde(skip)]
    pub p95_samples: Vec<f64>,
}

/// The steady histograms of several endpoint summaries merged: pooled percentiles, never a
/// mean of percentiles. `None` when a summary predates kept histograms.
pub fn pooled(items: &[&EndpointSummary]) -> Option<hdrhistogram::Histogram<u64>> {
    let mut h = crate::load::recorder::new_hist();
    for e in items {
        if e.histograms.steady.is_empty() && e.steady.count > e.steady.failures {
            return None;
        }
        h.add(crate::load::aggregate::decode(&e.histograms.steady)?)
            .expect("auto-resizing histograms merge");
    }
    Some(h)
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
            rps_samples: items
                .iter()
                .flat_map(|e| e.samples.rps.iter().copied())
                .collect(),
            p95_samples: items
                .iter()
                .flat_map(|e| e.samples.p95_ms.iter().copied())
                .collect(),
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

/// One endpoint compared.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointDelta {
    /// `METHOD name`.
    pub endpoint: String,
    /// The task issuing it.
    pub task: String,
    /// Baseline figures.
    pub base: EndpointFigures,
    /// Contender figures.
    pub contender: EndpointFigures,
    /// Significance of the throughput and p95 changes.
    pub note: String,
}

fn pct(base: f64, new: f64) -> String {
    if base == 0.0 {
        return if new == 0.0 {
            "±0%".into()
        } else {
            "new".into()
        };
    }
    format!("{:+.1}%", 100.0 * (new - base) / base)
}

/// A threshold checked against one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The threshold as written.
    pub threshold: String,
    /// The endpoint.
    pub endpoint: String,
    /// Contender value.
    pub value: f64,
    /// Baseline value.
    pub baseline: Option<f64>,
    /// Passed.
    pub passed: bool,
}

/// The result of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Per endpoint.
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

fn group(runs: &[RunSummary], ids: &[String]) -> BTreeMap<String, (String, Vec<EndpointSummary>)> {
    let mut out: BTreeMap<String, (String, Vec<EndpointSummary>)> = BTreeMap::new();
    for r in runs.iter().filter(|r| ids.contains(&r.run_id)) {
        for e in &r.endpoints {
            out.entry(format!("{} {}", e.method, e.name))
                .or_insert_with(|| (e.task.clone(), Vec::new()))
                .1
                .push(e.clone());
        }
    }
    out
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

/// Compares two results directories (runs matched by id).
pub fn compare(base: &Path, contender: &Path, thresholds: &[Threshold]) -> Result<Comparison> {
    let b = ResultsDir::open(base)?.summaries()?;
    let c = ResultsDir::open(contender)?.summaries()?;
    let ids: Vec<String> = c
        .iter()
        .map(|r| r.run_id.clone())
        .filter(|id| b.iter().any(|r| &r.run_id == id))
        .collect();
    if ids.is_empty() {
        return Err(Error::Usage(format!(
            "{} and {} have no run in common (runs are matched by id, e.g. u010-verify)",
            base.display(),
            contender.display()
        )));
    }
    let (gb, gc) = (group(&b, &ids), group(&c, &ids));
    let mut endpoints = Vec::new();
    for (name, (task, items)) in &gc {
        let Some((_, base_items)) = gb.get(name) else {
            continue;
        };
        let base = EndpointFigures::of(&base_items.iter().collect::<Vec<_>>());
        let contender = EndpointFigures::of(&items.iter().collect::<Vec<_>>());
        let t_rps = welch_t(&base.rps_samples, &contender.rps_samples);
        let t_p95 = welch_t(&base.p95_samples, &contender.p95_samples);
        let sig = |t: f64| {
            if t.abs() > 1.96 {
                "significant"
            } else {
                "not significant"
            }
        };
        let note = format!(
            "rps change {} (t={t_rps:.1}); p95 change {} (t={t_p95:.1}) at 95 %",
            sig(t_rps),
            sig(t_p95)
        );
        endpoints.push(EndpointDelta {
            endpoint: name.clone(),
            task: task.clone(),
            base,
            contender,
            note,
        });
    }
    let mut checks = Vec::new();
    for th in thresholds {
        for d in endpoints.iter().filter(|d| {
            th.endpoint == "*"
                || th.endpoint == d.task
                || d.endpoint.ends_with(&format!(" {}", th.endpoint))
        }) {
            let value = d.contender.get(th.figure);
            let baseline = Some(d.base.get(th.figure));
            if let Some(passed) = th.check(value, baseline) {
                checks.push(Check {
                    threshold: th.text.clone(),
                    endpoint: d.endpoint.clone(),
                    value,
                    baseline,
                    passed,
                });
            }
        }
    }
    Ok(Comparison {
        endpoints,
        checks,
        matched_runs: ids.len(),
    })
}

/// Checks thresholds on one results directory alone (absolute bounds only).
pub fn check_absolute(dir: &Path, thresholds: &[Threshold]) -> Result<Comparison> {
    compare(
        dir,
        dir,
        &thresholds
            .iter()
            .filter(|t| !matches!(t.bound, super::thresholds::Bound::Relative(_)))
            .cloned()
            .collect::<Vec<_>>(),
    )
}

impl Comparison {
    /// A plain-text table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<58} {:>14} {:>16} {:>16} {:>16} {:>12}",
            "endpoint", "rps", "p50 ms", "p95 ms", "p99 ms", "failures %"
        );
        for d in &self.endpoints {
            let (b, c) = (&d.base, &d.contender);
            let cell = |x: f64, y: f64| format!("{y:.1} ({})", pct(x, y));
            let _ = writeln!(
                s,
                "{:<58} {:>14} {:>16} {:>16} {:>16} {:>12}",
                d.endpoint,
                cell(b.rps, c.rps),
                cell(b.p50, c.p50),
                cell(b.p95, c.p95),
                cell(b.p99, c.p99),
                format!("{:.2}", c.failure_rate)
            );
            let _ = writeln!(s, "{:<58} {}", "", d.note);
        }
        for ch in &self.checks {
            let _ = writeln!(
                s,
                "{} {:<28} {:<58} {:.2}{}",
                if ch.passed { "PASS" } else { "FAIL" },
                ch.threshold,
                ch.endpoint,
                ch.value,
                ch.baseline
                    .map(|b| format!(" (baseline {b:.2})"))
                    .unwrap_or_default()
            );
        }
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

    /// Per-endpoint bar-like charts: baseline and contender p95 and rps side by side.
    pub fn charts(&self, base_label: &str, contender_label: &str) -> Vec<String> {
        let idx: Vec<(f64, &EndpointDelta)> = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, d)| (i as f64 + 1.0, d))
            .collect();
        let chart = |title: &str, y: &str, f: &dyn Fn(&EndpointFigures) -> f64| {
            Chart {
                title: format!("{title} by endpoint (1..{}: see the table)", idx.len()),
                x_label: "endpoint #".into(),
                y_label: y.into(),
                series: vec![
                    Series {
                        dots: true,
                        ..Series::line(
                            base_label,
                            idx.iter().map(|(i, d)| (*i, f(&d.base))).collect(),
                        )
                    },
                    Series {
                        dots: true,
                        ..Series::line(
                            contender_label,
                            idx.iter().map(|(i, d)| (*i, f(&d.contender))).collect(),
                        )
                    },
                ],
                ..Default::default()
            }
            .to_svg()
        };
        vec![
            chart("p95", "ms", &|f| f.p95),
            chart("throughput", "requests/s", &|f| f.rps),
        ]
    }
}

/// One line of a regression history: when, what trial, per-endpoint figures.
pub fn history_line(dir: &Path) -> Result<String> {
    let manifest: serde_json::Value = crate::results::read_json(&dir.join("manifest.json"))?;
    let runs = ResultsDir::open(dir)?.summaries()?;
    let ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    let figures: BTreeMap<String, EndpointFigures> = group(&runs, &ids)
        .into_iter()
        .map(|(k, (_, v))| (k, EndpointFigures::of(&v.iter().collect::<Vec<_>>())))
        .collect();
    Ok(serde_json::json!({
        "date": manifest["ended_at"],
        "trial": manifest["trial"]["spec"]["name"],
        "trial_sha256": manifest["trial"]["sha256"],
        "results": dir,
        "endpoints": figures,
    })
    .to_string())
}

/// The trend of p95 and throughput across a history file, one chart each.
pub fn trend_charts(history: &Path) -> Vec<String> {
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(history)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default();
    let mut p95: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut rps: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        for (ep, f) in l["endpoints"].as_object().into_iter().flatten() {
            p95.entry(ep.clone())
                .or_default()
                .push((i as f64 + 1.0, f["p95"].as_f64().unwrap_or(0.0)));
            rps.entry(ep.clone())
                .or_default()
                .push((i as f64 + 1.0, f["rps"].as_f64().unwrap_or(0.0)));
        }
    }
    let mk = |t: &str, y: &str, d: BTreeMap<String, Vec<(f64, f64)>>| {
        Chart {
            title: t.into(),
            x_label: "run # in the history".into(),
            y_label: y.into(),
            series: d
                .into_iter()
                .map(|(k, v)| Series {
                    dots: true,
                    ..Series::line(k, v)
                })
                .collect(),
            ..Default::default()
        }
        .to_svg()
    };
    if lines.is_empty() {
        return Vec::new();
    }
    vec![
        mk("trend: p95 per endpoint", "ms", p95),
        mk("trend: throughput per endpoint", "requests/s", rps),
    ]
}

#[cfg(test)]
mod tests {
    use super::welch_t;

    #[test]
    fn welch_t_tells_shifted_from_same() {
        let a: Vec<f64> = (0..50).map(|i| 100.0 + (i % 5) as f64).collect();
        let b: Vec<f64> = (0..50).map(|i| 120.0 + (i % 5) as f64).collect();
        assert!(welch_t(&a, &b) > 10.0);
        assert!(welch_t(&a, &a).abs() < 1e-9);
    }
}
