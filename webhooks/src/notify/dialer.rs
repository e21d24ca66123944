//! The TCP side of the Slack client: straight to the service, or through an HTTP proxy —
//! `CONNECT` for `https://` targets (TLS end to end), absolute-form requests for `http://`.
//!
//! slack-morphism takes any hyper connector but brings no proxy support of its own, so this
//! is the part reqwest does for the other services: the proxy is `spec.proxy` when set, else
//! the environment's (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`), as reqwest and
//! Go's default transport (Flagger) read it.

use std::{
    error::Error as StdError,
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{Uri, uri::Scheme};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::{
    client::{
        legacy::connect::{Connected, Connection, HttpConnector, proxy::Tunnel},
        proxy::matcher::Matcher,
    },
    rt::TokioIo,
};
use tokio::net::TcpStream;
use tower_service::Service;

/// Connects to the target, or to the proxy for it.
#[derive(Clone, Debug)]
pub(super) struct Dialer {
    tcp: HttpConnector,
    proxies: Arc<Matcher>,
}

/// A connection, marked as proxied when requests on it must be in absolute form.
#[derive(Debug)]
pub(super) struct Dialed {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

type BoxError = Box<dyn StdError + Send + Sync>;

// === impl Dialer ===

impl Dialer {
    /// A dialer through `proxy` (an `http://` URL, checked by the caller) or, without one,
    /// the environment's proxies; it gives up connecting after `connect_timeout`.
    pub(super) fn new(proxy: Option<&str>, connect_timeout: Duration) -> Self {
        let mut tcp = HttpConnector::new();
        // The TLS layer above us handles `https://`.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        let proxies = match proxy {
            Some(proxy) => Matcher::builder().all(proxy.to_owned()).build(),
            None => Matcher::from_env(),
        };
        Self {
            tcp,
            proxies: Arc::new(proxies),
        }
    }
}

impl Service<Uri> for Dialer {
    type Response = Dialed;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Dialed, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        let Some(proxy) = self.proxies.intercept(&dst) else {
            return Box::pin(async move {
                let io = tcp.call(dst).await?;
                Ok(Dialed { io, proxied: false })
            });
        };
        if proxy.uri().scheme() != Some(&Scheme::HTTP) {
            return Box::pin(async move {
                Err("the Slack client reaches proxies over plain http:// only".into())
            });
        }
        if dst.scheme() == Some(&Scheme::HTTPS) {
            let mut tunnel = Tunnel::new(proxy.uri().clone(), tcp);
            if let Some(auth) = proxy.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            Box::pin(async move {
                let io = tunnel.call(dst).await?;
                Ok(Dialed { io, proxied: false })
            })
        } else {
            // Plain http: the request goes to the proxy in absolute form. (Credentials would
            // need a `Proxy-Authorization` header on each request, which this client does
            // not add; real Slack URLs are https.)
            let at = proxy.uri().clone();
            Box::pin(async move {
                let io = tcp.call(at).await?;
                Ok(Dialed { io, proxied: true })
            })
        }
    }
}

// === impl Dialed ===

impl Connection for Dialed {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl Read for Dialed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for Dialed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}
