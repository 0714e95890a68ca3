//! The dead-target watch: a target that stopped answering ends the run, named with the address
//! that refused and what to do about it.

use super::recorder::Recorder;

/// Watches for a target that stopped answering: over the last [`DeadTargetWatch::WINDOW_S`]
/// seconds, at least 90 % of a handful of requests failed to connect. Hammering a dead
/// address for the rest of a campaign measures nothing.
#[derive(Debug, Default)]
pub struct DeadTargetWatch {
    seconds: std::collections::VecDeque<(u64, u64)>,
}

impl DeadTargetWatch {
    /// Seconds looked at.
    pub const WINDOW_S: usize = 5;
    /// Fewest requests in the window for a verdict.
    pub const MIN_REQUESTS: u64 = 3;

    /// Takes one second's requests and refused connections; true when the target looks dead.
    pub fn observe(&mut self, requests: u64, refused: u64) -> bool {
        self.seconds.push_back((requests, refused));
        if self.seconds.len() > Self::WINDOW_S {
            self.seconds.pop_front();
        }
        let (n, c) = self
            .seconds
            .iter()
            .fold((0, 0), |(n, c), (a, b)| (n + a, c + b));
        self.seconds.len() == Self::WINDOW_S && n >= Self::MIN_REQUESTS && c * 10 >= n * 9
    }
}

/// The message of a dead target, naming the address that refused and what to do.
pub(super) fn dead_target_message(rec: &Recorder) -> String {
    let refused = rec
        .failure_groups()
        .into_iter()
        .find(|g| g.class == "connect")
        .map(|g| g.message)
        .unwrap_or_else(|| "connection refused".into());
    let hint = refused
        .rsplit(" at ")
        .next()
        .map(super::tasks::unreachable_hint)
        .unwrap_or_default();
    format!(
        "the target stopped answering: nearly every request for {} s failed to connect ({refused}); {hint}",
        DeadTargetWatch::WINDOW_S
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_target_is_five_seconds_of_refusals_not_one_bad_second() {
        let mut w = DeadTargetWatch::default();
        for _ in 0..5 {
            assert!(!w.observe(100, 0));
        }
        assert!(!w.observe(10, 10), "one bad second");
        let mut verdict = false;
        for _ in 0..4 {
            // Backed-off users: one refused attempt a second.
            verdict = w.observe(1, 1);
        }
        assert!(verdict, "five seconds of refusals");
        let mut quiet = DeadTargetWatch::default();
        for i in 1..=5 {
            let n = if i == 5 { 2 } else { 0 };
            assert!(!quiet.observe(n, n), "too few requests to judge");
        }
    }
}
