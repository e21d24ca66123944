//! Measuring a metric, the same way in every world: resolve it ([`crate::resolve`]), fetch the
//! credentials it names, build its provider ([`crate::registry`]) and ask. The driver sees only
//! [`MetricSource`]; the Kubernetes and standalone adapters give the [`Analyzer`] their
//! templates, their Secrets and their router statistics.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use siskin_api::analysis::CanaryMetric;

use crate::{
    MetricsProvider, ProviderError, registry,
    resolve::{self, Context, Resolved, Source},
};

/// One metric measured: what was asked, and the answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// What was asked, where (None when the metric could not even be resolved).
    pub resolved: Option<Resolved>,
    /// The value, or why there is none.
    pub value: Result<f64, ProviderError>,
}

/// Where the driver gets metric values.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// Measures `metric` over its interval, or over `window` when given (the live window of
    /// the critical checks).
    async fn measure(&self, metric: &CanaryMetric, window: Option<Duration>) -> Measurement;
    /// Whether `metric` is answered by the router's live statistics (and can be watched
    /// between steps).
    fn is_live(&self, metric: &CanaryMetric) -> bool;
}

/// Where credentials come from: a Secret in Kubernetes, the file in `siskin run`.
#[async_trait]
pub trait Secrets: Send + Sync {
    /// The data of Secret `namespace/name`.
    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, ProviderError>;
}

/// No Secrets at all (every lookup is an error naming the Secret).
pub struct NoSecrets;

#[async_trait]
impl Secrets for NoSecrets {
    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, ProviderError> {
        Err(ProviderError::Config(format!(
            "Secret {namespace}/{name} is not available here"
        )))
    }
}

/// Measures the metrics of one Canary.
pub struct Analyzer<'a> {
    /// What the metrics are resolved with.
    pub cx: Context<'a>,
    /// The router's statistics (the built-in checks of the `builtin` provider).
    pub router: &'a dyn MetricsProvider,
    /// Credentials.
    pub secrets: &'a dyn Secrets,
    /// The cluster, for the providers that read its API server (Keptn, external metrics).
    pub kube: Option<kube::Client>,
}

#[async_trait]
impl MetricSource for Analyzer<'_> {
    async fn measure(&self, metric: &CanaryMetric, window: Option<Duration>) -> Measurement {
        let resolved = match resolve::resolve(metric, &self.cx, window) {
            Ok(r) => r,
            Err(e) => {
                return Measurement {
                    resolved: None,
                    value: Err(e),
                };
            }
        };
        let value = match &resolved.source {
            Source::Router => self.router.query(&resolved.query).await,
            Source::Provider(spec) => {
                let secret = match &spec.secret {
                    Some((ns, name)) => match self.secrets.secret(ns, name).await {
                        Ok(s) => Some(s),
                        Err(e) => {
                            return Measurement {
                                resolved: Some(resolved),
                                value: Err(e),
                            };
                        }
                    },
                    None => None,
                };
                let extras = registry::Extras {
                    window: resolved.window,
                    kube: self.kube.clone(),
                };
                match registry::build(spec, secret.as_ref(), &extras) {
                    Ok(p) => p.query(&resolved.query).await,
                    Err(e) => Err(e),
                }
            }
        };
        Measurement {
            resolved: Some(resolved),
            value,
        }
    }

    fn is_live(&self, metric: &CanaryMetric) -> bool {
        resolve::resolve(metric, &self.cx, None).is_ok_and(|r| r.source == Source::Router)
    }
}
