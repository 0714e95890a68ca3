//! `trialrunner bench`: the engine's raw speed on one URL, to compare with `wrk`. A closed
//! model, one virtual user per connection, no wait, plain GET; the same engine, recorder and
//! files as a trial run. Peak RSS is read from the kernel so per-user memory can be judged.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::recorder::Kind;
use super::tasks::{HttpTask, Target};
use super::{LoadEngine, Progress};
use crate::error::{Error, Result};
use crate::results::RunSummary;
use crate::trial::model::{NonceMode, SpawnSpec, WaitSpec};
use crate::trial::{LoadPhase, TaskRef};
use crate::veraison::release::ReleaseProfile;

/// What a benchmark measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The run's summary.
    pub summary: RunSummary,
    /// Peak resident set size of the process, KiB.
    pub peak_rss_kib: u64,
    /// Resident set size before the run, KiB.
    pub base_rss_kib: u64,
}

impl BenchReport {
    /// Successful requests per second over the run.
    pub fn requests_per_s(&self) -> f64 {
        self.summary.aggregated.rps
    }

    /// Memory the run added, per connection, KiB.
    pub fn kib_per_user(&self) -> f64 {
        let users = self.summary.users.unwrap_or(1).max(1) as f64;
        self.peak_rss_kib.saturating_sub(self.base_rss_kib) as f64 / users
    }
}

/// A `VmHWM`/`VmRSS` value from `/proc/self/status`, KiB.
pub fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// What a benchmark's users do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchTask {
    /// `GET url`, status checked.
    Http,
    /// Veraison verification sessions: a token with a fresh nonce, newSession, evidence,
    /// DELETE, the EAR's signature and nonce checked.
    Verify,
}

impl BenchReport {
    /// Requests sent (window and drain).
    pub fn requests(&self) -> u64 {
        self.count_of(Kind::Request)
    }

    /// Generator CPU (the engine's threads only) per task completed (window and drain), µs.
    pub fn cpu_us_per_task(&self) -> f64 {
        let tasks = self.count_of(Kind::Task);
        if tasks == 0 {
            return 0.0;
        }
        self.summary.generator.cpu_us_per_request * self.requests() as f64 / tasks as f64
    }

    fn count_of(&self, kind: Kind) -> u64 {
        self.summary
            .endpoints
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.total.count + e.drain.count)
            .sum()
    }
}

/// Runs `connections` users doing `task` against `url` for `duration` on `threads` engine
/// threads; results go to `dir`.
pub async fn run(
    url: &url::Url,
    kind: BenchTask,
    connections: u32,
    duration: Duration,
    threads: usize,
    dir: &Path,
) -> Result<BenchReport> {
    if connections == 0 {
        return Err(Error::Usage("--connections must be at least 1".into()));
    }
    let task = HttpTask {
        url: url.clone(),
        name: url.path().to_string(),
        method: reqwest::Method::GET,
        headers: Default::default(),
        body: Default::default(),
        expect: reqwest::StatusCode::OK,
        auth: false,
    };
    let (release, tasks) = match kind {
        BenchTask::Http => ("head", vec![TaskRef::Http("get".into())]),
        BenchTask::Verify => ("v0.0.2602", vec![TaskRef::Verify]),
    };
    let target = Target {
        provisioning: url.clone(),
        verification: url.clone(),
        release: ReleaseProfile::parse(release).expect("known release"),
        tokens: None,
        http_tasks: BTreeMap::from([("get".to_string(), task)]),
        tls: Default::default(),
    };
    let phase = LoadPhase {
        run_id: format!("bench-c{connections}"),
        iteration: 1,
        users: Some(connections),
        arrival: None,
        tasks,
        duration,
        spawn: SpawnSpec::AllAtOnce,
        wait: WaitSpec::None,
        warmup: Duration::ZERO,
        request_timeout: Duration::from_secs(30),
        nonce: match kind {
            BenchTask::Http => NonceMode::Fixed,
            BenchTask::Verify => NonceMode::Fresh,
        },
        fleet: false,
    };
    let base_rss_kib = proc_status_kib("VmRSS:");
    let engine = LoadEngine::new(target, Progress::Quiet).with_threads(threads);
    let summary = engine
        .run_phase(&phase, dir, &CancellationToken::new())
        .await?;
    Ok(BenchReport {
        summary,
        peak_rss_kib: proc_status_kib("VmHWM:"),
        base_rss_kib,
    })
}
