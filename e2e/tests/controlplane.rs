//! The test control plane is real: CRD schemas and CEL rules, mesh CRDs, RBAC and status
//! subresources behave as in a cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{Namespace, Pod, Service},
    rbac::v1::ClusterRole,
};
use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams},
    core::ApiResource,
};
use serde_json::{Value, json};
use siskin_api::{ApiGroup, Canary, validate};
use siskin_e2e::{
    ControlPlane, OPERATOR_NAMESPACE,
    localnode::{self, LocalProcess, Rollout},
};

async fn admin() -> Client {
    ControlPlane::shared().client().await.expect("admin client")
}

async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", std::process::id() % 100_000);
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    api.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&ns),
    )
    .await
    .unwrap();
    name
}

fn canary_yaml(group: ApiGroup, name: &str, analysis: &str) -> Canary {
    let text = format!(
        "apiVersion: {}\nkind: Canary\nmetadata:\n  name: {name}\nspec:\n  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}\n  service: {{port: 9898}}\n  analysis:\n{analysis}",
        group.api_version()
    );
    serde_yaml::from_str(&text).unwrap()
}

const GOOD_ANALYSIS: &str = "    interval: 30s\n    threshold: 5\n    maxWeight: 50\n    stepWeight: 10\n    metrics:\n    - name: request-success-rate\n      thresholdRange: {min: 99}\n";

#[tokio::test]
async fn canary_round_trips_under_both_groups() {
    let client = admin().await;
    let ns = namespace(&client, "roundtrip").await;
    for group in ApiGroup::ALL {
        let api: Api<Canary> = Api::namespaced_with(client.clone(), &ns, &group);
        let canary = canary_yaml(group, "podinfo", GOOD_ANALYSIS);
        let created = api.create(&PostParams::default(), &canary).await.unwrap();
        assert_eq!(created.spec, canary.spec, "{group}: spec stored as sent");
        let read = api.get("podinfo").await.unwrap();
        assert_eq!(read.spec, canary.spec);
        assert_eq!(read.api_group(), Some(group));
        // The status subresource is separate from the spec.
        let status = json!({"status": {"phase": "Progressing", "canaryWeight": 10, "failedChecks": 0, "iterations": 0}});
        let patched = api
            .patch_status("podinfo", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        assert_eq!(patched.status.unwrap().canary_weight, 10);
        api.delete("podinfo", &Default::default()).await.unwrap();
    }
}

/// A backend list with the built-in router only, as able as it is (these cases are about
/// fields, not providers).
struct OnlyBuiltin;

impl validate::Backends for OnlyBuiltin {
    fn capabilities(
        &self,
        p: siskin_api::Provider,
        _spec: &siskin_api::CanarySpec,
    ) -> Option<siskin_api::Capabilities> {
        (p == siskin_api::Provider::Builtin).then_some(siskin_api::Capabilities::ALL)
    }

    fn implemented(&self) -> Vec<siskin_api::Provider> {
        vec![siskin_api::Provider::Builtin]
    }
}

#[tokio::test]
async fn invalid_canaries_are_refused_by_the_api_server_and_by_validate() {
    let client = admin().await;
    let ns = namespace(&client, "invalid").await;
    let api: Api<Canary> = Api::namespaced_with(client.clone(), &ns, &ApiGroup::Siskin);
    let cases = [
        (
            "stepWeights [10, 5]",
            GOOD_ANALYSIS
                .replace("stepWeight: 10", "stepWeights: [10, 5]")
                .replace("    maxWeight: 50\n", ""),
            "stepWeights must be strictly ascending",
        ),
        (
            "maxWeight 150",
            GOOD_ANALYSIS.replace("maxWeight: 50", "maxWeight: 150"),
            "should be less than or equal to 100",
        ),
        (
            "A/B without iterations",
            format!("{GOOD_ANALYSIS}    match:\n    - headers: {{x-canary: {{exact: insider}}}}\n"),
            "A/B testing (match) needs iterations > 0",
        ),
        (
            "two strategies",
            GOOD_ANALYSIS.replace("stepWeight: 10", "stepWeight: 10\n    iterations: 3"),
            "set exactly one of iterations",
        ),
        (
            "bad webhook url",
            format!("{GOOD_ANALYSIS}    webhooks:\n    - name: load\n      url: not a url\n"),
            "url must be an absolute URL",
        ),
        (
            "mirrorWeight without mirror",
            format!("{GOOD_ANALYSIS}    mirrorWeight: 50\n"),
            "mirrorWeight needs mirror: true",
        ),
        (
            "two match operators",
            GOOD_ANALYSIS
                .replace("stepWeight: 10", "iterations: 2")
                .replace("    maxWeight: 50\n", "")
                + "    match:\n    - headers: {x: {exact: a, regex: b}}\n",
            "set only one of exact, prefix, suffix or regex",
        ),
    ];
    for (what, analysis, message) in cases {
        let canary = canary_yaml(ApiGroup::Siskin, "bad", &analysis);
        let err = api
            .create(&PostParams::default(), &canary)
            .await
            .expect_err(what);
        let text = err.to_string();
        assert!(text.contains(message), "{what}: API server said {text}");
        let problems = validate::canary(
            &canary,
            &validate::Options {
                default_provider: siskin_api::Provider::Builtin,
                backends: &OnlyBuiltin,
            },
        );
        assert!(
            problems.iter().any(|p| p.is_error()),
            "{what}: siskin validate must refuse it too"
        );
    }
    // Unknown enum values are refused by the schema (the typed client cannot even send them).
    let dynamic = dyn_api(&client, &ns, "siskin.dev", "v1beta1", "Canary", "canaries");
    let mut bad =
        serde_json::to_value(canary_yaml(ApiGroup::Siskin, "bad-provider", GOOD_ANALYSIS)).unwrap();
    bad["spec"]["provider"] = json!("gatewayapi");
    let err = create_dyn(&dynamic, bad)
        .await
        .expect_err("unknown provider");
    assert!(err.contains("Unsupported value: \"gatewayapi\""), "{err}");
}

fn dyn_api(
    client: &Client,
    ns: &str,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn create_dyn(api: &Api<DynamicObject>, value: Value) -> Result<DynamicObject, String> {
    let obj: DynamicObject = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn mesh_crds_accept_valid_and_refuse_malformed_objects() {
    let client = admin().await;
    let ns = namespace(&client, "mesh").await;
    let vs = dyn_api(
        &client,
        &ns,
        "networking.istio.io",
        "v1",
        "VirtualService",
        "virtualservices",
    );
    let good = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "podinfo"},
        "spec": {"hosts": ["podinfo"], "http": [{"route": [
            {"destination": {"host": "podinfo-primary"}, "weight": 90},
            {"destination": {"host": "podinfo-canary"}, "weight": 10}]}]}
    });
    create_dyn(&vs, good.clone()).await.unwrap();
    let mut bad = good.clone();
    bad["metadata"]["name"] = json!("bad");
    bad["spec"]["http"][0]["route"][0]["weight"] = json!("ninety");
    let err = create_dyn(&vs, bad).await.expect_err("string weight");
    assert!(err.contains("weight"), "{err}");

    let routes = dyn_api(
        &client,
        &ns,
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
    );
    let route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "podinfo"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "podinfo", "port": 9898}],
            "rules": [{"backendRefs": [
                {"name": "podinfo-primary", "port": 9898, "weight": 90},
                {"name": "podinfo-canary", "port": 9898, "weight": 10}]}]
        }
    });
    create_dyn(&routes, route.clone()).await.unwrap();
    let mut bad = route.clone();
    bad["metadata"]["name"] = json!("bad");
    bad["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(-1);
    let err = create_dyn(&routes, bad).await.expect_err("negative weight");
    assert!(err.contains("weight"), "{err}");
    let mut bad = route;
    bad["metadata"]["name"] = json!("bad-path");
    bad["spec"]["rules"][0]["matches"] = json!([{"path": {"type": "Glob", "value": "/x"}}]);
    let err = create_dyn(&routes, bad)
        .await
        .expect_err("unknown path type");
    assert!(err.contains("Unsupported value"), "{err}");
}

async fn apply_rbac(client: &Client) {
    siskin_e2e::apply_rbac(client).await.unwrap();
}

fn is_forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(ref s)) if s.code == 403)
}

#[tokio::test]
async fn operator_identity_has_exactly_what_config_rbac_grants() {
    let plane = ControlPlane::shared();
    let client = plane.client().await.unwrap();
    let ns = namespace(&client, "rbac").await;
    let op = plane.operator_client().await.unwrap();
    // Before the RBAC manifests are applied the identity can do nothing.
    let canaries: Api<Canary> = Api::all_with(op.clone(), &ApiGroup::Siskin);
    assert!(is_forbidden(canaries.list(&ListParams::default()).await));
    apply_rbac(&client).await;
    // RBAC changes reach the authorizer's cache within a moment.
    let mut allowed = false;
    for _ in 0..50 {
        if canaries.list(&ListParams::default()).await.is_ok() {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        allowed,
        "the operator may list canaries once config/rbac is applied"
    );
    let flagger: Api<Canary> = Api::namespaced_with(op.clone(), &ns, &ApiGroup::Flagger);
    flagger.list(&ListParams::default()).await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(op.clone(), &ns);
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo-primary"},
        "spec": {"selector": {"matchLabels": {"app": "podinfo-primary"}}, "template": {
            "metadata": {"labels": {"app": "podinfo-primary"}},
            "spec": {"containers": [{"name": "podinfo", "image": "podinfo:6.0.0"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(op.clone(), &ns);
    services.list(&ListParams::default()).await.unwrap();
    let leases: Api<Lease> = Api::namespaced(op.clone(), OPERATOR_NAMESPACE);
    leases.list(&ListParams::default()).await.unwrap();

    // What it does not need, it cannot do.
    let pods: Api<Pod> = Api::namespaced(op.clone(), &ns);
    assert!(
        is_forbidden(pods.list(&ListParams::default()).await),
        "pods"
    );
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(op.clone());
    assert!(
        is_forbidden(nodes.list(&ListParams::default()).await),
        "nodes"
    );
    let namespaces: Api<Namespace> = Api::all(op.clone());
    assert!(
        is_forbidden(namespaces.delete(&ns, &Default::default()).await),
        "namespaces"
    );
    let roles: Api<ClusterRole> = Api::all(op.clone());
    assert!(
        is_forbidden(roles.list(&ListParams::default()).await),
        "clusterroles"
    );
    let other_leases: Api<Lease> = Api::namespaced(op.clone(), &ns);
    assert!(
        is_forbidden(other_leases.list(&ListParams::default()).await),
        "leases outside its namespace"
    );
    let canaries_ns: Api<Canary> = Api::namespaced_with(op, &ns, &ApiGroup::Siskin);
    let c = canary_yaml(ApiGroup::Siskin, "podinfo", GOOD_ANALYSIS);
    assert!(
        is_forbidden(canaries_ns.create(&PostParams::default(), &c).await),
        "creating canaries is the user's job"
    );
}

#[tokio::test]
async fn local_node_reports_rollouts_and_serves_real_endpoints() {
    let client = admin().await;
    let ns = namespace(&client, "node").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "podinfo"}}, "template": {
            "metadata": {"labels": {"app": "podinfo"}},
            "spec": {"containers": [{"name": "podinfo", "image": "podinfo:6.0.0"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();

    localnode::set_deployment(&client, &ns, "podinfo", Rollout::NotReady)
        .await
        .unwrap();
    let s = deployments.get("podinfo").await.unwrap().status.unwrap();
    // Zero counts are omitted by the API server, as in a cluster.
    assert_eq!(
        (s.updated_replicas, s.available_replicas.unwrap_or(0)),
        (Some(2), 0)
    );
    localnode::set_deployment(&client, &ns, "podinfo", Rollout::DeadlineExceeded)
        .await
        .unwrap();
    let s = deployments.get("podinfo").await.unwrap().status.unwrap();
    let progressing = s
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("ProgressDeadlineExceeded")
    );
    localnode::set_deployment(&client, &ns, "podinfo", Rollout::Ready)
        .await
        .unwrap();
    let s = deployments.get("podinfo").await.unwrap().status.unwrap();
    assert_eq!(
        (
            s.ready_replicas,
            s.available_replicas,
            s.observed_generation
        ),
        (Some(2), Some(2), Some(1))
    );

    let daemonsets: Api<k8s_openapi::api::apps::v1::DaemonSet> =
        Api::namespaced(client.clone(), &ns);
    let ds: k8s_openapi::api::apps::v1::DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "podinfo-ds"},
        "spec": {"selector": {"matchLabels": {"app": "podinfo-ds"}}, "template": {
            "metadata": {"labels": {"app": "podinfo-ds"}},
            "spec": {"containers": [{"name": "podinfo", "image": "podinfo:6.0.0"}]}}}
    }))
    .unwrap();
    daemonsets
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    localnode::set_daemonset(&client, &ns, "podinfo-ds", 3, Rollout::NotReady)
        .await
        .unwrap();
    let s = daemonsets.get("podinfo-ds").await.unwrap().status.unwrap();
    assert_eq!((s.desired_number_scheduled, s.number_ready), (3, 0));
    localnode::set_daemonset(&client, &ns, "podinfo-ds", 3, Rollout::Ready)
        .await
        .unwrap();
    let s = daemonsets.get("podinfo-ds").await.unwrap().status.unwrap();
    assert_eq!(
        (s.updated_number_scheduled, s.number_available),
        (Some(3), Some(3))
    );

    // A real process for the workload, reachable through the published endpoints.
    let port = siskin_e2e::free_port();
    let dir = tempfile_dir();
    std::fs::write(format!("{dir}/index.html"), "podinfo v6.0.0").unwrap();
    let p = LocalProcess::spawn(
        "python3",
        &[
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
            &dir,
        ],
        port,
    )
    .unwrap();
    localnode::publish_endpoints(&client, &ns, "podinfo-primary", "http", &[p.port])
        .await
        .unwrap();
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(client.clone(), &ns);
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=podinfo-primary"))
        .await
        .unwrap();
    let slice = &list.items[0];
    let addr = &slice.endpoints.as_ref().unwrap()[0].addresses[0];
    let ep_port = slice.ports.as_ref().unwrap()[0].port.unwrap();
    assert!(addr.ends_with(".localhost"), "{addr}");
    let ip = localnode::resolve_local(addr).unwrap();
    let body = http_body(&ip.to_string(), u16::try_from(ep_port).unwrap());
    assert!(body.contains("podinfo v6.0.0"), "{body}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("siskin-e2e-www-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}

fn http_body(host: &str, port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((host, port)).unwrap();
    write!(s, "GET /index.html HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
