//! A fleet of worker processes on this host: `trialrunner worker` children, one share each,
//! every core used. It is also how the test suite exercises distribution for real.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{merge, split, WorkerEnd, WorkerOutcome, WorkerSpec};
use crate::error::{Error, Result};
use crate::load::Share;
use crate::load::STOP_GRACE;
use crate::provider::LoadRunner;
use crate::results::{self, unix_now, RunSummary};
use crate::trial::model::GeneratorLoss;
use crate::trial::{LoadPhase, TaskRef};

/// How long after the workers are started the phase begins: time to start, read the trial and
/// prepare (the EAR key, one device per user to provision in fleet mode).
pub fn start_delay(phase: &LoadPhase, share_users: u32) -> Duration {
    let devices = if phase.fleet && phase.tasks.contains(&TaskRef::Verify) {
        share_users
    } else {
        0
    };
    Duration::from_millis(2000 + 20 * devices as u64)
}

/// `generators: { local: N }`.
pub struct LocalFleet {
    workers: u32,
    trial: PathBuf,
    environment: PathBuf,
    exe: PathBuf,
    on_loss: GeneratorLoss,
}

impl LocalFleet {
    /// `workers` processes of this binary for the trial and environment files.
    pub fn new(
        workers: u32,
        trial: &Path,
        environment: &Path,
        on_loss: GeneratorLoss,
    ) -> Result<LocalFleet> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::io("finding this program to start its workers", e))?;
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        Ok(LocalFleet {
            workers,
            trial: abs(trial),
            environment: abs(environment),
            exe,
            on_loss,
        })
    }

    /// The same fleet running another trialrunner binary.
    pub fn with_exe(self, exe: PathBuf) -> LocalFleet {
        LocalFleet { exe, ..self }
    }

    fn threads_each(&self) -> usize {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        (cores / self.workers.max(1) as usize).max(1)
    }
}

/// Waits for one worker: its exit, a stop request (SIGTERM, then SIGKILL after a grace), or
/// the bound by which it must have reported.
async fn supervise(
    mut child: tokio::process::Child,
    cancel: &CancellationToken,
    bound: Duration,
) -> WorkerEnd {
    let status = tokio::select! {
        s = child.wait() => s,
        _ = cancel.cancelled() => {
            if let Some(pid) = child.id() {
                // SAFETY: kill with a child's pid and a valid signal.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            match tokio::time::timeout(STOP_GRACE + Duration::from_secs(8), child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    let _ = child.kill().await;
                    return WorkerEnd::Lost("did not stop within its grace after a stop request".into());
                }
            }
        }
        _ = tokio::time::sleep(bound) => {
            let _ = child.kill().await;
            return WorkerEnd::Lost(format!("stopped reporting: still running {} s after the phase's end", bound.as_secs()));
        }
    };
    // The end of its log is added to a lost worker's reason by the merge.
    match status {
        Ok(s) if s.success() => WorkerEnd::Finished,
        Ok(s) => WorkerEnd::Lost(match std::os::unix::process::ExitStatusExt::signal(&s) {
            Some(sig) => format!("killed by signal {sig}"),
            None => format!("exited with code {}", s.code().unwrap_or(-1)),
        }),
        Err(e) => WorkerEnd::Lost(format!("could not be waited for: {e}")),
    }
}

#[async_trait]
impl LoadRunner for LocalFleet {
    async fn run(
        &self,
        phase: &LoadPhase,
        dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<RunSummary> {
        let shares = split(phase, self.workers);
        let most = shares
            .iter()
            .filter_map(|(p, _)| p.users)
            .max()
            .unwrap_or(1);
        let delay = start_delay(phase, most);
        let start_unix = unix_now() + delay.as_secs_f64();
        let threads = self.threads_each();
        let mut running = Vec::new();
        let mut children = Vec::new();
        for (i, (share, first_user)) in shares.into_iter().enumerate() {
            let name = format!("w{}", i + 1);
            let wdir = dir.join("workers").join(&name);
            std::fs::create_dir_all(&wdir)
                .map_err(|e| Error::io(format!("creating {}", wdir.display()), e))?;
            let spec = WorkerSpec {
                name: name.clone(),
                phase: share.clone(),
                share: Share {
                    first_user,
                    start_unix,
                },
                trial: self.trial.clone(),
                environment: self.environment.clone(),
                threads: Some(threads),
            };
            let spec_file = wdir.join("spec.json");
            results::write_json(&spec_file, &spec)?;
            let log_file = wdir.join("worker.log");
            let log = std::fs::File::create(&log_file)
                .map_err(|e| Error::io(format!("creating {}", log_file.display()), e))?;
            let err = log
                .try_clone()
                .map_err(|e| Error::io("sharing the worker's log", e))?;
            let child = tokio::process::Command::new(&self.exe)
                .arg("worker")
                .arg("--spec")
                .arg(&spec_file)
                .arg("--out")
                .arg(&wdir)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| Error::io(format!("starting worker {name}"), e))?;
            children.push(child);
            running.push((name, wdir, share));
        }
        // Every worker must have reported by the end of the phase plus its drain and a margin.
        let bound = delay + phase.duration + phase.request_timeout + Duration::from_secs(30);
        let ends = futures::future::join_all(
            children
                .into_iter()
                .map(|child| async move { supervise(child, cancel, bound).await }),
        )
        .await;
        let outcomes: Vec<WorkerOutcome> = running
            .into_iter()
            .zip(ends)
            .map(|((name, wdir, share), end)| WorkerOutcome {
                name,
                dir: wdir,
                end,
                phase: share,
                console: String::new(),
            })
            .collect();
        let summary = merge(phase, start_unix, &outcomes, dir, &[])?;
        super::after_loss(phase, summary, self.on_loss, cancel)
    }
}
