//! The rehearsal's twin of the deployment against moto: one stand-in per instance of the
//! emulated groups, capacity per instance, lifecycle timing, scaling policies acted out,
//! CloudWatch series and error-log lines from what it served, the database running out.

mod common;

use std::time::{Duration, Instant};

use common::deployment::*;
use tokio_util::sync::CancellationToken;
use trialrunner::aws::AwsContext;
use trialrunner::standin::store::KvStore;
use trialrunner::trial::model::ServiceRole;
use trialrunner::trial::{self};

/// Users of the pinned-capacity runs: six times one instance's workers, always queued.
const USERS: u32 = 12;

/// A twin of the deployment in moto on a free port, its store in memory.
async fn twin_on(
    ctx: &AwsContext,
    config: trialrunner::rehearsal::twin::TwinConfig,
) -> trialrunner::rehearsal::twin::Twin {
    trialrunner::rehearsal::twin::Twin::start(
        ctx,
        "127.0.0.1:0".parse().unwrap(),
        config,
        KvStore::memory(),
    )
    .await
    .unwrap()
}

/// The rehearsal's twin: capacity follows the group. Pinned to 1, provisioning tops out at one
/// instance's capacity (2 workers × 200 ms: at most 10/s, whatever the machine: a worker holds
/// each request at least 200 ms); pinned to 3, beyond what one instance can serve (30/s: sleep,
/// not CPU, so a busy machine's generator still offers it), and the
/// difference is significant as `compare` judges it. After the restore the twin follows the
/// group back to one instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twin_serves_what_the_pinned_group_can() {
    use trialrunner::rehearsal::twin::{Twin, TwinConfig};
    use trialrunner::standin::faults::InstanceCapacity;
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let capacity = InstanceCapacity::new(2, Duration::from_millis(200));
    let mut config = TwinConfig::new(D);
    config.capacity = Some(capacity);
    config.spin_up = Duration::ZERO;
    config.not_ready = Duration::ZERO;
    config.poll = Duration::from_millis(100);
    let twin = twin_on(&ctx, config).await;
    let roles =
        |twin: &Twin, role: ServiceRole| twin.instances().iter().filter(|i| i.role == role).count();
    assert_eq!(roles(&twin, ServiceRole::Provisioning), 1);
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let env = common::write(
        dir.path(),
        "env.yaml",
        &env_yaml(&twin.url(), ACCOUNT, &common::moto().url),
    );
    let mut runs = Vec::new();
    for pin in [1, 3] {
        let trial = common::write(
            dir.path(),
            &format!("twin{pin}.yaml"),
            &format!("name: twin{pin}\nenvironment: env.yaml\ninfra:\n  provisioning: {{ pin: {pin} }}\n  ready-timeout: 30s\n  sample-every: 1s\nruns: {{ users: {USERS}, duration: 11s, warmup: 2s, tasks: [provision] }}\n"),
        );
        let out = dir.path().join(format!("r{pin}"));
        let o = run_trial(state.path(), &trial, &env, &out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: trialrunner::results::RunSummary = serde_json::from_slice(
            &std::fs::read(out.join(format!("runs/u{USERS:03}-provision/summary.json"))).unwrap(),
        )
        .unwrap();
        let e = summary
            .endpoint("/endorsement-provisioning/v1/submit")
            .unwrap()
            .clone();
        assert_eq!(e.total.failures, 0);
        assert!(
            e.samples.rps.len() >= trialrunner::report::stats::MIN_SECONDS,
            "{:?}",
            e.samples.rps
        );
        runs.push(e);
    }
    let (one, three) = (&runs[0], &runs[1]);
    // What one instance can complete in the steady seconds: its workers' completions there,
    // plus those answered before the seconds began and received in them (an answer reaches
    // the client at most a whole request's latency after it leaves).
    let most_of_one = |e: &trialrunner::results::EndpointSummary| {
        let (span, late) = (e.steady.seconds, e.steady.max_ms / 1000.0);
        (capacity.per_second() * (span + late) + capacity.workers as f64) / span
    };
    eprintln!(
        "steady req/s: pinned 1 {:.1} {:?}, pinned 3 {:.1} {:?}",
        one.steady.rps, one.samples.rps, three.steady.rps, three.samples.rps
    );
    assert!(
        one.steady.rps <= most_of_one(one),
        "one instance: {:.1}/s, at most {:.1}/s",
        one.steady.rps,
        most_of_one(one)
    );
    assert!(
        three.steady.rps > most_of_one(three),
        "three instances: {:.1}/s, more than one can serve ({:.1}/s)",
        three.steady.rps,
        most_of_one(three)
    );
    let change = trialrunner::report::stats::compare_seconds(
        &one.samples.rps,
        &three.samples.rps,
        trialrunner::report::stats::Options::default(),
    );
    assert!(
        change.verdict.is_significant(),
        "significant as compare judges it: {}",
        change.describe()
    );
    // Restored to 1..3 desired 1: the twin follows the group back.
    common::wait_until(
        "the twin follows the restore",
        Duration::from_secs(60),
        || roles(&twin, ServiceRole::Provisioning) == 1,
    );
}

/// The twin's instances take time: one the group launches is Pending (never routed to) for its
/// spin-up, then routed while its VTS is not up (500 with VTS's refusal, as the 2025 campaign
/// saw), then serves. One request at a time, so the balancer's count of what it routed to the
/// new instance says which instance answered each; the phases are read in that order, and each
/// began no sooner than the twin's timing allows after the group was told to grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launched_instance_is_pending_then_not_ready_then_serves() {
    use trialrunner::rehearsal::twin::{Twin, TwinConfig};
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let mut config = TwinConfig::new(D);
    config.capacity = None;
    config.spin_up = Duration::from_millis(1500);
    config.not_ready = Duration::from_millis(1500);
    config.poll = Duration::from_millis(50);
    let (spin_up, not_ready) = (config.spin_up, config.not_ready);
    let twin = twin_on(&ctx, config).await;
    let prov = |twin: &Twin| {
        twin.instances()
            .into_iter()
            .filter(|i| i.role == ServiceRole::Provisioning)
            .collect::<Vec<_>>()
    };
    let old = prov(&twin)[0].id.clone();
    let grown = Instant::now();
    aws_sdk_autoscaling::Client::new(&ctx.config)
        .update_auto_scaling_group()
        .auto_scaling_group_name(format!("{D}-prov-asg"))
        .min_size(2)
        .max_size(2)
        .desired_capacity(2)
        .send()
        .await
        .unwrap();
    // The new instance's view: whether it is routable and how many requests it was given.
    let new = |twin: &Twin| {
        prov(twin)
            .into_iter()
            .find(|i| i.id != old)
            .map(|i| (i.routable, i.routed))
    };
    let client = reqwest::Client::new();
    let url = twin
        .url()
        .join("/.well-known/veraison/provisioning")
        .unwrap();
    // (since the group grew, the new one answered, it was routable, status, VTS refusal)
    let mut answers = Vec::new();
    let deadline = grown + Duration::from_secs(60);
    loop {
        let before = new(&twin);
        let r = client
            .get(url.clone())
            .header("accept", "*/*")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let refused = r.text().await.unwrap().contains("connection refused");
        let after = new(&twin);
        let by_new = match (before, after) {
            (Some((_, b)), Some((_, a))) => a > b,
            (None, Some((_, a))) => a > 0,
            _ => false,
        };
        // Routable by the time it was read after the answer (the flag never goes back).
        let routable = after.is_some_and(|(r, _)| r);
        answers.push((grown.elapsed(), by_new, routable, status, refused));
        // Done once the new instance answered three in a row with a 200 after its refusals.
        let from_new: Vec<_> = answers.iter().filter(|a| a.1).collect();
        let served = from_new.iter().rev().take_while(|a| a.3 == 200).count();
        if served >= 3 && from_new.iter().any(|a| a.4) {
            break;
        }
        assert!(Instant::now() < deadline, "{answers:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        answers.iter().filter(|a| !a.1).all(|a| a.3 == 200),
        "the old instance serves throughout: {answers:?}"
    );
    assert!(
        answers.iter().filter(|a| a.1).all(|a| a.2),
        "Pending: never routed to before it is routable: {answers:?}"
    );
    let from_new: Vec<_> = answers.iter().filter(|a| a.1).collect();
    let refusals = from_new.iter().take_while(|a| a.3 == 500 && a.4).count();
    assert!(
        refusals >= 1 && from_new[refusals..].iter().all(|a| a.3 == 200),
        "not ready (VTS refusals), then it serves: {from_new:?}"
    );
    assert!(
        from_new[0].0 >= spin_up,
        "routed no sooner than its spin-up: {:?}",
        from_new[0].0
    );
    assert!(
        from_new[refusals].0 >= spin_up + not_ready,
        "served no sooner than its spin-up and its VTS's start: {:?}",
        from_new[refusals].0
    );
}

/// The twin acts out a group's target-tracking policy (the rehearsal deployment's: CPU at 60 %,
/// CPU being the share of the instances' workers busy): with load beyond one instance's capacity
/// the verification group's desired capacity rises in the emulator (within its 1..3), the new
/// instances launch with their spin-up and take requests; once the load stops, it scales back in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twin_acts_out_the_groups_target_tracking_policy() {
    use trialrunner::rehearsal::twin::{Twin, TwinConfig};
    use trialrunner::standin::faults::InstanceCapacity;
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    // The rehearsal deployment's policy: target tracking on CPU at 60 %.
    let group = format!("{D}-verif-asg");
    let mut config = TwinConfig::new(D);
    config.capacity = Some(InstanceCapacity::new(2, Duration::from_millis(20)));
    config.spin_up = Duration::from_millis(300);
    config.not_ready = Duration::from_millis(300);
    config.poll = Duration::from_millis(50);
    config.policy_window = Duration::from_secs(1);
    config.scale_in_after = 2;
    let twin = twin_on(&ctx, config).await;
    let verif = |twin: &Twin| {
        twin.instances()
            .into_iter()
            .filter(|i| i.role == ServiceRole::Verification)
            .collect::<Vec<_>>()
    };
    assert_eq!(verif(&twin).len(), 1);
    let stop = CancellationToken::new();
    let url = twin
        .url()
        .join("/challenge-response/v1/newSession")
        .unwrap();
    let load: Vec<_> = (0..12)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !stop.is_cancelled() {
                    let _ = client
                        .post(url.clone())
                        .header("accept", "*/*")
                        .send()
                        .await;
                }
            })
        })
        .collect();
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(60) {
        let v = verif(&twin);
        if v.len() == 3 && v.iter().all(|i| i.routable && i.routed > 20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, _, desired, _, _) = settings(&ctx, &group).await;
    let v = verif(&twin);
    assert_eq!(desired, 3, "scaled out to its max");
    assert!(
        v.len() == 3 && v.iter().all(|i| i.routed > 20),
        "the launched instances take requests: {v:?}"
    );
    stop.cancel();
    for l in load {
        l.await.unwrap();
    }
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(60) && settings(&ctx, &group).await.2 != 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        settings(&ctx, &group).await.2,
        1,
        "scaled back in once quiet"
    );
    common::wait_until(
        "the twin follows the scale-in",
        Duration::from_secs(60),
        || verif(&twin).len() == 1,
    );
}

/// A trial's own `policy` moves where the twin scales out: one closed-loop user keeps an
/// instance (2 workers × 20 ms) at most 50 % busy, under the deployment's CPU 60 % target
/// however fast or slow the machine, so the group stays at one instance; the trial's
/// `policy: { cpu: 5% }`, applied as a campaign applies it, scales the same load out (it is
/// above 5 % whenever a request takes less than 200 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trials_own_policy_moves_the_twins_scale_out() {
    use trialrunner::aws::scaler::{AwsScaler, ServiceInfra};
    use trialrunner::provider::Scaler;
    use trialrunner::rehearsal::twin::TwinConfig;
    use trialrunner::standin::faults::InstanceCapacity;
    use trialrunner::trial::deployment::GroupSettings;
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let group = format!("{D}-verif-asg");
    let mut config = TwinConfig::new(D);
    config.capacity = Some(InstanceCapacity::new(2, Duration::from_millis(20)));
    config.spin_up = Duration::from_millis(300);
    config.not_ready = Duration::from_millis(300);
    config.poll = Duration::from_millis(50);
    config.policy_window = Duration::from_secs(1);
    let twin = twin_on(&ctx, config).await;
    let stop = CancellationToken::new();
    let url = twin
        .url()
        .join("/challenge-response/v1/newSession")
        .unwrap();
    let user = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut sent = 0u64;
            while !stop.is_cancelled() {
                let _ = client
                    .post(url.clone())
                    .header("accept", "*/*")
                    .send()
                    .await;
                sent += 1;
            }
            sent
        })
    };
    // Four windows under the deployment's own policy: no scale-out.
    let since = Instant::now();
    while since.elapsed() < Duration::from_millis(4500) {
        assert_eq!(
            settings(&ctx, &group).await.2,
            1,
            "one user stays under the deployment's CPU 60 % target"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let scaler = AwsScaler::new(
        ctx.clone(),
        vec![ServiceInfra {
            role: ServiceRole::Verification,
            asg: group.clone(),
            target_group: None,
            well_known: None,
        }],
    );
    let before = scaler
        .read_settings(ServiceRole::Verification, false)
        .await
        .unwrap();
    assert_eq!(before.policies.len(), 1, "the deployment's own policy");
    let trial: GroupSettings = serde_yaml::from_str("policy: { cpu: 5% }").unwrap();
    scaler
        .change_settings(ServiceRole::Verification, &trial, &stop)
        .await
        .unwrap();
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(60) && settings(&ctx, &group).await.2 == 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let desired = settings(&ctx, &group).await.2;
    stop.cancel();
    let sent = user.await.unwrap();
    assert!(
        desired > 1,
        "the trial's 5 % target scales the same user out ({sent} requests sent)"
    );
}

/// The rehearsal deployment's CloudWatch resources (target groups, RDS), as a pull resolves them.
async fn deployment_resources(ctx: &AwsContext) -> trialrunner::aws::cloudwatch::Resources {
    let dir = tempfile::tempdir().unwrap();
    let any = url::Url::parse("http://127.0.0.1:9").unwrap();
    let env_file = common::write(
        dir.path(),
        "env.yaml",
        &env_yaml(&any, ACCOUNT, &common::moto().url),
    );
    let env = trial::load_environment(&env_file).unwrap();
    trialrunner::aws::cloudwatch::resolve(ctx, &env)
        .await
        .unwrap()
}

/// A metric's one-minute datapoints from two minutes ago to now, read back from the emulator.
async fn datapoints(
    ctx: &AwsContext,
    namespace: &str,
    metric: &str,
    dims: &[(&str, &str)],
    stat: aws_sdk_cloudwatch::types::Statistic,
) -> Vec<aws_sdk_cloudwatch::types::Datapoint> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut q = aws_sdk_cloudwatch::Client::new(&ctx.config)
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(metric)
        .start_time(aws_smithy_types::DateTime::from_secs_f64(
            (now / 60.0).floor() * 60.0 - 120.0,
        ))
        .end_time(aws_smithy_types::DateTime::from_secs_f64(now + 60.0))
        .period(60)
        .statistics(stat);
    for (k, v) in dims {
        q = q.dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name(*k)
                .value(*v)
                .build(),
        );
    }
    q.send().await.unwrap().datapoints().to_vec()
}

/// The per-minute maxima of a metric with one dimension; asserts there is at least one and
/// every one is `want`.
async fn assert_maxima(
    ctx: &AwsContext,
    namespace: &str,
    metric: &str,
    dim: (&str, &str),
    want: f64,
) {
    let points = datapoints(
        ctx,
        namespace,
        metric,
        &[dim],
        aws_sdk_cloudwatch::types::Statistic::Maximum,
    )
    .await;
    assert!(
        !points.is_empty() && points.iter().all(|d| d.maximum() == Some(want)),
        "{metric}: {points:?}"
    );
}

/// The twin's CloudWatch series come from what happened: the requests the balancer passed to
/// the verification group (the test's own count), its in-service instances, stamped with UTC
/// minutes, read back from the emulator as a metrics pull would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twins_cloudwatch_series_are_what_it_served() {
    use trialrunner::rehearsal::twin::TwinConfig;
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let resources = deployment_resources(&ctx).await;
    let verif_tg = resources
        .target_groups
        .iter()
        .find(|(tg, _)| tg.contains("-verif-"))
        .cloned()
        .expect("the verification target group");
    let mut config = TwinConfig::new(D);
    config.capacity = None;
    config.poll = Duration::from_millis(50);
    config.publish_every = Some(Duration::from_millis(200));
    config.resources = Some(resources);
    let twin = twin_on(&ctx, config).await;
    let client = reqwest::Client::new();
    let url = twin
        .url()
        .join("/challenge-response/v1/newSession")
        .unwrap();
    let sent = 37;
    for _ in 0..sent {
        let r = client
            .post(url.clone())
            .header("accept", "*/*")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let tg = [
        ("TargetGroup", verif_tg.0.as_str()),
        ("LoadBalancer", verif_tg.1.as_str()),
    ];
    let sum = aws_sdk_cloudwatch::types::Statistic::Sum;
    // The twin publishes every 200 ms: read until every request is in (or a bound on a hang).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (requests, total) = loop {
        let requests =
            datapoints(&ctx, "AWS/ApplicationELB", "RequestCount", &tg, sum.clone()).await;
        let total: f64 = requests.iter().filter_map(|d| d.sum()).sum();
        if total >= sent as f64 || Instant::now() > deadline {
            break (requests, total);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        total, sent as f64,
        "RequestCount is what the balancer passed"
    );
    for d in &requests {
        let t = d.timestamp().unwrap().as_secs_f64();
        assert_eq!(t % 60.0, 0.0, "stamped with UTC minutes");
    }
    let asg = format!("{D}-verif-asg");
    let group = ("AutoScalingGroupName", asg.as_str());
    assert_maxima(
        &ctx,
        "AWS/AutoScaling",
        "GroupInServiceInstances",
        group,
        1.0,
    )
    .await;
}

/// The twin's database runs out under load, for real: a PostgreSQL server of its own with
/// `max_connections` 8, and the twin's four instances (three provisioning, one verification)
/// each pooling real sessions on it as VTS does (opened on demand, two kept idle). One request
/// at a time is never refused. Then 24 users at once, queueing at instances of one worker ×
/// 40 ms while holding their sessions: the server refuses the sessions too many with its own
/// "sorry, too many clients already"; every refusal is one 500 to the client, one refusal in
/// the instances' pools and one line in the provisioning log group; RDS DatabaseConnections
/// (the server's `pg_stat_activity`) peaked near the server's limit, never above it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twins_database_runs_out_under_load_and_the_logs_say_too_many_clients() {
    use trialrunner::rehearsal::twin::{Twin, TwinConfig};
    let _serial = SERIAL.lock().await;
    const MAX_CONNECTIONS: u32 = 8;
    let pg = common::Postgres::start(MAX_CONNECTIONS);
    let conninfo = pg.conninfo(&pg.database("twin"));
    let ctx = ctx().await;
    deploy(&ctx).await;
    let resources = deployment_resources(&ctx).await;
    let db = resources
        .rds_instance
        .clone()
        .expect("the rehearsal's RDS instance");
    aws_sdk_autoscaling::Client::new(&ctx.config)
        .update_auto_scaling_group()
        .auto_scaling_group_name(format!("{D}-prov-asg"))
        .min_size(3)
        .max_size(3)
        .desired_capacity(3)
        .send()
        .await
        .unwrap();
    let mut config = TwinConfig::new(D);
    config.capacity = Some(trialrunner::standin::faults::InstanceCapacity::new(
        1,
        Duration::from_millis(40),
    ));
    config.poll = Duration::from_millis(50);
    config.publish_every = Some(Duration::from_millis(100));
    config.resources = Some(resources);
    config.postgres = Some(conninfo.clone());
    let store = KvStore::postgres(&conninfo, 1).await.unwrap();
    let twin = Twin::start(&ctx, "127.0.0.1:0".parse().unwrap(), config, store)
        .await
        .unwrap();
    assert_eq!(twin.instances().len(), 4);
    let release = trialrunner::veraison::release::ReleaseProfile::parse("v0.0.2602").unwrap();
    let device = trialrunner::load::tasks::DeviceMaterial::new(&release, 7, 0);
    let url = twin
        .url()
        .join("/endorsement-provisioning/v1/submit")
        .unwrap();
    // One submission's outcome: Ok(true) served, Ok(false) refused for connections.
    let (corim, mt) = (device.corim.clone(), release.provisioning_media_type);
    let submit = move |client: reqwest::Client| {
        let (url, corim) = (url.clone(), corim.clone());
        async move {
            let r = client
                .post(url)
                .header("content-type", mt)
                .header("accept", "*/*")
                .body(corim)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            match status {
                200 => true,
                500 if body.contains("sorry, too many clients already") => false,
                _ => panic!("{status}: {body}"),
            }
        }
    };
    let client = reqwest::Client::new();
    for _ in 0..12 {
        assert!(
            submit(client.clone()).await,
            "one at a time is never refused"
        );
    }
    let refused_by = |twin: &Twin| twin.instances().iter().map(|i| i.db_refused).sum::<usize>();
    assert_eq!(refused_by(&twin), 0);
    // 24 users for 1.5 s.
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    let users: Vec<_> = (0..24)
        .map(|_| {
            let (client, submit) = (client.clone(), submit.clone());
            tokio::spawn(async move {
                let (mut served, mut refused) = (0usize, 0usize);
                while std::time::Instant::now() < until {
                    if submit(client.clone()).await {
                        served += 1;
                    } else {
                        refused += 1;
                    }
                }
                (served, refused)
            })
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for u in users {
        let (s, r) = u.await.unwrap();
        served += s;
        refused += r;
    }
    assert!(
        served > 0 && refused > 0,
        "served {served}, refused {refused}"
    );
    assert_eq!(refused_by(&twin), refused, "each refusal was the server's");
    let logs = aws_sdk_cloudwatchlogs::Client::new(&ctx.config);
    let mut lines = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        lines = logs
            .filter_log_events()
            .log_group_name(format!("{D}-provisioning"))
            .filter_pattern("\"too many clients\"")
            .send()
            .await
            .unwrap()
            .events()
            .len();
        if lines >= refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lines, refused, "one log line per refusal");
    let peak = datapoints(
        &ctx,
        "AWS/RDS",
        "DatabaseConnections",
        &[("DBInstanceIdentifier", db.as_str())],
        aws_sdk_cloudwatch::types::Statistic::Maximum,
    )
    .await
    .iter()
    .filter_map(|d| d.maximum())
    .fold(0.0, f64::max);
    assert!(
        (MAX_CONNECTIONS as f64 - 2.0..=MAX_CONNECTIONS as f64).contains(&peak),
        "DatabaseConnections peaked at {peak}"
    );
}
