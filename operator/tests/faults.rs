//! The operator under faults of the control plane itself, on a control plane of this test
//! binary's own (its API server is restarted and its etcd frozen, so nothing else shares it).
//! Each case: a release in flight, the fault, and the release finishing as it would have without
//! it — promoted once, never promoted wrongly. Results are recorded in `docs/reliability.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/scene.rs"]
mod scene;
use scene::*;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::json;
use siskin_e2e::ControlPlane;

/// The faults stop the whole plane, so the cases run one at a time.
static PLANE_FAULT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn primary_image(sc: &Scene) -> String {
    let api: Api<Deployment> = Api::namespaced(sc.admin.clone(), &sc.ns);
    api.get("podinfo-primary")
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
        .unwrap()
}

/// Runs a release to weight 25, applies `fault`, and expects the release to be promoted once.
async fn release_through(prefix: &str, fault: impl AsyncFnOnce(&ControlPlane)) {
    let _one = PLANE_FAULT.lock().await;
    let (sc, counts, traffic) = initialized(prefix, json!({})).await;
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
    let failed_before = counts.failed.load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    fault(ControlPlane::shared()).await;
    eprintln!(
        "[faults] {prefix}: fault over after {:?}",
        started.elapsed()
    );
    // The admin client's connections died with the server; a new one sees the new server.
    let sc = Scene {
        admin: ControlPlane::shared().client().await.unwrap(),
        ..sc
    };
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(180),
    )
    .await;
    let log = op.log();
    assert_eq!(log.matches("Promotion completed!").count(), 1, "{log}");
    assert!(!log.contains("Rolling back"), "{log}");
    assert!(primary_image(&sc).await.ends_with(":2.0.0"), "{s:#}");
    assert_eq!(route_weights(&sc.admin, &sc.ns).await, (100, 0));
    eprintln!(
        "[faults] {prefix}: promoted {:?} after the fault began; requests failed through the router since: {}",
        started.elapsed(),
        counts.failed.load(std::sync::atomic::Ordering::Relaxed) - failed_before
    );
    traffic.abort();
}

/// kube-apiserver killed mid-step and started again 5 s later: the operator's watches and
/// status writes fail meanwhile, then it carries on from the status it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_restarted_mid_rollout() {
    release_through("fault-apiserver", async |plane| {
        plane
            .restart_apiserver(Duration::from_secs(5))
            .await
            .unwrap();
    })
    .await;
}

/// etcd frozen for 30 s mid-step: every read and write through the API server stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_paused_for_30_seconds_mid_rollout() {
    release_through("fault-etcd", async |plane| {
        plane.pause_etcd().unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        plane.resume_etcd().unwrap();
    })
    .await;
}
