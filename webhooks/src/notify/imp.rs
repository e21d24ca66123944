//! The notifier: checks a destination, builds the service's payload, sends it within 5 s.
//!
//! Slack goes through `slack-morphism` (its hyper client over [`Dialer`], TLS with ring);
//! Teams, Discord, Rocket.Chat and Google Chat are plain JSON over `reqwest`
//! (`../shared/spec/ecosystem.md`). One client per proxy setting is built on first use and
//! kept, so connections are reused.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use serde::Serialize;
use siskin_api::alert_provider::AlertProviderType;
use url::Url;

use super::{
    Destination, Message, dialer::Dialer, discord, gchat::ChatMessage, msteams::MessageCard,
    rocket, slack, slack::SlackPayload, text,
};

/// How long one message may take, connecting included (Flagger: 5 s).
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

/// Sends messages; one per process, its connections reused. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    clients: Arc<Clients>,
}

/// Clients by proxy (`""`: none given, the environment's).
#[derive(Default)]
struct Clients {
    http: Mutex<HashMap<String, reqwest::Client>>,
    slack: Mutex<HashMap<String, Arc<slack::Client>>>,
}

/// Why a message was not delivered. The Display form names what to fix; no variant
/// carries the address's path or query (webhook URLs are credentials).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The address is not an absolute `http(s)://` URL with a host.
    #[error(
        "spec.address (or the `address` key of spec.secretRef's Secret) is not a {service} \
         webhook URL: {reason}; set it to the URL {service} gave you, e.g. {example}"
    )]
    InvalidAddress {
        /// The service (`Slack`, `Microsoft Teams`…).
        service: &'static str,
        /// What is wrong with it.
        reason: String,
        /// What a right one looks like.
        example: &'static str,
    },
    /// The channel is empty where the service needs one.
    #[error(
        "spec.channel is empty; {service} posts to a channel: set spec.channel (Flagger's \
         default is `general`)"
    )]
    InvalidChannel {
        /// The service.
        service: &'static str,
    },
    /// The user name is empty where the service needs one.
    #[error(
        "spec.username is empty; {service} posts as a named user: set spec.username (default \
         `siskin`)"
    )]
    InvalidUsername {
        /// The service.
        service: &'static str,
    },
    /// The proxy is not a usable proxy URL.
    #[error(
        "spec.proxy is not a usable proxy URL: {reason}; set it to http://host:port or remove it"
    )]
    ProxyInvalid {
        /// What is wrong with it.
        reason: String,
    },
    /// No connection (refused, reset, DNS, TLS, proxy failure).
    #[error("{service} at {host} could not be reached: {reason}")]
    Unreachable {
        /// The service.
        service: &'static str,
        /// `host[:port]` of the address.
        host: String,
        /// The transport's error, with its causes.
        reason: String,
    },
    /// No answer in time.
    #[error("{service} at {host} did not answer within {}s", after.as_secs())]
    TimedOut {
        /// The service.
        service: &'static str,
        /// `host[:port]` of the address.
        host: String,
        /// The time allowed.
        after: Duration,
    },
    /// The service answered with a non-2xx status (or, Rocket.Chat, `"success": false`).
    #[error("{service} refused the message with HTTP {status}: {body}")]
    Refused {
        /// The service.
        service: &'static str,
        /// HTTP status.
        status: u16,
        /// The first bytes of the body.
        body: String,
    },
    /// Slack's Web API answered `{"ok": false, "error": …}`.
    #[error("Slack refused the message: {error}{}", slack_hint(.error))]
    SlackApi {
        /// Slack's error code (`not_authed`, `channel_not_found`…).
        error: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("the HTTP client for notifications could not be built: {reason}")]
    Setup {
        /// Why.
        reason: String,
    },
}

/// What to do about a Slack error code, when we know.
fn slack_hint(code: &str) -> &'static str {
    match code {
        "not_authed" | "invalid_auth" | "token_revoked" | "account_inactive" => {
            " (check the `token` key of spec.secretRef's Secret: a bot token, xoxb-…)"
        }
        "channel_not_found" => " (check spec.channel, and that the bot can see the channel)",
        "not_in_channel" => " (invite the bot to spec.channel)",
        "missing_scope" => " (give the bot the chat:write scope)",
        _ => "",
    }
}

// === impl NotifyError ===

impl NotifyError {
    /// A low-cardinality label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidAddress { .. } => "invalid_address",
            Self::InvalidChannel { .. } => "invalid_channel",
            Self::InvalidUsername { .. } => "invalid_username",
            Self::ProxyInvalid { .. } => "proxy_invalid",
            Self::Unreachable { .. } => "unreachable",
            Self::TimedOut { .. } => "timed_out",
            Self::Refused { .. } => "refused",
            Self::SlackApi { .. } => "slack_api",
            Self::Setup { .. } => "setup",
        }
    }

    /// Whether sending again later may succeed without a change to the AlertProvider.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::TimedOut { .. } => true,
            Self::Refused { status, .. } => *status == 429 || *status >= 500,
            Self::SlackApi { error } => matches!(
                error.as_str(),
                "ratelimited" | "service_unavailable" | "internal_error" | "fatal_error"
            ),
            _ => false,
        }
    }
}

// === impl Notifier ===

impl Notifier {
    /// A notifier. Installs rustls' ring provider as the process default if none is.
    pub fn new() -> Self {
        crate::install_crypto();
        Self {
            clients: Arc::new(Clients::default()),
        }
    }

    /// Sends `m` to `to`: checks the destination first (nothing is sent to a bad one), then
    /// posts the service's payload, allowing 5 s. A non-2xx answer, a Slack `ok: false`, no
    /// connection or no answer in time is an error.
    pub async fn send(&self, to: &Destination, m: &Message) -> Result<(), NotifyError> {
        let url = check(to)?;
        let proxy = proxy(to)?;
        match to.kind {
            AlertProviderType::Slack => {
                let client = self.slack(proxy.as_deref())?;
                slack::send(&client, to, url, m).await
            }
            AlertProviderType::Discord => {
                let body = SlackPayload::new(to, m, slack::SLACK_COLOURS);
                self.post(to.kind, proxy, discord::slack_endpoint(url), &body)
                    .await
                    .map(drop)
            }
            AlertProviderType::Rocket => {
                let body = SlackPayload::new(to, m, rocket::COLOURS);
                let (status, reply) = self.post(to.kind, proxy, url, &body).await?;
                rocket::check_reply(status, &reply)
            }
            AlertProviderType::Msteams => self
                .post(to.kind, proxy, url, &MessageCard::new(m))
                .await
                .map(drop),
            AlertProviderType::Gchat => self
                .post(to.kind, proxy, url, &ChatMessage::new(m))
                .await
                .map(drop),
        }
    }

    /// POSTs `body` as JSON with reqwest; the status and body of a 2xx answer.
    async fn post<T: Serialize>(
        &self,
        kind: AlertProviderType,
        proxy: Option<String>,
        url: Url,
        body: &T,
    ) -> Result<(u16, bytes::Bytes), NotifyError> {
        let service = service(kind);
        let host = host_of(&url);
        let client = self.http(proxy)?;
        let fail = |e: reqwest::Error| transport_error(service, host.clone(), &e);
        let resp = client.post(url).json(body).send().await.map_err(fail)?;
        let status = resp.status().as_u16();
        let reply = resp.bytes().await.map_err(fail)?;
        if !(200..=299).contains(&status) {
            return Err(NotifyError::Refused {
                service,
                status,
                body: text::snippet(&reply),
            });
        }
        Ok((status, reply))
    }

    /// The reqwest client for `proxy`.
    fn http(&self, proxy: Option<String>) -> Result<reqwest::Client, NotifyError> {
        let key = proxy.clone().unwrap_or_default();
        let mut clients = self
            .clients
            .http
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("siskin/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = proxy {
            let proxy = reqwest::Proxy::all(proxy)
                .map_err(|e| NotifyError::ProxyInvalid { reason: causes(&e) })?;
            builder = builder.proxy(proxy);
        }
        let client = builder
            .build()
            .map_err(|e| NotifyError::Setup { reason: causes(&e) })?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The slack-morphism client for `proxy`.
    fn slack(&self, proxy: Option<&str>) -> Result<Arc<slack::Client>, NotifyError> {
        let key = proxy.unwrap_or_default().to_owned();
        let mut clients = self
            .clients
            .slack
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        if let Some(p) = proxy
            && !p.starts_with("http://")
        {
            return Err(NotifyError::ProxyInvalid {
                reason: "Slack's client reaches its proxy over plain http:// only".into(),
            });
        }
        let client = Arc::new(slack::client(Dialer::new(proxy, TIMEOUT))?);
        clients.insert(key, client.clone());
        Ok(client)
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

// === checks ===

/// The destination's URL, once the address, channel and user name pass Flagger's checks.
fn check(to: &Destination) -> Result<Url, NotifyError> {
    let service = service(to.kind);
    let invalid = |reason: String| NotifyError::InvalidAddress {
        service,
        reason,
        example: example(to.kind, to.token.is_some()),
    };
    let address = to.address.trim();
    if address.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    let url = http_url(address).map_err(invalid)?;
    // The services that take Slack's payload post as a user to a channel (Flagger checks
    // both for Slack, Discord and Rocket.Chat).
    if matches!(
        to.kind,
        AlertProviderType::Slack | AlertProviderType::Discord | AlertProviderType::Rocket
    ) {
        if to.channel.trim().is_empty() {
            return Err(NotifyError::InvalidChannel { service });
        }
        if to.username.trim().is_empty() {
            return Err(NotifyError::InvalidUsername { service });
        }
    }
    Ok(url)
}

/// The destination's proxy URL, if any, once it parses as `http(s)://host[:port]`.
fn proxy(to: &Destination) -> Result<Option<String>, NotifyError> {
    let Some(proxy) = to.proxy.as_deref().map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    http_url(proxy).map_err(|reason| NotifyError::ProxyInvalid { reason })?;
    Ok(Some(proxy.to_owned()))
}

/// `text` parsed as an `http(s)://` URL with a host; the error says what is wrong with it.
fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "its scheme is `{}`, not http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it has no host".into());
    }
    Ok(url)
}

/// The service's name in messages.
fn service(kind: AlertProviderType) -> &'static str {
    match kind {
        AlertProviderType::Slack => "Slack",
        AlertProviderType::Msteams => "Microsoft Teams",
        AlertProviderType::Discord => "Discord",
        AlertProviderType::Rocket => "Rocket.Chat",
        AlertProviderType::Gchat => "Google Chat",
    }
}

/// What a right address looks like.
fn example(kind: AlertProviderType, token: bool) -> &'static str {
    match kind {
        AlertProviderType::Slack if token => "https://slack.com/api/chat.postMessage",
        AlertProviderType::Slack => "https://hooks.slack.com/services/T000/B000/XXXX",
        AlertProviderType::Msteams => "https://example.webhook.office.com/webhookb2/…",
        AlertProviderType::Discord => "https://discord.com/api/webhooks/<id>/<token>",
        AlertProviderType::Rocket => "https://rocket.example.com/hooks/<id>/<token>",
        AlertProviderType::Gchat => {
            "https://chat.googleapis.com/v1/spaces/<space>/messages?key=…&token=…"
        }
    }
}

// === errors ===

/// `host[:port]` of `url`, what errors may show of it.
pub(super) fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => String::new(),
    }
}

/// Our error for a reqwest failure (the URL left out: it is a credential).
fn transport_error(service: &'static str, host: String, e: &reqwest::Error) -> NotifyError {
    if e.is_timeout() {
        NotifyError::TimedOut {
            service,
            host,
            after: TIMEOUT,
        }
    } else {
        NotifyError::Unreachable {
            service,
            host,
            reason: causes(e),
        }
    }
}

/// `e` and its sources, `: `-joined, without any URL reqwest put in them.
pub(super) fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = match e.downcast_ref::<reqwest::Error>() {
        Some(r) => strip_url(r),
        None => e.to_string(),
    };
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.ends_with(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// A reqwest error's message without the URL it names.
fn strip_url(e: &reqwest::Error) -> String {
    match e.url() {
        Some(url) => e
            .to_string()
            .replace(&format!(" ({url})"), "")
            .replace(url.as_str(), "…"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(kind: AlertProviderType, address: &str) -> Destination {
        Destination {
            kind,
            address: address.into(),
            token: None,
            proxy: None,
            channel: "general".into(),
            username: "siskin".into(),
        }
    }

    #[test]
    fn addresses_need_a_scheme_and_host() {
        for bad in [
            "",
            "hooks.slack.com/services/x",
            "/services/x",
            "ftp://x.example/a",
            "http://",
        ] {
            let e = check(&dest(AlertProviderType::Slack, bad)).expect_err(bad);
            assert!(
                matches!(e, NotifyError::InvalidAddress { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("spec.address"), "{e}");
        }
        assert!(
            check(&dest(
                AlertProviderType::Gchat,
                "https://chat.googleapis.com/v1/x"
            ))
            .is_ok()
        );
    }

    #[test]
    fn slack_shaped_services_need_channel_and_username() {
        for kind in [
            AlertProviderType::Slack,
            AlertProviderType::Discord,
            AlertProviderType::Rocket,
        ] {
            let mut d = dest(kind, "https://x.example/hook");
            d.channel = " ".into();
            assert!(matches!(check(&d), Err(NotifyError::InvalidChannel { .. })));
            d.channel = "general".into();
            d.username = String::new();
            let e = check(&d).expect_err("empty username");
            assert!(e.to_string().contains("spec.username"), "{e}");
        }
        let mut teams = dest(AlertProviderType::Msteams, "https://x.example/hook");
        teams.channel = String::new();
        assert!(check(&teams).is_ok());
    }

    #[test]
    fn proxies_must_be_http_urls() {
        let mut d = dest(AlertProviderType::Msteams, "https://x.example/hook");
        d.proxy = Some("socks5://proxy:1080".into());
        assert!(matches!(proxy(&d), Err(NotifyError::ProxyInvalid { .. })));
        d.proxy = Some("proxy:3128".into());
        assert!(proxy(&d).is_err());
        d.proxy = Some(String::new());
        assert_eq!(proxy(&d).expect("empty is none"), None);
        d.proxy = Some("http://proxy.example:3128".into());
        assert_eq!(
            proxy(&d).expect("valid").as_deref(),
            Some("http://proxy.example:3128")
        );
    }

    #[test]
    fn errors_know_what_is_transient() {
        let refused = |status| NotifyError::Refused {
            service: "Slack",
            status,
            body: String::new(),
        };
        assert!(refused(503).is_transient());
        assert!(refused(429).is_transient());
        assert!(!refused(404).is_transient());
        let e = NotifyError::SlackApi {
            error: "channel_not_found".into(),
        };
        assert!(!e.is_transient());
        assert!(e.to_string().contains("spec.channel"), "{e}");
    }
}
