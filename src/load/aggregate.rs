//! From recorded seconds to figures and files, in one place: every second the [`Aggregator`]
//! takes a finished UTC second from the recorder, writes it to `timeline.csv`,
//! `stats_history.csv` and `latency.hlog`, and folds it into the run's totals; at the end it adds
//! the drain and writes `stats.csv` and `failures.csv`.
//!
//! The definitions (README "What the numbers mean"):
//! * a second is *partial* when the run covers only part of it (the first and the last): its
//!   requests count in the totals, never in per-second samples, rates or confidence intervals;
//! * *steady* seconds are whole, after the warm-up and before the deadline;
//! * *total* rates divide by the measured window; *steady* rates by the steady seconds;
//! * the *drain* (completions after the deadline) is apart from both;
//! * percentiles are of successes, from merged histograms; failures have their own.

use std::path::Path;

use hdrhistogram::Histogram;

use super::recorder::{Recorder, Slot};
use crate::error::Result;
pub use crate::results::cells::{decode, encode, CellLine, CellText};
use crate::results::cells::{Cell, Endpoint, Kind, Phases};
use crate::results::csv::{self, RowFigures};
use crate::results::{
    AppendFile, Drain, EndpointSummary, Figures, Histograms, PhaseFigures, PhaseSummary,
    SteadySamples,
};

/// Latency figures of a histogram and rates over `seconds`.
pub fn figures(latency: &Histogram<u64>, count: u64, failures: u64, seconds: f64) -> Figures {
    let q = |q: f64| {
        if latency.is_empty() {
            0.0
        } else {
            csv::ms(latency.value_at_quantile(q))
        }
    };
    let secs = seconds.max(1e-9);
    Figures {
        count,
        failures,
        rps: count as f64 / secs,
        failures_per_s: failures as f64 / secs,
        mean_ms: if latency.is_empty() {
            0.0
        } else {
            latency.mean() / 1000.0
        },
        min_ms: if latency.is_empty() {
            0.0
        } else {
            csv::ms(latency.min())
        },
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        max_ms: q(1.0),
        seconds,
    }
}

/// A phase's figures over a span, its histogram kept for pooling.
pub fn phase_figures(h: &Histogram<u64>) -> PhaseFigures {
    if h.is_empty() {
        return PhaseFigures::default();
    }
    PhaseFigures {
        count: h.len(),
        p50_ms: csv::ms(h.value_at_quantile(0.5)),
        p95_ms: csv::ms(h.value_at_quantile(0.95)),
        p99_ms: csv::ms(h.value_at_quantile(0.99)),
        max_ms: csv::ms(h.max()),
        histogram: encode(h),
    }
}

/// The phases of a span's requests as the summary keeps them, with the connections opened and
/// found closed.
pub fn phase_summary(p: Option<&Phases>) -> (PhaseSummary, u64, u64) {
    let Some(p) = p else {
        return (PhaseSummary::default(), 0, 0);
    };
    let summary = PhaseSummary {
        connect: phase_figures(&p.connect),
        tls: phase_figures(&p.tls),
        wait: phase_figures(&p.wait),
        receive: phase_figures(&p.receive),
    };
    (summary, p.opened, p.closed)
}

/// Where a second stands in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The run covers only part of it (the first or the last).
    Partial,
    /// Inside the warm-up.
    Warmup,
    /// Whole, after the warm-up, before the deadline.
    Steady,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Partial => "partial",
            Phase::Warmup => "warmup",
            Phase::Steady => "steady",
        }
    }
}

/// The span of a run in wall-clock seconds.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// When it started.
    pub start: f64,
    /// When the warm-up ends.
    pub warmup_end: f64,
    /// The deadline (or the stop request).
    pub end: f64,
}

impl Window {
    /// How much of second `t` the window covers, s.
    pub fn covered(&self, t: i64) -> f64 {
        let (a, b) = (t as f64, t as f64 + 1.0);
        (b.min(self.end) - a.max(self.start)).max(0.0)
    }

    /// The phase of second `t`.
    pub fn phase(&self, t: i64) -> Phase {
        if self.covered(t) < 1.0 - 1e-9 {
            Phase::Partial
        } else if (t as f64) < self.warmup_end {
            Phase::Warmup
        } else {
            Phase::Steady
        }
    }
}

#[derive(Clone, Default)]
struct Totals {
    window: Cell,
    steady: Cell,
    samples: SteadySamples,
}

/// What one second looked like, for live progress and the dead-target watch.
#[derive(Debug, Clone, Default)]
pub struct SecondView {
    /// The UTC second.
    pub unix: i64,
    /// Seconds since the start.
    pub offset: f64,
    /// Users running.
    pub users: usize,
    /// Requests in this second, all request endpoints.
    pub requests: u64,
    /// Failures in this second.
    pub failures: u64,
    /// Requests that could not connect.
    pub refused: u64,
    /// Requests that got no answer within the request timeout.
    pub timed_out: u64,
    /// Failures so far.
    pub total_failures: u64,
    /// Per request endpoint: (short name, requests, p95 ms, failures) in this second.
    pub endpoints: Vec<(String, u64, f64, u64)>,
}

/// Folds seconds into totals and writes the per-second files.
pub struct Aggregator {
    window: Window,
    totals: Vec<Totals>,
    steady_seconds: u64,
    next: i64,
    timeline: AppendFile,
    history: AppendFile,
    hlog: AppendFile,
    tags: Vec<String>,
    /// Per endpoint, the interval log's tag of each phase (in [`Phases::NAMES`]' order).
    phase_tags: Vec<[String; 4]>,
    /// Every request endpoint's cells, whole run, for Locust's `Aggregated` and `stats.csv`.
    locust: Vec<Cell>,
    /// Virtual users running at the end of the last flushed second.
    users: i64,
    /// A fleet worker's lossless copy of every flushed second (`cells.jsonl`).
    cell_log: Option<AppendFile>,
}

impl Aggregator {
    /// Starts the per-second files of a run in `dir`.
    pub fn create(dir: &Path, rec: &Recorder, window: Window) -> Result<Aggregator> {
        let mut timeline = AppendFile::create(&dir.join("timeline.csv"))?;
        timeline.write(csv::TIMELINE_HEADER)?;
        let mut history = AppendFile::create(&dir.join("stats_history.csv"))?;
        history.write(&csv::history_header())?;
        let mut hlog = AppendFile::create(&dir.join("latency.hlog"))?;
        hlog.write(&csv::hlog_header(window.start.floor()))?;
        let n = rec.endpoints().len();
        Ok(Aggregator {
            window,
            totals: vec![Totals::default(); n],
            steady_seconds: 0,
            next: window.start.floor() as i64,
            timeline,
            history,
            hlog,
            tags: rec
                .endpoints()
                .iter()
                .map(|e| csv::hlog_tag(&e.method, &e.name))
                .collect(),
            phase_tags: rec
                .endpoints()
                .iter()
                .map(|e| {
                    let tag = csv::hlog_tag(&e.method, &e.name);
                    Phases::NAMES.map(|p| csv::hlog_phase_tag(&tag, p))
                })
                .collect(),
            locust: vec![Cell::default(); n],
            users: 0,
            cell_log: None,
        })
    }

    /// Also writes every flushed second losslessly to `cells.jsonl`, and the endpoints to
    /// `endpoints.json` (a fleet worker's output).
    pub fn log_cells(&mut self, dir: &Path, endpoints: &[Endpoint]) -> Result<()> {
        crate::results::write_json(&dir.join("endpoints.json"), &endpoints)?;
        self.cell_log = Some(AppendFile::create(&dir.join("cells.jsonl"))?);
        Ok(())
    }

    fn log_line(&mut self, unix: Option<i64>, users: i64, cells: &[Cell]) -> Result<()> {
        if let Some(log) = &mut self.cell_log {
            let line = CellLine {
                unix,
                users,
                cells: cells.iter().map(CellText::of).collect(),
            };
            log.write(&(serde_json::to_string(&line).expect("cells serialize") + "\n"))?;
            log.flush()?;
        }
        Ok(())
    }

    /// The next second to flush.
    pub fn next_second(&self) -> i64 {
        self.next
    }

    /// Ends the window earlier (a stop request).
    pub fn end_window(&mut self, end: f64) {
        self.window.end = self.window.end.min(end);
    }

    /// Takes the next second from the recorder and writes it out.
    pub fn flush_second(&mut self, rec: &Recorder) -> Result<SecondView> {
        let t = self.next;
        self.next += 1;
        let cells = rec.take(Slot::Second(t));
        // Users at the end of this second, not at flush time (a stop may have ended them).
        let users_delta = rec.take_users(Slot::Second(t));
        self.users += users_delta;
        self.log_line(Some(t), users_delta, &cells)?;
        let users = self.users.max(0) as usize;
        let phase = self.window.phase(t);
        let covered = self.window.covered(t);
        // Locust's Requests/s is a rate: over the part of the second the run covered.
        let rate_over = if covered > 0.0 { covered } else { 1.0 };
        let mut view = SecondView {
            unix: t,
            offset: t as f64 - self.window.start,
            users,
            ..Default::default()
        };
        if phase == Phase::Steady {
            self.steady_seconds += 1;
        }
        let mut all_second = Cell::default();
        let mut all_total = Cell::default();
        for (i, cell) in cells.iter().enumerate() {
            let ep = &rec.endpoints()[i];
            let totals = &mut self.totals[i];
            totals.window.merge(cell);
            if phase == Phase::Steady {
                totals.steady.merge(cell);
                totals.samples.rps.push(cell.count() as f64);
                totals.samples.failures.push(cell.failures() as f64);
                if !cell.ok.is_empty() {
                    totals
                        .samples
                        .p95_ms
                        .push(csv::ms(cell.ok.value_at_quantile(0.95)));
                }
            }
            self.timeline.write(&csv::timeline_row(&csv::TimelineRow {
                unix: t,
                offset: t as f64 - self.window.start,
                covered,
                phase: phase.as_str(),
                method: &ep.method,
                name: &ep.name,
                kind: ep.kind,
                users,
                cell,
            }))?;
            let at = t as f64 - self.window.start.floor();
            if !cell.ok.is_empty() {
                self.hlog
                    .write(&csv::hlog_line(&self.tags[i], at, 1.0, &cell.ok))?;
            }
            for (k, (_, h)) in cell.phases.iter().flat_map(|p| p.each()).enumerate() {
                if !h.is_empty() {
                    self.hlog
                        .write(&csv::hlog_line(&self.phase_tags[i][k], at, 1.0, h))?;
                }
            }
            if ep.kind == Kind::Task {
                continue;
            }
            self.locust[i].merge(cell);
            let (sec_all, tot_all) = (cell.all(), self.locust[i].all());
            self.history.write(&csv::history_row(
                t,
                users,
                &ep.method,
                &ep.name,
                &RowFigures::of(cell, &sec_all, rate_over),
                &RowFigures::of(&self.locust[i], &tot_all, 1.0),
            ))?;
            all_second.merge(cell);
            all_total.merge(&self.locust[i]);
            view.requests += cell.count();
            view.failures += cell.failures();
            view.refused += cell.refused;
            view.timed_out += cell.timed_out;
            view.total_failures += self.locust[i].failures();
            let short = ep.name.rsplit('/').next().unwrap_or(&ep.name);
            let p95 = if cell.ok.is_empty() {
                0.0
            } else {
                csv::ms(cell.ok.value_at_quantile(0.95))
            };
            view.endpoints.push((
                format!("{} {short}", ep.method),
                cell.count(),
                p95,
                cell.failures(),
            ));
        }
        let (sec_all, tot_all) = (all_second.all(), all_total.all());
        self.history.write(&csv::history_row(
            t,
            users,
            "",
            "Aggregated",
            &RowFigures::of(&all_second, &sec_all, rate_over),
            &RowFigures::of(&all_total, &tot_all, 1.0),
        ))?;
        self.timeline.flush()?;
        self.history.flush()?;
        self.hlog.flush()?;
        Ok(view)
    }

    /// Flushes every second before the window's end still held, takes the drain, closes the
    /// per-second files, writes `stats.csv` and `failures.csv`; returns the per-endpoint
    /// summaries and the aggregate of every request. `drain_s`: from the deadline to the last
    /// completion.
    pub fn finish(
        mut self,
        rec: &Recorder,
        dir: &Path,
        drain_s: f64,
    ) -> Result<(Vec<EndpointSummary>, Figures)> {
        while (self.next as f64) < self.window.end {
            self.flush_second(rec)?;
        }
        let drained = rec.take(Slot::Drain);
        let users_delta = rec.take_users(Slot::Drain);
        self.log_line(None, users_delta, &drained)?;
        if let Some(log) = self.cell_log.take() {
            log.finish()?;
        }
        self.timeline.finish()?;
        self.history.finish()?;
        self.hlog.finish()?;
        let window_s = (self.window.end - self.window.start).max(1e-9);
        let steady_s = self.steady_seconds as f64;
        let mut stats = csv::stats_header();
        let mut everything = Cell::default();
        let mut out = Vec::new();
        for (i, t) in self.totals.iter().enumerate() {
            let ep = &rec.endpoints()[i];
            let w = &t.window;
            let drain = &drained[i];
            let (phases, opened, closed) = phase_summary(w.phases.as_deref());
            out.push(EndpointSummary {
                method: ep.method.clone(),
                name: ep.name.clone(),
                task: ep.task.clone(),
                kind: ep.kind,
                total: figures(&w.ok, w.count(), w.failures(), window_s),
                steady: figures(
                    &t.steady.ok,
                    t.steady.count(),
                    t.steady.failures(),
                    steady_s,
                ),
                failed: (w.failures() > 0)
                    .then(|| figures(&w.failed, w.failures(), w.failures(), window_s)),
                drain: Drain {
                    count: drain.count(),
                    failures: drain.failures(),
                    seconds: drain_s,
                },
                timed_out: w.timed_out + drain.timed_out,
                // Corrected latency covers the whole window: the arrivals dropped at the deadline
                // are in it, as late as they were at least.
                corrected: w
                    .corrected
                    .as_ref()
                    .map(|c| figures(c, c.len(), w.failures(), window_s)),
                samples: t.samples.clone(),
                histograms: Histograms {
                    steady: encode(&t.steady.ok),
                    total: encode(&w.ok),
                    corrected: w.corrected.as_ref().map(encode).unwrap_or_default(),
                },
                phases,
                opened,
                closed,
            });
            if ep.kind == Kind::Request {
                // Locust's meaning: the whole run (drain included), every request's latency.
                let mut whole = self.locust[i].clone();
                whole.merge(drain);
                let all = whole.all();
                stats.push_str(&csv::stats_row(
                    &ep.method,
                    &ep.name,
                    &RowFigures::of(&whole, &all, window_s + drain_s),
                ));
                everything.merge(&whole);
            }
        }
        let all = everything.all();
        stats.push_str(&csv::stats_row(
            "",
            "Aggregated",
            &RowFigures::of(&everything, &all, window_s + drain_s),
        ));
        crate::results::write_atomic(&dir.join("stats.csv"), stats.as_bytes())?;
        let mut failures = csv::FAILURES_HEADER.to_string();
        for g in rec.failure_groups() {
            failures.push_str(&csv::failure_row(
                &g.method, &g.name, &g.class, &g.message, g.count,
            ));
        }
        crate::results::write_atomic(&dir.join("failures.csv"), failures.as_bytes())?;
        // Every request of every endpoint in the window (tasks are units, not requests).
        let mut window_requests = Cell::default();
        for (t, ep) in self.totals.iter().zip(rec.endpoints()) {
            if ep.kind == Kind::Request {
                window_requests.merge(&t.window);
            }
        }
        let aggregated = figures(
            &window_requests.ok,
            window_requests.count(),
            window_requests.failures(),
            window_s,
        );
        Ok((out, aggregated))
    }

    /// Whole steady seconds flushed so far.
    pub fn steady_seconds(&self) -> u64 {
        self.steady_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_and_last_seconds_are_partial_and_warmup_is_whole_seconds() {
        let w = Window {
            start: 1000.192,
            warmup_end: 1001.692,
            end: 1005.192,
        };
        assert_eq!(w.phase(1000), Phase::Partial);
        assert!((w.covered(1000) - 0.808).abs() < 1e-9);
        assert_eq!(w.phase(1001), Phase::Warmup);
        assert_eq!(
            w.phase(1002),
            Phase::Steady,
            "the first whole second after 1.5 s of warm-up"
        );
        assert_eq!(w.phase(1004), Phase::Steady);
        assert_eq!(w.phase(1005), Phase::Partial);
        assert!((w.covered(1005) - 0.192).abs() < 1e-9);
        assert_eq!(w.covered(1006), 0.0);
    }

    #[test]
    fn histograms_round_trip_through_their_text() {
        let mut h = super::super::recorder::new_hist();
        for v in [10u64, 20, 30_000] {
            h.record(v).unwrap();
        }
        let back = decode(&encode(&h)).unwrap();
        assert_eq!((back.len(), back.max()), (3, h.max()));
        assert!(decode("").unwrap().is_empty());
    }
}
