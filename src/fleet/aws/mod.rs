//! A generator fleet on AWS: the instances of an auto-scaling group, each running one worker
//! through Systems Manager Run Command, with S3 carrying the binary, the trial, the specs and
//! the workers' results.
//!
//! Per campaign and instance, before the first run it takes part in: a probe (what the
//! instance is; one the shipped binary cannot run on is refused by name, nothing sent to run),
//! then a preparation (the campaign's folder with the binary, trial and environment; the binary
//! run once). Its measured time sets how far ahead the common start is put. Per run: one
//! command per instance (spec, worker, upload), polled to its end; a stop request asks each
//! worker to stop in order and only cancels a command that does not end. What each worker left
//! is read from this attempt's keys only ([`script`] has the layout), and merged.

pub mod probe;
pub mod script;
pub mod ssm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::elf::{self, BinaryNeeds};
use super::local::start_delay;
use super::{merge, split, WorkerEnd, WorkerOutcome, WorkerSpec};
pub use crate::aws::bucket;
use crate::aws::{is_emulator, AwsContext};
use crate::error::{Error, Result};
use crate::load::{Share, Target};
use crate::provider::LoadRunner;
use crate::results::{unix_now, RunSummary};
use crate::trial::model::{AwsGenerators, GeneratorLoss};
use crate::trial::{ssm as limits, LoadPhase, Trial};
use bucket::Bucket;
use probe::HostReport;
use script::{Attempt, Layout};
use ssm::{RunCommand, Sent};

pub use crate::trial::s3::S3Location;
pub use script::Binary;
pub use ssm::DOCUMENT;

/// The coordinator's own reads (its group's instances).
pub const READS: &[&str] = &["autoscaling:DescribeAutoScalingGroups"];

/// How long a probe may take on an instance.
const PROBE_BOUND: Duration = Duration::from_secs(120);
/// How long a preparation (the binary fetched, once per campaign) may take on an instance.
const PREPARE_BOUND: Duration = Duration::from_secs(900);
/// How much the slowest measured preparation is stretched to make the start margin.
const MARGIN_FACTOR: f64 = 1.5;
/// After a stop request: how long the workers have to stop, write and upload before their
/// commands are cancelled (the agent then kills them).
const STOP_BOUND: Duration = Duration::from_secs(20);

/// What the fleet knows of its campaign so far.
#[derive(Default)]
struct Campaign {
    id: Option<String>,
    binary: Option<Binary>,
    inputs_put: bool,
    /// Instances prepared for this campaign, and what they are.
    prepared: BTreeMap<String, HostReport>,
    /// The slowest preparation measured (sent → seen ended).
    slowest: Duration,
}

/// `generators: { aws: … }`: the instances of an auto-scaling group (already pinned to the
/// fleet's size by the executor, journaled like the services' groups), each running one worker
/// through SSM Run Command, with S3 carrying the binary, the trial, the phase specs and the
/// results.
pub struct AwsFleet {
    spec: AwsGenerators,
    ctx: AwsContext,
    asg: aws_sdk_autoscaling::Client,
    run_command: RunCommand,
    bucket: Bucket,
    region: String,
    trial: PathBuf,
    environment: PathBuf,
    on_loss: GeneratorLoss,
    /// How long SSM may take to see the instances (the trial's readiness timeout).
    online_bound: Duration,
    /// The plan's last run: its workers remove the campaign's folder.
    last_run: Option<String>,
    /// For a run whose workers all failed before writing anything: its endpoints.
    target: Option<Target>,
    campaign: std::sync::Mutex<Option<String>>,
    state: tokio::sync::Mutex<Campaign>,
}

/// One worker started on one instance.
struct Started {
    name: String,
    worker: String,
    sent: Sent,
    phase: LoadPhase,
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
        let location = S3Location::parse(&spec.bucket).ok_or_else(|| {
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
        let poll = if emulator {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        Ok(AwsFleet {
            spec: spec.clone(),
            ctx: ctx.clone(),
            asg: aws_sdk_autoscaling::Client::new(&config),
            run_command: RunCommand::new(ctx, &config, poll),
            bucket: Bucket::new(ctx, &config, location, emulator),
            region: spec.region.clone().unwrap_or_else(|| ctx.region()),
            trial: trial.to_path_buf(),
            environment: environment.to_path_buf(),
            on_loss,
            online_bound: Duration::from_secs(900),
            last_run: None,
            target: None,
            campaign: std::sync::Mutex::new(None),
            state: tokio::sync::Mutex::new(Campaign::default()),
        })
    }

    /// The same fleet bound to its trial: SSM may take the trial's readiness timeout to see
    /// the instances, the plan's last run removes the campaign's folder from them, and the
    /// target gives a run's endpoints when no worker could write them.
    pub fn for_trial(self, trial: &Trial, target: Target) -> AwsFleet {
        let plan = crate::trial::plan(trial);
        AwsFleet {
            online_bound: trial
                .spec
                .infra
                .ready_timeout
                .map(|t| t.0)
                .unwrap_or(self.online_bound),
            last_run: plan.load_phases().last().map(|p| p.run_id.clone()),
            target: Some(target),
            ..self
        }
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

    /// Uploads a binary to the bucket under its content's hash, unless it is there already.
    pub async fn upload_binary(&self, exe: &Path) -> Result<Binary> {
        use sha2::{Digest, Sha256};
        let bytes =
            std::fs::read(exe).map_err(|e| Error::io(format!("reading {}", exe.display()), e))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let key = self
            .bucket
            .location
            .key(&format!("bin/trialrunner-{}", &sha256[..16]));
        if !self.bucket.exists(&key).await {
            self.bucket.put_large(&key, bytes).await?;
        }
        Ok(Binary::Key { key, sha256 })
    }

    /// What the binary this fleet ships needs of the instances (`None` for a `binary-url`:
    /// its first run on each instance is the check).
    fn needs(&self) -> Result<Option<BinaryNeeds>> {
        if self.spec.binary_url.is_some() {
            return Ok(None);
        }
        let exe =
            std::env::current_exe().map_err(|e| Error::io("finding this program to ship it", e))?;
        elf::needs(&exe).map(Some)
    }

    /// This campaign's places (its id as the executor gave it, else one of its own).
    fn layout(&self, state: &mut Campaign) -> Layout {
        let given = self.campaign.lock().expect("campaign lock").clone();
        let id = state.id.get_or_insert_with(|| {
            given.unwrap_or_else(|| {
                format!(
                    "campaign-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..12]
                )
            })
        });
        Layout::new(&self.bucket.location, &self.region, id)
    }

    /// Probes and prepares the instances this campaign has not prepared yet. Instances the
    /// binary cannot run on are refused by name before anything is sent to run.
    async fn prepare(
        &self,
        state: &mut Campaign,
        layout: &Layout,
        instances: &[String],
        cancel: &CancellationToken,
    ) -> Result<()> {
        let new: Vec<String> = instances
            .iter()
            .filter(|i| !state.prepared.contains_key(*i))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let needs = self.needs()?;
        let probes = self
            .run_command
            .run_on_each(
                &new,
                |_| script::probe(),
                PROBE_BOUND,
                "trialrunner: what is this instance",
                cancel,
            )
            .await?;
        let mut hosts = BTreeMap::new();
        let mut refused = Vec::new();
        for (sent, inv, _) in probes {
            if !inv.succeeded() {
                refused.push(format!(
                    "{}: the probe ended {}{}",
                    sent.instance,
                    inv.verdict(),
                    last_line(&inv.stderr)
                ));
                continue;
            }
            let host = HostReport::parse(&inv.stdout);
            match needs.as_ref().and_then(|n| probe::misfit(n, &host)) {
                Some(why) => refused.push(format!("{} ({host}): {why}", sent.instance)),
                None => {
                    hosts.insert(sent.instance, host);
                }
            }
        }
        if !refused.is_empty() {
            return Err(Error::Infra(format!(
                "the generator binary cannot run on {} of the fleet's instances, so no worker was started: {}. Ship a binary built for them (generators.aws.binary-url: a static build, or one built on the instances' own system) or use instances that fit it{}",
                refused.len(),
                refused.join("; "),
                needs.map(|n| format!(" ({n})")).unwrap_or_default()
            )));
        }
        let binary = match &state.binary {
            Some(b) => b.clone(),
            None => {
                let b = match &self.spec.binary_url {
                    Some(u) => Binary::Url(u.clone()),
                    None => {
                        let exe = std::env::current_exe()
                            .map_err(|e| Error::io("finding this program to ship it", e))?;
                        self.upload_binary(&exe).await?
                    }
                };
                state.binary = Some(b.clone());
                b
            }
        };
        if !state.inputs_put {
            let inputs = layout.inputs_key();
            self.bucket
                .put(&format!("{inputs}/trial.yaml"), read(&self.trial)?)
                .await?;
            self.bucket
                .put(
                    &format!("{inputs}/environment.yaml"),
                    read(&self.environment)?,
                )
                .await?;
            state.inputs_put = true;
        }
        let prepared = self
            .run_command
            .run_on_each(
                &new,
                |_| script::prepare(layout, &binary),
                PREPARE_BOUND,
                &comment(&format!("trialrunner: prepare {}", layout.campaign())),
                cancel,
            )
            .await?;
        let mut refused = Vec::new();
        for (sent, inv, took) in prepared {
            let host = hosts.remove(&sent.instance).expect("a probed instance");
            if inv.succeeded() {
                state.slowest = state.slowest.max(took);
                state.prepared.insert(sent.instance, host);
            } else {
                refused.push(format!(
                    "{} ({host}): {}{}",
                    sent.instance,
                    inv.verdict(),
                    last_line(&inv.stderr)
                ));
            }
        }
        if !refused.is_empty() {
            return Err(Error::Infra(format!(
                "{} of the fleet's instances could not be prepared (the binary fetched and run once), so no worker was started: {}",
                refused.len(),
                refused.join("; ")
            )));
        }
        Ok(())
    }

    /// Polls every worker's command to its end: the phase's bound, a stop request (each worker
    /// asked to stop in order, its command cancelled if that does not end it) and failures all
    /// end in a [`WorkerEnd`], with what the command printed on stderr.
    async fn supervise(
        &self,
        layout: &Layout,
        attempt: &Attempt,
        started: &[Started],
        cancel: &CancellationToken,
        bound: Duration,
    ) -> Vec<(WorkerEnd, String)> {
        let since = std::time::Instant::now();
        let mut ends: Vec<Option<(WorkerEnd, String)>> = vec![None; started.len()];
        let mut stop_sent: Option<std::time::Instant> = None;
        loop {
            for (w, end) in started.iter().zip(ends.iter_mut()) {
                if end.is_some() {
                    continue;
                }
                match self.run_command.invocation(&w.sent).await {
                    Ok(Some(inv)) if inv.succeeded() => {
                        *end = Some((WorkerEnd::Finished, inv.stderr))
                    }
                    Ok(Some(inv)) if inv.ended() => {
                        *end = Some((
                            WorkerEnd::Lost(format!(
                                "SSM invocation {} on {}",
                                inv.verdict(),
                                w.sent.instance
                            )),
                            inv.stderr,
                        ))
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("{}: {e}", w.name),
                }
            }
            if ends.iter().all(Option::is_some) {
                break;
            }
            if cancel.is_cancelled() && stop_sent.is_none() {
                for (w, end) in started.iter().zip(&ends) {
                    if end.is_none() {
                        let stop = script::stop(layout, attempt);
                        let c = comment(&format!("trialrunner: stop {}", w.worker));
                        if let Err(e) = self
                            .run_command
                            .send(&w.sent.instance, stop, Duration::from_secs(60), &c)
                            .await
                        {
                            tracing::warn!("{}: asking it to stop: {e}", w.name);
                        }
                    }
                }
                stop_sent = Some(std::time::Instant::now());
            }
            let over = match stop_sent {
                Some(t) => t.elapsed() > crate::load::STOP_GRACE + STOP_BOUND,
                None => since.elapsed() > bound,
            };
            if over {
                for (w, end) in started.iter().zip(ends.iter_mut()) {
                    if end.is_none() {
                        self.run_command.cancel(&w.sent).await;
                        *end = Some((
                            WorkerEnd::Lost(format!(
                                "stopped reporting (its SSM command on {} had not ended {} s after {}; cancelled)",
                                w.sent.instance,
                                if stop_sent.is_some() { (crate::load::STOP_GRACE + STOP_BOUND).as_secs() } else { bound.as_secs() },
                                if stop_sent.is_some() { "the stop request" } else { "it was sent" },
                            )),
                            String::new(),
                        ));
                    }
                }
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.run_command.poll) => {}
                _ = cancel.cancelled(), if stop_sent.is_none() => {}
            }
        }
        ends.into_iter()
            .map(|e| e.expect("every worker ended"))
            .collect()
    }
}

/// `: <the last line>` of a command's error output, or nothing.
fn last_line(text: &str) -> String {
    super::log_tail(text)
        .pop()
        .map(|l| format!(": {l}"))
        .unwrap_or_default()
}

/// A command's comment, within SSM's 100 characters.
fn comment(text: &str) -> String {
    text.chars().take(100).collect()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

/// What `plan` says a fleet on AWS ships to its instances.
pub fn shipped(spec: &AwsGenerators) -> String {
    if let Some(u) = &spec.binary_url {
        return format!(
            "the binary at {u}, fetched once per campaign by each instance and run there once before the first run (an instance it does not run on is refused by name)"
        );
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return format!("this binary (not found: {e})"),
    };
    let size = std::fs::metadata(&exe).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    match elf::needs(&exe) {
        Ok(n) => format!(
            "this binary ({n}; {size:.0} MB) through {}/bin/, fetched once per campaign by each instance; every instance's architecture and glibc are probed first, and one it cannot run on is refused by name",
            spec.bucket.trim_end_matches('/')
        ),
        Err(e) => format!("this binary, whose needs could not be read: {e}"),
    }
}

#[async_trait]
impl LoadRunner for AwsFleet {
    fn campaign(&self, id: &str) {
        *self.campaign.lock().expect("campaign lock") = Some(id.to_string());
    }

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
        self.run_command
            .wait_online(instances, self.online_bound, cancel)
            .await?;
        let mut state = self.state.lock().await;
        let layout = self.layout(&mut state);
        self.prepare(&mut state, &layout, instances, cancel).await?;
        let attempt = Attempt {
            run: phase.run_id.clone(),
            id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        };
        let shares = split(phase, self.spec.count);
        let most = shares
            .iter()
            .filter_map(|(p, _)| p.users)
            .max()
            .unwrap_or(1);
        // The common start: the workers' own preparation, plus the time the slowest instance
        // took to fetch and start (measured this campaign), with room to spare.
        let delay = (start_delay(phase, most) + state.slowest.mul_f64(MARGIN_FACTOR))
            .min(limits::START_MARGIN_MAX);
        tracing::info!(
            run = %phase.run_id,
            "workers start {:.1} s after their commands (the slowest instance's measured preparation: {:.1} s)",
            delay.as_secs_f64(),
            state.slowest.as_secs_f64()
        );
        drop(state);
        let start_unix = unix_now() + delay.as_secs_f64();
        let bound = limits::worker_bound(delay, phase.duration, phase.request_timeout);
        let last = self.last_run.as_deref() == Some(phase.run_id.as_str());
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
                // The campaign's folder holds them, one above the run's.
                trial: "../trial.yaml".into(),
                environment: "../environment.yaml".into(),
                threads: None,
            };
            self.bucket
                .put(
                    &layout.spec_key(&attempt, &worker),
                    serde_json::to_vec_pretty(&spec).expect("a worker spec serializes"),
                )
                .await?;
            let script = script::worker(&layout, &attempt, &worker, bound, last);
            let sent = self
                .run_command
                .send(
                    instance,
                    script,
                    limits::execution_timeout(bound),
                    &comment(&format!(
                        "trialrunner {} {} {worker}",
                        layout.campaign(),
                        phase.run_id
                    )),
                )
                .await?;
            started.push(Started {
                name: format!("{worker} ({instance})"),
                worker,
                sent,
                phase: share,
            });
        }
        let ends = self
            .supervise(
                &layout,
                &attempt,
                &started,
                cancel,
                limits::execution_timeout(bound) + self.run_command.poll,
            )
            .await;
        let mut outcomes = Vec::new();
        for (w, (end, console)) in started.into_iter().zip(ends) {
            let wdir = dir.join("workers").join(&w.worker);
            let results = layout.results_key(&attempt, &w.worker);
            let end = match self.bucket.download(&results, &wdir).await {
                Ok(0) if end == WorkerEnd::Finished => WorkerEnd::Lost(format!(
                    "finished on {} but uploaded no results to s3://{}/{results}",
                    w.sent.instance, self.bucket.location.bucket
                )),
                Ok(_) => end,
                Err(e) => WorkerEnd::Lost(format!("its results could not be fetched: {e}")),
            };
            outcomes.push(WorkerOutcome {
                name: w.name,
                dir: wdir,
                end,
                phase: w.phase,
                console,
            });
        }
        let fallback = self
            .target
            .as_ref()
            .map(|t| crate::load::tasks::plan_jobs(&phase.tasks, t).1)
            .unwrap_or_default();
        let summary = merge(phase, start_unix, &outcomes, dir, &fallback)?;
        super::after_loss(phase, summary, self.on_loss, cancel)
    }
}
