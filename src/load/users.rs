//! How virtual users are driven over a run.
//!
//! * Closed model: N virtual users, started at once or at a spawn rate, each looping over its
//!   tasks with an optional wait until the run ends.
//! * Open model: sessions start on a schedule (constant or linearly ramping rate) with a cap on
//!   sessions in flight. A session that waits for a slot is late: its corrected latency is its
//!   service time plus that wait (exactly its raw latency when the schedule is kept), and the
//!   arrivals still waiting at the deadline are counted as dropped, their lateness in the
//!   corrected latency too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::pool::EnginePool;
use super::shared::Shared;
use crate::error::{Error, Result};
use crate::results::Arrivals;
use crate::trial::model::{SpawnSpec, WaitSpec};

/// Starts the closed model's users (at once, or at the spawn rate until the deadline).
pub(super) async fn closed_model(
    pool: &EnginePool,
    shared: Arc<Shared>,
    users: u32,
    start: Instant,
    deadline: Instant,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let spawn_gap = match shared.phase.spawn {
        // All at once: queued on their threads' own run queues together, so each is polled
        // in turn at once (spawned one by one from outside, a busy thread would take in one
        // new user every few dozen polls: ten thousand users would trickle in over seconds).
        SpawnSpec::AllAtOnce => {
            let users = (0..users as usize).map(|u| user_loop(shared.clone(), u, stop.clone()));
            return pool.spawn_together(users.collect()).await;
        }
        SpawnSpec::Rate(r) => Duration::from_secs_f64(1.0 / r.0),
    };
    let mut handles = Vec::with_capacity(users as usize);
    for user in 0..users as usize {
        let at = start + spawn_gap * user as u32;
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => {}
            _ = stop.cancelled() => break,
        }
        if Instant::now() >= deadline {
            break;
        }
        handles.push(pool.spawn(user_loop(shared.clone(), user, stop.clone())));
    }
    handles
}

/// The wait after an iteration that began at `began`.
fn think_time(wait: WaitSpec, began: Instant) -> Duration {
    match wait {
        WaitSpec::None => Duration::ZERO,
        WaitSpec::Constant(d) => d.0,
        WaitSpec::Between(a, b) => {
            let (lo, hi) = (a.0.as_secs_f64(), b.0.as_secs_f64());
            Duration::from_secs_f64(if hi > lo {
                rand::thread_rng().gen_range(lo..hi)
            } else {
                lo
            })
        }
        WaitSpec::Pacing(p) => p.0.saturating_sub(began.elapsed()),
    }
}

/// One closed-model user: its tasks in a loop, backing off from a refused connection, until
/// the stop.
async fn user_loop(shared: Arc<Shared>, user: usize, stop: CancellationToken) {
    shared.recorder.user_started();
    let runner = shared.runner();
    let mut ctx = shared.ctx(user);
    let mut backoff = Duration::ZERO;
    let mut tasks = 0;
    while !stop.is_cancelled() {
        let began = Instant::now();
        for job in &shared.jobs {
            if stop.is_cancelled() {
                break;
            }
            runner.run(job, &mut ctx).await;
            tasks += 1;
        }
        // A refused connection: back off (50 ms doubling to 2 s) instead of hammering.
        backoff = if std::mem::take(&mut ctx.connect_failed) {
            (backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(2))
        } else {
            Duration::ZERO
        };
        let wait = backoff.max(think_time(shared.phase.wait, began));
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => break,
            }
        }
    }
    shared.account(&ctx, tasks);
    shared.recorder.user_stopped();
}

/// Seconds since start at which arrival `k` is due, for a rate ramping linearly from `r0` to
/// `r1` over `d` seconds: solves `r0·t + (r1−r0)·t²/(2d) = k`.
pub fn arrival_time(k: f64, r0: f64, r1: f64, d: f64) -> f64 {
    let a = (r1 - r0) / (2.0 * d);
    if a.abs() < 1e-12 {
        return k / r0;
    }
    (-r0 + (r0 * r0 + 4.0 * a * k).sqrt()) / (2.0 * a)
}

/// Arrivals due before `d` seconds: the schedule's own count.
pub fn arrivals_due(r0: f64, r1: f64, d: f64) -> u64 {
    // The integral of the rate over the run, rounded up (arrival 0 is at t = 0).
    ((r0 + r1) / 2.0 * d).ceil().max(0.0) as u64
}

/// Runs the open model's schedule until the deadline (or a stop), then waits for the sessions
/// in flight; `counts` gets the arrivals scheduled, started and dropped.
pub(super) async fn open_model(
    shared: Arc<Shared>,
    arrival: crate::trial::model::ArrivalSpec,
    start: Instant,
    deadline: Instant,
    stop: CancellationToken,
    counts: Arc<std::sync::Mutex<Arrivals>>,
) {
    let slots = Arc::new(Semaphore::new(arrival.max_in_flight.max(1) as usize));
    let (r0, r1) = (
        arrival.rate.0,
        arrival.to.map(|r| r.0).unwrap_or(arrival.rate.0),
    );
    let d = (deadline - start).as_secs_f64();
    let due_of = |k: u64| start + Duration::from_secs_f64(arrival_time(k as f64, r0, r1, d));
    let mut sessions = tokio::task::JoinSet::new();
    let mut started = 0u64;
    let mut dropped_from = None;
    for k in 0u64.. {
        let due = due_of(k);
        if due >= deadline {
            break;
        }
        // On schedule: sleep until due, and only a wait for a slot makes it late (the timer's
        // own jitter is the generator's, not the target's). Behind schedule: late since due.
        // The run's own deadline also fires `stop`: a stop at the deadline is the deadline, and
        // the arrivals still due are dropped, not forgotten. Biased to the due time: when the
        // engine wakes late with both ready (a stalled thread near the deadline), an arrival due
        // before the deadline starts late rather than being dropped by a coin toss.
        let at_deadline = || Instant::now() + DEADLINE_SLACK >= deadline;
        let base = if Instant::now() < due {
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = stop.cancelled() => {
                    if at_deadline() {
                        dropped_from = Some(k);
                    }
                    break;
                }
            }
            Instant::now()
        } else {
            due
        };
        let permit = tokio::select! {
            biased;
            p = slots.clone().acquire_owned() => p.expect("semaphore open"),
            _ = tokio::time::sleep_until(deadline.into()) => { dropped_from = Some(k); break }
            _ = stop.cancelled() => {
                if at_deadline() {
                    dropped_from = Some(k);
                }
                break;
            }
        };
        let lateness = Instant::now().saturating_duration_since(base);
        started += 1;
        let shared = shared.clone();
        sessions.spawn(async move {
            let runner = shared.runner();
            let mut ctx = shared.ctx(k as usize);
            ctx.lateness = Some(lateness);
            shared.recorder.user_started();
            for job in &shared.jobs {
                runner.run(job, &mut ctx).await;
            }
            shared.account(&ctx, shared.jobs.len() as u64);
            shared.recorder.user_stopped();
            drop(permit);
        });
        while let Some(done) = sessions.try_join_next() {
            reraise(done);
        }
    }
    // Arrivals still waiting at the deadline: dropped, and as late as the deadline at least.
    let scheduled = arrivals_due(r0, r1, d);
    if let Some(first) = dropped_from {
        let unit = shared.jobs.first().map(|j| j.unit);
        for k in first..scheduled {
            let due = due_of(k);
            if due >= deadline {
                break;
            }
            if let Some(unit) = unit {
                shared.recorder.record_dropped(
                    unit,
                    deadline - Duration::from_micros(1),
                    deadline - due,
                );
            }
        }
    }
    *counts.lock().expect("arrivals lock") = Arrivals {
        scheduled,
        started,
        dropped: if dropped_from.is_some() {
            scheduled.saturating_sub(started)
        } else {
            0
        },
    };
    while let Some(done) = sessions.join_next().await {
        reraise(done);
    }
}

/// How close to the deadline a stop counts as the deadline (timers fire a little early or late).
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

/// A session's panic becomes the open model's own, so the run fails as the closed model does.
fn reraise(done: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Waits for the workers, at most `grace` (then they are aborted). A panic in any of them is an
/// error: a run whose users crashed must never read as a success.
pub async fn join_workers(
    workers: Vec<tokio::task::JoinHandle<()>>,
    grace: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + grace;
    let mut panics = Vec::new();
    for w in workers {
        let abort = w.abort_handle();
        match tokio::time::timeout_at(deadline, w).await {
            Ok(Err(e)) if e.is_panic() => {
                let p = e.into_panic();
                panics.push(
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a load task panicked".into()),
                );
            }
            Ok(_) => {}
            Err(_) => abort.abort(),
        }
    }
    if panics.is_empty() {
        Ok(())
    } else {
        Err(Error::Internal(format!(
            "{} load task(s) panicked: {}",
            panics.len(),
            panics[0]
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_follow_the_ramp() {
        // Constant: k / r.
        assert!((arrival_time(10.0, 5.0, 5.0, 10.0) - 2.0).abs() < 1e-9);
        // Ramp 0→20/s over 10 s: 100 arrivals in total, the last at t = 10.
        assert!((arrival_time(100.0, 0.0, 20.0, 10.0) - 10.0).abs() < 1e-6);
        // Half the arrivals come in the last ~29 % of the time.
        assert!((arrival_time(50.0, 0.0, 20.0, 10.0) - 50f64.sqrt()).abs() < 1e-6);
        assert_eq!(arrivals_due(20.0, 20.0, 10.0), 200);
        assert_eq!(arrivals_due(20.0, 100.0, 10.0), 600);
    }

    #[tokio::test]
    async fn a_panicking_user_fails_the_run() {
        let ok = tokio::spawn(async {});
        let boom = tokio::spawn(async { panic!("boom in a task") });
        let err = join_workers(vec![ok, boom], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Internal(ref m) if m.contains("boom in a task")),
            "{err}"
        );
        assert_eq!(err.exit_code(), crate::error::exit::INTERNAL);
        let slow = tokio::spawn(tokio::time::sleep(Duration::from_secs(60)));
        let started = Instant::now();
        join_workers(vec![slow], Duration::from_millis(100))
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "aborted after the grace"
        );
    }
}
