//! The built-in load generator through the real binary, against real servers on loopback: an
//! axum HTTP server that counts what it receives (for `hey`) and a tonic gRPC health server (for
//! `ghz`). The results JSON and `/metrics` are checked against what the servers saw; nothing
//! here needs `--enable-exec` (no process is started besides the load tester).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    routing::any,
};
use common::{Tester, payload};
use serde_json::{Value, json};
use tonic_health::ServingStatus;

/// What the upstream HTTP server received.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    /// Requests without `X-Test: 1`.
    without_test_header: AtomicU64,
    /// Status to answer with.
    status: AtomicU16,
    /// Delay before answering, in milliseconds.
    delay_ms: AtomicU64,
    /// "METHOD path | content-type | accept | authorization | host | body" → count.
    shapes: Mutex<BTreeMap<String, u64>>,
}

/// A real HTTP server on 127.0.0.1.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl Upstream {
    async fn start(status: u16, delay: Duration) -> Upstream {
        let seen = Arc::new(Seen::default());
        seen.status.store(status, Ordering::SeqCst);
        seen.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        let app = Router::new()
            .fallback(any(upstream_handler))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Upstream { addr, seen }
    }

    fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    fn shapes(&self) -> BTreeMap<String, u64> {
        self.seen.shapes.lock().unwrap().clone()
    }

    fn reset(&self) {
        self.seen.requests.store(0, Ordering::SeqCst);
        self.seen.without_test_header.store(0, Ordering::SeqCst);
        self.seen.shapes.lock().unwrap().clear();
    }
}

async fn upstream_handler(
    State(seen): State<Arc<Seen>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    if headers.get("x-test").is_none_or(|v| v != "1") {
        seen.without_test_header.fetch_add(1, Ordering::SeqCst);
    }
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let shape = format!(
        "{method} {} | {} | {} | {} | {} | {}",
        uri.path(),
        h("content-type"),
        h("accept"),
        h("authorization"),
        h("host"),
        String::from_utf8_lossy(&body)
    );
    *seen.shapes.lock().unwrap().entry(shape).or_default() += 1;
    let delay = seen.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    StatusCode::from_u16(seen.status.load(Ordering::SeqCst)).unwrap()
}

/// A port nothing listens on (outside the ephemeral range, so no connection can have taken
/// it as its source port, nor connect to itself through it).
fn closed_port() -> u16 {
    siskin_e2e::free_port()
}

/// The value of one sample line of `/metrics`, 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// Checks the shape of a results object and its latency figures.
fn check_results(r: &Value, tool: &str, cmd: &str) {
    assert_eq!(r["tool"], tool, "{r}");
    assert_eq!(r["command"], cmd, "{r}");
    assert!(r["startedAt"].as_str().unwrap().ends_with('Z'), "{r}");
    let l = &r["latencyMs"];
    let (mean, p50, p90, p99, max) = (
        l["mean"].as_f64().unwrap(),
        l["p50"].as_f64().unwrap(),
        l["p90"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
        l["max"].as_f64().unwrap(),
    );
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= max && mean <= max,
        "latency out of order: {l}"
    );
    let (requests, secs) = (
        r["requests"].as_f64().unwrap(),
        r["durationSeconds"].as_f64().unwrap(),
    );
    if secs > 0.0 {
        let rps = r["rps"].as_f64().unwrap();
        assert!(
            (rps - requests / secs).abs() < 1e-6 * requests.max(1.0),
            "{r}"
        );
    }
    let codes: u64 = r["statusCodes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        codes,
        r["requests"].as_u64().unwrap(),
        "every request has a code: {r}"
    );
}

#[tokio::test]
async fn hey_runs_in_process_and_reports_what_the_upstream_saw() {
    // Every answer takes at least 5 ms, so every latency figure is at least 5 ms.
    let up = Upstream::start(200, Duration::from_millis(5)).await;
    let t = Tester::start(&[]);
    let cmd = format!("hey -z 2s -q 20 -c 2 -H 'X-Test: 1' http://{}/", up.addr);
    // `bash` without --enable-exec: a hey command line still runs, in-process, synchronously.
    let r = t.task(json!({"type": "bash", "cmd": cmd})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json();
    check_results(&res, "hey", &cmd);
    assert_eq!(res["target"], format!("http://{}/", up.addr));
    let requests = res["requests"].as_u64().unwrap();
    assert_eq!(
        requests,
        up.requests(),
        "the results count what the server saw"
    );
    // 2 workers at 20/s each for 2 s: at most 41 ticks each (the first is immediate).
    assert!((10..=82).contains(&requests), "{res}");
    assert_eq!(res["errors"], 0, "{res}");
    assert_eq!(res["statusCodes"], json!({"200": requests}), "{res}");
    assert_eq!(res["errorMessages"], json!({}), "{res}");
    let secs = res["durationSeconds"].as_f64().unwrap();
    assert!((2.0..10.0).contains(&secs), "-z 2s: {res}");
    let l = &res["latencyMs"];
    assert!(l["p50"].as_f64().unwrap() >= 5.0, "{res}");
    assert!(l["mean"].as_f64().unwrap() >= 5.0, "{res}");
    assert!(l["max"].as_f64().unwrap() < 5000.0, "{res}");
    assert_eq!(
        up.seen.without_test_header.load(Ordering::SeqCst),
        0,
        "-H is sent"
    );
    // the defaults: GET, Content-Type text/html (as hey), Accept */*, no body
    let shapes = up.shapes();
    let want = format!("GET / | text/html | */* | - | {} | ", up.addr);
    assert_eq!(shapes, BTreeMap::from([(want, requests)]));

    // A failing upstream: every request is an error, the task itself still answers 200
    // (like hey, which exits 0 whatever the status codes).
    up.seen.status.store(500, Ordering::SeqCst);
    up.reset();
    let cmd = format!("hey -n 30 -c 3 -H 'X-Test: 1' http://{}/", up.addr);
    let r = t.task(json!({"type": "bash", "cmd": cmd})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json();
    check_results(&res, "hey", &cmd);
    assert_eq!(
        (res["requests"].as_u64(), res["errors"].as_u64()),
        (Some(30), Some(30)),
        "{res}"
    );
    assert_eq!(res["statusCodes"], json!({"500": 30}), "{res}");
    assert_eq!(up.requests(), 30, "-n 30 sends exactly 30");

    // /metrics has both runs, per canary, tool and code.
    let m = t.get("/metrics").await.body;
    let series = |s: &str| sample(&m, s);
    assert_eq!(
        series(
            r#"siskin_loadtester_requests_total{namespace="test",canary="podinfo",tool="hey",code="200"}"#
        ),
        requests as f64,
        "{m}"
    );
    assert_eq!(
        series(
            r#"siskin_loadtester_requests_total{namespace="test",canary="podinfo",tool="hey",code="500"}"#
        ),
        30.0,
        "{m}"
    );
    assert_eq!(
        series(
            r#"siskin_loadtester_request_duration_seconds_count{namespace="test",canary="podinfo",tool="hey"}"#
        ),
        (requests + 30) as f64,
        "{m}"
    );
    // every request took at least 5 ms: none is in the 1 ms and 2 ms buckets
    assert_eq!(
        series(
            r#"siskin_loadtester_request_duration_seconds_bucket{le="0.002",namespace="test",canary="podinfo",tool="hey"}"#
        ),
        0.0,
        "{m}"
    );
    assert_eq!(
        series(r#"siskin_loadtester_tasks_total{type="hey",outcome="succeeded"}"#),
        1.0,
        "{m}"
    );
    assert_eq!(
        series(r#"siskin_loadtester_tasks_total{type="hey",outcome="failed"}"#),
        1.0,
        "{m}"
    );
}

#[tokio::test]
async fn hey_sends_the_method_body_and_headers_it_is_given() {
    let up = Upstream::start(201, Duration::ZERO).await;
    let t = Tester::start(&[]);
    let cmd = format!(
        "hey -n 12 -c 3 -m POST -d 'hello siskin' -T application/json -A application/xml \
         -a user:pass -host app.example.com -H 'X-Test: 1' http://{}/echo",
        up.addr
    );
    let r = t.task(json!({"type": "bash", "cmd": cmd})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json();
    check_results(&res, "hey", &cmd);
    assert_eq!(
        res["statusCodes"],
        json!({"201": 12}),
        "2xx is not an error: {res}"
    );
    assert_eq!(res["errors"], 0, "{res}");
    let want = "POST /echo | application/json | application/xml | Basic dXNlcjpwYXNz | \
                app.example.com | hello siskin";
    assert_eq!(up.shapes(), BTreeMap::from([(want.to_string(), 12)]));

    // -D reads the body from a file; the method is case-insensitive.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.json");
    std::fs::write(&file, r#"{"from":"file"}"#).unwrap();
    up.reset();
    let cmd = format!(
        "hey -n 4 -c 2 -m put -D {} -T application/json -H 'X-Test: 1' http://{}/put",
        file.display(),
        up.addr
    );
    let r = t.task(json!({"type": "bash", "cmd": cmd})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let want = format!(
        r#"PUT /put | application/json | */* | - | {} | {{"from":"file"}}"#,
        up.addr
    );
    assert_eq!(up.shapes(), BTreeMap::from([(want, 4)]));
    // a -D file that is not there is a 400 naming it
    let r = t
        .task(json!({"type": "bash", "cmd": format!("hey -n 1 -c 1 -D /nonexistent/body http://{}/", up.addr)}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("-D /nonexistent/body"), "{}", r.body);
}

#[tokio::test]
async fn hey_counts_transport_failures_and_timeouts_as_errors() {
    let t = Tester::start(&[]);
    let port = closed_port();
    let cmd = format!("hey -n 4 -c 2 http://127.0.0.1:{port}/");
    let r = t.task(json!({"type": "bash", "cmd": cmd})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json();
    check_results(&res, "hey", &cmd);
    assert_eq!(res["errors"], 4, "{res}");
    assert_eq!(res["statusCodes"], json!({"error": 4}), "{res}");
    let messages = res["errorMessages"].as_object().unwrap();
    assert!(
        messages.keys().any(|m| m.contains("onnection refused")),
        "the cause is named: {res}"
    );

    // -t 1: a server that takes 5 s is cut off after 1 s per request.
    let slow = Upstream::start(200, Duration::from_secs(5)).await;
    let cmd = format!("hey -n 2 -c 2 -t 1 http://{}/", slow.addr);
    let r = t.task(json!({"type": "bash", "cmd": cmd})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json();
    assert_eq!(res["errors"], 2, "{res}");
    assert_eq!(res["statusCodes"], json!({"error": 2}), "{res}");
    assert!(
        res["durationSeconds"].as_f64().unwrap() < 4.5,
        "-t 1 stops waiting before the server answers: {res}"
    );
    assert!(
        res["errorMessages"]
            .as_object()
            .unwrap()
            .keys()
            .any(|m| m.contains("timed out")),
        "{res}"
    );
}

#[tokio::test]
async fn hey_as_cmd_runs_in_the_background_and_keeps_the_last_results() {
    let up = Upstream::start(200, Duration::ZERO).await;
    let t = Tester::start(&[]);
    // 2 workers × 10 requests at 10/s each: about a second.
    let cmd = format!("hey -n 20 -c 2 -q 10 -H 'X-Test: 1' http://{}/", up.addr);
    let started = Instant::now();
    let r = t.task(json!({"cmd": cmd})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json(), json!({"status": "started", "lastRun": null}));
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "answered before the run ends"
    );
    let r = t.task(json!({"cmd": cmd})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json(), json!({"status": "running", "lastRun": null}));
    // Once it is done, the next call starts it again and returns the finished run's results.
    let deadline = Instant::now() + Duration::from_secs(20);
    let last = loop {
        assert!(
            Instant::now() < deadline,
            "the run did not finish: {} requests",
            up.requests()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = t.task(json!({"cmd": cmd})).await;
        assert_eq!(r.status, 202, "{}", r.body);
        let v = r.json();
        if v["status"] == "started" {
            break v["lastRun"].clone();
        }
        assert_eq!(v["status"], "running", "{v}");
    };
    check_results(&last, "hey", &cmd);
    assert_eq!(
        (last["requests"].as_u64(), last["errors"].as_u64()),
        (Some(20), Some(0)),
        "{last}"
    );
    assert_eq!(up.seen.without_test_header.load(Ordering::SeqCst), 0);
    let m = t.get("/metrics").await.body;
    assert_eq!(
        sample(
            &m,
            r#"siskin_loadtester_tasks_total{type="hey",outcome="started"}"#
        ),
        2.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            r#"siskin_loadtester_tasks_total{type="hey",outcome="skipped"}"#
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"siskin_loadtester_tasks_total{type="hey",outcome="succeeded"}"#
        ),
        1.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_synchronous_run_stops_when_the_caller_goes_away() {
    let up = Upstream::start(200, Duration::ZERO).await;
    let t = Tester::start(&[]);
    // 10 requests a second for 6 s, but the caller gives up after 1 s.
    let cmd = format!("hey -z 6s -q 10 -c 1 http://{}/", up.addr);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = impatient
        .post(format!("{}/", t.base))
        .body(payload(
            "test",
            "podinfo",
            None,
            Some(json!({"type": "bash", "cmd": cmd})),
        ))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_cancel = up.requests();
    assert!(after_cancel >= 1, "the run had started");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        up.requests(),
        after_cancel,
        "no request is sent after the caller went away"
    );
}

/// A real gRPC health server (tonic-health) on 127.0.0.1 that counts the calls it receives and
/// the `x-team` metadata they carry.
struct HealthServer {
    addr: SocketAddr,
    reporter: tonic_health::server::HealthReporter,
    calls: Arc<AtomicU64>,
    teams: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl HealthServer {
    async fn start() -> HealthServer {
        let (reporter, service) = tonic_health::server::health_reporter();
        let calls = Arc::new(AtomicU64::new(0));
        let teams = Arc::new(Mutex::new(BTreeMap::new()));
        let (c, tm) = (calls.clone(), teams.clone());
        let counted = tonic::service::interceptor::InterceptedService::new(
            service,
            move |req: tonic::Request<()>| {
                c.fetch_add(1, Ordering::SeqCst);
                let team = req
                    .metadata()
                    .get("x-team")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                *tm.lock().unwrap().entry(team).or_default() += 1;
                Ok(req)
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(counted)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        HealthServer {
            addr,
            reporter,
            calls,
            teams,
        }
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn ghz_health_checks_run_in_process() {
    let grpc = HealthServer::start().await;
    grpc.reporter
        .set_service_status("web", ServingStatus::Serving)
        .await;
    let t = Tester::start(&[]);
    let call = "--insecure --call grpc.health.v1.Health/Check";

    // SERVING: every call is OK.
    let cmd = format!("ghz {call} -n 20 -c 2 {}", grpc.addr);
    let r = t.task(json!({"type": "bash", "cmd": cmd})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json();
    check_results(&res, "ghz", &cmd);
    assert_eq!(res["target"], grpc.addr.to_string());
    assert_eq!(
        (res["requests"].as_u64(), res["errors"].as_u64()),
        (Some(20), Some(0)),
        "{res}"
    );
    assert_eq!(res["statusCodes"], json!({"OK": 20}), "{res}");
    assert_eq!(grpc.calls(), 20, "the server saw every call");

    // A named service and metadata, ghz's dotted call spelling, -z with a rate over all workers,
    // two connections.
    let before = grpc.calls();
    let cmd = format!(
        r#"ghz --insecure --call grpc.health.v1.Health.Check -d '{{"service":"web"}}' -m '{{"X-Team":"blue"}}' -z 2s -q 10 -c 2 --connections 2 {}"#,
        grpc.addr
    );
    let r = t.task(json!({"type": "bash", "cmd": cmd})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json();
    check_results(&res, "ghz", &cmd);
    let n = res["requests"].as_u64().unwrap();
    // 10/s over all workers for 2 s: at most 21 slots (the first at once).
    assert!((5..=21).contains(&n), "{res}");
    assert_eq!(grpc.calls() - before, n);
    assert_eq!(res["statusCodes"], json!({"OK": n}), "{res}");
    assert_eq!(
        grpc.teams.lock().unwrap().get("blue"),
        Some(&n),
        "-m is sent as metadata"
    );
    let secs = res["durationSeconds"].as_f64().unwrap();
    assert!((1.8..10.0).contains(&secs), "{res}");

    // NOT_SERVING: every call is an error, named by the health status.
    grpc.reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let cmd = format!("ghz {call} -n 6 -c 3 {}", grpc.addr);
    let r = t.task(json!({"type": "bash", "cmd": cmd})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json();
    assert_eq!(
        (res["requests"].as_u64(), res["errors"].as_u64()),
        (Some(6), Some(6)),
        "{res}"
    );
    assert_eq!(res["statusCodes"], json!({"NOT_SERVING": 6}), "{res}");

    // A service the server does not know: gRPC status NOT_FOUND with its message.
    let cmd = format!(
        r#"ghz {call} -d '{{"service":"nope"}}' -n 2 -c 1 {}"#,
        grpc.addr
    );
    let r = t.task(json!({"type": "bash", "cmd": cmd})).await;
    let res = r.json();
    assert_eq!(res["statusCodes"], json!({"NOT_FOUND": 2}), "{res}");
    assert_eq!(res["errors"], 2, "{res}");
    assert!(
        res["errorMessages"]
            .as_object()
            .unwrap()
            .keys()
            .any(|m| m.starts_with("NOT_FOUND: ") && m.contains("not registered")),
        "{res}"
    );

    // Nothing listening: transport errors.
    let cmd = format!(
        "ghz {call} -n 2 -c 1 --connect-timeout 2s 127.0.0.1:{}",
        closed_port()
    );
    let res = t.task(json!({"type": "bash", "cmd": cmd})).await.json();
    assert_eq!(res["statusCodes"], json!({"error": 2}), "{res}");
    assert!(
        res["errorMessages"]
            .as_object()
            .unwrap()
            .keys()
            .any(|m| m.starts_with("connect to 127.0.0.1:")),
        "{res}"
    );

    // What the in-process ghz cannot do is a 400 that says so (not a 403: the real ghz would
    // need --enable-exec *and* a binary).
    for (line, want) in [
        (
            format!("ghz --call grpc.health.v1.Health/Check {}", grpc.addr),
            "without --insecure",
        ),
        (
            format!(
                "ghz --insecure --call helloworld.Greeter/SayHello {}",
                grpc.addr
            ),
            "only grpc.health.v1.Health/Check",
        ),
        (
            format!("ghz {call} -d '{{\"x\":1}}' {}", grpc.addr),
            "no field \"x\"",
        ),
    ] {
        let r = t.task(json!({"type": "bash", "cmd": line})).await;
        assert_eq!(r.status, 400, "{line}: {}", r.body);
        assert!(r.body.contains(want), "{line}: {}", r.body);
    }

    let m = t.get("/metrics").await.body;
    assert_eq!(
        sample(
            &m,
            r#"siskin_loadtester_requests_total{namespace="test",canary="podinfo",tool="ghz",code="OK"}"#
        ),
        (20 + n) as f64,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"siskin_loadtester_requests_total{namespace="test",canary="podinfo",tool="ghz",code="NOT_SERVING"}"#
        ),
        6.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"siskin_loadtester_tasks_total{type="ghz",outcome="succeeded"}"#
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"siskin_loadtester_tasks_total{type="ghz",outcome="failed"}"#
        ),
        3.0,
        "{m}"
    );
}
