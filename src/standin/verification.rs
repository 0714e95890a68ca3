//! Verification: challenge-response sessions, evidence appraisal and signed EARs.

use super::*;

pub(super) fn decode_query_nonce(release: &ReleaseProfile, s: &str) -> Option<Vec<u8>> {
    if release.session_nonce_b64url {
        URL_SAFE_NO_PAD
            .decode(s)
            .or_else(|_| URL_SAFE.decode(s))
            .ok()
    } else {
        URL_SAFE.decode(s).ok()
    }
}

pub(super) async fn new_session(
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

pub(super) const EVIDENCE_TYPES: [&str; 4] = [
    PSA_EVIDENCE_MEDIA_TYPE,
    "application/eat-cwt; profile=\"http://arm.com/psa/2.0.0\"",
    "application/eat+cwt; eat_profile=\"tag:psacertified.org,2023:psa#tfm\"",
    "application/eat+cwt; eat_profile=\"tag:psacertified.org,2019:psa#legacy\"",
];

pub(super) fn session_not_found(id: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        format!("session not found for (id, tenant)=({id}, 0)"),
    )
}

pub(super) fn live_session<'a>(
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

pub(super) async fn evidence(
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
pub(super) async fn appraise(
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

pub(super) async fn get_session(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    let Ok(uid) = uuid::Uuid::parse_str(&id) else {
        return problem(StatusCode::BAD_REQUEST, format!("invalid session id: {id}"));
    };
    let mut sessions = st.sessions.lock().expect("sessions lock");
    match live_session(&mut sessions, &uid) {
        Some(s) => vendor_json(StatusCode::OK, CR_SESSION_MT, &st.session_json(s)),
        None => session_not_found(&id),
    }
}

pub(super) async fn delete_session(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
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
