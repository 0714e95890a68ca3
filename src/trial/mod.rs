//! Trials as data: parse (strict YAML with positions) → validate → plan. No step here acts on
//! anything; planning performs no I/O beyond reading the files.

pub mod deployment;
pub mod model;
pub mod names;
pub mod plan;
pub mod s3;
pub mod schema;
pub mod share;
pub mod source;
pub mod ssm;
pub mod thresholds;
pub mod validate;

pub use plan::{plan, LoadPhase, Plan, Position, Step};
pub use source::{Diagnostic, Diagnostics};
pub use validate::{load_environment, load_trial, Capacity, Environment, TaskRef, Trial};
