//! The dashboard's HTTP side, read-only: `GET /` the page, `GET /events` the frames as
//! server-sent events (the latest frame at once, a snapshot for a page opened late or
//! reloaded, then each new one), `GET /report/N` a final report once it is built. Frames come
//! from a `watch` channel: it holds only the latest, so a slow browser skips frames and never
//! holds anything back.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

/// The page: self-contained (no network, the report's own style), drawing each frame.
const PAGE: &str = include_str!("../../templates/dashboard.html");
/// The report's template, whose style the page shares.
const REPORT_TEMPLATE: &str = include_str!("../../templates/report.html.j2");

/// The report's `<style>` block, so the page looks like the report without a copy of it.
pub(super) fn report_style() -> &'static str {
    let from = REPORT_TEMPLATE.find("<style>").unwrap_or(0);
    let to = REPORT_TEMPLATE[from..]
        .find("</style>")
        .map(|i| from + i + "</style>".len())
        .unwrap_or(from);
    &REPORT_TEMPLATE[from..to]
}

/// What the handlers share.
#[derive(Clone)]
pub(super) struct Served {
    /// The latest frame, as JSON.
    pub frames: watch::Receiver<Arc<str>>,
    /// The final reports, once built.
    pub reports: Arc<Mutex<Vec<PathBuf>>>,
    /// Pages with the stream open now.
    pub open: Arc<AtomicUsize>,
}

/// One open stream, counted while it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Ordering::SeqCst);
        Open(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The routes.
pub(super) fn router(served: Served) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/report/{n}", get(report))
        .with_state(served)
}

async fn page() -> Html<String> {
    Html(PAGE.replace("<!-- report style -->", report_style()))
}

async fn events(
    State(s): State<Served>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let mut frames = s.frames.clone();
    // The latest frame first: a page opened late, or reloaded, starts from a snapshot.
    frames.mark_changed();
    let open = Open::new(&s.open);
    let stream = futures::stream::unfold((frames, open), |(mut frames, open)| async move {
        frames.changed().await.ok()?;
        let frame = frames.borrow_and_update().clone();
        Some((
            Ok(Event::default().event("frame").data(&*frame)),
            (frames, open),
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn report(State(s): State<Served>, Path(n): Path<usize>) -> Response {
    let path = s.reports.lock().expect("reports lock").get(n).cloned();
    let Some(path) = path else {
        return (StatusCode::NOT_FOUND, "no such report (yet)").into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], bytes).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, format!("{}: {e}", path.display())).into_response(),
    }
}
