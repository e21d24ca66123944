//! Alerts to chat, the same in both worlds: a Canary's `analysis.alerts[]` name AlertProviders
//! (each with a lowest severity), or, when it has none, the global destinations of the
//! `--slack-*` / `--msteams-*` flags. Sending never holds a release back: every message goes
//! out on its own task, a failure is logged and counted, and the step goes on.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use siskin_api::{
    AlertProviderType, Severity,
    alert_provider::{AlertProviderSpec, DEFAULT_CHANNEL, DEFAULT_USERNAME},
    analysis::CanaryAlert,
};
use siskin_driver::{Error, Notification, Notifier};
use siskin_webhooks::notify::{Destination, Message};
use tokio::task::JoinSet;
use tracing::{Instrument, info, warn};

/// The global notifier's flags, as Flagger has them (env `SLACK_URL`, `SLACK_TOKEN`, … too).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct GlobalAlertArgs {
    /// Slack incoming-webhook URL (or, with --slack-token, the chat.postMessage URL) for
    /// Canaries without analysis.alerts.
    #[arg(long, env = "SLACK_URL")]
    pub slack_url: Option<String>,
    /// Slack bot token (chat.postMessage).
    #[arg(long, env = "SLACK_TOKEN", hide_env_values = true)]
    pub slack_token: Option<String>,
    /// Proxy for Slack.
    #[arg(long, env = "SLACK_PROXY_URL")]
    pub slack_proxy_url: Option<String>,
    /// Slack user name.
    #[arg(long, env = "SLACK_USER", default_value = DEFAULT_USERNAME)]
    pub slack_user: String,
    /// Slack channel.
    #[arg(long, env = "SLACK_CHANNEL", default_value = DEFAULT_CHANNEL)]
    pub slack_channel: String,
    /// Microsoft Teams incoming-webhook URL (wins over Slack when both are set, as in Flagger).
    #[arg(long, env = "MSTEAMS_URL")]
    pub msteams_url: Option<String>,
    /// Proxy for Microsoft Teams.
    #[arg(long, env = "MSTEAMS_PROXY_URL")]
    pub msteams_proxy_url: Option<String>,
}

impl GlobalAlertArgs {
    /// The global destination, if any flag names one.
    pub fn destination(&self) -> Option<Destination> {
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        if let Some(url) = nonempty(&self.msteams_url) {
            return Some(Destination {
                kind: AlertProviderType::Msteams,
                address: url,
                token: None,
                proxy: nonempty(&self.msteams_proxy_url),
                channel: String::new(),
                username: String::new(),
            });
        }
        nonempty(&self.slack_url).map(|url| Destination {
            kind: AlertProviderType::Slack,
            address: url,
            token: nonempty(&self.slack_token),
            proxy: nonempty(&self.slack_proxy_url),
            channel: self.slack_channel.clone(),
            username: self.slack_user.clone(),
        })
    }
}

/// Counts of messages sent and lost, by service (None: the AlertProvider could not be read).
pub type SendHook = Arc<dyn Fn(Option<AlertProviderType>, bool) + Send + Sync>;

/// Sends messages for every Canary of the process.
#[derive(Clone)]
pub struct Dispatch {
    notifier: siskin_webhooks::notify::Notifier,
    global: Option<Destination>,
    cluster: String,
    on_sent: SendHook,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Dispatch {
    /// A dispatcher; `on_sent(kind, ok)` is told every outcome (the operator counts them).
    pub fn new(global: Option<Destination>, cluster: String, on_sent: SendHook) -> Self {
        Dispatch {
            notifier: siskin_webhooks::notify::Notifier::new(),
            global,
            cluster,
            on_sent,
            tasks: Default::default(),
        }
    }

    /// Waits (at most `limit`) for messages still being sent; `siskin run` calls it before it
    /// exits so the last message is not cut off.
    pub async fn flush(&self, limit: std::time::Duration) {
        let mut set = match self.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return,
        };
        let all = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_err() {
            warn!("some alerts were still being sent when siskin stopped");
        }
    }

    fn spawn(&self, to: Destination, label: String, message: Message) {
        let notifier = self.notifier.clone();
        let on_sent = self.on_sent.clone();
        let span = tracing::info_span!("alert", canary = %message.canary, namespace = %message.namespace, to = %label);
        let task = async move {
            match notifier.send(&to, &message).await {
                Ok(()) => {
                    info!(kind = ?to.kind, "alert sent: {}", message.text);
                    on_sent(Some(to.kind), true);
                }
                Err(e) => {
                    warn!(kind = ?to.kind, error = %e, "alert not sent: {}", message.text);
                    on_sent(Some(to.kind), false);
                }
            }
        }
        .instrument(span);
        if let Ok(mut tasks) = self.tasks.lock() {
            // Finished sends are reaped so the set stays small.
            while tasks.try_join_next().is_some() {}
            tasks.spawn(task);
        }
    }
}

/// Where one Canary's alerts go: resolved when an alert is sent.
#[async_trait]
pub trait Providers: Send + Sync {
    /// The AlertProvider `name` in `namespace` with its Secret read, as a destination.
    async fn resolve(&self, namespace: &str, name: &str) -> Result<Destination, String>;
}

/// One Canary's notifier: its alert list over the process's [`Dispatch`].
pub struct CanaryAlerts<'a> {
    /// The process's dispatcher.
    pub dispatch: &'a Dispatch,
    /// `analysis.alerts` of the Canary.
    pub alerts: Vec<CanaryAlert>,
    /// Its namespace (the default of `providerRef.namespace`).
    pub namespace: String,
    /// How providers are read.
    pub providers: &'a dyn Providers,
}

/// Whether an alert of `severity` passes a filter whose lowest severity is `min` (unset: info;
/// Flagger sends nothing for an unset severity, although its docs say info).
pub fn passes(severity: Severity, min: Option<Severity>) -> bool {
    let level = |s: Severity| match s {
        Severity::Unspecified | Severity::Info => 0,
        Severity::Warn => 1,
        Severity::Error => 2,
    };
    level(severity) >= level(min.unwrap_or(Severity::Info))
}

#[async_trait]
impl Notifier for CanaryAlerts<'_> {
    async fn post(&self, n: &Notification) -> Result<(), Error> {
        let mut fields = Vec::new();
        if !self.dispatch.cluster.is_empty() {
            fields.push(("Cluster".to_string(), self.dispatch.cluster.clone()));
        }
        fields.extend(n.fields.iter().cloned());
        let message = Message {
            canary: n.name.clone(),
            namespace: n.namespace.clone(),
            severity: n.severity,
            text: n.message.clone(),
            fields,
        };
        if self.alerts.is_empty() {
            if let Some(to) = &self.dispatch.global {
                self.dispatch
                    .spawn(to.clone(), "global".into(), message.clone());
            }
            return Ok(());
        }
        let mut problems = Vec::new();
        for a in &self.alerts {
            if !passes(n.severity, a.severity) {
                continue;
            }
            let ns = a
                .provider_ref
                .namespace
                .clone()
                .unwrap_or_else(|| self.namespace.clone());
            match self.providers.resolve(&ns, &a.provider_ref.name).await {
                Ok(to) => self.dispatch.spawn(to, a.name.clone(), message.clone()),
                Err(e) => {
                    (self.dispatch.on_sent)(None, false);
                    problems.push(format!("alert {}: {e}", a.name));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid("analysis.alerts", problems.join("; ")))
        }
    }
}

/// The destination of an AlertProvider spec, given its Secret's keys (`address`, `token`,
/// `proxy`) when it names one.
pub fn destination(
    spec: &AlertProviderSpec,
    secret: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<Destination, String> {
    let from_secret = |k: &str| secret.and_then(|s| s.get(k)).filter(|v| !v.is_empty());
    let address = match (secret, from_secret("address")) {
        (Some(_), Some(a)) => a.clone(),
        (Some(_), None) => {
            return Err("its Secret has no address key; add the webhook URL as address".into());
        }
        (None, _) => spec
            .address
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or("spec.address is empty; set the webhook URL or a secretRef")?,
    };
    Ok(Destination {
        kind: spec.r#type,
        address,
        token: from_secret("token").cloned(),
        proxy: from_secret("proxy")
            .cloned()
            .or_else(|| spec.proxy.clone().filter(|p| !p.is_empty())),
        channel: spec
            .channel
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| DEFAULT_CHANNEL.to_string()),
        username: spec
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_USERNAME.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_filters_as_documented() {
        use Severity::*;
        assert!(passes(Info, Some(Info)) && passes(Error, Some(Info)));
        assert!(!passes(Info, Some(Warn)) && passes(Warn, Some(Warn)) && passes(Error, Some(Warn)));
        assert!(!passes(Warn, Some(Error)) && passes(Error, Some(Error)));
        assert!(passes(Info, None), "unset is info, not nothing");
    }

    #[test]
    fn the_secret_wins_over_the_spec() {
        let spec = AlertProviderSpec {
            address: Some("http://spec".into()),
            secret_ref: Some(Default::default()),
            ..Default::default()
        };
        let secret = [
            ("address".to_string(), "http://secret".to_string()),
            ("token".to_string(), "xoxb-1".to_string()),
        ]
        .into();
        let d = destination(&spec, Some(&secret)).unwrap();
        assert_eq!(
            (d.address.as_str(), d.token.as_deref(), d.channel.as_str()),
            ("http://secret", Some("xoxb-1"), "general")
        );
        let e = destination(&spec, Some(&Default::default())).unwrap_err();
        assert!(e.contains("address"), "{e}");
    }

    #[test]
    fn teams_wins_over_slack() {
        let g = GlobalAlertArgs {
            slack_url: Some("http://slack".into()),
            msteams_url: Some("http://teams".into()),
            ..Default::default()
        };
        assert_eq!(g.destination().unwrap().kind, AlertProviderType::Msteams);
    }
}
