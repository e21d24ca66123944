//! Hostile and careless clients against the real router on loopback: slow request heads,
//! idle keep-alive connections, too many connections, HTTP/2 rapid-reset and CONTINUATION
//! floods sent as raw frames, and TLS by SNI with ALPN and certificate reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    sync::atomic::Ordering::SeqCst,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{
    RouterProcess, Upstream, free_port, get, http1_client, one_route,
    tls::{Pki, handshake, write_atomically},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The value of an unlabelled metric on the admin port.
async fn metric(router: &RouterProcess, name: &str) -> u64 {
    let text = router.admin_get("/metrics").await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// Reads until the peer closes (or `limit` passes); returns what arrived and whether it closed.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_cut_at_the_header_timeout() {
    let up = Upstream::start("up", false).await;
    let router = RouterProcess::start_with(
        &one_route(up.port),
        &[
            "--header-read-timeout-ms",
            "800",
            "--idle-timeout-ms",
            "20000",
        ],
    )
    .await;
    // Slowloris: a header line every 200 ms, never the blank line that ends the head.
    let mut s = TcpStream::connect(router.addr()).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let mut closed = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if s.write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut probe = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
        {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "the trickling client was never cut off");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(3500),
        "cut after {took:?}; the header timeout is 800 ms (plus a second's grace at most)"
    );
    assert_eq!(
        up.hits.load(SeqCst),
        0,
        "the incomplete request never went upstream"
    );
    assert_eq!(
        metric(&router, "siskin_router_connections_header_timeouts_total").await,
        1
    );
    // A client that sends its head at once is served.
    let (status, body, _) = get(&http1_client(), router.port, "/fine", &[]).await;
    assert_eq!((status, body.as_str()), (200, "up /fine"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_close_after_the_idle_timeout_not_before() {
    let up = Upstream::start("up", false).await;
    let router = RouterProcess::start_with(
        &one_route(up.port),
        &[
            "--header-read-timeout-ms",
            "400",
            "--idle-timeout-ms",
            "1500",
        ],
    )
    .await;
    let stream = TcpStream::connect(router.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let send = |sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, path| {
        let req = http::Request::get(path)
            .header("host", "x")
            .body(Empty::new())
            .unwrap();
        sender.send_request(req)
    };
    assert_eq!(send(&mut sender, "/one").await.unwrap().status(), 200);
    // Quiet for longer than the header timeout but less than the idle timeout: the connection
    // between requests is idle, not a slow head.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = send(&mut sender, "/two").await.unwrap();
    assert_eq!(second.status(), 200, "reused before the idle timeout");
    second.into_body().collect().await.unwrap();
    let quiet = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(
        ended.is_ok(),
        "the idle connection was still open after 5 s"
    );
    let after = quiet.elapsed();
    assert!(
        after >= Duration::from_millis(1400),
        "closed after {after:?} of quiet; the idle timeout is 1500 ms"
    );
    assert_eq!(
        metric(&router, "siskin_router_connections_idle_closed_total").await,
        1
    );
    assert_eq!(
        metric(&router, "siskin_router_connections_header_timeouts_total").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused_and_counted() {
    let up = Upstream::start("up", false).await;
    let router = RouterProcess::start_with(&one_route(up.port), &["--max-connections", "3"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(router.addr()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(metric(&router, "siskin_router_connections_open").await, 3);
    let mut fourth = TcpStream::connect(router.addr()).await.unwrap();
    let _ = fourth.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let (got, closed) = read_to_close(&mut fourth, Duration::from_secs(3)).await;
    assert!(
        closed && got.is_empty(),
        "the fourth connection was served: {got:?}"
    );
    assert_eq!(
        metric(&router, "siskin_router_connections_refused_total").await,
        1
    );
    assert_eq!(up.hits.load(SeqCst), 0);
    // One closes; a new client gets in.
    drop(held.pop());
    let started = Instant::now();
    loop {
        if metric(&router, "siskin_router_connections_open").await == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the closed connection was not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _, _) = get(&http1_client(), router.port, "/", &[]).await;
    assert_eq!(status, 200);
}

// === HTTP/2 frames by hand ===

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET http://x/`: static-table :method GET, :scheme http, :path /, then a literal
/// :authority.
const GET_ROOT: &[u8] = &[0x82, 0x86, 0x84, 0x41, 0x01, b'x'];
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Reads frames until a GOAWAY (its error code) or the end of the connection (None).
async fn goaway_or_close(mut r: tokio::net::tcp::OwnedReadHalf) -> Option<u32> {
    let mut head = [0u8; 9];
    loop {
        r.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await.ok()?;
        if head[3] == GOAWAY && payload.len() >= 8 {
            return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
        }
    }
}

async fn h2c_open(router: &RouterProcess) -> TcpStream {
    let mut s = TcpStream::connect(router.addr()).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    s
}

async fn healthy_h2(router: &RouterProcess) {
    let stream = TcpStream::connect(router.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://127.0.0.1:{}/after", router.port))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "a well-behaved h2 client is served after the flood"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_ends_the_connection_with_enhance_your_calm() {
    let up = Upstream::start("up", false).await;
    up.delay_ms.store(200, SeqCst);
    let router = RouterProcess::start(&one_route(up.port)).await;
    let (r, mut w) = h2c_open(&router).await.into_split();
    let reader = tokio::spawn(goaway_or_close(r));
    // 2,000 streams opened and cancelled at once, in batches (CVE-2023-44487).
    let mut sent = 0;
    'flood: for batch in 0..20u32 {
        let mut bytes = Vec::new();
        for i in 0..100u32 {
            let id = 1 + 2 * (batch * 100 + i);
            bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, GET_ROOT));
            bytes.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        }
        if w.write_all(&bytes).await.is_err() {
            break 'flood;
        }
        sent += 100;
    }
    let code = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the flooding connection was not ended within 5 s")
        .unwrap();
    eprintln!(
        "rapid reset: {sent} streams sent, GOAWAY {code:?}, {} upstream",
        up.hits.load(SeqCst)
    );
    assert_eq!(
        code,
        Some(0xb),
        "GOAWAY ENHANCE_YOUR_CALM after {sent} resets"
    );
    assert!(
        up.hits.load(SeqCst) < 200,
        "{} of the cancelled streams went upstream",
        up.hits.load(SeqCst)
    );
    up.delay_ms.store(0, SeqCst);
    healthy_h2(&router).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_flood_is_cut_off() {
    let up = Upstream::start("up", false).await;
    let router = RouterProcess::start(&one_route(up.port)).await;
    let (r, mut w) = h2c_open(&router).await.into_split();
    let reader = tokio::spawn(goaway_or_close(r));
    w.write_all(&frame(HEADERS, END_STREAM, 1, GET_ROOT))
        .await
        .unwrap();
    // A 1,000-byte literal header per CONTINUATION frame, never END_HEADERS: 2,000 frames
    // would be 2 MB of headers against a 64 KiB limit.
    let mut field = vec![0x00, 0x08];
    field.extend_from_slice(b"x-filler");
    field.extend_from_slice(&[0x7f, 0xe9, 0x06]); // length 1000 (127 + 873)
    field.extend(std::iter::repeat_n(b'a', 1000));
    let one = frame(CONTINUATION, 0, 1, &field);
    let mut written = 0usize;
    let started = Instant::now();
    for _ in 0..2000 {
        match tokio::time::timeout(Duration::from_secs(2), w.write_all(&one)).await {
            Ok(Ok(())) => written += 1,
            _ => break,
        }
    }
    let code = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the flooding connection was not ended within 5 s")
        .unwrap();
    eprintln!("CONTINUATION flood: {written} frames taken, then {code:?}");
    assert!(
        written < 2000 || code.is_some(),
        "all 2,000 frames were taken without a GOAWAY ({:?})",
        started.elapsed()
    );
    assert_ne!(
        code,
        Some(0),
        "ended with an error code, not a clean GOAWAY"
    );
    assert_eq!(
        up.hits.load(SeqCst),
        0,
        "the never-ending head went nowhere"
    );
    let rss = std::fs::read_to_string(format!("/proc/{}/status", router.pid()))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .trim_end_matches(" kB")
                .parse::<u64>()
                .ok()
        })
        .unwrap();
    assert!(rss < 100 * 1024, "router RSS {rss} kB after the flood");
    healthy_h2(&router).await;
}

// === TLS ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_by_sni_with_alpn_and_reload_without_dropping_connections() {
    let up = Upstream::start("up", false).await;
    let pki = Pki::new();
    let a = pki.issue("a", "a.example");
    let b = pki.issue("b", "*.b.example");
    let tls_port = free_port();
    let listen = format!("127.0.0.1:{tls_port}");
    let router = RouterProcess::start_with(
        &one_route(up.port),
        &[
            "--tls-listen",
            &listen,
            "--tls-certificate",
            &pki.pair("a"),
            "--tls-certificate",
            &pki.pair("b"),
            "--tls-handshake-timeout-ms",
            "500",
        ],
    )
    .await;

    // HTTP/1.1 by ALPN, certificate by exact name.
    let (tls, leaf, alpn) = handshake(&pki, tls_port, "a.example", &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(leaf, a, "a.example got its own certificate");
    assert_eq!(alpn.as_deref(), Some(b"http/1.1".as_slice()));
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/over-tls")
        .header("host", "a.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = h1.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"up /over-tls");

    // HTTP/2 by ALPN, certificate by wildcard; this connection stays open across the reload.
    let (tls, leaf, alpn) = handshake(&pki, tls_port, "shop.b.example", &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(leaf, b, "shop.b.example got the *.b.example certificate");
    assert_eq!(alpn.as_deref(), Some(b"h2".as_slice()));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let h2_get = |path: &'static str| {
        http::Request::get(format!("https://shop.b.example{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let resp = h2.send_request(h2_get("/h2")).await.unwrap();
    assert_eq!(
        (resp.status(), resp.version()),
        (http::StatusCode::OK, http::Version::HTTP_2)
    );

    // Rotate a.example's certificate: new handshakes get it, the open connection carries on.
    let a2 = pki.issue("a", "a.example");
    let started = Instant::now();
    loop {
        let (_, leaf, _) = handshake(&pki, tls_port, "a.example", &[]).await.unwrap();
        if leaf == a2 {
            break;
        }
        assert_eq!(leaf, a);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = h2.send_request(h2_get("/still-open")).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the connection opened before the reload still works"
    );

    // A broken key on disk is refused; the certificates in service stay.
    write_atomically(
        &pki.path("b.key"),
        b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    );
    let started = Instant::now();
    while metric(&router, "siskin_router_tls_reload_errors_total").await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the broken key was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, leaf, _) = handshake(&pki, tls_port, "x.b.example", &[]).await.unwrap();
    assert_eq!(leaf, b, "the last good certificate is still served");

    // A client that never says hello is dropped after the handshake timeout.
    let mut silent = TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    let (_, closed) = read_to_close(&mut silent, Duration::from_secs(3)).await;
    assert!(closed, "the silent TLS client was kept");
    assert_eq!(
        metric(&router, "siskin_router_tls_handshake_failures_total").await,
        1
    );
    // Cleartext keeps working beside TLS.
    let (status, _, _) = get(&http1_client(), router.port, "/", &[]).await;
    assert_eq!(status, 200);
}

/// TLS to upstreams: SNI and verification by the backend's `tls.hostname` against its CA,
/// HTTP/1.1 or h2 (ALPN) by the backend's protocol; a certificate for another name fails the
/// request (never a fallback to cleartext); a TLS setting that cannot be used refuses the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_upstreams_verifies_the_backends_name() {
    use support::tls::TlsUpstream;
    let pki = Pki::new();
    let (cert, key, _) = pki.issue_pem("api.internal");
    let api = TlsUpstream::start("api", &cert, &key).await;
    let ca = pki.path("ca.pem");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let config = |hostname: &str, protocol: &str| {
        format!(
            "routes:\n- name: r\n  rules:\n  - backendRefs: [{{name: api}}]\nbackends:\n- name: api\n  protocol: {protocol}\n  endpoints: [\"127.0.0.1:{}\"]\n  tls: {{hostname: {hostname}, caFile: {}}}\n",
            api.port,
            ca.display()
        )
    };
    let router = RouterProcess::start(&config("api.internal", "http1")).await;
    let client = http1_client();
    let (status, body, _) = get(&client, router.port, "/v1/items", &[]).await;
    assert_eq!((status, body.as_str()), (200, "api /v1/items HTTP/1.1"));
    assert_eq!(
        api.sni.lock().unwrap().last().cloned().flatten().as_deref(),
        Some("api.internal"),
        "SNI is the backend's tls.hostname"
    );
    assert_eq!(
        api.alpn.lock().unwrap().last().cloned().flatten(),
        None,
        "HTTP/1.1 upstreams are not offered ALPN (so HTTP/1.1 is what the server assumes)"
    );

    // h2 over TLS for an h2c-protocol backend.
    router.rewrite(&config("api.internal", "h2c"));
    let started = Instant::now();
    loop {
        let (status, body, _) = get(&client, router.port, "/v2", &[]).await;
        if body.ends_with("HTTP/2.0") {
            assert_eq!(status, 200);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        api.alpn
            .lock()
            .unwrap()
            .last()
            .cloned()
            .flatten()
            .as_deref(),
        Some(b"h2".as_slice())
    );

    // The endpoint's certificate does not carry the name asked for: the request fails.
    router.rewrite(&config("billing.internal", "http1"));
    let started = Instant::now();
    loop {
        let (status, body, _) = get(&client, router.port, "/", &[]).await;
        if status == 502 {
            assert!(
                body.contains("connect_failed") || body.contains("upstream_failed"),
                "{body}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Unusable TLS settings are refused with the place named; the last good file stays.
    router.rewrite(&format!(
        "routes:\n- name: r\n  rules:\n  - backendRefs: [{{name: api}}]\nbackends:\n- name: api\n  endpoints: [\"127.0.0.1:{}\"]\n  tls: {{hostname: api.internal, caFile: /nonexistent/ca.pem}}\n",
        api.port
    ));
    let started = Instant::now();
    loop {
        let status = router.admin_get("/config").await.unwrap();
        if status.contains("/nonexistent/ca.pem") {
            assert!(status.contains("backends[0] (api)"), "{status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_siskin-router"))
        .args([
            "--config",
            router.config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("/nonexistent/ca.pem"),
        "{stderr}"
    );
    std::fs::write(
        &router.config,
        "routes: []\nbackends:\n- {name: api, endpoints: [\"127.0.0.1:1\"], tls: {hostname: api.internal}}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_siskin-router"))
        .args([
            "--config",
            router.config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("backends[0].tls: set exactly one of caCertificates"),
        "{stderr}"
    );
}
