//! The recorder: per endpoint × per second HdrHistograms (µs, 3 significant digits), counts,
//! and failures grouped by endpoint, class and message.
//!
//! Virtual users record into the *current window* (one mutex, held for a histogram increment).
//! Once a second the [`Aggregator`] swaps the window out, appends the second to `timeline.csv`,
//! `stats_history.csv` and `latency.hlog`, and folds it into run totals. Memory stays bounded
//! whatever the run length: only the current window and the totals are histograms.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::error::Result;
use crate::results::csv::{self, RowFigures};
use crate::results::{AppendFile, EndpointSummary, FailureGroup, Figures, SteadySamples};

/// Index of an endpoint registered with the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointId(pub usize);

/// A request kind, named as Locust named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// HTTP method.
    pub method: String,
    /// Request name (`/challenge-response/v1/[SESSION_ID]`).
    pub name: String,
    /// The task issuing it.
    pub task: String,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// An unexpected HTTP status.
    Status,
    /// The request timed out.
    Timeout,
    /// Connection refused or unreachable.
    Connect,
    /// The TLS handshake failed (an untrusted or wrong certificate): permanent, not a refusal.
    Tls,
    /// Connection reset mid-request.
    Reset,
    /// Any other transport error.
    Transport,
    /// The body was not what the contract says (garbage, missing fields).
    Body,
    /// Provisioning answered `status: failed`.
    Failed,
    /// The EAR said `contraindicated`.
    Contraindicated,
    /// The EAR said `warning`.
    Warning,
}

impl FailureClass {
    /// The name used in results.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Status => "status",
            FailureClass::Timeout => "timeout",
            FailureClass::Connect => "connect",
            FailureClass::Tls => "tls",
            FailureClass::Reset => "reset",
            FailureClass::Transport => "transport",
            FailureClass::Body => "body",
            FailureClass::Failed => "failed",
            FailureClass::Contraindicated => "contraindicated",
            FailureClass::Warning => "warning",
        }
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

#[derive(Clone)]
struct Cell {
    hist: Histogram<u64>,
    corrected: Option<Histogram<u64>>,
    ok: u64,
    failed: u64,
    bytes: u64,
}

impl Cell {
    fn new() -> Cell {
        Cell {
            hist: new_hist(),
            corrected: None,
            ok: 0,
            failed: 0,
            bytes: 0,
        }
    }
}

/// Shared by all virtual users of a run.
pub struct Recorder {
    endpoints: Vec<Endpoint>,
    window: Mutex<Vec<Cell>>,
    failures: Mutex<HashMap<(usize, FailureClass, String), u64>>,
    /// Virtual users currently running (for `User Count`).
    pub active_users: AtomicUsize,
    /// Requests that failed to connect, since the start (the dead-target watch reads it).
    pub connect_failures: std::sync::atomic::AtomicU64,
    /// Requests finished (success or failure), since the start.
    pub finished: std::sync::atomic::AtomicU64,
}

/// One finished request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Service time: from sending to the last byte, µs.
    pub service_us: u64,
    /// From the intended start (open model), µs.
    pub corrected_us: Option<u64>,
    /// Response body bytes.
    pub bytes: u64,
    /// Counted as a success.
    pub ok: bool,
}

impl Recorder {
    /// A recorder for these endpoints (ids are their indexes).
    pub fn new(endpoints: Vec<Endpoint>) -> Recorder {
        let window = vec![Cell::new(); endpoints.len()];
        Recorder {
            endpoints,
            window: Mutex::new(window),
            failures: Mutex::new(HashMap::new()),
            active_users: AtomicUsize::new(0),
            connect_failures: Default::default(),
            finished: Default::default(),
        }
    }

    /// The registered endpoints.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Records a finished request (success or failure).
    pub fn record(&self, ep: EndpointId, s: Sample) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        let mut w = self.window.lock().expect("recorder lock");
        let cell = &mut w[ep.0];
        let _ = cell.hist.record(s.service_us.max(1));
        if let Some(c) = s.corrected_us {
            let _ = cell.corrected.get_or_insert_with(new_hist).record(c.max(1));
        }
        cell.bytes += s.bytes;
        if s.ok {
            cell.ok += 1;
        } else {
            cell.failed += 1;
        }
    }

    /// Records why a request failed (call with `record(.., ok: false)`).
    pub fn failure(&self, ep: EndpointId, class: FailureClass, message: &str) {
        if class == FailureClass::Connect {
            self.connect_failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut msg: String = message.chars().take(240).collect();
        if msg.len() < message.len() {
            msg.push('…');
        }
        *self
            .failures
            .lock()
            .expect("recorder lock")
            .entry((ep.0, class, msg))
            .or_default() += 1;
    }

    fn rotate(&self) -> Vec<Cell> {
        let fresh = vec![Cell::new(); self.endpoints.len()];
        std::mem::replace(&mut *self.window.lock().expect("recorder lock"), fresh)
    }

    /// Failures so far, grouped and sorted by count.
    pub fn failure_groups(&self) -> Vec<FailureGroup> {
        let f = self.failures.lock().expect("recorder lock");
        let mut out: Vec<FailureGroup> = f
            .iter()
            .map(|((ep, class, msg), n)| FailureGroup {
                method: self.endpoints[*ep].method.clone(),
                name: self.endpoints[*ep].name.clone(),
                class: class.as_str().into(),
                message: msg.clone(),
                count: *n,
            })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
        out
    }
}

#[derive(Clone)]
struct Totals {
    all: Cell,
    steady: Cell,
    samples: SteadySamples,
}

/// What one second looked like, for live progress.
#[derive(Debug, Clone, Default)]
pub struct SecondView {
    /// Seconds since start.
    pub second: u64,
    /// Users running.
    pub users: usize,
    /// Requests in this second, all endpoints.
    pub requests: u64,
    /// Failures in this second.
    pub failures: u64,
    /// Worst per-endpoint p95 this second, ms.
    pub p95_ms: f64,
    /// Failures so far.
    pub total_failures: u64,
    /// Per endpoint: (short name, requests, p95 ms, failures) in this second.
    pub endpoints: Vec<(String, u64, f64, u64)>,
}

/// Folds windows into totals and writes the per-second files.
pub struct Aggregator {
    start: Instant,
    start_unix: f64,
    warmup: Duration,
    totals: Vec<Totals>,
    second: u64,
    timeline: AppendFile,
    history: AppendFile,
    hlog: AppendFile,
    tags: Vec<String>,
}

fn figures(c: &Cell, seconds: f64) -> Figures {
    let h = &c.hist;
    let count = c.ok + c.failed;
    let q = |q: f64| {
        if h.is_empty() {
            0.0
        } else {
            csv::ms(h.value_at_quantile(q))
        }
    };
    let secs = seconds.max(1e-9);
    Figures {
        count,
        failures: c.failed,
        rps: count as f64 / secs,
        failures_per_s: c.failed as f64 / secs,
        mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
        min_ms: if h.is_empty() { 0.0 } else { csv::ms(h.min()) },
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        max_ms: q(1.0),
    }
}

fn merge(into: &mut Cell, from: &Cell) {
    into.hist
        .add(&from.hist)
        .expect("auto-resizing histograms merge");
    if let Some(c) = &from.corrected {
        into.corrected
            .get_or_insert_with(new_hist)
            .add(c)
            .expect("auto-resizing histograms merge");
    }
    into.ok += from.ok;
    into.failed += from.failed;
    into.bytes += from.bytes;
}

impl Aggregator {
    /// Starts the per-second files of a run in `dir`.
    pub fn create(
        dir: &Path,
        endpoints: &[Endpoint],
        start: Instant,
        start_unix: f64,
        warmup: Duration,
    ) -> Result<Aggregator> {
        let mut timeline = AppendFile::create(&dir.join("timeline.csv"))?;
        timeline.write(csv::TIMELINE_HEADER)?;
        let mut history = AppendFile::create(&dir.join("stats_history.csv"))?;
        history.write(&csv::history_header())?;
        let mut hlog = AppendFile::create(&dir.join("latency.hlog"))?;
        hlog.write(&csv::hlog_header(start_unix))?;
        let empty = Totals {
            all: Cell::new(),
            steady: Cell::new(),
            samples: SteadySamples::default(),
        };
        Ok(Aggregator {
            start,
            start_unix,
            warmup,
            totals: vec![empty; endpoints.len()],
            second: 0,
            timeline,
            history,
            hlog,
            tags: endpoints
                .iter()
                .map(|e| csv::hlog_tag(&e.method, &e.name))
                .collect(),
        })
    }

    /// Takes the recorder's window as the next second and writes it out.
    pub fn flush_second(&mut self, rec: &Recorder) -> Result<SecondView> {
        let cells = rec.rotate();
        let users = rec.active_users.load(Ordering::Relaxed);
        let second = self.second;
        self.second += 1;
        let offset = second as f64;
        let unix = self.start_unix + offset;
        let warm = Duration::from_secs(second) < self.warmup;
        let mut view = SecondView {
            second,
            users,
            ..Default::default()
        };
        let mut all_second = Cell::new();
        let mut all_total = Cell::new();
        for (i, cell) in cells.iter().enumerate() {
            let ep = &rec.endpoints[i];
            let count = cell.ok + cell.failed;
            let t = &mut self.totals[i];
            merge(&mut t.all, cell);
            if !warm {
                merge(&mut t.steady, cell);
                t.samples.rps.push(count as f64);
                t.samples.failures.push(cell.failed as f64);
                if !cell.hist.is_empty() {
                    t.samples
                        .p95_ms
                        .push(csv::ms(cell.hist.value_at_quantile(0.95)));
                }
            }
            merge(&mut all_second, cell);
            merge(&mut all_total, &t.all);
            self.timeline.write(&csv::timeline_row(
                second,
                unix,
                &ep.method,
                &ep.name,
                users,
                count,
                cell.failed,
                &cell.hist,
                cell.corrected.as_ref(),
                warm,
            ))?;
            let sec = RowFigures {
                hist: &cell.hist,
                count,
                failures: cell.failed,
                bytes: cell.bytes,
                seconds: 1.0,
            };
            let tot = RowFigures {
                hist: &t.all.hist,
                count: t.all.ok + t.all.failed,
                failures: t.all.failed,
                bytes: t.all.bytes,
                seconds: 1.0,
            };
            self.history.write(&csv::history_row(
                unix as i64,
                users,
                &ep.method,
                &ep.name,
                &sec,
                &tot,
            ))?;
            if !cell.hist.is_empty() {
                self.hlog
                    .write(&csv::hlog_line(&self.tags[i], offset, 1.0, &cell.hist))?;
            }
            view.requests += count;
            view.failures += cell.failed;
            let short = ep.name.rsplit('/').next().unwrap_or(&ep.name);
            let p95 = if cell.hist.is_empty() {
                0.0
            } else {
                csv::ms(cell.hist.value_at_quantile(0.95))
            };
            view.endpoints
                .push((format!("{} {short}", ep.method), count, p95, cell.failed));
            view.total_failures += t.all.failed;
            if !cell.hist.is_empty() {
                view.p95_ms = view.p95_ms.max(csv::ms(cell.hist.value_at_quantile(0.95)));
            }
        }
        let sec = RowFigures {
            hist: &all_second.hist,
            count: all_second.ok + all_second.failed,
            failures: all_second.failed,
            bytes: all_second.bytes,
            seconds: 1.0,
        };
        let tot = RowFigures {
            hist: &all_total.hist,
            count: all_total.ok + all_total.failed,
            failures: all_total.failed,
            bytes: all_total.bytes,
            seconds: 1.0,
        };
        self.history.write(&csv::history_row(
            unix as i64,
            users,
            "",
            "Aggregated",
            &sec,
            &tot,
        ))?;
        self.timeline.flush()?;
        self.history.flush()?;
        self.hlog.flush()?;
        Ok(view)
    }

    /// Seconds flushed so far.
    pub fn seconds(&self) -> u64 {
        self.second
    }

    /// Closes the per-second files, writes `stats.csv` and `failures.csv`, and returns the
    /// per-endpoint summaries and the aggregate.
    pub fn finish(
        self,
        rec: &Recorder,
        dir: &Path,
        elapsed: Duration,
    ) -> Result<(Vec<EndpointSummary>, Figures)> {
        let _ = self.start;
        self.timeline.finish()?;
        self.history.finish()?;
        self.hlog.finish()?;
        let secs = elapsed.as_secs_f64();
        let steady_secs = (secs - self.warmup.as_secs_f64()).max(1e-9);
        let mut stats = csv::stats_header();
        let mut agg = Cell::new();
        let mut out = Vec::new();
        for (i, t) in self.totals.iter().enumerate() {
            let ep = &rec.endpoints[i];
            merge(&mut agg, &t.all);
            let row = RowFigures {
                hist: &t.all.hist,
                count: t.all.ok + t.all.failed,
                failures: t.all.failed,
                bytes: t.all.bytes,
                seconds: secs,
            };
            stats.push_str(&csv::stats_row(&ep.method, &ep.name, &row));
            out.push(EndpointSummary {
                method: ep.method.clone(),
                name: ep.name.clone(),
                task: ep.task.clone(),
                total: figures(&t.all, secs),
                steady: figures(&t.steady, steady_secs),
                corrected: t.all.corrected.as_ref().map(|c| {
                    let cell = Cell {
                        hist: c.clone(),
                        corrected: None,
                        ok: t.all.ok,
                        failed: t.all.failed,
                        bytes: 0,
                    };
                    figures(&cell, secs)
                }),
                samples: t.samples.clone(),
            });
        }
        let row = RowFigures {
            hist: &agg.hist,
            count: agg.ok + agg.failed,
            failures: agg.failed,
            bytes: agg.bytes,
            seconds: secs,
        };
        stats.push_str(&csv::stats_row("", "Aggregated", &row));
        crate::results::write_atomic(&dir.join("stats.csv"), stats.as_bytes())?;
        let mut failures = csv::FAILURES_HEADER.to_string();
        for g in rec.failure_groups() {
            failures.push_str(&csv::failure_row(
                &g.method, &g.name, &g.class, &g.message, g.count,
            ));
        }
        crate::results::write_atomic(&dir.join("failures.csv"), failures.as_bytes())?;
        Ok((out, figures(&agg, secs)))
    }
}
