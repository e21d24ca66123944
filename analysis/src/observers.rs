//! The built-in checks (`request-success-rate`, `request-duration`) as PromQL, per traffic
//! provider, as Flagger's observers render them (`../shared/spec/flagger.md` §5.4), with its
//! provider-to-query fallbacks. The `builtin` provider does not use Prometheus: the router's own
//! statistics answer (`providers::router_stats`).
//!
//! Every query yields a success rate in percent or a p99 in milliseconds.

use siskin_api::Provider;

use crate::BuiltinMetric;

/// Which query family a provider's built-in checks use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observer {
    /// Siskin's router: its live statistics, no query.
    Router,
    /// Istio's `istio_requests_total` (also Flagger's fallback for SMI).
    Istio,
    /// Linkerd's `response_total`.
    Linkerd,
    /// Open Service Mesh's `osm_request_total`.
    Osm,
    /// Consul's Envoy sidecars (Siskin's own: Flagger has no Consul support).
    Consul,
    /// The application's own `http_request_duration_seconds` (Kubernetes, Gateway API).
    Http,
}

/// The observer of a traffic provider; None where Siskin has no query for it.
pub fn observer(provider: Provider) -> Option<Observer> {
    use Provider::*;
    Some(match provider {
        Builtin => Observer::Router,
        Istio | SmiV1alpha1 | SmiV1alpha2 | SmiV1alpha3 => Observer::Istio,
        Linkerd => Observer::Linkerd,
        Osm => Observer::Osm,
        Consul => Observer::Consul,
        Kubernetes | GatewayApiV1 | GatewayApiV1beta1 => Observer::Http,
        _ => return None,
    })
}

/// The PromQL template of `metric` for `observer`; None for the router, which needs none.
pub fn query(observer: Observer, metric: BuiltinMetric) -> Option<&'static str> {
    use BuiltinMetric::*;
    Some(match (observer, metric) {
        (Observer::Router, _) => return None,
        (Observer::Istio, SuccessRate) => {
            r#"sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="{{ namespace }}", destination_workload=~"{{ target }}", response_code!~"5.*" }[{{ interval }}] ) ) / sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="{{ namespace }}", destination_workload=~"{{ target }}" }[{{ interval }}] ) ) * 100"#
        }
        (Observer::Istio, DurationP99) => {
            r#"histogram_quantile( 0.99, sum( rate( istio_request_duration_milliseconds_bucket{ reporter="destination", destination_workload_namespace="{{ namespace }}", destination_workload=~"{{ target }}" }[{{ interval }}] ) ) by (le) )"#
        }
        (Observer::Linkerd, SuccessRate) => {
            r#"sum( rate( response_total{ namespace="{{ namespace }}", deployment=~"{{ target }}", classification!="failure", direction="inbound" }[{{ interval }}] ) ) / sum( rate( response_total{ namespace="{{ namespace }}", deployment=~"{{ target }}", direction="inbound" }[{{ interval }}] ) ) * 100"#
        }
        (Observer::Linkerd, DurationP99) => {
            r#"histogram_quantile( 0.99, sum( rate( response_latency_ms_bucket{ namespace="{{ namespace }}", deployment=~"{{ target }}", direction="inbound" }[{{ interval }}] ) ) by (le) )"#
        }
        (Observer::Osm, SuccessRate) => {
            r#"sum( rate( osm_request_total{ destination_namespace="{{ namespace }}", destination_kind="Deployment", destination_name="{{ target }}", response_code!~"5.*" }[{{ interval }}] ) ) / sum( rate( osm_request_total{ destination_namespace="{{ namespace }}", destination_kind="Deployment", destination_name="{{ target }}" }[{{ interval }}] ) ) * 100"#
        }
        (Observer::Osm, DurationP99) => {
            r#"histogram_quantile( 0.99, sum( rate( osm_request_duration_ms_bucket{ destination_namespace="{{ namespace }}", destination_kind="Deployment", destination_name="{{ target }}" }[{{ interval }}] ) ) by (le) )"#
        }
        // The canary's Envoy sidecar, inbound (`local_app`), tagged with its Consul service by
        // Consul's default stats tags: the consul backend registers the canary's pods as the
        // Consul service `<apex>-canary`.
        (Observer::Consul, SuccessRate) => {
            r#"sum( rate( envoy_cluster_upstream_rq{ namespace="{{ namespace }}", consul_source_service="{{ service }}-canary", envoy_cluster_name="local_app", envoy_response_code!~"5.*" }[{{ interval }}] ) ) / sum( rate( envoy_cluster_upstream_rq{ namespace="{{ namespace }}", consul_source_service="{{ service }}-canary", envoy_cluster_name="local_app" }[{{ interval }}] ) ) * 100"#
        }
        (Observer::Consul, DurationP99) => {
            r#"histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ namespace="{{ namespace }}", consul_source_service="{{ service }}-canary", envoy_cluster_name="local_app" }[{{ interval }}] ) ) by (le) )"#
        }
        (Observer::Http, SuccessRate) => {
            r#"sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", status!~"5.*" }[{{ interval }}] ) ) / sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[{{ interval }}] ) ) * 100"#
        }
        // Seconds in the application's histogram, milliseconds in the check (Flagger multiplies
        // in code; the query does it here, so the value asked is the value judged).
        (Observer::Http, DurationP99) => {
            r#"histogram_quantile( 0.99, sum( rate( http_request_duration_seconds_bucket{ kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[{{ interval }}] ) ) by (le) ) * 1000"#
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_with_a_backend_has_an_observer() {
        for p in [
            Provider::Builtin,
            Provider::Kubernetes,
            Provider::GatewayApiV1,
            Provider::GatewayApiV1beta1,
            Provider::Istio,
            Provider::Linkerd,
            Provider::SmiV1alpha3,
            Provider::Osm,
            Provider::Consul,
        ] {
            assert!(observer(p).is_some(), "{p}");
        }
        assert_eq!(
            observer(Provider::SmiV1alpha1),
            Some(Observer::Istio),
            "Flagger's fallback"
        );
        assert_eq!(query(Observer::Router, BuiltinMetric::SuccessRate), None);
    }
}
