//! The load engine: runs one [`LoadPhase`] against a [`Target`].
//!
//! * Closed model: N virtual users, started at once or at a spawn rate, each looping over its
//!   tasks with an optional wait until the run ends.
//! * Open model: sessions start on a schedule (constant or linearly ramping rate) with a cap on
//!   sessions in flight. A session that waits for a slot is late: its corrected latency is its
//!   service time plus that wait (exactly its raw latency when the schedule is kept), and the
//!   arrivals still waiting at the deadline are counted as dropped, their lateness in the
//!   corrected latency too.
//!
//! Users run on the engine's own threads ([`EnginePool`]); the flusher, on the caller's runtime,
//! turns each finished UTC second into rows on disk, shows progress and watches for a dead
//! target. At the deadline users stop starting tasks and requests in flight finish (the drain);
//! on a stop request they get [`STOP_GRACE`].

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use tokio::sync::{Mutex as AsyncMutex, Semaphore};
use tokio_util::sync::CancellationToken;

use super::aggregate::{Aggregator, SecondView, Window};
use super::dead_target::{self, DeadTargetWatch, NoAnswer};
use super::pool::EnginePool;
use super::recorder::{Clock, Recorder};
use super::tasks::{plan_jobs, DeviceMaterial, Job, Runner, Target, UserCtx, Wire};
use crate::error::{Error, Result};
use crate::provider::LoadRunner;
use crate::results::{self, unix_now, Arrivals, GeneratorHealth, RunSummary, Unanswered};
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

/// How long requests in flight may go on after a stop request (or a dead target).
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Looks at the verification well-known for the EAR key before giving up, and the pause
/// between them (a joining instance behind a load balancer answers 500 for a while).
const EAR_KEY_ATTEMPTS: u32 = 8;
const EAR_KEY_PAUSE: Duration = Duration::from_millis(500);

/// How long after a second ends it is flushed: late samples still land in it.
const FLUSH_GRACE: Duration = Duration::from_millis(200);

/// The load engine for one target.
pub struct LoadEngine {
    target: Arc<Target>,
    progress: Progress,
    /// Seed of the synthetic device fleet.
    pub fleet_seed: u64,
    /// The engine's threads (default: every core).
    pub threads: usize,
    /// Set when this engine runs one worker's share of a generator fleet's phase.
    share: Option<Share>,
}

/// One worker's place in a generator fleet's phase.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Share {
    /// Index of its first virtual user in the whole phase (device identities, unique ids).
    pub first_user: u32,
    /// The wall-clock start every worker waits for, Unix seconds.
    pub start_unix: f64,
}

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

impl LoadEngine {
    /// An engine for `target`.
    pub fn new(target: Target, progress: Progress) -> LoadEngine {
        LoadEngine {
            target: Arc::new(target),
            progress,
            fleet_seed: 0x7472_6961_6c72,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            share: None,
        }
    }

    /// The same engine running a share of a fleet's phase: its users are numbered from the
    /// share's first, it starts at the common wall-clock start, and it also writes the lossless
    /// per-second cells (`cells.jsonl`) the coordinator merges.
    pub fn with_share(self, share: Share) -> LoadEngine {
        LoadEngine {
            share: Some(share),
            ..self
        }
    }

    /// The same engine on `n` threads.
    pub fn with_threads(self, n: usize) -> LoadEngine {
        LoadEngine {
            threads: n.max(1),
            ..self
        }
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The verification service's EAR key, from its well-known: every EAR under load is checked
    /// against it.
    async fn ear_key(&self, client: &reqwest::Client) -> Result<crate::veraison::ear::EarKey> {
        let url = self
            .target
            .verification
            .join("/.well-known/veraison/verification")
            .expect("path joins");
        // Behind a load balancer one instance may still be joining (500, its VTS not up) or
        // gone: a few looks before giving up, never a campaign stopped by one answer.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= EAR_KEY_ATTEMPTS;
            let resp = match client
                .get(url.clone())
                .header(reqwest::header::ACCEPT, "*/*")
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) if !last && (e.is_connect() || e.is_timeout()) => {
                    tokio::time::sleep(EAR_KEY_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(crate::load::tasks::unreachable(&url, &e)),
            };
            let status = resp.status();
            if status.is_server_error() && !last {
                tracing::info!("{url}: HTTP {status}, looking again");
                tokio::time::sleep(EAR_KEY_PAUSE).await;
                continue;
            }
            let v: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| Error::Check(format!("{url}: HTTP {status}: {e}")))?;
            return v
                .get("ear-verification-key")
                .and_then(crate::veraison::ear::key_from_jwk)
                .ok_or_else(|| {
                    Error::Check(format!(
                        "{url} (HTTP {status}) has no usable ear-verification-key"
                    ))
                });
        }
    }

    /// Provisions each device once before a verify run (unmeasured, like the seed's `on_start`).
    async fn provision_devices(&self, wire: &Wire, devices: &[DeviceMaterial]) -> Vec<String> {
        let (jobs, endpoints, _) = plan_jobs(&[TaskRef::Provision], &self.target);
        let recorder = Recorder::detached(endpoints);
        let runner = Runner {
            wire,
            target: &self.target,
            recorder: &recorder,
            token_endpoint: None,
            ear_key: None,
        };
        for (i, d) in devices.iter().enumerate() {
            let mut ctx = UserCtx::new(d, Default::default(), i);
            runner.run(&jobs[0], &mut ctx).await;
        }
        recorder
            .failure_groups()
            .into_iter()
            .map(|g| format!("{}: {} ({}×)", g.class, g.message, g.count))
            .collect()
    }

    /// What every user of a run shares, devices made and provisioned.
    async fn prepare(&self, phase: &LoadPhase) -> Result<Shared> {
        let wire = Wire::new(&self.target, phase.request_timeout)?;
        let (jobs, endpoints, token_endpoint) = plan_jobs(&phase.tasks, &self.target);
        let device_count = if phase.fleet {
            phase.users.unwrap_or(1).max(1)
        } else {
            1
        };
        let (release, seed) = (self.target.release.clone(), self.fleet_seed);
        let first = self.share.map_or(0, |s| s.first_user);
        let devices: Vec<DeviceMaterial> = tokio::task::spawn_blocking(move || {
            (first..first + device_count)
                .map(|i| DeviceMaterial::new(&release, seed, i))
                .collect()
        })
        .await
        .map_err(|e| Error::Infra(format!("preparing device material: {e}")))?;
        let mut ear_key = None;
        if phase.tasks.contains(&TaskRef::Verify) {
            ear_key = Some(self.ear_key(&wire.client).await?);
            let problems = self.provision_devices(&wire, &devices).await;
            if !problems.is_empty() {
                tracing::warn!(run = %phase.run_id, "provisioning the devices before verify failed: {}", problems.join("; "));
            }
        }
        Ok(Shared {
            wire,
            target: self.target.clone(),
            recorder: Arc::new(Recorder::detached(endpoints)),
            token_endpoint,
            jobs,
            devices,
            phase: phase.clone(),
            ear_key,
            first_user: first as usize,
            check_cpu_ns: AtomicU64::new(0),
            tasks_done: AtomicU64::new(0),
        })
    }

    /// Runs a phase and writes its files into `dir`.
    ///
    /// Long on purpose (about 140 lines): it owns, in order, every lifetime of a phase (recorder,
    /// flush loop, generator probe, users, deadline, drain, summary); split, the cancel tokens and
    /// tasks it joins would have to travel between functions that each own half of them.
    pub async fn run_phase(
        &self,
        phase: &LoadPhase,
        dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<RunSummary> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut shared = self.prepare(phase).await?;
        let pool = Arc::new(
            EnginePool::start(self.threads)
                .map_err(|e| Error::Infra(format!("starting the engine's threads: {e}")))?,
        );
        if let Some(share) = self.share {
            // Every worker of a fleet starts on the same wall-clock instant.
            let wait = share.start_unix - unix_now();
            if wait > 0.0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
                    _ = cancel.cancelled() => {}
                }
            } else if wait < -0.05 {
                tracing::warn!(run = %phase.run_id, "started {:.2} s after the fleet's common start", -wait);
            }
        }
        let start = Instant::now();
        let start_unix = unix_now();
        let deadline = start + phase.duration;
        let endpoints = shared.recorder.endpoints().to_vec();
        shared.recorder = Arc::new(Recorder::new(
            endpoints,
            Clock::new(start, start_unix, deadline),
        ));
        let window = Window {
            start: start_unix,
            warmup_end: start_unix + phase.warmup.as_secs_f64(),
            end: start_unix + phase.duration.as_secs_f64(),
        };
        let recorder = shared.recorder.clone();
        let mut aggregator = Aggregator::create(dir, &recorder, window)?;
        if self.share.is_some() {
            aggregator.log_cells(dir, recorder.endpoints())?;
        }
        let aggregator = Arc::new(AsyncMutex::new(aggregator));
        let stop = cancel.child_token();
        let dead = Arc::new(std::sync::Mutex::new(None::<String>));
        let cpu_before = pool.cpu_s();
        let busy_before = pool.busy_s();
        let generator = Arc::new(std::sync::Mutex::new(GeneratorSeconds::create(
            dir, cpu_before,
        )?));
        let flusher = tokio::spawn(flush_loop(FlushCtx {
            agg: aggregator.clone(),
            rec: recorder.clone(),
            stop: stop.clone(),
            progress: self.progress,
            phase: phase.clone(),
            dead: dead.clone(),
            addresses: dead_target::addresses(&self.target),
            pool: pool.clone(),
            generator: generator.clone(),
        }));
        let shared = Arc::new(shared);
        let arrivals = Arc::new(std::sync::Mutex::new(Arrivals::default()));
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
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => {}
            // A stop request, or the dead-target watch.
            _ = stop.cancelled() => {}
        }
        let stopped_early = stop.is_cancelled();
        stop.cancel();
        let window_end = Instant::now().min(deadline);
        recorder.end_window(window_end);
        // At the deadline, requests in flight may finish; on a stop they get a moment only.
        let grace = if stopped_early {
            STOP_GRACE
        } else {
            phase.request_timeout + Duration::from_secs(2)
        };
        let joined = join_workers(workers, grace).await;
        let drain_s = Instant::now()
            .saturating_duration_since(window_end)
            .as_secs_f64();
        let _ = flusher.await;
        let cpu_s = pool.cpu_s() - cpu_before;
        let busy_s = pool.busy_s() - busy_before;
        let lag = {
            let mut g = generator.lock().expect("generator lock");
            g.lag
                .add(pool.take_lag())
                .expect("auto-resizing histograms merge");
            let _ = g.file.flush();
            g.lag.clone()
        };
        let threads = pool.threads();
        let pool = Arc::try_unwrap(pool)
            .map_err(|_| Error::Internal("the engine's threads are still shared".into()))?;
        tokio::task::spawn_blocking(move || pool.shutdown())
            .await
            .map_err(|e| Error::Internal(format!("stopping the engine's threads: {e}")))?;
        let window_s = (window_end - start).as_secs_f64();
        let mut agg = Arc::try_unwrap(aggregator)
            .map_err(|_| Error::Infra("aggregator still shared".into()))?
            .into_inner();
        agg.end_window(start_unix + window_s);
        let steady_s = agg.steady_seconds() as f64;
        let (endpoints, aggregated) = agg.finish(&recorder, dir, drain_s)?;
        let requests = endpoints
            .iter()
            .filter(|e| e.kind == crate::results::cells::Kind::Request);
        let (requests_over, endpoints_timed_out) = requests.fold((0, 0), |(n, t), e| {
            (n + e.total.count + e.drain.count, t + e.timed_out)
        });
        let wall = (window_s + drain_s).max(1e-9);
        let cpu_pct = 100.0 * cpu_s / wall / threads as f64;
        let busy_pct = (100.0 * busy_s / wall / threads as f64).max(cpu_pct);
        let q = |q: f64| lag.value_at_quantile(q) as f64 / 1000.0;
        let tasks = shared.tasks_done.load(Ordering::Relaxed).max(1);
        let arrivals = phase
            .arrival
            .map(|_| arrivals.lock().expect("arrivals lock").clone());
        let summary = RunSummary {
            arrivals,
            steady_s,
            endpoints,
            aggregated,
            failures: recorder.failure_groups(),
            generator: GeneratorHealth {
                cpu_pct,
                busy_pct,
                threads,
                timer_lag_p50_ms: q(0.5),
                timer_lag_p99_ms: q(0.99),
                max_timer_lag_ms: q(1.0),
                check_cpu_us_per_task: shared.check_cpu_ns.load(Ordering::Relaxed) as f64
                    / 1000.0
                    / tasks as f64,
                // Wanting a core all the time (even when a busy machine gave it less) or late
                // timers: the generator, not the target, may have set the pace.
                saturated: busy_pct >= 90.0 || q(0.99) >= 20.0,
            },
            interrupted: cancel.is_cancelled(),
            unanswered: Unanswered {
                timed_out: endpoints_timed_out,
                at_stop: recorder.in_flight(),
                request_timeout_s: phase.request_timeout.as_secs_f64(),
            },
            ..phase_summary(phase, start_unix, start_unix + window_s)
        };
        // The files are written whatever happened: nothing measured is lost.
        results::write_json(&dir.join("summary.json"), &summary)?;
        joined?;
        if let Some(why) = dead.lock().expect("dead lock").take() {
            return Err(Error::Infra(why));
        }
        // Too few requests for the window to judge: the whole run is judged, unless a stop
        // request cut it short or it was shorter than the window itself.
        let (no, refused_at) = no_answer(&recorder);
        let judged = phase.duration.as_secs() >= DeadTargetWatch::WINDOW_S as u64;
        if judged && !cancel.is_cancelled() && dead_target::run_got_no_answers(requests_over, no) {
            let addresses = dead_target::addresses(&self.target);
            return Err(Error::Infra(dead_target::message(
                no, refused_at, &addresses,
            )));
        }
        Ok(summary)
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

/// The refusals and timeouts of a run so far, and what is in flight, as the dead-target
/// watch's figures; with a refusal's message (it names the address).
fn no_answer(rec: &Recorder) -> (NoAnswer, Option<String>) {
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
    wire: Wire,
    target: Arc<Target>,
    recorder: Arc<Recorder>,
    token_endpoint: Option<super::recorder::EndpointId>,
    jobs: Vec<Job>,
    devices: Vec<DeviceMaterial>,
    phase: LoadPhase,
    ear_key: Option<crate::veraison::ear::EarKey>,
    /// Number of the first user (non-zero in a fleet worker's share).
    first_user: usize,
    /// CPU the semantic checks took, ns, over every task.
    check_cpu_ns: AtomicU64,
    /// Tasks run.
    tasks_done: AtomicU64,
}

impl Shared {
    fn runner(&self) -> Runner<'_> {
        Runner {
            wire: &self.wire,
            target: &self.target,
            recorder: &self.recorder,
            token_endpoint: self.token_endpoint,
            ear_key: self.ear_key.as_ref(),
        }
    }

    fn ctx(&self, user: usize) -> UserCtx<'_> {
        UserCtx::new(
            &self.devices[user % self.devices.len()],
            self.phase.nonce,
            self.first_user + user,
        )
    }

    /// Adds a user's (or session's) check CPU and task count, once, at its end.
    fn account(&self, ctx: &UserCtx<'_>, tasks: u64) {
        self.check_cpu_ns
            .fetch_add(ctx.check_cpu_ns, Ordering::Relaxed);
        self.tasks_done.fetch_add(tasks, Ordering::Relaxed);
    }
}

async fn closed_model(
    pool: &EnginePool,
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

async fn open_model(
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
        // the arrivals still due are dropped, not forgotten.
        let at_deadline = || Instant::now() + DEADLINE_SLACK >= deadline;
        let base = if Instant::now() < due {
            tokio::select! {
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

struct FlushCtx {
    agg: Arc<AsyncMutex<Aggregator>>,
    rec: Arc<Recorder>,
    stop: CancellationToken,
    progress: Progress,
    phase: LoadPhase,
    dead: Arc<std::sync::Mutex<Option<String>>>,
    /// The target's addresses, for the dead-target message.
    addresses: Vec<String>,
    pool: Arc<EnginePool>,
    generator: Arc<std::sync::Mutex<GeneratorSeconds>>,
}

/// `generator.csv`: the engine's own CPU and timer lag, second by second.
struct GeneratorSeconds {
    file: results::AppendFile,
    cpu_s: f64,
    at: Instant,
    /// The run's timer lateness so far, µs.
    lag: hdrhistogram::Histogram<u64>,
}

impl GeneratorSeconds {
    fn create(dir: &Path, cpu_s: f64) -> Result<GeneratorSeconds> {
        let mut file = results::AppendFile::create(&dir.join("generator.csv"))?;
        file.write("unix,cpu_pct,timer_lag_p50_ms,timer_lag_p99_ms,timer_lag_max_ms\n")?;
        Ok(GeneratorSeconds {
            file,
            cpu_s,
            at: Instant::now(),
            lag: super::recorder::new_hist(),
        })
    }

    /// One second's row from the pool's counters.
    fn second(&mut self, unix: i64, pool: &EnginePool) {
        let cpu = pool.cpu_s();
        let wall = self.at.elapsed().as_secs_f64().max(1e-3);
        let pct = 100.0 * (cpu - self.cpu_s) / wall / pool.threads() as f64;
        self.cpu_s = cpu;
        self.at = Instant::now();
        let lag = pool.take_lag();
        let q = |q: f64| {
            if lag.is_empty() {
                0.0
            } else {
                lag.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let _ = self.file.write(&format!(
            "{unix},{pct:.1},{:.3},{:.3},{:.3}\n",
            q(0.5),
            q(0.99),
            q(1.0)
        ));
        let _ = self.file.flush();
        let _ = self.lag.add(&lag);
    }
}

/// Flushes each UTC second once it is over (plus a grace for late samples), shows progress,
/// and stops the run when the target looks dead.
async fn flush_loop(f: FlushCtx) {
    let mut watch = DeadTargetWatch::default();
    let bar = (f.progress == Progress::Show && std::io::stderr().is_terminal()).then(|| {
        // The bar on its own row above the line, so both fit 80 columns.
        let b = indicatif::ProgressBar::new(f.phase.duration.as_secs());
        b.set_style(
            indicatif::ProgressStyle::with_template("[{bar:60}] {percent:>3}%\n{msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b
    });
    loop {
        let next = f.agg.lock().await.next_second();
        let wake = next as f64 + 1.0 + FLUSH_GRACE.as_secs_f64();
        let wait = (wake - unix_now()).max(0.0);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
            _ = f.stop.cancelled() => break,
        }
        let view = match f.agg.lock().await.flush_second(&f.rec) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("writing per-second results: {e}");
                continue;
            }
        };
        show(&bar, f.progress, &f.phase, &view);
        f.generator
            .lock()
            .expect("generator lock")
            .second(view.unix, &f.pool);
        if watch.observe(view.requests, view.refused + view.timed_out) {
            let (no, refused_at) = no_answer(&f.rec);
            let no = NoAnswer { waiting: 0, ..no };
            *f.dead.lock().expect("dead lock") =
                Some(dead_target::message(no, refused_at, &f.addresses));
            f.stop.cancel();
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
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

fn show(
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

    #[test]
    fn the_progress_line_fits_80_columns_with_every_number_whole() {
        use crate::trial::model::{ArrivalSpec, NonceMode, Rate, SpawnSpec, WaitSpec};
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
