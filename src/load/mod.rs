//! The load engine. It knows nothing of AWS: it is given base URLs, a release profile and
//! credentials, and produces per-second, per-endpoint results.

pub mod aggregate;
pub mod auth;
pub mod bench;
pub mod dead_target;
pub mod engine;
pub mod http;
pub mod pool;
pub mod recorder;
pub mod tasks;
pub mod tls;

pub use engine::{LoadEngine, Progress, Share};
pub use tasks::Target;
