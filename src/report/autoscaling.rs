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
                service: if l.service.is_empty() {
                    service_of(&l.group)
                } else {
                    l.service.clone()
                },
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
    } else {
        findings.extend(
            scaling(data)
                .iter()
                .filter(|s| s.reached.is_some() || s.requests_at_joins > 0)
                .map(Scaling::describe),
        );
    }
    let mut charts = Vec::new();
    if !all.is_empty() {
        charts.push(timeline(&all, t0).to_svg());
    }
    charts.push(client(data, t0).to_svg());
    Some(AutoScaling { charts, findings })
}

/// How one service's group scaled over the campaign: the most instances serving at once, how
/// far into which run it first had them, and the requests that failed while instances joined
/// (between InService, or a healthy target, and serving).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scaling {
    /// The service (from the group's name).
    pub service: String,
    /// Instances serving when the first run began.
    pub at_start: usize,
    /// The most instances serving at once during the runs.
    pub peak: usize,
    /// The run in which the peak was first reached, and the seconds into it; none when the
    /// group never grew past its start.
    pub reached: Option<(String, f64)>,
    /// Requests that failed while an instance of the group joined (windows merged); none when
    /// a joined instance has no record of when it first served (outside a rehearsal, AWS says
    /// when a target is healthy, not when its service answers).
    pub failed_at_joins: Option<u64>,
    /// All requests completed in those windows.
    pub requests_at_joins: u64,
}

impl Scaling {
    /// `41 of 160`, or `unknown` (see [`Scaling::failed_at_joins`]).
    pub fn joins(&self) -> String {
        match self.failed_at_joins {
            Some(f) => format!("{f} of {}", self.requests_at_joins),
            None => "unknown".into(),
        }
    }

    /// The summary in words: `verification: 1 → 3 instances serving, reached 9.8 s into
    /// u012-verify; 41 of 160 requests failed while instances joined`.
    pub fn describe(&self) -> String {
        let reached = match &self.reached {
            Some((run, s)) => format!(
                "{} → {} instances serving, reached {s:.1} s into {run}",
                self.at_start, self.peak
            ),
            None => format!("{} instances serving, never more", self.at_start),
        };
        let joins = match self.failed_at_joins {
            None => {
                "failures at joins not known (no record of when each joined instance first served)"
                    .to_string()
            }
            Some(0) if self.requests_at_joins == 0 => {
                "no request completed while an instance joined".to_string()
            }
            Some(failed) => format!(
                "{failed} of {} requests failed while instances joined",
                self.requests_at_joins
            ),
        };
        format!("{}: {reached}; {joins}", self.service)
    }
}

/// Per service whose instances the runs saw, how its group scaled ([`Scaling`]).
pub fn scaling(data: &ReportData) -> Vec<Scaling> {
    let all = instances(data);
    let windows: Vec<(f64, f64)> = data
        .runs
        .iter()
        .map(|r| (r.started_unix, r.started_unix + r.duration_s))
        .collect();
    let Some(first) = windows.iter().map(|w| w.0).reduce(f64::min) else {
        return Vec::new();
    };
    let mut services: Vec<String> = all.iter().map(|i| i.service.clone()).collect();
    services.dedup();
    services
        .into_iter()
        .map(|service| {
            let mine: Vec<&Instance> = all.iter().filter(|i| i.service == service).collect();
            // Each instance serves from its first successful answers (else its healthy
            // target) until it is gone; one there from the start serves from the start.
            let spans: Vec<(f64, f64)> = mine
                .iter()
                .filter_map(|i| {
                    let from = if i.already {
                        Some(i.first_seen)
                    } else {
                        i.serving.or(i.healthy)
                    }?;
                    Some((from, if i.gone { i.last_seen } else { f64::INFINITY }))
                })
                .collect();
            let serving_at = |t: f64| spans.iter().filter(|(a, b)| *a <= t && t < *b).count();
            let at_start = serving_at(first);
            let mut starts: Vec<f64> = spans
                .iter()
                .map(|s| s.0)
                .filter(|t| windows.iter().any(|(a, b)| t >= a && t <= b))
                .collect();
            starts.sort_by(f64::total_cmp);
            let peak = starts
                .iter()
                .map(|t| serving_at(*t))
                .chain([at_start])
                .max()
                .unwrap_or(0);
            let reached = (peak > at_start)
                .then(|| starts.iter().find(|t| serving_at(**t) == peak))
                .flatten()
                .and_then(|t| {
                    let run = data.runs.iter().rfind(|r| r.started_unix <= *t)?;
                    Some((run.run_id.clone(), t - run.started_unix))
                });
            let joined: Vec<&&Instance> = mine.iter().filter(|i| !i.already).collect();
            let known = joined.iter().all(|i| i.serving.is_some());
            let mut joins: Vec<(f64, f64)> = joined
                .iter()
                .filter_map(|i| match (i.in_service.or(i.healthy), i.serving) {
                    (Some(a), Some(b)) if b > a => Some((a, b)),
                    _ => None,
                })
                .collect();
            joins.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut merged: Vec<(f64, f64)> = Vec::new();
            for (a, b) in joins {
                match merged.last_mut() {
                    Some(last) if a <= last.1 => last.1 = last.1.max(b),
                    _ => merged.push((a, b)),
                }
            }
            let (failed_at_joins, requests_at_joins) = merged
                .iter()
                .map(|(a, b)| failures_between(data, *a, *b))
                .fold((0, 0), |(f, n), (f2, n2)| (f + f2, n + n2));
            Scaling {
                service,
                at_start,
                peak,
                reached,
                failed_at_joins: known.then_some(failed_at_joins),
                requests_at_joins,
            }
        })
        .collect()
}

/// What changed in how a service scaled between a baseline and a contender, one finding per
/// service that scaled on either side: time to capacity and failures at joins, side by side.
pub fn compared(base: (&str, &[Scaling]), contender: (&str, &[Scaling])) -> Vec<String> {
    let reached = |s: &Scaling| {
        s.reached
            .as_ref()
            .map_or("never grew".to_string(), |(run, t)| {
                format!("{} instances {t:.1} s into {run}", s.peak)
            })
    };
    contender
        .1
        .iter()
        .filter_map(|k| {
            let b = base.1.iter().find(|b| b.service == k.service)?;
            if b.reached.is_none() && k.reached.is_none() {
                return None;
            }
            let sooner = match (&b.reached, &k.reached) {
                (Some((_, tb)), Some((_, tk))) if b.peak == k.peak => {
                    let d = tb - tk;
                    format!(
                        " ({:.1} s {})",
                        d.abs(),
                        if d >= 0.0 { "sooner" } else { "later" }
                    )
                }
                _ => String::new(),
            };
            Some(format!(
                "{}: time to capacity {} {} against {} {}{sooner}; failed at joins {} against {}",
                k.service,
                contender.0,
                reached(k),
                base.0,
                reached(b),
                k.joins(),
                b.joins(),
            ))
        })
        .collect()
}

/// The table of how each side's groups scaled, one row per side and service; none when no
/// side's groups grew during the runs nor had an instance join.
pub fn scaling_table(sides: &[(String, Vec<Scaling>)]) -> Option<super::tables::Table> {
    let moved = sides
        .iter()
        .flat_map(|(_, all)| all)
        .any(|s| s.reached.is_some() || s.requests_at_joins > 0);
    if !moved {
        return None;
    }
    let rows: Vec<Vec<String>> = sides
        .iter()
        .flat_map(|(label, all)| {
            all.iter().map(move |s| {
                vec![
                    label.clone(),
                    s.service.clone(),
                    format!("{} → {}", s.at_start, s.peak),
                    s.reached
                        .as_ref()
                        .map_or("—".into(), |(run, t)| format!("{t:.1} s into {run}")),
                    s.joins(),
                ]
            })
        })
        .collect();
    (!rows.is_empty()).then(|| super::tables::Table {
        title: "Auto-scaling".into(),
        note: "Per side and service: instances serving at the first run's start and at most at once; when the most were first serving (time to capacity, from the start of that run); requests that failed while instances joined (InService or healthy, to serving) of all completed then.".into(),
        header: ["results", "service", "instances serving", "time to capacity", "failed at joins"]
            .map(String::from)
            .to_vec(),
        rows,
    })
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
