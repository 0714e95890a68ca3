//! `rehearsal.json` beside a run of a rehearsal: the twin's own view of the run's window, so the
//! report can tell the modelled deployment's figures from this machine's (what the machine added
//! to the instances' modelled work), show when each instance launched, was routed to and served,
//! and how many database connections the instances' pools opened each second. Written by
//! `rehearsal::campaign`, read by the report.

use crate::trial::model::ServiceRole;

/// When an instance of the twin launched, was routed to, served, and was gone (Unix seconds):
/// the twin's own record, beside what the emulator and the client saw.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InstanceRecord {
    /// The EC2 instance id in the emulator.
    pub id: String,
    /// Its service.
    pub service: ServiceRole,
    /// When the twin started it (its launch).
    pub launched: f64,
    /// When the balancer began routing to it (its spin-up over).
    pub routable: f64,
    /// When its VTS was up: its answers succeed from here on.
    pub ready: f64,
    /// When it left its group.
    pub gone: Option<f64>,
}

/// What one instance of the twin models, in plain units.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TwinModel {
    /// Requests one instance serves at once.
    pub workers: usize,
    /// Each one's occupancy, ms.
    pub service_ms: f64,
    /// Added occupancy per stored row read, µs.
    pub per_row_us: f64,
    /// Opening one database connection, ms.
    pub db_open_ms: f64,
    /// A launched instance's spin-up, s.
    pub spin_up_s: f64,
    /// Then its VTS not up, s.
    pub not_ready_s: f64,
}

/// One second as the twin saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TwinSecond {
    /// The UTC second.
    pub unix: i64,
    /// Requests whose worker was freed in it.
    pub requests: u64,
    /// What this machine added to their modelled occupancy (p95, ms): real work or a late timer.
    pub overhead_p95_ms: Option<f64>,
    /// Database connections the instances' pools opened in it.
    pub pool_opens: u64,
}

/// The twin's own view of a window (`rehearsal.json` beside a run).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TwinObservations {
    /// What an instance models.
    pub model: Option<TwinModel>,
    /// The machine's overhead over the window (p95, ms).
    pub overhead_p95_ms: Option<f64>,
    /// Per second.
    pub seconds: Vec<TwinSecond>,
    /// Instances that lived in the window.
    pub instances: Vec<InstanceRecord>,
}
