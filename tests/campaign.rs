//! Campaigns that survive: the local rehearsal of seed trials 1–4, of the database running
//! out and of a warm pool against none (moto as AWS, the deployment's twin on a real PostgreSQL of its own as Veraison,
//! CloudWatch from what the twin served), kill -9 then `--resume`, SIGINT mid-run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::watch::Watched;

use trialrunner::rehearsal::twin::Twin;
use trialrunner::standin::store::KvStore;

/// moto, the state dir and the stand-in's database are shared: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A secret the DB password variable holds: it must never surface anywhere.
const PLANTED: &str = "planted-db-secret-4c1f9e";

struct Rehearsal {
    dir: tempfile::TempDir,
    env: PathBuf,
    state: PathBuf,
    /// Serves while the rehearsal lives.
    _twin: Twin,
    db: String,
    /// The rehearsal's own PostgreSQL (`max_connections` [`MAX_CONNECTIONS`]); dropped last.
    pg: common::Postgres,
}

/// The rehearsal database's `max_connections`, as `scripts/rehearse` sets it.
const MAX_CONNECTIONS: u32 = trialrunner::rehearsal::campaign::POSTGRES_MAX_CONNECTIONS;

/// The rehearsal; `policies`: the twin acts out the groups' scaling policies every second (else
/// never, so a test of restores reads back exactly what was restored).
async fn rehearsal(policies: bool) -> Rehearsal {
    let moto = common::moto();
    moto.reset();
    let pg = common::Postgres::start(MAX_CONNECTIONS);
    let db = pg.database("rehearsal");
    let store = KvStore::postgres(&pg.conninfo(&db), 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (port, view_port) = (common::free_port(), common::free_port());
    let url = format!("http://127.0.0.1:{port}");
    // The campaign sees AWS through the twin's view of moto: instances Pending while they spin up.
    let view = format!("http://127.0.0.1:{view_port}");
    let env = common::write(
        dir.path(),
        "rehearsal.yaml",
        &format!(
            "name: rehearsal\naws: {{ region: eu-west-1, account: \"123456789012\", endpoint: \"{view}\" }}\ndeployment: veraison\nservices:\n  provisioning: {{ url: \"{url}\" }}\n  verification: {{ url: \"{url}\" }}\nveraison: {{ release: v0.0.2602 }}\nstores:\n  postgres: {{ host: 127.0.0.1, port: {}, database: {db}, user: postgres, password-env: REHEARSAL_DB_PASSWORD, tls: prefer }}\n  disposable: true\n",
            pg.port
        ),
    );
    // The deployment in moto, then its twin on the environment's service port: 100 requests/s
    // per instance, launched instances Pending 2 s then not ready 1 s, policies judged every
    // second when asked for, CloudWatch series put twice a second.
    // SAFETY: set before this process's SDK reads them; every test sets the same values.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let environment = trialrunner::trial::load_environment(&env).unwrap();
    let ctx = trialrunner::aws::AwsContext::load(
        environment.spec.aws.as_ref().unwrap(),
        Some(moto.url.as_str()),
        trialrunner::aws::AwsTimeouts::default(),
    )
    .await
    .unwrap();
    trialrunner::rehearsal::deploy_emulated(&ctx, "veraison")
        .await
        .unwrap();
    // The rehearsal's own twin (src/rehearsal/campaign.rs), its lifecycle shortened for these
    // tests of campaigns' mechanics.
    let mut config = trialrunner::rehearsal::campaign::twin_config();
    config.spin_up = std::time::Duration::from_secs(2);
    config.not_ready = std::time::Duration::from_secs(1);
    config.poll = std::time::Duration::from_millis(100);
    config.policy_window = std::time::Duration::from_secs(if policies { 1 } else { 86_400 });
    config.publish_every = Some(std::time::Duration::from_millis(500));
    config.resources = Some(
        trialrunner::aws::cloudwatch::resolve(&ctx, &environment)
            .await
            .unwrap(),
    );
    // Each instance pools real sessions on the rehearsal's database, as VTS does.
    config.postgres = Some(pg.conninfo(&db));
    config.aws_view = Some(format!("127.0.0.1:{view_port}").parse().unwrap());
    let twin = Twin::start(
        &ctx,
        format!("127.0.0.1:{port}").parse().unwrap(),
        config,
        store,
    )
    .await
    .unwrap();
    let state = dir.path().join("state");
    Rehearsal {
        env,
        state,
        _twin: twin,
        db,
        dir,
        pg,
    }
}

impl Rehearsal {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trialrunner"));
        c.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("REHEARSAL_DB_PASSWORD", PLANTED)
            .env("TRIALRUNNER_STATE_DIR", &self.state)
            .current_dir(common::root())
            .args(args);
        c
    }

    /// Rehearsal trial 1 with 20 s runs (time to interrupt one), beside the environment.
    fn long_trial(&self) -> PathBuf {
        self.slowed("tests/mechanics/pinned-3.yaml", "long.yaml", "20s")
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join("results").join(name)
    }

    fn run(&self, trial: &str, out: &Path) -> Output {
        self.cmd(&[
            "run",
            trial,
            "--env",
            self.env.to_str().unwrap(),
            "--yes",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap()
    }

    /// Capacity of both ASGs, through the emulator.
    fn capacities(&self) -> Vec<(i64, i64, i64)> {
        let out = self
            .cmd(&["infra", "status", "--env", self.env.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .filter(|l| l.starts_with("veraison-prov-asg") || l.starts_with("veraison-verif-asg"))
            .map(|l| {
                let f: Vec<i64> = l
                    .split_whitespace()
                    .skip(1)
                    .take(3)
                    .map(|x| x.parse().unwrap())
                    .collect();
                (f[0], f[1], f[2])
            })
            .collect()
    }
}

fn no_secret_in(dir: &Path) {
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(PLANTED),
            "the DB password leaked into {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The rehearsal of the 2025 campaign, exactly as `scripts/rehearse` runs it (`trialrunner
/// rehearse --campaign`, the one configuration of `src/rehearsal/campaign.rs`), against a moto
/// and a PostgreSQL of its own: every finding of the 2025 campaign shows, from the results
/// files and the reports, and every group is put back as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rehearsal_states_the_2025_findings() {
    use trialrunner::rehearsal::campaign::POSTGRES_MAX_CONNECTIONS;
    use trialrunner::report::stats::{compare_seconds, Options, Verdict};
    let _serial = SERIAL.lock().await;
    let moto = common::moto();
    moto.reset();
    let pg = common::Postgres::start(POSTGRES_MAX_CONNECTIONS);
    let db = pg.database("veraison");
    let dir = tempfile::tempdir().unwrap();
    // TRIALRUNNER_REHEARSAL_RESULTS=DIR keeps the results there, whether the test passes (the
    // README's screenshots) or fails (what it saw).
    let out = std::env::var_os("TRIALRUNNER_REHEARSAL_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("rehearsal-results"));
    let done = common::expect_exit(
        Command::new(env!("CARGO_BIN_EXE_trialrunner"))
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("REHEARSAL_DB_PASSWORD", PLANTED)
            .env("TRIALRUNNER_STATE_DIR", dir.path().join("state"))
            .args(["--aws-endpoint", &moto.url, "rehearse", "--campaign"])
            .arg(&out)
            .arg("--postgres")
            .arg(pg.conninfo(&db)),
        0,
    );
    assert!(!done.text().contains(PLANTED), "the password never prints");
    let trial = |name: &str| out.join(format!("rehearsal-{name}"));
    let (t1, t2, t3, t4, t5) = (
        trial("users-pinned-3"),
        trial("users-pinned-1"),
        trial("store-weight"),
        trial("autoscaling"),
        trial("db-connections"),
    );
    let summary = |t: &Path, run: &str| json(&t.join(format!("runs/{run}/summary.json")));
    let unit = |s: &serde_json::Value, name: &str| {
        s["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["method"] == "TASK" && e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {}", s["run_id"]))
    };
    let samples = |e: &serde_json::Value, what: &str| -> Vec<f64> {
        e["samples"][what]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let findings = |t: &Path| json(&t.join("findings.json"))["findings"].clone();
    let finding = |t: &Path, needle: &str| -> String {
        findings(t)
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f.as_str())
            .find(|f| f.contains(needle))
            .unwrap_or_else(|| panic!("no finding with {needle:?} in {}", findings(t)))
            .to_string()
    };

    // The twin's own record (rehearsal.json) of what this machine added to each request: past
    // a quarter of the modelled 80 ms (p95), the machine, not the twin, set that run's figures.
    // Such a run is not judged for the twin's finding (a busy machine must not fail the test);
    // the report must say so instead (the finding would not hold, and it warns).
    let machine_set = |t: &Path, run: &str| -> bool {
        let twin = json(&t.join(format!("runs/{run}/rehearsal.json")));
        let service = twin["model"]["service_ms"].as_f64().unwrap();
        let limited = twin["overhead_p95_ms"]
            .as_f64()
            .is_some_and(|o| o > 0.25 * service);
        if limited {
            let warnings = json(&t.join("findings.json"))["warnings"].clone();
            assert!(
                warnings.as_array().unwrap().iter().any(|w| {
                    let w = w.as_str().unwrap();
                    w.contains("this machine, not the twin") && w.contains(run)
                }),
                "{}: {run}'s figures were the machine's and the report says so: {warnings}",
                t.display()
            );
            eprintln!(
                "{}: {run} not judged: the machine set its figures",
                t.display()
            );
        }
        limited
    };

    // Throughput flattens, and three instances carry about three times one: pinned 3 at least
    // 1.7× pinned 1's verification sessions/s at the top steps, significant by the per-step
    // test `compare` uses.
    // A generator starved of its cores (its own verdict) cannot offer pinned 3 its load either:
    // such a run is not judged for the twin's finding; the report warns of it instead.
    let starved = |t: &Path, run: &str| -> bool {
        let saturated = summary(t, run)["generator"]["saturated"].as_bool() == Some(true);
        if saturated {
            eprintln!(
                "{}: {run} not judged: the generator was saturated",
                t.display()
            );
        }
        saturated
    };
    for run in ["u008-verify", "u016-verify"] {
        if machine_set(&t1, run) | machine_set(&t2, run) | starved(&t1, run) | starved(&t2, run) {
            continue;
        }
        let (three, one) = (
            unit(&summary(&t1, run), "verification session"),
            unit(&summary(&t2, run), "verification session"),
        );
        let (r3, r1) = (
            three["steady"]["rps"].as_f64().unwrap(),
            one["steady"]["rps"].as_f64().unwrap(),
        );
        assert!(
            r3 >= 1.7 * r1,
            "{run}: pinned 3 {r3:.1}/s, pinned 1 {r1:.1}/s"
        );
        let c = compare_seconds(
            &samples(&one, "rps"),
            &samples(&three, "rps"),
            Options::default(),
        );
        assert_eq!(c.verdict, Verdict::Significant, "{run}: {}", c.describe());
    }
    // The knees the steps reach past with room to spare: pinned 3's provisioning (6 workers,
    // saturated from 8 users) and pinned 1's verification (2 workers, from 2 users). Pinned 3's
    // verification reaches 16 users at about 95 % of its capacity, too close to its knee for
    // a test that must not fail by chance.
    for (trial, task) in [
        (&t1, "provision: provisioning"),
        (&t2, "verify: verification session"),
    ] {
        let knee = finding(trial, &format!("{task} throughput flattens at ~"));
        assert!(knee.contains(" users"), "the knee names its users: {knee}");
    }
    if !(machine_set(&t1, "u016-verify") | machine_set(&t2, "u016-verify")) {
        let per_step = finding(&t2, "verify against rehearsal-users-pinned-3");
        assert!(per_step.contains("16: throughput ×0."), "{per_step}");
    }

    // Store weight: verification slows markedly as the store grows, provisioning does not.
    // Client p50s of runs a minute apart: judged only when the machine set none of them.
    let store_runs = [
        "it1-u004-verify",
        "it4-u004-verify",
        "it1-u004-provision",
        "it4-u004-provision",
    ];
    let store_judged = store_runs
        .iter()
        .map(|run| machine_set(&t3, run) | starved(&t3, run))
        .fold(true, |judged, set| judged & !set);
    let p50 = |run: &str, name: &str| {
        unit(&summary(&t3, run), name)["steady"]["p50_ms"]
            .as_f64()
            .unwrap()
    };
    let (v1, v4) = (
        p50("it1-u004-verify", "verification session"),
        p50("it4-u004-verify", "verification session"),
    );
    let (p1, p4) = (
        p50("it1-u004-provision", "provisioning"),
        p50("it4-u004-provision", "provisioning"),
    );
    if store_judged {
        assert!(v4 >= 1.5 * v1, "verification p50 {v1:.1} → {v4:.1} ms");
        assert!(
            (p4 / p1 - 1.0).abs() <= 0.2,
            "provisioning p50 {p1:.1} → {p4:.1} ms"
        );
        assert!(finding(&t3, "store weight, verify").contains("p50 grows"));
        assert!(finding(&t3, "store weight, provision").contains("p50 flat"));
    }

    // Auto-scaling: an instance launches, spins up and joins during the run, and requests fail
    // while it joins; the report's section shows it on the client's time axis.
    let twin = json(&t4.join("runs/u012-verify/rehearsal.json"));
    let run = summary(&t4, "u012-verify");
    let (start, end) = (
        run["started_unix"].as_f64().unwrap(),
        run["started_unix"].as_f64().unwrap() + run["duration_s"].as_f64().unwrap(),
    );
    let joined: Vec<&serde_json::Value> = twin["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            let launched = i["launched"].as_f64().unwrap();
            let ready = i["ready"].as_f64().unwrap();
            launched > start && ready < end
        })
        .collect();
    assert!(
        !joined.is_empty(),
        "an instance joined during the run: {twin}"
    );
    let failed_while_joining = failed_while_routed_not_ready(&t4.join("runs/u012-verify"), &joined);
    assert!(
        failed_while_joining > 0.0,
        "failures while an instance joined"
    );
    let id = joined[0]["id"].as_str().unwrap();
    assert!(finding(&t4, id).contains("joined during u012-verify"));
    let t4_page = std::fs::read_to_string(t4.join("report.html")).unwrap();
    assert!(
        t4_page.contains(&format!("{id} serving")),
        "its bar in the section"
    );

    // The database runs out: "too many clients" at the top step, never at the bottom.
    let refused = |run: &str| -> u64 {
        summary(&t5, run)["failures"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["message"].as_str().unwrap().contains("too many clients"))
            .map(|f| f["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(refused("u004-verify"), 0);
    assert!(refused("u040-verify") > 0);
    assert!(finding(&t5, "\"too many clients\"").contains("u040-verify"));

    // The 2025 conclusion's answer: on trial 4's load, a warm pool brings the group to its
    // capacity sooner and its instances join without failures. Truth from the twin's own
    // record (when each instance was routed to and served) and the client's timeline; the
    // report's figures agree with it.
    let t6 = trial("warm-pool");
    let variants = json(&t6.join("variants.json"));
    let scaled = |name: &str| -> serde_json::Value {
        variants["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("variant {name} in {variants}"))["scaling"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == "verification")
            .cloned()
            .unwrap_or_else(|| panic!("verification's scaling in {variants}"))
    };
    // (seconds into the run until 3 verification instances served, failures while one was
    // routed to but not yet serving), from the twin and the timeline.
    let truth = |variant: &str| -> (f64, f64) {
        let run_dir = t6.join(variant).join("runs/u012-verify");
        let run = json(&run_dir.join("summary.json"));
        let start = run["started_unix"].as_f64().unwrap();
        let twin = json(&run_dir.join("rehearsal.json"));
        let verif: Vec<&serde_json::Value> = twin["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["service"] == "verification")
            .collect();
        let serving_at = |t: f64| {
            verif
                .iter()
                .filter(|i| {
                    i["ready"].as_f64().unwrap() <= t && i["gone"].as_f64().is_none_or(|g| t < g)
                })
                .count()
        };
        let reached = verif
            .iter()
            .map(|i| i["ready"].as_f64().unwrap())
            .filter(|t| *t >= start && serving_at(*t) >= 3)
            .reduce(f64::min)
            .unwrap_or_else(|| panic!("{variant}: 3 verification instances served: {twin}"));
        let joined: Vec<&serde_json::Value> = verif
            .iter()
            .copied()
            .filter(|i| i["routable"].as_f64().unwrap() > start)
            .collect();
        let failed = failed_while_routed_not_ready(&run_dir, &joined);
        (reached - start, failed)
    };
    let (cold, warm) = (truth("cold"), truth("warm"));
    assert!(
        warm.0 + 2.0 < cold.0,
        "warm reaches 3 instances sooner: {:.1} s vs cold {:.1} s",
        warm.0,
        cold.0
    );
    assert!(
        cold.1 > 0.0 && warm.1 < cold.1,
        "fewer failures at joins: warm {} vs cold {}",
        warm.1,
        cold.1
    );
    for (name, (reached, failed)) in [("cold", cold), ("warm", warm)] {
        let s = scaled(name);
        let said = s["reached"][1].as_f64().unwrap();
        assert_eq!(s["reached"][0], "u012-verify", "{name}: {s}");
        assert!(
            (said - reached).abs() < 0.05,
            "{name}: the report's time to capacity {said:.2} s is the twin's {reached:.2} s"
        );
        // The report sees a join from the group's sampled InService (up to a sample later
        // than the balancer routed to it): never more failures than the truth's window holds.
        let report_failed = s["failed_at_joins"].as_f64().unwrap();
        assert!(
            report_failed <= failed && (failed == 0.0) == (report_failed == 0.0),
            "{name}: the report's {report_failed} failures at joins against the truth's {failed}"
        );
        assert!(
            finding(&t6.join(name), "verification: 1 → 3 instances serving")
                .contains(&format!("reached {said:.1} s into u012-verify"))
        );
    }
    let page = std::fs::read_to_string(t6.join("compare-cold-warm.html")).unwrap();
    assert!(
        page.contains("time to capacity warm 3 instances"),
        "the comparison states each variant's time to capacity"
    );
    // The pool the warm variant made is gone, the group as it was.
    let environment =
        trialrunner::trial::load_environment(&out.join("inputs/rehearsal.yaml")).unwrap();
    common::deployment::set_test_credentials();
    let mut aws = environment.spec.aws.clone().unwrap();
    aws.endpoint = Some(moto.url.clone());
    let ctx = trialrunner::aws::AwsContext::load(&aws, None, Default::default())
        .await
        .unwrap();
    let pool = aws_sdk_autoscaling::Client::new(&ctx.config)
        .describe_warm_pool()
        .auto_scaling_group_name("veraison-verif-asg")
        .send()
        .await
        .unwrap();
    assert!(
        pool.warm_pool_configuration().is_none(),
        "the warm variant's pool is removed: {pool:?}"
    );

    // Every group as it was: the restore put back exactly the journal's originals, and the
    // journal says so.
    let (t6_cold, t6_warm) = (t6.join("cold"), t6.join("warm"));
    for t in [&t1, &t2, &t3, &t4, &t5, &t6_cold, &t6_warm] {
        let journal = json(&t.join("journal.json"));
        assert_eq!(journal["restored"], true, "{}", t.display());
        let manifest = json(&t.join("manifest.json"));
        for original in journal["original"].as_array().unwrap() {
            let after = manifest["infra_after"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["name"] == original["name"])
                .unwrap();
            for k in ["min", "max"] {
                assert_eq!(
                    after[k],
                    original[k],
                    "{}: {k} of {}",
                    t.display(),
                    original["name"]
                );
            }
            // The desired capacity as restored, unless the group's own scaling policy (the
            // twin acts it out every 2 s) has already acted on the load just run: only a group
            // with a policy may differ, and only within its restored bounds.
            if after["desired"] != original["desired"] {
                let policies = after["scaling_policies"].as_array().unwrap();
                let d = after["desired"].as_i64().unwrap();
                assert!(
                    !policies.is_empty()
                        && (original["min"].as_i64().unwrap()..=original["max"].as_i64().unwrap())
                            .contains(&d),
                    "{}: desired of {} is {d}, the original {}, and no policy moved it: {after}",
                    t.display(),
                    original["name"],
                    original["desired"]
                );
            }
        }
    }

    // In a real browser: the campaign timeline first, per-run charts on their run's own axis,
    // a distribution per endpoint, no finding that says nothing.
    for t in [&t1, &t2, &t3, &t4, &t5, &t6_cold, &t6_warm] {
        let page = t.join("report.html");
        let p = common::browser::probe(&page);
        p.assert_clean(&page, 4);
        assert!(
            p.overview_first()
                .iter()
                .any(|t| t.starts_with("campaign:")),
            "{}: the campaign timeline opens the page",
            page.display()
        );
        assert!(p.0["run_charts"].as_u64().unwrap_or(0) > 0);
        assert!(
            p.findings().iter().all(|f| !f.contains("n = 0")),
            "{:?}",
            p.findings()
        );
        assert!(p.has_chart("response-time distribution"));
    }
    let p1 = common::browser::probe(&t1.join("report.html"));
    for endpoint in [
        "verification session",
        "POST /challenge-response/v1/newSession",
        "provisioning (POST /endorsement-provisioning/v1/submit)",
    ] {
        assert!(
            p1.titles()
                .iter()
                .any(|t| t.starts_with(endpoint) && t.contains("response-time distribution")),
            "a distribution of {endpoint}: {:?}",
            p1.titles()
        );
    }
    no_secret_in(&out);
}

/// The client's failed requests (its `timeline.csv`) in the seconds when one of `instances`
/// (the twin's records) was routed to but not yet serving.
fn failed_while_routed_not_ready(run_dir: &Path, instances: &[&serde_json::Value]) -> f64 {
    let timeline = std::fs::read_to_string(run_dir.join("timeline.csv")).unwrap();
    timeline
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[6] == "request")
        .filter(|f| {
            let t: f64 = f[0].parse().unwrap();
            instances.iter().any(|i| {
                t + 1.0 > i["routable"].as_f64().unwrap() && t < i["ready"].as_f64().unwrap()
            })
        })
        .map(|f| f[9].parse::<f64>().unwrap())
        .sum()
}

fn runs_of(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("summary.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// How long a test waits for a campaign to reach a point (a load step measuring, a stop
/// acknowledged) or to end: a bound on a hang, not a pace.
const PATIENCE: Duration = Duration::from_secs(180);

/// True once a run in `out` is measuring: a run directory without its summary yet (in flight)
/// whose timeline holds a whole row.
fn a_run_is_measuring(out: &Path) -> bool {
    std::fs::read_dir(out.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|run| !run.join("summary.json").exists())
        .any(|run| {
            std::fs::read_to_string(run.join("timeline.csv"))
                .is_ok_and(|t| t.lines().count() >= 2 && t.ends_with('\n'))
        })
}

/// Waits (within [`PATIENCE`]) until a run in `out` is measuring.
fn wait_until_measuring(out: &Path) {
    common::wait_until("a run measuring", PATIENCE, || a_run_is_measuring(out));
}

/// Starts a run and returns it once its `n`-th load step has started and is measuring.
fn start_and_wait_for_load(r: &Rehearsal, trial: &str, out: &Path, n: usize) -> Watched {
    let run = Watched::spawn(r.cmd(&[
        "-v",
        "run",
        trial,
        "--env",
        r.env.to_str().unwrap(),
        "--yes",
        "--out",
        out.to_str().unwrap(),
    ]));
    run.wait_for_nth("step step=load", n, PATIENCE);
    wait_until_measuring(out);
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_resume_gives_the_same_runs_and_restores() {
    let _serial = SERIAL.lock().await;
    let r = rehearsal(false).await;
    let trial = "tests/mechanics/pinned-3.yaml";
    let out = r.out("killed");
    let run = start_and_wait_for_load(&r, trial, &out, 3);
    run.signal(libc::SIGKILL); // mid-run
    run.finish(Instant::now(), PATIENCE);
    let kept = runs_of(&out);
    assert_eq!(kept.len(), 2, "two runs were complete: {kept:?}");
    let first_summary =
        std::fs::read(out.join("runs").join(&kept[0]).join("summary.json")).unwrap();
    assert!(
        r.capacities().contains(&(3, 3, 3)),
        "still pinned after the crash"
    );
    // Resume: completed runs kept as they were, the one in flight redone, the rest run.
    let resumed = r
        .cmd(&[
            "run",
            trial,
            "--env",
            r.env.to_str().unwrap(),
            "--yes",
            "--resume",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("runs").join(&kept[0]).join("summary.json")).unwrap(),
        first_summary,
        "completed runs are kept"
    );
    // The same set of runs as an uninterrupted campaign.
    let full = r.out("full");
    assert_eq!(r.run(trial, &full).status.code(), Some(0));
    assert_eq!(runs_of(&out), runs_of(&full));
    assert_eq!(runs_of(&out).len(), 6);
    assert_eq!(
        r.capacities(),
        vec![(1, 3, 1), (1, 3, 1)],
        "the journal's originals were honoured"
    );
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("journal.json")).unwrap()).unwrap();
    assert_eq!(
        journal["original"][0]["desired"], 1,
        "originals from before the crash, not the pinned state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_run_exits_130_with_partial_results_and_restored_asgs() {
    let _serial = SERIAL.lock().await;
    let r = rehearsal(false).await;
    let trial = r.long_trial();
    let out = r.out("interrupted");
    let run = start_and_wait_for_load(&r, trial.to_str().unwrap(), &out, 2);
    run.signal(libc::SIGINT);
    let (status, output, _) = run.finish(Instant::now(), PATIENCE);
    assert_eq!(status.code(), Some(130), "{output}");
    let runs = runs_of(&out);
    assert_eq!(
        runs.len(),
        2,
        "the finished run and the interrupted one: {runs:?}"
    );
    let summaries: Vec<serde_json::Value> = runs
        .iter()
        .map(|id| {
            serde_json::from_slice(
                &std::fs::read(out.join("runs").join(id).join("summary.json")).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let interrupted: Vec<_> = summaries
        .iter()
        .filter(|s| s["interrupted"] == true)
        .collect();
    assert_eq!(
        interrupted.len(),
        1,
        "exactly the run in flight is marked interrupted"
    );
    let partial = interrupted[0];
    assert!(
        partial["duration_s"].as_f64().unwrap() < 20.0,
        "stopped before its 20 s: {partial}"
    );
    assert!(
        out.join("report.html").is_file(),
        "the report of the partial results"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "interrupted");
    assert_eq!(r.capacities(), vec![(1, 3, 1), (1, 3, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_exits_after_the_restore_attempt() {
    let _serial = SERIAL.lock().await;
    let r = rehearsal(false).await;
    let trial = r.long_trial();
    let out = r.out("twice");
    let mut run = start_and_wait_for_load(&r, trial.to_str().unwrap(), &out, 1);
    // The second once the first is heard: two signals sent at once may arrive as one.
    run.signal(libc::SIGINT);
    run.wait_for("stopping the load, restoring infrastructure", PATIENCE);
    // A quick restore may end the run before the second arrives: then there is no second to
    // hear, and the run must still have restored and exited 130.
    let running = run.child.try_wait().unwrap().is_none();
    run.signal(libc::SIGINT);
    let (status, output, _) = run.finish(Instant::now(), PATIENCE);
    assert_eq!(status.code(), Some(130), "{output}");
    assert!(
        !running || output.contains("again: exiting after the restore attempt"),
        "{output}"
    );
    assert_eq!(
        r.capacities(),
        vec![(1, 3, 1), (1, 3, 1)],
        "restored even after the second Ctrl-C"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "interrupted");
}

impl Rehearsal {
    /// A rehearsal trial with longer runs (time to interrupt one), beside the environment.
    fn slowed(&self, trial: &str, name: &str, duration: &str) -> PathBuf {
        let text = std::fs::read_to_string(common::root().join(trial)).unwrap();
        common::write(
            self.dir.path(),
            name,
            &text
                .lines()
                .map(|l| match l.split_once("duration: ") {
                    Some((indent, _)) if indent.trim().is_empty() => {
                        format!("{indent}duration: {duration}\n")
                    }
                    _ => format!("{l}\n"),
                })
                .collect::<String>()
                .replace("environment: rehearsal", "environment: rehearsal.yaml"),
        )
    }

    fn resume(&self, trial: &Path, dir: &Path) -> Output {
        self.cmd(&[
            "run",
            trial.to_str().unwrap(),
            "--env",
            self.env.to_str().unwrap(),
            "--yes",
            "--resume",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap()
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Labels of the store counts, in order (the counts before each run left out).
fn store_labels(dir: &Path) -> Vec<String> {
    json(&dir.join("stores.json"))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap().to_string())
        .filter(|l| !l.starts_with("before it"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_never_repeats_a_completed_clear_or_count_and_reruns_the_run_in_flight() {
    let _serial = SERIAL.lock().await;
    let r = rehearsal(false).await;
    let trial = r.slowed("tests/mechanics/store-weight.yaml", "weight.yaml", "4s");
    let out = r.out("weight");
    // Killed during iteration 2's verify run: iteration 1 counted, its rows in the store.
    let run = start_and_wait_for_load(&r, trial.to_str().unwrap(), &out, 4);
    run.signal(libc::SIGKILL);
    run.finish(Instant::now(), PATIENCE);
    assert_eq!(
        store_labels(&out),
        ["before clear", "after clear", "after iteration 1"]
    );
    let rows_after_1 = json(&out.join("stores.json"))
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == "after iteration 1")
        .and_then(|s| s["counts"]["endorsements"].as_u64())
        .unwrap();
    assert!(rows_after_1 > 0);
    let resumed = r.resume(&trial, &out);
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    // The store was cleared once, before the trial; every iteration counted once.
    assert_eq!(
        store_labels(&out),
        [
            "before clear",
            "after clear",
            "after iteration 1",
            "after iteration 2",
            "after iteration 3"
        ]
    );
    let counts: Vec<u64> = json(&out.join("stores.json"))
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["label"].as_str().unwrap().starts_with("after iteration"))
        .map(|s| s["counts"]["endorsements"].as_u64().unwrap())
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] < w[1]),
        "the rows accumulated across the crash: {counts:?}"
    );
    assert_eq!(
        r.pg.psql(&r.db, "SELECT count(*) FROM endorsements"),
        counts[2].to_string(),
        "the campaign ended on the full store, not an empty one"
    );
    // The run in flight ran again; its first attempt is kept aside, not lost.
    assert_eq!(runs_of(&out).len(), 6);
    let aside: Vec<String> = std::fs::read_dir(out.join("superseded"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(aside, ["it2-u004-verify.1"], "{aside:?}");
    let ledger = std::fs::read_to_string(out.join("ledger.jsonl")).unwrap();
    assert_eq!(ledger.matches("clear-stores").count(), 1, "{ledger}");
    assert_eq!(ledger.matches("count-stores").count(), 3, "{ledger}");
    assert_eq!(json(&out.join("manifest.json"))["status"], "complete");
    assert_eq!(r.capacities(), vec![(1, 3, 1), (1, 3, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_by_ctrl_c_runs_again_on_resume() {
    let _serial = SERIAL.lock().await;
    let r = rehearsal(false).await;
    let trial = r.slowed("tests/mechanics/pinned-3.yaml", "again.yaml", "6s");
    let out = r.out("again");
    let run = start_and_wait_for_load(&r, trial.to_str().unwrap(), &out, 2);
    run.signal(libc::SIGINT);
    let (status, output, _) = run.finish(Instant::now(), PATIENCE);
    assert_eq!(status.code(), Some(130), "{output}");
    let interrupted = "u002-provision";
    assert_eq!(
        json(&out.join("runs").join(interrupted).join("summary.json"))["interrupted"],
        true
    );
    let resumed = r.resume(&trial, &out);
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let again = json(&out.join("runs").join(interrupted).join("summary.json"));
    assert_eq!(again["interrupted"], false, "run again, not kept");
    assert!(again["duration_s"].as_f64().unwrap() >= 5.5);
    assert_eq!(
        json(&out.join("superseded/u002-provision.1/summary.json"))["interrupted"],
        true,
        "the partial attempt is kept aside"
    );
    assert_eq!(runs_of(&out).len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_results_dir_resumes_by_relative_path_and_out_never_merges() {
    let _serial = SERIAL.lock().await;
    let r = rehearsal(false).await;
    let trial = r.slowed("tests/mechanics/pinned-3.yaml", "default.yaml", "5s");
    // No --out: results/<trial>-<UTC time> under the working directory.
    let mut cmd = r.cmd(&[
        "-v",
        "run",
        trial.to_str().unwrap(),
        "--env",
        r.env.to_str().unwrap(),
        "--yes",
    ]);
    cmd.current_dir(r.dir.path());
    let run = Watched::spawn(cmd);
    run.wait_for("step step=load", PATIENCE);
    let results = r.dir.path().join("results");
    common::wait_until("the first run measuring", PATIENCE, || {
        std::fs::read_dir(&results)
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| a_run_is_measuring(&d.path()))
    });
    run.signal(libc::SIGKILL);
    run.finish(Instant::now(), PATIENCE);
    let made: Vec<String> = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    let relative = PathBuf::from("results").join(&made[0]);
    let resumed = r
        .cmd(&[
            "run",
            trial.to_str().unwrap(),
            "--env",
            r.env.to_str().unwrap(),
            "--yes",
            "--resume",
            relative.to_str().unwrap(),
        ])
        .current_dir(r.dir.path())
        .output()
        .unwrap();
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(r.capacities(), vec![(1, 3, 1), (1, 3, 1)]);
    // A new campaign into the same directory is refused (exit 2) and changes nothing.
    let before = std::fs::read(results.join(&made[0]).join("manifest.json")).unwrap();
    let again = r
        .cmd(&[
            "run",
            trial.to_str().unwrap(),
            "--env",
            r.env.to_str().unwrap(),
            "--yes",
            "--out",
            relative.to_str().unwrap(),
        ])
        .current_dir(r.dir.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    assert_eq!(
        std::fs::read(results.join(&made[0]).join("manifest.json")).unwrap(),
        before
    );
    assert_eq!(r.capacities(), vec![(1, 3, 1), (1, 3, 1)]);
}

/// The shell block under a README heading.
fn readme_block(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let after = readme
        .split_once(&format!("## {heading}\n"))
        .unwrap_or_else(|| panic!("README has no `## {heading}`"))
        .1;
    let block = after
        .split_once("```sh\n")
        .unwrap()
        .1
        .split_once("```")
        .unwrap()
        .0;
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The README's "Trying a trial locally", exactly as written (`cargo run --release --` is the
/// binary under test): the stand-in in the background, the trial, `kill %1`.
#[test]
fn the_readmes_local_example_runs_verbatim() {
    // Its load would share the two cores with the rehearsal's timed runs: one at a time.
    let _serial = SERIAL.blocking_lock();
    let lines = readme_block("Trying a trial locally");
    assert_eq!(lines.len(), 3, "{lines:?}");
    let bin = env!("CARGO_BIN_EXE_trialrunner");
    let mut background: Vec<std::process::Child> = Vec::new();
    let mut results = None;
    for line in &lines {
        if line == "kill %1" {
            let mut c = background.remove(0);
            c.kill().unwrap();
            c.wait().unwrap();
            continue;
        }
        let command = line.replace("cargo run --release --", bin);
        if let Some(bg) = command.strip_suffix('&') {
            let mut words = bg.split_whitespace();
            let child = Command::new(words.next().unwrap())
                .args(words)
                .current_dir(common::root())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            background.push(child);
            continue;
        }
        let mut words = command.split_whitespace();
        let out = Command::new(words.next().unwrap())
            .args(words)
            .current_dir(common::root())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if !out.status.success() {
            for mut c in background.drain(..) {
                let _ = c.kill();
            }
        }
        assert_eq!(out.status.code(), Some(0), "`{line}`:\n{err}");
        results = err
            .lines()
            .find_map(|l| l.strip_prefix("results: "))
            .map(PathBuf::from);
    }
    assert!(background.is_empty(), "the README stops what it starts");
    let dir = results.expect("the run says where its results are");
    let manifest = json(&dir.join("manifest.json"));
    assert_eq!(manifest["status"], "complete");
    assert_eq!(runs_of(&dir).len(), 6, "3 user steps × 2 tasks");
    std::fs::remove_dir_all(&dir).unwrap();
}
