//! The campaign's hold on its deployment lock: the claim it writes on the groups it changes
//! (before the first change), the lease it renews while it runs, and what happens when the
//! claim is gone from a group (another operator broke it with `infra restore --force`): the
//! campaign stops, since it would go on measuring a deployment it no longer holds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::background::Background;
use super::journal::JournalState;
use crate::owner::Owner;
use crate::provider::{LockClaim, Scaler};
use crate::results::unix_now;

/// How long a claim lives without renewal (15 minutes; `TRIALRUNNER_LOCK_LEASE` overrides it,
/// e.g. `4s` in tests). The campaign renews it every quarter of that, so a crashed campaign's
/// lock expires within the lease and a live one's never does.
pub fn lease() -> Duration {
    std::env::var("TRIALRUNNER_LOCK_LEASE")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(Duration::from_secs(15 * 60))
}

/// This process's claim for a journal's campaign, with a fresh lease.
pub fn claim_of(journal: &JournalState) -> LockClaim {
    LockClaim {
        id: journal.lock_id.clone(),
        owner: Owner::current(),
        expires_unix: unix_now() + lease().as_secs_f64(),
        results_dir: journal
            .results_dir
            .as_ref()
            .map(|d| d.display().to_string()),
    }
}

/// Renews a claim's lease in the background until stopped.
pub struct Heartbeat(Background);

impl Heartbeat {
    /// Renews `claim` every quarter lease. When the claim is gone from a group, says why in
    /// `lost` and cancels `campaign`.
    pub fn start(
        scaler: Arc<dyn Scaler>,
        claim: LockClaim,
        campaign: CancellationToken,
        lost: Arc<Mutex<Option<String>>>,
    ) -> Heartbeat {
        let every = (lease() / 4).max(Duration::from_secs(1));
        Heartbeat(Background::spawn(move |token| async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = token.cancelled() => return,
                }
                let renewed = LockClaim {
                    expires_unix: unix_now() + lease().as_secs_f64(),
                    ..claim.clone()
                };
                // A renewal in flight is let finish (the stop gives it two seconds), so that it
                // lands before the unlock that follows the stop, never after it.
                let outcome = scaler.renew(&renewed).await;
                match outcome {
                    Ok(true) => tracing::debug!(id = %claim.id, "lease renewed"),
                    Ok(false) => {
                        let why = "the lock on the deployment was broken by another operator (`infra restore --force`): the groups are no longer this campaign's to measure";
                        crate::terminal::say(&format!("stopping: {why}"));
                        *lost.lock().expect("lost lock") = Some(why.to_string());
                        campaign.cancel();
                        return;
                    }
                    // A failed renewal is tried again next time: the lease outlasts several.
                    Err(e) => tracing::warn!("renewing the deployment lock: {e}"),
                }
            }
        }))
    }

    /// Stops renewing; a renewal in flight gets two seconds, then is abandoned.
    pub async fn stop(self) {
        self.0.stop().await
    }
}
