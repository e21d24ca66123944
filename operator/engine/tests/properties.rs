//! Property tests of the engine's invariants under random specs and random worlds.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use proptest::prelude::*;
use siskin_api::{DeploymentStrategy, HookType, Phase};
use siskin_engine::{Action, Readiness};
use support::{Sim, spec};

#[derive(Clone, Debug)]
enum Mode {
    Step { step: i32, max: Option<i32> },
    Steps(Vec<i32>),
    Iterations { n: i32, ab: bool },
}

#[derive(Clone, Debug)]
struct Case {
    mode: Mode,
    threshold: i32,
    mirror: bool,
    promotion_step: Option<i32>,
    gates: Vec<HookType>,
    /// Per tick: analysis passes, canary ready, gates open, deploy a new revision.
    world: Vec<(bool, bool, bool, bool)>,
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        (1..=60i32, proptest::option::of(0..=100i32))
            .prop_map(|(step, max)| Mode::Step { step, max }),
        proptest::collection::btree_set(1..=100i32, 1..6)
            .prop_map(|s| Mode::Steps(s.into_iter().collect())),
        (1..=6i32, any::<bool>()).prop_map(|(n, ab)| Mode::Iterations { n, ab }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let gates = proptest::sample::subsequence(
        vec![
            HookType::ConfirmRollout,
            HookType::ConfirmPromotion,
            HookType::ConfirmTrafficIncrease,
            HookType::PreRollout,
            HookType::Rollback,
        ],
        0..=3,
    );
    (
        mode(),
        1..=4i32,
        any::<bool>(),
        proptest::option::of(0..=50i32),
        gates,
        proptest::collection::vec(
            (
                prop::bool::weighted(0.8),
                prop::bool::weighted(0.9),
                prop::bool::weighted(0.7),
                prop::bool::weighted(0.05),
            ),
            40..120,
        ),
    )
        .prop_map(
            |(mode, threshold, mirror, promotion_step, gates, world)| Case {
                mode,
                threshold,
                mirror,
                promotion_step,
                gates,
                world,
            },
        )
}

fn yaml(c: &Case) -> String {
    let mut a = format!("  interval: 30s\n  threshold: {}\n", c.threshold);
    match &c.mode {
        Mode::Step { step, max } => {
            a += &format!("  stepWeight: {step}\n");
            if let Some(m) = max {
                a += &format!("  maxWeight: {m}\n");
            }
        }
        Mode::Steps(s) => a += &format!("  stepWeights: {s:?}\n"),
        Mode::Iterations { n, ab } => {
            a += &format!("  iterations: {n}\n");
            if *ab {
                a += "  match:\n  - headers:\n      x-canary: {exact: insider}\n";
            }
        }
    }
    let ab = matches!(c.mode, Mode::Iterations { ab: true, .. });
    if c.mirror && !ab {
        a += "  mirror: true\n";
    }
    if let Some(p) = c.promotion_step {
        a += &format!("  stepWeightPromotion: {p}\n");
    }
    if !c.gates.is_empty() {
        a += "  webhooks:\n";
        for g in &c.gates {
            a += &format!(
                "  - name: {n}\n    type: {n}\n    url: http://gate.test/\n",
                n = g.name()
            );
        }
    }
    format!(
        "progressDeadlineSeconds: 120\napprovalDeadlineSeconds: 600\ntargetRef: {{apiVersion: apps/v1, kind: Deployment, name: app}}\nservice: {{port: 80}}\nanalysis:\n{a}"
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold(c in case()) {
        let spec = spec(&yaml(&c));
        let analysis = spec.analysis().into_owned();
        let max = analysis.max_weight();
        let threshold = analysis.threshold();
        let canary_strategy = spec.strategy() == DeploymentStrategy::Canary;
        let limit = spec.progress_deadline().max(spec.approval_deadline());
        let mut sim = Sim::new(spec);
        let mut revision = 1;
        for (i, (passes, ready, open, deploy)) in c.world.iter().enumerate() {
            if *deploy || i == 3 {
                revision += 1;
                sim.deploy(&format!("rev-{revision}"));
            }
            sim.analysis = vec![*passes];
            sim.set_target_readiness(if *ready { Readiness::Ready } else { Readiness::NotReady("rolling".into()) });
            for g in &c.gates {
                // A rollback gate that is "open" asks for rollback: keep it rare.
                let pass = if *g == HookType::Rollback { !*open && !*passes && !*ready } else { *open };
                sim.gates.insert(*g, pass);
            }
            let before = sim.status.clone();
            let step = sim.tick();
            let tick = sim.ticks.last().unwrap().clone();

            for a in &step.actions {
                if let Action::SetRoutes(s) = a {
                    prop_assert_eq!(u16::from(s.primary().get()) + u16::from(s.canary().get()), 100);
                    if canary_strategy && step.status.phase != Phase::Failed {
                        prop_assert!(s.canary() <= max, "weight {} above maxWeight {}", s.canary(), max);
                    }
                }
            }
            if tick.analysis_passed == Some(false) {
                prop_assert!(!step.actions.contains(&Action::PromotePrimary), "promoted in a failing tick");
            }
            let failed = u32::try_from(step.status.failed_checks).unwrap();
            if step.status.phase.is_running() {
                prop_assert!(failed < threshold, "running with {} failed checks", failed);
            }
            if failed >= threshold && u32::try_from(before.failed_checks).unwrap() < threshold {
                prop_assert_eq!(step.status.phase, Phase::Failed);
                let on_primary = step.actions.iter().any(|a| matches!(a, Action::SetRoutes(s) if s.primary().get() == 100));
                prop_assert!(on_primary, "rolled back without routing to the primary");
            }
            if let Some(w) = &step.status.wait {
                prop_assert!(w.deadline.0 >= w.since.0);
                let span = Duration::try_from(w.deadline.0.duration_since(w.since.0)).unwrap();
                prop_assert!(span <= limit, "wait {} longer than any deadline", w.reason);
            }
            if let Some(w) = &before.wait && sim.now >= w.deadline.0 {
                // A step at or past a deadline acts on it: the wait ends, or the canary is
                // marked Stalled (and alerted).
                let same = step.status.wait.as_ref().is_some_and(|n| n.reason == w.reason && n.since == w.since);
                let stalled = step.status.condition("Stalled").is_some_and(|c| c.status == "True");
                prop_assert!(!same || stalled, "still waiting for {} past its deadline", w.reason);
            }
            sim.advance(step.requeue_after.max(Duration::from_secs(1)));
        }
    }
}
