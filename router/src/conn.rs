//! Client connections: the header-read and idle timeouts, the connection limit, draining, and
//! the counters behind `siskin_router_connections_*`.
//!
//! Every connection's socket is wrapped in [`Metered`], which notes reads and writes with
//! relaxed atomics (no clock read per read, except once per request head). A small watchdog
//! per connection looks at those marks a few times per timeout and, when a client takes too
//! long to send a request head, or a connection has had no request in flight and no bytes for
//! the idle timeout, shuts the connection down gracefully (HTTP/2: GOAWAY; HTTP/1.1: closed
//! between requests). A response in progress is never cut by these timeouts.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// Connection timeouts and limits (from the command line).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time a client has to send a complete HTTP/1 request head, counted from the connection
    /// (or, between requests, from the first byte of the next request).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Time a TLS client has to complete its handshake.
    pub tls_handshake_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused: AtomicU64,
    /// Closed because no complete request head arrived in time.
    pub header_timeouts: AtomicU64,
    /// Closed after the idle timeout.
    pub idle_closed: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// Certificate sets refused on reload.
    pub tls_reload_errors: Arc<AtomicU64>,
}

/// What the socket wrapper and the service note about one connection.
#[derive(Debug)]
pub struct Activity {
    /// Bumped on every read or write that moved bytes.
    events: AtomicU64,
    /// Requests whose service future is running.
    requests: AtomicU32,
    /// Milliseconds since `epoch` when the pending request head started; 0: none pending.
    head_since_ms: AtomicU64,
    /// HTTP/2 (no per-request head to time out).
    h2: AtomicBool,
    /// First read seen (for HTTP/2 preface detection).
    first_read: AtomicBool,
    epoch: Instant,
}

impl Activity {
    /// A connection just accepted: its first request head is due within the header timeout.
    pub fn new(h2: bool) -> Arc<Activity> {
        Arc::new(Activity {
            events: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            head_since_ms: AtomicU64::new(if h2 { 0 } else { 1 }),
            h2: AtomicBool::new(h2),
            first_read: AtomicBool::new(false),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        // +1 so that 0 keeps meaning "no head pending".
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn on_read(&self, bytes: &[u8]) {
        self.events.fetch_add(1, Relaxed);
        if !self.first_read.swap(true, Relaxed) && bytes.starts_with(b"PRI * HTTP/2.0") {
            self.h2.store(true, Relaxed);
            self.head_since_ms.store(0, Relaxed);
        }
        if !self.h2.load(Relaxed)
            && self.requests.load(Relaxed) == 0
            && self.head_since_ms.load(Relaxed) == 0
        {
            self.head_since_ms.store(self.now_ms(), Relaxed);
        }
    }

    /// A complete request head arrived; the guard ends the request.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Relaxed);
        self.head_since_ms.store(0, Relaxed);
        RequestGuard(self.clone())
    }
}

/// Held while a request is served: from its head until the last byte of its response body.
pub struct RequestGuard(Arc<Activity>);

/// A response body that holds its request's [`RequestGuard`] until the body ends, so a slow
/// streamed response (server-sent events, a long download) is never taken for an idle
/// connection.
pub struct Guarded<B> {
    inner: B,
    guard: Option<RequestGuard>,
}

impl<B> Guarded<B> {
    /// Wraps `inner`; the guard drops at its end of stream (or when the body is dropped).
    pub fn new(inner: B, guard: RequestGuard) -> Self {
        Guarded {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) || self.inner.is_end_stream()
        {
            self.guard = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Relaxed);
    }
}

/// Why the watchdog ended a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// No complete request head within the header-read timeout.
    HeaderTimeout,
    /// Idle for the idle timeout.
    Idle,
}

/// Resolves when the connection should be shut down.
pub async fn watchdog(activity: Arc<Activity>, limits: Limits) -> Expired {
    let shortest = limits.header_read_timeout.min(limits.idle_timeout);
    let tick = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let header_ms = u64::try_from(limits.header_read_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut seen = activity.events.load(Relaxed);
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let events = activity.events.load(Relaxed);
        if events != seen || activity.requests.load(Relaxed) > 0 {
            seen = events;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= limits.idle_timeout {
            return Expired::Idle;
        }
        let since = activity.head_since_ms.load(Relaxed);
        if since != 0 && activity.now_ms().saturating_sub(since) >= header_ms {
            return Expired::HeaderTimeout;
        }
    }
}

/// A socket that notes its reads and writes in an [`Activity`].
pub struct Metered<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Metered<S> {
    /// Wraps a socket.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Metered { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && buf.filled().len() > before
        {
            self.activity.on_read(&buf.filled()[before..]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            self.activity.events.fetch_add(1, Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            self.activity.events.fetch_add(1, Relaxed);
        }
        r
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(header_ms: u64, idle_ms: u64) -> Limits {
        Limits {
            header_read_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            tls_handshake_timeout: Duration::from_secs(1),
            max_connections: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_misses_its_first_head() {
        let a = Activity::new(false);
        let r = watchdog(a, limits(100, 1000)).await;
        assert_eq!(r, Expired::HeaderTimeout);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_connections_only_idle_out() {
        let a = Activity::new(false);
        a.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let started = tokio::time::Instant::now();
        assert_eq!(watchdog(a, limits(100, 1000)).await, Expired::Idle);
        assert!(started.elapsed() >= Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_idle() {
        let a = Activity::new(false);
        let guard = a.request();
        let dog = tokio::spawn(watchdog(a.clone(), limits(100, 200)));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!dog.is_finished());
        drop(guard);
        assert_eq!(dog.await.unwrap(), Expired::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_streamed_body_holds_its_request_until_it_ends() {
        use http_body_util::BodyExt;
        let a = Activity::new(false);
        type Frame = Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>;
        let (tx, rx) = tokio::sync::mpsc::channel::<Frame>(1);
        let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
        let mut guarded = Guarded::new(body, a.request());
        let dog = tokio::spawn(watchdog(a.clone(), limits(100, 200)));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!dog.is_finished(), "a response in progress is not idle");
        drop(tx);
        assert!(guarded.frame().await.is_none());
        assert_eq!(dog.await.unwrap(), Expired::Idle);
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::stream::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
