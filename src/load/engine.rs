//! The load engine: runs one [`LoadPhase`] against a [`Target`].
//!
//! * Closed model: N virtual users (tokio tasks), started at once or at a spawn rate, each
//!   looping over its tasks with an optional wait until the run ends.
//! * Open model: sessions start on a schedule (constant or linearly ramping rate) with a cap on
//!   sessions in flight; a session that waits for a slot is late, and its first request's latency
//!   is also measured from its *intended* start (coordinated-omission corrected), beside the raw
//!   service time.
//!
//! When the run ends (deadline or cancel), users stop starting tasks; requests in flight finish
//! or time out. A flusher task turns each second into rows on disk as the run goes.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use tokio::sync::{Mutex as AsyncMutex, Semaphore};
use tokio_util::sync::CancellationToken;

use super::recorder::{Aggregator, Recorder, SecondView};
use super::tasks::{plan_jobs, DeviceMaterial, Job, Runner, Target, UserCtx};
use crate::error::{Error, Result};
use crate::provider::LoadRunner;
use crate::results::{self, unix_now, GeneratorHealth, RunSummary};
use crate::trial::model::{SpawnSpec, WaitSpec};
use crate::trial::{LoadPhase, TaskRef};

/// How the engine reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing (tests, benchmarks).
    Quiet,
    /// A live bar on a terminal, plain lines every 5 s otherwise.
    Show,
}

/// The load engine for one target.
pub struct LoadEngine {
    target: Arc<Target>,
    progress: Progress,
    /// Seed of the synthetic device fleet.
    pub fleet_seed: u64,
}

fn rfc3339(unix: f64) -> String {
    chrono::DateTime::from_timestamp_micros((unix * 1e6) as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// CPU time (user + system) of this process.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

impl LoadEngine {
    /// An engine for `target`.
    pub fn new(target: Target, progress: Progress) -> LoadEngine {
        LoadEngine {
            target: Arc::new(target),
            progress,
            fleet_seed: 0x7472_6961_6c72,
        }
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    fn client(&self, phase: &LoadPhase) -> Result<reqwest::Client> {
        self.target
            .tls
            .builder()
            .timeout(phase.request_timeout)
            .connect_timeout(phase.request_timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(phase.users.unwrap_or(64) as usize + 16)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Infra(format!("building the HTTP client: {e}")))
    }

    /// Provisions each device once before a verify run (unmeasured, like the seed's `on_start`).
    async fn provision_devices(
        &self,
        client: &reqwest::Client,
        devices: &[DeviceMaterial],
    ) -> Vec<String> {
        let recorder = Recorder::new(vec![super::recorder::Endpoint {
            method: "POST".into(),
            name: "setup".into(),
            task: "setup".into(),
        }]);
        let runner = Runner {
            client,
            target: &self.target,
            recorder: &recorder,
            token_endpoint: None,
            ear_key: None,
        };
        let job = Job::Provision {
            submit: super::recorder::EndpointId(0),
        };
        for (i, d) in devices.iter().enumerate() {
            let mut ctx = UserCtx {
                device: d,
                nonce: Default::default(),
                intended: None,
                submissions: 0,
                user: i,
                connect_failed: false,
            };
            runner.run(&job, &mut ctx).await;
        }
        recorder
            .failure_groups()
            .into_iter()
            .map(|g| format!("{}: {} ({}×)", g.class, g.message, g.count))
            .collect()
    }

    /// Runs a phase and writes its files into `dir`.
    pub async fn run_phase(
        &self,
        phase: &LoadPhase,
        dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<RunSummary> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let client = self.client(phase)?;
        let (jobs, endpoints, token_endpoint) = plan_jobs(&phase.tasks, &self.target);
        let device_count = if phase.fleet {
            phase.users.unwrap_or(1).max(1)
        } else {
            1
        };
        let release = self.target.release.clone();
        let seed = self.fleet_seed;
        let devices: Vec<DeviceMaterial> = tokio::task::spawn_blocking(move || {
            (0..device_count)
                .map(|i| DeviceMaterial::new(&release, seed, i))
                .collect()
        })
        .await
        .map_err(|e| Error::Infra(format!("preparing device material: {e}")))?;
        if phase.tasks.contains(&TaskRef::Verify) {
            let problems = self.provision_devices(&client, &devices).await;
            if !problems.is_empty() {
                tracing::warn!(run = %phase.run_id, "provisioning the devices before verify failed: {}", problems.join("; "));
            }
        }
        let recorder = Arc::new(Recorder::new(endpoints));
        let start = Instant::now();
        let start_unix = unix_now();
        let cpu_before = process_cpu();
        let aggregator =
            Aggregator::create(dir, recorder.endpoints(), start, start_unix, phase.warmup)?;
        let aggregator = Arc::new(AsyncMutex::new(aggregator));
        let stop = cancel.child_token();
        let lag = Arc::new(std::sync::Mutex::new(Duration::ZERO));
        let dead = Arc::new(std::sync::Mutex::new(None::<String>));

        let flusher = tokio::spawn(flush_loop(
            aggregator.clone(),
            recorder.clone(),
            start,
            stop.clone(),
            self.progress,
            phase.clone(),
            dead.clone(),
        ));
        let lag_probe = tokio::spawn(lag_probe(lag.clone(), stop.clone()));

        let shared = Arc::new(Shared {
            client,
            target: self.target.clone(),
            recorder: recorder.clone(),
            token_endpoint,
            jobs,
            devices,
            phase: phase.clone(),
        });
        let deadline = start + phase.duration;
        let workers = match (&phase.arrival, phase.users) {
            (Some(a), _) => vec![tokio::spawn(open_model(
                shared.clone(),
                *a,
                start,
                deadline,
                stop.clone(),
            ))],
            (None, Some(users)) => {
                closed_model(shared.clone(), users, start, deadline, stop.clone()).await
            }
            (None, None) => Vec::new(),
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => {}
            // A stop request, or the dead-target watch.
            _ = stop.cancelled() => {}
        }
        let stopped_early = stop.is_cancelled();
        stop.cancel();
        // At the deadline, requests in flight may finish; on a stop they get a moment only.
        let grace = if stopped_early {
            STOP_GRACE
        } else {
            phase.request_timeout + Duration::from_secs(2)
        };
        let joined = join_workers(workers, grace).await;
        let _ = flusher.await;
        let _ = lag_probe.await;
        let elapsed = start.elapsed();
        // The last partial second.
        let mut agg = Arc::try_unwrap(aggregator)
            .map_err(|_| Error::Infra("aggregator still shared".into()))?
            .into_inner();
        agg.flush_second(&recorder)?;
        let (endpoints, aggregated) = agg.finish(&recorder, dir, elapsed)?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cpu_pct = 100.0 * (process_cpu() - cpu_before).as_secs_f64()
            / elapsed.as_secs_f64().max(1e-9)
            / cores as f64;
        let max_lag_ms = lag.lock().expect("lag lock").as_secs_f64() * 1000.0;
        let summary = RunSummary {
            run_id: phase.run_id.clone(),
            iteration: phase.iteration,
            users: phase.users,
            arrival_rate: phase.arrival.map(|a| a.rate.0),
            tasks: phase.tasks.iter().map(|t| t.name().to_string()).collect(),
            started_at: rfc3339(start_unix),
            ended_at: rfc3339(start_unix + elapsed.as_secs_f64()),
            started_unix: start_unix,
            duration_s: elapsed.as_secs_f64(),
            warmup_s: phase.warmup.as_secs_f64(),
            endpoints,
            aggregated,
            failures: recorder.failure_groups(),
            generator: GeneratorHealth {
                cpu_pct_of_available: cpu_pct,
                cores,
                max_timer_lag_ms: max_lag_ms,
                saturated: cpu_pct >= 90.0 || max_lag_ms >= 50.0,
            },
            interrupted: cancel.is_cancelled(),
        };
        // The files are written whatever happened: nothing measured is lost.
        results::write_json(&dir.join("summary.json"), &summary)?;
        joined?;
        if let Some(why) = dead.lock().expect("dead lock").take() {
            return Err(Error::Infra(why));
        }
        Ok(summary)
    }
}

/// How long requests in flight may go on after a stop request (or a dead target).
pub const STOP_GRACE: Duration = Duration::from_secs(2);

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

/// Watches for a target that stopped answering: over the last [`DeadTargetWatch::WINDOW_S`]
/// seconds, at least 90 % of a handful of requests failed to connect. Hammering a dead
/// address for the rest of a campaign measures nothing.
#[derive(Debug, Default)]
pub struct DeadTargetWatch {
    seconds: std::collections::VecDeque<(u64, u64)>,
    last: (u64, u64),
}

impl DeadTargetWatch {
    /// Seconds looked at.
    pub const WINDOW_S: usize = 5;
    /// Fewest requests in the window for a verdict.
    pub const MIN_REQUESTS: u64 = 3;

    /// Takes the running totals (requests finished, connect failures) at the end of a second;
    /// true when the target looks dead.
    pub fn observe(&mut self, finished: u64, connect_failures: u64) -> bool {
        let d = (
            finished.saturating_sub(self.last.0),
            connect_failures.saturating_sub(self.last.1),
        );
        self.last = (finished, connect_failures);
        self.seconds.push_back(d);
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
fn dead_target_message(rec: &Recorder) -> String {
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

#[async_trait]
impl LoadRunner for LoadEngine {
    async fn run(
        &self,
        phase: &LoadPhase,
        dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<RunSummary> {
        self.run_phase(phase, dir, cancel).await
    }
}

/// What every virtual user of a run shares.
struct Shared {
    client: reqwest::Client,
    target: Arc<Target>,
    recorder: Arc<Recorder>,
    token_endpoint: Option<super::recorder::EndpointId>,
    jobs: Vec<Job>,
    devices: Vec<DeviceMaterial>,
    phase: LoadPhase,
}

impl Shared {
    fn runner(&self) -> Runner<'_> {
        Runner {
            client: &self.client,
            target: &self.target,
            recorder: &self.recorder,
            token_endpoint: self.token_endpoint,
            ear_key: None,
        }
    }

    fn ctx(&self, user: usize) -> UserCtx<'_> {
        UserCtx {
            device: &self.devices[user % self.devices.len()],
            nonce: self.phase.nonce,
            intended: None,
            submissions: 0,
            user,
            connect_failed: false,
        }
    }
}

async fn closed_model(
    shared: Arc<Shared>,
    users: u32,
    start: Instant,
    deadline: Instant,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::with_capacity(users as usize);
    let spawn_gap = match shared.phase.spawn {
        SpawnSpec::AllAtOnce => None,
        SpawnSpec::Rate(r) => Some(Duration::from_secs_f64(1.0 / r.0)),
    };
    for user in 0..users as usize {
        if let Some(gap) = spawn_gap {
            let at = start + gap * user as u32;
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {}
                _ = stop.cancelled() => break,
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        handles.push(tokio::spawn(user_loop(shared.clone(), user, stop.clone())));
    }
    handles
}

async fn user_loop(shared: Arc<Shared>, user: usize, stop: CancellationToken) {
    shared.recorder.active_users.fetch_add(1, Ordering::Relaxed);
    let runner = shared.runner();
    let mut ctx = shared.ctx(user);
    let mut backoff = Duration::ZERO;
    while !stop.is_cancelled() {
        let began = Instant::now();
        for job in &shared.jobs {
            if stop.is_cancelled() {
                break;
            }
            runner.run(job, &mut ctx).await;
        }
        // A refused connection: back off (50 ms doubling to 2 s) instead of hammering.
        backoff = if std::mem::take(&mut ctx.connect_failed) {
            (backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(2))
        } else {
            Duration::ZERO
        };
        let wait = backoff.max(match shared.phase.wait {
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
        });
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => break,
            }
        }
    }
    shared.recorder.active_users.fetch_sub(1, Ordering::Relaxed);
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

async fn open_model(
    shared: Arc<Shared>,
    arrival: crate::trial::model::ArrivalSpec,
    start: Instant,
    deadline: Instant,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(arrival.max_in_flight.max(1) as usize));
    let (r0, r1) = (
        arrival.rate.0,
        arrival.to.map(|r| r.0).unwrap_or(arrival.rate.0),
    );
    let d = (deadline - start).as_secs_f64();
    let mut sessions = tokio::task::JoinSet::new();
    for k in 0u64.. {
        let due = start + Duration::from_secs_f64(arrival_time(k as f64, r0, r1, d));
        if due >= deadline {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = stop.cancelled() => break,
        }
        // Waiting for a slot makes the session late; its latency still counts from `due`.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore open"),
            _ = stop.cancelled() => break,
        };
        let shared = shared.clone();
        sessions.spawn(async move {
            let runner = shared.runner();
            let mut ctx = shared.ctx(k as usize);
            shared.recorder.active_users.fetch_add(1, Ordering::Relaxed);
            for job in &shared.jobs {
                ctx.intended = Some(due);
                runner.run(job, &mut ctx).await;
            }
            shared.recorder.active_users.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
        while let Some(done) = sessions.try_join_next() {
            reraise(done);
        }
    }
    while let Some(done) = sessions.join_next().await {
        reraise(done);
    }
}

/// A session's panic becomes the open model's own, so the run fails as the closed model does.
fn reraise(done: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

async fn flush_loop(
    agg: Arc<AsyncMutex<Aggregator>>,
    rec: Arc<Recorder>,
    start: Instant,
    stop: CancellationToken,
    progress: Progress,
    phase: LoadPhase,
    dead: Arc<std::sync::Mutex<Option<String>>>,
) {
    let mut watch = DeadTargetWatch::default();
    let bar = (progress == Progress::Show && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(phase.duration.as_secs());
        b.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len}s {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_prefix(phase.run_id.clone());
        b
    });
    let mut next = start + Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = stop.cancelled() => break,
        }
        next += Duration::from_secs(1);
        let view = match agg.lock().await.flush_second(&rec) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("writing per-second results: {e}");
                continue;
            }
        };
        show(&bar, progress, &phase, &view);
        let finished = rec.finished.load(Ordering::Relaxed);
        let refused = rec.connect_failures.load(Ordering::Relaxed);
        if watch.observe(finished, refused) {
            *dead.lock().expect("dead lock") = Some(dead_target_message(&rec));
            stop.cancel();
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

fn show(
    bar: &Option<indicatif::ProgressBar>,
    progress: Progress,
    phase: &LoadPhase,
    v: &SecondView,
) {
    // Users, then per endpoint: requests this second, p95, failures.
    let per_endpoint: Vec<String> = v
        .endpoints
        .iter()
        .map(|(n, rps, p95, f)| format!("{n}: {rps}/s p95 {p95:.1}ms fail {f}"))
        .collect();
    let msg = format!(
        "users {} | {} | failures so far {}",
        v.users,
        per_endpoint.join(" | "),
        v.total_failures
    );
    match bar {
        Some(b) => {
            b.set_position(v.second + 1);
            b.set_message(msg);
        }
        None if progress == Progress::Show && (v.second + 1) % 5 == 0 => {
            crate::exec::signals::say(&format!("[{} {:>4}s] {msg}", phase.run_id, v.second + 1));
        }
        None => {}
    }
}

/// Measures how late a 100 ms timer fires: a saturated generator delays everything.
async fn lag_probe(worst: Arc<std::sync::Mutex<Duration>>, stop: CancellationToken) {
    let period = Duration::from_millis(100);
    loop {
        let asked = Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => return,
        }
        let late = asked.elapsed().saturating_sub(period);
        let mut w = worst.lock().expect("lag lock");
        *w = (*w).max(late);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_target_is_five_seconds_of_refusals_not_one_bad_second() {
        let mut w = DeadTargetWatch::default();
        // Healthy seconds, then one second of refusals: no verdict.
        let (mut n, mut c) = (0, 0);
        for _ in 0..5 {
            n += 100;
            assert!(!w.observe(n, c));
        }
        n += 10;
        c += 10;
        assert!(!w.observe(n, c));
        // Four more seconds of nothing but refusals (backed-off users: one a second).
        let mut verdict = false;
        for _ in 0..4 {
            n += 1;
            c += 1;
            verdict = w.observe(n, c);
        }
        assert!(verdict, "five seconds of refusals");
        // Too few requests to judge.
        let mut quiet = DeadTargetWatch::default();
        for i in 1..=5 {
            assert!(!quiet.observe(if i == 5 { 2 } else { 0 }, if i == 5 { 2 } else { 0 }));
        }
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

    #[test]
    fn arrivals_follow_the_ramp() {
        // Constant: k / r.
        assert!((arrival_time(10.0, 5.0, 5.0, 10.0) - 2.0).abs() < 1e-9);
        // Ramp 0→20/s over 10 s: 100 arrivals in total, the last at t = 10.
        assert!((arrival_time(100.0, 0.0, 20.0, 10.0) - 10.0).abs() < 1e-6);
        // Half the arrivals come in the last ~29 % of the time.
        assert!((arrival_time(50.0, 0.0, 20.0, 10.0) - 50f64.sqrt()).abs() < 1e-6);
    }
}
