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
use super::svg::{percentile_dash, Axis, Chart, Marker, Series, PALETTE};
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

/// Per endpoint of a task: (load, summary) of every run with that task, in load order. A task
/// whose unit is one request (a provisioning is one submit) is that request: it is drawn once,
/// as the unit, its request named beside it.
pub(crate) fn by_endpoint<'a>(
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
        let requests: Vec<&&EndpointSummary> =
            eps.iter().filter(|e| e.kind == Kind::Request).collect();
        let single = match requests.as_slice() {
            [only] => Some(format!("{} {}", only.method, only.name)),
            _ => None,
        };
        for e in eps {
            let key = match (&single, e.kind) {
                (Some(_), Kind::Request) => continue,
                (Some(req), Kind::Task) => format!("{} ({req})", e.name),
                (None, _) => endpoint_label(e),
            };
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

/// Successes per steady second (the seconds' rates less their failures).
fn ok_per_second(e: &EndpointSummary) -> Vec<f64> {
    e.samples
        .rps
        .iter()
        .zip(e.samples.failures.iter().chain(std::iter::repeat(&0.0)))
        .map(|(r, f)| (r - f).max(0.0))
        .collect()
}

/// Throughput (OK and KO apart) and latency (p50, p95, p99 by line style, each endpoint its
/// colour) against the load, every endpoint of the task and its session; with a baseline trial,
/// its session overlaid.
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
    let ci_series = |name: String,
                     pts: &[(f64, &EndpointSummary)],
                     f: &dyn Fn(&EndpointSummary) -> Vec<f64>| {
        let stats: Vec<(f64, (f64, f64))> = pts
            .iter()
            .map(|(x, e)| (*x, mean_ci(&f(e), LEVEL)))
            .collect();
        Series {
            points: stats.iter().map(|(x, (m, _))| (*x, *m)).collect(),
            errors: Some(stats.iter().map(|(_, (_, ci))| *ci).collect()),
            dots: true,
            ..Series::line(name, vec![])
        }
    };
    let mut throughput = Chart::new(
        format!(
            "{task}: throughput vs {x_label} (steady, mean ± 95 % CI; KO per endpoint, dashed)"
        ),
        x_label,
        "per second",
    );
    let mut latency = Chart::new(
        format!("{task}: latency vs {x_label} (steady, pooled; p50 solid, p95 dashed, p99 dotted)"),
        x_label,
        "ms",
    );
    // A task's requests come once per unit each: their OK rates are the unit's, drawn once.
    let has_unit = eps
        .first()
        .is_some_and(|(_, pts)| pts.iter().any(|(_, e)| e.kind == Kind::Task));
    for (i, (name, pts)) in eps.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if i == 0 || !has_unit {
            throughput.series.push(Series {
                color: Some(color),
                ..ci_series(format!("{name} OK"), pts, &ok_per_second)
            });
        }
        if pts.iter().any(|(_, e)| e.total.failures > 0) {
            throughput.series.push(Series {
                color: Some(color),
                dash: Some("7 3"),
                ..ci_series(format!("{name} KO"), pts, &|e| e.samples.failures.clone())
            });
        }
        let picks: [(&str, Pick); 3] = [
            ("p50", |f| f.p50_ms),
            ("p95", |f| f.p95_ms),
            ("p99", |f| f.p99_ms),
        ];
        for (q, f) in picks {
            latency.series.push(Series {
                dots: true,
                color: Some(color),
                dash: percentile_dash(q),
                ..Series::line(
                    format!("{name} {q}"),
                    pts.iter().map(|(x, e)| (*x, f(&e.steady))).collect(),
                )
            });
        }
    }
    latency.log_y_if_decades();
    let mut out = vec![throughput.to_svg(), latency.to_svg()];
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

/// The colour of an instance joining (its InService marker on a run's timeline).
const HEALTHY: &str = "#2ca02c";

/// Which right axis a cloud series belongs on: counts, or percentages.
fn is_count(s: &CloudSeries) -> bool {
    s.metric.contains("Connections")
        || s.metric.contains("HostCount")
        || s.metric.starts_with("Group")
        || s.metric == "RequestCount"
}

/// A run's own time axis: from the start of its first (partial) second to the end of its
/// drain, seconds since the run began.
pub fn run_axis(run: &RunSummary) -> (f64, f64) {
    let (from, to) = super::data::run_span(run);
    let first = from.floor() - run.started_unix;
    (first.min(0.0), (to - run.started_unix).max(1.0))
}

/// Where a run's requests spent their time, second by second: per endpoint the p95 of the TCP
/// handshakes (requests that opened a connection) and of the wait for the first byte (the
/// service's time), against the connections opened each second by the load and, with a
/// rehearsal, by the twin's instances' database pools. What tells a start-of-run spike's cause
/// apart: the setup (connections), the network (handshakes) or the service (the wait).
fn phases_chart(
    data: &ReportData,
    run: &RunSummary,
    by_ep: &BTreeMap<String, Vec<&super::data::TimelineRow>>,
    base: &dyn Fn(&str, &str, &str) -> Chart,
) -> Option<Chart> {
    let start = run.started_unix;
    let mut c = base(
        "where the time went: connect and wait p95, connections opened",
        "ms",
        "connections opened per second",
    );
    let mut opened: BTreeMap<i64, f64> = BTreeMap::new();
    for (i, (ep, rs)) in by_ep.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        type Pick = fn(&&super::data::TimelineRow) -> Option<f64>;
        let picks: [(&str, Pick, Option<&'static str>); 2] = [
            ("connect p95", |r| r.connect_p95, Some("2 3")),
            ("wait p95", |r| r.wait_p95, None),
        ];
        for (name, pick, dash) in picks {
            let points: Vec<(f64, f64)> = rs
                .iter()
                .filter_map(|r| Some((r.second, pick(r)?)))
                .collect();
            if !points.is_empty() {
                c.series.push(Series {
                    color: Some(color),
                    dash,
                    ..Series::line(format!("{ep} {name}"), points)
                });
            }
        }
        for r in rs {
            *opened.entry(r.second.floor() as i64).or_default() += r.opened;
        }
    }
    if c.series.is_empty() {
        return None;
    }
    c.series.push(Series {
        axis: Axis::Right,
        color: Some("#7f7f7f"),
        shape: super::svg::Shape::Step,
        step: 1.0,
        ..Series::line(
            "connections the load opened",
            opened.iter().map(|(t, n)| (*t as f64, *n)).collect(),
        )
    });
    if let Some(twin) = super::data::read_twin(&data.dir.run_dir(&run.run_id)) {
        let opens: Vec<(f64, f64)> = twin
            .seconds
            .iter()
            .map(|s| (s.unix as f64 - start, s.pool_opens as f64))
            .collect();
        if opens.iter().any(|(_, n)| *n > 0.0) {
            c.series.push(Series {
                axis: Axis::Right,
                color: Some("#8c564b"),
                dash: Some("6 3"),
                shape: super::svg::Shape::Step,
                step: 1.0,
                ..Series::line("database connections the twin's pools opened", opens)
            });
        }
    }
    c.log_y_if_decades();
    Some(c)
}

/// A run's timeline charts, each on the run's own axis (its partial first and last seconds
/// included, hatched, their counts shown as rates over the part covered): client throughput
/// with users; p50 and p95 per endpoint with the cloud's counts; failures with 5xx and
/// error-log lines; with a rehearsal, the connections the twin's pools opened. Cloud series are
/// steps over their periods clipped to the run, on labelled right axes; warm-up shaded,
/// instance joins marked.
pub fn run_timeline(data: &ReportData, run: &RunSummary) -> Vec<String> {
    let dir = data.dir.run_dir(&run.run_id);
    let start = run.started_unix;
    let axis = run_axis(run);
    // The run itself, from its summary: its first second's start to the end of its drain.
    let run_span = {
        let (from, to) = super::data::run_span(run);
        (from.floor() - start, to - start)
    };
    let rows: Vec<_> = read_timeline(&dir.join("timeline.csv"))
        .into_iter()
        .filter(|r| r.kind == "request")
        .collect();
    let mut by_ep: BTreeMap<String, Vec<&super::data::TimelineRow>> = BTreeMap::new();
    let mut users: BTreeMap<i64, f64> = BTreeMap::new();
    let mut hatched: Vec<(f64, f64, String)> = Vec::new();
    for r in &rows {
        by_ep.entry(r.endpoint.clone()).or_default().push(r);
        users.insert(r.second.floor() as i64, r.users);
        if r.phase == "partial" && !hatched.iter().any(|h| h.0 == r.second) {
            hatched.push((
                r.second,
                r.second + 1.0,
                format!("partial second: the run covers {:.2} s of it", r.covered),
            ));
        }
    }
    let rate = |r: &super::data::TimelineRow, v: f64| v / r.covered.clamp(0.05, 1.0);
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
        hatched: hatched.clone(),
        x_range: Some(axis),
        run: Some((run.run_id.clone(), run_span.0, run_span.1)),
        markers: joins.clone(),
        ..Default::default()
    };
    let mut throughput = base(
        "requests/s per endpoint, users",
        "requests per second",
        "virtual users",
    );
    let mut latency = base("p50 and p95 per endpoint, cloud counts", "ms", "count");
    let mut fails = base(
        "failures/s, 5xx and error-log lines",
        "failures per second",
        "lines or 5xx",
    );
    for (i, (ep, rs)) in by_ep.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        throughput.series.push(Series {
            color: Some(color),
            ..Series::line(
                ep.clone(),
                rs.iter().map(|r| (r.second, rate(r, r.requests))).collect(),
            )
        });
        type Pick = fn(&&super::data::TimelineRow) -> Option<f64>;
        let picks: [(&str, Pick); 2] = [("p50", |r| r.p50), ("p95", |r| r.p95)];
        for (q, pick) in picks {
            latency.series.push(Series {
                color: Some(color),
                dash: percentile_dash(q),
                ..Series::line(
                    format!("{ep} {q}"),
                    rs.iter()
                        .filter_map(|r| Some((r.second, pick(r)?)))
                        .collect(),
                )
            });
        }
        if rs.iter().any(|r| r.failures > 0.0) {
            fails.series.push(Series {
                color: Some(color),
                ..Series::line(
                    ep.clone(),
                    rs.iter().map(|r| (r.second, rate(r, r.failures))).collect(),
                )
            });
        }
    }
    if !users.is_empty() && run.users.is_some() {
        throughput.series.push(Series {
            axis: Axis::Right,
            color: Some("#7f7f7f"),
            dash: Some(""),
            shape: super::svg::Shape::Step,
            step: 1.0,
            ..Series::steps_right(
                "users",
                users.iter().map(|(t, u)| (*t as f64, *u)).collect(),
                1.0,
            )
        });
    }
    latency.log_y_if_decades();
    let split = split_cloud(&cloud, start, Some(axis));
    latency.series.extend(split.counts);
    fails.series.extend(split.errors);
    let mut out: Vec<Chart> = vec![throughput, latency, fails];
    out.extend(phases_chart(data, run, &by_ep, &base));
    if !split.other.is_empty() {
        let mut c = base(
            "other cloud metrics",
            "value (its own unit: CPU %, latency s, bytes)",
            "",
        );
        c.series = split.other;
        out.push(c);
    }
    out.into_iter()
        .filter(|c| !c.is_empty())
        .map(|c| c.to_svg())
        .collect()
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

/// Sorts a run's (or a window's) cloud series by chart, times relative to `start`, short
/// legend names; with `clip`, only what falls in that range (a period that began before the run
/// starts at the run's start; error-log lines by second when the results keep them).
fn split_cloud(cloud: &Cloud, start: f64, clip: Option<(f64, f64)>) -> CloudSplit {
    let mut out = CloudSplit {
        counts: Vec::new(),
        errors: Vec::new(),
        other: Vec::new(),
    };
    let clipped = |pts: Vec<(f64, f64)>, width: f64| -> Vec<(f64, f64)> {
        let Some((lo, hi)) = clip else { return pts };
        pts.into_iter()
            .filter(|(t, _)| *t + width > lo && *t < hi)
            .map(|(t, v)| (t.max(lo), v))
            .collect()
    };
    for s in cloud.series.iter().filter(|s| !s.points.is_empty()) {
        let pts = clipped(
            s.points.iter().map(|(t, v)| (t - start, *v)).collect(),
            s.period,
        );
        // On a run's chart, what moved during it: a series at zero all through, or a group's
        // total (its InService and Pending already say it), is left out.
        let idle = pts.iter().all(|(_, v)| *v == 0.0)
            || matches!(
                s.metric.as_str(),
                "GroupTotalInstances" | "GroupDesiredCapacity"
            );
        if pts.is_empty() || (clip.is_some() && idle) {
            continue;
        }
        let name = super::data::short_label(&s.label, &s.metric);
        if s.metric.contains("5XX") {
            out.errors.push(Series::steps_right(name, pts, s.period));
        } else if is_count(s) {
            out.counts.push(Series::steps_right(name, pts, s.period));
        } else {
            out.other.push(Series {
                shape: super::svg::Shape::Step,
                step: s.period,
                ..Series::line(name, pts)
            });
        }
    }
    for log in &cloud.logs {
        let (buckets, width) = if log.per_second.is_empty() || clip.is_none() {
            (&log.per_minute, 60.0)
        } else {
            (&log.per_second, 1.0)
        };
        let pts = clipped(
            buckets
                .iter()
                .map(|(t, n)| (t - start, *n as f64))
                .collect(),
            width,
        );
        if pts.is_empty() {
            continue;
        }
        let group = log.group.rsplit('/').next().unwrap_or(&log.group);
        out.errors.push(Series::steps_right(
            format!("\"{}\" lines in {group}", log.pattern),
            pts,
            width,
        ));
    }
    out
}

/// The charts of a cloud window alone (`metrics pull`): counts, errors, the rest.
pub fn cloud_charts(cloud: &Cloud, start: f64) -> Vec<String> {
    let split = split_cloud(cloud, start, None);
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
