//! Trials that change a deployment's warm pools, scaling policies, health checks and instance
//! types (issue 26):
//! against moto, each change is applied for the runs and the originals come back exactly on
//! every way out: the end, SIGTERM, kill -9 then `infra restore`, and a frozen endpoint then
//! `infra restore`. A pool or a policy that did not exist before is gone after.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{
    InstanceReusePolicy, MetricType, PredefinedMetricSpecification, TargetTrackingConfiguration,
    WarmPoolState,
};
use common::deployment::*;
use serde_json::{json, Value};
use trialrunner::aws::AwsContext;

const PROV: &str = "veraison-prov-asg";
const VERIF: &str = "veraison-verif-asg";

/// The trial: provisioning gains a pool it never had and the trial's CPU policy instead of its
/// own; verification's pool, policies and health checks are changed, and its instances run as
/// another instance type (a new template version, rolled out).
fn knobs_trial(runs: &str) -> String {
    format!(
        "name: knobs\nenvironment: env.yaml\ninfra:\n  provisioning: {{ pin: 2, warm-pool: {{ min: 2 }}, policy: {{ cpu: 60% }} }}\n  verification:\n    pin: 2\n    warm-pool: {{ min: 3, state: Stopped }}\n    policy: none\n    health-check: {{ type: ELB, grace: 30s, path: /ready, interval: 10s, healthy-threshold: 3 }}\n    instance-type: c6i.xlarge\n    instance-refresh: {{ min-healthy: 50% }}\n  ready-timeout: 60s\n  sample-every: 1s\nruns: {runs}\n"
    )
}

const SHORT_RUNS: &str = "{ users: 2, duration: 2s, tasks: [well-known] }";
const LONG_RUNS: &str = "{ users: [2, 4], duration: 20s, tasks: [well-known] }";

/// Verification's own settings before the trial: a running pool that reuses instances, a
/// second CPU policy (the deployment has one on each group), an EC2 health check with a 300 s
/// grace.
async fn seed_originals(ctx: &AwsContext) {
    let asg = aws_sdk_autoscaling::Client::new(&ctx.config);
    asg.put_warm_pool()
        .auto_scaling_group_name(VERIF)
        .min_size(1)
        .pool_state(WarmPoolState::Running)
        .instance_reuse_policy(
            InstanceReusePolicy::builder()
                .reuse_on_scale_in(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    asg.put_scaling_policy()
        .auto_scaling_group_name(VERIF)
        .policy_name("verif-cpu")
        .policy_type("TargetTrackingScaling")
        .estimated_instance_warmup(120)
        .target_tracking_configuration(
            TargetTrackingConfiguration::builder()
                .predefined_metric_specification(
                    PredefinedMetricSpecification::builder()
                        .predefined_metric_type(MetricType::AsgAverageCpuUtilization)
                        .build(),
                )
                .target_value(50.0)
                .build(),
        )
        .send()
        .await
        .unwrap();
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(VERIF)
        .health_check_type("EC2")
        .health_check_grace_period(300)
        .send()
        .await
        .unwrap();
}

/// A group's launch template version as the group names it, its template's versions, and the
/// instance types its instances run as (sorted), read straight from moto.
async fn launch(ctx: &AwsContext, name: &str) -> Value {
    let asg = aws_sdk_autoscaling::Client::new(&ctx.config);
    let ec2 = aws_sdk_ec2::Client::new(&ctx.config);
    let g = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    let g = &g.auto_scaling_groups()[0];
    let lt = g.launch_template().unwrap();
    let versions = ec2
        .describe_launch_template_versions()
        .launch_template_id(lt.launch_template_id().unwrap())
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = g
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    let out = ec2
        .describe_instances()
        .set_instance_ids(Some(ids))
        .send()
        .await
        .unwrap();
    let mut types: Vec<String> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| i.instance_type().unwrap().as_str().to_string())
        .collect();
    types.sort();
    json!({
        "version": lt.version(),
        "versions": versions.launch_template_versions().len(),
        "types": types,
    })
}

/// Each group's warm pool, policies, health check, target groups' health checks and what its
/// instances launch from, read straight from moto.
async fn knobs(ctx: &AwsContext) -> Value {
    let asg = aws_sdk_autoscaling::Client::new(&ctx.config);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&ctx.config);
    let mut out = serde_json::Map::new();
    for name in [PROV, VERIF] {
        let pool = asg
            .describe_warm_pool()
            .auto_scaling_group_name(name)
            .send()
            .await
            .unwrap();
        let pool = pool.warm_pool_configuration().map(|w| {
            json!({
                "min": w.min_size(),
                "max": w.max_group_prepared_capacity(),
                "state": w.pool_state().map(|s| s.as_str().to_string()),
                "reuse": w.instance_reuse_policy().and_then(|r| r.reuse_on_scale_in()),
            })
        });
        let policies = asg
            .describe_policies()
            .auto_scaling_group_name(name)
            .send()
            .await
            .unwrap();
        let mut policies: Vec<Value> = policies
            .scaling_policies()
            .iter()
            .map(|p| {
                let t = p.target_tracking_configuration();
                json!({
                    "name": p.policy_name(),
                    "type": p.policy_type(),
                    "metric": t.and_then(|t| t.predefined_metric_specification()).and_then(|m| m.predefined_metric_type()).map(|m| m.as_str().to_string()),
                    "target": t.and_then(|t| t.target_value()),
                    "no_scale_in": t.and_then(|t| t.disable_scale_in()),
                    "warmup": p.estimated_instance_warmup(),
                })
            })
            .collect();
        policies.sort_by_key(|p| p["name"].to_string());
        let g = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .unwrap();
        let g = &g.auto_scaling_groups()[0];
        let tgs = elb
            .describe_target_groups()
            .set_target_group_arns(Some(g.target_group_arns().to_vec()))
            .send()
            .await
            .unwrap();
        let tgs: Vec<Value> = tgs
            .target_groups()
            .iter()
            .map(|t| {
                json!({
                    "path": t.health_check_path(),
                    "interval": t.health_check_interval_seconds(),
                    "healthy": t.healthy_threshold_count(),
                    "unhealthy": t.unhealthy_threshold_count(),
                })
            })
            .collect();
        out.insert(
            name.into(),
            json!({
                "pool": pool,
                "policies": policies,
                "type": g.health_check_type(),
                "grace": g.health_check_grace_period(),
                "target_groups": tgs,
                "launch": launch(ctx, name).await,
            }),
        );
    }
    Value::Object(out)
}

/// What the trial set, as `knobs` reads it, against the originals.
fn assert_applied(now: &Value, before: &Value) {
    let prov = &now[PROV];
    assert_eq!(prov["pool"]["min"], 2, "{now:#}");
    assert_eq!(prov["pool"]["state"], "Stopped", "AWS's default state");
    assert_eq!(
        prov["policies"],
        json!([{"name": "trialrunner-veraison-prov-asg", "type": "TargetTrackingScaling",
                "metric": "ASGAverageCPUUtilization", "target": 60.0, "no_scale_in": null, "warmup": null}]),
        "{now:#}"
    );
    let verif = &now[VERIF];
    assert_eq!(
        verif["pool"],
        json!({"min": 3, "max": null, "state": "Stopped", "reuse": true}),
        "min and state changed, reuse kept from the group's own pool: {now:#}"
    );
    assert_eq!(verif["policies"], json!([]), "policy: none");
    assert_eq!(
        (&verif["type"], &verif["grace"]),
        (&json!("ELB"), &json!(30))
    );
    let tg = &verif["target_groups"][0];
    assert_eq!(
        (&tg["path"], &tg["interval"], &tg["healthy"]),
        (&json!("/ready"), &json!(10), &json!(3))
    );
    assert_eq!(
        tg["unhealthy"], before[VERIF]["target_groups"][0]["unhealthy"],
        "what the trial does not name is left as it was"
    );
    assert_eq!(
        verif["launch"],
        json!({"version": "2", "versions": 2, "types": ["c6i.xlarge", "c6i.xlarge"]}),
        "a new template version with the type, the group on it, every instance replaced: {now:#}"
    );
    assert_eq!(
        (&prov["launch"]["version"], &prov["launch"]["types"][0]),
        (&json!("$Latest"), &json!("t2.micro")),
        "provisioning's left alone"
    );
}

/// The originals as the test seeded them (and moto's defaults where the test set nothing).
fn assert_seeded(before: &Value) {
    assert_eq!(before[PROV]["pool"], Value::Null, "{before:#}");
    assert_eq!(before[PROV]["policies"][0]["name"], "veraison-prov-cpu60");
    assert_eq!(before[VERIF]["pool"]["min"], 1, "{before:#}");
    assert_eq!(before[VERIF]["pool"]["state"], "Running");
    assert_eq!(before[VERIF]["policies"][0]["name"], "veraison-verif-cpu60");
    assert_eq!(before[VERIF]["policies"][1]["name"], "verif-cpu");
    assert_eq!(before[VERIF]["policies"][1]["warmup"], 120);
    assert_eq!(before[VERIF]["grace"], 300);
    assert_eq!(
        before[VERIF]["launch"],
        json!({"version": "$Latest", "versions": 1, "types": ["t2.micro"]}),
        "{before:#}"
    );
}

#[derive(Debug, Clone, Copy)]
enum WayOut {
    End,
    Sigterm,
    KillThenRestore,
    FrozenThenRestore,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pools_policies_and_health_checks_are_applied_then_restored_on_every_way_out() {
    let _serial = SERIAL.lock().await;
    for way in [
        WayOut::End,
        WayOut::Sigterm,
        WayOut::KillThenRestore,
        WayOut::FrozenThenRestore,
    ] {
        let runs = if matches!(way, WayOut::End) {
            SHORT_RUNS
        } else {
            LONG_RUNS
        };
        let d = Drill::new(&knobs_trial(runs)).await;
        seed_originals(&d.ctx).await;
        let before = knobs(&d.ctx).await;
        assert_seeded(&before);
        let mut run = if matches!(way, WayOut::FrozenThenRestore) {
            d.start_run_to_fail_restore()
        } else {
            d.start_run()
        };
        run.wait_for("step=load", Duration::from_secs(60));
        assert_applied(&knobs(&d.ctx).await, &before);
        match way {
            WayOut::End => {
                let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(60));
                assert_eq!(status.code(), Some(0), "{output}");
                assert!(
                    output.contains("restored veraison-verif-asg to min 1 max 3 desired 1; warm pool min 1, Running, reuse on scale-in true; policies veraison-verif-cpu60"),
                    "the restore says what it put back: {output}"
                );
                let journal: Value =
                    serde_json::from_slice(&std::fs::read(d.out().join("journal.json")).unwrap())
                        .unwrap();
                let verif = journal["original"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|o| o["name"] == VERIF)
                    .unwrap();
                assert_eq!(verif["deployment"]["warm_pool"]["state"], "Running");
                assert_eq!(verif["deployment"]["policies"][1]["name"], "verif-cpu");
            }
            WayOut::Sigterm => {
                run.signal(libc::SIGTERM);
                let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(60));
                assert_eq!(status.code(), Some(143), "{output}");
            }
            WayOut::KillThenRestore => {
                run.child.kill().unwrap();
                run.child.wait().unwrap();
                assert_applied(&knobs(&d.ctx).await, &before);
                d.infra(&["restore"], 0);
            }
            WayOut::FrozenThenRestore => {
                d.proxy.freeze("*");
                d.proxy.wait_held(1, Duration::from_secs(30));
                run.signal(libc::SIGINT);
                let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(60));
                assert_eq!(status.code(), Some(3), "{output}");
                assert_applied(&knobs(&d.ctx).await, &before);
                d.thaw();
                d.infra(&["restore"], 0);
            }
        }
        assert_eq!(
            knobs(&d.ctx).await,
            before,
            "{way:?}: every setting back as it was"
        );
        assert_eq!(d.capacities().await, ORIGINAL, "{way:?}");
        assert!(d.lock_tags().await.is_empty(), "{way:?}: lock released");
    }
}

/// An operator on another host, with no journal of their own, breaks a crashed campaign's lock
/// with `infra restore --force`: the lock names the campaign's results directory, and where it
/// is readable (here the same disk; a shared folder in practice) its journal puts back every
/// setting, not only the capacity the lock's tags carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_restore_from_another_host_reads_the_journal_the_lock_names() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(&knobs_trial(LONG_RUNS)).await;
    seed_originals(&d.ctx).await;
    let before = knobs(&d.ctx).await;
    let mut run = d.start(
        d.cmd_on("host-a", d.state.path()),
        &d.trial,
        &d.env,
        &d.out(),
    );
    run.wait_for("step=load", Duration::from_secs(60));
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    assert_applied(&knobs(&d.ctx).await, &before);
    let b_state = tempfile::tempdir().unwrap();
    let b = |args: &[&str], code: i32| {
        common::expect_exit(
            d.cmd_on("host-b", b_state.path())
                .arg("infra")
                .args(args)
                .arg("--env")
                .arg(&d.env),
            code,
        )
    };
    let journal = d.out().join("journal.json");
    let status = b(&["status"], 1);
    assert!(
        status
            .stdout
            .contains(&format!("from: the journal {}", journal.display())),
        "{}",
        status.text()
    );
    let forced = b(&["restore", "--force"], 0);
    assert!(
        forced.stdout.contains("restoring from the journal")
            && forced.stdout.contains("released the lock"),
        "{}",
        forced.text()
    );
    assert_eq!(
        knobs(&d.ctx).await,
        before,
        "pools, policies, health checks and launch settings back, not only the capacity"
    );
    assert_eq!(d.capacities().await, ORIGINAL);
    assert!(d.lock_tags().await.is_empty());
    let written: Value = serde_json::from_slice(&std::fs::read(&journal).unwrap()).unwrap();
    assert_eq!(written["restored"], true, "the campaign's journal says so");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_each_setting_before_and_after_and_json_carries_it() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(&knobs_trial(SHORT_RUNS)).await;
    seed_originals(&d.ctx).await;
    let mut cmd = d.cmd();
    cmd.arg("plan").arg(&d.trial).arg("--env").arg(&d.env);
    let text = common::expect_exit(&mut cmd, 0).stdout;
    for needed in [
        "set verification warm-pool min 3, Stopped; policy none;",
        "warm-pool                        none → min 2",
        "policy                           veraison-prov-cpu60: ASGAverageCPUUtilization at 60 → target tracking: CPU 60%",
        "warm-pool                        min 1, Running, reuse on scale-in true → min 3, Stopped",
        "policy                           veraison-verif-cpu60: ASGAverageCPUUtilization at 60; verif-cpu: ASGAverageCPUUtilization at 50 → none",
        "health-check.type                EC2 → ELB",
        "health-check.grace               300s → 30s",
        "health-check.path                /.well-known/veraison/verification → /ready",
        "instance-type                    t2.micro → c6i.xlarge",
        "instance-refresh                 none → every instance replaced, 50% kept healthy, up to 30m",
    ] {
        assert!(text.contains(needed), "`{needed}` missing:\n{text}");
    }
    let mut cmd = d.cmd();
    cmd.arg("plan")
        .arg(&d.trial)
        .arg("--env")
        .arg(&d.env)
        .arg("--json");
    let doc: Value = serde_json::from_str(&common::expect_exit(&mut cmd, 0).stdout).unwrap();
    let verif = doc["changes"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["asg"] == VERIF)
        .unwrap();
    assert!(
        verif["settings"]
            .as_array()
            .unwrap()
            .contains(&json!({"setting": "health-check.type", "before": "EC2", "after": "ELB"})),
        "{verif:#}"
    );
    // Offline: the before is unknown, said so.
    let mut cmd = d.cmd();
    cmd.arg("plan")
        .arg(&d.trial)
        .arg("--env")
        .arg(&d.env)
        .arg("--offline");
    let text = common::expect_exit(&mut cmd, 0).stdout;
    assert!(
        text.contains("health-check.type                not read (--offline) → ELB"),
        "{text}"
    );
    assert_eq!(
        knobs(&d.ctx).await[VERIF]["type"],
        "EC2",
        "plan changed nothing"
    );
}

/// Verification's instances as another type, rolled out three at a time with 60 % kept healthy:
/// one instance per batch.
const TYPE_TRIAL: &str = "name: types\nenvironment: env.yaml\ninfra:\n  verification: { pin: 3, instance-type: c6i.xlarge, instance-refresh: { min-healthy: 60% } }\n  ready-timeout: 60s\n  sample-every: 1s\nruns: { users: 2, duration: 2s, tasks: [well-known] }\n";

/// Instances of the group now, as moto has them.
async fn instance_ids(ctx: &AwsContext, name: &str) -> Vec<String> {
    let asg = aws_sdk_autoscaling::Client::new(&ctx.config);
    let g = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    g.auto_scaling_groups()[0]
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect()
}

/// moto has no Instance Refresh, so against an emulator the tool acts it out: with every new
/// instance Pending for a while (the fault layer), the instances are replaced one batch at a
/// time as the minimum healthy percentage allows, each batch once the last is in service; and
/// a stop request mid-rollout ends the campaign at once, the restore putting the template back
/// and rolling the instances back onto it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_type_rolls_out_in_batches_and_a_stop_mid_rollout_rolls_back() {
    let _serial = SERIAL.lock().await;
    let pending = Duration::from_secs(2);
    let d = Drill::new(TYPE_TRIAL).await;
    let before = launch(&d.ctx, VERIF).await;
    d.proxy
        .stretch_lifecycles(pending, Duration::ZERO, instance_ids(&d.ctx, VERIF).await);
    let (status, output, _) = d
        .start_run()
        .finish(Instant::now(), Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{output}");
    // One at a time: 3 desired, 60 % of them (2) kept in service.
    for batch in [
        "replacing 1 of 3 left",
        "replacing 1 of 2 left",
        "replacing 1 of 1 left",
    ] {
        assert!(output.contains(batch), "`{batch}` missing:\n{output}");
    }
    let took: f64 = output
        .split("every instance replaced after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no end of the rollout said:\n{output}"));
    assert!(
        took >= 3.0 * pending.as_secs_f64() - 1.0,
        "each of the 3 batches waited for its replacement's {pending:?} of Pending: {took} s"
    );
    assert!(
        d.proxy.count("TerminateInstanceInAutoScalingGroup") > 3,
        "three replaced for the trial, then the restore's rollback"
    );
    assert_eq!(launch(&d.ctx, VERIF).await, before, "rolled back after");

    // A stop while the first batch is Pending (its rollback, one instance back and Pending as
    // long, within the 90 s restore budget).
    let d = Drill::new(TYPE_TRIAL).await;
    d.proxy
        .stretch_lifecycles(pending, Duration::ZERO, instance_ids(&d.ctx, VERIF).await);
    let run = d.start_run();
    run.wait_for("replacing 1 of 3 left", Duration::from_secs(60));
    run.signal(libc::SIGTERM);
    let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(120));
    assert_eq!(status.code(), Some(143), "{output}");
    assert!(
        !output.contains("every instance replaced after"),
        "the rollout was abandoned: {output}"
    );
    assert!(output.contains("rolling its instances back"), "{output}");
    assert_eq!(
        launch(&d.ctx, VERIF).await,
        before,
        "the template, its versions and the instances' type as they were"
    );
    assert_eq!(d.capacities().await, ORIGINAL);
    assert!(d.lock_tags().await.is_empty(), "lock released");
}

/// A campaign killed (`kill -9`) after its rollout and resumed: the rollout stands (no instance
/// replaced again, no new template version), the runs finish, and the restore rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_campaign_keeps_the_rollout_it_did() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(&TYPE_TRIAL.replace("duration: 2s", "duration: 20s")).await;
    let before = launch(&d.ctx, VERIF).await;
    let mut run = d.start_run();
    run.wait_for("step=load", Duration::from_secs(60));
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    let rolled = launch(&d.ctx, VERIF).await;
    assert_eq!(
        rolled["types"],
        json!(["c6i.xlarge", "c6i.xlarge", "c6i.xlarge"])
    );
    let replaced = d.proxy.count("TerminateInstanceInAutoScalingGroup");
    let mut cmd = d.resume(d.cmd());
    let done = common::expect_exit(&mut cmd, 0);
    assert!(
        done.stderr
            .contains("already launch from veraison-verif-lt version 2 as the trial asks: kept"),
        "{}",
        done.stderr
    );
    assert_eq!(
        d.proxy.count("TerminateInstanceInAutoScalingGroup") - replaced,
        1,
        "only the rollback's one instance (the group back at 1) was replaced"
    );
    assert_eq!(launch(&d.ctx, VERIF).await, before, "rolled back after");
}

/// Two variants of verification's warm pool over a base that sets one.
const VARIANTS_TRIAL: &str = "name: pools\nenvironment: env.yaml\ninfra:\n  verification: { min: 1, max: 3, warm-pool: { min: 2, state: Stopped } }\n  ready-timeout: 60s\n  sample-every: 1s\nvariants:\n  - name: cold\n    infra: { verification: { warm-pool: none } }\n  - name: warm\n    infra: { verification: { warm-pool: { state: Running } } }\nruns: { users: 2, duration: 6s, tasks: [well-known] }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_run_in_turn_each_under_its_own_settings_into_its_own_folder_then_compared() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(VARIANTS_TRIAL).await;
    seed_originals(&d.ctx).await;
    let before = knobs(&d.ctx).await;
    let mut cmd = d.cmd();
    cmd.arg("plan").arg(&d.trial).arg("--env").arg(&d.env);
    let text = common::expect_exit(&mut cmd, 0).stdout;
    for needed in [
        "2 variants, run in turn",
        "=== variant cold ===",
        "warm-pool                        min 1, Running, reuse on scale-in true → none",
        "=== variant warm ===",
        "warm-pool                        min 1, Running, reuse on scale-in true → min 2, Running",
    ] {
        assert!(text.contains(needed), "`{needed}` missing:\n{text}");
    }
    let run = d.start_run();
    // During each variant's run, the pool is what that variant says (merged over the base).
    run.wait_for_nth("step=load", 1, Duration::from_secs(60));
    assert_eq!(
        knobs(&d.ctx).await[VERIF]["pool"],
        Value::Null,
        "cold: no pool"
    );
    run.wait_for_nth("step=load", 2, Duration::from_secs(60));
    assert_eq!(
        knobs(&d.ctx).await[VERIF]["pool"],
        json!({"min": 2, "max": null, "state": "Running", "reuse": true}),
        "warm: the base's min, the variant's state"
    );
    let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{output}");
    assert_eq!(knobs(&d.ctx).await, before, "every setting back as it was");
    assert_eq!(d.capacities().await, ORIGINAL);
    let out = d.out();
    for v in ["cold", "warm"] {
        assert!(
            out.join(v)
                .join("runs/u002-well-known/summary.json")
                .is_file(),
            "{v}'s results in its own folder"
        );
        let journal: Value =
            serde_json::from_slice(&std::fs::read(out.join(v).join("journal.json")).unwrap())
                .unwrap();
        assert_eq!(journal["restored"], true, "{v} restored at its end");
        assert!(out.join(v).join("report.html").is_file(), "{v}'s report");
    }
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("variants.json")).unwrap()).unwrap();
    assert_eq!(index["variants"][0]["name"], "cold");
    assert_eq!(index["variants"][1]["exit"], 0);
    assert_eq!(
        index["variants"][0]["infra"]["verification"]["warm-pool"],
        "none"
    );
    assert!(out.join("compare-cold-warm.html").is_file(), "{output}");
    assert!(output.contains("variant warm against cold"), "{output}");
}

/// A campaign of variants killed (`kill -9`) in its second variant, its groups put back by
/// `infra restore`, then resumed: the first variant, finished, is not run again (its ledger and
/// journal untouched, its groups not changed again), the second runs to its end, and both are
/// compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_campaign_of_variants_does_not_run_a_finished_variant_again() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(VARIANTS_TRIAL).await;
    seed_originals(&d.ctx).await;
    let before = knobs(&d.ctx).await;
    let mut run = d.start_run();
    run.wait_for("variant 2/2: warm", Duration::from_secs(120));
    run.wait_for_nth("step=load", 2, Duration::from_secs(60));
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    d.infra(&["restore"], 0);
    assert_eq!(knobs(&d.ctx).await, before, "put back by infra restore");
    let cold = d.out().join("cold");
    let kept = |f: &str| std::fs::read(cold.join(f)).unwrap();
    let (ledger, journal) = (kept("ledger.jsonl"), kept("journal.json"));
    let deletes = d.proxy.count("DeleteWarmPool");
    let mut cmd = d.resume(d.cmd());
    let done = common::expect_exit(&mut cmd, 0);
    assert!(
        done.stderr
            .contains("variant 1/2: cold finished before (exit 0): kept"),
        "{}",
        done.stderr
    );
    assert_eq!(kept("ledger.jsonl"), ledger, "cold's ledger untouched");
    assert_eq!(kept("journal.json"), journal, "cold's journal untouched");
    assert!(
        d.out()
            .join("warm/runs/u002-well-known/summary.json")
            .is_file(),
        "warm ran to its end"
    );
    assert_eq!(
        d.proxy.count("DeleteWarmPool"),
        deletes,
        "cold's `warm-pool: none` was not applied again (warm's only changes the pool)"
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(d.out().join("variants.json")).unwrap()).unwrap();
    assert_eq!(index["variants"][0]["name"], "cold");
    assert_eq!(index["variants"][1]["exit"], 0);
    assert!(d.out().join("compare-cold-warm.html").is_file());
    assert_eq!(knobs(&d.ctx).await, before, "every setting back as it was");
}

/// How one instance joined the twin's provisioning group.
#[derive(Debug)]
struct Joined {
    /// The twin's own record: seconds from its launch until the balancer routed to it, and
    /// until its VTS was up.
    routable: f64,
    ready: f64,
    /// Seconds from the group's growth until this test saw it routable.
    seen: f64,
    /// The 5xx answers clients got, and the requests the balancer sent the new instance.
    failures: usize,
    routed: usize,
}

/// Grows the twin's provisioning group by one and sends requests until the new instance's VTS
/// has been up for a while and it has answered some of them.
async fn join_in_twin(pool: Option<WarmPoolState>, readiness_path: bool) -> Joined {
    use trialrunner::rehearsal::twin::{Twin, TwinConfig};
    use trialrunner::standin::store::KvStore;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let asg = aws_sdk_autoscaling::Client::new(&ctx.config);
    if let Some(state) = pool {
        asg.put_warm_pool()
            .auto_scaling_group_name(PROV)
            .min_size(1)
            .pool_state(state)
            .send()
            .await
            .unwrap();
    }
    if readiness_path {
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&ctx.config);
        let tg = elb
            .describe_target_groups()
            .names("veraison-prov-tg")
            .send()
            .await
            .unwrap();
        elb.modify_target_group()
            .target_group_arn(tg.target_groups()[0].target_group_arn().unwrap())
            .health_check_path("/ready")
            .send()
            .await
            .unwrap();
    }
    let mut config = TwinConfig::new(D);
    config.capacity = None;
    config.spin_up = Duration::from_millis(3000);
    config.not_ready = Duration::from_millis(1500);
    config.warm_running = Duration::from_millis(300);
    config.warm_stopped = Duration::from_millis(1000);
    config.poll = Duration::from_millis(50);
    config.publish_every = None;
    let twin = Twin::start(
        &ctx,
        "127.0.0.1:0".parse().unwrap(),
        config.clone(),
        KvStore::memory(),
    )
    .await
    .unwrap();
    let prov = |twin: &Twin| {
        twin.instances()
            .into_iter()
            .filter(|i| i.role == trialrunner::trial::model::ServiceRole::Provisioning)
            .collect::<Vec<_>>()
    };
    let old = prov(&twin)[0].id.clone();
    // The new instance as the twin recorded it when it started it.
    let since = trialrunner::results::unix_now();
    let record = |twin: &Twin| {
        twin.observations(&config, since, trialrunner::results::unix_now() + 1.0)
            .instances
            .into_iter()
            .find(|r| {
                r.id != old && r.service == trialrunner::trial::model::ServiceRole::Provisioning
            })
    };
    let grown = Instant::now();
    asg.set_desired_capacity()
        .auto_scaling_group_name(PROV)
        .desired_capacity(2)
        .send()
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let url = twin
        .url()
        .join("/.well-known/veraison/provisioning")
        .unwrap();
    let (mut seen, mut failures) = (None, 0);
    // Until its VTS has been up for half a second and it answered a few requests: every join
    // has happened and settled by then (a minute is a hang guard only).
    loop {
        let settled = record(&twin).is_some_and(|r| {
            trialrunner::results::unix_now() > r.ready + 0.5
                && prov(&twin).iter().any(|i| i.id != old && i.routed >= 4)
        });
        if settled {
            break;
        }
        assert!(
            grown.elapsed() < Duration::from_secs(60),
            "the new instance never settled: {:?}",
            record(&twin)
        );
        let status = client
            .get(url.clone())
            .header("accept", "*/*")
            .send()
            .await
            .unwrap()
            .status();
        if status.is_server_error() {
            failures += 1;
        }
        if seen.is_none() && prov(&twin).iter().any(|i| i.id != old && i.routable) {
            seen = Some(grown.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = record(&twin).unwrap();
    let routed = prov(&twin)
        .iter()
        .find(|i| i.id != old)
        .map_or(0, |i| i.routed);
    Joined {
        routable: r.routable - r.launched,
        ready: r.ready - r.launched,
        seen: seen.expect("the new instance joined"),
        failures,
        routed,
    }
}

/// The twin acts the knobs out: an instance from a warm pool joins after a short start instead
/// of the full spin-up (Running sooner than Stopped), and a target-group health check on a
/// readiness path keeps a not-ready instance out of the balancer, so clients see no failures
/// at its join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_twin_a_warm_pool_joins_sooner_and_a_readiness_check_hides_the_join() {
    let _serial = SERIAL.lock().await;
    let cold = join_in_twin(None, false).await;
    let stopped = join_in_twin(Some(WarmPoolState::Stopped), false).await;
    let running = join_in_twin(Some(WarmPoolState::Running), false).await;
    let checked = join_in_twin(None, true).await;
    eprintln!("joins:\n cold {cold:?}\n stopped pool {stopped:?}\n running pool {running:?}\n readiness check {checked:?}");
    // The twin's own record of each join is the model's: (routable, ready) seconds after the
    // launch. It is stamped a moment after the instance's timers are set, so it reads a little
    // short of them; 0.25 s covers that moment on a busy machine and still tells the models
    // apart (a pool that was ignored would show the cold 3 s).
    let model = |j: &Joined, routable: f64, ready: f64, what: &str| {
        for (got, want) in [(j.routable, routable), (j.ready, ready)] {
            assert!(
                got <= want + 0.001 && got > want - 0.25,
                "{what}: joined {j:?}, the model says routable after {routable} s, ready after {ready} s"
            );
        }
        // What the test saw follows the record: never routed to before it.
        assert!(j.seen >= j.routable, "{what}: {j:?}");
    };
    model(&cold, 3.0, 4.5, "cold: the full spin-up, then VTS starting");
    model(&stopped, 1.0, 1.0, "stopped pool start");
    model(&running, 0.3, 0.3, "running pool start");
    model(
        &checked,
        4.5,
        4.5,
        "routed once ready: spin-up and VTS start",
    );
    assert!(
        cold.failures > 0,
        "cold with a shallow check: the join fails requests: {cold:?}"
    );
    assert!(
        running.routed > 0 && running.failures == 0,
        "a pool's instance was deployed while prepared: {running:?}"
    );
    assert!(
        checked.routed > 0 && checked.failures == 0,
        "the readiness check hides the not-ready instance: {checked:?}"
    );
}

/// In the twin an instance's type sets what it serves: the group's instances launched from a
/// template version with a 4-vCPU type have four times the workers of the 1-vCPU instance the
/// twin's capacity describes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_twin_an_instance_type_scales_each_instances_capacity() {
    use trialrunner::rehearsal::twin::{Twin, TwinConfig};
    use trialrunner::standin::faults::InstanceCapacity;
    use trialrunner::standin::store::KvStore;
    use trialrunner::trial::model::ServiceRole;
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let ec2 = aws_sdk_ec2::Client::new(&ctx.config);
    let asg = aws_sdk_autoscaling::Client::new(&ctx.config);
    ec2.create_launch_template_version()
        .launch_template_name("veraison-verif-lt")
        .source_version("1")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .instance_type(aws_sdk_ec2::types::InstanceType::C6iXlarge)
                .build(),
        )
        .send()
        .await
        .unwrap();
    for id in instance_ids(&ctx, VERIF).await {
        asg.terminate_instance_in_auto_scaling_group()
            .instance_id(id)
            .should_decrement_desired_capacity(false)
            .send()
            .await
            .unwrap();
    }
    let mut config = TwinConfig::new(D);
    config.capacity = Some(InstanceCapacity::new(2, Duration::from_millis(10)));
    config.publish_every = None;
    let twin = Twin::start(
        &ctx,
        "127.0.0.1:0".parse().unwrap(),
        config,
        KvStore::memory(),
    )
    .await
    .unwrap();
    let of = |role| {
        twin.instances()
            .into_iter()
            .find(|i| i.role == role)
            .map(|i| (i.instance_type, i.workers))
            .unwrap()
    };
    assert_eq!(
        of(ServiceRole::Verification),
        (Some("c6i.xlarge".to_string()), Some(8)),
        "4 vCPUs against t2.micro's 1"
    );
    assert_eq!(
        of(ServiceRole::Provisioning),
        (Some("t2.micro".to_string()), Some(2)),
        "the type the capacity describes"
    );
}

/// The trial's database: the instance moves to another class and gets `max_connections` 200
/// through a parameter group the trial creates.
const DB_TRIAL: &str = "name: db\nenvironment: env.yaml\ninfra:\n  verification: { pin: 2 }\n  database: { instance-class: db.t3.medium, max-connections: 200 }\n  ready-timeout: 60s\n  sample-every: 1s\nruns: RUNS\n";

/// The group the trial creates for the rehearsal's instance.
const DB_GROUP: &str = "trialrunner-db-veraison-support-rdsinstance-rehearsal";

/// Points the drill's environment at the deployment's RDS instance (`auto`: moto's
/// `veraison-support-rdsinstance-rehearsal`).
fn with_database(d: &Drill) {
    let mut env = std::fs::read_to_string(&d.env).unwrap();
    env.push_str("stores:\n  postgres: { rds-instance: auto }\n");
    std::fs::write(&d.env, env).unwrap();
}

/// The RDS instance's class, its parameter group and `max_connections` in it, and every
/// parameter group there is, read straight from moto.
async fn database(ctx: &AwsContext) -> Value {
    let rds = aws_sdk_rds::Client::new(&ctx.config);
    let out = rds.describe_db_instances().send().await.unwrap();
    let db = &out.db_instances()[0];
    let group = db.db_parameter_groups()[0]
        .db_parameter_group_name()
        .unwrap()
        .to_string();
    let params = rds
        .describe_db_parameters()
        .db_parameter_group_name(&group)
        .send()
        .await
        .unwrap();
    let max = params
        .parameters()
        .iter()
        .find(|p| p.parameter_name() == Some("max_connections"))
        .and_then(|p| p.parameter_value())
        .map(str::to_string);
    let groups = rds.describe_db_parameter_groups().send().await.unwrap();
    let mut names: Vec<String> = groups
        .db_parameter_groups()
        .iter()
        .filter_map(|g| g.db_parameter_group_name())
        .map(str::to_string)
        .collect();
    names.sort();
    json!({
        "class": db.db_instance_class(),
        "group": group,
        "max_connections": max,
        "groups": names,
    })
}

/// The database's class and `max_connections` are read, shown by `plan` before → after,
/// journaled, applied for the runs (a parameter group created for the trial, the instance
/// rebooted for the static parameter) and put back exactly on every way out: the end, SIGTERM,
/// kill -9 then `infra restore`, a frozen endpoint then `infra restore`; the trial's parameter
/// group is gone after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_class_and_max_connections_are_applied_then_restored_on_every_way_out() {
    let _serial = SERIAL.lock().await;
    for way in [
        WayOut::End,
        WayOut::Sigterm,
        WayOut::KillThenRestore,
        WayOut::FrozenThenRestore,
    ] {
        let runs = if matches!(way, WayOut::End) {
            SHORT_RUNS
        } else {
            LONG_RUNS
        };
        let d = Drill::new(&DB_TRIAL.replace("RUNS", runs)).await;
        with_database(&d);
        let before = database(&d.ctx).await;
        assert_eq!(before["class"], "db.t3.micro", "{before:#}");
        assert_eq!(
            before["max_connections"],
            Value::Null,
            "the default group sets none: {before:#}"
        );
        if matches!(way, WayOut::End) {
            let mut cmd = d.cmd();
            cmd.arg("plan").arg(&d.trial).arg("--env").arg(&d.env);
            let text = common::expect_exit(&mut cmd, 0).stdout;
            for needed in [
                "set database instance-class db.t3.medium; max-connections 200 (applied by a reboot);"
                    .to_string(),
                format!("{:<32} db.t3.micro → db.t3.medium", "instance-class"),
                format!(
                    "{:<32} engine default → 200 (applied by a reboot)",
                    "max-connections"
                ),
                format!(
                    "{:<32} {} → a copy of its own made for the trial (deleted on restore)",
                    "parameter-group",
                    before["group"].as_str().unwrap()
                ),
            ] {
                assert!(text.contains(&needed), "`{needed}` missing:\n{text}");
            }
            let mut cmd = d.cmd();
            cmd.args(["plan", "--json"])
                .arg(&d.trial)
                .arg("--env")
                .arg(&d.env);
            let doc: Value =
                serde_json::from_str(&common::expect_exit(&mut cmd, 0).stdout).unwrap();
            assert!(
                doc["changes"]["database"]["settings"]
                    .as_array()
                    .unwrap()
                    .contains(&json!({"setting": "instance-class", "before": "db.t3.micro", "after": "db.t3.medium"})),
                "{doc:#}"
            );
            assert_eq!(database(&d.ctx).await, before, "plan changed nothing");
        }
        let mut run = if matches!(way, WayOut::FrozenThenRestore) {
            d.start_run_to_fail_restore()
        } else {
            d.start_run()
        };
        run.wait_for("step=load", Duration::from_secs(60));
        let during = database(&d.ctx).await;
        assert_eq!(during["class"], "db.t3.medium", "{way:?}: {during:#}");
        assert_eq!(during["group"], DB_GROUP, "{way:?}");
        assert_eq!(during["max_connections"], "200", "{way:?}");
        match way {
            WayOut::End => {
                let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(60));
                assert_eq!(status.code(), Some(0), "{output}");
                for said in [
                    "rebooting to apply its parameters",
                    "restored database veraison-support-rdsinstance-rehearsal: class db.t3.micro",
                ] {
                    assert!(output.contains(said), "`{said}` missing: {output}");
                }
                let journal: Value =
                    serde_json::from_slice(&std::fs::read(d.out().join("journal.json")).unwrap())
                        .unwrap();
                assert_eq!(journal["database"]["class"], "db.t3.micro");
                assert_eq!(journal["database"]["changed_group"], DB_GROUP);
                assert_eq!(journal["database"]["created"], true);
                assert_eq!(journal["restored"], true);
            }
            WayOut::Sigterm => {
                run.signal(libc::SIGTERM);
                let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(60));
                assert_eq!(status.code(), Some(143), "{output}");
            }
            WayOut::KillThenRestore => {
                run.child.kill().unwrap();
                run.child.wait().unwrap();
                assert_eq!(database(&d.ctx).await["class"], "db.t3.medium");
                let done = d.infra(&["restore"], 0);
                assert!(done.stdout.contains("restored database"), "{}", done.stdout);
            }
            WayOut::FrozenThenRestore => {
                d.proxy.freeze("*");
                d.proxy.wait_held(1, Duration::from_secs(30));
                run.signal(libc::SIGINT);
                let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(60));
                assert_eq!(status.code(), Some(3), "{output}");
                assert!(
                    output.contains("RESTORE FAILED: the database may still be changed"),
                    "{output}"
                );
                assert_eq!(database(&d.ctx).await["class"], "db.t3.medium");
                d.thaw();
                d.infra(&["restore"], 0);
            }
        }
        assert_eq!(
            database(&d.ctx).await,
            before,
            "{way:?}: class, parameter group and max_connections back; the trial's group deleted"
        );
        assert_eq!(d.capacities().await, ORIGINAL, "{way:?}");
        assert!(d.lock_tags().await.is_empty(), "{way:?}: lock released");
    }
}

/// RDS as it takes its time on AWS (the proxy: `modifying` after each change, still `available`
/// for a moment after a reboot call, then `rebooting`): the waits say what RDS is doing, the
/// load starts only once the reboot is over (not at the `available` that AWS shows right after
/// the call), and a stop request abandons the wait at once; the restore then has only its
/// budget, says the database may still be changed, and `infra restore` finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_waits_follow_rds_and_a_stop_abandons_them() {
    let _serial = SERIAL.lock().await;
    // To the end: modifying 3 s, then 1 s of `available` after the reboot call, rebooting 3 s.
    let d = Drill::new(&DB_TRIAL.replace("RUNS", SHORT_RUNS)).await;
    with_database(&d);
    let before = database(&d.ctx).await;
    d.proxy.stretch_rds(
        Duration::from_secs(3),
        Duration::from_secs(1),
        Duration::from_secs(3),
    );
    let mut cmd = d.cmd();
    cmd.env("TRIALRUNNER_RDS_REBOOT_GRACE", "30s");
    let run = d.start(cmd, &d.trial, &d.env, &d.out());
    let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{output}");
    for said in [
        "database veraison-support-rdsinstance-rehearsal: modifying (",
        "database veraison-support-rdsinstance-rehearsal: rebooting (",
    ] {
        assert!(output.contains(said), "`{said}` missing: {output}");
    }
    // The change's wait ended after modifying (3 s), the reboot's lag (1 s) and rebooting (3 s).
    let waited: f64 = output
        .split("in sync after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `in sync after`: {output}"));
    assert!(
        waited >= 6.0,
        "the wait ended {waited} s in, before the reboot was over: {output}"
    );
    assert_eq!(database(&d.ctx).await, before);

    // A stop request while RDS modifies for 120 s: abandoned at once; the restore (8 s budget)
    // cannot finish and says so; `infra restore` does.
    let d = Drill::new(&DB_TRIAL.replace("RUNS", LONG_RUNS)).await;
    with_database(&d);
    let before = database(&d.ctx).await;
    d.proxy.stretch_rds(
        Duration::from_secs(120),
        Duration::from_secs(1),
        Duration::from_secs(2),
    );
    let run = d.start_run_to_fail_restore();
    run.wait_for(
        "database veraison-support-rdsinstance-rehearsal: modifying (",
        Duration::from_secs(60),
    );
    let asked = Instant::now();
    run.signal(libc::SIGINT);
    let (status, output, took) = run.finish(asked, Duration::from_secs(180));
    eprintln!("the stop took {took:?}");
    assert_eq!(status.code(), Some(3), "{output}");
    assert!(
        output.contains("RESTORE FAILED: the database may still be changed"),
        "{output}"
    );
    // The stop: the restore's 8 s budget and the report (~8 s when quiet); 60 s leaves a busy
    // machine room, far below RDS's 120 s of modifying that a wait not abandoned would take.
    assert!(
        took < Duration::from_secs(60),
        "the stop took {took:?}, RDS's 120 s not waited for: {output}"
    );
    assert!(
        !output.contains("step=load"),
        "no load before the database was ready: {output}"
    );
    d.proxy.stretch_rds(
        Duration::from_secs(2),
        Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let done = d.infra(&["restore"], 0);
    assert!(done.stdout.contains("restored database"), "{}", done.text());
    assert_eq!(database(&d.ctx).await, before);
    assert_eq!(d.capacities().await, ORIGINAL);
    assert!(d.lock_tags().await.is_empty());
}

/// A trial that changes only the database (`max_connections` as the variable under test) holds
/// the deployment's groups as they are: it takes their lock for its runs, changes none of them,
/// and puts the database back on a stop, releasing the lock; a held group its own policy scaled
/// during the runs is left as its policy set it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_that_changes_only_the_database_holds_the_groups_as_they_are() {
    let _serial = SERIAL.lock().await;
    let trial = "name: dbonly\nenvironment: env.yaml\ninfra:\n  database: { max-connections: 250 }\n  ready-timeout: 60s\n  sample-every: 1s\nruns: RUNS\n"
        .replace("RUNS", LONG_RUNS);
    let d = Drill::new(&trial).await;
    with_database(&d);
    let before = database(&d.ctx).await;
    let mut cmd = d.cmd();
    cmd.arg("plan").arg(&d.trial).arg("--env").arg(&d.env);
    let plan = common::expect_exit(&mut cmd, 0).stdout;
    assert!(
        plan.contains("snapshot infra (provisioning, verification)")
            && plan.contains("max-connections 250")
            && plan.contains(
                "groups        none changed; locked as they are for the runs: veraison-prov-asg, veraison-verif-asg"
            ),
        "{plan}"
    );
    let run = d.start_run();
    run.wait_for("step=load", Duration::from_secs(60));
    assert_eq!(database(&d.ctx).await["max_connections"], "250");
    assert_eq!(d.capacities().await, ORIGINAL, "no group changed");
    let held: Vec<String> = d.lock_tags().await.into_iter().map(|(g, _, _)| g).collect();
    assert!(
        held.contains(&PROV.to_string()) && held.contains(&VERIF.to_string()),
        "both groups locked: {held:?}"
    );
    // The verification group's own policy scales it out under the load.
    aws_sdk_autoscaling::Client::new(&d.ctx.config)
        .set_desired_capacity()
        .auto_scaling_group_name(VERIF)
        .desired_capacity(2)
        .send()
        .await
        .unwrap();
    let asked = Instant::now();
    run.signal(libc::SIGTERM);
    let (status, output, _) = run.finish(asked, Duration::from_secs(60));
    assert_eq!(status.code(), Some(143), "{output}");
    assert!(
        output.contains("left veraison-verif-asg as it is (held for the trial, never changed)"),
        "{output}"
    );
    assert_eq!(database(&d.ctx).await, before);
    assert_eq!(
        d.capacities().await,
        [(1, 3, 1), (1, 3, 2)],
        "the held group as its policy left it, not reset"
    );
    assert!(d.lock_tags().await.is_empty(), "released");
}

/// A parameter group the trial names: its `max_connections` is set for the runs and put back
/// to the value it had; the group stays, the instance on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_parameter_group_gets_its_own_value_back() {
    let _serial = SERIAL.lock().await;
    let trial = DB_TRIAL.replace("RUNS", SHORT_RUNS).replace(
        "{ instance-class: db.t3.medium, max-connections: 200 }",
        "{ max-connections: 300, parameter-group: veraison-pg }",
    );
    let d = Drill::new(&trial).await;
    with_database(&d);
    let rds = aws_sdk_rds::Client::new(&d.ctx.config);
    let before = database(&d.ctx).await;
    let family = rds
        .describe_db_parameter_groups()
        .db_parameter_group_name(before["group"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .db_parameter_groups()[0]
        .db_parameter_group_family()
        .unwrap()
        .to_string();
    rds.create_db_parameter_group()
        .db_parameter_group_name("veraison-pg")
        .db_parameter_group_family(family)
        .description("the deployment's own")
        .send()
        .await
        .unwrap();
    rds.modify_db_parameter_group()
        .db_parameter_group_name("veraison-pg")
        .parameters(
            aws_sdk_rds::types::Parameter::builder()
                .parameter_name("max_connections")
                .parameter_value("100")
                .apply_method(aws_sdk_rds::types::ApplyMethod::PendingReboot)
                .build(),
        )
        .send()
        .await
        .unwrap();
    rds.modify_db_instance()
        .db_instance_identifier("veraison-support-rdsinstance-rehearsal")
        .db_parameter_group_name("veraison-pg")
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let before = database(&d.ctx).await;
    assert_eq!(
        (&before["group"], &before["max_connections"]),
        (&json!("veraison-pg"), &json!("100"))
    );
    let run = d.start_run();
    run.wait_for("step=load", Duration::from_secs(60));
    let during = database(&d.ctx).await;
    assert_eq!(
        (
            &during["group"],
            &during["max_connections"],
            &during["class"]
        ),
        (&json!("veraison-pg"), &json!("300"), &before["class"]),
        "the named group changed, the class left alone"
    );
    let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{output}");
    assert_eq!(
        database(&d.ctx).await,
        before,
        "100 again, the group kept, the instance on it"
    );
}

/// In the twin the counted database's limit follows the emulated RDS instance's
/// `max_connections`, as a trial's `infra.database.max-connections` sets it (a parameter group
/// with the value, the instance on it), and goes back with the instance's own group; past the
/// limit the twin's database refuses ("too many clients", `standin::pool`'s tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_twin_max_connections_moves_where_the_database_runs_out() {
    use trialrunner::rehearsal::twin::{Twin, TwinConfig};
    use trialrunner::standin::store::KvStore;
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let mut config = TwinConfig::new(D);
    config.db_max_connections = Some(40);
    config.poll = Duration::from_millis(50);
    config.publish_every = None;
    let twin = Twin::start(
        &ctx,
        "127.0.0.1:0".parse().unwrap(),
        config,
        KvStore::memory(),
    )
    .await
    .unwrap();
    assert_eq!(
        twin.db_max_connections(),
        Some(40),
        "the instance's default group sets none: the twin's own limit"
    );
    let rds = aws_sdk_rds::Client::new(&ctx.config);
    let own = database(&ctx).await["group"].as_str().unwrap().to_string();
    let family = rds
        .describe_db_parameter_groups()
        .db_parameter_group_name(&own)
        .send()
        .await
        .unwrap()
        .db_parameter_groups()[0]
        .db_parameter_group_family()
        .unwrap()
        .to_string();
    rds.create_db_parameter_group()
        .db_parameter_group_name("trialrunner-few")
        .db_parameter_group_family(family)
        .description("a trial's")
        .send()
        .await
        .unwrap();
    rds.modify_db_parameter_group()
        .db_parameter_group_name("trialrunner-few")
        .parameters(
            aws_sdk_rds::types::Parameter::builder()
                .parameter_name("max_connections")
                .parameter_value("3")
                .apply_method(aws_sdk_rds::types::ApplyMethod::PendingReboot)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let set_group = |group: String| {
        let rds = rds.clone();
        async move {
            rds.modify_db_instance()
                .db_instance_identifier("veraison-support-rdsinstance-rehearsal")
                .db_parameter_group_name(group)
                .apply_immediately(true)
                .send()
                .await
                .unwrap();
        }
    };
    let until = |want: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let twin = &twin;
        async move {
            while twin.db_max_connections() != Some(want) {
                assert!(
                    Instant::now() < deadline,
                    "the twin's limit is {:?}, not {want}",
                    twin.db_max_connections()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    set_group("trialrunner-few".into()).await;
    until(3).await;
    set_group(own).await;
    until(40).await;
}
