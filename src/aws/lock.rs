//! The deployment lock on AWS: a campaign's claim written as tags on each auto-scaling group it
//! changes, so that every operator sees it, from any host and any state folder.
//!
//! Each claim has its own four tags (`trialrunner:lock:<id>:owner|lease|original|results`,
//! never propagated to instances), so two claims written at once never overwrite each other:
//! a campaign writes its claim, reads the groups back, and holds the lock only when no other
//! claim is there. When two campaigns both see the other, both take theirs back and try again
//! after a random pause; one then finds the other's claim and refuses naming it. A claim carries
//! the group's original settings (so that an operator on another host can put the group back),
//! its owner (host, pid, process start), its lease (renewed every minute or so while the
//! campaign runs) and its results directory as far as it fits (`aws::claim_tags`: the tags).

use std::time::Duration;

use aws_sdk_autoscaling::types::Tag;
use rand::Rng;
use tokio::time::Instant;

use super::claim_tags::{claim_tags, claims_on, key, FIELDS};
use super::scaler::{AwsScaler, GroupState, ServiceInfra};
use crate::error::{Error, Result};
use crate::provider::{AsgSettings, HeldLock, LockClaim, Takeover};
use crate::trial::model::ServiceRole;

/// How often two campaigns that wrote at once try again before giving up.
const ROUNDS: u32 = 5;
/// The lock's writes (its claim's tags), granted only on the groups the trial changes.
pub const GROUP_WRITES: &[&str] = &["autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"];

/// Claims across groups, one [`HeldLock`] per claim id (its owner and lease as the first group
/// shows them).
fn gather(groups: &[(&ServiceInfra, &GroupState)]) -> Vec<HeldLock> {
    let mut out: Vec<HeldLock> = Vec::new();
    for (svc, g) in groups {
        for (claim, original) in claims_on(&g.tags, svc.role, &svc.asg) {
            match out.iter_mut().find(|h| h.claim.id == claim.id) {
                Some(h) => h.groups.push((svc.asg.clone(), original)),
                None => out.push(HeldLock {
                    claim,
                    groups: vec![(svc.asg.clone(), original)],
                }),
            }
        }
    }
    for h in &mut out {
        h.groups.sort_by(|a, b| a.0.cmp(&b.0));
    }
    out
}

fn tag(group: &str, key: String, value: Option<String>) -> Tag {
    Tag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(key)
        .set_value(value)
        .propagate_at_launch(false)
        .build()
}

impl AwsScaler {
    /// The groups of these services with their tags.
    async fn look(&self, services: &[ServiceRole]) -> Result<Vec<(ServiceInfra, GroupState)>> {
        let mut out = Vec::new();
        for role in services {
            let svc = self.service(*role)?.clone();
            let g = self.group(&svc).await?;
            out.push((svc, g));
        }
        Ok(out)
    }

    async fn write_tags(&self, tags: Vec<Tag>) -> Result<()> {
        let client = &self.asg;
        self.ctx
            .call("autoscaling:CreateOrUpdateTags", || {
                client
                    .create_or_update_tags()
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await
            .map(|_| ())
    }

    async fn delete_tags(&self, tags: Vec<Tag>, deadline: Instant) -> Result<()> {
        let client = &self.asg_restore;
        self.ctx
            .call_until("autoscaling:DeleteTags", deadline, || {
                client.delete_tags().set_tags(Some(tags.clone())).send()
            })
            .await
            .map(|_| ())
    }

    /// See [`crate::provider::Scaler::lock`].
    pub(super) async fn take_lock(
        &self,
        services: &[ServiceRole],
        claim: &LockClaim,
        takeover: Takeover,
    ) -> Result<Vec<AsgSettings>> {
        for round in 1..=ROUNDS {
            let look = self.look(services).await?;
            let pairs: Vec<_> = look.iter().map(|(s, g)| (s, g)).collect();
            let held = gather(&pairs);
            let blocking: Vec<String> = held
                .iter()
                .filter_map(|h| {
                    h.claim.blocks(claim, takeover).map(|why| {
                        let groups: Vec<&str> = h.groups.iter().map(|(g, _)| g.as_str()).collect();
                        format!("{}: {why}", groups.join(", "))
                    })
                })
                .collect();
            if !blocking.is_empty() {
                return Err(Error::Usage(format!(
                    "the deployment is locked: {}",
                    blocking.join("; ")
                )));
            }
            // Originals: the ones this campaign's own claim carries (a resume), else the
            // settings read in the look that found the group free.
            let mine = held.iter().find(|h| h.claim.id == claim.id);
            let originals: Vec<AsgSettings> = look
                .iter()
                .map(|(svc, g)| {
                    mine.and_then(|h| h.groups.iter().find(|(n, _)| *n == svc.asg))
                        .and_then(|(_, o)| o.clone())
                        .unwrap_or_else(|| g.settings.clone())
                })
                .collect();
            let tags = look
                .iter()
                .zip(&originals)
                .flat_map(|((svc, _), o)| {
                    claim_tags(claim, o)
                        .into_iter()
                        .map(|(k, v)| tag(&svc.asg, k, Some(v)))
                })
                .collect();
            self.write_tags(tags).await?;
            // Read back: another claim written meanwhile means both step back and try again.
            let again = self.look(services).await?;
            let pairs: Vec<_> = again.iter().map(|(s, g)| (s, g)).collect();
            let rivals: Vec<HeldLock> = gather(&pairs)
                .into_iter()
                .filter(|h| h.claim.id != claim.id)
                .collect();
            if rivals.is_empty() {
                tracing::info!(id = %claim.id, "deployment lock taken");
                return Ok(originals);
            }
            tracing::info!(
                round,
                rival = %rivals[0].claim.owner,
                "another campaign wrote its claim at the same time: stepping back"
            );
            let groups: Vec<String> = look.iter().map(|(svc, _)| svc.asg.clone()).collect();
            self.remove_claim(
                &claim.id,
                &groups,
                Instant::now() + self.ctx.timeouts.operation,
            )
            .await?;
            let pause = rand::thread_rng().gen_range(200..1500);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        Err(Error::Infra(format!(
            "could not take the deployment lock: another campaign wrote its claim at the same time {ROUNDS} times"
        )))
    }

    /// See [`crate::provider::Scaler::renew`].
    pub(super) async fn renew_lock(&self, claim: &LockClaim) -> Result<bool> {
        let tags = self
            .services
            .iter()
            .map(|svc| {
                tag(
                    &svc.asg,
                    key(&claim.id, "lease"),
                    Some(format!("{:.0}", claim.expires_unix)),
                )
            })
            .collect();
        // Still ours everywhere? (A lease written on a group whose claim is gone is harmless:
        // without its owner tag it is no claim.)
        let roles: Vec<ServiceRole> = self.services.iter().map(|s| s.role).collect();
        let look = self.look(&roles).await?;
        let ours = look.iter().all(|(svc, g)| {
            claims_on(&g.tags, svc.role, &svc.asg)
                .iter()
                .any(|(c, _)| c.id == claim.id)
        });
        if !ours {
            return Ok(false);
        }
        self.write_tags(tags).await?;
        Ok(true)
    }

    /// See [`crate::provider::Scaler::unlock`].
    pub(super) async fn remove_claim(
        &self,
        claim_id: &str,
        groups: &[String],
        deadline: Instant,
    ) -> Result<()> {
        let tags = groups
            .iter()
            .flat_map(|g| {
                FIELDS
                    .iter()
                    .map(|f| tag(g, key(claim_id, f), None))
                    .collect::<Vec<_>>()
            })
            .collect();
        self.delete_tags(tags, deadline).await
    }

    /// See [`crate::provider::Scaler::held`].
    pub(super) async fn held_locks(&self) -> Result<Vec<HeldLock>> {
        let mut look = Vec::new();
        for svc in &self.services {
            match self.group(svc).await {
                Ok(g) => look.push((svc, g)),
                Err(Error::Missing(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let pairs: Vec<_> = look.iter().map(|(s, g)| (*s, g)).collect();
        Ok(gather(&pairs))
    }
}
