//! AWS control against moto_server: a deployment shaped like Veraison's (launch template,
//! `D-prov-asg` and `D-verif-asg` at 1..3 behind target groups, tagged instances), pinned, freed
//! and always restored — at the end, on Ctrl-C at every step boundary, after SIGKILL with
//! `infra restore`, and after an API error mid-pin.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::deployment::*;
use common::watch::Watched;
use tokio_util::sync::CancellationToken;
use trialrunner::aws::scaler::{services_of, AwsScaler};
use trialrunner::aws::{AwsContext, AwsTimeouts};
use trialrunner::exec::{self, Interrupts};
use trialrunner::provider::{
    AsgSettings, HeldLock, LockClaim, ReadyReport, Restored, Scaler, Takeover,
};
use trialrunner::results::ResultsDir;
use trialrunner::setup::{self, SetupOptions};
use trialrunner::trial::model::{AwsSpec, ServiceRole};
use trialrunner::trial::{self, Capacity};

const PIN_TRIAL: &str = "name: pin\nenvironment: env.yaml\ninfra:\n  provisioning: { pin: 3 }\n  verification: { pin: 3 }\n  ready-timeout: 30s\n  sample-every: 1s\nruns: { users: 2, duration: 2s, cooldown: 1s, tasks: [well-known] }\n";

fn files(dir: &Path, standin: &url::Url, account: &str) -> (PathBuf, PathBuf) {
    let env = common::write(
        dir,
        "env.yaml",
        &env_yaml(standin, account, &common::moto().url),
    );
    let trial = common::write(dir, "pin.yaml", PIN_TRIAL);
    (trial, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_pin_wait_free_and_restore() {
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (trial, env) = files(dir.path(), &s.url(), ACCOUNT);
    let t = trial::load_trial(&trial, Some(&env)).unwrap();
    let services = services_of(&t.env);
    assert_eq!(
        services.iter().map(|s| s.asg.as_str()).collect::<Vec<_>>(),
        [
            "veraison-prov-asg",
            "veraison-verif-asg",
            "veraison-manage-asg"
        ]
    );
    let mut scaler = AwsScaler::new(ctx.clone(), services);
    scaler.poll = Duration::from_millis(100);
    let original = scaler
        .snapshot(&[ServiceRole::Provisioning, ServiceRole::Verification])
        .await
        .unwrap();
    assert_eq!(
        (original[0].min, original[0].max, original[0].desired),
        (1, 3, 1)
    );
    // A missing ASG is named.
    let err = scaler
        .snapshot(&[ServiceRole::Management])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("veraison-manage-asg") && err.contains("not found"),
        "{err}"
    );
    // Pin to 3: min = max = desired = 3, three InService instances, targets healthy, READY.
    scaler
        .set_capacity(ServiceRole::Verification, Capacity::Pinned(3))
        .await
        .unwrap();
    let ready = scaler
        .wait_ready(
            &[ServiceRole::Verification],
            Duration::from_secs(20),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(ready.seconds.contains_key("verification"));
    let (min, max, desired, in_service, metrics) = settings(&ctx, "veraison-verif-asg").await;
    assert_eq!((min, max, desired, in_service), (3, 3, 3, 3));
    assert!(metrics > 0, "group metrics collection turned on");
    let sample = scaler.sample().await.unwrap();
    let verif = sample["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["asg"] == "veraison-verif-asg")
        .unwrap();
    assert_eq!(verif["instances"].as_array().unwrap().len(), 3);
    assert!(
        !verif["targets"].as_array().unwrap().is_empty(),
        "target health sampled: {verif}"
    );
    let timeline = scaler.spin_up_timeline(0.0, f64::MAX).await.unwrap();
    assert!(timeline["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["launch_time"].as_f64().is_some()));
    // Free: 1..3.
    scaler
        .set_capacity(
            ServiceRole::Verification,
            Capacity::Range {
                min: 1,
                max: 3,
                desired: Some(2),
            },
        )
        .await
        .unwrap();
    let (min, max, desired, _, _) = settings(&ctx, "veraison-verif-asg").await;
    assert_eq!((min, max, desired), (1, 3, 2));
    // Restore, twice (idempotent).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for o in &original {
        for _ in 0..2 {
            assert_eq!(
                scaler.restore(o, None, deadline).await.unwrap(),
                Restored::Done
            );
        }
    }
    assert_original(&ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_trial_pins_then_restores_and_samples_infra() {
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, env) = files(dir.path(), &s.url(), ACCOUNT);
    // An 8 s run: two samples (each ~7 moto calls) with the 1 s pause between them fit even
    // when each sample takes 3.5 s on a busy machine (~0.2 s when quiet).
    let trial = common::write(
        dir.path(),
        "pin8.yaml",
        &PIN_TRIAL.replace("duration: 2s", "duration: 8s"),
    );
    let state = tempfile::tempdir().unwrap();
    common::expect_exit(
        &mut run_trial(state.path(), &trial, &env, &dir.path().join("r")),
        0,
    );
    assert_original(&ctx).await;
    let r = dir.path().join("r");
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.join("journal.json")).unwrap()).unwrap();
    assert_eq!(journal["restored"], true);
    assert_eq!(journal["original"][0]["desired"], 1);
    assert_eq!(
        journal["original"][0]["enabled_metrics"],
        serde_json::json!([]),
        "the original metrics state is journalled"
    );
    let infra = std::fs::read_to_string(r.join("runs/u002-well-known/infra.jsonl")).unwrap();
    // Sampled again and again (a sampler that never ran or stopped after one sample leaves at
    // most one row), a second apart at least (`sample-every: 1s` after each sample's calls).
    let stamps: Vec<f64> = infra
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["unix"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert!(stamps.len() >= 2, "sampled during the 8 s run: {infra}");
    assert!(
        stamps.windows(2).all(|w| w[1] - w[0] >= 0.999),
        "samples 1 s apart at least: {stamps:?}"
    );
    assert!(infra.contains("\"InService\""));
    assert!(r.join("runs/u002-well-known/scaling.json").is_file());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["infra_after"][0]["desired"], 1);
    assert_eq!(
        state_journals(state.path()),
        0,
        "the state file goes once restored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_account_exits_3_and_changes_nothing() {
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (trial, env) = files(dir.path(), &s.url(), "999999999999");
    let out = common::expect_exit(
        &mut run_trial(
            dir.path().join("state"),
            &trial,
            &env,
            &dir.path().join("r"),
        ),
        3,
    );
    let stderr = &out.stderr;
    assert!(
        stderr.contains("account 123456789012") && stderr.contains("999999999999"),
        "{stderr}"
    );
    assert_original(&ctx).await;
    assert!(!dir.path().join("r").exists(), "nothing written either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_aws_endpoint_fails_with_a_timeout_within_the_bound() {
    let _serial = SERIAL.lock().await;
    set_test_credentials();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let _held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in listener.incoming().flatten() {
            conns.push(c); // accept, never answer
        }
    });
    let spec = AwsSpec {
        region: "eu-west-1".into(),
        profile: None,
        account: ACCOUNT.into(),
        endpoint: Some(endpoint.clone()),
    };
    let timeouts = AwsTimeouts {
        connect: Duration::from_secs(1),
        read: Duration::from_secs(1),
        attempt: Duration::from_secs(2),
        operation: Duration::from_secs(5),
    };
    let started = Instant::now();
    let ctx = AwsContext::load(&spec, None, timeouts).await.unwrap();
    let err = ctx.check_account().await.unwrap_err().to_string();
    // The 5 s operation bound (2 s attempts); 30 s leaves a busy machine room and still
    // catches a call that ignored it for the default 60 s.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded: {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("timed out") && err.contains(&endpoint) && err.contains("GetCallerIdentity"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_service_fails_readiness_in_time_and_infra_is_restored() {
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    // The service's well-known accepts connections and never answers; it notes when each
    // connection came and when the client gave up on it (closed it).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    type Held = Arc<std::sync::Mutex<Vec<(Instant, Option<Instant>)>>>;
    let held: Held = Default::default();
    let noted = held.clone();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let n = {
                let mut held = noted.lock().unwrap();
                held.push((Instant::now(), None));
                held.len() - 1
            };
            let noted = noted.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 4096];
                while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                noted.lock().unwrap()[n].1 = Some(Instant::now());
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let env = common::write(
        dir.path(),
        "env.yaml",
        &env_yaml(&silent, ACCOUNT, &common::moto().url),
    );
    let trial = common::write(
        dir.path(),
        "pin.yaml",
        &PIN_TRIAL.replace("ready-timeout: 30s", "ready-timeout: 3s"),
    );
    let state = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = common::expect_exit(
        &mut run_trial(state.path(), &trial, &env, &dir.path().join("r")),
        3,
    );
    let stderr = &out.stderr;
    assert!(
        stderr.contains("not ready after 3s") && stderr.contains("well-known"),
        "{stderr}"
    );
    // A hang guard only: the whole campaign (about 30 moto calls and the restore) is not timed.
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    // The readiness gate, as the silent service saw it: from its first connection to the
    // last one given up. 3 s of ready-timeout plus the other group's few moto calls; waiting
    // for the 30 s HTTP timeout, or looking again for the 60 s default, would take far longer.
    common::wait_until(
        "the gate's connections closed",
        Duration::from_secs(10),
        || {
            held.lock()
                .unwrap()
                .iter()
                .all(|(_, closed)| closed.is_some())
        },
    );
    let held = held.lock().unwrap().clone();
    eprintln!(
        "the gate's connections (from the first, s): {:?}",
        held.iter()
            .map(|(at, closed)| (
                (*at - held[0].0).as_secs_f64(),
                (closed.unwrap() - held[0].0).as_secs_f64()
            ))
            .collect::<Vec<_>>()
    );
    let first = held
        .iter()
        .map(|(at, _)| *at)
        .min()
        .expect("the gate looked");
    let last = held.iter().filter_map(|(_, closed)| *closed).max().unwrap();
    assert!(
        last - first < Duration::from_secs(10),
        "the gate held the silent service {:?} ({} connections)",
        last - first,
        held.len()
    );
    assert_original(&ctx).await;
}

/// Runs the pin trial as a process and sends SIGINT when the `n`-th step starts.
fn interrupt_at_step(
    dir: &Path,
    trial: &Path,
    env: &Path,
    state: &Path,
    n: usize,
) -> (Option<i32>, String) {
    let mut child = run_trial(state, trial, env, &dir.join(format!("r{n}")))
        .arg("-v")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = 0;
    let mut log = String::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains(" step step=") {
            seen += 1;
            if seen == n {
                // SAFETY: signalling our own child.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGINT);
                }
            }
        }
    }
    (child.wait().unwrap().code(), log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_every_step_boundary_restores_the_asgs() {
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (trial, env) = files(dir.path(), &s.url(), ACCOUNT);
    let t = trial::load_trial(&trial, Some(&env)).unwrap();
    let steps = trial::plan(&t).steps.len();
    assert!(steps >= 8, "{steps}");
    for n in 1..=steps {
        deploy(&ctx).await;
        let state = tempfile::tempdir().unwrap();
        let (trial, env, dirp) = (trial.clone(), env.clone(), dir.path().to_path_buf());
        let statep = state.path().to_path_buf();
        let (code, log) =
            tokio::task::spawn_blocking(move || interrupt_at_step(&dirp, &trial, &env, &statep, n))
                .await
                .unwrap();
        // Interrupted (130), unless the signal landed after the last step had done its work.
        assert!(
            code == Some(130) || (n == steps && code == Some(0)),
            "step {n}: exit {code:?}\n{log}"
        );
        assert_original(&ctx).await;
        if code == Some(130) {
            let manifest: serde_json::Value = serde_json::from_slice(
                &std::fs::read(dir.path().join(format!("r{n}/manifest.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(manifest["status"], "interrupted", "step {n}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_infra_restore() {
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (trial, env) = files(dir.path(), &s.url(), ACCOUNT);
    let trial_text = std::fs::read_to_string(&trial)
        .unwrap()
        .replace("duration: 2s", "duration: 30s");
    std::fs::write(&trial, trial_text).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut child = run_trial(state.path(), &trial, &env, &dir.path().join("r"))
        .arg("-v")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("step step=load") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL: nothing gets to restore
    child.wait().unwrap();
    let (min, max, desired, _, _) = settings(&ctx, "veraison-verif-asg").await;
    assert_eq!(
        (min, max, desired),
        (3, 3, 3),
        "still pinned after the crash"
    );
    // A new run refuses to start while the journal is pending.
    let out = common::expect_exit(
        trialrunner(state.path()).args([
            "run",
            trial.to_str().unwrap(),
            "--env",
            env.to_str().unwrap(),
        ]),
        2,
    );
    assert!(out.stderr.contains("infra restore"), "{}", out.stderr);
    // `infra status` shows current vs journal (exit 1 while it is pending); `infra restore`
    // puts everything back, twice.
    let status = common::expect_exit(
        trialrunner(state.path()).args(["infra", "status", "--env", env.to_str().unwrap()]),
        1,
    );
    let text = &status.stdout;
    assert!(
        text.contains("veraison-verif-asg") && text.contains("1 3 1") && text.contains("PENDING"),
        "{}",
        status.text()
    );
    // Instances are discovered by the deployment tag the ASGs propagate (3 + 3 pinned).
    assert!(
        text.contains("6 live instance(s) tagged veraison-deployment=veraison")
            && text.contains("verification")
            && text.contains("running"),
        "{text}"
    );
    for _ in 0..2 {
        common::expect_exit(
            trialrunner(state.path()).args(["infra", "restore", "--env", env.to_str().unwrap()]),
            0,
        );
    }
    assert_original(&ctx).await;
}

/// A scaler whose second capacity change fails, as an API error would.
struct FailsSecondPin {
    inner: Arc<dyn Scaler>,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Scaler for FailsSecondPin {
    async fn snapshot(&self, s: &[ServiceRole]) -> trialrunner::Result<Vec<AsgSettings>> {
        self.inner.snapshot(s).await
    }
    async fn set_capacity(&self, s: ServiceRole, c: Capacity) -> trialrunner::Result<()> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            return Err(trialrunner::Error::Infra(
                "AWS autoscaling:UpdateAutoScalingGroup: Throttling (injected)".into(),
            ));
        }
        self.inner.set_capacity(s, c).await
    }
    async fn wait_ready(
        &self,
        s: &[ServiceRole],
        t: Duration,
        c: &CancellationToken,
    ) -> trialrunner::Result<ReadyReport> {
        self.inner.wait_ready(s, t, c).await
    }
    async fn restore(
        &self,
        o: &AsgSettings,
        lock: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> trialrunner::Result<Restored> {
        self.inner.restore(o, lock, deadline).await
    }
    async fn lock(
        &self,
        s: &[ServiceRole],
        claim: &LockClaim,
        takeover: Takeover,
    ) -> trialrunner::Result<Vec<AsgSettings>> {
        self.inner.lock(s, claim, takeover).await
    }
    async fn renew(&self, claim: &LockClaim) -> trialrunner::Result<bool> {
        self.inner.renew(claim).await
    }
    async fn unlock(
        &self,
        id: &str,
        groups: &[String],
        deadline: tokio::time::Instant,
    ) -> trialrunner::Result<()> {
        self.inner.unlock(id, groups, deadline).await
    }
    async fn held(&self) -> trialrunner::Result<Vec<HeldLock>> {
        self.inner.held().await
    }
    async fn sample(&self) -> trialrunner::Result<serde_json::Value> {
        self.inner.sample().await
    }
    async fn spin_up_timeline(&self, a: f64, b: f64) -> trialrunner::Result<serde_json::Value> {
        self.inner.spin_up_timeline(a, b).await
    }
    async fn preflight(&self) -> trialrunner::Result<Vec<String>> {
        self.inner.preflight().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_error_mid_pin_stops_the_trial_and_restores() {
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (trial, env) = files(dir.path(), &s.url(), ACCOUNT);
    let t = trial::load_trial(&trial, Some(&env)).unwrap();
    let plan = trial::plan(&t);
    let mut providers = setup::providers_for(&t, &SetupOptions::default())
        .await
        .unwrap();
    providers.scaler = Some(Arc::new(FailsSecondPin {
        inner: providers.scaler.clone().unwrap(),
        calls: Default::default(),
    }));
    let results = ResultsDir::create(&dir.path().join("r")).unwrap();
    let state = tempfile::tempdir().unwrap();
    // SAFETY: the state dir variable is read by this process only; tests of this binary are serial.
    unsafe { std::env::set_var("TRIALRUNNER_STATE_DIR", state.path()) };
    let err = exec::execute(&t, &plan, &providers, &results, &Interrupts::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("injected"), "{err}");
    // The first ASG had been pinned: it is back.
    assert_original(&ctx).await;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("r/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["status"], "failed");
}

// ------------------------------------------------------------------------------------- CloudWatch

use trialrunner::aws::cloudwatch::{self, CloudWatchSource, MetricQuery};
use trialrunner::provider::MetricsSource;
use trialrunner::trial::model::MetricName;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_speaks_a_protocol_moto_answers() {
    // Fails loudly if the `aws-sdk-cloudwatch = "=1.99.0"` pin is lifted: 1.100+ speaks RPCv2
    // CBOR, which moto cannot answer (`unexpected type 0x3c … expected map`).
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    cloudwatch::protocol_check(&ctx)
        .await
        .expect("the pinned CloudWatch SDK talks to moto");
}

async fn seed(ctx: &AwsContext, q: &MetricQuery, points: &[(f64, f64)]) {
    let cw = aws_sdk_cloudwatch::Client::new(&ctx.config);
    let mut req = cw.put_metric_data().namespace(&q.namespace);
    for (t, v) in points {
        let mut d = aws_sdk_cloudwatch::types::MetricDatum::builder()
            .metric_name(&q.metric)
            .value(*v)
            .timestamp(aws_smithy_types::DateTime::from_secs_f64(*t));
        for (k, val) in &q.dimensions {
            d = d.dimensions(
                aws_sdk_cloudwatch::types::Dimension::builder()
                    .name(k)
                    .value(val)
                    .build(),
            );
        }
        req = req.metric_data(d.build());
    }
    req.send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_4_shaped_window_is_pulled_exactly_in_at_most_two_calls() {
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (trial, env) = files(dir.path(), &s.url(), ACCOUNT);
    let t = trial::load_trial(&trial, Some(&env)).unwrap();
    let all = vec![
        MetricName::AsgInstances,
        MetricName::AsgCpu,
        MetricName::RdsConnections,
        MetricName::RdsCpu,
        MetricName::RdsIo,
        MetricName::TargetHealth,
        MetricName::Alb5xx,
        MetricName::ErrorLogs,
    ];
    let source = CloudWatchSource::new(ctx.clone(), t.env.clone(), all.clone());
    let resources = source.resources().await.unwrap().clone();
    assert_eq!(
        resources.rds_instance.as_deref(),
        Some("veraison-support-rdsinstance-rehearsal")
    );
    assert_eq!(
        resources.log_groups,
        [
            "veraison-vts",
            "veraison-verification",
            "veraison-provisioning"
        ]
    );
    let queries = cloudwatch::queries(&all, &resources);
    assert!(queries.len() >= 17, "{}", queries.len());
    // Seed every metric over a 900 s window, one point a minute, each series its own values.
    let now = SystemTimeNow::secs().floor();
    let start = now - 1200.0;
    let mut seeded = std::collections::BTreeMap::new();
    for (i, q) in queries.iter().enumerate() {
        let pts: Vec<(f64, f64)> = (0..15)
            .map(|k| (start + 30.0 + 60.0 * k as f64, (i * 100 + k) as f64))
            .collect();
        seed(&ctx, q, &pts).await;
        seeded.insert(
            q.label.clone(),
            pts.iter().map(|p| p.1).collect::<Vec<f64>>(),
        );
    }
    // Error lines in the VTS log group (the deployment has it).
    let logs = aws_sdk_cloudwatchlogs::Client::new(&ctx.config);
    logs.create_log_stream()
        .log_group_name("veraison-vts")
        .log_stream_name("i-0abc")
        .send()
        .await
        .unwrap();
    let mut put = logs
        .put_log_events()
        .log_group_name("veraison-vts")
        .log_stream_name("i-0abc");
    for k in 0..7 {
        let msg = if k < 5 {
            "FATAL: sorry, too many clients already (SQLSTATE 53300)"
        } else {
            "all good"
        };
        put = put.log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(((start + 100.0 + k as f64) * 1000.0) as i64)
                .message(msg)
                .build()
                .unwrap(),
        );
    }
    put.send().await.unwrap();
    // Pull a 900 s window (plus padding) like the executor does after a run.
    let run_dir = tempfile::tempdir().unwrap();
    source
        .pull(start, start + 900.0 + 60.0, run_dir.path())
        .await
        .unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.path().join("cloudwatch.json")).unwrap())
            .unwrap();
    assert!(
        doc["get_metric_data_calls"].as_u64().unwrap() <= 2,
        "{}",
        doc["get_metric_data_calls"]
    );
    assert!(doc["clock_offset_s"].as_f64().unwrap().abs() < 2.0);
    for s in doc["series"].as_array().unwrap() {
        let label = s["label"].as_str().unwrap();
        let got: Vec<f64> = s["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_f64().unwrap())
            .collect();
        assert_eq!(&got, &seeded[label], "{label}: exactly the seeded points");
    }
    assert_eq!(doc["queries"].as_array().unwrap().len(), queries.len());
    let too_many = doc["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["pattern"] == "too many clients")
        .expect("log pattern counted");
    assert_eq!(too_many["total"], 5);
    assert!(too_many["samples"][0]
        .as_str()
        .unwrap()
        .contains("SQLSTATE 53300"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_500_queries_are_split_across_calls() {
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    common::moto().reset();
    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (trial, env) = files(dir.path(), &s.url(), ACCOUNT);
    let t = trial::load_trial(&trial, Some(&env)).unwrap();
    let source = CloudWatchSource::new(ctx.clone(), t.env.clone(), vec![]);
    let queries: Vec<MetricQuery> = (0..600)
        .map(|i| MetricQuery {
            id: format!("m{i}"),
            label: format!("q{i}"),
            namespace: "Test/Split".into(),
            metric: format!("M{i}"),
            dimensions: vec![],
            stat: "Average".into(),
        })
        .collect();
    let now = SystemTimeNow::secs();
    seed(&ctx, &queries[599], &[(now - 100.0, 42.0)]).await;
    let (series, calls) = source.fetch(&queries, now - 300.0, now).await.unwrap();
    assert_eq!(calls, 2);
    assert_eq!(series.len(), 600);
    assert_eq!(
        series[599]["points"][0][1], 42.0,
        "the last chunk's results are kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_offset_is_measured_against_a_skewed_server() {
    let _serial = SERIAL.lock().await;
    // A fake endpoint whose clock runs 37 s ahead.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                let skewed = chrono::Utc::now() + chrono::Duration::seconds(37);
                let date = skewed.format("%a, %d %b %Y %H:%M:%S GMT");
                let _ = sock.write_all(format!("HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).await;
            });
        }
    });
    let offset = cloudwatch::clock_offset(&url).await.unwrap();
    assert!((offset - 37.0).abs() <= 1.0, "offset {offset}");
}

struct SystemTimeNow;
impl SystemTimeNow {
    fn secs() -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }
}

// ------------------------------------------------------------------------------------- stores in AWS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rds_endpoint_and_password_are_found_and_elasticache_without_nodes_is_a_clear_error() {
    use trialrunner::aws::stores::{ElastiCacheNodes, RdsLocator};
    use trialrunner::stores::memcached::ServerList;
    use trialrunner::stores::postgres::DbLocator;
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    common::moto().reset();
    let rds = aws_sdk_rds::Client::new(&ctx.config);
    rds.create_db_instance()
        .db_instance_identifier("veraison-support-rdsinstance-jlqj0tz7na5h")
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .master_username("veraison")
        .master_user_password("whatever-rds-has")
        .allocated_storage(5)
        .send()
        .await
        .unwrap();
    // The support stack carries the password as a plain parameter, as Veraison's template does.
    let planted = "stack-planted-password-77";
    let template = r#"{"Parameters":{"RdsPassword":{"Type":"String"}},"Resources":{"Topic":{"Type":"AWS::SNS::Topic"}}}"#;
    aws_sdk_cloudformation::Client::new(&ctx.config)
        .create_stack()
        .stack_name("veraison-support")
        .template_body(template)
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("RdsPassword")
                .parameter_value(planted)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let locator = RdsLocator {
        ctx: ctx.clone(),
        deployment: "veraison".into(),
        instance: "auto".into(),
        port: None,
        password: None,
    };
    let loc = locator.locate().await.unwrap();
    assert!(!loc.host.is_empty(), "the instance's endpoint address");
    assert_eq!(loc.port, 5432);
    assert_eq!(loc.password.expose(), planted);
    assert!(!format!("{loc:?}").contains(planted), "never printed");
    // A named instance that does not exist is named in the error.
    let missing = RdsLocator {
        instance: "nope-db".into(),
        ..locator
    };
    let err = missing.locate().await.unwrap_err().to_string();
    assert!(
        err.contains("nope-db") || err.contains("DBInstanceNotFound"),
        "{err}"
    );
    // The cluster is the one tagged with the deployment, not one whose name merely shares its
    // prefix (another deployment's). Without a tagged cluster the error says what to do.
    let ec = aws_sdk_elasticache::Client::new(&ctx.config);
    let tag = |d: &str| {
        aws_sdk_elasticache::types::Tag::builder()
            .key("veraison-deployment")
            .value(d)
            .build()
    };
    ec.create_cache_cluster()
        .cache_cluster_id("veraison-other-cache")
        .engine("memcached")
        .cache_node_type("cache.t2.micro")
        .num_cache_nodes(2)
        .tags(tag("veraison-other"))
        .send()
        .await
        .unwrap();
    let nodes = ElastiCacheNodes {
        ctx: ctx.clone(),
        deployment: "veraison".into(),
    };
    let err = nodes.servers().await.unwrap_err().to_string();
    assert!(
        err.contains("no ElastiCache cluster for deployment `veraison`"),
        "another deployment's cluster is not ours: {err}"
    );
    assert_eq!(nodes.cluster_id().await.unwrap(), None);
    ec.create_cache_cluster()
        .cache_cluster_id("vcache-01")
        .engine("memcached")
        .cache_node_type("cache.t2.micro")
        .num_cache_nodes(2)
        .tags(tag("veraison"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        nodes.cluster_id().await.unwrap().as_deref(),
        Some("vcache-01"),
        "found by its tag"
    );
    // moto's ElastiCache has no node endpoints: the error says what to do.
    let err = ElastiCacheNodes {
        ctx: ctx.clone(),
        deployment: "veraison".into(),
    }
    .servers()
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("list them in stores.sessions.memcached"),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------- correlation

/// A Trial-4-shaped run: DB connections swell at 300 s, p95 follows 120 s later; an instance
/// joins at 610 s and 30 failures cluster around it. DB connections go through CloudWatch (moto).
fn write_trial_4_run(dir: &Path, start: f64, shuffled: bool) -> trialrunner::results::RunSummary {
    let rd = ResultsDir::create(dir).unwrap();
    let run_dir = rd.run_dir("u050-verify");
    std::fs::create_dir_all(&run_dir).unwrap();
    let db = |t: f64| 20.0 + 50.0 * (-((t - 300.0) / 90.0).powi(2)).exp();
    let n = 900;
    let perm = |i: usize| if shuffled { (i * 7919 + 13) % n } else { i };
    let mut timeline = String::from(trialrunner::results::csv::TIMELINE_HEADER);
    let mut hlog = trialrunner::results::csv::hlog_header(start);
    let tag = trialrunner::results::csv::hlog_tag("POST", "/challenge-response/v1/[SESSION_ID]");
    for sec in 0..n {
        let src = perm(sec) as f64;
        let p95 = 100.0 + 8.0 * (db(src - 120.0) - 20.0);
        let fails = if (595.0..625.0).contains(&src) { 1 } else { 0 };
        timeline.push_str(&format!(
            "{},{sec}.000,1.000,steady,POST,/challenge-response/v1/[SESSION_ID],request,50,100,{fails},0,{:.3},,{p95:.3},,,,,\n",
            start as i64 + sec as i64,
            p95 / 2.0
        ));
        // The second's latencies: 100 spread evenly below p95 / 0.95 (their p95 is p95).
        let mut h = trialrunner::load::recorder::new_hist();
        for i in 0..100u64 {
            h.record(((i as f64 + 0.5) / 100.0 * p95 / 0.95 * 1000.0) as u64)
                .unwrap();
        }
        hlog.push_str(&trialrunner::results::csv::hlog_line(
            &tag, sec as f64, 1.0, &h,
        ));
    }
    std::fs::write(run_dir.join("timeline.csv"), timeline).unwrap();
    std::fs::write(run_dir.join("latency.hlog"), hlog).unwrap();
    let mut infra = String::new();
    for sec in (0..n).step_by(5) {
        let mut instances = vec![
            serde_json::json!({"id": "i-first", "lifecycle": "InService", "health": "Healthy"}),
        ];
        if sec >= 610 {
            instances.push(serde_json::json!({"id": "i-joined", "lifecycle": "InService", "health": "Healthy"}));
        }
        infra.push_str(&format!("{}\n", serde_json::json!({"unix": start + sec as f64, "groups": [{"asg": "veraison-verif-asg", "desired": 2, "instances": instances, "targets": []}]})));
    }
    std::fs::write(run_dir.join("infra.jsonl"), infra).unwrap();
    let s = trialrunner::results::RunSummary {
        run_id: "u050-verify".into(),
        iteration: 1,
        users: Some(50),
        started_unix: start,
        duration_s: n as f64,
        ..Default::default()
    };
    trialrunner::results::write_json(&run_dir.join("summary.json"), &s).unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_finds_the_seeded_relation_in_pulled_series_and_none_when_shuffled() {
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (trial, env) = files(dir.path(), &s.url(), ACCOUNT);
    let t = trial::load_trial(&trial, Some(&env)).unwrap();
    let source =
        CloudWatchSource::new(ctx.clone(), t.env.clone(), vec![MetricName::RdsConnections]);
    let resources = source.resources().await.unwrap().clone();
    let q = &cloudwatch::queries(&[MetricName::RdsConnections], &resources)[0];
    let start = (SystemTimeNow::secs() - 1200.0).floor();
    let db = |t: f64| 20.0 + 50.0 * (-((t - 300.0) / 90.0).powi(2)).exp();
    seed(
        &ctx,
        q,
        &(0..16)
            .map(|k| (start + 60.0 * k as f64, db(60.0 * k as f64)))
            .collect::<Vec<_>>(),
    )
    .await;
    for (shuffled, name) in [(false, "seeded"), (true, "shuffled")] {
        let root = dir.path().join(name);
        let run = write_trial_4_run(&root, start, shuffled);
        let run_dir = root.join("runs/u050-verify");
        source
            .pull(start - 60.0, start + 960.0, &run_dir)
            .await
            .unwrap();
        let c = trialrunner::report::correlate_run(&ResultsDir::open(&root).unwrap(), &run);
        if shuffled {
            assert!(c.best_r.unwrap_or(0.0) < 0.5, "{c:?}");
            assert!(c.join_concentration.unwrap() < 3.0, "{c:?}");
        } else {
            // Client latency pooled into CloudWatch's own minutes: p95 follows by two periods.
            assert_eq!(c.best_lag_periods, Some(2), "{c:?}");
            assert!(c.n >= 10 && c.best_r.unwrap() > 0.9, "{c:?}");
            assert_eq!((c.failures_near_join, c.failures_elsewhere), (30, 0));
            assert!(
                c.findings
                    .iter()
                    .any(|f| f.contains("within 40 s of i-joined becoming InService")),
                "{:?}",
                c.findings
            );
            assert_eq!(c.peak_db.map(f64::round), Some(70.0));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_a_clear_error_without_a_hang() {
    let _serial = SERIAL.lock().await;
    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, env) = files(dir.path(), &s.url(), ACCOUNT);
    let started = std::time::Instant::now();
    let out = common::expect_exit(
        Command::new(env!("CARGO_BIN_EXE_trialrunner"))
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env("HOME", dir.path()) // no ~/.aws/credentials
            .env("AWS_CONFIG_FILE", dir.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
            .args(["infra", "status", "--env", env.to_str().unwrap()]),
        3,
    );
    let stderr = &out.stderr;
    assert!(
        stderr.contains("no AWS credentials found") && stderr.contains("AWS_PROFILE"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "no IMDS probing: {:?}",
        started.elapsed()
    );
}

// ------------------------------------------------------------------------------------- drills
//
// Every way out, through the AWS fault layer in front of moto (tests/common/awsfault.rs): the
// binary is pointed at the proxy, which throttles, fails, freezes and stretches lifecycles as
// AWS does; each drill checks the exit code, the ASG settings read back from moto, and the
// results on disk.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sighup_stop_like_ctrl_c_restore_and_exit_128_plus_the_signal() {
    let _serial = SERIAL.lock().await;
    // 120 s runs: a signal that did not stop the run would keep it going for two minutes, far
    // beyond the 60 s bound (the stop itself: 2 s of grace, the restore, the report).
    let trial = LONG_TRIAL.replace("duration: 20s", "duration: 120s");
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGHUP, 129)] {
        let d = Drill::new(&trial).await;
        let run = d.start_run();
        run.wait_for("step=load", Duration::from_secs(60));
        assert_eq!(d.capacities().await, PINNED);
        let asked = Instant::now();
        run.signal(sig);
        let (status, output, took) = run.finish(asked, Duration::from_secs(180));
        eprintln!("signal {sig}: exited {took:?} after it");
        assert_eq!(status.code(), Some(code), "{output}");
        assert!(took < Duration::from_secs(60), "stopped in {took:?}");
        assert_eq!(
            d.capacities().await,
            ORIGINAL,
            "restored after signal {sig}"
        );
        let m = d.manifest();
        assert_eq!(m["status"], "interrupted");
        assert!(m["stopped_by"]
            .as_str()
            .unwrap()
            .contains(if sig == libc::SIGTERM {
                "SIGTERM"
            } else {
                "SIGHUP"
            }));
        let summary: serde_json::Value = serde_json::from_slice(
            &std::fs::read(d.out().join("runs/u002-well-known/summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            summary["interrupted"], true,
            "the run in flight kept its results"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_endpoint_mid_run_is_reported_loudly_within_the_bound_then_infra_restore_recovers()
{
    let _serial = SERIAL.lock().await;
    let d = Drill::new(LONG_TRIAL).await;
    let run = d.start_run_to_fail_restore();
    run.wait_for("step=load", Duration::from_secs(60));
    d.proxy.freeze("*"); // AWS accepts connections and never answers
    d.proxy.wait_held(1, Duration::from_secs(30)); // the sampler is now stuck in a call
    let asked = Instant::now();
    run.signal(libc::SIGINT);
    // The load stops in seconds, the restore is bounded by its budget (8 s here): about 8 s in
    // all. 60 s leaves a busy machine room and still catches a restore that took the default
    // 90 s budget, or no budget at all.
    let (status, output, took) = run.finish(asked, Duration::from_secs(150));
    eprintln!("exited {took:?} after Ctrl-C");
    assert!(
        took < Duration::from_secs(60),
        "exited {took:?} after Ctrl-C:\n{output}"
    );
    assert_eq!(
        status.code(),
        Some(3),
        "a failed restore is an infrastructure error:\n{output}"
    );
    for needed in [
        "RESTORE FAILED",
        "veraison-prov-asg (provisioning): original min 1 max 3 desired 1",
        "veraison-verif-asg (verification): original min 1 max 3 desired 1",
        "trialrunner infra restore --env",
    ] {
        assert!(output.contains(needed), "`{needed}` missing:\n{output}");
    }
    assert_eq!(
        d.capacities().await,
        PINNED,
        "the frozen endpoint changed nothing"
    );
    assert_eq!(
        d.manifest()["status"],
        "failed",
        "the manifest is written whatever happens"
    );
    // The command it printed works once AWS answers again, from any directory.
    d.thaw();
    let line = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("To restore: "))
        .expect("the restore command is printed");
    let words = line.split_whitespace().skip(1);
    common::expect_exit(d.cmd().current_dir(std::env::temp_dir()).args(words), 0);
    assert_eq!(d.capacities().await, ORIGINAL);
    assert!(
        d.lock_tags().await.is_empty(),
        "the crashed campaign's lock is released"
    );
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.out().join("journal.json")).unwrap()).unwrap();
    assert_eq!(
        journal["restored"], true,
        "the results dir's journal is updated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_frozen_wait_for_readiness_acts_within_seconds() {
    let _serial = SERIAL.lock().await;
    // New instances stay Pending for five minutes, as long as the ready-timeout: the trial sits
    // in wait-ready, polling AWS.
    let d = Drill::new(&LONG_TRIAL.replace("ready-timeout: 60s", "ready-timeout: 300s")).await;
    let old = instance_ids(&d.ctx).await;
    d.proxy
        .stretch_lifecycles(Duration::from_secs(300), Duration::ZERO, old);
    let run = d.start_run_to_fail_restore();
    run.wait_for("waiting for readiness", Duration::from_secs(60));
    d.proxy.freeze("*");
    d.proxy.wait_held(1, Duration::from_secs(30)); // its next look is stuck
    let asked = Instant::now();
    run.signal(libc::SIGINT);
    // The wait is abandoned at once: the restore starts within 5 s (a few ms when quiet), where
    // a wait that ended only when its frozen look timed out would take 15 s, and one that
    // ignored the stop the 300 s ready-timeout.
    run.wait_for("restoring the auto-scaling groups", Duration::from_secs(60));
    let acted = asked.elapsed();
    // Then the restore spends its 8 s budget on the frozen endpoint (about 8 s in all when
    // quiet); 45 s is a bound for a busy machine, far below the 300 s.
    let (status, output, took) = run.finish(asked, Duration::from_secs(120));
    eprintln!("restoring {acted:?} after Ctrl-C, exited after {took:?}");
    assert!(
        acted < Duration::from_secs(5),
        "acted {acted:?} after Ctrl-C:\n{output}"
    );
    assert!(
        took < Duration::from_secs(45),
        "exited {took:?} after Ctrl-C:\n{output}"
    );
    assert_eq!(status.code(), Some(3), "{output}");
    assert!(output.contains("RESTORE FAILED"), "{output}");
    d.thaw();
    d.infra(&["restore"], 0);
    assert_eq!(d.capacities().await, ORIGINAL);
}

async fn instance_ids(ctx: &AwsContext) -> Vec<String> {
    let asg = aws_sdk_autoscaling::Client::new(&ctx.config);
    let out = asg.describe_auto_scaling_groups().send().await.unwrap();
    out.auto_scaling_groups()
        .iter()
        .flat_map(|g| g.instances())
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_retried_and_the_campaign_completes() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(PIN_TRIAL).await;
    // Every other call of the operations that pin, wait and restore is throttled.
    for op in [
        "DescribeAutoScalingGroups",
        "UpdateAutoScalingGroup",
        "DescribeTargetHealth",
        "GetCallerIdentity",
    ] {
        d.proxy.throttle(op, 2);
    }
    d.proxy
        .fail("EnableMetricsCollection", 500, "InternalFailure", Some(1));
    // Target health fails twelve times in a row (throttled, then 503, alternating), longer
    // than the SDK's own four attempts ever lasted: the call is tried again until it answers.
    d.proxy
        .fail_after("DescribeTargetHealth", 2, 503, "ServiceUnavailable", 6);
    common::expect_exit(
        run_trial(d.state.path(), &d.trial, &d.env, &d.out())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test"),
        0,
    );
    assert!(
        d.proxy.count("DescribeTargetHealth") >= 18,
        "every failed look was tried again: {:?}",
        d.proxy.calls()
    );
    assert_eq!(d.capacities().await, ORIGINAL);
    assert!(
        d.proxy.count("UpdateAutoScalingGroup") >= 6,
        "pins and restores were retried: {:?}",
        d.proxy.calls()
    );
    assert_eq!(d.manifest()["status"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_that_take_minutes_are_waited_for_and_a_replacement_mid_run_is_sampled() {
    let _serial = SERIAL.lock().await;
    let trial = LONG_TRIAL.replace("users: [2, 4], duration: 20s", "users: 2, duration: 8s");
    let d = Drill::new(&trial).await;
    let old = instance_ids(&d.ctx).await;
    // New instances: Pending for 3 s, then their targets `initial` for 2 s more.
    d.proxy
        .stretch_lifecycles(Duration::from_secs(3), Duration::from_secs(2), old);
    let run = d.start_run();
    run.wait_for("step=load", Duration::from_secs(60));
    // An instance of the verification group is replaced while the load runs.
    let victim = {
        let asg = aws_sdk_autoscaling::Client::new(&d.ctx.config);
        let g = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names("veraison-verif-asg")
            .send()
            .await
            .unwrap();
        g.auto_scaling_groups()[0].instances()[0]
            .instance_id()
            .unwrap()
            .to_string()
    };
    aws_sdk_autoscaling::Client::new(&d.ctx.config)
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&victim)
        .should_decrement_desired_capacity(false)
        .send()
        .await
        .unwrap();
    let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(90));
    assert_eq!(status.code(), Some(0), "{output}");
    assert_eq!(d.capacities().await, ORIGINAL);
    let ready = &d.manifest()["ready"]["seconds"];
    for svc in ["provisioning", "verification"] {
        let s = ready[svc].as_f64().unwrap();
        assert!(
            s >= 5.0,
            "{svc} waited for Pending (3 s) and initial targets (2 s): {s}"
        );
    }
    // The sampler saw the replacement Pending, then InService.
    let infra = std::fs::read_to_string(d.out().join("runs/u002-well-known/infra.jsonl")).unwrap();
    let states = |line: &str| -> Vec<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["instances"].as_array().unwrap().clone())
            .map(|i| {
                (
                    i["id"].as_str().unwrap().to_string(),
                    i["lifecycle"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let rows: Vec<Vec<(String, String)>> = infra.lines().map(states).collect();
    let pending_then_in_service = rows.iter().flatten().any(|(id, l)| {
        l == "Pending"
            && id != &victim
            && rows
                .iter()
                .flatten()
                .any(|(id2, l2)| id2 == id && l2 == "InService")
    });
    assert!(pending_then_in_service, "{infra}");
}

/// A trial killed with SIGKILL while the groups are pinned: nothing got to restore.
fn crash_mid_run(d: &Drill) {
    let mut run = d.start_run();
    run.wait_for("step=load", Duration::from_secs(60));
    run.child.kill().unwrap();
    run.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journals_are_keyed_by_what_they_changed_not_by_the_environment_name() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(LONG_TRIAL).await;
    // A second deployment in the same account, and an environment for it copied from the first
    // (the same `name`, as the README's "copy the template" gives).
    trialrunner::rehearsal::deploy_emulated(&d.ctx, "beta")
        .await
        .unwrap();
    let beta_env = common::write(
        d.dir.path(),
        "beta.yaml",
        &std::fs::read_to_string(&d.env)
            .unwrap()
            .replace("deployment: veraison", "deployment: beta"),
    );
    crash_mid_run(&d);
    assert_eq!(d.capacities().await, PINNED);
    // Restoring the other deployment finds nothing of ours and changes nothing.
    let out = common::expect_exit(
        d.cmd()
            .args(["infra", "restore", "--env", beta_env.to_str().unwrap()]),
        0,
    );
    assert!(out.stdout.contains("nothing to restore"), "{}", out.text());
    assert_eq!(
        d.capacities().await,
        PINNED,
        "the other deployment's restore left ours alone"
    );
    // Ours is pending, its owner gone: status says so and exits 1.
    let text = d.infra(&["status"], 1).stdout;
    assert!(
        text.contains("PENDING") && text.contains("ended without restoring"),
        "{text}"
    );
    // Restored from another directory, the right results dir's journal is updated.
    common::expect_exit(
        d.cmd().current_dir(std::env::temp_dir()).args([
            "infra",
            "restore",
            "--env",
            d.env.to_str().unwrap(),
        ]),
        0,
    );
    assert_eq!(d.capacities().await, ORIGINAL);
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.out().join("journal.json")).unwrap()).unwrap();
    assert_eq!(journal["restored"], true);
    assert!(
        journal["results_dir"].as_str().unwrap().starts_with('/'),
        "absolute paths"
    );
    d.infra(&["status"], 0); // nothing pending any more
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infra_restore_refuses_while_the_trial_runs_unless_forced() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(LONG_TRIAL).await;
    let run = d.start_run();
    run.wait_for("step=load", Duration::from_secs(60));
    let text = d.infra(&["status"], 1).stdout;
    assert!(
        text.contains("still running"),
        "status tells not to restore: {text}"
    );
    let refused = d.infra(&["restore"], 2);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(
        d.capacities().await,
        PINNED,
        "the live trial keeps its pins"
    );
    let forced = d.infra(&["restore", "--force"], 0);
    assert!(
        forced.stderr.contains("warning: --force"),
        "{}",
        forced.stderr
    );
    assert_eq!(d.capacities().await, ORIGINAL);
    let asked = Instant::now();
    run.signal(libc::SIGINT);
    let (status, output, _) = run.finish(asked, Duration::from_secs(60));
    assert_eq!(status.code(), Some(130), "{output}");
    assert_eq!(d.capacities().await, ORIGINAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_whose_groups_are_gone_has_a_way_out() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(LONG_TRIAL).await;
    crash_mid_run(&d);
    common::moto().reset(); // the deployment is deleted (or the emulator restarted)
    let err = d.infra(&["restore"], 3).stderr;
    assert!(
        err.contains("no longer exists") && err.contains("--forget"),
        "{err}"
    );
    d.infra(&["status"], 1); // still pending
    d.infra(&["restore", "--forget"], 0);
    d.infra(&["status"], 0); // nothing pending
    assert_eq!(state_journals(d.state.path()), 0);
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.out().join("journal.json")).unwrap()).unwrap();
    assert!(
        journal["forgotten"].is_string(),
        "the record says it was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_cache_is_found_before_anything_changes() {
    let _serial = SERIAL.lock().await;
    let trial = LONG_TRIAL.replace(
        "runs:",
        "stores: { clear: before-trial, flush-sessions: true }\nruns:",
    );
    let d = Drill::new(&trial).await;
    let url = d.standin.as_ref().unwrap().url();
    let env = std::fs::read_to_string(&d.env).unwrap()
        + &format!("stores:\n  standin: {{ url: \"{url}\" }}\n  sessions: {{ memcached: [auto] }}\n  disposable: true\n");
    std::fs::write(&d.env, env).unwrap();
    // Rows the campaign must not clear.
    let client = reqwest::Client::new();
    let device = trialrunner::veraison::psa::Device::synthetic(7, 0);
    let rel = trialrunner::veraison::release::ReleaseProfile::parse("v0.0.2602").unwrap();
    let corim = device.corim(rel.corim_profile, rel.corim_tagged, "preflight");
    client
        .post(url.join("/endorsement-provisioning/v1/submit").unwrap())
        .header("content-type", rel.provisioning_media_type)
        .body(corim)
        .send()
        .await
        .unwrap();
    let before = d.standin.as_ref().unwrap().counts().await.unwrap();
    let err = common::expect_exit(
        run_trial(d.state.path(), &d.trial, &d.env, &d.out())
            .arg("--yes")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test"),
        3,
    )
    .stderr;
    assert!(
        err.contains("no ElastiCache cluster for deployment `veraison`"),
        "{err}"
    );
    assert_eq!(d.capacities().await, ORIGINAL, "nothing pinned");
    assert_eq!(
        d.standin.as_ref().unwrap().counts().await.unwrap(),
        before,
        "nothing cleared"
    );
    assert!(before["endorsements"] > 0);
    assert_eq!(
        d.proxy.count("UpdateAutoScalingGroup"),
        0,
        "no change was even attempted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudwatch_failure_makes_the_results_partial_and_report_can_refresh_them() {
    let _serial = SERIAL.lock().await;
    let trial = PIN_TRIAL.replace(
        "runs:",
        "metrics: [asg-instances, rds-connections]\nmetrics-settle: 0s\nruns:",
    );
    let d = Drill::new(&trial).await;
    // The role lacks cloudwatch:GetMetricData (not retried, unlike a 500).
    d.proxy.fail("GetMetricData", 403, "AccessDenied", None);
    // Partial results (4), not a failed campaign.
    let err = common::expect_exit(
        run_trial(d.state.path(), &d.trial, &d.env, &d.out())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test"),
        4,
    )
    .stderr;
    assert!(err.contains("results are partial"), "{err}");
    assert_eq!(d.capacities().await, ORIGINAL);
    let cw: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.out().join("runs/u002-well-known/cloudwatch.json")).unwrap(),
    )
    .unwrap();
    assert!(
        cw["error"].as_str().unwrap().contains("GetMetricData"),
        "{cw}"
    );
    assert_eq!(d.manifest()["status"], "partial");
    assert!(d.out().join("report.html").is_file());
    // CloudWatch answers again: `report --refresh-metrics` pulls the windows and completes.
    d.proxy.thaw();
    common::expect_exit(
        d.cmd()
            .args(["report", d.out().to_str().unwrap(), "--refresh-metrics"]),
        0,
    );
    let cw: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.out().join("runs/u002-well-known/cloudwatch.json")).unwrap(),
    )
    .unwrap();
    assert!(cw.get("error").is_none(), "{cw}");
    assert!(!cw["series"].as_array().unwrap().is_empty());
    assert_eq!(d.manifest()["status"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_stops_answering_stops_the_campaign_and_restores() {
    let _serial = SERIAL.lock().await;
    // 120 s runs: the watch judges a few seconds of refusals, then come the restore and the
    // report (~5 s in all when quiet); hammering the dead address to the run's end would take
    // 120 s, far beyond the 60 s bound that leaves a busy machine's flusher and moto room.
    let mut d = Drill::new(&LONG_TRIAL.replace("duration: 20s", "duration: 120s")).await;
    let addr = d.standin.as_ref().unwrap().addr;
    let run = d.start_run();
    run.wait_for("step=load", Duration::from_secs(60));
    let gone = Instant::now();
    d.standin.take().unwrap().shutdown().await;
    let (status, output, took) = run.finish(gone, Duration::from_secs(180));
    eprintln!("stopped {took:?} after the target died");
    assert_eq!(status.code(), Some(3), "{output}");
    assert!(
        took < Duration::from_secs(60),
        "stopped {took:?} after the target died"
    );
    let refused = format!("at {addr}");
    assert!(
        output.contains("stopped answering")
            && output.contains(&refused)
            && output.contains("trialrunner standin --listen"),
        "{output}"
    );
    assert_eq!(d.capacities().await, ORIGINAL);
    assert!(
        !d.out().join("runs/u004-well-known").exists(),
        "the campaign stopped instead of hammering a dead address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_failed_is_pulled_again_once_settled_and_the_campaign_completes() {
    let _serial = SERIAL.lock().await;
    let trial = PIN_TRIAL.replace(
        "runs:",
        "metrics: [asg-instances]\nmetrics-settle: 3s\nruns:",
    );
    let d = Drill::new(&trial).await;
    // The first pull fails (as a throttled or early pull would); the settle step pulls again.
    d.proxy.fail("GetMetricData", 403, "AccessDenied", Some(1));
    common::expect_exit(
        run_trial(d.state.path(), &d.trial, &d.env, &d.out())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test"),
        0,
    );
    assert_eq!(
        d.proxy.count("GetMetricData"),
        2,
        "pulled, then pulled again"
    );
    let cw: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.out().join("runs/u002-well-known/cloudwatch.json")).unwrap(),
    )
    .unwrap();
    assert!(cw.get("error").is_none(), "{cw}");
    let run: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.out().join("runs/u002-well-known/summary.json")).unwrap(),
    )
    .unwrap();
    let end = run["started_unix"].as_f64().unwrap() + run["duration_s"].as_f64().unwrap();
    assert!(
        cw["pulled_unix"].as_f64().unwrap() >= end + 3.0,
        "the second pull waited for the window to settle"
    );
    assert_eq!(d.manifest()["status"], "complete");
    let ledger = std::fs::read_to_string(d.out().join("ledger.jsonl")).unwrap();
    assert!(
        ledger.contains("\"note\":\"failed: "),
        "the ledger records the failed pull: {ledger}"
    );
}

/// A wrong profile and an expired SSO session: one line each, with the cause and the fix, never
/// the SDK's debug structures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_profile_and_an_expired_sso_session_are_one_line_with_the_fix() {
    let _serial = SERIAL.lock().await;
    let home = tempfile::tempdir().unwrap();
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(aws.join("sso/cache")).unwrap();
    std::fs::write(
        aws.join("config"),
        "[profile other]\nregion = eu-west-1\n[profile corp-admin]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Admin\nregion = eu-west-1\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n",
    )
    .unwrap();
    // The SSO cache file is named by the SHA-1 of the session name; this token expired in 2020.
    use sha1::Digest;
    let name = hex::encode(sha1::Sha1::digest(b"corp"));
    std::fs::write(
        aws.join("sso/cache").join(format!("{name}.json")),
        r#"{"accessToken":"x","expiresAt":"2020-01-01T00:00:00Z","region":"eu-west-1","startUrl":"https://corp.awsapps.com/start"}"#,
    )
    .unwrap();
    for (profile, expect) in [
        (
            "veraison",
            "AWS profile `veraison` is not defined in your AWS config",
        ),
        ("corp-admin", "run `aws sso login --profile corp-admin`"),
    ] {
        let env = common::write(
            home.path(),
            &format!("{profile}.yaml"),
            &format!("name: e\naws: {{ region: eu-west-1, profile: {profile}, account: \"123456789012\", endpoint: \"http://127.0.0.1:1\" }}\ndeployment: veraison\nservices:\n  provisioning: {{ url: \"http://127.0.0.1:8443\" }}\n  verification: {{ url: \"http://127.0.0.1:8443\" }}\n"),
        );
        let err = common::expect_exit(
            Command::new(env!("CARGO_BIN_EXE_trialrunner"))
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap())
                .env("HOME", home.path())
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .args(["infra", "status", "--env", env.to_str().unwrap()]),
            3,
        )
        .stderr;
        assert!(err.contains(expect), "{profile}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            !err.contains('{') && !err.contains("Some("),
            "no debug dump: {err}"
        );
    }
}

/// `plan` names what a trial will change, reading the current settings and changing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_names_the_account_the_groups_now_and_planned_and_changes_nothing() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(LONG_TRIAL).await;
    let text = common::expect_exit(
        d.cmd().args([
            "plan",
            d.trial.to_str().unwrap(),
            "--env",
            d.env.to_str().unwrap(),
        ]),
        0,
    )
    .stdout;
    for needed in [
        "account 123456789012, region eu-west-1",
        &d.proxy.url,
        "credentials   for account 123456789012",
        "veraison-prov-asg (provisioning): now min 1 max 3 desired 1 → min 3 max 3 desired 3",
        "veraison-verif-asg (verification): now min 1 max 3 desired 1 → min 3 max 3 desired 3",
        d.env.to_str().unwrap(),
    ] {
        assert!(text.contains(needed), "`{needed}` missing:\n{text}");
    }
    assert_eq!(d.capacities().await, ORIGINAL);
    assert_eq!(d.proxy.count("UpdateAutoScalingGroup"), 0, "read-only");
}

/// AWS's clock is not ours: scaling activities and launch times are moved onto the generator's
/// clock by the measured offset, as CloudWatch datapoints are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_times_are_placed_on_the_generators_clock() {
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    deploy(&ctx).await;
    let ec2 = aws_sdk_ec2::Client::new(&ctx.config);
    let out = ec2.describe_instances().send().await.unwrap();
    let aws_launch: Vec<f64> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.launch_time().map(|t| t.as_secs_f64()))
        .collect();
    assert!(!aws_launch.is_empty());
    let services: Vec<_> = services_of(&trial::load_environment(&write_env(&ctx)).unwrap())
        .into_iter()
        .filter(|s| s.role != ServiceRole::Management)
        .collect();
    let scaler = AwsScaler::new(ctx.clone().with_clock_offset(100.0), services);
    let t = scaler.spin_up_timeline(0.0, f64::MAX).await.unwrap();
    assert_eq!(t["clock_offset_s"], 100.0);
    for i in t["instances"].as_array().unwrap() {
        let ours = i["launch_time"].as_f64().unwrap();
        assert!(
            aws_launch.iter().any(|a| (a - 100.0 - ours).abs() < 1e-6),
            "{ours} is an AWS launch time minus the offset: {aws_launch:?}"
        );
    }
}

/// An environment file for moto's deployment (the stand-in's URL is not used).
fn write_env(ctx: &AwsContext) -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    common::write(
        &dir,
        "env.yaml",
        &env_yaml(
            &url::Url::parse("http://127.0.0.1:1").unwrap(),
            ACCOUNT,
            &ctx.endpoint,
        ),
    )
}

// ------------------------------------------------------------------------------------- safe with more than one operator
//
// Two operators are two hosts (`TRIALRUNNER_HOST`, which only the owner records read), two
// state folders and two results directories, against one moto deployment: the lock lives on
// the groups themselves, so neither a state folder nor an endpoint URL hides one from the other.

/// The drill's environment reaching the same groups by another endpoint URL (moto directly,
/// not through the fault layer), as a second operator's copy of the template might.
fn direct_env(d: &Drill, name: &str) -> PathBuf {
    common::write(
        d.dir.path(),
        name,
        &std::fs::read_to_string(&d.env)
            .unwrap()
            .replace(&d.proxy.url, &common::moto().url),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_operator_on_another_host_is_refused_and_never_takes_the_pins_for_originals() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(LONG_TRIAL).await;
    let b_state = tempfile::tempdir().unwrap();
    let b_env = direct_env(&d, "b-env.yaml");
    let b_trial = common::write(
        d.dir.path(),
        "b.yaml",
        &LONG_TRIAL.replace("users: [2, 4], duration: 20s", "users: 2, duration: 2s"),
    );
    let b_out = d.dir.path().join("rb");
    let a = d.start(
        d.cmd_on("host-a", d.state.path()),
        &d.trial,
        &d.env,
        &d.out(),
    );
    a.wait_for("step=load", Duration::from_secs(60));
    assert_eq!(d.capacities().await, PINNED);
    let a_pid = format!("pid {} on host-a", a.child.id());
    // B (another host, state folder, results directory and endpoint URL) is refused, naming A,
    // before it changes anything.
    let refused = common::expect_exit(
        d.cmd_on("host-b", b_state.path())
            .arg("run")
            .arg(&b_trial)
            .arg("--env")
            .arg(&b_env)
            .arg("--out")
            .arg(&b_out),
        2,
    );
    assert!(
        refused.stderr.contains("the deployment is locked")
            && refused.stderr.contains("on another host")
            && refused.stderr.contains(&a_pid)
            && refused.stderr.contains("infra status"),
        "{}",
        refused.stderr
    );
    assert_eq!(d.capacities().await, PINNED, "A keeps its pins");
    assert_eq!(state_journals(b_state.path()), 0, "B journalled nothing");
    // B sees who holds what, from its own host and state folder; restoring is refused.
    let status = common::expect_exit(
        d.cmd_on("host-b", b_state.path())
            .args(["infra", "status", "--env"])
            .arg(&b_env),
        1,
    );
    assert!(
        status.stdout.contains(&format!("locked by {a_pid}"))
            && status.stdout.contains("veraison-prov-asg 1 3 1")
            && status.stdout.contains("lease until"),
        "{}",
        status.text()
    );
    let restore = common::expect_exit(
        d.cmd_on("host-b", b_state.path())
            .args(["infra", "restore", "--env"])
            .arg(&b_env),
        2,
    );
    assert!(
        restore.stderr.contains("another host"),
        "{}",
        restore.stderr
    );
    assert_eq!(d.capacities().await, PINNED);
    // A ends: the deployment is back to its real originals and the lock is gone.
    let asked = Instant::now();
    a.signal(libc::SIGINT);
    let (status, output, _) = a.finish(asked, Duration::from_secs(60));
    assert_eq!(status.code(), Some(130), "{output}");
    assert_eq!(d.capacities().await, ORIGINAL);
    assert_eq!(d.lock_tags().await, vec![], "released");
    // Now B runs, and it too puts back the real originals.
    common::expect_exit(
        d.cmd_on("host-b", b_state.path())
            .arg("run")
            .arg(&b_trial)
            .arg("--env")
            .arg(&b_env)
            .arg("--out")
            .arg(d.dir.path().join("rb2")),
        0,
    );
    assert_eq!(d.capacities().await, ORIGINAL);
    assert_eq!(d.lock_tags().await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_campaigns_lock_is_seen_from_another_host_and_broken_with_force() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(LONG_TRIAL).await;
    let b_state = tempfile::tempdir().unwrap();
    let b_env = direct_env(&d, "b-env.yaml");
    // A runs with a short lease and dies without restoring (SIGKILL).
    let mut a_cmd = d.cmd_on("host-a", d.state.path());
    a_cmd.env("TRIALRUNNER_LOCK_LEASE", "4s");
    let mut a = d.start(a_cmd, &d.trial, &d.env, &d.out());
    a.wait_for("step=load", Duration::from_secs(60));
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    assert_eq!(d.capacities().await, PINNED);
    let b = |args: &[&str], code: i32| {
        common::expect_exit(
            d.cmd_on("host-b", b_state.path())
                .args(["infra"])
                .args(args)
                .arg("--env")
                .arg(&b_env),
            code,
        )
    };
    // Its lease runs out (nobody renews it): B's status says so, with the originals it carries.
    common::wait_until("A's lease to expire", Duration::from_secs(30), || {
        b(&["status"], 1).stdout.contains("lease expired")
    });
    let status = b(&["status"], 1);
    assert!(
        status.stdout.contains("on host-a")
            && status.stdout.contains("veraison-verif-asg 1 3 1")
            && status.stdout.contains("--force"),
        "{}",
        status.text()
    );
    // Without --force, B does nothing; with it, B (which has no journal) puts the originals the
    // lock carries back and breaks the lock.
    assert!(b(&["restore"], 2).stderr.contains("--force"));
    assert_eq!(d.capacities().await, PINNED);
    let forced = b(&["restore", "--force"], 0);
    assert!(
        forced.stdout.contains("restored veraison-prov-asg")
            && forced.stdout.contains("released the lock"),
        "{}",
        forced.text()
    );
    assert_eq!(d.capacities().await, ORIGINAL);
    assert_eq!(d.lock_tags().await, vec![]);
    b(&["status"], 0);
}

/// A restore that outlasts the lease (a database's wait on AWS takes minutes) keeps the lock:
/// the campaign renews its lease until the restore ends, so another operator never sees it
/// expired and never takes the groups while they are being put back. Here the restoring
/// `UpdateAutoScalingGroup` is held (frozen) until the restore has outlasted a 10 s lease,
/// renewed every 2.5 s: without renewal the lease would run out at most 10 s into the restore;
/// with it, a renewal may be ~7 s late (a busy machine) before anyone sees it expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_renewed_while_a_long_restore_runs() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const LEASE_S: f64 = 10.0;
    let _serial = SERIAL.lock().await;
    let d = Drill::new(LONG_TRIAL).await;
    let b_state = tempfile::tempdir().unwrap();
    let b_env = direct_env(&d, "b-env.yaml");
    let mut a_cmd = d.cmd_on("host-a", d.state.path());
    a_cmd.env("TRIALRUNNER_LOCK_LEASE", "10s");
    let a = d.start(a_cmd, &d.trial, &d.env, &d.out());
    a.wait_for("step=load", Duration::from_secs(60));
    // Only the restore updates the groups now (the lease's renewals read and tag them).
    d.proxy.freeze("UpdateAutoScalingGroup");
    let asked = Instant::now();
    a.signal(libc::SIGINT);
    d.proxy.wait_held(1, Duration::from_secs(30));
    let restoring = Instant::now();
    let restoring_unix = trialrunner::results::unix_now();
    let into = |t: Instant| (t - restoring).as_secs_f64();
    // B, an operator on another host (straight to moto), looks again and again while A
    // restores: (exit code, what it said, when the look began and ended).
    let looking = Arc::new(AtomicBool::new(true));
    let mut b_status = d.cmd_on("host-b", b_state.path());
    b_status.args(["infra", "status", "--env"]).arg(&b_env);
    let looks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let b = std::thread::spawn({
        let (looking, looks) = (looking.clone(), looks.clone());
        move || {
            while looking.load(Ordering::Relaxed) {
                let began = Instant::now();
                let out = b_status.output().unwrap();
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                looks
                    .lock()
                    .unwrap()
                    .push((out.status.code(), text, began, Instant::now()));
            }
        }
    });
    // The lease as moto holds it, read often: (s into the restore, its end, the clock then).
    // The restore is let go once B has looked after an unrenewed lease would have run out.
    let b_looked_late = || {
        looks
            .lock()
            .unwrap()
            .iter()
            .any(|(code, _, began, _)| *code == Some(1) && into(*began) > LEASE_S + 1.0)
    };
    let mut leases = Vec::new();
    let mut held_until = restoring;
    loop {
        if d.proxy.held() > 0 && b_looked_late() && into(Instant::now()) > LEASE_S + 1.0 {
            d.proxy.clear("UpdateAutoScalingGroup");
        }
        assert!(
            restoring.elapsed() < Duration::from_secs(80),
            "B never looked late enough, or A never released the lock: {:?}",
            looks.lock().unwrap()
        );
        let read = Instant::now();
        let lease: Option<f64> = d
            .lock_tags()
            .await
            .iter()
            .filter(|(_, k, _)| k.ends_with(":lease"))
            .map(|(_, _, v)| v.parse::<f64>().unwrap())
            .reduce(f64::min);
        let Some(lease) = lease else { break }; // released: A's restore is over
        held_until = read;
        leases.push((into(read), lease, trialrunner::results::unix_now()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    looking.store(false, Ordering::Relaxed);
    b.join().unwrap();
    let (status, output, _) = a.finish(asked, Duration::from_secs(90));
    assert_eq!(status.code(), Some(130), "{output}");
    // Moto's lease never ran out while A restored, and it was renewed during the restore: it
    // ran past the restore's start plus a lease (+0.5 s: it is written in whole seconds).
    assert!(
        leases.iter().all(|(_, lease, now)| lease > now),
        "the lease ran out during the restore: {leases:?}"
    );
    assert!(
        leases.iter().any(|(at, _, _)| *at > LEASE_S + 1.0),
        "the lease read after an unrenewed one would have run out: {leases:?}"
    );
    let renewed = leases
        .iter()
        .map(|(_, lease, _)| *lease)
        .fold(f64::MIN, f64::max);
    assert!(
        renewed > restoring_unix + LEASE_S + 0.5,
        "renewed during the restore: lease until {:.1} s after its start",
        renewed - restoring_unix
    );
    // B saw it held, its lease running, on every look while A held it (a look that ended
    // after the release may find nothing).
    for (code, text, _, ended) in looks.lock().unwrap().iter() {
        if *code == Some(0) && *ended > held_until {
            continue;
        }
        assert!(
            *code == Some(1) && text.contains("lease until") && !text.contains("lease expired"),
            "{:.1} s into A's restore: {text}",
            into(*ended)
        );
    }
    assert_eq!(d.capacities().await, ORIGINAL);
    assert_eq!(d.lock_tags().await, vec![], "released after the restore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_of_a_live_campaign_is_refused_with_its_owner_named() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(LONG_TRIAL).await;
    let run = d.start_run();
    run.wait_for("step=load", Duration::from_secs(60));
    let ledger = std::fs::read_to_string(d.out().join("ledger.jsonl")).unwrap();
    let refused = common::expect_exit(&mut d.resume(d.cmd()), 2);
    assert!(
        refused
            .stderr
            .contains("in use by a campaign that is still running")
            && refused.stderr.contains(&format!("pid {}", run.child.id())),
        "{}",
        refused.stderr
    );
    assert_eq!(
        d.capacities().await,
        PINNED,
        "not restored under the live run"
    );
    assert_eq!(
        std::fs::read_to_string(d.out().join("ledger.jsonl")).unwrap(),
        ledger,
        "nothing appended"
    );
    let asked = Instant::now();
    run.signal(libc::SIGINT);
    let (status, output, _) = run.finish(asked, Duration::from_secs(60));
    assert_eq!(status.code(), Some(130), "{output}");
    assert_eq!(d.capacities().await, ORIGINAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_dead_on_another_host_is_resumed_only_with_force() {
    let _serial = SERIAL.lock().await;
    let trial = LONG_TRIAL.replace(
        "users: [2, 4], duration: 20s",
        "users: [2, 4], duration: 4s",
    );
    let d = Drill::new(&trial).await;
    let mut a = d.start(
        d.cmd_on("host-a", d.state.path()),
        &d.trial,
        &d.env,
        &d.out(),
    );
    a.wait_for("step=load", Duration::from_secs(60));
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    // From host B (the results directory copied or shared): A's lease still runs.
    let b_state = tempfile::tempdir().unwrap();
    let refused = common::expect_exit(&mut d.resume(d.cmd_on("host-b", b_state.path())), 2);
    assert!(
        refused.stderr.contains("still runs on another host")
            && refused.stderr.contains("on host-a")
            && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert_eq!(d.capacities().await, PINNED, "nothing changed");
    // B knows A has ended: --force takes the campaign over, completes it and restores.
    let mut forced = d.resume(d.cmd_on("host-b", b_state.path()));
    forced.arg("--force");
    common::expect_exit(&mut forced, 0);
    assert_eq!(d.capacities().await, ORIGINAL);
    assert_eq!(d.lock_tags().await, vec![]);
    assert_eq!(d.manifest()["status"], "complete");
}

/// A crash while the ledger's last line is being written, as the kernel leaves it.
fn tear_ledger(d: &Drill, fragment: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(d.out().join("ledger.jsonl"))
        .unwrap();
    f.write_all(fragment.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twice_torn_ledger_then_the_third_resume_completes() {
    let _serial = SERIAL.lock().await;
    let trial = LONG_TRIAL.replace(
        "users: [2, 4], duration: 20s",
        "users: [2, 4], duration: 4s",
    );
    let d = Drill::new(&trial).await;
    // Killed mid-run, its last ledger line torn; resumed, killed and torn again.
    crash_mid_run(&d);
    // The campaign's id (the fleet's S3 prefix, the lock's claim) is the one a resume continues.
    let campaign = d.manifest()["campaign"].clone();
    assert!(
        campaign.as_str().is_some_and(|c| !c.is_empty()),
        "{campaign}"
    );
    tear_ledger(&d, "{\"key\":\"009-lo");
    let mut second = Watched::spawn(d.resume(d.cmd()));
    second.wait_for("step=load", Duration::from_secs(60));
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    tear_ledger(&d, "{\"key\":\"011-coo");
    // The third completes.
    let out = common::expect_exit(&mut d.resume(d.cmd()), 0);
    assert!(out.stderr.contains("torn"), "{}", out.stderr);
    assert_eq!(d.capacities().await, ORIGINAL);
    assert_eq!(d.manifest()["status"], "complete");
    assert_eq!(
        d.manifest()["campaign"],
        campaign,
        "each resume kept the campaign's id"
    );
    let ledger = std::fs::read_to_string(d.out().join("ledger.jsonl")).unwrap();
    for line in ledger.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let torn = std::fs::read_to_string(d.out().join("ledger.torn")).unwrap();
    assert!(
        torn.contains("009-lo") && torn.contains("011-coo"),
        "both fragments kept: {torn}"
    );
    for run in ["u002-well-known", "u004-well-known"] {
        assert!(d
            .out()
            .join("runs")
            .join(run)
            .join("summary.json")
            .is_file());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_of_the_auto_scaling_calls_throttled_the_campaign_completes_and_restores() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(PIN_TRIAL).await;
    // Four Auto Scaling calls throttled, four through, from the very first (preflight's).
    d.proxy.throttle_bursts("autoscaling:*", 4, 4);
    common::expect_exit(
        run_trial(d.state.path(), &d.trial, &d.env, &d.out())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test"),
        0,
    );
    assert_eq!(d.capacities().await, ORIGINAL);
    assert_eq!(d.manifest()["status"], "complete");
    assert_eq!(d.lock_tags().await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ninety_percent_of_auto_scaling_calls_throttled_from_the_load_on_the_restore_spends_its_budget(
) {
    let _serial = SERIAL.lock().await;
    let trial = LONG_TRIAL.replace("users: [2, 4], duration: 20s", "users: 2, duration: 4s");
    let d = Drill::new(&trial).await;
    let mut cmd = d.cmd();
    cmd.env("TRIALRUNNER_RESTORE_BUDGET", "90s");
    let run = d.start(cmd, &d.trial, &d.env, &d.out());
    run.wait_for("step=load", Duration::from_secs(60));
    // Nine Auto Scaling calls throttled, one through, until the end.
    d.proxy.throttle_bursts("autoscaling:*", 9, 1);
    let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(300));
    assert_eq!(status.code(), Some(0), "{output}");
    assert_eq!(d.capacities().await, ORIGINAL);
    assert_eq!(d.manifest()["status"], "complete");
    // Within the budget, as the campaign measured its own restore.
    let took = d.manifest()["restore_s"]
        .as_f64()
        .expect("the restore's time is recorded");
    eprintln!("restored in {took:.1} s under 90 % throttling");
    assert!(took < 90.0, "restored in {took:.0} s");
    let throttled = d.proxy.count("UpdateAutoScalingGroup");
    assert!(
        throttled >= 10,
        "the restore's update was tried again and again: {throttled} calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_accepts_and_never_answers_stops_the_campaign_within_the_window() {
    let _serial = SERIAL.lock().await;
    let trial = LONG_TRIAL.replace(
        "runs: { users: [2, 4], duration: 20s",
        "runs: { users: [4, 8], duration: 120s, request-timeout: 2s",
    );
    let d = Drill::new(&trial).await;
    let front = common::hang::HangingFront::start(d.standin.as_ref().unwrap().addr);
    let url = format!("http://{}", front.addr);
    let env = std::fs::read_to_string(&d.env).unwrap().replace(
        d.standin
            .as_ref()
            .unwrap()
            .url()
            .as_str()
            .trim_end_matches('/'),
        &url,
    );
    std::fs::write(&d.env, env).unwrap();
    let run = d.start_run();
    run.wait_for("step=load", Duration::from_secs(60));
    front.hang();
    let hung = trialrunner::results::unix_now();
    let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(180));
    assert_eq!(status.code(), Some(3), "{output}");
    assert!(
        output.contains("accepts connections but nearly every request got no answer")
            && output.contains(&format!("at {}", front.addr)),
        "{output}"
    );
    assert_eq!(d.capacities().await, ORIGINAL);
    assert!(
        !d.out().join("runs/u008-well-known").exists(),
        "the campaign stopped"
    );
    // The run's own clock: it stopped within the timeout and the watch's window of the hang.
    let s: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.out().join("runs/u004-well-known/summary.json")).unwrap(),
    )
    .unwrap();
    let stopped = s["started_unix"].as_f64().unwrap() + s["duration_s"].as_f64().unwrap();
    // Its first timeouts come 2 s after the hang, then the watch judges its window (the stop
    // comes 4-5 s after the hang when quiet); 60 s leaves a busy machine's flusher room and is
    // far below the run's own 120 s.
    eprintln!("stopped {:.1} s after the hang", stopped - hung);
    assert!(
        stopped - hung < 60.0,
        "stopped {:.1} s after the hang",
        stopped - hung
    );
    assert!(s["unanswered"]["timed_out"].as_u64().unwrap() >= 4, "{s}");
    let report = std::fs::read_to_string(d.out().join("report.md")).unwrap();
    assert!(report.contains("requests without an answer"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_while_preflight_waits_on_a_frozen_endpoint_exits_130_within_seconds() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(LONG_TRIAL).await;
    // Frozen from the first call (the account guard), then only the groups' reads (preflight).
    for (n, frozen) in ["*", "DescribeAutoScalingGroups"].into_iter().enumerate() {
        d.proxy.thaw();
        d.proxy.freeze(frozen);
        let out = d.dir.path().join(format!("r{n}"));
        let run = d.start(d.cmd(), &d.trial, &d.env, &out);
        d.proxy.wait_held(1, Duration::from_secs(30));
        let asked = Instant::now();
        run.signal(libc::SIGINT);
        let (status, output, took) = run.finish(asked, Duration::from_secs(60));
        eprintln!("{frozen}: exited {took:?} after Ctrl-C");
        assert_eq!(status.code(), Some(130), "{frozen}: {output}");
        // Nothing to restore: it exits at once (well under a second when quiet). A stop that
        // waited for the frozen call to give up would take its 15 s read timeout at least.
        assert!(took < Duration::from_secs(10), "{frozen}: {took:?}");
        d.proxy.thaw();
        assert_eq!(d.capacities().await, ORIGINAL);
        assert_eq!(
            d.proxy.count("UpdateAutoScalingGroup"),
            0,
            "nothing changed"
        );
    }
}

/// A trial that publishes the client's figures: two runs (two tasks, four endpoints).
const PUBLISH_TRIAL: &str = "name: pub\nenvironment: env.yaml\npublish: [cloudwatch]\nruns: { users: 2, duration: 3s, tasks: [well-known, verify] }\n";

/// Per second, one metric of one endpoint of one run as CloudWatch holds it.
async fn published(
    ctx: &AwsContext,
    env: &str,
    run: &str,
    endpoint: &str,
    metric: &str,
    window: (f64, f64),
) -> std::collections::BTreeMap<i64, f64> {
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
    let mut m = Metric::builder()
        .namespace("trialrunner")
        .metric_name(metric);
    for (k, v) in [
        ("trial", "pub"),
        ("environment", env),
        ("run", run),
        ("endpoint", endpoint),
    ] {
        m = m.dimensions(Dimension::builder().name(k).value(v).build());
    }
    let out = aws_sdk_cloudwatch::Client::new(&ctx.config)
        .get_metric_data()
        .start_time(aws_smithy_types::DateTime::from_secs(window.0 as i64))
        .end_time(aws_smithy_types::DateTime::from_secs(window.1 as i64))
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("q")
                .metric_stat(
                    MetricStat::builder()
                        .metric(m.build())
                        .period(1)
                        .stat("Maximum")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let r = &out.metric_data_results()[0];
    r.timestamps()
        .iter()
        .zip(r.values())
        .map(|(t, v)| (t.secs(), *v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_figures_published_to_cloudwatch_equal_the_results_files() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(PUBLISH_TRIAL).await;
    common::expect_exit(
        run_trial(d.state.path(), &d.trial, &d.env, &d.out())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test"),
        0,
    );
    let env = format!("moto-{ACCOUNT}");
    let mut endpoints = 0;
    for run in ["u002-well-known", "u002-verify"] {
        let dir = d.out().join("runs").join(run);
        let sent: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("published.json")).unwrap()).unwrap();
        assert_eq!(sent["to"], "cloudwatch:trialrunner", "{sent}");
        // The seconds as published: on AWS's clock, by the whole seconds the publisher measured.
        let shift = sent["clock_offset_s"].as_f64().unwrap();
        let mut rows = trialrunner::results::csv::read_timeline(&dir.join("timeline.csv"));
        for r in &mut rows {
            r.unix += shift;
        }
        let window = (
            rows.iter().map(|r| r.unix).fold(f64::MAX, f64::min) - 5.0,
            rows.iter().map(|r| r.unix).fold(0.0, f64::max) + 5.0,
        );
        let names: std::collections::BTreeSet<String> =
            rows.iter().map(|r| r.endpoint.clone()).collect();
        for name in &names {
            let own: Vec<_> = rows.iter().filter(|r| &r.endpoint == name).collect();
            // The run's request count: every second's requests in timeline.csv.
            let requests = published(&d.ctx, &env, run, name, "Requests", window).await;
            let in_file: f64 = own.iter().map(|r| r.requests).sum();
            assert!(in_file > 0.0, "{run} {name}");
            assert_eq!(
                requests.values().sum::<f64>(),
                in_file,
                "{run} {name} requests"
            );
            // Its p95, second by second, as timeline.csv has it.
            let p95 = published(&d.ctx, &env, run, name, "LatencyP95", window).await;
            let p95_in_file: std::collections::BTreeMap<i64, f64> = own
                .iter()
                .filter_map(|r| Some((r.unix as i64, r.p95?)))
                .collect();
            assert!(!p95_in_file.is_empty(), "{run} {name}");
            assert_eq!(p95, p95_in_file, "{run} {name} p95 per second");
            endpoints += 1;
        }
    }
    assert!(
        endpoints >= 4,
        "well-known, the verification requests and the session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudwatch_publish_that_fails_is_recorded_and_the_campaign_completes() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(PUBLISH_TRIAL).await;
    d.proxy.fail("PutMetricData", 403, "AccessDenied", None);
    let done = common::expect_exit(
        run_trial(d.state.path(), &d.trial, &d.env, &d.out())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test"),
        0,
    );
    assert!(
        done.stderr.contains("were not published") && done.stderr.contains("PutMetricData"),
        "{}",
        done.stderr
    );
    for run in ["u002-well-known", "u002-verify"] {
        let dir = d.out().join("runs").join(run);
        assert!(dir.join("summary.json").is_file(), "{run} ran");
        let sent: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("published.json")).unwrap()).unwrap();
        assert!(
            sent["error"].as_str().unwrap().contains("AccessDenied"),
            "{sent}"
        );
    }
    assert_eq!(d.manifest()["status"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudwatch_dashboard_shows_the_clients_figures_beside_the_deployments() {
    let _serial = SERIAL.lock().await;
    let trial = PUBLISH_TRIAL.replace("runs:", "metrics: [asg-instances, rds-connections]\nruns:");
    let d = Drill::new(&trial).await;
    let done = common::expect_exit(
        d.cmd()
            .arg("--aws-endpoint")
            .arg(&d.proxy.url)
            .args(["dashboard", "--env"])
            .arg(&d.env)
            .arg("--trial")
            .arg(&d.trial),
        0,
    );
    let name = format!("trialrunner-pub-moto-{ACCOUNT}");
    assert!(done.stdout.contains(&name), "{}", done.stdout);
    let got = aws_sdk_cloudwatch::Client::new(&d.ctx.config)
        .get_dashboard()
        .dashboard_name(&name)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(got.dashboard_body().unwrap()).unwrap();
    let text = body.to_string();
    for metric in ["Requests", "Failures", "LatencyP95", "LatencyP99"] {
        assert!(
            text.contains(&format!(r#"MetricName=\"{metric}\" trial=\"pub\""#)),
            "{metric}: {text}"
        );
    }
    // The deployment's series the trial names, resolved: the groups and the database.
    assert!(
        text.contains("GroupInServiceInstances") && text.contains("DatabaseConnections"),
        "{text}"
    );
    assert!(
        text.contains("veraison-prov-asg") || text.contains("prov"),
        "{text}"
    );
}
