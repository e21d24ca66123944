//! A user's hand on a release: pause and resume, promote, abort and retry requests.

#![allow(clippy::unwrap_used)]

mod support;

use siskin_api::Phase;
use siskin_engine::{Control, Request, RequestAction};
use support::{Sim, spec};

use Phase::*;

const CANARY: &str = r#"
targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
service: {port: 9898}
analysis:
  interval: 15s
  threshold: 2
  maxWeight: 50
  stepWeight: 10
  metrics:
  - name: request-success-rate
    thresholdRange: {min: 99}
    interval: 1m
"#;

fn at_weight(w: i32) -> Sim {
    let mut sim = Sim::new(spec(CANARY));
    sim.run_until(Initialized, 10);
    sim.deploy("rev-2");
    for _ in 0..40 {
        if sim.status.canary_weight == w {
            return sim;
        }
        sim.run(1);
    }
    panic!("weight {w} not reached: {:?}", sim.status);
}

fn ask(sim: &mut Sim, id: &str, action: RequestAction) {
    sim.control.request = Some(Request {
        id: id.into(),
        action,
        by: "alice".into(),
    });
}

fn ready_reason(sim: &Sim) -> String {
    sim.status.condition("Ready").unwrap().reason.clone()
}

#[test]
fn a_pause_holds_the_weight_until_resumed() {
    let mut sim = at_weight(20);
    sim.control = Control {
        paused: Some("bob: QA".into()),
        request: None,
    };
    sim.run(10);
    assert_eq!(sim.status.canary_weight, 20);
    assert_eq!(sim.status.phase, Progressing);
    assert_eq!(ready_reason(&sim), "Paused");
    let paused_events = sim
        .events()
        .iter()
        .filter(|e| e.contains("Paused by bob"))
        .count();
    assert_eq!(paused_events, 1, "{:#?}", sim.events());
    // Held without writing: the status does not change from tick to tick.
    let before = sim.status.clone();
    sim.run(1);
    assert_eq!(sim.status, before);
    sim.control.paused = None;
    sim.run_until(Succeeded, 40);
    assert!(sim.events().iter().any(|e| e.contains("Resumed")));
}

#[test]
fn a_pause_holds_a_new_revision_back() {
    let mut sim = Sim::new(spec(CANARY));
    sim.run_until(Initialized, 10);
    sim.control.paused = Some("bob".into());
    sim.deploy("rev-2");
    sim.run(5);
    assert_eq!(sim.status.phase, Initialized);
    sim.control.paused = None;
    sim.run_until(Succeeded, 40);
}

#[test]
fn promote_skips_the_remaining_steps_once() {
    let mut sim = at_weight(20);
    ask(&mut sim, "r1", RequestAction::Promote);
    sim.run(1);
    assert_eq!(sim.status.phase, Promoting);
    assert_eq!(sim.status.last_request.as_deref(), Some("r1"));
    sim.run_until(Succeeded, 10);
    assert!(!sim.weights().contains(&30), "{:?}", sim.weights());
    let h = sim.status.history.clone().unwrap();
    assert_eq!(h.last().unwrap().phase, Succeeded);
    // The same request left in place is not acted on again.
    sim.deploy("rev-3");
    sim.run(4);
    assert_eq!(sim.status.phase, Progressing);
}

#[test]
fn promote_works_while_paused() {
    let mut sim = at_weight(20);
    sim.control.paused = Some("bob".into());
    sim.run(3);
    ask(&mut sim, "r1", RequestAction::Promote);
    sim.run_until(Succeeded, 10);
}

#[test]
fn abort_rolls_back_and_retry_runs_again() {
    let mut sim = at_weight(20);
    ask(&mut sim, "r1", RequestAction::Abort);
    sim.run(1);
    assert_eq!(sim.status.phase, Failed);
    assert!(
        sim.events().iter().any(|e| e.contains("aborted by alice")),
        "{:#?}",
        sim.events()
    );
    assert_eq!(sim.routes.as_ref().unwrap().primary().get(), 100);
    sim.run(3);
    assert_eq!(sim.status.phase, Failed, "nothing restarts on its own");
    ask(&mut sim, "r2", RequestAction::Retry);
    sim.run(1);
    assert_eq!(sim.status.phase, Progressing);
    sim.run_until(Succeeded, 40);
    let h: Vec<Phase> = sim
        .status
        .history
        .clone()
        .unwrap()
        .iter()
        .map(|r| r.phase)
        .collect();
    assert_eq!(h, vec![Failed, Succeeded]);
}

#[test]
fn a_request_that_does_not_apply_is_refused_in_an_event() {
    let mut sim = Sim::new(spec(CANARY));
    sim.run_until(Initialized, 10);
    ask(&mut sim, "r1", RequestAction::Retry);
    sim.run(1);
    assert_eq!(sim.status.phase, Initialized);
    assert_eq!(sim.status.last_request.as_deref(), Some("r1"));
    assert!(
        sim.events().iter().any(|e| e
            .contains("retry of podinfo requested by alice ignored: the canary is Initialized")),
        "{:#?}",
        sim.events()
    );
}
