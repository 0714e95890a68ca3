//! OAuth2 password-grant tokens for provisioning: fetched once per environment (not per user),
//! shared by every virtual user, refreshed before they expire. A fetch during a run is recorded
//! as its own endpoint, never inside a task's figures.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::secret::{redact, Secret};

/// Password-grant settings with their secrets.
#[derive(Debug, Clone)]
pub struct PasswordGrant {
    /// Token endpoint.
    pub token_url: url::Url,
    /// Client id.
    pub client_id: String,
    /// Client secret, when the client is confidential.
    pub client_secret: Option<Secret>,
    /// User.
    pub username: String,
    /// Password.
    pub password: Secret,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A shared, refreshing bearer token.
pub struct TokenSource {
    grant: PasswordGrant,
    cached: tokio::sync::Mutex<Option<(Secret, Instant)>>,
    fetches: std::sync::atomic::AtomicU64,
}

/// A token fetch: the token and how long the request took.
pub struct Fetched {
    /// Latency of the token request, µs.
    pub latency_us: u64,
    /// Error text (secrets redacted) when the fetch failed.
    pub error: Option<String>,
}

impl TokenSource {
    /// A source for this grant; nothing is fetched yet.
    pub fn new(grant: PasswordGrant) -> TokenSource {
        TokenSource {
            grant,
            cached: tokio::sync::Mutex::new(None),
            fetches: Default::default(),
        }
    }

    /// How many token requests were made so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The token endpoint's path (for naming the endpoint in results).
    pub fn token_path(&self) -> String {
        self.grant.token_url.path().to_string()
    }

    /// The current token; fetches (once, for all waiters) when there is none or it is within
    /// 20 % of its lifetime of expiring. Returns the fetch, if one happened, for recording.
    pub async fn bearer(&self, client: &reqwest::Client) -> (Option<Secret>, Option<Fetched>) {
        let mut cached = self.cached.lock().await;
        if let Some((token, refresh_at)) = cached.as_ref() {
            if Instant::now() < *refresh_at {
                return (Some(token.clone()), None);
            }
        }
        let started = Instant::now();
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = self.fetch(client).await;
        let latency_us = started.elapsed().as_micros() as u64;
        match result {
            Ok((token, lifetime)) => {
                let refresh_at = started + lifetime.mul_f64(0.8);
                *cached = Some((token.clone(), refresh_at));
                (
                    Some(token),
                    Some(Fetched {
                        latency_us,
                        error: None,
                    }),
                )
            }
            Err(e) => (
                None,
                Some(Fetched {
                    latency_us,
                    error: Some(e),
                }),
            ),
        }
    }

    async fn fetch(&self, client: &reqwest::Client) -> Result<(Secret, Duration), String> {
        let g = &self.grant;
        let mut form = vec![
            ("grant_type", "password"),
            ("client_id", g.client_id.as_str()),
            ("username", g.username.as_str()),
            ("password", g.password.expose()),
            ("scope", "openid"),
        ];
        if let Some(s) = &g.client_secret {
            form.push(("client_secret", s.expose()));
        }
        let secrets: Vec<&Secret> = std::iter::once(&g.password)
            .chain(g.client_secret.as_ref())
            .collect();
        let clean = |e: String| redact(&e, &secrets);
        let resp = client
            .post(g.token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| clean(format!("token request to {} failed: {e}", g.token_url)))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| clean(e.to_string()))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(clean(format!(
                "token endpoint {} answered {status}: {}",
                g.token_url,
                text.chars().take(200).collect::<String>()
            )));
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| format!("token endpoint {} did not return a token", g.token_url))?;
        Ok((
            Secret::new(t.access_token),
            Duration::from_secs(t.expires_in.unwrap_or(300)),
        ))
    }
}
