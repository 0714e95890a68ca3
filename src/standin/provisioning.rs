//! Provisioning: CoRIM submission into the endorsement and trust-anchor stores.

use super::*;

pub(super) async fn submit(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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

pub(super) async fn provision(
    st: &AppState,
    via: store::Via<'_>,
    body: &[u8],
) -> Result<(), String> {
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
