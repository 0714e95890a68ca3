//! The time a generator fleet's command on AWS may take, as Systems Manager allows it: the
//! `AWS-RunShellScript` document refuses an `executionTimeout` over 48 hours, and one worker's
//! command holds its whole phase plus what comes before and after it. `validate` refuses a
//! phase that cannot fit; the coordinator gives each command exactly these bounds.

use std::time::Duration;

/// The largest `executionTimeout` `AWS-RunShellScript` accepts (172 800 s).
pub const EXECUTION_TIMEOUT_MAX: Duration = Duration::from_secs(172_800);

/// The longest wait the coordinator puts between sending the commands and the fleet's common
/// start (the workers' preparation and the measured fetch time); a larger measurement is cut
/// to it.
pub const START_MARGIN_MAX: Duration = Duration::from_secs(600);

/// After the phase's deadline and its request timeout: the worker writes its files and the
/// script uploads them.
pub const UPLOAD_ALLOWANCE: Duration = Duration::from_secs(60);

/// Beyond the worker's own bound, before the agent kills the command: the script's fetch at the
/// start and its upload at the end.
pub const AGENT_SLACK: Duration = Duration::from_secs(120);

/// How long a worker may run (the script's `timeout` on it): its start margin, the phase, the
/// request timeout of the last requests and the writing of its files.
pub fn worker_bound(
    start_margin: Duration,
    phase: Duration,
    request_timeout: Duration,
) -> Duration {
    start_margin.min(START_MARGIN_MAX) + phase + request_timeout + UPLOAD_ALLOWANCE
}

/// The `executionTimeout` of a worker's command.
pub fn execution_timeout(worker_bound: Duration) -> Duration {
    worker_bound + AGENT_SLACK
}

/// The longest phase a fleet on AWS can run with this request timeout.
pub fn longest_phase(request_timeout: Duration) -> Duration {
    EXECUTION_TIMEOUT_MAX.saturating_sub(execution_timeout(worker_bound(
        START_MARGIN_MAX,
        Duration::ZERO,
        request_timeout,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_phase_fills_the_execution_timeout_exactly() {
        let rt = Duration::from_secs(30);
        let longest = longest_phase(rt);
        assert_eq!(
            execution_timeout(worker_bound(START_MARGIN_MAX, longest, rt)),
            EXECUTION_TIMEOUT_MAX
        );
        assert!(longest < Duration::from_secs(48 * 3600));
        assert!(longest > Duration::from_secs(47 * 3600));
    }
}
