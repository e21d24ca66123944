//! The install manifests as a user applies them: `kustomize build config/default` and
//! `helm template config/helm/siskin` (default values, and Flagger's API group), each object
//! server-side applied as a dry run against the real API server, which validates it against
//! its schema (Deployments, PDBs, RBAC, CRDs with their CEL rules). The load tester's
//! manifests (`config/loadtester`, the chart with `loadtester.enabled`) are applied the same
//! way and checked against the URLs `examples/` call.
//!
//! Helm and kustomize come from `scripts/tools.sh` (SISKIN_HELM, SISKIN_KUSTOMIZE); the
//! README's test command builds them. Unset variables fail the test: nothing skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, process::Command};

use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams},
    discovery::Scope,
};
use serde_json::Value;
use siskin_e2e::{ControlPlane, repo_root};

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run scripts/tools.sh (scripts/test-all.sh does) and export its output")
    })
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Dry-run applies every document; returns the count per kind.
async fn dry_run_apply(client: &Client, yaml: &str) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    let pp = PatchParams::apply("siskin-manifests").force().dry_run();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v.is_null() {
            continue;
        }
        let (group, version) = match v["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), v["apiVersion"].as_str().unwrap().to_string()),
        };
        let kind = v["kind"].as_str().unwrap().to_string();
        let gvk = GroupVersionKind::gvk(&group, &version, &kind);
        let (res, caps) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("{kind} {group}/{version} is not served: {e}"));
        let name = v["metadata"]["name"].as_str().unwrap().to_string();
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = v["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("siskin-system");
                Api::namespaced_with(client.clone(), ns, &res)
            }
            Scope::Cluster => Api::all_with(client.clone(), &res),
        };
        api.patch(&name, &pp, &Patch::Apply(&v))
            .await
            .unwrap_or_else(|e| panic!("{kind} {name} refused by the API server: {e}"));
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

#[tokio::test]
async fn kustomize_base_applies_to_the_api_server() {
    let client = ControlPlane::shared().client().await.unwrap();
    let yaml = run(&tool("SISKIN_KUSTOMIZE"), &["build", "config/default"]);
    let kinds = dry_run_apply(&client, &yaml).await;
    assert_eq!(kinds["Deployment"], 2, "operator and router: {kinds:?}");
    assert_eq!(kinds["CustomResourceDefinition"], 3, "{kinds:?}");
    assert!(
        kinds["ClusterRole"] >= 2 && kinds["Service"] >= 2,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn helm_chart_applies_to_the_api_server() {
    let client = ControlPlane::shared().client().await.unwrap();
    let helm = tool("SISKIN_HELM");
    run(&helm, &["lint", "config/helm/siskin"]);
    for extra in [&[][..], &["--set", "apiGroup=flagger.app"][..]] {
        let mut args = vec![
            "template",
            "siskin",
            "config/helm/siskin",
            "--namespace",
            "siskin-system",
            "--kube-version",
            "1.36.0",
        ];
        args.extend_from_slice(extra);
        let yaml = run(&helm, &args);
        let kinds = dry_run_apply(&client, &yaml).await;
        assert_eq!(kinds["Deployment"], 2, "{extra:?}: {kinds:?}");
        assert_eq!(kinds["CustomResourceDefinition"], 3, "{extra:?}: {kinds:?}");
    }
    // A value that cannot work is refused with the fix.
    let out = Command::new(&helm)
        .args([
            "template",
            "siskin",
            "config/helm/siskin",
            "--kube-version",
            "1.36.0",
        ])
        .args(["--set", "apiGroup=bogus"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("apiGroup must be siskin.dev or flagger.app")
    );
}

/// The chart's ClusterRole grants exactly what config/rbac/role.yaml grants (the kustomize
/// base is the one tested as the operator's identity; the chart must not drift from it).
#[test]
fn helm_cluster_role_matches_config_rbac() {
    let role = |yaml: &str, name: &str| -> Value {
        serde_yaml::Deserializer::from_str(yaml)
            .filter_map(|d| serde::Deserialize::deserialize(d).ok())
            .find(|v: &Value| v["kind"] == "ClusterRole" && v["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("a ClusterRole named {name}"))
    };
    let rules_of = |yaml: &str| role(yaml, "siskin")["rules"].clone();
    let kustomize = std::fs::read_to_string(repo_root().join("config/rbac/role.yaml")).unwrap();
    let users = std::fs::read_to_string(repo_root().join("config/rbac/user_roles.yaml")).unwrap();
    let chart = run(
        &tool("SISKIN_HELM"),
        &[
            "template",
            "siskin",
            "config/helm/siskin",
            "--namespace",
            "siskin-system",
            "--kube-version",
            "1.36.0",
        ],
    );
    assert_eq!(rules_of(&chart), rules_of(&kustomize));
    // The users' roles too, with their aggregation labels.
    for name in ["siskin-release-viewer", "siskin-release-manager"] {
        let (c, k) = (role(&chart, name), role(&users, name));
        assert_eq!(c["rules"], k["rules"], "{name}");
        for label in [
            "rbac.authorization.k8s.io/aggregate-to-view",
            "rbac.authorization.k8s.io/aggregate-to-edit",
            "rbac.authorization.k8s.io/aggregate-to-admin",
        ] {
            assert_eq!(
                c["metadata"]["labels"][label], k["metadata"]["labels"][label],
                "{name} {label}"
            );
        }
    }
}

/// Every `http://host` of a line of `examples/` that names the load tester.
fn example_loadtester_hosts() -> Vec<String> {
    let mut hosts = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if let Some((_, rest)) = line.split_once("http://")
                && rest.contains("loadtester")
            {
                let host = rest.split(['/', ' ', '"']).next().unwrap().to_string();
                hosts.push(host);
            }
        }
    }
    assert!(!hosts.is_empty(), "the examples call the load tester");
    hosts
}

/// The load tester's objects hang together: the Service the examples call (`name.namespace`,
/// port 80) selects the Deployment's pods and targets the port it listens on, the gates
/// ConfigMap it is started with is the one its Role grants, and the Role is bound to the
/// ServiceAccount it runs as.
fn check_loadtester(yaml: &str, namespace: &str) {
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| {
            !v.is_null() && v["metadata"]["labels"]["app.kubernetes.io/component"] == "loadtester"
        })
        .collect();
    let one = |kind: &str| -> &Value {
        let found: Vec<&Value> = docs.iter().filter(|v| v["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "one loadtester {kind}");
        found[0]
    };
    let (svc, deploy, role, binding, sa) = (
        one("Service"),
        one("Deployment"),
        one("Role"),
        one("RoleBinding"),
        one("ServiceAccount"),
    );
    for v in [svc, deploy, role, binding, sa] {
        assert_eq!(v["metadata"]["namespace"], namespace, "{}", v["kind"]);
    }
    let host = format!("{}.{namespace}", svc["metadata"]["name"].as_str().unwrap());
    for h in example_loadtester_hosts() {
        assert_eq!(h, host, "examples/ call the load tester's Service");
    }
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["port"], 80, "the examples' URLs have no port");
    let pod = &deploy["spec"]["template"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &pod["metadata"]["labels"][k], v,
            "the Service selects the pods: {k}"
        );
    }
    let container = &pod["spec"]["containers"][0];
    let named = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port["targetPort"])
        .expect("the Service's targetPort is a container port");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let arg = |flag: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(flag))
            .unwrap_or_else(|| panic!("{flag} in {args:?}"))
    };
    assert_eq!(
        arg("--port=").parse::<u64>().unwrap(),
        named["containerPort"].as_u64().unwrap()
    );
    let gates = arg("--gates-configmap=$(POD_NAMESPACE)/");
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "POD_NAMESPACE"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
        "$(POD_NAMESPACE) is defined"
    );
    let rules = role["rules"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["resources"] == serde_json::json!(["configmaps"])
                && r["resourceNames"] == serde_json::json!([gates])
                && r["verbs"] == serde_json::json!(["get", "update"])),
        "the Role grants the gates ConfigMap {gates}: {rules:?}"
    );
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let sa_name = &pod["spec"]["serviceAccountName"];
    assert_eq!(&sa["metadata"]["name"], sa_name);
    assert_eq!(&binding["subjects"][0]["name"], sa_name);
}

#[tokio::test]
async fn loadtester_manifests_apply_and_serve_the_examples_urls() {
    let client = ControlPlane::shared().client().await.unwrap();
    // A dry run of a namespaced object needs its namespace to exist.
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(
            "test",
            &PatchParams::apply("siskin-manifests").force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test"}
            })),
        )
        .await
        .unwrap();
    let yaml = run(&tool("SISKIN_KUSTOMIZE"), &["build", "config/loadtester"]);
    let kinds = dry_run_apply(&client, &yaml).await;
    let want: BTreeMap<String, usize> = [
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    .into_iter()
    .map(|k| (k.to_string(), 1))
    .collect();
    assert_eq!(kinds, want);
    check_loadtester(&yaml, "test");

    // The chart, installed as the values' comment says for the examples.
    let yaml = run(
        &tool("SISKIN_HELM"),
        &[
            "template",
            "siskin",
            "config/helm/siskin",
            "--namespace",
            "siskin-system",
            "--kube-version",
            "1.36.0",
            "--set",
            "loadtester.enabled=true",
            "--set",
            "loadtester.namespace=test",
        ],
    );
    let kinds = dry_run_apply(&client, &yaml).await;
    assert_eq!(
        kinds["Deployment"], 3,
        "operator, router, load tester: {kinds:?}"
    );
    check_loadtester(&yaml, "test");
}

/// The chart ships config/grafana/'s dashboards unchanged: its files/grafana/ copies are the
/// same bytes, and `grafana.dashboards.enabled=true` renders one ConfigMap per dashboard with
/// the sidecar's label and the same JSON.
#[test]
fn helm_ships_the_grafana_dashboards() {
    let chart = run(
        &tool("SISKIN_HELM"),
        &[
            "template",
            "siskin",
            "config/helm/siskin",
            "--namespace",
            "siskin-system",
            "--kube-version",
            "1.36.0",
            "--set",
            "grafana.dashboards.enabled=true",
        ],
    );
    let maps: Vec<Value> = serde_yaml::Deserializer::from_str(&chart)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &Value| {
            v["kind"] == "ConfigMap" && v["metadata"]["labels"]["grafana_dashboard"] == "1"
        })
        .collect();
    assert_eq!(maps.len(), 2, "one ConfigMap per dashboard");
    for name in ["siskin-operator.json", "siskin-router.json"] {
        let source =
            std::fs::read_to_string(repo_root().join("config/grafana").join(name)).unwrap();
        let copy = std::fs::read_to_string(
            repo_root()
                .join("config/helm/siskin/files/grafana")
                .join(name),
        )
        .unwrap();
        assert_eq!(
            source, copy,
            "config/helm/siskin/files/grafana/{name} is a copy of config/grafana/{name}"
        );
        let shipped = maps
            .iter()
            .find_map(|m| m["data"][name].as_str())
            .unwrap_or_else(|| panic!("no ConfigMap holds {name}"));
        let a: Value = serde_json::from_str(shipped).unwrap();
        let b: Value = serde_json::from_str(&source).unwrap();
        assert_eq!(a, b, "{name}");
    }
    // Off by default.
    let plain = run(
        &tool("SISKIN_HELM"),
        &[
            "template",
            "siskin",
            "config/helm/siskin",
            "--kube-version",
            "1.36.0",
        ],
    );
    assert!(!plain.contains("grafana_dashboard"));
}
