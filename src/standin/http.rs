//! What every route shares: problem+json and vendor JSON responses, media-type negotiation,
//! and the key and time formats Veraison writes.

use super::*;
pub(super) const DISCOVERY_MT: &str = "application/vnd.veraison.discovery+json";
pub(super) const PROV_SESSION_MT: &str = "application/vnd.veraison.provisioning-session+json";
pub(super) const CR_SESSION_MT: &str = "application/vnd.veraison.challenge-response-session+json";

/// A problem+json response as Veraison's `ReportProblem` writes it.
pub(super) fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
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

pub(super) fn vendor_json(status: StatusCode, media_type: &'static str, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, media_type)],
        body.to_string(),
    )
        .into_response()
}

/// gin's `NegotiateFormat` with a single offer: absent, `*/*`, `application/*` or the exact type.
pub(super) fn accept_ok(headers: &HeaderMap, offered: &str) -> bool {
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
pub(super) fn negotiate(headers: &HeaderMap, offered: &str) -> Result<(), Response> {
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
pub(super) fn parse_media_type(s: &str) -> Option<(String, BTreeMap<String, String>)> {
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

pub(super) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(super) fn key_b64(b: &[u8]) -> String {
    URL_SAFE.encode(b)
}
