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
use tokio_util::sync::CancellationToken;
use trialrunner::aws::scaler::{services_of, AwsScaler};
use trialrunner::aws::{AwsContext, AwsTimeouts};
use trialrunner::exec::{self, Interrupts};
use trialrunner::provider::{AsgSettings, ReadyReport, Scaler};
use trialrunner::results::ResultsDir;
use trialrunner::setup::{self, SetupOptions};
use trialrunner::trial::model::{AwsSpec, ServiceRole};
use trialrunner::trial::{self, Capacity};
use trialrunner::veraison::standin::store::KvStore;
use trialrunner::veraison::standin::{Standin, StandinConfig};

/// moto is shared by every test of this binary and `reset` wipes it: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ACCOUNT: &str = "123456789012";
const D: &str = "veraison";

fn set_test_credentials() {
    // SAFETY: set before any thread reads them, and every test sets the same values.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
}

async fn ctx() -> AwsContext {
    set_test_credentials();
    let spec = AwsSpec {
        region: "eu-west-1".into(),
        profile: None,
        account: ACCOUNT.into(),
        endpoint: Some(common::moto().url.clone()),
    };
    AwsContext::load(&spec, None, AwsTimeouts::default())
        .await
        .unwrap()
}

/// A deployment shaped like Veraison's in moto (the rehearsal's, so both stay one shape):
/// launch templates, `veraison-prov-asg` and `veraison-verif-asg` at 1..3 behind target groups,
/// tagged instances, and an RDS instance `veraison-support-rdsinstance-rehearsal`.
async fn deploy(ctx: &AwsContext) {
    common::moto().reset();
    trialrunner::rehearsal::deploy_emulated(ctx, D)
        .await
        .unwrap();
}

async fn settings(ctx: &AwsContext, name: &str) -> (i32, i32, i32, usize, usize) {
    let asg = aws_sdk_autoscaling::Client::new(&ctx.config);
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    let g = &out.auto_scaling_groups()[0];
    let in_service = g
        .instances()
        .iter()
        .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
        .count();
    (
        g.min_size().unwrap(),
        g.max_size().unwrap(),
        g.desired_capacity().unwrap(),
        in_service,
        g.enabled_metrics().len(),
    )
}

/// Capacity is back. (Group metrics collection cannot be turned off in moto, which does not
/// implement DisableMetricsCollection: the restore warns and goes on, as it would on AWS errors.)
async fn assert_original(ctx: &AwsContext) {
    for name in [format!("{D}-prov-asg"), format!("{D}-verif-asg")] {
        let (min, max, desired, _, _) = settings(ctx, &name).await;
        assert_eq!(
            (min, max, desired),
            (1, 3, 1),
            "{name} is back to 1..3, desired 1"
        );
    }
}

async fn standin() -> Standin {
    Standin::start(
        "127.0.0.1:0".parse().unwrap(),
        StandinConfig::default(),
        KvStore::memory(),
    )
    .await
    .unwrap()
}

/// The binary, with its undo-journal state kept in `state` (one per test).
fn trialrunner(state: impl AsRef<Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trialrunner"));
    c.env("TRIALRUNNER_STATE_DIR", state.as_ref());
    c
}

/// `trialrunner run TRIAL --env ENV --out OUT` with its own journal state.
fn run_trial(state: impl AsRef<Path>, trial: &Path, env: &Path, out: &Path) -> Command {
    let mut c = trialrunner(state);
    c.arg("run")
        .arg(trial)
        .arg("--env")
        .arg(env)
        .arg("--out")
        .arg(out);
    c
}

fn env_yaml(standin: &url::Url, account: &str, endpoint: &str) -> String {
    format!(
        "name: moto-{account}\naws: {{ region: eu-west-1, account: \"{account}\", endpoint: \"{endpoint}\" }}\ndeployment: {D}\nservices:\n  provisioning: {{ url: \"{standin}\" }}\n  verification: {{ url: \"{standin}\" }}\nveraison: {{ release: v0.0.2602 }}\n"
    )
}

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
    for o in &original {
        scaler.restore(o).await.unwrap();
        scaler.restore(o).await.unwrap();
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
    let (trial, env) = files(dir.path(), &s.url(), ACCOUNT);
    let state = tempfile::tempdir().unwrap();
    let out = run_trial(state.path(), &trial, &env, &dir.path().join("r"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
    assert!(
        infra.lines().count() >= 2,
        "sampled every second during the 2 s run"
    );
    assert!(infra.contains("\"InService\""));
    assert!(r.join("runs/u002-well-known/scaling.json").is_file());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["infra_after"][0]["desired"], 1);
    assert!(
        !state.path().join("journal-moto-123456789012.json").exists(),
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
    let out = run_trial(
        dir.path().join("state"),
        &trial,
        &env,
        &dir.path().join("r"),
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
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
        max_attempts: 2,
    };
    let started = Instant::now();
    let ctx = AwsContext::load(&spec, None, timeouts).await.unwrap();
    let err = ctx.check_account().await.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(8),
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
    // The service's well-known accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in listener.incoming().flatten() {
            conns.push(c);
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
    let out = run_trial(state.path(), &trial, &env, &dir.path().join("r"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not ready after 3s") && stderr.contains("well-known"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded by the 3 s ready-timeout plus restore: {:?}",
        started.elapsed()
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
    let out = trialrunner(state.path())
        .args([
            "run",
            trial.to_str().unwrap(),
            "--env",
            env.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("infra restore"));
    // `infra status` shows current vs journal; `infra restore` puts everything back, twice.
    let status = trialrunner(state.path())
        .args(["infra", "status", "--env", env.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("veraison-verif-asg") && text.contains("1 3 1") && text.contains("pending"),
        "{text}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // Instances are discovered by the deployment tag the ASGs propagate (3 + 3 pinned).
    assert!(
        text.contains("6 instance(s) tagged veraison-deployment=veraison")
            && text.contains("verification")
            && text.contains("running"),
        "{text}"
    );
    for _ in 0..2 {
        let out = trialrunner(state.path())
            .args(["infra", "restore", "--env", env.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_original(&ctx).await;
}

/// A scaler whose second capacity change fails, as an API error would.
struct FailsSecondPin {
    inner: AwsScaler,
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
    async fn restore(&self, o: &AsgSettings) -> trialrunner::Result<()> {
        self.inner.restore(o).await
    }
    async fn sample(&self) -> trialrunner::Result<serde_json::Value> {
        self.inner.sample().await
    }
    async fn spin_up_timeline(&self, a: f64, b: f64) -> trialrunner::Result<serde_json::Value> {
        self.inner.spin_up_timeline(a, b).await
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
        inner: AwsScaler::new(ctx.clone(), services_of(&t.env)),
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
    // Error lines in the VTS log group.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&ctx.config);
    logs.create_log_group()
        .log_group_name("veraison-vts")
        .send()
        .await
        .unwrap();
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
    // moto's ElastiCache has no node endpoints: the error says what to do.
    aws_sdk_elasticache::Client::new(&ctx.config)
        .create_cache_cluster()
        .cache_cluster_id("veraison-cache")
        .engine("memcached")
        .cache_node_type("cache.t2.micro")
        .num_cache_nodes(2)
        .send()
        .await
        .unwrap();
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
    for sec in 0..n {
        let src = perm(sec) as f64;
        let p95 = 100.0 + 8.0 * (db(src - 120.0) - 20.0);
        let fails = if (595.0..625.0).contains(&src) { 1 } else { 0 };
        timeline.push_str(&format!("{sec},{:.3},POST,/challenge-response/v1/[SESSION_ID],50,100,{fails},{:.3},,{p95:.3},,,,,0\n", start + sec as f64, p95 / 2.0));
    }
    std::fs::write(run_dir.join("timeline.csv"), timeline).unwrap();
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
            let lag = c.best_lag_s.unwrap();
            assert!(
                (100..=140).contains(&lag),
                "DB connections lead p95 by about 120 s: {c:?}"
            );
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
    let out = Command::new(env!("CARGO_BIN_EXE_trialrunner"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("HOME", dir.path()) // no ~/.aws/credentials
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .args(["infra", "status", "--env", env.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
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
