//! The dead-target watch: a target that refuses connections, or accepts them and never
//! answers, stops the run (and the campaign, exit 3) instead of being hammered for the rest of
//! it, measuring nothing.
//!
//! "No answer" is a refused connection or a request that timed out (`runs.request-timeout`).
//! Over the last [`DeadTargetWatch::WINDOW_S`] seconds, at least 90 % of a handful of requests
//! got none: a refusing target is stopped within about 5 s, a hanging one within 5 s of its
//! first timeouts. A run with too few requests for the window to judge (a user or two, requests
//! that time out only in the drain) is judged the same way at its end, the requests abandoned
//! when it stopped counted as unanswered; a run shorter than the window is not judged.

use std::collections::VecDeque;

use super::recorder::Recorder;

/// The watch, fed once per flushed second.
#[derive(Debug, Default)]
pub struct DeadTargetWatch {
    /// Per second of the window: requests over, of which with no answer.
    seconds: VecDeque<(u64, u64)>,
}

/// The requests of a run that got no answer, by why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoAnswer {
    /// Refused connections.
    pub refused: u64,
    /// Requests that timed out.
    pub timed_out: u64,
    /// Requests still waiting when the run stopped (abandoned).
    pub waiting: u64,
}

impl DeadTargetWatch {
    /// Seconds looked at.
    pub const WINDOW_S: usize = 5;
    /// Fewest requests in the window for a verdict.
    pub const MIN_REQUESTS: u64 = 3;

    /// Takes one second's requests over and, of those, the ones with no answer (refused or
    /// timed out); true when the target looks dead.
    pub fn observe(&mut self, requests: u64, no_answer: u64) -> bool {
        self.seconds.push_back((requests, no_answer));
        if self.seconds.len() > Self::WINDOW_S {
            self.seconds.pop_front();
        }
        let (n, c) = self
            .seconds
            .iter()
            .fold((0, 0), |(n, c), (a, b)| (n + a, c + b));
        self.seconds.len() == Self::WINDOW_S && n >= Self::MIN_REQUESTS && mostly(n, c)
    }
}

/// The `host:port` of every service a target's requests go to.
pub fn addresses(target: &super::tasks::Target) -> Vec<String> {
    let mut out: Vec<String> = [&target.provisioning, &target.verification]
        .into_iter()
        .chain(target.http_tasks.values().map(|t| &t.url))
        .filter_map(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The refusals and timeouts of a run so far, and what is in flight, as the watch's figures;
/// with a refusal's message (it names the address).
pub(super) fn no_answer(rec: &Recorder) -> (NoAnswer, Option<String>) {
    let mut no = NoAnswer {
        waiting: rec.in_flight(),
        ..Default::default()
    };
    let mut refused_at = None;
    for g in rec.failure_groups() {
        match g.class.as_str() {
            "connect" => {
                no.refused += g.count;
                refused_at.get_or_insert(g.message);
            }
            "timeout" => no.timed_out += g.count,
            _ => {}
        }
    }
    (no, refused_at)
}

/// At least 90 % of `n` requests got no answer (`c` of them).
fn mostly(n: u64, c: u64) -> bool {
    c * 10 >= n * 9
}

/// A whole run's verdict: of `requests` over (window and drain) plus those abandoned, nearly
/// none got an answer.
pub fn run_got_no_answers(requests: u64, no: NoAnswer) -> bool {
    let n = requests + no.waiting;
    n > 0 && mostly(n, no.refused + no.timed_out + no.waiting)
}

/// The message of a dead target: what it did, where, and what to check. `refused_at` is a
/// refusal's message (it names the address); `addresses` are the target's.
pub fn message(no: NoAnswer, refused_at: Option<String>, addresses: &[String]) -> String {
    if no.refused >= no.timed_out + no.waiting {
        let refused = refused_at.unwrap_or_else(|| "connection refused".into());
        let hint = refused
            .rsplit(" at ")
            .next()
            .map(super::tasks::unreachable_hint)
            .unwrap_or_default();
        return format!(
            "the target stopped answering: nearly every request failed to connect ({refused}); {hint}"
        );
    }
    let waiting = if no.waiting > 0 {
        format!(", {} still waiting when the run stopped", no.waiting)
    } else {
        String::new()
    };
    format!(
        "the target stopped answering: it accepts connections but nearly every request got no answer ({} timed out{waiting}) at {}; is the service up and not stuck?",
        no.timed_out,
        addresses.join(", ")
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

    #[test]
    fn timeouts_count_as_refusals_do() {
        // Four users whose requests all time out, then wait for their next timeout.
        let mut w = DeadTargetWatch::default();
        let seconds = [4, 0, 0, 0, 0, 4, 0];
        let verdicts: Vec<bool> = seconds.iter().map(|&n| w.observe(n, n)).collect();
        assert_eq!(verdicts, [false, false, false, false, true, true, true]);
        // A slow target that answers is alive, timeouts among its answers or not.
        let mut slow = DeadTargetWatch::default();
        for _ in 0..20 {
            assert!(!slow.observe(10, 2));
        }
    }

    #[test]
    fn a_run_with_nearly_no_answer_is_dead_and_the_message_names_the_address() {
        let two_timed_out = NoAnswer {
            timed_out: 2,
            ..Default::default()
        };
        assert!(run_got_no_answers(2, two_timed_out));
        assert!(!run_got_no_answers(100, two_timed_out));
        assert!(!run_got_no_answers(0, NoAnswer::default()));
        let abandoned = NoAnswer {
            waiting: 2,
            ..Default::default()
        };
        assert!(run_got_no_answers(0, abandoned), "sent, never answered");
        let hang = message(two_timed_out, None, &["127.0.0.1:9".into()]);
        assert!(
            hang.contains("accepts connections") && hang.contains("at 127.0.0.1:9"),
            "{hang}"
        );
        let refused = message(
            NoAnswer {
                refused: 5,
                ..Default::default()
            },
            Some("Connection refused (os error 111) at 127.0.0.1:9".into()),
            &[],
        );
        assert!(
            refused.contains("failed to connect") && refused.contains("trialrunner standin"),
            "{refused}"
        );
    }
}
