//! Upper bounds on what a trial may ask for: beyond them a value is a mistake (a unit slip, a
//! pasted number), not a plan, and would exhaust the generator or the account.

use std::time::Duration;

/// Virtual users of one run.
pub const USERS: i64 = 100_000;
/// Sessions in flight (open model).
pub const IN_FLIGHT: i64 = 100_000;
/// Iterations of the run sequence.
pub const ITERATIONS: i64 = 1_000;
/// Instances of one auto-scaling group.
pub const CAPACITY: i64 = 1_000;
/// Generator workers (processes or instances).
pub const GENERATORS: i64 = 256;
/// One run.
pub const RUN: Duration = Duration::from_secs(7 * 24 * 3600);
/// A request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
/// Waiting for readiness.
pub const READY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// A pause or a think time.
pub const PAUSE: Duration = Duration::from_secs(24 * 3600);
/// The infra sampler's interval, at least.
pub const SAMPLE_MIN: Duration = Duration::from_millis(100);
/// Waiting for CloudWatch to settle.
pub const SETTLE: Duration = Duration::from_secs(15 * 60);
