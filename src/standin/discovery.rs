//! Discovery: the services' well-knowns, and the Keycloak-shaped token endpoint.

use super::*;

pub(super) async fn well_known(
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

pub(super) async fn token(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
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
