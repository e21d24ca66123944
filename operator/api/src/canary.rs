//! The `Canary` resource.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    ApiGroup, Provider, analysis::CanaryAnalysis, resource::group_resource, service::CanaryService,
    status::CanaryStatus,
};

/// Default `progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Default `approvalDeadlineSeconds` (Siskin): how long a gate may hold a release.
pub const DEFAULT_APPROVAL_DEADLINE_SECONDS: i64 = 86400;

/// A Canary: progressive delivery of one workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// `siskin.dev/v1beta1` or `flagger.app/v1beta1`.
    #[serde(default, rename = "apiVersion")]
    pub api_version: String,
    /// `Canary`.
    #[serde(default)]
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: CanarySpec,
    /// Observed state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CanaryStatus>,
}

group_resource!(Canary, "Canary", "canaries");

/// `spec` of a Canary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// Traffic provider; unset selects the operator's default (`builtin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// Prometheus address for built-in and inline-query metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_server: Option<String>,
    /// The workload released progressively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    /// Autoscaler of the target, copied for the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler_ref: Option<AutoscalerRef>,
    /// Ingress for the `nginx` and `skipper` providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_ref: Option<KindRef>,
    /// ApisixRoute for the `apisix` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_ref: Option<KindRef>,
    /// Gloo Upstream whose settings are copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ref: Option<UpstreamRef>,
    /// Services and route options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<CanaryService>,
    /// Analysis: schedule, steps, checks, webhooks, alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<CanaryAnalysis>,
    /// Deprecated alias of `analysis`, read only when `analysis` is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_analysis: Option<CanaryAnalysis>,
    /// Seconds a rollout may make no progress before it is rolled back (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub progress_deadline_seconds: Option<i32>,
    /// Siskin: seconds a confirm gate may hold a release before it fails (default 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub approval_deadline_seconds: Option<i64>,
    /// Promote without analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_analysis: Option<bool>,
    /// Restore the target and routing when the Canary is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_on_deletion: Option<bool>,
    /// Freeze the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// `spec.targetRef`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// API version, e.g. `apps/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Deployment`, `DaemonSet` or `Service`.
    #[serde(default)]
    pub kind: TargetKind,
    /// Name of the workload.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Kinds of target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TargetKind {
    /// `apps/v1` Deployment.
    #[default]
    Deployment,
    /// `apps/v1` DaemonSet.
    DaemonSet,
    /// A Kubernetes or Knative Service.
    Service,
}

/// `spec.autoscalerRef`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerRef {
    /// API version (`autoscaling/v2`, `keda.sh/v1alpha1`).
    #[serde(default)]
    pub api_version: String,
    /// `HorizontalPodAutoscaler` or `ScaledObject`.
    #[serde(default)]
    pub kind: AutoscalerKind,
    /// Name.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
    /// KEDA trigger queries for the primary ScaledObject, by trigger name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_scaler_queries: Option<BTreeMap<String, String>>,
    /// Replica bounds of the primary autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_scaler_replicas: Option<ScalerReplicas>,
}

/// Kinds of autoscaler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AutoscalerKind {
    /// `autoscaling/v2` HPA.
    #[default]
    HorizontalPodAutoscaler,
    /// KEDA ScaledObject.
    ScaledObject,
}

/// Replica bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
    "message": "minReplicas must not exceed maxReplicas"
}]))]
pub struct ScalerReplicas {
    /// Minimum replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_replicas: Option<i32>,
    /// Maximum replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<i32>,
}

/// A reference by API version, kind and name (Ingress, ApisixRoute).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindRef {
    /// API version.
    #[serde(default)]
    pub api_version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
}

/// `spec.upstreamRef` (Gloo).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamRef {
    /// API version.
    #[serde(default)]
    pub api_version: String,
    /// `Upstream`.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// How a release moves traffic, derived from the analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeploymentStrategy {
    /// Progressive weights.
    Canary,
    /// Fixed iterations on the canary, then switch.
    BlueGreen,
    /// Matching requests go to the canary for a number of iterations.
    AbTesting,
}

// === impl Canary ===

impl Canary {
    /// A Canary named `name` under `group`.
    pub fn new(group: ApiGroup, name: &str, spec: CanarySpec) -> Self {
        Canary {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            spec,
            ..Default::default()
        }
        .with_group(group)
    }
}

// === impl CanarySpec ===

impl CanarySpec {
    /// The target name (empty when unset).
    pub fn target_name(&self) -> &str {
        self.target_ref.as_ref().map_or("", |t| t.name.as_str())
    }

    /// The target kind (Deployment when unset).
    pub fn target_kind(&self) -> TargetKind {
        self.target_ref.as_ref().map(|t| t.kind).unwrap_or_default()
    }

    /// Name of the apex Service: `service.name`, else the target name.
    pub fn apex_name(&self) -> &str {
        self.service
            .as_ref()
            .and_then(|s| s.name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.target_name())
    }

    /// `<apex>-primary`.
    pub fn primary_service_name(&self) -> String {
        format!("{}-primary", self.apex_name())
    }

    /// `<apex>-canary`.
    pub fn canary_service_name(&self) -> String {
        format!("{}-canary", self.apex_name())
    }

    /// The primary workload: `<target>-primary`.
    pub fn primary_workload_name(&self) -> String {
        format!("{}-primary", self.target_name())
    }

    /// The analysis (`analysis`, else the deprecated `canaryAnalysis`, else defaults).
    pub fn analysis(&self) -> std::borrow::Cow<'_, CanaryAnalysis> {
        match self.analysis.as_ref().or(self.canary_analysis.as_ref()) {
            Some(a) => std::borrow::Cow::Borrowed(a),
            None => std::borrow::Cow::Owned(CanaryAnalysis::default()),
        }
    }

    /// The webhooks of one type, in spec order (none without an analysis).
    pub fn analysis_hooks(&self, kind: crate::HookType) -> Vec<&crate::CanaryWebhook> {
        self.analysis
            .as_ref()
            .or(self.canary_analysis.as_ref())
            .map(|a| a.hooks(kind).collect())
            .unwrap_or_default()
    }

    /// Promote without analysis: `skipAnalysis`, or no analysis at all.
    pub fn skip_analysis(&self) -> bool {
        self.skip_analysis.unwrap_or(false)
            || (self.analysis.is_none() && self.canary_analysis.is_none())
    }

    /// Whether the run is frozen.
    pub fn suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }

    /// The strategy: A/B when `match` and `iterations` are set, blue/green with `iterations`,
    /// else canary. The `kubernetes` provider can only do blue/green.
    pub fn strategy(&self) -> DeploymentStrategy {
        let a = self.analysis();
        if a.iterations() > 0
            && !a.matches().is_empty()
            && self.provider != Some(Provider::Kubernetes)
        {
            DeploymentStrategy::AbTesting
        } else if a.iterations() > 0 || self.provider == Some(Provider::Kubernetes) {
            DeploymentStrategy::BlueGreen
        } else {
            DeploymentStrategy::Canary
        }
    }

    /// `progressDeadlineSeconds` (default 600).
    pub fn progress_deadline(&self) -> Duration {
        let secs = self
            .progress_deadline_seconds
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
        Duration::from_secs(u64::from(secs.unsigned_abs()))
    }

    /// `approvalDeadlineSeconds` (default 24h).
    pub fn approval_deadline(&self) -> Duration {
        let secs = self
            .approval_deadline_seconds
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_APPROVAL_DEADLINE_SECONDS);
        Duration::from_secs(secs.unsigned_abs())
    }
}
