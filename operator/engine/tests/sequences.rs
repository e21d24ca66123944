//! Table tests replaying Flagger's worked sequences (`../shared/spec/flagger.md` §3.20, §7.2)
//! through the engine, with the differences we chose (docs/flagger-differences.md).

#![allow(clippy::unwrap_used)]

mod support;

use siskin_api::{HookType, Phase, Severity};
use siskin_engine::{Action, Readiness, Scale};
use support::{Sim, spec};

use Phase::*;

const CANARY: &str = r#"
targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
service: {port: 9898}
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
"#;

fn initialized(yaml: &str) -> Sim {
    let mut sim = Sim::new(spec(yaml));
    sim.run_until(Initialized, 10);
    sim
}

#[test]
fn worked_sequence_istio_canary() {
    // §3.20: init → Initialized → new revision → 10 → 20 → 30 → Promoting → Finalising → Succeeded.
    let mut sim = initialized(CANARY);
    assert_eq!(
        sim.target_scale,
        Some(Scale::Zero),
        "target scaled down after init"
    );
    assert_eq!(sim.routes.as_ref().unwrap().primary().get(), 100);
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev-1"));

    sim.deploy("rev-2");
    sim.run_until(Succeeded, 30);
    assert_eq!(
        sim.phases(),
        vec![
            Initializing,
            Initialized,
            Progressing,
            Promoting,
            Finalising,
            Succeeded
        ]
    );
    assert_eq!(sim.weights(), vec![0, 10, 20, 30, 0]);
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev-2"));
    assert_eq!(
        sim.primary.as_ref().unwrap().revision,
        "rev-2",
        "primary runs the new template"
    );
    assert_eq!(sim.target_scale, Some(Scale::Zero));
    assert!(sim.hooks_run.contains(&HookType::PostRollout));
    let events = sim.events();
    let order = [
        "Initialized: Initialization done! podinfo",
        "NewRevision: New revision detected! Scaling up podinfo",
        "PreRolloutPassed: Pre-rollout check pre-rollout-hook passed",
        "Advanced: Advance podinfo canary weight 10",
        "Advanced: Advance podinfo canary weight 30",
        "Promoting: Copying podinfo template spec to podinfo-primary",
        "RoutedToPrimary: Routing all traffic to primary podinfo-primary",
        "Promoted: Promotion completed! Scaling down podinfo",
    ];
    let mut at = 0;
    for want in order {
        let i = events[at..].iter().position(|e| e == want);
        assert!(
            i.is_some(),
            "missing {want:?} after position {at} in {events:#?}"
        );
        at += i.unwrap() + 1;
    }
    let alerts = sim.alerts();
    assert!(
        alerts
            .iter()
            .any(|(s, m)| *s == Severity::Info && m.contains("promotion finished"))
    );
}

#[test]
fn steps_are_one_interval_apart() {
    let mut sim = initialized(CANARY);
    sim.deploy("rev-2");
    sim.run_until(Promoting, 30);
    let advances: Vec<_> = sim
        .ticks
        .iter()
        .filter(|t| {
            t.step
                .actions
                .iter()
                .any(|a| matches!(a, siskin_engine::Action::Event(e) if e.reason == "Advanced"))
        })
        .map(|t| t.at)
        .collect();
    assert_eq!(advances.len(), 3);
    for pair in advances.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert_eq!(gap.as_secs(), 15, "{advances:?}");
    }
}

#[test]
fn early_calls_do_not_advance() {
    // A driver woken by a watch event calls step early: nothing moves before the interval.
    let mut sim = initialized(CANARY);
    sim.deploy("rev-2");
    sim.run(3);
    sim.tick();
    let weight = sim.status.canary_weight;
    for _ in 0..5 {
        sim.advance(std::time::Duration::from_secs(1));
        sim.tick();
    }
    assert_eq!(sim.status.canary_weight, weight);
}

#[test]
fn step_weights_ignore_max_weight() {
    // linkerd test-steps: stepWeights [10..60] with maxWeight 50 (ignored).
    let yaml = CANARY.replace(
        "maxWeight: 30\n  stepWeight: 10",
        "maxWeight: 50\n  stepWeights: [10, 20, 30, 40, 50, 60]",
    );
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.run_until(Succeeded, 40);
    assert_eq!(sim.weights(), vec![0, 10, 20, 30, 40, 50, 60, 0]);
}

#[test]
fn weights_never_overshoot_max_weight() {
    // Flagger: maxWeight 50, stepWeight 20 goes 20, 40, 60. We stop at 50.
    let yaml = CANARY.replace(
        "maxWeight: 30\n  stepWeight: 10",
        "maxWeight: 50\n  stepWeight: 20",
    );
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.run_until(Succeeded, 40);
    assert_eq!(sim.weights(), vec![0, 20, 40, 50, 0]);
}

#[test]
fn rollback_at_threshold_in_the_same_tick() {
    // linkerd test-canary #2: threshold 3, errors → Failed.
    let yaml = CANARY.replace("threshold: 15", "threshold: 3");
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.analysis = vec![true, false, false, false];
    sim.run_until(Failed, 30);
    let last = sim.ticks.last().unwrap();
    assert_eq!(
        last.analysis_passed,
        Some(false),
        "rollback in the tick of the 3rd failure"
    );
    assert_eq!(sim.status.failed_checks, 3);
    assert_eq!(sim.routes.as_ref().unwrap().primary().get(), 100);
    assert_eq!(sim.target_scale, Some(Scale::Zero));
    assert_eq!(
        sim.primary.as_ref().unwrap().revision,
        "rev-1",
        "primary untouched"
    );
    assert!(
        sim.alerts()
            .iter()
            .any(|(s, m)| *s == Severity::Error && m.contains("threshold reached 3"))
    );
    assert!(
        sim.events()
            .iter()
            .any(|e| e.contains("request-success-rate 80 < 99 (fail)")),
        "{:#?}",
        sim.events()
    );
    // Nothing starts again until the target changes.
    sim.run(5);
    assert_eq!(sim.status.phase, Failed);
}

#[test]
fn blue_green_iterations() {
    // istio test-canary #2: iterations 5.
    let yaml = CANARY.replace("maxWeight: 30\n  stepWeight: 10", "iterations: 5");
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.run_until(Succeeded, 40);
    let iterations: Vec<_> = sim
        .events()
        .into_iter()
        .filter(|e| e.contains("iteration"))
        .collect();
    assert_eq!(iterations.len(), 5, "{iterations:?}");
    assert!(iterations[4].ends_with("iteration 5/5"));
    assert!(
        sim.events()
            .iter()
            .any(|e| e.starts_with("Switched: Routing all traffic to canary"))
    );
    assert_eq!(sim.weights(), vec![0, 100, 0]);
}

#[test]
fn blue_green_mirroring() {
    let yaml = CANARY.replace(
        "maxWeight: 30\n  stepWeight: 10",
        "iterations: 3\n  mirror: true",
    );
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.run_until(Promoting, 40);
    let mirrored = sim
        .ticks
        .iter()
        .flat_map(|t| &t.step.actions)
        .any(|a| matches!(a, Action::SetRoutes(s) if s.mirror.map(|m| m.get()) == Some(100) && s.canary().get() == 0));
    assert!(mirrored, "mirrors before switching");
    assert!(
        sim.events()
            .iter()
            .any(|e| e.contains("Stop traffic mirroring and route all traffic to canary"))
    );
}

#[test]
fn canary_mirroring_precedes_weights() {
    let yaml = CANARY.replace(
        "stepWeight: 10",
        "stepWeight: 10\n  mirror: true\n  mirrorWeight: 50",
    );
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.run_until(Succeeded, 40);
    let splits: Vec<_> = sim
        .ticks
        .iter()
        .flat_map(|t| &t.step.actions)
        .filter_map(|a| match a {
            Action::SetRoutes(s) => Some((s.canary().get(), s.mirror.map(|m| m.get()))),
            _ => None,
        })
        .collect();
    let first_mirror = splits
        .iter()
        .position(|s| *s == (0, Some(50)))
        .expect("mirror step");
    let first_weight = splits.iter().position(|s| s.0 == 10).expect("weight step");
    assert!(first_mirror < first_weight);
    assert_eq!(
        splits[first_weight].1, None,
        "mirroring stops when weights start"
    );
}

#[test]
fn ab_testing_with_confirm_promotion() {
    // istio test-canary #3: iterations with a cookie match and a confirm-promotion gate.
    let yaml = r#"
targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
service: {port: 9898}
analysis:
  interval: 10s
  threshold: 10
  iterations: 5
  match:
  - headers:
      cookie: {regex: "^(.*?;)?(type=insider)(;.*)?$"}
  webhooks:
  - name: promote-gate
    type: confirm-promotion
    url: http://loadtester.test/gate/check
"#;
    let mut sim = initialized(yaml);
    sim.gates.insert(HookType::ConfirmPromotion, false);
    sim.deploy("rev-2");
    sim.run_until(WaitingPromotion, 40);
    let r = sim.routes.clone().unwrap();
    assert_eq!((r.primary().get(), r.canary().get()), (0, 100));
    assert_eq!(
        r.matches.len(),
        1,
        "only matching requests go to the canary"
    );
    sim.run(3);
    assert_eq!(
        sim.status.phase, WaitingPromotion,
        "held while the gate is closed"
    );
    assert_eq!(
        sim.warnings()
            .iter()
            .filter(|w| *w == "WaitingForApproval")
            .count(),
        1,
        "warned once"
    );
    sim.gates.insert(HookType::ConfirmPromotion, true);
    sim.run_until(Succeeded, 10);
    assert_eq!(sim.routes.as_ref().unwrap().primary().get(), 100);
}

#[test]
fn confirm_rollout_gate_holds_then_releases() {
    let yaml = format!(
        "{CANARY}  - name: approve\n    url: http://loadtester.test/gate/check\n    type: confirm-rollout\n"
    );
    let mut sim = initialized(&yaml);
    sim.gates.insert(HookType::ConfirmRollout, false);
    sim.deploy("rev-2");
    sim.run(3);
    assert_eq!(sim.status.phase, Waiting);
    assert_eq!(
        sim.target_scale,
        Some(Scale::Zero),
        "not scaled up while waiting"
    );
    let w = sim.status.wait.clone().expect("a wait with a deadline");
    assert_eq!(w.reason, "ConfirmRollout");
    assert!(w.deadline.0 > w.since.0);
    sim.gates.insert(HookType::ConfirmRollout, true);
    sim.run_until(Progressing, 3);
    assert_eq!(sim.target_scale, Some(Scale::Up));
}

#[test]
fn confirm_traffic_increase_does_not_rerun_pre_rollout() {
    // Flagger re-runs pre-rollout hooks every interval while the gate blocks (#1248).
    let yaml = format!(
        "{CANARY}  - name: traffic\n    url: http://loadtester.test/gate/check\n    type: confirm-traffic-increase\n"
    );
    let mut sim = initialized(&yaml);
    sim.gates.insert(HookType::ConfirmTrafficIncrease, false);
    sim.deploy("rev-2");
    sim.run(8);
    assert_eq!(sim.status.canary_weight, 0);
    let pre = sim
        .ticks
        .iter()
        .filter(|t| {
            t.needs
                .contains(&siskin_engine::Need::Gate(HookType::PreRollout))
        })
        .count();
    assert_eq!(pre, 1, "pre-rollout ran once");
    sim.gates.insert(HookType::ConfirmTrafficIncrease, true);
    sim.run_until(Succeeded, 20);
}

#[test]
fn rollback_webhook_rolls_back() {
    let yaml = format!(
        "{CANARY}  - name: abort\n    url: http://loadtester.test/rollback/check\n    type: rollback\n"
    );
    let mut sim = initialized(&yaml);
    sim.gates.insert(HookType::Rollback, false);
    sim.deploy("rev-2");
    sim.run(4);
    assert_eq!(sim.status.phase, Progressing);
    sim.gates.insert(HookType::Rollback, true);
    sim.run_until(Failed, 3);
    assert!(
        sim.alerts()
            .iter()
            .any(|(s, m)| *s == Severity::Warn && m.contains("manual webhook"))
    );
}

#[test]
fn canary_never_ready_rolls_back_at_deadline_with_alert() {
    let yaml = format!("progressDeadlineSeconds: 60\n{CANARY}");
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.set_target_readiness(Readiness::NotReady(
        "0 of 1 updated replicas are available".into(),
    ));
    sim.run_until(Failed, 40);
    let elapsed = sim.now.duration_since(
        sim.ticks[sim
            .ticks
            .iter()
            .position(|t| t.step.status.phase == Progressing)
            .unwrap()]
        .at,
    );
    assert!(
        elapsed.as_secs() >= 60 && elapsed.as_secs() <= 90,
        "rolled back after {elapsed:?}"
    );
    assert!(
        sim.alerts()
            .iter()
            .any(|(s, m)| *s == Severity::Error && m.contains("0 of 1")),
        "alerts (Flagger does not)"
    );
    assert_eq!(
        sim.status.failed_checks, 0,
        "not ready is not a failed check"
    );
}

#[test]
fn skip_analysis_promotes_and_fails_bad_canary() {
    // istio test-skip-analysis: skipAnalysis promotes; a canary that cannot run → Failed.
    let yaml = format!("skipAnalysis: true\n{CANARY}");
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.run_until(Succeeded, 10);
    assert!(
        sim.ticks
            .iter()
            .all(|t| !t.needs.contains(&siskin_engine::Need::Analysis))
    );
    assert_eq!(sim.primary.as_ref().unwrap().revision, "rev-2");
    sim.deploy("potato");
    sim.set_target_readiness(Readiness::Failed("progress deadline exceeded".into()));
    sim.run_until(Failed, 10);
    assert_eq!(sim.primary.as_ref().unwrap().revision, "rev-2");
}

#[test]
fn revert_to_promoted_revision_starts_nothing() {
    // nginx test-lifecycle: after a rollback, going back to the promoted image does not run.
    let yaml = CANARY.replace("threshold: 15", "threshold: 1");
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.analysis = vec![false; 10];
    sim.run_until(Failed, 20);
    sim.deploy("rev-1");
    sim.run(5);
    assert_eq!(sim.status.phase, Failed);
    assert_eq!(sim.primary.as_ref().unwrap().revision, "rev-1");
    sim.deploy("rev-3");
    sim.analysis.clear();
    sim.run_until(Succeeded, 30);
}

#[test]
fn new_revision_mid_run_restarts() {
    let mut sim = initialized(CANARY);
    sim.deploy("rev-2");
    sim.run(4);
    assert!(sim.status.canary_weight > 0);
    sim.deploy("rev-3");
    sim.tick();
    assert_eq!(sim.status.canary_weight, 0);
    assert_eq!(sim.status.phase, Progressing);
    assert_eq!(sim.status.last_applied_spec.as_deref(), Some("rev-3"));
    assert!(sim.events().iter().any(|e| e.starts_with("Restarted")));
    sim.run_until(Succeeded, 30);
    assert_eq!(sim.primary.as_ref().unwrap().revision, "rev-3");
}

#[test]
fn config_change_starts_a_run() {
    let mut sim = initialized(CANARY);
    sim.target
        .as_mut()
        .unwrap()
        .configs
        .insert("configmap/podinfo-config".into(), "abc".into());
    sim.run_until(Progressing, 3);
}

#[test]
fn suspend_freezes_the_run() {
    let mut sim = initialized(CANARY);
    sim.deploy("rev-2");
    sim.run(3);
    let weight = sim.status.canary_weight;
    sim.spec.suspend = Some(true);
    sim.run(5);
    assert_eq!(sim.status.canary_weight, weight);
    let suspended = sim
        .events()
        .iter()
        .filter(|e| e.starts_with("Suspended"))
        .count();
    assert_eq!(suspended, 1, "announced once");
    sim.spec.suspend = None;
    sim.run_until(Succeeded, 30);
}

#[test]
fn step_weight_promotion_moves_traffic_back_gradually() {
    let yaml = CANARY.replace(
        "stepWeight: 10",
        "stepWeight: 10\n  stepWeightPromotion: 10",
    );
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.run_until(Succeeded, 40);
    assert_eq!(sim.weights(), vec![0, 10, 20, 30, 20, 10, 0]);
}

#[test]
fn session_affinity_cookies() {
    let yaml = CANARY.replace("stepWeight: 10", "stepWeight: 10\n  sessionAffinity: {cookieName: canary-cookie, primaryCookieName: primary-cookie}");
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.run(3);
    let sticky = sim
        .routes
        .clone()
        .unwrap()
        .sticky
        .expect("cookies once the canary has weight");
    assert!(
        sticky
            .canary
            .as_deref()
            .unwrap()
            .starts_with("canary-cookie=")
    );
    assert!(
        sticky
            .primary
            .as_deref()
            .unwrap()
            .starts_with("primary-cookie=")
    );
    sim.run_until(Succeeded, 30);
    assert_eq!(sim.status.session_affinity_cookie, None);
    assert_eq!(
        sim.status.previous_session_affinity_cookie, sticky.canary,
        "expired on sight"
    );
}

#[test]
fn primary_not_ready_during_promotion_keeps_canary_serving() {
    let yaml = format!("progressDeadlineSeconds: 60\n{CANARY}");
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.primary_readiness = Readiness::NotReady("rolling".into());
    sim.run_until(Failed, 60);
    let r = sim.routes.clone().unwrap();
    assert_eq!((r.primary().get(), r.canary().get()), (0, 100));
    assert!(
        sim.alerts()
            .iter()
            .any(|(s, m)| *s == Severity::Error && m.contains("primary not ready"))
    );
    // It stays there: routing is not flipped back to the broken primary.
    sim.run(3);
    assert_eq!(sim.routes.as_ref().unwrap().canary().get(), 100);
}

#[test]
fn initialization_waits_for_primary_and_stalls_with_alert() {
    let mut sim = Sim::new(spec(&format!("progressDeadlineSeconds: 30\n{CANARY}")));
    sim.primary_readiness = Readiness::NotReady("0/1".into());
    sim.run(12);
    assert_eq!(sim.status.phase, Initializing);
    assert!(
        sim.routes.is_none(),
        "no routing before the primary is ready"
    );
    let stalled = sim.status.condition("Stalled").unwrap();
    assert_eq!(stalled.status, "True");
    assert_eq!(
        sim.alerts()
            .iter()
            .filter(|(s, _)| *s == Severity::Error)
            .count(),
        1,
        "alerted once"
    );
    sim.primary.as_mut().unwrap().readiness = Readiness::Ready;
    sim.run_until(Initialized, 3);
}

#[test]
fn approval_deadline_rolls_back_held_promotion() {
    let yaml = format!(
        "approvalDeadlineSeconds: 120\n{CANARY}  - name: gate\n    url: http://loadtester.test/gate/check\n    type: confirm-promotion\n"
    );
    let mut sim = initialized(&yaml);
    sim.gates.insert(HookType::ConfirmPromotion, false);
    sim.deploy("rev-2");
    sim.run_until(WaitingPromotion, 20);
    sim.run_until(Failed, 20);
    assert!(
        sim.alerts()
            .iter()
            .any(|(_, m)| m.contains("Approval deadline"))
    );
}

#[test]
fn critical_check_rolls_back_at_once_between_intervals() {
    let mut sim = initialized(CANARY);
    sim.deploy("rev-2");
    sim.run(3);
    let weight = sim.status.canary_weight;
    assert!(weight > 0);
    // Two seconds after a step: far from the next interval, far from the threshold (15).
    sim.advance(std::time::Duration::from_secs(2));
    let mut obs = sim.observations();
    obs.critical = Some(siskin_api::status::CheckStatus {
        name: "request-success-rate".into(),
        kind: "metric".into(),
        value: Some(42.0),
        min: Some(99.0),
        verdict: siskin_api::status::Verdict::Fail,
        ..Default::default()
    });
    let s = siskin_engine::step(&sim.spec, &sim.status, &obs, sim.now);
    assert_eq!(s.status.phase, Failed);
    assert!(
        s.actions
            .iter()
            .any(|a| matches!(a, Action::SetRoutes(r) if r.primary().get() == 100))
    );
    assert!(s.actions.contains(&Action::ScaleTarget(Scale::Zero)));
    assert!(s.actions.iter().any(|a| matches!(a, Action::Alert(al) if al.message.contains("Critical check failed: metric request-success-rate 42 < 99"))));
    let recorded = s.status.checks.unwrap();
    assert!(
        recorded
            .iter()
            .any(|c| c.name == "request-success-rate" && c.value == Some(42.0)),
        "the value is kept"
    );
}

#[test]
fn a_metric_that_cannot_be_asked_is_named_before_traffic_moves() {
    let mut sim = Sim::new(spec(CANARY));
    sim.probe_verdict = siskin_api::status::Verdict::Error;
    sim.run_until(Initialized, 10);
    let c = sim.status.condition("MetricsAvailable").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "QueryFailed")
    );
    assert!(
        c.message
            .as_deref()
            .unwrap()
            .starts_with("metric request-success-rate: unreachable"),
        "{c:?}"
    );
    assert!(sim.warnings().contains(&"MetricsUnavailable".to_string()));
    // Fixed: the next release's probe says so.
    sim.probe_verdict = siskin_api::status::Verdict::NoData;
    sim.deploy("rev-2");
    sim.tick();
    let c = sim.status.condition("MetricsAvailable").unwrap();
    assert_eq!(c.status, "True");
}

#[test]
fn no_data_counts_as_a_failed_check_by_default() {
    let yaml = CANARY.replace("threshold: 15", "threshold: 2");
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.analysis_verdict = Some(siskin_api::status::Verdict::NoData);
    sim.run_until(Failed, 20);
    assert_eq!(sim.status.failed_checks, 2);
}

#[test]
fn no_data_held_by_the_metric_rolls_back_only_at_the_deadline() {
    let yaml = format!("progressDeadlineSeconds: 120\n{CANARY}")
        .replace("threshold: 15", "threshold: 2")
        .replace(
            "    interval: 1m\n",
            "    interval: 1m\n    onNoData: hold\n",
        );
    let mut sim = initialized(&yaml);
    sim.deploy("rev-2");
    sim.run(3);
    let before = sim.status.canary_weight;
    sim.analysis_verdict = Some(siskin_api::status::Verdict::NoData);
    let started = sim.now;
    sim.run_until(Failed, 40);
    assert_eq!(sim.status.failed_checks, 0, "no failed check counted");
    assert!(sim.now.duration_since(started).as_secs() >= 120 - 15);
    assert!(sim.warnings().contains(&"CheckHeld".to_string()));
    assert!(
        sim.alerts()
            .iter()
            .any(|(_, m)| m.contains("Progress deadline exceeded without data")),
        "{:?}",
        sim.alerts()
    );
    assert!(before > 0);
}
