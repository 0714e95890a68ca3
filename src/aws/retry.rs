//! One retry policy for every AWS call the tool makes: throttling and transient failures (5xx,
//! timeouts, connection errors) are tried again with capped exponential backoff and full
//! jitter (AWS's own guidance) until a deadline; anything else (access denied, a validation
//! error, a group that does not exist) fails at once.
//!
//! The SDK's own retries are off on every client ([`super::AwsContext::load`]): its standard
//! mode keeps a client-side retry quota (a token bucket) that stops retrying altogether under
//! sustained throttling, after which a restore would give up seconds into its 90 s budget.
//! Here the deadline is the only limit: a campaign's reads get [`super::AwsTimeouts::operation`]
//! each, a restore spends the restore budget.

use std::future::Future;
use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use rand::Rng;
use tokio::time::Instant;

use super::{sdk_error, AwsContext, HttpStatus};
use crate::error::{Error, Result};

/// What a failed call says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The service asked us to slow down.
    Throttled,
    /// It may answer next time: a 5xx, a timeout, a connection that failed.
    Transient,
    /// It will answer the same: say so now.
    Permanent,
}

/// Which failures a call is tried again after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Throttling and transient failures: the call reads, or sets a value (doing it twice is
    /// doing it once).
    Idempotent,
    /// Throttling only: refused before AWS acted.
    OnlyRefused,
}

/// Error codes AWS services use for throttling.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "EC2ThrottledException",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
];

/// Error codes of failures on AWS's side that a later attempt may not meet.
const TRANSIENT: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// The verdict on an SDK error.
pub fn verdict<E, R>(e: &SdkError<E, R>) -> Verdict
where
    E: ProvideErrorMetadata,
    R: HttpStatus,
{
    match e {
        SdkError::TimeoutError(_) => Verdict::Transient,
        SdkError::DispatchFailure(d) if d.is_user() => Verdict::Permanent,
        SdkError::DispatchFailure(_) => Verdict::Transient,
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            let status = se.raw().status();
            if THROTTLING.contains(&code) || status == 429 {
                Verdict::Throttled
            } else if code.contains("NotImplemented") || status == 501 {
                // Never transient (moto answers 500 NotImplementedError for calls it lacks).
                Verdict::Permanent
            } else if TRANSIENT.contains(&code) || status >= 500 {
                Verdict::Transient
            } else {
                Verdict::Permanent
            }
        }
        // A response the SDK could not read, a request it could not build: no endpoint that
        // answers that way today will answer otherwise in a second.
        _ => Verdict::Permanent,
    }
}

/// Capped exponential backoff with full jitter: the pause before attempt `n + 1` is uniform in
/// `[0, min(cap, base × 2^n))`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(4),
        }
    }
}

impl Backoff {
    /// The ceiling of the pause after `failures` failed attempts (1 = after the first).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doubled = self
            .base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        doubled.min(self.cap)
    }

    /// A pause after `failures` failed attempts: full jitter under the ceiling.
    pub fn pause(&self, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures).as_secs_f64();
        Duration::from_secs_f64(rand::thread_rng().gen_range(0.0..=ceiling))
    }
}

impl AwsContext {
    /// One AWS call, tried again on throttling and transient failures until the context's
    /// operation bound ([`super::AwsTimeouts::operation`]) has passed.
    pub async fn call<T, E, R, F, Fut>(&self, operation: &str, call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, R>>>,
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug + HttpStatus,
    {
        let deadline = Instant::now() + self.timeouts.operation;
        self.call_until(operation, deadline, call).await
    }

    /// A call that starts something and must not start it twice (`ssm:SendCommand`: a second
    /// worker on the instance): tried again only when AWS refused it before acting (throttling),
    /// never after a failure whose request may have been carried out (a timeout, a 5xx, a
    /// connection lost mid-request); that error says so.
    pub async fn call_not_repeated<T, E, R, F, Fut>(&self, operation: &str, call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, R>>>,
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug + HttpStatus,
    {
        let deadline = Instant::now() + self.timeouts.operation;
        self.call_with(operation, deadline, Repeat::OnlyRefused, call)
            .await
    }

    /// One AWS call, tried again on throttling and transient failures until `deadline`; each
    /// attempt also ends at the deadline. The error names the operation, the endpoint, the last
    /// cause and how many attempts it took.
    pub async fn call_until<T, E, R, F, Fut>(
        &self,
        operation: &str,
        deadline: Instant,
        call: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, R>>>,
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug + HttpStatus,
    {
        self.call_with(operation, deadline, Repeat::Idempotent, call)
            .await
    }

    async fn call_with<T, E, R, F, Fut>(
        &self,
        operation: &str,
        deadline: Instant,
        repeat: Repeat,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, R>>>,
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug + HttpStatus,
    {
        let started = Instant::now();
        let backoff = Backoff::default();
        let mut failures = 0u32;
        loop {
            let e = match tokio::time::timeout_at(deadline, call()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(Error::Infra(format!(
                    "AWS {operation} at {}: timed out (no answer within {:.0} s, {} attempt(s))",
                    self.endpoint,
                    started.elapsed().as_secs_f64(),
                    failures + 1
                )))
                }
            };
            failures += 1;
            let verdict = verdict(&e);
            let pause = backoff.pause(failures);
            if verdict == Verdict::Transient && repeat == Repeat::OnlyRefused {
                return Err(match sdk_error(self, operation, e) {
                    Error::Infra(m) => Error::Infra(format!(
                        "{m}; not tried again: it may have been carried out, and a second \
                         would do it twice"
                    )),
                    other => other,
                });
            }
            if verdict == Verdict::Permanent || Instant::now() + pause >= deadline {
                let err = sdk_error(self, operation, e);
                return Err(match err {
                    Error::Infra(m) if failures > 1 => Error::Infra(format!(
                        "{m} (after {failures} attempts over {:.0} s)",
                        started.elapsed().as_secs_f64()
                    )),
                    other => other,
                });
            }
            tracing::debug!(
                operation,
                failures,
                ?verdict,
                pause_ms = pause.as_millis() as u64,
                "AWS call failed; trying again"
            );
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    use aws_sdk_ssm::operation::send_command::SendCommandError;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    type Failure = SdkError<SendCommandError, HttpResponse>;

    fn ctx() -> AwsContext {
        AwsContext {
            config: aws_config::SdkConfig::builder().build(),
            endpoint: "http://127.0.0.1:9".into(),
            account: "123456789012".into(),
            profile: None,
            timeouts: super::super::AwsTimeouts {
                operation: Duration::from_secs(2),
                ..Default::default()
            },
            clock: Default::default(),
        }
    }

    fn throttled() -> Failure {
        let raw = HttpResponse::new(400.try_into().unwrap(), SdkBody::empty());
        let err =
            SendCommandError::generic(ErrorMetadata::builder().code("ThrottlingException").build());
        SdkError::service_error(err, raw)
    }

    /// `ssm:SendCommand` whose answer was lost (a timeout: the command may be running) is not
    /// sent again, and says why; throttled (refused before acting) it is; an idempotent call
    /// is tried again after either.
    #[tokio::test]
    async fn a_call_not_repeated_is_tried_again_only_when_refused_before_acting() {
        let ctx = ctx();
        let attempts = AtomicU32::new(0);
        let lost = ctx
            .call_not_repeated("ssm:SendCommand", || {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), Failure>(SdkError::timeout_error("no answer")) }
            })
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert!(lost.contains("not tried again"), "{lost}");
        let attempts = AtomicU32::new(0);
        ctx.call_not_repeated("ssm:SendCommand", || {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err::<(), Failure>(throttled())
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            3,
            "throttled twice, then sent"
        );
        let attempts = AtomicU32::new(0);
        let _ = ctx
            .call("autoscaling:DescribeAutoScalingGroups", || {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), Failure>(SdkError::timeout_error("no answer")) }
            })
            .await;
        assert!(attempts.load(Ordering::SeqCst) > 1, "a read is tried again");
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_jitters_below_the_ceiling() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(6), Duration::from_millis(3200));
        assert_eq!(b.ceiling(7), Duration::from_secs(4));
        assert_eq!(b.ceiling(500), Duration::from_secs(4), "no overflow");
        let pauses: Vec<Duration> = (0..200).map(|_| b.pause(7)).collect();
        assert!(pauses.iter().all(|p| *p <= Duration::from_secs(4)));
        assert!(
            pauses.iter().any(|p| *p < Duration::from_secs(1))
                && pauses.iter().any(|p| *p > Duration::from_secs(3)),
            "full jitter spreads over the whole range"
        );
    }
}
