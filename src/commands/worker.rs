//! `trialrunner worker --spec FILE --out DIR`: one generator worker of a fleet. It runs its
//! share of a load phase from the common start and writes the same per-second files as a
//! local run, plus the lossless cells the coordinator merges. SIGTERM, SIGINT and SIGHUP stop
//! it in order (the load stops, the files are written).

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::fleet::WorkerSpec;
use crate::load::{LoadEngine, Progress};
use crate::{setup, trial};

/// How long after the fleet's common start a worker may begin before it says so: its seconds
/// still line up with the others' (they are UTC seconds), its first is shorter.
pub const LATE_START_S: f64 = 0.05;

/// Arguments of `worker`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The worker's spec (written by the coordinator).
    #[arg(long)]
    pub spec: PathBuf,
    /// Where its files go.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs the share; exit 0 once its files are written.
pub fn run(args: Args) -> Result<i32> {
    let text = std::fs::read(&args.spec)
        .map_err(|e| Error::io(format!("reading {}", args.spec.display()), e))?;
    let spec: WorkerSpec = serde_json::from_slice(&text)
        .map_err(|e| Error::Usage(format!("{}: not a worker spec: {e}", args.spec.display())))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Error::io(format!("creating {}", args.out.display()), e))?;
    // Who it is, for operators and supervisors.
    crate::results::write_atomic(
        &args.out.join("worker.pid"),
        std::process::id().to_string().as_bytes(),
    )?;
    let t = trial::load_trial(&spec.trial, Some(&spec.environment))?;
    let target = setup::target_for(&t.env, Some(&t))?;
    let mut engine = LoadEngine::new(target, Progress::Quiet).with_share(spec.share);
    if let Some(n) = spec.threads {
        engine = engine.with_threads(n);
    }
    let rt = super::runtime();
    let summary = rt.block_on(async {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = hup.recv() => {}
            }
            c.cancel();
        });
        engine.run_phase(&spec.phase, &args.out, &cancel).await
    })?;
    // Late for any reason: not ready by then, or its timer woke late on a busy machine.
    let late = summary.started_unix - spec.share.start_unix;
    if late > LATE_START_S {
        crate::terminal::say(&format!(
            "{}: started {late:.2} s after the fleet's common start",
            spec.name
        ));
    }
    Ok(0)
}
