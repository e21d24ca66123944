//! Measuring a metric, the same way in every world: resolve it ([`crate::resolve`]), fetch the
//! credentials it names, build its provider ([`crate::registry`]) and ask. The driver sees only
//! [`MetricSource`]; the Kubernetes and standalone adapters give the [`Analyzer`] their
//! templates, their Secrets and their router statistics.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use siskin_api::analysis::CanaryMetric;

use siskin_api::status::Judgement;
use siskin_route::{BackendReport, Role};

use crate::{
    ProviderError, Query, Range,
    judge::{self, JudgeKind},
    providers::router_stats::combine,
    registry,
    resolve::{self, Context, Resolved, Source},
};

/// One metric measured: what was asked, and the answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// What was asked, where (None when the metric could not even be resolved).
    pub resolved: Option<Resolved>,
    /// The value, or why there is none.
    pub value: Result<f64, ProviderError>,
    /// How the statistical judge decided (judge metrics only; `value` is its bound).
    pub judgement: Option<siskin_api::status::Judgement>,
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

/// The built-in router's statistics, as every world reads them: one router in `siskin run`,
/// every router pod on Kubernetes.
#[async_trait]
pub trait RouterStats: Send + Sync {
    /// The statistics entries of every router that carries the release; with `samples`, each
    /// also carries the judge's samples of that many seconds (`GET /stats?window=`).
    async fn backends(&self, samples: Option<u64>) -> Result<Vec<BackendReport>, ProviderError>;
    /// Fewest requests a window needs before a built-in check judges it.
    fn min_samples(&self) -> u64;
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
    /// The router's statistics (the built-in checks and the judge, with the `builtin` provider).
    pub router: &'a dyn RouterStats,
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
                    judgement: None,
                };
            }
        };
        let mut judgement = None;
        let value = match &resolved.source {
            Source::Router => match &resolved.query {
                Query::Judge {
                    kind,
                    route,
                    window,
                } => self.judge(metric, *kind, route, *window).await.map(|j| {
                    let bound = j.bound;
                    judgement = Some(j);
                    bound
                }),
                Query::Builtin {
                    metric,
                    route,
                    backend,
                    window,
                } => match self.router.backends(None).await {
                    Ok(b) => combine(
                        &b,
                        route,
                        *backend,
                        *window,
                        *metric,
                        self.router.min_samples(),
                    ),
                    Err(e) => Err(e),
                },
                Query::Text(_) => Err(ProviderError::Config(
                    "the router's statistics answer only the built-in checks".into(),
                )),
            },
            Source::Provider(spec) => {
                let secret = match &spec.secret {
                    Some((ns, name)) => match self.secrets.secret(ns, name).await {
                        Ok(s) => Some(s),
                        Err(e) => {
                            return Measurement {
                                resolved: Some(resolved),
                                value: Err(e),
                                judgement: None,
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
            judgement,
        }
    }

    /// Judge metrics are not watched live: the run's confidence is spent over its interval
    /// checks, which a continuous watch would overrun.
    fn is_live(&self, metric: &CanaryMetric) -> bool {
        !metric.is_judge()
            && resolve::resolve(metric, &self.cx, None).is_ok_and(|r| r.source == Source::Router)
    }
}

impl Analyzer<'_> {
    /// The judge's verdict on the canary against the primary over `window`.
    async fn judge(
        &self,
        metric: &CanaryMetric,
        kind: JudgeKind,
        route: &str,
        window: Duration,
    ) -> Result<Judgement, ProviderError> {
        let backends = self
            .router
            .backends(Some(window.as_secs().clamp(1, judge::MAX_WINDOW.as_secs())))
            .await?;
        let canary = judge::pool(&backends, route, Role::Canary);
        let primary = judge::pool(&backends, route, Role::Primary);
        let tolerance = Range::of(metric).max.unwrap_or(0.0);
        judge::judge(
            kind,
            &canary,
            &primary,
            tolerance,
            judge::alpha(metric.confidence(), self.cx.checks),
            self.router.min_samples(),
        )
    }
}
