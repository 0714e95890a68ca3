//! The verification session (Veraison's challenge-response): newSession with a nonce, the
//! evidence (a token for that nonce) and DELETE, each checked; the EAR's signature against the
//! service's key and its nonce against the session's. The steps below run in the order the
//! service sees them.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::{accept, seed_nonce, Reply, Request, Runner, UserCtx, NEW_SESSION_PATH};
use crate::load::http::Address;
use crate::load::recorder::{EndpointId, FailureClass};
use crate::trial::model::NonceMode;
use crate::veraison::ear::{self, EarStatus};
use crate::veraison::release::PSA_EVIDENCE_MEDIA_TYPE;

/// A session resource as the service returns it: only the fields the checks read (the rest,
/// the evidence echoed back among them, is skipped without being built).
#[derive(serde::Deserialize)]
struct SessionBody<'a> {
    #[serde(borrow, default)]
    nonce: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    result: Option<Cow<'a, str>>,
}

/// What a step's check concluded: fine, or a failure's class and message.
type Outcome<T> = Result<T, (FailureClass, String)>;

impl Runner<'_> {
    /// One challenge-response session: newSession, the evidence with its token, DELETE
    /// (whatever the evidence's outcome: the session exists). A success when all three are.
    pub(super) async fn verify(
        &self,
        new_ep: EndpointId,
        ev_ep: EndpointId,
        del_ep: EndpointId,
        ctx: &mut UserCtx<'_>,
    ) -> bool {
        ctx.checks
            .begin(self.sessions.fetch_add(1, Ordering::Relaxed));
        let (nonce, token) = session_nonce(ctx);
        let Some(session) = self.new_session(new_ep, &nonce, ctx).await else {
            return false;
        };
        let evidence_ok = self.evidence(ev_ep, &session, token, &nonce, ctx).await;
        let deleted = self.delete_session(del_ep, &session, ctx).await;
        evidence_ok && deleted
    }

    /// 1. newSession with the nonce as padded base64url, `=` escaped (portable across
    ///    releases); the session's address when the service echoed the nonce.
    async fn new_session(
        &self,
        ep: EndpointId,
        nonce: &[u8],
        ctx: &mut UserCtx<'_>,
    ) -> Option<Address> {
        let query = format!(
            "{NEW_SESSION_PATH}?nonce={}",
            URL_SAFE.encode(nonce).replace('=', "%3D")
        );
        let new_session = self
            .wire
            .routes
            .new_session
            .with_path(&query)
            .expect("base64url is a valid query");
        let headers = [accept()];
        let req = Request::new(Method::POST, &new_session, &headers);
        let reply = self.send(ep, req, ctx).await?;
        match Self::expect_status(&reply, StatusCode::CREATED)
            .and_then(|_| session_address(&reply, &new_session, nonce))
        {
            Ok(session) => {
                self.verdict(ep, &reply, Ok(()));
                Some(session)
            }
            Err(e) => {
                self.verdict(ep, &reply, Err(e));
                None
            }
        }
    }

    /// 2. The evidence: its EAR must be signed by the service's key, carry the session's
    ///    nonce and say `affirming`.
    async fn evidence(
        &self,
        ep: EndpointId,
        session: &Address,
        token: Bytes,
        nonce: &[u8],
        ctx: &mut UserCtx<'_>,
    ) -> bool {
        let headers = [
            (
                CONTENT_TYPE,
                HeaderValue::from_static(PSA_EVIDENCE_MEDIA_TYPE),
            ),
            accept(),
        ];
        let req = Request::new(Method::POST, session, &headers).body(token);
        let Some(reply) = self.send(ep, req, ctx).await else {
            return false;
        };
        let outcome = ctx.checks.time(|| {
            Self::expect_status(&reply, StatusCode::OK)
                .and_then(|_| self.appraisal(&reply.body, nonce))
        });
        self.verdict(ep, &reply, outcome)
    }

    /// The session's result, checked: complete, an EAR that verifies with the service's key
    /// and names the session's nonce, `affirming`.
    fn appraisal(&self, body: &[u8], nonce: &[u8]) -> Outcome<()> {
        let s: SessionBody = serde_json::from_slice(body)
            .map_err(|_| (FailureClass::Body, "session body is not JSON".to_string()))?;
        if s.status.as_deref() != Some("complete") {
            return Err((
                FailureClass::Body,
                format!("session status {:?}, expected complete", s.status),
            ));
        }
        let jwt = s
            .result
            .ok_or((FailureClass::Body, "no result in the session".to_string()))?;
        match ear::check_ear(&jwt, self.ear_key, Some(nonce)) {
            Ok(EarStatus::Affirming) => Ok(()),
            Ok(EarStatus::Warning) => Err((FailureClass::Warning, "ear.status warning".into())),
            Ok(s) => Err((
                FailureClass::Contraindicated,
                format!("ear.status {}", s.as_str()),
            )),
            Err(e) => Err((FailureClass::Body, e.to_string())),
        }
    }

    /// 3. DELETE the session.
    async fn delete_session(
        &self,
        ep: EndpointId,
        session: &Address,
        ctx: &mut UserCtx<'_>,
    ) -> bool {
        let headers = [accept()];
        let req = Request::new(Method::DELETE, session, &headers);
        let Some(reply) = self.send(ep, req, ctx).await else {
            return false;
        };
        let outcome = Self::expect_status(&reply, StatusCode::NO_CONTENT);
        self.verdict(ep, &reply, outcome)
    }
}

/// The session's nonce and a token for it: the seed's (fixed), or 32 fresh random bytes and a
/// token signed for them (its CPU counted as the checks').
fn session_nonce(ctx: &mut UserCtx<'_>) -> (Vec<u8>, Bytes) {
    match ctx.nonce {
        NonceMode::Fixed => (seed_nonce(), ctx.device.seed_token.clone()),
        NonceMode::Fresh => {
            let minter = &ctx.device.minter;
            ctx.checks.time(|| {
                let n: [u8; 32] = rand::random();
                let token = Bytes::from(minter.mint(&n));
                (n.to_vec(), token)
            })
        }
    }
}

/// Where a newly created session lives: its `Location` (relative, `session/<uuid>`) resolved
/// against the request, once the body echoed the nonce sent.
fn session_address(reply: &Reply, new_session: &Address, nonce: &[u8]) -> Outcome<Address> {
    let loc = reply
        .location
        .as_ref()
        .and_then(|l| l.to_str().ok())
        .ok_or((FailureClass::Body, "201 without Location".to_string()))?;
    let s: SessionBody = serde_json::from_slice(&reply.body)
        .map_err(|_| (FailureClass::Body, "session body is not JSON".to_string()))?;
    let echoed = s.nonce.as_deref().and_then(ear::decode_b64_lenient);
    if echoed.as_deref() != Some(nonce) {
        return Err((
            FailureClass::Body,
            "session nonce differs from the one sent".to_string(),
        ));
    }
    new_session
        .join(loc)
        .map_err(|_| (FailureClass::Body, format!("bad Location {loc:?}")))
}
