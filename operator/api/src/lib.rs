//! Siskin's Kubernetes resources: `Canary`, `MetricTemplate` and `AlertProvider`.
//!
//! Their JSON is a superset of Flagger's `flagger.app/v1beta1`: every Flagger field keeps its
//! name and default, and Siskin's additions are optional. The same Rust types serve both API
//! groups, `siskin.dev` and `flagger.app`: the group is the kube [`Resource::DynamicType`]
//! ([`ApiGroup`]), so an operator can watch Flagger's own CRDs without touching manifests.
//!
//! [`Resource::DynamicType`]: kube::Resource::DynamicType

pub mod alert_provider;
pub mod analysis;
pub mod canary;
pub mod crd;
pub mod document;
pub mod duration;
pub mod metric_template;
pub mod provider;
mod resource;
pub mod service;
pub mod status;
pub mod validate;
pub mod weight;

pub use alert_provider::{AlertProvider, AlertProviderSpec, AlertProviderType};
pub use analysis::{
    CanaryAlert, CanaryAnalysis, CanaryMetric, CanaryWebhook, HookType, SessionAffinity, Severity,
};
pub use canary::{Canary, CanarySpec, DeploymentStrategy};
pub use k8s_openapi;
pub use metric_template::{MetricTemplate, MetricTemplateSpec, MetricsProviderType};
pub use provider::{Capabilities, Provider};
pub use resource::ApiGroup;
pub use service::CanaryService;
pub use status::{CanaryStatus, Phase};
pub use weight::Weight;

/// The API version shared by both groups.
pub const VERSION: &str = "v1beta1";

/// Name of the built-in success-rate check (percentage of non-5xx responses).
pub const METRIC_REQUEST_SUCCESS_RATE: &str = "request-success-rate";

/// Name of the built-in latency check (p99, milliseconds).
pub const METRIC_REQUEST_DURATION: &str = "request-duration";

/// Name of the statistical judge of latency: the canary's shift against the primary (percent).
pub const METRIC_JUDGE_LATENCY: &str = "judge-latency";

/// Name of the statistical judge of errors: the canary's excess failure rate over the primary's
/// (percentage points).
pub const METRIC_JUDGE_ERRORS: &str = "judge-errors";
