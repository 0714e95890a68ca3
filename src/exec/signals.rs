//! Stop requests: Ctrl-C (SIGINT), SIGTERM (cron, CI cancellation, `timeout`, `docker stop`) and
//! SIGHUP (a dropped SSH session) all ask for the same orderly stop. The first stops the load,
//! restores the infrastructure and writes the results; the second skips everything but the
//! restore attempt. The process then exits with 128 + the first signal's number.
//!
//! Messages go through [`crate::terminal::say`], which never panics: after SIGHUP the terminal
//! may be gone, and a failed write to stderr must not turn an orderly stop into a crash.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// Cancellation shared by everything a command runs.
#[derive(Clone, Default)]
pub struct Interrupts {
    /// The first stop request: stop the load, restore, write results.
    pub soft: CancellationToken,
    /// The second: skip everything but the restore attempt.
    pub hard: CancellationToken,
    signal: Arc<AtomicI32>,
}

impl Interrupts {
    /// Records a stop request (signal number) and cancels the next level.
    pub fn request(&self, signal: i32) {
        let _ = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        if self.soft.is_cancelled() {
            self.hard.cancel();
        } else {
            self.soft.cancel();
        }
    }

    /// The signal of the first stop request, if there was one.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// The exit code of an interrupted command: 128 + the first signal (130 for Ctrl-C).
    pub fn exit_code(&self) -> i32 {
        128 + self.signal().unwrap_or(libc::SIGINT)
    }
}

/// The name of a stop signal, for messages.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "Ctrl-C (SIGINT)",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// What a campaign says on its first and second stop request.
const CAMPAIGN_STOPPING: Stopping = Stopping {
    first: "stopping the load, restoring infrastructure, writing results (again to skip all but the restore)",
    again: "exiting after the restore attempt",
};

/// What a process says when asked to stop, the first time and again.
#[derive(Debug, Clone, Copy)]
pub struct Stopping {
    /// After the signal's name, on the first request.
    pub first: &'static str,
    /// After "<signal> again", on the second.
    pub again: &'static str,
}

/// Listens for SIGINT, SIGTERM and SIGHUP on the current runtime and turns them into stop
/// requests, saying what a campaign does then. Must be called inside a runtime.
pub fn watch(interrupts: &Interrupts) {
    watch_saying(interrupts, CAMPAIGN_STOPPING);
}

/// [`watch`] for a process that is not a campaign (the stand-in): says `stopping` instead.
pub fn watch_saying(interrupts: &Interrupts, stopping: Stopping) {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
    ];
    for (kind, number) in kinds {
        let Ok(mut stream) = signal(kind) else {
            tracing::warn!("cannot listen for {}", signal_name(number));
            continue;
        };
        let i = interrupts.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let first = !i.soft.is_cancelled();
                i.request(number);
                if first {
                    crate::terminal::say(&format!("\n{}: {}", signal_name(number), stopping.first));
                } else {
                    crate::terminal::say(&format!(
                        "\n{} again: {}",
                        signal_name(number),
                        stopping.again
                    ));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_is_soft_second_hard_and_the_first_signal_names_the_exit() {
        let i = Interrupts::default();
        assert_eq!(i.exit_code(), 130);
        i.request(libc::SIGTERM);
        assert!(i.soft.is_cancelled() && !i.hard.is_cancelled());
        i.request(libc::SIGINT);
        assert!(i.hard.is_cancelled());
        assert_eq!(i.signal(), Some(libc::SIGTERM));
        assert_eq!(i.exit_code(), 143);
    }
}
