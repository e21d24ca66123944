//! Chat notifications in Flagger's message shapes (`../shared/spec/flagger.md` §2.5): one file
//! per service, chosen by [`AlertProviderType`].
//!
//! Slack (incoming webhook, or `chat.postMessage` with a bot token) goes through
//! `slack-morphism`'s hyper client; Microsoft Teams, Discord (its Slack-compatible endpoint),
//! Rocket.Chat and Google Chat are JSON over `reqwest`. Slack-shaped messages also carry a
//! plain-text, link-free summary (the attachment's `fallback`) with every field, for
//! notifications and clients that show no attachments.
//!
//! Used by the operator and `siskin run`: [`Message`], [`Destination`], [`Notifier::new`],
//! [`Notifier::send`], [`NotifyError`].

use siskin_api::{Severity, alert_provider::AlertProviderType};

/// What is said: one alert about one Canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Canary name.
    pub canary: String,
    /// Canary namespace.
    pub namespace: String,
    /// Severity (colours: error is "danger"/red, others "good"/blue).
    pub severity: Severity,
    /// The text, e.g. `Canary analysis completed successfully, promotion finished.`
    pub text: String,
    /// Name/value facts (Target, Failed checks threshold, the failing check's value…), in order.
    pub fields: Vec<(String, String)>,
}

/// Where it is said: an AlertProvider (or the global flags) with its Secret already read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The service.
    pub kind: AlertProviderType,
    /// Incoming-webhook URL; for Slack with a token, the `chat.postMessage` URL
    /// (`https://slack.com/api/chat.postMessage`, or a stand-in's).
    pub address: String,
    /// Slack bot token (`Authorization: Bearer`), from the provider's Secret.
    pub token: Option<String>,
    /// HTTP(S) proxy URL.
    pub proxy: Option<String>,
    /// Channel (Flagger's default `general`).
    pub channel: String,
    /// User name (default `siskin`).
    pub username: String,
}

mod dialer;
mod discord;
mod gchat;
mod imp;
mod msteams;
mod rocket;
mod slack;
mod text;

pub use imp::{Notifier, NotifyError};
