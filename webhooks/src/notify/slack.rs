//! Slack: Flagger's attachment payload, sent through `slack-morphism` — to an incoming-webhook
//! URL, or to `chat.postMessage` with a bot token.
//!
//! The payload is our own type rather than slack-morphism's `SlackApiChatPostMessageRequest`:
//! its attachment model has no `author_name` or `text`, which Flagger's message needs.
//! slack-morphism's connector serializes any `Serialize` body, so the message still goes
//! through its client (its `Authorization: Bearer` header, its reading of Slack's
//! `{"ok":false,"error":…}` envelope).
//!
//! Discord's Slack-compatible endpoint and Rocket.Chat take the same payload
//! ([`SlackPayload::new`] with their colours) but are sent with `reqwest` like the other
//! non-Slack services (`../shared/spec/ecosystem.md`); Rocket.Chat's `{"success":true}` reply
//! is not a Slack envelope, which slack-morphism would refuse.

use serde::{Deserialize, Serialize};
use slack_morphism::{
    SlackApiToken, SlackApiTokenValue, SlackClient, SlackClientHttpConnector,
    errors::SlackClientError, hyper_tokio::SlackClientHyperConnector,
};
use url::Url;

use super::{Destination, Message, NotifyError, dialer::Dialer, imp::TIMEOUT, text};
use siskin_api::Severity;

/// A slack-morphism client over our dialer (TLS with ring, optional proxy).
pub(super) type Client =
    SlackClient<SlackClientHyperConnector<hyper_rustls::HttpsConnector<Dialer>>>;

/// Slack's message with one attachment: Flagger's shape plus the attachment's plain-text
/// `fallback` (what notifications and clients without attachments show).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct SlackPayload {
    channel: String,
    username: String,
    /// Flagger sends an empty icon URL (the emoji is the icon).
    icon_url: &'static str,
    icon_emoji: &'static str,
    attachments: Vec<Attachment>,
}

/// One attachment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Attachment {
    color: &'static str,
    author_name: String,
    text: String,
    /// Plain text summary, link-free: what the message says, with every field.
    fallback: String,
    mrkdwn_in: [&'static str; 1],
    fields: Vec<Field>,
}

/// One attachment field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Field {
    title: String,
    value: String,
    short: bool,
}

/// Attachment colours: (ok, error).
#[derive(Clone, Copy, Debug)]
pub(super) struct Colours {
    /// Any severity but error.
    pub ok: &'static str,
    /// [`Severity::Error`].
    pub error: &'static str,
}

/// Slack's named colours (Discord's Slack endpoint understands them too).
pub(super) const SLACK_COLOURS: Colours = Colours {
    ok: "good",
    error: "danger",
};

/// What `chat.postMessage` answers (after slack-morphism has read `ok`).
#[derive(Debug, Deserialize)]
struct PostMessageReply {
    #[serde(default)]
    ts: Option<String>,
}

/// An incoming webhook's reply: `ok` as text/plain, which slack-morphism reads as `{}`.
#[derive(Debug, Deserialize)]
struct WebhookReply {}

// === impl SlackPayload ===

impl SlackPayload {
    /// The payload for `m` to `to`, in `colours`.
    pub(super) fn new(to: &Destination, m: &Message, colours: Colours) -> Self {
        let plain = text::plain_summary(m);
        Self {
            channel: to.channel.clone(),
            username: to.username.clone(),
            icon_url: "",
            icon_emoji: ":rocket:",
            attachments: vec![Attachment {
                color: if m.severity == Severity::Error {
                    colours.error
                } else {
                    colours.ok
                },
                author_name: text::subject(m),
                text: m.text.clone(),
                fallback: plain,
                mrkdwn_in: ["text"],
                fields: m
                    .fields
                    .iter()
                    .map(|(title, value)| Field {
                        title: title.clone(),
                        value: value.clone(),
                        short: false,
                    })
                    .collect(),
            }],
        }
    }
}

/// A client over `dialer`: TLS by rustls with ring and the platform's verifier (as reqwest
/// does for the other services), plain `http://` allowed (stand-ins, in-cluster relays).
pub(super) fn client(dialer: Dialer) -> Result<Client, NotifyError> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
        .map_err(|e| NotifyError::Setup {
            reason: e.to_string(),
        })?
        .https_or_http()
        .enable_http1()
        .wrap_connector(dialer);
    Ok(SlackClient::new(SlackClientHyperConnector::with_connector(
        https,
    )))
}

/// Sends `m` to Slack: `chat.postMessage` with the token, else the incoming webhook.
pub(super) async fn send(
    client: &Client,
    to: &Destination,
    url: Url,
    m: &Message,
) -> Result<(), NotifyError> {
    let payload = SlackPayload::new(to, m, SLACK_COLOURS);
    let host = super::imp::host_of(&url);
    let call = async {
        match to.token.as_deref() {
            Some(token) => {
                let token = SlackApiToken::new(SlackApiTokenValue::new(token.to_owned()));
                let session = client.open_session(&token);
                let reply: PostMessageReply = session
                    .http_session_api
                    .http_post_uri(url, &payload, None)
                    .await?;
                tracing::debug!(ts = ?reply.ts, "Slack accepted the message");
            }
            None => {
                let span = tracing::debug_span!("slack incoming webhook");
                let context = slack_morphism::SlackClientApiCallContext {
                    rate_control_params: None,
                    token: None,
                    tracing_span: &span,
                    is_sensitive_url: true,
                };
                let _: WebhookReply = client
                    .http_api
                    .connector
                    .http_post_uri(url, &payload, context)
                    .await?;
            }
        }
        Ok::<(), SlackClientError>(())
    };
    match tokio::time::timeout(TIMEOUT, call).await {
        Err(_) => Err(NotifyError::TimedOut {
            service: "Slack",
            host,
            after: TIMEOUT,
        }),
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(classify(e, host)),
    }
}

/// Our error for one of slack-morphism's.
fn classify(e: SlackClientError, host: String) -> NotifyError {
    match e {
        SlackClientError::ApiError(api) => NotifyError::SlackApi { error: api.code },
        SlackClientError::HttpError(http) => NotifyError::Refused {
            service: "Slack",
            status: http.status_code.as_u16(),
            body: text::snippet(
                http.http_response_body
                    .as_deref()
                    .unwrap_or_default()
                    .as_bytes(),
            ),
        },
        SlackClientError::RateLimitError(rate) => NotifyError::Refused {
            service: "Slack",
            status: 429,
            body: text::snippet(
                rate.http_response_body
                    .as_deref()
                    .unwrap_or_default()
                    .as_bytes(),
            ),
        },
        other => NotifyError::Unreachable {
            service: "Slack",
            host,
            reason: super::imp::causes(&other),
        },
    }
}
