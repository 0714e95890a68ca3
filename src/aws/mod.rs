//! AWS providers: client set-up, the account guard, and (in submodules) auto-scaling control.
//!
//! Every client gets explicit timeouts (the SDK has none: a silent endpoint would hang forever);
//! every call goes through one retry policy ([`retry`]: throttling and transient errors, capped
//! exponential backoff with full jitter, until a deadline), the SDK's own retries being off.
//! With an endpoint override (moto, LocalStack) the credential chain never probes the instance
//! metadata service.

pub mod bucket;
pub mod claim_tags;
pub mod cloudwatch;
pub mod console;
pub mod database;
pub mod deployment;
pub mod history;
pub mod launch;
pub mod lock;
pub mod publish;
pub mod refresh;
pub mod results;
pub mod retry;
pub mod scaler;
pub mod stores;

use std::time::Duration;

use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;

use crate::error::{Error, Result};
use crate::trial::model::AwsSpec;

/// True for an endpoint on this machine: an emulator (moto, LocalStack), whose CloudWatch series
/// are whatever a rehearsal put there, never what a deployment did.
pub fn is_emulator(endpoint: &str) -> bool {
    url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| h == "localhost" || h == "::1" || h == "[::1]" || h.starts_with("127."))
}

/// Timeouts every AWS client uses.
#[derive(Debug, Clone, Copy)]
pub struct AwsTimeouts {
    /// TCP/TLS connect.
    pub connect: Duration,
    /// Waiting for response bytes.
    pub read: Duration,
    /// One attempt.
    pub attempt: Duration,
    /// All attempts of one call, retries and their pauses included (a restore has its own
    /// deadline instead: the restore budget).
    pub operation: Duration,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        AwsTimeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(15),
            attempt: Duration::from_secs(20),
            operation: Duration::from_secs(60),
        }
    }
}

impl AwsTimeouts {
    /// Tighter bounds for one attempt of a restore call: a frozen endpoint costs 10 s an
    /// attempt, and the restore tries again until its budget is spent.
    pub fn restore() -> AwsTimeouts {
        AwsTimeouts {
            connect: Duration::from_secs(3),
            read: Duration::from_secs(8),
            attempt: Duration::from_secs(10),
            operation: Duration::from_secs(25),
        }
    }

    /// The SDK's timeouts: one attempt each (the retry policy bounds the whole call).
    fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .read_timeout(self.read)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.attempt)
            .build()
    }
}

/// A loaded AWS configuration for one environment.
#[derive(Clone, Debug)]
pub struct AwsContext {
    /// The SDK configuration all clients are built from.
    pub config: SdkConfig,
    /// Where requests go (for error messages).
    pub endpoint: String,
    /// The account the environment declares.
    pub account: String,
    /// The named profile, when the environment gives one.
    pub profile: Option<String>,
    /// The clients' timeouts and the bound on one call's retries.
    pub timeouts: AwsTimeouts,
    /// AWS's clock minus ours (seconds), measured once, applied to every AWS timestamp.
    clock: std::sync::Arc<tokio::sync::OnceCell<f64>>,
}

/// The deepest message of an error's chain: the cause a person can act on.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// One line saying why no credentials were found and what to do, never an SDK debug dump.
pub fn explain_credentials(
    e: &aws_credential_types::provider::error::CredentialsError,
    profile: Option<&str>,
) -> String {
    use aws_credential_types::provider::error::CredentialsError as E;
    // One line: a chain's "Attempted:" list becomes `; `-separated.
    let cause = root_cause(e)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let lower = cause.to_ascii_lowercase();
    let profile_name = profile
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_PROFILE").ok());
    let named = profile_name
        .as_deref()
        .map(|p| format!("profile `{p}`"))
        .unwrap_or_else(|| "the default profile".into());
    let sso_login = format!(
        "aws sso login{}",
        profile_name
            .as_deref()
            .map(|p| format!(" --profile {p}"))
            .unwrap_or_default()
    );
    if lower.contains("expired") || lower.contains("sso") && lower.contains("token") {
        return format!("the AWS SSO session of {named} has expired or is missing ({cause}): run `{sso_login}` and try again");
    }
    if lower.contains("profile")
        && (lower.contains("not defined") || lower.contains("did not contain"))
    {
        return format!("AWS {named} is not defined in your AWS config (~/.aws/config, or AWS_CONFIG_FILE): check `aws.profile` in the environment file and AWS_PROFILE");
    }
    match e {
        E::CredentialsNotLoaded(_) => format!(
            "no AWS credentials found for {named}: set `aws.profile` in the environment file or AWS_PROFILE, export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `{sso_login}`"
        ),
        E::ProviderTimedOut(_) => format!("looking up AWS credentials for {named} timed out ({cause})"),
        _ => format!("the AWS credentials of {named} could not be loaded: {cause}"),
    }
}

/// An error and its causes, each said once, on one line (`a: b: c`): never a Debug dump.
pub fn causes<E: std::error::Error + ?Sized>(e: &E) -> String {
    let mut said: Vec<String> = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !said.iter().any(|s| s.contains(&text)) {
            said.push(text);
        }
        next = cause.source();
    }
    said.join(": ")
}

/// Turns an SDK error into an [`Error::Infra`] naming the operation, the endpoint and the cause
/// (the service's error code and message, or the transport failure), never a raw response dump.
pub fn sdk_error<E, R>(
    ctx: &AwsContext,
    operation: &str,
    e: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> Error
where
    E: std::error::Error + aws_smithy_types::error::metadata::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let why = match &e {
        SdkError::TimeoutError(_) => "timed out".to_string(),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            "timed out (the endpoint accepted the connection but did not answer)".to_string()
        }
        SdkError::DispatchFailure(d) if d.is_io() => {
            format!("could not reach it: {}", causes(&e))
        }
        SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(code), msg) if is_access_denied(code) => {
                    access_denied(operation, code, msg.unwrap_or(""))
                }
                (Some(code), msg) => {
                    format!("{code}: {} (HTTP {})", msg.unwrap_or(""), se.raw().status())
                }
                // An error body in another shape than the SDK expects (moto's awsQuery
                // errors): its code, when it has one, still says what happened.
                (None, _) => match se.raw().error_code() {
                    Some(code) if is_access_denied(&code) => access_denied(operation, &code, ""),
                    Some(code) => format!("{code} (HTTP {})", se.raw().status()),
                    None => format!(
                        "HTTP {} with a body the SDK could not read",
                        se.raw().status()
                    ),
                },
            }
        }
        SdkError::ResponseError(_) => {
            "a response the SDK could not read (is this an AWS endpoint?)".to_string()
        }
        _ => causes(&e),
    };
    Error::Infra(format!("AWS {operation} at {}: {why}", ctx.endpoint))
}

/// The message of a call the credentials' policies do not allow: the permission it needs, and
/// where the whole list comes from.
fn access_denied(operation: &str, code: &str, message: &str) -> String {
    format!(
        "access denied: the credentials lack the IAM permission `{}` (`trialrunner iam-policy TRIAL --env ENV` prints every permission the campaign needs) ({code}{}{message})",
        permission_of(operation),
        if message.is_empty() { "" } else { ": " }
    )
}

/// True for the error codes AWS services answer a call the caller's policies do not allow with.
pub fn is_access_denied(code: &str) -> bool {
    code.starts_with("AccessDenied")
        || matches!(
            code,
            "UnauthorizedOperation" | "AuthorizationError" | "UnauthorizedAccess"
        )
}

/// The IAM action an operation name of [`AwsContext::call`] needs: the name itself
/// (`autoscaling:UpdateAutoScalingGroup`) without a note in brackets, except where S3's
/// operations and its permissions differ (ListObjectsV2 needs `s3:ListBucket`, HeadObject
/// `s3:GetObject`).
pub fn permission_of(operation: &str) -> &str {
    let action = operation.split_whitespace().next().unwrap_or(operation);
    match action {
        "s3:ListObjectsV2" => "s3:ListBucket",
        "s3:HeadObject" => "s3:GetObject",
        other => other,
    }
}

/// The HTTP status of a raw response, for error messages.
pub trait HttpStatus {
    /// The status code.
    fn status(&self) -> u16;
    /// The `<Code>` of an XML error body, when the response has one the SDK did not read.
    fn error_code(&self) -> Option<String> {
        None
    }
}

impl HttpStatus for aws_smithy_runtime_api::client::orchestrator::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }

    fn error_code(&self) -> Option<String> {
        let text = std::str::from_utf8(self.body().bytes()?).ok()?;
        let (_, rest) = text.split_once("<Code>")?;
        let (code, _) = rest.split_once("</Code>")?;
        let code = code.trim();
        (!code.is_empty() && code.len() < 100).then(|| code.to_string())
    }
}

impl AwsContext {
    /// Loads the configuration: region from the environment file, profile, endpoint override
    /// (`--aws-endpoint` wins over the file), timeouts, and a credential chain that skips the
    /// metadata service when an endpoint override is given.
    pub async fn load(
        spec: &AwsSpec,
        endpoint_override: Option<&str>,
        timeouts: AwsTimeouts,
    ) -> Result<AwsContext> {
        let endpoint = endpoint_override
            .map(str::to_string)
            .or_else(|| spec.endpoint.clone());
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(spec.region.clone()))
            .timeout_config(timeouts.timeout_config())
            .retry_config(RetryConfig::disabled());
        if let Some(p) = &spec.profile {
            loader = loader.profile_name(p);
        }
        if let Some(e) = &endpoint {
            loader = loader.endpoint_url(e);
            // No instance metadata behind an emulator: environment variables, then profiles.
            let mut profile = aws_config::profile::ProfileFileCredentialsProvider::builder();
            if let Some(p) = &spec.profile {
                profile = profile.profile_name(p);
            }
            let chain = CredentialsProviderChain::first_try(
                "env",
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            )
            .or_else("profile", profile.build());
            loader = loader.credentials_provider(chain);
        }
        let config = loader.load().await;
        let ctx = AwsContext {
            endpoint: endpoint.unwrap_or_else(|| format!("AWS {}", spec.region)),
            account: spec.account.clone(),
            profile: spec.profile.clone(),
            timeouts,
            config,
            clock: Default::default(),
        };
        ctx.check_credentials().await?;
        Ok(ctx)
    }

    /// The same configuration with other timeouts.
    pub fn with_timeouts(&self, t: AwsTimeouts) -> AwsContext {
        let config = self
            .config
            .to_builder()
            .timeout_config(t.timeout_config())
            .retry_config(RetryConfig::disabled())
            .build();
        AwsContext {
            config,
            timeouts: t,
            ..self.clone()
        }
    }

    /// AWS's clock minus ours, seconds (positive: AWS ahead), measured on first use from the
    /// `Date` header of the endpoint (0 with a warning when it cannot be). Every AWS timestamp
    /// (datapoints, scaling activities, launch times, log events) is moved onto the generator's
    /// clock by subtracting it, so cloud and client share one time axis.
    pub async fn clock_offset(&self) -> f64 {
        *self
            .clock
            .get_or_init(|| async {
                let url = if self.endpoint.starts_with("http") {
                    self.endpoint.clone()
                } else {
                    format!("https://monitoring.{}.amazonaws.com/", self.region())
                };
                cloudwatch::clock_offset(&url).await.unwrap_or_else(|e| {
                    tracing::warn!("clock check: {e}; assuming no offset");
                    0.0
                })
            })
            .await
    }

    /// The same context with a known clock offset (tests, or a clock checked elsewhere).
    pub fn with_clock_offset(self, offset: f64) -> AwsContext {
        AwsContext {
            clock: std::sync::Arc::new(tokio::sync::OnceCell::new_with(Some(offset))),
            ..self
        }
    }

    /// The region of the configuration.
    pub fn region(&self) -> String {
        self.config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default()
    }

    async fn check_credentials(&self) -> Result<()> {
        let provider = self
            .config
            .credentials_provider()
            .ok_or_else(|| Error::Infra("no AWS credentials provider is configured".into()))?;
        match tokio::time::timeout(Duration::from_secs(15), provider.provide_credentials()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::Infra(explain_credentials(&e, self.profile.as_deref()))),
            Err(_) => Err(Error::Infra("looking for AWS credentials took more than 15 s (is a metadata service expected here?)".into())),
        }
    }

    /// The account guard: STS GetCallerIdentity must match the environment's account.
    pub async fn check_account(&self) -> Result<()> {
        let sts = aws_sdk_sts::Client::new(&self.config);
        let me = self
            .call("sts:GetCallerIdentity", || sts.get_caller_identity().send())
            .await?;
        let actual = me.account().unwrap_or("?");
        if actual != self.account {
            return Err(Error::Infra(format!(
                "the credentials are for AWS account {actual}, but the environment says {}: refusing to change anything",
                self.account
            )));
        }
        Ok(())
    }
}
