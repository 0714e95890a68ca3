//! One frame of the live dashboard: everything the page shows at one moment, read from the
//! campaign's results directory as the campaign writes it (each run's `timeline.csv`,
//! `latency.hlog` and `infra.jsonl` are appended and flushed every second; `cloudwatch.json`
//! lands when a run's metrics are pulled; `ledger.jsonl` holds each completed step). The load
//! engine knows nothing of the dashboard: it writes what it always writes, so a slow page can
//! never hold the load back. Charts are the report's own (`report::timeline`, `report::svg`,
//! `report::charts`), so the live page and the final report look alike.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::exec::ledger::LedgerEntry;
use crate::report::charts::cloud_charts;
use crate::report::data::{read_cloud, read_timeline, run_span, TimelineRow};
use crate::report::svg::{percentile_dash, Chart, Series};
use crate::report::timeline::{campaign_charts, RunSpan};
use crate::results::{self, unix_now, ResultsDir, RunSummary};
use crate::trial::{Plan, Step};

/// The campaign a dashboard follows: its name, results directory and plan, and when it began
/// (steps the ledger recorded before are an earlier attempt's, on a resume).
#[derive(Debug, Clone)]
pub struct Watched {
    /// The trial's name.
    pub trial: String,
    /// Its results directory.
    pub dir: ResultsDir,
    /// Its plan.
    pub plan: Plan,
    /// When this process began it (Unix seconds).
    pub since_unix: f64,
}

impl Watched {
    /// A campaign beginning now.
    pub fn new(trial: &str, dir: &ResultsDir, plan: &Plan) -> Watched {
        Watched {
            trial: trial.to_string(),
            dir: dir.clone(),
            plan: plan.clone(),
            since_unix: unix_now(),
        }
    }
}

/// Where the campaign is, as the page shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Where {
    /// The step in progress, 1-based (`of` + 1 once every step is done).
    pub step: usize,
    /// Steps in the plan.
    pub of: usize,
    /// The step in progress as `plan` prints it.
    pub doing: String,
    /// For a load run: `run 2/5`.
    pub run: Option<String>,
    /// The plan's time left, less the time the step in progress has run (never below what the
    /// steps after it need), s.
    pub left_s: f64,
    /// The same, as text (`5m 10s`).
    pub left: String,
}

/// One failure cause of the completed runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cause {
    /// `POST verify`.
    pub endpoint: String,
    /// `status: 503 Service Unavailable`.
    pub cause: String,
    /// How many.
    pub count: u64,
}

/// Everything the page shows at one moment.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Frame {
    /// The trial.
    pub trial: String,
    /// The results directory.
    pub results: String,
    /// Where the campaign is (none before it is followed).
    pub position: Option<Where>,
    /// The run being written, if one is.
    pub running: Option<String>,
    /// The last whole second any run wrote (Unix).
    pub last_second: Option<i64>,
    /// The campaign on one axis (users, OK/KO per second, p50/p95/p99, InService per group).
    pub campaign: Vec<String>,
    /// The latest run's p50/p95/p99 and failures per endpoint and per task, on its own axis.
    pub run: Vec<String>,
    /// The latest run's cloud series that have arrived.
    pub cloud: Vec<String>,
    /// Failures by cause over the completed runs, most first.
    pub causes: Vec<Cause>,
    /// Set once the campaign has ended.
    pub ended: bool,
    /// Links to the final reports (served by the dashboard), once built.
    pub reports: Vec<String>,
}

/// The completed steps of this campaign's ledger, read only (the executor owns the file).
fn ledger(dir: &Path) -> Vec<LedgerEntry> {
    std::fs::read_to_string(dir.join("ledger.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Where the campaign is: the step after the last one this process completed (skipping the
/// ones an earlier attempt completed and a resume keeps), with the plan's time left.
pub fn position(w: &Watched, entries: &[LedgerEntry], now: f64) -> Where {
    let index_of = |e: &LedgerEntry| {
        e.key
            .split('-')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
    };
    let recent: Vec<(usize, f64)> = entries
        .iter()
        .filter(|e| e.done_unix >= w.since_unix)
        .filter_map(|e| Some((index_of(e)?, e.done_unix)))
        .collect();
    let (mut next, began) = recent
        .iter()
        .max_by_key(|(i, _)| *i)
        .map(|&(i, at)| (i + 1, at))
        .unwrap_or((0, w.since_unix));
    let kept: std::collections::HashSet<usize> = entries.iter().filter_map(index_of).collect();
    while w.plan.steps.get(next).is_some_and(|s| {
        s.step.kept_on_resume()
            && kept.contains(&next)
            && !matches!(s.step, Step::ClearStores { .. })
    }) {
        next += 1;
    }
    let of = w.plan.steps.len();
    if next >= of {
        return Where {
            step: of + 1,
            of,
            doing: "done".into(),
            run: None,
            left_s: 0.0,
            left: "0s".into(),
        };
    }
    let p = w.plan.position(next);
    let this = w.plan.steps[next].estimate.as_secs_f64();
    let ran = (now - began).clamp(0.0, this);
    let left_s = p.left.as_secs_f64() - ran;
    Where {
        step: next + 1,
        of,
        doing: p.step.clone(),
        run: p.run.map(|(i, n)| format!("run {i}/{n}")),
        left_s,
        left: humantime::format_duration(Duration::from_secs(left_s.max(0.0) as u64)).to_string(),
    }
}

/// A run's folder on the campaign axis: from its summary when it has ended, else from the
/// seconds written so far (the run being written). `None` before its first second.
fn span_of(
    dir: &ResultsDir,
    run_id: &str,
) -> Option<(RunSpan, Option<RunSummary>, Vec<TimelineRow>)> {
    let folder = dir.run_dir(run_id);
    let rows = read_timeline(&folder.join("timeline.csv"));
    if let Ok(summary) = results::read_json::<RunSummary>(&folder.join("summary.json")) {
        let (from, to) = run_span(&summary);
        let label = format!("{} ({})", run_id, crate::report::load_words(&summary));
        return Some((
            RunSpan {
                run_id: run_id.into(),
                from,
                to,
                label,
            },
            Some(summary),
            rows,
        ));
    }
    let first = rows.first()?;
    let from = first.unix - first.second;
    let to = rows.iter().map(|r| r.unix + 1.0).fold(from, f64::max);
    let label = format!("{run_id} (running)");
    Some((
        RunSpan {
            run_id: run_id.into(),
            from,
            to,
            label,
        },
        None,
        rows,
    ))
}

/// The latest run's charts on its own axis: per endpoint and per task p50/p95/p99 (by line
/// style, as the report draws percentiles), and its failures per second by endpoint.
fn run_charts(span: &RunSpan, rows: &[TimelineRow]) -> Vec<String> {
    let mut per: BTreeMap<(String, String), Vec<&TimelineRow>> = BTreeMap::new();
    for r in rows {
        per.entry((r.kind.clone(), r.endpoint.clone()))
            .or_default()
            .push(r);
    }
    let x = |r: &TimelineRow| r.unix - span.from;
    let mut out = Vec::new();
    for ((kind, endpoint), rows) in &per {
        let name = if kind == "task" {
            endpoint.trim_start_matches("TASK ").to_string()
        } else {
            endpoint.clone()
        };
        let mut c = Chart {
            title: format!("{}: p50, p95 and p99 of {name} (successes)", span.run_id),
            x_label: "seconds since the run began".into(),
            y_label: "ms".into(),
            ..Default::default()
        };
        for (q, of) in [
            (
                "p50",
                (|r: &TimelineRow| r.p50) as fn(&TimelineRow) -> Option<f64>,
            ),
            ("p95", |r: &TimelineRow| r.p95),
            ("p99", |r: &TimelineRow| r.p99),
        ] {
            let points = rows.iter().filter_map(|r| Some((x(r), of(r)?))).collect();
            // One colour, the percentile by line style, as the report draws them.
            c.series.push(Series {
                color: Some("#1f77b4"),
                dash: percentile_dash(q),
                ..Series::line(q, points)
            });
        }
        c.log_y_if_decades();
        out.push(c);
    }
    if rows.iter().any(|r| r.failures > 0.0) {
        let mut c = Chart {
            title: format!("{}: failures per second by endpoint", span.run_id),
            x_label: "seconds since the run began".into(),
            y_label: "failures per second".into(),
            ..Default::default()
        };
        for ((_, endpoint), rows) in per.iter().filter(|((k, _), _)| k == "request") {
            let points = rows
                .iter()
                .map(|r| (x(r), r.failures / r.covered.clamp(0.05, 1.0)))
                .collect();
            c.series.push(Series::line(endpoint.clone(), points));
        }
        out.push(c);
    }
    out.into_iter()
        .filter(|c| !c.is_empty())
        .map(|c| c.to_svg())
        .collect()
}

/// Builds the frame of the campaign `w` now (blocking: reads files).
pub fn build(w: &Watched) -> Frame {
    let now = unix_now();
    let entries = ledger(&w.dir.root);
    let mut spans = Vec::new();
    let mut running = None;
    let mut latest: Option<(RunSpan, Vec<TimelineRow>)> = None;
    let mut causes: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut cloud_of = None;
    for phase in w.plan.load_phases() {
        let Some((span, summary, rows)) = span_of(&w.dir, &phase.run_id) else {
            continue;
        };
        match &summary {
            Some(s) => {
                for f in &s.failures {
                    *causes
                        .entry((
                            format!("{} {}", f.method, f.name),
                            format!("{}: {}", f.class, f.message),
                        ))
                        .or_default() += f.count;
                }
            }
            None => running = Some(span.run_id.clone()),
        }
        let cloud = read_cloud(&w.dir.run_dir(&span.run_id));
        if !cloud.series.is_empty() || !cloud.logs.is_empty() {
            cloud_of = Some((cloud, span.from));
        }
        spans.push(span.clone());
        latest = Some((span, rows));
    }
    spans.sort_by(|a, b| a.from.total_cmp(&b.from));
    let mut causes: Vec<Cause> = causes
        .into_iter()
        .map(|((endpoint, cause), count)| Cause {
            endpoint,
            cause,
            count,
        })
        .collect();
    causes.sort_by_key(|c| std::cmp::Reverse(c.count));
    Frame {
        trial: w.trial.clone(),
        results: w.dir.root.display().to_string(),
        position: Some(position(w, &entries, now)),
        running,
        last_second: latest
            .as_ref()
            .and_then(|(_, rows)| rows.last().map(|r| r.unix as i64)),
        campaign: campaign_charts(&w.dir, &spans),
        run: latest
            .as_ref()
            .map(|(s, rows)| run_charts(s, rows))
            .unwrap_or_default(),
        cloud: cloud_of
            .map(|(c, from)| cloud_charts(&c, from))
            .unwrap_or_default(),
        causes,
        ended: false,
        reports: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trial::plan::PlannedStep;

    fn entry(index: usize, kind: &str, at: f64) -> LedgerEntry {
        LedgerEntry {
            key: format!("{index:03}-{kind}"),
            step: kind.into(),
            done_unix: at,
            note: None,
        }
    }

    #[test]
    fn the_position_is_the_step_after_the_last_one_done_with_the_plans_time_left() {
        let planned = |step: Step, s: u64| PlannedStep {
            step,
            estimate: Duration::from_secs(s),
        };
        let w = Watched {
            trial: "t".into(),
            dir: ResultsDir {
                root: "/nonexistent".into(),
            },
            plan: Plan {
                trial: "t".into(),
                steps: vec![
                    planned(Step::Preflight, 2),
                    planned(Step::CheckTarget, 3),
                    planned(
                        Step::Cooldown {
                            duration: Duration::from_secs(10),
                        },
                        10,
                    ),
                ],
            },
            since_unix: 1000.0,
        };
        let start = position(&w, &[], 1000.5);
        assert_eq!((start.step, start.of, start.left_s), (1, 3, 14.5));
        // An earlier attempt's entries (before this process began) do not count.
        let old = [
            entry(0, "preflight", 900.0),
            entry(1, "check-target", 901.0),
        ];
        assert_eq!(position(&w, &old, 1001.0).step, 1);
        // Two steps done; the cooldown began at 1004 and has run 4 s of its 10.
        let done = [
            entry(0, "preflight", 1002.0),
            entry(1, "check-target", 1004.0),
        ];
        let p = position(&w, &done, 1008.0);
        assert_eq!((p.step, p.left_s, p.left.as_str()), (3, 6.0, "6s"));
        assert!(p.doing.contains("cool"), "{}", p.doing);
        // Past its estimate a step shows what the steps after it need, never less.
        assert_eq!(position(&w, &done, 1100.0).left_s, 0.0);
        let all = [
            done[0].clone(),
            done[1].clone(),
            entry(2, "cooldown", 1014.0),
        ];
        let end = position(&w, &all, 1015.0);
        assert_eq!((end.step, end.doing.as_str()), (4, "done"));
    }
}
