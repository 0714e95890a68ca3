//! How a launched instance joins in the twin, from what the emulator says of its group: taken
//! from the group's warm pool, it is Pending only for a short start (`warm_running` from a
//! Running pool, `warm_stopped` from a Stopped or Hibernated one) instead of the full spin-up,
//! while the pool prepares a replacement (a full spin-up) before it can give another; with a
//! target-group health check on a readiness path (anything but the shallow `.well-known`), the
//! load balancer routes to it only once its VTS is up, so its not-ready failures never reach a
//! client.

use std::time::{Duration, Instant};

use crate::aws::{sdk_error, AwsContext};
use crate::error::Result;

/// What the emulator says of a group, for its joining instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupJoin {
    /// The warm pool: (prepared instances kept, their state).
    pub pool: Option<(i32, String)>,
    /// The target group checks readiness (a path other than `/.well-known/…`).
    pub readiness_check: bool,
}

/// Reads a group's warm pool and its target groups' health-check paths.
pub async fn read(ctx: &AwsContext, asg: &str) -> Result<GroupJoin> {
    let client = aws_sdk_autoscaling::Client::new(&ctx.config);
    let pool = client
        .describe_warm_pool()
        .auto_scaling_group_name(asg)
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "autoscaling:DescribeWarmPool", e))?;
    let pool = pool.warm_pool_configuration().map(|w| {
        (
            w.min_size().unwrap_or(0),
            w.pool_state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "Stopped".into()),
        )
    });
    let groups = client
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "autoscaling:DescribeAutoScalingGroups", e))?;
    let arns: Vec<String> = groups
        .auto_scaling_groups()
        .iter()
        .flat_map(|g| g.target_group_arns().to_vec())
        .collect();
    let mut readiness_check = false;
    if !arns.is_empty() {
        let tgs = aws_sdk_elasticloadbalancingv2::Client::new(&ctx.config)
            .describe_target_groups()
            .set_target_group_arns(Some(arns))
            .send()
            .await
            .map_err(|e| sdk_error(ctx, "elasticloadbalancing:DescribeTargetGroups", e))?;
        readiness_check = tgs.target_groups().iter().any(|t| {
            t.health_check_path()
                .is_some_and(|p| !p.starts_with("/.well-known/"))
        });
    }
    Ok(GroupJoin {
        pool,
        readiness_check,
    })
}

/// The twin's timing of joins, per group: when the warm pool's taken instances are replaced.
#[derive(Debug, Default)]
pub struct PoolLedger {
    /// When each instance taken from the pool has its replacement prepared.
    refilled_at: Vec<Instant>,
}

/// How one instance joins: Pending for `pending`, then not ready for `not_ready` (routed to
/// meanwhile unless the group checks readiness).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Join {
    /// Pending (not routed to).
    pub pending: Duration,
    /// Not ready after that.
    pub not_ready: Duration,
    /// Routed to only once ready.
    pub routed_when_ready: bool,
    /// Taken from the warm pool.
    pub from_pool: bool,
}

impl PoolLedger {
    /// The join of one instance launched now into a group that `group` describes, given the
    /// cold spin-up and the pool's starts.
    pub fn join(
        &mut self,
        group: &GroupJoin,
        spin_up: Duration,
        not_ready: Duration,
        warm_running: Duration,
        warm_stopped: Duration,
    ) -> Join {
        let now = Instant::now();
        self.refilled_at.retain(|t| *t > now);
        let warm = match &group.pool {
            Some((min, state)) if (self.refilled_at.len() as i32) < *min => {
                self.refilled_at.push(now + spin_up);
                Some(if state == "Running" {
                    warm_running
                } else {
                    warm_stopped
                })
            }
            _ => None,
        };
        Join {
            pending: warm.unwrap_or(spin_up),
            // A pool's instance was deployed while it was prepared: its VTS is up when it starts.
            not_ready: if warm.is_some() {
                Duration::ZERO
            } else {
                not_ready
            },
            routed_when_ready: group.readiness_check,
            from_pool: warm.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_gives_min_instances_then_refills_after_a_spin_up() {
        let s = Duration::from_secs(20);
        let (nr, run, stop) = (
            Duration::from_secs(5),
            Duration::from_secs(1),
            Duration::from_secs(3),
        );
        let mut ledger = PoolLedger::default();
        let cold = GroupJoin::default();
        assert_eq!(ledger.join(&cold, s, nr, run, stop).pending, s);
        let running = GroupJoin {
            pool: Some((2, "Running".into())),
            readiness_check: true,
        };
        let a = ledger.join(&running, s, nr, run, stop);
        let b = ledger.join(&running, s, nr, run, stop);
        let c = ledger.join(&running, s, nr, run, stop);
        assert_eq!(
            (a.pending, a.not_ready, a.from_pool),
            (run, Duration::ZERO, true)
        );
        assert!(b.from_pool && b.routed_when_ready);
        assert_eq!(
            (c.pending, c.from_pool),
            (s, false),
            "the pool is empty until refilled"
        );
        let stopped = GroupJoin {
            pool: Some((1, "Stopped".into())),
            readiness_check: false,
        };
        let mut ledger = PoolLedger::default();
        assert_eq!(ledger.join(&stopped, s, nr, run, stop).pending, stop);
    }
}
