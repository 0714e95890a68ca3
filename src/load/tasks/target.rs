//! Where the target is and how a run speaks to it: its URLs, release and credentials
//! ([`Target`]), the routes parsed once per run ([`Routes`]) and the clients that carry the
//! requests ([`Wire`]); plain HTTP tasks as the environment declares them ([`HttpTask`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

use super::super::auth::TokenSource;
use super::super::http::{Address, HttpClient};
use super::NEW_SESSION_PATH;
use crate::trial::names;
use crate::veraison::release::ReleaseProfile;

/// A plain HTTP task, resolved (body read, headers parsed).
#[derive(Debug, Clone)]
pub struct HttpTask {
    /// Absolute URL (resolved once, not per request).
    pub url: url::Url,
    /// The request name in results (the path as written).
    pub name: String,
    /// Method.
    pub method: Method,
    /// Extra headers, in order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: Bytes,
    /// Expected status.
    pub expect: StatusCode,
    /// Send the provisioning bearer token.
    pub auth: bool,
}

/// Where the target is and how to speak to it; knows nothing of how it is deployed.
pub struct Target {
    /// Provisioning base URL.
    pub provisioning: url::Url,
    /// Verification base URL.
    pub verification: url::Url,
    /// The release's wire contract.
    pub release: ReleaseProfile,
    /// Provisioning bearer tokens, when the deployment needs them.
    pub tokens: Option<Arc<TokenSource>>,
    /// Plain HTTP tasks by name.
    pub http_tasks: BTreeMap<String, HttpTask>,
    /// CA bundles and client certificate of the environment.
    pub tls: super::super::tls::ClientTls,
}

/// Where each request of a run goes, parsed once (never per request).
#[derive(Debug, Clone)]
pub struct Routes {
    pub(super) wk_provisioning: Address,
    pub(super) wk_verification: Address,
    pub(super) submit: Address,
    /// newSession without its query (the nonce is added per session).
    pub(super) new_session: Address,
    pub(super) http: BTreeMap<String, Address>,
}

impl Routes {
    /// The routes of a target; an error names the URL that cannot be spoken to.
    pub fn of(target: &Target) -> Result<Routes, String> {
        let p = Address::of(&target.provisioning)?;
        let v = Address::of(&target.verification)?;
        Ok(Routes {
            wk_provisioning: p.with_path(names::WK_PROVISIONING)?,
            wk_verification: v.with_path(names::WK_VERIFICATION)?,
            submit: p.with_path(names::SUBMIT)?,
            new_session: v.with_path(NEW_SESSION_PATH)?,
            http: target
                .http_tasks
                .iter()
                .map(|(name, t)| Ok((name.clone(), Address::of(&t.url)?)))
                .collect::<Result<_, String>>()?,
        })
    }
}

/// How a run's requests travel: the users' connection settings and routes, and the reqwest
/// client of everything outside the measured path (token fetches).
pub struct Wire {
    /// The users' connections' settings.
    pub http: HttpClient,
    /// Where each request goes.
    pub routes: Routes,
    /// The client of the token endpoint.
    pub client: reqwest::Client,
}

impl Wire {
    /// The wire to a target, every request bounded by `timeout` (connecting by at most 10 s).
    pub fn new(target: &Target, timeout: std::time::Duration) -> crate::error::Result<Wire> {
        let connect = timeout.min(std::time::Duration::from_secs(10));
        let infra = |e: String| crate::error::Error::Infra(format!("the target's URLs: {e}"));
        Ok(Wire {
            http: HttpClient::new(target.tls.config(), connect, timeout),
            routes: Routes::of(target).map_err(infra)?,
            client: target
                .tls
                .builder()
                .timeout(timeout)
                .connect_timeout(connect)
                .tcp_nodelay(true)
                .build()
                .map_err(|e| infra(format!("building the HTTP client: {e}")))?,
        })
    }
}

/// Parses header pairs for an HTTP task.
pub fn header_map(
    headers: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    headers
        .iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("`{k}` is not a header name"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("header `{k}` has an invalid value"))?;
            Ok((name, value))
        })
        .collect()
}
