//! The explicit provider registry: a known name gets its provider, anything else is an error
//! that names it (Flagger silently falls back to Prometheus).

use siskin_api::MetricsProviderType;

use crate::{MetricsProvider, providers::router_stats::RouterStatsProvider};

/// A provider that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The type is valid in the API but this build has no implementation yet.
    #[error(
        "metrics provider {0:?} is not supported yet; use the built-in checks (request-success-rate, request-duration)"
    )]
    NotSupported(String),
}

/// The provider for the built-in checks: the router's live statistics.
pub fn builtin(router_admin: &str, min_samples: u64) -> Box<dyn MetricsProvider> {
    Box::new(RouterStatsProvider::new(router_admin, min_samples))
}

/// The provider for a MetricTemplate's `spec.provider.type`.
pub fn provider(kind: MetricsProviderType) -> Result<Box<dyn MetricsProvider>, RegistryError> {
    let name = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Err(RegistryError::NotSupported(name))
}
