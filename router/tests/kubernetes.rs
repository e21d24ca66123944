//! The router's Kubernetes source against a real API server: an HTTPRoute whose parent is a
//! Service (GAMMA) is served with the endpoints of its backends' EndpointSlices, and a weight
//! change in the HTTPRoute reaches traffic; a GRPCRoute is served by method and header.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::{
    Api,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams},
    core::ApiResource,
};
use serde_json::json;
use siskin_e2e::{ControlPlane, localnode};
use support::{RouterProcess, Upstream, get, http1_client};

fn httproute(weights: (u32, u32)) -> serde_json::Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "podinfo"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "podinfo", "port": 80}],
            "rules": [{"name": "siskin-canary", "backendRefs": [
                {"name": "podinfo-primary", "port": 80, "weight": weights.0},
                {"name": "podinfo-canary", "port": 80, "weight": weights.1}]}]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_httproutes_with_service_parents_and_follows_weight_changes() {
    let plane = ControlPlane::shared();
    let client = plane.client().await.unwrap();
    let ns = format!("router-{}", std::process::id() % 100_000);
    let pp = PatchParams::apply("test").force();
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            ),
        )
        .await
        .unwrap();
    let (p, c) = (
        Upstream::start("primary", false).await,
        Upstream::start("canary", false).await,
    );
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    for (name, port) in [
        ("podinfo", 0),
        ("podinfo-primary", p.port),
        ("podinfo-canary", c.port),
    ] {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 9898}]}});
        services
            .patch(name, &pp, &Patch::Apply(&svc))
            .await
            .unwrap();
        if port > 0 {
            localnode::publish_endpoints(&client, &ns, name, "http", &[port])
                .await
                .unwrap();
        }
    }
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    );
    let routes: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    routes
        .patch("podinfo", &pp, &Patch::Apply(httproute((100, 0))))
        .await
        .unwrap();
    // A route attached to somebody else's Gateway is not ours to serve.
    let foreign = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "foreign"},
        "spec": {"parentRefs": [{"name": "other-gateway"}], "rules": [{"backendRefs": [{"name": "podinfo-canary", "port": 80}]}]}});
    routes
        .patch("foreign", &pp, &Patch::Apply(&foreign))
        .await
        .unwrap();

    let router = RouterProcess::start_kubernetes(&plane.kubeconfig, &ns).await;
    let http = http1_client();
    // Traffic for a Service parent is addressed to that Service.
    let host = format!("podinfo.{ns}.svc.cluster.local:80");
    let host = [("host", host.as_str())];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body, _) = get(&http, router.port, "/", &host).await;
        if status == 200 {
            assert!(body.starts_with("primary"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "route not served in time: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _, _) = get(&http, router.port, "/", &[("host", "other.example")]).await;
    assert_eq!(
        status, 404,
        "a Service parent's route answers only for that Service"
    );
    let config = router.admin_get("/config").await.unwrap();
    assert!(
        config.contains(&format!("{ns}/podinfo")) && !config.contains(&format!("{ns}/foreign")),
        "{config}"
    );

    routes
        .patch("podinfo", &pp, &Patch::Apply(httproute((50, 50))))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut canary = 0;
    while canary == 0 {
        assert!(Instant::now() < deadline, "weight change not applied");
        for _ in 0..20 {
            canary += usize::from(
                get(&http, router.port, "/", &host)
                    .await
                    .1
                    .starts_with("canary"),
            );
        }
    }
    let mut hits = 0;
    for _ in 0..200 {
        hits += usize::from(
            get(&http, router.port, "/", &host)
                .await
                .1
                .starts_with("canary"),
        );
    }
    assert!((60..=140).contains(&hits), "{hits} of 200 at 50/50");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_grpcroutes_by_method_and_header() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    use std::sync::atomic::Ordering::SeqCst;

    let plane = ControlPlane::shared();
    let client = plane.client().await.unwrap();
    let ns = format!("grpc-{}", std::process::id() % 100_000);
    let pp = PatchParams::apply("test").force();
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            ),
        )
        .await
        .unwrap();
    let (p, c) = (
        Upstream::start("primary", true).await,
        Upstream::start("canary", true).await,
    );
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    for (name, port) in [
        ("echo", 0),
        ("echo-primary", p.port),
        ("echo-canary", c.port),
    ] {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"name": "grpc", "port": 9999, "appProtocol": "kubernetes.io/h2c"}]}});
        services
            .patch(name, &pp, &Patch::Apply(&svc))
            .await
            .unwrap();
        if port > 0 {
            localnode::publish_endpoints(&client, &ns, name, "grpc", &[port])
                .await
                .unwrap();
        }
    }
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "GRPCRoute"),
        "grpcroutes",
    );
    let routes: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute", "metadata": {"name": "echo"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "echo", "port": 9999}],
            "rules": [
                {"name": "siskin-ab", "matches": [{"method": {"service": "pkg.Echo", "method": "Say"},
                    "headers": [{"name": "x-canary", "value": "insider"}]}],
                 "backendRefs": [{"name": "echo-primary", "port": 9999, "weight": 0}, {"name": "echo-canary", "port": 9999, "weight": 100}]},
                {"name": "siskin-primary", "backendRefs": [{"name": "echo-primary", "port": 9999}]}]}});
    routes
        .patch("echo", &pp, &Patch::Apply(&route))
        .await
        .unwrap();
    let router = RouterProcess::start_kubernetes(&plane.kubeconfig, &ns).await;
    let h2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let call = |path: &str, insider: bool| {
        let mut req = http::Request::post(format!("http://127.0.0.1:{}{path}", router.port))
            .header("host", format!("echo.{ns}:9999"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if insider {
            req = req.header("x-canary", "insider");
        }
        let req = req
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap();
        let h2 = h2.clone();
        async move {
            let resp = h2.request(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap();
            let grpc_status = body.trailers().and_then(|t| t.get("grpc-status").cloned());
            (status, grpc_status)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while call("/pkg.Echo/Say", false).await.0 != 200 {
        assert!(Instant::now() < deadline, "GRPCRoute not served in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (p0, c0) = (p.hits.load(SeqCst), c.hits.load(SeqCst));
    for _ in 0..10 {
        let (status, grpc_status) = call("/pkg.Echo/Say", true).await;
        assert_eq!(status, 200);
        assert_eq!(grpc_status.unwrap(), "0", "trailers pass through");
        call("/pkg.Echo/Say", false).await;
        call("/pkg.Echo/Other", true).await;
    }
    assert_eq!(
        c.hits.load(SeqCst) - c0,
        10,
        "the matching method with the header: canary"
    );
    assert_eq!(p.hits.load(SeqCst) - p0, 20, "everything else: primary");
}

/// HTTPS listeners of a Gateway of the router's class: their `certificateRefs` Secrets are
/// served by SNI on the TLS listener, a rotated Secret reaches new handshakes, and a broken
/// update keeps the last good certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_tls_from_gateway_certificate_refs() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    use k8s_openapi::api::core::v1::Secret;
    use support::tls::{Pki, handshake};

    let plane = ControlPlane::shared();
    let client = plane.client().await.unwrap();
    let ns = format!("gwtls-{}", std::process::id() % 100_000);
    let pp = PatchParams::apply("test").force();
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            ),
        )
        .await
        .unwrap();
    let shop = Upstream::start("shop", false).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop"},
        "spec": {"selector": {"app": "shop"}, "ports": [{"name": "http", "port": 80, "targetPort": 9898}]}});
    services
        .patch("shop", &pp, &Patch::Apply(&svc))
        .await
        .unwrap();
    localnode::publish_endpoints(&client, &ns, "shop", "http", &[shop.port])
        .await
        .unwrap();
    let pki = Pki::new();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let put_secret = |cert: String, key: String| {
        let secrets = secrets.clone();
        let pp = pp.clone();
        async move {
            let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-tls"},
                "type": "kubernetes.io/tls", "stringData": {"tls.crt": cert, "tls.key": key}});
            secrets
                .patch("shop-tls", &pp, &Patch::Apply(&s))
                .await
                .unwrap();
        }
    };
    let (cert, key, first) = pki.issue_pem("shop.example");
    put_secret(cert, key.clone()).await;
    let gateways: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"),
            "gateways",
        ),
    );
    let gw = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "edge"},
        "spec": {"gatewayClassName": "siskin", "listeners": [
            {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "shop.example",
             "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "shop-tls"}]}}]}});
    gateways
        .patch("edge", &pp, &Patch::Apply(&gw))
        .await
        .unwrap();
    let routes: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            "httproutes",
        ),
    );
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "shop"},
        "spec": {"parentRefs": [{"name": "edge"}], "hostnames": ["shop.example"],
            "rules": [{"backendRefs": [{"name": "shop", "port": 80}]}]}});
    routes
        .patch("shop", &pp, &Patch::Apply(&route))
        .await
        .unwrap();

    let tls_port = support::free_port();
    let router = RouterProcess::start_kubernetes_with(
        &plane.kubeconfig,
        &ns,
        &["--tls-listen", &format!("127.0.0.1:{tls_port}")],
    )
    .await;
    let served = |want: Vec<u8>| {
        let pki = &pki;
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok((tls, leaf, _)) =
                    handshake(pki, tls_port, "shop.example", &[b"http/1.1"]).await
                    && leaf == want
                {
                    return tls;
                }
                assert!(
                    Instant::now() < deadline,
                    "the Secret's certificate was not served in time"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let tls = served(first.clone()).await;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let req = http::Request::get("/cart")
            .header("host", "shop.example")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = h1.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        if status == 200 {
            assert_eq!(&body[..], b"shop /cart");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "route not served over TLS: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Rotation: cert-manager rewrites the Secret; new handshakes get the new certificate.
    let (cert2, key2, second) = pki.issue_pem("shop.example");
    put_secret(cert2.clone(), key2).await;
    served(second.clone()).await;

    // A broken update (a key that is not the certificate's) keeps the last good one.
    put_secret(cert2, key).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = router.admin_get("/metrics").await.unwrap();
        if metrics.contains("siskin_router_tls_reload_errors_total 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken Secret was not reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, leaf, _) = handshake(&pki, tls_port, "shop.example", &[])
        .await
        .unwrap();
    assert_eq!(leaf, second, "the last good certificate is still served");
}

/// A BackendTLSPolicy on a Service port: the router speaks TLS to its endpoints, with SNI and
/// verification by the policy's hostname against the CA in its ConfigMap; when the ConfigMap
/// goes away the backend is not served (503), never in cleartext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_policy_sends_tls_to_the_service() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use support::tls::{Pki, TlsUpstream};

    let plane = ControlPlane::shared();
    let client = plane.client().await.unwrap();
    let ns = format!("btls-{}", std::process::id() % 100_000);
    let pp = PatchParams::apply("test").force();
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            ),
        )
        .await
        .unwrap();
    let pki = Pki::new();
    let (cert, key, _) = pki.issue_pem("api.internal");
    let api = TlsUpstream::start("api", &cert, &key).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
        "spec": {"selector": {"app": "api"}, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}});
    services
        .patch("api", &pp, &Patch::Apply(&svc))
        .await
        .unwrap();
    localnode::publish_endpoints(&client, &ns, "api", "https", &[api.port])
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "api-ca"},
        "data": {"ca.crt": pki.ca_pem()}});
    config_maps
        .patch("api-ca", &pp, &Patch::Apply(&cm))
        .await
        .unwrap();
    let policies: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "BackendTLSPolicy"),
            "backendtlspolicies",
        ),
    );
    let policy = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy", "metadata": {"name": "api"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "api", "sectionName": "https"}],
            "validation": {"hostname": "api.internal",
                "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "api-ca"}]}}});
    policies
        .patch("api", &pp, &Patch::Apply(&policy))
        .await
        .unwrap();
    let routes: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            "httproutes",
        ),
    );
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "api"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "api", "port": 443}],
            "rules": [{"backendRefs": [{"name": "api", "port": 443}]}]}});
    routes
        .patch("api", &pp, &Patch::Apply(&route))
        .await
        .unwrap();

    let router = RouterProcess::start_kubernetes(&plane.kubeconfig, &ns).await;
    let http = http1_client();
    let host = format!("api.{ns}");
    let host = [("host", host.as_str())];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body, _) = get(&http, router.port, "/orders", &host).await;
        if status == 200 {
            assert_eq!(body, "api /orders HTTP/1.1");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served over TLS in time: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        api.sni.lock().unwrap().last().cloned().flatten().as_deref(),
        Some("api.internal")
    );
    config_maps
        .delete("api-ca", &Default::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body, _) = get(&http, router.port, "/orders", &host).await;
        if status == 503 {
            assert!(body.contains("no_endpoint"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} {body} without the CA"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
