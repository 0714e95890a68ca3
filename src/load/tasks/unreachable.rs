//! What a transport error outside the measured load means (a token fetch, the EAR key, the
//! readiness check: reqwest's errors), and what to do about an address that refuses.

use super::super::recorder::FailureClass;

/// Classifies a transport error for the failure table.
pub fn classify(e: &reqwest::Error) -> (FailureClass, String) {
    let mut root: &dyn std::error::Error = e;
    let mut io_kind = None;
    let mut tls = false;
    while let Some(next) = root.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
            tls |= io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        }
        tls |= next.downcast_ref::<rustls::Error>().is_some();
        root = next;
    }
    let detail = root.to_string();
    let class = if e.is_timeout() {
        FailureClass::Timeout
    } else if tls || detail.contains("certificate") {
        FailureClass::Tls
    } else if e.is_connect() {
        FailureClass::Connect
    } else if matches!(
        io_kind,
        Some(
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        )
    ) || detail.contains("connection closed")
        || detail.contains("reset")
    {
        FailureClass::Reset
    } else {
        FailureClass::Transport
    };
    let message = match class {
        FailureClass::Timeout => "request timed out".to_string(),
        FailureClass::Tls => match e.url() {
            Some(u) => format!(
                "TLS with {}: {detail}: trust its CA with `tls: {{ ca-file: … }}` in the environment",
                u.origin().ascii_serialization()
            ),
            None => detail,
        },
        // Name the address that refused: it is what the user must start or open.
        FailureClass::Connect => match e.url().and_then(address_of) {
            Some(addr) => format!("{detail} at {addr}"),
            None => detail,
        },
        _ => detail,
    };
    (class, message)
}

/// `host:port` of a URL.
pub fn address_of(url: &url::Url) -> Option<String> {
    Some(format!(
        "{}:{}",
        url.host_str()?,
        url.port_or_known_default()?
    ))
}

/// What to do about an address that refuses connections.
pub fn unreachable_hint(addr: &str) -> String {
    let local =
        addr.starts_with("127.") || addr.starts_with("localhost") || addr.starts_with("[::1]");
    if local {
        let port = addr.rsplit(':').next().unwrap_or("8443");
        format!("is the stand-in running? `trialrunner standin --listen 127.0.0.1:{port}`")
    } else {
        "is the deployment up, and does its security group admit this host?".into()
    }
}

/// A request that did not get an answer: an unreachable target is an infrastructure error
/// (exit 3, as in `stores` and `infra`), named by the address that refused.
pub fn unreachable(url: &url::Url, e: &reqwest::Error) -> crate::error::Error {
    let (class, message) = classify(e);
    if class == FailureClass::Connect {
        let addr = address_of(url).unwrap_or_else(|| url.to_string());
        crate::error::Error::Infra(format!("{message}: {}", unreachable_hint(&addr)))
    } else {
        crate::error::Error::Infra(format!("{url}: {message}"))
    }
}
