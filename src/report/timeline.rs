//! The campaign on one time axis, as Gatling's and Locust's reports open: users, OK and KO
//! requests per second, p50/p95/p99 of every request, and the groups' InService instances, from
//! the first run's start to the last run's end, each run shaded (hover it for its id). Gaps
//! between runs (clearing, counting, pulling metrics) break the lines rather than joining them;
//! a run's partial first and last seconds count as rates over the part covered.

use std::collections::BTreeMap;

use super::data::{hlog_seconds, read_jsonl, read_timeline, ReportData};
use super::svg::{percentile_dash, Axis, Chart, Series, Shape};
use crate::results::cells::new_hist;
use crate::results::ResultsDir;

/// Most points a series of the campaign timeline keeps: longer campaigns are shown in bins of
/// whole seconds (rates averaged over the bin, percentiles from its merged histograms).
const MAX_POINTS: usize = 1500;

/// One bin of the campaign's axis.
#[derive(Default)]
struct Bin {
    ok: f64,
    ko: f64,
    covered: f64,
    users: f64,
    latency: Option<hdrhistogram::Histogram<u64>>,
}

/// A run on the campaign's axis: its folder's id, its span (Unix seconds) and its shading's
/// hover text.
#[derive(Debug, Clone)]
pub struct RunSpan {
    /// The run's id (its folder under `runs/`).
    pub run_id: String,
    /// Its start, Unix seconds.
    pub from: f64,
    /// Its end (drain included), Unix seconds.
    pub to: f64,
    /// What the shading says on hover (`u010-verify (10 users)`).
    pub label: String,
}

/// The campaign timeline's charts (empty for a campaign without runs).
pub fn campaign_timeline(data: &ReportData) -> Vec<String> {
    let spans: Vec<RunSpan> = data
        .runs
        .iter()
        .map(|r| {
            let (from, to) = super::data::run_span(r);
            RunSpan {
                run_id: r.run_id.clone(),
                from,
                to,
                label: format!("{} ({})", r.run_id, super::load_words(r)),
            }
        })
        .collect();
    campaign_charts(&data.dir, &spans)
}

/// The campaign timeline's charts over these runs (in start order), read from their folders:
/// the report's, and the live dashboard's while a run is still being written.
pub fn campaign_charts(dir: &ResultsDir, spans: &[RunSpan]) -> Vec<String> {
    let Some(t0) = spans.iter().map(|r| r.from.floor()).reduce(f64::min) else {
        return Vec::new();
    };
    let last = spans.iter().map(|r| r.to).fold(t0 + 1.0, f64::max);
    let width = ((last - t0) / MAX_POINTS as f64).ceil().max(1.0);
    let bin_of = |unix: f64| ((unix - t0) / width).floor() as i64;
    let mut bins: BTreeMap<i64, Bin> = BTreeMap::new();
    let mut runs = Vec::new();
    for r in spans {
        let dir = dir.run_dir(&r.run_id);
        runs.push((r.from - t0, r.to - t0, r.label.clone()));
        // Per second, every request endpoint: counts and the users at its end.
        let mut seconds: BTreeMap<i64, (f64, f64, f64, f64)> = BTreeMap::new();
        for row in read_timeline(&dir.join("timeline.csv"))
            .iter()
            .filter(|x| x.kind == "request")
        {
            let e = seconds.entry(row.unix as i64).or_default();
            e.0 += row.requests - row.failures;
            e.1 += row.failures;
            e.2 = row.covered;
            e.3 = row.users;
        }
        for (unix, (ok, ko, covered, users)) in seconds {
            let b = bins.entry(bin_of(unix as f64)).or_default();
            b.ok += ok;
            b.ko += ko;
            b.covered += covered.clamp(0.05, 1.0);
            b.users = b.users.max(users);
        }
        for (_, at, h) in hlog_seconds(&dir.join("latency.hlog")) {
            bins.entry(bin_of(at))
                .or_default()
                .latency
                .get_or_insert_with(new_hist)
                .add(&h)
                .expect("auto-resizing histograms merge");
        }
    }
    if bins.is_empty() {
        return Vec::new();
    }
    // A NaN after a bin whose next is not adjacent breaks the line there.
    let series_of = |f: &dyn Fn(&Bin) -> Option<f64>| -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        let mut prev: Option<i64> = None;
        for (k, b) in &bins {
            if prev.is_some_and(|p| *k > p + 1) {
                out.push((*k as f64 * width - 0.5, f64::NAN));
            }
            if let Some(v) = f(b) {
                out.push((*k as f64 * width, v));
            }
            prev = Some(*k);
        }
        out
    };
    let axis = if width > 1.0 {
        format!("seconds since the first run began (bins of {width:.0} s)")
    } else {
        "seconds since the first run began".to_string()
    };
    let base = |title: &str, y: &str, y2: &str| Chart {
        title: format!("campaign: {title}"),
        x_label: axis.clone(),
        y_label: y.into(),
        y2_label: y2.into(),
        spans: runs.clone(),
        ..Default::default()
    };
    let rate = |v: f64, b: &Bin| v / b.covered.max(0.05);
    let mut load = base(
        "OK and KO requests per second, users",
        "requests per second",
        "virtual users",
    );
    load.series.push(Series {
        color: Some("#2ca02c"),
        ..Series::line("OK requests/s", series_of(&|b| Some(rate(b.ok, b))))
    });
    if bins.values().any(|b| b.ko > 0.0) {
        load.series.push(Series {
            color: Some("#d62728"),
            ..Series::line("KO requests/s", series_of(&|b| Some(rate(b.ko, b))))
        });
    }
    load.series.push(Series {
        axis: Axis::Right,
        color: Some("#7f7f7f"),
        dash: Some(""),
        ..Series::line("users", series_of(&|b| Some(b.users)))
    });
    let mut latency = base("p50, p95 and p99 of every request (successes)", "ms", "");
    for (q, v) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        latency.series.push(Series {
            color: Some("#1f77b4"),
            dash: percentile_dash(q),
            ..Series::line(
                q,
                series_of(&|b| {
                    let h = b.latency.as_ref().filter(|h| !h.is_empty())?;
                    Some(h.value_at_quantile(v) as f64 / 1000.0)
                }),
            )
        });
    }
    latency.log_y_if_decades();
    let mut out = vec![load, latency];
    let groups = in_service(dir, spans, t0);
    if !groups.is_empty() {
        let mut c = base(
            "instances InService per group (the infra sampler's view)",
            "instances",
            "",
        );
        for (group, points) in groups {
            c.series.push(Series {
                shape: Shape::Step,
                step: 1.0,
                ..Series::line(format!("{group} InService"), points)
            });
        }
        out.push(c);
    }
    out.into_iter()
        .filter(|c| !c.is_empty())
        .map(|c| c.to_svg())
        .collect()
}

/// Per group, (seconds since `t0`, InService instances) at every infra sample of every run,
/// broken between runs.
fn in_service(dir: &ResultsDir, spans: &[RunSpan], t0: f64) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in spans {
        let samples = read_jsonl(&dir.run_dir(&r.run_id).join("infra.jsonl"));
        let mut seen_here = std::collections::BTreeSet::new();
        for s in &samples {
            let t = s["unix"].as_f64().unwrap_or(0.0) - t0;
            for g in s["groups"].as_array().into_iter().flatten() {
                let name = g["asg"].as_str().unwrap_or("?").to_string();
                let count = g["instances"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|i| i["lifecycle"] == "InService")
                    .count() as f64;
                let series = out.entry(name.clone()).or_default();
                if seen_here.insert(name) && !series.is_empty() {
                    series.push((t - 0.5, f64::NAN));
                }
                series.push((t, count));
            }
        }
    }
    out
}
