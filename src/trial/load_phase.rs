//! One load run of a plan ([`LoadPhase`]): who loads what, for how long; and the request
//! timeout a run has when the trial gives none. Below the plan and the split of users over
//! generators, which both hand phases on.

use std::time::Duration;

use serde::Serialize;

use super::checked::TaskRef;
use super::model::{ArrivalSpec, NonceMode, SpawnSpec, WaitSpec};

/// A request's timeout when the trial gives none (`runs.request-timeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One load run: who loads what, for how long.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LoadPhase {
    /// Unique within the trial, names the run's folder (`u010-verify`, `it2-u015-provision`).
    pub run_id: String,
    /// 1-based iteration.
    pub iteration: u32,
    /// Virtual users (closed model).
    pub users: Option<u32>,
    /// Arrival rate (open model).
    pub arrival: Option<ArrivalSpec>,
    /// Tasks each user loops over.
    pub tasks: Vec<TaskRef>,
    /// Length of the run.
    pub duration: Duration,
    /// How users start.
    pub spawn: SpawnSpec,
    /// Think time.
    pub wait: WaitSpec,
    /// Seconds marked as warm-up.
    pub warmup: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Nonce handling for `verify`.
    pub nonce: NonceMode,
    /// One device identity per user.
    pub fleet: bool,
}

impl LoadPhase {
    /// Time until every user has started.
    pub fn ramp_time(&self) -> Duration {
        match (self.spawn, self.users) {
            (SpawnSpec::Rate(r), Some(n)) if r.0 > 0.0 => Duration::from_secs_f64(n as f64 / r.0),
            _ => Duration::ZERO,
        }
    }
}
