//! The load engine: runs one [`LoadPhase`] against a [`Target`], and writes its files.
//!
//! Users run on the engine's own threads ([`EnginePool`]), driven by the closed or the open
//! model (`users`); the flusher, on the caller's runtime, turns each finished UTC second into
//! rows on disk, shows progress and watches for a dead target (`flush`). At the deadline users
//! stop starting tasks and requests in flight finish (the drain); on a stop request they get
//! [`STOP_GRACE`](super::STOP_GRACE). A phase in flight is `running`'s.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::pool::EnginePool;
use super::progress::Progress;
use super::recorder::Recorder;
use super::running::{Running, Start};
use super::shared::Shared;
use super::tasks::{plan_jobs, DeviceMaterial, Runner, Target, UserCtx, Wire};
use crate::error::{Error, Result};
use crate::provider::LoadRunner;
use crate::results::{unix_now, RunSummary};
use crate::trial::{LoadPhase, TaskRef};

/// Looks at the verification well-known for the EAR key before giving up, and the pause
/// between them (a joining instance behind a load balancer answers 500 for a while).
const EAR_KEY_ATTEMPTS: u32 = 8;
const EAR_KEY_PAUSE: Duration = Duration::from_millis(500);

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
            sessions: &AtomicU64::new(0),
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
            checks: Default::default(),
            sessions: AtomicU64::new(0),
            tasks_done: AtomicU64::new(0),
        })
    }

    /// Runs a phase and writes its files into `dir`: devices made (and provisioned before a
    /// verify run), the engine's threads started, a fleet's common start waited for, then the
    /// phase from its start to its summary.
    pub async fn run_phase(
        &self,
        phase: &LoadPhase,
        dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<RunSummary> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let users = match phase.arrival {
            Some(a) => a.max_in_flight.max(0) as u64,
            None => u64::from(phase.users.unwrap_or(0)),
        };
        // A connection per user and origin (two at most), and the rest of the process's files.
        allow_open_files(users * 2 + 256);
        let shared = self.prepare(phase).await?;
        let pool = Arc::new(
            EnginePool::start(self.threads)
                .map_err(|e| Error::Infra(format!("starting the engine's threads: {e}")))?,
        );
        self.wait_for_fleet_start(cancel).await;
        let running = Running::start(Start {
            phase,
            dir,
            shared,
            pool,
            progress: self.progress,
            fleet_start: self.share.map(|s| s.start_unix),
            cancel,
        })
        .await?;
        running.end().await.summarise(cancel).await
    }

    /// A fleet worker waits for the wall-clock instant every worker starts on (one that begins
    /// late says so itself: `commands::worker`).
    async fn wait_for_fleet_start(&self, cancel: &CancellationToken) {
        let Some(share) = self.share else {
            return;
        };
        let wait = share.start_unix - unix_now();
        if wait > 0.0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
                _ = cancel.cancelled() => {}
            }
        }
    }
}

/// Raises the process's open-file limit towards `needed` (the soft limit up to the hard one):
/// ten thousand users must not fail on a default soft limit of 1 024.
fn allow_open_files(needed: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= needed {
            return;
        }
        lim.rlim_cur = needed.min(lim.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
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
