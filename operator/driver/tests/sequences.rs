//! The engine's worked sequences (`operator/engine/tests/sequences.rs`) run through the driver,
//! on recording fakes and paused time: what each world is asked to do, in order — routes set,
//! scale, hooks called with which payload, alerts, events, status written.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use siskin_api::{
    HookType, Phase, Severity,
    status::{CheckStatus, Verdict},
};
use siskin_engine::{Readiness, RouteState, Scale};
use support::{Call, World, spec};

use Phase::*;

const CANARY: &str = r#"
targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
service: {port: 9898, timeout: 15s}
analysis:
  interval: 15s
  threshold: 15
  maxWeight: 30
  stepWeight: 10
  metrics:
  - name: request-success-rate
    thresholdRange: {min: 99}
    interval: 1m
  webhooks:
  - name: load-test
    url: http://loadtester.test/
    type: pre-rollout
  - name: notify
    url: http://loadtester.test/done
    type: post-rollout
"#;

async fn initialized(yaml: &str) -> World {
    let w = World::new(spec(yaml));
    w.run_until(Initialized, 10).await;
    w
}

fn is_route_to(canary: u8) -> impl Fn(&Call) -> bool {
    move |c| matches!(c, Call::Route(i) if i.canary().get() == canary)
}

#[tokio::test(start_paused = true)]
async fn worked_sequence_calls_each_seam_in_order() {
    let w = initialized(CANARY).await;
    let init = w.calls();
    let created = w.position(|c| *c == Call::InitializePrimary).unwrap();
    let routed = w.position(is_route_to(0)).unwrap();
    let down = w.position(|c| *c == Call::Scale(Scale::Zero)).unwrap();
    assert!(
        created < routed && routed < down,
        "primary, then routing, then scale-down: {init:#?}"
    );
    assert_eq!(w.persisted_phases(), vec![Initializing, Initialized]);

    w.clear();
    w.deploy("rev-2");
    w.run_until(Succeeded, 30).await;
    assert_eq!(w.weights(), vec![0, 10, 20, 30, 0]);
    assert_eq!(
        w.persisted_phases(),
        vec![Progressing, Promoting, Finalising, Succeeded]
    );
    // Hooks: pre-rollout once before traffic moved, post-rollout once at the end, with the
    // phase of each moment.
    let hooks: Vec<(String, HookType, String)> = w
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Hook(n, t, p) => Some((n, t, p.phase)),
            _ => None,
        })
        .collect();
    assert_eq!(
        hooks,
        vec![
            (
                "load-test".into(),
                HookType::PreRollout,
                "Progressing".into()
            ),
            ("notify".into(), HookType::PostRollout, "Succeeded".into()),
        ]
    );
    let first_weight = w.position(is_route_to(10)).unwrap();
    let pre = w
        .position(|c| matches!(c, Call::Hook(n, ..) if n == "load-test"))
        .unwrap();
    assert!(pre < first_weight, "pre-rollout before any traffic");
    let promoted = w.position(|c| *c == Call::PromotePrimary).unwrap();
    let back = w.calls()[promoted..]
        .iter()
        .position(is_route_to(0))
        .unwrap()
        + promoted;
    let scaled = w.calls()[back..]
        .iter()
        .position(|c| *c == Call::Scale(Scale::Zero))
        .unwrap()
        + back;
    assert!(promoted < back && back < scaled);
    assert!(
        w.alerts()
            .iter()
            .any(|(s, m)| *s == Severity::Info && m.contains("promotion finished"))
    );
    // Every route carries the spec's timeout, resolved once.
    assert!(w.calls().iter().all(|c| match c {
        Call::Route(i) => i.timeouts.request.as_deref() == Some("15s"),
        _ => true,
    }));
}

#[tokio::test(start_paused = true)]
async fn rollback_at_threshold_routes_back_before_scaling_down() {
    let w = initialized(&CANARY.replace("threshold: 15", "threshold: 3")).await;
    w.with(|s| s.success_rates = [99.9, 80.0, 80.0, 80.0].into());
    w.deploy("rev-2");
    w.clear();
    w.run_until(Failed, 30).await;
    assert_eq!(w.with(|s| s.status.failed_checks), 3);
    let calls = w.calls();
    let back = calls.iter().rposition(is_route_to(0)).unwrap();
    let down = calls
        .iter()
        .rposition(|c| *c == Call::Scale(Scale::Zero))
        .unwrap();
    assert!(
        back < down,
        "traffic leaves the canary before it is scaled down"
    );
    assert!(!calls.contains(&Call::PromotePrimary));
    assert!(
        w.alerts()
            .iter()
            .any(|(s, m)| *s == Severity::Error && m.contains("threshold reached 3"))
    );
    assert!(
        w.events()
            .iter()
            .any(|e| e.contains("request-success-rate 80 < 99 (fail)")),
        "{:#?}",
        w.events()
    );
    let post = calls.iter().find_map(|c| match c {
        Call::Hook(n, HookType::PostRollout, p) if n == "notify" => Some(p.phase.clone()),
        _ => None,
    });
    assert_eq!(post.as_deref(), Some("Failed"));
}

#[tokio::test(start_paused = true)]
async fn scale_down_waits_until_routing_is_served() {
    let w = initialized(&CANARY.replace("threshold: 15", "threshold: 1")).await;
    w.deploy("rev-2");
    w.run(3).await;
    w.with(|s| {
        s.success_rates = [50.0].into();
        // The next four reads of routing see a router that has not loaded it yet.
        s.converging_reads = 4;
    });
    w.clear();
    let started = tokio::time::Instant::now();
    w.run_until(Failed, 10).await;
    assert!(started.elapsed() >= Duration::from_millis(750), "it waited");
    assert!(w.calls().contains(&Call::Scale(Scale::Zero)));
}

#[tokio::test(start_paused = true)]
async fn routing_that_never_converges_keeps_the_canary_up_and_nothing_is_persisted() {
    let w = initialized(&CANARY.replace("threshold: 15", "threshold: 1")).await;
    w.deploy("rev-2");
    w.run(3).await;
    let before = w.with(|s| s.status.clone());
    w.with(|s| {
        s.success_rates = [50.0].into();
        s.converging_reads = u32::MAX;
    });
    w.clear();
    let err = w.step_with(None).await.unwrap_err();
    assert_eq!(err.kind(), "not_converged", "{err}");
    assert!(err.is_transient());
    assert!(!w.calls().contains(&Call::Scale(Scale::Zero)));
    assert_eq!(w.with(|s| s.status.clone()), before, "nothing persisted");
    // Once routing is served, the same step completes.
    w.with(|s| s.converging_reads = 0);
    w.tick().await;
    assert_eq!(w.phase(), Failed);
}

#[tokio::test(start_paused = true)]
async fn ab_routes_only_matching_requests_to_the_canary() {
    let yaml = r#"
targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
service:
  port: 9898
  match:
  - uri: {prefix: /api}
analysis:
  interval: 10s
  threshold: 10
  iterations: 3
  match:
  - headers:
      x-canary: {exact: insider}
"#;
    let w = initialized(yaml).await;
    w.deploy("rev-2");
    w.run(2).await;
    let intent = w
        .calls()
        .into_iter()
        .rev()
        .find_map(|c| match c {
            Call::Route(i) => Some(i),
            _ => None,
        })
        .unwrap();
    assert_eq!(intent.canary().get(), 100);
    assert_eq!(
        intent.ab_matches.len(),
        1,
        "the A/B condition travels, merged with the route's own"
    );
    assert_eq!(intent.ab_matches[0].headers[0].value, "insider");
    assert_eq!(
        intent.ab_matches[0].path.as_ref().map(|p| p.value.as_str()),
        Some("/api")
    );
    assert_eq!(
        intent.route_matches.len(),
        1,
        "the route's own match travels"
    );
    w.run_until(Succeeded, 20).await;
}

#[tokio::test(start_paused = true)]
async fn blue_green_mirrors_then_switches() {
    let w = initialized(&CANARY.replace(
        "maxWeight: 30\n  stepWeight: 10",
        "iterations: 3\n  mirror: true",
    ))
    .await;
    w.deploy("rev-2");
    w.run_until(Succeeded, 30).await;
    let mirrored = w.calls().iter().any(|c| {
        matches!(c, Call::Route(i) if i.split.mirror.map(|m| m.get()) == Some(100) && i.canary().get() == 0)
    });
    assert!(mirrored, "mirrors before switching");
    assert!(w.weights().contains(&100), "then all traffic to the canary");
}

#[tokio::test(start_paused = true)]
async fn confirm_rollout_gate_calls_the_hook_each_step_until_it_opens() {
    let yaml = format!(
        "{CANARY}  - name: approve\n    url: http://loadtester.test/gate/check\n    type: confirm-rollout\n"
    );
    let w = initialized(&yaml).await;
    w.with(|s| s.gates.insert(HookType::ConfirmRollout, false));
    w.deploy("rev-2");
    w.clear();
    w.run(3).await;
    assert_eq!(w.phase(), Waiting);
    let asked = w.hooks().iter().filter(|(n, _)| n == "approve").count();
    assert_eq!(asked, 3, "asked once per step");
    assert!(!w.calls().contains(&Call::Scale(Scale::Up)));
    assert_eq!(
        w.alerts()
            .iter()
            .filter(|(s, _)| *s == Severity::Warn)
            .count(),
        1,
        "alerted once"
    );
    w.with(|s| s.gates.insert(HookType::ConfirmRollout, true));
    w.run(1).await;
    assert_eq!(w.phase(), Progressing);
    assert!(w.calls().contains(&Call::Scale(Scale::Up)));
}

#[tokio::test(start_paused = true)]
async fn rollback_webhook_rolls_back() {
    let yaml = format!(
        "{CANARY}  - name: abort\n    url: http://loadtester.test/rollback/check\n    type: rollback\n"
    );
    let w = initialized(&yaml).await;
    w.deploy("rev-2");
    w.run(3).await;
    w.with(|s| s.gates.insert(HookType::Rollback, true));
    w.run_until(Failed, 3).await;
    assert!(
        w.alerts()
            .iter()
            .any(|(s, m)| *s == Severity::Warn && m.contains("manual webhook"))
    );
}

#[tokio::test(start_paused = true)]
async fn canary_never_ready_is_rolled_back_at_the_deadline_with_an_alert() {
    let w = initialized(&format!("progressDeadlineSeconds: 60\n{CANARY}")).await;
    w.deploy("rev-2");
    w.with(|s| s.target.as_mut().unwrap().readiness = Readiness::NotReady("0/1".into()));
    w.run_until(Failed, 40).await;
    assert!(
        w.alerts()
            .iter()
            .any(|(s, m)| *s == Severity::Error && m.contains("Progress deadline exceeded"))
    );
    assert_eq!(w.with(|s| s.target_scale), Some(Scale::Zero));
}

#[tokio::test(start_paused = true)]
async fn session_affinity_cookies_carry_their_attributes() {
    let yaml = CANARY.replace(
        "stepWeight: 10",
        "stepWeight: 10\n  sessionAffinity: {cookieName: canary-cookie, primaryCookieName: primary-cookie, maxAge: 3600, httpOnly: true}",
    );
    let w = initialized(&yaml).await;
    w.deploy("rev-2");
    w.run(3).await;
    let cookies = w
        .calls()
        .into_iter()
        .rev()
        .find_map(|c| match c {
            Call::Route(i) if i.canary().get() > 0 => i.cookies,
            _ => None,
        })
        .expect("cookies once the canary has weight");
    let canary = cookies.canary.unwrap();
    assert_eq!(canary.name, "canary-cookie");
    assert_eq!((canary.max_age, canary.http_only), (Some(3600), true));
    let primary = cookies.primary.unwrap();
    assert_eq!(
        primary.max_age,
        Some(15),
        "the primary's cookie lasts one interval"
    );
    w.run_until(Succeeded, 30).await;
    let last = w
        .calls()
        .into_iter()
        .rev()
        .find_map(|c| match c {
            Call::Route(i) => Some(i),
            _ => None,
        })
        .unwrap();
    assert!(
        last.cookies
            .and_then(|c| c.expire)
            .is_some_and(|e| e.starts_with("canary-cookie=")),
        "the run's cookie is expired after it"
    );
}

#[tokio::test(start_paused = true)]
async fn critical_check_between_steps_rolls_back_at_once() {
    let yaml = CANARY.replace(
        "    interval: 1m\n",
        "    interval: 1m\n    critical: true\n",
    );
    let w = initialized(&yaml).await;
    w.deploy("rev-2");
    w.run(3).await;
    assert!(w.with(|s| s.status.canary_weight) > 0);
    w.with(|s| s.live_success_rate = Some(42.0));
    let spec = w.spec.clone();
    let status = w.with(|s| s.status.clone());
    let started = tokio::time::Instant::now();
    let failed = siskin_driver::watch_critical(
        &spec,
        &status,
        &w,
        &w,
        Duration::from_millis(200),
        Duration::from_secs(15),
    )
    .await
    .expect("a live failure");
    assert!(
        started.elapsed() <= Duration::from_millis(200),
        "found at the first poll"
    );
    assert_eq!((failed.verdict, failed.value), (Verdict::Fail, Some(42.0)));
    w.clear();
    w.step_with(Some(failed)).await.unwrap();
    assert_eq!(w.phase(), Failed);
    assert!(
        w.alerts()
            .iter()
            .any(|(_, m)| m.contains("Critical check failed: metric request-success-rate 42 < 99"))
    );
    // The live query asked the canary's side of the route for the last 10 seconds.
    let live = w.with(|s| s.queries.last().cloned()).unwrap();
    assert_eq!(
        live,
        siskin_analysis::Query::Builtin {
            metric: siskin_analysis::BuiltinMetric::SuccessRate,
            route: "test/podinfo".into(),
            backend: siskin_route::Role::Canary,
            window: Duration::from_secs(10),
        }
    );
}

#[tokio::test(start_paused = true)]
async fn no_critical_watch_without_exposure() {
    let yaml = CANARY.replace(
        "    interval: 1m\n",
        "    interval: 1m\n    critical: true\n",
    );
    let w = initialized(&yaml).await;
    w.with(|s| s.live_success_rate = Some(1.0));
    let status = w.with(|s| s.status.clone());
    let found = siskin_driver::watch_critical(
        &w.spec,
        &status,
        &w,
        &w,
        Duration::from_millis(200),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        found, None::<CheckStatus>,
        "an idle primary is not judged live"
    );
}

#[tokio::test(start_paused = true)]
async fn revert_on_deletion_gives_the_target_back_then_hands_routing_back() {
    let mut w = initialized(&format!("revertOnDeletion: true\n{CANARY}")).await;
    w.deleting = true;
    w.clear();
    w.run_until(Terminated, 5).await;
    let calls = w.calls();
    let up = calls
        .iter()
        .position(|c| *c == Call::Scale(Scale::Up))
        .unwrap();
    let traffic = calls
        .iter()
        .position(|c| *c == Call::RevertTraffic)
        .unwrap();
    let platform = calls
        .iter()
        .position(|c| *c == Call::RevertPlatform)
        .unwrap();
    assert!(up < traffic && traffic < platform, "{calls:#?}");
    assert_eq!(w.with(|s| s.routes.clone()), RouteState::Absent);
}

#[tokio::test(start_paused = true)]
async fn events_reach_event_webhooks_with_flaggers_payload() {
    let yaml = format!("{CANARY}  - name: audit\n    url: http://audit.test/\n    type: event\n");
    let w = World::new(spec(&yaml));
    w.run_until(Initialized, 10).await;
    let payload = w
        .calls()
        .into_iter()
        .find_map(|c| match c {
            Call::Hook(n, HookType::Event, p)
                if n == "audit"
                    && p.metadata
                        .get("eventMessage")
                        .is_some_and(|m| m.starts_with("Initialization done")) =>
            {
                Some(p)
            }
            _ => None,
        })
        .expect("the Initialized event sent to the hook");
    assert_eq!(payload.name, "podinfo");
    assert_eq!(payload.namespace, "test");
    assert_eq!(
        payload.metadata.get("eventType").map(String::as_str),
        Some("Normal")
    );
    assert_eq!(payload.phase, "Initialized");
    assert!(payload.metadata.contains_key("timestamp"));
}

#[tokio::test(start_paused = true)]
async fn a_step_cut_short_is_redone_from_the_persisted_status() {
    // A driver killed between two actions persisted nothing of that step: the next driver
    // decides the same step again from the status it finds.
    let w = initialized(CANARY).await;
    w.deploy("rev-2");
    w.run(3).await;
    let status = w.with(|s| s.status.clone());
    let weight = status.canary_weight;
    let replay = World::new(w.spec.clone());
    replay.with(|s| {
        s.status = status.clone();
        s.now = w.with(|o| o.now);
        s.primary = w.with(|o| o.primary.clone());
        s.target = w.with(|o| o.target.clone());
        s.routes = w.with(|o| o.routes.clone());
    });
    let a = w.tick().await;
    let b = replay.tick().await;
    assert_eq!(a.status, b.status, "the same status from the same inputs");
    assert_eq!(a.actions, b.actions);
    assert!(a.status.canary_weight > weight);
    assert!(
        !replay.calls().contains(&Call::InitializePrimary),
        "nothing is started twice"
    );
}

#[tokio::test(start_paused = true)]
async fn skip_analysis_promotes_without_hooks_or_queries() {
    let w = initialized(&format!("skipAnalysis: true\n{CANARY}")).await;
    w.deploy("rev-2");
    w.with(|s| s.queries.clear());
    w.run_until(Succeeded, 10).await;
    assert!(w.with(|s| s.queries.is_empty()), "no metric asked");
    assert!(w.calls().contains(&Call::PromotePrimary));
}
