//! Siskin's outbound HTTP, shared by `siskin operator` and `siskin run`:
//!
//! - [`client`]: the webhook client (Flagger's payload, per-attempt timeout, retries with
//!   backoff on connection errors, 429 and 5xx, `disableTLS`), whose every call returns a
//!   `WebhookResult` to record in the Canary's status;
//! - [`notify`]: chat notifications — Slack (incoming webhook or `chat.postMessage`),
//!   Microsoft Teams, Discord, Rocket.Chat and Google Chat — in Flagger's message shapes.

pub mod client;
pub mod notify;

/// Installs rustls' ring provider as the process default (once; later calls do nothing), so
/// every TLS client in the process agrees on one.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
