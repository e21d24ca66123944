//! The webhook client (`../shared/spec/flagger.md` §4.2–4.3): Flagger's payload POSTed as JSON,
//! a timeout per attempt (default 10 s), `retries` more attempts with exponential backoff on
//! connection errors, 429 and 5xx (not 501), `disableTLS` to skip certificate checks. Success
//! is an answer with status 202 or lower; every call, passed or not, is a [`WebhookResult`].

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;
use siskin_api::{
    HookType,
    analysis::CanaryWebhook,
    status::{WEBHOOK_BODY_BYTES, WebhookResult},
};
use tokio::time::Instant;

/// What a webhook is told (Flagger's payload, plus the hook's `type`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payload {
    /// Canary name.
    pub name: String,
    /// Canary namespace.
    pub namespace: String,
    /// Phase before this step.
    pub phase: String,
    /// Checksum of the release (the status's `lastAppliedSpec`).
    pub checksum: String,
    /// Extra metadata (event hooks: `eventMessage`, `eventType`, `timestamp`); merged over the
    /// hook's own, these keys win.
    pub metadata: BTreeMap<String, String>,
}

/// The JSON body: Flagger's fields, `metadata` only when there is some, and `type` (Siskin's
/// addition, ignored by Flagger's receivers) so that a load tester keys gates per type.
#[derive(Serialize)]
struct Body<'a> {
    name: &'a str,
    namespace: &'a str,
    phase: &'a str,
    checksum: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<&'a str, &'a str>,
    r#type: &'a str,
}

impl Payload {
    /// The payload as Flagger sends it to a hook of `kind`: pre-rollout, rollout,
    /// confirm-traffic-increase and confirm-promotion hooks are told `Progressing` (also while
    /// the canary waits for promotion); the others the current phase.
    pub fn for_hook(&self, kind: HookType) -> Payload {
        let mut p = self.clone();
        if matches!(
            kind,
            HookType::PreRollout
                | HookType::Rollout
                | HookType::ConfirmTrafficIncrease
                | HookType::ConfirmPromotion
        ) {
            p.phase = "Progressing".to_string();
        }
        p
    }

    /// The body sent to `hook`.
    pub fn body(&self, hook: &CanaryWebhook) -> serde_json::Value {
        let mut metadata: BTreeMap<&str, &str> = hook
            .metadata
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        metadata.extend(self.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body = Body {
            name: &self.name,
            namespace: &self.namespace,
            phase: &self.phase,
            checksum: &self.checksum,
            metadata,
            r#type: hook.hook_type().name(),
        };
        serde_json::to_value(body).unwrap_or_default()
    }
}

/// Backoff between attempts: doubling from `first`, at most `max` (Flagger's retry library
/// waits 1 s, 2 s, 4 s … 30 s).
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Wait before the second attempt.
    pub first: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    fn wait(&self, retry: u32) -> Duration {
        self.first
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max)
    }
}

/// Calls webhooks; one per process, its connections reused.
#[derive(Clone, Debug)]
pub struct HookClient {
    verified: reqwest::Client,
    insecure: reqwest::Client,
    backoff: Backoff,
}

/// The client could not be built (no TLS provider).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook client: {0}")]
pub struct BuildError(#[from] reqwest::Error);

impl HookClient {
    /// A client with Flagger's backoff.
    pub fn new() -> Result<Self, BuildError> {
        Self::with_backoff(Backoff::default())
    }

    /// A client with its own backoff (tests use milliseconds).
    pub fn with_backoff(backoff: Backoff) -> Result<Self, BuildError> {
        crate::install_crypto();
        let base = || {
            reqwest::Client::builder()
                .user_agent(concat!("siskin/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::limited(3))
        };
        Ok(HookClient {
            verified: base().build()?,
            insecure: base().tls_danger_accept_invalid_certs(true).build()?,
            backoff,
        })
    }

    /// Calls `hook` with `payload`: at most `1 + retries` attempts, each within the hook's
    /// timeout. Never fails: the outcome, answer and timing are in the result.
    pub async fn call(&self, hook: &CanaryWebhook, payload: &Payload) -> WebhookResult {
        let kind = hook.hook_type();
        let body = payload.body(hook);
        let retries = hook.retries.unwrap_or(0).clamp(0, 10) as u32;
        let client = if hook.disable_tls.unwrap_or(false) {
            &self.insecure
        } else {
            &self.verified
        };
        let timeout = hook.timeout();
        let start = Instant::now();
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let outcome = attempt(client, &hook.url, &body, timeout).await;
            let retry = attempts <= retries && outcome.retryable();
            if !retry {
                break outcome;
            }
            tracing::debug!(hook = %hook.name, attempt = attempts, "webhook retried: {}", outcome.describe());
            tokio::time::sleep(self.backoff.wait(attempts - 1)).await;
        };
        let elapsed = start.elapsed();
        result.into_result(hook, kind, attempts, elapsed)
    }
}

/// One attempt's outcome.
enum Attempt {
    Answered { status: u16, body: String },
    TimedOut(Duration),
    Failed { error: String, connect: bool },
}

async fn attempt(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Attempt {
    let send = client.post(url).json(body).timeout(timeout).send();
    let resp = match send.await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Attempt::TimedOut(timeout),
        Err(e) => {
            return Attempt::Failed {
                connect: e.is_connect(),
                error: error_chain(&e),
            };
        }
    };
    let status = resp.status().as_u16();
    // The body is read within what is left of the attempt's timeout, and only its start kept.
    let text = match tokio::time::timeout(timeout, resp.bytes()).await {
        Ok(Ok(b)) => truncate(&b),
        Ok(Err(_)) | Err(_) => String::new(),
    };
    Attempt::Answered { status, body: text }
}

impl Attempt {
    /// Flagger's retry rule: connection errors, 429 and 5xx except 501.
    fn retryable(&self) -> bool {
        match self {
            Attempt::Answered { status, .. } => {
                *status == 429 || (*status >= 500 && *status != 501)
            }
            Attempt::TimedOut(_) => true,
            Attempt::Failed { connect, .. } => *connect,
        }
    }

    fn describe(&self) -> String {
        match self {
            Attempt::Answered { status, .. } => format!("status {status}"),
            Attempt::TimedOut(t) => format!("no answer within {t:?}"),
            Attempt::Failed { error, .. } => error.clone(),
        }
    }

    fn into_result(
        self,
        hook: &CanaryWebhook,
        kind: HookType,
        attempts: u32,
        elapsed: Duration,
    ) -> WebhookResult {
        let mut r = WebhookResult {
            name: hook.name.clone(),
            r#type: kind.name().to_string(),
            attempts,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            ..Default::default()
        };
        match self {
            Attempt::Answered { status, body } => {
                r.passed = status <= 202;
                r.status_code = Some(status);
                r.response = body;
                if !r.passed {
                    r.error = Some(format!("status {status} (success is 202 or lower)"));
                }
            }
            Attempt::TimedOut(t) => {
                r.error = Some(format!(
                    "no answer within {}s (the hook's timeout)",
                    t.as_secs_f64()
                ));
            }
            Attempt::Failed { error, .. } => r.error = Some(error),
        }
        r
    }
}

/// The error with its causes (reqwest's own text says only "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

/// The first [`WEBHOOK_BODY_BYTES`] of `b`, cut on a character boundary.
fn truncate(b: &[u8]) -> String {
    let text = String::from_utf8_lossy(b);
    if text.len() <= WEBHOOK_BODY_BYTES {
        return text.into_owned();
    }
    let mut end = WEBHOOK_BODY_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(kind: Option<HookType>) -> CanaryWebhook {
        CanaryWebhook {
            name: "gate".into(),
            r#type: kind,
            url: "http://127.0.0.1:1/".into(),
            metadata: Some([("cmd".to_string(), "hey".to_string())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_payload_is_flaggers_with_the_hook_type() {
        let p = Payload {
            name: "podinfo".into(),
            namespace: "test".into(),
            phase: "Progressing".into(),
            checksum: "abc".into(),
            metadata: Default::default(),
        };
        let body = p.body(&hook(Some(HookType::ConfirmPromotion)));
        assert_eq!(
            body,
            serde_json::json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
                "checksum": "abc", "metadata": {"cmd": "hey"}, "type": "confirm-promotion"})
        );
        let mut h = hook(None);
        h.metadata = None;
        let body = p.body(&h);
        assert!(body.get("metadata").is_none(), "{body}");
        assert_eq!(body["type"], "rollout");
    }

    #[test]
    fn event_keys_win_over_the_hooks() {
        let p = Payload {
            metadata: [("cmd".to_string(), "mine".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(p.body(&hook(None))["metadata"]["cmd"], "mine");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff::default();
        let waits: Vec<u64> = (0..7).map(|i| b.wait(i).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn long_bodies_are_cut_on_a_character() {
        let long = "é".repeat(200);
        let t = truncate(long.as_bytes());
        assert!(t.len() <= WEBHOOK_BODY_BYTES + "…".len(), "{}", t.len());
        assert!(t.ends_with('…'));
    }
}
