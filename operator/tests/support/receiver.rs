//! A webhook receiver on loopback for the end-to-end tests, also standing in for Slack.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

/// What a webhook receiver saw, in order: (path, JSON body).
pub type Calls = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

pub const SLACK_HOOK: &str = "/services/T0001/B0001/abcdefghijklmnopqrstuvwx";

/// A webhook receiver on loopback recording every POST. `/hang` answers after 30 s, `/fail`
/// with 500, anything else 200. It also stands in for Slack's incoming webhook at
/// [`SLACK_HOOK`] (we cannot reach Slack): Slack answers 404 `no_service` for an unknown hook,
/// 400 `invalid_payload` for a body that is not JSON and 400 `no_text` for a message with
/// neither `text` nor `attachments`, else 200 `ok` — the stand-in does the same.
pub async fn receiver() -> (String, Calls) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let calls = Calls::default();
    let seen = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let path = req.uri().path().to_string();
                            let json = req
                                .headers()
                                .get("content-type")
                                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let value: Option<serde_json::Value> =
                                json.then(|| serde_json::from_slice(&body).ok()).flatten();
                            seen.lock()
                                .unwrap()
                                .push((path.clone(), value.clone().unwrap_or_default()));
                            let (status, text) = match path.as_str() {
                                "/hang" => {
                                    tokio::time::sleep(Duration::from_secs(30)).await;
                                    (200, "late")
                                }
                                "/fail" => (500, "broken"),
                                p if p.starts_with("/services/") && p != SLACK_HOOK => {
                                    (404, "no_service")
                                }
                                SLACK_HOOK => match &value {
                                    None => (400, "invalid_payload"),
                                    Some(v)
                                        if v["text"].as_str().unwrap_or_default().is_empty()
                                            && v["attachments"]
                                                .as_array()
                                                .is_none_or(|a| a.is_empty()) =>
                                    {
                                        (400, "no_text")
                                    }
                                    Some(_) => (200, "ok"),
                                },
                                _ => (200, "ok"),
                            };
                            let mut r = http::Response::new(Full::new(Bytes::from(text)));
                            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            // Slack (and this receiver) answer in plain text.
                            r.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("text/plain; charset=utf-8"),
                            );
                            Ok::<_, Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, calls)
}

/// The paths called so far, in order.
pub fn paths(calls: &Calls) -> Vec<String> {
    calls
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect()
}

/// The bodies POSTed to `path`, in order.
pub fn bodies(calls: &Calls, path: &str) -> Vec<serde_json::Value> {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, b)| b.clone())
        .collect()
}
