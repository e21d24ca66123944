//! The built-in checks read from a real router's statistics after real traffic.

#![allow(clippy::unwrap_used)]

use std::{
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::SeqCst},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use siskin_analysis::{
    BuiltinMetric, MetricsProvider, ProviderError, Query, assess,
    providers::router_stats::RouterStatsProvider, registry,
};
use siskin_api::status::Verdict;
use siskin_router::{Options, Router, Source};

use siskin_e2e::free_port;

/// An upstream whose every `fail_every`-th answer is a 500.
async fn upstream(fail_every: u64) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let n = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let n = n.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let i = n.fetch_add(1, SeqCst) + 1;
                    async move {
                        let mut r = http::Response::new(Full::new(Bytes::from_static(b"ok")));
                        if fail_every > 0 && i.is_multiple_of(fail_every) {
                            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

async fn router(primary: u16, canary: u16) -> (u16, String) {
    let dir = std::env::temp_dir().join(format!("siskin-analysis-test-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("router.yaml");
    std::fs::write(&path, format!(
        "routes:\n- name: shop/checkout\n  rules:\n  - backendRefs: [{{name: p, weight: 50}}, {{name: c, weight: 50}}]\nbackends:\n- {{name: p, role: primary, endpoints: ['127.0.0.1:{primary}']}}\n- {{name: c, role: canary, endpoints: ['127.0.0.1:{canary}']}}\n"
    )).unwrap();
    let (listen, admin) = (free_port(), free_port());
    let router = Router::new(Options {
        max_concurrent: 1000,
        connect_timeout: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(1),
        ..Options::new(
            Source::File(path),
            SocketAddr::from((Ipv4Addr::LOCALHOST, listen)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, admin)),
        )
    })
    .unwrap();
    tokio::spawn(router.run());
    let provider = RouterStatsProvider::new(format!("http://127.0.0.1:{admin}"), 10);
    for _ in 0..50 {
        if provider.health().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (listen, format!("http://127.0.0.1:{admin}"))
}

fn query(metric: BuiltinMetric) -> Query {
    Query::Builtin {
        metric,
        route: "shop/checkout".into(),
        backend: siskin_route::Role::Canary,
        window: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_rate_and_p99_of_the_canary_from_live_statistics() {
    let (p, c) = (upstream(0).await, upstream(4).await);
    let (port, admin) = router(p, c).await;
    let provider = registry::builtin(&admin, 10);
    assert_eq!(
        provider.query(&query(BuiltinMetric::SuccessRate)).await,
        Err(ProviderError::NoValues),
        "no traffic: no value"
    );
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    for _ in 0..400 {
        let resp = client
            .get(format!("http://127.0.0.1:{port}/").parse().unwrap())
            .await
            .unwrap();
        let _ = resp.into_body().collect().await;
    }
    let rate = provider
        .query(&query(BuiltinMetric::SuccessRate))
        .await
        .unwrap();
    assert!(
        (rate - 75.0).abs() < 1.0,
        "every 4th canary answer fails (about 200 canary requests, so within a point of 75): {rate}"
    );
    let p99 = provider
        .query(&query(BuiltinMetric::DurationP99))
        .await
        .unwrap();
    assert!(p99 > 0.0 && p99 < 1000.0, "{p99}");
    let metric = siskin_api::CanaryMetric {
        name: "request-success-rate".into(),
        threshold_range: Some(siskin_api::analysis::ThresholdRange {
            min: Some(99.0),
            max: None,
        }),
        ..Default::default()
    };
    let check = assess(&metric, Ok(rate), jiff::Timestamp::UNIX_EPOCH);
    assert_eq!(check.verdict, Verdict::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_samples_and_unreachable_routers_are_not_values() {
    let (p, c) = (upstream(0).await, upstream(0).await);
    let (port, admin) = router(p, c).await;
    let provider = RouterStatsProvider::new(&admin, 1000);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    for _ in 0..40 {
        let resp = client
            .get(format!("http://127.0.0.1:{port}/").parse().unwrap())
            .await
            .unwrap();
        let _ = resp.into_body().collect().await;
    }
    match provider.query(&query(BuiltinMetric::SuccessRate)).await {
        Err(ProviderError::TooFewSamples { got, need: 1000 }) => assert!(got > 0 && got < 40),
        other => panic!("{other:?}"),
    }
    let gone = RouterStatsProvider::new(format!("http://127.0.0.1:{}", free_port()), 10);
    assert!(matches!(
        gone.query(&query(BuiltinMetric::SuccessRate)).await,
        Err(ProviderError::Unreachable(_))
    ));
}
