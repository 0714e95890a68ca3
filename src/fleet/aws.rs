//! A generator fleet on AWS: the instances of an auto-scaling group, started through Systems
//! Manager Run Command, with S3 carrying the phase spec and the workers' results.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ssm::types::InstanceInformationStringFilter;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::local::start_delay;
use super::{merge, split, WorkerEnd, WorkerOutcome, WorkerSpec};
use crate::aws::{is_emulator, AwsContext};
use crate::error::{Error, Result};
use crate::load::Share;
use crate::provider::LoadRunner;
use crate::results::{unix_now, RunSummary};
use crate::trial::model::{AwsGenerators, GeneratorLoss};
use crate::trial::LoadPhase;

pub use crate::trial::s3::S3Location;

/// The SSM document every worker runs under.
pub const DOCUMENT: &str = "AWS-RunShellScript";

/// How long instances may take to be seen by Systems Manager (agent start, registration).
const SSM_ONLINE_BOUND: Duration = Duration::from_secs(600);

/// Where an instance gets the trialrunner binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binary {
    /// A release URL the instances can fetch.
    Url(String),
    /// An object in the fleet's bucket.
    Key(String),
}

/// `generators: { aws: … }`: the instances of an auto-scaling group (already pinned to the
/// fleet's size by the executor, journaled like the services' groups), each running one worker
/// through SSM Run Command, with S3 carrying the trial, the phase specs and the results.
pub struct AwsFleet {
    ctx: AwsContext,
    spec: AwsGenerators,
    bucket: S3Location,
    asg: aws_sdk_autoscaling::Client,
    ssm: aws_sdk_ssm::Client,
    s3: aws_sdk_s3::Client,
    trial: PathBuf,
    environment: PathBuf,
    on_loss: GeneratorLoss,
    /// How often SSM and the invocations are polled (an emulator answers at once).
    poll: Duration,
    binary: tokio::sync::OnceCell<Binary>,
}

/// One worker started on one instance.
struct Started {
    name: String,
    instance: String,
    command: String,
    phase: LoadPhase,
    results: String,
}

impl AwsFleet {
    /// A fleet for the trial and environment files, in the spec's region (the environment's
    /// by default).
    pub fn new(
        ctx: &AwsContext,
        spec: &AwsGenerators,
        trial: &Path,
        environment: &Path,
        on_loss: GeneratorLoss,
    ) -> Result<AwsFleet> {
        let bucket = S3Location::parse(&spec.bucket).ok_or_else(|| {
            Error::Usage(format!(
                "generators.aws.bucket: `{}` is not an S3 location",
                spec.bucket
            ))
        })?;
        let config = match &spec.region {
            Some(r) => ctx
                .config
                .to_builder()
                .region(aws_config::Region::new(r.clone()))
                .build(),
            None => ctx.config.clone(),
        };
        let emulator = is_emulator(&ctx.endpoint);
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(emulator)
            .build();
        Ok(AwsFleet {
            ctx: ctx.clone(),
            spec: spec.clone(),
            bucket,
            asg: aws_sdk_autoscaling::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            trial: trial.to_path_buf(),
            environment: environment.to_path_buf(),
            on_loss,
            poll: if emulator {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(5)
            },
            binary: tokio::sync::OnceCell::new(),
        })
    }

    /// The group's InService instances, sorted.
    pub async fn instances(&self) -> Result<Vec<String>> {
        let out = self
            .ctx
            .call("autoscaling:DescribeAutoScalingGroups", || {
                self.asg
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(&self.spec.asg)
                    .send()
            })
            .await?;
        let group = out.auto_scaling_groups().first().ok_or_else(|| {
            Error::Infra(format!(
                "generators.aws.asg: group {} not found",
                self.spec.asg
            ))
        })?;
        let mut ids: Vec<String> = group
            .instances()
            .iter()
            .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Instances among `ids` Systems Manager sees online.
    async fn online(&self, ids: &[String]) -> Result<Vec<String>> {
        let mut online = Vec::new();
        let mut token = None;
        loop {
            let filter = InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .set_values(Some(ids.to_vec()))
                .build()
                .map_err(|e| Error::Internal(format!("an SSM filter: {e}")))?;
            let out = self
                .ctx
                .call("ssm:DescribeInstanceInformation", || {
                    self.ssm
                        .describe_instance_information()
                        .filters(filter.clone())
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            online.extend(
                out.instance_information_list()
                    .iter()
                    .filter(|i| i.ping_status().map(|p| p.as_str()) == Some("Online"))
                    .filter_map(|i| i.instance_id().map(str::to_string)),
            );
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(online);
            }
        }
    }

    /// Waits until SSM sees every instance online (bounded; a stop request ends it at once).
    async fn wait_online(&self, ids: &[String], cancel: &CancellationToken) -> Result<()> {
        let since = Instant::now();
        loop {
            let online = self.online(ids).await?;
            let missing: Vec<&String> = ids.iter().filter(|i| !online.contains(i)).collect();
            if missing.is_empty() {
                return Ok(());
            }
            if since.elapsed() > SSM_ONLINE_BOUND {
                return Err(Error::Infra(format!(
                    "Systems Manager does not see {} after {} s: is the SSM agent running, and does the instance profile allow AmazonSSMManagedInstanceCore?",
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    SSM_ONLINE_BOUND.as_secs()
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = cancel.cancelled() => return Err(Error::Infra("stopped while waiting for SSM".into())),
            }
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.ctx
            .call("s3:PutObject", || {
                self.s3
                    .put_object()
                    .bucket(&self.bucket.bucket)
                    .key(key)
                    .body(bytes.clone().into())
                    .send()
            })
            .await?;
        Ok(())
    }

    /// Uploads a binary to `bin/trialrunner-<sha256>` unless it is there already; its key.
    pub async fn upload_binary(&self, exe: &Path) -> Result<String> {
        let bytes =
            std::fs::read(exe).map_err(|e| Error::io(format!("reading {}", exe.display()), e))?;
        let hash = hex::encode(Sha256::digest(&bytes));
        let key = self.bucket.key(&format!("bin/trialrunner-{}", &hash[..16]));
        let there = self
            .ctx
            .call("s3:HeadObject", || {
                self.s3
                    .head_object()
                    .bucket(&self.bucket.bucket)
                    .key(&key)
                    .send()
            })
            .await
            .is_ok();
        if !there {
            self.put(&key, bytes).await?;
        }
        Ok(key)
    }

    async fn binary(&self) -> Result<Binary> {
        self.binary
            .get_or_try_init(|| async {
                match &self.spec.binary_url {
                    Some(u) => Ok(Binary::Url(u.clone())),
                    None => {
                        let exe = std::env::current_exe()
                            .map_err(|e| Error::io("finding this program to upload it", e))?;
                        Ok(Binary::Key(self.upload_binary(&exe).await?))
                    }
                }
            })
            .await
            .cloned()
    }

    /// The shell script a worker's instance runs: fetch the binary, the trial and its spec,
    /// run the share, upload its files whatever happened.
    pub fn script(
        &self,
        binary: &Binary,
        prefix: &str,
        worker: &str,
        timeout: Duration,
    ) -> Vec<String> {
        let s3 = |key: &str| format!("'s3://{}/{key}'", self.bucket.bucket);
        let fetch = match binary {
            Binary::Url(u) => format!("curl -fsSL -o trialrunner '{u}'"),
            Binary::Key(k) => format!("aws s3 cp --only-show-errors {} trialrunner", s3(k)),
        };
        vec![
            "set -u".into(),
            format!("d=/var/tmp/trialrunner/{prefix}/{worker}; mkdir -p \"$d/out\"; cd \"$d\""),
            format!("{fetch} && chmod +x trialrunner || exit 3"),
            format!("aws s3 cp --only-show-errors {} trial.yaml || exit 3", s3(&format!("{prefix}/trial.yaml"))),
            format!("aws s3 cp --only-show-errors {} environment.yaml || exit 3", s3(&format!("{prefix}/environment.yaml"))),
            format!("aws s3 cp --only-show-errors {} spec.json || exit 3", s3(&format!("{prefix}/{worker}/spec.json"))),
            format!("rc=0; timeout -s TERM {} ./trialrunner worker --spec spec.json --out out > out/worker.log 2>&1 || rc=$?", timeout.as_secs()),
            format!("aws s3 cp --only-show-errors --recursive out {}", s3(&format!("{prefix}/{worker}/out"))),
            "exit $rc".into(),
        ]
    }

    async fn send(
        &self,
        instance: &str,
        script: Vec<String>,
        timeout: Duration,
        comment: &str,
    ) -> Result<String> {
        let out = self
            .ctx
            .call("ssm:SendCommand", || {
                self.ssm
                    .send_command()
                    .document_name(DOCUMENT)
                    .instance_ids(instance)
                    .comment(comment)
                    .parameters("commands", script.clone())
                    .parameters("executionTimeout", vec![timeout.as_secs().to_string()])
                    .send()
            })
            .await?;
        out.command()
            .and_then(|c| c.command_id())
            .map(str::to_string)
            .ok_or_else(|| Error::Infra("ssm:SendCommand answered without a command id".into()))
    }

    /// The invocation's status (`None` while SSM does not know it yet).
    async fn status(&self, w: &Started) -> Result<Option<(String, String)>> {
        let asked = self
            .ctx
            .call("ssm:GetCommandInvocation", || {
                self.ssm
                    .get_command_invocation()
                    .command_id(&w.command)
                    .instance_id(&w.instance)
                    .send()
            })
            .await;
        match asked {
            Ok(o) => Ok(Some((
                o.status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                o.standard_error_content().unwrap_or("").trim().to_string(),
            ))),
            Err(e) if e.to_string().contains("InvocationDoesNotExist") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn cancel(&self, w: &Started) {
        if let Err(e) = self
            .ctx
            .call("ssm:CancelCommand", || {
                self.ssm
                    .cancel_command()
                    .command_id(&w.command)
                    .instance_ids(&w.instance)
                    .send()
            })
            .await
        {
            tracing::warn!("{}: {e}", w.name);
        }
    }

    /// Polls every invocation to its end: the phase's bound, a stop request (CancelCommand,
    /// then a grace for the workers' uploads) and failures all end in a [`WorkerEnd`].
    async fn supervise(
        &self,
        started: &[Started],
        cancel: &CancellationToken,
        bound: Duration,
    ) -> Vec<WorkerEnd> {
        let since = Instant::now();
        let mut ends: Vec<Option<WorkerEnd>> = vec![None; started.len()];
        let mut cancelled_at: Option<Instant> = None;
        loop {
            for (w, end) in started.iter().zip(ends.iter_mut()) {
                if end.is_some() {
                    continue;
                }
                match self.status(w).await {
                    Ok(Some((s, _))) if s == "Success" => *end = Some(WorkerEnd::Finished),
                    Ok(Some((s, err)))
                        if matches!(s.as_str(), "Failed" | "Cancelled" | "TimedOut") =>
                    {
                        let tail = err.lines().last().unwrap_or("").to_string();
                        *end = Some(WorkerEnd::Lost(format!(
                            "SSM invocation {s} on {}{}",
                            w.instance,
                            if tail.is_empty() {
                                String::new()
                            } else {
                                format!(": {tail}")
                            }
                        )));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("{}: {e}", w.name),
                }
            }
            if ends.iter().all(Option::is_some) {
                break;
            }
            if cancel.is_cancelled() && cancelled_at.is_none() {
                for (w, end) in started.iter().zip(&ends) {
                    if end.is_none() {
                        self.cancel(w).await;
                    }
                }
                cancelled_at = Some(Instant::now());
            }
            let over = match cancelled_at {
                Some(t) => t.elapsed() > crate::load::engine::STOP_GRACE + Duration::from_secs(20),
                None => since.elapsed() > bound,
            };
            if over {
                for (w, end) in started.iter().zip(ends.iter_mut()) {
                    if end.is_none() {
                        self.cancel(w).await;
                        *end = Some(WorkerEnd::Lost(format!(
                            "stopped reporting (SSM invocation on {} not ended in time)",
                            w.instance
                        )));
                    }
                }
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = cancel.cancelled(), if cancelled_at.is_none() => {}
            }
        }
        ends.into_iter()
            .map(|e| e.expect("every worker ended"))
            .collect()
    }

    /// Copies a worker's uploaded files into `dir`.
    async fn download(&self, prefix: &str, dir: &Path) -> Result<usize> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut n = 0;
        let mut token = None;
        loop {
            let out = self
                .ctx
                .call("s3:ListObjectsV2", || {
                    self.s3
                        .list_objects_v2()
                        .bucket(&self.bucket.bucket)
                        .prefix(format!("{prefix}/"))
                        .set_continuation_token(token.clone())
                        .send()
                })
                .await?;
            for o in out.contents() {
                let Some(key) = o.key() else { continue };
                let name = &key[prefix.len() + 1..];
                if name.is_empty() || name.contains("..") {
                    continue;
                }
                let body = self
                    .ctx
                    .call("s3:GetObject", || {
                        self.s3
                            .get_object()
                            .bucket(&self.bucket.bucket)
                            .key(key)
                            .send()
                    })
                    .await?
                    .body
                    .collect()
                    .await
                    .map_err(|e| Error::Infra(format!("s3:GetObject {key}: {e}")))?
                    .into_bytes();
                let path = dir.join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
                }
                std::fs::write(&path, &body)
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                n += 1;
            }
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(n);
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

#[async_trait]
impl LoadRunner for AwsFleet {
    async fn run(
        &self,
        phase: &LoadPhase,
        dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<RunSummary> {
        let instances = self.instances().await?;
        if instances.len() < self.spec.count as usize {
            return Err(Error::Infra(format!(
                "generators.aws: {} has {} InService instances, the fleet needs {}",
                self.spec.asg,
                instances.len(),
                self.spec.count
            )));
        }
        let instances = &instances[..self.spec.count as usize];
        self.wait_online(instances, cancel).await?;
        // Under the bucket's prefix: this campaign's results directory, then the run.
        let campaign = dir
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("campaign-{}", unix_now() as u64));
        let prefix = self.bucket.key(&format!("{campaign}/{}", phase.run_id));
        let binary = self.binary().await?;
        self.put(&format!("{prefix}/trial.yaml"), read(&self.trial)?)
            .await?;
        self.put(
            &format!("{prefix}/environment.yaml"),
            read(&self.environment)?,
        )
        .await?;
        let shares = split(phase, self.spec.count);
        let most = shares
            .iter()
            .filter_map(|(p, _)| p.users)
            .max()
            .unwrap_or(1);
        // Instances fetch the binary and the trial first: a margin beyond a local fleet's.
        let delay = start_delay(phase, most)
            + Duration::from_secs(if is_emulator(&self.ctx.endpoint) {
                0
            } else {
                20
            });
        let start_unix = unix_now() + delay.as_secs_f64();
        let run_time = delay + phase.duration + phase.request_timeout + Duration::from_secs(60);
        let mut started = Vec::new();
        for (i, ((share, first_user), instance)) in shares.into_iter().zip(instances).enumerate() {
            let worker = format!("w{}", i + 1);
            let spec = WorkerSpec {
                name: worker.clone(),
                phase: share.clone(),
                share: Share {
                    first_user,
                    start_unix,
                },
                trial: "trial.yaml".into(),
                environment: "environment.yaml".into(),
                threads: None,
            };
            self.put(
                &format!("{prefix}/{worker}/spec.json"),
                serde_json::to_vec_pretty(&spec).expect("a worker spec serializes"),
            )
            .await?;
            let script = self.script(&binary, &prefix, &worker, run_time);
            let command = self
                .send(
                    instance,
                    script,
                    run_time + Duration::from_secs(120),
                    &format!("trialrunner {} {worker}", phase.run_id),
                )
                .await?;
            started.push(Started {
                name: format!("{worker} ({instance})"),
                instance: instance.clone(),
                command,
                phase: share,
                results: format!("{prefix}/{worker}/out"),
            });
        }
        let ends = self
            .supervise(&started, cancel, run_time + Duration::from_secs(60))
            .await;
        let mut outcomes = Vec::new();
        for (w, end) in started.into_iter().zip(ends) {
            let wdir = dir
                .join("workers")
                .join(w.name.split(' ').next().unwrap_or("w"));
            let end = match self.download(&w.results, &wdir).await {
                Ok(0) if end == WorkerEnd::Finished => WorkerEnd::Lost(format!(
                    "finished on {} but uploaded no results to s3://{}/{}",
                    w.instance, self.bucket.bucket, w.results
                )),
                Ok(_) => end,
                Err(e) => WorkerEnd::Lost(format!("its results could not be fetched: {e}")),
            };
            outcomes.push(WorkerOutcome {
                name: w.name,
                dir: wdir,
                end,
                phase: w.phase,
            });
        }
        let summary = merge(phase, start_unix, &outcomes, dir)?;
        super::after_loss(phase, summary, self.on_loss, cancel)
    }
}
