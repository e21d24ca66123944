//! The Prometheus provider against a real Prometheus (Debian's `prometheus`, on loopback, 1 s
//! scrape): the router's own series through a MetricTemplate, every mesh's built-in queries on
//! series written into its storage with promtool (no local data plane produces them), and
//! refused credentials, a bad query, no data and a stopped server, each told apart.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use siskin_analysis::{
    Analyzer, Measurement, MetricSource, NoSecrets, ProviderError, Secrets, Source, Vars,
    assess_measurement,
    providers::router_stats::RouterStatsProvider,
    resolve::{self, Context},
};
use siskin_api::{MetricTemplateSpec, Provider, analysis::CanaryMetric, status::Verdict};
use siskin_e2e::prometheus::{Options, Prometheus};
use siskin_router::{Options as RouterOptions, Router, Source as RouterSource};

use siskin_e2e::free_port;

fn vars() -> Vars {
    Vars {
        name: "podinfo".into(),
        namespace: "test".into(),
        target: "podinfo".into(),
        service: "podinfo".into(),
        ingress: "podinfo".into(),
        route: "podinfo".into(),
        ..Default::default()
    }
}

fn metric(yaml: &str) -> CanaryMetric {
    serde_yaml::from_str(yaml).unwrap()
}

/// Credentials of the test user (bcrypt of "test" as Prometheus's web config wants it).
const ADMIN_HASH: &str = "$2b$12$hNf2lSsxfm0.i4a.1kVpSOVyBCfIB51VRjgBUyv6kdnyTlgWj81Ay";

struct Creds(BTreeMap<String, Vec<u8>>);

#[async_trait::async_trait]
impl Secrets for Creds {
    async fn secret(&self, _: &str, _: &str) -> Result<BTreeMap<String, Vec<u8>>, ProviderError> {
        Ok(self.0.clone())
    }
}

async fn measure(
    provider: Provider,
    server: &str,
    templates: &BTreeMap<(String, String), MetricTemplateSpec>,
    secrets: &dyn Secrets,
    m: &CanaryMetric,
) -> Measurement {
    let router = RouterStatsProvider::new("http://127.0.0.1:1", 10);
    let a = Analyzer {
        cx: Context {
            vars: vars(),
            provider,
            metrics_server: Some(server),
            route: "test/podinfo",
            templates,
            checks: 5,
        },
        router: &router,
        secrets,
        kube: None,
    };
    a.measure(m, None).await
}

/// Ten minutes of per-second traffic, every 5 s: 98 % success and a p99 of 100 ms, in the
/// series of each mesh (Istio, Linkerd, OSM, Consul's Envoy) and of an app's own histogram.
fn mesh_series() -> String {
    let now = jiff::Timestamp::now().as_second();
    let mut out = String::new();
    // (family, labels of a success, labels of a failure, per-second counts)
    let counters: [(&str, &str, &str); 5] = [
        (
            "istio_requests_total",
            r#"reporter="destination",destination_workload_namespace="test",destination_workload="podinfo",response_code="200""#,
            r#"reporter="destination",destination_workload_namespace="test",destination_workload="podinfo",response_code="503""#,
        ),
        (
            "response_total",
            r#"namespace="test",deployment="podinfo",direction="inbound",classification="success""#,
            r#"namespace="test",deployment="podinfo",direction="inbound",classification="failure""#,
        ),
        (
            "osm_request_total",
            r#"destination_namespace="test",destination_kind="Deployment",destination_name="podinfo",response_code="200""#,
            r#"destination_namespace="test",destination_kind="Deployment",destination_name="podinfo",response_code="500""#,
        ),
        (
            "envoy_cluster_upstream_rq",
            r#"namespace="test",consul_source_service="podinfo-canary",envoy_cluster_name="local_app",envoy_response_code="200""#,
            r#"namespace="test",consul_source_service="podinfo-canary",envoy_cluster_name="local_app",envoy_response_code="503""#,
        ),
        (
            "http_request_duration_seconds_count",
            r#"kubernetes_namespace="test",kubernetes_pod_name="podinfo-5d8f7c9b4-x2k9q",status="200""#,
            r#"kubernetes_namespace="test",kubernetes_pod_name="podinfo-5d8f7c9b4-x2k9q",status="500""#,
        ),
    ];
    let times: Vec<i64> = (0..120).map(|i| now - 600 + i * 5).collect();
    for (family, ok, bad) in counters {
        out.push_str(&format!("# TYPE {family} gauge\n"));
        for (labels, per_s) in [(ok, 98), (bad, 2)] {
            for (i, t) in times.iter().enumerate() {
                out.push_str(&format!(
                    "{family}{{{labels}}} {} {t}\n",
                    i as i64 * 5 * per_s
                ));
            }
        }
    }
    // Histograms: per second 50 under 10 ms, 90 under 50, 99 under 100, all under 250.
    let histograms: [(&str, &str, [&str; 5]); 5] = [
        (
            "istio_request_duration_milliseconds_bucket",
            r#"reporter="destination",destination_workload_namespace="test",destination_workload="podinfo""#,
            ["10", "50", "100", "250", "+Inf"],
        ),
        (
            "response_latency_ms_bucket",
            r#"namespace="test",deployment="podinfo",direction="inbound""#,
            ["10", "50", "100", "250", "+Inf"],
        ),
        (
            "osm_request_duration_ms_bucket",
            r#"destination_namespace="test",destination_kind="Deployment",destination_name="podinfo""#,
            ["10", "50", "100", "250", "+Inf"],
        ),
        (
            "envoy_cluster_upstream_rq_time_bucket",
            r#"namespace="test",consul_source_service="podinfo-canary",envoy_cluster_name="local_app""#,
            ["10", "50", "100", "250", "+Inf"],
        ),
        (
            "http_request_duration_seconds_bucket",
            r#"kubernetes_namespace="test",kubernetes_pod_name="podinfo-5d8f7c9b4-x2k9q""#,
            ["0.01", "0.05", "0.1", "0.25", "+Inf"],
        ),
    ];
    for (family, labels, les) in histograms {
        out.push_str(&format!("# TYPE {family} gauge\n"));
        for (le, per_s) in les.iter().zip([50, 90, 99, 100, 100]) {
            for (i, t) in times.iter().enumerate() {
                out.push_str(&format!(
                    "{family}{{{labels},le=\"{le}\"}} {} {t}\n",
                    i as i64 * 5 * per_s
                ));
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_providers_built_in_queries_read_their_meshs_series() {
    let prom = Prometheus::start(&Options {
        openmetrics: Some(mesh_series()),
        ..Default::default()
    })
    .unwrap();
    let templates = BTreeMap::new();
    let sr = metric("{name: request-success-rate, interval: 1m}");
    let p99 = metric("{name: request-duration, interval: 1m}");
    for provider in [
        Provider::Istio,
        Provider::Linkerd,
        Provider::Osm,
        Provider::Consul,
        Provider::SmiV1alpha3,
        Provider::Kubernetes,
        Provider::GatewayApiV1,
    ] {
        let m = measure(provider, &prom.url, &templates, &NoSecrets, &sr).await;
        let v = m
            .value
            .unwrap_or_else(|e| panic!("{provider}: {e}\n{}", prom.log()));
        assert!((v - 98.0).abs() < 0.5, "{provider} success rate {v}");
        let m = measure(provider, &prom.url, &templates, &NoSecrets, &p99).await;
        let v = m.value.unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert!((v - 100.0).abs() < 1.0, "{provider} p99 {v} ms");
        assert_eq!(m.resolved.unwrap().provider(), "prometheus");
    }
}

async fn router_with_apps() -> (u16, u16) {
    let serve = |error_rate: f64, latency: u64| async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let app = siskin_sample_app::App::new("podinfo", "x", error_rate, latency);
        tokio::spawn(siskin_sample_app::serve_on(l, app));
        port
    };
    let (p, c) = (serve(0.0, 0).await, serve(0.2, 30).await);
    let dir = std::env::temp_dir().join(format!("siskin-prom-test-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("router.yaml");
    std::fs::write(&path, format!(
        "routes:\n- name: test/podinfo\n  rules:\n  - backendRefs: [{{name: p, weight: 50}}, {{name: c, weight: 50}}]\nbackends:\n- {{name: p, role: primary, endpoints: ['127.0.0.1:{p}']}}\n- {{name: c, role: canary, endpoints: ['127.0.0.1:{c}']}}\n"
    )).unwrap();
    let (listen, admin) = (free_port(), free_port());
    let router = Router::new(RouterOptions {
        max_concurrent: 1000,
        connect_timeout: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(1),
        ..RouterOptions::new(
            RouterSource::File(path),
            SocketAddr::from((Ipv4Addr::LOCALHOST, listen)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, admin)),
        )
    })
    .unwrap();
    tokio::spawn(router.run());
    (listen, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_template_reads_the_routers_own_series() {
    let (listen, admin) = router_with_apps().await;
    let prom = Prometheus::start(&Options {
        scrape: vec![format!("127.0.0.1:{admin}")],
        ..Default::default()
    })
    .unwrap();
    // About 100 requests a second, half to the canary (20 % errors, +30 ms), for 15 s.
    let load = tokio::spawn(async move {
        let client = siskin_analysis::providers::http().build().unwrap();
        loop {
            let _ = client
                .get(format!("http://127.0.0.1:{listen}/"))
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(15)).await;
    let mut templates = BTreeMap::new();
    let spec = |query: &str| MetricTemplateSpec {
        provider: serde_yaml::from_str(&format!("{{type: prometheus, address: '{}'}}", prom.url))
            .unwrap(),
        query: query.into(),
    };
    templates.insert(
        ("test".to_string(), "error-rate".to_string()),
        spec(r#"sum(rate(siskin_router_requests_total{route="{{ namespace }}/{{ target }}", backend="canary", status_class="5xx"}[{{ interval }}])) / sum(rate(siskin_router_requests_total{route="{{ namespace }}/{{ target }}", backend="canary"}[{{ interval }}])) * 100"#),
    );
    templates.insert(
        ("test".to_string(), "latency".to_string()),
        spec(r#"histogram_quantile(0.99, sum(rate(siskin_router_request_duration_seconds_bucket{route="{{ namespace }}/{{ target }}", backend="canary"}[{{ interval }}])) by (le)) * 1000"#),
    );
    let errors = metric(
        "{name: errors, templateRef: {name: error-rate}, interval: 10s, thresholdRange: {max: 1}}",
    );
    let m = measure(
        Provider::Builtin,
        &prom.url,
        &templates,
        &NoSecrets,
        &errors,
    )
    .await;
    let v = m
        .value
        .clone()
        .unwrap_or_else(|e| panic!("{e}\n{}", prom.log()));
    assert!(
        (10.0..=30.0).contains(&v),
        "canary error rate {v} % (20 % set)"
    );
    let check = assess_measurement(&errors, &m, jiff::Timestamp::now());
    assert_eq!(check.verdict, Verdict::Fail);
    assert_eq!(check.provider.as_deref(), Some("prometheus"));
    assert!(
        check
            .query
            .as_deref()
            .unwrap()
            .contains(r#"route="test/podinfo""#)
            && check.query.as_deref().unwrap().contains("[10s]"),
        "the query as sent: {:?}",
        check.query
    );
    let latency = metric("{name: latency, templateRef: {name: latency}, interval: 10s}");
    let v = measure(
        Provider::Builtin,
        &prom.url,
        &templates,
        &NoSecrets,
        &latency,
    )
    .await
    .value
    .unwrap();
    assert!(
        (25.0..=50.0).contains(&v),
        "canary p99 {v} ms (+30 ms set, bucket 25-50 ms)"
    );
    load.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_a_bad_query_no_data_and_a_stopped_server_are_told_apart() {
    let mut prom = Prometheus::start(&Options {
        basic_auth: Some(("admin".into(), ADMIN_HASH.into())),
        ..Default::default()
    })
    .unwrap();
    let mut templates = BTreeMap::new();
    let spec = |query: &str| MetricTemplateSpec {
        provider: serde_yaml::from_str(&format!(
            "{{type: prometheus, address: '{}', secretRef: {{name: prom}}}}",
            prom.url
        ))
        .unwrap(),
        query: query.into(),
    };
    templates.insert(("test".into(), "one".into()), spec("vector(1)"));
    templates.insert(("test".into(), "bad".into()), spec("sum(rate(x[1m]"));
    templates.insert(("test".into(), "none".into()), spec("no_such_series"));
    let m = |name: &str| metric(&format!("{{name: {name}, templateRef: {{name: {name}}}}}"));
    let good = Creds(
        [
            ("username".to_string(), b"admin".to_vec()),
            ("password".to_string(), b"test".to_vec()),
        ]
        .into(),
    );
    let wrong = Creds(
        [
            ("username".to_string(), b"admin".to_vec()),
            ("password".to_string(), b"nope".to_vec()),
        ]
        .into(),
    );
    let now = jiff::Timestamp::now();
    let prom_url = prom.url.clone();
    let ask = |secrets: &'static dyn Secrets, name: &'static str| {
        let templates = templates.clone();
        let url = prom_url.clone();
        async move { measure(Provider::Builtin, &url, &templates, secrets, &m(name)).await }
    };
    let good: &'static Creds = Box::leak(Box::new(good));
    let wrong: &'static Creds = Box::leak(Box::new(wrong));
    assert_eq!(ask(good, "one").await.value.unwrap(), 1.0);
    let refused = ask(wrong, "one").await;
    assert!(
        matches!(
            refused.value,
            Err(ProviderError::Unauthorized { status: 401, .. })
        ),
        "{:?}",
        refused.value
    );
    assert_eq!(
        assess_measurement(&m("one"), &refused, now).verdict,
        Verdict::Error
    );
    let bad = ask(good, "bad").await;
    assert!(
        matches!(bad.value, Err(ProviderError::BadQuery(_))),
        "{:?}",
        bad.value
    );
    let none = ask(good, "none").await;
    assert!(
        matches!(none.value, Err(ProviderError::NoValues)),
        "{:?}",
        none.value
    );
    assert_eq!(
        assess_measurement(&m("none"), &none, now).verdict,
        Verdict::NoData
    );
    prom.stop();
    let gone = ask(good, "one").await;
    assert!(
        matches!(gone.value, Err(ProviderError::Unreachable(_))),
        "{:?}",
        gone.value
    );
    assert!(matches!(
        gone.resolved.map(|r| r.source),
        Some(Source::Provider(_))
    ));
}

#[test]
fn a_built_in_check_outside_the_router_needs_a_metrics_server() {
    let templates = BTreeMap::new();
    let cx = Context {
        vars: vars(),
        provider: Provider::GatewayApiV1,
        metrics_server: None,
        route: "test/podinfo",
        templates: &templates,
        checks: 5,
    };
    let e = resolve::resolve(&metric("{name: request-success-rate}"), &cx, None).unwrap_err();
    assert!(e.to_string().contains("--metrics-server"), "{e}");
    let e = resolve::resolve(
        &metric("{name: x, templateRef: {name: missing}}"),
        &cx,
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("MetricTemplate test/missing does not exist"),
        "{e}"
    );
}
