//! The webhook client against real HTTP and HTTPS servers on loopback: the payload as sent,
//! Flagger's success rule (202 or lower), retries with backoff on connection errors, 429 and
//! 5xx but not 501 or 4xx, the per-attempt timeout, the first bytes of the answer, and
//! `disableTLS` against a server with a self-signed certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use siskin_api::{HookType, analysis::CanaryWebhook};
use siskin_webhooks::client::{Backoff, HookClient, Payload};

/// What the receiver saw: path → (calls, last body).
type Seen = Arc<Mutex<HashMap<String, (u32, serde_json::Value)>>>;

/// Answers by path: `/ok` 200, `/accepted` 202, `/flaky` 503 twice then 200, `/busy` 429,
/// `/notimpl` 501, `/bad` 400, `/slow` after 3 s, `/long` a 1000-byte body.
async fn handle(seen: Seen, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let is_json = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/json");
    let method = req.method().clone();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(method, hyper::Method::POST, "webhooks are POSTs");
    assert!(is_json, "webhooks are JSON");
    let n = {
        let mut seen = seen.lock().unwrap();
        let e = seen
            .entry(path.clone())
            .or_insert((0, serde_json::Value::Null));
        e.0 += 1;
        e.1 = serde_json::from_slice(&body).unwrap();
        e.0
    };
    let (status, text) = match path.as_str() {
        "/ok" => (200, "approved".to_string()),
        "/accepted" => (202, String::new()),
        "/flaky" if n <= 2 => (503, "warming up".into()),
        "/flaky" => (200, "ok".into()),
        "/busy" => (429, "slow down".into()),
        "/notimpl" => (501, "no".into()),
        "/bad" => (400, "bad payload".into()),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (200, "late".into())
        }
        "/long" => (200, "é".repeat(500)),
        _ => (404, "not found".into()),
    };
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    Ok(r)
}

async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (seen, tls) = (state.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(seen.clone(), req));
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    Some(acceptor) => {
                        // A client that refuses the certificate ends the handshake here.
                        if let Ok(s) = acceptor.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn self_signed() -> tokio_rustls::TlsAcceptor {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = key.cert.der().clone();
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], der)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn client() -> HookClient {
    HookClient::with_backoff(Backoff {
        first: Duration::from_millis(20),
        max: Duration::from_millis(100),
    })
    .unwrap()
}

fn hook(url: String) -> CanaryWebhook {
    CanaryWebhook {
        name: "load-test".into(),
        r#type: Some(HookType::PreRollout),
        url,
        timeout: Some("1s".into()),
        metadata: Some([("cmd".to_string(), "hey -z 1m http://podinfo/".to_string())].into()),
        ..Default::default()
    }
}

fn payload() -> Payload {
    Payload {
        name: "podinfo".into(),
        namespace: "test".into(),
        phase: "Progressing".into(),
        checksum: "7d9f".into(),
        metadata: Default::default(),
    }
}

#[tokio::test]
async fn posts_flaggers_payload_and_records_the_answer() {
    let (addr, seen) = serve(None).await;
    let r = client()
        .call(&hook(format!("http://{addr}/ok")), &payload())
        .await;
    assert!(r.passed, "{r:?}");
    assert_eq!(
        (r.status_code, r.response.as_str(), r.attempts),
        (Some(200), "approved", 1)
    );
    assert_eq!(
        (r.name.as_str(), r.r#type.as_str()),
        ("load-test", "pre-rollout")
    );
    assert_eq!(
        seen.lock().unwrap()["/ok"].1,
        serde_json::json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
            "checksum": "7d9f", "metadata": {"cmd": "hey -z 1m http://podinfo/"}, "type": "pre-rollout"})
    );
    let r = client()
        .call(&hook(format!("http://{addr}/accepted")), &payload())
        .await;
    assert!(r.passed && r.status_code == Some(202), "{r:?}");
}

#[tokio::test]
async fn retries_server_errors_and_429_but_not_client_errors_or_501() {
    let (addr, seen) = serve(None).await;
    let mut h = hook(format!("http://{addr}/flaky"));
    h.retries = Some(3);
    let r = client().call(&h, &payload()).await;
    assert!(r.passed, "{r:?}");
    assert_eq!(r.attempts, 3, "two 503s, then 200");

    h.url = format!("http://{addr}/busy");
    let r = client().call(&h, &payload()).await;
    assert!(!r.passed);
    assert_eq!((r.status_code, r.attempts), (Some(429), 4), "{r:?}");
    assert_eq!(r.response, "slow down");
    assert!(r.error.as_deref().unwrap().contains("status 429"), "{r:?}");

    for path in ["/notimpl", "/bad"] {
        h.url = format!("http://{addr}{path}");
        let r = client().call(&h, &payload()).await;
        assert!(!r.passed);
        assert_eq!(r.attempts, 1, "{path} is not retried: {r:?}");
    }
    assert_eq!(seen.lock().unwrap()["/bad"].0, 1);

    // Without `retries`, one attempt only.
    h.retries = None;
    h.url = format!("http://{addr}/busy");
    assert_eq!(client().call(&h, &payload()).await.attempts, 1);
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_reported() {
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let mut h = hook(format!("http://{closed}/"));
    h.retries = Some(2);
    let r = client().call(&h, &payload()).await;
    assert!(!r.passed);
    assert_eq!((r.attempts, r.status_code), (3, None), "{r:?}");
    let e = r.error.unwrap();
    assert!(e.to_lowercase().contains("connect"), "{e}");
}

#[tokio::test]
async fn a_hook_that_does_not_answer_fails_at_its_timeout() {
    let (addr, _) = serve(None).await;
    let h = hook(format!("http://{addr}/slow"));
    let started = std::time::Instant::now();
    let r = client().call(&h, &payload()).await;
    assert!(!r.passed);
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "gave up at the 1 s timeout, not when the server answered"
    );
    assert_eq!(r.status_code, None);
    assert!(
        r.error.as_deref().unwrap().contains("no answer within 1s"),
        "{r:?}"
    );
}

#[tokio::test]
async fn only_the_first_bytes_of_the_answer_are_kept() {
    let (addr, _) = serve(None).await;
    let r = client()
        .call(&hook(format!("http://{addr}/long")), &payload())
        .await;
    assert!(r.passed);
    assert!(r.response.len() <= siskin_api::status::WEBHOOK_BODY_BYTES + '…'.len_utf8());
    assert!(
        r.response.ends_with('…') && r.response.starts_with("éé"),
        "{}",
        r.response
    );
}

#[tokio::test]
async fn https_checks_the_certificate_unless_disable_tls() {
    let (addr, seen) = serve(Some(self_signed())).await;
    let mut h = hook(format!("https://{addr}/ok"));
    let r = client().call(&h, &payload()).await;
    assert!(!r.passed, "a self-signed certificate is refused: {r:?}");
    let e = r.error.unwrap().to_lowercase();
    assert!(e.contains("certificate"), "{e}");
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");

    h.disable_tls = Some(true);
    let r = client().call(&h, &payload()).await;
    assert!(r.passed, "{r:?}");
    assert_eq!(r.response, "approved");
    assert_eq!(seen.lock().unwrap()["/ok"].0, 1);
}
