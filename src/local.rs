//! Local providers: the Veraison stand-in's store, cleared and counted over its admin API.

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::provider::{SessionCache, StoreCounts, StoreDriver};

/// The stand-in's store (and its sessions), over `/standin/v1/stores` and `/standin/v1/sessions`.
pub struct StandinStores {
    url: url::Url,
    sessions: url::Url,
    client: reqwest::Client,
}

impl StandinStores {
    /// A driver for the stand-in at `base`.
    pub fn new(base: &url::Url) -> StandinStores {
        let url = base.join("/standin/v1/stores").expect("path joins");
        let sessions = base.join("/standin/v1/sessions").expect("path joins");
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("HTTP client builds");
        StandinStores {
            url,
            sessions,
            client,
        }
    }

    async fn call(&self, method: reqwest::Method) -> Result<serde_json::Value> {
        self.call_at(&self.url, method).await
    }

    async fn call_at(&self, url: &url::Url, method: reqwest::Method) -> Result<serde_json::Value> {
        // A stand-in started a moment ago (`standin … &` then `run`) may not listen yet: give
        // a refused connection a few seconds before calling it unreachable.
        let started = std::time::Instant::now();
        let resp = loop {
            match self
                .client
                .request(method.clone(), url.clone())
                .send()
                .await
            {
                Ok(r) => break r,
                Err(e) if e.is_connect() && started.elapsed().as_secs() < 10 => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await
                }
                Err(e) => return Err(crate::load::tasks::unreachable(url, &e)),
            }
        };
        if !resp.status().is_success() {
            return Err(Error::Infra(format!(
                "stand-in at {url} answered {}",
                resp.status()
            )));
        }
        resp.json()
            .await
            .map_err(|e| Error::Infra(format!("stand-in at {url}: {e}")))
    }
}

fn counts(v: &serde_json::Value) -> StoreCounts {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, n)| n.as_u64().map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl StoreDriver for StandinStores {
    fn describe(&self) -> String {
        format!("the stand-in's store at {}", self.url)
    }

    async fn count(&self) -> Result<StoreCounts> {
        Ok(counts(&self.call(reqwest::Method::GET).await?))
    }

    async fn clear(&self) -> Result<StoreCounts> {
        Ok(counts(&self.call(reqwest::Method::DELETE).await?["before"]))
    }
}

#[async_trait]
impl SessionCache for StandinStores {
    async fn flush(&self) -> Result<()> {
        self.call_at(&self.sessions, reqwest::Method::DELETE)
            .await
            .map(drop)
    }
}
