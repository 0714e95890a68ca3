//! The readiness gate before load (the seed campaign's first conclusion): both well-knowns
//! answer 200 with `service-state: READY`, and one provision + one verify succeed *semantically*
//! (`status: success`; an EAR signed by the well-known's key saying `affirming`).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::load::recorder::{Endpoint, EndpointId, Recorder};
use crate::load::tasks::{DeviceMaterial, Job, Runner, Target, UserCtx};
use crate::provider::{TargetCheck, TargetReport};
use crate::trial::model::NonceMode;

/// Checks a Veraison deployment over HTTP.
pub struct ServiceCheck {
    target: Arc<Target>,
    client: reqwest::Client,
}

impl ServiceCheck {
    /// A check of `target`.
    pub fn new(target: Arc<Target>) -> ServiceCheck {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("HTTP client builds");
        ServiceCheck { target, client }
    }

    async fn well_known(&self, base: &url::Url, service: &str) -> Result<Value> {
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
        let resp = req
            .send()
            .await
            .map_err(|e| Error::Check(format!("{url}: {e}")))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(Error::Check(format!(
                "{url} answered {status}: {}",
                body.get("detail").and_then(Value::as_str).unwrap_or("")
            )));
        }
        match body.get("service-state").and_then(Value::as_str) {
            Some("READY") => Ok(body),
            other => Err(Error::Check(format!(
                "{url}: service-state is {other:?}, not READY"
            ))),
        }
    }
}

#[async_trait]
impl TargetCheck for ServiceCheck {
    async fn check(&self) -> Result<TargetReport> {
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
        let device = DeviceMaterial::new(&self.target.release, 0x5eed_c4ec, 0);
        let eps = ["submit", "new", "evidence", "delete"].map(|n| Endpoint {
            method: "POST".into(),
            name: n.into(),
            task: "check".into(),
        });
        let recorder = Recorder::new(eps.to_vec());
        let runner = Runner {
            client: &self.client,
            target: &self.target,
            recorder: &recorder,
            token_endpoint: None,
            ear_key: Some(&key),
        };
        let mut ctx = UserCtx {
            device: &device,
            nonce: NonceMode::Fresh,
            intended: None,
            submissions: 0,
            user: 0,
            connect_failed: false,
        };
        runner
            .run(
                &Job::Provision {
                    submit: EndpointId(0),
                },
                &mut ctx,
            )
            .await;
        runner
            .run(
                &Job::Verify {
                    new_session: EndpointId(1),
                    evidence: EndpointId(2),
                    delete: EndpointId(3),
                },
                &mut ctx,
            )
            .await;
        let failures = recorder.failure_groups();
        if !failures.is_empty() {
            let what: Vec<String> = failures
                .iter()
                .map(|f| format!("{} ({}): {}", f.name, f.class, f.message))
                .collect();
            return Err(Error::Check(format!(
                "the smoke provision + verify failed: {}",
                what.join("; ")
            )));
        }
        report.notes.push(
            "smoke provision + verify: success, EAR affirming and signed by the well-known key"
                .into(),
        );
        Ok(report)
    }
}
