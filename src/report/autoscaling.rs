//! Auto-scaling as the campaign saw it: every instance of the groups, from launch to InService
//! to a healthy target to serving (its first successful answers: the twin's own record in a
//! rehearsal, else the healthy target), on the same time axis as the client's p95 and failures;
//! and per instance that joined during a run, how long each step took and how many requests
//! failed in its joining window. Shown for every trial whose groups may move (min < max), saying
//! so when no instance joined.

use std::collections::BTreeMap;

use serde_json::Value;

use super::data::{instance_lives, read_timeline, read_twin, InstanceLife, ReportData};
use super::svg::{Axis, Bar, Chart, Marker, Series};

/// Colours of an instance's states.
const PENDING: &str = "#9e9e9e";
const NOT_HEALTHY: &str = "#ff7f0e";
const NOT_SERVING: &str = "#e6c229";
const SERVING: &str = "#2ca02c";
const GONE: &str = "#d62728";

/// One instance over the campaign.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Its id.
    pub id: String,
    /// Its service (from the group's name).
    pub service: String,
    /// Launched, when known.
    pub launched: Option<f64>,
    /// First sampled.
    pub first_seen: f64,
    /// InService (first seen so).
    pub in_service: Option<f64>,
    /// Its target healthy (first seen so).
    pub healthy: Option<f64>,
    /// Its first successful answers (the twin's record), else none.
    pub serving: Option<f64>,
    /// Last seen.
    pub last_seen: f64,
    /// Gone before the campaign ended.
    pub gone: bool,
    /// Already in service when the campaign first looked: it did not join.
    pub already: bool,
}

/// What the section shows and says.
pub struct AutoScaling {
    /// Its charts.
    pub charts: Vec<String>,
    /// One finding per instance that joined during a run, or "no instance joined".
    pub findings: Vec<String>,
}

/// True when the trial lets a group move (min < max).
fn groups_may_move(manifest: &Value) -> bool {
    manifest["trial"]["spec"]["infra"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .any(|g| match (g["min"].as_u64(), g["max"].as_u64()) {
            (Some(min), Some(max)) => min < max,
            _ => false,
        })
}

fn service_of(group: &str) -> String {
    group
        .trim_end_matches("-asg")
        .rsplit('-')
        .next()
        .unwrap_or("")
        .to_string()
}

/// Every instance the runs saw, each once, by service and first sight.
pub fn instances(data: &ReportData) -> Vec<Instance> {
    let mut lives: Vec<InstanceLife> = Vec::new();
    let mut serving: BTreeMap<String, f64> = BTreeMap::new();
    for r in &data.runs {
        let dir = data.dir.run_dir(&r.run_id);
        for l in instance_lives(&dir) {
            if let Some(prev) = lives.iter_mut().find(|p| p.id == l.id) {
                prev.last_seen = prev.last_seen.max(l.last_seen);
                prev.gone = l.gone;
                prev.in_service = prev.in_service.or(l.in_service);
                prev.healthy = prev.healthy.or(l.healthy);
                prev.launched = prev.launched.or(l.launched);
            } else {
                lives.push(l);
            }
        }
        for rec in read_twin(&dir).map(|t| t.instances).unwrap_or_default() {
            serving.entry(rec.id).or_insert(rec.ready);
        }
    }
    let first = lives
        .iter()
        .filter_map(|l| l.first_seen)
        .fold(f64::INFINITY, f64::min);
    let mut out: Vec<Instance> = lives
        .into_iter()
        .map(|l| {
            let first_seen = l.first_seen.unwrap_or(first);
            let already = l.in_service.is_some_and(|t| t <= first + 1e-6);
            Instance {
                service: service_of(&l.group),
                serving: serving
                    .get(&l.id)
                    .copied()
                    .filter(|t| !already || *t > first_seen),
                id: l.id,
                launched: l.launched,
                first_seen,
                in_service: l.in_service,
                healthy: l.healthy,
                last_seen: l.last_seen,
                gone: l.gone,
                already,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        a.service
            .cmp(&b.service)
            .then(a.first_seen.total_cmp(&b.first_seen))
    });
    out
}

/// The section's charts and findings, for a trial whose groups may move or whose instances
/// changed; `None` otherwise.
pub fn section(data: &ReportData) -> Option<AutoScaling> {
    let t0 = data.runs.iter().map(|r| r.started_unix).reduce(f64::min)?;
    let all = instances(data);
    let joined: Vec<&Instance> = all.iter().filter(|i| !i.already).collect();
    let changed = !joined.is_empty() || all.iter().any(|i| i.gone);
    if !groups_may_move(&data.manifest) && !changed {
        return None;
    }
    let mut findings: Vec<String> = joined.iter().map(|i| joining(data, i)).collect();
    if joined.is_empty() {
        findings.push("no instance joined during the runs".into());
    }
    let mut charts = Vec::new();
    if !all.is_empty() {
        charts.push(timeline(&all, t0).to_svg());
    }
    charts.push(client(data, t0).to_svg());
    Some(AutoScaling { charts, findings })
}

/// `+3.1 s` relative to a run's start.
fn at(t: f64, start: f64) -> String {
    let d = t - start;
    // Never "-0.0": a tenth either side of the start is the start.
    format!("{:+.1} s", if d.abs() < 0.05 { 0.0 } else { d })
}

/// One joining instance in words: when it launched, was InService, healthy and serving
/// relative to the run it joined in, and the failures in its joining window (InService, or
/// healthy, to serving) with their share of the requests then.
fn joining(data: &ReportData, i: &Instance) -> String {
    let first = i.launched.or(i.in_service).unwrap_or(i.first_seen);
    let run = data
        .runs
        .iter()
        .rfind(|r| r.started_unix <= first + 1.0)
        .or(data.runs.first());
    let Some(run) = run else {
        return format!("{} {}: joined", i.service, i.id);
    };
    let s = run.started_unix;
    let mut steps = Vec::new();
    if let Some(l) = i.launched {
        steps.push(format!("launched {}", at(l, s)));
    }
    if let Some(t) = i.in_service {
        steps.push(format!("InService {}", at(t, s)));
    }
    if let Some(t) = i.healthy {
        steps.push(format!("healthy {}", at(t, s)));
    }
    if let Some(t) = i.serving {
        steps.push(format!("serving {}", at(t, s)));
    }
    let origin = i.launched.unwrap_or(i.first_seen);
    let to = |t: Option<f64>, what: &str| t.map(|t| format!("{:.0} s to {what}", t - origin));
    let durations: Vec<String> = [
        to(i.in_service, "InService"),
        to(i.serving.or(i.healthy), "serving"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let window = (i.in_service.or(i.healthy), i.serving);
    let failures = match window {
        (Some(a), Some(b)) if b > a => {
            let (failed, total) = failures_between(data, a, b);
            format!(
                "; {failed} failed of {total} requests in its joining window ({:.1} s, InService to serving)",
                b - a
            )
        }
        _ => String::new(),
    };
    format!(
        "{} {} joined during {} ({}): {}{}{failures}",
        i.service,
        i.id,
        run.run_id,
        super::load_words(run),
        steps.join(", "),
        if durations.is_empty() {
            String::new()
        } else {
            format!(" — {}", durations.join(", "))
        }
    )
}

/// Failed and all requests the client completed in `[from, to)` (Unix seconds), whole seconds.
fn failures_between(data: &ReportData, from: f64, to: f64) -> (u64, u64) {
    let (mut failed, mut total) = (0.0, 0.0);
    for r in &data.runs {
        for row in read_timeline(&data.dir.run_dir(&r.run_id).join("timeline.csv"))
            .iter()
            .filter(|x| x.kind == "request" && x.unix + 1.0 > from && x.unix < to)
        {
            failed += row.failures;
            total += row.requests;
        }
    }
    (failed as u64, total as u64)
}

/// One row per instance: launching, InService without a healthy target, healthy but not yet
/// serving, serving; a marker where it ended. An instance in service when the campaign first
/// looked starts there, serving (it never was Pending for this campaign).
fn timeline(instances: &[Instance], t0: f64) -> Chart {
    let mut bars = Vec::new();
    let mut markers = Vec::new();
    let rows: Vec<String> = instances
        .iter()
        .map(|i| format!("{} {}", i.service, i.id.trim_start_matches("i-")))
        .collect();
    for (row, i) in instances.iter().enumerate() {
        let end = i.last_seen - t0;
        let mut push = |from: f64, to: f64, color: &'static str, what: &str| {
            if to > from {
                bars.push(Bar {
                    row,
                    from,
                    to,
                    color,
                    label: format!("{} {what}: {from:.1} s → {to:.1} s", i.id),
                });
            }
        };
        if i.already {
            push(
                i.first_seen - t0,
                end,
                SERVING,
                "serving (already in service)",
            );
        } else {
            let start = i.launched.unwrap_or(i.first_seen) - t0;
            let in_service = i.in_service.map(|t| t - t0);
            let healthy = i.healthy.map(|t| t - t0);
            let serving = i.serving.map(|t| t - t0).or(healthy);
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
                    "InService, target not healthy",
                );
            }
            if let Some(h) = healthy {
                push(
                    h,
                    serving.unwrap_or(end).max(h),
                    NOT_SERVING,
                    "healthy, not serving yet",
                );
            }
            if let Some(s) = serving {
                push(s, end, SERVING, "serving");
            }
        }
        if i.gone {
            markers.push(Marker {
                x: end,
                label: format!("{} terminated", i.id),
                color: GONE,
            });
        }
    }
    Chart {
        title: "auto-scaling: every instance, launch → InService → healthy → serving".into(),
        x_label: "seconds since the first run began".into(),
        rows,
        bars,
        markers,
        bar_legend: vec![
            (PENDING, "launching (Pending)".into()),
            (NOT_HEALTHY, "InService, target not healthy".into()),
            (NOT_SERVING, "healthy, not serving yet".into()),
            (SERVING, "serving".into()),
        ],
        ..Default::default()
    }
}

/// The client's worst p95 and its failures per second over the whole campaign, on the same
/// axis as the instances.
fn client(data: &ReportData, t0: f64) -> Chart {
    let mut chart = Chart {
        y2_label: "failures per second".into(),
        ..Chart::new(
            "auto-scaling: client p95 and failures on the same time axis",
            "seconds since the first run began",
            "p95 ms (worst endpoint)",
        )
    };
    let (mut p95, mut fails) = (Vec::new(), Vec::new());
    for r in &data.runs {
        if !p95.is_empty() {
            p95.push((r.started_unix - t0 - 0.5, f64::NAN));
            fails.push((r.started_unix - t0 - 0.5, f64::NAN));
        }
        let rows = read_timeline(&data.dir.run_dir(&r.run_id).join("timeline.csv"));
        let mut per_second: BTreeMap<i64, (Option<f64>, f64)> = BTreeMap::new();
        for row in rows.iter().filter(|x| x.kind == "request") {
            let e = per_second.entry(row.unix as i64).or_default();
            e.0 = match (e.0, row.p95) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            e.1 += row.failures / row.covered.clamp(0.05, 1.0);
        }
        for (t, (p, f)) in per_second {
            if let Some(p) = p {
                p95.push((t as f64 - t0, p));
            }
            fails.push((t as f64 - t0, f));
        }
    }
    chart.series.push(Series::line("p95 (worst endpoint)", p95));
    chart.series.push(Series {
        axis: Axis::Right,
        color: Some("#d62728"),
        ..Series::line("failures/s", fails)
    });
    chart
}
