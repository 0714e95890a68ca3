//! The findings a report states: answers to the campaign's questions, each with its numbers and
//! the test behind its verdict (see [`super::stats`]), and nothing that says nothing.
//!
//! * **Where throughput flattens** (a user-step trial): per task, the first step past which
//!   its unit's rate grew by less than 10 %, or not significantly; the plateau, and how much
//!   p95 rose past it.
//! * **Against the compared trial**, per load step (never a rate averaged across steps): the
//!   unit's throughput and p95 ratios with their verdicts.
//! * **Store weight**: the slope of each task's p50 and p95 per 1 000 stored rows, "grows" or
//!   "flat" by the trend test.
//! * **The start of runs**: the first second against the steady seconds, where the runs agree.
//! * **The machine**: a rehearsal's twin saying this machine, not the modelled deployment, set
//!   some figures.

use super::compare::StepChanges;
use super::data::{read_timeline, read_twin, ReportData};
use super::format::{fmt_ms, signed};
use super::load_words;
use super::stats::{self, Options, Verdict};
use crate::results::cells::Kind;
use crate::results::{EndpointSummary, RunSummary, StoreSnapshot};

/// Growth smaller than this (relative) between two load steps is no growth: the knee.
const KNEE_MIN_GROWTH: f64 = 0.10;

/// A store-weight slope smaller than this over the rows stored (relative to the mean) is flat.
const STORE_WEIGHT_MIN_EFFECT: f64 = 0.20;

/// A machine that added more than this share of an instance's modelled service time (p95) set
/// the figures, not the twin.
const MACHINE_SHARE: f64 = 0.25;

/// The unit of `task` in a run (the task's own row: a verification session), else its only
/// request.
fn unit<'a>(r: &'a RunSummary, task: &str) -> Option<&'a EndpointSummary> {
    r.endpoints
        .iter()
        .find(|e| e.task == task && e.kind == Kind::Task)
        .or_else(|| {
            let mut reqs = r
                .endpoints
                .iter()
                .filter(|e| e.task == task && e.kind == Kind::Request);
            let first = reqs.next();
            reqs.next().is_none().then_some(first).flatten()
        })
}

/// The steps of a user-step trial for a task: (users, run, unit), in user order, one per users.
fn steps<'a>(
    runs: &'a [RunSummary],
    task: &str,
) -> Vec<(u32, &'a RunSummary, &'a EndpointSummary)> {
    let mut out: Vec<(u32, &RunSummary, &EndpointSummary)> = runs
        .iter()
        .filter_map(|r| Some((r.users?, r, unit(r, task)?)))
        .filter(|(_, _, e)| e.steady.count > 0)
        .collect();
    out.sort_by_key(|(u, _, _)| *u);
    out.dedup_by_key(|(u, _, _)| *u);
    out
}

/// Ratio text: `×0.33`.
fn times(r: f64) -> String {
    if r >= 10.0 {
        format!("×{r:.0}")
    } else {
        format!("×{r:.2}")
    }
}

/// Where each task's throughput flattens, or that it did not within the steps.
pub fn knees(runs: &[RunSummary], tasks: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for task in tasks {
        let s = steps(runs, task);
        if s.len() < 3 {
            continue;
        }
        let unit_name = s[0].2.name.clone();
        let mut knee = None;
        for w in s.windows(2) {
            let (a, b) = (w[0].2, w[1].2);
            let growth = stats::compare_seconds(
                &a.samples.rps,
                &b.samples.rps,
                Options::default().with_min_effect(KNEE_MIN_GROWTH),
            );
            match growth.verdict {
                Verdict::CannotTell { n } => {
                    out.push(format!(
                        "{task}: cannot tell where {unit_name} throughput flattens: {} s per step (n = {n}) is too few to compare steps",
                        w[0].1.steady_s
                    ));
                    knee = Some(None);
                    break;
                }
                Verdict::Significant if growth.difference > 0.0 => {}
                _ => {
                    knee = Some(Some((w[0], w[1], growth)));
                    break;
                }
            }
        }
        let top = s.last().expect("three steps at least");
        match knee {
            Some(None) => {}
            None => out.push(format!(
                "{task}: {unit_name} throughput grew with every step, to {:.1}/s at {}: no knee within the steps",
                top.2.steady.rps,
                load_words(top.1)
            )),
            Some(Some((at, next, growth))) => {
                let plateau = s
                    .iter()
                    .filter(|(u, _, _)| *u >= at.0)
                    .map(|(_, _, e)| e.steady.rps)
                    .fold(0.0, f64::max);
                let p95_rise = if at.2.steady.p95_ms > 0.0 {
                    format!(
                        "; p95 {} past it ({} → {} ms at {})",
                        times(top.2.steady.p95_ms / at.2.steady.p95_ms),
                        fmt_ms(at.2.steady.p95_ms),
                        fmt_ms(top.2.steady.p95_ms),
                        load_words(top.1)
                    )
                } else {
                    String::new()
                };
                out.push(format!(
                    "{task}: {unit_name} throughput flattens at ~{plateau:.1}/s from {} (at {}: {}){p95_rise}",
                    load_words(at.1),
                    load_words(next.1),
                    growth.describe()
                ));
            }
        }
    }
    out
}

/// This trial against the compared one, per load step: the unit's throughput and p95.
pub fn against(
    runs: &[RunSummary],
    base: &[RunSummary],
    base_name: &str,
    tasks: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    for task in tasks {
        let ours = steps(runs, task);
        let theirs = steps(base, task);
        let mut parts = Vec::new();
        for (u, e_run, e) in &ours {
            let Some((_, _, b)) = theirs.iter().find(|(bu, _, _)| bu == u) else {
                continue;
            };
            // The step judged as `compare` judges it: on its own seconds.
            let step = StepChanges::of(&e_run.run_id, &b.samples, &e.samples);
            let (rate, p95) = (&step.rps, &step.p95);
            // The ratio with its interval beside the verdict: `×0.58 [×0.52, ×0.64]`.
            let ratio = |c: &stats::Change| match (c.relative, c.relative_ci) {
                (Some(r), Some((lo, hi))) => format!(
                    "{} [{}, {}]",
                    times(1.0 + r),
                    times(1.0 + lo),
                    times(1.0 + hi)
                ),
                (Some(r), None) => times(1.0 + r),
                (None, _) => "new".into(),
            };
            parts.push(format!(
                "{u}: throughput {} ({}), p95 {} ({})",
                ratio(rate),
                rate.verdict,
                ratio(p95),
                p95.verdict
            ));
        }
        if !parts.is_empty() {
            let unit_name = ours
                .first()
                .map(|(_, _, e)| e.name.clone())
                .unwrap_or_default();
            out.push(format!(
                "{task} against {base_name}, {unit_name} per step of users, each on its own seconds (Welch t, 95 % intervals): {}",
                parts.join("; ")
            ));
        }
    }
    out
}

/// Rows in the stores when each run began (the counts before it, else the previous iteration's).
pub fn rows_before(run: &RunSummary, stores: &[StoreSnapshot]) -> Option<f64> {
    let rows = |s: &StoreSnapshot| s.counts.values().sum::<u64>() as f64;
    if let Some(s) = stores
        .iter()
        .find(|s| s.label == format!("before {}", run.run_id))
    {
        return Some(rows(s));
    }
    let iterations: Vec<&StoreSnapshot> = stores
        .iter()
        .filter(|s| s.label.starts_with("after iteration"))
        .collect();
    if run.iteration <= 1 {
        return stores.iter().find(|s| s.label == "after clear").map(rows);
    }
    iterations.get(run.iteration as usize - 2).map(|s| rows(s))
}

/// Store weight: per task, the slope of p50 and p95 per 1 000 rows stored when each iteration's
/// run began, with the trend test's reading.
pub fn store_weight(
    runs: &[RunSummary],
    stores: &[StoreSnapshot],
    tasks: &[String],
) -> Vec<String> {
    if !stores
        .iter()
        .any(|s| s.label.starts_with("after iteration"))
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    for task in tasks {
        let points: Vec<(f64, &EndpointSummary)> = runs
            .iter()
            .filter_map(|r| Some((rows_before(r, stores)?, unit(r, task)?)))
            .filter(|(_, e)| e.steady.count > 0)
            .collect();
        if points.len() < 2 {
            continue;
        }
        let unit_name = points[0].1.name.clone();
        let mut parts = Vec::new();
        for (q, pick) in [
            (
                "p50",
                (|e: &EndpointSummary| e.steady.p50_ms) as fn(&EndpointSummary) -> f64,
            ),
            ("p95", |e: &EndpointSummary| e.steady.p95_ms),
        ] {
            let xy: Vec<(f64, f64)> = points.iter().map(|(x, e)| (*x / 1000.0, pick(e))).collect();
            let t = stats::trend(
                &xy,
                Options::default().with_min_effect(STORE_WEIGHT_MIN_EFFECT),
            );
            let (first, last) = (xy[0], xy[xy.len() - 1]);
            let ci = t
                .slope_ci
                .map(|(lo, hi)| format!(" [{}, {}]", signed(lo), signed(hi)))
                .unwrap_or_default();
            parts.push(format!(
                "{q} {}: {} ms per 1 000 rows{ci} ({} → {} ms from {:.0} to {:.0} rows, {})",
                t.reading(),
                signed(t.slope),
                fmt_ms(first.1),
                fmt_ms(last.1),
                first.0 * 1000.0,
                last.0 * 1000.0,
                times(if first.1 > 0.0 { last.1 / first.1 } else { 1.0 })
            ));
        }
        out.push(format!(
            "store weight, {task} ({unit_name}, OLS over {} iterations): {}",
            points.len(),
            parts.join("; ")
        ));
    }
    out
}

/// The start of runs: the first second a run covers against its steady seconds, per task's
/// unit, when the runs agree (the first second slower in most runs with users).
pub fn start_of_runs(data: &ReportData) -> Vec<String> {
    let mut out = Vec::new();
    for task in data.tasks() {
        let mut slower = Vec::new();
        let mut considered = 0;
        for r in &data.runs {
            let Some(e) = unit(r, &task) else { continue };
            if e.steady.p95_ms <= 0.0 {
                continue;
            }
            let rows = read_timeline(&data.dir.run_dir(&r.run_id).join("timeline.csv"));
            let first = rows
                .iter()
                .filter(|x| x.endpoint == format!("{} {}", e.method, e.name))
                .find(|x| x.p95.is_some());
            let Some(first) = first else { continue };
            considered += 1;
            let p95 = first.p95.unwrap_or(0.0);
            if p95 >= 1.5 * e.steady.p95_ms {
                slower.push((r, p95, e.steady.p95_ms));
            }
        }
        if considered >= 2 && slower.len() * 2 > considered {
            let (worst, p95, steady) = slower
                .iter()
                .max_by(|a, b| (a.1 / a.2).total_cmp(&(b.1 / b.2)))
                .expect("at least one");
            let opens: u64 = slower
                .iter()
                .filter_map(|(r, _, _)| {
                    let twin = read_twin(&data.dir.run_dir(&r.run_id))?;
                    let first = r.started_unix.floor() as i64;
                    Some(
                        twin.seconds
                            .iter()
                            .filter(|s| s.unix >= first && s.unix <= first + 1)
                            .map(|s| s.pool_opens)
                            .sum::<u64>(),
                    )
                })
                .sum();
            let cause = start_cause(data, worst, &task);
            let pools = if opens > 0 {
                format!(
                    "; the twin's instances opened {opens} database connections in those first seconds"
                )
            } else {
                String::new()
            };
            out.push(format!(
                "{task}: the first second of {} of {considered} runs is slower than their steady seconds (p95 ×1.5 or more; {}: {} ms against {} ms steady, {}){cause}{pools}",
                slower.len(),
                worst.run_id,
                fmt_ms(*p95),
                fmt_ms(*steady),
                load_words(worst)
            ));
        }
    }
    out
}

/// Where the first second's time went in `run`, for `task`'s requests, against its steady
/// seconds: the wait for the first byte (the service) and the TCP handshakes of the connections
/// opened (the setup and the network), from the timeline's phase columns; empty when the
/// results carry no phases.
fn start_cause(data: &ReportData, run: &RunSummary, task: &str) -> String {
    let requests: Vec<String> = run
        .endpoints
        .iter()
        .filter(|e| e.task == task && e.kind == Kind::Request)
        .map(|e| format!("{} {}", e.method, e.name))
        .collect();
    let rows: Vec<_> = read_timeline(&data.dir.run_dir(&run.run_id).join("timeline.csv"))
        .into_iter()
        .filter(|r| r.kind == "request" && requests.contains(&r.endpoint))
        .collect();
    let Some(first) = rows.iter().map(|r| r.second).reduce(f64::min) else {
        return String::new();
    };
    let of = |pick: fn(&super::data::TimelineRow) -> Option<f64>, steady: bool| -> Vec<f64> {
        let mut by_second: std::collections::BTreeMap<i64, f64> = Default::default();
        for r in &rows {
            let wanted = if steady {
                r.phase == "steady"
            } else {
                r.second == first
            };
            if let (true, Some(v)) = (wanted, pick(r)) {
                let e = by_second.entry(r.second as i64).or_insert(0.0);
                *e = e.max(v);
            }
        }
        by_second.into_values().collect()
    };
    let median = |mut v: Vec<f64>| -> Option<f64> {
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let (Some(wait_first), Some(wait_steady)) = (
        median(of(|r| r.wait_p95, false)),
        median(of(|r| r.wait_p95, true)),
    ) else {
        return String::new();
    };
    let connect_first = median(of(|r| r.connect_p95, false)).unwrap_or(0.0);
    let opened: f64 = rows
        .iter()
        .filter(|r| r.second == first)
        .map(|r| r.opened)
        .sum();
    let whose = if wait_first >= 1.5 * wait_steady && wait_first > 2.0 * connect_first {
        "the service's: the wait grew, not the handshakes"
    } else if connect_first >= wait_first {
        "the connections': the handshakes took longer than the wait"
    } else {
        "neither phase alone"
    };
    format!(
        "; in its first second the wait for the first byte was {} ms p95 ({} ms steady), the load opened {opened:.0} connections with {} ms p95 handshakes: the time was {whose}",
        fmt_ms(wait_first),
        fmt_ms(wait_steady),
        fmt_ms(connect_first),
    )
}

/// A rehearsal's twin saying this machine set some figures: the runs in which it added more
/// than a quarter of an instance's modelled service time (p95) to its requests.
pub fn machine_limits(data: &ReportData) -> Vec<String> {
    let mut limited = Vec::new();
    let mut service = 0.0;
    for r in &data.runs {
        let Some(twin) = read_twin(&data.dir.run_dir(&r.run_id)) else {
            continue;
        };
        let (Some(model), Some(over)) = (twin.model, twin.overhead_p95_ms) else {
            continue;
        };
        service = model.service_ms;
        if over > MACHINE_SHARE * model.service_ms {
            limited.push(format!("{} (+{over:.0} ms)", r.run_id));
        }
    }
    if limited.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "this machine, not the twin, set the figures of {} of {} runs: it added more than a quarter of the modelled {service:.0} ms per request (p95): {}",
        limited.len(),
        data.runs.len(),
        limited.join(", ")
    )]
}
