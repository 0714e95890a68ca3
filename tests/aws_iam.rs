//! IAM enforced, in moto started with `INITIAL_NO_AUTH_ACTION_COUNT`: after its first requests
//! (which make an administrator), every request must be signed by an IAM user's keys and is
//! checked against that user's policies. A user holding just the policy `iam-policy` prints
//! runs the campaign to the end (pin, restore, metrics and error logs, results and history on
//! S3); the same policy less any one action fails at that call with a message naming the missing
//! permission.
//!
//! moto checks the actions, not the resources or conditions of a policy (its access control's
//! own "TODO add support for the Resource and Condition parts"), and names CloudWatch's actions
//! by the service's signing name (`monitoring:`), and S3's by the API operation
//! (`s3:ListObjectsV2` for the IAM action `s3:ListBucket`): moto gets the printed policy with
//! resources `*`, conditions dropped, `cloudwatch:` spelt `monitoring:` and `s3:ListBucket`
//! spelt `s3:ListObjectsV2`. The resources and conditions
//! themselves are checked by the unit tests of `src/iam.rs`.

mod common;

use std::path::Path;
use std::process::Command;

use common::deployment::*;
use common::Moto;
use trialrunner::aws::{AwsContext, AwsTimeouts};
use trialrunner::trial::model::AwsSpec;

/// moto checks a signature over the form it parsed, encoded again as botocore encodes a form
/// (a space as `+`); the Rust SDK encodes a space as `%20` (as valid), so every call with a
/// space in a value (the deployment lock's tags) failed with SignatureDoesNotMatch. This
/// tries the encoding the SDK uses when the first one does not match. Nothing else changes.
const SIGNATURE_PATCH: &str = r#"
import moto.iam.access_control as ac
from urllib.parse import urlencode, quote
_check = ac.IAMRequestBase.check_signature
def _check_signature(self):
    try:
        return _check(self)
    except Exception:
        if self._body or not isinstance(self._data, dict):
            raise
        self._body = urlencode(self._data, doseq=True, quote_via=lambda s, *a: quote(s, safe="-_.~")).encode()
        return _check(self)
ac.IAMRequestBase.check_signature = _check_signature
"#;

/// Requests moto answers without credentials: the administrator's user, policy and keys.
const BOOTSTRAP_REQUESTS: &str = "3";

/// Calls the code makes only in situations this deployment never creates (the policy holds them
/// for when it does); nothing can fail without them here.
const NOT_CALLED_HERE: &[(&str, &str)] = &[
    (
        "elasticache:ListTagsForResource",
        "read only when the deployment has an ElastiCache cluster; the emulated one has none",
    ),
    (
        "autoscaling:SuspendProcesses",
        "a restore suspends only processes someone resumed during the campaign",
    ),
    (
        "autoscaling:ResumeProcesses",
        "a restore resumes only processes someone suspended during the campaign",
    ),
];

/// Calls whose refusal the campaign outlives, saying so, and its exit code then.
const OUTLIVED: &[(&str, i32)] = &[
    // The lock is left to expire, with a warning naming the permission.
    ("autoscaling:DeleteTags", 0),
    // The metrics' pulls fail: partial results, the reason in cloudwatch.json.
    ("monitoring:GetMetricData", 4),
    ("logs:FilterLogEvents", 4),
    // The results cannot all reach S3, or the history cannot be read back: the local copy
    // stands, said loudly, partial.
    ("s3:PutObject", 4),
    ("s3:GetObject", 4),
];

/// Where the campaigns' results and history go.
const RESULTS: &str = "s3://trialrunner-iam/nightly";

/// Pins both groups, pulls series and error logs, restores.
const TRIAL: &str = "name: iam\nenvironment: env.yaml\ninfra:\n  provisioning: { pin: 3 }\n  verification: { pin: 3 }\n  ready-timeout: 30s\n  sample-every: 1s\nmetrics: [asg-instances, rds-connections, error-logs]\nmetrics-settle: 0s\nruns: { users: 1, duration: 2s, tasks: [well-known] }\n";

/// An access key pair.
#[derive(Clone)]
struct Keys {
    id: String,
    secret: String,
}

/// The real AWS CLI against moto, signed with `keys`; its JSON answer.
fn aws(moto: &Moto, keys: &Keys, args: &[&str]) -> serde_json::Value {
    let out = Command::new(common::ssmagent::aws_cli())
        .args(["--endpoint-url", &moto.url, "--output", "json"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &keys.id)
        .env("AWS_SECRET_ACCESS_KEY", &keys.secret)
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("the AWS CLI runs");
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// A user holding `policy` (inline), and its keys.
fn user(moto: &Moto, admin: &Keys, name: &str, policy: &serde_json::Value) -> Keys {
    aws(moto, admin, &["iam", "create-user", "--user-name", name]);
    let doc = policy.to_string();
    aws(
        moto,
        admin,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            name,
            "--policy-name",
            "campaign",
            "--policy-document",
            &doc,
        ],
    );
    let key = aws(
        moto,
        admin,
        &["iam", "create-access-key", "--user-name", name],
    );
    Keys {
        id: key["AccessKey"]["AccessKeyId"]
            .as_str()
            .unwrap()
            .to_string(),
        secret: key["AccessKey"]["SecretAccessKey"]
            .as_str()
            .unwrap()
            .to_string(),
    }
}

/// The printed policy as moto can check it (see the module's comment).
fn for_moto(policy: &serde_json::Value) -> serde_json::Value {
    let mut p = policy.clone();
    for s in p["Statement"].as_array_mut().unwrap() {
        s["Resource"] = serde_json::json!("*");
        s.as_object_mut().unwrap().remove("Condition");
        for a in s["Action"].as_array_mut().unwrap() {
            *a = serde_json::json!(a
                .as_str()
                .unwrap()
                .replace("cloudwatch:", "monitoring:")
                .replace("s3:ListBucket", "s3:ListObjectsV2"));
        }
    }
    p
}

/// The policy less `action`.
fn without(policy: &serde_json::Value, action: &str) -> serde_json::Value {
    let mut p = policy.clone();
    for s in p["Statement"].as_array_mut().unwrap() {
        s["Action"]
            .as_array_mut()
            .unwrap()
            .retain(|a| a.as_str() != Some(action));
    }
    p["Statement"]
        .as_array_mut()
        .unwrap()
        .retain(|s| !s["Action"].as_array().unwrap().is_empty());
    p
}

fn campaign(keys: &Keys, state: &Path, trial: &Path, env: &Path, out: &Path) -> Command {
    // `out` is `<dir>/<name>`: the results go to RESULTS/<name>, the local copy in <dir>.
    let cwd = out.parent().unwrap();
    let name = out.file_name().unwrap().to_str().unwrap();
    let s3 = format!("{RESULTS}/{name}");
    let mut c = run_trial(state, trial, env, Path::new(&s3));
    c.current_dir(cwd);
    c.env("AWS_ACCESS_KEY_ID", &keys.id)
        .env("AWS_SECRET_ACCESS_KEY", &keys.secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("TRIALRUNNER_RESTORE_BUDGET", "8s");
    c
}

/// The local copy of the results `campaign` sent to S3 for `out`.
fn local_copy(out: &Path) -> std::path::PathBuf {
    out.parent()
        .unwrap()
        .join("results/s3/trialrunner-iam/nightly")
        .join(out.file_name().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_policy_runs_the_campaign_and_each_action_less_fails_naming_it() {
    let moto = common::start_moto(
        &[("INITIAL_NO_AUTH_ACTION_COUNT", BOOTSTRAP_REQUESTS)],
        Some(SIGNATURE_PATCH),
    );
    let anyone = Keys {
        id: "test".into(),
        secret: "test".into(),
    };
    // The administrator, in the requests moto answers unsigned.
    let all = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let admin = user(&moto, &anyone, "admin", &all);
    // SAFETY: set before any client reads them; this binary's only test.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", &admin.id);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", &admin.secret);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let spec = AwsSpec {
        region: "eu-west-1".into(),
        profile: None,
        account: ACCOUNT.into(),
        endpoint: Some(moto.url.clone()),
    };
    let ctx = AwsContext::load(&spec, None, AwsTimeouts::default())
        .await
        .unwrap();
    trialrunner::rehearsal::deploy_emulated(&ctx, D)
        .await
        .unwrap();
    // Unsigned requests are refused now.
    let refused = Command::new(common::ssmagent::aws_cli())
        .args([
            "--endpoint-url",
            &moto.url,
            "autoscaling",
            "describe-auto-scaling-groups",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .output()
        .unwrap();
    assert!(!refused.status.success(), "moto enforces IAM");

    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let env = common::write(
        dir.path(),
        "env.yaml",
        &env_yaml(&s.url(), ACCOUNT, &moto.url),
    );
    let trial = common::write(dir.path(), "trial.yaml", TRIAL);
    let printed = common::expect_exit(
        trialrunner(dir.path().join("no-state"))
            .arg("iam-policy")
            .arg(&trial)
            .arg("--env")
            .arg(&env)
            .args(["--results", RESULTS]),
        0,
    );
    let policy: serde_json::Value = serde_json::from_str(&printed.stdout).unwrap();
    aws(
        &moto,
        &admin,
        &[
            "s3api",
            "create-bucket",
            "--bucket",
            "trialrunner-iam",
            "--create-bucket-configuration",
            "LocationConstraint=eu-west-1",
        ],
    );
    let policy = for_moto(&policy);

    // The campaign less one action, run as that user; what it exited with, and what it said
    // (on the terminal and in the CloudWatch files of partial results). Whatever the run could
    // not put back, the administrator does, as an operator would.
    let mut users = 0;
    let mut less = |action: &str| {
        users += 1;
        let keys = user(
            &moto,
            &admin,
            &format!("less-{users}"),
            &without(&policy, action),
        );
        let state = tempfile::tempdir().unwrap();
        let out = dir.path().join(format!("r{users}"));
        let ran = campaign(&keys, state.path(), &trial, &env, &out)
            .output()
            .unwrap();
        let mut text = format!(
            "{}{}",
            String::from_utf8_lossy(&ran.stdout),
            String::from_utf8_lossy(&ran.stderr)
        );
        for run in std::fs::read_dir(local_copy(&out).join("runs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            text +=
                &std::fs::read_to_string(run.path().join("cloudwatch.json")).unwrap_or_default();
        }
        assert!(
            !text.contains("dispatch failure") && !text.contains("unhandled error"),
            "never a raw SDK error:\n{text}"
        );
        common::expect_exit(
            trialrunner(state.path())
                .env("AWS_ACCESS_KEY_ID", &admin.id)
                .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
                .args(["infra", "restore", "--env"])
                .arg(&env),
            0,
        );
        (ran.status.code(), text)
    };
    let expect = |action: &str, (code, text): (Option<i32>, String), wanted: i32| {
        let named = action
            .replace("monitoring:", "cloudwatch:")
            .replace("s3:ListObjectsV2", "s3:ListBucket");
        assert_eq!(code, Some(wanted), "less {named}:\n{text}");
        assert!(
            text.contains(&format!("lack the IAM permission `{named}`")),
            "less {named}: the missing permission is named:\n{text}"
        );
    };

    // Group metrics are off in the new deployment, so the first campaign turns them on (and its
    // restore tries to turn them off, which moto does not implement: they stay on after it).
    expect(
        "autoscaling:EnableMetricsCollection",
        less("autoscaling:EnableMetricsCollection"),
        3,
    );
    assert_original(&ctx).await;
    // A restore that cannot turn them off warns, and the campaign stands.
    expect(
        "autoscaling:DisableMetricsCollection",
        less("autoscaling:DisableMetricsCollection"),
        0,
    );
    assert_original(&ctx).await;

    // Just the printed policy: the campaign runs to the end and puts the groups back.
    let keys = user(&moto, &admin, "campaign", &policy);
    let state = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    common::expect_exit(&mut campaign(&keys, state.path(), &trial, &env, &out), 0);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(local_copy(&out).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["status"], "complete", "{manifest}");
    // Its results and its history object are on S3.
    let listed = aws(
        &moto,
        &admin,
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            "trialrunner-iam",
            "--prefix",
            "nightly/",
        ],
    );
    let keys: Vec<&str> = listed["Contents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["Key"].as_str())
        .collect();
    for key in [
        "nightly/r/manifest.json",
        "nightly/r/ledger.jsonl",
        "nightly/r/report.html",
    ] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    assert!(
        keys.iter().any(|k| k.starts_with("nightly/history/iam/")),
        "{keys:?}"
    );
    assert_original(&ctx).await;

    // Less any other action: the campaign fails at that call (exit 3), naming the permission by
    // its IAM name (`cloudwatch:`, not moto's `monitoring:`); a metrics pull that fails makes the
    // results partial (exit 4) with the reason in them; a lock it cannot remove is a warning.
    for (action, wanted) in policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_string())
        .filter(|a| !a.contains("MetricsCollection"))
        .filter_map(|a| match NOT_CALLED_HERE.iter().find(|(n, _)| *n == a) {
            Some(_) => None,
            None => {
                let code = OUTLIVED
                    .iter()
                    .find(|(n, _)| *n == a)
                    .map_or(3, |(_, c)| *c);
                Some((a, code))
            }
        })
        .collect::<Vec<_>>()
    {
        let outcome = less(&action);
        expect(&action, outcome, wanted);
        assert_original(&ctx).await;
    }
    for (action, why) in NOT_CALLED_HERE {
        assert!(
            policy.to_string().contains(action),
            "{action} is in the policy ({why})"
        );
    }
}
