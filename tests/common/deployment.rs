//! A Veraison-shaped deployment in moto and the helpers every AWS test binary shares: the test
//! credentials, the deployment, its groups' settings read back, the binary with its own journal
//! state, and the [`Drill`] (moto behind the fault layer, a stand-in, a trial's files).

use std::path::{Path, PathBuf};
use std::process::Command;

use trialrunner::aws::{AwsContext, AwsTimeouts};
use trialrunner::standin::store::KvStore;
use trialrunner::standin::{Standin, StandinConfig};
use trialrunner::trial::model::AwsSpec;

use super::awsfault::FaultProxy;
use super::watch::Watched;
use super::{expect_exit, Finished};

/// moto is shared by every test of this binary and `reset` wipes it: one test at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const ACCOUNT: &str = "123456789012";
pub const D: &str = "veraison";

pub fn set_test_credentials() {
    // SAFETY: set before any thread reads them, and every test sets the same values.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
}

pub async fn ctx() -> AwsContext {
    set_test_credentials();
    let spec = AwsSpec {
        region: "eu-west-1".into(),
        profile: None,
        account: ACCOUNT.into(),
        endpoint: Some(super::moto().url.clone()),
    };
    AwsContext::load(&spec, None, AwsTimeouts::default())
        .await
        .unwrap()
}

/// A deployment shaped like Veraison's in moto (the rehearsal's, so both stay one shape):
/// launch templates, `veraison-prov-asg` and `veraison-verif-asg` at 1..3 behind target groups,
/// tagged instances, and an RDS instance `veraison-support-rdsinstance-rehearsal`.
pub async fn deploy(ctx: &AwsContext) {
    super::moto().reset();
    trialrunner::rehearsal::deploy_emulated(ctx, D)
        .await
        .unwrap();
}

pub async fn settings(ctx: &AwsContext, name: &str) -> (i32, i32, i32, usize, usize) {
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
pub async fn assert_original(ctx: &AwsContext) {
    for name in [format!("{D}-prov-asg"), format!("{D}-verif-asg")] {
        let (min, max, desired, _, _) = settings(ctx, &name).await;
        assert_eq!(
            (min, max, desired),
            (1, 3, 1),
            "{name} is back to 1..3, desired 1"
        );
    }
}

pub async fn standin() -> Standin {
    Standin::start(
        "127.0.0.1:0".parse().unwrap(),
        StandinConfig::default(),
        KvStore::memory(),
    )
    .await
    .unwrap()
}

/// The binary, with its undo-journal state kept in `state` (one per test).
pub fn trialrunner(state: impl AsRef<Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trialrunner"));
    c.env("TRIALRUNNER_STATE_DIR", state.as_ref());
    c
}

/// `trialrunner run TRIAL --env ENV --out OUT` with its own journal state.
pub fn run_trial(state: impl AsRef<Path>, trial: &Path, env: &Path, out: &Path) -> Command {
    let mut c = trialrunner(state);
    c.arg("run")
        .arg(trial)
        .arg("--env")
        .arg(env)
        .arg("--out")
        .arg(out);
    c
}

/// Journal state files in a state directory.
pub fn state_journals(state: &Path) -> usize {
    std::fs::read_dir(state)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("journal-"))
                .count()
        })
        .unwrap_or(0)
}

pub fn env_yaml(standin: &url::Url, account: &str, endpoint: &str) -> String {
    format!(
        "name: moto-{account}\naws: {{ region: eu-west-1, account: \"{account}\", endpoint: \"{endpoint}\" }}\ndeployment: {D}\nservices:\n  provisioning: {{ url: \"{standin}\" }}\n  verification: {{ url: \"{standin}\" }}\nveraison: {{ release: v0.0.2602 }}\n"
    )
}

/// A long trial (so a signal lands mid-run) of two 20 s runs, pinning both groups at 3.
pub const LONG_TRIAL: &str = "name: long\nenvironment: env.yaml\ninfra:\n  provisioning: { pin: 3 }\n  verification: { pin: 3 }\n  ready-timeout: 60s\n  sample-every: 1s\nruns: { users: [2, 4], duration: 20s, tasks: [well-known] }\n";

/// moto lacks DisableMetricsCollection and answers it with a bare HTML 500, which every restore
/// (rightly, for AWS) retries for its 10 s best-effort bound. Said as moto means it (not
/// implemented), the restore warns at once and goes on, as on AWS errors.
fn moto_lacks_metrics_off(proxy: &FaultProxy) {
    proxy.fail("DisableMetricsCollection", 501, "NotImplemented", None);
}

/// Moto behind a fault proxy, a stand-in, and the files of a trial pointed at the proxy.
pub struct Drill {
    pub proxy: FaultProxy,
    pub ctx: AwsContext,
    pub standin: Option<Standin>,
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub trial: PathBuf,
    pub env: PathBuf,
}

impl Drill {
    pub async fn new(trial: &str) -> Drill {
        let ctx = ctx().await;
        deploy(&ctx).await;
        let proxy = FaultProxy::start(&super::moto().url);
        moto_lacks_metrics_off(&proxy);
        let standin = standin().await;
        let dir = tempfile::tempdir().unwrap();
        let env = super::write(
            dir.path(),
            "env.yaml",
            &env_yaml(&standin.url(), ACCOUNT, &proxy.url),
        );
        let trial = super::write(dir.path(), "trial.yaml", trial);
        Drill {
            proxy,
            ctx,
            standin: Some(standin),
            dir,
            state: tempfile::tempdir().unwrap(),
            trial,
            env,
        }
    }

    /// Drops every fault rule (frozen calls go on), but for moto's own missing operation.
    pub fn thaw(&self) {
        self.proxy.thaw();
        moto_lacks_metrics_off(&self.proxy);
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("r")
    }

    /// The binary with this drill's journal state (the product's 90 s restore budget).
    pub fn cmd(&self) -> Command {
        self.cmd_in(self.state.path())
    }

    /// The binary with another state folder (another operator's). The restore budget is the
    /// product's 90 s: a restore meant to succeed must not fail because a busy machine made
    /// moto slow (see [`Drill::cmd_to_fail_restore`] for drills that freeze AWS).
    pub fn cmd_in(&self, state: &Path) -> Command {
        let mut c = trialrunner(state);
        c.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
        c
    }

    /// [`Drill::cmd`] with an 8 s restore budget, for a drill that freezes AWS so that the
    /// restore fails: it spends its budget on the frozen endpoint, 8 s instead of 90 s.
    pub fn cmd_to_fail_restore(&self) -> Command {
        let mut c = self.cmd();
        c.env("TRIALRUNNER_RESTORE_BUDGET", FROZEN_RESTORE_BUDGET);
        c
    }

    /// The binary as an operator on another host: its own host name and state folder.
    pub fn cmd_on(&self, host: &str, state: &Path) -> Command {
        let mut c = self.cmd_in(state);
        c.env("TRIALRUNNER_HOST", host);
        c
    }

    /// `run` of `trial` in `env` with `--out out`, from `cmd`, watched.
    pub fn start(&self, mut cmd: Command, trial: &Path, env: &Path, out: &Path) -> Watched {
        cmd.args(["-v", "run"])
            .arg(trial)
            .arg("--env")
            .arg(env)
            .arg("--out")
            .arg(out);
        Watched::spawn(cmd)
    }

    /// `run --resume out` of the drill's trial, from `cmd`.
    pub fn resume(&self, mut cmd: Command) -> Command {
        cmd.args(["-v", "run"])
            .arg(&self.trial)
            .arg("--env")
            .arg(&self.env)
            .arg("--resume")
            .arg(self.out());
        cmd
    }

    /// `run` of the drill's trial, watched.
    pub fn start_run(&self) -> Watched {
        self.start_run_into(&self.out())
    }

    /// `run` of the drill's trial into `out`, watched.
    pub fn start_run_into(&self, out: &Path) -> Watched {
        self.start(self.cmd(), &self.trial, &self.env, out)
    }

    /// `run` of the drill's trial with the 8 s restore budget, watched: for a drill that
    /// freezes AWS mid-run so that the restore fails.
    pub fn start_run_to_fail_restore(&self) -> Watched {
        self.start(
            self.cmd_to_fail_restore(),
            &self.trial,
            &self.env,
            &self.out(),
        )
    }

    /// `infra ARGS --env ENV` of the drill, expected to exit `code`.
    pub fn infra(&self, args: &[&str], code: i32) -> Finished {
        let mut c = self.cmd();
        c.arg("infra").args(args).arg("--env").arg(&self.env);
        expect_exit(&mut c, code)
    }

    pub async fn capacities(&self) -> Vec<(i32, i32, i32)> {
        let mut out = Vec::new();
        for name in ["veraison-prov-asg", "veraison-verif-asg"] {
            let (min, max, desired, _, _) = settings(&self.ctx, name).await;
            out.push((min, max, desired));
        }
        out
    }

    pub fn manifest(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.out().join("manifest.json")).unwrap()).unwrap()
    }

    /// The deployment lock's tags on the drill's groups, read from moto: (group, key, value).
    pub async fn lock_tags(&self) -> Vec<(String, String, String)> {
        let asg = aws_sdk_autoscaling::Client::new(&self.ctx.config);
        let out = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names("veraison-prov-asg")
            .auto_scaling_group_names("veraison-verif-asg")
            .send()
            .await
            .unwrap();
        out.auto_scaling_groups()
            .iter()
            .flat_map(|g| g.tags())
            .filter(|t| t.key().is_some_and(|k| k.starts_with("trialrunner:lock:")))
            .map(|t| {
                (
                    t.resource_id().unwrap_or("").to_string(),
                    t.key().unwrap_or("").to_string(),
                    t.value().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

/// The restore budget of a drill whose restore is meant to fail on a frozen endpoint.
pub const FROZEN_RESTORE_BUDGET: &str = "8s";

pub const PINNED: [(i32, i32, i32); 2] = [(3, 3, 3), (3, 3, 3)];
pub const ORIGINAL: [(i32, i32, i32); 2] = [(1, 3, 1), (1, 3, 1)];
