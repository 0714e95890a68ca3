//! The SSM agent, played for real behind the AWS fault layer: moto stores Run Command calls but
//! executes nothing, so this player answers SSM's `DescribeInstanceInformation`,
//! `SendCommand`, `GetCommandInvocation` and `CancelCommand` itself and runs each command the
//! way the agent does on Linux (amazon-ssm-agent's `executers`):
//! * the command's `commands` joined with newlines into `_script.sh` in an orchestration folder,
//!   run as `sh -c <that file>` (dash or bash, invoked as `sh`), as root, with no `HOME`,
//!   systemd's `PATH` and the agent's `AWS_SSM_INSTANCE_ID` / `AWS_SSM_REGION_NAME`, in a
//!   process group of its own;
//! * each instance in a mount namespace of its own: a scratch folder is its `/var/tmp`, and its
//!   `/usr/local/bin` holds the real AWS CLI (from `.venv-aws/`, pointed at moto by
//!   `AWS_ENDPOINT_URL` and test credentials, standing in for the instance profile) and, for an
//!   instance of another [`Image`], what its `uname`, `getconf` and `ldd` say;
//! * `executionTimeout` enforced and `CancelCommand` obeyed by killing the process group with
//!   SIGKILL (exit 137), as the agent does; the first 24 000 characters of stdout and 8 000 of
//!   stderr reported with the status (`Pending`, `InProgress`, `Success`, `Failed`,
//!   `TimedOut`, `Cancelled`) and the exit code.
//!
//! A `SendCommand` to an instance the player has not reported online is refused with
//! `InvalidInstanceId`, as SSM refuses it, and recorded as a violation. Faults are per
//! instance and script: when the agent sees an instance online, a late pickup, a shorter
//! timeout.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::awsfault::FaultProxy;

/// systemd's default `PATH`, which the agent's commands inherit.
pub const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which shell `sh` is on the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// Debian's and Ubuntu's `/bin/sh`.
    Dash,
    /// Amazon Linux's `/bin/sh` (bash in POSIX mode).
    Bash,
}

impl Shell {
    fn path(self) -> &'static str {
        match self {
            Shell::Dash => "/usr/bin/dash",
            Shell::Bash => "/usr/bin/bash",
        }
    }
}

/// What an instance's system says it is, when it is not this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    /// `uname -m`.
    pub arch: &'static str,
    /// glibc's version.
    pub glibc: &'static str,
}

/// Amazon Linux 2 on Graviton.
pub const AL2_GRAVITON: Image = Image {
    arch: "aarch64",
    glibc: "2.26",
};

/// Amazon Linux 2 on x86-64.
pub const AL2_X86: Image = Image {
    arch: "x86_64",
    glibc: "2.26",
};

/// The AWS CLI the instances use: `$TRIALRUNNER_AWS_CLI`, else `.venv-aws/bin/aws` in the
/// project (`scripts/install-test-deps` installs it).
pub fn aws_cli() -> PathBuf {
    let path = std::env::var_os("TRIALRUNNER_AWS_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::root().join(".venv-aws/bin/aws"));
    assert!(
        path.is_file(),
        "the AWS CLI for the fleet's instances is missing at {}: run scripts/install-test-deps (or set TRIALRUNNER_AWS_CLI)",
        path.display()
    );
    path
}

type Online = Arc<dyn Fn(&str, u32) -> bool + Send + Sync>;
type ImageOf = Arc<dyn Fn(&str) -> Option<Image> + Send + Sync>;
type PerScript<T> = Arc<dyn Fn(&str, &str) -> T + Send + Sync>;

/// One command on one instance, as it stands.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The instance.
    pub instance: String,
    /// The command id.
    pub command: String,
    /// The script as the agent wrote it (`commands` joined).
    pub script: String,
    /// `Pending`, `InProgress`, `Success`, `Failed`, `TimedOut`, `Cancelled`.
    pub status: &'static str,
    /// Exit code (-1 until it ends).
    pub code: i32,
    /// What it wrote on stdout (first 24 000 characters).
    pub stdout: String,
    /// What it wrote on stderr (first 8 000 characters).
    pub stderr: String,
}

struct Running {
    view: Invocation,
    pgid: Option<i32>,
    cancel: bool,
}

struct Agent {
    shell: Shell,
    moto: String,
    aws: PathBuf,
    root: tempfile::TempDir,
    online: Mutex<Online>,
    image: Mutex<ImageOf>,
    pickup: Mutex<PerScript<Duration>>,
    timeout_cap: Mutex<PerScript<Option<Duration>>>,
    polls: Mutex<HashMap<String, u32>>,
    reported_online: Mutex<Vec<String>>,
    violations: Mutex<Vec<String>>,
    invocations: Mutex<Vec<Arc<Mutex<Running>>>>,
}

/// The player, attached to a fault proxy.
pub struct SsmAgent {
    agent: Arc<Agent>,
}

fn error(ty: &str, message: &str) -> (u16, String) {
    (400, json!({"__type": ty, "message": message}).to_string())
}

impl SsmAgent {
    /// Plays the agent of every instance behind `proxy`, with `sh` being `shell`.
    pub fn attach(proxy: &FaultProxy, shell: Shell) -> SsmAgent {
        let agent = Arc::new(Agent {
            shell,
            moto: super::moto().url.clone(),
            aws: aws_cli(),
            root: tempfile::tempdir().unwrap(),
            online: Mutex::new(Arc::new(|_, _| true)),
            image: Mutex::new(Arc::new(|_| None)),
            pickup: Mutex::new(Arc::new(|_, _| Duration::ZERO)),
            timeout_cap: Mutex::new(Arc::new(|_, _| None)),
            polls: Mutex::new(HashMap::new()),
            reported_online: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            invocations: Mutex::new(Vec::new()),
        });
        let a = agent.clone();
        proxy.serve("DescribeInstanceInformation", move |b| a.describe(b));
        let a = agent.clone();
        proxy.serve("SendCommand", move |b| a.send(b));
        let a = agent.clone();
        proxy.serve("GetCommandInvocation", move |b| a.invocation(b));
        let a = agent.clone();
        proxy.serve("CancelCommand", move |b| a.cancel(b));
        SsmAgent { agent }
    }

    /// When SSM sees an instance online: `online(instance, polls)`, polls being how many
    /// `DescribeInstanceInformation` calls have asked about it so far (this one included).
    pub fn set_online(&self, online: impl Fn(&str, u32) -> bool + Send + Sync + 'static) {
        *self.agent.online.lock().unwrap() = Arc::new(online);
    }

    /// What an instance's system is (`None`: this host).
    pub fn set_image(&self, image: impl Fn(&str) -> Option<Image> + Send + Sync + 'static) {
        *self.agent.image.lock().unwrap() = Arc::new(image);
    }

    /// How long the agent takes to pick up a command (`(instance, script)`), `Pending` until then.
    pub fn set_pickup(&self, delay: impl Fn(&str, &str) -> Duration + Send + Sync + 'static) {
        *self.agent.pickup.lock().unwrap() = Arc::new(delay);
    }

    /// A shorter execution timeout for some commands (`(instance, script)`): the agent stops
    /// them there as it would at their `executionTimeout`.
    pub fn set_timeout_cap(
        &self,
        cap: impl Fn(&str, &str) -> Option<Duration> + Send + Sync + 'static,
    ) {
        *self.agent.timeout_cap.lock().unwrap() = Arc::new(cap);
    }

    /// Every invocation so far, in the order sent.
    pub fn invocations(&self) -> Vec<Invocation> {
        self.agent
            .invocations
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.lock().unwrap().view.clone())
            .collect()
    }

    /// The invocations whose script contains `text`.
    pub fn invocations_of(&self, text: &str) -> Vec<Invocation> {
        self.invocations()
            .into_iter()
            .filter(|i| i.script.contains(text))
            .collect()
    }

    /// Commands sent to instances the agent had not reported online (refused, as SSM does).
    pub fn violations(&self) -> Vec<String> {
        self.agent.violations.lock().unwrap().clone()
    }

    /// Instances the player has reported online.
    pub fn reported_online(&self) -> Vec<String> {
        self.agent.reported_online.lock().unwrap().clone()
    }

    /// How many times `DescribeInstanceInformation` asked about `instance`.
    pub fn polls(&self, instance: &str) -> u32 {
        self.agent
            .polls
            .lock()
            .unwrap()
            .get(instance)
            .copied()
            .unwrap_or(0)
    }

    /// An instance's `/var/tmp`, as its commands see it.
    pub fn var_tmp(&self, instance: &str) -> PathBuf {
        self.agent.instance_dir(instance).join("var-tmp")
    }

    /// Every file named `name` under an instance's `/var/tmp`.
    pub fn find(&self, instance: &str, name: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, name, out);
                } else if p.file_name().is_some_and(|n| n == name) {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.var_tmp(instance), name, &mut out);
        out
    }

    /// Instances that have run a command.
    pub fn instances(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.invocations().into_iter().map(|i| i.instance).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

impl Drop for SsmAgent {
    /// Nothing a command started outlives the test, nor do the instances' disks (the proxy's
    /// handlers keep the player itself alive until the test binary ends).
    fn drop(&mut self) {
        for r in self.agent.invocations.lock().unwrap().iter() {
            if let Some(pgid) = r.lock().unwrap().pgid {
                // SAFETY: a process group this player started.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(self.agent.root.path());
    }
}

impl Agent {
    fn instance_dir(&self, instance: &str) -> PathBuf {
        self.root.path().join(instance)
    }

    fn describe(&self, body: &[u8]) -> (u16, String) {
        let req: Value = serde_json::from_slice(body).unwrap_or_default();
        let asked: Vec<String> = req["Filters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["Key"] == "InstanceIds")
            .flat_map(|f| f["Values"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let online = self.online.lock().unwrap().clone();
        let mut list = Vec::new();
        for id in asked {
            let polls = {
                let mut p = self.polls.lock().unwrap();
                let n = p.entry(id.clone()).or_insert(0);
                *n += 1;
                *n
            };
            if online(&id, polls) {
                let mut seen = self.reported_online.lock().unwrap();
                if !seen.contains(&id) {
                    seen.push(id.clone());
                }
                list.push(json!({
                    "InstanceId": id, "PingStatus": "Online", "PlatformType": "Linux",
                    "PlatformName": "Amazon Linux", "AgentVersion": "3.3.0.0"
                }));
            }
        }
        (200, json!({ "InstanceInformationList": list }).to_string())
    }

    fn send(self: &Arc<Self>, body: &[u8]) -> (u16, String) {
        let req: Value = serde_json::from_slice(body).unwrap_or_default();
        if req["DocumentName"] != "AWS-RunShellScript" {
            return error(
                "InvalidDocument",
                "this player runs AWS-RunShellScript only",
            );
        }
        let instances: Vec<String> =
            serde_json::from_value(req["InstanceIds"].clone()).unwrap_or_default();
        let offline: Vec<&String> = {
            let seen = self.reported_online.lock().unwrap();
            instances.iter().filter(|i| !seen.contains(i)).collect()
        };
        if !offline.is_empty() {
            let why = format!("SendCommand to {offline:?}, not reported online");
            self.violations.lock().unwrap().push(why.clone());
            return error("InvalidInstanceId", &why);
        }
        let commands: Vec<String> =
            serde_json::from_value(req["Parameters"]["commands"].clone()).unwrap_or_default();
        let timeout = req["Parameters"]["executionTimeout"][0]
            .as_str()
            .unwrap_or("3600")
            .parse::<u64>()
            .ok()
            .filter(|t| (1..=172_800).contains(t));
        let Some(timeout) = timeout else {
            return error(
                "InvalidParameters",
                "executionTimeout must be between 1 and 172800",
            );
        };
        let command = uuid::Uuid::new_v4().to_string();
        // The agent writes the commands into one script file, one line each.
        let script = commands.join("\n") + "\n";
        for instance in &instances {
            let running = Arc::new(Mutex::new(Running {
                view: Invocation {
                    instance: instance.clone(),
                    command: command.clone(),
                    script: script.clone(),
                    status: "Pending",
                    code: -1,
                    stdout: String::new(),
                    stderr: String::new(),
                },
                pgid: None,
                cancel: false,
            }));
            self.invocations.lock().unwrap().push(running.clone());
            let agent = self.clone();
            std::thread::spawn(move || agent.execute(running, Duration::from_secs(timeout)));
        }
        (
            200,
            json!({"Command": {
                "CommandId": command, "DocumentName": "AWS-RunShellScript",
                "InstanceIds": instances, "Status": "Pending"
            }})
            .to_string(),
        )
    }

    fn find(&self, command: &str, instance: &str) -> Option<Arc<Mutex<Running>>> {
        self.invocations
            .lock()
            .unwrap()
            .iter()
            .find(|r| {
                let r = r.lock().unwrap();
                r.view.command == command && r.view.instance == instance
            })
            .cloned()
    }

    fn invocation(&self, body: &[u8]) -> (u16, String) {
        let req: Value = serde_json::from_slice(body).unwrap_or_default();
        let (Some(command), Some(instance)) =
            (req["CommandId"].as_str(), req["InstanceId"].as_str())
        else {
            return error(
                "ValidationException",
                "CommandId and InstanceId are required",
            );
        };
        let Some(r) = self.find(command, instance) else {
            return error("InvocationDoesNotExist", "no such invocation");
        };
        let v = r.lock().unwrap().view.clone();
        let details = match v.status {
            "TimedOut" => "ExecutionTimedOut",
            s => s,
        };
        (
            200,
            json!({
                "CommandId": v.command, "InstanceId": v.instance,
                "DocumentName": "AWS-RunShellScript", "PluginName": "aws:runShellScript",
                "Status": v.status, "StatusDetails": details, "ResponseCode": v.code,
                "StandardOutputContent": v.stdout, "StandardErrorContent": v.stderr,
            })
            .to_string(),
        )
    }

    fn cancel(&self, body: &[u8]) -> (u16, String) {
        let req: Value = serde_json::from_slice(body).unwrap_or_default();
        let command = req["CommandId"].as_str().unwrap_or("");
        let only: Option<Vec<String>> = serde_json::from_value(req["InstanceIds"].clone()).ok();
        for r in self.invocations.lock().unwrap().iter() {
            let mut r = r.lock().unwrap();
            if r.view.command == command
                && only.as_ref().is_none_or(|o| o.contains(&r.view.instance))
            {
                r.cancel = true;
            }
        }
        (200, "{}".into())
    }

    /// The instance's `/usr/local/bin`: the AWS CLI, and its image's own `uname`, `getconf`
    /// and `ldd` when it is not this host.
    fn bin_dir(&self, instance: &str) -> PathBuf {
        let bin = self.instance_dir(instance).join("bin");
        if !bin.exists() {
            std::fs::create_dir_all(&bin).unwrap();
            std::os::unix::fs::symlink(&self.aws, bin.join("aws")).unwrap();
            let image = self.image.lock().unwrap().clone();
            if let Some(img) = image(instance) {
                for (name, arg, answer) in [
                    ("uname", "-m", img.arch.to_string()),
                    (
                        "getconf",
                        "GNU_LIBC_VERSION",
                        format!("glibc {}", img.glibc),
                    ),
                    ("ldd", "--version", format!("ldd (GNU libc) {}", img.glibc)),
                ] {
                    let shim = bin.join(name);
                    std::fs::write(
                        &shim,
                        format!("#!/bin/sh\nif [ \"$1\" = {arg} ]; then echo '{answer}'; else exec /usr/bin/{name} \"$@\"; fi\n"),
                    )
                    .unwrap();
                    std::fs::set_permissions(
                        &shim,
                        std::os::unix::fs::PermissionsExt::from_mode(0o755),
                    )
                    .unwrap();
                }
            }
        }
        bin
    }

    fn execute(&self, running: Arc<Mutex<Running>>, timeout: Duration) {
        let (instance, command, script) = {
            let r = running.lock().unwrap();
            (
                r.view.instance.clone(),
                r.view.command.clone(),
                r.view.script.clone(),
            )
        };
        // The test's closures run with no lock held: one that panics poisons nothing.
        let (pickup, cap) = {
            let p = self.pickup.lock().unwrap().clone();
            let c = self.timeout_cap.lock().unwrap().clone();
            (p, c)
        };
        let (pickup, cap) = (pickup(&instance, &script), cap(&instance, &script));
        let picked = Instant::now() + pickup;
        while Instant::now() < picked {
            if running.lock().unwrap().cancel {
                let mut r = running.lock().unwrap();
                r.view.status = "Cancelled";
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let var_tmp = self.instance_dir(&instance).join("var-tmp");
        std::fs::create_dir_all(&var_tmp).unwrap();
        let bin = self.bin_dir(&instance);
        let orch = self
            .instance_dir(&instance)
            .join("ssm")
            .join(&command)
            .join("awsrunShellScript/0.awsrunShellScript");
        std::fs::create_dir_all(&orch).unwrap();
        let file = orch.join("_script.sh");
        std::fs::write(&file, &script).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let stdout = std::fs::File::create(orch.join("stdout")).unwrap();
        let stderr = std::fs::File::create(orch.join("stderr")).unwrap();
        // The instance's own mount namespace: its /var/tmp and /usr/local/bin; then `sh -c`.
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/usr/bin/bash", "-c"])
            .arg(r#"mount --bind "$3" /var/tmp && mount --bind "$4" /usr/local/bin && cd "$5" && exec -a sh "$1" -c "$2""#)
            .arg("ssm-agent")
            .arg(self.shell.path())
            .arg(&file)
            .arg(&var_tmp)
            .arg(&bin)
            .arg(&orch)
            .env_clear()
            .env("PATH", SYSTEMD_PATH)
            .env("AWS_SSM_INSTANCE_ID", &instance)
            .env("AWS_SSM_REGION_NAME", "eu-west-1")
            // The instance profile's part: credentials, and the endpoint (moto).
            .env("AWS_ENDPOINT_URL", &self.moto)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .current_dir(&orch)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                let mut r = running.lock().unwrap();
                r.view.status = "Failed";
                r.view.code = 1;
                r.view.stderr = format!("the agent could not start sh: {e}");
                return;
            }
        };
        let pgid = child.id() as i32;
        {
            let mut r = running.lock().unwrap();
            r.pgid = Some(pgid);
            r.view.status = "InProgress";
        }
        let limit = cap.map_or(timeout, |c| c.min(timeout));
        let began = Instant::now();
        let (status, code) = loop {
            if let Some(s) = child.try_wait().unwrap() {
                let code = s.code().unwrap_or(-1);
                break (if code == 0 { "Success" } else { "Failed" }, code);
            }
            let cancelled = running.lock().unwrap().cancel;
            if cancelled || began.elapsed() >= limit {
                // SAFETY: the process group this player started.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                let _ = child.wait();
                break (if cancelled { "Cancelled" } else { "TimedOut" }, 137);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let first = |name: &str, n: usize| -> String {
            let text = std::fs::read(orch.join(name)).unwrap_or_default();
            String::from_utf8_lossy(&text).chars().take(n).collect()
        };
        let mut r = running.lock().unwrap();
        r.pgid = None;
        r.view.status = status;
        r.view.code = code;
        r.view.stdout = first("stdout", 24_000);
        r.view.stderr = first("stderr", 8_000);
    }
}

/// A release server on loopback: files at paths, served to `curl` (a `binary-url`), counting
/// each path's fetches.
pub struct FileServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    hits: Arc<Mutex<HashMap<String, u32>>>,
}

impl FileServer {
    /// Serves `files` (URL path → file on disk); anything else is 404.
    pub fn start(files: Vec<(&str, PathBuf)>) -> FileServer {
        let files: Arc<HashMap<String, PathBuf>> =
            Arc::new(files.into_iter().map(|(p, f)| (p.to_string(), f)).collect());
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let h = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (files, hits) = (files.clone(), h.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                            break;
                        }
                    }
                    *hits.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                    match files.get(&path).and_then(|f| std::fs::File::open(f).ok()) {
                        Some(mut f) => {
                            let len = f.metadata().unwrap().len();
                            let _ = write!(
                                stream,
                                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                            );
                            let mut buf = vec![0; 1 << 20];
                            while let Ok(n) = f.read(&mut buf) {
                                if n == 0 || stream.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                        None => {
                            let _ = write!(
                                stream,
                                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            );
                        }
                    }
                });
            }
        });
        FileServer { url, hits }
    }

    /// How many times `path` was fetched.
    pub fn hits(&self, path: &str) -> u32 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}
