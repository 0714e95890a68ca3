//! A phase in flight, from its first instant to its summary: [`Running::start`] fixes the clock
//! and the window, opens the per-second files and starts the flusher, the generator's watch and
//! the users; [`Running::end`] waits for the deadline (or a stop), ends the window and gives the
//! requests in flight their grace (the drain); [`Ended::summarise`] writes the run's files and
//! its summary. Each owns the lifetimes the next one needs, so none travels further.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::aggregate::{Aggregator, Window};
use super::flush::{flush_loop, FlushCtx};
use super::generator::{GeneratorSeconds, GeneratorWatch};
use super::pool::EnginePool;
use super::progress::Progress;
use super::recorder::{Clock, Kind, Recorder};
use super::shared::Shared;
use super::users::{closed_model, join_workers, open_model};
use super::watch::{self, DeadTargetWatch};
use crate::error::{Error, Result};
use crate::results::{self, unix_now, Arrivals, RunSummary, Unanswered};
use crate::trial::LoadPhase;

/// How long requests in flight may go on after a stop request (or a dead target).
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// A run's summary as far as its phase and window say (load, tasks, times); the figures are
/// the caller's. One engine and a fleet's merge both start from it.
pub fn phase_summary(phase: &LoadPhase, start_unix: f64, end_unix: f64) -> RunSummary {
    RunSummary {
        run_id: phase.run_id.clone(),
        iteration: phase.iteration,
        users: phase.users,
        arrival_rate: phase.arrival.map(|a| a.rate.0),
        arrival_rate_to: phase.arrival.and_then(|a| a.to.map(|r| r.0)),
        tasks: phase.tasks.iter().map(|t| t.name().to_string()).collect(),
        started_at: rfc3339(start_unix),
        ended_at: rfc3339(end_unix),
        started_unix: start_unix,
        duration_s: end_unix - start_unix,
        warmup_s: phase.warmup.as_secs_f64(),
        ..RunSummary::default()
    }
}

fn rfc3339(unix: f64) -> String {
    chrono::DateTime::from_timestamp_micros((unix * 1e6) as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// What a phase needs to start: the users' shared state and threads, where its files go.
pub(super) struct Start<'a> {
    /// The phase.
    pub phase: &'a LoadPhase,
    /// Its folder.
    pub dir: &'a Path,
    /// What every user shares (its recorder is replaced by the run's, on the run's clock).
    pub shared: Shared,
    /// The engine's threads.
    pub pool: Arc<EnginePool>,
    /// How progress shows.
    pub progress: Progress,
    /// A fleet worker's common start (unix seconds): it also writes the lossless per-second
    /// cells, and its deadline is the fleet's, so one that started late ends with the others
    /// and the merged window is the phase's (its lateness is reported, not hidden in a longer
    /// run).
    pub fleet_start: Option<f64>,
    /// A stop request.
    pub cancel: &'a CancellationToken,
}

/// A phase whose users are running.
pub(super) struct Running {
    phase: LoadPhase,
    dir: PathBuf,
    start: Instant,
    start_unix: f64,
    deadline: Instant,
    shared: Arc<Shared>,
    pool: Arc<EnginePool>,
    aggregator: Arc<AsyncMutex<Aggregator>>,
    stop: CancellationToken,
    dead: Arc<Mutex<Option<String>>>,
    generator: Arc<Mutex<GeneratorSeconds>>,
    watch: GeneratorWatch,
    flusher: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    arrivals: Arc<Mutex<Arrivals>>,
}

impl Running {
    /// Starts the clock now: the recorder on it, the per-second files, the flusher, the
    /// generator's watch, then the users.
    pub async fn start(s: Start<'_>) -> Result<Running> {
        let Start {
            phase,
            dir,
            mut shared,
            pool,
            progress,
            fleet_start,
            cancel,
        } = s;
        let start = Instant::now();
        let start_unix = unix_now();
        let length = match fleet_start {
            Some(common) => Duration::from_secs_f64(
                (common + phase.duration.as_secs_f64() - start_unix).max(0.0),
            )
            .min(phase.duration),
            None => phase.duration,
        };
        let deadline = start + length;
        let endpoints = shared.recorder.endpoints().to_vec();
        let recorder = Arc::new(Recorder::new(
            endpoints,
            Clock::new(start, start_unix, deadline),
        ));
        shared.recorder = recorder.clone();
        let window = Window {
            start: start_unix,
            warmup_end: start_unix + phase.warmup.as_secs_f64(),
            end: start_unix + length.as_secs_f64(),
        };
        let mut aggregator = Aggregator::create(dir, &recorder, window)?;
        if fleet_start.is_some() {
            aggregator.log_cells(dir, recorder.endpoints())?;
        }
        let aggregator = Arc::new(AsyncMutex::new(aggregator));
        let stop = cancel.child_token();
        let dead = Arc::new(Mutex::new(None::<String>));
        let watch = GeneratorWatch::start(&pool);
        let generator = Arc::new(Mutex::new(GeneratorSeconds::create(dir, &pool)?));
        let flusher = tokio::spawn(flush_loop(FlushCtx {
            agg: aggregator.clone(),
            rec: recorder,
            stop: stop.clone(),
            progress,
            phase: phase.clone(),
            dead: dead.clone(),
            addresses: watch::addresses(&shared.target),
            pool: pool.clone(),
            generator: generator.clone(),
        }));
        let shared = Arc::new(shared);
        let arrivals = Arc::new(Mutex::new(Arrivals::default()));
        let workers = match (&phase.arrival, phase.users) {
            (Some(a), _) => vec![pool.spawn(open_model(
                shared.clone(),
                *a,
                start,
                deadline,
                stop.clone(),
                arrivals.clone(),
            ))],
            (None, Some(users)) => {
                closed_model(&pool, shared.clone(), users, start, deadline, stop.clone()).await
            }
            (None, None) => Vec::new(),
        };
        Ok(Running {
            phase: phase.clone(),
            dir: dir.to_path_buf(),
            start,
            start_unix,
            deadline,
            shared,
            pool,
            aggregator,
            stop,
            dead,
            generator,
            watch,
            flusher,
            workers,
            arrivals,
        })
    }

    /// Waits for the deadline or a stop (a request, or the dead-target watch), ends the window
    /// there, and lets the requests in flight finish: until their timeout at the deadline,
    /// [`STOP_GRACE`] after a stop.
    pub async fn end(self) -> Ended {
        tokio::select! {
            _ = tokio::time::sleep_until(self.deadline.into()) => {}
            _ = self.stop.cancelled() => {}
        }
        let stopped_early = self.stop.is_cancelled();
        self.stop.cancel();
        let window_end = Instant::now().min(self.deadline);
        self.shared.recorder.end_window(window_end);
        let grace = if stopped_early {
            STOP_GRACE
        } else {
            self.phase.request_timeout + Duration::from_secs(2)
        };
        let joined = join_workers(self.workers, grace).await;
        let drain_s = Instant::now()
            .saturating_duration_since(window_end)
            .as_secs_f64();
        let _ = self.flusher.await;
        let mut watch = self.watch;
        watch.stop(&self.pool);
        Ended {
            window_s: (window_end - self.start).as_secs_f64(),
            drain_s,
            joined,
            phase: self.phase,
            dir: self.dir,
            start_unix: self.start_unix,
            shared: self.shared,
            pool: self.pool,
            aggregator: self.aggregator,
            dead: self.dead,
            generator: self.generator,
            watch,
            arrivals: self.arrivals,
        }
    }
}

/// A phase whose users have stopped.
pub(super) struct Ended {
    window_s: f64,
    drain_s: f64,
    joined: Result<()>,
    phase: LoadPhase,
    dir: PathBuf,
    start_unix: f64,
    shared: Arc<Shared>,
    pool: Arc<EnginePool>,
    aggregator: Arc<AsyncMutex<Aggregator>>,
    dead: Arc<Mutex<Option<String>>>,
    generator: Arc<Mutex<GeneratorSeconds>>,
    watch: GeneratorWatch,
    arrivals: Arc<Mutex<Arrivals>>,
}

impl Ended {
    /// Writes the run's last seconds, its files and `summary.json` (whatever happened: nothing
    /// measured is lost), stops the engine's threads; then fails if a user panicked or the
    /// target died.
    pub async fn summarise(self, cancel: &CancellationToken) -> Result<RunSummary> {
        let recorder = self.shared.recorder.clone();
        let mut agg = Arc::try_unwrap(self.aggregator)
            .map_err(|_| Error::Infra("aggregator still shared".into()))?
            .into_inner();
        agg.end_window(self.start_unix + self.window_s);
        let steady_s = agg.steady_seconds() as f64;
        let (endpoints, aggregated) = agg.finish(&recorder, &self.dir, self.drain_s)?;
        let (requests, timed_out) = endpoints
            .iter()
            .filter(|e| e.kind == Kind::Request)
            .fold((0, 0), |(n, t), e| {
                (n + e.total.count + e.drain.count, t + e.timed_out)
            });
        let generator = {
            let mut g = self.generator.lock().expect("generator lock");
            let lag = g.finish(&self.pool);
            self.watch.health(
                &self.pool,
                lag,
                requests,
                self.shared.tasks_done.load(Ordering::Relaxed),
                self.shared
                    .checks
                    .lock()
                    .expect("checks lock")
                    .estimated_ns(),
            )
        };
        stop_threads(self.pool).await?;
        let arrivals = self
            .phase
            .arrival
            .map(|_| self.arrivals.lock().expect("arrivals lock").clone());
        let summary = RunSummary {
            arrivals,
            steady_s,
            endpoints,
            aggregated,
            failures: recorder.failure_groups(),
            generator,
            interrupted: cancel.is_cancelled(),
            unanswered: Unanswered {
                timed_out,
                at_stop: recorder.in_flight(),
                request_timeout_s: self.phase.request_timeout.as_secs_f64(),
            },
            ..phase_summary(
                &self.phase,
                self.start_unix,
                self.start_unix + self.window_s,
            )
        };
        results::write_json(&self.dir.join("summary.json"), &summary)?;
        self.joined?;
        if let Some(why) = self.dead.lock().expect("dead lock").take() {
            return Err(Error::Infra(why));
        }
        // Too few requests for the watch's window to judge: the whole run is judged, unless a
        // stop request cut it short or it was shorter than the window itself.
        let (no, refused_at) = watch::no_answer(&recorder);
        let judged = self.phase.duration.as_secs() >= DeadTargetWatch::WINDOW_S as u64;
        if judged && !cancel.is_cancelled() && watch::run_got_no_answers(requests, no) {
            let addresses = watch::addresses(&self.shared.target);
            return Err(Error::Infra(watch::message(no, refused_at, &addresses)));
        }
        Ok(summary)
    }
}

/// Stops the engine's threads once nothing else holds them.
async fn stop_threads(pool: Arc<EnginePool>) -> Result<()> {
    let pool = Arc::try_unwrap(pool)
        .map_err(|_| Error::Internal("the engine's threads are still shared".into()))?;
    tokio::task::spawn_blocking(move || pool.shutdown())
        .await
        .map_err(|e| Error::Internal(format!("stopping the engine's threads: {e}")))
}
