//! The notifiers against real HTTP servers on 127.0.0.1 that stand in for each chat service:
//! each checks a request the way the service does (its comment says how) and answers as the
//! service answers, so a payload the service would refuse fails here too.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use siskin_api::{Severity, alert_provider::AlertProviderType};
use siskin_webhooks::notify::{Destination, Message, Notifier, NotifyError};
use tokio::net::TcpListener;

// --- what the stand-ins record -------------------------------------------------------------

/// One request a stand-in received.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Seen>>>;

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

fn record(log: &Log, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) {
    log.lock().unwrap().push(Seen {
        method,
        uri,
        headers,
        body,
    });
}

fn only(log: &Log) -> Seen {
    let seen = log.lock().unwrap();
    assert_eq!(seen.len(), 1, "expected one request, saw {seen:?}");
    seen[0].clone()
}

/// Serves `app` on an ephemeral loopback port.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A stand-in: every request goes to `handler` with the log as state.
async fn stand_in<H, T>(handler: H) -> (SocketAddr, Log)
where
    H: axum::handler::Handler<T, Log>,
    T: 'static,
{
    let log = Log::default();
    let addr = serve(Router::new().fallback(handler).with_state(log.clone())).await;
    (addr, log)
}

fn reply(status: u16, content_type: &str, body: impl Into<String>) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, content_type.to_owned())],
        body.into(),
    )
        .into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn non_empty(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

// --- the services -------------------------------------------------------------------------

const SLACK_HOOK: &str = "/services/T0001/B0001/abcdefghijklmnopqrstuvwx";
const SLACK_TOKEN: &str = "xoxb-1234-5678-abcdef";

/// Slack's incoming webhooks (api.slack.com/messaging/webhooks): a POST of JSON to the hook's
/// secret URL. An unknown hook is 404 `no_service`; a body that is not JSON is 400
/// `invalid_payload`; one with neither `text` nor `attachments` (nor `blocks`) is 400
/// `no_text`; else 200 `ok`, all as text/plain.
async fn slack_hook(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(
        &log,
        method.clone(),
        uri.clone(),
        headers.clone(),
        body.clone(),
    );
    if uri.path() != SLACK_HOOK {
        return reply(404, "text/plain", "no_service");
    }
    if method != Method::POST {
        return reply(405, "text/plain", "invalid_method");
    }
    let Some(v) = is_json(&headers)
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
    else {
        return reply(400, "text/plain", "invalid_payload");
    };
    if !(non_empty(&v["text"]) || non_empty(&v["attachments"]) || non_empty(&v["blocks"])) {
        return reply(400, "text/plain", "no_text");
    }
    reply(200, "text/plain", "ok")
}

/// Slack's Web API `chat.postMessage` (api.slack.com/methods/chat.postMessage): POST
/// /api/chat.postMessage with `Authorization: Bearer xoxb-…`. Slack answers HTTP 200 JSON
/// either way: `{"ok":false,"error":"not_authed"}` without a token, `invalid_auth` for an
/// unknown one, `channel_not_found` for a missing or unknown channel, `no_text` without text
/// or attachments; else `{"ok":true,"channel":…,"ts":…,"message":…}`.
async fn slack_api(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(
        &log,
        method.clone(),
        uri.clone(),
        headers.clone(),
        body.clone(),
    );
    let api = |v: Value| reply(200, "application/json; charset=utf-8", v.to_string());
    if uri.path() != "/api/chat.postMessage" {
        return api(json!({"ok": false, "error": "unknown_method"}));
    }
    if method != Method::POST {
        return api(json!({"ok": false, "error": "invalid_request"}));
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.and_then(|a| a.strip_prefix("Bearer ")) {
        None => return api(json!({"ok": false, "error": "not_authed"})),
        Some(t) if t != SLACK_TOKEN => return api(json!({"ok": false, "error": "invalid_auth"})),
        Some(_) => {}
    }
    let Some(v) = is_json(&headers)
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
    else {
        return api(json!({"ok": false, "error": "invalid_json"}));
    };
    let channel = v["channel"].as_str().unwrap_or_default();
    if !["general", "alerts"].contains(&channel) {
        return api(json!({"ok": false, "error": "channel_not_found"}));
    }
    if !(non_empty(&v["text"]) || non_empty(&v["attachments"]) || non_empty(&v["blocks"])) {
        return api(json!({"ok": false, "error": "no_text"}));
    }
    api(json!({
        "ok": true,
        "channel": "C0GENERAL",
        "ts": "1764640000.000100",
        "message": {"type": "message", "text": v["text"], "ts": "1764640000.000100"},
    }))
}

/// Microsoft Teams' incoming webhook with a legacy MessageCard (Outlook actionable messages
/// "MessageCard reference"): POST JSON with `@type` `MessageCard` and `@context`
/// `http://schema.org/extensions`; `summary` or `text` is required (400 "Summary or Text is
/// required."); `sections` is an array of objects whose `facts` are arrays of `{name, value}`
/// strings; `themeColor` is hex without `#`. Teams answers 200 `1` (text/plain).
async fn teams(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(
        &log,
        method.clone(),
        uri.clone(),
        headers.clone(),
        body.clone(),
    );
    if method != Method::POST || !uri.path().starts_with("/webhookb2/") {
        return reply(404, "text/plain", "Not Found");
    }
    let Some(card) = is_json(&headers)
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
    else {
        return reply(
            400,
            "text/plain",
            "Bad payload received by generic incoming webhook.",
        );
    };
    if card["@type"] != "MessageCard" || card["@context"] != "http://schema.org/extensions" {
        return reply(
            400,
            "text/plain",
            "Bad payload received by generic incoming webhook.",
        );
    }
    if !(non_empty(&card["summary"]) || non_empty(&card["text"])) {
        return reply(400, "text/plain", "Summary or Text is required.");
    }
    let hex = card["themeColor"].as_str().unwrap_or("0");
    let sections_ok = card["sections"].as_array().is_some_and(|sections| {
        sections.iter().all(|s| {
            s.is_object()
                && s["facts"].as_array().is_none_or(|facts| {
                    facts
                        .iter()
                        .all(|f| f["name"].is_string() && f["value"].is_string())
                })
        })
    });
    if !sections_ok || hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return reply(
            400,
            "text/plain",
            "Bad payload received by generic incoming webhook.",
        );
    }
    reply(200, "text/plain", "1")
}

/// Discord's webhooks (discord.com/developers/docs/resources/webhook): `…/slack` is the
/// Slack-compatible endpoint, which takes Slack's payload (text or attachments) and answers
/// `ok`; the same URL without `/slack` is Discord's own endpoint, which wants `content` or
/// `embeds` and refuses a Slack body with 400 `{"code":50006,…}`.
async fn discord(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(
        &log,
        method.clone(),
        uri.clone(),
        headers.clone(),
        body.clone(),
    );
    let discord_json = |status, v: Value| reply(status, "application/json", v.to_string());
    let path = uri.path();
    if method != Method::POST || !path.starts_with("/api/webhooks/123456/tok-en") {
        return discord_json(404, json!({"message": "Unknown Webhook", "code": 10015}));
    }
    let Some(v) = is_json(&headers)
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
    else {
        return discord_json(
            400,
            json!({"message": "Cannot send an empty message", "code": 50006}),
        );
    };
    if path.ends_with("/slack") {
        if !(non_empty(&v["text"]) || non_empty(&v["attachments"])) {
            return discord_json(
                400,
                json!({"message": "Cannot send an empty message", "code": 50006}),
            );
        }
        return reply(200, "text/html; charset=utf-8", "ok");
    }
    if non_empty(&v["content"]) || non_empty(&v["embeds"]) {
        return reply(204, "text/plain", "");
    }
    discord_json(
        400,
        json!({"message": "Cannot send an empty message", "code": 50006}),
    )
}

/// Rocket.Chat's incoming-webhook integration (docs.rocket.chat, "Integrations"): POST
/// /hooks/<id>/<token> with Slack-style JSON (text or attachments); `{"success":true}`; an
/// unknown integration or a bad body is 400 `{"success":false,"error":…}`.
async fn rocket(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(
        &log,
        method.clone(),
        uri.clone(),
        headers.clone(),
        body.clone(),
    );
    let rc = |status, v: Value| reply(status, "application/json", v.to_string());
    if method != Method::POST || uri.path() != "/hooks/abc123/def456" {
        return rc(
            400,
            json!({"success": false, "error": "Invalid integration id or token provided."}),
        );
    }
    let Some(v) = is_json(&headers)
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
    else {
        return rc(400, json!({"success": false, "error": "invalid JSON"}));
    };
    if !(non_empty(&v["text"]) || non_empty(&v["attachments"])) {
        return rc(
            400,
            json!({"success": false, "error": "no text or attachments"}),
        );
    }
    rc(200, json!({"success": true}))
}

/// Google Chat's incoming webhooks (developers.google.com/workspace/chat/quickstart/webhooks):
/// POST JSON to /v1/spaces/<space>/messages?key=…&token=…; without `key` and `token` 401;
/// a message needs `text` or `cards` (or `cardsV2`), each card's `sections` holding
/// `widgets`, else 400 `INVALID_ARGUMENT`; the created Message resource comes back as JSON.
async fn gchat(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(
        &log,
        method.clone(),
        uri.clone(),
        headers.clone(),
        body.clone(),
    );
    let google = |status, code: &str, msg: &str| {
        let v = json!({"error": {"code": status, "message": msg, "status": code}});
        reply(status, "application/json; charset=UTF-8", v.to_string())
    };
    if method != Method::POST || uri.path() != "/v1/spaces/AAAA1234/messages" {
        return google(404, "NOT_FOUND", "Requested entity was not found.");
    }
    let query = uri.query().unwrap_or_default();
    if !(query.contains("key=") && query.contains("token=")) {
        return google(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    }
    let Some(v) = is_json(&headers)
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
    else {
        return google(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    let cards_ok = v["cards"].as_array().is_some_and(|cards| {
        cards.iter().all(|c| {
            c["sections"].as_array().is_some_and(|ss| {
                ss.iter()
                    .all(|s| s["widgets"].as_array().is_some_and(|w| !w.is_empty()))
            })
        })
    });
    if !(non_empty(&v["text"]) || cards_ok) {
        return google(400, "INVALID_ARGUMENT", "Message cannot be empty.");
    }
    let created = json!({"name": "spaces/AAAA1234/messages/xyz.xyz", "sender": {"type": "BOT"}});
    reply(200, "application/json; charset=UTF-8", created.to_string())
}

/// A service having a bad day: 500 to everything.
async fn broken(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&log, method, uri, headers, body);
    reply(500, "text/plain", "internal error: the database is down")
}

/// A service that never answers in time.
async fn stuck(State(log): State<Log>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) {
    record(&log, method, uri, headers, body);
    tokio::time::sleep(Duration::from_secs(30)).await;
}

/// A forward HTTP proxy: takes absolute-form requests (`POST http://host:port/path`), records
/// them, and forwards them to their origin, passing the answer back; an origin-form request
/// is not a proxy request (400).
async fn forward_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    #[derive(Clone)]
    struct Proxy {
        seen: Arc<Mutex<Vec<String>>>,
        client: reqwest::Client,
    }
    async fn forward(
        State(p): State<Proxy>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        p.seen.lock().unwrap().push(format!("{method} {uri}"));
        if uri.scheme().is_none() {
            return reply(400, "text/plain", "not a proxy request");
        }
        let mut req = p.client.request(method, uri.to_string()).body(body);
        for (name, value) in &headers {
            let hop = [
                header::HOST,
                header::CONNECTION,
                header::PROXY_AUTHORIZATION,
            ];
            if !hop.contains(name) && name.as_str() != "proxy-connection" {
                req = req.header(name, value);
            }
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
                let bytes = resp.bytes().await.unwrap_or_default();
                let mut out = (status, bytes).into_response();
                if let Some(ct) = ct {
                    out.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                out
            }
            Err(e) => reply(502, "text/plain", format!("bad gateway: {e}")),
        }
    }
    siskin_webhooks::install_crypto();
    let state = Proxy {
        seen: Arc::default(),
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
    };
    let seen = state.seen.clone();
    let addr = serve(Router::new().fallback(forward).with_state(state)).await;
    (addr, seen)
}

// --- fixtures -------------------------------------------------------------------------------

fn dest(kind: AlertProviderType, address: String) -> Destination {
    Destination {
        kind,
        address,
        token: None,
        proxy: None,
        channel: "general".into(),
        username: "siskin".into(),
    }
}

fn progressing() -> Message {
    Message {
        canary: "podinfo".into(),
        namespace: "test".into(),
        severity: Severity::Info,
        text: "New revision detected, progressing canary analysis.".into(),
        fields: vec![
            ("Target".into(), "Deployment/podinfo.test".into()),
            ("Failed checks threshold".into(), "5".into()),
        ],
    }
}

fn rolled_back() -> Message {
    Message {
        canary: "podinfo".into(),
        namespace: "test".into(),
        severity: Severity::Error,
        text: "Canary analysis failed, see <https://grafana.example/d/abc|the dashboard>".into(),
        fields: vec![(
            "request-success-rate".into(),
            "91.3 < 99 (https://prometheus.example/graph)".into(),
        )],
    }
}

/// A loopback port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

fn slack_attachment_payload(color: &str, m: &Message, plain: &str) -> Value {
    json!({
        "channel": "general",
        "username": "siskin",
        "icon_url": "",
        "icon_emoji": ":rocket:",
        "attachments": [{
            "color": color,
            "author_name": "podinfo.test",
            "text": m.text,
            "fallback": plain,
            "mrkdwn_in": ["text"],
            "fields": m.fields.iter().map(|(t, v)| json!({"title": t, "value": v, "short": false}))
                .collect::<Vec<_>>(),
        }],
    })
}

const PROGRESSING_PLAIN: &str = "podinfo.test: New revision detected, progressing canary \
     analysis.; Target: Deployment/podinfo.test; Failed checks threshold: 5";

// --- Slack ----------------------------------------------------------------------------------

#[tokio::test]
async fn slack_incoming_webhook_gets_flaggers_attachment() {
    let (addr, log) = stand_in(slack_hook).await;
    let to = dest(
        AlertProviderType::Slack,
        format!("http://{addr}{SLACK_HOOK}"),
    );
    Notifier::new().send(&to, &progressing()).await.unwrap();

    let seen = only(&log);
    assert_eq!(seen.method, Method::POST);
    assert!(is_json(&seen.headers));
    assert!(seen.headers.get(header::AUTHORIZATION).is_none());
    assert_eq!(
        seen.json(),
        slack_attachment_payload("good", &progressing(), PROGRESSING_PLAIN)
    );
}

#[tokio::test]
async fn slack_error_is_danger_and_its_fallback_is_plain_text() {
    let (addr, log) = stand_in(slack_hook).await;
    let to = dest(
        AlertProviderType::Slack,
        format!("http://{addr}{SLACK_HOOK}"),
    );
    Notifier::new().send(&to, &rolled_back()).await.unwrap();

    let body = only(&log).json();
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["color"], "danger");
    // The attachment keeps the message as written (Slack renders its mrkdwn)…
    assert_eq!(attachment["text"], rolled_back().text);
    // …and the fallback says the same, with the failing check's name and value, as plain
    // text with nothing to click.
    let fallback = attachment["fallback"].as_str().unwrap();
    assert_eq!(
        fallback,
        "podinfo.test: Canary analysis failed, see the dashboard; request-success-rate: \
         91.3 < 99 (prometheus.example/graph)"
    );
    assert!(
        !fallback.contains("://") && !fallback.contains('|'),
        "{fallback}"
    );
    // No top-level text, as Flagger: Slack would show it above the attachment, twice.
    assert!(body.get("text").is_none(), "{body}");
}

#[tokio::test]
async fn slack_unknown_hook_is_refused_with_slacks_answer() {
    let (addr, _log) = stand_in(slack_hook).await;
    let to = dest(
        AlertProviderType::Slack,
        format!("http://{addr}/services/T0001/B0001/revoked"),
    );
    let e = Notifier::new().send(&to, &progressing()).await.unwrap_err();
    assert!(
        matches!(&e, NotifyError::Refused { status: 404, body, .. } if body == "no_service"),
        "{e:?}"
    );
    // The hook's secret path is not in the message.
    assert!(!e.to_string().contains("revoked"), "{e}");
}

#[tokio::test]
async fn slack_chat_post_message_with_a_bot_token() {
    let (addr, log) = stand_in(slack_api).await;
    let mut to = dest(
        AlertProviderType::Slack,
        format!("http://{addr}/api/chat.postMessage"),
    );
    to.token = Some(SLACK_TOKEN.into());
    to.channel = "alerts".into();
    Notifier::new().send(&to, &progressing()).await.unwrap();

    let seen = only(&log);
    assert_eq!(
        seen.headers.get(header::AUTHORIZATION).unwrap(),
        &format!("Bearer {SLACK_TOKEN}")
    );
    let mut want = slack_attachment_payload("good", &progressing(), PROGRESSING_PLAIN);
    want["channel"] = json!("alerts");
    assert_eq!(seen.json(), want);
}

#[tokio::test]
async fn slack_api_errors_are_reported_with_slacks_code() {
    let (addr, _log) = stand_in(slack_api).await;
    let url = format!("http://{addr}/api/chat.postMessage");
    let notifier = Notifier::new();

    // No token: Slack's API says not_authed.
    let to = dest(AlertProviderType::Slack, url.clone());
    let e = notifier.send(&to, &progressing()).await.unwrap_err();
    assert!(
        matches!(&e, NotifyError::SlackApi { error } if error == "not_authed"),
        "{e:?}"
    );

    let mut to = dest(AlertProviderType::Slack, url.clone());
    to.token = Some("xoxb-wrong".into());
    let e = notifier.send(&to, &progressing()).await.unwrap_err();
    assert!(
        matches!(&e, NotifyError::SlackApi { error } if error == "invalid_auth"),
        "{e:?}"
    );
    assert!(e.to_string().contains("token"), "{e}");

    to.token = Some(SLACK_TOKEN.into());
    to.channel = "random".into();
    let e = notifier.send(&to, &progressing()).await.unwrap_err();
    assert!(
        matches!(&e, NotifyError::SlackApi { error } if error == "channel_not_found"),
        "{e:?}"
    );
    assert!(e.to_string().contains("spec.channel"), "{e}");
}

#[tokio::test]
async fn slack_needs_a_channel_and_a_username_before_anything_is_sent() {
    let (addr, log) = stand_in(slack_api).await;
    let mut to = dest(
        AlertProviderType::Slack,
        format!("http://{addr}/api/chat.postMessage"),
    );
    to.token = Some(SLACK_TOKEN.into());
    to.channel = String::new();
    let e = Notifier::new().send(&to, &progressing()).await.unwrap_err();
    assert!(matches!(e, NotifyError::InvalidChannel { .. }), "{e:?}");
    assert!(e.to_string().contains("spec.channel"), "{e}");

    to.channel = "general".into();
    to.username = " ".into();
    let e = Notifier::new().send(&to, &progressing()).await.unwrap_err();
    assert!(matches!(e, NotifyError::InvalidUsername { .. }), "{e:?}");
    assert!(log.lock().unwrap().is_empty());
}

// --- the other services ---------------------------------------------------------------------

#[tokio::test]
async fn teams_gets_a_message_card() {
    let (addr, log) = stand_in(teams).await;
    let to = dest(
        AlertProviderType::Msteams,
        format!("http://{addr}/webhookb2/abc@def/IncomingWebhook/123/456"),
    );
    let notifier = Notifier::new();
    notifier.send(&to, &progressing()).await.unwrap();
    notifier.send(&to, &rolled_back()).await.unwrap();

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].json(),
        json!({
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": "0076D7",
            "summary": "podinfo.test",
            "sections": [{
                "activityTitle": "New revision detected, progressing canary analysis.",
                "activitySubtitle": "podinfo.test",
                "facts": [
                    {"name": "Target", "value": "Deployment/podinfo.test"},
                    {"name": "Failed checks threshold", "value": "5"},
                ],
            }],
        })
    );
    assert_eq!(seen[1].json()["themeColor"], "FF0000");
}

#[tokio::test]
async fn discord_gets_the_slack_payload_at_its_slack_endpoint() {
    let (addr, log) = stand_in(discord).await;
    let notifier = Notifier::new();
    for address in [
        format!("http://{addr}/api/webhooks/123456/tok-en"),
        format!("http://{addr}/api/webhooks/123456/tok-en/slack"),
    ] {
        let to = dest(AlertProviderType::Discord, address);
        notifier.send(&to, &progressing()).await.unwrap();
    }
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.uri.path(), "/api/webhooks/123456/tok-en/slack");
        assert_eq!(
            s.json(),
            slack_attachment_payload("good", &progressing(), PROGRESSING_PLAIN)
        );
    }
}

#[tokio::test]
async fn rocket_chat_gets_the_slack_payload_in_hex_colours() {
    let (addr, log) = stand_in(rocket).await;
    let to = dest(
        AlertProviderType::Rocket,
        format!("http://{addr}/hooks/abc123/def456"),
    );
    let notifier = Notifier::new();
    notifier.send(&to, &progressing()).await.unwrap();
    notifier.send(&to, &rolled_back()).await.unwrap();

    let seen = log.lock().unwrap().clone();
    assert_eq!(
        seen[0].json(),
        slack_attachment_payload("#0076D7", &progressing(), PROGRESSING_PLAIN)
    );
    assert_eq!(seen[1].json()["attachments"][0]["color"], "#FF0000");

    // Rocket.Chat's refusal is an error.
    let to = dest(
        AlertProviderType::Rocket,
        format!("http://{addr}/hooks/abc123/wrong"),
    );
    let e = notifier.send(&to, &progressing()).await.unwrap_err();
    assert!(
        matches!(e, NotifyError::Refused { status: 400, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn google_chat_gets_a_siskin_card() {
    let (addr, log) = stand_in(gchat).await;
    let to = dest(
        AlertProviderType::Gchat,
        format!("http://{addr}/v1/spaces/AAAA1234/messages?key=k3y&token=t0ken"),
    );
    Notifier::new().send(&to, &rolled_back()).await.unwrap();

    let seen = only(&log);
    assert_eq!(seen.uri.query(), Some("key=k3y&token=t0ken"));
    assert_eq!(
        seen.json(),
        json!({"cards": [{
            "header": {"title": "Siskin", "subtitle": "podinfo.test"},
            "sections": [
                {"widgets": [{"textParagraph": {"text":
                    "<font color=\"#848484\"><strong>Canary analysis failed, see \
                     &lt;https://grafana.example/d/abc|the dashboard&gt;</strong></font>"}}]},
                {"widgets": [{"textParagraph": {"text":
                    "request-success-rate<br><font color=\"#848484\"><strong>91.3 &lt; 99 \
                     (https://prometheus.example/graph)</strong></font>"}}]},
            ],
        }]})
    );
}

// --- failures -------------------------------------------------------------------------------

#[tokio::test]
async fn a_server_error_is_refused_with_its_status_and_body() {
    let (addr, _log) = stand_in(broken).await;
    let notifier = Notifier::new();
    for kind in [
        AlertProviderType::Slack,
        AlertProviderType::Msteams,
        AlertProviderType::Discord,
        AlertProviderType::Rocket,
        AlertProviderType::Gchat,
    ] {
        let to = dest(kind, format!("http://{addr}/hook"));
        let e = notifier.send(&to, &progressing()).await.unwrap_err();
        let NotifyError::Refused { status, body, .. } = &e else {
            panic!("{kind:?}: {e:?}");
        };
        assert_eq!(*status, 500, "{kind:?}");
        assert!(body.starts_with("internal error"), "{kind:?}: {body}");
        assert!(e.is_transient());
    }
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let addr = closed_port().await;
    let notifier = Notifier::new();
    for kind in [
        AlertProviderType::Slack,
        AlertProviderType::Msteams,
        AlertProviderType::Discord,
        AlertProviderType::Rocket,
        AlertProviderType::Gchat,
    ] {
        let to = dest(kind, format!("http://{addr}/hook/s3cret"));
        let e = notifier.send(&to, &progressing()).await.unwrap_err();
        assert!(
            matches!(e, NotifyError::Unreachable { .. }),
            "{kind:?}: {e:?}"
        );
        let text = e.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(
            !text.contains("s3cret"),
            "the address's path is a credential: {text}"
        );
    }
}

#[tokio::test]
async fn a_service_that_does_not_answer_times_out_after_5s() {
    let (addr, log) = stand_in(stuck).await;
    let notifier = Notifier::new();
    let sends = [AlertProviderType::Slack, AlertProviderType::Msteams].map(|kind| {
        let notifier = notifier.clone();
        let to = dest(kind, format!("http://{addr}/hook"));
        tokio::spawn(async move {
            let start = Instant::now();
            let e = notifier.send(&to, &progressing()).await.unwrap_err();
            (kind, e, start.elapsed())
        })
    });
    for send in sends {
        let (kind, e, took) = send.await.unwrap();
        assert!(matches!(e, NotifyError::TimedOut { .. }), "{kind:?}: {e:?}");
        assert!(
            took >= Duration::from_millis(4900) && took < Duration::from_secs(8),
            "{kind:?} took {took:?}"
        );
    }
    assert_eq!(log.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_invalid_address_is_refused_naming_the_field() {
    let notifier = Notifier::new();
    for (kind, address) in [
        (AlertProviderType::Slack, "hooks.slack.com/services/T0/B0/x"),
        (AlertProviderType::Msteams, ""),
        (AlertProviderType::Gchat, "chat.googleapis.com"),
        (AlertProviderType::Discord, "mailto:ops@example.com"),
        (AlertProviderType::Rocket, "http://"),
    ] {
        let to = dest(kind, address.into());
        let e = notifier.send(&to, &progressing()).await.unwrap_err();
        assert!(
            matches!(e, NotifyError::InvalidAddress { .. }),
            "{address}: {e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("spec.address") && text.contains("set it to"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn an_invalid_proxy_is_refused_naming_the_field() {
    let mut to = dest(
        AlertProviderType::Msteams,
        "http://127.0.0.1:9/webhookb2/x".into(),
    );
    to.proxy = Some("proxy.internal:3128".into());
    let e = Notifier::new().send(&to, &progressing()).await.unwrap_err();
    assert!(matches!(e, NotifyError::ProxyInvalid { .. }), "{e:?}");
    assert!(e.to_string().contains("spec.proxy"), "{e}");
}

// --- proxy ----------------------------------------------------------------------------------

#[tokio::test]
async fn the_proxy_carries_the_message_when_set() {
    let (proxy, through_proxy) = forward_proxy().await;
    let (slack_addr, slack_log) = stand_in(slack_hook).await;
    let (teams_addr, teams_log) = stand_in(teams).await;
    let notifier = Notifier::new();

    let mut to = dest(
        AlertProviderType::Slack,
        format!("http://{slack_addr}{SLACK_HOOK}"),
    );
    to.proxy = Some(format!("http://{proxy}"));
    notifier.send(&to, &progressing()).await.unwrap();

    let teams_path = "/webhookb2/abc@def/IncomingWebhook/123/456";
    let mut to = dest(
        AlertProviderType::Msteams,
        format!("http://{teams_addr}{teams_path}"),
    );
    to.proxy = Some(format!("http://{proxy}"));
    notifier.send(&to, &progressing()).await.unwrap();

    assert_eq!(
        *through_proxy.lock().unwrap(),
        [
            format!("POST http://{slack_addr}{SLACK_HOOK}"),
            format!("POST http://{teams_addr}{teams_path}"),
        ]
    );
    // The services got the messages from the proxy, intact.
    assert_eq!(
        only(&slack_log).json(),
        slack_attachment_payload("good", &progressing(), PROGRESSING_PLAIN)
    );
    assert_eq!(only(&teams_log).json()["summary"], "podinfo.test");
}

#[tokio::test]
async fn without_a_proxy_nothing_goes_through_one() {
    let (proxy, through_proxy) = forward_proxy().await;
    let (addr, log) = stand_in(slack_hook).await;
    let to = dest(
        AlertProviderType::Slack,
        format!("http://{addr}{SLACK_HOOK}"),
    );
    Notifier::new().send(&to, &progressing()).await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 1);
    assert!(through_proxy.lock().unwrap().is_empty(), "proxy at {proxy}");
}
