//! Rolling a group's instances onto what it now launches from: an Instance Refresh. On AWS it is
//! AWS's own ([`ApiRefresh`]: `StartInstanceRefresh`, polled, cancelled on a stop request). An
//! emulator has none (moto answers `NotImplemented`), so there the tool acts it out itself
//! ([`ActedOutRefresh`]) with calls the emulator does implement: the instances that were in the
//! group when it started are terminated in batches (the group launches their replacements), a
//! batch only once every instance is back InService and healthy, never taking more out than the
//! minimum healthy percentage allows. Behind the rehearsal's twin (whose view of the emulator
//! keeps a new instance Pending for its spin-up) a batch therefore takes the twin's spin-up time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::AwsContext;
use crate::error::{Error, Result};

/// Calls of the refreshes (IAM actions, granted on the groups the trial changes).
pub const GROUP_WRITES: &[&str] = &[
    "autoscaling:StartInstanceRefresh",
    "autoscaling:CancelInstanceRefresh",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
];

/// Reads of the refreshes (granted on `*`).
pub const READS: &[&str] = &[
    "autoscaling:DescribeInstanceRefreshes",
    "autoscaling:DescribeAutoScalingGroups",
];

/// One group's refresh calls: with which client, on which group, until when.
pub struct RefreshCall<'a> {
    /// The context (retries, endpoint).
    pub ctx: &'a AwsContext,
    /// The Auto Scaling client (the restore's has tighter timeouts).
    pub client: &'a aws_sdk_autoscaling::Client,
    /// The group.
    pub asg: &'a str,
    /// Each call ends by then.
    pub deadline: Instant,
}

/// How far a refresh is.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshState {
    /// Still replacing: the percentage done and what it is doing.
    InProgress(i32, String),
    /// Every instance replaced.
    Done,
    /// It ended without replacing them all (AWS's `Failed`, `Cancelled`, …), and why.
    Failed(String),
}

/// An instance refresh, however it is carried out.
#[async_trait]
pub trait InstanceRefresh: Send + Sync {
    /// Starts replacing every instance of the group, keeping `min_healthy` percent in service;
    /// returns the refresh's id.
    async fn start(&self, on: &RefreshCall<'_>, min_healthy: i32) -> Result<String>;
    /// How far the refresh `id` is (an acted-out one also takes its next step here).
    async fn progress(&self, on: &RefreshCall<'_>, id: &str) -> Result<RefreshState>;
    /// Cancels the group's refresh in progress, if any (instances already replaced stay).
    async fn cancel(&self, on: &RefreshCall<'_>) -> Result<()>;
    /// True when a refresh, once started, goes on without this process (AWS's does).
    fn carries_on(&self) -> bool;
}

/// AWS's Instance Refresh.
pub struct ApiRefresh;

#[async_trait]
impl InstanceRefresh for ApiRefresh {
    async fn start(&self, on: &RefreshCall<'_>, min_healthy: i32) -> Result<String> {
        let out = on
            .ctx
            .call_until("autoscaling:StartInstanceRefresh", on.deadline, || {
                on.client
                    .start_instance_refresh()
                    .auto_scaling_group_name(on.asg)
                    .preferences(
                        aws_sdk_autoscaling::types::RefreshPreferences::builder()
                            .min_healthy_percentage(min_healthy)
                            .build(),
                    )
                    .send()
            })
            .await?;
        Ok(out.instance_refresh_id().unwrap_or("?").to_string())
    }

    async fn progress(&self, on: &RefreshCall<'_>, id: &str) -> Result<RefreshState> {
        let out = on
            .ctx
            .call_until("autoscaling:DescribeInstanceRefreshes", on.deadline, || {
                on.client
                    .describe_instance_refreshes()
                    .auto_scaling_group_name(on.asg)
                    .instance_refresh_ids(id)
                    .send()
            })
            .await?;
        let Some(r) = out.instance_refreshes().first() else {
            return Err(Error::Missing(format!(
                "{}: instance refresh {id} not found",
                on.asg
            )));
        };
        let status = r.status().map(|s| s.as_str()).unwrap_or("Pending");
        let why = r.status_reason().unwrap_or("").to_string();
        Ok(match status {
            "Successful" => RefreshState::Done,
            "Pending" | "InProgress" => RefreshState::InProgress(
                r.percentage_complete().unwrap_or(0),
                format!(
                    "{} instances to replace{}",
                    r.instances_to_update().unwrap_or(0),
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" ({why})")
                    }
                ),
            ),
            other => RefreshState::Failed(format!("{other}: {why}")),
        })
    }

    async fn cancel(&self, on: &RefreshCall<'_>) -> Result<()> {
        let cancelled = on
            .ctx
            .call_until("autoscaling:CancelInstanceRefresh", on.deadline, || {
                on.client
                    .cancel_instance_refresh()
                    .auto_scaling_group_name(on.asg)
                    .send()
            })
            .await;
        match cancelled {
            Err(Error::Infra(why)) if why.contains("ActiveInstanceRefreshNotFound") => {
                return Ok(())
            }
            other => other.map(|_| ())?,
        }
        // Cancelling takes a while, and a new refresh is refused meanwhile: wait it out.
        loop {
            let out = on
                .ctx
                .call_until("autoscaling:DescribeInstanceRefreshes", on.deadline, || {
                    on.client
                        .describe_instance_refreshes()
                        .auto_scaling_group_name(on.asg)
                        .max_records(1)
                        .send()
                })
                .await?;
            let active = out.instance_refreshes().first().is_some_and(|r| {
                matches!(
                    r.status().map(|s| s.as_str()),
                    Some("Pending" | "InProgress" | "Cancelling")
                )
            });
            if !active {
                return Ok(());
            }
            if Instant::now() + Duration::from_secs(5) >= on.deadline {
                return Err(Error::Infra(format!(
                    "{}: its instance refresh is still being cancelled",
                    on.asg
                )));
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }

    fn carries_on(&self) -> bool {
        true
    }
}

/// A refresh acted out through the calls an emulator implements (see the module comment). Its
/// state (the instances still to replace) lives in this process.
#[derive(Default)]
pub struct ActedOutRefresh {
    /// Per group, its refresh in progress.
    pending: Mutex<BTreeMap<String, ActedOut>>,
}

/// One group's acted-out refresh.
#[derive(Debug, Clone)]
struct ActedOut {
    /// Its id.
    id: String,
    /// The instances it has still to replace.
    old: Vec<String>,
    /// How many it had to replace.
    total: usize,
    /// The share kept healthy, percent.
    min_healthy: i32,
}

/// How many instances may be taken out at once: what stays above `min_healthy` percent of
/// `desired` among the `in_service`, at least one, at most `left`.
pub fn batch_size(desired: usize, in_service: usize, min_healthy: i32, left: usize) -> usize {
    let keep = (desired as f64 * f64::from(min_healthy.clamp(0, 100)) / 100.0).ceil() as usize;
    in_service.saturating_sub(keep).max(1).min(left)
}

impl ActedOutRefresh {
    /// The group's instances: (id, InService and Healthy), and its desired capacity.
    async fn instances(on: &RefreshCall<'_>) -> Result<(Vec<(String, bool)>, usize)> {
        let out = on
            .ctx
            .call_until("autoscaling:DescribeAutoScalingGroups", on.deadline, || {
                on.client
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(on.asg)
                    .send()
            })
            .await?;
        let g = out
            .auto_scaling_groups()
            .first()
            .ok_or_else(|| Error::Missing(format!("auto-scaling group `{}` not found", on.asg)))?;
        let instances = g
            .instances()
            .iter()
            .map(|i| {
                (
                    i.instance_id().unwrap_or("?").to_string(),
                    i.lifecycle_state().map(|s| s.as_str()) == Some("InService")
                        && i.health_status() == Some("Healthy"),
                )
            })
            .collect();
        Ok((instances, g.desired_capacity().unwrap_or(0).max(0) as usize))
    }
}

#[async_trait]
impl InstanceRefresh for ActedOutRefresh {
    async fn start(&self, on: &RefreshCall<'_>, min_healthy: i32) -> Result<String> {
        let (instances, _) = Self::instances(on).await?;
        let old: Vec<String> = instances.into_iter().map(|(id, _)| id).collect();
        let id = format!("acted-out-{}-{}", on.asg, std::process::id());
        let refresh = ActedOut {
            id: id.clone(),
            total: old.len(),
            old,
            min_healthy,
        };
        self.pending
            .lock()
            .expect("refresh state")
            .insert(on.asg.to_string(), refresh);
        Ok(id)
    }

    async fn progress(&self, on: &RefreshCall<'_>, id: &str) -> Result<RefreshState> {
        let (instances, desired) = Self::instances(on).await?;
        let ActedOut {
            old,
            total,
            min_healthy,
            ..
        } = {
            let mut pending = self.pending.lock().expect("refresh state");
            let Some(refresh) = pending.get_mut(on.asg).filter(|r| r.id == id) else {
                return Err(Error::Missing(format!(
                    "{}: instance refresh {id} not found",
                    on.asg
                )));
            };
            refresh
                .old
                .retain(|o| instances.iter().any(|(i, _)| i == o));
            refresh.clone()
        };
        let in_service = instances.iter().filter(|(_, ok)| *ok).count();
        let percent = |left: usize| {
            (100 * (total - left))
                .checked_div(total)
                .map_or(100, |p| p as i32)
        };
        if in_service < instances.len() || instances.len() < desired {
            return Ok(RefreshState::InProgress(
                percent(old.len()),
                format!(
                    "{} of {} instances in service",
                    in_service,
                    desired.max(instances.len())
                ),
            ));
        }
        if old.is_empty() {
            self.pending.lock().expect("refresh state").remove(on.asg);
            return Ok(RefreshState::Done);
        }
        let batch = batch_size(desired, in_service, min_healthy, old.len());
        for instance in &old[..batch] {
            on.ctx
                .call_until(
                    "autoscaling:TerminateInstanceInAutoScalingGroup",
                    on.deadline,
                    || {
                        on.client
                            .terminate_instance_in_auto_scaling_group()
                            .instance_id(instance)
                            .should_decrement_desired_capacity(false)
                            .send()
                    },
                )
                .await?;
        }
        Ok(RefreshState::InProgress(
            percent(old.len() - batch),
            format!("replacing {batch} of {} left", old.len()),
        ))
    }

    async fn cancel(&self, on: &RefreshCall<'_>) -> Result<()> {
        self.pending.lock().expect("refresh state").remove(on.asg);
        Ok(())
    }

    fn carries_on(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::batch_size;

    #[test]
    fn a_batch_keeps_the_minimum_healthy_share_in_service_and_takes_at_least_one() {
        assert_eq!(batch_size(10, 10, 90, 10), 1, "AWS's default: one in ten");
        assert_eq!(batch_size(10, 10, 50, 10), 5);
        assert_eq!(batch_size(10, 10, 50, 3), 3, "no more than are left");
        assert_eq!(
            batch_size(2, 2, 90, 2),
            1,
            "at least one, even at 90 % of two"
        );
        assert_eq!(batch_size(4, 4, 0, 4), 4, "0 %: all at once");
        assert_eq!(batch_size(3, 3, 100, 3), 1, "100 %: one at a time");
    }
}
