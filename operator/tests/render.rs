//! `siskin render` golden outputs: every backend at initialized, 10 %, 50 %, A/B, mirrored and
//! promoted states (the real binary, inputs in `tests/render/inputs/`, outputs compared with
//! `tests/render/golden/`; `SISKIN_UPDATE_GOLDEN=1` rewrites them), and every golden output
//! applied as a server-side dry run to the real API server, so what Siskin would write is what
//! Kubernetes accepts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use kube::{
    Api,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams},
    discovery::Scope,
};
use serde_json::{Value, json};
use siskin_e2e::ControlPlane;

const NOW: &str = "2026-12-01T12:00:00Z";

/// A status that says the last release was promoted.
const PROMOTED: &str = "status:
  phase: Succeeded
  canaryWeight: 0
  failedChecks: 0
  iterations: 0
  lastAppliedSpec: 0d7c8e4fa5b4a2a1
  lastPromotedSpec: 0d7c8e4fa5b4a2a1
  lastTransitionTime: 2026-12-01T11:00:00Z
";

/// Promoted, with the last run's session cookie to expire.
const EXPIRING: &str = "status:
  phase: Succeeded
  canaryWeight: 0
  failedChecks: 0
  iterations: 0
  lastAppliedSpec: 0d7c8e4fa5b4a2a1
  lastPromotedSpec: 0d7c8e4fa5b4a2a1
  lastTransitionTime: 2026-12-01T11:00:00Z
  previousSessionAffinityCookie: canary=0123456789abcdef
";

struct Case {
    /// `golden/<backend>/<state>.yaml`.
    golden: &'static str,
    /// The Canary's input file.
    input: &'static str,
    /// Appended to the Canary document.
    status: Option<&'static str>,
    args: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        golden: "builtin/initialized",
        input: "builtin.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "builtin/weight-10",
        input: "builtin.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "builtin/weight-50",
        input: "builtin.yaml",
        status: None,
        args: &["--primary-weight", "50"],
    },
    Case {
        golden: "builtin/ab",
        input: "builtin-ab.yaml",
        status: None,
        args: &["--canary-weight", "100"],
    },
    Case {
        golden: "builtin/mirrored",
        input: "builtin-mirror.yaml",
        status: None,
        args: &["--mirrored"],
    },
    Case {
        golden: "builtin/promoted",
        input: "builtin.yaml",
        status: Some(PROMOTED),
        args: &[],
    },
    Case {
        golden: "builtin/existing-route",
        input: "builtin-existing.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "builtin/grpc-mirrored",
        input: "builtin-grpc.yaml",
        status: None,
        args: &["--canary-weight", "10", "--mirrored"],
    },
    Case {
        golden: "gatewayapi-v1/initialized",
        input: "gatewayapi.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "gatewayapi-v1/weight-10",
        input: "gatewayapi.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "gatewayapi-v1/weight-50",
        input: "gatewayapi.yaml",
        status: None,
        args: &["--canary-weight", "50"],
    },
    Case {
        golden: "gatewayapi-v1/ab",
        input: "gatewayapi-ab.yaml",
        status: None,
        args: &["--canary-weight", "100"],
    },
    Case {
        golden: "gatewayapi-v1/mirrored",
        input: "gatewayapi-mirror.yaml",
        status: None,
        args: &["--mirrored"],
    },
    Case {
        golden: "gatewayapi-v1/promoted",
        input: "gatewayapi.yaml",
        status: Some(PROMOTED),
        args: &[],
    },
    Case {
        golden: "gatewayapi-v1/grpc-initialized",
        input: "gatewayapi-grpc.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "gatewayapi-v1/grpc-weight-10",
        input: "gatewayapi-grpc.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "gatewayapi-v1/grpc-promoted",
        input: "gatewayapi-grpc.yaml",
        status: Some(PROMOTED),
        args: &[],
    },
    Case {
        golden: "gatewayapi-v1/grpc-ab",
        input: "gatewayapi-grpc-ab.yaml",
        status: None,
        args: &["--canary-weight", "100"],
    },
    Case {
        golden: "gatewayapi-v1beta1/initialized",
        input: "gatewayapi-v1beta1.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "gatewayapi-v1beta1/weight-10",
        input: "gatewayapi-v1beta1.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "gatewayapi-v1beta1/weight-50",
        input: "gatewayapi-v1beta1.yaml",
        status: None,
        args: &["--canary-weight", "50"],
    },
    Case {
        golden: "gatewayapi-v1beta1/ab",
        input: "gatewayapi-v1beta1-ab.yaml",
        status: None,
        args: &["--canary-weight", "100"],
    },
    Case {
        golden: "gatewayapi-v1beta1/mirrored",
        input: "gatewayapi-v1beta1-mirror.yaml",
        status: None,
        args: &["--mirrored"],
    },
    Case {
        golden: "gatewayapi-v1beta1/promoted",
        input: "gatewayapi-v1beta1.yaml",
        status: Some(PROMOTED),
        args: &[],
    },
    Case {
        golden: "istio/initialized",
        input: "istio.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "istio/weight-10",
        input: "istio.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "istio/weight-50",
        input: "istio.yaml",
        status: None,
        args: &["--canary-weight", "50"],
    },
    Case {
        golden: "istio/promoted",
        input: "istio.yaml",
        status: Some(PROMOTED),
        args: &[],
    },
    Case {
        golden: "istio/session-expired",
        input: "istio.yaml",
        status: Some(EXPIRING),
        args: &[],
    },
    Case {
        golden: "istio/ab",
        input: "istio-ab.yaml",
        status: None,
        args: &["--canary-weight", "100"],
    },
    Case {
        golden: "istio/mirrored",
        input: "istio-mirror.yaml",
        status: None,
        args: &["--mirrored"],
    },
    Case {
        golden: "istio/existing-virtualservice",
        input: "istio-existing.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "istio/tcp",
        input: "istio-tcp.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "linkerd/initialized",
        input: "linkerd.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "linkerd/weight-10",
        input: "linkerd.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "linkerd/weight-50",
        input: "linkerd.yaml",
        status: None,
        args: &["--canary-weight", "50"],
    },
    Case {
        golden: "linkerd/promoted",
        input: "linkerd.yaml",
        status: Some(PROMOTED),
        args: &[],
    },
    Case {
        golden: "smi-v1alpha1/initialized",
        input: "smi-v1alpha1.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "smi-v1alpha1/weight-10",
        input: "smi-v1alpha1.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "smi-v1alpha1/weight-50",
        input: "smi-v1alpha1.yaml",
        status: None,
        args: &["--canary-weight", "50"],
    },
    Case {
        golden: "smi-v1alpha1/promoted",
        input: "smi-v1alpha1.yaml",
        status: Some(PROMOTED),
        args: &[],
    },
    Case {
        golden: "smi-v1alpha2/initialized",
        input: "smi-v1alpha2.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "smi-v1alpha2/weight-10",
        input: "smi-v1alpha2.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "smi-v1alpha2/weight-50",
        input: "smi-v1alpha2.yaml",
        status: None,
        args: &["--canary-weight", "50"],
    },
    Case {
        golden: "smi-v1alpha2/promoted",
        input: "smi-v1alpha2.yaml",
        status: Some(PROMOTED),
        args: &[],
    },
    Case {
        golden: "smi-v1alpha3/initialized",
        input: "smi-v1alpha3.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "smi-v1alpha3/weight-10",
        input: "smi-v1alpha3.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "smi-v1alpha3/weight-50",
        input: "smi-v1alpha3.yaml",
        status: None,
        args: &["--canary-weight", "50"],
    },
    Case {
        golden: "smi-v1alpha3/promoted",
        input: "smi-v1alpha3.yaml",
        status: Some(PROMOTED),
        args: &[],
    },
    Case {
        golden: "osm/initialized",
        input: "osm.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "osm/weight-10",
        input: "osm.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "osm/weight-50",
        input: "osm.yaml",
        status: None,
        args: &["--canary-weight", "50"],
    },
    Case {
        golden: "osm/promoted",
        input: "osm.yaml",
        status: Some(PROMOTED),
        args: &[],
    },
    Case {
        golden: "consul/initialized",
        input: "consul.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "consul/weight-10",
        input: "consul.yaml",
        status: None,
        args: &["--canary-weight", "10"],
    },
    Case {
        golden: "consul/weight-50",
        input: "consul.yaml",
        status: None,
        args: &["--canary-weight", "50"],
    },
    Case {
        golden: "consul/promoted",
        input: "consul.yaml",
        status: Some(PROMOTED),
        args: &[],
    },
    Case {
        golden: "linkerd/gamma-ab",
        input: "linkerd-gamma.yaml",
        status: None,
        args: &["--canary-weight", "100"],
    },
    Case {
        golden: "consul/ab",
        input: "consul-ab.yaml",
        status: None,
        args: &["--canary-weight", "100"],
    },
    Case {
        golden: "kubernetes/initialized",
        input: "kubernetes.yaml",
        status: None,
        args: &[],
    },
    Case {
        golden: "kubernetes/switched",
        input: "kubernetes.yaml",
        status: None,
        args: &["--canary-weight", "100"],
    },
    Case {
        golden: "kubernetes/promoted",
        input: "kubernetes.yaml",
        status: Some(PROMOTED),
        args: &[],
    },
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/render")
}

fn input(case: &Case) -> String {
    let workload = std::fs::read_to_string(dir().join("inputs/workload.yaml")).unwrap();
    let canary = std::fs::read_to_string(dir().join("inputs").join(case.input)).unwrap();
    format!("{workload}---\n{canary}{}", case.status.unwrap_or_default())
}

/// Runs `siskin render` on `stdin`; (exit code, stdout, stderr).
fn render(stdin: &str, args: &[&str]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_siskin"))
        .args(["render", "-", "--now", NOW])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn by_kind<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the output"))
}

#[test]
fn golden_outputs_per_backend_and_state() {
    let update = std::env::var_os("SISKIN_UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for case in CASES {
        let (code, out, err) = render(&input(case), case.args);
        assert_eq!(code, 0, "{}: {err}", case.golden);
        let path = dir().join("golden").join(format!("{}.yaml", case.golden));
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &out).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} missing: SISKIN_UPDATE_GOLDEN=1", path.display()));
        if want != out {
            stale.push(format!("{}:\n{out}", case.golden));
        }
    }
    assert!(
        stale.is_empty(),
        "render output changed (review, then SISKIN_UPDATE_GOLDEN=1):\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_plans_carry_what_each_state_means() {
    let out = |golden: &str| {
        let case = CASES.iter().find(|c| c.golden == golden).unwrap();
        let (code, out, err) = render(&input(case), case.args);
        assert_eq!(code, 0, "{err}");
        docs(&out)
    };
    // Initialized: all traffic on the primary, a primary copy of the target, its config and
    // autoscaler, the apex behind the router.
    let init = out("builtin/initialized");
    let rule = &by_kind(&init, "HTTPRoute", "podinfo")["spec"]["rules"][0];
    assert_eq!(rule["name"], "siskin-canary");
    assert_eq!(rule["backendRefs"][0]["weight"], 100);
    assert_eq!(rule["backendRefs"][1]["weight"], 0);
    assert_eq!(rule["timeouts"]["request"], "15s");
    let primary = by_kind(&init, "Deployment", "podinfo-primary");
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "podinfo-config-primary"
    );
    assert_eq!(
        primary["spec"]["selector"]["matchLabels"]["app"],
        "podinfo-primary"
    );
    by_kind(&init, "ConfigMap", "podinfo-config-primary");
    let hpa = by_kind(&init, "HorizontalPodAutoscaler", "podinfo-primary");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "podinfo-primary");
    let apex = by_kind(&init, "Service", "podinfo");
    assert_eq!(apex["spec"]["selector"], json!({}));
    let slice = by_kind(&init, "EndpointSlice", "podinfo-siskin-router-ipv4");
    assert_eq!(slice["endpoints"].as_array().unwrap().len(), 2);
    let canary = init.last().unwrap();
    assert_eq!(canary["status"]["phase"], "Initialized");
    // 10 %: weights and the run's session cookies, in the status and on the route.
    let ten = out("builtin/weight-10");
    let rules = by_kind(&ten, "HTTPRoute", "podinfo")["spec"]["rules"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&str> = rules.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "siskin-sticky-canary",
            "siskin-sticky-primary",
            "siskin-canary"
        ]
    );
    let weighted = rules.last().unwrap();
    assert_eq!(weighted["backendRefs"][1]["weight"], 10);
    let status = &ten.last().unwrap()["status"];
    let cookie = status["sessionAffinityCookie"].as_str().unwrap();
    assert!(cookie.starts_with("canary="), "{cookie}");
    let set_cookie =
        weighted["backendRefs"][1]["filters"][0]["responseHeaderModifier"]["add"][0]["value"]
            .as_str()
            .unwrap();
    assert!(
        set_cookie.starts_with(cookie) && set_cookie.contains("Max-Age=3600"),
        "{set_cookie}"
    );
    // A/B: the conditions merged with the route's own; everything else to the primary.
    let ab = out("builtin/ab");
    let rules = &by_kind(&ab, "HTTPRoute", "podinfo")["spec"]["rules"];
    assert_eq!(rules[0]["name"], "siskin-ab");
    assert_eq!(rules[0]["matches"].as_array().unwrap().len(), 2);
    assert_eq!(rules[0]["matches"][0]["path"]["value"], "/api");
    assert_eq!(rules[0]["backendRefs"][1]["weight"], 100);
    assert_eq!(rules[1]["name"], "siskin-primary");
    assert_eq!(rules[1]["backendRefs"][0]["weight"], 100);
    // Mirrored: half of the requests copied to the canary, which serves none.
    let mirrored = out("builtin/mirrored");
    let rule = &by_kind(&mirrored, "HTTPRoute", "podinfo")["spec"]["rules"][0];
    assert_eq!(rule["filters"][0]["requestMirror"]["percent"], 50);
    assert_eq!(rule["backendRefs"][1]["weight"], 0);
    assert_eq!(mirrored.last().unwrap()["status"]["mirrored"], true);
    // An existing route keeps its split and the user's rule.
    let existing = out("builtin/existing-route");
    let rules = &by_kind(&existing, "HTTPRoute", "podinfo")["spec"]["rules"];
    assert_eq!(rules[0]["backendRefs"][1]["weight"], 30);
    assert_eq!(rules[1]["name"], "docs");
    // Gateway API: the Gateways as parents, hostnames, the apex selecting the primary.
    let gw = out("gatewayapi-v1/weight-10");
    let route = by_kind(&gw, "HTTPRoute", "podinfo");
    assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "public");
    assert_eq!(route["spec"]["hostnames"][0], "app.example.com");
    assert_eq!(
        by_kind(&gw, "Service", "podinfo")["spec"]["selector"]["app"],
        "podinfo-primary"
    );
    // v1beta1, a flagger.app Canary: no timeouts, Siskin's status fields in the annotation.
    let beta = out("gatewayapi-v1beta1/weight-10");
    let route = by_kind(&beta, "HTTPRoute", "podinfo");
    assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1beta1");
    let canary = beta.last().unwrap();
    assert_eq!(canary["apiVersion"], "flagger.app/v1beta1");
    assert!(canary["status"]["observedGeneration"].is_null());
    assert!(canary["metadata"]["annotations"]["siskin.dev/status"].is_string());
    // Kubernetes blue/green: the apex Service's selector is the whole switch.
    let switched = out("kubernetes/switched");
    assert_eq!(
        by_kind(&switched, "Service", "podinfo")["spec"]["selector"]["app"],
        "podinfo"
    );
    assert!(switched.iter().all(|d| d["kind"] != "HTTPRoute"));
}

#[test]
fn json_output_is_one_list() {
    let (code, out, err) = render(&input(&CASES[1]), &["--canary-weight", "10", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["apiVersion"].as_str(), v["kind"].as_str()),
        (Some("v1"), Some("List"))
    );
    assert_eq!(
        v["items"].as_array().unwrap().len(),
        docs(&render(&input(&CASES[1]), &["--canary-weight", "10"]).1).len()
    );
}

#[test]
fn bad_flags_and_inputs_are_named() {
    let canary = input(&CASES[0]);
    let (code, _, err) = render(
        &canary,
        &["--primary-weight", "60", "--canary-weight", "30"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("must add up to 100"), "{err}");
    let (code, _, err) = render(&canary, &["--canary-weight", "130"]);
    assert_eq!(code, 2);
    assert!(err.contains("--canary-weight 130"), "{err}");
    let kube = input(CASES.iter().find(|c| c.input == "kubernetes.yaml").unwrap());
    let (code, _, err) = render(&kube, &["--canary-weight", "10"]);
    assert_eq!(code, 2);
    assert!(err.contains("use a canary weight of 0 or 100"), "{err}");
    let contour = canary.replace("provider: builtin", "provider: contour");
    let (code, _, err) = render(&contour, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("provider contour is not implemented"), "{err}");
    let no_target = std::fs::read_to_string(dir().join("inputs/builtin.yaml")).unwrap();
    let (code, _, err) = render(&no_target, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("the target Deployment test/podinfo is not in the input"),
        "{err}"
    );
}

/// Server-side applies `v` as a dry run; the error text when the API server refuses it.
async fn dry_run(client: &kube::Client, v: &Value) -> Result<(), String> {
    let (group, version) = match v["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), v["apiVersion"].as_str().unwrap().to_string()),
    };
    let kind = v["kind"].as_str().unwrap();
    let gvk = GroupVersionKind::gvk(&group, &version, kind);
    let (res, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("{kind} {group}/{version} is not served: {e}"))?;
    let name = v["metadata"]["name"].as_str().unwrap();
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            v["metadata"]["namespace"].as_str().unwrap(),
            &res,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &res),
    };
    api.patch(
        name,
        &PatchParams::apply("siskin")
            .force()
            .dry_run()
            .validation_strict(),
        &Patch::Apply(v),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("{kind} {name}: {e}"))
}

#[tokio::test]
async fn every_golden_output_is_accepted_by_the_api_server() {
    let client = ControlPlane::shared().client().await.unwrap();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test"}});
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(
            "test",
            &PatchParams::apply("siskin-e2e"),
            &Patch::Apply(&ns),
        )
        .await
        .unwrap();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = Vec::new();
    for case in CASES {
        let path = dir().join("golden").join(format!("{}.yaml", case.golden));
        let text = std::fs::read_to_string(&path).unwrap();
        for v in docs(&text) {
            match dry_run(&client, &v).await {
                Ok(()) => {
                    *kinds
                        .entry(v["kind"].as_str().unwrap().to_string())
                        .or_default() += 1
                }
                Err(e) => refused.push(format!("{}: {e}", case.golden)),
            }
        }
    }
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
    for kind in [
        "Deployment",
        "Service",
        "HTTPRoute",
        "EndpointSlice",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "Canary",
        "VirtualService",
        "DestinationRule",
        "TrafficSplit",
        "ServiceSplitter",
        "ServiceRouter",
        "ServiceDefaults",
        "GRPCRoute",
    ] {
        assert!(kinds.contains_key(kind), "no {kind} was tried: {kinds:?}");
    }
}

#[tokio::test]
async fn an_empty_selector_takes_the_apex_service_back_from_its_owner() {
    // The builtin apex may be the user's own Service with a selector: Siskin's apply (an
    // empty selector, an atomic map) must clear it, or the endpoints controller would compete
    // with the slices Siskin writes.
    let client = ControlPlane::shared().client().await.unwrap();
    let name = format!("apex-{}", std::process::id());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(&name, &PatchParams::apply("siskin-e2e"), &Patch::Apply(&ns))
        .await
        .unwrap();
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), &name);
    let users = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "podinfo"},
        "spec": {"selector": {"app": "podinfo"}, "ports": [{"name": "http", "port": 9898}]}});
    services
        .patch(
            "podinfo",
            &PatchParams::apply("kubectl"),
            &Patch::Apply(&users),
        )
        .await
        .unwrap();
    let case = &CASES[0];
    let (_, out, _) = render(&input(case), case.args);
    let mut apex = by_kind(&docs(&out), "Service", "podinfo").clone();
    apex["metadata"]["namespace"] = json!(name);
    services
        .patch(
            "podinfo",
            &PatchParams::apply("siskin").force(),
            &Patch::Apply(&apex),
        )
        .await
        .unwrap();
    let now = services.get("podinfo").await.unwrap();
    let selector = now.spec.unwrap().selector.unwrap_or_default();
    assert!(selector.is_empty(), "selector left: {selector:?}");
}

#[test]
fn queries_are_printed_exactly_as_they_would_be_sent() {
    let input = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: gatewayapi:v1
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898, gatewayRefs: [{name: gw}]}
  analysis:
    interval: 1m
    threshold: 5
    stepWeight: 10
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 1m
    - name: error-rate
      templateRef: {name: error-rate, namespace: flagger-system}
      templateVariables: {reporter: source}
      thresholdRange: {max: 1}
      interval: 30s
    - name: broken
      templateRef: {name: missing}
---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: error-rate, namespace: flagger-system}
spec:
  provider: {type: prometheus, address: "http://prometheus.istio-system:9090"}
  query: |
    100 - sum(
      rate(istio_requests_total{reporter="{{ variables.reporter }}", destination_workload=~"{{ target }}"}[{{ interval }}])
    )
"#;
    let (code, out, err) = render(
        input,
        &[
            "--queries",
            "-o",
            "json",
            "--metrics-server",
            "http://prom:9090",
        ],
    );
    assert_eq!(
        code, 1,
        "a metric that cannot be resolved fails the command: {err}"
    );
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["provider"], "prometheus");
    assert_eq!(rows[0]["address"], "http://prom:9090");
    assert!(
        rows[0]["query"]
            .as_str()
            .unwrap()
            .starts_with(r#"sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="test", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", status!~"5.*" }[1m] ) )"#),
        "{}",
        rows[0]["query"]
    );
    assert_eq!(rows[1]["address"], "http://prometheus.istio-system:9090");
    assert_eq!(
        rows[1]["query"],
        r#"100 - sum( rate(istio_requests_total{reporter="source", destination_workload=~"podinfo"}[30s]) )"#
    );
    assert!(
        rows[2]["error"]
            .as_str()
            .unwrap()
            .contains("MetricTemplate test/missing does not exist"),
        "{}",
        rows[2]
    );
    // The built-in router answers its own checks: no query language, the route's statistics.
    let builtin = std::fs::read_to_string(dir().join("inputs/builtin.yaml")).unwrap();
    let (code, out, err) = render(&builtin, &["--queries"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = serde_yaml::from_str(&out).unwrap();
    assert_eq!(rows[0]["provider"], "builtin");
    assert!(
        rows[0]["query"]
            .as_str()
            .unwrap()
            .contains("route test/podinfo")
    );
}

#[test]
fn judge_queries_name_the_test_the_window_and_the_level_of_each_check() {
    let input = r#"
apiVersion: siskin.dev/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: builtin
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis:
    interval: 1m
    threshold: 2
    stepWeight: 10
    maxWeight: 50
    metrics:
    - name: judge-latency
      thresholdRange: {max: 10}
    - name: judge-errors
      thresholdRange: {max: 0.5}
      confidence: 0.99
      interval: 30s
"#;
    let (code, out, err) = render(input, &["--queries", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["provider"], "builtin");
    assert_eq!(
        rows[0]["query"],
        "Mann-Whitney rank test of the latency of the canary against the primary on route test/podinfo over the last 60s"
    );
    // Five weights (10 to 50), one check each: 5 % spent over five checks.
    assert_eq!(rows[0]["checksPerRun"], 5);
    assert!((rows[0]["alpha"].as_f64().unwrap() - 0.01).abs() < 1e-12);
    assert_eq!(
        rows[1]["query"],
        "two-proportion test of the failure rate of the canary against the primary on route test/podinfo over the last 30s"
    );
    assert!((rows[1]["alpha"].as_f64().unwrap() - 0.002).abs() < 1e-12);
}

#[test]
fn siskin_providers_prints_the_matrix_in_the_docs() {
    let out = Command::new(env!("CARGO_BIN_EXE_siskin"))
        .arg("providers")
        .output()
        .unwrap();
    assert!(out.status.success());
    let docs = std::fs::read_to_string(dir().join("../../../docs/providers.md")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), docs);
}
