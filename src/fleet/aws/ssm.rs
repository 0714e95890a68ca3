//! Systems Manager Run Command as the fleet uses it: which instances the agent reports online,
//! one `AWS-RunShellScript` command per instance, its invocation's status, exit code and output,
//! and cancelling it.

use std::time::{Duration, Instant};

use aws_sdk_ssm::types::InstanceInformationStringFilter;
use tokio_util::sync::CancellationToken;

use crate::aws::AwsContext;
use crate::error::{Error, Result};

/// The SSM document every script runs under.
pub const DOCUMENT: &str = "AWS-RunShellScript";

/// How one command ended (or stands) on one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `Pending`, `InProgress`, `Success`, `Failed`, `TimedOut`, `Cancelled`, …
    pub status: String,
    /// The script's exit code (`-1` while it runs or when it never ran).
    pub code: i32,
    /// What it wrote on stdout (SSM keeps the first 24 000 characters).
    pub stdout: String,
    /// What it wrote on stderr (SSM keeps the first 8 000 characters).
    pub stderr: String,
}

impl Invocation {
    /// True once SSM will say nothing more of it.
    pub fn ended(&self) -> bool {
        matches!(
            self.status.as_str(),
            "Success"
                | "Failed"
                | "TimedOut"
                | "Cancelled"
                | "Undeliverable"
                | "Terminated"
                | "DeliveryTimedOut"
                | "ExecutionTimedOut"
        )
    }

    /// True when the script ran to its end with exit code 0.
    pub fn succeeded(&self) -> bool {
        self.status == "Success"
    }

    /// `Failed (exit 2)`, `TimedOut`, …
    pub fn verdict(&self) -> String {
        if self.code >= 0 && self.status != "Success" {
            format!("{} (exit {})", self.status, self.code)
        } else {
            self.status.clone()
        }
    }
}

/// A sent command: its id and the instance it runs on.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The command id.
    pub command: String,
    /// The instance.
    pub instance: String,
    /// When it was sent.
    pub at: Instant,
}

/// The fleet's Run Command client.
pub struct RunCommand {
    ctx: AwsContext,
    client: aws_sdk_ssm::Client,
    /// How often invocations and the agents' registrations are polled.
    pub poll: Duration,
}

impl RunCommand {
    /// A client for this configuration, polling every `poll`.
    pub fn new(ctx: &AwsContext, config: &aws_config::SdkConfig, poll: Duration) -> RunCommand {
        RunCommand {
            ctx: ctx.clone(),
            client: aws_sdk_ssm::Client::new(config),
            poll,
        }
    }

    /// Instances among `ids` whose agent Systems Manager sees online.
    pub async fn online(&self, ids: &[String]) -> Result<Vec<String>> {
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
                    self.client
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

    /// Waits until Systems Manager sees every instance online, at most `bound`; a stop request
    /// ends it at once.
    pub async fn wait_online(
        &self,
        ids: &[String],
        bound: Duration,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let since = Instant::now();
        loop {
            let online = self.online(ids).await?;
            let missing: Vec<&str> = ids
                .iter()
                .filter(|i| !online.contains(i))
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if since.elapsed() >= bound {
                return Err(Error::Infra(format!(
                    "Systems Manager does not see {} online after {} s (the trial's infra.ready-timeout): is the SSM agent running there, and does the instance profile allow AmazonSSMManagedInstanceCore?",
                    missing.join(", "),
                    bound.as_secs()
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = cancel.cancelled() => return Err(Error::Interrupted),
            }
        }
    }

    /// Sends `script` to one instance; its `executionTimeout` is `timeout`.
    pub async fn send(
        &self,
        instance: &str,
        script: Vec<String>,
        timeout: Duration,
        comment: &str,
    ) -> Result<Sent> {
        let out = self
            .ctx
            .call_not_repeated("ssm:SendCommand", || {
                self.client
                    .send_command()
                    .document_name(DOCUMENT)
                    .instance_ids(instance)
                    .comment(comment)
                    .parameters("commands", script.clone())
                    .parameters("executionTimeout", vec![timeout.as_secs().to_string()])
                    .send()
            })
            .await?;
        let command = out
            .command()
            .and_then(|c| c.command_id())
            .map(str::to_string)
            .ok_or_else(|| Error::Infra("ssm:SendCommand answered without a command id".into()))?;
        Ok(Sent {
            command,
            instance: instance.into(),
            at: Instant::now(),
        })
    }

    /// The invocation of a sent command (`None` while SSM does not know it yet).
    pub async fn invocation(&self, sent: &Sent) -> Result<Option<Invocation>> {
        let asked = self
            .ctx
            .call("ssm:GetCommandInvocation", || {
                self.client
                    .get_command_invocation()
                    .command_id(&sent.command)
                    .instance_id(&sent.instance)
                    .send()
            })
            .await;
        match asked {
            Ok(o) => Ok(Some(Invocation {
                status: o
                    .status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                code: o.response_code(),
                stdout: o.standard_output_content().unwrap_or("").to_string(),
                stderr: o.standard_error_content().unwrap_or("").to_string(),
            })),
            // The error names AWS's code (see `aws::sdk_error`).
            Err(e) if e.to_string().contains("InvocationDoesNotExist") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Cancels a command on its instance (the agent kills its processes); failures are logged.
    pub async fn cancel(&self, sent: &Sent) {
        if let Err(e) = self
            .ctx
            .call("ssm:CancelCommand", || {
                self.client
                    .cancel_command()
                    .command_id(&sent.command)
                    .instance_ids(&sent.instance)
                    .send()
            })
            .await
        {
            tracing::warn!("{}: {e}", sent.instance);
        }
    }

    /// Runs a short script on each instance and waits for every invocation to end (at most
    /// `bound`, after which the rest are cancelled and reported `TimedOut`; a stop request
    /// cancels them and ends it). Each invocation comes with the time from sending to seeing
    /// it end.
    pub async fn run_on_each(
        &self,
        instances: &[String],
        script: impl Fn(&str) -> Vec<String>,
        bound: Duration,
        comment: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<(Sent, Invocation, Duration)>> {
        let mut sent = Vec::new();
        for i in instances {
            sent.push(self.send(i, script(i), bound, comment).await?);
        }
        let mut ends: Vec<Option<(Invocation, Duration)>> = vec![None; sent.len()];
        let since = Instant::now();
        loop {
            for (s, end) in sent.iter().zip(ends.iter_mut()) {
                if end.is_some() {
                    continue;
                }
                match self.invocation(s).await {
                    Ok(Some(inv)) if inv.ended() => *end = Some((inv, s.at.elapsed())),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("{}: {e}", s.instance),
                }
            }
            if ends.iter().all(Option::is_some) {
                break;
            }
            let stop = cancel.is_cancelled();
            if stop || since.elapsed() >= bound {
                for (s, end) in sent.iter().zip(ends.iter_mut()) {
                    if end.is_none() {
                        self.cancel(s).await;
                        *end = Some((
                            Invocation {
                                status: "TimedOut".into(),
                                code: -1,
                                stdout: String::new(),
                                stderr: format!(
                                    "not ended {} s after it was sent",
                                    bound.as_secs()
                                ),
                            },
                            s.at.elapsed(),
                        ));
                    }
                }
                if stop {
                    return Err(Error::Interrupted);
                }
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = cancel.cancelled() => {}
            }
        }
        Ok(sent
            .into_iter()
            .zip(ends)
            .map(|(s, e)| {
                let (inv, took) = e.expect("every invocation ended");
                (s, inv, took)
            })
            .collect())
    }
}
