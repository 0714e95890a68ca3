//! The generator fleet on AWS against moto: the generators' group pinned and restored with the
//! services' journal, the workers started through SSM Run Command, S3 for the trial, specs and
//! results; answers moto lacks come from the fault layer.

mod common;

use std::time::{Duration, Instant};

use common::deployment::*;
use trialrunner::aws::AwsContext;

const FLEET_TRIAL: &str = "name: fleet\nenvironment: env.yaml\ninfra:\n  ready-timeout: 60s\n  sample-every: 1s\nruns: { users: 5, duration: 3s, tasks: [well-known] }\n";
const GEN_ASG: &str = "veraison-gen-asg";
const FLEET_BUCKET: &str = "trialrunner-fleet";

/// The generators' group (0..4, desired 0) and the fleet's bucket, in moto.
async fn fleet_resources(ctx: &AwsContext) -> aws_sdk_s3::Client {
    aws_sdk_ec2::Client::new(&ctx.config)
        .create_launch_template()
        .launch_template_name("gen-lt")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .instance_type(aws_sdk_ec2::types::InstanceType::C5Large)
                .build(),
        )
        .send()
        .await
        .unwrap();
    aws_sdk_autoscaling::Client::new(&ctx.config)
        .create_auto_scaling_group()
        .auto_scaling_group_name(GEN_ASG)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_name("gen-lt")
                .version("$Latest")
                .build(),
        )
        .min_size(0)
        .max_size(4)
        .desired_capacity(0)
        .availability_zones("eu-west-1a")
        .send()
        .await
        .unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&ctx.config)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(FLEET_BUCKET)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3
}

async fn get_object(s3: &aws_sdk_s3::Client, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(FLEET_BUCKET)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

/// What a fleet instance does when SSM runs the coordinator's script: fetch the trial and its
/// spec from S3 (the keys the script names), run `trialrunner worker`, put its files back.
async fn play_instance(s3: aws_sdk_s3::Client, script: Vec<String>) {
    let key_of = |suffix: &str| -> String {
        let line = script.iter().find(|l| l.contains(suffix)).unwrap();
        let from = line.find(&format!("s3://{FLEET_BUCKET}/")).unwrap() + 6 + FLEET_BUCKET.len();
        let rest = &line[from..];
        rest[..rest.find('\'').unwrap()].to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    for (suffix, name) in [
        ("trial.yaml'", "trial.yaml"),
        ("environment.yaml'", "environment.yaml"),
        ("spec.json'", "spec.json"),
    ] {
        std::fs::write(
            dir.path().join(name),
            get_object(&s3, &key_of(suffix)).await,
        )
        .unwrap();
    }
    let upload = {
        let line = script
            .iter()
            .find(|l| l.contains("--recursive out"))
            .unwrap();
        let from = line.find(&format!("s3://{FLEET_BUCKET}/")).unwrap() + 6 + FLEET_BUCKET.len();
        line[from..line.len() - 1].to_string()
    };
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_trialrunner"))
        .current_dir(dir.path())
        .args(["worker", "--spec", "spec.json", "--out", "out"])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "the worker ran");
    for entry in std::fs::read_dir(dir.path().join("out")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        s3.put_object()
            .bucket(FLEET_BUCKET)
            .key(format!("{upload}/{name}"))
            .body(std::fs::read(&path).unwrap().into())
            .send()
            .await
            .unwrap();
    }
}

/// `generators: { aws: … }`: the coordinator pins the generators' group with the same journal as
/// the services' (and restores it), waits until SSM sees its instances, puts the trial and each
/// worker's spec in S3, sends one AWS-RunShellScript command per instance, and merges what the
/// instances (played here: `trialrunner worker` on the keys the script names) put back in S3.
/// SSM answers moto lacks (DescribeInstanceInformation, an invocation InProgress for as long as
/// an instance works) come from the fault layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_on_aws_runs_through_ssm_and_s3_and_its_group_is_restored() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(FLEET_TRIAL).await;
    let s3 = fleet_resources(&d.ctx).await;
    let env = std::fs::read_to_string(&d.env).unwrap()
        + &format!("generators: {{ aws: {{ asg: {GEN_ASG}, count: 2, bucket: \"s3://{FLEET_BUCKET}/camp\", binary-url: \"https://releases.example/trialrunner\" }} }}\n");
    std::fs::write(&d.env, env).unwrap();
    // SSM sees no instance yet; invocations stay InProgress while the instances work.
    d.proxy.answer(
        "DescribeInstanceInformation",
        r#"{"InstanceInformationList":[]}"#,
    );
    d.proxy
        .answer("GetCommandInvocation", r#"{"Status":"InProgress"}"#);
    let plan = d
        .cmd()
        .args(["plan"])
        .arg(&d.trial)
        .arg("--env")
        .arg(&d.env)
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.contains(&format!(
            "{GEN_ASG} (generators): now min 0 max 4 desired 0 → min 2 max 2 desired 2"
        )) && plan.contains("instance-hours")
            && plan.contains("5 users of run u005-well-known as 3/2"),
        "{plan}"
    );
    let run = d.start_run();
    let asg = aws_sdk_autoscaling::Client::new(&d.ctx.config);
    let mut ids = Vec::new();
    for _ in 0..600 {
        let g = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(GEN_ASG)
            .send()
            .await
            .unwrap();
        let g = &g.auto_scaling_groups()[0];
        ids = g
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        if g.min_size() == Some(2) && g.max_size() == Some(2) && ids.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        ids.len(),
        2,
        "the generators' group is pinned to the fleet's size"
    );
    // Nothing is sent before SSM sees the instances.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(d.proxy.count("SendCommand"), 0);
    assert!(d.proxy.count("DescribeInstanceInformation") >= 1);
    let online: Vec<String> = ids
        .iter()
        .map(|i| format!(r#"{{"InstanceId":"{i}","PingStatus":"Online"}}"#))
        .collect();
    d.proxy.clear("DescribeInstanceInformation");
    d.proxy.answer(
        "DescribeInstanceInformation",
        format!(r#"{{"InstanceInformationList":[{}]}}"#, online.join(",")),
    );
    // The instances' side: one command each, as the coordinator sent it to SSM.
    let mut sent = Vec::new();
    for _ in 0..300 {
        sent = d.proxy.requests("SendCommand");
        if sent.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sent.len(), 2, "one command per instance");
    let mut targets = Vec::new();
    let mut instances = Vec::new();
    for c in &sent {
        assert_eq!(c["DocumentName"], "AWS-RunShellScript");
        let ids: Vec<String> = serde_json::from_value(c["InstanceIds"].clone()).unwrap();
        assert_eq!(ids.len(), 1, "{c}");
        targets.extend(ids);
        let script: Vec<String> =
            serde_json::from_value(c["Parameters"]["commands"].clone()).unwrap();
        assert!(
            script
                .iter()
                .any(|l| l.contains("./trialrunner worker --spec spec.json")),
            "{script:?}"
        );
        assert!(
            script
                .iter()
                .any(|l| l
                    .contains("curl -fsSL -o trialrunner 'https://releases.example/trialrunner'")),
            "{script:?}"
        );
        assert!(c["Parameters"]["executionTimeout"].is_array(), "{c}");
        instances.push(tokio::spawn(play_instance(s3.clone(), script)));
    }
    targets.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(targets, want, "every instance of the group, once");
    for i in instances {
        i.await.unwrap();
    }
    d.proxy.clear("GetCommandInvocation"); // moto: Success
    let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{output}");
    let summary: trialrunner::results::RunSummary = serde_json::from_slice(
        &std::fs::read(d.out().join("runs/u005-well-known/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary.partial, None);
    assert_eq!(summary.workers.len(), 2);
    assert!(
        summary
            .workers
            .iter()
            .all(|w| w.status == "finished" && w.requests > 0),
        "{:?}",
        summary.workers
    );
    let users: u32 = summary.workers.iter().map(|w| w.users.unwrap()).sum();
    assert_eq!(users, 5);
    let merged = summary.aggregated.count
        + summary
            .endpoints
            .iter()
            .filter(|e| e.kind == trialrunner::load::recorder::Kind::Request)
            .map(|e| e.drain.count)
            .sum::<u64>();
    let workers: u64 = summary.workers.iter().map(|w| w.requests).sum();
    assert_eq!(merged, workers, "the merge is the workers' sum");
    let served = [
        "GET /.well-known/veraison/provisioning",
        "GET /.well-known/veraison/verification",
    ]
    .iter()
    .map(|r| d.standin.as_ref().unwrap().served_on(r))
    .sum::<u64>();
    assert!(served >= merged, "{served} served, {merged} recorded");
    // The generators' group is back, as are the services'.
    let (min, max, desired, _, _) = settings(&d.ctx, GEN_ASG).await;
    assert_eq!((min, max, desired), (0, 4, 0), "restored");
    assert_eq!(d.capacities().await, ORIGINAL.to_vec());
    assert_eq!(state_journals(d.state.path()), 0);
}

/// Without a `binary-url` the coordinator puts its own binary in the bucket, under its content's
/// hash: once per content, a new object when the binary changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_binary_goes_to_s3_once_per_content() {
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    common::moto().reset();
    let s3 = fleet_resources(&ctx).await;
    let spec = trialrunner::trial::model::AwsGenerators {
        asg: GEN_ASG.into(),
        count: 1,
        bucket: format!("s3://{FLEET_BUCKET}/camp"),
        region: None,
        binary_url: None,
        instance_type: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let fleet = trialrunner::fleet::aws::AwsFleet::new(
        &ctx,
        &spec,
        &dir.path().join("t.yaml"),
        &dir.path().join("e.yaml"),
        Default::default(),
    )
    .unwrap();
    let exe = common::write(dir.path(), "trialrunner", "#!/bin/sh\necho one\n");
    let a = fleet.upload_binary(&exe).await.unwrap();
    assert!(a.starts_with("camp/bin/trialrunner-"), "{a}");
    assert_eq!(get_object(&s3, &a).await, b"#!/bin/sh\necho one\n");
    // Marked in place: a second upload of the same content must leave the object alone.
    s3.put_object()
        .bucket(FLEET_BUCKET)
        .key(&a)
        .body(b"marker".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(fleet.upload_binary(&exe).await.unwrap(), a);
    assert_eq!(get_object(&s3, &a).await, b"marker", "not uploaded again");
    std::fs::write(&exe, "#!/bin/sh\necho two\n").unwrap();
    let b = fleet.upload_binary(&exe).await.unwrap();
    assert_ne!(a, b);
    let keys = s3
        .list_objects_v2()
        .bucket(FLEET_BUCKET)
        .prefix("camp/bin/")
        .send()
        .await
        .unwrap()
        .contents()
        .len();
    assert_eq!(keys, 2);
}

/// A stop request during a fleet's run on AWS cancels every worker's SSM command at once
/// (CancelCommand for each instance, answered by the fault layer as moto lacks it) and the
/// generators' group is restored with the services'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_fleet_run_cancels_its_ssm_commands_and_restores_its_group() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(&FLEET_TRIAL.replace("duration: 3s", "duration: 60s")).await;
    let _s3 = fleet_resources(&d.ctx).await;
    let env = std::fs::read_to_string(&d.env).unwrap()
        + &format!("generators: {{ aws: {{ asg: {GEN_ASG}, count: 2, bucket: \"s3://{FLEET_BUCKET}/camp\", binary-url: \"https://releases.example/trialrunner\" }} }}\n");
    std::fs::write(&d.env, env).unwrap();
    // SSM sees no instance yet (as AWS answers until they register; moto lacks the call).
    d.proxy.answer(
        "DescribeInstanceInformation",
        r#"{"InstanceInformationList":[]}"#,
    );
    d.proxy
        .answer("GetCommandInvocation", r#"{"Status":"InProgress"}"#);
    d.proxy.answer("CancelCommand", "{}");
    let run = d.start_run();
    let asg = aws_sdk_autoscaling::Client::new(&d.ctx.config);
    let mut ids = Vec::new();
    for _ in 0..600 {
        let g = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(GEN_ASG)
            .send()
            .await
            .unwrap();
        ids = g.auto_scaling_groups()[0]
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        if ids.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let online: Vec<String> = ids
        .iter()
        .map(|i| format!(r#"{{"InstanceId":"{i}","PingStatus":"Online"}}"#))
        .collect();
    d.proxy.clear("DescribeInstanceInformation");
    d.proxy.answer(
        "DescribeInstanceInformation",
        format!(r#"{{"InstanceInformationList":[{}]}}"#, online.join(",")),
    );
    for _ in 0..300 {
        if d.proxy.requests("SendCommand").len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(d.proxy.requests("SendCommand").len(), 2);
    let asked = Instant::now();
    run.signal(libc::SIGINT);
    for _ in 0..100 {
        if d.proxy.count("CancelCommand") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut cancelled: Vec<String> = d
        .proxy
        .requests("CancelCommand")
        .iter()
        .flat_map(|c| serde_json::from_value::<Vec<String>>(c["InstanceIds"].clone()).unwrap())
        .collect();
    cancelled.sort();
    ids.sort();
    assert_eq!(cancelled, ids, "every instance's command cancelled");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "at once: {:?}",
        asked.elapsed()
    );
    // SSM reports them Cancelled; the run ends and restores.
    d.proxy.clear("GetCommandInvocation");
    d.proxy
        .answer("GetCommandInvocation", r#"{"Status":"Cancelled"}"#);
    let (status, output, _) = run.finish(asked, Duration::from_secs(90));
    assert_ne!(status.code(), Some(0), "{output}");
    let (min, max, desired, _, _) = settings(&d.ctx, GEN_ASG).await;
    assert_eq!((min, max, desired), (0, 4, 0), "restored:\n{output}");
}
