//! Where the live dashboard listens: an address given as `HOST:PORT`, `:PORT` or `PORT` (the
//! last two on loopback). A dashboard is read-only but shows the campaign's endpoints, figures
//! and errors, so an address other than loopback is refused unless the operator says so.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::{Error, Result};

/// The address a dashboard binds, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DashboardAddr(pub SocketAddr);

impl DashboardAddr {
    /// Parses `HOST:PORT`, `:PORT` or `PORT` (port 0: any free port). A non-loopback host is
    /// refused unless `allow_remote` (bad input, exit 2, before anything is started).
    pub fn parse(text: &str, allow_remote: bool) -> Result<DashboardAddr> {
        let text = text.trim();
        let loopback = |port: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let addr = if let Ok(port) = text.trim_start_matches(':').parse::<u16>() {
            loopback(port)
        } else if let Some(port) = text.strip_prefix("localhost:") {
            loopback(port.parse().map_err(|_| bad(text))?)
        } else {
            text.parse::<SocketAddr>().map_err(|_| bad(text))?
        };
        if !addr.ip().is_loopback() && !allow_remote {
            return Err(Error::Usage(format!(
                "--dashboard {text}: {} is not a loopback address; the dashboard shows the campaign to anyone who can reach it, so say --dashboard-allow-remote to serve it there",
                addr.ip()
            )));
        }
        Ok(DashboardAddr(addr))
    }
}

fn bad(text: &str) -> Error {
    Error::Usage(format!(
        "--dashboard {text}: not an address (HOST:PORT, :PORT or PORT; e.g. 127.0.0.1:8090)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_is_loopback_and_a_remote_address_needs_saying_so() {
        for short in ["8090", ":8090", "localhost:8090", "127.0.0.1:8090"] {
            let a = DashboardAddr::parse(short, false).unwrap();
            assert_eq!(a.0, "127.0.0.1:8090".parse().unwrap(), "{short}");
        }
        assert!(DashboardAddr::parse("[::1]:8090", false).is_ok());
        let refused = DashboardAddr::parse("0.0.0.0:8090", false).unwrap_err();
        assert_eq!(refused.exit_code(), crate::error::exit::BAD_INPUT);
        assert!(
            refused.to_string().contains("--dashboard-allow-remote"),
            "{refused}"
        );
        assert!(DashboardAddr::parse("0.0.0.0:8090", true).is_ok());
        let nonsense = DashboardAddr::parse("here", false).unwrap_err();
        assert!(nonsense.to_string().contains("HOST:PORT"), "{nonsense}");
    }
}
