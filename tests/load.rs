//! The load engine against local targets only (127.0.0.1): measurement accuracy, coordinated
//! omission, fault classes, Veraison tasks with auth, fleet mode, and the files a run writes.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use trialrunner::load::auth::{PasswordGrant, TokenSource};
use trialrunner::load::tasks::{HttpTask, Target};
use trialrunner::load::{LoadEngine, Progress};
use trialrunner::results::RunSummary;
use trialrunner::secret::Secret;
use trialrunner::trial::model::{ArrivalSpec, NonceMode, Rate, SpawnSpec, WaitSpec};
use trialrunner::trial::{LoadPhase, TaskRef};
use trialrunner::veraison::release::ReleaseProfile;
use trialrunner::veraison::standin::faults::{Faults, Latency};
use trialrunner::veraison::standin::store::KvStore;
use trialrunner::veraison::standin::{Credentials, Standin, StandinConfig, TOKEN_PATH};

/// Timing-sensitive tests must not share the two cores with each other: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn standin(release: &str, faults: Faults, auth: bool) -> Standin {
    let cfg = StandinConfig {
        release: ReleaseProfile::parse(release).unwrap(),
        faults,
        auth: auth.then(Credentials::default),
        ..StandinConfig::default()
    };
    Standin::start("127.0.0.1:0".parse().unwrap(), cfg, KvStore::memory())
        .await
        .unwrap()
}

fn target(base: &url::Url, release: &str) -> Target {
    Target {
        provisioning: base.clone(),
        verification: base.clone(),
        release: ReleaseProfile::parse(release).unwrap(),
        tokens: None,
        http_tasks: BTreeMap::new(),
        tls: Default::default(),
    }
}

fn http_task(base: &url::Url, method: reqwest::Method, path: &str, expect: u16) -> HttpTask {
    HttpTask {
        url: base.join(path).unwrap(),
        name: path.to_string(),
        method,
        headers: Default::default(),
        body: Default::default(),
        expect: reqwest::StatusCode::from_u16(expect).unwrap(),
        auth: false,
    }
}

fn phase(id: &str, users: Option<u32>, tasks: Vec<TaskRef>, secs: f64) -> LoadPhase {
    LoadPhase {
        run_id: id.into(),
        iteration: 1,
        users,
        arrival: None,
        tasks,
        duration: Duration::from_secs_f64(secs),
        spawn: SpawnSpec::AllAtOnce,
        wait: WaitSpec::None,
        warmup: Duration::ZERO,
        request_timeout: Duration::from_secs(10),
        nonce: NonceMode::Fixed,
        fleet: false,
    }
}

async fn run(t: Target, p: &LoadPhase, dir: &Path) -> RunSummary {
    LoadEngine::new(t, Progress::Quiet)
        .run_phase(p, dir, &CancellationToken::new())
        .await
        .unwrap()
}

fn failures_of(s: &RunSummary, class: &str) -> u64 {
    s.failures
        .iter()
        .filter(|f| f.class == class)
        .map(|f| f.count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p95_is_within_one_percent_of_the_true_p95() {
    let _serial = SERIAL.lock().await;
    // Delays long against the fixed cost of a request (~1-3 ms in a debug build), ~160
    // requests/s to stay far from saturating two cores, ~1600 samples: the p95's standard
    // error is ~0.2 %.
    let latency: Latency = "uniform:1s:1500ms".parse().unwrap();
    let s = standin(
        "v0.0.2602",
        Faults {
            latency: Some(latency),
            ..Faults::default()
        },
        false,
    )
    .await;
    let mut t = target(&s.url(), "v0.0.2602");
    t.http_tasks.insert(
        "new".into(),
        http_task(
            &s.url(),
            reqwest::Method::POST,
            "/challenge-response/v1/newSession",
            201,
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let summary = run(
        t,
        &phase(
            "accuracy",
            Some(200),
            vec![TaskRef::Http("new".into())],
            10.0,
        ),
        dir.path(),
    )
    .await;
    let e = &summary.endpoints[0];
    assert!(e.total.count >= 1400, "enough samples: {}", e.total.count);
    assert!(!summary.generator.saturated, "{:?}", summary.generator);
    assert_eq!(e.total.failures, 0);
    let truth = latency.quantile(0.95).as_secs_f64() * 1000.0;
    let err = (e.total.p95_ms - truth).abs() / truth;
    assert!(
        err < 0.01,
        "p95 {:.2} ms vs true {truth:.2} ms ({:.2} %)",
        e.total.p95_ms,
        err * 100.0
    );
    // And the median, as a sanity check of the whole distribution.
    let p50 = latency.quantile(0.5).as_secs_f64() * 1000.0;
    assert!(
        (e.total.p50_ms - p50).abs() / p50 < 0.02,
        "p50 {:.2} vs {p50:.2}",
        e.total.p50_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_model_corrected_latency_grows_when_the_target_stalls_raw_does_not() {
    let _serial = SERIAL.lock().await;
    // The target stops answering between 1 s and 2 s after start; one slot in flight.
    let faults = Faults {
        pause: Some((Duration::from_millis(1000), Duration::from_millis(1000))),
        ..Faults::default()
    };
    let s = standin("v0.0.2602", faults, false).await;
    let mut t = target(&s.url(), "v0.0.2602");
    t.http_tasks.insert(
        "new".into(),
        http_task(
            &s.url(),
            reqwest::Method::POST,
            "/challenge-response/v1/newSession",
            201,
        ),
    );
    let mut p = phase("stall", None, vec![TaskRef::Http("new".into())], 3.0);
    p.arrival = Some(ArrivalSpec {
        rate: Rate(100.0),
        to: None,
        max_in_flight: 1,
    });
    let dir = tempfile::tempdir().unwrap();
    let summary = run(t, &p, dir.path()).await;
    let e = &summary.endpoints[0];
    let corrected = e
        .corrected
        .as_ref()
        .expect("the open model reports corrected latency");
    assert!(e.total.count >= 250, "{}", e.total.count);
    // Raw service time: only the one request caught in the pause was slow.
    assert!(e.total.p90_ms < 50.0, "raw p90 {:.1} ms", e.total.p90_ms);
    // Measured from the intended start, the queue behind it shows.
    assert!(
        corrected.p90_ms > 300.0,
        "corrected p90 {:.1} ms",
        corrected.p90_ms
    );
    assert!(corrected.max_ms > 800.0);
    // Without a stall the two agree.
    let s = standin("v0.0.2602", Faults::default(), false).await;
    let mut t = target(&s.url(), "v0.0.2602");
    t.http_tasks.insert(
        "new".into(),
        http_task(
            &s.url(),
            reqwest::Method::POST,
            "/challenge-response/v1/newSession",
            201,
        ),
    );
    let summary = run(t, &p, dir.path()).await;
    let e = &summary.endpoints[0];
    assert!(e.corrected.as_ref().unwrap().p90_ms < 50.0);
}

/// A TCP server on 127.0.0.1 that does `behave` with each connection.
async fn raw_server(behave: &'static str) -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                match behave {
                    "reset" => {
                        let _ = sock.read(&mut buf).await;
                        // SO_LINGER 0: close with a RST instead of a FIN.
                        let std_sock = sock.into_std().unwrap();
                        socket2::SockRef::from(&std_sock)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        drop(std_sock);
                    }
                    "silent" => {
                        let _ = sock.read(&mut buf).await;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    _ => loop {
                        if sock.read(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let body = "\x00\x01garbage{";
                        let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    },
                }
            });
        }
    });
    url::Url::parse(&format!("http://{addr}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_faults_are_counted_per_class_and_the_run_completes() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let wk = vec![TaskRef::WellKnown];
    // Refused: nothing listens on a freshly released port.
    let closed = url::Url::parse(&format!("http://127.0.0.1:{}", common::free_port())).unwrap();
    let s = run(
        target(&closed, "v0.0.2602"),
        &phase("refused", Some(2), wk.clone(), 1.0),
        &dir.path().join("a"),
    )
    .await;
    assert!(failures_of(&s, "connect") > 0, "{:?}", s.failures);
    // Reset mid-request.
    let reset = raw_server("reset").await;
    let s = run(
        target(&reset, "v0.0.2602"),
        &phase("reset", Some(2), wk.clone(), 1.0),
        &dir.path().join("b"),
    )
    .await;
    assert!(failures_of(&s, "reset") > 0, "{:?}", s.failures);
    // Timeout: a listener that never answers, with a 300 ms request timeout.
    let silent = raw_server("silent").await;
    let mut p = phase("timeout", Some(2), wk.clone(), 1.0);
    p.request_timeout = Duration::from_millis(300);
    let s = run(target(&silent, "v0.0.2602"), &p, &dir.path().join("c")).await;
    assert!(failures_of(&s, "timeout") > 0, "{:?}", s.failures);
    assert!(
        s.duration_s < 3.0,
        "the run ended on time despite the silent target: {}",
        s.duration_s
    );
    // Garbage body with a 200.
    let garbage = raw_server("garbage").await;
    let s = run(
        target(&garbage, "v0.0.2602"),
        &phase("garbage", Some(2), wk.clone(), 1.0),
        &dir.path().join("d"),
    )
    .await;
    assert!(failures_of(&s, "body") > 0, "{:?}", s.failures);
    // 5xx from the stand-in.
    let sick = standin(
        "v0.0.2602",
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
        false,
    )
    .await;
    let s = run(
        target(&sick.url(), "v0.0.2602"),
        &phase("5xx", Some(2), vec![TaskRef::Verify], 1.0),
        &dir.path().join("e"),
    )
    .await;
    let status: Vec<_> = s.failures.iter().filter(|f| f.class == "status").collect();
    assert!(
        !status.is_empty() && status.iter().all(|f| f.message.starts_with("HTTP 500")),
        "{:?}",
        s.failures
    );
    // Bad EAR: the devices' provisioning goes to a dead port, so verification cannot know them.
    let healthy = standin("v0.0.2602", Faults::default(), false).await;
    let mut t = target(&healthy.url(), "v0.0.2602");
    t.provisioning = closed.clone();
    let s = run(
        t,
        &phase("bad-ear", Some(2), vec![TaskRef::Verify], 1.0),
        &dir.path().join("f"),
    )
    .await;
    assert!(failures_of(&s, "contraindicated") > 0, "{:?}", s.failures);
    let evidence = s.endpoint("/challenge-response/v1/[SESSION_ID]").unwrap();
    assert!(evidence.total.count > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn veraison_tasks_with_auth_fetch_one_token_and_write_every_file() {
    let _serial = SERIAL.lock().await;
    let s = standin("v0.0.2602", Faults::default(), true).await;
    let d = Credentials::default();
    let mut t = target(&s.url(), "v0.0.2602");
    let tokens = token_source(&s, &d);
    t.tokens = Some(tokens.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut p = phase(
        "u008-all",
        Some(8),
        vec![TaskRef::WellKnown, TaskRef::Provision, TaskRef::Verify],
        2.5,
    );
    p.warmup = Duration::from_secs(1);
    let summary = run(t, &p, dir.path()).await;
    assert_eq!(summary.aggregated.failures, 0, "{:?}", summary.failures);
    let names: Vec<&str> = summary.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "/.well-known/veraison/provisioning",
            "/.well-known/veraison/verification",
            "/endorsement-provisioning/v1/submit",
            "/challenge-response/v1/newSession?nonce=[NONCE]",
            "/challenge-response/v1/[SESSION_ID]",
            "/challenge-response/v1/[SESSION_ID]",
            TOKEN_PATH,
        ]
    );
    assert_eq!(
        summary
            .endpoint("/endorsement-provisioning/v1/submit")
            .unwrap()
            .task,
        "provision"
    );
    // One token for the whole run (fetched during setup), not one per user; none inside a task.
    assert_eq!(tokens.fetches(), 1);
    assert_eq!(summary.endpoint(TOKEN_PATH).unwrap().total.failures, 0);
    let submit = summary
        .endpoint("/endorsement-provisioning/v1/submit")
        .unwrap();
    assert!(
        submit.total.count > 10 && submit.steady.count < submit.total.count,
        "warm-up excluded from steady"
    );
    // Files.
    for f in [
        "summary.json",
        "timeline.csv",
        "latency.hlog",
        "stats.csv",
        "stats_history.csv",
        "failures.csv",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let stats = std::fs::read_to_string(dir.path().join("stats.csv")).unwrap();
    assert!(stats.starts_with(
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time"
    ));
    assert!(stats.lines().last().unwrap().starts_with(",Aggregated,"));
    let timeline = std::fs::read_to_string(dir.path().join("timeline.csv")).unwrap();
    let rows = timeline.lines().skip(1).count();
    assert!(rows >= 2 * 7, "a row per second per endpoint: {rows}");
    assert!(
        timeline.lines().nth(1).unwrap().ends_with(",1"),
        "the first second is warm-up"
    );
    let hlog = std::fs::read(dir.path().join("latency.hlog")).unwrap();
    let intervals = IntervalLogIterator::new(&hlog)
        .filter(|e| matches!(e, Ok(LogEntry::Interval(_))))
        .count();
    assert!(intervals >= 6, "{intervals}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("failures.csv")).unwrap(),
        "Method,Name,Error,Occurrences\n"
    );
    // Counting both ways agrees: every provisioning request added rows.
    let counts = s.counts().await.unwrap();
    assert_eq!(
        counts["endorsements"],
        3 * (submit.total.count + 1),
        "one setup submission plus the run's"
    );
}

fn token_source(s: &Standin, d: &Credentials) -> Arc<TokenSource> {
    Arc::new(TokenSource::new(PasswordGrant {
        token_url: s.url().join(TOKEN_PATH).unwrap(),
        client_id: d.client_id.clone(),
        client_secret: Some(Secret::new(d.client_secret.clone())),
        username: d.username.clone(),
        password: Secret::new(d.password.clone()),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refreshed_before_they_expire_and_recorded_on_their_own_endpoint() {
    let _serial = SERIAL.lock().await;
    let cfg = StandinConfig {
        auth: Some(Credentials::default()),
        token_lifetime: Duration::from_secs(1),
        ..StandinConfig::default()
    };
    let s = Standin::start("127.0.0.1:0".parse().unwrap(), cfg, KvStore::memory())
        .await
        .unwrap();
    let mut t = target(&s.url(), "v0.0.2602");
    let tokens = token_source(&s, &Credentials::default());
    t.tokens = Some(tokens.clone());
    let dir = tempfile::tempdir().unwrap();
    let summary = run(
        t,
        &phase("refresh", Some(4), vec![TaskRef::Provision], 2.5),
        dir.path(),
    )
    .await;
    // Refreshed at 80 % of a 1 s lifetime: at least 3 fetches in 2.5 s, all recorded, no 401s.
    let token = summary.endpoint(TOKEN_PATH).unwrap();
    assert!(token.total.count >= 3, "{}", token.total.count);
    assert_eq!(token.total.count, tokens.fetches());
    assert_eq!(summary.aggregated.failures, 0, "{:?}", summary.failures);
    let submit = summary
        .endpoint("/endorsement-provisioning/v1/submit")
        .unwrap();
    assert!(
        submit.total.count > token.total.count * 10,
        "token requests are not inside the task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_failed_status_is_a_failure_with_its_reason() {
    let _serial = SERIAL.lock().await;
    // The deployment runs v0.0.2602 (tagged CoRIMs only); the trial thinks v0.0.2511 (untagged).
    let s = standin("v0.0.2602", Faults::default(), false).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = run(
        target(&s.url(), "v0.0.2511"),
        &phase("mismatch", Some(2), vec![TaskRef::Provision], 1.0),
        dir.path(),
    )
    .await;
    let f = summary
        .failures
        .iter()
        .find(|f| f.class == "failed")
        .expect("status failed counted");
    assert!(
        f.message.contains("did not see unsigned CoRIM tag"),
        "{}",
        f.message
    );
    let failures_csv = std::fs::read_to_string(dir.path().join("failures.csv")).unwrap();
    assert!(failures_csv.contains("failed: submit endorsement returned error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_mode_gives_each_user_its_own_device() {
    let _serial = SERIAL.lock().await;
    let s = standin("v0.0.2602", Faults::default(), false).await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = phase("fleet", Some(5), vec![TaskRef::Verify], 1.0);
    p.fleet = true;
    p.nonce = NonceMode::Fresh;
    let summary = run(target(&s.url(), "v0.0.2602"), &p, dir.path()).await;
    assert_eq!(summary.aggregated.failures, 0, "{:?}", summary.failures);
    assert_eq!(
        s.counts().await.unwrap()["trust_anchors"],
        5,
        "five distinct devices provisioned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_rate_ramps_users_and_cancel_stops_the_run() {
    let _serial = SERIAL.lock().await;
    let s = standin("v0.0.2602", Faults::default(), false).await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = phase("ramp", Some(6), vec![TaskRef::WellKnown], 30.0);
    p.spawn = SpawnSpec::Rate(Rate(4.0));
    p.wait = WaitSpec::Constant(trialrunner::trial::model::Span(Duration::from_millis(20)));
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        c.cancel();
    });
    let summary = LoadEngine::new(target(&s.url(), "v0.0.2602"), Progress::Quiet)
        .run_phase(&p, dir.path(), &cancel)
        .await
        .unwrap();
    assert!(summary.interrupted);
    assert!(
        summary.duration_s < 5.0,
        "stopped early: {}",
        summary.duration_s
    );
    let timeline = std::fs::read_to_string(dir.path().join("timeline.csv")).unwrap();
    // One row per endpoint per second (2 endpoints); the last, partial second follows the stop.
    let mut users: Vec<u32> = timeline
        .lines()
        .skip(1)
        .step_by(2)
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    users.pop();
    assert!(
        users[0] < users[users.len() - 1],
        "users ramp up: {users:?}"
    );
    assert!(users.windows(2).all(|w| w[0] <= w[1]), "{users:?}");
}

/// `bench` against an address nothing listens on: a clear error naming the address, and a
/// non-zero exit, never a request rate that measures failures.
#[test]
fn bench_against_a_closed_port_fails_and_says_where() {
    let port = common::free_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trialrunner"))
        .args([
            "bench",
            "--url",
            &format!("http://127.0.0.1:{port}/"),
            "--duration",
            "1s",
            "--connections",
            "2",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("at 127.0.0.1:{port}")), "{err}");
}

/// Users that cannot connect back off (50 ms doubling to 2 s) instead of hammering a dead
/// address; the run is stopped as soon as the target looks dead, with the address in the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_back_off_from_a_dead_target_and_the_run_stops_naming_it() {
    let _serial = SERIAL.lock().await;
    let port = common::free_port();
    let base = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let mut t = target(&base, "v0.0.2602");
    t.http_tasks.insert(
        "get".into(),
        http_task(&base, reqwest::Method::GET, "/", 200),
    );
    let p = phase("dead", Some(8), vec![TaskRef::Http("get".into())], 30.0);
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = LoadEngine::new(t, Progress::Quiet)
        .run_phase(&p, dir.path(), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "stopped early");
    assert_eq!(err.exit_code(), 3);
    let text = err.to_string();
    assert!(text.contains(&format!("at 127.0.0.1:{port}")), "{text}");
    // 8 users for ~6 s without back-off would be tens of thousands of attempts.
    let s: RunSummary =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert!(
        s.aggregated.count < 8 * 6 * 4,
        "{} attempts: users did not back off",
        s.aggregated.count
    );
}

/// An HTTPS deployment with its own CA (Veraison's docker deployment): trusted through
/// `tls.ca-file` (services and the token endpoint), and refused without it — certificate checks
/// are never off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_its_own_ca_is_trusted_through_ca_file_and_refused_without() {
    let s = standin("v0.0.2602", Faults::default(), true).await;
    let front = common::tls::TlsFront::start(s.addr).await;
    let dir = tempfile::tempdir().unwrap();
    front.write_ca(dir.path());
    let url = format!("https://localhost:{}", front.addr.port());
    let env = |ca: bool| {
        let tls = if ca { ", tls: { ca-file: ca.pem }" } else { "" };
        let token_ca = if ca { ", ca-file: ca.pem" } else { "" };
        format!(
            "name: https\nservices:\n  provisioning: {{ url: \"{url}\"{tls}, auth: {{ oauth2-password: {{ token-url: \"{url}{TOKEN_PATH}\", client-id: veraison-client, client-secret-env: TLS_TEST_SECRET, username: veraison-provisioner, password-env: TLS_TEST_PASSWORD{token_ca} }} }} }}\n  verification: {{ url: \"{url}\"{tls} }}\nveraison: {{ release: v0.0.2602 }}\n"
        )
    };
    common::write(dir.path(), "trusted.yaml", &env(true));
    common::write(dir.path(), "untrusted.yaml", &env(false));
    let trial = common::write(
        dir.path(),
        "t.yaml",
        "name: https\nruns: { users: 2, duration: 2s, mode: together, tasks: [well-known, provision, verify] }\n",
    );
    let d = Credentials::default();
    let run = |env: &str, out: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trialrunner"))
            .env("TLS_TEST_SECRET", &d.client_secret)
            .env("TLS_TEST_PASSWORD", &d.password)
            .arg("run")
            .arg(&trial)
            .arg("--env")
            .arg(dir.path().join(env))
            .arg("--out")
            .arg(dir.path().join(out))
            .output()
            .unwrap()
    };
    let ok = run("trusted.yaml", "ok");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let summary: RunSummary = serde_json::from_slice(
        &std::fs::read(dir.path().join("ok/runs/u002-all/summary.json")).unwrap(),
    )
    .unwrap();
    assert!(
        summary.aggregated.count > 10 && summary.aggregated.failures == 0,
        "{:?}",
        summary.failures
    );
    assert!(
        summary.endpoint(TOKEN_PATH).is_some(),
        "the token came from the HTTPS token endpoint"
    );
    let refused = run("untrusted.yaml", "refused");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&url) && err.to_lowercase().contains("certificate"),
        "{err}"
    );
}
