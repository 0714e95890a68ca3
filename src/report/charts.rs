//! The report's charts, each answering one of the campaign's questions: where throughput
//! flattens and which endpoint is slow (per task, every endpoint and the session on one chart),
//! what one instance instead of three did (the compared trial overlaid), what store weight did to
//! verification, how long a new instance took to help (an instance timeline aligned with client
//! latency), and what each run looked like beside the cloud (per-run timelines, minute steps).

use std::collections::BTreeMap;

use super::data::{
    instance_lives, joins, read_cloud, read_timeline, Cloud, CloudSeries, ReportData,
};
use super::stats::{mean_ci, LEVEL};
use super::svg::{Axis, Bar, Chart, Marker, Series};
use crate::results::cells::Kind;
use crate::results::{EndpointSummary, RunSummary, StoreSnapshot};

/// Picks a figure (p50, p95…) out of a run's figures.
type Pick = fn(&crate::results::Figures) -> f64;

/// The load of a run on a chart's x axis: users (closed model) or arrivals/s (open).
pub fn load_x(r: &RunSummary) -> Option<f64> {
    r.users.map(|u| u as f64).or(r.arrival_rate)
}

/// The x axis' label for a set of runs.
fn load_axis(runs: &[RunSummary]) -> &'static str {
    if runs.iter().any(|r| r.users.is_some()) {
        "virtual users"
    } else {
        "arrivals per second"
    }
}

/// An endpoint's display name: the session (task unit) as such, requests as `METHOD name`.
pub fn endpoint_label(e: &EndpointSummary) -> String {
    match e.kind {
        Kind::Task => e.name.clone(),
        Kind::Request => format!("{} {}", e.method, e.name),
    }
}

/// Per endpoint of a task: (load, summary) of every run with that task, in load order.
fn by_endpoint<'a>(
    runs: &'a [RunSummary],
    task: &str,
) -> Vec<(String, Vec<(f64, &'a EndpointSummary)>)> {
    let mut order: Vec<String> = Vec::new();
    let mut map: BTreeMap<String, Vec<(f64, &EndpointSummary)>> = BTreeMap::new();
    for r in runs {
        let Some(x) = load_x(r) else { continue };
        // Tasks first (the unit reads first), then the requests.
        let mut eps: Vec<&EndpointSummary> =
            r.endpoints.iter().filter(|e| e.task == task).collect();
        eps.sort_by_key(|e| e.kind != Kind::Task);
        for e in eps {
            let key = endpoint_label(e);
            if !order.contains(&key) {
                order.push(key.clone());
            }
            map.entry(key).or_default().push((x, e));
        }
    }
    order
        .into_iter()
        .map(|k| {
            let mut v = map.remove(&k).unwrap_or_default();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            (k, v)
        })
        .collect()
}

/// Throughput, failures and latency against the load, one chart each, every endpoint of the
/// task and its session as labelled series; with a baseline trial, its session overlaid.
pub fn task_charts(
    runs: &[RunSummary],
    task: &str,
    baseline: Option<(&str, &[RunSummary])>,
) -> Vec<String> {
    let eps = by_endpoint(runs, task);
    let xs: Vec<f64> = runs.iter().filter_map(load_x).collect();
    if xs.windows(2).all(|w| w[0] == w[1]) {
        return Vec::new(); // one load point (a store-weight trial): no curve
    }
    let x_label = load_axis(runs);
    let ci_series =
        |name: &str, pts: &[(f64, &EndpointSummary)], f: &dyn Fn(&EndpointSummary) -> &[f64]| {
            let stats: Vec<(f64, (f64, f64))> = pts
                .iter()
                .map(|(x, e)| (*x, mean_ci(f(e), LEVEL)))
                .collect();
            Series {
                points: stats.iter().map(|(x, (m, _))| (*x, *m)).collect(),
                errors: Some(stats.iter().map(|(_, (_, ci))| *ci).collect()),
                dots: true,
                ..Series::line(name, vec![])
            }
        };
    let mut throughput = Chart::new(
        format!("{task}: throughput vs {x_label} (steady, mean ± 95 % CI)"),
        x_label,
        "per second",
    );
    let mut failures = Chart::new(
        format!("{task}: failures vs {x_label} (steady, mean ± 95 % CI)"),
        x_label,
        "failures per second",
    );
    let mut latency = Chart::new(
        format!("{task}: latency vs {x_label} (steady, pooled percentiles)"),
        x_label,
        "ms",
    );
    for (name, pts) in &eps {
        throughput
            .series
            .push(ci_series(name, pts, &|e| &e.samples.rps));
        if pts.iter().any(|(_, e)| e.total.failures > 0) {
            failures
                .series
                .push(ci_series(name, pts, &|e| &e.samples.failures));
        }
        let unit = pts.first().is_some_and(|(_, e)| e.kind == Kind::Task);
        let pick: &[(&str, Pick)] = if unit {
            &[
                ("p50", |f| f.p50_ms),
                ("p95", |f| f.p95_ms),
                ("p99", |f| f.p99_ms),
            ]
        } else {
            &[("p95", |f| f.p95_ms)]
        };
        for (q, f) in pick {
            latency.series.push(Series {
                dots: true,
                ..Series::line(
                    format!("{name} {q}"),
                    pts.iter().map(|(x, e)| (*x, f(&e.steady))).collect(),
                )
            });
        }
    }
    latency.log_y_if_decades();
    let mut out = vec![throughput.to_svg()];
    if !failures.series.is_empty() {
        out.push(failures.to_svg());
    }
    out.push(latency.to_svg());
    if let Some((name, base)) = baseline {
        out.extend(overlay(runs, base, task, "this trial", name));
    }
    out
}

/// The task's session (or first endpoint) of this trial against a baseline trial's, per load:
/// p95 and throughput, as the 2025 plots put Trial 2 over Trial 1.
pub fn overlay(
    runs: &[RunSummary],
    base: &[RunSummary],
    task: &str,
    name: &str,
    base_name: &str,
) -> Vec<String> {
    let (ours, theirs) = (by_endpoint(runs, task), by_endpoint(base, task));
    let x_label = load_axis(runs);
    let mut p95 = Chart::new(
        format!("{task}: p95 vs {x_label}, {name} against {base_name}"),
        x_label,
        "ms",
    );
    let mut rps = Chart::new(
        format!("{task}: throughput vs {x_label}, {name} against {base_name}"),
        x_label,
        "per second",
    );
    for (who, set) in [(name, &ours), (base_name, &theirs)] {
        for (name, pts) in set.iter().take(1) {
            p95.series.push(Series {
                dots: true,
                ..Series::line(
                    format!("{who}: {name} p95"),
                    pts.iter().map(|(x, e)| (*x, e.steady.p95_ms)).collect(),
                )
            });
            rps.series.push(Series {
                dots: true,
                ..Series::line(
                    format!("{who}: {name}"),
                    pts.iter().map(|(x, e)| (*x, e.steady.rps)).collect(),
                )
            });
        }
    }
    if p95.series.len() < 2 {
        return Vec::new();
    }
    vec![p95.to_svg(), rps.to_svg()]
}

/// Store weight (Trial 3): latency of each task's session against the rows it ran against, one
/// point per iteration.
pub fn store_weight_charts(runs: &[RunSummary], stores: &[StoreSnapshot]) -> Vec<String> {
    if !stores
        .iter()
        .any(|s| s.label.starts_with("after iteration"))
    {
        return Vec::new();
    }
    let rows = |s: &StoreSnapshot| s.counts.values().sum::<u64>() as f64;
    let iterations: Vec<&StoreSnapshot> = stores
        .iter()
        .filter(|s| s.label.starts_with("after iteration"))
        .collect();
    let rows_before = |run: &RunSummary| -> f64 {
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
    let mut latency: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut rps: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in runs {
        let x = rows_before(r);
        for e in r.endpoints.iter().filter(|e| e.kind == Kind::Task) {
            let name = endpoint_label(e);
            latency
                .entry(format!("{name} p50"))
                .or_default()
                .push((x, e.steady.p50_ms));
            latency
                .entry(format!("{name} p95"))
                .or_default()
                .push((x, e.steady.p95_ms));
            rps.entry(name).or_default().push((x, e.steady.rps));
        }
    }
    let mk = |title: &str, y: &str, data: BTreeMap<String, Vec<(f64, f64)>>| {
        let mut c = Chart {
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
        };
        c.log_y_if_decades();
        c.to_svg()
    };
    vec![
        mk(
            "store weight: latency vs stored rows (steady, per iteration)",
            "ms",
            latency,
        ),
        mk(
            "store weight: throughput vs stored rows (steady)",
            "per second",
            rps,
        ),
    ]
}

/// Colours of an instance's states.
const PENDING: &str = "#9e9e9e";
const NOT_HEALTHY: &str = "#ff7f0e";
const HEALTHY: &str = "#2ca02c";
const GONE: &str = "#d62728";

/// Auto-scaling (Trial 4): one row per instance, per service, from launch to InService to a
/// healthy target to its end, over the whole campaign; under it the client's p95 and failures on
/// the same time axis. Only when instances came or went.
pub fn autoscaling_charts(data: &ReportData) -> Vec<String> {
    let Some(t0) = data.runs.first().map(|r| r.started_unix) else {
        return Vec::new();
    };
    let lives = campaign_lives(data);
    let first_sample = lives
        .iter()
        .filter_map(|l| l.first_seen)
        .fold(f64::MAX, f64::min);
    let changed = lives
        .iter()
        .any(|l| l.gone || l.first_seen.is_some_and(|f| f > first_sample + 1.0));
    if !changed {
        return Vec::new();
    }
    vec![
        instance_timeline(&lives, t0, first_sample).to_svg(),
        client_over_campaign(data, t0).to_svg(),
    ]
}

/// Every instance the runs saw, each once, by group and first sight.
fn campaign_lives(data: &ReportData) -> Vec<super::data::InstanceLife> {
    let mut lives: Vec<super::data::InstanceLife> = Vec::new();
    for r in &data.runs {
        for l in instance_lives(&data.dir.run_dir(&r.run_id)) {
            if let Some(prev) = lives.iter_mut().find(|p| p.id == l.id) {
                prev.last_seen = prev.last_seen.max(l.last_seen);
                prev.gone = l.gone;
                if prev.in_service.is_none() {
                    prev.in_service = l.in_service;
                }
                if prev.healthy.is_none() {
                    prev.healthy = l.healthy;
                }
            } else {
                lives.push(l);
            }
        }
    }
    lives.sort_by(|a, b| {
        a.group.cmp(&b.group).then(
            a.first_seen
                .unwrap_or(0.0)
                .total_cmp(&b.first_seen.unwrap_or(0.0)),
        )
    });
    lives
}

/// One row per instance: launching, InService without a healthy target, healthy; a marker where
/// it ended.
fn instance_timeline(lives: &[super::data::InstanceLife], t0: f64, first_sample: f64) -> Chart {
    let mut bars = Vec::new();
    let mut markers = Vec::new();
    let rows: Vec<String> = lives
        .iter()
        .map(|l| {
            let svc = l
                .group
                .trim_end_matches("-asg")
                .rsplit('-')
                .next()
                .unwrap_or("");
            format!("{svc} {}", l.id.trim_start_matches("i-"))
        })
        .collect();
    for (row, l) in lives.iter().enumerate() {
        let start = l.launched.or(l.first_seen).unwrap_or(first_sample) - t0;
        let in_service = l.in_service.map(|t| t - t0);
        let healthy = l.healthy.map(|t| t - t0);
        let end = l.last_seen - t0;
        let mut push = |from: f64, to: f64, color: &'static str, what: &str| {
            if to > from {
                bars.push(Bar {
                    row,
                    from,
                    to,
                    color,
                    label: format!("{} {what}: {from:.0} s → {to:.0} s", l.id),
                });
            }
        };
        push(
            start,
            in_service.unwrap_or(end),
            PENDING,
            "launching (Pending)",
        );
        if let Some(s) = in_service {
            push(
                s,
                healthy.unwrap_or(end),
                NOT_HEALTHY,
                "InService, target not healthy yet",
            );
        }
        if let Some(h) = healthy {
            push(h, end, HEALTHY, "healthy");
        }
        if l.gone {
            markers.push(Marker {
                x: end,
                label: format!("{} terminated", l.id),
                color: GONE,
            });
        }
    }
    Chart {
        title: "auto-scaling: every instance, launch → InService → healthy (per service)".into(),
        x_label: "seconds since the first run began".into(),
        rows,
        bars,
        markers,
        bar_legend: vec![
            (PENDING, "launching (Pending)".into()),
            (NOT_HEALTHY, "InService, target not healthy".into()),
            (HEALTHY, "healthy".into()),
        ],
        ..Default::default()
    }
}

/// The client's worst p95 and its failures per second over the whole campaign.
fn client_over_campaign(data: &ReportData, t0: f64) -> Chart {
    let mut client = Chart {
        y2_label: "failures per second".into(),
        ..Chart::new(
            "auto-scaling: client p95 and failures on the same time axis",
            "seconds since the first run began",
            "p95 ms (worst endpoint)",
        )
    };
    let (mut p95, mut fails) = (Vec::new(), Vec::new());
    for r in &data.runs {
        let rows = read_timeline(&data.dir.run_dir(&r.run_id).join("timeline.csv"));
        let mut per_second: BTreeMap<i64, (Option<f64>, f64)> = BTreeMap::new();
        for row in rows
            .iter()
            .filter(|x| x.kind == "request" && x.phase != "partial")
        {
            let e = per_second.entry(row.unix as i64).or_default();
            e.0 = match (e.0, row.p95) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            e.1 += row.failures;
        }
        for (t, (p, f)) in per_second {
            if let Some(p) = p {
                p95.push((t as f64 - t0, p));
            }
            fails.push((t as f64 - t0, f));
        }
    }
    client
        .series
        .push(Series::line("p95 (worst endpoint)", p95));
    client.series.push(Series {
        axis: Axis::Right,
        ..Series::line("failures/s", fails)
    });
    client
}

/// Which right axis a cloud series belongs on: counts, or percentages.
fn is_count(s: &CloudSeries) -> bool {
    s.metric.contains("Connections")
        || s.metric.contains("HostCount")
        || s.metric.starts_with("Group")
        || s.metric == "RequestCount"
}

/// A run's timeline charts: client throughput with users, p95 with the cloud's counts (DB
/// connections, healthy hosts, InService), failures with 5xx and error-log lines; cloud series
/// as steps over their periods, on labelled right axes; warm-up shaded, instance joins marked.
pub fn run_timeline(data: &ReportData, run: &RunSummary) -> Vec<String> {
    let dir = data.dir.run_dir(&run.run_id);
    let start = run.started_unix;
    let rows: Vec<_> = read_timeline(&dir.join("timeline.csv"))
        .into_iter()
        .filter(|r| r.phase != "partial" && r.kind == "request")
        .collect();
    let mut by_ep: BTreeMap<String, Vec<&super::data::TimelineRow>> = BTreeMap::new();
    let mut users: BTreeMap<i64, f64> = BTreeMap::new();
    for r in &rows {
        by_ep.entry(r.endpoint.clone()).or_default().push(r);
        users.insert(r.second as i64, r.users);
    }
    let spans = if run.warmup_s > 0.0 {
        vec![(0.0, run.warmup_s, "warm-up".to_string())]
    } else {
        vec![]
    };
    let cloud = read_cloud(&dir);
    let joins: Vec<Marker> = joins(&instance_lives(&dir), start)
        .into_iter()
        .map(|(id, x)| Marker {
            x,
            label: format!("{id} InService"),
            color: HEALTHY,
        })
        .collect();
    let base = |title: &str, y: &str, y2: &str| Chart {
        title: format!("{}: {title}", run.run_id),
        x_label: "seconds since the run began".into(),
        y_label: y.into(),
        y2_label: y2.into(),
        spans: spans.clone(),
        markers: joins.clone(),
        ..Default::default()
    };
    let mut rate = base(
        "requests/s per endpoint, users",
        "requests per second",
        "virtual users",
    );
    let mut latency = base("p95 per endpoint, cloud counts", "p95 ms", "count");
    let mut fails = base(
        "failures/s, 5xx and error-log lines",
        "failures per second",
        "per minute",
    );
    for (ep, rs) in &by_ep {
        rate.series.push(Series::line(
            ep.clone(),
            rs.iter().map(|r| (r.second, r.requests)).collect(),
        ));
        latency.series.push(Series::line(
            format!("{ep} p95"),
            rs.iter().filter_map(|r| Some((r.second, r.p95?))).collect(),
        ));
        if rs.iter().any(|r| r.failures > 0.0) {
            fails.series.push(Series::line(
                ep.clone(),
                rs.iter().map(|r| (r.second, r.failures)).collect(),
            ));
        }
    }
    if !users.is_empty() && run.users.is_some() {
        rate.series.push(Series {
            axis: Axis::Right,
            color: Some("#7f7f7f"),
            ..Series::line(
                "users",
                users.iter().map(|(t, u)| (*t as f64, *u)).collect(),
            )
        });
    }
    latency.log_y_if_decades();
    let split = split_cloud(&cloud, start);
    latency.series.extend(split.counts);
    fails.series.extend(split.errors);
    let mut out: Vec<String> = [rate, latency, fails]
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(|c| c.to_svg())
        .collect();
    if !split.other.is_empty() {
        let mut c = base(
            "other cloud metrics",
            "value (its own unit: CPU %, latency s, bytes)",
            "",
        );
        c.series = split.other;
        out.push(c.to_svg());
    }
    out
}

/// Cloud series as steps over their periods, by the chart they belong on.
struct CloudSplit {
    /// Counts (DB connections, healthy hosts, InService), on a right axis.
    counts: Vec<Series>,
    /// 5xx and error-log lines, on a right axis.
    errors: Vec<Series>,
    /// The rest (percentages, seconds, bytes), on a left axis of their own.
    other: Vec<Series>,
}

/// Sorts a run's (or a window's) cloud series by chart, times relative to `start`.
fn split_cloud(cloud: &Cloud, start: f64) -> CloudSplit {
    let mut out = CloudSplit {
        counts: Vec::new(),
        errors: Vec::new(),
        other: Vec::new(),
    };
    for s in cloud.series.iter().filter(|s| !s.points.is_empty()) {
        let pts: Vec<(f64, f64)> = s.points.iter().map(|(t, v)| (t - start, *v)).collect();
        if s.metric.contains("5XX") {
            out.errors
                .push(Series::steps_right(s.label.clone(), pts, s.period));
        } else if is_count(s) {
            out.counts
                .push(Series::steps_right(s.label.clone(), pts, s.period));
        } else {
            out.other.push(Series {
                shape: super::svg::Shape::Step,
                step: s.period,
                ..Series::line(s.label.clone(), pts)
            });
        }
    }
    for super::data::ErrorLog {
        group,
        pattern,
        per_minute: minutes,
        ..
    } in &cloud.logs
    {
        let pts: Vec<(f64, f64)> = minutes
            .iter()
            .map(|(t, n)| (t - start, *n as f64))
            .collect();
        out.errors.push(Series::steps_right(
            format!("{group} \"{pattern}\" lines"),
            pts,
            60.0,
        ));
    }
    out
}

/// The charts of a cloud window alone (`metrics pull`): counts, errors, the rest.
pub fn cloud_charts(cloud: &Cloud, start: f64) -> Vec<String> {
    let split = split_cloud(cloud, start);
    let chart = |title: &str, y: &str, series: Vec<Series>| {
        // Alone on their chart, series belong on its left axis.
        let series: Vec<Series> = series
            .into_iter()
            .map(|s| Series {
                axis: Axis::Left,
                ..s
            })
            .collect();
        Chart {
            title: title.into(),
            x_label: "seconds since the window began".into(),
            y_label: y.into(),
            series,
            ..Default::default()
        }
    };
    [
        chart(
            "counts: DB connections, hosts, instances",
            "count",
            split.counts,
        ),
        chart(
            "errors: 5xx and error-log lines",
            "per period",
            split.errors,
        ),
        chart(
            "other metrics",
            "value (its own unit: CPU %, latency s, bytes)",
            split.other,
        ),
    ]
    .into_iter()
    .filter(|c| !c.is_empty())
    .map(|c| c.to_svg())
    .collect()
}

/// The trend of the session (or first endpoint) p95 and throughput across a history file, one
/// point per campaign, dates on the x axis.
pub fn trend_charts(lines: &[serde_json::Value]) -> Vec<String> {
    if lines.len() < 2 {
        return Vec::new();
    }
    let mut p95: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut rps: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut ticks = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let x = i as f64 + 1.0;
        let date = l["date"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(10)
            .collect::<String>();
        ticks.push((x, date));
        for (ep, f) in l["endpoints"].as_object().into_iter().flatten() {
            p95.entry(ep.clone())
                .or_default()
                .push((x, f["p95"].as_f64().unwrap_or(0.0)));
            rps.entry(ep.clone())
                .or_default()
                .push((x, f["rps"].as_f64().unwrap_or(0.0)));
        }
    }
    let mk = |t: &str, y: &str, d: BTreeMap<String, Vec<(f64, f64)>>| {
        let mut c = Chart {
            title: t.into(),
            x_label: "campaign date".into(),
            y_label: y.into(),
            x_ticks: ticks.clone(),
            series: d
                .into_iter()
                .map(|(k, v)| Series {
                    dots: true,
                    ..Series::line(k, v)
                })
                .collect(),
            ..Default::default()
        };
        c.log_y_if_decades();
        c.to_svg()
    };
    vec![
        mk("trend: p95 per endpoint (steady, pooled)", "ms", p95),
        mk("trend: throughput per endpoint (steady)", "per second", rps),
    ]
}
