//! The generator fleet on AWS against moto, as a real account runs it: the generators' group
//! pinned and restored with the services' journal, and the coordinator's own SSM commands
//! executed as the agent runs them on Linux (`common/ssmagent.rs`: the script file run by `sh`
//! — dash or bash — as root in each instance's own `/var/tmp`, the real AWS CLI pointed at
//! moto, the invocation's real status, exit code and output). The workers are the test build
//! of `trialrunner`, shipped through the bucket or fetched from a loopback release server.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::deployment::*;
use common::ssmagent::{FileServer, Shell, SsmAgent, AL2_GRAVITON};
use trialrunner::aws::AwsContext;
use trialrunner::results::RunSummary;

const GEN_ASG: &str = "veraison-gen-asg";
const FLEET_BUCKET: &str = "trialrunner-fleet";
const RUN: &str = "u005-well-known";
const FIVE_USERS: &str = "{ users: 5, duration: 3s, tasks: [well-known] }";

fn trial(runs: &str) -> String {
    format!("name: fleet\nenvironment: env.yaml\ninfra:\n  ready-timeout: 60s\n  sample-every: 1s\nruns: {runs}\n")
}

fn bucket(prefix: &str) -> String {
    format!("bucket: \"s3://{FLEET_BUCKET}/{prefix}\"")
}

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

/// A drill whose environment names a fleet of two instances, with their SSM agent played.
struct Fleet {
    d: Drill,
    s3: aws_sdk_s3::Client,
    agent: SsmAgent,
    /// The release server of a fleet whose `binary-url` is on loopback.
    files: Option<FileServer>,
}

async fn fleet(trial: &str, shell: Shell, generators: &str) -> Fleet {
    let d = Drill::new(trial).await;
    let s3 = fleet_resources(&d.ctx).await;
    let agent = SsmAgent::attach(&d.proxy, shell);
    set_generators(&d, generators);
    Fleet {
        d,
        s3,
        agent,
        files: None,
    }
}

/// A fleet whose instances fetch the test build from a loopback release server (`binary-url`),
/// its bucket's prefix being `prefix`.
async fn released_fleet(trial: &str, shell: Shell, prefix: &str) -> Fleet {
    let files = FileServer::start(vec![(
        "/trialrunner",
        PathBuf::from(env!("CARGO_BIN_EXE_trialrunner")),
    )]);
    let generators = format!(
        "{}, binary-url: \"{}/trialrunner\"",
        bucket(prefix),
        files.url
    );
    Fleet {
        files: Some(files),
        ..fleet(trial, shell, &generators).await
    }
}

/// The environment's `generators` (two instances of the group, and `rest`).
fn set_generators(d: &Drill, rest: &str) {
    let env = std::fs::read_to_string(&d.env).unwrap();
    let env: String = env
        .lines()
        .filter(|l| !l.starts_with("generators:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        &d.env,
        env + &format!("generators: {{ aws: {{ asg: {GEN_ASG}, count: 2, {rest} }} }}\n"),
    )
    .unwrap();
}

fn summary(out: &Path, run: &str) -> RunSummary {
    let path = out.join("runs").join(run).join("summary.json");
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// A worker's own summary, as it wrote it on its instance.
fn worker_summary(out: &Path, run: &str, worker: &str) -> RunSummary {
    let path = out
        .join("runs")
        .join(run)
        .join("workers")
        .join(worker)
        .join("summary.json");
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// `w1` of `w1 (i-…)`.
fn worker_of(row: &trialrunner::results::WorkerRow) -> String {
    row.name.split(' ').next().unwrap().to_string()
}

/// Requests the merge counted: the window's and the drain's.
fn merged(s: &RunSummary) -> u64 {
    s.aggregated.count
        + s.endpoints
            .iter()
            .filter(|e| e.kind == trialrunner::results::cells::Kind::Request)
            .map(|e| e.drain.count)
            .sum::<u64>()
}

/// Well-known requests the stand-in served so far.
fn served(d: &Drill) -> u64 {
    [
        "GET /.well-known/veraison/provisioning",
        "GET /.well-known/veraison/verification",
    ]
    .iter()
    .map(|r| d.standin.as_ref().unwrap().served_on(r))
    .sum()
}

/// The generators' group's instances once it holds `n`.
async fn group_instances(ctx: &AwsContext, n: usize) -> Vec<String> {
    let asg = aws_sdk_autoscaling::Client::new(&ctx.config);
    let since = Instant::now();
    loop {
        let g = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(GEN_ASG)
            .send()
            .await
            .unwrap();
        let mut ids: Vec<String> = g.auto_scaling_groups()[0]
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        if ids.len() == n {
            ids.sort();
            return ids;
        }
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "the generators' group never held {n} instances"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_generators_restored(d: &Drill, output: &str) {
    let (min, max, desired, _, _) = settings(&d.ctx, GEN_ASG).await;
    assert_eq!((min, max, desired), (0, 4, 0), "restored:\n{output}");
    assert_eq!(d.capacities().await, ORIGINAL.to_vec());
    assert_eq!(state_journals(d.state.path()), 0);
}

fn plan_text(d: &Drill) -> String {
    let out = d
        .cmd()
        .arg("plan")
        .arg(&d.trial)
        .arg("--env")
        .arg(&d.env)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `generators: { aws: … }` end to end: the coordinator pins the generators' group with the
/// same journal as the services' (and restores it), waits until SSM sees its instances (here
/// from SSM's third look: the player refuses, as SSM does, a command to an instance it has not
/// reported online), probes and prepares each instance once (its own binary through the
/// bucket), and the scripts it sent, run by dash as the agent runs them, fetch, run the worker
/// and upload; the merge is exactly the workers' sum and exactly what the stand-in served
/// during the run. The agent picks every command up 2 s late: the common start is put far
/// enough ahead, from the measured preparation, that no worker starts late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_campaign_runs_the_coordinators_own_scripts_through_the_agent() {
    let _serial = SERIAL.lock().await;
    let f = fleet(&trial(FIVE_USERS), Shell::Dash, &bucket("camp")).await;
    f.agent.set_online(|_, polls| polls >= 3);
    f.agent.set_pickup(|_, _| Duration::from_secs(2));
    let plan = plan_text(&f.d);
    assert!(
        plan.contains(&format!(
            "{GEN_ASG} (generators): now min 0 max 4 desired 0 → min 2 max 2 desired 2"
        )) && plan.contains("instance-hours")
            && plan.contains(&format!("5 users of run {RUN} as 3/2")),
        "{plan}"
    );
    let ships = plan
        .lines()
        .find(|l| l.trim_start().starts_with("ships"))
        .unwrap_or_else(|| panic!("plan says what it ships:\n{plan}"));
    assert!(
        ships.contains(&format!(
            "this binary ({}, linked dynamically against glibc ≥ 2.",
            std::env::consts::ARCH
        )) && ships.contains("probed"),
        "{ships}"
    );
    let run = f.d.start_run();
    // The readiness check is over before the load step begins: what the stand-in serves from
    // here on is the workers'.
    run.wait_for(&format!("load {RUN}"), Duration::from_secs(120));
    let before = served(&f.d);
    let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(240));
    assert_eq!(status.code(), Some(0), "{output}");
    assert_eq!(f.agent.violations(), Vec::<String>::new(), "{output}");
    let ids = f.agent.instances();
    assert_eq!(ids.len(), 2, "{:?}", f.agent.invocations());
    for id in &ids {
        assert!(
            f.agent.polls(id) >= 3,
            "nothing is sent before SSM sees {id}"
        );
        let kinds: Vec<(&str, bool)> = f
            .agent
            .invocations()
            .iter()
            .filter(|i| &i.instance == id)
            .map(|i| {
                let kind = if i.script.contains("uname -m") && !i.script.contains("trialrunner") {
                    "probe"
                } else if i.script.contains("--version") {
                    "prepare"
                } else if i.script.contains("worker --spec") {
                    "worker"
                } else {
                    "other"
                };
                (kind, i.status == "Success")
            })
            .collect();
        assert_eq!(
            kinds,
            [("probe", true), ("prepare", true), ("worker", true)],
            "{id}: {:?}",
            f.agent.invocations()
        );
    }
    let s = summary(&f.d.out(), RUN);
    assert_eq!(s.partial, None);
    assert_eq!(s.workers.len(), 2);
    assert!(
        s.workers
            .iter()
            .all(|w| w.status == "finished" && w.requests > 0),
        "{:?}",
        s.workers
    );
    // The common start is put ahead by what the coordinator controls: the workers' own 2 s of
    // preparation plus 1.5 × the slowest preparation it measured, which holds the agent's 2 s
    // pickup (both said to 0.1 s).
    let (delay, measured) = output
        .lines()
        .find_map(|l| {
            let rest = l.split("workers start ").nth(1)?;
            let delay: f64 = rest.split(' ').next()?.parse().ok()?;
            let measured: f64 = rest
                .split("measured preparation: ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some((delay, measured))
        })
        .unwrap_or_else(|| panic!("the start delay is said:\n{output}"));
    eprintln!("workers start {delay} s after their commands (measured preparation {measured} s)");
    assert!(
        measured >= 2.0 - 0.05 && delay >= 2.0 + 1.5 * measured - 0.15,
        "workers start {delay} s after their commands, the measured preparation {measured} s"
    );
    // Whether a worker made it in time depends on this machine's load then; a late one must
    // say how late, as the fleet measured it from its own start.
    for w in &s.workers {
        let own = worker_summary(&f.d.out(), RUN, &worker_of(w));
        let late = own.started_unix - s.started_unix;
        eprintln!("{} started {late:.3} s after the common start", w.name);
        assert!(late >= -0.001, "{} started {late:.3} s early", w.name);
        match w.late_s {
            None => assert!(
                late <= trialrunner::fleet::LATE,
                "{} started {late:.2} s after the common start, not reported",
                w.name
            ),
            Some(said) => assert!(
                late > trialrunner::fleet::LATE && (said - late).abs() < 0.001,
                "{} started {late:.3} s after the common start, reported {said:.3}",
                w.name
            ),
        }
    }
    let users: u32 = s.workers.iter().map(|w| w.users.unwrap()).sum();
    assert_eq!(users, 5);
    let workers: u64 = s.workers.iter().map(|w| w.requests).sum();
    assert_eq!(merged(&s), workers, "the merge is the workers' sum");
    assert_eq!(
        served(&f.d) - before,
        merged(&s),
        "every request the stand-in served during the run is in the merge"
    );
    assert_generators_restored(&f.d, &output).await;
}

/// Two campaigns of the same trial whose results directories have the same name: the second's
/// worker dies as soon as it starts (it uploads only its pid and an empty log). What the
/// coordinator merges for it is its own nothing, never the first campaign's files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_campaigns_files_are_never_read() {
    let _serial = SERIAL.lock().await;
    let f = released_fleet(&trial(FIVE_USERS), Shell::Dash, "camp").await;
    let first = f.d.dir.path().join("first/res");
    let (status, output, _) =
        f.d.start_run_into(&first)
            .finish(Instant::now(), Duration::from_secs(240));
    assert_eq!(status.code(), Some(0), "{output}");
    assert!(summary(&first, RUN).workers.iter().all(|w| w.requests > 0));
    let earlier = f.agent.instances();
    let second = f.d.dir.path().join("second/res");
    let run = f.d.start_run_into(&second);
    // The second campaign's instances are new (the first restored the group to 0).
    let since = Instant::now();
    let (instance, pid_file) = loop {
        let found = f
            .agent
            .instances()
            .into_iter()
            .filter(|i| !earlier.contains(i))
            .find_map(|i| {
                f.agent
                    .find(&i, "worker.pid")
                    .into_iter()
                    .find(|p| p.parent().is_some_and(|d| d.ends_with("out")))
                    .map(|p| (i, p))
            });
        if let Some(found) = found {
            break found;
        }
        assert!(
            since.elapsed() < Duration::from_secs(180),
            "no worker started:\n{}",
            run.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // SAFETY: the worker process the test's own agent player started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(240));
    assert_eq!(
        status.code(),
        Some(3),
        "a lost worker stops the campaign:\n{output}"
    );
    let s = summary(&second, RUN);
    let killed: Vec<_> = s.workers.iter().filter(|w| w.status == "lost").collect();
    assert_eq!(killed.len(), 1, "{:?}", s.workers);
    let killed = killed[0];
    assert!(killed.name.contains(&instance), "{killed:?}");
    assert_eq!(
        (killed.requests, killed.failures),
        (0, 0),
        "the killed worker measured nothing: {killed:?}"
    );
    let dir = second
        .join("runs")
        .join(RUN)
        .join("workers")
        .join(worker_of(killed));
    for name in ["summary.json", "cells.jsonl"] {
        assert!(
            !dir.join(name).exists(),
            "{} came from another campaign",
            dir.join(name).display()
        );
    }
    let workers: u64 = s.workers.iter().map(|w| w.requests).sum();
    assert_eq!(merged(&s), workers);
    assert!(
        killed.message.as_deref().unwrap_or("").contains("exit 137"),
        "{killed:?}"
    );
    assert_generators_restored(&f.d, &output).await;
}

/// A worker that fails on its instance (here: the trial names a body file that is not shipped)
/// says why where the operator looks: its log's end in the invocation's own stderr (the SSM
/// console), on the terminal, in `summary.json` and in the report's fleet table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_workers_reason_reaches_the_operator() {
    let _serial = SERIAL.lock().await;
    let trial = "name: fleet\nenvironment: env.yaml\ninfra:\n  ready-timeout: 60s\n  sample-every: 1s\nhttp-tasks:\n  upload:\n    service: verification\n    method: POST\n    path: /upload\n    body-file: body.json\nruns: { users: 2, duration: 2s, tasks: [upload] }\n";
    let f = released_fleet(trial, Shell::Bash, "camp").await;
    common::write(f.d.dir.path(), "body.json", "{}");
    let (status, output, _) =
        f.d.start_run()
            .finish(Instant::now(), Duration::from_secs(240));
    assert_eq!(status.code(), Some(3), "{output}");
    let workers = f.agent.invocations_of("worker --spec");
    assert_eq!(workers.len(), 2);
    for inv in &workers {
        assert_eq!(inv.status, "Failed", "{inv:?}");
        assert!(
            inv.stderr.contains("body-file") && inv.stderr.contains("exited with code 2"),
            "the SSM console shows why: {inv:?}"
        );
    }
    assert!(
        output.contains("generator worker w1")
            && output.contains("| ")
            && output.contains("body-file"),
        "the terminal shows why:\n{output}"
    );
    let run = "u002-upload";
    let s = summary(&f.d.out(), run);
    assert_eq!(s.workers.len(), 2);
    for w in &s.workers {
        assert_eq!(w.status, "lost");
        let m = w.message.as_deref().unwrap_or("");
        assert!(
            m.contains("Failed (exit 2)") && m.contains("body-file"),
            "{w:?}"
        );
        assert!(w.log_tail.iter().any(|l| l.contains("body-file")), "{w:?}");
    }
    let report = std::fs::read_to_string(f.d.out().join("report.md")).unwrap();
    let fleet_table: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("| w1 (") || l.contains("| w2 ("))
        .collect();
    assert_eq!(fleet_table.len(), 2, "{report}");
    assert!(
        fleet_table.iter().all(|l| l.contains("body-file")),
        "{fleet_table:?}"
    );
    assert_generators_restored(&f.d, &output).await;
}

/// Instances the shipped binary cannot run on (Amazon Linux 2 on Graviton: aarch64, glibc 2.26,
/// against this build's architecture and glibc) are refused by name after a probe, before any
/// worker is sent and before the binary is uploaded. A `binary-url` whose binary does not run
/// there is refused after its first run on each instance, with what the instance said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_the_binary_cannot_run_on_are_refused_by_name() {
    let _serial = SERIAL.lock().await;
    let f = fleet(&trial(FIVE_USERS), Shell::Bash, &bucket("camp")).await;
    f.agent.set_image(|_| Some(AL2_GRAVITON));
    let out = f.d.dir.path().join("graviton");
    let (status, output, _) =
        f.d.start_run_into(&out)
            .finish(Instant::now(), Duration::from_secs(180));
    assert_eq!(status.code(), Some(3), "{output}");
    let ids = f.agent.instances();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        assert!(
            output.contains(&format!(
                "{id} (aarch64, glibc 2.26): the binary is built for {}",
                std::env::consts::ARCH
            )),
            "{id} is named with why:\n{output}"
        );
    }
    assert!(
        f.agent.invocations_of("worker --spec").is_empty()
            && f.agent.invocations_of("./trialrunner --version").is_empty(),
        "{:?}",
        f.agent.invocations()
    );
    let uploaded =
        f.s3.list_objects_v2()
            .bucket(FLEET_BUCKET)
            .prefix("camp/bin/")
            .send()
            .await
            .unwrap()
            .contents()
            .len();
    assert_eq!(
        uploaded, 0,
        "nothing shipped to instances that cannot run it"
    );
    assert_generators_restored(&f.d, &output).await;

    // A release URL serving something that is not a program for these instances.
    let broken = common::write(f.d.dir.path(), "broken", "this is not a program\n");
    let files = FileServer::start(vec![("/trialrunner", broken)]);
    f.agent.set_image(|_| None);
    set_generators(
        &f.d,
        &format!(
            "{}, binary-url: \"{}/trialrunner\"",
            bucket("camp"),
            files.url
        ),
    );
    let plan = plan_text(&f.d);
    assert!(
        plan.contains(&format!(
            "ships         the binary at {}/trialrunner",
            files.url
        )),
        "{plan}"
    );
    let out = f.d.dir.path().join("broken-url");
    let (status, output, _) =
        f.d.start_run_into(&out)
            .finish(Instant::now(), Duration::from_secs(180));
    assert_eq!(status.code(), Some(3), "{output}");
    let prepared = f.agent.invocations_of("./trialrunner --version");
    assert_eq!(prepared.len(), 2);
    for p in &prepared {
        assert_eq!(p.status, "Failed", "{p:?}");
        assert!(
            output.contains(&p.instance)
                && output.contains("this binary does not run on this instance"),
            "{}:\n{output}",
            p.instance
        );
    }
    assert!(f.agent.invocations_of("worker --spec").is_empty());
    assert_generators_restored(&f.d, &output).await;
}

/// A results path with a space and a quote, and a bucket prefix with a space, under bash as
/// Amazon Linux's `sh`: every path in the scripts is quoted, and the campaign runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_results_path_with_a_space_and_a_quote_works() {
    let _serial = SERIAL.lock().await;
    let f = released_fleet(&trial(FIVE_USERS), Shell::Bash, "my camp").await;
    let out = f.d.dir.path().join("it's a res");
    let (status, output, _) =
        f.d.start_run_into(&out)
            .finish(Instant::now(), Duration::from_secs(240));
    assert_eq!(status.code(), Some(0), "{output}");
    let s = summary(&out, RUN);
    assert!(
        s.workers
            .iter()
            .all(|w| w.status == "finished" && w.requests > 0),
        "{:?}",
        s.workers
    );
    let workers: u64 = s.workers.iter().map(|w| w.requests).sum();
    assert_eq!(merged(&s), workers);
    assert_generators_restored(&f.d, &output).await;
}

/// A worker whose agent picks its command up only 2 s after the fleet's common start starts
/// late: the coordinator says so and by how much (terminal, `summary.json`, report), and the
/// run's window stays the phase's (the late worker ends with the others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_worker_is_named_with_its_lateness_and_the_window_stays_the_phases() {
    let _serial = SERIAL.lock().await;
    let f = released_fleet(
        &trial("{ users: 4, duration: 6s, tasks: [well-known] }"),
        Shell::Dash,
        "camp",
    )
    .await;
    let (s3, runtime) = (f.s3.clone(), tokio::runtime::Handle::current());
    f.agent.set_pickup(move |_, script| {
        if !script.contains("/w1/spec.json") {
            return Duration::ZERO;
        }
        // The spec the coordinator put for w1 says when the fleet starts.
        let to = script.find("/w1/spec.json'").unwrap() + "/w1/spec.json".len();
        let from = script[..to]
            .rfind(&format!("s3://{FLEET_BUCKET}/"))
            .unwrap()
            + 6
            + FLEET_BUCKET.len();
        let key = &script[from..to];
        let spec: trialrunner::fleet::WorkerSpec =
            serde_json::from_slice(&runtime.block_on(get_object(&s3, key))).unwrap();
        let now = trialrunner::results::unix_now();
        Duration::from_secs_f64((spec.share.start_unix + 2.0 - now).max(0.0))
    });
    let (status, output, _) =
        f.d.start_run()
            .finish(Instant::now(), Duration::from_secs(240));
    assert_eq!(
        status.code(),
        Some(0),
        "a late worker is not a lost one:\n{output}"
    );
    let run = "u004-well-known";
    let s = summary(&f.d.out(), run);
    let w1 = s
        .workers
        .iter()
        .find(|w| w.name.starts_with("w1 "))
        .unwrap();
    let own = worker_summary(&f.d.out(), run, "w1");
    let truth = own.started_unix - s.started_unix;
    assert!(truth >= 2.0, "w1 started {truth:.2} s late");
    let late = w1.late_s.unwrap_or_else(|| panic!("{w1:?}"));
    assert!((late - truth).abs() < 0.01, "{late} reported, {truth} true");
    let said = format!(
        "generator worker {} started {late:.2} s after the fleet's common start",
        w1.name
    );
    assert!(
        s.warnings.iter().any(|w| w.contains(&said)),
        "{:?}",
        s.warnings
    );
    assert!(output.contains(&said), "{output}");
    let report = std::fs::read_to_string(f.d.out().join("report.md")).unwrap();
    assert!(report.contains(&said), "{report}");
    assert!(
        (s.duration_s - 6.0).abs() < 0.5,
        "the run's window is the phase's, not stretched by the late worker: {:.2} s",
        s.duration_s
    );
    assert!(s.workers.iter().all(|w| w.status == "finished"));
    assert_generators_restored(&f.d, &output).await;
}

/// Disk on the instances stays bounded: the binary is fetched once per campaign and instance
/// (two runs, two instances: two fetches), each run's folder goes after its upload, the
/// campaign's folder after its last run, and what an earlier campaign left is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instances_keep_one_binary_per_campaign_and_nothing_after_it() {
    let _serial = SERIAL.lock().await;
    let f = released_fleet(
        &trial("{ users: [2, 3], duration: 2s, tasks: [well-known] }"),
        Shell::Dash,
        "camp",
    )
    .await;
    let left = Arc::new(AtomicBool::new(false));
    let l = left.clone();
    f.agent.set_online(move |_, _| l.load(Ordering::SeqCst));
    let run = f.d.start_run();
    let ids = group_instances(&f.d.ctx, 2).await;
    for id in &ids {
        let old = f
            .agent
            .var_tmp(id)
            .join("trialrunner/fleet-20250101T000000Z-0ld0ld00");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("trialrunner"), vec![0u8; 1 << 20]).unwrap();
    }
    left.store(true, Ordering::SeqCst);
    let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(300));
    assert_eq!(status.code(), Some(0), "{output}");
    assert_eq!(
        f.agent.invocations_of("worker --spec").len(),
        4,
        "two runs on two instances"
    );
    assert_eq!(
        f.files.as_ref().unwrap().hits("/trialrunner"),
        2,
        "one fetch per instance for the campaign"
    );
    for id in &ids {
        let kept: Vec<_> = std::fs::read_dir(f.agent.var_tmp(id).join("trialrunner"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(kept.is_empty(), "{id} keeps {kept:?}");
    }
    assert_generators_restored(&f.d, &output).await;
}

/// SSM runs a command for at most 172 800 s: a phase that cannot fit one worker's command (with
/// its start margin, request timeout and upload) is bad input, named by file, line and field.
#[test]
fn a_phase_longer_than_ssm_allows_is_refused_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    common::write(
        dir.path(),
        "env.yaml",
        &format!("name: fleet\naws: {{ region: eu-west-1, account: \"{ACCOUNT}\" }}\nservices:\n  provisioning: {{ url: \"http://127.0.0.1:9443\" }}\n  verification: {{ url: \"http://127.0.0.1:8443\" }}\ngenerators:\n  aws: {{ asg: gen-asg, count: 2, bucket: \"s3://my-bucket/p\" }}\n"),
    );
    let trial = common::write(
        dir.path(),
        "trial.yaml",
        "name: long\nenvironment: env.yaml\nruns:\n  users: 2\n  duration: 48h\n  tasks: [well-known]\n",
    );
    for command in ["validate", "plan"] {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_trialrunner"));
        c.arg(command).arg(&trial);
        if command == "plan" {
            c.arg("--offline");
        }
        let err = common::expect_exit(&mut c, 2).stderr;
        assert!(
            err.contains(&format!("{}:5:", trial.display()))
                && err.contains("runs.duration")
                && err.contains("172800"),
            "{command}: {err}"
        );
    }
    // 47 hours fit.
    std::fs::write(
        &trial,
        "name: long\nenvironment: env.yaml\nruns:\n  users: 2\n  duration: 47h\n  tasks: [well-known]\n",
    )
    .unwrap();
    common::expect_exit(
        std::process::Command::new(env!("CARGO_BIN_EXE_trialrunner"))
            .arg("validate")
            .arg(&trial),
        0,
    );
}

/// A worker whose command the agent stops at its execution timeout (here shortened for w1's
/// command) ends `TimedOut`: the run is partial, the worker named lost with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_command_times_out_is_named_lost() {
    let _serial = SERIAL.lock().await;
    let f = released_fleet(&trial(FIVE_USERS), Shell::Dash, "camp").await;
    f.agent.set_timeout_cap(|_, script| {
        script
            .contains("/w1/spec.json")
            .then_some(Duration::from_secs(3))
    });
    let (status, output, _) =
        f.d.start_run()
            .finish(Instant::now(), Duration::from_secs(240));
    assert_eq!(status.code(), Some(3), "{output}");
    let timed_out = f.agent.invocations_of("/w1/spec.json");
    assert_eq!(timed_out.len(), 1);
    assert_eq!(timed_out[0].status, "TimedOut");
    let s = summary(&f.d.out(), RUN);
    let w1 = s
        .workers
        .iter()
        .find(|w| w.name.starts_with("w1 "))
        .unwrap();
    assert_eq!(w1.status, "lost");
    assert!(
        w1.message
            .as_deref()
            .is_some_and(|m| m.contains("TimedOut") && m.contains(&timed_out[0].instance)),
        "{w1:?}"
    );
    assert!(
        s.partial.as_deref().is_some_and(|p| p.contains("w1 (")),
        "{:?}",
        s.partial
    );
    assert!(
        output.contains(&format!(
            "generator worker {} lost: SSM invocation TimedOut",
            w1.name
        )),
        "{output}"
    );
    let w2 = s
        .workers
        .iter()
        .find(|w| w.name.starts_with("w2 "))
        .unwrap();
    assert_eq!(w2.status, "finished");
    assert_eq!(
        merged(&s),
        s.workers.iter().map(|w| w.requests).sum::<u64>()
    );
    assert_generators_restored(&f.d, &output).await;
}

/// Instances Systems Manager never sees online end the campaign within the trial's readiness
/// timeout, named, with nothing sent to them, and the groups restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_ssm_never_sees_end_the_campaign_within_the_ready_timeout() {
    let _serial = SERIAL.lock().await;
    let f = fleet(
        &trial(FIVE_USERS).replace("ready-timeout: 60s", "ready-timeout: 4s"),
        Shell::Dash,
        &bucket("camp"),
    )
    .await;
    f.agent.set_online(|_, _| false);
    let run = f.d.start_run();
    let ids = group_instances(&f.d.ctx, 2).await;
    let pinned = Instant::now();
    let (status, output, took) = run.finish(pinned, Duration::from_secs(90));
    assert_eq!(status.code(), Some(3), "{output}");
    assert!(
        took < Duration::from_secs(45),
        "the wait for SSM is bounded by the readiness timeout: {took:?}"
    );
    assert!(
        ids.iter().all(|i| output.contains(i)) && output.contains("Systems Manager does not see"),
        "{output}"
    );
    assert_eq!(f.d.proxy.count("SendCommand"), 0);
    assert!(f.agent.invocations().is_empty());
    assert_generators_restored(&f.d, &output).await;
}

/// A stop request during a fleet's run asks every worker to stop in order (a stop command per
/// instance, no cancellation needed): the workers write and upload what they measured, the run
/// is merged and marked interrupted, the groups are restored, and the exit code is 130 as the
/// README promises for Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_fleet_run_stops_its_workers_in_order_and_exits_130() {
    let _serial = SERIAL.lock().await;
    // A 300 s run: workers that were not asked to stop would measure for five minutes, far
    // beyond the 120 s bound (the stop itself: stop commands through the agent, the workers'
    // uploads, the merge, the restore and the report: a few seconds when quiet).
    let f = released_fleet(
        &trial(&FIVE_USERS.replace("duration: 3s", "duration: 300s")),
        Shell::Dash,
        "camp",
    )
    .await;
    let run = f.d.start_run();
    let ids = group_instances(&f.d.ctx, 2).await;
    let since = Instant::now();
    // Both workers measuring: each has written cells.
    while !ids.iter().all(|i| {
        f.agent
            .find(i, "cells.jsonl")
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
    }) {
        assert!(
            since.elapsed() < Duration::from_secs(180),
            "the workers never measured:\n{}",
            run.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    run.signal(libc::SIGINT);
    let (status, output, took) = run.finish(asked, Duration::from_secs(240));
    eprintln!("exited {took:?} after Ctrl-C");
    assert_eq!(status.code(), Some(130), "{output}");
    assert!(took < Duration::from_secs(120), "{took:?}");
    assert_eq!(
        f.agent.invocations_of("/stop\"").len(),
        2,
        "a stop per instance"
    );
    assert_eq!(
        f.d.proxy.count("CancelCommand"),
        0,
        "no worker needed killing"
    );
    let s = summary(&f.d.out(), RUN);
    assert!(s.interrupted);
    assert!(
        s.workers
            .iter()
            .all(|w| w.status == "finished" && w.requests > 0),
        "{:?}",
        s.workers
    );
    assert_eq!(
        merged(&s),
        s.workers.iter().map(|w| w.requests).sum::<u64>()
    );
    assert_generators_restored(&f.d, &output).await;
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
    let key = |b: trialrunner::fleet::aws::Binary| match b {
        trialrunner::fleet::aws::Binary::Key { key, .. } => key,
        other => panic!("{other:?}"),
    };
    let exe = common::write(dir.path(), "trialrunner", "#!/bin/sh\necho one\n");
    let a = key(fleet.upload_binary(&exe).await.unwrap());
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
    assert_eq!(key(fleet.upload_binary(&exe).await.unwrap()), a);
    assert_eq!(get_object(&s3, &a).await, b"marker", "not uploaded again");
    std::fs::write(&exe, "#!/bin/sh\necho two\n").unwrap();
    let b = key(fleet.upload_binary(&exe).await.unwrap());
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
