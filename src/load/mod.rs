//! The load engine. It knows nothing of AWS: it is given base URLs, a release profile and
//! credentials, and produces per-second, per-endpoint results.

pub mod aggregate;
pub mod auth;
pub mod bench;
pub mod engine;
mod flush;
pub mod generator;
pub mod http;
pub mod pool;
pub mod progress;
pub mod recorder;
mod running;
mod shared;
pub mod tasks;
pub mod tls;
pub mod users;
pub mod watch;

pub use engine::{LoadEngine, Share};
pub use progress::Progress;
pub use running::{phase_summary, STOP_GRACE};
pub use tasks::Target;
