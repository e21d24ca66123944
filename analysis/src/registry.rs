//! The explicit provider registry: every MetricTemplate provider type Flagger has gets its
//! implementation, built from the template's settings and its Secret's data; nothing falls
//! back silently (Flagger falls back to Prometheus).

use std::{collections::BTreeMap, time::Duration};

use siskin_api::MetricsProviderType;

use crate::{
    MetricsProvider, ProviderError,
    providers::{
        cloudwatch::CloudWatchProvider, datadog::DatadogProvider, dynatrace::DynatraceProvider,
        externalmetrics::ExternalMetricsProvider, graphite::GraphiteProvider,
        influxdb::InfluxProvider, keptn::KeptnProvider, newrelic::NewRelicProvider,
        prometheus::PrometheusProvider, router_stats::RouterStatsProvider, splunk::SplunkProvider,
        stackdriver::StackdriverProvider,
    },
    resolve::{ProviderSpec, type_name},
};

/// The provider types with an implementation, in the order they are listed to users.
pub const SUPPORTED: [MetricsProviderType; 11] = [
    MetricsProviderType::Prometheus,
    MetricsProviderType::Datadog,
    MetricsProviderType::Cloudwatch,
    MetricsProviderType::Newrelic,
    MetricsProviderType::Graphite,
    MetricsProviderType::Influxdb,
    MetricsProviderType::Dynatrace,
    MetricsProviderType::Splunk,
    MetricsProviderType::Stackdriver,
    MetricsProviderType::Keptn,
    MetricsProviderType::Externalmetrics,
];

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

/// What some providers need beyond their template.
#[derive(Clone, Default)]
pub struct Extras {
    /// The metric's window (Datadog, CloudWatch, New Relic, Dynatrace and Splunk ask for ten
    /// of them back from now, as in Flagger).
    pub window: Duration,
    /// The cluster (Keptn, external metrics); None outside Kubernetes.
    pub kube: Option<kube::Client>,
}

/// The provider `spec` describes, with the data of its Secret (when it names one).
pub fn build(
    spec: &ProviderSpec,
    secret: Option<&BTreeMap<String, Vec<u8>>>,
    extras: &Extras,
) -> Result<Box<dyn MetricsProvider>, ProviderError> {
    let name = type_name(spec.kind);
    let address = || {
        spec.address.clone().ok_or_else(|| {
            ProviderError::Config(format!("a {name} provider needs spec.provider.address"))
        })
    };
    let kube = || {
        extras.kube.clone().ok_or_else(|| {
            ProviderError::Config(format!(
                "the {name} provider reads the cluster's API server: it runs with siskin operator, not siskin run"
            ))
        })
    };
    let w = extras.window;
    let a = spec.address.as_deref();
    Ok(match spec.kind {
        MetricsProviderType::Prometheus => Box::new(PrometheusProvider::new(
            &address()?,
            &spec.headers,
            spec.insecure_skip_verify,
            secret,
        )?),
        MetricsProviderType::Datadog => Box::new(DatadogProvider::new(a, secret, w)?),
        MetricsProviderType::Cloudwatch => Box::new(CloudWatchProvider::new(
            spec.region.as_deref(),
            a,
            secret,
            w,
        )?),
        MetricsProviderType::Newrelic => Box::new(NewRelicProvider::new(a, secret, w)?),
        MetricsProviderType::Graphite => Box::new(GraphiteProvider::new(
            &address()?,
            spec.insecure_skip_verify,
            secret,
        )?),
        MetricsProviderType::Influxdb => Box::new(InfluxProvider::new(&address()?, secret)?),
        MetricsProviderType::Dynatrace => Box::new(DynatraceProvider::new(&address()?, secret, w)?),
        MetricsProviderType::Splunk => Box::new(SplunkProvider::new(&address()?, secret, w)?),
        MetricsProviderType::Stackdriver => Box::new(StackdriverProvider::new(a, secret)?),
        MetricsProviderType::Keptn => Box::new(KeptnProvider::new(kube()?)),
        MetricsProviderType::Externalmetrics => match a {
            Some(a) => Box::new(ExternalMetricsProvider::at(
                a,
                spec.insecure_skip_verify,
                secret,
            )?),
            None => Box::new(ExternalMetricsProvider::new(kube()?)),
        },
    })
}
