//! `--dashboard ADDR` on `run`, `demo` and `rehearse --campaign`: the flags, and the dashboard's start and end around
//! a campaign (see [`crate::dashboard`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::dashboard::{Dashboard, DashboardAddr};
use crate::error::Result;

/// How long the page keeps being served after the campaign ends, while one is open: long
/// enough for it to show the end and the report's link.
const LINGER: Duration = Duration::from_secs(2);

/// The dashboard's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DashboardArgs {
    /// Serve a live dashboard of the campaign at this address: HOST:PORT, :PORT or PORT (the
    /// last two on loopback; port 0 picks a free one). Read-only.
    #[arg(long, value_name = "ADDR")]
    pub dashboard: Option<String>,
    /// Let --dashboard listen on an address other than loopback (anyone who reaches it sees
    /// the campaign).
    #[arg(long, requires = "dashboard")]
    pub dashboard_allow_remote: bool,
}

impl DashboardArgs {
    /// The address, checked (bad input before anything starts).
    pub fn addr(&self) -> Result<Option<DashboardAddr>> {
        self.dashboard
            .as_deref()
            .map(|a| DashboardAddr::parse(a, self.dashboard_allow_remote))
            .transpose()
    }
}

/// Starts the dashboard when asked and says where it is.
pub async fn start(addr: Option<DashboardAddr>) -> Result<Option<Dashboard>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let d = Dashboard::start(addr).await?;
    crate::terminal::say(&format!("dashboard: {}", d.url()));
    Ok(Some(d))
}

/// The campaign has ended: the page says so and links the reports; it is served a little
/// longer while a page is open, then stops.
pub async fn finish(dashboard: Option<Dashboard>, reports: Vec<PathBuf>) {
    let Some(d) = dashboard else {
        return;
    };
    d.ended(reports);
    if d.watching() {
        tokio::time::sleep(LINGER).await;
    }
    d.stop();
}
