//! Campaigns that survive: the local rehearsal of seed trials 1–4 and of the database running
//! out (moto as AWS, the deployment's twin on a real PostgreSQL of its own as Veraison,
//! CloudWatch from what the twin served), kill -9 then `--resume`, SIGINT mid-run.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use trialrunner::rehearsal::twin::{Twin, TwinConfig};
use trialrunner::standin::faults::InstanceCapacity;
use trialrunner::standin::store::KvStore;

/// moto, the state dir and the stand-in's database are shared: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A secret the DB password variable holds: it must never surface anywhere.
const PLANTED: &str = "planted-db-secret-4c1f9e";

struct Rehearsal {
    dir: tempfile::TempDir,
    env: PathBuf,
    state: PathBuf,
    twin: Twin,
    db: String,
    /// The rehearsal's own PostgreSQL (`max_connections` [`MAX_CONNECTIONS`]); dropped last.
    pg: common::Postgres,
}

/// The rehearsal database's `max_connections`, as `scripts/rehearse` sets it: the seed trials'
/// few users never reach it, the database trial's 28 and 40 do.
const MAX_CONNECTIONS: u32 = 30;

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
    let mut config = TwinConfig::new("veraison");
    config.capacity = Some(InstanceCapacity {
        workers: 2,
        service: std::time::Duration::from_millis(20),
    });
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
        twin,
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
        self.slowed(
            "trials/rehearsal/rehearsal-1-users-pinned-3.yaml",
            "long.yaml",
            "20s",
        )
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rehearsal_of_the_seed_trials_and_of_the_database_running_out() {
    let _serial = SERIAL.lock().await;
    let r = rehearsal(true).await;
    let trials = [
        ("trials/rehearsal/rehearsal-1-users-pinned-3.yaml", "t1"),
        ("trials/rehearsal/rehearsal-2-users-pinned-1.yaml", "t2"),
        ("trials/rehearsal/rehearsal-3-store-weight.yaml", "t3"),
        ("trials/rehearsal/rehearsal-4-autoscaling.yaml", "t4"),
        ("trials/rehearsal/rehearsal-5-db-connections.yaml", "t5"),
    ];
    let mut db_rows_after_t3 = String::new();
    let mut rows_read_in_t3 = std::collections::BTreeMap::new();
    for (trial, name) in trials {
        let out = r.run(trial, &r.out(name));
        if name == "t3" {
            db_rows_after_t3 = r.pg.psql(&r.db, "SELECT count(*) FROM endorsements");
            rows_read_in_t3 = r.twin.store().rows_read_by_second();
        }
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{trial}:\n{stderr}");
        if name == "t1" {
            // Pinned 1 → 3: the readiness gate waited out the new instances' spin-up (2 s), seen
            // as Pending through the twin's view of the emulator.
            let waited: Vec<u64> = format!("{stdout}{stderr}")
                .lines()
                .filter_map(|l| {
                    l.split_once(": ready after ")?
                        .1
                        .strip_suffix(" s")?
                        .parse()
                        .ok()
                })
                .collect();
            assert!(waited.iter().any(|s| *s >= 2), "{waited:?}\n{stderr}");
        }
        assert!(
            !stdout.contains(PLANTED) && !stderr.contains(PLANTED),
            "secret in the output of {trial}"
        );
        // Restored as found; the twin then acts out the groups' CPU policy on what the last
        // seconds of load left in its window, as AWS would, so desired may move since.
        let journal = json(&r.out(name).join("journal.json"));
        assert_eq!(
            journal["restored"], true,
            "{trial}: the journal was replayed"
        );
        for g in journal["original"].as_array().unwrap() {
            // (desired as the twin's policy left it after the previous trial's load)
            let d = g["desired"].as_i64().unwrap();
            assert!(
                g["min"] == 1 && g["max"] == 3 && (1..=3).contains(&d),
                "{trial}: {g}"
            );
        }
        for (min, max, desired) in r.capacities() {
            assert!(
                (min, max) == (1, 3) && (1..=3).contains(&desired),
                "{trial}: ASGs restored"
            );
        }
    }
    let html = |n: &str| std::fs::read_to_string(r.out(n).join("report.html")).unwrap();
    // Trial 1: per-endpoint summaries against users, timelines with infra, CloudWatch pulled.
    let t1 = html("t1");
    assert!(
        t1.contains("throughput vs virtual users")
            && t1.contains("Run u006-verify")
            && t1.contains("GroupInServiceInstances"),
        "per-task charts, per-run timelines with the groups' InService count"
    );
    let cw: serde_json::Value = serde_json::from_slice(
        &std::fs::read(r.out("t1").join("runs/u006-verify/cloudwatch.json")).unwrap(),
    )
    .unwrap();
    let db = cw["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metric"] == "DatabaseConnections")
        .expect("RDS connections pulled");
    assert!(
        !db["points"].as_array().unwrap().is_empty(),
        "the twin's series found for the run's window"
    );
    assert!(std::fs::read(r.out("t1").join("runs/u006-verify/correlation.json")).is_ok());
    // Stores cleared and counted through the PostgreSQL driver.
    let stores: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.out("t1").join("stores.json")).unwrap()).unwrap();
    assert!(stores
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["label"] == "after clear" && s["counts"]["endorsements"] == 0));
    // Trial 3: store weight against rows that grow each iteration; each run placed at the rows
    // it ran against (the verify run sees what the provision run just added).
    let snapshots = json(&r.out("t3").join("stores.json"));
    let before = |run: &str| {
        snapshots
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["label"] == format!("before {run}"))
            .unwrap()["counts"]["endorsements"]
            .as_u64()
            .unwrap()
    };
    assert!(before("it2-u004-verify") > before("it2-u004-provision"));
    // CloudWatch series from the emulator are marked as such.
    let cw = json(&r.out("t1").join("runs/u006-verify/cloudwatch.json"));
    assert_eq!(cw["synthetic"], true);
    let t3 = html("t3");
    assert!(t3.contains("store weight: latency vs stored rows"));
    let weights: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.out("t3").join("stores.json")).unwrap()).unwrap();
    let rows: Vec<u64> = weights
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["label"].as_str().unwrap().starts_with("after iteration"))
        .map(|s| s["counts"]["endorsements"].as_u64().unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.windows(2).all(|w| w[0] < w[1]),
        "the store grows: {rows:?}"
    );
    assert_eq!(
        db_rows_after_t3,
        rows[2].to_string(),
        "the driver counted what the database holds"
    );
    // ... and each verification read more of them, by the store's own count of the rows its
    // reads went through (every duplicate of the device's key), in each verify run's seconds.
    let per_verification: Vec<f64> = (1..=3)
        .map(|i| {
            let s = json(
                &r.out("t3")
                    .join(format!("runs/it{i}-u004-verify/summary.json")),
            );
            let from = s["started_unix"].as_f64().unwrap().floor() as i64;
            let to = (s["started_unix"].as_f64().unwrap() + s["duration_s"].as_f64().unwrap())
                .ceil() as i64
                + 1;
            let read: u64 = rows_read_in_t3.range(from..to).map(|(_, n)| n).sum();
            let evidence = s["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| {
                    e["method"] == "POST" && e["name"] == "/challenge-response/v1/[SESSION_ID]"
                })
                .unwrap();
            let n = evidence["total"]["count"].as_u64().unwrap()
                + evidence["drain"]["count"].as_u64().unwrap_or(0);
            assert_eq!(evidence["total"]["failures"], 0, "iteration {i}");
            read as f64 / n as f64
        })
        .collect();
    assert!(
        per_verification.windows(2).all(|w| w[1] > w[0])
            && per_verification[2] >= 2.0 * per_verification[0],
        "rows read per verification grow with the store: {per_verification:?}"
    );
    // Trial 2 (pinned 1) saturates lower than Trial 1 (pinned 3): one instance's 100/s.
    let rps = |n: &str, run: &str| {
        let s = json(&r.out(n).join(format!("runs/{run}/summary.json")));
        assert_eq!(
            s["aggregated"]["failures"], 0,
            "{n} {run}: {}",
            s["failures"]
        );
        s["aggregated"]["rps"].as_f64().unwrap()
    };
    let (t1_rps, t2_rps) = (rps("t1", "u006-provision"), rps("t2", "u006-provision"));
    assert!(
        t2_rps <= 110.0 && t1_rps > 1.8 * t2_rps,
        "pinned 3: {t1_rps:.0}/s, pinned 1: {t2_rps:.0}/s"
    );
    // ... and the difference is significant as `compare` judges it, per load step.
    let c = trialrunner::report::compare::compare(&r.out("t1"), &r.out("t2"), &[]).unwrap();
    let submit = c
        .steps
        .iter()
        .find(|d| d.run == "u006-provision" && d.endpoint.contains("submit"))
        .expect("the provisioning step compared");
    assert!(
        submit.changes[0].rps.verdict.is_significant(),
        "{}",
        submit.note
    );
    // Trial 4 (1..3): the twin acted out the group's CPU policy: the sampled desired capacity
    // rose during the run, then the group was restored.
    let desired: Vec<i64> =
        std::fs::read_to_string(r.out("t4").join("runs/u010-verify/infra.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .flat_map(|v| {
                v["groups"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|g| g["desired"].as_i64())
                    .collect::<Vec<_>>()
            })
            .collect();
    assert!(
        desired.iter().any(|d| *d > 1),
        "scaled out under load: {desired:?}"
    );
    // Trial 4: the auto-scaling chart when instances came or went; the InService count always.
    let t4 = html("t4");
    assert!(t4.contains("Auto-scaling") || t4.contains("GroupInServiceInstances"));
    // Trial 2 names Trial 1 with compare-with: its report is compared with Trial 1's results.
    assert!(html("t2").contains("compared with"));
    // Trial 2 against Trial 1, as its `compare-with` says.
    let out = r
        .cmd(&[
            "compare",
            r.out("t1").to_str().unwrap(),
            r.out("t2").to_str().unwrap(),
            "--html",
            r.out("compare.html").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(r.out("compare.html"))
        .unwrap()
        .contains("<svg"));
    // The database runs out (max_connections 30): at 4 and 16 users never; at 40 the sessions
    // that queued verifications hold exceed it, VTS logs "too many clients" (the client saw
    // those 500s), and the trial's findings tie the lines to the p95 rise.
    // (each run's own lines, from its correlation; the client's failures of the same cause)
    let lines = |run: &str| {
        json(&r.out("t5").join(format!("runs/{run}/correlation.json")))["error_lines"]
            ["too many clients"]
            .as_u64()
            .unwrap_or(0)
    };
    let refused = |run: &str| -> u64 {
        json(&r.out("t5").join(format!("runs/{run}/summary.json")))["failures"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["message"].as_str().unwrap().contains("too many clients"))
            .map(|f| f["count"].as_u64().unwrap())
            .sum()
    };
    for run in ["u004-verify", "u016-verify"] {
        assert_eq!((lines(run), refused(run)), (0, 0), "{run}");
    }
    // (a line the twin had not yet put when the run's metrics were pulled is not counted)
    let (l40, r40) = (lines("u040-verify"), refused("u040-verify"));
    assert!(l40 > 0 && l40 <= r40, "lines {l40}, refusals {r40}");
    let findings = json(&r.out("t5").join("correlation.json"));
    let tied = findings
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .find(|f| f.starts_with("\"too many clients\" in "))
        .expect("a finding on the pattern");
    assert!(tied.contains("p95 rose with it"), "{tied}");
    no_secret_in(&r.dir.path().join("results"));
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

/// Starts a run and returns it with its stderr lines, after `n` load steps have started.
fn start_and_wait_for_load(
    r: &Rehearsal,
    trial: &str,
    out: &Path,
    n: usize,
) -> std::process::Child {
    let mut child = r
        .cmd(&[
            "-v",
            "run",
            trial,
            "--env",
            r.env.to_str().unwrap(),
            "--yes",
            "--out",
            out.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = 0;
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("step step=load") {
            seen += 1;
            if seen == n {
                break;
            }
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_resume_gives_the_same_runs_and_restores() {
    let _serial = SERIAL.lock().await;
    let r = rehearsal(false).await;
    let trial = "trials/rehearsal/rehearsal-1-users-pinned-3.yaml";
    let out = r.out("killed");
    let mut child = start_and_wait_for_load(&r, trial, &out, 3);
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL mid-run
    child.wait().unwrap();
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
    let child = start_and_wait_for_load(&r, trial.to_str().unwrap(), &out, 2);
    std::thread::sleep(std::time::Duration::from_secs(2));
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(130));
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
    assert!(partial["duration_s"].as_f64().unwrap() < 15.0);
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
    let child = start_and_wait_for_load(&r, trial.to_str().unwrap(), &out, 1);
    for _ in 0..2 {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(130));
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
    let trial = r.slowed(
        "trials/rehearsal/rehearsal-3-store-weight.yaml",
        "weight.yaml",
        "4s",
    );
    let out = r.out("weight");
    // Killed during iteration 2's verify run: iteration 1 counted, its rows in the store.
    let mut child = start_and_wait_for_load(&r, trial.to_str().unwrap(), &out, 4);
    std::thread::sleep(std::time::Duration::from_secs(1));
    child.kill().unwrap();
    child.wait().unwrap();
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
    let trial = r.slowed(
        "trials/rehearsal/rehearsal-1-users-pinned-3.yaml",
        "again.yaml",
        "6s",
    );
    let out = r.out("again");
    let child = start_and_wait_for_load(&r, trial.to_str().unwrap(), &out, 2);
    std::thread::sleep(std::time::Duration::from_secs(2));
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(130));
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
    let trial = r.slowed(
        "trials/rehearsal/rehearsal-1-users-pinned-3.yaml",
        "default.yaml",
        "5s",
    );
    // No --out: results/<trial>-<UTC time> under the working directory.
    let mut child = r
        .cmd(&[
            "-v",
            "run",
            trial.to_str().unwrap(),
            "--env",
            r.env.to_str().unwrap(),
            "--yes",
        ])
        .current_dir(r.dir.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("step step=load") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let results = r.dir.path().join("results");
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
    assert_eq!(runs_of(&dir).len(), 9, "3 user steps × 3 tasks");
    std::fs::remove_dir_all(&dir).unwrap();
}
