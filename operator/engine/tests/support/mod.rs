//! A small simulated world for driving the engine tick by tick: workloads whose readiness
//! the test controls, a router that applies splits, gates and checks with scripted outcomes.
#![allow(dead_code, clippy::unwrap_used)]

use std::{collections::BTreeMap, time::Duration};

use siskin_api::{
    CanarySpec, CanaryStatus, HookType, Phase,
    status::{CheckStatus, Verdict},
};
use siskin_engine::{
    Action, AnalysisResult, EventType, GateResult, Need, Observations, Readiness, RouteState,
    Scale, Split, Step, Timestamp, Workload, step,
};

pub fn spec(yaml: &str) -> CanarySpec {
    serde_yaml::from_str(yaml).unwrap()
}

pub fn t0() -> Timestamp {
    "2026-11-25T12:00:00Z".parse().unwrap()
}

/// One executed step, with what it needed.
#[derive(Clone, Debug)]
pub struct Tick {
    pub at: Timestamp,
    pub step: Step,
    pub needs: Vec<Need>,
    pub analysis_passed: Option<bool>,
}

pub struct Sim {
    pub spec: CanarySpec,
    pub status: CanaryStatus,
    pub now: Timestamp,
    pub target: Option<Workload>,
    pub primary: Option<Workload>,
    pub routes: Option<Split>,
    pub target_scale: Option<Scale>,
    /// Readiness the primary gets after it is created or promoted.
    pub primary_readiness: Readiness,
    /// Scripted analysis outcomes, consumed one per analysis; `true` when exhausted.
    pub analysis: Vec<bool>,
    /// Gate outcomes by type; absent types pass.
    pub gates: BTreeMap<HookType, bool>,
    /// The verdict of every metric when probed (and of analyses when `analysis_verdict` is set).
    pub probe_verdict: Verdict,
    /// When set, every analysis answers this verdict without a value.
    pub analysis_verdict: Option<Verdict>,
    pub ticks: Vec<Tick>,
    pub hooks_run: Vec<HookType>,
    /// What a user asked by hand.
    pub control: siskin_engine::Control,
}

impl Sim {
    pub fn new(spec: CanarySpec) -> Self {
        Sim {
            spec,
            status: CanaryStatus::default(),
            now: t0(),
            target: Some(Workload {
                revision: "rev-1".into(),
                ..Default::default()
            }),
            primary: None,
            routes: None,
            target_scale: None,
            primary_readiness: Readiness::Ready,
            analysis: Vec::new(),
            gates: BTreeMap::new(),
            probe_verdict: Verdict::NoData,
            analysis_verdict: None,
            ticks: Vec::new(),
            hooks_run: Vec::new(),
            control: Default::default(),
        }
    }

    pub fn observations(&self) -> Observations {
        Observations {
            target: self.target.clone(),
            primary: self.primary.clone(),
            routes: self
                .routes
                .clone()
                .map_or(RouteState::Absent, RouteState::Applied),
            control: self.control.clone(),
            ..Default::default()
        }
    }

    /// One step at `now`, fulfilling needs as a driver would, then executing actions.
    pub fn tick(&mut self) -> Step {
        let mut obs = self.observations();
        let mut needs = Vec::new();
        let mut analysis_passed = None;
        let result = loop {
            let s = step(&self.spec, &self.status, &obs, self.now);
            // Determinism: the same inputs give the same output.
            assert_eq!(s, step(&self.spec, &self.status, &obs, self.now));
            match s.need {
                None => break s,
                Some(need) => {
                    assert!(needs.len() < 6, "too many needs in one step: {needs:?}");
                    assert!(s.actions.is_empty() && s.status == self.status);
                    needs.push(need);
                    match need {
                        Need::Gate(kind) => {
                            let passed = *self.gates.get(&kind).unwrap_or(&true);
                            obs.gates.insert(
                                kind,
                                GateResult {
                                    passed,
                                    hook: format!("{}-hook", kind.name()),
                                    message: if passed {
                                        String::new()
                                    } else {
                                        "closed".into()
                                    },
                                    muted: false,
                                },
                            );
                        }
                        Need::Probe => {
                            obs.probe = Some(
                                self.spec
                                    .analysis()
                                    .metrics
                                    .iter()
                                    .flatten()
                                    .map(|m| CheckStatus {
                                        name: m.name.clone(),
                                        kind: "metric".into(),
                                        verdict: self.probe_verdict,
                                        message: Some("unreachable: prometheus:9090".into()),
                                        ..Default::default()
                                    })
                                    .collect(),
                            );
                        }
                        Need::Analysis if self.analysis_verdict.is_some() => {
                            let v = self.analysis_verdict.unwrap_or(Verdict::NoData);
                            analysis_passed = Some(false);
                            obs.analysis = Some(AnalysisResult {
                                checks: vec![CheckStatus {
                                    name: "request-success-rate".into(),
                                    kind: "metric".into(),
                                    verdict: v,
                                    message: Some("no values found".into()),
                                    ..Default::default()
                                }],
                            });
                        }
                        Need::Analysis => {
                            let ok = if self.analysis.is_empty() {
                                true
                            } else {
                                self.analysis.remove(0)
                            };
                            analysis_passed = Some(ok);
                            obs.analysis = Some(AnalysisResult {
                                checks: vec![CheckStatus {
                                    name: "request-success-rate".into(),
                                    kind: "metric".into(),
                                    value: Some(if ok { 99.9 } else { 80.0 }),
                                    min: Some(99.0),
                                    verdict: if ok { Verdict::Pass } else { Verdict::Fail },
                                    time: Some(siskin_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(self.now)),
                                    ..Default::default()
                                }],
                            });
                        }
                    }
                }
            }
        };
        self.execute(&result);
        self.status = result.status.clone();
        self.ticks.push(Tick {
            at: self.now,
            step: result.clone(),
            needs,
            analysis_passed,
        });
        result
    }

    fn execute(&mut self, s: &Step) {
        for a in &s.actions {
            match a {
                Action::InitializePrimary => {
                    if self.primary.is_none() {
                        let t = self.target.clone().unwrap();
                        self.primary = Some(Workload {
                            readiness: self.primary_readiness.clone(),
                            ..t
                        });
                    }
                }
                Action::SetRoutes(split) => {
                    assert_eq!(
                        u16::from(split.primary().get()) + u16::from(split.canary().get()),
                        100,
                        "{split:?}"
                    );
                    self.routes = Some(split.clone());
                }
                Action::ScaleTarget(scale) => self.target_scale = Some(*scale),
                Action::PromotePrimary => {
                    let t = self.target.clone().unwrap();
                    self.primary = Some(Workload {
                        readiness: self.primary_readiness.clone(),
                        ..t
                    });
                }
                Action::RunHooks(kind) => self.hooks_run.push(*kind),
                Action::Event(_) | Action::Alert(_) | Action::RevertTarget => {}
            }
        }
    }

    /// Steps, advancing time by each requeue, until `phase` or `max` steps.
    pub fn run_until(&mut self, phase: Phase, max: usize) -> &mut Self {
        for _ in 0..max {
            let s = self.tick();
            if s.status.phase == phase {
                return self;
            }
            self.advance(s.requeue_after.max(Duration::from_secs(1)));
        }
        panic!(
            "phase {phase} not reached in {max} steps; at {} (events: {:?})",
            self.status.phase,
            self.events()
        );
    }

    /// Steps `n` times, advancing time by each requeue.
    pub fn run(&mut self, n: usize) -> &mut Self {
        for _ in 0..n {
            let s = self.tick();
            self.advance(s.requeue_after.max(Duration::from_secs(1)));
        }
        self
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now.saturating_add(d).unwrap();
    }

    /// A new pod template.
    pub fn deploy(&mut self, revision: &str) {
        self.target.as_mut().unwrap().revision = revision.into();
    }

    pub fn set_target_readiness(&mut self, r: Readiness) {
        self.target.as_mut().unwrap().readiness = r;
    }

    pub fn events(&self) -> Vec<String> {
        self.ticks
            .iter()
            .flat_map(|t| &t.step.actions)
            .filter_map(|a| match a {
                Action::Event(e) => Some(format!("{}: {}", e.reason, e.message)),
                _ => None,
            })
            .collect()
    }

    pub fn warnings(&self) -> Vec<String> {
        self.ticks
            .iter()
            .flat_map(|t| &t.step.actions)
            .filter_map(|a| match a {
                Action::Event(e) if e.kind == EventType::Warning => Some(e.reason.to_string()),
                _ => None,
            })
            .collect()
    }

    pub fn alerts(&self) -> Vec<(siskin_api::Severity, String)> {
        self.ticks
            .iter()
            .flat_map(|t| &t.step.actions)
            .filter_map(|a| match a {
                Action::Alert(al) => Some((al.severity, al.message.clone())),
                _ => None,
            })
            .collect()
    }

    /// The canary weights set by SetRoutes, deduplicated in order.
    pub fn weights(&self) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::new();
        for a in self.ticks.iter().flat_map(|t| &t.step.actions) {
            if let Action::SetRoutes(s) = a
                && out.last() != Some(&s.canary().get())
            {
                out.push(s.canary().get());
            }
        }
        out
    }

    /// The phases the status went through, deduplicated in order.
    pub fn phases(&self) -> Vec<Phase> {
        let mut out: Vec<Phase> = Vec::new();
        for t in &self.ticks {
            if out.last() != Some(&t.step.status.phase) {
                out.push(t.step.status.phase);
            }
        }
        out
    }
}
