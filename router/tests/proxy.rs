//! The router on loopback with real upstream servers: split, matches, mirroring, sticky
//! cookies, retries, timeouts, ejection, gRPC trailers, reload under load, metrics and stats.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    sync::atomic::Ordering::SeqCst,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use support::{RouterProcess, Upstream, backends, free_port, get, http1_client, one_route};

fn split(primary: u32, canary: u32) -> String {
    format!(
        "routes:\n- name: shop/checkout\n  rules:\n  - name: canary\n    backendRefs:\n    - {{name: checkout-primary, weight: {primary}}}\n    - {{name: checkout-canary, weight: {canary}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_90_10_lands_within_binomial_bounds_and_is_measured() {
    let (p, c) = (
        Upstream::start("primary", false).await,
        Upstream::start("canary", false).await,
    );
    let config = split(90, 10)
        + &backends(&[
            ("checkout-primary", &[p.port], "primary"),
            ("checkout-canary", &[c.port], "canary"),
        ]);
    let router = RouterProcess::start(&config).await;
    let client = http1_client();
    let n = 2000;
    let mut canary = 0;
    for _ in 0..n {
        let (status, body, _) = get(&client, router.port, "/", &[]).await;
        assert_eq!(status, 200);
        canary += usize::from(body.starts_with("canary"));
    }
    // p = 0.1, n = 2000: mean 200, sd 13.4; 5 sd either side.
    assert!(
        (133..=267).contains(&canary),
        "{canary} of {n} went to the canary"
    );
    let metrics = router.admin_get("/metrics").await.unwrap();
    let line = format!(
        "siskin_router_requests_total{{route=\"shop/checkout\",rule=\"shop/checkout/canary\",backend=\"canary\",backend_name=\"checkout-canary\",status_class=\"2xx\"}} {canary}"
    );
    assert!(metrics.contains(&line), "{metrics}");
    assert!(
        metrics.contains("siskin_router_request_duration_seconds_bucket{route=\"shop/checkout\"")
    );
    let stats: serde_json::Value =
        serde_json::from_str(&router.admin_get("/stats").await.unwrap()).unwrap();
    let canary_stats = stats["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["role"] == "canary")
        .unwrap();
    assert_eq!(canary_stats["window1m"]["requests"], canary as u64);
    assert_eq!(canary_stats["window1m"]["success_rate"], 100.0);
    assert!(canary_stats["window1m"]["p99_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_cookie_and_query_matches() {
    let (p, c) = (
        Upstream::start("primary", false).await,
        Upstream::start("canary", false).await,
    );
    let config = format!(
        "routes:\n- name: ab\n  rules:\n  - name: insiders\n    matches:\n    - headers: [{{name: x-canary, value: insider}}]\n    - headers: [{{name: cookie, type: RegularExpression, value: '^(.*?;)?(type=insider)(;.*)?$'}}]\n    - queryParams: [{{name: canary, value: 'yes'}}]\n    backendRefs: [{{name: canary}}]\n  - name: default\n    backendRefs: [{{name: primary}}]\n{}",
        backends(&[
            ("primary", &[p.port], "primary"),
            ("canary", &[c.port], "canary")
        ])
    );
    let router = RouterProcess::start(&config).await;
    let client = http1_client();
    assert!(
        get(&client, router.port, "/", &[])
            .await
            .1
            .starts_with("primary")
    );
    assert!(
        get(&client, router.port, "/", &[("x-canary", "insider")])
            .await
            .1
            .starts_with("canary")
    );
    assert!(
        get(&client, router.port, "/", &[("x-canary", "outsider")])
            .await
            .1
            .starts_with("primary")
    );
    assert!(
        get(&client, router.port, "/", &[("cookie", "a=b;type=insider")])
            .await
            .1
            .starts_with("canary")
    );
    assert!(
        get(&client, router.port, "/?canary=yes", &[])
            .await
            .1
            .starts_with("canary")
    );
    assert!(
        get(&client, router.port, "/?canary=no", &[])
            .await
            .1
            .starts_with("primary")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_copies_requests_without_slowing_the_client() {
    let (p, m) = (
        Upstream::start("primary", false).await,
        Upstream::start("mirror", false).await,
    );
    m.delay_ms.store(1500, SeqCst);
    m.status.store(500, SeqCst);
    let config = format!(
        "routes:\n- name: r\n  rules:\n  - filters:\n    - type: RequestMirror\n      requestMirror: {{backendRef: {{name: canary}}, percent: 100}}\n    backendRefs: [{{name: primary}}]\n{}",
        backends(&[
            ("primary", &[p.port], "primary"),
            ("canary", &[m.port], "canary")
        ])
    );
    let router = RouterProcess::start(&config).await;
    let client = http1_client();
    let started = Instant::now();
    for i in 0..20 {
        let req = http::Request::post(format!("http://127.0.0.1:{}/order", router.port))
            .body(Full::new(Bytes::from(format!("order {i}"))))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "the client sees only the primary's answer"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(b"primary"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a 1.5 s mirror must not slow the client: {:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.hits.load(SeqCst) < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m.hits.load(SeqCst), 20, "every request was copied");
    let bodies = m.bodies.lock().unwrap().clone();
    assert!(
        bodies.iter().any(|b| b.as_ref() == b"order 7"),
        "bodies are copied too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookies_on_both_sides() {
    let (p, c) = (
        Upstream::start("primary", false).await,
        Upstream::start("canary", false).await,
    );
    let config = format!(
        "routes:\n- name: r\n  rules:\n  - expireCookies: [\"canary-cookie=old\"]\n    backendRefs:\n    - {{name: primary, weight: 50, sessionCookie: {{name: primary-cookie, value: p1, maxAge: 60}}}}\n    - {{name: canary, weight: 50, sessionCookie: {{name: canary-cookie, value: c1, maxAge: 86400, path: /, httpOnly: true, sameSite: Lax, secure: true}}}}\n{}",
        backends(&[
            ("primary", &[p.port], "primary"),
            ("canary", &[c.port], "canary")
        ])
    );
    let router = RouterProcess::start(&config).await;
    let client = http1_client();
    let mut seen = (false, false);
    for _ in 0..40 {
        let (_, body, headers) = get(&client, router.port, "/", &[]).await;
        let cookie = headers
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let (name, who) = if body.starts_with("canary") {
            ("canary-cookie=c1", "canary")
        } else {
            ("primary-cookie=p1", "primary")
        };
        assert!(cookie.starts_with(name), "{cookie}");
        if who == "canary" {
            seen.0 = true;
            assert_eq!(
                cookie,
                "canary-cookie=c1; Max-Age=86400; Path=/; HttpOnly; SameSite=Lax; Secure"
            );
        } else {
            seen.1 = true;
        }
        // Whoever got a cookie stays where it was sent.
        let value = cookie.split(';').next().unwrap().to_string();
        for _ in 0..5 {
            let (_, again, h) = get(&client, router.port, "/", &[("cookie", &value)]).await;
            assert!(again.starts_with(who), "{value} went to {again}");
            assert!(
                h.get("set-cookie").is_none(),
                "a pinned client is not re-pinned"
            );
        }
    }
    assert!(seen.0 && seen.1);
    let (_, _, h) = get(
        &client,
        router.port,
        "/",
        &[("cookie", "canary-cookie=old")],
    )
    .await;
    let expired: Vec<_> = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        expired.contains(&"canary-cookie=old; Max-Age=-1".to_string()),
        "{expired:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_connection_refused_and_times_out_with_504() {
    let live = Upstream::start("live", false).await;
    let dead = free_port();
    let slow = Upstream::start("slow", false).await;
    slow.delay_ms.store(2000, SeqCst);
    let config = format!(
        "routes:\n- name: r\n  rules:\n  - matches: [{{path: {{value: /slow}}}}]\n    timeouts: {{backendRequest: 200ms}}\n    backendRefs: [{{name: slow}}]\n  - retry: {{attempts: 3, backoff: 1ms}}\n    backendRefs: [{{name: flaky}}]\n{}",
        backends(&[
            ("flaky", &[dead, live.port], "primary"),
            ("slow", &[slow.port], "primary")
        ])
    );
    let router = RouterProcess::start(&config).await;
    let client = http1_client();
    for _ in 0..50 {
        let (status, body, _) = get(&client, router.port, "/", &[]).await;
        assert_eq!(
            (status, body.starts_with("live")),
            (200, true),
            "connection refused is retried on another endpoint"
        );
    }
    let started = Instant::now();
    let (status, body, _) = get(&client, router.port, "/slow", &[]).await;
    assert_eq!(status, 504, "{body}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let metrics = router.admin_get("/metrics").await.unwrap();
    assert!(
        metrics.contains("error_kind=\"backend_timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_bounds_every_attempt_and_backoff() {
    let slow = Upstream::start("slow", false).await;
    slow.delay_ms.store(2000, SeqCst);
    let failing = Upstream::start("failing", false).await;
    failing.status.store(503, SeqCst);
    // /slow: attempts of 200 ms each, retried, within a request of 500 ms. /backoff: a 503
    // retried after a 2 s pause that the request's 300 ms cut short. /alone: a request
    // timeout with no backend timeout.
    let config = format!(
        "routes:\n- name: r\n  rules:\n  - matches: [{{path: {{value: /slow}}}}]\n    timeouts: {{request: 500ms, backendRequest: 200ms}}\n    retry: {{attempts: 5, backoff: 1ms}}\n    backendRefs: [{{name: slow}}]\n  - matches: [{{path: {{value: /backoff}}}}]\n    timeouts: {{request: 300ms}}\n    retry: {{attempts: 2, backoff: 2s, codes: [503]}}\n    backendRefs: [{{name: failing}}]\n  - matches: [{{path: {{value: /alone}}}}]\n    timeouts: {{request: 300ms}}\n    backendRefs: [{{name: slow}}]\n{}",
        backends(&[
            ("slow", &[slow.port], "primary"),
            ("failing", &[failing.port], "primary")
        ])
    );
    let router = RouterProcess::start(&config).await;
    let client = http1_client();
    for (path, at_least, at_most) in [
        ("/slow", 450, 1200),
        ("/backoff", 250, 1200),
        ("/alone", 250, 1200),
    ] {
        let started = Instant::now();
        let (status, body, _) = get(&client, router.port, path, &[]).await;
        let took = started.elapsed();
        assert_eq!(status, 504, "{path}: {body}");
        assert!(
            took >= Duration::from_millis(at_least) && took < Duration::from_millis(at_most),
            "{path}: answered after {took:?}"
        );
    }
    let metrics = router.admin_get("/metrics").await.unwrap();
    // Each path's answer counts once, by what ended it: on /slow two attempts ran out at
    // 200 ms and were retried, the third at the request's 500 ms.
    let count = |kind: &str| {
        metrics
            .lines()
            .filter(|l| l.contains(&format!("error_kind=\"{kind}\"")) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert_eq!(count("request_timeout"), 3, "{metrics}");
    assert_eq!(count("backend_timeout"), 0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_is_ejected_and_comes_back() {
    let (good, bad) = (
        Upstream::start("good", false).await,
        Upstream::start("bad", false).await,
    );
    bad.status.store(503, SeqCst);
    let config = format!(
        "routes:\n- name: r\n  rules:\n  - backendRefs: [{{name: b}}]\n{}",
        backends(&[("b", &[good.port, bad.port], "primary")])
    );
    let router = RouterProcess::start(&config).await;
    let client = http1_client();
    for _ in 0..60 {
        get(&client, router.port, "/", &[]).await;
    }
    let before = bad.hits.load(SeqCst);
    assert!(before >= 5, "the bad endpoint was tried ({before})");
    for _ in 0..100 {
        let (status, ..) = get(&client, router.port, "/", &[]).await;
        assert_eq!(status, 200, "an ejected endpoint gets no traffic");
    }
    assert_eq!(bad.hits.load(SeqCst), before);
    // It recovers; once the 5 s ejection passes it is tried again.
    bad.status.store(200, SeqCst);
    tokio::time::sleep(Duration::from_millis(5200)).await;
    for _ in 0..60 {
        get(&client, router.port, "/", &[]).await;
    }
    assert!(bad.hits.load(SeqCst) > before, "the endpoint came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h2c_keeps_trailers() {
    let grpc = Upstream::start("grpc", true).await;
    let config = format!(
        "routes:\n- name: r\n  rules:\n  - backendRefs: [{{name: g}}]\nbackends:\n- {{name: g, protocol: h2c, endpoints: [\"127.0.0.1:{}\"]}}\n",
        grpc.port
    );
    let router = RouterProcess::start(&config).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::post(format!("http://127.0.0.1:{}/pkg.Service/Call", router.port))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers pass through");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert!(collected.to_bytes().starts_with(b"grpc /pkg.Service/Call"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_no_request_and_bad_config_keeps_the_last_good_one() {
    let (p, c) = (
        Upstream::start("primary", false).await,
        Upstream::start("canary", false).await,
    );
    p.delay_ms.store(20, SeqCst);
    c.delay_ms.store(20, SeqCst);
    let be = backends(&[
        ("checkout-primary", &[p.port], "primary"),
        ("checkout-canary", &[c.port], "canary"),
    ]);
    let router = RouterProcess::start(&(split(100, 0) + &be)).await;
    let port = router.port;
    let load = tokio::spawn(async move {
        let client = http1_client();
        let mut statuses = Vec::new();
        let stop = Instant::now() + Duration::from_secs(3);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = Vec::new();
                while Instant::now() < stop {
                    s.push(get(&client, port, "/", &[]).await.0);
                }
                s
            }));
        }
        for t in tasks {
            statuses.extend(t.await.unwrap());
        }
        statuses
    });
    for step in 0..=20 {
        let w = (step * 5) % 101;
        router.rewrite(&(split(100 - w, w) + &be));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statuses = load.await.unwrap();
    assert!(statuses.len() > 200, "load ran: {}", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "non-2xx during reloads: {:?}",
        statuses.iter().filter(|s| **s != 200).count()
    );
    assert!(c.hits.load(SeqCst) > 0, "weights changed under load");
    // A bad file is refused and reported; traffic keeps the last good config.
    router.rewrite("routes: [{name: broken, rules: [{backendRefs: [{name: nowhere}]}]}]\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let config: serde_json::Value =
        serde_json::from_str(&router.admin_get("/config").await.unwrap()).unwrap();
    let err = config["status"]["last_error"].as_str().unwrap();
    assert!(err.contains("unknown backend \"nowhere\""), "{err}");
    let metrics = router.admin_get("/metrics").await.unwrap();
    assert!(
        metrics.contains("siskin_router_config_valid 0")
            && metrics.contains("siskin_router_config_reload_errors_total 1"),
        "{metrics}"
    );
    assert_eq!(get(&http1_client(), router.port, "/", &[]).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_passes_through_and_bytes_flow_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that accepts any upgrade and echoes the raw bytes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |mut req: http::Request<hyper::body::Incoming>| async move {
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            if let Ok(up) = on.await {
                                let mut io = hyper_util::rt::TokioIo::new(up);
                                let mut buf = [0u8; 64];
                                while let Ok(n) = io.read(&mut buf).await {
                                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        });
                        let resp = http::Response::builder()
                            .status(101)
                            .header("connection", "upgrade")
                            .header("upgrade", "echo")
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    let config = format!(
        "routes:\n- name: r\n  rules:\n  - backendRefs: [{{name: ws}}]\n{}",
        backends(&[("ws", &[port], "primary")])
    );
    let router = RouterProcess::start(&config).await;
    let mut s = tokio::net::TcpStream::connect(router.addr()).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping over the tunnel").await.unwrap();
    let mut back = [0u8; 20];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"ping over the tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_overload_and_body_size() {
    let slow = Upstream::start("slow", false).await;
    slow.delay_ms.store(800, SeqCst);
    let config = one_route(slow.port);
    let router = RouterProcess::start_with(
        &config,
        &["--max-concurrent-requests", "2", "--max-body-bytes", "16"],
    )
    .await;
    let client = http1_client();
    let port = router.port;
    // Separate clients: one pool could queue the second request behind the first.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let c = http1_client();
            tokio::spawn(async move { get(&c, port, "/", &[]).await.0 })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body, _) = get(&client, port, "/", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("overloaded"));
    for b in busy {
        assert_eq!(
            b.await.unwrap(),
            200,
            "requests within the limit are served"
        );
    }
    let req = http::Request::post(format!("http://127.0.0.1:{port}/"))
        .body(Full::new(Bytes::from(vec![b'x'; 100])))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 413);
    let metrics = router.admin_get("/metrics").await.unwrap();
    assert!(
        metrics.contains("error_kind=\"overloaded\"} 1")
            && metrics.contains("error_kind=\"body_too_large\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let slow = Upstream::start("slow", false).await;
    slow.delay_ms.store(1000, SeqCst);
    let config = one_route(slow.port);
    let mut router = RouterProcess::start_with(&config, &["--drain-seconds", "5"]).await;
    let client = http1_client();
    let port = router.port;
    let in_flight = tokio::spawn(async move { get(&client, port, "/", &[]).await.0 });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &router.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(
        in_flight.await.unwrap(),
        200,
        "the request in flight finished"
    );
    let status = tokio::task::block_in_place(|| router.wait_exit(Duration::from_secs(6)));
    assert!(
        status.is_some_and(|s| s.success()),
        "router exited cleanly after draining: {status:?}"
    );
}

/// Hostile paths sent as a client would send them (raw bytes, so no client library cleans
/// them first): rules match, and the upstream receives, the normalized path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalized_before_matching_and_forwarding() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let public = Upstream::start("public", false).await;
    let config = format!(
        "routes:\n- name: r\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /public}}}}]\n    backendRefs: [{{name: p}}]\nbackends:\n- {{name: p, endpoints: [\"127.0.0.1:{}\"]}}\n",
        public.port
    );
    let router = RouterProcess::start(&config).await;
    let raw = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", router.port))
            .await
            .unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status: u16 = out[9..12].parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        (status, body)
    };
    for (path, status, seen) in [
        ("/public/../admin/", 404, None),
        ("/public/%2e%2e/admin", 404, None),
        ("/public/.%2E/admin", 404, None),
        ("//admin", 404, None),
        ("/public/./a//b", 200, Some("public /public/a/b")),
        ("/public/x/../y", 200, Some("public /public/y")),
        ("/%70ublic/a", 200, Some("public /public/a")),
        ("/public/a%2Fb", 200, Some("public /public/a%2Fb")),
        ("/public/a%zz", 400, None),
    ] {
        let (got, body) = raw(path).await;
        assert_eq!(got, status, "{path}: {body}");
        if let Some(seen) = seen {
            assert!(body.ends_with(seen), "{path}: the upstream saw {body:?}");
        }
    }
    assert_eq!(
        public.hits.load(SeqCst),
        4,
        "only the normalized /public paths reached it"
    );
}

/// A bare HTTP/1.1 upstream on loopback that counts the connections it accepts. `mode`: 0
/// keeps connections alive, 1 answers `Connection: close` and closes, 2 closes right after a
/// keep-alive answer without saying so (as a server whose idle timeout fires does).
async fn counting_upstream() -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicU8>,
) {
    use std::sync::{Arc, atomic::AtomicU8, atomic::AtomicUsize};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let mode = Arc::new(AtomicU8::new(0));
    let (a, m) = (accepted.clone(), mode.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            a.fetch_add(1, SeqCst);
            let m = m.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let mode = m.load(SeqCst);
                        let answer: &[u8] = if mode == 1 {
                            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        };
                        if s.write_all(answer).await.is_err() || mode != 0 {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, accepted, mode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive_and_closed_ones_replaced() {
    let (port, accepted, mode) = counting_upstream().await;
    // Two backends at the same address: one endpoint, one pool.
    let config = format!(
        "routes:\n- name: r\n  rules:\n  - backendRefs: [{{name: a, weight: 50}}, {{name: b, weight: 50}}]\n{}",
        backends(&[("a", &[port], "primary"), ("b", &[port], "canary")])
    );
    let router = RouterProcess::start(&config).await;
    let client = http1_client();
    for _ in 0..50 {
        let (status, body, _) = get(&client, router.port, "/", &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    assert_eq!(
        accepted.load(SeqCst),
        1,
        "50 requests one after another, split over two backends of one address, share one upstream connection"
    );
    // Concurrent requests take as many connections as are busy at once, then reuse them.
    for _ in 0..5 {
        let mut all = Vec::new();
        for _ in 0..8 {
            let client = client.clone();
            let port = router.port;
            all.push(tokio::spawn(
                async move { get(&client, port, "/", &[]).await.0 },
            ));
        }
        for r in all {
            assert_eq!(r.await.unwrap(), 200);
        }
    }
    let after_concurrent = accepted.load(SeqCst);
    assert!(
        (2..=9).contains(&after_concurrent),
        "5 rounds of 8 at once: {after_concurrent} connections"
    );
    // The upstream closes every connection after its answer, with and without saying so:
    // no request fails, and no connection serves twice, so each request past the idle ones
    // the pool held dials anew.
    let before = accepted.load(SeqCst);
    for m in [1, 2] {
        mode.store(m, SeqCst);
        for i in 0..10 {
            let (status, body, _) = get(&client, router.port, "/", &[]).await;
            assert_eq!(
                (status, body.as_str()),
                (200, "ok"),
                "mode {m}, request {i}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let dialled = accepted.load(SeqCst) - before;
    assert!(
        dialled + after_concurrent >= 20,
        "20 answers on closing connections: {dialled} dialled, at most {after_concurrent} were idle"
    );
    mode.store(0, SeqCst);
    let before = accepted.load(SeqCst);
    for _ in 0..10 {
        assert_eq!(get(&client, router.port, "/", &[]).await.0, 200);
    }
    assert_eq!(
        accepted.load(SeqCst) - before,
        1,
        "keep-alive again: one new connection"
    );
}

/// A request body fed by a channel: an upload the test writes at its own pace.
struct Upload(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Upload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_never_waits_behind_an_upload_its_upstream_answered_early() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The upstream answers each request head at once, without reading a body: `early` to a
    // POST, `ok` to anything else, and keeps the connection open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                let Ok(n) = s.read(&mut chunk).await else {
                    return;
                };
                let answer: &[u8] = if chunk[..n].starts_with(b"POST") {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                };
                if s.write_all(answer).await.is_err() {
                    return;
                }
                // Drain whatever else comes (the rest of the upload) until the peer closes.
                while matches!(s.read(&mut chunk).await, Ok(n) if n > 0) {}
            });
        }
    });
    let config = format!(
        "routes:\n- name: r\n  rules:\n  - backendRefs: [{{name: a}}]\n{}",
        backends(&[("a", &[port], "primary")])
    );
    let router = RouterProcess::start(&config).await;

    // Client A uploads slowly; the upstream's early answer comes back while it still sends.
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", router.port))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let uploading = tokio::spawn(async move {
        for _ in 0..30 {
            if tx.send(Bytes::from_static(b"0123456789")).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let req = http::Request::post("/upload")
        .header("host", "svc")
        .body(Upload(rx))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(2), sender.send_request(req))
        .await
        .expect("the early answer arrives while the upload goes on")
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"early");
    assert!(!uploading.is_finished(), "the upload is still going");

    // Client B's request takes another connection rather than the one still uploading.
    let client = http1_client();
    let started = Instant::now();
    let (status, body, _) =
        tokio::time::timeout(Duration::from_secs(2), get(&client, router.port, "/", &[]))
            .await
            .expect("a request does not wait for another's upload to end");
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered in {:?}",
        started.elapsed()
    );
    assert!(
        !uploading.is_finished(),
        "B was answered while A still uploaded"
    );
    uploading.abort();
}

/// A GET may carry a body (search APIs take their query so). Sent chunked by an HTTP/1.1
/// client, or by an HTTP/2 client without content-length, it reaches the upstream whole,
/// and the answer waits for it: hyper's client alone would send such a GET with no body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_with_a_body_of_unknown_length_reaches_the_upstream_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("up", false).await;
    let config = one_route(up.port);
    let router = RouterProcess::start(&config).await;

    // HTTP/1.1, chunked.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", router.port))
        .await
        .unwrap();
    s.write_all(b"GET /search HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nquery\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("up /search"), "{answer}");
    assert_eq!(up.bodies.lock().unwrap().last().unwrap().as_ref(), b"query");

    // HTTP/2 without content-length, the body sent in two parts; no answer before the end.
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", router.port))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let req = http::Request::get(format!("http://svc:{}/h2search", router.port))
        .body(Upload(rx))
        .unwrap();
    let answer = tokio::spawn(sender.send_request(req));
    tx.send(Bytes::from_static(b"first ")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!answer.is_finished(), "answered before the body ended");
    tx.send(Bytes::from_static(b"second")).await.unwrap();
    drop(tx);
    let resp = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("answered")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"up /h2search");
    assert_eq!(
        up.bodies.lock().unwrap().last().unwrap().as_ref(),
        b"first second"
    );
}

/// A bare HTTP/1.1 upstream on loopback whose answer each path scripts (see
/// `own_exchange_frames_every_kind_of_answer`); it counts the connections it accepts, and
/// answers a POST to `/echo` with the length header and body it received.
async fn scripted_upstream() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::{Arc, atomic::AtomicUsize};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            a.fetch_add(1, SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end + 4);
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < length {
                        let n = s.read(&mut chunk).await.unwrap();
                        assert!(n > 0, "request body cut short");
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body: Vec<u8> = buf.drain(..length).collect();
                    let path = head.split(' ').nth(1).unwrap_or_default().to_string();
                    let mut parts: Vec<Vec<u8>> = Vec::new();
                    let mut close = false;
                    match path.as_str() {
                        "/chunked" => {
                            parts.push(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n".to_vec());
                            parts.push(b"6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n".to_vec());
                        }
                        "/close" => {
                            parts.push(b"HTTP/1.1 200 OK\r\n\r\nuntil ".to_vec());
                            parts.push(b"the close".to_vec());
                            close = true;
                        }
                        "/http10" => {
                            parts.push(b"HTTP/1.0 200 OK\r\ncontent-length: 4\r\n\r\n1.0!".to_vec())
                        }
                        "/continue" => parts.push(
                            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone"
                                .to_vec(),
                        ),
                        "/nocontent" => parts.push(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
                        "/cut" => {
                            parts.push(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhal".to_vec());
                            close = true;
                        }
                        "/head" => parts.push(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n".to_vec()),
                        "/big" => {
                            parts.push(b"HTTP/1.1 200 OK\r\ncontent-length: 300000\r\n\r\n".to_vec());
                            for i in 0..3u8 {
                                parts.push(vec![b'a' + i; 100_000]);
                            }
                        }
                        "/conflict" => parts.push(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello"
                                .to_vec(),
                        ),
                        "/headers" => {
                            let mut answer = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                head.len()
                            )
                            .into_bytes();
                            answer.extend_from_slice(head.as_bytes());
                            parts.push(answer);
                        }
                        "/echo" => {
                            let seen = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .unwrap_or("none")
                                .to_string();
                            let mut answer = format!(
                                "HTTP/1.1 200 OK\r\nx-length: {seen}\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            answer.extend_from_slice(&body);
                            parts.push(answer);
                        }
                        _ => {
                            // Answers, then closes without saying so: the next request sent on
                            // this connection meets its close.
                            parts.push(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec());
                            close = path == "/bye";
                        }
                    }
                    for part in parts {
                        if s.write_all(&part).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_exchange_frames_every_kind_of_answer() {
    let (port, accepted) = scripted_upstream().await;
    let config = format!(
        "routes:\n- name: r\n  rules:\n  - backendRefs: [{{name: a}}]\n{}",
        backends(&[("a", &[port], "primary")])
    );
    let router = RouterProcess::start(&config).await;
    let client = http1_client();
    let count = || accepted.load(SeqCst);

    // A chunked answer arriving in two writes, with an extension and a trailer; twice on one
    // connection.
    for _ in 0..2 {
        let (status, body, _) = get(&client, router.port, "/chunked", &[]).await;
        assert_eq!((status, body.as_str()), (200, "hello world"));
    }
    assert_eq!(
        count(),
        1,
        "a chunked answer read to its end keeps its connection"
    );
    // Its trailer reaches an HTTP/2 client.
    let h2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let resp = h2
        .request(
            http::Request::get(format!("http://127.0.0.1:{}/chunked", router.port))
                .header("te", "trailers")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap().get("x-trailer").unwrap(), "t");
    assert_eq!(collected.to_bytes(), "hello world");
    assert_eq!(count(), 1);

    // An interim 100 is skipped; 204 and a HEAD answer have no body, and keep the connection.
    assert_eq!(get(&client, router.port, "/continue", &[]).await.1, "done");
    assert_eq!(get(&client, router.port, "/nocontent", &[]).await.0, 204);
    let head = client
        .request(
            http::Request::head(format!("http://127.0.0.1:{}/head", router.port))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "10");
    // A body larger than one read streams in whole.
    let (status, body, _) = get(&client, router.port, "/big", &[]).await;
    assert_eq!((status, body.len()), (200, 300_000));
    assert!(body.starts_with('a') && body.ends_with('c'));
    assert_eq!(count(), 1, "all of these on the one connection");

    // A small POST goes with its length.
    let resp = client
        .request(
            http::Request::post(format!("http://127.0.0.1:{}/echo", router.port))
                .body(Full::new(Bytes::from_static(b"payload")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-length"], "7");
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "payload"
    );
    let resp = client
        .request(
            http::Request::post(format!("http://127.0.0.1:{}/echo", router.port))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-length"], "0", "an empty POST says so");
    assert_eq!(count(), 1);

    // A body that runs to the close, and an HTTP/1.0 answer: whole, and their connections are
    // not used again.
    let (status, body, _) = get(&client, router.port, "/close", &[]).await;
    assert_eq!((status, body.as_str()), (200, "until the close"));
    let before = count();
    for _ in 0..2 {
        assert_eq!(get(&client, router.port, "/http10", &[]).await.1, "1.0!");
    }
    assert_eq!(
        count() - before,
        2,
        "an HTTP/1.0 answer's connection is not reused"
    );

    // The upstream closes after answering without saying so: the next GET, sent on that
    // connection before the close is seen, goes again on a new one.
    for _ in 0..5 {
        let (status, body, _) = get(&client, router.port, "/bye", &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        let (status, body, _) = get(&client, router.port, "/", &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }

    // Hop-by-hop fields stay behind, `TE: trailers` and the rest go on, and so does the
    // client's Host; an HTTP/2 client's authority becomes the Host.
    let (status, seen, _) = get(
        &client,
        router.port,
        "/headers",
        &[
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-keep", "1"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    // The upstream's answer is the request head, less its final empty line.
    let seen = seen.to_lowercase() + "\r\n";
    assert!(seen.starts_with("get /headers http/1.1\r\n"), "{seen}");
    assert!(
        seen.contains(&format!("host: 127.0.0.1:{}\r\n", router.port)),
        "{seen}"
    );
    assert!(
        seen.contains("x-keep: 1") && seen.contains("te: trailers"),
        "{seen}"
    );
    assert!(
        !seen.contains("proxy-authorization") && !seen.contains("keep-alive"),
        "{seen}"
    );
    let resp = h2
        .request(
            http::Request::get(format!("http://127.0.0.1:{}/headers", router.port))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let seen = resp.into_body().collect().await.unwrap().to_bytes();
    let seen = String::from_utf8_lossy(&seen).to_lowercase() + "\r\n";
    assert!(
        seen.contains(&format!("host: 127.0.0.1:{}\r\n", router.port)),
        "{seen}"
    );

    // A body cut short by the upstream's close fails on the client's side too, never passing
    // as complete; the connection is not used again.
    let before = count();
    let resp = client
        .request(
            http::Request::get(format!("http://127.0.0.1:{}/cut", router.port))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.into_body().collect().await.is_err(),
        "a cut body is an error"
    );
    assert_eq!(get(&client, router.port, "/", &[]).await.1, "ok");
    assert!(count() > before, "a new connection after the cut one");

    // Two differing lengths: refused with 502, never passed on.
    let (status, body, _) = get(&client, router.port, "/conflict", &[]).await;
    assert_eq!(status, 502, "{body}");
}

/// Reads one HTTP/1.1 response from `s` (framed by content-length, chunked, or none for a
/// HEAD): its head as text and its body.
async fn read_response(
    s: &mut tokio::net::TcpStream,
    pending: &mut Vec<u8>,
    head_request: bool,
) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed before a response head");
        pending.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(pending.drain(..head_end).collect()).unwrap();
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let chunked = lower.contains("transfer-encoding: chunked");
    let mut body = Vec::new();
    if head_request {
        return (head, body);
    }
    loop {
        // Decode what is buffered; read more while the body is incomplete.
        if let Some(n) = length.filter(|_| !chunked) {
            if pending.len() >= n {
                body = pending.drain(..n).collect();
                return (head, body);
            }
        } else if chunked {
            let mut at = 0;
            let mut out = Vec::new();
            let done = loop {
                let Some(eol) = pending[at..].windows(2).position(|w| w == b"\r\n") else {
                    break false;
                };
                let size =
                    usize::from_str_radix(std::str::from_utf8(&pending[at..at + eol]).unwrap(), 16)
                        .unwrap();
                let start = at + eol + 2;
                if size == 0 {
                    if pending.len() >= start + 2 {
                        at = start + 2;
                        break true;
                    }
                    break false;
                }
                if pending.len() < start + size + 2 {
                    break false;
                }
                out.extend_from_slice(&pending[start..start + size]);
                at = start + size + 2;
            };
            if done {
                pending.drain(..at);
                body = out;
                return (head, body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("the body in time")
            .unwrap();
        assert!(n > 0, "closed inside a body");
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// The router's own HTTP/1.1 server (router/src/h1server.rs) answers pipelined requests in
/// order, gives a HEAD answer the upstream's length and no body, and hands the connection to
/// hyper's server, bytes already read included, at the first request with a body; a client's
/// `Connection: close` is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_http1_server_pipelines_hands_off_and_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("up", false).await;
    let config = one_route(up.port);
    let router = RouterProcess::start(&config).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", router.port))
        .await
        .unwrap();
    // Three requests in one write, then a POST with its body split from its head, in the
    // same write as the GET before it.
    s.write_all(
        b"GET /one HTTP/1.1\r\nhost: x\r\n\r\nHEAD /two HTTP/1.1\r\nhost: x\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\nGET /four HTTP/1.1\r\nhost: x\r\n\r\nPOST /five HTTP/1.1\r\nhost: x\r\ncontent-length: 12\r\n\r\nfive",
    )
    .await
    .unwrap();
    let mut pending = Vec::new();
    let (head, body) = read_response(&mut s, &mut pending, false).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("\r\ndate: "), "{head}");
    assert_eq!(body, b"up /one");
    let (head, body) = read_response(&mut s, &mut pending, true).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 7\r\n"),
        "a HEAD answer keeps the upstream's length: {head}"
    );
    assert!(body.is_empty());
    assert_eq!(
        read_response(&mut s, &mut pending, false).await.1,
        b"up /three"
    );
    assert_eq!(
        read_response(&mut s, &mut pending, false).await.1,
        b"up /four"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b" and six").await.unwrap();
    assert_eq!(
        read_response(&mut s, &mut pending, false).await.1,
        b"up /five"
    );
    assert_eq!(
        up.bodies.lock().unwrap().last().unwrap().as_ref(),
        b"five and six"
    );
    // The connection goes on under hyper's server.
    s.write_all(b"GET /seven HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut s, &mut pending, false).await.1,
        b"up /seven"
    );
    assert!(pending.is_empty());

    // Connection: close is answered, said back, and the connection closed.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", router.port))
        .await
        .unwrap();
    s.write_all(b"GET /eight HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .expect("closed after the answer")
        .unwrap();
    let text = String::from_utf8(all).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nup /eight"), "{text}");
}
