//! The stand-in's own admin API under `/standin/v1/`: count and clear the stores, the routes'
//! answered counts, flush the session cache.

use super::*;

pub(super) async fn admin_counts(State(st): State<Arc<AppState>>) -> Response {
    match st.store.counts().await {
        Ok(c) => axum::Json(c).into_response(),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub(super) async fn admin_clear(State(st): State<Arc<AppState>>) -> Response {
    match st.store.clear().await {
        Ok(before) => axum::Json(json!({"before": before})).into_response(),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub(super) async fn admin_counters(State(st): State<Arc<AppState>>) -> Response {
    let counts: Vec<Value> = st
        .answered
        .counts()
        .iter()
        .map(|((route, second), n)| json!({"route": route, "second": second, "count": n}))
        .collect();
    axum::Json(json!({"counts": counts})).into_response()
}

pub(super) async fn admin_flush_sessions(State(st): State<Arc<AppState>>) -> Response {
    let flushed = st.sessions.lock().expect("sessions lock").drain().count();
    axum::Json(json!({"flushed": flushed})).into_response()
}
