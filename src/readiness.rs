//! The readiness gate before load (the seed campaign's first conclusion): both well-knowns
//! answer 200 with `service-state: READY`, and one provision + one verify succeed *semantically*
//! (`status: success`; an EAR signed by the well-known's key saying `affirming`). A trial of
//! plain HTTP steps only needs none of that: each server its steps aim at answers HTTP.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::load::recorder::Recorder;
use crate::load::tasks::{plan_jobs, DeviceMaterial, Runner, Target, UserCtx, Wire};
use crate::provider::{TargetCheck, TargetReport};
use crate::trial::model::NonceMode;
use crate::trial::TaskRef;

/// Checks a Veraison deployment over HTTP.
pub struct ServiceCheck {
    target: Arc<Target>,
    /// The tasks the trial runs (empty: all of Veraison's): what the check must see work.
    tasks: Vec<TaskRef>,
    client: reqwest::Client,
    /// How long transient failures (refused, timed out, 5xx, not READY) are retried.
    patience: std::time::Duration,
}

/// A failed look at the target, and whether looking again may help.
struct Failed {
    error: Error,
    transient: bool,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Failed {
        Failed {
            error,
            transient: false,
        }
    }
}

impl ServiceCheck {
    /// A check of `target`.
    pub fn new(target: Arc<Target>) -> ServiceCheck {
        let client = target
            .tls
            .builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("HTTP client builds");
        ServiceCheck {
            target,
            tasks: Vec::new(),
            client,
            patience: std::time::Duration::from_secs(60),
        }
    }

    /// The same check, for a trial running `tasks`: one of plain HTTP steps only is checked by
    /// its servers answering, not against Veraison's well-knowns.
    pub fn for_tasks(self, tasks: &[TaskRef]) -> ServiceCheck {
        ServiceCheck {
            tasks: tasks.to_vec(),
            ..self
        }
    }

    /// The same check, retrying transient failures for `patience`.
    pub fn with_patience(self, patience: std::time::Duration) -> ServiceCheck {
        ServiceCheck { patience, ..self }
    }

    async fn well_known(
        &self,
        base: &url::Url,
        service: &str,
    ) -> std::result::Result<Value, Failed> {
        let url = base
            .join(&format!("/.well-known/veraison/{service}"))
            .expect("path joins");
        let mut req = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "*/*");
        if service == "provisioning" && self.target.release.well_known_needs_auth {
            if let Some(t) = &self.target.tokens {
                if let (Some(token), _) = t.bearer(&self.client).await {
                    req = req.bearer_auth(token.expose());
                }
            }
        }
        let resp = req.send().await.map_err(|e| Failed {
            transient: !matches!(
                crate::load::tasks::classify(&e).0,
                crate::load::recorder::FailureClass::Tls
            ),
            error: crate::load::tasks::unreachable(&url, &e),
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let what = format!(
                "{url} answered {status}: {}",
                body.get("detail").and_then(Value::as_str).unwrap_or("")
            );
            return Err(Failed {
                error: if refused_access(status.as_u16()) {
                    self.auth_failure(what).await
                } else {
                    Error::Check(what)
                },
                transient: status.is_server_error(),
            });
        }
        match body.get("service-state").and_then(Value::as_str) {
            Some("READY") => Ok(body),
            other => Err(Failed {
                error: Error::Check(format!("{url}: service-state is {other:?}, not READY")),
                transient: true,
            }),
        }
    }
}

#[async_trait]
impl TargetCheck for ServiceCheck {
    /// Looks until the target is ready, retrying transient failures within `patience` (a
    /// stand-in still starting, a 5xx, a service not READY yet); a semantic failure (a 4xx, a
    /// failed provisioning, an EAR that is not affirming) fails at once.
    async fn check(&self) -> Result<TargetReport> {
        let started = std::time::Instant::now();
        let mut last_said = None::<std::time::Instant>;
        let mut looks = 0u32;
        loop {
            looks += 1;
            match self.check_once().await {
                Ok(mut report) => {
                    if looks > 1 {
                        report.notes.push(format!(
                            "ready after {looks} looks ({:.1} s)",
                            started.elapsed().as_secs_f64()
                        ));
                    }
                    return Ok(report);
                }
                Err(f) if f.transient && started.elapsed() < self.patience => {
                    if last_said.is_none_or(|t| t.elapsed().as_secs() >= 5) {
                        crate::terminal::say(&format!(
                            "target not ready yet ({}); looking again for up to {}",
                            f.error,
                            humantime::format_duration(self.patience)
                        ));
                        last_said = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(f) => return Err(f.error),
            }
        }
    }
}

/// 401 and 403: the credentials, not the service, are what failed (an infrastructure error,
/// exit 3, as the README's table says).
fn refused_access(status: u16) -> bool {
    matches!(status, 401 | 403)
}

impl ServiceCheck {
    /// An authentication failure (exit 3), with the token endpoint's own answer when the
    /// target gets its tokens there (its refusal is why the service refused).
    async fn auth_failure(&self, what: String) -> Error {
        let token = match &self.target.tokens {
            Some(t) => match t.bearer(&self.client).await {
                (None, Some(f)) => f.error.map(|e| format!(" ({e})")).unwrap_or_default(),
                _ => String::new(),
            },
            None => String::new(),
        };
        Error::Infra(format!("authentication failed: {what}{token}"))
    }

    /// One iteration of `tasks` with a device of its own; any failure fails the look (a
    /// connection, timeout, reset or 5xx transiently).
    async fn smoke(
        &self,
        tasks: &[TaskRef],
        ear_key: Option<&crate::veraison::ear::EarKey>,
        what: &str,
    ) -> std::result::Result<(), Failed> {
        let device = DeviceMaterial::new(&self.target.release, 0x5eed_c4ec, 0);
        let (jobs, endpoints, _) = plan_jobs(tasks, &self.target);
        let recorder = Recorder::detached(endpoints);
        let wire = Wire::new(&self.target, std::time::Duration::from_secs(30))?;
        let runner = Runner {
            wire: &wire,
            target: &self.target,
            recorder: &recorder,
            token_endpoint: None,
            ear_key,
            sessions: &std::sync::atomic::AtomicU64::new(0),
        };
        let mut ctx = UserCtx::new(&device, NonceMode::Fresh, 0);
        // A failed step ends the look: a verify after a failed provision would be
        // contraindicated (its device unknown), a consequence read as a semantic failure.
        for job in &jobs {
            runner.run(job, &mut ctx).await;
            if !recorder.failure_groups().is_empty() {
                break;
            }
        }
        let failures = recorder.failure_groups();
        if failures.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = failures
            .iter()
            .map(|f| format!("{} ({}): {}", f.name, f.class, f.message))
            .collect();
        let transient = failures.iter().all(|f| {
            // (a TLS failure is not: no amount of waiting fixes a certificate)
            matches!(f.class.as_str(), "connect" | "timeout" | "reset")
                || f.message.starts_with("HTTP 5")
        });
        let what = format!("the smoke {what} failed: {}", list.join("; "));
        let auth = failures
            .iter()
            .any(|f| f.message.starts_with("HTTP 401") || f.message.starts_with("HTTP 403"));
        Err(Failed {
            error: if auth {
                self.auth_failure(what).await
            } else {
                Error::Check(what)
            },
            transient,
        })
    }

    /// Each server the plain HTTP steps aim at answers HTTP at its root (any status under
    /// 500: the steps' own requests, which may change the target, are the load's, not the
    /// check's); a refused connection, a timeout or a 5xx is "not ready yet".
    async fn servers_answer(&self, steps: &[TaskRef]) -> std::result::Result<Vec<String>, Failed> {
        let mut origins: Vec<url::Url> = Vec::new();
        for step in steps {
            let Some(task) = self.target.http_tasks.get(step.name()) else {
                continue;
            };
            let mut origin = task.url.clone();
            origin.set_path("/");
            origin.set_query(None);
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        let mut answered = Vec::new();
        for url in origins {
            let resp = self
                .client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| Failed {
                    transient: !matches!(
                        crate::load::tasks::classify(&e).0,
                        crate::load::recorder::FailureClass::Tls
                    ),
                    error: crate::load::tasks::unreachable(&url, &e),
                })?;
            let status = resp.status();
            if status.is_server_error() {
                return Err(Failed {
                    error: Error::Check(format!("{url} answered {status}")),
                    transient: true,
                });
            }
            answered.push(format!("{url} ({})", status.as_u16()));
        }
        Ok(answered)
    }

    async fn check_once(&self) -> std::result::Result<TargetReport, Failed> {
        // A trial of plain HTTP steps only may aim at any server: it needs the servers its
        // steps aim at to answer, not Veraison's well-knowns.
        let plain: Vec<TaskRef> = self
            .tasks
            .iter()
            .filter(|t| matches!(t, TaskRef::Http(_)))
            .cloned()
            .collect();
        if !self.tasks.is_empty() && plain.len() == self.tasks.len() {
            let answered = self.servers_answer(&plain).await?;
            let mut report = TargetReport::default();
            report.notes.push(format!(
                "the trial's HTTP servers answer: {}",
                answered.join(", ")
            ));
            return Ok(report);
        }
        let mut report = TargetReport::default();
        let prov = self
            .well_known(&self.target.provisioning, "provisioning")
            .await?;
        let verif = self
            .well_known(&self.target.verification, "verification")
            .await?;
        for (name, v) in [("provisioning", &prov), ("verification", &verif)] {
            report.versions.insert(
                name.into(),
                v.get("version")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .into(),
            );
        }
        let key = verif
            .get("ear-verification-key")
            .and_then(crate::veraison::ear::key_from_jwk)
            .ok_or_else(|| {
                Error::Check(
                    "the verification well-known has no usable ear-verification-key".into(),
                )
            })?;
        // One semantic provision + verify, with a device of its own.
        self.smoke(
            &[TaskRef::Provision, TaskRef::Verify],
            Some(&key),
            "provision + verify",
        )
        .await?;
        report.notes.push(
            "smoke provision + verify: success, EAR affirming and signed by the well-known key"
                .into(),
        );
        Ok(report)
    }
}
