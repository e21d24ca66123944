//! A recording world for the driver: every seam is a fake that records what it was asked, so a
//! test asserts the calls Kubernetes or `siskin run` would see (routes set, scale, hooks
//! called, alerts, status written), on a clock the test moves.
#![allow(dead_code, clippy::unwrap_used, clippy::large_enum_variant)]

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use siskin_analysis::{Measurement, MetricSource, ProviderError, Query, Resolved, Source};
use siskin_api::{
    CanarySpec, CanaryStatus, HookType, Phase, Severity, Weight,
    analysis::CanaryWebhook,
    status::{CheckStatus, WebhookResult},
};
use siskin_driver::{
    Clock, Error, Events, Notification, Notifier, Outcome, Payload, Platform, Release,
    RoutingIntent, Seams, StatusStore, Traffic, Webhooks, Workloads,
};
use siskin_engine::{Event, Readiness, RouteState, Scale, Timestamp, Workload};

pub fn spec(yaml: &str) -> CanarySpec {
    serde_yaml::from_str(yaml).unwrap()
}

pub fn t0() -> Timestamp {
    "2026-11-25T12:00:00Z".parse().unwrap()
}

/// One thing a seam was asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `Platform::initialize_primary`.
    InitializePrimary,
    /// `Platform::promote_primary`.
    PromotePrimary,
    /// `Platform::scale_target`.
    Scale(Scale),
    /// `Platform::revert`.
    RevertPlatform,
    /// `Traffic::apply`.
    Route(RoutingIntent),
    /// `Traffic::revert`.
    RevertTraffic,
    /// `Webhooks::call`: hook name, type, payload.
    Hook(String, HookType, Payload),
    /// `Notifier::post`.
    Alert(Severity, String),
    /// `Events::record`: reason.
    Event(&'static str, String),
    /// `StatusStore::persist` that wrote: phase and weight.
    Persist(Phase, i32),
}

/// The state behind the fakes.
#[derive(Debug)]
pub struct State {
    pub now: Timestamp,
    pub target: Option<Workload>,
    pub primary: Option<Workload>,
    pub primary_readiness: Readiness,
    pub routes: RouteState,
    /// Observations of routing that answer Converging before the applied split shows.
    pub converging_reads: u32,
    pub target_scale: Option<Scale>,
    /// Gate outcomes by hook type; absent types pass.
    pub gates: BTreeMap<HookType, bool>,
    /// Outcome of `rollout` hooks.
    pub rollout_hooks_pass: bool,
    /// Success rates answered for the canary, one per query; the last one repeats.
    pub success_rates: VecDeque<f64>,
    /// Success rate answered to critical (10 s window) queries.
    pub live_success_rate: Option<f64>,
    pub status: CanaryStatus,
    pub calls: Vec<Call>,
    pub queries: Vec<Query>,
    /// What a user asked by hand.
    pub control: siskin_engine::Control,
}

/// The recording world.
#[derive(Clone)]
pub struct World {
    pub spec: CanarySpec,
    pub deleting: bool,
    pub state: Arc<Mutex<State>>,
}

impl World {
    pub fn new(spec: CanarySpec) -> World {
        World {
            spec,
            deleting: false,
            state: Arc::new(Mutex::new(State {
                now: t0(),
                target: Some(Workload {
                    revision: "rev-1".into(),
                    ..Default::default()
                }),
                primary: None,
                primary_readiness: Readiness::Ready,
                routes: RouteState::Absent,
                converging_reads: 0,
                target_scale: None,
                gates: BTreeMap::new(),
                rollout_hooks_pass: true,
                success_rates: VecDeque::from([99.9]),
                live_success_rate: None,
                status: CanaryStatus::default(),
                calls: Vec::new(),
                queries: Vec::new(),
                control: Default::default(),
            })),
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn record(&self, c: Call) {
        self.with(|s| s.calls.push(c));
    }

    /// One step of the driver, as a world would run it, with an optional live failure.
    pub async fn step_with(&self, critical: Option<CheckStatus>) -> Result<Outcome, Error> {
        let (status, control) = self.with(|s| (s.status.clone(), s.control.clone()));
        let release = Release {
            name: "podinfo",
            namespace: "test",
            spec: &self.spec,
            status: &status,
            deleting: self.deleting,
            control: &control,
        };
        let seams = Seams {
            platform: self,
            traffic: self,
            metrics: self,
            webhooks: self,
            notifier: self,
            events: self,
            store: self,
            clock: self,
            event_webhook: None,
        };
        siskin_driver::step(&release, &seams, critical).await
    }

    /// One step, then the clock moves by its requeue.
    pub async fn tick(&self) -> Outcome {
        let out = self.step_with(None).await.unwrap();
        self.advance(out.requeue_after.max(Duration::from_secs(1)));
        out
    }

    /// Steps until `phase`, at most `max` steps.
    pub async fn run_until(&self, phase: Phase, max: usize) {
        for _ in 0..max {
            if self.tick().await.status.phase == phase {
                return;
            }
        }
        panic!(
            "{phase} not reached in {max} steps; at {} ({:?})",
            self.phase(),
            self.events()
        );
    }

    pub async fn run(&self, n: usize) {
        for _ in 0..n {
            self.tick().await;
        }
    }

    pub fn advance(&self, d: Duration) {
        self.with(|s| s.now = s.now.saturating_add(d).unwrap());
    }

    pub fn deploy(&self, revision: &str) {
        self.with(|s| s.target.as_mut().unwrap().revision = revision.into());
    }

    pub fn phase(&self) -> Phase {
        self.with(|s| s.status.phase)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    pub fn clear(&self) {
        self.with(|s| s.calls.clear());
    }

    /// Canary weights routed, deduplicated in order.
    pub fn weights(&self) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::new();
        for c in self.calls() {
            if let Call::Route(i) = c
                && out.last() != Some(&i.canary().get())
            {
                out.push(i.canary().get());
            }
        }
        out
    }

    pub fn events(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Event(r, m) => Some(format!("{r}: {m}")),
                _ => None,
            })
            .collect()
    }

    pub fn alerts(&self) -> Vec<(Severity, String)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Alert(s, m) => Some((s, m)),
                _ => None,
            })
            .collect()
    }

    pub fn hooks(&self) -> Vec<(String, HookType)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Hook(n, t, _) => Some((n, t)),
                _ => None,
            })
            .collect()
    }

    /// Phases written to the store, deduplicated in order.
    pub fn persisted_phases(&self) -> Vec<Phase> {
        let mut out: Vec<Phase> = Vec::new();
        for c in self.calls() {
            if let Call::Persist(p, _) = c
                && out.last() != Some(&p)
            {
                out.push(p);
            }
        }
        out
    }

    /// The position of the first call matching `f`.
    pub fn position(&self, f: impl Fn(&Call) -> bool) -> Option<usize> {
        self.calls().iter().position(f)
    }
}

#[async_trait]
impl Platform for World {
    async fn observe(&self) -> Result<Workloads, Error> {
        Ok(self.with(|s| Workloads {
            target: s.target.clone(),
            primary: s.primary.clone(),
        }))
    }

    async fn initialize_primary(&self) -> Result<(), Error> {
        self.record(Call::InitializePrimary);
        self.with(|s| {
            if s.primary.is_none() {
                let t = s.target.clone().unwrap();
                s.primary = Some(Workload {
                    readiness: s.primary_readiness.clone(),
                    ..t
                });
            }
        });
        Ok(())
    }

    async fn promote_primary(&self) -> Result<(), Error> {
        self.record(Call::PromotePrimary);
        self.with(|s| {
            let t = s.target.clone().unwrap();
            s.primary = Some(Workload {
                readiness: s.primary_readiness.clone(),
                ..t
            });
        });
        Ok(())
    }

    async fn scale_target(&self, scale: Scale) -> Result<(), Error> {
        self.record(Call::Scale(scale));
        self.with(|s| s.target_scale = Some(scale));
        Ok(())
    }

    async fn revert(&self) -> Result<(), Error> {
        self.record(Call::RevertPlatform);
        self.with(|s| s.primary = None);
        Ok(())
    }
}

#[async_trait]
impl Traffic for World {
    async fn observe(&self) -> Result<RouteState, Error> {
        Ok(self.with(|s| {
            if s.converging_reads > 0 && s.routes != RouteState::Absent {
                s.converging_reads -= 1;
                return RouteState::Converging;
            }
            s.routes.clone()
        }))
    }

    async fn apply(&self, intent: &RoutingIntent) -> Result<(), Error> {
        let w = intent.canary();
        assert!(w <= Weight::FULL);
        self.record(Call::Route(intent.clone()));
        self.with(|s| s.routes = RouteState::Applied(intent.split.clone()));
        Ok(())
    }

    async fn revert(&self) -> Result<(), Error> {
        self.record(Call::RevertTraffic);
        self.with(|s| s.routes = RouteState::Absent);
        Ok(())
    }
}

#[async_trait]
impl MetricSource for World {
    async fn measure(
        &self,
        metric: &siskin_api::analysis::CanaryMetric,
        window: Option<Duration>,
    ) -> Measurement {
        let window = window.unwrap_or_else(|| metric.interval());
        let query = Query::Builtin {
            metric: siskin_analysis::BuiltinMetric::SuccessRate,
            route: "test/podinfo".into(),
            backend: siskin_route::Role::Canary,
            window,
        };
        let value = self.with(|s| {
            s.queries.push(query.clone());
            if window <= Duration::from_secs(10) {
                return s.live_success_rate.ok_or(ProviderError::NoValues);
            }
            let v = if s.success_rates.len() > 1 {
                s.success_rates.pop_front()
            } else {
                s.success_rates.front().copied()
            };
            v.ok_or(ProviderError::NoValues)
        });
        Measurement {
            resolved: Some(Resolved {
                metric: metric.name.clone(),
                source: Source::Router,
                query,
                window,
            }),
            value,
            judgement: None,
        }
    }

    fn is_live(&self, metric: &siskin_api::analysis::CanaryMetric) -> bool {
        metric.is_builtin()
    }
}

#[async_trait]
impl Webhooks for World {
    async fn call(&self, hook: &CanaryWebhook, payload: &Payload) -> WebhookResult {
        let kind = hook.hook_type();
        self.record(Call::Hook(hook.name.clone(), kind, payload.clone()));
        let pass = self.with(|s| match kind {
            HookType::Rollout => s.rollout_hooks_pass,
            // A rollback hook "passes" (asks for a rollback) only when told to.
            HookType::Rollback => *s.gates.get(&kind).unwrap_or(&false),
            k => *s.gates.get(&k).unwrap_or(&true),
        });
        WebhookResult {
            name: hook.name.clone(),
            r#type: kind.name().to_string(),
            passed: pass,
            status_code: Some(if pass { 200 } else { 403 }),
            response: if pass { "" } else { "closed" }.to_string(),
            attempts: 1,
            ..Default::default()
        }
    }
}

#[async_trait]
impl Notifier for World {
    async fn post(&self, n: &Notification) -> Result<(), Error> {
        self.record(Call::Alert(n.severity, n.message.clone()));
        Ok(())
    }
}

#[async_trait]
impl Events for World {
    async fn record(&self, e: &Event) {
        World::record(self, Call::Event(e.reason, e.message.clone()));
    }
}

#[async_trait]
impl StatusStore for World {
    async fn persist(&self, before: &CanaryStatus, after: &CanaryStatus) -> Result<bool, Error> {
        let write = before != after;
        self.with(|s| {
            s.status = after.clone();
            if write {
                s.calls
                    .push(Call::Persist(after.phase, after.canary_weight));
            }
        });
        Ok(write)
    }
}

impl Clock for World {
    fn now(&self) -> Timestamp {
        self.with(|s| s.now)
    }
}
