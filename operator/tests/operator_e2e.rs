//! `siskin operator` end to end on a real API server: the operator runs as its own process
//! with the RBAC of config/rbac (the harness's `as-operator` identity), a real `siskin-router`
//! serves the traffic, and the harness's kubelet runs each Deployment as a sample-app process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Event, Namespace, Service},
};
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams, Patch, PatchParams},
    discovery::ApiResource,
};
use serde_json::{Value, json};
use siskin_e2e::{ControlPlane, kubelet::Kubelet};

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn siskin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_siskin"))
}

/// `siskin-router` from the same target folder, brought up to date first (`cargo test -p
/// siskin-operator` alone does not rebuild another package's binary).
fn router_binary() -> PathBuf {
    let path = siskin().with_file_name("siskin-router");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "siskin-router",
        "--bin",
        "siskin-router",
    ]);
    if path.parent().is_some_and(|p| p.ends_with("release")) {
        cmd.arg("--release");
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "cannot build siskin-router");
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// A kubeconfig whose current context is the operator's ServiceAccount.
fn operator_kubeconfig(plane: &ControlPlane) -> PathBuf {
    let text = std::fs::read_to_string(&plane.kubeconfig).unwrap();
    let mut v: Value = serde_yaml::from_str(&text).unwrap();
    v["current-context"] = json!("as-operator");
    let path = plane.dir.join("as-operator.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&v).unwrap()).unwrap();
    path
}

/// The router in Kubernetes mode, published as Service siskin-system/siskin-router.
struct Router {
    _proc: Proc,
    port: u16,
    admin: u16,
}

impl Router {
    /// The router's `/config` (for failure messages).
    fn config(&self) -> String {
        let out = Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{}/config", self.admin)])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    }
}

async fn start_router(plane: &ControlPlane, client: &Client) -> Router {
    let (port, admin) = (free_port(), free_port());
    let child = Command::new(router_binary())
        .args(["--kubernetes", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--admin-addr",
            &format!("127.0.0.1:{admin}"),
            "--workers",
            "1",
        ])
        .env("KUBECONFIG", &plane.kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let ns = siskin_e2e::OPERATOR_NAMESPACE;
    let pp = PatchParams::apply("siskin-e2e").force();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "siskin-router", "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "admin", "port": 9901}]}});
    Api::<Service>::namespaced(client.clone(), ns)
        .patch("siskin-router", &pp, &Patch::Apply(&svc))
        .await
        .unwrap();
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "siskin-router-local", "namespace": ns,
            "labels": {"kubernetes.io/service-name": "siskin-router", "endpointslice.kubernetes.io/managed-by": "siskin-e2e-local-node"}},
        "addressType": "FQDN",
        "endpoints": [{"addresses": ["siskin-router-0.localhost"], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}, {"name": "admin", "port": admin, "protocol": "TCP"}]});
    Api::<k8s_openapi::api::discovery::v1::EndpointSlice>::namespaced(client.clone(), ns)
        .patch("siskin-router-local", &pp, &Patch::Apply(&slice))
        .await
        .unwrap();
    Router {
        _proc: Proc(child),
        port,
        admin,
    }
}

fn start_operator(kubeconfig: &PathBuf, ns: &str, extra: &[&str]) -> Proc {
    let child = Command::new(siskin())
        .args(["operator", "--kubeconfig"])
        .arg(kubeconfig)
        .args([
            "--namespace",
            ns,
            "--log-encoding",
            "console",
            "--log-level",
            "info",
        ])
        .args([
            "--port",
            &free_port().to_string(),
            "--listen-address",
            "127.0.0.1",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc(child)
}

async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", std::process::id());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    Api::<Namespace>::all(client.clone())
        .patch(&name, &PatchParams::apply("siskin-e2e"), &Patch::Apply(&ns))
        .await
        .unwrap();
    name
}

fn deployment(version: &str, error_rate: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {"metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{"name": "podinfo", "image": format!("ghcr.io/stefanprodan/podinfo:{version}"),
                    "env": [{"name": "ERROR_RATE", "value": error_rate}]}]}}}})
}

async fn apply_deployment(client: &Client, ns: &str, body: &Value) {
    // The target's replicas belong to the operator once it runs: apply without them after
    // the first time, as a GitOps tool with an HPA-style ignore would.
    let mut body = body.clone();
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    if api.get_opt("podinfo").await.unwrap().is_some() {
        body["spec"].as_object_mut().unwrap().remove("replicas");
    }
    api.patch(
        "podinfo",
        &PatchParams::apply("gitops").force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap();
}

fn canary_resource(group: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(group, "v1beta1", "Canary"),
        "canaries",
    )
}

async fn canary_status(client: &Client, ns: &str, group: &str) -> Value {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &canary_resource(group));
    let Some(c) = api.get_opt("podinfo").await.unwrap() else {
        return Value::Null;
    };
    let mut status = c.data["status"].clone();
    // Under flagger.app, Siskin's own status fields live in an annotation (Flagger's CRD
    // does not declare them).
    if let Some(extra) = c
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("siskin.dev/status"))
    {
        let extra: Value = serde_json::from_str(extra).unwrap();
        for (k, v) in extra.as_object().unwrap() {
            status[k] = v.clone();
        }
    }
    status
}

async fn wait_phase(client: &Client, ns: &str, group: &str, phase: &str, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let s = canary_status(client, ns, group).await;
        if s["phase"] == phase {
            return s;
        }
        assert!(
            started.elapsed() < limit,
            "phase {phase} not reached in {limit:?}; status: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Steady traffic to the apex Service through the router, counted by version and failures.
#[derive(Default)]
struct Load {
    by_version: Mutex<BTreeMap<String, u64>>,
    failed: AtomicU64,
}

fn load(port: u16, host: String) -> (Arc<Load>, tokio::task::JoinHandle<()>) {
    let counts = Arc::new(Load::default());
    let task = tokio::spawn({
        let counts = counts.clone();
        async move {
            let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let req = http::Request::get(format!("http://127.0.0.1:{port}/"))
                    .header("host", &host)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let Ok(resp) = client.request(req).await else {
                    counts.failed.fetch_add(1, Relaxed);
                    continue;
                };
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                if !status.is_success() {
                    counts.failed.fetch_add(1, Relaxed);
                    continue;
                }
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                let version = v["version"].as_str().unwrap_or("?").to_string();
                *counts
                    .by_version
                    .lock()
                    .unwrap()
                    .entry(version)
                    .or_default() += 1;
            }
        }
    });
    (counts, task)
}

fn served(load: &Load, version: &str) -> u64 {
    load.by_version
        .lock()
        .unwrap()
        .get(version)
        .copied()
        .unwrap_or(0)
}

async fn route_weights(client: &Client, ns: &str) -> (u64, u64) {
    let res = ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &res);
    let r = api.get("podinfo").await.unwrap();
    let rule = r.data["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "siskin-canary")
        .cloned()
        .unwrap_or_else(|| panic!("no siskin-canary rule: {:#}", r.data));
    let w = |i: usize| rule["backendRefs"][i]["weight"].as_u64().unwrap();
    (w(0), w(1))
}

fn canary_manifest(group: &str, ns: &str, extra: Value) -> Value {
    let mut c = json!({"apiVersion": format!("{group}/v1beta1"), "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": ns},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "progressDeadlineSeconds": 30,
            "analysis": {"interval": "3s", "threshold": 2, "maxWeight": 50, "stepWeight": 25,
                "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"}]}}});
    if let (Some(spec), Some(extra)) = (c["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    c
}

async fn apply_canary(client: &Client, ns: &str, group: &str, body: &Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &canary_resource(group));
    api.patch(
        "podinfo",
        &PatchParams::apply("gitops").force(),
        &Patch::Apply(body),
    )
    .await
    .unwrap();
}

/// Initialization, a good release promoted step by step, a bad one rolled back with an event
/// naming the failing check — under siskin.dev and, with `--api-group flagger.app`, under
/// Flagger's own CRDs.
async fn lifecycle(
    plane: &ControlPlane,
    admin: &Client,
    router: &Router,
    group: &str,
    prefix: &str,
) {
    let admin = admin.clone();
    let ns = namespace(&admin, prefix).await;
    let _kubelet = Kubelet::start(admin.clone(), &ns, siskin());
    let kubeconfig = operator_kubeconfig(plane);
    let _operator = start_operator(
        &kubeconfig,
        &ns,
        &["--api-group", group, "--enable-leader-election", "false"],
    );
    apply_deployment(&admin, &ns, &deployment("1.0.0", "0")).await;
    apply_canary(&admin, &ns, group, &canary_manifest(group, &ns, json!({}))).await;

    // Initialization: primary copy, Services, route at 100% primary, target scaled to zero.
    wait_phase(&admin, &ns, group, "Initialized", Duration::from_secs(60)).await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let primary = deployments.get("podinfo-primary").await.unwrap();
    let pspec = primary.spec.unwrap();
    assert_eq!(
        pspec.selector.match_labels.unwrap()["app"],
        "podinfo-primary"
    );
    let services: Api<Service> = Api::namespaced(admin.clone(), &ns);
    for s in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        assert!(services.get_opt(s).await.unwrap().is_some(), "Service {s}");
    }
    assert_eq!(route_weights(&admin, &ns).await, (100, 0));
    let (counts, traffic) = load(router.port, format!("podinfo.{ns}"));
    let started = Instant::now();
    while served(&counts, "1.0.0") < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no traffic through the router to the primary: {:?}, failed {}\n{}",
            counts.by_version.lock().unwrap(),
            counts.failed.load(Relaxed),
            router.config()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        deployments
            .get("podinfo")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(0),
        "the target is scaled to zero after initialization"
    );

    // A new image: weights step up, the canary serves, promotion.
    apply_deployment(&admin, &ns, &deployment("2.0.0", "0")).await;
    let started = Instant::now();
    let mut max_weight = 0;
    loop {
        let s = canary_status(&admin, &ns, group).await;
        max_weight = max_weight.max(s["canaryWeight"].as_i64().unwrap_or(0));
        if s["phase"] == "Succeeded" {
            break;
        }
        assert!(s["phase"] != "Failed", "good release failed: {s:#}");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not promoted: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(max_weight, 50, "weights stepped up to maxWeight");
    let image = deployments
        .get("podinfo-primary")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap();
    assert!(image.ends_with(":2.0.0"), "{image}");
    assert_eq!(route_weights(&admin, &ns).await, (100, 0));
    assert!(
        served(&counts, "2.0.0") > 50,
        "the canary served part of the traffic"
    );
    let s = canary_status(&admin, &ns, group).await;
    let checks = s["checks"].as_array().cloned().unwrap_or_default();
    assert!(
        checks.iter().any(|c| c["name"] == "request-success-rate"
            && c["verdict"] == "Pass"
            && c["value"].as_f64().is_some()
            && c["min"] == 99.0),
        "each check records value, threshold and verdict: {s:#}"
    );

    // A release with errors: rolled back to the primary, Failed, an event naming the check.
    apply_deployment(&admin, &ns, &deployment("3.0.0", "0.5")).await;
    wait_phase(&admin, &ns, group, "Failed", Duration::from_secs(120)).await;
    assert_eq!(route_weights(&admin, &ns).await, (100, 0));
    let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
    let list = events.list(&ListParams::default()).await.unwrap();
    let warnings: Vec<String> = list
        .items
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default()
            )
        })
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("request-success-rate")),
        "an event names the failing check: {warnings:#?}"
    );
    let reasons: std::collections::BTreeSet<String> =
        list.items.iter().filter_map(|e| e.reason.clone()).collect();
    assert!(
        reasons.len() >= 5,
        "events say what happened, not one reason for all: {reasons:?}"
    );
    let image = deployments
        .get("podinfo-primary")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap();
    assert!(
        image.ends_with(":2.0.0"),
        "the primary still runs the promoted version: {image}"
    );
    traffic.abort();
}

/// One router serves every namespace (as in a cluster), so the scenarios share it and run in
/// turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_lifecycles_through_the_builtin_router() {
    let plane = ControlPlane::shared();
    let admin = plane.client().await.unwrap();
    siskin_e2e::apply_rbac(&admin).await.unwrap();
    let router = start_router(plane, &admin).await;
    lifecycle(plane, &admin, &router, "siskin.dev", "op-life").await;
    // A Flagger manifest, unchanged, served by `--api-group flagger.app`.
    lifecycle(plane, &admin, &router, "flagger.app", "op-flagger").await;
}
