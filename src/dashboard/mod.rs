//! The live dashboard (`run --dashboard ADDR`, `demo --dashboard ADDR`): a local, read-only web
//! page that shows a campaign as it happens: where it is (step i/N, the step in progress, the
//! plan's time left), the campaign on one time axis (users, OK/KO per second, p50/p95/p99, the
//! groups' InService instances), the latest run's percentiles and failures per endpoint and per
//! task, failures by cause, the cloud series as they arrive, and, once the campaign ends, links
//! to its reports.
//!
//! It reads the results directory as the campaign writes it ([`frame`]), on a thread of its own,
//! at most once a second and never more than a tenth of the time (a slow build waits longer);
//! frames go to browsers through a `watch` channel (the latest only: a slow browser skips
//! frames). The load engine does not know it exists.

pub mod address;
pub mod frame;
mod server;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use address::DashboardAddr;
pub use frame::{Frame, Watched};

use crate::error::{Error, Result};

/// Fastest refresh.
const EVERY: Duration = Duration::from_secs(1);

/// A running dashboard; stops when [`Dashboard::stop`] is called or it is dropped.
pub struct Dashboard {
    url: String,
    watched: Arc<Mutex<Option<Watched>>>,
    ended: Arc<Mutex<Option<Vec<PathBuf>>>>,
    reports: Arc<Mutex<Vec<PathBuf>>>,
    wake: Arc<tokio::sync::Notify>,
    open: Arc<AtomicUsize>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    refresher: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    /// Binds `addr` (refused with a clear message when taken) and starts serving an empty page.
    pub async fn start(addr: DashboardAddr) -> Result<Dashboard> {
        let listener = tokio::net::TcpListener::bind(addr.0).await.map_err(|e| {
            Error::Usage(format!("--dashboard {}: cannot listen there: {e}", addr.0))
        })?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::io("reading the dashboard's address", e))?;
        let (tx, rx) = watch::channel::<Arc<str>>(Arc::from(
            serde_json::to_string(&Frame::default()).expect("a frame serialises"),
        ));
        let reports = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let served = server::Served {
            frames: rx,
            reports: reports.clone(),
            open: open.clone(),
        };
        let stop = CancellationToken::new();
        let router = server::router(served);
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!("the dashboard stopped serving: {e}");
            }
        });
        let watched = Arc::new(Mutex::new(None));
        let ended = Arc::new(Mutex::new(None));
        let wake = Arc::new(tokio::sync::Notify::new());
        let refresher = tokio::spawn(refresh(
            tx,
            open.clone(),
            watched.clone(),
            ended.clone(),
            wake.clone(),
            stop.clone(),
        ));
        Ok(Dashboard {
            url: format!("http://{bound}/"),
            watched,
            ended,
            reports,
            wake,
            open,
            stop,
            server,
            refresher,
        })
    }

    /// The page's address (`http://127.0.0.1:8090/`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Shows this campaign from now on (the demo follows its trials in turn).
    pub fn follow(&self, campaign: Watched) {
        *self.watched.lock().expect("watched lock") = Some(campaign);
        *self.ended.lock().expect("ended lock") = None;
        self.wake.notify_one();
    }

    /// The campaign has ended: the page says so and links these reports (served at `/report/N`).
    pub fn ended(&self, reports: Vec<PathBuf>) {
        let links = {
            let mut served = self.reports.lock().expect("reports lock");
            let first = served.len();
            served.extend(reports);
            (first..served.len())
                .map(|i| PathBuf::from(format!("/report/{i}")))
                .collect()
        };
        *self.ended.lock().expect("ended lock") = Some(links);
        self.wake.notify_one();
    }

    /// Whether a page is open on it now.
    pub fn watching(&self) -> bool {
        self.open.load(Ordering::SeqCst) > 0
    }

    /// Stops serving (browsers see the stream end); dropping it does the same.
    pub fn stop(self) {}
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.stop.cancel();
        self.refresher.abort();
        self.server.abort();
    }
}

/// Builds a frame whenever a browser is watching (at once when woken), at most once per
/// [`EVERY`] and spending at most a tenth of the time on it; publishes the latest.
async fn refresh(
    tx: watch::Sender<Arc<str>>,
    open: Arc<AtomicUsize>,
    watched: Arc<Mutex<Option<Watched>>>,
    ended: Arc<Mutex<Option<Vec<PathBuf>>>>,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    let mut pause = Duration::ZERO;
    let mut shown_end = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
        let Some(w) = watched.lock().expect("watched lock").clone() else {
            pause = EVERY;
            continue;
        };
        let links = ended.lock().expect("ended lock").clone();
        let watching = open.load(Ordering::SeqCst) > 0;
        let end_unseen = links.is_some() && !shown_end;
        if !watching && !end_unseen {
            // Nobody is watching: look again soon, build nothing.
            pause = EVERY;
            continue;
        }
        shown_end = links.is_some();
        let began = Instant::now();
        let built = tokio::task::spawn_blocking(move || {
            let mut f = frame::build(&w);
            if let Some(links) = links {
                f.ended = true;
                f.reports = links.iter().map(|l| l.display().to_string()).collect();
            }
            serde_json::to_string(&f).expect("a frame serialises")
        })
        .await;
        match built {
            Ok(json) => {
                tx.send_replace(Arc::from(json));
            }
            Err(e) => tracing::warn!("building a dashboard frame: {e}"),
        }
        pause = EVERY.max(began.elapsed() * 10);
    }
}
