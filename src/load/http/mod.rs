//! The load engine's HTTP/1.1 client. Every virtual user holds one keep-alive connection per
//! origin and drives it itself: a request is written on the user's own connection and its
//! response read by the same task (no connection task, no channel, no pool, no lock), routes are
//! parsed once when a run is planned, and each request's phases are timed as k6 times them
//! (connect, TLS handshake, waiting for the first byte, receiving the rest). reqwest still serves
//! everything outside the measured load (readiness checks, the EAR key, token fetches).

pub mod address;
mod conn;
pub mod response;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::Method;

pub use address::{Address, Origin};
use conn::{micros, Conn};
use response::Incoming;
pub use response::Response;

use crate::results::cells::FailureClass;

/// Where one request's time went, as k6 splits it; what the recorder keeps per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// The TCP handshake, µs, when this request opened a connection.
    pub connect_us: Option<u64>,
    /// The TLS handshake, µs, likewise.
    pub tls_us: Option<u64>,
    /// From the request written to the first byte of the response, µs.
    pub wait_us: Option<u64>,
    /// From the first byte of the response to its last, µs.
    pub receive_us: Option<u64>,
    /// Connections opened for it.
    pub opened: u32,
    /// Kept-alive connections it found closed by the server.
    pub closed: u32,
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

    /// An I/O error while `doing` something on an open connection: the server closing or
    /// resetting it is a reset, anything else a transport error.
    fn io(doing: &str, e: &std::io::Error) -> HttpError {
        use std::io::ErrorKind::*;
        let class = match e.kind() {
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => FailureClass::Reset,
            _ => FailureClass::Transport,
        };
        HttpError::new(class, format!("{doing}: {e}"))
    }

    /// No answer within `after` from `origin` (its address named: a hung target is found by it).
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

/// One user's connections, one per origin it has spoken to, and the bytes of its next request.
#[derive(Default)]
pub struct Connections {
    held: Vec<(Arc<Origin>, Conn)>,
    /// The request being written (its capacity kept: no allocation per request).
    out: Vec<u8>,
}

impl Connections {
    /// Connections currently held.
    pub fn open(&self) -> usize {
        self.held.len()
    }

    fn take(&mut self, origin: &Arc<Origin>) -> Option<Conn> {
        let i = self
            .held
            .iter()
            .position(|(o, _)| Arc::ptr_eq(o, origin) || **o == **origin)?;
        Some(self.held.swap_remove(i).1)
    }
}

/// A request: where, how, with what.
pub struct Request<'r> {
    /// The method.
    pub method: Method,
    /// Where it goes.
    pub to: &'r Address,
    /// Headers beside `Host` and `Content-Length`, in order.
    pub headers: &'r [(HeaderName, HeaderValue)],
    /// The body.
    pub body: Bytes,
}

impl<'r> Request<'r> {
    /// A request without a body.
    pub fn new(method: Method, to: &'r Address, headers: &'r [(HeaderName, HeaderValue)]) -> Self {
        Request {
            method,
            to,
            headers,
            body: Bytes::new(),
        }
    }

    /// The same request with a body.
    pub fn body(self, body: Bytes) -> Self {
        Request { body, ..self }
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

    /// Sends one request on the user's connection to its origin (opening one if needed) and
    /// reads the whole response; `t` gets its phases. A kept-alive connection the server
    /// closed meanwhile is replaced before anything is written on it.
    pub async fn send(
        &self,
        conns: &mut Connections,
        req: Request<'_>,
        t: &mut Timings,
    ) -> Result<Response, HttpError> {
        // On a timeout the connection is dropped with the future: its state is unknown.
        let to = req.to;
        tokio::time::timeout(self.timeout, self.exchange(conns, req, t))
            .await
            .unwrap_or_else(|_| Err(HttpError::timeout(self.timeout, &to.origin)))
    }

    async fn exchange(
        &self,
        conns: &mut Connections,
        req: Request<'_>,
        t: &mut Timings,
    ) -> Result<Response, HttpError> {
        let origin = &req.to.origin;
        let held = conns.take(origin).and_then(|mut c| {
            if c.closed_while_idle() {
                t.closed += 1;
                None
            } else {
                Some(c)
            }
        });
        let mut conn = match held {
            Some(c) => c,
            None => Box::pin(self.open(origin, t)).await?,
        };
        write_request(&mut conns.out, &req);
        conn.send(&conns.out)
            .await
            .map_err(|e| HttpError::io("sending the request", &e))?;
        let written = Instant::now();
        let mut incoming = Incoming::new(req.method == Method::HEAD);
        let mut first_byte = None;
        let done = loop {
            let n = std::future::poll_fn(|cx| conn.poll_read_into(cx, &mut incoming.buf))
                .await
                .map_err(|e| HttpError::io("reading the response", &e))?;
            if n > 0 && first_byte.is_none() {
                let now = Instant::now();
                t.wait_us = Some(micros(now - written));
                first_byte = Some(now);
            }
            let progress = if n == 0 {
                incoming.at_close().map(Some)
            } else {
                incoming.progress()
            };
            match progress {
                Ok(Some(done)) => break done,
                Ok(None) => {}
                Err(e) if n == 0 => return Err(HttpError::new(FailureClass::Reset, e)),
                Err(e) => return Err(HttpError::new(FailureClass::Transport, e)),
            }
        };
        if let Some(first) = first_byte {
            t.receive_us = Some(micros(first.elapsed()));
        }
        if done.reusable {
            conns.held.push((origin.clone(), conn));
        }
        Ok(done.response)
    }

    async fn open(&self, origin: &Origin, t: &mut Timings) -> Result<Conn, HttpError> {
        tokio::time::timeout(self.connect_timeout, Conn::open(origin, &self.tls, t))
            .await
            .unwrap_or_else(|_| {
                Err(HttpError::new(
                    FailureClass::Timeout,
                    format!("connecting to {} timed out", origin.address()),
                ))
            })
    }
}

/// A request's bytes: request line, `Host`, the headers, `Content-Length` when there is a body
/// (or the method usually has one), the body.
fn write_request(out: &mut Vec<u8>, req: &Request<'_>) {
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.to.path.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(req.to.origin.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in req.headers {
        if name == http::header::HOST || name == http::header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let usually_has_body = matches!(req.method, Method::POST | Method::PUT | Method::PATCH);
    if !req.body.is_empty() || usually_has_body {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(req.body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.body);
}
