//! The explicit provider registry: a provider type with an implementation gets it, built from
//! the MetricTemplate's settings and its Secret's data; any other is an error that names it
//! (Flagger silently falls back to Prometheus).

use std::collections::BTreeMap;

use siskin_api::MetricsProviderType;

use crate::{
    MetricsProvider, ProviderError,
    providers::{prometheus::PrometheusProvider, router_stats::RouterStatsProvider},
    resolve::{ProviderSpec, type_name},
};

/// The provider types with an implementation, in the order they are listed to users.
pub const SUPPORTED: [MetricsProviderType; 1] = [MetricsProviderType::Prometheus];

/// Whether `kind` has an implementation.
pub fn supported(kind: MetricsProviderType) -> bool {
    SUPPORTED.contains(&kind)
}

/// The names of the provider types with an implementation.
pub fn supported_names() -> Vec<String> {
    SUPPORTED.iter().map(|k| type_name(*k)).collect()
}

/// The provider for the built-in checks: the router's live statistics.
pub fn builtin(router_admin: &str, min_samples: u64) -> Box<dyn MetricsProvider> {
    Box::new(RouterStatsProvider::new(router_admin, min_samples))
}

/// The provider `spec` describes, with the data of its Secret (when it names one).
pub fn build(
    spec: &ProviderSpec,
    secret: Option<&BTreeMap<String, Vec<u8>>>,
) -> Result<Box<dyn MetricsProvider>, ProviderError> {
    let address = || {
        spec.address.clone().ok_or_else(|| {
            ProviderError::Config(format!(
                "a {} provider needs spec.provider.address",
                type_name(spec.kind)
            ))
        })
    };
    match spec.kind {
        MetricsProviderType::Prometheus => Ok(Box::new(PrometheusProvider::new(
            &address()?,
            &spec.headers,
            spec.insecure_skip_verify,
            secret,
        )?)),
        other => Err(ProviderError::Config(format!(
            "metrics provider {} is not supported yet; use one of {}",
            type_name(other),
            supported_names().join(", ")
        ))),
    }
}
