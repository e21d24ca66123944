//! The `MetricTemplate` resource: a reusable query against a metrics provider.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{resource::group_resource, status::CanaryCondition};

/// A MetricTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricTemplate {
    /// `siskin.dev/v1beta1` or `flagger.app/v1beta1`.
    #[serde(default, rename = "apiVersion")]
    pub api_version: String,
    /// `MetricTemplate`.
    #[serde(default)]
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: MetricTemplateSpec,
    /// Observed state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TemplateStatus>,
}

group_resource!(MetricTemplate, "MetricTemplate", "metrictemplates");

/// `spec` of a MetricTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricTemplateSpec {
    /// Where the query runs.
    #[serde(default)]
    pub provider: MetricsProvider,
    /// The query, a template with `{{ name }}`, `{{ namespace }}`, `{{ target }}`,
    /// `{{ service }}`, `{{ ingress }}`, `{{ route }}`, `{{ interval }}`, `{{ variables.KEY }}`.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub query: String,
}

/// `spec.provider` of a MetricTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsProvider {
    /// Provider type.
    #[serde(default)]
    pub r#type: MetricsProviderType,
    /// API address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Secret with credentials, in the template's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Extra HTTP headers (Prometheus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// Region (CloudWatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Skip TLS verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// Metrics provider types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricsProviderType {
    /// Prometheus HTTP API.
    #[default]
    Prometheus,
    /// InfluxDB (Flux).
    Influxdb,
    /// Datadog.
    Datadog,
    /// Kubernetes external metrics API.
    Externalmetrics,
    /// Google Cloud Monitoring.
    Stackdriver,
    /// AWS CloudWatch.
    Cloudwatch,
    /// New Relic.
    Newrelic,
    /// Graphite.
    Graphite,
    /// Dynatrace.
    Dynatrace,
    /// Keptn.
    Keptn,
    /// Splunk Observability.
    Splunk,
}

/// Reference to a Secret in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    /// Secret name.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Status of a MetricTemplate or AlertProvider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<CanaryCondition>>,
}
