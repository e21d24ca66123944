//! `--gates-configmap` on a real kube-apiserver (the `siskin-e2e` control plane), with the load
//! tester running as its own ServiceAccount: the identity is impersonated from the admin
//! kubeconfig, and `config/loadtester/{service_account,role,role_binding}.yaml` are applied as
//! written, so the Role the manifests grant is the only permission it has.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::PathBuf, process::Stdio, time::Duration};

use common::{Tester, payload};
use k8s_openapi::api::{
    core::v1::{ConfigMap, Namespace, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use siskin_e2e::{ControlPlane, repo_root};

const NAMESPACE: &str = "lt-gates";
const CONFIGMAP: &str = "siskin-loadtester-gates";

/// Creates the namespace and applies the load tester's ServiceAccount, Role and RoleBinding
/// from `config/loadtester/` into it.
async fn install_identity(admin: &Client) {
    let pp = PatchParams::apply("siskin-loadtester-test").force();
    Api::<Namespace>::all(admin.clone())
        .patch(
            NAMESPACE,
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            ),
        )
        .await
        .unwrap();
    for file in ["service_account.yaml", "role.yaml", "role_binding.yaml"] {
        let path = repo_root().join("config/loadtester").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut v: Value = serde_yaml::from_str(&text).unwrap();
        v["metadata"]["namespace"] = json!(NAMESPACE);
        let name = v["metadata"]["name"].as_str().unwrap().to_string();
        let patch = Patch::Apply(&v);
        match v["kind"].as_str().unwrap() {
            "ServiceAccount" => {
                Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
                    .patch(&name, &pp, &patch)
                    .await
                    .unwrap();
            }
            "Role" => {
                Api::<Role>::namespaced(admin.clone(), NAMESPACE)
                    .patch(&name, &pp, &patch)
                    .await
                    .unwrap();
            }
            "RoleBinding" => {
                Api::<RoleBinding>::namespaced(admin.clone(), NAMESPACE)
                    .patch(&name, &pp, &patch)
                    .await
                    .unwrap();
            }
            other => panic!("unexpected {other} in {}", path.display()),
        }
    }
}

/// A kubeconfig acting as `system:serviceaccount:lt-gates:siskin-loadtester` (admin
/// credentials with `as`/`as-groups`, which the API server authorizes as that identity).
fn loadtester_kubeconfig(plane: &ControlPlane, dir: &std::path::Path) -> PathBuf {
    let mut kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&plane.kubeconfig).unwrap()).unwrap();
    let users = kc["users"].as_sequence_mut().unwrap();
    let admin = users
        .iter_mut()
        .find(|u| u["name"] == "test-admin")
        .expect("the admin user");
    let user = admin["user"].as_mapping_mut().unwrap();
    user.insert(
        "as".into(),
        format!("system:serviceaccount:{NAMESPACE}:siskin-loadtester").into(),
    );
    user.insert(
        "as-groups".into(),
        serde_yaml::to_value([
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{NAMESPACE}"),
            "system:authenticated",
        ])
        .unwrap(),
    );
    let path = dir.join("loadtester.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    path
}

/// The gates state in the ConfigMap, as the admin reads it.
async fn stored(cms: &Api<ConfigMap>) -> Value {
    let cm = cms.get(CONFIGMAP).await.unwrap();
    assert_eq!(
        cm.metadata.labels.unwrap_or_default()["app.kubernetes.io/managed-by"],
        "siskin-loadtester"
    );
    serde_json::from_str(&cm.data.unwrap_or_default()["gates.json"]).unwrap()
}

/// Runs the binary until it exits (at most 60 s); returns success and stderr.
async fn run_to_end(args: &[&str], kubeconfig: &std::path::Path) -> (bool, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_siskin-loadtester"))
        .args(["--port=0", "--address=127.0.0.1", "--log-format=text"])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the load tester exits")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn configmap_gates_survive_restarts_as_the_loadtesters_identity() {
    let plane = ControlPlane::shared();
    let admin = plane.client().await.unwrap();
    install_identity(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = loadtester_kubeconfig(plane, dir.path());
    let kc = kubeconfig.to_str().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NAMESPACE);
    let _ = cms.delete(CONFIGMAP, &DeleteParams::default()).await;

    // The Role grants get/update on the gates ConfigMap only: another name is refused at start.
    let (ok, err) = run_to_end(
        &[&format!("--gates-configmap={NAMESPACE}/other")],
        &kubeconfig,
    )
    .await;
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!("gates ConfigMap {NAMESPACE}/other: get"))
            && err.contains("forbidden"),
        "{err}"
    );

    let arg = format!("--gates-configmap={NAMESPACE}/{CONFIGMAP}");
    let env = [("KUBECONFIG", kc)];
    let promo = payload("test", "podinfo", Some("confirm-promotion"), None);
    let untyped = payload("test", "podinfo", None, None);
    let api = payload("test", "api", None, None);

    // First start: the ConfigMap is created, empty.
    let t = Tester::start_with_env(&[&arg], &env);
    assert_eq!(
        stored(&cms).await,
        json!({"version": 1, "gates": [], "rollbacks": []})
    );
    assert_eq!(t.post("/gate/check", promo.clone()).await.status, 403);
    assert_eq!(t.post("/gate/open", promo.clone()).await.status, 202);
    assert_eq!(t.post("/rollback/open", api.clone()).await.status, 202);
    assert_eq!(
        stored(&cms).await,
        json!({
            "version": 1,
            "gates": [{"namespace": "test", "name": "podinfo", "gate": "confirm-promotion"}],
            "rollbacks": [{"namespace": "test", "name": "api"}],
        })
    );
    t.stop(); // SIGKILL: nothing is written at exit

    // Restarted (Flagger's single-dash spelling): the gates are read back.
    let t = Tester::start_with_env(
        &[&format!("-gates-configmap={NAMESPACE}/{CONFIGMAP}")],
        &env,
    );
    let r = t.post("/gate/check", promo.clone()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "Approved"), "still open");
    assert_eq!(t.post("/gate/check", untyped.clone()).await.status, 403);
    assert_eq!(t.post("/rollback/check", api.clone()).await.status, 200);
    let m = t.get("/metrics").await.body;
    assert!(
        m.contains(r#"siskin_loadtester_gate_open{namespace="test",canary="podinfo",gate="confirm-promotion"} 1"#),
        "the gauge is set from the stored state: {m}"
    );

    // Someone else writes the ConfigMap (a new resourceVersion): the next change still lands,
    // and the load tester's state wins.
    cms.patch(
        CONFIGMAP,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    assert_eq!(t.post("/rollback/close", api.clone()).await.status, 202);
    assert_eq!(stored(&cms).await["rollbacks"], json!([]));
    assert_eq!(stored(&cms).await["gates"][0]["gate"], "confirm-promotion");

    // The ConfigMap is deleted underneath: the next change creates it again, whole.
    cms.delete(CONFIGMAP, &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(t.post("/gate/open", untyped.clone()).await.status, 202);
    let gates: Vec<String> = stored(&cms).await["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["gate"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        gates,
        [
            "confirm-promotion",
            "confirm-rollout",
            "confirm-traffic-increase",
            "shared"
        ],
        "an untyped open opens the shared and every confirm-* gate"
    );

    // Closed gates persist too.
    assert_eq!(t.post("/gate/close", untyped.clone()).await.status, 202);
    assert_eq!(stored(&cms).await["gates"], json!([]));
    t.stop();
    let t = Tester::start_with_env(&[&arg], &env);
    assert_eq!(
        t.post("/gate/check", promo).await.status,
        403,
        "closed stays closed"
    );
    assert_eq!(t.post("/gate/check", untyped).await.status, 403);
    assert_eq!(t.post("/rollback/check", api).await.status, 403);
    t.stop();

    // A ConfigMap whose gates.json is not valid stops the start (no silent reset to closed).
    cms.patch(
        CONFIGMAP,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"gates.json": "not json"}})),
    )
    .await
    .unwrap();
    let (ok, err) = run_to_end(&[&arg], &kubeconfig).await;
    assert!(!ok && err.contains("are not valid"), "{err}");
}
