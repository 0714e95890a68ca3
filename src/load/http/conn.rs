//! One user's connection to one origin: a TCP stream, TLS on top for `https`, opened with its
//! handshakes timed, driven by the user's own task (no connection task, no channel between the
//! two: a request is a write and the reads of its response, on the task that needs them).
//!
//! Reads go through one buffer per engine thread, and only the bytes that arrived are kept with
//! the response: a connection holds no buffer while it waits, which keeps a virtual user small.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::address::Origin;
use super::{HttpError, Timings};
use crate::results::cells::FailureClass;

/// Bytes one read may bring (per engine thread, not per connection).
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// A plain or TLS stream.
pub(super) enum Conn {
    /// `http`.
    Plain(TcpStream),
    /// `https` (boxed: the TLS state is large, a plain connection need not carry its size).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// Opens a connection to `origin`, timing the TCP and TLS handshakes into `t`.
    pub(super) async fn open(
        origin: &Origin,
        tls: &tokio_rustls::TlsConnector,
        t: &mut Timings,
    ) -> Result<Conn, HttpError> {
        let refused = |e: io::Error| {
            HttpError::new(
                FailureClass::Connect,
                format!("{e} at {}", origin.address()),
            )
        };
        let host = origin.bare_host();
        // A name is looked up on every connection (a load balancer's DNS spreads them); the
        // lookup is in neither the connect time nor the TLS time.
        let addr = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => std::net::SocketAddr::new(ip, origin.port),
            Err(_) => tokio::net::lookup_host((host, origin.port))
                .await
                .map_err(refused)?
                .next()
                .ok_or_else(|| refused(io::Error::other("no address for the host")))?,
        };
        let began = Instant::now();
        let tcp = TcpStream::connect(addr).await.map_err(refused)?;
        let connected = Instant::now();
        t.connect_us = Some(micros(connected - began));
        t.opened += 1;
        let _ = tcp.set_nodelay(true);
        if !origin.https {
            return Ok(Conn::Plain(tcp));
        }
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| HttpError::new(FailureClass::Tls, format!("{}: {e}", origin.host)))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| tls_error(origin, e))?;
        t.tls_us = Some(micros(connected.elapsed()));
        Ok(Conn::Tls(Box::new(stream)))
    }

    /// Whether the server closed (or wrote on) this idle connection: its readiness, as the
    /// runtime last saw it, without a system call unless something happened.
    pub(super) fn closed_while_idle(&mut self) -> bool {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        // Ready means an end, an error or bytes nobody asked for: not reusable either way.
        Pin::new(self).poll_read(&mut cx, &mut buf).is_ready()
    }

    /// Writes a whole request.
    pub(super) async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await?;
        if let Conn::Tls(_) = self {
            self.flush().await?;
        }
        Ok(())
    }

    /// Reads what has arrived and appends it to `to`; `Ready(Ok(0))` at the end of the stream.
    pub(super) fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        to: &mut Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        READ_BUFFER.with(|b| {
            let mut chunk = b.borrow_mut();
            let mut buf = ReadBuf::new(&mut chunk[..]);
            match Pin::new(&mut *self).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    to.extend_from_slice(buf.filled());
                    Poll::Ready(Ok(buf.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    }
}

/// Whole microseconds of a duration.
pub(super) fn micros(d: std::time::Duration) -> u64 {
    d.as_micros() as u64
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A failed TLS handshake: a certificate problem says how to trust the CA; a dropped
/// connection during it is a reset.
fn tls_error(origin: &Origin, e: io::Error) -> HttpError {
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
