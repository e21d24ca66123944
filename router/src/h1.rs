//! The router's own HTTP/1.1 exchange with cleartext upstreams.
//!
//! A request whose body is empty or small and already known ([`MAX_BUFFERED`] bytes at most),
//! and that asks for no protocol upgrade, is written to a pooled keep-alive connection by the
//! request's own task, and the response head is read and parsed ([`httparse`]) there too. A
//! response whose body has already arrived whole (the usual small answer) goes back as bytes
//! and its connection returns to the pool at once; any other body streams from the connection
//! ([`Streaming`]: by length, chunked with trailers, or to the close) and returns it at its
//! last byte. There is no connection task, no channel and no second wake-up per request, which
//! is most of what a proxied request costs on hyper's client (see docs/benchmarks.md).
//! Streamed uploads, upgrades and TLS upstreams stay on hyper's client.
//!
//! Framing follows RFC 9112 §6.3: no body for HEAD and for 1xx, 204 and 304 answers;
//! `Transfer-Encoding` over `Content-Length` (which is then dropped, and the connection not
//! reused); differing `Content-Length` values refused; otherwise the body runs to the close.
//! Interim 1xx answers are skipped; a 101 the request did not ask for is refused.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes, BytesMut};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version,
    header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING},
    request::Parts,
};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::upstream::BoxError;

/// Largest request body sent on this path (bigger ones stream through hyper's client).
pub const MAX_BUFFERED: u64 = 64 * 1024;
/// Largest response head (status line and headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a response head (hyper's client allows as many).
pub const MAX_HEADERS: usize = 100;
/// Longest chunk-size line of a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
/// Room kept free in the read buffer before each read of a response head.
const READ_ROOM: usize = 4096;
/// Room kept free before each read of a streamed body (fewer reads for large ones); a body of
/// known length gets room for what is left of it, between [`READ_ROOM`] and this.
const BODY_READ_ROOM: usize = 32 * 1024;
const _: () = assert!(
    READ_ROOM <= BODY_READ_ROOM,
    "a body's room is clamped between them"
);

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// The connection was closed before any answer. `unsent`: not one byte of the request
    /// was written, so it can be sent again on another connection whatever its method.
    #[error("upstream closed the connection before answering")]
    Closed {
        /// Nothing of the request was written.
        unsent: bool,
    },
    /// Reading or writing failed.
    #[error("upstream connection: {0}")]
    Io(#[from] io::Error),
    /// The response head does not parse.
    #[error("upstream response head: {0}")]
    Head(#[from] httparse::Error),
    /// A header name or value the `http` crate refuses.
    #[error("upstream response header: {0}")]
    Header(String),
    /// The response head is larger than [`MAX_HEAD`].
    #[error("upstream response head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The response's framing is broken.
    #[error("upstream response framing: {0}")]
    Framing(&'static str),
}

/// A keep-alive connection to an upstream: the socket, what has been read from it and not yet
/// used, and the buffer requests are written from.
#[derive(Debug)]
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
    out: Vec<u8>,
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    /// Status.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Header fields as received (`Content-Length` dropped beside `Transfer-Encoding`).
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
}

/// A request as an own exchange sends it: borrowed from the client's request, so nothing of
/// it is copied but into the bytes written.
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    /// Method.
    pub method: &'a Method,
    /// Origin-form target (path and query).
    pub target: &'a str,
    /// Header fields, less those `skip` names.
    pub headers: &'a HeaderMap,
    /// Header fields not forwarded (hop-by-hop ones).
    pub skip: fn(&HeaderName, &HeaderValue) -> bool,
    /// A `Host` to add (when `headers` has none).
    pub host: Option<&'a str>,
    /// The whole body.
    pub body: &'a Bytes,
}

impl<'a> Outgoing<'a> {
    /// The request `parts` describe, with `body`: origin-form target, `skip` and `host` as
    /// the fields say.
    pub fn new(
        parts: &'a Parts,
        skip: fn(&HeaderName, &HeaderValue) -> bool,
        host: Option<&'a str>,
        body: &'a Bytes,
    ) -> Self {
        Outgoing {
            method: &parts.method,
            target: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            headers: &parts.headers,
            skip,
            host,
            body,
        }
    }
}

/// Whether a method is idempotent (RFC 9110 §9.2.2): a request that may have reached its
/// upstream can be sent again.
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

// === impl Conn ===

impl Conn {
    /// Wraps a connected socket.
    pub fn new(io: TcpStream) -> Conn {
        Conn {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
            out: Vec::with_capacity(1024),
        }
    }

    /// Whether an idle connection can take a request: nothing arrived on it since its last
    /// response (neither its close nor stray bytes). Costs no system call while the runtime
    /// has seen nothing to read.
    pub fn reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Takes the `n` body bytes at the front of the read buffer, when they have all arrived.
    pub fn take_whole(&mut self, n: u64) -> Option<Bytes> {
        let n = usize::try_from(n).ok()?;
        (self.buf.len() >= n).then(|| self.buf.split_to(n).freeze())
    }

    /// Whether bytes beyond the response just read are waiting (then the connection is not
    /// reused: they belong to no request).
    pub fn has_leftover(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Sends the request and reads the response head, skipping interim 1xx answers.
    pub async fn exchange(&mut self, req: &Outgoing<'_>) -> Result<Head, H1Error> {
        encode(&mut self.out, req);
        let mut written = 0;
        while written < self.out.len() {
            match self.io.write(&self.out[written..]).await {
                Ok(0) => {
                    return Err(H1Error::Closed {
                        unsent: written == 0,
                    });
                }
                Ok(n) => written += n,
                Err(e) if written == 0 && closed(&e) => {
                    return Err(H1Error::Closed { unsent: true });
                }
                Err(e) => return Err(e.into()),
            }
        }
        let head_request = *req.method == Method::HEAD;
        let mut answered = false;
        loop {
            if !self.buf.is_empty() {
                answered = true;
                match parse_head(&mut self.buf, head_request)? {
                    Some(head) if head.status.is_informational() => {
                        if head.status == StatusCode::SWITCHING_PROTOCOLS {
                            return Err(H1Error::Framing(
                                "101 answer to a request without Upgrade",
                            ));
                        }
                        continue;
                    }
                    Some(head) => return Ok(head),
                    None if self.buf.len() >= MAX_HEAD => return Err(H1Error::HeadTooLarge),
                    None => {}
                }
            }
            self.buf.reserve(READ_ROOM);
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) if answered => {
                    return Err(H1Error::Framing("closed inside the response head"));
                }
                Ok(0) => return Err(H1Error::Closed { unsent: false }),
                Ok(_) => {}
                Err(e) if !answered && closed(&e) => return Err(H1Error::Closed { unsent: false }),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A reset or broken pipe: the peer had closed the connection.
fn closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Writes the request head (origin form, HTTP/1.1) and body into `out`. The body's length is
/// sent as `Content-Length` (and for POST, PUT and PATCH also when empty); any
/// `Content-Length` or `Transfer-Encoding` the request carried is replaced by it.
fn encode(out: &mut Vec<u8>, req: &Outgoing<'_>) {
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = req.host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in req.headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || (req.skip)(name, value) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let expects_body = matches!(*req.method, Method::POST | Method::PUT | Method::PATCH);
    if !req.body.is_empty() || expects_body {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(req.body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.body);
}

/// Parses a response head at the front of `buf`, taking it off; `None` while incomplete.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, H1Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(H1Error::Framing("no valid status code"))?;
    let version = if response.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where each name and value lies in the head, so the values can share its bytes.
    let base = buf.as_ptr() as usize;
    let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    let count = response.headers.len();
    for (span, field) in spans.iter_mut().zip(response.headers.iter()) {
        *span = (
            field.name.as_ptr() as usize - base,
            field.name.len(),
            field.value.as_ptr() as usize - base,
            field.value.len(),
        );
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    for &(n, nl, v, vl) in spans.iter().take(count) {
        let name =
            HeaderName::from_bytes(&head[n..n + nl]).map_err(|e| H1Error::Header(e.to_string()))?;
        let value = HeaderValue::from_maybe_shared(head.slice(v..v + vl))
            .map_err(|e| H1Error::Header(format!("{name}: {e}")))?;
        headers.append(name, value);
    }
    let (framing, reusable) = framing(status, head_request, &mut headers)?;
    let connection = |token: &str| {
        headers.get_all(CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    let keep_alive = reusable
        && match version {
            Version::HTTP_10 => connection("keep-alive"),
            _ => !connection("close"),
        };
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// The body's framing (RFC 9112 §6.3), and whether the connection can be reused after it.
fn framing(
    status: StatusCode,
    head_request: bool,
    headers: &mut HeaderMap,
) -> Result<(Framing, bool), H1Error> {
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, true));
    }
    if let Some(last) = headers.get_all(TRANSFER_ENCODING).iter().next_back() {
        let chunked = last
            .as_bytes()
            .rsplit(|b| *b == b',')
            .next()
            .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        // A length beside a transfer coding is not to be trusted, nor the connection after it.
        let had_length = headers.remove(CONTENT_LENGTH).is_some();
        return Ok(if chunked {
            (Framing::Chunked, !had_length)
        } else {
            (Framing::Close, false)
        });
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|b| *b == b',') {
            let part = part.trim_ascii();
            let n = std::str::from_utf8(part)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(H1Error::Framing("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::Framing("differing Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => (Framing::Empty, true),
        Some(n) => (Framing::Length(n), true),
        None => (Framing::Close, false),
    })
}

/// Where a chunked body's decoding stands.
#[derive(Debug)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: the trailer section.
    Trailers,
}

/// What a response body is waiting for.
#[derive(Debug)]
enum Decode {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

/// What decoding the buffered bytes gave.
enum Step {
    Frame(Frame<Bytes>),
    NeedMore,
    Done,
}

/// A response body read from its connection as the client takes it. At its end the connection
/// goes to `checkin` (when it can carry another request); dropped or failed before its end,
/// the connection closes with it.
pub struct Streaming<F> {
    conn: Option<Conn>,
    decode: Decode,
    keep_alive: bool,
    checkin: Option<F>,
}

/// Decodes the buffered bytes of a body in `decode`'s state: a frame, a wish for more bytes,
/// or the end (bytes past the end stay in `buf`).
fn step(decode: &mut Decode, buf: &mut BytesMut) -> Result<Step, H1Error> {
    match decode {
        Decode::Done | Decode::Length(0) => Ok(Step::Done),
        Decode::Length(left) => {
            if buf.is_empty() {
                return Ok(Step::NeedMore);
            }
            let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
            *left -= n as u64;
            Ok(Step::Frame(Frame::data(buf.split_to(n).freeze())))
        }
        Decode::Close => {
            if buf.is_empty() {
                return Ok(Step::NeedMore);
            }
            Ok(Step::Frame(Frame::data(buf.split().freeze())))
        }
        Decode::Chunked(chunk) => loop {
            match chunk {
                Chunk::Size => {
                    let Some(end) = buf.iter().position(|b| *b == b'\n') else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(H1Error::Framing("chunk-size line too long"));
                        }
                        return Ok(Step::NeedMore);
                    };
                    let size = chunk_size(&buf[..end])?;
                    buf.advance(end + 1);
                    *chunk = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= n as u64;
                    if *left == 0 {
                        *chunk = Chunk::DataEnd;
                    }
                    return Ok(Step::Frame(Frame::data(buf.split_to(n).freeze())));
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(H1Error::Framing("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *chunk = Chunk::Size;
                }
                Chunk::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *decode = Decode::Done;
                        return Ok(Step::Done);
                    }
                    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let (len, trailers) = match httparse::parse_headers(buf, &mut fields)? {
                        httparse::Status::Partial if buf.len() > MAX_HEAD => {
                            return Err(H1Error::HeadTooLarge);
                        }
                        httparse::Status::Partial => return Ok(Step::NeedMore),
                        httparse::Status::Complete((len, fields)) => {
                            let mut trailers = HeaderMap::with_capacity(fields.len());
                            for f in fields.iter() {
                                let name = HeaderName::from_bytes(f.name.as_bytes())
                                    .map_err(|e| H1Error::Header(e.to_string()))?;
                                let value = HeaderValue::from_bytes(f.value)
                                    .map_err(|e| H1Error::Header(format!("{name}: {e}")))?;
                                trailers.append(name, value);
                            }
                            (len, trailers)
                        }
                    };
                    buf.advance(len);
                    *decode = Decode::Done;
                    return Ok(Step::Frame(Frame::trailers(trailers)));
                }
            }
        },
    }
}

impl<F: FnOnce(Conn)> Streaming<F> {
    /// A body of `framing` on `conn`, whose head has been read.
    pub fn new(conn: Conn, framing: Framing, keep_alive: bool, checkin: F) -> Self {
        let decode = match framing {
            Framing::Empty | Framing::Length(0) => Decode::Done,
            Framing::Length(n) => Decode::Length(n),
            Framing::Chunked => Decode::Chunked(Chunk::Size),
            Framing::Close => Decode::Close,
        };
        let mut body = Streaming {
            conn: Some(conn),
            decode,
            keep_alive: keep_alive && framing != Framing::Close,
            checkin: Some(checkin),
        };
        if matches!(body.decode, Decode::Done) {
            body.finish();
        }
        body
    }

    /// The body failed: its connection closes, and the error goes to the client's side.
    fn fail(&mut self, e: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.decode = Decode::Done;
        Poll::Ready(Some(Err(e)))
    }

    /// The body has ended: its connection goes back if it can carry another request.
    fn finish(&mut self) {
        self.decode = Decode::Done;
        if let (Some(conn), Some(checkin)) = (self.conn.take(), self.checkin.take())
            && self.keep_alive
            && !conn.has_leftover()
        {
            checkin(conn);
        }
    }
}

/// The size on a chunk-size line (hex digits, then optional extensions), without its LF.
fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(H1Error::Framing("invalid chunk size"));
    }
    let text = std::str::from_utf8(digits).map_err(|_| H1Error::Framing("invalid chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| H1Error::Framing("invalid chunk size"))
}

impl<F: FnOnce(Conn) + Unpin> HttpBody for Streaming<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let stepped = match this.conn.as_mut() {
                Some(conn) => step(&mut this.decode, &mut conn.buf),
                None => Ok(Step::Done),
            };
            match stepped {
                Ok(Step::Frame(frame)) => {
                    if matches!(this.decode, Decode::Length(0) | Decode::Done) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Ok(Step::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {}
                Err(e) => return this.fail(e.into()),
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if let Err(e) = ready!(conn.io.poll_read_ready(cx)) {
                return this.fail(e.into());
            }
            // Room for what is left of a body of known length, up to BODY_READ_ROOM: a small
            // body read apart from its head does not grow the buffer eightfold.
            let room = match this.decode {
                Decode::Length(left) => usize::try_from(left)
                    .map_or(BODY_READ_ROOM, |l| l.clamp(READ_ROOM, BODY_READ_ROOM)),
                _ => BODY_READ_ROOM,
            };
            conn.buf.reserve(room);
            match conn.io.try_read_buf(&mut conn.buf) {
                // A body that runs to the close ends there, and its connection with it.
                Ok(0) if matches!(this.decode, Decode::Close) => {
                    this.conn = None;
                    this.decode = Decode::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return this.fail(
                        H1Error::Framing("upstream closed the connection inside the response body")
                            .into(),
                    );
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return this.fail(e.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.decode, Decode::Done | Decode::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.decode {
            Decode::Length(n) => SizeHint::with_exact(n),
            Decode::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, head_request: bool) -> Result<Option<Head>, H1Error> {
        let mut buf = BytesMut::from(text.as_bytes());
        parse_head(&mut buf, head_request)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Empty, "HEAD has no body");
        let h = head(
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, Framing::Empty);
        let h = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 5\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        assert!(!h.headers.contains_key(CONTENT_LENGTH));
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = head("HTTP/1.1 200 OK\r\nx: y\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive, "HTTP/1.0 without keep-alive");
        let h = head(
            "HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 1\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(h.keep_alive);
        let h = head(
            "HTTP/1.1 200 OK\r\nconnection: x, close\r\ncontent-length: 1\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive);
        assert!(matches!(
            head(
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
                false
            ),
            Err(H1Error::Framing(_))
        ));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n", false),
            Err(H1Error::Framing(_))
        ));
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        assert!(
            head("HTTP/1.1 200 OK\r\ncontent-le", false)
                .unwrap()
                .is_none()
        );
    }

    /// Data, trailers, and what was left after the end.
    type Decoded = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

    /// Runs `decode` over `input` handed over in pieces of at most `piece` bytes.
    fn run(mut decode: Decode, input: &[u8], piece: usize) -> Result<Decoded, H1Error> {
        let mut buf = BytesMut::new();
        let mut rest = input;
        let (mut data, mut trailers) = (Vec::new(), None);
        loop {
            match step(&mut decode, &mut buf)? {
                Step::Frame(f) => match f.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(f) => trailers = f.into_trailers().ok(),
                },
                Step::Done => return Ok((data, trailers, buf.to_vec())),
                Step::NeedMore if rest.is_empty() => {
                    return Err(H1Error::Framing("input ended"));
                }
                Step::NeedMore => {
                    let n = piece.min(rest.len());
                    buf.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                }
            }
        }
    }

    const CHUNKED: &[u8] =
        b"5;ext=\"x\"\r\nhello\r\n6\r\n world\r\n10\r\n0123456789abcdef\r\n0\r\nx-t: 1\r\ny: 2\r\n\r\nNEXT";

    #[test]
    fn chunked_bodies_decode_however_they_arrive() {
        for piece in 1..=CHUNKED.len() {
            let (data, trailers, left) = run(Decode::Chunked(Chunk::Size), CHUNKED, piece)
                .unwrap_or_else(|e| panic!("pieces of {piece}: {e}"));
            assert_eq!(data, b"hello world0123456789abcdef", "pieces of {piece}");
            let trailers = trailers.unwrap();
            assert_eq!(
                (trailers["x-t"].as_bytes(), trailers["y"].as_bytes()),
                (&b"1"[..], &b"2"[..])
            );
            // What follows the body stays for the next response (so the connection is not
            // reused: it would belong to no request).
            assert!(b"NEXT".starts_with(&left), "pieces of {piece}: {left:?}");
        }
        let (data, trailers, _) = run(Decode::Chunked(Chunk::Size), b"0\r\n\r\n", 1).unwrap();
        assert!(data.is_empty() && trailers.is_none());
        let (data, _, left) = run(Decode::Length(5), b"helloNEXT", 3).unwrap();
        assert_eq!((data.as_slice(), left.len() <= 4), (&b"hello"[..], true));
    }

    #[test]
    fn broken_chunked_bodies_are_refused_and_nothing_panics() {
        for bad in [
            &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
            b"zz\r\n",
            b"\r\n",
            b"-5\r\nhello\r\n",
            b"1ffffffffffffffff\r\n",
        ] {
            assert!(
                run(Decode::Chunked(Chunk::Size), bad, 64).is_err(),
                "{bad:?}"
            );
        }
        assert!(matches!(
            run(
                Decode::Chunked(Chunk::Size),
                &[b'1'; MAX_CHUNK_LINE + 2],
                4096
            ),
            Err(H1Error::Framing(_))
        ));
        // Every one-byte change of a good body, and of a good head: an answer or an error.
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n";
        for i in 0..CHUNKED.len().max(head.len()) {
            for b in [0u8, b'\r', b'\n', b';', b':', b'0', b'f', b' ', 0xff] {
                let mut body = CHUNKED.to_vec();
                if let Some(x) = body.get_mut(i) {
                    *x = b;
                }
                let _ = run(Decode::Chunked(Chunk::Size), &body, 7);
                let mut h = head.to_vec();
                if let Some(x) = h.get_mut(i) {
                    *x = b;
                }
                let _ = parse_head(&mut BytesMut::from(&h[..]), false);
            }
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a\r").unwrap(), 26);
        assert_eq!(chunk_size(b"0;ext=1\r").unwrap(), 0);
        assert_eq!(chunk_size(b"A \r").unwrap(), 10);
        assert!(chunk_size(b"\r").is_err());
        assert!(chunk_size(b"-1\r").is_err());
        assert!(chunk_size(b"ffffffffffffffffff\r").is_err());
    }

    #[test]
    fn encodes_origin_form_with_the_body_length() {
        let mut headers = HeaderMap::new();
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("content-length", HeaderValue::from_static("99"));
        headers.insert("connection", HeaderValue::from_static("close"));
        headers.insert("x-a", HeaderValue::from_static("1"));
        let body = Bytes::from_static(b"hello");
        let mut req = Outgoing {
            method: &Method::POST,
            target: "/a/b?c=1",
            headers: &headers,
            skip: |n, _| n == CONNECTION,
            host: Some("svc"),
            body: &body,
        };
        let mut out = Vec::new();
        encode(&mut out, &req);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "POST /a/b?c=1 HTTP/1.1\r\nhost: svc\r\nx-a: 1\r\ncontent-length: 5\r\n\r\nhello"
        );
        let empty = Bytes::new();
        req.method = &Method::GET;
        req.body = &empty;
        req.host = None;
        encode(&mut out, &req);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /a/b?c=1 HTTP/1.1\r\nx-a: 1\r\n\r\n"
        );
    }
}
