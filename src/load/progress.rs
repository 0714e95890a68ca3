//! What a run shows while it goes: one line per second (a live bar on a terminal, a plain line
//! every 5 s otherwise), at most [`PROGRESS_COLUMNS`] wide.

use super::aggregate::SecondView;
use crate::trial::LoadPhase;

/// How the engine reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing (tests, benchmarks).
    Quiet,
    /// A live bar on a terminal, plain lines every 5 s otherwise.
    Show,
}

/// Width of the live progress line (one terminal row; numbers are never cut).
pub const PROGRESS_COLUMNS: usize = 80;

/// One second of a run as a line of at most [`PROGRESS_COLUMNS`]: where in the run, warm-up or
/// steady, the load (users, or the arrival rate now), throughput, the worst endpoint's p95 and
/// the failures so far. Only the run id is shortened when it is long.
pub fn progress_line(phase: &LoadPhase, v: &SecondView) -> String {
    let at = (v.offset.max(0.0) as u64 + 1).min(phase.duration.as_secs().max(1));
    let stage = if v.offset < phase.warmup.as_secs_f64() {
        "warm-up"
    } else {
        "steady"
    };
    let load = match (&phase.arrival, phase.users) {
        (Some(a), _) => {
            let to = a.to.map(|t| t.0).unwrap_or(a.rate.0);
            let share = (v.offset / phase.duration.as_secs_f64().max(1e-9)).clamp(0.0, 1.0);
            format!("{:.1}/s in", a.rate.0 + (to - a.rate.0) * share)
        }
        (None, _) => format!("{} users", v.users),
    };
    let p95 = v.endpoints.iter().map(|e| e.2).fold(0.0, f64::max);
    let figures = format!(
        "{at}/{}s {stage} {load} {}/s p95 {p95:.1}ms fail {}",
        phase.duration.as_secs(),
        v.requests,
        v.total_failures
    );
    let room = PROGRESS_COLUMNS.saturating_sub(figures.chars().count() + 1);
    let id: String = if phase.run_id.chars().count() > room {
        let keep: String = phase.run_id.chars().take(room.saturating_sub(1)).collect();
        format!("{keep}…")
    } else {
        phase.run_id.clone()
    };
    format!("{id} {figures}").trim_start().to_string()
}

/// Shows one second: on the bar, or as a plain line every 5 s.
pub(super) fn show(
    bar: &Option<indicatif::ProgressBar>,
    progress: Progress,
    phase: &LoadPhase,
    v: &SecondView,
) {
    let at = v.offset.max(0.0) as u64 + 1;
    match bar {
        Some(b) => {
            b.set_position(at);
            b.set_message(progress_line(phase, v));
        }
        None if progress == Progress::Show && at % 5 == 0 => {
            crate::terminal::say(&progress_line(phase, v));
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_progress_line_fits_80_columns_with_every_number_whole() {
        use crate::trial::model::{ArrivalSpec, NonceMode, SpawnSpec, WaitSpec};
        use crate::trial::quantities::Rate;
        let mut phase = LoadPhase {
            run_id: "it12-u1000-well-known+provision+verify+discovery".into(),
            iteration: 12,
            users: Some(1000),
            arrival: None,
            tasks: vec![],
            duration: Duration::from_secs(3600),
            spawn: SpawnSpec::AllAtOnce,
            wait: WaitSpec::None,
            warmup: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            nonce: NonceMode::Fixed,
            fleet: false,
        };
        let v = SecondView {
            unix: 0,
            offset: 30.2,
            users: 1000,
            requests: 123_456,
            failures: 7,
            refused: 0,
            timed_out: 0,
            total_failures: 9_876_543,
            endpoints: vec![("x".into(), 1, 12_345.6, 0), ("y".into(), 1, 3.0, 0)],
        };
        let line = progress_line(&phase, &v);
        assert!(line.chars().count() <= PROGRESS_COLUMNS, "{line}");
        for whole in [
            "31/3600s",
            "warm-up",
            "1000 users",
            "123456/s",
            "p95 12345.6ms",
            "fail 9876543",
        ] {
            assert!(line.contains(whole), "{whole} in {line}");
        }
        assert!(line.starts_with("it12-u1000"), "{line}");
        phase.arrival = Some(ArrivalSpec {
            rate: Rate(20.0),
            to: Some(Rate(100.0)),
            max_in_flight: 10,
        });
        phase.users = None;
        let half = SecondView {
            offset: 1800.0,
            ..v
        };
        let line = progress_line(&phase, &half);
        assert!(
            line.contains("60.0/s in") && line.contains("steady"),
            "{line}"
        );
    }
}
