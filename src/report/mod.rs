//! Analysis and presentation of a results directory: `report.html` (self-contained, SVG plots,
//! rendered from `templates/report.html.j2` with minijinja) and `report.md`; comparisons and
//! regression gates in [`compare`]; thresholds in [`thresholds`].

pub mod compare;
pub mod correlate;
pub mod svg;
pub mod thresholds;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::results::{self, ResultsDir, RunSummary, StoreSnapshot};
use svg::{Axis, Chart, Marker, Series};

/// The HTML template, embedded so the binary needs nothing beside it.
pub const TEMPLATE: &str = include_str!("../../templates/report.html.j2");

/// Mean and 95 % confidence half-width (1.96 · SEM) of samples.
pub fn mean_ci95(samples: &[f64]) -> (f64, f64) {
    let n = samples.len() as f64;
    if n == 0.0 {
        return (0.0, 0.0);
    }
    let mean = samples.iter().sum::<f64>() / n;
    if n < 2.0 {
        return (mean, 0.0);
    }
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, 1.96 * (var / n).sqrt())
}

/// One row of a per-second timeline.
#[derive(Debug, Clone)]
pub struct TimelineRow {
    /// Seconds since the run's start (of the second's beginning).
    pub second: f64,
    /// The UTC second.
    pub unix: f64,
    /// Method and name.
    pub endpoint: String,
    /// `partial`, `warmup` or `steady`.
    pub phase: String,
    /// `request` or `task`.
    pub kind: String,
    /// Requests.
    pub requests: f64,
    /// Failures.
    pub failures: f64,
    /// Median, ms.
    pub p50: Option<f64>,
    /// p95, ms.
    pub p95: Option<f64>,
}

/// Reads `timeline.csv`.
pub fn read_timeline(path: &Path) -> Vec<TimelineRow> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f = split_csv(l);
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            Some(TimelineRow {
                unix: num(0)?,
                second: num(1)?,
                phase: f.get(3)?.clone(),
                endpoint: format!("{} {}", f.get(4)?, f.get(5)?),
                kind: f.get(6)?.clone(),
                requests: num(8)?,
                failures: num(9)?,
                p50: num(11),
                p95: num(13),
            })
        })
        .collect()
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Reads a JSON-lines file.
fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Serialize)]
struct Section {
    title: String,
    note: String,
    charts: Vec<String>,
}

#[derive(Serialize)]
struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn summary_charts(runs: &[RunSummary]) -> Vec<String> {
    // Endpoint → (users, summary) over closed-model runs.
    let mut by_endpoint: BTreeMap<String, Vec<(f64, &crate::results::EndpointSummary)>> =
        BTreeMap::new();
    for r in runs {
        let Some(u) = r.users else { continue };
        for e in &r.endpoints {
            by_endpoint
                .entry(format!("{} {}", e.method, e.name))
                .or_default()
                .push((u as f64, e));
        }
    }
    let mut out = Vec::new();
    for (name, mut points) in by_endpoint {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        // A curve against users needs at least two user counts (a store-weight trial has one).
        if points.windows(2).all(|w| w[0].0 == w[1].0) {
            continue;
        }
        let series = |f: &dyn Fn(&crate::results::EndpointSummary) -> &[f64], label: &str| {
            let stats: Vec<(f64, (f64, f64))> =
                points.iter().map(|(u, e)| (*u, mean_ci95(f(e)))).collect();
            Series {
                points: stats.iter().map(|(u, (m, _))| (*u, *m)).collect(),
                errors: Some(stats.iter().map(|(_, (_, ci))| *ci).collect()),
                dots: true,
                ..Series::line(label, vec![])
            }
        };
        for (title, y, s) in [
            (
                "throughput",
                "requests/s",
                series(&|e| &e.samples.rps, "mean rps ± 95% CI"),
            ),
            (
                "failures",
                "failures/s",
                series(&|e| &e.samples.failures, "failures/s ± 95% CI"),
            ),
        ] {
            out.push(
                Chart {
                    title: format!("{name}: {title} vs users"),
                    x_label: "users".into(),
                    y_label: y.into(),
                    series: vec![s],
                    ..Default::default()
                }
                .to_svg(),
            );
        }
        // Latency: percentiles of each run's steady histogram (pooled over its seconds), never
        // a mean of per-second percentiles.
        let pct = |label: &str, f: &dyn Fn(&crate::results::Figures) -> f64| Series {
            dots: true,
            ..Series::line(
                label,
                points.iter().map(|(u, e)| (*u, f(&e.steady))).collect(),
            )
        };
        out.push(
            Chart {
                title: format!("{name}: latency vs users (steady, pooled)"),
                x_label: "users".into(),
                y_label: "ms".into(),
                series: vec![
                    pct("p50", &|f| f.p50_ms),
                    pct("p95", &|f| f.p95_ms),
                    pct("p99", &|f| f.p99_ms),
                ],
                ..Default::default()
            }
            .to_svg(),
        );
    }
    out
}

/// Instances InService per sample time, from `infra.jsonl`.
fn in_service_series(samples: &[Value], start: f64) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|s| {
            let t = s["unix"].as_f64()? - start;
            let n = s["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["instances"].as_array().into_iter().flatten())
                .filter(|i| i["lifecycle"] == "InService")
                .count();
            Some((t, n as f64))
        })
        .collect()
}

/// Launch, InService and healthy markers for instances that joined during a run.
fn spin_up_markers(dir: &Path, start: f64, end: f64) -> Vec<Marker> {
    let mut out = Vec::new();
    let scaling: Value = results::read_json(&dir.join("scaling.json")).unwrap_or(Value::Null);
    for i in scaling["instances"].as_array().into_iter().flatten() {
        if let (Some(id), Some(t)) = (i["id"].as_str(), i["launch_time"].as_f64()) {
            if t >= start && t <= end {
                out.push(Marker {
                    x: t - start,
                    label: format!("{id} launched"),
                    color: "#7f7f7f",
                });
            }
        }
    }
    let samples = read_jsonl(&dir.join("infra.jsonl"));
    let mut seen_in_service = std::collections::HashSet::new();
    let mut seen_healthy = std::collections::HashSet::new();
    let first: std::collections::HashSet<String> = samples
        .first()
        .map(|s| {
            s["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["instances"].as_array().into_iter().flatten())
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for s in &samples {
        let t = s["unix"].as_f64().unwrap_or(start) - start;
        for g in s["groups"].as_array().into_iter().flatten() {
            for i in g["instances"].as_array().into_iter().flatten() {
                let id = i["id"].as_str().unwrap_or("?").to_string();
                if first.contains(&id) {
                    continue;
                }
                if i["lifecycle"] == "InService" && seen_in_service.insert(id.clone()) {
                    out.push(Marker {
                        x: t,
                        label: format!("{id} InService"),
                        color: "#2ca02c",
                    });
                }
            }
            for tg in g["targets"].as_array().into_iter().flatten() {
                let id = tg["id"].as_str().unwrap_or("?").to_string();
                if !first.contains(&id)
                    && tg["state"] == "healthy"
                    && seen_healthy.insert(id.clone())
                {
                    out.push(Marker {
                        x: t,
                        label: format!("{id} healthy"),
                        color: "#17becf",
                    });
                }
            }
        }
    }
    out
}

/// CloudWatch series of a run, as (label, points relative to the run start).
fn cloud_series(dir: &Path, start: f64) -> Vec<(String, Vec<(f64, f64)>)> {
    let cw: Value = results::read_json(&dir.join("cloudwatch.json")).unwrap_or(Value::Null);
    let synthetic = cw["synthetic"].as_bool() == Some(true);
    cw["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let mut label = s["label"].as_str()?.to_string();
            if synthetic {
                label.push_str(" (synthetic)");
            }
            let points = s["points"]
                .as_array()?
                .iter()
                .filter_map(|p| Some((p[0].as_f64()? - start, p[1].as_f64()?)))
                .collect();
            Some((label, points))
        })
        .collect()
}

/// Instances that became InService during a run: (id, seconds since the run's start).
fn joins(dir: &Path, start: f64) -> Vec<(String, f64)> {
    spin_up_markers(dir, start, f64::MAX)
        .into_iter()
        .filter(|m| m.label.ends_with(" InService"))
        .map(|m| (m.label.trim_end_matches(" InService").to_string(), m.x))
        .collect()
}

/// The per-second histograms of a run's `latency.hlog`: (tag, Unix second, histogram), request
/// endpoints only.
pub fn hlog_seconds(path: &Path) -> Vec<(String, f64, hdrhistogram::Histogram<u64>)> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let mut base = 0.0;
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(&bytes).flatten() {
        match entry {
            LogEntry::BaseTime(b) => base = b.as_secs_f64(),
            LogEntry::Interval(i) => {
                let tag = i.tag().map(|t| t.as_str().to_string()).unwrap_or_default();
                if tag.starts_with("TASK:") {
                    continue;
                }
                let Some(h) = crate::load::aggregate::decode(i.encoded_histogram()) else {
                    continue;
                };
                out.push((tag, base + i.start_timestamp().as_secs_f64(), h));
            }
            _ => {}
        }
    }
    out
}

/// The worst endpoint's p95 over `[t, t + 60)`, pooled from its per-second histograms.
fn period_p95(seconds: &[(String, f64, hdrhistogram::Histogram<u64>)], t: f64) -> Option<f64> {
    let mut per_tag: BTreeMap<&str, hdrhistogram::Histogram<u64>> = BTreeMap::new();
    for (tag, at, h) in seconds {
        if *at >= t && *at < t + 60.0 {
            per_tag
                .entry(tag)
                .or_insert_with(crate::load::recorder::new_hist)
                .add(h)
                .expect("auto-resizing histograms merge");
        }
    }
    per_tag
        .values()
        .filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(0.95) as f64 / 1000.0)
        .reduce(f64::max)
}

/// The correlation of one run, from its files: DB connections per CloudWatch period beside the
/// client's pooled p95 for the same period; failures and p95 per whole second.
pub fn correlate_run(rd: &ResultsDir, run: &RunSummary) -> correlate::Correlation {
    let dir = rd.run_dir(&run.run_id);
    // Whole seconds of requests only: a partial second is not a one-second sample.
    let rows: Vec<TimelineRow> = read_timeline(&dir.join("timeline.csv"))
        .into_iter()
        .filter(|r| r.phase != "partial" && r.kind == "request")
        .collect();
    let n = rows
        .iter()
        .map(|r| r.second as usize + 1)
        .max()
        .unwrap_or(0);
    let mut p95 = vec![None::<f64>; n];
    let mut failures = vec![0.0; n];
    for r in &rows {
        let i = r.second as usize;
        if let Some(v) = r.p95 {
            p95[i] = Some(p95[i].map_or(v, |x: f64| x.max(v)));
        }
        failures[i] += r.failures;
    }
    let seconds = hlog_seconds(&dir.join("latency.hlog"));
    let (start, end) = (run.started_unix, run.started_unix + run.duration_s);
    let minutes: Vec<correlate::Minute> = cloud_series(&dir, 0.0)
        .into_iter()
        .filter(|(l, _)| l.contains("DatabaseConnections"))
        .flat_map(|(_, points)| points)
        .map(|(t, db)| {
            // The client's figure for the period, when the run covered half of it at least.
            let covered = (end.min(t + 60.0) - start.max(t)).max(0.0);
            correlate::Minute {
                t,
                db,
                p95: (covered >= 30.0).then(|| period_p95(&seconds, t)).flatten(),
            }
        })
        .collect();
    correlate::correlate(
        minutes,
        &p95,
        &failures,
        run.warmup_s,
        &joins(&dir, run.started_unix),
    )
}

fn timeline_charts(rd: &ResultsDir, run: &RunSummary) -> Vec<String> {
    let dir = rd.run_dir(&run.run_id);
    let rows: Vec<TimelineRow> = read_timeline(&dir.join("timeline.csv"))
        .into_iter()
        .filter(|r| r.phase != "partial")
        .collect();
    let mut by_ep: BTreeMap<String, Vec<&TimelineRow>> = BTreeMap::new();
    for r in &rows {
        by_ep.entry(r.endpoint.clone()).or_default().push(r);
    }
    let spans = if run.warmup_s > 0.0 {
        vec![(0.0, run.warmup_s, "warm-up".to_string())]
    } else {
        vec![]
    };
    let start = run.started_unix;
    let markers = spin_up_markers(&dir, start, start + run.duration_s);
    let mut rate = Chart {
        title: format!("{}: requests/s and failures/s", run.run_id),
        x_label: "seconds".into(),
        y_label: "per second".into(),
        spans: spans.clone(),
        markers: markers.clone(),
        ..Default::default()
    };
    let mut lat = Chart {
        title: format!("{}: latency", run.run_id),
        x_label: "seconds".into(),
        y_label: "ms".into(),
        spans,
        markers,
        ..Default::default()
    };
    for (ep, rs) in &by_ep {
        rate.series.push(Series::line(
            format!("{ep} rps"),
            rs.iter().map(|r| (r.second, r.requests)).collect(),
        ));
        if rs.iter().any(|r| r.failures > 0.0) {
            rate.series.push(Series::line(
                format!("{ep} failures/s"),
                rs.iter().map(|r| (r.second, r.failures)).collect(),
            ));
        }
        lat.series.push(Series::line(
            format!("{ep} p95"),
            rs.iter().filter_map(|r| Some((r.second, r.p95?))).collect(),
        ));
        lat.series.push(Series::line(
            format!("{ep} p50"),
            rs.iter().filter_map(|r| Some((r.second, r.p50?))).collect(),
        ));
    }
    // Cloud series and instances on the right axis of the latency chart.
    let infra = in_service_series(&read_jsonl(&dir.join("infra.jsonl")), start);
    if !infra.is_empty() {
        lat.series.push(Series {
            axis: Axis::Right,
            ..Series::line("instances InService", infra)
        });
        lat.y2_label = "count".into();
    }
    for (label, points) in cloud_series(&dir, start) {
        if label.contains("DatabaseConnections")
            || label.contains("HealthyHostCount")
            || label.contains("GroupInServiceInstances")
        {
            lat.series.push(Series {
                axis: Axis::Right,
                ..Series::line(label, points)
            });
            lat.y2_label = "count".into();
        }
    }
    [rate, lat]
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(|c| c.to_svg())
        .collect()
}

/// Store weight: throughput and p95 of each task against the rows stored when its run began.
fn store_weight_charts(runs: &[RunSummary], stores: &[StoreSnapshot]) -> Vec<String> {
    let iterations: Vec<&StoreSnapshot> = stores
        .iter()
        .filter(|s| s.label.starts_with("after iteration"))
        .collect();
    if iterations.is_empty() {
        return Vec::new();
    }
    // The rows each run actually ran against: the count taken just before it (a verify run
    // after a provision run sees what that provision added). Older results only counted per
    // iteration: the count before the iteration then stands for all its runs.
    let rows_before = |run: &RunSummary| -> f64 {
        let rows = |s: &StoreSnapshot| s.counts.values().sum::<u64>() as f64;
        if let Some(s) = stores
            .iter()
            .find(|s| s.label == format!("before {}", run.run_id))
        {
            return rows(s);
        }
        if run.iteration <= 1 {
            return stores
                .iter()
                .find(|s| s.label == "after clear")
                .map(rows)
                .unwrap_or(0.0);
        }
        iterations
            .get(run.iteration as usize - 2)
            .map(|s| rows(s))
            .unwrap_or(0.0)
    };
    let mut rps: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut p95: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in runs {
        let rows = rows_before(r);
        for e in &r.endpoints {
            let key = format!("{} {}", e.method, e.name);
            rps.entry(key.clone())
                .or_default()
                .push((rows, e.steady.rps));
            p95.entry(key).or_default().push((rows, e.steady.p95_ms));
        }
    }
    let mk = |title: &str, y: &str, data: BTreeMap<String, Vec<(f64, f64)>>| {
        Chart {
            title: title.into(),
            x_label: "rows in the stores when the run began".into(),
            y_label: y.into(),
            series: data
                .into_iter()
                .map(|(k, mut v)| {
                    v.sort_by(|a, b| a.0.total_cmp(&b.0));
                    Series {
                        dots: true,
                        ..Series::line(k, v)
                    }
                })
                .collect(),
            ..Default::default()
        }
        .to_svg()
    };
    vec![
        mk("store weight: throughput vs stored rows", "requests/s", rps),
        mk("store weight: p95 vs stored rows", "ms", p95),
    ]
}

/// Auto-scaling: instances in service and desired over the whole campaign, with spin-up markers.
fn autoscaling_charts(rd: &ResultsDir, runs: &[RunSummary]) -> Vec<String> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let t0 = first.started_unix;
    let mut in_service = Vec::new();
    let mut desired = Vec::new();
    let mut markers = Vec::new();
    for r in runs {
        let dir = rd.run_dir(&r.run_id);
        let samples = read_jsonl(&dir.join("infra.jsonl"));
        in_service.extend(in_service_series(&samples, t0));
        desired.extend(samples.iter().filter_map(|s| {
            Some((
                s["unix"].as_f64()? - t0,
                s["groups"]
                    .as_array()?
                    .iter()
                    .filter_map(|g| g["desired"].as_f64())
                    .sum::<f64>(),
            ))
        }));
        markers.extend(
            spin_up_markers(&dir, r.started_unix, r.started_unix + r.duration_s)
                .into_iter()
                .map(|m| Marker {
                    x: m.x + r.started_unix - t0,
                    ..m
                }),
        );
    }
    if in_service.is_empty() {
        return Vec::new();
    }
    vec![Chart {
        title: "auto-scaling: instances over time (markers: launch, InService, healthy)".into(),
        x_label: "seconds since the first run".into(),
        y_label: "instances".into(),
        series: vec![
            Series::line("InService", in_service),
            Series::line("desired", desired),
        ],
        markers,
        ..Default::default()
    }
    .to_svg()]
}

fn tables(
    runs: &[RunSummary],
    stores: &[StoreSnapshot],
    manifest: &Value,
    findings: &[String],
) -> Vec<Table> {
    let mut t = Vec::new();
    t.push(Table {
        title: "Per-endpoint summary".into(),
        header: [
            "run",
            "users",
            "endpoint",
            "requests",
            "failures",
            "rps",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "steady p95 ms",
        ]
        .map(String::from)
        .to_vec(),
        rows: runs
            .iter()
            .flat_map(|r| {
                r.endpoints.iter().map(move |e| {
                    let f = &e.total;
                    vec![
                        r.run_id.clone(),
                        r.users
                            .map(|u| u.to_string())
                            .or(r.arrival_rate.map(|a| format!("{a}/s")))
                            .unwrap_or_default(),
                        format!("{} {}", e.method, e.name),
                        f.count.to_string(),
                        f.failures.to_string(),
                        format!("{:.1}", f.rps),
                        format!("{:.1}", f.p50_ms),
                        format!("{:.1}", f.p95_ms),
                        format!("{:.1}", f.p99_ms),
                        format!("{:.1}", f.max_ms),
                        format!("{:.1}", e.steady.p95_ms),
                    ]
                })
            })
            .collect(),
    });
    t.push(Table {
        title: "Failures by cause".into(),
        header: ["run", "endpoint", "class", "message", "count"]
            .map(String::from)
            .to_vec(),
        rows: runs
            .iter()
            .flat_map(|r| {
                r.failures.iter().map(move |f| {
                    vec![
                        r.run_id.clone(),
                        format!("{} {}", f.method, f.name),
                        f.class.clone(),
                        f.message.clone(),
                        f.count.to_string(),
                    ]
                })
            })
            .collect(),
    });
    let infra_rows = |key: &str| -> Vec<Vec<String>> {
        manifest[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                vec![
                    key.replace('_', " "),
                    a["name"].as_str().unwrap_or("").into(),
                    format!("{}", a["min"]),
                    format!("{}", a["max"]),
                    format!("{}", a["desired"]),
                ]
            })
            .collect()
    };
    let mut infra = infra_rows("infra_before");
    infra.extend(infra_rows("infra_after"));
    t.push(Table {
        title: "Infrastructure changes".into(),
        header: ["when", "asg", "min", "max", "desired"]
            .map(String::from)
            .to_vec(),
        rows: infra,
    });
    t.push(Table {
        title: "Store counts".into(),
        header: ["when", "rows"].map(String::from).to_vec(),
        rows: stores
            .iter()
            .map(|s| {
                vec![
                    s.label.clone(),
                    s.counts
                        .iter()
                        .map(|(k, n)| format!("{k} {n}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect(),
    });
    t.push(Table {
        title: "Findings".into(),
        header: vec!["finding".into()],
        rows: findings.iter().map(|f| vec![f.clone()]).collect(),
    });
    t.push(Table {
        title: "Load generator".into(),
        header: ["run", "CPU % of cores", "worst timer lag ms", "saturated"]
            .map(String::from)
            .to_vec(),
        rows: runs
            .iter()
            .map(|r| {
                vec![
                    r.run_id.clone(),
                    format!("{:.0}", r.generator.cpu_pct),
                    format!("{:.1}", r.generator.max_timer_lag_ms),
                    if r.generator.saturated {
                        "YES: results may understate the target".into()
                    } else {
                        "no".into()
                    },
                ]
            })
            .collect(),
    });
    t
}

/// Builds `report.html` and `report.md` for a results directory; returns the HTML path.
pub fn build(dir: &Path) -> Result<PathBuf> {
    let rd = ResultsDir::open(dir)?;
    let runs = rd.summaries()?;
    let stores: Vec<StoreSnapshot> =
        results::read_json(&rd.root.join("stores.json")).unwrap_or_default();
    let manifest: Value = results::read_json(&rd.root.join("manifest.json")).unwrap_or(Value::Null);
    let mut findings: Vec<String> = Vec::new();
    let mut per_run = Vec::new();
    for r in &runs {
        let c = correlate_run(&rd, r);
        results::write_json(&rd.run_dir(&r.run_id).join("correlation.json"), &c)?;
        findings.extend(c.findings.iter().map(|f| format!("{}: {f}", r.run_id)));
        per_run.push((r.run_id.clone(), c));
    }
    let trial_level = correlate::across_runs(&per_run);
    results::write_json(&rd.root.join("correlation.json"), &trial_level)?;
    findings.extend(trial_level);
    let mut sections = Vec::new();
    let summary = summary_charts(&runs);
    if !summary.is_empty() {
        sections.push(Section { title: "Summary per endpoint".into(), note: "Steady-state means of the per-second samples, with 95 % confidence bars (1.96 · SEM).".into(), charts: summary });
    }
    let weight = store_weight_charts(&runs, &stores);
    if !weight.is_empty() {
        sections.push(Section {
            title: "Store weight".into(),
            note:
                "Performance against the number of rows stored when each run began (seed Trial 3)."
                    .into(),
            charts: weight,
        });
    }
    let scaling = autoscaling_charts(&rd, &runs);
    if !scaling.is_empty() {
        sections.push(Section { title: "Auto-scaling".into(), note: "Instances over time; markers: launch (grey), InService (green), target healthy (cyan).".into(), charts: scaling });
    }
    if let Some(history) = rd
        .root
        .parent()
        .map(|p| p.join("history.jsonl"))
        .filter(|h| h.is_file())
    {
        let trend = compare::trend_charts(&history);
        if !trend.is_empty() {
            sections.push(Section {
                title: "Trend across runs".into(),
                note: format!("From {}.", history.display()),
                charts: trend,
            });
        }
    }
    for r in &runs {
        let charts = timeline_charts(&rd, r);
        if !charts.is_empty() {
            sections.push(Section {
                title: format!("Timeline: {}", r.run_id),
                note: "Shaded: warm-up. Dashed: right axis.".into(),
                charts,
            });
        }
    }
    let trial_name = manifest["trial"]["spec"]["name"]
        .as_str()
        .unwrap_or_else(|| {
            dir.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("results")
        })
        .to_string();
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", TEMPLATE)
        .map_err(|e| Error::Infra(format!("report template: {e}")))?;
    let html = env
        .get_template("report.html")
        .and_then(|t| {
            t.render(minijinja::context! {
                trial => trial_name,
                status => manifest["status"].as_str().unwrap_or("unknown"),
                tool_version => manifest["tool"]["version"].as_str().unwrap_or(env!("CARGO_PKG_VERSION")),
                trial_sha256 => manifest["trial"]["sha256"].as_str().unwrap_or(""),
                environment => manifest["environment"]["spec"]["name"].as_str().unwrap_or(""),
                environment_sha256 => manifest["environment"]["sha256"].as_str().unwrap_or(""),
                release => manifest["release"]["tag"].as_str().unwrap_or(""),
                target_versions => manifest["target"]["versions"].to_string(),
                started_at => manifest["started_at"].as_str().unwrap_or(""),
                ended_at => manifest["ended_at"].as_str().unwrap_or(""),
                runs => runs.len(),
                sections => sections,
                tables => tables(&runs, &stores, &manifest, &findings),
            })
        })
        .map_err(|e| Error::Infra(format!("rendering the report: {e}")))?;
    let path = rd.root.join("report.html");
    results::write_atomic(&path, html.as_bytes())?;
    results::write_atomic(
        &rd.root.join("report.md"),
        markdown(&trial_name, &runs, &stores, &findings).as_bytes(),
    )?;
    Ok(path)
}

/// The per-endpoint summary table of every run, as Markdown (for a terminal or a CI page).
pub fn markdown(
    name: &str,
    runs: &[RunSummary],
    stores: &[StoreSnapshot],
    findings: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# trialrunner report: {name}\n");
    let _ = writeln!(s, "| run | users | endpoint | requests | failures | rps | p50 ms | p95 ms | p99 ms | max ms |");
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let who = r
            .users
            .map(|u| u.to_string())
            .or(r.arrival_rate.map(|a| format!("{a}/s")))
            .unwrap_or_default();
        for e in &r.endpoints {
            let f = &e.total;
            let _ = writeln!(
                s,
                "| {} | {who} | {} {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                r.run_id,
                e.method,
                e.name,
                f.count,
                f.failures,
                f.rps,
                f.p50_ms,
                f.p95_ms,
                f.p99_ms,
                f.max_ms
            );
        }
    }
    let failures: Vec<_> = runs
        .iter()
        .flat_map(|r| r.failures.iter().map(move |f| (r, f)))
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(
            s,
            "\n## Failures\n\n| run | endpoint | class | message | count |\n|---|---|---|---|---:|"
        );
        for (r, f) in failures {
            let _ = writeln!(
                s,
                "| {} | {} {} | {} | {} | {} |",
                r.run_id,
                f.method,
                f.name,
                f.class,
                f.message.replace('|', "\\|"),
                f.count
            );
        }
    }
    if !stores.is_empty() {
        let _ = writeln!(s, "\n## Store counts\n\n| when | rows |\n|---|---|");
        for st in stores {
            let rows: Vec<String> = st.counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
            let _ = writeln!(s, "| {} | {} |", st.label, rows.join(", "));
        }
    }
    if !findings.is_empty() {
        let _ = writeln!(s, "\n## Findings\n");
        for f in findings {
            let _ = writeln!(s, "- {f}");
        }
    }
    let saturated: Vec<&str> = runs
        .iter()
        .filter(|r| r.generator.saturated)
        .map(|r| r.run_id.as_str())
        .collect();
    if !saturated.is_empty() {
        let _ = writeln!(
            s,
            "\n**Generator saturated** in: {} (results may understate the target).",
            saturated.join(", ")
        );
    }
    s
}
