//! The `AlertProvider` resource: where alerts about a release are sent.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    metric_template::{SecretRef, TemplateStatus},
    resource::group_resource,
};

/// Default channel when unset.
pub const DEFAULT_CHANNEL: &str = "general";
/// Default user name when unset.
pub const DEFAULT_USERNAME: &str = "siskin";

/// An AlertProvider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertProvider {
    /// `siskin.dev/v1beta1` or `flagger.app/v1beta1`.
    #[serde(default, rename = "apiVersion")]
    pub api_version: String,
    /// `AlertProvider`.
    #[serde(default)]
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: AlertProviderSpec,
    /// Observed state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TemplateStatus>,
}

group_resource!(AlertProvider, "AlertProvider", "alertproviders");

/// `spec` of an AlertProvider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.address) || has(self.secretRef)",
    "message": "set address or secretRef (a Secret with an address key)"
}]))]
pub struct AlertProviderSpec {
    /// Provider type.
    #[serde(default)]
    pub r#type: AlertProviderType,
    /// Channel (default `general`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Bot user name (default `siskin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Incoming webhook URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// HTTP(S) proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Secret with `address` (and optionally `token`), in the provider's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// Alert provider types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertProviderType {
    /// Slack.
    #[default]
    Slack,
    /// Microsoft Teams.
    Msteams,
    /// Discord.
    Discord,
    /// Rocket.Chat.
    Rocket,
    /// Google Chat.
    Gchat,
}
