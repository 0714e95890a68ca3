//! The load engine's HTTP/1.1 client. Every virtual user holds one keep-alive connection per
//! origin and drives it with hyper directly: origins and paths are parsed once when a run is
//! planned, a request is a method, a path and a few headers written on the user's own
//! connection, and users share nothing but the TLS configuration (no pool, no lock, no URL
//! re-parse per request). reqwest still serves everything outside the measured load (readiness
//! checks, the EAR key, token fetches).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST, LOCATION};
use http::uri::PathAndQuery;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::recorder::FailureClass;

/// Where connections go: scheme, host and port, with what a request needs of them.
#[derive(Debug, PartialEq, Eq)]
pub struct Origin {
    https: bool,
    host: String,
    port: u16,
    /// The `Host` header.
    authority: HeaderValue,
    /// `scheme://host:port/`, to resolve unusual relative references against.
    base: url::Url,
}

impl Origin {
    /// The origin of a URL (`http` or `https`, with a host).
    pub fn of(url: &url::Url) -> Result<Arc<Origin>, String> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(format!("{url}: scheme {other} is neither http nor https")),
        };
        let host = url
            .host_str()
            .ok_or_else(|| format!("{url} has no host"))?
            .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{url} has no port"))?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let mut base = url.clone();
        base.set_path("/");
        base.set_query(None);
        base.set_fragment(None);
        Ok(Arc::new(Origin {
            https,
            authority: HeaderValue::from_str(&authority)
                .map_err(|_| format!("{url}: {authority} is not a valid Host header"))?,
            host,
            port,
            base,
        }))
    }

    /// `host:port`, as messages name it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The host without IPv6 brackets, for connecting and for TLS server names.
    fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// A request target parsed once: an origin and a path with its query.
#[derive(Debug, Clone)]
pub struct Address {
    /// Where the connection goes.
    pub origin: Arc<Origin>,
    /// The request target sent on it.
    pub path: PathAndQuery,
}

impl Address {
    /// The address of an absolute URL.
    pub fn of(url: &url::Url) -> Result<Address, String> {
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        Ok(Address {
            origin: Origin::of(url)?,
            path: PathAndQuery::try_from(path).map_err(|e| format!("{url}: {e}"))?,
        })
    }

    /// The same origin with another absolute path (and query).
    pub fn with_path(&self, path: &str) -> Result<Address, String> {
        Ok(Address {
            origin: self.origin.clone(),
            path: PathAndQuery::try_from(path).map_err(|e| format!("{path}: {e}"))?,
        })
    }

    /// A reference (a `Location`) resolved against this address, as a browser would.
    pub fn join(&self, reference: &str) -> Result<Address, String> {
        let plain = !reference.contains("./") && !reference.contains("://");
        if plain && reference.starts_with('/') && !reference.starts_with("//") {
            return self.with_path(reference);
        }
        if plain && !reference.is_empty() && !reference.starts_with(['?', '#', '/']) {
            let dir = &self.path.path()[..=self.path.path().rfind('/').unwrap_or(0)];
            return self.with_path(&format!("{dir}{reference}"));
        }
        let here = self
            .origin
            .base
            .join(self.path.as_str())
            .map_err(|e| format!("{}: {e}", self.path))?;
        let there = here
            .join(reference)
            .map_err(|e| format!("bad reference {reference:?}: {e}"))?;
        let mut to = Address::of(&there)?;
        if *to.origin == *self.origin {
            to.origin = self.origin.clone();
        }
        Ok(to)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.origin.https { "https" } else { "http" };
        write!(
            f,
            "{scheme}://{}{}",
            self.origin.authority.to_str().unwrap_or("?"),
            self.path
        )
    }
}

/// What came back.
#[derive(Debug)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// `Location`, the only header the tasks read.
    pub location: Option<HeaderValue>,
    /// The whole body.
    pub body: Bytes,
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// Its class in the failure table.
    pub class: FailureClass,
    /// What happened, naming the address where it helps.
    pub message: String,
}

impl HttpError {
    fn new(class: FailureClass, message: impl Into<String>) -> HttpError {
        HttpError {
            class,
            message: message.into(),
        }
    }

    /// A transport error from hyper, classified by its deepest cause.
    fn transport(e: &hyper::Error) -> HttpError {
        let mut detail = e.to_string();
        let mut io_kind = None;
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                io_kind = Some(io.kind());
            }
            detail = format!("{detail}: {s}");
            source = s.source();
        }
        let reset = e.is_incomplete_message()
            || e.is_canceled()
            || e.is_closed()
            || matches!(
                io_kind,
                Some(
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                )
            );
        let class = if reset {
            FailureClass::Reset
        } else {
            FailureClass::Transport
        };
        HttpError::new(class, detail)
    }

    fn timeout(after: Duration, origin: &Origin) -> HttpError {
        HttpError::new(
            FailureClass::Timeout,
            format!(
                "no answer within {} at {}",
                humantime::format_duration(after),
                origin.address()
            ),
        )
    }
}

/// How users connect: TLS settings and time limits, shared by all users of a run.
pub struct HttpClient {
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    timeout: Duration,
}

/// One user's connections, one per origin it has spoken to.
#[derive(Default)]
pub struct Connections {
    held: Vec<(Arc<Origin>, SendRequest<Full<Bytes>>)>,
}

impl Connections {
    /// Connections currently open.
    pub fn open(&self) -> usize {
        self.held.iter().filter(|(_, s)| !s.is_closed()).count()
    }

    fn take(&mut self, origin: &Arc<Origin>) -> Option<SendRequest<Full<Bytes>>> {
        let i = self
            .held
            .iter()
            .position(|(o, _)| Arc::ptr_eq(o, origin) || **o == **origin)?;
        let (_, sender) = self.held.swap_remove(i);
        (!sender.is_closed()).then_some(sender)
    }
}

impl HttpClient {
    /// A client on this TLS configuration; `timeout` bounds a whole request (connect, send,
    /// body), `connect_timeout` the TCP and TLS handshakes.
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> HttpClient {
        HttpClient {
            tls: tokio_rustls::TlsConnector::from(tls),
            connect_timeout,
            timeout,
        }
    }

    /// Sends one request on the user's connection to `to` (opening it if needed) and reads the
    /// whole response. A kept-alive connection the server closed meanwhile is replaced once.
    pub async fn send(
        &self,
        conns: &mut Connections,
        method: Method,
        to: &Address,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Response, HttpError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = Uri::from(to.path.clone());
        let h = req.headers_mut();
        h.insert(HOST, to.origin.authority.clone());
        for (k, v) in headers {
            h.append(k.clone(), v.clone());
        }
        let exchange = async {
            let (mut sender, reused) = match conns.take(&to.origin) {
                Some(s) => (s, true),
                None => (self.connect(&to.origin).await?, false),
            };
            let resp = match sender.try_send_request(req).await {
                Ok(r) => r,
                Err(mut e) => match e.take_message() {
                    // Never written: the server closed the idle connection. Once more, fresh.
                    Some(req) if reused => {
                        sender = self.connect(&to.origin).await?;
                        sender
                            .send_request(req)
                            .await
                            .map_err(|e| HttpError::transport(&e))?
                    }
                    _ => return Err(HttpError::transport(e.error())),
                },
            };
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| HttpError::transport(&e))?
                .to_bytes();
            conns.held.push((to.origin.clone(), sender));
            Ok(Response {
                status: parts.status,
                location: parts.headers.get(LOCATION).cloned(),
                body,
            })
        };
        // On a timeout the connection is dropped with the future: its state is unknown.
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(HttpError::timeout(self.timeout, &to.origin)))
    }

    async fn connect(&self, origin: &Origin) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let handshakes = async {
            let tcp = TcpStream::connect((origin.bare_host(), origin.port))
                .await
                .map_err(|e| {
                    HttpError::new(
                        FailureClass::Connect,
                        format!("{e} at {}", origin.address()),
                    )
                })?;
            let _ = tcp.set_nodelay(true);
            if !origin.https {
                return handshake(tcp).await;
            }
            let name = ServerName::try_from(origin.bare_host().to_string())
                .map_err(|e| HttpError::new(FailureClass::Tls, format!("{}: {e}", origin.host)))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| tls_error(origin, e))?;
            handshake(tls).await
        };
        tokio::time::timeout(self.connect_timeout, handshakes)
            .await
            .unwrap_or_else(|_| {
                Err(HttpError::new(
                    FailureClass::Timeout,
                    format!("connecting to {} timed out", origin.address()),
                ))
            })
    }
}

/// A failed TLS handshake: a certificate problem says how to trust the CA; a dropped
/// connection during it is a reset.
fn tls_error(origin: &Origin, e: std::io::Error) -> HttpError {
    let rustls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some();
    if rustls {
        HttpError::new(
            FailureClass::Tls,
            format!(
                "TLS with {}: {e}: trust its CA with `tls: {{ ca-file: … }}` in the environment",
                origin.base.origin().ascii_serialization()
            ),
        )
    } else {
        HttpError::new(
            FailureClass::Reset,
            format!("TLS handshake with {}: {e}", origin.address()),
        )
    }
}

/// HTTP/1.1 over an open stream; the connection is driven by a task of its own on the
/// calling runtime (the user's engine thread).
async fn handshake<S>(io: S) -> Result<SendRequest<Full<Bytes>>, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| HttpError::transport(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(url: &str) -> Address {
        Address::of(&url::Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn references_resolve_as_a_browser_would() {
        let new_session = at("https://v.example:8443/challenge-response/v1/newSession?nonce=x");
        for (reference, want) in [
            (
                "session/1f2e",
                "https://v.example:8443/challenge-response/v1/session/1f2e",
            ),
            ("/other/place", "https://v.example:8443/other/place"),
            (
                "../v2/session/9",
                "https://v.example:8443/challenge-response/v2/session/9",
            ),
            ("http://elsewhere/s/1", "http://elsewhere/s/1"),
        ] {
            let to = new_session.join(reference).unwrap();
            assert_eq!(to.to_string(), want, "{reference}");
            let plain = url::Url::parse(&new_session.to_string())
                .unwrap()
                .join(reference)
                .unwrap();
            assert_eq!(to.to_string(), plain.as_str(), "agrees with the url crate");
        }
        let same = new_session.join("session/1").unwrap();
        assert!(
            Arc::ptr_eq(&same.origin, &new_session.origin),
            "one connection"
        );
    }

    #[test]
    fn the_host_header_carries_a_port_only_when_the_url_does() {
        assert_eq!(at("https://v.example/x").origin.authority, "v.example");
        assert_eq!(at("http://127.0.0.1:9/x").origin.authority, "127.0.0.1:9");
        assert_eq!(at("http://127.0.0.1:9/x").origin.address(), "127.0.0.1:9");
        assert_eq!(at("https://v.example/x").origin.address(), "v.example:443");
    }
}
