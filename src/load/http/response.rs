//! One HTTP/1.1 response read off a connection's bytes: the head (status, the one header the
//! tasks read, whether the connection stays open), then the body by its framing
//! (`Content-Length`, `chunked`, or until the server closes). Pure: bytes in, a response out;
//! the connection does the reading.

use bytes::Bytes;
use http::header::HeaderValue;
use http::StatusCode;

/// Most headers a response may have.
const MAX_HEADERS: usize = 64;

/// A response as the tasks see it.
#[derive(Debug)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// `Location`, the only header the tasks read.
    pub location: Option<HeaderValue>,
    /// The whole body (chunked bodies decoded).
    pub body: Bytes,
}

/// How a response's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// The head of a response, parsed.
#[derive(Debug)]
struct Head {
    status: StatusCode,
    location: Option<HeaderValue>,
    framing: Framing,
    keep_alive: bool,
    /// Bytes of the head, blank line included.
    len: usize,
}

/// A complete response, and whether its connection may carry another request.
#[derive(Debug)]
pub struct Complete {
    /// The response.
    pub response: Response,
    /// The connection may be used again (no `Connection: close`, no body ended by a close, no
    /// stray bytes after the response).
    pub reusable: bool,
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Default)]
struct Chunks {
    /// Next unread byte of the buffer.
    at: usize,
    /// The decoded body so far.
    body: Vec<u8>,
    /// The last chunk (size 0) was read: only trailers remain.
    last: bool,
}

/// A response being received: feed it the bytes as they arrive.
#[derive(Debug)]
pub struct Incoming {
    /// Every byte received for this response so far.
    pub buf: Vec<u8>,
    head: Option<Head>,
    /// The request was a HEAD: no body whatever the headers say.
    head_request: bool,
    chunks: Chunks,
}

impl Incoming {
    /// Ready for the response to a request; `head_request` for HEAD.
    pub fn new(head_request: bool) -> Incoming {
        Incoming {
            buf: Vec::new(),
            head: None,
            head_request,
            chunks: Chunks::default(),
        }
    }

    /// Looks at the bytes received so far: the complete response when it is all there.
    pub fn progress(&mut self) -> Result<Option<Complete>, String> {
        if self.head.is_none() {
            match parse_head(&self.buf, self.head_request)? {
                None => return Ok(None),
                Some(head) => {
                    self.chunks.at = head.len;
                    self.head = Some(head);
                }
            }
        }
        let (framing, start) = self
            .head
            .as_ref()
            .map(|h| (h.framing, h.len))
            .expect("parsed above");
        match framing {
            Framing::Empty => {
                let stray = self.buf.len() > start;
                Ok(Some(self.complete_with(Bytes::new(), stray)))
            }
            Framing::Length(n) => {
                let end = start + n;
                if self.buf.len() < end {
                    return Ok(None);
                }
                let mut buf = Bytes::from(std::mem::take(&mut self.buf));
                let stray = buf.len() > end;
                let body = buf.split_off(start).slice(..n);
                Ok(Some(self.complete_with(body, stray)))
            }
            Framing::Chunked => {
                if !decode_chunks(&self.buf, &mut self.chunks)? {
                    return Ok(None);
                }
                let stray = self.chunks.at < self.buf.len();
                let body = Bytes::from(std::mem::take(&mut self.chunks.body));
                Ok(Some(self.complete_with(body, stray)))
            }
            Framing::UntilClose => Ok(None),
        }
    }

    /// The server closed the connection: the response if its body ends that way, else what
    /// is missing.
    pub fn at_close(&mut self) -> Result<Complete, String> {
        match &self.head {
            None if self.buf.is_empty() => Err("connection closed before a response".into()),
            None => Err("connection closed in the middle of a response's head".into()),
            Some(h) if h.framing == Framing::UntilClose => {
                let start = h.len;
                let body = Bytes::from(std::mem::take(&mut self.buf)).split_off(start);
                let mut done = self.complete_with(body, false);
                done.reusable = false;
                Ok(done)
            }
            Some(_) => Err("connection closed before the response's body was complete".into()),
        }
    }

    fn complete_with(&mut self, body: Bytes, stray: bool) -> Complete {
        let head = self.head.take().expect("a parsed head");
        Complete {
            response: Response {
                status: head.status,
                location: head.location,
                body,
            },
            reusable: head.keep_alive && !stray,
        }
    }
}

/// The head at the start of `buf` once it is all there; informational (1xx) heads before it
/// are skipped.
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, String> {
    let mut from = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        let len = match parsed.parse(&buf[from..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("invalid response head: {e}")),
        };
        let code = parsed.code.unwrap_or(0);
        let status =
            StatusCode::from_u16(code).map_err(|_| format!("invalid response status {code}"))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            from += len;
            continue;
        }
        let mut location = None;
        let mut length = None;
        let mut chunked = false;
        let mut close = parsed.version == Some(0);
        for h in parsed.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or("invalid Content-Length")?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length headers".into());
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = last_token_is(h.value, b"chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                if has_token(h.value, b"close") {
                    close = true;
                } else if has_token(h.value, b"keep-alive") {
                    close = false;
                }
            } else if name.eq_ignore_ascii_case("location") {
                location = HeaderValue::from_bytes(h.value).ok();
            }
        }
        let bodiless = head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::SWITCHING_PROTOCOLS;
        let framing = match (bodiless, chunked, length) {
            (true, _, _) => Framing::Empty,
            (false, true, _) => Framing::Chunked,
            (false, false, Some(n)) => Framing::Length(n),
            (false, false, None) => Framing::UntilClose,
        };
        return Ok(Some(Head {
            status,
            location,
            framing,
            keep_alive: !close && framing != Framing::UntilClose,
            len: from + len,
        }));
    }
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether the last of a comma-separated header value's tokens is `token`.
fn last_token_is(value: &[u8], token: &[u8]) -> bool {
    value
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Decodes the chunks in `buf` from `c.at` on; true once the last chunk and its trailers are in.
fn decode_chunks(buf: &[u8], c: &mut Chunks) -> Result<bool, String> {
    loop {
        if c.last {
            // Trailers: lines until an empty one.
            let rest = &buf[c.at..];
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                return Ok(false);
            };
            c.at += eol + 2;
            if eol == 0 {
                return Ok(true);
            }
            continue;
        }
        let (line, size) = match httparse::parse_chunk_size(&buf[c.at..]) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(_) => return Err("invalid chunk size in a chunked body".into()),
        };
        if size == 0 {
            c.at += line;
            c.last = true;
            continue;
        }
        let size = usize::try_from(size).map_err(|_| "chunk too large".to_string())?;
        let start = c.at + line;
        if buf.len() < start + size + 2 {
            return Ok(false);
        }
        if &buf[start + size..start + size + 2] != b"\r\n" {
            return Err("a chunk does not end with CRLF".into());
        }
        c.body.extend_from_slice(&buf[start..start + size]);
        c.at = start + size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes, as reads would bring them.
    fn receive(wire: &[u8], step: usize, head_request: bool) -> Result<Complete, String> {
        let mut inc = Incoming::new(head_request);
        for piece in wire.chunks(step) {
            inc.buf.extend_from_slice(piece);
            if let Some(done) = inc.progress()? {
                return Ok(done);
            }
        }
        inc.at_close()
    }

    #[test]
    fn bodies_end_by_length_by_chunks_or_by_the_close_in_any_pieces() {
        let cases: [(&[u8], &[u8], bool); 5] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                b"hello",
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
                b"hello world",
                true,
            ),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", b"until the end", false),
            (b"HTTP/1.1 204 No Content\r\n\r\n", b"", true),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nLocation: session/1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                b"{}",
                false,
            ),
        ];
        for (wire, body, reusable) in cases {
            for step in [1, 3, 7, wire.len()] {
                let done = receive(wire, step, false).unwrap();
                assert_eq!(&done.response.body[..], body, "{step}");
                assert_eq!(done.reusable, reusable, "{step}");
            }
        }
        let created = receive(cases[4].0, 5, false).unwrap();
        assert_eq!(created.response.status, StatusCode::CREATED);
        assert_eq!(created.response.location.unwrap(), "session/1");
    }

    #[test]
    fn a_head_request_has_no_body_and_a_short_body_is_an_error() {
        let done = receive(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 4, true).unwrap();
        assert!(done.response.body.is_empty() && done.reusable);
        let short = receive(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", 4, false);
        assert!(short
            .unwrap_err()
            .contains("before the response's body was complete"));
        assert!(receive(b"", 1, false)
            .unwrap_err()
            .contains("before a response"));
        assert!(receive(b"\x00\x01garbage\r\n\r\n", 64, false)
            .unwrap_err()
            .contains("invalid response head"));
    }

    #[test]
    fn stray_bytes_after_a_response_retire_its_connection() {
        let done = receive(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
            64,
            false,
        )
        .unwrap();
        assert_eq!(&done.response.body[..], b"ok");
        assert!(!done.reusable);
        let old = receive(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 64, false).unwrap();
        assert!(!old.reusable, "HTTP/1.0 closes unless it says keep-alive");
    }
}
