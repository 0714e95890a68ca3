//! The self-describing records a run leaves behind (`summary.json`), read back by reports and
//! comparisons. Latencies are in milliseconds; rates per second.

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

/// One endpoint's results in a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointSummary {
    /// HTTP method (Locust's `Type`).
    pub method: String,
    /// Request name as Locust named it.
    pub name: String,
    /// The task that issues it.
    pub task: String,
    /// The whole run.
    pub total: Figures,
    /// After warm-up.
    pub steady: Figures,
    /// Latency from the intended start (open model; coordinated-omission corrected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected: Option<Figures>,
    /// Steady-state per-second samples.
    pub samples: SteadySamples,
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

/// How hard the load generator itself worked.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GeneratorHealth {
    /// Process CPU time / wall time, as a percentage of the cores available.
    pub cpu_pct_of_available: f64,
    /// Cores available to the process.
    pub cores: usize,
    /// Worst scheduling lag of a 100 ms timer, ms.
    pub max_timer_lag_ms: f64,
    /// True when the generator, not the target, may have limited the run.
    pub saturated: bool,
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
    /// Task names.
    pub tasks: Vec<String>,
    /// UTC start, RFC 3339.
    pub started_at: String,
    /// UTC end, RFC 3339.
    pub ended_at: String,
    /// Unix time of the start, seconds (the timeline's zero).
    pub started_unix: f64,
    /// Measured duration, s.
    pub duration_s: f64,
    /// Warm-up, s.
    pub warmup_s: f64,
    /// Per endpoint.
    pub endpoints: Vec<EndpointSummary>,
    /// All endpoints together.
    pub aggregated: Figures,
    /// Failures grouped by endpoint, class and message.
    pub failures: Vec<FailureGroup>,
    /// Load generator health.
    pub generator: GeneratorHealth,
    /// The run ended early (Ctrl-C).
    #[serde(default)]
    pub interrupted: bool,
}

impl RunSummary {
    /// The endpoint with this name, if the run had it.
    pub fn endpoint(&self, name: &str) -> Option<&EndpointSummary> {
        self.endpoints.iter().find(|e| e.name == name)
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
