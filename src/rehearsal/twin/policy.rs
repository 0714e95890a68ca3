//! The groups' target-tracking policies acted out: every policy window the twin measures each
//! policy's metric (CPU from the modelled occupancy, or requests per target) from what its
//! instances served, and sets the group's desired capacity as AWS's target tracking would
//! (scale-out at once, scale-in after quiet windows).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{TwinConfig, TwinState};
use crate::aws::{sdk_error, AwsContext};
use crate::error::Result;
use crate::trial::model::ServiceRole;

/// What the policy loop remembers between windows.
#[derive(Default)]
pub(super) struct PolicyState {
    /// Requests routed to each instance at the last window.
    routed: BTreeMap<String, usize>,
    /// Consecutive windows each group wanted fewer instances.
    low: BTreeMap<String, u32>,
}

/// A group's target-tracking policy: its predefined metric and target value.
async fn target_tracking(ctx: &AwsContext, asg: &str) -> Result<Option<(String, f64)>> {
    let out = aws_sdk_autoscaling::Client::new(&ctx.config)
        .describe_policies()
        .auto_scaling_group_name(asg)
        .send()
        .await
        .map_err(|e| sdk_error(ctx, "autoscaling:DescribePolicies", e))?;
    Ok(out.scaling_policies().iter().find_map(|p| {
        let t = p.target_tracking_configuration()?;
        let metric = t
            .predefined_metric_specification()?
            .predefined_metric_type()?
            .as_str()
            .to_string();
        Some((metric, t.target_value()?))
    }))
}

/// The new desired capacity a target-tracking policy asks for, within min..max.
pub fn tracked_capacity(desired: i32, metric: f64, target: f64, min: i32, max: i32) -> i32 {
    if target <= 0.0 {
        return desired;
    }
    let want = (desired.max(1) as f64 * metric / target).ceil() as i32;
    want.clamp(min, max)
}

/// One policy window: each group's metric from what its instances served, then its desired
/// capacity set as its policy asks.
pub(super) async fn act_out_policies(
    ctx: &AwsContext,
    config: &TwinConfig,
    state: &TwinState,
    memory: &mut PolicyState,
    span: Duration,
) -> Result<()> {
    let asg = aws_sdk_autoscaling::Client::new(&ctx.config);
    for role in [ServiceRole::Provisioning, ServiceRole::Verification] {
        let name = format!("{}-{}-asg", config.deployment, role.asg_suffix());
        let Some((metric, target)) = target_tracking(ctx, &name).await? else {
            continue;
        };
        let (requests, serving) = {
            let now = Instant::now();
            let instances = state.instances.lock().expect("instances lock");
            let mut requests = 0;
            let mut serving = 0;
            for i in instances.iter().filter(|i| i.role == role) {
                let routed = i.routed.load(Ordering::Relaxed);
                requests += routed - memory.routed.get(&i.id).copied().unwrap_or(0).min(routed);
                memory.routed.insert(i.id.clone(), routed);
                serving += usize::from(i.routable_at <= now);
            }
            (requests as f64, serving.max(1) as f64)
        };
        let per_s = requests / span.as_secs_f64().max(1e-3);
        let value = match (metric.as_str(), config.capacity) {
            ("ALBRequestCountPerTarget", _) => per_s * 60.0 / serving,
            ("ASGAverageCPUUtilization", Some(c)) => {
                100.0 * (per_s * c.service.as_secs_f64() / (c.workers as f64 * serving)).min(1.0)
            }
            _ => continue,
        };
        let group = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&name)
            .send()
            .await
            .map_err(|e| sdk_error(ctx, "autoscaling:DescribeAutoScalingGroups", e))?;
        let Some(g) = group.auto_scaling_groups().first() else {
            continue;
        };
        let (desired, min, max) = (
            g.desired_capacity().unwrap_or(0),
            g.min_size().unwrap_or(0),
            g.max_size().unwrap_or(0),
        );
        let want = tracked_capacity(desired, value, target, min, max);
        let low = memory.low.entry(name.clone()).or_default();
        *low = if want < desired { *low + 1 } else { 0 };
        if want > desired || (want < desired && *low >= config.scale_in_after) {
            tracing::info!(
                "twin: {name}: {metric} {value:.0} against {target:.0}: desired {desired} → {want}"
            );
            *low = 0;
            asg.set_desired_capacity()
                .auto_scaling_group_name(&name)
                .desired_capacity(want)
                .honor_cooldown(false)
                .send()
                .await
                .map_err(|e| sdk_error(ctx, "autoscaling:SetDesiredCapacity", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_tracking_scales_in_proportion_within_the_bounds() {
        // 1 instance at 100 % CPU against 50 %: 2; then 2 at 100 %: 4, capped at 3.
        assert_eq!(tracked_capacity(1, 100.0, 50.0, 1, 3), 2);
        assert_eq!(tracked_capacity(2, 100.0, 50.0, 1, 3), 3);
        // Quiet: down to what the load needs, never below min.
        assert_eq!(tracked_capacity(3, 10.0, 50.0, 1, 3), 1);
        assert_eq!(tracked_capacity(3, 40.0, 50.0, 2, 3), 3);
        // Pinned (min = max): never moves.
        assert_eq!(tracked_capacity(2, 100.0, 50.0, 2, 2), 2);
    }
}
