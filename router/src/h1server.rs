//! The router's own server side for plain HTTP/1.1 requests.
//!
//! Most requests a router sees are HTTP/1.1 requests without a body on a keep-alive
//! connection. For those, this module reads the head with `httparse`, hands the request to the
//! proxy and writes the response, head and first bytes of body in one write, on the
//! connection's own task. Anything else — a request with a body, an upgrade, `Expect`,
//! HTTP/1.0, an absolute or `*` target, a head that does not parse or is larger than
//! [`HEAD_LIMIT`], and the HTTP/2 preface — is handed to hyper's server together with the bytes
//! already read ([`Rewind`]), and hyper serves the connection from then on, with its own
//! answers to malformed input. So this path only ever sees well-formed simple requests.

use std::{
    io::{self, Write as _},
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    task::{Context, Poll},
};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    sync::Notify,
};

use siskin_route::head::{self, HEAD_LIMIT, Head};

use crate::{conn::Activity, proxy, server::Shared};

/// Response bytes gathered before a write.
const WRITE_CHUNK: usize = 64 * 1024;

/// Asks a connection to close once its current response is written (the drain, or the
/// connection watchdog).
#[derive(Debug, Default)]
pub struct Stop {
    set: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Sets the stop and wakes a connection waiting for its next request.
    pub fn stop(&self) {
        self.set.store(true, Relaxed);
        self.notify.notify_one();
    }

    fn is_set(&self) -> bool {
        self.set.load(Relaxed)
    }
}

/// A socket with bytes already read from it put back in front.
#[derive(Debug)]
pub struct Rewind<S> {
    pre: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    fn new(pre: Bytes, inner: S) -> Self {
        Rewind { pre, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the bytes buffered so far hold. The large variant is the usual one; boxing it would
/// cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// A simple request, with whether the client asked to close.
    Simple(Request<proxy::ClientBody>, bool),
    /// Not a complete head yet.
    Partial,
    /// Something for hyper's server.
    Other,
}

/// Serves simple requests until the connection ends (`None`) or a request needs hyper's
/// server: then the socket is returned with the bytes read but not served put back.
pub async fn serve<S>(
    mut io: S,
    shared: Arc<Shared>,
    peer: SocketAddr,
    activity: Arc<Activity>,
    stop: Arc<Stop>,
) -> io::Result<Option<Rewind<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let (req, close) = loop {
            if !buf.is_empty() {
                match parse(&mut buf) {
                    Parsed::Simple(req, close) => break (req, close),
                    Parsed::Other => return Ok(Some(Rewind::new(buf.freeze(), io))),
                    Parsed::Partial if buf.len() >= HEAD_LIMIT => {
                        return Ok(Some(Rewind::new(buf.freeze(), io)));
                    }
                    Parsed::Partial => {}
                }
            }
            if stop.is_set() {
                return Ok(None);
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(4096);
            }
            let n = tokio::select! {
                biased;
                n = io.read_buf(&mut buf) => n?,
                () = stop.notify.notified() => return Ok(None),
            };
            if n == 0 {
                return Ok(None);
            }
        };
        let guard = activity.request();
        let head_only = req.method() == Method::HEAD;
        let Ok(response) = proxy::handle(shared.clone(), req, peer).await;
        let (parts, mut body) = response.into_parts();
        let close = close || stop.is_set();
        let framing = write_head(
            &mut out,
            parts.status,
            &parts.headers,
            &body,
            head_only,
            close,
        );
        if framing != Framing::None {
            loop {
                // Frames already at hand go out with the head; wait only when none is.
                let next = match body.frame().now_or_never() {
                    Some(next) => next,
                    None => {
                        if !out.is_empty() {
                            io.write_all(&out).await?;
                            io.flush().await?;
                            out.clear();
                        }
                        body.frame().await
                    }
                };
                let Some(frame) = next else { break };
                let frame = frame.map_err(io::Error::other)?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                if framing == Framing::Chunked {
                    let _ = write!(out, "{:x}\r\n", data.len());
                }
                if data.len() >= WRITE_CHUNK / 4 {
                    // A large piece is written as it is, after what was gathered before it.
                    io.write_all(&out).await?;
                    out.clear();
                    io.write_all(&data).await?;
                } else {
                    out.extend_from_slice(&data);
                }
                if framing == Framing::Chunked {
                    out.extend_from_slice(b"\r\n");
                }
                if out.len() >= WRITE_CHUNK {
                    io.write_all(&out).await?;
                    out.clear();
                }
            }
            if framing == Framing::Chunked {
                out.extend_from_slice(b"0\r\n\r\n");
            }
        }
        io.write_all(&out).await?;
        io.flush().await?;
        out.clear();
        drop(body);
        drop(guard);
        if close {
            let _ = io.shutdown().await;
            return Ok(None);
        }
    }
}

/// Parses a head at the start of `buf`; a simple request's head is taken out of it.
fn parse(buf: &mut BytesMut) -> Parsed {
    let h = match head::classify(buf) {
        Head::Simple(h) => h,
        Head::Partial => return Parsed::Partial,
        Head::Other => return Parsed::Other,
    };
    let Ok(method) = Method::from_bytes(h.method.of(buf)) else {
        return Parsed::Other;
    };
    // The head's bytes are shared by the target and the field values, not copied.
    let bytes = buf.split_to(h.len).freeze();
    let built = (|| {
        let uri = Uri::from_maybe_shared(bytes.slice(h.target.range())).ok()?;
        let mut map = HeaderMap::with_capacity(h.fields().len());
        for (name, value) in h.fields() {
            map.append(
                HeaderName::from_bytes(name.of(&bytes)).ok()?,
                HeaderValue::from_maybe_shared(bytes.slice(value.range())).ok()?,
            );
        }
        Some((uri, map))
    })();
    let Some((uri, map)) = built else {
        // Not expected after httparse; hyper's server decides, from the same bytes.
        let mut back = BytesMut::from(&bytes[..]);
        back.extend_from_slice(buf);
        *buf = back;
        return Parsed::Other;
    };
    let mut req = Request::new(proxy::ClientBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = map;
    Parsed::Simple(req, h.close)
}

/// How a response body goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 204, 304).
    None,
    /// `Content-Length`.
    Length,
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Writes the response head into `out` and says how the body follows.
fn write_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    body: &crate::upstream::Body,
    head_only: bool,
    close: bool,
) -> Framing {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let bodiless = head_only
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    // A HEAD answer and a 304 keep the length the upstream gave; otherwise the body says.
    let framing = if bodiless {
        Framing::None
    } else if body.size_hint().exact().is_some() {
        Framing::Length
    } else {
        Framing::Chunked
    };
    let mut has_date = false;
    for (name, value) in headers {
        if framing != Framing::None
            && (name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING)
        {
            continue;
        }
        if name == header::CONNECTION {
            continue;
        }
        has_date |= name == header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length => {
            let n = body.size_hint().exact().unwrap_or(0);
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {}
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        date::write(out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// The `Date` field, formatted once a second per thread.
mod date {
    use std::{
        cell::RefCell,
        time::{SystemTime, UNIX_EPOCH},
    };

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }

    pub fn write(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let sec = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != sec || c.1.is_empty() {
                *c = (sec, httpdate::fmt_http_date(now));
            }
            out.extend_from_slice(c.1.as_bytes());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(head: &str) -> Parsed {
        parse(&mut BytesMut::from(head.as_bytes()))
    }

    #[test]
    fn a_simple_head_becomes_a_request_and_the_rest_stays_buffered() {
        let mut buf = BytesMut::from(
            &b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next"[..],
        );
        let Parsed::Simple(req, close) = parse(&mut buf) else {
            panic!("a plain GET is simple");
        };
        assert!(!close);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/a");
        assert_eq!(req.uri().query(), Some("b=1"));
        assert_eq!(req.headers()["host"], "x");
        assert_eq!(req.headers().get_all("x-two").iter().count(), 2);
        assert_eq!(&buf[..], b"GET /next", "the next request stays buffered");
        assert!(matches!(
            parsed("GET / HTTP/1.1\r\nhost: x\r\n"),
            Parsed::Partial
        ));
        assert!(matches!(parsed("GET / HTTP/1.0\r\n\r\n"), Parsed::Other));
    }

    #[test]
    fn cut_and_mutated_heads_never_panic_and_leave_the_rest_buffered() {
        let heads: [&[u8]; 3] = [
            b"GET /a/../b?x=%2e HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\nGET /",
            b"HEAD / HTTP/1.1\r\ncontent-length: 0\r\nx-empty:\r\nx-obs: \xe9t\xe9\r\n\r\n",
            b"DELETE /x HTTP/1.1\r\nhost: h\r\nte: trailers\r\nupgrade-insecure-requests: 1\r\n\r\n",
        ];
        let bytes = [
            0u8, b'\t', b'\r', b'\n', b' ', b':', b'/', b'%', b'.', 0x7f, 0x80, 0xff,
        ];
        for head in heads {
            let mut inputs: Vec<Vec<u8>> = (0..=head.len()).map(|n| head[..n].to_vec()).collect();
            for i in 0..head.len() {
                for b in bytes {
                    let mut m = head.to_vec();
                    m[i] = b;
                    inputs.push(m);
                }
            }
            for input in inputs {
                let mut buf = BytesMut::from(&input[..]);
                match parse(&mut buf) {
                    Parsed::Simple(req, _) => {
                        assert!(input.ends_with(&buf), "the rest stays buffered");
                        assert!(req.uri().path().starts_with('/'));
                    }
                    Parsed::Partial | Parsed::Other => assert_eq!(&buf[..], &input[..]),
                }
            }
        }
    }

    #[test]
    fn heads_are_written_with_the_bodys_framing() {
        let full = |b: &'static [u8]| -> crate::upstream::Body {
            http_body_util::Full::new(Bytes::from_static(b))
                .map_err(|e| -> crate::upstream::BoxError { match e {} })
                .boxed()
        };
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from_static("99"));
        headers.insert("connection", HeaderValue::from_static("keep-alive"));
        headers.insert("x-a", HeaderValue::from_static("1"));
        let mut out = Vec::new();
        let f = write_head(
            &mut out,
            StatusCode::OK,
            &headers,
            &full(b"abc"),
            false,
            false,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(f, Framing::Length);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 3\r\ndate: "));
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
        let mut out = Vec::new();
        let f = write_head(
            &mut out,
            StatusCode::OK,
            &headers,
            &full(b"abc"),
            true,
            true,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(f, Framing::None);
        assert!(
            text.contains("content-length: 99\r\n"),
            "HEAD keeps the length: {text}"
        );
        assert!(text.ends_with("connection: close\r\n\r\n"));
        let stream = http_body_util::StreamBody::new(futures_util::stream::iter(vec![Ok::<
            _,
            crate::upstream::BoxError,
        >(
            hyper::body::Frame::data(Bytes::from_static(b"x")),
        )]))
        .boxed();
        let mut out = Vec::new();
        let f = write_head(
            &mut out,
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            &stream,
            false,
            false,
        );
        assert_eq!(f, Framing::Chunked);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("transfer-encoding: chunked\r\n")
        );
    }
}
