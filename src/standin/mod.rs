//! A faithful stand-in for Veraison's provisioning and verification services (K-V era by
//! default, corim-store era by flag), with a Keycloak-shaped token endpoint and fault injection.
//! It verifies PSA tokens for real and answers with signed EARs, so the demo and the tests
//! exercise the wire contract of veraison-contract.md §1.
//!
//! One listener serves every route; an admin API under `/standin/v1/` lets the local stores
//! provider count and clear it.

// Handlers reject with a ready `Response`, as axum handlers do; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

mod admin;
pub mod answered;
mod discovery;
pub mod faults;
mod http;
pub mod pool;
mod provisioning;
pub mod store;
mod verification;

use self::admin::*;
use self::discovery::*;
use self::http::*;
use self::provisioning::*;
use self::verification::*;

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

/// Takes what a request holds of the database: refused as Veraison refuses when none is left.
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
