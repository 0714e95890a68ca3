//! A task the campaign runs beside its steps (the lease's heartbeat, the infrastructure
//! sampler), stopped the same way: asked to stop, given two seconds for a call in flight, then
//! abandoned, so that a frozen endpoint never holds the campaign (the restore comes first).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long a call in flight may finish once the task is asked to stop.
const GRACE: Duration = Duration::from_secs(2);

/// A background task and the token that asks it to stop.
pub struct Background {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Background {
    /// Spawns `work`, handing it the token that will ask it to stop.
    pub fn spawn<F, Fut>(work: F) -> Background
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = tokio::spawn(work(stop.clone()));
        Background { stop, task }
    }

    /// Asks the task to stop; a call in flight gets two seconds, then the task is abandoned.
    pub async fn stop(self) {
        self.stop.cancel();
        let abort = self.task.abort_handle();
        if tokio::time::timeout(GRACE, self.task).await.is_err() {
            abort.abort();
        }
    }
}
