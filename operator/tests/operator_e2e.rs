//! `siskin operator` end to end on a real API server: the operator runs as its own process
//! with the RBAC of config/rbac (the harness's `as-operator` identity), a real `siskin-router`
//! serves the traffic, and the harness's kubelet runs each Deployment as a sample-app process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/scene.rs"]
mod scene;
use scene::*;

use std::{
    sync::{Arc, Mutex, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Event, Service},
};
use kube::{
    Api,
    api::{DynamicObject, ListParams, Patch, PatchParams},
    discovery::ApiResource,
};
use serde_json::{Value, json};

/// Initialization, a good release promoted step by step, a bad one rolled back with an event
/// naming the failing check — under siskin.dev and, with `--api-group flagger.app`, under
/// Flagger's own CRDs.
async fn lifecycle(group: &str, prefix: &str) {
    let sc = scene(prefix).await;
    let (admin, ns, router) = (sc.admin.clone(), sc.ns.clone(), &sc.router);
    let _operator = start_operator(
        &sc,
        "op",
        &["--api-group", group, "--enable-leader-election", "false"],
        &[],
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

    // Drift between releases is put back: a generated Service deleted by hand comes back.
    let services: Api<Service> = Api::namespaced(admin.clone(), &ns);
    services
        .delete("podinfo-canary", &Default::default())
        .await
        .unwrap();
    let started = Instant::now();
    while services.get_opt("podinfo-canary").await.unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "deleted Service not restored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

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
    // Operator metrics, Flagger's equivalents.
    let metrics = _operator.get("/metrics");
    for needle in [
        format!("siskin_canary_status{{name=\"podinfo\",namespace=\"{ns}\"}} 2"),
        format!("siskin_canary_weight{{workload=\"podinfo-primary\",namespace=\"{ns}\"}} 100"),
        format!(
            "siskin_canary_successes_total{{name=\"podinfo\",namespace=\"{ns}\",deployment_strategy=\"canary\",analysis_status=\"completed\"}} 1"
        ),
        format!(
            "siskin_canary_failures_total{{name=\"podinfo\",namespace=\"{ns}\",deployment_strategy=\"canary\",analysis_status=\"completed\"}} 1"
        ),
        "siskin_canary_metric_analysis{".to_string(),
        "siskin_canary_duration_seconds_count{".to_string(),
    ] {
        assert!(metrics.contains(&needle), "missing {needle} in\n{metrics}");
    }
    assert_eq!(_operator.get("/healthz"), "OK");
    assert_eq!(_operator.get("/readyz"), "OK");
    traffic.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_lifecycle_through_the_builtin_router() {
    lifecycle("siskin.dev", "op-life").await;
}

/// A Flagger manifest, unchanged but for its namespace, served by `--api-group flagger.app`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagger_manifest_served_under_flagger_app() {
    lifecycle("flagger.app", "op-flagger").await;
}

/// A canary that never becomes ready is rolled back at the progress deadline, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_never_ready_is_rolled_back_at_the_progress_deadline() {
    let (sc, _counts, traffic) =
        initialized("op-notready", json!({"progressDeadlineSeconds": 12})).await;
    let op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    let mut d = deployment("2.0.0", "0");
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "ROLLOUT", "value": "NotReady"}));
    let started = Instant::now();
    apply_deployment(&sc.admin, &sc.ns, &d).await;
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Failed",
        Duration::from_secs(60),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "not before the deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(s["canaryWeight"], 0);
    let ev = events(&sc).await;
    assert!(
        ev.iter()
            .any(|(t, _, m)| t == "Warning" && m.contains("progress deadline exceeded")),
        "an event gives the reason: {ev:#?}\n{}",
        op.log()
    );
    assert_eq!(route_weights(&sc.admin, &sc.ns).await, (100, 0));
    traffic.abort();
}

/// A new revision during the analysis restarts it from weight 0; the newest one is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_revision_mid_run_restarts_the_analysis() {
    let (sc, counts, traffic) = initialized("op-restart", json!({})).await;
    let op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    wait_status(&sc, "weight 25", Duration::from_secs(60), |s| {
        s["canaryWeight"] == 25
    })
    .await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.1", "0")).await;
    wait_status(&sc, "restart at weight 0", Duration::from_secs(30), |s| {
        s["canaryWeight"] == 0 && s["phase"] == "Progressing"
    })
    .await;
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(120),
    )
    .await;
    let ev = events(&sc).await;
    assert!(
        ev.iter().any(|(_, _, m)| m.contains("Restarting analysis")),
        "{ev:#?}\n{}",
        op.log()
    );
    let primary: Api<Deployment> = Api::namespaced(sc.admin.clone(), &sc.ns);
    let image = primary
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
    assert!(image.ends_with(":2.0.1"), "{image}");
    assert!(served(&counts, "2.0.1") > 0);
    traffic.abort();
}

/// The operator SIGKILLed mid-analysis and started again continues from the status it wrote:
/// no step is taken twice and the promotion happens once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_mid_analysis_resumes_from_its_status() {
    let (sc, _counts, traffic) = initialized("op-kill", json!({})).await;
    let mut first = start_operator(&sc, "first", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    wait_status(&sc, "weight 25", Duration::from_secs(60), |s| {
        s["canaryWeight"] == 25
    })
    .await;
    first.kill();
    let second = start_operator(&sc, "second", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(120),
    )
    .await;
    let logs = format!("{}\n{}", first.log(), second.log());
    let count = |needle: &str| logs.matches(needle).count();
    assert_eq!(count("Advance podinfo canary weight 25"), 1, "{logs}");
    assert_eq!(count("Advance podinfo canary weight 50"), 1, "{logs}");
    assert_eq!(count("Promotion completed!"), 1, "{logs}");
    assert!(
        !second.log().contains("New revision detected"),
        "{}",
        second.log()
    );
    traffic.abort();
}

/// Deleting a Canary with revertOnDeletion gives the target its replicas and the apex Service
/// back, removes the primary and Siskin's route, and lets the Canary go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_on_deletion_restores_the_target() {
    let (sc, counts, traffic) = initialized("op-revert", json!({"revertOnDeletion": true})).await;
    let _op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    let canaries: Api<DynamicObject> =
        Api::namespaced_with(sc.admin.clone(), &sc.ns, &canary_resource("siskin.dev"));
    let c = canaries.get("podinfo").await.unwrap();
    assert!(
        c.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"siskin.dev/finalizer".to_string()),
        "finalizer added"
    );
    canaries
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    let started = Instant::now();
    while canaries.get_opt("podinfo").await.unwrap().is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the Canary was not let go"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let deployments: Api<Deployment> = Api::namespaced(sc.admin.clone(), &sc.ns);
    assert_eq!(
        deployments
            .get("podinfo")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(1)
    );
    assert!(
        deployments
            .get_opt("podinfo-primary")
            .await
            .unwrap()
            .is_none(),
        "primary removed"
    );
    let services: Api<Service> = Api::namespaced(sc.admin.clone(), &sc.ns);
    let apex = services.get("podinfo").await.unwrap();
    assert_eq!(apex.spec.unwrap().selector.unwrap()["app"], "podinfo");
    let res = ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    );
    let routes: Api<DynamicObject> = Api::namespaced_with(sc.admin.clone(), &sc.ns, &res);
    assert!(
        routes.get_opt("podinfo").await.unwrap().is_none(),
        "Siskin's route removed"
    );
    let _ = counts;
    traffic.abort();
}

/// Two replicas with leader election: one reconciles; when it is killed, the other takes the
/// Lease within its duration and finishes the release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_replica_finishes_the_release_when_the_leader_dies() {
    let (sc, _counts, traffic) = initialized("op-leader", json!({})).await;
    let mut a = start_operator(&sc, "a", &[], &[("HOSTNAME", "replica-a")]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut b = start_operator(&sc, "b", &[], &[("HOSTNAME", "replica-b")]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(sc.admin.clone(), siskin_e2e::OPERATOR_NAMESPACE);
    let holder = |l: k8s_openapi::api::coordination::v1::Lease| {
        l.spec.and_then(|s| s.holder_identity).unwrap_or_default()
    };
    let first = holder(leases.get("siskin-leader-election").await.unwrap());
    assert!(
        first.starts_with("replica-a_"),
        "the first replica leads: {first}"
    );
    assert!(
        !b.log().contains("Initialization done"),
        "the standby does not reconcile"
    );
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    wait_status(&sc, "weight 25", Duration::from_secs(60), |s| {
        s["canaryWeight"] == 25
    })
    .await;
    let killed = Instant::now();
    a.kill();
    let started = Instant::now();
    loop {
        let h = holder(leases.get("siskin-leader-election").await.unwrap());
        if h.starts_with("replica-b_") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no takeover: {h}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        killed.elapsed() < Duration::from_secs(25),
        "takeover within the lease duration (15 s) and a retry"
    );
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(120),
    )
    .await;
    assert!(b.log().contains("Promotion completed!"), "{}", b.log());
    b.kill();
    traffic.abort();
}

/// A DaemonSet target: the primary is a DaemonSet copy, the target is kept off every node
/// between releases, and a new image is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_target_is_released() {
    let sc = scene("op-ds").await;
    let ds = |version: &str| {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "podinfo"},
            "spec": {"selector": {"matchLabels": {"app": "podinfo"}},
                "template": {"metadata": {"labels": {"app": "podinfo"}},
                    "spec": {"containers": [{"name": "podinfo", "image": format!("ghcr.io/stefanprodan/podinfo:{version}")}]}}}})
    };
    let api: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(sc.admin.clone(), &sc.ns);
    let pp = PatchParams::apply("gitops").force();
    api.patch("podinfo", &pp, &Patch::Apply(ds("1.0.0")))
        .await
        .unwrap();
    let mut canary = canary_manifest("siskin.dev", &sc.ns, json!({}));
    canary["spec"]["targetRef"]["kind"] = json!("DaemonSet");
    apply_canary(&sc.admin, &sc.ns, "siskin.dev", &canary).await;
    let (counts, traffic) = load(sc.router.port, format!("podinfo.{}", sc.ns));
    let op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    let node_selector = |d: k8s_openapi::api::apps::v1::DaemonSet| {
        d.spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .node_selector
            .unwrap_or_default()
    };
    assert!(
        api.get_opt("podinfo-primary").await.unwrap().is_some(),
        "{}",
        op.log()
    );
    assert_eq!(
        node_selector(api.get("podinfo").await.unwrap())
            .get("siskin.dev/scale-to-zero")
            .map(String::as_str),
        Some("true"),
        "the target is kept off every node"
    );
    api.patch("podinfo", &pp, &Patch::Apply(ds("2.0.0")))
        .await
        .unwrap();
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(120),
    )
    .await;
    let primary = api.get("podinfo-primary").await.unwrap();
    let image = primary.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert!(image.ends_with(":2.0.0"), "{image}");
    assert!(
        served(&counts, "2.0.0") > 0,
        "traffic reached the new version"
    );
    traffic.abort();
}

/// A ConfigMap the target uses is tracked: the primary runs on a `-primary` copy, a change to
/// the ConfigMap alone starts a release, and promotion copies the new data. The target's HPA
/// is copied for the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_config_change_is_released_and_the_primary_gets_an_autoscaler() {
    let sc = scene("op-config").await;
    let pp = PatchParams::apply("gitops").force();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(sc.admin.clone(), &sc.ns);
    let cm = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "podinfo-config"}, "data": {"color": v}});
    cms.patch("podinfo-config", &pp, &Patch::Apply(cm("blue")))
        .await
        .unwrap();
    let mut d = deployment("1.0.0", "0");
    d["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
        json!([{"configMapRef": {"name": "podinfo-config"}}]);
    apply_deployment(&sc.admin, &sc.ns, &d).await;
    let hpas: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> =
        Api::namespaced(sc.admin.clone(), &sc.ns);
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "podinfo"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"}, "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}});
    hpas.patch("podinfo", &pp, &Patch::Apply(&hpa))
        .await
        .unwrap();
    let canary = canary_manifest(
        "siskin.dev",
        &sc.ns,
        json!({"autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"}}),
    );
    apply_canary(&sc.admin, &sc.ns, "siskin.dev", &canary).await;
    let (_counts, traffic) = load(sc.router.port, format!("podinfo.{}", sc.ns));
    let op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    let copy = cms
        .get("podinfo-config-primary")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log()));
    assert_eq!(copy.data.unwrap()["color"], "blue");
    let deployments: Api<Deployment> = Api::namespaced(sc.admin.clone(), &sc.ns);
    let pspec = deployments
        .get("podinfo-primary")
        .await
        .unwrap()
        .spec
        .unwrap();
    let env_from = pspec.template.spec.unwrap().containers[0]
        .env_from
        .clone()
        .unwrap();
    assert_eq!(
        env_from[0].config_map_ref.as_ref().unwrap().name,
        "podinfo-config-primary"
    );
    let phpa = hpas.get("podinfo-primary").await.unwrap().spec;
    assert_eq!(phpa.scale_target_ref.name, "podinfo-primary");
    assert_eq!(phpa.max_replicas, 4);

    // Only the ConfigMap changes: a release, and the primary's copy follows on promotion.
    cms.patch("podinfo-config", &pp, &Patch::Apply(cm("green")))
        .await
        .unwrap();
    wait_status(
        &sc,
        "a release for the config change",
        Duration::from_secs(30),
        |s| s["phase"] == "Progressing",
    )
    .await;
    assert_eq!(
        cms.get("podinfo-config-primary")
            .await
            .unwrap()
            .data
            .unwrap()["color"],
        "blue",
        "the primary keeps the old data during the analysis"
    );
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        cms.get("podinfo-config-primary")
            .await
            .unwrap()
            .data
            .unwrap()["color"],
        "green"
    );
    assert!(
        s["trackedConfigs"]["configmap/podinfo-config"].is_string(),
        "{s:#}"
    );
    traffic.abort();
}

/// One request through the router with optional cookies: (version, Set-Cookie headers).
async fn get_with_cookie(port: u16, host: &str, cookie: Option<&str>) -> (String, Vec<String>) {
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let mut req = http::Request::get(format!("http://127.0.0.1:{port}/")).header("host", host);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    (v["version"].as_str().unwrap_or("?").to_string(), cookies)
}

/// Session affinity through the HTTPRoute: a client that got the canary's cookie stays on the
/// canary while it takes traffic; one that got the primary's stays on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_affinity_pins_clients_through_the_httproute() {
    let extra = json!({"analysis": {"interval": "3s", "threshold": 2, "maxWeight": 50, "stepWeight": 25,
        "sessionAffinity": {"cookieName": "canary-session", "primaryCookieName": "primary-session", "maxAge": 600},
        "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"}]}});
    let (sc, _counts, traffic) = initialized("op-sticky", extra).await;
    let op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    wait_status(&sc, "weight 25", Duration::from_secs(60), |s| {
        s["canaryWeight"] == 25
    })
    .await;
    let host = format!("podinfo.{}", sc.ns);
    // Fresh clients until one lands on each side; each side hands out its cookie.
    let (mut canary_cookie, mut primary_cookie) = (None, None);
    for _ in 0..200 {
        let (version, set) = get_with_cookie(sc.router.port, &host, None).await;
        let pair = |name: &str| {
            set.iter()
                .find(|c| c.starts_with(&format!("{name}=")))
                .map(|c| c.split(';').next().unwrap().to_string())
        };
        match version.as_str() {
            "2.0.0" if canary_cookie.is_none() => canary_cookie = pair("canary-session"),
            "1.0.0" if primary_cookie.is_none() => primary_cookie = pair("primary-session"),
            _ => {}
        }
        if canary_cookie.is_some() && primary_cookie.is_some() {
            break;
        }
    }
    let canary_cookie =
        canary_cookie.unwrap_or_else(|| panic!("the canary sets its cookie\n{}", op.log()));
    let primary_cookie =
        primary_cookie.unwrap_or_else(|| panic!("the primary sets its cookie\n{}", op.log()));
    for _ in 0..30 {
        let cookie = format!("other=1; {canary_cookie}");
        assert_eq!(
            get_with_cookie(sc.router.port, &host, Some(&cookie))
                .await
                .0,
            "2.0.0"
        );
        assert_eq!(
            get_with_cookie(sc.router.port, &host, Some(&primary_cookie))
                .await
                .0,
            "1.0.0"
        );
    }
    traffic.abort();
}

/// `gatewayapi:v1`: the same HTTPRoute attached to a Gateway (here one of class `siskin`, so
/// the built-in router plays the external implementation), with `service.hosts` as hostnames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_provider_releases_through_a_gateway() {
    let sc = scene("op-gwapi").await;
    let gateways = dynamic_api(
        &sc,
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
        "gateways",
    );
    let gw = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "public"},
        "spec": {"gatewayClassName": "siskin", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}});
    gateways
        .patch("public", &PatchParams::apply("gitops"), &Patch::Apply(&gw))
        .await
        .unwrap();
    apply_deployment(&sc.admin, &sc.ns, &deployment("1.0.0", "0")).await;
    let canary = canary_manifest(
        "siskin.dev",
        &sc.ns,
        // No metrics: for gatewayapi the built-in checks are Prometheus queries (Flagger's HTTP
        // observer) and this test is about the route through the Gateway, not about Prometheus,
        // which `releases_are_judged_by_a_metric_template_on_prometheus` covers.
        json!({"provider": "gatewayapi:v1", "service": {"port": 9898, "hosts": ["podinfo.example.com"],
            "gatewayRefs": [{"name": "public", "namespace": sc.ns}]},
            "analysis": {"interval": "3s", "threshold": 2, "maxWeight": 50, "stepWeight": 25}}),
    );
    apply_canary(&sc.admin, &sc.ns, "siskin.dev", &canary).await;
    let (counts, traffic) = load(sc.router.port, "podinfo.example.com".into());
    let op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    let services: Api<Service> = Api::namespaced(sc.admin.clone(), &sc.ns);
    let apex = services.get("podinfo").await.unwrap().spec.unwrap();
    assert_eq!(
        apex.selector.unwrap()["app"],
        "podinfo-primary",
        "the apex selects the primary"
    );
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    let mut max_weight = 0;
    let started = Instant::now();
    loop {
        let s = canary_status(&sc.admin, &sc.ns, "siskin.dev").await;
        max_weight = max_weight.max(s["canaryWeight"].as_i64().unwrap_or(0));
        if s["phase"] == "Succeeded" {
            break;
        }
        assert!(
            s["phase"] != "Failed" && started.elapsed() < Duration::from_secs(120),
            "{s:#}\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(max_weight, 50);
    assert!(
        served(&counts, "2.0.0") > 20,
        "the Gateway sent part of the traffic to the canary"
    );
    let route = route_weights(&sc.admin, &sc.ns).await;
    assert_eq!(route, (100, 0));
    traffic.abort();
}

/// `kubernetes`: blue/green by the apex Service's selector, no router: iterations without
/// metrics, then the apex follows the primary again with the new version in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_provider_does_blue_green_with_the_service_selector() {
    let sc = scene("op-k8s").await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("1.0.0", "0")).await;
    let canary = canary_manifest(
        "siskin.dev",
        &sc.ns,
        json!({"provider": "kubernetes", "analysis": {"interval": "3s", "threshold": 2, "iterations": 2}}),
    );
    apply_canary(&sc.admin, &sc.ns, "siskin.dev", &canary).await;
    let op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    let services: Api<Service> = Api::namespaced(sc.admin.clone(), &sc.ns);
    let selector = |s: Service| s.spec.unwrap().selector.unwrap()["app"].clone();
    assert_eq!(
        selector(services.get("podinfo").await.unwrap()),
        "podinfo-primary"
    );
    assert_eq!(
        selector(services.get("podinfo-canary").await.unwrap()),
        "podinfo"
    );
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        selector(services.get("podinfo").await.unwrap()),
        "podinfo-primary",
        "{}",
        op.log()
    );
    let deployments: Api<Deployment> = Api::namespaced(sc.admin.clone(), &sc.ns);
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
    assert!(
        op.log().contains("Advance podinfo canary iteration 2/2"),
        "{}",
        op.log()
    );
}

/// Fast failure on the real API server: a canary failing 50 % of its requests at weight 10 is
/// rolled back from the router fleet's live window between steps, long before the interval
/// (10 s) and the threshold (5 failed checks) would. Prints the time from the first failing
/// canary request to the router serving 100 % primary (recorded in docs/analysis.md; a
/// measurement, not a timed assertion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_check_rolls_back_from_live_statistics_between_steps() {
    let sc = scene("op-fastfail").await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("1.0.0", "0")).await;
    let canary = canary_manifest(
        "siskin.dev",
        &sc.ns,
        json!({"analysis": {"interval": "10s", "threshold": 5, "maxWeight": 50, "stepWeight": 10,
            "metrics": [{"name": "request-success-rate", "critical": true,
                "thresholdRange": {"min": 99}, "interval": "1m"}]}}),
    );
    apply_canary(&sc.admin, &sc.ns, "siskin.dev", &canary).await;
    let op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    // About 200 requests a second through the router: 20 a second reach the canary at 10 %.
    let first_failure: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let host = format!("podinfo.{}", sc.ns);
    let port = sc.router.port;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (first, host) = (first_failure.clone(), host.clone());
            tokio::spawn(async move {
                let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
                    hyper_util::client::legacy::Client::builder(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .build_http();
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let req = http::Request::get(format!("http://127.0.0.1:{port}/"))
                        .header("host", &host)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    if let Ok(resp) = client.request(req).await
                        && resp.status() == http::StatusCode::INTERNAL_SERVER_ERROR
                    {
                        first.lock().unwrap().get_or_insert_with(Instant::now);
                    }
                }
            })
        })
        .collect();
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0.5")).await;
    // The router's own view: when does it serve the canary no traffic any more?
    let admin_url = format!("http://127.0.0.1:{}/config", sc.router.admin);
    let route = format!("{}/podinfo", sc.ns);
    let http: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let started = Instant::now();
    let back = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no rollback; status {:#}\n{}",
            canary_status(&sc.admin, &sc.ns, "siskin.dev").await,
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        if first_failure.lock().unwrap().is_none() {
            continue;
        }
        let Ok(resp) = http.get(admin_url.parse().unwrap()).await else {
            continue;
        };
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let report: siskin_route::ConfigReport = serde_json::from_slice(&body).unwrap();
        if report.served_weights(&route).is_some_and(|(_, c)| c == 0) {
            break Instant::now();
        }
    };
    let first = first_failure.lock().unwrap().unwrap();
    let took = back.duration_since(first);
    eprintln!(
        "[fast failure] first failing canary request -> router serving 100% primary: {} ms",
        took.as_millis()
    );
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Failed",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        s["failedChecks"].as_i64().unwrap_or(0) < 5,
        "rolled back by the critical check, not the threshold: {s:#}"
    );
    let ev = events(&sc).await;
    assert!(
        ev.iter()
            .any(|(_, _, m)| m.contains("critical check failed: metric request-success-rate")),
        "{ev:#?}"
    );
    for w in workers {
        w.abort();
    }
}

/// Checks on a real Prometheus (scraping this test's router every second) through a
/// MetricTemplate on the real API server: a template whose Prometheus cannot be reached is
/// named in the Canary's `MetricsAvailable` condition at initialization, before traffic moves;
/// once fixed, a good release is promoted and a bad one rolled back on the query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_are_judged_by_a_metric_template_on_prometheus() {
    use siskin_e2e::prometheus::{Options, Prometheus};
    let sc = scene("op-prom").await;
    let prom = Prometheus::start(&Options {
        scrape: vec![format!("127.0.0.1:{}", sc.router.admin)],
        ..Default::default()
    })
    .unwrap();
    let templates = dynamic_api(
        &sc,
        "siskin.dev",
        "v1beta1",
        "MetricTemplate",
        "metrictemplates",
    );
    let template = |address: &str| {
        json!({"apiVersion": "siskin.dev/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": "error-rate"},
            "spec": {"provider": {"type": "prometheus", "address": address},
                "query": "(sum(rate(siskin_router_requests_total{route=\"{{ namespace }}/{{ target }}\", backend=\"canary\", status_class=\"5xx\"}[{{ interval }}])) or on() vector(0)) / sum(rate(siskin_router_requests_total{route=\"{{ namespace }}/{{ target }}\", backend=\"canary\"}[{{ interval }}])) * 100"}})
    };
    let apply_template = |address: String| {
        let body = template(&address);
        let templates = templates.clone();
        async move {
            templates
                .patch(
                    "error-rate",
                    &PatchParams::apply("gitops").force(),
                    &Patch::Apply(&body),
                )
                .await
                .unwrap();
        }
    };
    apply_template(format!("http://127.0.0.1:{}", free_port())).await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("1.0.0", "0")).await;
    let canary = canary_manifest(
        "siskin.dev",
        &sc.ns,
        json!({"analysis": {"interval": "10s", "threshold": 1, "maxWeight": 50, "stepWeight": 50,
            "metrics": [{"name": "error-rate", "templateRef": {"name": "error-rate"},
                "thresholdRange": {"max": 5}, "interval": "10s"}]}}),
    );
    apply_canary(&sc.admin, &sc.ns, "siskin.dev", &canary).await;
    let op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    let cond = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "MetricsAvailable")
        .cloned()
        .unwrap_or_default();
    assert_eq!(cond["status"], "False", "{s:#}");
    assert!(
        cond["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("metric error-rate: unreachable"),
        "{cond}"
    );
    let ev = events(&sc).await;
    assert!(
        ev.iter()
            .any(|(t, r, _)| t == "Warning" && r == "MetricsUnavailable"),
        "{ev:#?}"
    );
    apply_template(prom.url.clone()).await;
    let (_counts, traffic) = load(sc.router.port, format!("podinfo.{}", sc.ns));
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(120),
    )
    .await;
    let cond = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "MetricsAvailable")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        cond["status"], "True",
        "probed again at the new revision: {cond}"
    );
    let check = s["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "error-rate")
        .cloned()
        .unwrap();
    assert_eq!(
        (check["verdict"].as_str(), check["provider"].as_str()),
        (Some("Pass"), Some("prometheus")),
        "{check}"
    );
    apply_deployment(&sc.admin, &sc.ns, &deployment("3.0.0", "0.5")).await;
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Failed",
        Duration::from_secs(120),
    )
    .await;
    let check = s["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "error-rate")
        .cloned()
        .unwrap();
    assert_eq!(check["verdict"], "Fail", "{check}\n{}", op.log());
    assert!(check["value"].as_f64().unwrap() > 20.0, "{check}");
    traffic.abort();
}

/// The statistical judge through the operator: the samples of every router pod, read over the
/// router Service's endpoints (`/stats?window=`), pooled per backend; a good release is
/// promoted with the judge's figures in its status, one failing a fifth of its requests is
/// rolled back on `judge-errors`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_are_judged_canary_against_primary_by_the_operator() {
    let sc = scene("op-judge").await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("1.0.0", "0")).await;
    let canary = canary_manifest(
        "siskin.dev",
        &sc.ns,
        json!({"analysis": {"interval": "5s", "threshold": 1, "maxWeight": 50, "stepWeight": 50,
            "metrics": [{"name": "judge-errors", "thresholdRange": {"max": 1}, "interval": "10s"}]}}),
    );
    apply_canary(&sc.admin, &sc.ns, "siskin.dev", &canary).await;
    let op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    let loads: Vec<_> = (0..3)
        .map(|_| load(sc.router.port, format!("podinfo.{}", sc.ns)).1)
        .collect();
    let judged = |s: &Value| {
        s["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == "judge-errors")
            .cloned()
            .unwrap_or_default()
    };
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(120),
    )
    .await;
    let c = judged(&s);
    assert_eq!(c["verdict"], "Pass", "{s:#}\n{}", op.log());
    assert_eq!(c["judge"]["test"], "two-proportion", "{c}");
    assert!(c["judge"]["canaryRequests"].as_u64().unwrap() >= 50, "{c}");
    assert!(c["judge"]["primaryRequests"].as_u64().unwrap() >= 50, "{c}");
    assert_eq!(c["max"], 1.0);
    apply_deployment(&sc.admin, &sc.ns, &deployment("3.0.0", "0.2")).await;
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Progressing",
        Duration::from_secs(60),
    )
    .await;
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Failed",
        Duration::from_secs(120),
    )
    .await;
    let c = judged(&s);
    assert_eq!(c["verdict"], "Fail", "{s:#}");
    assert!(c["judge"]["canaryFailures"].as_u64().unwrap() > 0, "{c}");
    let effect = c["judge"]["effect"].as_f64().unwrap();
    assert!((10.0..=30.0).contains(&effect), "a fifth fails: {c}");
    let ev = events(&sc).await;
    assert!(
        ev.iter()
            .any(|(_, _, m)| m.contains("judge-errors") && m.contains("excess failure rate")),
        "the event explains the judgement: {ev:#?}"
    );
    for l in loads {
        l.abort();
    }
}

#[path = "support/receiver.rs"]
mod receiver;

/// Webhooks and alerts from the operator: every hook of a release called with Flagger's
/// payload and recorded in the status and as events, the global `--event-webhook` told of
/// each event, and an AlertProvider whose address is in a Secret sending Slack's message to
/// a Slack stand-in (the stand-in checks the request as Slack's incoming webhook does), all
/// with the operator running as its ServiceAccount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_and_alerts_reach_their_receivers() {
    use receiver::{SLACK_HOOK, bodies, paths};
    let (hooks, calls) = receiver::receiver().await;
    let sc = scene("op-hooks").await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(sc.admin.clone(), &sc.ns);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-url"},
        "stringData": {"address": format!("http://{hooks}{SLACK_HOOK}")}});
    secrets
        .patch(
            "chat-url",
            &PatchParams::apply("gitops"),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    let providers = dynamic_api(
        &sc,
        "siskin.dev",
        "v1beta1",
        "AlertProvider",
        "alertproviders",
    );
    let provider = json!({"apiVersion": "siskin.dev/v1beta1", "kind": "AlertProvider", "metadata": {"name": "chat"},
        "spec": {"type": "slack", "channel": "releases", "username": "siskin", "secretRef": {"name": "chat-url"}}});
    providers
        .patch(
            "chat",
            &PatchParams::apply("gitops"),
            &Patch::Apply(&provider),
        )
        .await
        .unwrap();
    apply_deployment(&sc.admin, &sc.ns, &deployment("1.0.0", "0")).await;
    let hook = |name: &str, kind: &str, path: &str| {
        json!({"name": name, "type": kind, "url": format!("http://{hooks}{path}"),
            "metadata": {"cmd": format!("{name} for podinfo")}})
    };
    let canary = canary_manifest(
        "siskin.dev",
        &sc.ns,
        json!({"analysis": {"interval": "3s", "threshold": 2, "maxWeight": 50, "stepWeight": 25,
            "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"}],
            "alerts": [{"name": "releases", "severity": "info", "providerRef": {"name": "chat"}}],
            "webhooks": [hook("smoke", "pre-rollout", "/pre"), hook("load", "rollout", "/rollout"),
                hook("approve", "confirm-promotion", "/promote"), hook("notify", "post-rollout", "/post")]}}),
    );
    apply_canary(&sc.admin, &sc.ns, "siskin.dev", &canary).await;
    let (_counts, traffic) = load(sc.router.port, format!("podinfo.{}", sc.ns));
    let op = start_operator(
        &sc,
        "op",
        &[
            "--enable-leader-election",
            "false",
            "--event-webhook",
            &format!("http://{hooks}/events"),
        ],
        &[],
    );
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    let s = wait_status(&sc, "Succeeded", Duration::from_secs(120), |s| {
        assert_ne!(s["phase"], "Failed", "{s:#}\n{}", op.log());
        s["phase"] == "Succeeded"
    })
    .await;

    // Every hook, in Flagger's order, with its payload; each result in the status.
    let seen = paths(&calls);
    let first = |p: &str| {
        seen.iter()
            .position(|x| x == p)
            .unwrap_or_else(|| panic!("{p} never called: {seen:?}\n{}", op.log()))
    };
    assert!(first("/pre") < first("/rollout"), "{seen:?}");
    assert!(first("/rollout") < first("/promote"), "{seen:?}");
    assert!(first("/promote") < first("/post"), "{seen:?}");
    let pre = bodies(&calls, "/pre").remove(0);
    assert_eq!(
        (
            pre["name"].clone(),
            pre["namespace"].clone(),
            pre["type"].clone(),
            pre["phase"].clone()
        ),
        (
            "podinfo".into(),
            sc.ns.clone().into(),
            "pre-rollout".into(),
            "Progressing".into()
        ),
        "{pre}"
    );
    assert_eq!(pre["metadata"]["cmd"], "smoke for podinfo", "{pre}");
    assert!(
        !pre["checksum"].as_str().unwrap_or_default().is_empty(),
        "{pre}"
    );
    let results = s["webhooks"]
        .as_array()
        .unwrap_or_else(|| panic!("no webhooks in {s:#}"));
    for name in ["smoke", "load", "approve", "notify"] {
        let r = results
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no result for {name}: {s:#}"));
        assert_eq!(
            (r["passed"].clone(), r["statusCode"].clone()),
            (true.into(), 200.into()),
            "{r}"
        );
        assert!(r["time"].is_string() && r["durationMs"].is_number(), "{r}");
    }
    let ev = events(&sc).await;
    assert!(
        ev.iter()
            .any(|(_, _, m)| m.contains("smoke") && m.contains("200")),
        "an event carries the hook's result: {ev:#?}"
    );

    // The global event hook heard the release's events.
    let told = bodies(&calls, "/events");
    assert!(
        told.iter().any(|e| e["metadata"]["eventMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("New revision detected")),
        "{told:#?}"
    );
    assert!(
        told.iter()
            .all(|e| e["type"] == "event" && e["namespace"] == sc.ns.as_str()),
        "{told:#?}"
    );

    // Slack got a message per phase change, as the AlertProvider and its Secret say.
    let slack = bodies(&calls, SLACK_HOOK);
    assert!(slack.len() >= 3, "{slack:#?}\n{}", op.log());
    let author = format!("podinfo.{}", sc.ns);
    for m in &slack {
        assert_eq!(
            (m["channel"].as_str(), m["username"].as_str()),
            (Some("releases"), Some("siskin")),
            "{m}"
        );
        assert_eq!(m["attachments"][0]["author_name"], author.as_str(), "{m}");
    }
    let texts: Vec<&str> = slack
        .iter()
        .filter_map(|m| m["attachments"][0]["text"].as_str())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("New revision detected")),
        "{texts:#?}"
    );
    let metrics = op.get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("siskin_notifications_total{")
                && l.contains("provider=\"slack\"")
                && l.contains("outcome=\"sent\"")),
        "{metrics}"
    );
    traffic.abort();
}

/// A mesh backend's routing object, and how to read the canary's weight from it.
struct Mesh {
    provider: &'static str,
    /// Extra `spec.service` fields.
    service: Value,
    /// (group, version, kind, plural) of the object carrying the weights, named `podinfo`.
    object: (&'static str, &'static str, &'static str, &'static str),
    weight: fn(&Value) -> Option<u64>,
    /// The user's own object of that kind, there before the Canary (its rules must survive).
    theirs: Option<Value>,
    /// After `revertOnDeletion`: whether the object is gone (else: the user's is back).
    deleted_on_revert: bool,
}

fn number(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().map(|f| f.round() as u64))
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn by_name<'a>(list: &'a Value, key: &str, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|x| x[key] == name)
}

fn istio_weight(vs: &Value) -> Option<u64> {
    let route = by_name(&vs["spec"]["http"], "name", "siskin-canary")?;
    let d = route["route"]
        .as_array()?
        .iter()
        .find(|d| d["destination"]["host"] == "podinfo-canary")?;
    number(&d["weight"])
}

fn split_weight(ts: &Value) -> Option<u64> {
    number(&by_name(&ts["spec"]["backends"], "service", "podinfo-canary")?["weight"])
}

fn consul_weight(s: &Value) -> Option<u64> {
    number(&by_name(&s["spec"]["splits"], "service", "podinfo-canary")?["weight"])
}

/// One mesh backend's whole lifecycle on the real API server with the mesh's real CRDs, the
/// operator running as its ServiceAccount (config/rbac) and applying with strict field
/// validation: initialization, weights stepping to `maxWeight`, promotion, a rollback, and
/// `revertOnDeletion`. No mesh data plane runs here, so nothing routes by these objects: the
/// release is judged by a rollout webhook (a receiver on loopback that passes, then fails),
/// and the test reads the weights the operator wrote at every step.
async fn mesh_lifecycle(prefix: &str, mesh: Mesh) {
    let (hooks, _calls) = receiver::receiver().await;
    let sc = scene(prefix).await;
    let (group, version, kind, plural) = mesh.object;
    let objects = dynamic_api(&sc, group, version, kind, plural);
    if let Some(theirs) = &mesh.theirs {
        objects
            .patch(
                "podinfo",
                &PatchParams::apply("kubectl"),
                &Patch::Apply(theirs),
            )
            .await
            .unwrap();
    }
    apply_deployment(&sc.admin, &sc.ns, &deployment("1.0.0", "0")).await;
    let mut service = json!({"port": 9898});
    for (k, v) in mesh.service.as_object().unwrap() {
        service[k] = v.clone();
    }
    let manifest = |hook: &str| {
        canary_manifest(
            "siskin.dev",
            &sc.ns,
            json!({"provider": mesh.provider, "revertOnDeletion": true, "service": service,
                "analysis": {"interval": "2s", "threshold": 1, "maxWeight": 50, "stepWeight": 25,
                    "metrics": [],
                    "webhooks": [{"name": "checks", "type": "rollout", "url": format!("http://{hooks}{hook}")}]}}),
        )
    };
    apply_canary(&sc.admin, &sc.ns, "siskin.dev", &manifest("/rollout")).await;
    let op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    let read = || async {
        let o = objects.get_opt("podinfo").await.unwrap();
        o.map(|o| serde_json::to_value(o).unwrap())
    };
    let obj = read().await.expect("routing object written");
    assert_eq!((mesh.weight)(&obj), Some(0), "{obj:#}\n{}", op.log());
    let services: Api<Service> = Api::namespaced(sc.admin.clone(), &sc.ns);
    let apex = services.get("podinfo").await.unwrap().spec.unwrap();
    assert_eq!(apex.selector.unwrap()["app"], "podinfo-primary");

    // A good release: every step's weight is written, then all back to the primary.
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    let mut seen = std::collections::BTreeSet::new();
    let started = Instant::now();
    loop {
        let s = canary_status(&sc.admin, &sc.ns, "siskin.dev").await;
        if let Some(w) = read().await.as_ref().and_then(mesh.weight) {
            seen.insert(w);
        }
        if s["phase"] == "Succeeded" {
            break;
        }
        assert!(
            s["phase"] != "Failed" && started.elapsed() < Duration::from_secs(120),
            "{s:#}\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.contains(&25) && seen.contains(&50),
        "{} wrote the steps: {seen:?}",
        mesh.provider
    );
    let obj = read().await.unwrap();
    assert_eq!((mesh.weight)(&obj), Some(0), "{obj:#}");
    if let Some(theirs) = &mesh.theirs {
        // The user's own rule is still there, untouched.
        let docs = by_name(&obj["spec"]["http"], "name", "docs").expect("the user's route kept");
        assert_eq!(docs, &theirs["spec"]["http"][0], "{obj:#}");
    }
    let deployments: Api<Deployment> = Api::namespaced(sc.admin.clone(), &sc.ns);
    let image = |d: Deployment| {
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
    };
    assert_eq!(
        image(deployments.get("podinfo-primary").await.unwrap()).as_deref(),
        Some("ghcr.io/stefanprodan/podinfo:2.0.0")
    );

    // A bad release: the check fails at the first step and traffic goes back to the primary.
    apply_canary(&sc.admin, &sc.ns, "siskin.dev", &manifest("/fail")).await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("3.0.0", "0")).await;
    wait_status(&sc, "Failed", Duration::from_secs(90), |s| {
        s["phase"] == "Failed"
    })
    .await;
    let obj = read().await.unwrap();
    assert_eq!((mesh.weight)(&obj), Some(0), "{obj:#}");
    assert_eq!(
        image(deployments.get("podinfo-primary").await.unwrap()).as_deref(),
        Some("ghcr.io/stefanprodan/podinfo:2.0.0"),
        "no promotion of the bad release"
    );

    // revertOnDeletion: the apex Service selects the target again; Siskin's object is gone
    // or the user's is back as it was.
    let canaries: Api<DynamicObject> =
        Api::namespaced_with(sc.admin.clone(), &sc.ns, &canary_resource("siskin.dev"));
    canaries
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    let started = Instant::now();
    while canaries.get_opt("podinfo").await.unwrap().is_some() {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", op.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let apex = services.get("podinfo").await.unwrap().spec.unwrap();
    assert_eq!(apex.selector.unwrap()["app"], "podinfo");
    let after = read().await;
    if mesh.deleted_on_revert {
        assert!(after.is_none(), "{after:#?}");
    } else {
        let after = after.expect("the user's object is kept");
        let theirs = mesh.theirs.as_ref().unwrap();
        assert_eq!(after["spec"], theirs["spec"], "restored as it was");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_backend_lifecycle_keeps_the_users_virtualservice() {
    mesh_lifecycle(
        "op-istio",
        Mesh {
            provider: "istio",
            service: json!({"hosts": ["app.example.com"], "retries": {"attempts": 2, "perTryTimeout": "1s"},
                "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}),
            object: ("networking.istio.io", "v1beta1", "VirtualService", "virtualservices"),
            weight: istio_weight,
            theirs: Some(json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                "metadata": {"name": "podinfo"},
                "spec": {"hosts": ["app.example.com", "podinfo"], "http": [
                    {"name": "docs", "match": [{"uri": {"prefix": "/docs"}}], "route": [{"destination": {"host": "docs"}}]},
                    {"route": [{"destination": {"host": "podinfo"}}]}]}})),
            deleted_on_revert: false,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkerd_backend_lifecycle_through_a_trafficsplit() {
    mesh_lifecycle(
        "op-linkerd",
        Mesh {
            provider: "linkerd",
            service: json!({}),
            object: (
                "split.smi-spec.io",
                "v1alpha1",
                "TrafficSplit",
                "trafficsplits",
            ),
            weight: split_weight,
            theirs: None,
            deleted_on_revert: true,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smi_v1alpha3_backend_lifecycle() {
    mesh_lifecycle(
        "op-smi3",
        Mesh {
            provider: "smi:v1alpha3",
            service: json!({}),
            object: (
                "split.smi-spec.io",
                "v1alpha3",
                "TrafficSplit",
                "trafficsplits",
            ),
            weight: split_weight,
            theirs: None,
            deleted_on_revert: true,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn osm_backend_lifecycle_through_a_v1alpha2_trafficsplit() {
    mesh_lifecycle(
        "op-osm",
        Mesh {
            provider: "osm",
            service: json!({}),
            object: (
                "split.smi-spec.io",
                "v1alpha2",
                "TrafficSplit",
                "trafficsplits",
            ),
            weight: split_weight,
            theirs: None,
            deleted_on_revert: true,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_backend_lifecycle_through_a_servicesplitter() {
    mesh_lifecycle(
        "op-consul",
        Mesh {
            provider: "consul",
            service: json!({}),
            object: (
                "consul.hashicorp.com",
                "v1alpha1",
                "ServiceSplitter",
                "servicesplitters",
            ),
            weight: consul_weight,
            theirs: None,
            deleted_on_revert: true,
        },
    )
    .await;
}

fn httproute_weight(r: &Value) -> Option<u64> {
    let rule = by_name(&r["spec"]["rules"], "name", "siskin-canary")?;
    number(&by_name(&rule["backendRefs"], "name", "podinfo-canary")?["weight"])
}

/// Linkerd as current Linkerd runs canaries: a Gateway API HTTPRoute whose parent is the apex
/// Service (GAMMA), chosen by `service.gatewayRefs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkerd_backend_lifecycle_through_a_gamma_httproute() {
    mesh_lifecycle(
        "op-gamma",
        Mesh {
            provider: "linkerd",
            service: json!({"gatewayRefs": [{"group": "core", "kind": "Service", "name": "podinfo", "port": 9898}]}),
            object: ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
            weight: httproute_weight,
            theirs: None,
            deleted_on_revert: true,
        },
    )
    .await;
}

/// `gatewayapi:v1` for a gRPC Service (`appProtocol: grpc`): a GRPCRoute attached to an
/// external Gateway (one no controller serves here, so no parent reports on the route).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_backend_lifecycle_through_a_grpcroute() {
    mesh_lifecycle(
        "op-grpc",
        Mesh {
            provider: "gatewayapi:v1",
            service: json!({"appProtocol": "grpc", "gatewayRefs": [{"name": "external"}]}),
            object: ("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes"),
            weight: httproute_weight,
            theirs: None,
            deleted_on_revert: true,
        },
    )
    .await;
}
