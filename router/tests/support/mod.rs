//! Real upstream HTTP servers on loopback and the real `siskin-router` binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod tls;

use std::{
    convert::Infallible,
    io::Write,
    net::{Ipv4Addr, SocketAddr},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};

pub use siskin_e2e::free_port;

/// An upstream that answers with its name; status and delay can change while it runs.
#[derive(Clone)]
pub struct Upstream {
    pub name: &'static str,
    pub port: u16,
    pub hits: Arc<AtomicUsize>,
    pub status: Arc<AtomicU16>,
    pub delay_ms: Arc<AtomicU64>,
    /// Request bodies received (for mirror checks).
    pub bodies: Arc<std::sync::Mutex<Vec<Bytes>>>,
}

impl Upstream {
    /// Starts on a free port. `grpc` answers with gRPC-style trailers.
    pub async fn start(name: &'static str, grpc: bool) -> Upstream {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let up = Upstream {
            name,
            port: listener.local_addr().unwrap().port(),
            hits: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            delay_ms: Arc::default(),
            bodies: Arc::default(),
        };
        let me = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| me.clone().answer(req, grpc));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        up
    }

    async fn answer(
        self,
        req: Request<Incoming>,
        grpc: bool,
    ) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>, Infallible> {
        self.hits.fetch_add(1, SeqCst);
        let delay = self.delay_ms.load(SeqCst);
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        self.bodies.lock().unwrap().push(body);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let text = format!("{} {}", self.name, parts.uri.path());
        if grpc {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            trailers.insert("grpc-message", HeaderValue::from_static("ok"));
            let frames = vec![
                Ok::<_, Infallible>(Frame::data(Bytes::from(text))),
                Ok(Frame::trailers(trailers)),
            ];
            let body = StreamBody::new(futures_stream(frames));
            let mut r = Response::new(body.boxed());
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            return Ok(r);
        }
        let mut r = Response::new(Full::new(Bytes::from(text)).boxed());
        *r.status_mut() = http::StatusCode::from_u16(self.status.load(SeqCst)).unwrap();
        r.headers_mut()
            .insert("x-upstream", HeaderValue::from_static(self.name));
        if let Some(c) = parts.headers.get("cookie") {
            r.headers_mut().insert("x-seen-cookie", c.clone());
        }
        Ok(r)
    }
}

fn futures_stream<T: Send + 'static>(items: Vec<T>) -> impl futures_core::Stream<Item = T> + Send {
    tokio_stream_iter(items)
}

/// A minimal stream over a vector (avoids pulling in a stream utility crate).
fn tokio_stream_iter<T>(items: Vec<T>) -> IterStream<T> {
    IterStream(items.into_iter())
}

pub struct IterStream<T>(std::vec::IntoIter<T>);
impl<T> Unpin for IterStream<T> {}
impl<T> futures_core::Stream for IterStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        std::task::Poll::Ready(self.0.next())
    }
}

/// The real `siskin-router` process with a config file it watches.
pub struct RouterProcess {
    pub port: u16,
    pub admin: u16,
    pub config: std::path::PathBuf,
    child: Child,
    _dir: TempDir,
}

pub struct TempDir(pub std::path::PathBuf);

fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "siskin-router-test-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl RouterProcess {
    pub async fn start(config: &str) -> RouterProcess {
        Self::start_with(config, &[]).await
    }

    /// The PID, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit (bounded).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Starts with extra command-line flags.
    pub async fn start_with(config: &str, extra: &[&str]) -> RouterProcess {
        let dir = scratch_dir();
        let path = dir.join("router.yaml");
        std::fs::write(&path, config).unwrap();
        let mut args = vec!["--config".to_string(), path.display().to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::spawn(dir, path, &args, &[]).await
    }

    /// The router in Kubernetes mode, watching one namespace of the cluster in `kubeconfig`.
    pub async fn start_kubernetes(kubeconfig: &std::path::Path, namespace: &str) -> RouterProcess {
        Self::start_kubernetes_with(kubeconfig, namespace, &[]).await
    }

    /// Kubernetes mode with extra command-line flags.
    pub async fn start_kubernetes_with(
        kubeconfig: &std::path::Path,
        namespace: &str,
        extra: &[&str],
    ) -> RouterProcess {
        let dir = scratch_dir();
        let mut args = ["--kubernetes", "--namespace", namespace]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        let env = [("KUBECONFIG", kubeconfig.display().to_string())];
        Self::spawn(dir.clone(), dir.join("none"), &args, &env).await
    }

    /// Runs the binary on free ports with `args`, and waits until its admin port answers.
    async fn spawn(
        dir: std::path::PathBuf,
        config: std::path::PathBuf,
        args: &[String],
        env: &[(&str, String)],
    ) -> RouterProcess {
        let (port, admin) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_siskin-router"))
            .args(args)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-addr",
                &format!("127.0.0.1:{admin}"),
                "--workers",
                "2",
            ])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("siskin-router starts");
        let r = RouterProcess {
            port,
            admin,
            config,
            child,
            _dir: TempDir(dir),
        };
        let started = Instant::now();
        while r.admin_get("/readyz").await.is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "router not ready within 10s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        r
    }

    pub fn rewrite(&self, config: &str) {
        // Write to a temporary file and rename, as a config management tool would.
        let tmp = self.config.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(config.as_bytes()).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    pub async fn admin_get(&self, path: &str) -> Option<String> {
        let client = http1_client();
        let uri: http::Uri = format!("http://127.0.0.1:{}{path}", self.admin)
            .parse()
            .unwrap();
        let resp = client.get(uri).await.ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&body).to_string())
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// GET through the router; returns (status, body, headers).
pub async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, HeaderMap) {
    let mut req = Request::get(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).to_string(), headers)
}

/// A configuration with one route to one backend `s` at `port`.
pub fn one_route(port: u16) -> String {
    format!(
        "routes:\n- name: r\n  rules:\n  - backendRefs: [{{name: s}}]\n{}",
        backends(&[("s", &[port], "primary")])
    )
}

pub fn backends(list: &[(&str, &[u16], &str)]) -> String {
    let mut out = String::from("backends:\n");
    for (name, ports, role) in list {
        let eps: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        out += &format!(
            "- {{name: {name}, role: {role}, endpoints: [{}]}}\n",
            eps.join(", ")
        );
    }
    out
}
