//! The webhook and alert settings shared by `siskin operator` and `siskin run`.

use siskin_api::{AlertProviderType, CanaryWebhook, HookType};

/// The global event webhook (`--event-webhook`), as a hook of type `event`.
pub fn global_event_hook(url: Option<&str>) -> Option<CanaryWebhook> {
    let url = url.filter(|u| !u.is_empty())?;
    Some(CanaryWebhook {
        name: "event-webhook".into(),
        r#type: Some(HookType::Event),
        url: url.to_string(),
        ..Default::default()
    })
}

/// The manifest name of an alert provider type (the `provider` label of
/// `siskin_notifications_total`).
pub fn alert_kind(kind: AlertProviderType) -> &'static str {
    match kind {
        AlertProviderType::Slack => "slack",
        AlertProviderType::Msteams => "msteams",
        AlertProviderType::Discord => "discord",
        AlertProviderType::Rocket => "rocket",
        AlertProviderType::Gchat => "gchat",
    }
}
