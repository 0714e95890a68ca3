//! What a virtual user does: Veraison's `well-known`, `provision` and `verify` (the 3-request
//! session) and plain HTTP steps. Success is semantic (contract §7): provisioning needs
//! `status == "success"`, verification an EAR whose `ear.status` is `affirming`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::auth::TokenSource;
use super::http::{Address, Connections, HttpClient, HttpError};
use super::recorder::{Endpoint, EndpointId, FailureClass, Kind, Recorder, Sample};
use crate::trial::model::NonceMode;
use crate::trial::TaskRef;
use crate::veraison::ear::{self, EarStatus};
use crate::veraison::psa::{Device, TokenMinter, SEED_NONCE_B64};
use crate::veraison::release::{ReleaseProfile, PSA_EVIDENCE_MEDIA_TYPE};

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
    pub tls: super::tls::ClientTls,
}

/// Where each request of a run goes, parsed once (never per request).
#[derive(Debug, Clone)]
pub struct Routes {
    wk_provisioning: Address,
    wk_verification: Address,
    submit: Address,
    /// newSession without its query (the nonce is added per session).
    new_session: Address,
    http: BTreeMap<String, Address>,
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

const NEW_SESSION_PATH: &str = "/challenge-response/v1/newSession";

/// One device's ready-made requests.
pub struct DeviceMaterial {
    /// The device.
    pub device: Device,
    /// Its CoRIM for the release (fixed id; the corim-store era gets a fresh id per request).
    pub corim: Bytes,
    /// A token for the seed nonce.
    pub seed_token: Bytes,
    /// Re-signs for fresh 32-byte nonces.
    pub minter: TokenMinter,
}

/// The seed nonce, decoded.
pub fn seed_nonce() -> Vec<u8> {
    URL_SAFE
        .decode(SEED_NONCE_B64)
        .expect("the seed nonce is valid base64url")
}

impl DeviceMaterial {
    /// Material for fleet device `index` under a release.
    pub fn new(release: &ReleaseProfile, seed: u64, index: u32) -> DeviceMaterial {
        let device = Device::synthetic(seed, index);
        let corim = device.corim(
            release.corim_profile,
            release.corim_tagged,
            &format!("trialrunner-{seed:x}-{index}"),
        );
        let seed_token = device.token(&seed_nonce());
        let minter = TokenMinter::new(&device, 32);
        DeviceMaterial {
            corim: corim.into(),
            seed_token: seed_token.into(),
            minter,
            device,
        }
    }
}

/// A task and its unit: the endpoint its whole execution records into.
#[derive(Debug, Clone)]
pub struct Job {
    /// What it does.
    pub work: Work,
    /// The task-level endpoint (kind `task`).
    pub unit: EndpointId,
}

/// What a task does, with the request endpoints it records into.
#[derive(Debug, Clone)]
pub enum Work {
    /// Both well-knowns.
    WellKnown {
        /// `GET /.well-known/veraison/provisioning`.
        provisioning: EndpointId,
        /// `GET /.well-known/veraison/verification`.
        verification: EndpointId,
    },
    /// CoRIM submission.
    Provision {
        /// `POST /endorsement-provisioning/v1/submit`.
        submit: EndpointId,
    },
    /// Challenge-response session.
    Verify {
        /// newSession.
        new_session: EndpointId,
        /// Evidence POST.
        evidence: EndpointId,
        /// DELETE.
        delete: EndpointId,
    },
    /// A plain HTTP task.
    Http {
        /// Its name in `http-tasks`.
        name: String,
        /// Its endpoint.
        endpoint: EndpointId,
    },
}

pub use crate::trial::names;

/// Registers endpoints for tasks; returns the jobs and the endpoint list (token endpoint last,
/// when auth is configured).
pub fn plan_jobs(
    tasks: &[TaskRef],
    target: &Target,
) -> (Vec<Job>, Vec<Endpoint>, Option<EndpointId>) {
    let mut eps: Vec<Endpoint> = Vec::new();
    let mut add = |method: &str, name: &str, task: &str, kind: Kind| {
        eps.push(Endpoint {
            method: method.into(),
            name: name.into(),
            task: task.into(),
            kind,
        });
        EndpointId(eps.len() - 1)
    };
    let jobs = tasks
        .iter()
        .map(|t| {
            let work = match t {
                TaskRef::WellKnown => Work::WellKnown {
                    provisioning: add("GET", names::WK_PROVISIONING, "well-known", Kind::Request),
                    verification: add("GET", names::WK_VERIFICATION, "well-known", Kind::Request),
                },
                TaskRef::Provision => Work::Provision {
                    submit: add("POST", names::SUBMIT, "provision", Kind::Request),
                },
                TaskRef::Verify => Work::Verify {
                    new_session: add("POST", names::NEW_SESSION, "verify", Kind::Request),
                    evidence: add("POST", names::SESSION, "verify", Kind::Request),
                    delete: add("DELETE", names::SESSION, "verify", Kind::Request),
                },
                TaskRef::Http(name) => {
                    let h = &target.http_tasks[name];
                    Work::Http {
                        name: name.clone(),
                        endpoint: add(h.method.as_str(), &h.name, name, Kind::Request),
                    }
                }
            };
            let unit_name = match t {
                TaskRef::WellKnown => names::WELL_KNOWN_UNIT.to_string(),
                TaskRef::Provision => names::PROVISION_UNIT.to_string(),
                TaskRef::Verify => names::VERIFY_UNIT.to_string(),
                TaskRef::Http(name) => format!("{name} (task)"),
            };
            let unit = add(names::TASK, &unit_name, t.name(), Kind::Task);
            Job { work, unit }
        })
        .collect();
    let token = target
        .tokens
        .as_ref()
        .map(|t| add("POST", &t.token_path(), "auth", Kind::Request));
    (jobs, eps, token)
}

/// Per-user state.
pub struct UserCtx<'a> {
    /// The user's device.
    pub device: &'a DeviceMaterial,
    /// Nonce handling.
    pub nonce: NonceMode,
    /// Open model: how late this session started because it waited for a slot (its corrected
    /// latency is its service time plus this); `None` in the closed model.
    pub lateness: Option<std::time::Duration>,
    /// CPU the semantic checks took so far (token minting, EAR signature and nonce), ns.
    pub check_cpu_ns: u64,
    /// Counter for unique CoRIM ids (corim-store era).
    pub submissions: u64,
    /// Index of the user (for unique ids).
    pub user: usize,
    /// Set when a request of the last task could not connect (the user backs off).
    pub connect_failed: bool,
    /// The user's own keep-alive connections.
    pub connections: Connections,
}

impl<'a> UserCtx<'a> {
    /// A user's state: its device, the nonce handling, its index.
    pub fn new(device: &'a DeviceMaterial, nonce: NonceMode, user: usize) -> UserCtx<'a> {
        UserCtx {
            device,
            nonce,
            lateness: None,
            check_cpu_ns: 0,
            submissions: 0,
            user,
            connect_failed: false,
            connections: Connections::default(),
        }
    }
}

/// Everything a request needs to be sent and recorded.
pub struct Runner<'a> {
    /// How requests travel.
    pub wire: &'a Wire,
    /// The target.
    pub target: &'a Target,
    /// Where to record.
    pub recorder: &'a Recorder,
    /// The token endpoint's id.
    pub token_endpoint: Option<EndpointId>,
    /// The service's EAR key: every EAR's signature is checked against it (and its nonce
    /// against the session's).
    pub ear_key: Option<&'a ear::EarKey>,
}

/// CPU time of the calling thread, ns (what the semantic checks cost the generator).
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: clock_gettime only writes the timespec we pass.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Reply {
    status: StatusCode,
    location: Option<HeaderValue>,
    body: Bytes,
    sample: Sample,
}

/// A request before it is sent: where, how, with what.
struct Outgoing<'r> {
    method: Method,
    to: &'r Address,
    headers: &'r [(HeaderName, HeaderValue)],
    body: Bytes,
}

impl<'r> Outgoing<'r> {
    fn new(method: Method, to: &'r Address, headers: &'r [(HeaderName, HeaderValue)]) -> Self {
        Outgoing {
            method,
            to,
            headers,
            body: Bytes::new(),
        }
    }

    fn body(self, body: Bytes) -> Self {
        Outgoing { body, ..self }
    }
}

/// `Accept: */*`, sent with every Veraison request.
fn accept() -> (HeaderName, HeaderValue) {
    (ACCEPT, HeaderValue::from_static("*/*"))
}

/// Classifies a transport error for the failure table.
pub fn classify(e: &reqwest::Error) -> (FailureClass, String) {
    let mut root: &dyn std::error::Error = e;
    let mut io_kind = None;
    let mut tls = false;
    while let Some(next) = root.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
            tls |= io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        }
        tls |= next.downcast_ref::<rustls::Error>().is_some();
        root = next;
    }
    let detail = root.to_string();
    let class = if e.is_timeout() {
        FailureClass::Timeout
    } else if tls || detail.contains("certificate") {
        FailureClass::Tls
    } else if e.is_connect() {
        FailureClass::Connect
    } else if matches!(
        io_kind,
        Some(
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        )
    ) || detail.contains("connection closed")
        || detail.contains("reset")
    {
        FailureClass::Reset
    } else {
        FailureClass::Transport
    };
    let message = match class {
        FailureClass::Timeout => "request timed out".to_string(),
        FailureClass::Tls => match e.url() {
            Some(u) => format!(
                "TLS with {}: {detail}: trust its CA with `tls: {{ ca-file: … }}` in the environment",
                u.origin().ascii_serialization()
            ),
            None => detail,
        },
        // Name the address that refused: it is what the user must start or open.
        FailureClass::Connect => match e.url().and_then(address_of) {
            Some(addr) => format!("{detail} at {addr}"),
            None => detail,
        },
        _ => detail,
    };
    (class, message)
}

/// `host:port` of a URL.
pub fn address_of(url: &url::Url) -> Option<String> {
    Some(format!(
        "{}:{}",
        url.host_str()?,
        url.port_or_known_default()?
    ))
}

/// What to do about an address that refuses connections.
pub fn unreachable_hint(addr: &str) -> String {
    let local =
        addr.starts_with("127.") || addr.starts_with("localhost") || addr.starts_with("[::1]");
    if local {
        let port = addr.rsplit(':').next().unwrap_or("8443");
        format!("is the stand-in running? `trialrunner standin --listen 127.0.0.1:{port}`")
    } else {
        "is the deployment up, and does its security group admit this host?".into()
    }
}

fn status_message(status: StatusCode, body: &[u8]) -> String {
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string));
    match detail {
        Some(d) => format!("HTTP {}: {d}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

impl Runner<'_> {
    async fn send(
        &self,
        ep: EndpointId,
        req: Outgoing<'_>,
        ctx: &mut UserCtx<'_>,
    ) -> Option<Reply> {
        let start = Instant::now();
        self.recorder.note_sent();
        let result = self
            .wire
            .http
            .send(
                &mut ctx.connections,
                req.method,
                req.to,
                req.headers,
                req.body,
            )
            .await;
        self.recorder.note_over();
        let end = Instant::now();
        let sample = Sample {
            end,
            service_us: (end - start).as_micros() as u64,
            corrected_us: None,
            bytes: 0,
            ok: false,
        };
        match result {
            Ok(r) => Some(Reply {
                status: r.status,
                location: r.location,
                sample: Sample {
                    bytes: r.body.len() as u64,
                    ..sample
                },
                body: r.body,
            }),
            Err(HttpError { class, message }) => {
                self.recorder.record_failure(ep, sample, class, &message);
                if class == FailureClass::Connect {
                    ctx.connect_failed = true;
                }
                None
            }
        }
    }

    fn verdict(
        &self,
        ep: EndpointId,
        reply: &Reply,
        outcome: Result<(), (FailureClass, String)>,
    ) -> bool {
        match outcome {
            Ok(()) => {
                self.recorder.record(
                    ep,
                    Sample {
                        ok: true,
                        ..reply.sample
                    },
                );
                true
            }
            Err((class, msg)) => {
                self.recorder.record_failure(ep, reply.sample, class, &msg);
                false
            }
        }
    }

    fn expect_status(reply: &Reply, want: StatusCode) -> Result<(), (FailureClass, String)> {
        if reply.status == want {
            Ok(())
        } else {
            Err((
                FailureClass::Status,
                status_message(reply.status, &reply.body),
            ))
        }
    }

    /// The provisioning bearer header, fetching a token if needed (recorded on its endpoint).
    async fn bearer(&self) -> Option<HeaderValue> {
        let tokens = self.target.tokens.as_ref()?;
        let (token, fetched) = tokens.bearer(&self.wire.client).await;
        if let (Some(f), Some(ep)) = (fetched, self.token_endpoint) {
            let sample = Sample {
                end: Instant::now(),
                service_us: f.latency_us,
                corrected_us: None,
                bytes: 0,
                ok: f.error.is_none(),
            };
            match f.error {
                None => self.recorder.record(ep, sample),
                Some(e) => self
                    .recorder
                    .record_failure(ep, sample, FailureClass::Status, &e),
            }
        }
        token.and_then(|t| HeaderValue::from_str(&format!("Bearer {}", t.expose())).ok())
    }

    /// Runs one task once and records it as a unit (whole latency; a success only when every
    /// request succeeded). Returns that verdict.
    pub async fn run(&self, job: &Job, ctx: &mut UserCtx<'_>) -> bool {
        let start = Instant::now();
        let ok = self.work(&job.work, ctx).await;
        let end = Instant::now();
        let service = end - start;
        let sample = Sample {
            end,
            service_us: service.as_micros() as u64,
            corrected_us: ctx.lateness.map(|l| (service + l).as_micros() as u64),
            bytes: 0,
            ok,
        };
        self.recorder.record(job.unit, sample);
        ok
    }

    async fn work(&self, work: &Work, ctx: &mut UserCtx<'_>) -> bool {
        match work {
            Work::WellKnown {
                provisioning,
                verification,
            } => {
                let auth = if self.target.release.well_known_needs_auth {
                    self.bearer().await
                } else {
                    None
                };
                let a = self
                    .well_known(*provisioning, &self.wire.routes.wk_provisioning, auth, ctx)
                    .await;
                let b = self
                    .well_known(*verification, &self.wire.routes.wk_verification, None, ctx)
                    .await;
                a && b
            }
            Work::Provision { submit } => self.provision(*submit, ctx).await,
            Work::Verify {
                new_session,
                evidence,
                delete,
            } => self.verify(*new_session, *evidence, *delete, ctx).await,
            Work::Http { name, endpoint } => self.http(name, *endpoint, ctx).await,
        }
    }

    async fn well_known(
        &self,
        ep: EndpointId,
        to: &Address,
        auth: Option<HeaderValue>,
        ctx: &mut UserCtx<'_>,
    ) -> bool {
        let mut headers = vec![accept()];
        headers.extend(auth.map(|a| (AUTHORIZATION, a)));
        let req = Outgoing::new(Method::GET, to, &headers);
        let Some(reply) = self.send(ep, req, ctx).await else {
            return false;
        };
        let outcome = Self::expect_status(&reply, StatusCode::OK).and_then(|_| {
            let v: Value = serde_json::from_slice(&reply.body)
                .map_err(|_| (FailureClass::Body, "discovery body is not JSON".to_string()))?;
            match v.get("service-state").and_then(Value::as_str) {
                Some(_) if v.get("media-types").is_some() => Ok(()),
                _ => Err((
                    FailureClass::Body,
                    "discovery body lacks service-state or media-types".to_string(),
                )),
            }
        });
        self.verdict(ep, &reply, outcome)
    }

    async fn provision(&self, ep: EndpointId, ctx: &mut UserCtx<'_>) -> bool {
        let release = &self.target.release;
        let body = if release.store == crate::veraison::release::StoreEra::CorimStore {
            // Duplicates are refused in this era: a fresh corim-id per submission.
            ctx.submissions += 1;
            let id = format!(
                "trialrunner-u{}-{}-{}",
                ctx.user,
                ctx.submissions,
                uuid::Uuid::new_v4()
            );
            Bytes::from(
                ctx.device
                    .device
                    .corim(release.corim_profile, release.corim_tagged, &id),
            )
        } else {
            ctx.device.corim.clone()
        };
        let mut headers = vec![
            (
                CONTENT_TYPE,
                HeaderValue::from_static(release.provisioning_media_type),
            ),
            accept(),
        ];
        headers.extend(self.bearer().await.map(|a| (AUTHORIZATION, a)));
        let req = Outgoing::new(Method::POST, &self.wire.routes.submit, &headers).body(body);
        let Some(reply) = self.send(ep, req, ctx).await else {
            return false;
        };
        let outcome = Self::expect_status(&reply, StatusCode::OK).and_then(|_| {
            let v: Value = serde_json::from_slice(&reply.body).map_err(|_| {
                (
                    FailureClass::Body,
                    "provisioning body is not JSON".to_string(),
                )
            })?;
            match v.get("status").and_then(Value::as_str) {
                Some("success") => Ok(()),
                Some("failed") => Err((
                    FailureClass::Failed,
                    v.get("failure-reason")
                        .and_then(Value::as_str)
                        .unwrap_or("no failure-reason")
                        .to_string(),
                )),
                other => Err((
                    FailureClass::Body,
                    format!("unexpected provisioning status {other:?}"),
                )),
            }
        });
        self.verdict(ep, &reply, outcome)
    }

    /// One challenge-response session: newSession, the evidence with its token, DELETE, each
    /// checked. About 120 lines, kept whole so the session reads top to bottom in the order the
    /// service sees it.
    async fn verify(
        &self,
        new_ep: EndpointId,
        ev_ep: EndpointId,
        del_ep: EndpointId,
        ctx: &mut UserCtx<'_>,
    ) -> bool {
        let (nonce, token) = match ctx.nonce {
            NonceMode::Fixed => (seed_nonce(), ctx.device.seed_token.clone()),
            NonceMode::Fresh => {
                let cpu = thread_cpu_ns();
                let n: [u8; 32] = rand::random();
                let token = Bytes::from(ctx.device.minter.mint(&n));
                ctx.check_cpu_ns += thread_cpu_ns().saturating_sub(cpu);
                (n.to_vec(), token)
            }
        };
        // 1. newSession with the nonce as padded base64url, `=` escaped (portable across
        // releases).
        let query = format!(
            "{NEW_SESSION_PATH}?nonce={}",
            URL_SAFE.encode(&nonce).replace('=', "%3D")
        );
        let new_session = self
            .wire
            .routes
            .new_session
            .with_path(&query)
            .expect("base64url is a valid query");
        let headers = [accept()];
        let Some(reply) = self
            .send(
                new_ep,
                Outgoing::new(Method::POST, &new_session, &headers),
                ctx,
            )
            .await
        else {
            return false;
        };
        let session_url = Self::expect_status(&reply, StatusCode::CREATED).and_then(|_| {
            let loc = reply
                .location
                .as_ref()
                .and_then(|l| l.to_str().ok())
                .ok_or((FailureClass::Body, "201 without Location".to_string()))?;
            let v: Value = serde_json::from_slice(&reply.body)
                .map_err(|_| (FailureClass::Body, "session body is not JSON".to_string()))?;
            let echoed = v
                .get("nonce")
                .and_then(Value::as_str)
                .and_then(ear::decode_b64_lenient);
            if echoed.as_deref() != Some(nonce.as_slice()) {
                return Err((
                    FailureClass::Body,
                    "session nonce differs from the one sent".to_string(),
                ));
            }
            // Location is relative (`session/<uuid>`): resolve against the request URL.
            new_session
                .join(loc)
                .map_err(|_| (FailureClass::Body, format!("bad Location {loc:?}")))
        });
        let session_url = match session_url {
            Ok(u) => {
                self.verdict(new_ep, &reply, Ok(()));
                u
            }
            Err(e) => {
                self.verdict(new_ep, &reply, Err(e));
                return false;
            }
        };
        // 2. Evidence.
        let evidence_headers = [
            (
                CONTENT_TYPE,
                HeaderValue::from_static(PSA_EVIDENCE_MEDIA_TYPE),
            ),
            accept(),
        ];
        let req = Outgoing::new(Method::POST, &session_url, &evidence_headers).body(token);
        let mut ok = false;
        if let Some(reply) = self.send(ev_ep, req, ctx).await {
            let cpu = thread_cpu_ns();
            let outcome = Self::expect_status(&reply, StatusCode::OK).and_then(|_| {
                let v: Value = serde_json::from_slice(&reply.body)
                    .map_err(|_| (FailureClass::Body, "session body is not JSON".to_string()))?;
                if v.get("status").and_then(Value::as_str) != Some("complete") {
                    return Err((
                        FailureClass::Body,
                        format!("session status {:?}, expected complete", v.get("status")),
                    ));
                }
                let jwt = v
                    .get("result")
                    .and_then(Value::as_str)
                    .ok_or((FailureClass::Body, "no result in the session".to_string()))?;
                match ear::check_ear(jwt, self.ear_key, Some(&nonce)) {
                    Ok(EarStatus::Affirming) => Ok(()),
                    Ok(EarStatus::Warning) => {
                        Err((FailureClass::Warning, "ear.status warning".into()))
                    }
                    Ok(s) => Err((
                        FailureClass::Contraindicated,
                        format!("ear.status {}", s.as_str()),
                    )),
                    Err(e) => Err((FailureClass::Body, e.to_string())),
                }
            });
            ctx.check_cpu_ns += thread_cpu_ns().saturating_sub(cpu);
            ok = self.verdict(ev_ep, &reply, outcome);
        }
        // 3. DELETE, whatever the evidence outcome (the session exists).
        if let Some(reply) = self
            .send(
                del_ep,
                Outgoing::new(Method::DELETE, &session_url, &headers),
                ctx,
            )
            .await
        {
            let outcome = Self::expect_status(&reply, StatusCode::NO_CONTENT);
            ok &= self.verdict(del_ep, &reply, outcome);
        } else {
            ok = false;
        }
        ok
    }

    async fn http(&self, name: &str, ep: EndpointId, ctx: &mut UserCtx<'_>) -> bool {
        let t = &self.target.http_tasks[name];
        let bearer = if t.auth { self.bearer().await } else { None };
        let with_bearer;
        let headers = match bearer {
            Some(a) => {
                with_bearer = [t.headers.as_slice(), &[(AUTHORIZATION, a)]].concat();
                &with_bearer
            }
            None => &t.headers,
        };
        let req = Outgoing::new(t.method.clone(), &self.wire.routes.http[name], headers)
            .body(t.body.clone());
        let Some(reply) = self.send(ep, req, ctx).await else {
            return false;
        };
        let outcome = Self::expect_status(&reply, t.expect);
        self.verdict(ep, &reply, outcome)
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
/// A request that did not get an answer: an unreachable target is an infrastructure error
/// (exit 3, as in `stores` and `infra`), named by the address that refused.
pub fn unreachable(url: &url::Url, e: &reqwest::Error) -> crate::error::Error {
    let (class, message) = classify(e);
    if class == FailureClass::Connect {
        let addr = address_of(url).unwrap_or_else(|| url.to_string());
        crate::error::Error::Infra(format!("{message}: {}", unreachable_hint(&addr)))
    } else {
        crate::error::Error::Infra(format!("{url}: {message}"))
    }
}
