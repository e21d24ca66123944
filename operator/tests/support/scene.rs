//! The operator end-to-end scene, shared by `operator_e2e.rs` and `faults.rs`: a namespace on
//! the test binary's control plane, the harness's kubelet running each Deployment as a
//! sample-app process, a real `siskin-router` in Kubernetes mode, the operator as a process
//! with its ServiceAccount's RBAC, and steady traffic counted by version.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
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

pub use siskin_e2e::free_port;

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn siskin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_siskin"))
}

/// `siskin-router` from the same target folder, brought up to date first (`cargo test -p
/// siskin-operator` alone does not rebuild another package's binary).
pub fn router_binary() -> PathBuf {
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
pub fn operator_kubeconfig(plane: &ControlPlane) -> PathBuf {
    let text = std::fs::read_to_string(&plane.kubeconfig).unwrap();
    let mut v: Value = serde_yaml::from_str(&text).unwrap();
    v["current-context"] = json!("as-operator");
    let path = plane.dir.join("as-operator.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&v).unwrap()).unwrap();
    path
}

/// The router in Kubernetes mode, published as Service siskin-system/siskin-router.
pub struct Router {
    pub proc: Proc,
    pub port: u16,
    pub admin: u16,
    pub kubeconfig: PathBuf,
}

fn spawn_router(kubeconfig: &Path, port: u16, admin: u16) -> Child {
    Command::new(router_binary())
        .args(["--kubernetes", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--admin-addr",
            &format!("127.0.0.1:{admin}"),
            "--workers",
            "1",
        ])
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

impl Router {
    /// SIGKILLs the router, starts it again on the same ports after `down`, and returns once
    /// its `/readyz` answers 200, as a pod's readiness probe would see it.
    pub async fn restart(&mut self, down: Duration) -> Duration {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
        tokio::time::sleep(down).await;
        self.proc = Proc(spawn_router(&self.kubeconfig, self.port, self.admin));
        let started = Instant::now();
        loop {
            let code = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("http://127.0.0.1:{}/readyz", self.admin))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            if code == "200" {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "router not ready 30 s after its restart"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The router's `/metrics`.
    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{}/metrics", self.admin)])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    }

    /// The router's `/config` (for failure messages).
    pub fn config(&self) -> String {
        let out = Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{}/config", self.admin)])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    }
}

/// A router published as Service `siskin-system/<name>` (each test has its own, so tests run in
/// parallel without reading each other's statistics).
pub async fn start_router(plane: &ControlPlane, client: &Client, name: &str) -> Router {
    let (port, admin) = (free_port(), free_port());
    let child = spawn_router(&plane.kubeconfig, port, admin);
    let ns = siskin_e2e::OPERATOR_NAMESPACE;
    let pp = PatchParams::apply("siskin-e2e").force();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "admin", "port": 9901}]}});
    Api::<Service>::namespaced(client.clone(), ns)
        .patch(name, &pp, &Patch::Apply(&svc))
        .await
        .unwrap();
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-local"), "namespace": ns,
            "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "siskin-e2e-local-node"}},
        "addressType": "FQDN",
        "endpoints": [{"addresses": [format!("{name}-0.localhost")], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}, {"name": "admin", "port": admin, "protocol": "TCP"}]});
    Api::<k8s_openapi::api::discovery::v1::EndpointSlice>::namespaced(client.clone(), ns)
        .patch(&format!("{name}-local"), &pp, &Patch::Apply(&slice))
        .await
        .unwrap();
    Router {
        proc: Proc(child),
        port,
        admin,
        kubeconfig: plane.kubeconfig.clone(),
    }
}

/// An operator process; its log is kept in a file for the assertions and failure messages.
pub struct Operator {
    pub proc: Proc,
    pub log: PathBuf,
    pub port: u16,
}

impl Operator {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on the operator's HTTP port.
    pub fn get(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{}{path}", self.port)])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
    }
}

pub fn start_operator(scene: &Scene, tag: &str, extra: &[&str], env: &[(&str, &str)]) -> Operator {
    start_operator_for(
        &scene.dir,
        &scene.kubeconfig,
        &scene.ns,
        &scene.router_name,
        tag,
        extra,
        env,
    )
}

/// An operator for namespace `ns` with the router `router_name`, without a [`Scene`].
pub fn start_operator_for(
    dir: &Path,
    kubeconfig: &Path,
    ns: &str,
    router_name: &str,
    tag: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Operator {
    let log = dir.join(format!("{ns}-{tag}.log"));
    let port = free_port();
    let file = std::fs::File::create(&log).unwrap();
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
        .args(["--port", &port.to_string(), "--listen-address", "127.0.0.1"])
        .args(["--router-service", &format!("siskin-system/{router_name}")])
        .args(extra)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    Operator {
        proc: Proc(child),
        log,
        port,
    }
}

/// What one scenario runs in: its namespace, kubelet and router.
pub struct Scene {
    pub admin: Client,
    pub ns: String,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub router_name: String,
    pub router: Router,
    pub _kubelet: Kubelet,
}

pub async fn scene(prefix: &str) -> Scene {
    let plane = ControlPlane::shared();
    let admin = plane.client().await.unwrap();
    siskin_e2e::apply_rbac(&admin).await.unwrap();
    let ns = namespace(&admin, prefix).await;
    let router_name = format!("router-{prefix}");
    let router = start_router(plane, &admin, &router_name).await;
    Scene {
        _kubelet: Kubelet::start(admin.clone(), &ns, siskin()),
        admin,
        dir: plane.dir.clone(),
        kubeconfig: operator_kubeconfig(plane),
        ns,
        router_name,
        router,
    }
}

pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", std::process::id());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    Api::<Namespace>::all(client.clone())
        .patch(&name, &PatchParams::apply("siskin-e2e"), &Patch::Apply(&ns))
        .await
        .unwrap();
    name
}

pub fn deployment(version: &str, error_rate: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {"metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{"name": "podinfo", "image": format!("ghcr.io/stefanprodan/podinfo:{version}"),
                    "env": [{"name": "ERROR_RATE", "value": error_rate}]}]}}}})
}

pub async fn apply_deployment(client: &Client, ns: &str, body: &Value) {
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

/// The scene's namespaced API for objects of `kind` (`plural`) in `group`/`version`.
pub fn dynamic_api(
    sc: &Scene,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    Api::namespaced_with(
        sc.admin.clone(),
        &sc.ns,
        &ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(group, version, kind),
            plural,
        ),
    )
}

pub fn canary_resource(group: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(group, "v1beta1", "Canary"),
        "canaries",
    )
}

pub async fn canary_status(client: &Client, ns: &str, group: &str) -> Value {
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

pub async fn wait_phase(
    client: &Client,
    ns: &str,
    group: &str,
    phase: &str,
    limit: Duration,
) -> Value {
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
pub struct Load {
    pub by_version: Mutex<BTreeMap<String, u64>>,
    pub failed: AtomicU64,
}

pub fn load(port: u16, host: String) -> (Arc<Load>, tokio::task::JoinHandle<()>) {
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

pub fn served(load: &Load, version: &str) -> u64 {
    load.by_version
        .lock()
        .unwrap()
        .get(version)
        .copied()
        .unwrap_or(0)
}

pub async fn route_weights(client: &Client, ns: &str) -> (u64, u64) {
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

pub fn canary_manifest(group: &str, ns: &str, extra: Value) -> Value {
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

pub async fn apply_canary(client: &Client, ns: &str, group: &str, body: &Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &canary_resource(group));
    api.patch(
        "podinfo",
        &PatchParams::apply("gitops").force(),
        &Patch::Apply(body),
    )
    .await
    .unwrap();
}

/// Waits for a Canary field to satisfy `f`.
pub async fn wait_status(
    sc: &Scene,
    what: &str,
    limit: Duration,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let s = canary_status(&sc.admin, &sc.ns, "siskin.dev").await;
        if f(&s) {
            return s;
        }
        assert!(
            started.elapsed() < limit,
            "{what} not within {limit:?}; status: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn events(sc: &Scene) -> Vec<(String, String, String)> {
    let events: Api<Event> = Api::namespaced(sc.admin.clone(), &sc.ns);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

/// Starts a scene with a Canary initialized on version 1.0.0 and steady traffic.
pub async fn initialized(
    prefix: &str,
    extra: Value,
) -> (Scene, Arc<Load>, tokio::task::JoinHandle<()>) {
    let sc = scene(prefix).await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("1.0.0", "0")).await;
    apply_canary(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        &canary_manifest("siskin.dev", &sc.ns, extra),
    )
    .await;
    let (counts, traffic) = load(sc.router.port, format!("podinfo.{}", sc.ns));
    (sc, counts, traffic)
}
