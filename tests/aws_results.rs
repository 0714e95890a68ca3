//! Results and history on S3, against moto: a campaign with `--out s3://…` killed with SIGKILL
//! after a load run reached S3 and resumed from a second, empty working directory (another
//! machine's state) finishes like an uninterrupted one, keeping its campaign id and the runs it
//! had; the history is one object per campaign (two campaigns appending at once both land) and
//! the baseline it gives is the latest complete campaign of the named trial in the environment.

mod common;

use std::path::Path;
use std::time::Duration;

use common::deployment::*;
use common::watch::Watched;
use serde_json::{json, Value};

const BUCKET: &str = "trialrunner-results";

/// Three load runs, both groups pinned: the kill lands after the first is on S3.
const TRIAL: &str = "name: s3res\nenvironment: env.yaml\ninfra:\n  provisioning: { pin: 3 }\n  verification: { pin: 3 }\n  ready-timeout: 30s\n  sample-every: 1s\nruns: { users: [1, 2, 3], duration: 6s, tasks: [well-known] }\n";

fn s3(d: &Drill) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&d.ctx.config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn make_bucket(c: &aws_sdk_s3::Client) {
    c.create_bucket()
        .bucket(BUCKET)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn keys(c: &aws_sdk_s3::Client, prefix: &str) -> Vec<String> {
    let out = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(format!("{prefix}/"))
        .send()
        .await
        .unwrap();
    let mut k: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    k.sort();
    k
}

async fn get(c: &aws_sdk_s3::Client, key: &str) -> Option<Vec<u8>> {
    let out = c.get_object().bucket(BUCKET).key(key).send().await.ok()?;
    Some(out.body.collect().await.ok()?.into_bytes().to_vec())
}

async fn get_json(c: &aws_sdk_s3::Client, key: &str) -> Option<Value> {
    serde_json::from_slice(&get(c, key).await?).ok()
}

/// The keys of the completed steps in a ledger's text.
fn ledger_keys(text: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l["key"].as_str().map(str::to_string))
        .collect()
}

/// Requests of each completed run, by run id, as `summary.json` on S3 says.
async fn requests(c: &aws_sdk_s3::Client, prefix: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for k in keys(c, &format!("{prefix}/runs")).await {
        if let Some(run) = k.strip_suffix("/summary.json") {
            let s = get_json(c, &k).await.unwrap();
            let total = s["aggregated"]["count"].as_u64().unwrap();
            out.push((run.rsplit('/').next().unwrap().to_string(), total));
        }
    }
    out
}

fn run_in(d: &Drill, cwd: &Path, state: &Path, args: &[&str]) -> std::process::Command {
    let mut c = d.cmd_in(state);
    c.current_dir(cwd)
        .args(["-v", "run"])
        .arg(&d.trial)
        .arg("--env")
        .arg(&d.env)
        .args(args);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_killed_with_results_on_s3_resumes_from_an_empty_directory_elsewhere() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(TRIAL).await;
    let c = s3(&d);
    make_bucket(&c).await;

    // Uninterrupted, for the steps a whole campaign has.
    let whole_cwd = tempfile::tempdir().unwrap();
    let whole_state = tempfile::tempdir().unwrap();
    let out = "s3://trialrunner-results/nightly/whole";
    common::expect_exit(
        &mut run_in(
            &d,
            whole_cwd.path(),
            whole_state.path(),
            &["--out", out, "--yes"],
        ),
        0,
    );
    let whole_ledger = ledger_keys(&get(&c, "nightly/whole/ledger.jsonl").await.unwrap());
    let whole_runs: Vec<String> = requests(&c, "nightly/whole")
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(whole_runs.len(), 3, "{whole_runs:?}");
    assert!(
        whole_cwd
            .path()
            .join("results/s3/trialrunner-results/nightly/whole/report.html")
            .is_file(),
        "the local copy is where the terminal said"
    );
    assert!(
        get(&c, "nightly/whole/report.html").await.is_some(),
        "the report is on S3"
    );
    assert_original(&d.ctx).await;

    // Killed once a load run is complete on S3 (its summary there, the ledger naming it).
    let first_cwd = tempfile::tempdir().unwrap();
    let first_state = tempfile::tempdir().unwrap();
    let out = "s3://trialrunner-results/nightly/killed";
    let mut run = Watched::spawn(run_in(
        &d,
        first_cwd.path(),
        first_state.path(),
        &["--out", out, "--yes"],
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let before = loop {
        let ledger = get(&c, "nightly/killed/ledger.jsonl")
            .await
            .unwrap_or_default();
        let done = requests(&c, "nightly/killed").await;
        let loads = ledger_keys(&ledger)
            .iter()
            .filter(|k| k.ends_with("-load"))
            .count();
        if loads >= 1 && done.len() >= loads {
            break done;
        }
        assert!(
            run.child.try_wait().unwrap().is_none(),
            "the campaign ended before a run reached S3:\n{}",
            run.output()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no run on S3:\n{}",
            run.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "still running when killed"
    );
    run.child.kill().unwrap(); // SIGKILL: nothing gets to restore or copy
    run.child.wait().unwrap();
    let manifest = get_json(&c, "nightly/killed/manifest.json").await.unwrap();
    assert_eq!(manifest["status"], "running", "{manifest}");
    let campaign = manifest["campaign"].as_str().unwrap().to_string();
    assert_eq!(
        d.capacities().await,
        PINNED,
        "killed with the groups pinned"
    );

    // Resumed from another, empty working directory with its own journal state.
    let second_cwd = tempfile::tempdir().unwrap();
    let second_state = tempfile::tempdir().unwrap();
    let resumed = common::expect_exit(
        &mut run_in(
            &d,
            second_cwd.path(),
            second_state.path(),
            &["--resume", out, "--yes"],
        ),
        0,
    );
    assert!(
        resumed
            .text()
            .contains("resuming s3://trialrunner-results/nightly/killed"),
        "{}",
        resumed.text()
    );
    let manifest = get_json(&c, "nightly/killed/manifest.json").await.unwrap();
    assert_eq!(manifest["status"], "complete", "{manifest}");
    assert_eq!(
        manifest["campaign"],
        json!(campaign),
        "the campaign keeps its id"
    );
    let ledger = ledger_keys(&get(&c, "nightly/killed/ledger.jsonl").await.unwrap());
    let mut unique = ledger.clone();
    unique.sort();
    unique.dedup();
    let mut whole = whole_ledger.clone();
    whole.sort();
    whole.dedup();
    assert_eq!(unique, whole, "the same steps as an uninterrupted campaign");
    let after = requests(&c, "nightly/killed").await;
    assert_eq!(
        after.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
        whole_runs,
        "the same runs"
    );
    for (run_id, n) in &before {
        assert!(
            after.contains(&(run_id.clone(), *n)),
            "{run_id}: the {n} requests recorded before the kill are kept, not run again: {after:?}"
        );
    }
    assert_original(&d.ctx).await;
}

/// Two load-only campaigns (no groups: they may run at once).
const BASE: &str =
    "name: base\nenvironment: env.yaml\nruns: { users: 1, duration: 1s, tasks: [well-known] }\n";
const CONTENDER: &str = "name: contender\nenvironment: env.yaml\ncompare-with: base\nthresholds: [\"* p95 +100000%\"]\nruns: { users: 1, duration: 1s, tasks: [well-known] }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_s3_takes_concurrent_appends_and_gives_the_latest_complete_baseline() {
    let _serial = SERIAL.lock().await;
    let d = Drill::new(BASE).await;
    let c = s3(&d);
    make_bucket(&c).await;
    let cwd = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let contender = common::write(d.dir.path(), "contender.yaml", CONTENDER);
    let env_name = format!("moto-{ACCOUNT}");

    // A results root on S3 in the environment must be one.
    let bad = common::write(
        d.dir.path(),
        "bad.yaml",
        &format!(
            "{}results: s3://Not_A_Bucket/x\n",
            std::fs::read_to_string(&d.env).unwrap()
        ),
    );
    let refused = common::expect_exit(
        d.cmd().arg("validate").arg(&d.trial).arg("--env").arg(&bad),
        2,
    );
    assert!(refused.text().contains("results"), "{}", refused.text());

    // The base trial, complete, into the environment's results root (no --out): its history
    // object lands beside the results.
    let rooted = common::write(
        d.dir.path(),
        "rooted.yaml",
        &format!(
            "{}results: s3://{BUCKET}/nightly\n",
            std::fs::read_to_string(&d.env).unwrap()
        ),
    );
    let mut base = d.cmd_in(state.path());
    base.current_dir(cwd.path())
        .args(["-v", "run"])
        .arg(&d.trial)
        .arg("--env")
        .arg(&rooted);
    common::expect_exit(&mut base, 0);
    let base_history = keys(&c, &format!("nightly/history/base/{env_name}")).await;
    assert_eq!(base_history.len(), 1, "{base_history:?}");
    let line = get_json(&c, &base_history[0]).await.unwrap();
    assert_eq!(line["status"], "complete");
    let b1 = line["results"].as_str().unwrap().to_string();
    assert!(
        b1.starts_with("s3://trialrunner-results/nightly/base-"),
        "{b1}"
    );
    let b1_name = b1.rsplit('/').next().unwrap().to_string();

    // Later campaigns that are not baselines: a partial one of the base trial, one of another
    // trial, one of the base trial in another environment.
    let later = "2099-01-01T00:00:00Z";
    for (trial, env, status, campaign) in [
        ("base", env_name.as_str(), "partial", "p"),
        ("base", "staging", "complete", "s"),
        ("other", env_name.as_str(), "complete", "o"),
    ] {
        let l = json!({"date": later, "trial": trial, "environment": env, "status": status, "campaign": campaign, "results": format!("s3://{BUCKET}/nightly/{campaign}")});
        c.put_object()
            .bucket(BUCKET)
            .key(format!(
                "nightly/history/{trial}/{env}/{later}-{campaign}.json"
            ))
            .body(l.to_string().into_bytes().into())
            .send()
            .await
            .unwrap();
    }

    // Two contenders at once, from two working directories: both history objects land, and
    // each gates against b1 (brought down from S3), never the partial one.
    let starts: Vec<(tempfile::TempDir, Watched)> = ["c1", "c2"]
        .iter()
        .map(|name| {
            let dir = tempfile::tempdir().unwrap();
            let mut cmd = d.cmd_in(state.path());
            cmd.current_dir(dir.path())
                .args(["-v", "run"])
                .arg(&contender)
                .arg("--env")
                .arg(&d.env)
                .args(["--out", &format!("s3://{BUCKET}/nightly/{name}")]);
            (dir, Watched::spawn(cmd))
        })
        .collect();
    for (i, (dir, w)) in starts.into_iter().enumerate() {
        let (status, text, _) = w.finish(std::time::Instant::now(), Duration::from_secs(120));
        assert_eq!(status.code(), Some(0), "c{}:\n{text}", i + 1);
        let checks: Value = serde_json::from_slice(
            &get(&c, &format!("nightly/c{}/checks.json", i + 1))
                .await
                .unwrap(),
        )
        .unwrap();
        let baseline = checks["baseline"].as_str().unwrap_or_default().to_string();
        assert_eq!(
            Path::new(&baseline),
            dir.path()
                .join("results/s3/trialrunner-results/nightly")
                .join(&b1_name),
            "c{}: the latest complete base campaign in this environment:\n{text}",
            i + 1
        );
    }
    let contenders = keys(&c, &format!("nightly/history/contender/{env_name}")).await;
    assert_eq!(contenders.len(), 2, "both appends landed: {contenders:?}");

    // A third, from a fresh working directory: its trend chart reads the history from S3 (the
    // two before it and itself), brought down beside its local copy.
    let fresh = tempfile::tempdir().unwrap();
    let mut third = d.cmd_in(state.path());
    third
        .current_dir(fresh.path())
        .args(["-v", "run"])
        .arg(&contender)
        .arg("--env")
        .arg(&d.env)
        .args(["--out", &format!("s3://{BUCKET}/nightly/c3")]);
    common::expect_exit(&mut third, 0);
    let local = fresh.path().join("results/s3/trialrunner-results/nightly");
    let lines = std::fs::read_dir(local.join(format!("history/contender/{env_name}")))
        .unwrap()
        .count();
    assert_eq!(lines, 3, "the history as S3 holds it");
    let html = std::fs::read_to_string(local.join("c3/report.html")).unwrap();
    assert!(html.contains("trend: p95 per endpoint"), "the trend chart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_fails_is_said_and_sent_at_the_next_sync_the_ledger_last() {
    use trialrunner::provider::ResultsMirror;
    let _serial = SERIAL.lock().await;
    let ctx = ctx().await;
    common::moto().reset();
    let location =
        trialrunner::trial::s3::S3Location::parse(&format!("s3://{BUCKET}/n/c")).unwrap();
    let bucket = trialrunner::aws::bucket::Bucket::new(&ctx, &ctx.config, location, true);
    let mirror = trialrunner::aws::results::S3Results::new(bucket);
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("manifest.json", "{}"),
        ("journal.json", "{}"),
        ("runs/u001/summary.json", "{}"),
        ("ledger.jsonl", "{\"key\":\"001-load\"}\n"),
        ("campaign.lock", ""),
    ] {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    // No bucket yet: every upload fails, and the error names what is not there.
    let err = mirror.sync(dir.path()).await.unwrap_err().to_string();
    assert!(err.contains("4 file(s) not copied yet"), "{err}");
    assert!(
        err.contains("ledger.jsonl") && err.contains("runs/u001/summary.json"),
        "{err}"
    );
    // The bucket appears: the next sync sends everything that was missing, the lock stays local.
    let c = {
        let config = aws_sdk_s3::config::Builder::from(&ctx.config)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    };
    make_bucket(&c).await;
    mirror.sync(dir.path()).await.unwrap();
    assert_eq!(
        keys(&c, "n/c").await,
        [
            "n/c/journal.json",
            "n/c/ledger.jsonl",
            "n/c/manifest.json",
            "n/c/runs/u001/summary.json"
        ]
    );
    // Only what changed goes again.
    std::fs::write(
        dir.path().join("ledger.jsonl"),
        "{\"key\":\"001-load\"}\n{\"key\":\"002-count\"}\n",
    )
    .unwrap();
    mirror.sync(dir.path()).await.unwrap();
    assert_eq!(
        ledger_keys(&get(&c, "n/c/ledger.jsonl").await.unwrap()),
        ["001-load", "002-count"]
    );
}
