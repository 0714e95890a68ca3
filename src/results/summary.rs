//! The self-describing records a run leaves behind (`summary.json`), read back by reports and
//! comparisons. Latencies are in milliseconds (three decimals: microseconds kept); rates per
//! second.
//!
//! What each figure means (computed in one place each: `load::aggregate`):
//! * `total`: every request completed in the measured window (start → deadline, or → the stop
//!   request), warm-up and the partial first and last seconds included; rates divide by the
//!   window's length. Latency percentiles are of successes; `failed` has the failures'.
//! * `steady`: only whole UTC seconds after the warm-up and before the deadline; rates divide by
//!   their number. This is what "steady" means in every report.
//! * `drain`: requests in flight at the deadline that completed after it, reported apart.
//! * Percentiles over several seconds, runs or endpoints come from merged histograms
//!   (`histograms` keeps them), never from means of percentiles.

use serde::{Deserialize, Serialize};

/// Latency and throughput figures of one endpoint over some span.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    /// Requests completed (success + failure).
    pub count: u64,
    /// Failed requests.
    pub failures: u64,
    /// Requests per second over the span.
    pub rps: f64,
    /// Failures per second over the span.
    pub failures_per_s: f64,
    /// Mean latency, ms.
    pub mean_ms: f64,
    /// Minimum latency, ms.
    pub min_ms: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Maximum, ms.
    pub max_ms: f64,
    /// Seconds the rates are over.
    #[serde(default)]
    pub seconds: f64,
}

impl Figures {
    /// Failures as a percentage of requests.
    pub fn failure_rate_pct(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            100.0 * self.failures as f64 / self.count as f64
        }
    }
}

/// Per-second samples of the steady state, for confidence intervals and significance.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SteadySamples {
    /// Requests per second, one per second.
    pub rps: Vec<f64>,
    /// p95 latency per second, ms (seconds with no requests omitted).
    pub p95_ms: Vec<f64>,
    /// Failures per second.
    pub failures: Vec<f64>,
}

/// Requests completing after the deadline (in flight when it came).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Drain {
    /// How many.
    pub count: u64,
    /// Of which failed.
    pub failures: u64,
    /// From the deadline to the last of them, s.
    pub seconds: f64,
}

/// Merged histograms of an endpoint (HdrHistogram V2, deflate, base64; µs), for pooling across
/// runs, workers and endpoints.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Histograms {
    /// Successes in the steady seconds.
    pub steady: String,
    /// Successes in the whole window.
    pub total: String,
    /// Latency from the intended start over the window (open model tasks, dropped arrivals
    /// included).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub corrected: String,
}

/// One phase of an endpoint's requests over the window (ms): how many requests reached it and
/// how long it took them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseFigures {
    /// Requests timed in this phase.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Maximum, ms.
    pub max_ms: f64,
    /// The histogram (as [`Histograms`] keeps them), for pooling across runs and workers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub histogram: String,
}

/// Where an endpoint's requests spent their time over the window, as k6 splits it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseSummary {
    /// TCP handshakes (only requests that opened a connection).
    pub connect: PhaseFigures,
    /// TLS handshakes, likewise.
    pub tls: PhaseFigures,
    /// Request written → first byte of the response (time to first byte).
    pub wait: PhaseFigures,
    /// First byte → last byte of the response.
    pub receive: PhaseFigures,
}

/// One endpoint's results in a run: a request kind, or a task (a unit of several requests).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointSummary {
    /// HTTP method (Locust's `Type`), or `TASK`.
    pub method: String,
    /// Request name as Locust named it, or the task's unit (`verify session`).
    pub name: String,
    /// The task that issues it.
    pub task: String,
    /// A request or a task.
    #[serde(default)]
    pub kind: crate::results::cells::Kind,
    /// The measured window.
    pub total: Figures,
    /// Whole seconds after warm-up, before the deadline.
    pub steady: Figures,
    /// Latency of the failed requests in the window (their count is `total.failures`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<Figures>,
    /// Completions after the deadline.
    #[serde(default)]
    pub drain: Drain,
    /// Requests that got no answer within the request timeout (window and drain; failures
    /// of class `timeout`).
    #[serde(default)]
    pub timed_out: u64,
    /// Latency from the intended start (open model tasks; coordinated-omission corrected) over
    /// the window, the dropped arrivals' lateness included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected: Option<Figures>,
    /// Steady-state per-second samples.
    pub samples: SteadySamples,
    /// Merged histograms.
    #[serde(default)]
    pub histograms: Histograms,
    /// Where its requests' time went over the window (requests only; empty for a task).
    #[serde(default)]
    pub phases: PhaseSummary,
    /// Connections its requests opened in the window.
    #[serde(default)]
    pub opened: u64,
    /// Kept-alive connections its requests found closed by the server in the window.
    #[serde(default)]
    pub closed: u64,
}

/// Failures of one kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailureGroup {
    /// HTTP method.
    pub method: String,
    /// Request name.
    pub name: String,
    /// Class: status, timeout, connect, reset, transport, body, failed, contraindicated, warning.
    pub class: String,
    /// Message (status detail, error text).
    pub message: String,
    /// How many.
    pub count: u64,
}

/// How hard the load generator itself worked: its own threads only, not the process (an
/// in-process stand-in is not the generator), and whether other work on the machine delayed
/// it. `saturated` and `machine_busy` are two verdicts: a generator can be either, both or
/// neither.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GeneratorHealth {
    /// CPU time of the load engine's threads / (wall time × their number), %.
    #[serde(alias = "cpu_pct_of_available")]
    pub cpu_pct: f64,
    /// Time the engine's threads were running or ready to run (waiting for a core) / (wall
    /// time × their number), %: what they wanted, where `cpu_pct` is what they got.
    #[serde(default)]
    pub busy_pct: f64,
    /// Time the engine's threads were ready to run but waited for a core / (wall time × their
    /// number), %: what other work on the machine took from them.
    #[serde(default)]
    pub wait_pct: f64,
    /// Time the engine's threads ran / the time they could have run (wall time less their wait
    /// for a core), %: how busy the generator was by its own work, whatever else the machine
    /// did. What `saturated` reads.
    #[serde(default)]
    pub own_busy_pct: f64,
    /// The load engine's threads.
    #[serde(alias = "cores")]
    pub threads: usize,
    /// Median lateness of a 100 ms timer on the engine's runtime, ms.
    #[serde(default)]
    pub timer_lag_p50_ms: f64,
    /// 99th percentile of it, ms.
    #[serde(default)]
    pub timer_lag_p99_ms: f64,
    /// Worst lateness, ms.
    pub max_timer_lag_ms: f64,
    /// 99th percentile of the lateness less the time its thread waited for a core meanwhile,
    /// ms: the part the generator's own work caused. What `saturated` reads.
    #[serde(default)]
    pub own_timer_lag_p99_ms: f64,
    /// CPU of the engine's threads per request sent, µs.
    #[serde(default)]
    pub cpu_us_per_request: f64,
    /// CPU the semantic checks took (token minting, EAR signature and nonce), µs per task.
    #[serde(default)]
    pub check_cpu_us_per_task: f64,
    /// How busy the whole machine was over the run (every core, every process), %.
    #[serde(default)]
    pub machine_cpu_pct: f64,
    /// The generator's own threads were busy enough to delay the load: they ran at least 90 %
    /// of the time they could run, or their own work made a timer late by 20 ms or more at
    /// p99. The target may have been held back by the generator, not its own limits.
    pub saturated: bool,
    /// Other work on the machine delayed the generator: its threads waited for a core at least
    /// 10 % of the time, or waiting for a core made its timers 10 ms late or more at p99. The
    /// figures may carry the machine's delays; the generator itself is judged by `saturated`.
    #[serde(default)]
    pub machine_busy: bool,
}

impl GeneratorHealth {
    /// `own_busy_pct` at or above which the generator is saturated.
    pub const SATURATED_OWN_BUSY_PCT: f64 = 90.0;
    /// `own_timer_lag_p99_ms` at or above which the generator is saturated.
    pub const SATURATED_OWN_LAG_MS: f64 = 20.0;
    /// `wait_pct` at or above which the machine was busy.
    pub const BUSY_MACHINE_WAIT_PCT: f64 = 10.0;
    /// Timer lateness for want of a core (p99 all less p99 own) at or above which the machine
    /// was busy, ms.
    pub const BUSY_MACHINE_LAG_MS: f64 = 10.0;

    /// Sets the two verdicts from the figures.
    pub fn judge(mut self) -> GeneratorHealth {
        self.saturated = self.own_busy_pct >= Self::SATURATED_OWN_BUSY_PCT
            || self.own_timer_lag_p99_ms >= Self::SATURATED_OWN_LAG_MS;
        self.machine_busy = self.wait_pct >= Self::BUSY_MACHINE_WAIT_PCT
            || self.timer_lag_p99_ms - self.own_timer_lag_p99_ms >= Self::BUSY_MACHINE_LAG_MS;
        self
    }

    /// The verdict in one line, with the figures behind it: what `bench` prints and the
    /// report's generator row says.
    pub fn verdict_line(&self) -> String {
        let generator = if self.saturated {
            "saturated"
        } else {
            "not saturated"
        };
        let machine = if self.machine_busy {
            "the machine was busy"
        } else {
            "the machine was not busy"
        };
        format!(
            "generator {generator} (own work {:.0} % of the time it could run, own timer lag p99 {:.1} ms); {machine} (waited for a core {:.0} % of the time, timer lag p99 {:.1} ms, all cores {:.0} % busy)",
            self.own_busy_pct,
            self.own_timer_lag_p99_ms,
            self.wait_pct,
            self.timer_lag_p99_ms,
            self.machine_cpu_pct
        )
    }
}

/// The open model's arrivals.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Arrivals {
    /// Due before the deadline, per the schedule.
    pub scheduled: u64,
    /// Started.
    pub started: u64,
    /// Still waiting for a slot at the deadline: never sent. Their lateness (deadline − due)
    /// is in the corrected latency.
    pub dropped: u64,
}

impl Arrivals {
    /// Adds another generator's arrivals.
    pub fn add(&mut self, other: &Arrivals) {
        self.scheduled += other.scheduled;
        self.started += other.started;
        self.dropped += other.dropped;
    }
}

/// Everything a run produced, in summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    /// Run id (folder name).
    pub run_id: String,
    /// 1-based iteration.
    pub iteration: u32,
    /// Virtual users (closed model).
    pub users: Option<u32>,
    /// Arrivals per second at start (open model).
    pub arrival_rate: Option<f64>,
    /// Arrivals per second at the end, when the rate ramps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_rate_to: Option<f64>,
    /// The open model's arrivals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<Arrivals>,
    /// Task names.
    pub tasks: Vec<String>,
    /// UTC start, RFC 3339.
    pub started_at: String,
    /// UTC end, RFC 3339.
    pub ended_at: String,
    /// Unix time of the start, seconds (the timeline's zero).
    pub started_unix: f64,
    /// Measured window (start → deadline or stop request), s; drain excluded.
    pub duration_s: f64,
    /// Whole steady seconds (after warm-up, before the deadline).
    #[serde(default)]
    pub steady_s: f64,
    /// Warm-up, s.
    pub warmup_s: f64,
    /// Per endpoint.
    pub endpoints: Vec<EndpointSummary>,
    /// Every request of every endpoint together (mixed endpoints: read per endpoint first).
    pub aggregated: Figures,
    /// Failures grouped by endpoint, class and message.
    pub failures: Vec<FailureGroup>,
    /// Load generator health.
    pub generator: GeneratorHealth,
    /// The run ended early (Ctrl-C).
    #[serde(default)]
    pub interrupted: bool,
    /// Requests the target never answered.
    #[serde(default)]
    pub unanswered: Unanswered,
    /// With a generator fleet: one row per worker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<WorkerRow>,
    /// Why the results are partial (a generator worker failed or stopped reporting), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<String>,
    /// What a reader must know about these figures beside that (a fleet's worker that started
    /// late, and by how much).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Requests of a run that got no answer: timed out, or still waiting when the run stopped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Unanswered {
    /// Timed out (no answer within the request timeout), every endpoint together.
    pub timed_out: u64,
    /// Still waiting for an answer when the run stopped (abandoned after the stop's grace).
    pub at_stop: u64,
    /// The request timeout, s.
    pub request_timeout_s: f64,
}

impl Unanswered {
    /// True when every request got an answer.
    pub fn none(&self) -> bool {
        self.timed_out == 0 && self.at_stop == 0
    }
}

/// What one generator worker of a fleet did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerRow {
    /// `w1`, `w2`, … (with the instance id on AWS).
    pub name: String,
    /// Its share of the users (closed model).
    pub users: Option<u32>,
    /// Its share of the arrival rate (open model).
    pub arrival_rate: Option<f64>,
    /// Requests it recorded (window and drain).
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// Its own generator health (CPU, busy, timer lag, saturated).
    pub generator: GeneratorHealth,
    /// `finished`, or `lost` (failed or stopped reporting; its seconds so far are merged).
    pub status: String,
    /// What happened, when lost (with the last line of its log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When lost: the last lines of its log (or of its command's output when the log never
    /// came back).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// Seconds it started after the fleet's common start, when it was late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_s: Option<f64>,
}

impl RunSummary {
    /// The endpoint with this name, if the run had it.
    pub fn endpoint(&self, name: &str) -> Option<&EndpointSummary> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// The load as people say it: `10 users`, `20/s`, `20→100/s`.
    pub fn load_label(&self) -> String {
        match (self.users, self.arrival_rate, self.arrival_rate_to) {
            (Some(u), _, _) => u.to_string(),
            (None, Some(a), Some(b)) if (a - b).abs() > 1e-9 => format!("{a}→{b}/s"),
            (None, Some(a), _) => format!("{a}/s"),
            _ => String::new(),
        }
    }
}

/// Row counts per store table.
pub type StoreCounts = std::collections::BTreeMap<String, u64>;

/// One store count, labelled (`stores.json` holds them in the order they were taken).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoreSnapshot {
    /// When (`before clear`, `after u010-verify`, `after iteration 2`).
    pub label: String,
    /// Unix time.
    pub unix: f64,
    /// The run this follows, if any.
    pub run_id: Option<String>,
    /// Rows per table.
    pub counts: StoreCounts,
}
