//! Trials as data: parse (strict YAML with positions) → validate → plan. No step here acts on
//! anything; planning performs no I/O beyond reading the files.

mod check;
pub mod checked;
pub mod database;
pub mod deployment;
pub mod environment;
pub mod limits;
pub mod load_phase;
pub mod model;
pub mod names;
pub mod plan;
pub mod quantities;
pub mod s3;
pub mod schema;
pub mod share;
pub mod source;
pub mod ssm;
pub mod thresholds;
pub mod validate;

pub use checked::{Capacity, TaskRef, Trial};
pub use environment::{load_environment, Environment};
pub use load_phase::LoadPhase;
pub use plan::{plan, Plan, Position, Step};
pub use source::{Diagnostic, Diagnostics};
pub use validate::load_trial;
