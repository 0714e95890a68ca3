//! AWS as it really behaves, in front of moto: a small HTTP proxy on loopback that forwards
//! every request and, per test, can
//! * answer `Throttling` / `RequestLimitExceeded` (in the protocol's own error format) on every
//!   n-th call of an operation, or in bursts (n calls throttled, then m through: a share of a
//!   whole service's calls, `autoscaling:*`), or a 500, or any status and code;
//! * delay answers, or freeze (accept and never answer) until thawed, counting the calls it
//!   holds (a test observes that a call is stuck instead of sleeping);
//! * answer an operation itself (a JSON-protocol body): what moto does not implement (SSM's
//!   DescribeInstanceInformation, CancelCommand) or a state AWS holds for minutes (an SSM
//!   invocation InProgress while the test plays the instance);
//! * stretch instance lifecycles: instances it has not seen before stay `Pending` for a while,
//!   then their targets stay `initial`, as on AWS (moto makes everything InService at once);
//! * stretch RDS: after a ModifyDBInstance the instance says `modifying` for a while, after a
//!   RebootDBInstance it still says `available` for a moment, then `rebooting` (moto applies
//!   both at once).
//!
//! It runs on its own thread and runtime, so a test that blocks on a child process never stalls
//! it, and it records every operation it saw.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use trialrunner::rehearsal::view::{
    forward as forward_to, rewrite_members, Forwarded, ASG_PENDING, TARGET_INITIAL,
};

/// What a rule does to a matching call.
#[derive(Debug, Clone)]
pub enum Effect {
    /// `Throttling` (awsQuery), `RequestLimitExceeded` (EC2), `ThrottlingException` (JSON).
    Throttle,
    /// Any status and error code.
    Fail(u16, &'static str),
    /// Forward, but answer this much later.
    Delay(Duration),
    /// Accept and never answer, until [`FaultProxy::thaw`].
    Freeze,
    /// Answer 200 with this JSON body (JSON protocols), never reaching moto.
    Answer(String),
    /// Throttle `on` matching calls in a row, then let `off` through, and again.
    Bursts { on: u32, off: u32 },
    /// Answer with what a test's own responder says of the request body (a status and a JSON
    /// body), never reaching moto: the SSM agent player (`ssmagent.rs`).
    Serve(Responder),
}

/// What a [`Responder`] calls: `(status, JSON body)` for a request body.
pub type Respond = dyn Fn(&[u8]) -> (u16, String) + Send + Sync;

/// A test's own answer to a JSON-protocol call.
#[derive(Clone)]
pub struct Responder(pub Arc<Respond>);

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

#[derive(Debug, Clone)]
struct Rule {
    /// The operation (`UpdateAutoScalingGroup`), every operation of a service
    /// (`autoscaling:*`), or `*`.
    op: String,
    /// Apply to the 1st, (1+n)th, (1+2n)th … matching call.
    every: u32,
    /// How many more times it applies (None: forever).
    left: Option<u32>,
    /// Matching calls to let through before it starts applying.
    skip: u32,
    seen: u32,
    effect: Effect,
}

#[derive(Default)]
struct Lifecycle {
    pending: Duration,
    initial: Duration,
    /// Instances that were there before: never stretched.
    old: HashSet<String>,
    first_seen: HashMap<String, Instant>,
}

/// RDS taking its time (see [`FaultProxy::stretch_rds`]).
#[derive(Default)]
struct RdsTiming {
    modify: Duration,
    lag: Duration,
    reboot: Duration,
    modified_at: Option<Instant>,
    rebooted_at: Option<Instant>,
}

impl RdsTiming {
    /// The status the instance shows now, when it is not moto's `available`.
    fn status(&self) -> Option<&'static str> {
        if self.modified_at.is_some_and(|t| t.elapsed() < self.modify) {
            return Some("modifying");
        }
        let since = self.rebooted_at?.elapsed();
        (since >= self.lag && since < self.lag + self.reboot).then_some("rebooting")
    }
}

struct State {
    upstream: String,
    rds: Mutex<Option<RdsTiming>>,
    client: reqwest::Client,
    rules: Mutex<Vec<Rule>>,
    lifecycle: Mutex<Option<Lifecycle>>,
    calls: Mutex<Vec<String>>,
    /// Request bodies of JSON-protocol calls, by operation.
    bodies: Mutex<Vec<(String, Bytes)>>,
    /// Calls frozen right now.
    held: std::sync::atomic::AtomicUsize,
}

/// A running proxy; `url` is what the SDK (or the binary's `--aws-endpoint`) is pointed at.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<State>,
}

/// The operation of a request: `Action=` of a query-protocol body (gunzipped when the SDK
/// compressed it, as it does large PutMetricData bodies), or the JSON protocol's
/// `X-Amz-Target` suffix.
fn operation(headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(t) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return t.rsplit('.').next().unwrap_or(t).to_string();
    }
    let mut plain = Vec::new();
    let body = if headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip")
    {
        use std::io::Read;
        let _ = flate2::read::GzDecoder::new(body).read_to_end(&mut plain);
        &plain[..]
    } else {
        body
    };
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| "?".into())
}

/// The service of a query-protocol request, by its API version (`autoscaling`, `ec2`, …).
fn service(headers: &HeaderMap, body: &[u8]) -> &'static str {
    if headers.contains_key("x-amz-target") {
        return "json";
    }
    let version = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "Version")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    match version.as_str() {
        "2011-01-01" => "autoscaling",
        "2016-11-15" => "ec2",
        "2015-12-01" => "elasticloadbalancing",
        "2011-06-15" => "sts",
        "2010-08-01" => "monitoring",
        _ => "?",
    }
}

/// An error answer in the protocol the request spoke.
fn error_response(headers: &HeaderMap, body: &[u8], status: u16, code: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let message = format!("{code} injected by the test's AWS fault layer");
    if headers.contains_key("x-amz-target") {
        let ty = if code == "Throttling" {
            "ThrottlingException"
        } else {
            code
        };
        let mut r = (
            status,
            [("content-type", "application/x-amz-json-1.1")],
            format!("{{\"__type\":\"{ty}\",\"message\":\"{message}\"}}"),
        )
            .into_response();
        r.headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_str(ty).unwrap());
        return r;
    }
    let ec2 = url::form_urlencoded::parse(body).any(|(k, v)| k == "Version" && v == "2016-11-15");
    let xml = if ec2 {
        let code = if code == "Throttling" {
            "RequestLimitExceeded"
        } else {
            code
        };
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-layer</RequestID></Response>")
    } else {
        format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-layer</RequestId></ErrorResponse>")
    };
    (status, [("content-type", "text/xml")], xml).into_response()
}

impl State {
    /// The effect for this call, if a rule matches.
    fn effect(&self, op: &str, service: &str) -> Option<Effect> {
        let mut rules = self.rules.lock().unwrap();
        for r in rules.iter_mut() {
            if !matches(&r.op, op, service) {
                continue;
            }
            if let Effect::Bursts { on, off } = r.effect {
                r.seen += 1;
                if (r.seen - 1) % (on + off).max(1) < on {
                    return Some(Effect::Throttle);
                }
                continue;
            }
            if r.left == Some(0) {
                continue;
            }
            if r.skip > 0 {
                r.skip -= 1;
                continue;
            }
            r.seen += 1;
            if (r.seen - 1) % r.every.max(1) == 0 {
                if let Some(n) = &mut r.left {
                    *n -= 1;
                }
                return Some(r.effect.clone());
            }
        }
        None
    }

    fn frozen(&self, op: &str, service: &str) -> bool {
        self.rules
            .lock()
            .unwrap()
            .iter()
            .any(|r| matches!(r.effect, Effect::Freeze) && matches(&r.op, op, service))
    }

    /// Shows RDS's status as it takes its time, in DescribeDBInstances' answers.
    fn stretch_rds(&self, op: &str, xml: String) -> String {
        if op != "DescribeDBInstances" {
            return xml;
        }
        match self
            .rds
            .lock()
            .unwrap()
            .as_ref()
            .and_then(RdsTiming::status)
        {
            Some(status) => xml.replace(
                "<DBInstanceStatus>available</DBInstanceStatus>",
                &format!("<DBInstanceStatus>{status}</DBInstanceStatus>"),
            ),
            None => xml,
        }
    }

    /// Stretches instance lifecycles in the answers that show them.
    fn stretch(&self, op: &str, xml: String) -> String {
        let mut guard = self.lifecycle.lock().unwrap();
        let Some(l) = guard.as_mut() else {
            return xml;
        };
        let now = Instant::now();
        // Note every instance id the first time it is seen.
        for chunk in xml
            .split("<InstanceId>")
            .skip(1)
            .chain(xml.split("<Id>").skip(1))
        {
            if let Some(end) = chunk.find('<') {
                let id = &chunk[..end];
                if id.starts_with("i-") && !l.old.contains(id) {
                    l.first_seen.entry(id.to_string()).or_insert(now);
                }
            }
        }
        let age = |id: &str| l.first_seen.get(id).map(|t| now - *t);
        match op {
            "DescribeAutoScalingGroups" => {
                let young = |id: &str| age(id).is_some_and(|a| a < l.pending);
                rewrite_members(&xml, "InstanceId", &|id| young(id).then_some(ASG_PENDING))
            }
            "DescribeTargetHealth" => {
                let young = |id: &str| age(id).is_some_and(|a| a < l.pending + l.initial);
                rewrite_members(&xml, "Id", &|id| young(id).then_some(TARGET_INITIAL))
            }
            _ => xml,
        }
    }
}

/// True when a rule's operation pattern matches a call.
fn matches(pattern: &str, op: &str, service: &str) -> bool {
    pattern == "*" || pattern == op || pattern.strip_suffix(":*").is_some_and(|s| s == service)
}

/// A frozen call, counted while it is held (also when the client gives up and the handler is
/// dropped).
struct HeldCall<'a>(&'a State);

impl<'a> HeldCall<'a> {
    fn new(state: &'a State) -> HeldCall<'a> {
        state.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        HeldCall(state)
    }
}

impl Drop for HeldCall<'_> {
    fn drop(&mut self) {
        self.0
            .held
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn forward(
    state: Arc<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = operation(&headers, &body);
    let service = service(&headers, &body);
    state.calls.lock().unwrap().push(op.clone());
    if let Some(rds) = state.rds.lock().unwrap().as_mut() {
        match op.as_str() {
            "ModifyDBInstance" => rds.modified_at = Some(Instant::now()),
            "RebootDBInstance" => rds.rebooted_at = Some(Instant::now()),
            _ => {}
        }
    }
    if headers.contains_key("x-amz-target") {
        state
            .bodies
            .lock()
            .unwrap()
            .push((op.clone(), body.clone()));
    }
    match state.effect(&op, service) {
        Some(Effect::Throttle) => return error_response(&headers, &body, 400, "Throttling"),
        Some(Effect::Fail(status, code)) => return error_response(&headers, &body, status, code),
        Some(Effect::Delay(d)) => tokio::time::sleep(d).await,
        Some(Effect::Answer(json)) => {
            return (
                StatusCode::OK,
                [("content-type", "application/x-amz-json-1.1")],
                json,
            )
                .into_response()
        }
        Some(Effect::Serve(r)) => {
            let (status, json) = (r.0)(&body);
            let ty = serde_json::from_str::<serde_json::Value>(&json)
                .ok()
                .and_then(|v| v["__type"].as_str().map(str::to_string));
            let mut resp = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [("content-type", "application/x-amz-json-1.1")],
                json,
            )
                .into_response();
            if let Some(ty) = ty.filter(|_| status >= 400) {
                resp.headers_mut()
                    .insert("x-amzn-errortype", HeaderValue::from_str(&ty).unwrap());
            }
            return resp;
        }
        Some(Effect::Freeze) => {
            let held = HeldCall::new(&state);
            while state.frozen(&op, service) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            drop(held);
        }
        Some(Effect::Bursts { .. }) | None => {}
    }
    let Forwarded {
        status,
        headers: out_headers,
        body: bytes,
    } = match forward_to(&state.client, &state.upstream, method, &uri, &headers, body).await {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let body = match String::from_utf8(bytes.to_vec()) {
        Ok(text) => Bytes::from(state.stretch_rds(&op, state.stretch(&op, text))),
        Err(_) => bytes,
    };
    let mut r = (status, body).into_response();
    r.headers_mut().extend(out_headers);
    r
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (moto's URL).
    pub fn start(upstream: &str) -> FaultProxy {
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            rules: Mutex::new(Vec::new()),
            lifecycle: Mutex::new(None),
            rds: Mutex::new(None),
            calls: Mutex::new(Vec::new()),
            bodies: Mutex::new(Vec::new()),
            held: Default::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let s = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                // No body limit: a fleet's coordinator puts its whole binary in S3 through it.
                let app = axum::Router::new()
                    .fallback(
                        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                            forward(s.clone(), method, uri, headers, body)
                        },
                    )
                    .layer(axum::extract::DefaultBodyLimit::disable());
                axum::serve(listener, app).await.unwrap();
            });
        });
        FaultProxy { url, state }
    }

    fn add(&self, op: &str, every: u32, left: Option<u32>, effect: Effect) {
        self.add_after(op, 0, every, left, effect);
    }

    fn add_after(&self, op: &str, skip: u32, every: u32, left: Option<u32>, effect: Effect) {
        self.state.rules.lock().unwrap().push(Rule {
            op: op.into(),
            every,
            left,
            skip,
            seen: 0,
            effect,
        });
    }

    /// Throttles every `every`-th call of `op` (`*`: all operations), starting with the first.
    pub fn throttle(&self, op: &str, every: u32) {
        self.add(op, every, None, Effect::Throttle);
    }

    /// Fails the next `times` calls of `op` with `status` and `code`.
    pub fn fail(&self, op: &str, status: u16, code: &'static str, times: Option<u32>) {
        self.add(op, 1, times, Effect::Fail(status, code));
    }

    /// Lets `skip` calls of `op` through, then fails the next `times` with `status` and `code`.
    pub fn fail_after(&self, op: &str, skip: u32, status: u16, code: &'static str, times: u32) {
        self.add_after(op, skip, 1, Some(times), Effect::Fail(status, code));
    }

    /// Delays every call of `op`.
    pub fn delay(&self, op: &str, by: Duration) {
        self.add(op, 1, None, Effect::Delay(by));
    }

    /// Throttles `op`'s calls (`autoscaling:*`: every Auto Scaling call) in bursts: `on` in a
    /// row, then `off` through, and again (`on` 9, `off` 1: 90 %).
    pub fn throttle_bursts(&self, op: &str, on: u32, off: u32) {
        self.add(op, 1, None, Effect::Bursts { on, off });
    }

    /// Accepts calls of `op` (`*`: all) and never answers until [`FaultProxy::thaw`].
    pub fn freeze(&self, op: &str) {
        self.add(op, 1, None, Effect::Freeze);
    }

    /// Calls frozen right now (accepted, not answered).
    pub fn held(&self) -> usize {
        self.state.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until at least `n` calls are frozen: a test sees that its process is stuck in an
    /// AWS call instead of sleeping and hoping.
    pub fn wait_held(&self, n: usize, timeout: Duration) {
        super::wait_until(
            &format!("{n} call(s) held by the frozen endpoint"),
            timeout,
            || self.held() >= n,
        );
    }

    /// Answers every call of `op` with this JSON body until [`FaultProxy::clear`].
    pub fn answer(&self, op: &str, json: impl Into<String>) {
        self.add(op, 1, None, Effect::Answer(json.into()));
    }

    /// Answers every call of `op` with what `respond` says of its request body (status, JSON)
    /// until [`FaultProxy::clear`].
    pub fn serve(
        &self,
        op: &str,
        respond: impl Fn(&[u8]) -> (u16, String) + Send + Sync + 'static,
    ) {
        self.add(op, 1, None, Effect::Serve(Responder(Arc::new(respond))));
    }

    /// Drops the rules of `op`.
    pub fn clear(&self, op: &str) {
        self.state.rules.lock().unwrap().retain(|r| r.op != op);
    }

    /// Drops every rule: frozen calls go on.
    pub fn thaw(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// Instances not in `old` stay `Pending` for `pending` after they are first seen, then
    /// their targets stay `initial` for `initial` more.
    pub fn stretch_lifecycles(
        &self,
        pending: Duration,
        initial: Duration,
        old: impl IntoIterator<Item = String>,
    ) {
        *self.state.lifecycle.lock().unwrap() = Some(Lifecycle {
            pending,
            initial,
            old: old.into_iter().collect(),
            first_seen: HashMap::new(),
        });
    }

    /// RDS takes its time: after each ModifyDBInstance the instance says `modifying` for
    /// `modify`; after each RebootDBInstance it still says `available` for `lag` (as AWS does
    /// for a moment), then `rebooting` for `reboot`.
    pub fn stretch_rds(&self, modify: Duration, lag: Duration, reboot: Duration) {
        *self.state.rds.lock().unwrap() = Some(RdsTiming {
            modify,
            lag,
            reboot,
            ..Default::default()
        });
    }

    /// Every operation seen so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The JSON request bodies of every call of `op` seen so far.
    pub fn requests(&self, op: &str) -> Vec<serde_json::Value> {
        self.state
            .bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, b)| serde_json::from_slice(b).unwrap())
            .collect()
    }

    /// How many calls of `op` were seen.
    pub fn count(&self, op: &str) -> usize {
        self.calls().iter().filter(|c| *c == op).count()
    }
}
