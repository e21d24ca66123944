//! The operator under faults of the control plane itself, on a control plane of this test
//! binary's own (its API server is restarted and its etcd frozen, so nothing else shares it).
//! Each case: a release in flight, the fault, and the release finishing as it would have without
//! it — promoted once, never promoted wrongly. Results are recorded in `docs/reliability.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/scene.rs"]
mod scene;
use scene::*;
#[path = "support/loadtester.rs"]
mod loadtester;
use loadtester::{LoadTester, post};

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::json;
use siskin_e2e::ControlPlane;

/// The control-plane faults stop the whole plane, so they run alone (write); the other cases
/// share it (read).
static PLANE_FAULT: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

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

/// Runs a release to weight 25, applies `fault`, and expects the release to be promoted once;
/// with `outage`, also the condition and the event that tell the API server was unreachable.
async fn release_through(prefix: &str, outage: bool, fault: impl AsyncFnOnce(&ControlPlane)) {
    let _one = PLANE_FAULT.write().await;
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
    let failed = counts.failed.load(std::sync::atomic::Ordering::Relaxed) - failed_before;
    eprintln!(
        "[faults] {prefix}: promoted {:?} after the fault began; requests failed through the router since: {failed}",
        started.elapsed(),
    );
    traffic.abort();
    // The router serves from what it last read while the control plane is away.
    assert_eq!(failed, 0, "requests failed through the router");
    let told = s["conditions"].as_array().and_then(|c| {
        c.iter()
            .find(|c| c["type"] == "APIServerReachable")
            .cloned()
    });
    let event = events(&sc)
        .await
        .into_iter()
        .find(|(_, reason, _)| reason == "APIServerUnavailable");
    eprintln!("[faults] {prefix}: condition {told:?}; event {event:?}");
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reconcile failed"))
        .collect();
    eprintln!(
        "[faults] {prefix}: {} failed reconciles; first: {:?}",
        failures.len(),
        failures.first()
    );
    if outage {
        // The outage spanned a step, so a reconcile failed on it; the first one through tells.
        assert!(!failures.is_empty(), "no reconcile saw the outage:\n{log}");
        let (kind, _, message) = event.expect("a Warning event APIServerUnavailable");
        assert_eq!(kind, "Warning", "{message}");
        assert!(
            message.contains("could not be reached") && message.contains("resumed"),
            "{message}"
        );
        let told = told.expect("condition APIServerReachable on the status");
        assert_eq!(told["status"], "True", "{told:#}");
        assert_eq!(told["reason"], "Recovered", "{told:#}");
    }
}

/// kube-apiserver killed mid-step and started again 12 s later (longer than a step, 10 s here,
/// so a reconcile meets the outage): the operator's watches and that step fail meanwhile, then
/// it carries on from the status it wrote and tells the outage on the Canary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_restarted_mid_rollout() {
    release_through("fault-apiserver", true, async |plane| {
        plane
            .restart_apiserver(Duration::from_secs(12))
            .await
            .unwrap();
    })
    .await;
}

/// etcd frozen for 30 s mid-step: every read and write through the API server stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_paused_for_30_seconds_mid_rollout() {
    release_through("fault-etcd", false, async |plane| {
        plane.pause_etcd().unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        plane.resume_etcd().unwrap();
    })
    .await;
}

/// Runs a release on version `error_rate` 2.0.0, SIGKILLs the operator as soon as the status
/// satisfies `at`, starts a second one and waits for `outcome`. Returns the scene and both logs.
async fn operator_killed_when(
    prefix: &str,
    error_rate: &str,
    at: &str,
    when: impl Fn(&serde_json::Value) -> bool,
    outcome: &str,
) -> (Scene, String) {
    let _shared = PLANE_FAULT.read().await;
    let (sc, counts, traffic) = initialized(prefix, json!({})).await;
    let mut first = start_operator(&sc, "first", &["--enable-leader-election", "false"], &[]);
    let release = async |sc: &Scene| {
        wait_phase(
            &sc.admin,
            &sc.ns,
            "siskin.dev",
            "Initialized",
            Duration::from_secs(60),
        )
        .await;
        apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", error_rate)).await;
    };
    if at != "Initializing" {
        release(&sc).await;
    }
    // Phases such as Promoting last about one interval: look often.
    let started = Instant::now();
    let seen = loop {
        let s = canary_status(&sc.admin, &sc.ns, "siskin.dev").await;
        if when(&s) {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{at} not seen; status: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    };
    first.kill();
    let killed = Instant::now();
    eprintln!(
        "[faults] {prefix}: killed at phase {} weight {} failedChecks {}",
        seen["phase"], seen["canaryWeight"], seen["failedChecks"]
    );
    let second = start_operator(&sc, "second", &["--enable-leader-election", "false"], &[]);
    if at == "Initializing" {
        release(&sc).await;
    }
    let failed_before = counts.failed.load(std::sync::atomic::Ordering::Relaxed);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        outcome,
        Duration::from_secs(120),
    )
    .await;
    // The canary is scaled down after either outcome.
    let deployments: Api<Deployment> = Api::namespaced(sc.admin.clone(), &sc.ns);
    let started = Instant::now();
    while deployments
        .get("podinfo")
        .await
        .unwrap()
        .spec
        .unwrap()
        .replicas
        != Some(0)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "canary not scaled down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(route_weights(&sc.admin, &sc.ns).await, (100, 0));
    let failed = counts.failed.load(std::sync::atomic::Ordering::Relaxed) - failed_before;
    traffic.abort();
    let logs = format!("{}\n{}", first.log(), second.log());
    eprintln!(
        "[faults] {prefix}: {outcome} {:?} after the kill; requests failed through the router since: {failed}",
        killed.elapsed()
    );
    (sc, logs)
}

fn count(logs: &str, needle: &str) -> usize {
    logs.matches(needle).count()
}

/// Killed while held at each gate of the real `siskin-loadtester`: at `Waiting`
/// (confirm-rollout closed) and at `WaitingPromotion` (confirm-promotion closed). Each new
/// operator keeps holding where the last one stopped — no traffic moved, no step taken, no
/// second "New revision" — and the release goes on once the gate opens, promoted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_while_waiting_at_gates() {
    let _shared = PLANE_FAULT.read().await;
    let dir = tempfile::tempdir().unwrap();
    let lt = free_port();
    let _tester = LoadTester::start(lt, &dir.path().join("gates.json")).await;
    let gate = format!("http://127.0.0.1:{lt}/gate/check");
    let (sc, counts, traffic) = initialized(
        "kill-gates",
        json!({"analysis": {"interval": "3s", "threshold": 2, "maxWeight": 50, "stepWeight": 25,
            "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"}],
            "webhooks": [{"name": "approve-rollout", "type": "confirm-rollout", "url": gate},
                {"name": "approve-promotion", "type": "confirm-promotion", "url": gate}]}}),
    )
    .await;
    let typed = |t: &str| json!({"name": "podinfo", "namespace": sc.ns, "type": t});
    let flags = ["--enable-leader-election", "false"];
    let mut op = start_operator(&sc, "first", &flags, &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    let mut logs = String::new();
    for (phase, weight, hook, opens) in [
        ("Waiting", 0, "approve-rollout", "confirm-rollout"),
        (
            "WaitingPromotion",
            50,
            "approve-promotion",
            "confirm-promotion",
        ),
    ] {
        let s = wait_phase(
            &sc.admin,
            &sc.ns,
            "siskin.dev",
            phase,
            Duration::from_secs(90),
        )
        .await;
        assert_eq!(s["canaryWeight"], weight, "{s:#}");
        op.kill();
        logs.push_str(&op.log());
        let killed = Instant::now();
        op = start_operator(&sc, phase, &flags, &[]);
        // Three intervals under the new operator: still held, nothing moved.
        tokio::time::sleep(Duration::from_secs(9)).await;
        let s = canary_status(&sc.admin, &sc.ns, "siskin.dev").await;
        assert_eq!(
            (s["phase"].as_str(), s["canaryWeight"].as_u64()),
            (Some(phase), Some(weight)),
            "{s:#}\n{}",
            op.log()
        );
        assert_eq!(
            route_weights(&sc.admin, &sc.ns).await,
            (100 - weight, weight)
        );
        assert!(primary_image(&sc).await.ends_with(":1.0.0"));
        let held = s["webhooks"]
            .as_array()
            .and_then(|w| w.iter().find(|h| h["name"] == hook).cloned())
            .unwrap_or_default();
        assert_eq!(held["statusCode"], 403, "the closed gate's answer: {s:#}");
        eprintln!(
            "[faults] kill-gates: killed at {phase} (weight {weight}); {:?} later still {phase}, gate answer 403",
            killed.elapsed()
        );
        assert_eq!(post(lt, "/gate/open", typed(opens)).await, 202);
    }
    let failed_before = counts.failed.load(std::sync::atomic::Ordering::Relaxed);
    let opened = Instant::now();
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(60),
    )
    .await;
    logs.push_str(&op.log());
    assert_eq!(count(&logs, "Promotion completed!"), 1, "{logs}");
    assert_eq!(count(&logs, "Rolling back"), 0, "{logs}");
    assert_eq!(count(&logs, "New revision detected"), 1, "{logs}");
    assert!(primary_image(&sc).await.ends_with(":2.0.0"));
    assert_eq!(route_weights(&sc.admin, &sc.ns).await, (100, 0));
    let failed = counts.failed.load(std::sync::atomic::Ordering::Relaxed) - failed_before;
    traffic.abort();
    eprintln!(
        "[faults] kill-gates: promoted {:?} after the last gate opened; requests failed through the router since: {failed}",
        opened.elapsed()
    );
}

/// Killed while creating the primary: the second operator finishes initializing without a
/// second primary or a release, then releases as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_while_initializing() {
    let (sc, logs) = operator_killed_when(
        "kill-init",
        "0",
        "Initializing",
        |s| s["phase"] == "Initializing",
        "Succeeded",
    )
    .await;
    assert_eq!(count(&logs, "Promotion completed!"), 1, "{logs}");
    assert!(primary_image(&sc).await.ends_with(":2.0.0"));
}

/// Killed while the primary takes the canary's spec: promoted once, never rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_while_promoting() {
    let (sc, logs) = operator_killed_when(
        "kill-promoting",
        "0",
        "Promoting",
        |s| s["phase"] == "Promoting",
        "Succeeded",
    )
    .await;
    assert_eq!(count(&logs, "Promotion completed!"), 1, "{logs}");
    assert_eq!(count(&logs, "Rolling back"), 0, "{logs}");
    assert!(primary_image(&sc).await.ends_with(":2.0.0"));
}

/// Killed with traffic back on the primary and the canary being scaled down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_while_finalising() {
    let (sc, logs) = operator_killed_when(
        "kill-finalising",
        "0",
        "Finalising",
        |s| s["phase"] == "Finalising",
        "Succeeded",
    )
    .await;
    assert_eq!(count(&logs, "Promotion completed!"), 1, "{logs}");
    assert_eq!(count(&logs, "Rolling back"), 0, "{logs}");
    assert!(primary_image(&sc).await.ends_with(":2.0.0"));
}

/// Killed with one failed check of two on a failing canary: the count survives the restart, so
/// the second operator rolls back after one more failure, and the primary keeps 1.0.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_while_checks_fail_rolls_back_once() {
    let (sc, logs) = operator_killed_when(
        "kill-failing",
        "0.5",
        "one failed check",
        |s| s["failedChecks"] == 1,
        "Failed",
    )
    .await;
    assert_eq!(count(&logs, "Promotion completed!"), 0, "{logs}");
    assert_eq!(count(&logs, "Canary failed!"), 1, "{logs}");
    assert!(primary_image(&sc).await.ends_with(":1.0.0"));
}

/// Killed the moment the rollback is written: the routes, the scale-down and the primary stay
/// as a rollback leaves them, with no second rollback or promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_while_rolling_back() {
    let (sc, logs) = operator_killed_when(
        "kill-rollback",
        "0.5",
        "Failed",
        |s| s["phase"] == "Failed",
        "Failed",
    )
    .await;
    assert_eq!(count(&logs, "Promotion completed!"), 0, "{logs}");
    assert!(count(&logs, "Canary failed!") <= 1, "{logs}");
    assert!(primary_image(&sc).await.ends_with(":1.0.0"));
}

/// The router SIGKILLed at weight 25 and started again 2 s later on the same ports: requests
/// fail while no router runs (one replica), none once its `/readyz` says it is back, and the
/// release goes on to promotion on the statistics the new process gathers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_killed_mid_step() {
    let _shared = PLANE_FAULT.read().await;
    let (mut sc, counts, traffic) = initialized("kill-router", json!({})).await;
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
    let before = counts.failed.load(std::sync::atomic::Ordering::Relaxed);
    let ready_after = sc.router.restart(Duration::from_secs(2)).await;
    let back = counts.failed.load(std::sync::atomic::Ordering::Relaxed);
    let served_2 = served(&counts, "2.0.0");
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(120),
    )
    .await;
    let after = counts.failed.load(std::sync::atomic::Ordering::Relaxed);
    traffic.abort();
    eprintln!(
        "[faults] kill-router: ready {ready_after:?} after its start; requests failed while down: {}, after ready: {}; canary requests after ready: {}",
        back - before,
        after - back,
        served(&counts, "2.0.0") - served_2
    );
    let log = op.log();
    assert_eq!(log.matches("Promotion completed!").count(), 1, "{log}");
    assert!(!log.contains("Rolling back"), "{log}");
    assert!(primary_image(&sc).await.ends_with(":2.0.0"));
    assert_eq!(
        after - back,
        0,
        "requests failed after the router was ready again"
    );
    assert!(
        served(&counts, "2.0.0") > served_2,
        "the canary got traffic again"
    );
}

#[path = "support/receiver.rs"]
mod receiver;

/// A rollout webhook that never answers (its timeout 1 s): each check fails at the timeout,
/// the release is rolled back at the threshold, and an event names the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_webhook_fails_its_check_at_the_timeout() {
    let _shared = PLANE_FAULT.read().await;
    let (hooks, _calls) = receiver::receiver().await;
    let (sc, _counts, traffic) = initialized(
        "hook-hangs",
        json!({"analysis": {"interval": "3s", "threshold": 2, "maxWeight": 50, "stepWeight": 25,
            "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"}],
            "webhooks": [{"name": "load-test", "type": "rollout", "timeout": "1s",
                "url": format!("http://{hooks}/hang")}]}}),
    )
    .await;
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
    let started = Instant::now();
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Failed",
        Duration::from_secs(90),
    )
    .await;
    traffic.abort();
    let took = started.elapsed();
    let events = events(&sc).await;
    eprintln!("[faults] hook-hangs: rolled back {took:?} after the release; events: {events:#?}");
    let log = op.log();
    assert!(!log.contains("Promotion completed!"), "{log}");
    assert!(primary_image(&sc).await.ends_with(":1.0.0"));
    assert_eq!(route_weights(&sc.admin, &sc.ns).await, (100, 0));
    assert!(
        events
            .iter()
            .any(|(kind, _, msg)| kind == "Warning" && msg.contains("load-test")),
        "an event names the webhook: {events:#?}"
    );
    let promoted = s["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Promoted"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(promoted["status"], "False", "{s:#}");
}

/// Notification receivers that fail (500) or never answer: the release is promoted as it
/// would be without alerts, and the operator's log names each failed delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_notifications_do_not_hold_the_release() {
    let _shared = PLANE_FAULT.read().await;
    let (hooks, calls) = receiver::receiver().await;
    let sc = scene("alerts-fail").await;
    let providers = dynamic_api(
        &sc,
        "siskin.dev",
        "v1beta1",
        "AlertProvider",
        "alertproviders",
    );
    for (name, path) in [("broken", "/fail"), ("slow", "/hang")] {
        let provider = json!({"apiVersion": "siskin.dev/v1beta1", "kind": "AlertProvider", "metadata": {"name": name},
            "spec": {"type": "slack", "channel": "releases", "address": format!("http://{hooks}{path}")}});
        providers
            .patch(
                name,
                &kube::api::PatchParams::apply("gitops"),
                &kube::api::Patch::Apply(&provider),
            )
            .await
            .unwrap();
    }
    apply_deployment(&sc.admin, &sc.ns, &deployment("1.0.0", "0")).await;
    let canary = canary_manifest(
        "siskin.dev",
        &sc.ns,
        json!({"analysis": {"interval": "3s", "threshold": 2, "maxWeight": 50, "stepWeight": 25,
            "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"}],
            "alerts": [{"name": "a", "severity": "info", "providerRef": {"name": "broken"}},
                {"name": "b", "severity": "info", "providerRef": {"name": "slow"}}]}}),
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
            &format!("http://{hooks}/fail"),
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
    let started = Instant::now();
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(120),
    )
    .await;
    traffic.abort();
    let log = op.log();
    let p = receiver::paths(&calls);
    eprintln!(
        "[faults] alerts-fail: promoted {:?} after the release; deliveries tried: /fail {}, /hang {}",
        started.elapsed(),
        p.iter().filter(|p| *p == "/fail").count(),
        p.iter().filter(|p| *p == "/hang").count()
    );
    assert_eq!(log.matches("Promotion completed!").count(), 1, "{log}");
    assert!(primary_image(&sc).await.ends_with(":2.0.0"));
    assert!(p.iter().any(|p| p == "/hang") && p.iter().any(|p| p == "/fail"));
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .filter(|l| l.contains("alert") || l.contains("notif") || l.contains("event webhook"))
        .collect();
    eprintln!("[faults] alerts-fail: log lines on deliveries: {failures:#?}");
    assert!(!failures.is_empty(), "failed deliveries are logged: {log}");
}

/// Prometheus, which the release's only check asks (a MetricTemplate), frozen mid-release
/// (SIGSTOP: connections hang) and, in the next release, killed. Each check then errors at the
/// provider's timeout (or at once, refused) and counts as failed: a freeze shorter than the
/// threshold lets the release go on to promotion once it thaws; a dead Prometheus rolls the
/// release back at the threshold, never promoted, with the error on the check's status and a
/// Warning event naming the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_frozen_then_dead_under_the_operator() {
    use siskin_e2e::prometheus::{Options, Prometheus};
    let _shared = PLANE_FAULT.read().await;
    let sc = scene("prom-down").await;
    let mut prom = Prometheus::start(&Options {
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
    let template = json!({"apiVersion": "siskin.dev/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "error-rate"},
        "spec": {"provider": {"type": "prometheus", "address": prom.url},
            "query": "(sum(rate(siskin_router_requests_total{route=\"{{ namespace }}/{{ target }}\", backend=\"canary\", status_class=\"5xx\"}[{{ interval }}])) or on() vector(0)) / sum(rate(siskin_router_requests_total{route=\"{{ namespace }}/{{ target }}\", backend=\"canary\"}[{{ interval }}])) * 100"}});
    templates
        .patch(
            "error-rate",
            &kube::api::PatchParams::apply("gitops").force(),
            &kube::api::Patch::Apply(&template),
        )
        .await
        .unwrap();
    apply_deployment(&sc.admin, &sc.ns, &deployment("1.0.0", "0")).await;
    let canary = canary_manifest(
        "siskin.dev",
        &sc.ns,
        json!({"analysis": {"interval": "3s", "threshold": 4, "maxWeight": 30, "stepWeight": 10,
            "metrics": [{"name": "error-rate", "templateRef": {"name": "error-rate"},
                "thresholdRange": {"max": 5}, "interval": "10s"}]}}),
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
    let verdicts = |s: &serde_json::Value| -> Vec<String> {
        s["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["verdict"].as_str().unwrap_or_default().to_string())
            .collect()
    };

    // Frozen after the first passing step, thawed after a failed check: promoted.
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    wait_status(&sc, "weight 10", Duration::from_secs(60), |s| {
        s["canaryWeight"].as_i64().unwrap_or(0) >= 10
    })
    .await;
    prom.freeze().unwrap();
    let frozen = Instant::now();
    let s = wait_status(&sc, "a failed check", Duration::from_secs(40), |s| {
        s["failedChecks"].as_i64().unwrap_or(0) >= 1
    })
    .await;
    prom.thaw().unwrap();
    eprintln!(
        "[faults] prometheus frozen {:?}: verdicts {:?}, failed {}",
        frozen.elapsed(),
        verdicts(&s),
        s["failedChecks"]
    );
    assert!(verdicts(&s).iter().any(|v| v == "Error"), "{s:#}");
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(90),
    )
    .await;
    assert!(primary_image(&sc).await.ends_with(":2.0.0"), "{s:#}");

    // Dead during the next release: rolled back at the threshold, never promoted.
    apply_deployment(&sc.admin, &sc.ns, &deployment("3.0.0", "0")).await;
    wait_status(&sc, "weight 10", Duration::from_secs(60), |s| {
        s["canaryWeight"].as_i64().unwrap_or(0) >= 10
    })
    .await;
    prom.stop();
    let killed = Instant::now();
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Failed",
        Duration::from_secs(90),
    )
    .await;
    let took = killed.elapsed();
    traffic.abort();
    let evs = events(&sc).await;
    eprintln!("[faults] prometheus killed: rolled back {took:?} later; status {s:#}");
    assert!(primary_image(&sc).await.ends_with(":2.0.0"), "not promoted");
    assert_eq!(route_weights(&sc.admin, &sc.ns).await, (100, 0));
    let check = s["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "error-rate"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(check["verdict"], "Error", "{s:#}");
    assert!(
        check["message"].as_str().unwrap_or_default().len() > 10,
        "the error is on the status: {check:#}"
    );
    assert!(
        evs.iter()
            .any(|(kind, _, msg)| kind == "Warning" && msg.contains("error-rate")),
        "a Warning event names the check: {evs:#?}"
    );
    assert!(!op.log().contains("panicked"));
}
