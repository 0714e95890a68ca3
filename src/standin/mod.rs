//! A faithful stand-in for Veraison's provisioning and verification services (K-V era by
//! default, corim-store era by flag), with a Keycloak-shaped token endpoint and fault injection.
//! It verifies PSA tokens for real and answers with signed EARs, so the demo and the tests
//! exercise the wire contract of veraison-contract.md §1.
//!
//! One listener serves every route; an admin API under `/standin/v1/` lets the local stores
//! provider count and clear it.

// Handlers reject with a ready `Response`, as axum handlers do; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

pub mod answered;
pub mod faults;
pub mod pool;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use self::faults::{Faults, TOO_MANY_CLIENTS, VTS_REFUSED};
use self::store::{KvStore, StoreError};
use crate::veraison::ear::{self, EarStatus};
use crate::veraison::es256::SigningKey;
use crate::veraison::psa::{self, ParsedToken};
use crate::veraison::release::{ReleaseProfile, StoreEra, PSA_EVIDENCE_MEDIA_TYPE};

/// Session lifetime, hard-coded in Veraison (`ConfigSessionTTL`).
pub const SESSION_TTL: Duration = Duration::from_secs(150);
/// Keycloak's default realm credentials (contract §1.3).
pub const DEFAULT_CLIENT_ID: &str = "veraison-client";
/// Default client secret of the realm (public in upstream; test use only).
pub const DEFAULT_CLIENT_SECRET: &str = "YifmabB4cVSPPtFLAmHfq7wKaEHQn10Z";
/// Default provisioning user.
pub const DEFAULT_USERNAME: &str = "veraison-provisioner";
/// Default provisioning user's password.
pub const DEFAULT_PASSWORD: &str = "veraison";
/// Token path of Keycloak's realm.
pub const TOKEN_PATH: &str = "/realms/veraison/protocol/openid-connect/token";

const DISCOVERY_MT: &str = "application/vnd.veraison.discovery+json";
const PROV_SESSION_MT: &str = "application/vnd.veraison.provisioning-session+json";
const CR_SESSION_MT: &str = "application/vnd.veraison.challenge-response-session+json";

/// Password-grant credentials the token endpoint accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// OAuth2 client id.
    pub client_id: String,
    /// OAuth2 client secret.
    pub client_secret: String,
    /// User.
    pub username: String,
    /// Password.
    pub password: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            username: DEFAULT_USERNAME.into(),
            password: DEFAULT_PASSWORD.into(),
        }
    }
}

/// How a stand-in behaves.
#[derive(Debug, Clone)]
pub struct StandinConfig {
    /// The release whose contract it speaks.
    pub release: ReleaseProfile,
    /// Bearer auth on provisioning (with these credentials), or none.
    pub auth: Option<Credentials>,
    /// Access-token lifetime (Keycloak default 1800 s).
    pub token_lifetime: Duration,
    /// Injected faults.
    pub faults: Faults,
    /// DELETE of a missing session: 500 like the memcached backend (true) or 204 like ttlcache.
    pub memcached_sessions: bool,
}

/// What the instances of one deployment share: the K-V store (RDS), the session cache
/// (memcached) and the EAR signing key (VTS's configuration). One stand-in has its own; the
/// rehearsal's twin gives every instance the same.
#[derive(Clone)]
pub struct Cluster {
    store: Arc<KvStore>,
    sessions: Arc<Mutex<HashMap<uuid::Uuid, Session>>>,
    ear_key: SigningKey,
    overhead: Arc<Mutex<BTreeMap<i64, hdrhistogram::Histogram<u64>>>>,
}

impl Cluster {
    /// A cluster on this store, with an empty session cache and a fresh EAR key.
    pub fn new(store: KvStore) -> Cluster {
        Cluster {
            store: Arc::new(store),
            sessions: Arc::default(),
            ear_key: SigningKey::generate(),
            overhead: Arc::default(),
        }
    }

    /// The shared store.
    pub fn store(&self) -> &KvStore {
        &self.store
    }

    /// What this machine added to the modelled occupancy of the instances' requests (µs), by
    /// the UTC second in which each request freed its worker: every instance of the cluster.
    pub fn overhead(&self) -> BTreeMap<i64, hdrhistogram::Histogram<u64>> {
        self.overhead.lock().expect("overhead lock").clone()
    }
}

impl Default for StandinConfig {
    fn default() -> Self {
        StandinConfig {
            release: ReleaseProfile::parse("v0.0.2602").expect("known release"),
            auth: None,
            token_lifetime: Duration::from_secs(1800),
            faults: Faults::default(),
            memcached_sessions: false,
        }
    }
}

struct Session {
    nonce: Vec<u8>,
    expires: Instant,
    expiry_text: String,
    evidence: Option<(String, Vec<u8>)>,
    result: Option<String>,
    status: &'static str,
}

struct AppState {
    config: StandinConfig,
    store: Arc<KvStore>,
    ear_key: SigningKey,
    started: Instant,
    sessions: Arc<Mutex<HashMap<uuid::Uuid, Session>>>,
    tokens: Mutex<HashMap<String, Instant>>,
    db_permits: Option<Semaphore>,
    /// The instance's workers, when its capacity is bounded.
    workers: Option<Semaphore>,
    /// Every answered request: counts, its own time, the delay injected.
    answered: answered::AnswerLog,
    /// With a bounded capacity: what the machine added to each request's modelled occupancy
    /// (µs; real work or a late timer past it), by the UTC second in which the worker was freed
    /// (the cluster's, shared by its instances).
    overhead: Arc<Mutex<BTreeMap<i64, hdrhistogram::Histogram<u64>>>>,
}

/// A running stand-in; stops when dropped or on [`Standin::shutdown`].
pub struct Standin {
    /// The bound address.
    pub addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Standin {
    /// Binds `listen` (port 0 for a free one) and serves in the background.
    pub async fn start(
        listen: SocketAddr,
        config: StandinConfig,
        store: KvStore,
    ) -> std::io::Result<Standin> {
        Standin::start_in(listen, config, &Cluster::new(store)).await
    }

    /// One instance of a cluster: its own listener, faults and capacity; the cluster's store,
    /// session cache and EAR key.
    pub async fn start_in(
        listen: SocketAddr,
        config: StandinConfig,
        cluster: &Cluster,
    ) -> std::io::Result<Standin> {
        // A deep accept queue: std's default of 128 overflows when hundreds of virtual users
        // connect at once, and each dropped SYN costs the client a 1 s retransmit.
        let socket = if listen.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(listen)?;
        let listener = socket.listen(4096)?;
        let addr = listener.local_addr()?;
        let db_permits = config.faults.db_connections.map(Semaphore::new);
        let workers = config
            .faults
            .capacity
            .map(|c| Semaphore::new(c.workers.max(1)));
        let state = Arc::new(AppState {
            config,
            store: cluster.store.clone(),
            ear_key: cluster.ear_key.clone(),
            started: Instant::now(),
            sessions: cluster.sessions.clone(),
            tokens: Mutex::new(HashMap::new()),
            db_permits,
            workers,
            answered: answered::AnswerLog::default(),
            overhead: cluster.overhead.clone(),
        });
        let app = router(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Standin {
            addr,
            state,
            shutdown: Some(tx),
            task,
        })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).expect("valid URL")
    }

    /// Row counts of the store.
    pub async fn counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.state.store.counts().await
    }

    /// Requests answered so far, by (`METHOD route`, UTC second of the answer).
    pub fn served(&self) -> BTreeMap<(String, i64), u64> {
        self.state.answered.counts()
    }

    /// Requests answered so far on a route (`POST /endorsement-provisioning/v1/submit`).
    pub fn served_on(&self, route: &str) -> u64 {
        self.served()
            .iter()
            .filter(|((r, _), _)| r == route)
            .map(|(_, n)| n)
            .sum()
    }

    /// The delays it injected (µs) into the requests it answered within `span` (UTC, seconds
    /// since the epoch; kept for the last [`answered::KEEP_SECONDS`]).
    pub fn injected_in(&self, span: std::ops::Range<f64>) -> hdrhistogram::Histogram<u64> {
        self.state.answered.injected(span)
    }

    /// When each request on `route` answered within `span` left (UTC, seconds since the epoch),
    /// in order.
    pub fn answers_in(&self, route: &str, span: std::ops::Range<f64>) -> Vec<f64> {
        self.state.answered.instants(route, span)
    }

    /// Its own time (µs) for each request on `route` (`POST /challenge-response/v1/newSession`)
    /// answered within `span`: from its router receiving the request to the response leaving
    /// it, the injected delay included.
    pub fn own_times_in(
        &self,
        route: &str,
        span: std::ops::Range<f64>,
    ) -> hdrhistogram::Histogram<u64> {
        self.state.answered.own_times(Some(route), span)
    }

    /// What this machine added to the modelled occupancy of its requests (µs), by the UTC
    /// second in which each request freed its worker (empty without a bounded capacity; the
    /// whole cluster's for an instance of one).
    pub fn overhead(&self) -> BTreeMap<i64, hdrhistogram::Histogram<u64>> {
        self.state.overhead.lock().expect("overhead lock").clone()
    }

    /// Rows its store has read (every duplicate row of a key counts).
    pub fn rows_read(&self) -> u64 {
        self.state.store.rows_read()
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/.well-known/veraison/{service}", get(well_known))
        .route("/endorsement-provisioning/v1/submit", post(submit))
        .route("/challenge-response/v1/newSession", post(new_session))
        .route(
            "/challenge-response/v1/session/{id}",
            post(evidence).get(get_session).delete(delete_session),
        )
        .route(TOKEN_PATH, post(token))
        .route("/standin/v1/stores", get(admin_counts).delete(admin_clear))
        .route(
            "/standin/v1/sessions",
            axum::routing::delete(admin_flush_sessions),
        )
        .route("/standin/v1/counters", get(admin_counters))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain")],
                "404 page not found",
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// The route a request is counted under: `METHOD /path` with ids as their template
/// (`/challenge-response/v1/session/{id}`); the well-knowns by service.
fn route_of(req: &axum::extract::Request) -> String {
    let path = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let path = if path.starts_with("/.well-known/") {
        req.uri().path().to_string()
    } else {
        path
    };
    format!("{} {path}", req.method())
}

/// Records every answered request (but the admin API's) by route and by the UTC second in
/// which its answer left, with its own time and injected delay: the ground truth tests compare
/// the generator's figures with.
async fn count(
    State(st): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = route_of(&req);
    st.answered.answer(route, next.run(req)).await
}

// ----------------------------------------------------------------------------- helpers

/// A problem+json response as Veraison's `ReportProblem` writes it.
fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn vendor_json(status: StatusCode, media_type: &'static str, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, media_type)],
        body.to_string(),
    )
        .into_response()
}

/// gin's `NegotiateFormat` with a single offer: absent, `*/*`, `application/*` or the exact type.
fn accept_ok(headers: &HeaderMap, offered: &str) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if accept.trim().is_empty() {
        return true;
    }
    accept.split(',').any(|a| {
        let t = a.split(';').next().unwrap_or("").trim();
        t == "*/*" || t == "application/*" || t.eq_ignore_ascii_case(offered)
    })
}

/// Content negotiation as Veraison's handlers do it: 406 problem+json unless `Accept` allows
/// the one type offered.
fn negotiate(headers: &HeaderMap, offered: &str) -> Result<(), Response> {
    if accept_ok(headers, offered) {
        Ok(())
    } else {
        Err(problem(
            StatusCode::NOT_ACCEPTABLE,
            format!("the only supported output format is {offered}"),
        ))
    }
}

/// A media type parsed as Go's `mime.ParseMediaType` would: lowercase type and parameter names.
fn parse_media_type(s: &str) -> Option<(String, BTreeMap<String, String>)> {
    let mut parts = s.split(';');
    let t = parts.next()?.trim().to_ascii_lowercase();
    if !t.contains('/') || t.contains(' ') {
        return None;
    }
    let mut params = BTreeMap::new();
    for p in parts {
        let (k, v) = p.split_once('=')?;
        params.insert(
            k.trim().to_ascii_lowercase(),
            v.trim().trim_matches('"').to_string(),
        );
    }
    Some((t, params))
}

impl AppState {
    fn starting(&self) -> bool {
        self.started.elapsed() < self.config.faults.slow_start
    }

    /// Takes one of the instance's workers (when its capacity is bounded; queued until one is
    /// free), then applies pause, latency and random errors; `Err` is the response to give
    /// instead (the worker is freed at once). The worker stays busy until [`Busy::finish`].
    async fn inject(&self) -> Result<Busy<'_>, Response> {
        let f = &self.config.faults;
        let permit = match &self.workers {
            Some(workers) => Some(workers.acquire().await.expect("workers never close")),
            None => None,
        };
        let busy = Busy {
            _permit: permit,
            since: Instant::now(),
            capacity: f.capacity,
            st: self,
        };
        if let Some((at, dur)) = f.pause {
            let now = self.started.elapsed();
            if now >= at && now < at + dur {
                tokio::time::sleep(at + dur - now).await;
            }
        }
        let (delay, fail) = {
            let mut rng = rand::thread_rng();
            (
                f.latency.map(|l| l.sample(&mut rng)),
                f.error_rate > 0.0 && rng.gen_bool(f.error_rate.min(1.0)),
            )
        };
        if let Some(d) = delay {
            answered::note_injected(d);
            tokio::time::sleep(d).await;
        }
        if fail {
            return Err(problem(StatusCode::INTERNAL_SERVER_ERROR, "injected error"));
        }
        Ok(busy)
    }

    fn bearer_ok(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let tokens = self.tokens.lock().expect("tokens lock");
        tokens.get(token).is_some_and(|exp| *exp > Instant::now())
    }

    fn encode_session_nonce(&self, nonce: &[u8]) -> String {
        if self.config.release.session_nonce_b64url {
            URL_SAFE_NO_PAD.encode(nonce)
        } else {
            ear::b64_std(nonce)
        }
    }

    fn session_json(&self, s: &Session) -> Value {
        let mut v = json!({
            "status": s.status,
            "nonce": self.encode_session_nonce(&s.nonce),
            "expiry": s.expiry_text,
            "accept": [PSA_EVIDENCE_MEDIA_TYPE],
        });
        if let Some((mt, bytes)) = &s.evidence {
            v["evidence"] = json!({"type": mt, "value": ear::b64_std(bytes)});
        }
        if let Some(r) = &s.result {
            v["result"] = json!(r);
        }
        v
    }
}

/// One of an instance's workers, busy with a request from when it took it until the request's
/// modelled occupancy is up ([`faults::InstanceCapacity::occupancy`]).
struct Busy<'a> {
    _permit: Option<tokio::sync::SemaphorePermit<'a>>,
    since: Instant,
    capacity: Option<faults::InstanceCapacity>,
    st: &'a AppState,
}

impl Busy<'_> {
    /// Keeps the worker until the request's modelled time (`service`, plus `per_row` for each of
    /// the `rows` its reads went through) is up; whatever the real work or the timer took past
    /// it is recorded as the machine's overhead.
    async fn finish(self, rows: usize) {
        let Some(c) = self.capacity else { return };
        let until = self.since + c.occupancy(rows);
        tokio::time::sleep_until(until.into()).await;
        let over = Instant::now().saturating_duration_since(until);
        let _ = self
            .st
            .overhead
            .lock()
            .expect("overhead lock")
            .entry(chrono::Utc::now().timestamp())
            .or_insert_with(crate::results::cells::new_hist)
            .record(over.as_micros() as u64);
    }
}

// ----------------------------------------------------------------------------- discovery

async fn well_known(
    State(st): State<Arc<AppState>>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = negotiate(&headers, DISCOVERY_MT) {
        return r;
    }
    if st.starting() {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, VTS_REFUSED);
    }
    let mut body = json!({
        "version": format!("{}-standin", st.config.release.tag),
        "service-state": "READY",
    });
    match service.as_str() {
        "provisioning" => {
            if st.config.release.well_known_needs_auth
                && st.config.auth.is_some()
                && !st.bearer_ok(&headers)
            {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            body["media-types"] = json!([st.config.release.provisioning_media_type]);
            body["api-endpoints"] =
                json!({"provisioningSubmit": "/endorsement-provisioning/v1/submit"});
        }
        "verification" => {
            body["ear-verification-key"] = ear::public_jwk(&st.ear_key);
            body["media-types"] = json!([PSA_EVIDENCE_MEDIA_TYPE]);
            body["api-endpoints"] =
                json!({"newChallengeResponseSession": "/challenge-response/v1/newSession"});
        }
        _ => return (StatusCode::NOT_FOUND, "404 page not found").into_response(),
    }
    let mut resp = vendor_json(StatusCode::OK, DISCOVERY_MT, &body);
    if st.config.release.yymm >= 2604 {
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
    }
    resp
}

// ----------------------------------------------------------------------------- auth

async fn token(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let creds = st.config.auth.clone().unwrap_or_default();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let valid = field("grant_type") == "password"
        && field("client_id") == creds.client_id
        && field("client_secret") == creds.client_secret
        && field("username") == creds.username
        && field("password") == creds.password;
    if !valid {
        let body =
            json!({"error": "invalid_grant", "error_description": "Invalid user credentials"});
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let token: String = {
        let bytes: [u8; 24] = rand::random();
        URL_SAFE_NO_PAD.encode(bytes)
    };
    st.tokens
        .lock()
        .expect("tokens lock")
        .insert(token.clone(), Instant::now() + st.config.token_lifetime);
    let body = json!({
        "access_token": token,
        "expires_in": st.config.token_lifetime.as_secs(),
        "token_type": "Bearer",
        "scope": "openid",
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ----------------------------------------------------------------------------- provisioning

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn submit(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if st.config.auth.is_some() && !st.bearer_ok(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Err(r) = negotiate(&headers, PROV_SESSION_MT) {
        return r;
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(got) = parse_media_type(ct) else {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("could not check media type with VTS: mime: no media type ({ct:?})"),
        );
    };
    let want =
        parse_media_type(st.config.release.provisioning_media_type).expect("our media types parse");
    if got != want {
        let mut resp = problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("no active plugin found for {ct}"),
        );
        if let Ok(v) = HeaderValue::from_str(st.config.release.provisioning_media_type) {
            resp.headers_mut().insert(header::ACCEPT, v);
        }
        return resp;
    }
    if body.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "empty body");
    }
    if st.starting() {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, VTS_REFUSED);
    }
    let hold = match db_hold(&st).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let busy = match st.inject().await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let outcome = provision(&st, hold.via(), &body).await;
    drop(hold);
    busy.finish(0).await;
    let mut v = json!({"status": "success", "expiry": now_rfc3339()});
    if let Err(reason) = outcome {
        v["status"] = json!("failed");
        v["failure-reason"] = json!(format!("submit endorsement returned error: {reason}"));
    }
    vendor_json(StatusCode::OK, PROV_SESSION_MT, &v)
}

/// What a request holds of the database while it is served: nothing (no limit), a permit of
/// the connection cap, or a connection of the instance's pool.
enum DbHold<'a> {
    Free,
    Permit(#[allow(dead_code)] tokio::sync::SemaphorePermit<'a>),
    Connection(pool::Lease<'a>),
}

impl DbHold<'_> {
    /// The session the store's queries go through, when the hold is a real one.
    fn via(&self) -> store::Via<'_> {
        match self {
            DbHold::Connection(lease) => lease.client(),
            _ => None,
        }
    }
}

async fn db_hold(st: &AppState) -> Result<DbHold<'_>, Response> {
    let refused = |why: &str| {
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("error encountered while processing: {why}"),
        )
    };
    if let Some(pool) = &st.config.faults.db_pool {
        return pool
            .acquire()
            .await
            .map(DbHold::Connection)
            .map_err(|e| refused(&e.to_string()));
    }
    match &st.db_permits {
        None => Ok(DbHold::Free),
        Some(s) => s
            .try_acquire()
            .map(DbHold::Permit)
            .map_err(|_| refused(TOO_MANY_CLIENTS)),
    }
}

fn key_b64(b: &[u8]) -> String {
    URL_SAFE.encode(b)
}

async fn provision(st: &AppState, via: store::Via<'_>, body: &[u8]) -> Result<(), String> {
    let e = psa::parse_corim(body).map_err(|e| e.to_string())?;
    let rel = &st.config.release;
    if rel.corim_tagged && !e.tagged {
        return Err("did not see unsigned CoRIM tag".into());
    }
    if e.profile != rel.corim_profile {
        return Err(format!("incorrect profile: {}", e.profile));
    }
    if rel.store == StoreEra::CorimStore {
        st.store
            .add_manifest(via, &e.corim_id)
            .await
            .map_err(|e| e.to_string())?;
    }
    for (impl_id, values) in &e.reference_values {
        let key = format!("PSA_IOT://0/{}", key_b64(impl_id));
        for rv in values {
            let val = json!({"scheme": "PSA_IOT", "type": "REFERENCE_VALUE", "attributes": {
                "psa.impl-id": key_b64(impl_id),
                "psa.measurement-type": rv.measurement_type,
                "psa.version": rv.version,
                "psa.measurement-value": rv.digests.iter().map(|d| ear::b64_std(d)).collect::<Vec<_>>(),
            }});
            st.store
                .add(via, "endorsements", &key, &val.to_string())
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    for (impl_id, inst, pem) in &e.trust_anchors {
        let key = format!("PSA_IOT://0/{}/{}", key_b64(impl_id), key_b64(inst));
        let val = json!({"scheme": "PSA_IOT", "type": "VERIFICATION_KEY", "attributes": {
            "psa.impl-id": key_b64(impl_id), "psa.inst-id": key_b64(inst), "psa.iak-pub": pem,
        }});
        st.store
            .add(via, "trust_anchors", &key, &val.to_string())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

// ----------------------------------------------------------------------------- verification

fn decode_query_nonce(release: &ReleaseProfile, s: &str) -> Option<Vec<u8>> {
    if release.session_nonce_b64url {
        URL_SAFE_NO_PAD
            .decode(s)
            .or_else(|_| URL_SAFE.decode(s))
            .ok()
    } else {
        URL_SAFE.decode(s).ok()
    }
}

async fn new_session(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = negotiate(&headers, CR_SESSION_MT) {
        return r;
    }
    let nonce = match (q.get("nonce"), q.get("nonceSize")) {
        (Some(_), Some(_)) => return problem(StatusCode::BAD_REQUEST, "nonce and nonceSize are mutually exclusive"),
        (Some(n), None) => match decode_query_nonce(&st.config.release, n) {
            None => return problem(StatusCode::BAD_REQUEST, "failed handling nonce request: nonce must be valid base64"),
            Some(b) if !(8..=64).contains(&b.len()) => {
                return problem(StatusCode::BAD_REQUEST, format!("failed handling nonce request: nonce must be between 8 and 64 bytes long; got {}", b.len()))
            }
            Some(b) => b,
        },
        (None, Some(size)) => match size.parse::<usize>() {
            Ok(n) if (8..=64).contains(&n) => (0..n).map(|_| rand::random::<u8>()).collect(),
            _ => return problem(StatusCode::BAD_REQUEST, format!("failed handling nonce request: nonceSize must be between 8 and 64; got {size}")),
        },
        (None, None) => (0..32).map(|_| rand::random::<u8>()).collect(),
    };
    if st.starting() {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, VTS_REFUSED);
    }
    match st.inject().await {
        Ok(busy) => busy.finish(0).await,
        Err(r) => return r,
    }
    let id = uuid::Uuid::new_v4();
    let expiry =
        chrono::Utc::now() + chrono::Duration::from_std(SESSION_TTL).expect("small duration");
    let session = Session {
        nonce,
        expires: Instant::now() + SESSION_TTL,
        expiry_text: expiry.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        evidence: None,
        result: None,
        status: "waiting",
    };
    let body = st.session_json(&session);
    st.sessions
        .lock()
        .expect("sessions lock")
        .insert(id, session);
    let mut resp = vendor_json(StatusCode::CREATED, CR_SESSION_MT, &body);
    resp.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("session/{id}")).expect("ascii"),
    );
    resp
}

const EVIDENCE_TYPES: [&str; 4] = [
    PSA_EVIDENCE_MEDIA_TYPE,
    "application/eat-cwt; profile=\"http://arm.com/psa/2.0.0\"",
    "application/eat+cwt; eat_profile=\"tag:psacertified.org,2023:psa#tfm\"",
    "application/eat+cwt; eat_profile=\"tag:psacertified.org,2019:psa#legacy\"",
];

fn session_not_found(id: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        format!("session not found for (id, tenant)=({id}, 0)"),
    )
}

fn live_session<'a>(
    sessions: &'a mut HashMap<uuid::Uuid, Session>,
    id: &uuid::Uuid,
) -> Option<&'a mut Session> {
    if sessions
        .get(id)
        .is_some_and(|s| s.expires <= Instant::now())
    {
        sessions.remove(id);
    }
    sessions.get_mut(id)
}

async fn evidence(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = negotiate(&headers, CR_SESSION_MT) {
        return r;
    }
    if body.is_empty() {
        return problem(
            StatusCode::BAD_REQUEST,
            "unable to read evidence from the request body",
        );
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(got) = parse_media_type(ct) else {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("could not parse media type {ct:?}"),
        );
    };
    if !EVIDENCE_TYPES
        .iter()
        .any(|t| parse_media_type(t).as_ref() == Some(&got))
    {
        let mut resp = problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("no active plugin found for {ct}"),
        );
        resp.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static(PSA_EVIDENCE_MEDIA_TYPE),
        );
        return resp;
    }
    let Ok(uid) = uuid::Uuid::parse_str(&id) else {
        return problem(StatusCode::BAD_REQUEST, format!("invalid session id: {id}"));
    };
    let nonce = {
        let mut sessions = st.sessions.lock().expect("sessions lock");
        match live_session(&mut sessions, &uid) {
            Some(s) => s.nonce.clone(),
            None => return session_not_found(&id),
        }
    };
    if st.starting() {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("error encountered while processing evidence: {VTS_REFUSED}"),
        );
    }
    let appraisal = match db_hold(&st).await {
        Err(r) => Err(r),
        Ok(hold) => match st.inject().await {
            Err(r) => Err(r),
            Ok(busy) => {
                let appraised = appraise(&st, hold.via(), &body, &nonce).await;
                drop(hold);
                busy.finish(appraised.as_ref().map_or(0, |(_, rows)| *rows))
                    .await;
                appraised.map(|(jwt, _)| jwt).map_err(|e| {
                    problem(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("error encountered while processing evidence: {e}"),
                    )
                })
            }
        },
    };
    let mut sessions = st.sessions.lock().expect("sessions lock");
    let Some(session) = live_session(&mut sessions, &uid) else {
        return session_not_found(&id);
    };
    session.expires = Instant::now() + SESSION_TTL;
    match appraisal {
        Err(resp) => {
            session.status = "failed";
            resp
        }
        Ok(jwt) => {
            session.status = "complete";
            session.evidence = Some((ct.to_string(), body.to_vec()));
            session.result = Some(jwt);
            vendor_json(StatusCode::OK, CR_SESSION_MT, &st.session_json(session))
        }
    }
}

/// PSA appraisal as VTS does it: bad evidence yields a contraindicated EAR, not an error;
/// store errors are errors (HTTP 500). Returns the EAR and the stored rows its reads went
/// through (every duplicate of the device's keys).
async fn appraise(
    st: &AppState,
    via: store::Via<'_>,
    token: &[u8],
    session_nonce: &[u8],
) -> Result<(String, usize), StoreError> {
    let affirming = json!({"instance-identity": 2, "configuration": 0, "executables": 2, "file-system": 0,
        "hardware": 2, "runtime-opaque": 2, "storage-opaque": 2, "sourced-data": 0});
    let crypto_failed = json!({"instance-identity": 99, "configuration": 99, "executables": 99, "file-system": 99,
        "hardware": 99, "runtime-opaque": 99, "storage-opaque": 99, "sourced-data": 99});
    let iat = chrono::Utc::now().timestamp();
    let sign = |status, tv: Value, annotated: Value, rows: usize| {
        Ok((
            ear::sign_ear(&st.ear_key, status, tv, session_nonce, annotated, iat),
            rows,
        ))
    };
    let Ok(parsed) = ParsedToken::parse(token) else {
        return sign(
            EarStatus::Contraindicated,
            crypto_failed,
            json!({"error": "malformed token"}),
            0,
        );
    };
    let c = &parsed.claims;
    let annotated = json!({
        "eat-profile": c.profile,
        "psa-implementation-id": ear::b64_std(&c.implementation_id),
        "psa-instance-id": ear::b64_std(&c.instance_id),
        "psa-nonce": ear::b64_std(&c.nonce),
    });
    let ta_key = format!(
        "PSA_IOT://0/{}/{}",
        key_b64(&c.implementation_id),
        key_b64(&c.instance_id)
    );
    let (anchors, anchor_rows) = st.store.get_reading(via, "trust_anchors", &ta_key).await?;
    let pem = anchors
        .iter()
        .filter_map(|a| serde_json::from_str::<Value>(a).ok())
        .find_map(|a| a["attributes"]["psa.iak-pub"].as_str().map(str::to_string));
    let rows = anchor_rows as usize;
    let Some(pem) = pem else {
        return sign(EarStatus::Contraindicated, crypto_failed, annotated, rows);
    };
    if parsed.verify(&pem).is_err() || c.nonce != session_nonce {
        return sign(EarStatus::Contraindicated, crypto_failed, annotated, rows);
    }
    let rv_key = format!("PSA_IOT://0/{}", key_b64(&c.implementation_id));
    let (stored, stored_rows) = st.store.get_reading(via, "endorsements", &rv_key).await?;
    let rows = rows + stored_rows as usize;
    let refvals: Vec<Value> = stored
        .iter()
        .filter_map(|v| serde_json::from_str(v).ok())
        .collect();
    let matches = |sw: &psa::SwComponent| {
        refvals.iter().any(|rv| {
            let a = &rv["attributes"];
            let digest = ear::b64_std(&sw.measurement_value);
            let type_ok = a["psa.measurement-type"]
                .as_str()
                .is_none_or(|t| t == sw.measurement_type);
            let version_ok = a["psa.version"].as_str().is_none_or(|v| v == sw.version);
            let digest_ok = a["psa.measurement-value"]
                .as_array()
                .is_some_and(|ds| ds.iter().any(|d| d.as_str() == Some(&digest)));
            type_ok && version_ok && digest_ok
        })
    };
    if c.sw_components.iter().all(matches) {
        sign(EarStatus::Affirming, affirming, annotated, rows)
    } else {
        let mut tv = affirming;
        tv["executables"] = json!(33);
        sign(EarStatus::Warning, tv, annotated, rows)
    }
}

async fn get_session(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Ok(uid) = uuid::Uuid::parse_str(&id) else {
        return problem(StatusCode::BAD_REQUEST, format!("invalid session id: {id}"));
    };
    let mut sessions = st.sessions.lock().expect("sessions lock");
    match live_session(&mut sessions, &uid) {
        Some(s) => vendor_json(StatusCode::OK, CR_SESSION_MT, &st.session_json(s)),
        None => session_not_found(&id),
    }
}

async fn delete_session(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Ok(uid) = uuid::Uuid::parse_str(&id) else {
        return problem(StatusCode::BAD_REQUEST, format!("invalid session id: {id}"));
    };
    let mut sessions = st.sessions.lock().expect("sessions lock");
    let existed = live_session(&mut sessions, &uid).is_some();
    sessions.remove(&uid);
    if !existed && st.config.memcached_sessions {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "memcache: cache miss");
    }
    StatusCode::NO_CONTENT.into_response()
}

// ----------------------------------------------------------------------------- admin

async fn admin_counts(State(st): State<Arc<AppState>>) -> Response {
    match st.store.counts().await {
        Ok(c) => axum::Json(c).into_response(),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn admin_clear(State(st): State<Arc<AppState>>) -> Response {
    match st.store.clear().await {
        Ok(before) => axum::Json(json!({"before": before})).into_response(),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn admin_counters(State(st): State<Arc<AppState>>) -> Response {
    let counts: Vec<Value> = st
        .answered
        .counts()
        .iter()
        .map(|((route, second), n)| json!({"route": route, "second": second, "count": n}))
        .collect();
    axum::Json(json!({"counts": counts})).into_response()
}

async fn admin_flush_sessions(State(st): State<Arc<AppState>>) -> Response {
    let flushed = st.sessions.lock().expect("sessions lock").drain().count();
    axum::Json(json!({"flushed": flushed})).into_response()
}
