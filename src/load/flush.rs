//! The flusher: on the caller's runtime, once each UTC second is over (plus a grace for late
//! samples), it writes that second's rows, shows progress, writes the generator's own row, and
//! stops the run when the target looks dead (refusing or not answering).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

use super::aggregate::Aggregator;
use super::generator::GeneratorSeconds;
use super::pool::EnginePool;
use super::progress::show;
use super::progress::Progress;
use super::recorder::Recorder;
use super::watch::{self, DeadTargetWatch, NoAnswer};
use crate::results::unix_now;
use crate::trial::LoadPhase;

/// How long after a second ends it is flushed: late samples still land in it.
const FLUSH_GRACE: Duration = Duration::from_millis(200);

/// What the flusher works with.
pub(super) struct FlushCtx {
    /// The per-second files and the run's totals.
    pub agg: Arc<AsyncMutex<Aggregator>>,
    /// Where the users record.
    pub rec: Arc<Recorder>,
    /// Ends the flushing (and, from the dead-target watch, the run).
    pub stop: CancellationToken,
    /// How to show progress.
    pub progress: Progress,
    /// The phase.
    pub phase: LoadPhase,
    /// Set to why, when the target looked dead.
    pub dead: Arc<Mutex<Option<String>>>,
    /// The target's addresses, for the dead-target message.
    pub addresses: Vec<String>,
    /// The engine's threads.
    pub pool: Arc<EnginePool>,
    /// `generator.csv`.
    pub generator: Arc<Mutex<GeneratorSeconds>>,
}

/// Flushes each UTC second once it is over (plus a grace for late samples), shows progress,
/// and stops the run when the target looks dead.
pub(super) async fn flush_loop(f: FlushCtx) {
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
            let (no, refused_at) = watch::no_answer(&f.rec);
            let no = NoAnswer { waiting: 0, ..no };
            *f.dead.lock().expect("dead lock") = Some(watch::message(no, refused_at, &f.addresses));
            f.stop.cancel();
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}
