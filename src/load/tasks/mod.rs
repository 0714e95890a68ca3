//! What a virtual user does: Veraison's `well-known`, `provision` and `verify` (the 3-request
//! session) and plain HTTP steps. Success is semantic (contract §7): provisioning needs
//! `status == "success"`, verification an EAR whose `ear.status` is `affirming`.

mod device;
mod target;
mod unreachable;
mod verify;

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub use device::{seed_nonce, DeviceMaterial};
pub use target::{header_map, HttpTask, Routes, Target, Wire};
pub use unreachable::{address_of, classify, unreachable, unreachable_hint};

use super::http::{Address, Connections, HttpError, Request, Timings};
use super::recorder::{Endpoint, EndpointId, FailureClass, Kind, Recorder, Sample};
use crate::trial::model::NonceMode;
use crate::trial::TaskRef;
use crate::veraison::ear;

pub(crate) const NEW_SESSION_PATH: &str = "/challenge-response/v1/newSession";

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
    /// CPU the semantic checks took (token minting, EAR signature and nonce), on a sample of
    /// the user's sessions.
    pub checks: CheckCpu,
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
            checks: CheckCpu::default(),
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
    /// Verification sessions begun in the run (which of them have their checks' CPU
    /// measured: [`CheckCpu`]).
    pub sessions: &'a AtomicU64,
}

/// One verification session in this many has its checks' CPU measured (see [`CheckCpu`]).
pub const CHECK_SAMPLE: u64 = 8;

/// What the semantic checks (token minting, the EAR's signature and nonce) cost the generator,
/// measured on one session in [`CHECK_SAMPLE`] of the run, its first among them: reading a
/// thread's CPU clock is a system call, and the four a session with a fresh nonce would take
/// were 3 % of its generator CPU. The checks themselves run on every session.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckCpu {
    /// Verification sessions begun.
    pub sessions: u64,
    /// Of those, the ones measured.
    pub timed: u64,
    /// Their checks' CPU, ns.
    pub timed_ns: u64,
    /// Whether the current session is measured.
    timing: bool,
}

impl CheckCpu {
    /// A new session, the run's `nth` (from 0): measured when `nth` is a multiple of
    /// [`CHECK_SAMPLE`], so that any run with a session measures one, in either model.
    pub fn begin(&mut self, nth: u64) {
        self.timing = nth % CHECK_SAMPLE == 0;
        self.timed += u64::from(self.timing);
        self.sessions += 1;
    }

    /// Runs `check`, adding its CPU when this session is measured.
    pub fn time<T>(&mut self, check: impl FnOnce() -> T) -> T {
        if !self.timing {
            return check();
        }
        let start = thread_cpu_ns();
        let out = check();
        self.timed_ns += thread_cpu_ns().saturating_sub(start);
        out
    }

    /// Adds another's counts (users' into the run's).
    pub fn merge(&mut self, other: &CheckCpu) {
        self.sessions += other.sessions;
        self.timed += other.timed;
        self.timed_ns += other.timed_ns;
    }

    /// The checks' CPU over all sessions, estimated from the measured ones, ns.
    pub fn estimated_ns(&self) -> u64 {
        if self.timed == 0 {
            return 0;
        }
        (u128::from(self.timed_ns) * u128::from(self.sessions) / u128::from(self.timed)) as u64
    }
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

/// A response with its sample, before the task has judged it.
struct Reply {
    status: StatusCode,
    location: Option<HeaderValue>,
    body: Bytes,
    sample: Sample,
}

/// `Accept: */*`, sent with every Veraison request.
fn accept() -> (HeaderName, HeaderValue) {
    (ACCEPT, HeaderValue::from_static("*/*"))
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
    async fn send(&self, ep: EndpointId, req: Request<'_>, ctx: &mut UserCtx<'_>) -> Option<Reply> {
        let start = Instant::now();
        let mut timings = Timings::default();
        self.recorder.note_sent();
        let result = self
            .wire
            .http
            .send(&mut ctx.connections, req, &mut timings)
            .await;
        self.recorder.note_over();
        let end = Instant::now();
        let sample = Sample {
            end,
            service_us: (end - start).as_micros() as u64,
            corrected_us: None,
            bytes: 0,
            ok: false,
            timings,
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
                timings: Timings::default(),
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
            timings: Timings::default(),
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
        let req = Request::new(Method::GET, to, &headers);
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
        let req = Request::new(Method::POST, &self.wire.routes.submit, &headers).body(body);
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
        let req = Request::new(t.method.clone(), &self.wire.routes.http[name], headers)
            .body(t.body.clone());
        let Some(reply) = self.send(ep, req, ctx).await else {
            return false;
        };
        let outcome = Self::expect_status(&reply, t.expect);
        self.verdict(ep, &reply, outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::{CheckCpu, CHECK_SAMPLE};

    #[test]
    fn one_session_in_eight_of_the_run_is_measured_the_first_always_and_the_estimate_scales_up() {
        let run_counter = AtomicU64::new(0);
        let next = || run_counter.fetch_add(1, Ordering::Relaxed);
        // Closed model: 3 users of 8 sessions each, interleaved: 24 sessions, 3 measured.
        let mut users = [CheckCpu::default(); 3];
        for _ in 0..8 {
            for user in &mut users {
                user.begin(next());
            }
        }
        let mut run = CheckCpu::default();
        users.iter().for_each(|u| run.merge(u));
        assert_eq!((run.sessions, run.timed), (24, 3));
        // Open model: a user per session; a run of 3 sessions still measures its first.
        let short_run = AtomicU64::new(0);
        let mut run = CheckCpu::default();
        for _ in 0..3 {
            let mut one = CheckCpu::default();
            one.begin(short_run.fetch_add(1, Ordering::Relaxed));
            run.merge(&one);
        }
        assert_eq!((run.sessions, run.timed), (3, 1));
        let sampled = CheckCpu {
            sessions: 24,
            timed: 3,
            timed_ns: 300,
            timing: false,
        };
        assert_eq!(sampled.estimated_ns(), 2_400);
        assert_eq!(CheckCpu::default().estimated_ns(), 0);
    }

    #[test]
    fn only_a_measured_sessions_checks_are_timed() {
        let burn = || (0..2_000_000u64).fold(0u64, |a, i| a.wrapping_mul(31).wrapping_add(i));
        let mut c = CheckCpu::default();
        c.begin(1); // not its turn
        std::hint::black_box(c.time(burn));
        assert_eq!(c.timed_ns, 0);
        c.begin(CHECK_SAMPLE * 5); // its turn
        assert_eq!(c.timed, 1);
        std::hint::black_box(c.time(burn));
        assert!(
            c.timed_ns > 0,
            "a CPU-bound check on a measured session takes CPU time"
        );
    }
}
