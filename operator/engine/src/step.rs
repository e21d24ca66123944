//! The entry points, the step context, initialization and the idle phases.

use std::{borrow::Cow, collections::BTreeMap, time::Duration};

use sha2::{Digest, Sha256};
use siskin_api::{
    CanaryAnalysis, CanarySpec, CanaryStatus, DeploymentStrategy, HookType, Phase, Severity,
    Weight, canary::TargetKind,
};

use crate::{
    Action, Alert, Event, GateResult, Observations, POLL, Readiness, Scale, Split, Sticky,
    Timestamp, Workload, conditions, finish, run,
};

/// The result of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The status to persist once the actions succeeded.
    pub status: CanaryStatus,
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// When to step again (sooner is allowed: the engine re-checks cadence itself).
    pub requeue_after: Duration,
    /// When set, the step could not decide: fulfil this (fill in the observations) and call
    /// [`step`] again. `status` is then unchanged and `actions` empty.
    pub need: Option<Need>,
}

/// An outcome the engine needs before it can decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Run every webhook of this type in spec order and report a [`GateResult`] in
    /// `observations.gates`.
    Gate(HookType),
    /// Run the `rollout` webhooks and the metric checks and report an
    /// [`crate::AnalysisResult`] in `observations.analysis`.
    Analysis,
    /// Query every metric once (no webhooks) and report the checks in `observations.probe`:
    /// before any traffic moves, a metric that cannot be asked is named in the status.
    Probe,
}

/// Decides the next step of one canary. Deterministic: same inputs, same output.
pub fn step(spec: &CanarySpec, status: &CanaryStatus, obs: &Observations, now: Timestamp) -> Step {
    let mut cx = Cx::new(spec, status, obs, now);
    let flow = dispatch(&mut cx);
    cx.finish(flow)
}

/// Decides the next step of a Canary being deleted with `revertOnDeletion`: give the target
/// its replicas back, hand routing back, and report `Terminated` once the target is ready
/// (or its deadline passed; deletion is never blocked forever).
pub fn finalize(
    spec: &CanarySpec,
    status: &CanaryStatus,
    obs: &Observations,
    now: Timestamp,
) -> Step {
    let mut cx = Cx::new(spec, status, obs, now);
    let flow = finish::terminate(&mut cx);
    cx.finish(flow)
}

/// The split `status` describes under `spec`: what live routing must look like for it (the
/// weights, A/B conditions, mirroring and session cookies of the run). `siskin render` and a
/// driver resuming before its first step use it.
pub fn routing(spec: &CanarySpec, status: &CanaryStatus) -> Split {
    let obs = Observations::default();
    let cx = Cx::new(spec, status, &obs, Timestamp::UNIX_EPOCH);
    cx.current_split()
}

/// The status a run has while live routing sends `canary` to the canary (and mirrors when
/// `mirrored`): what `siskin render` shows for a routing state. At 0% without mirroring an
/// uninitialized Canary is Initialized on `target`'s revision; otherwise a run on `target`'s
/// revision is in progress at that weight, with its session cookies issued.
pub fn at_routing(
    spec: &CanarySpec,
    status: &CanaryStatus,
    target: Option<&Workload>,
    canary: Weight,
    mirrored: bool,
    now: Timestamp,
) -> CanaryStatus {
    let obs = Observations::default();
    let mut cx = Cx::new(spec, status, &obs, now);
    let running = matches!(
        cx.s.phase,
        Phase::Progressing | Phase::WaitingPromotion | Phase::Promoting | Phase::Finalising
    );
    if canary == Weight::ZERO && !mirrored {
        if matches!(cx.s.phase, Phase::Unset | Phase::Initializing)
            && let Some(t) = target
        {
            let s = &mut cx.s;
            s.phase = Phase::Initialized;
            s.last_applied_spec = Some(t.revision.clone());
            s.last_promoted_spec = Some(t.revision.clone());
            s.tracked_configs = tracked(&t.configs);
        }
        if !running {
            cx.s.canary_weight = 0;
            cx.s.mirrored = None;
        }
    } else {
        if !running {
            match target {
                Some(t) => cx.reset_run(t),
                None => cx.s.phase = Phase::Progressing,
            }
        }
        cx.s.canary_weight = i32::from(canary);
        cx.s.mirrored = mirrored.then_some(true);
        if cx.strategy() != DeploymentStrategy::Canary && cx.s.iterations == 0 {
            cx.s.iterations = 1;
        }
        if canary > Weight::ZERO {
            cx.issue_cookies();
        }
    }
    let kind = kind_name(spec.target_kind());
    conditions::set_conditions(&mut cx.s, kind, None, now);
    conditions::touch(status, &mut cx.s, now);
    cx.s
}

/// How a stage ended.
pub(crate) enum Flow {
    /// Decided; step again after this long.
    Done(Duration),
    /// Needs an outcome first.
    Need(Need),
}

/// The working state of one step.
pub(crate) struct Cx<'a> {
    pub(crate) spec: &'a CanarySpec,
    pub(crate) analysis: Cow<'a, CanaryAnalysis>,
    pub(crate) old: &'a CanaryStatus,
    pub(crate) obs: &'a Observations,
    pub(crate) now: Timestamp,
    pub(crate) s: CanaryStatus,
    pub(crate) actions: Vec<Action>,
    pub(crate) stalled: Option<String>,
    pub(crate) suspended: bool,
    /// Paused by hand: who and why (the `Ready` condition says so).
    pub(crate) paused: Option<String>,
}

impl<'a> Cx<'a> {
    fn new(
        spec: &'a CanarySpec,
        status: &'a CanaryStatus,
        obs: &'a Observations,
        now: Timestamp,
    ) -> Self {
        Cx {
            spec,
            analysis: spec.analysis(),
            old: status,
            obs,
            now,
            s: status.clone(),
            actions: Vec::new(),
            stalled: None,
            suspended: false,
            paused: None,
        }
    }

    fn finish(mut self, flow: Flow) -> Step {
        match flow {
            Flow::Need(need) => Step {
                status: self.old.clone(),
                actions: Vec::new(),
                requeue_after: Duration::ZERO,
                need: Some(need),
            },
            Flow::Done(requeue_after) => {
                let kind = kind_name(self.spec.target_kind());
                conditions::set_conditions(&mut self.s, kind, self.stalled.as_deref(), self.now);
                if self.suspended {
                    hold_condition(
                        self.old,
                        &mut self.s,
                        "Suspended",
                        "spec.suspend is true: the run is frozen",
                        self.now,
                    );
                }
                if let Some(by) = &self.paused {
                    let msg = format!(
                        "paused by {by}: the run holds at weight {} until `siskin resume` (or annotation siskin.dev/pause is removed)",
                        self.s.canary_weight
                    );
                    hold_condition(self.old, &mut self.s, "Paused", &msg, self.now);
                }
                conditions::touch(self.old, &mut self.s, self.now);
                Step {
                    status: self.s,
                    actions: self.actions,
                    requeue_after,
                    need: None,
                }
            }
        }
    }

    /// The analysis interval.
    pub(crate) fn interval(&self) -> Duration {
        self.analysis.interval()
    }

    /// How soon to re-check a waiting state.
    pub(crate) fn poll(&self) -> Duration {
        self.interval().min(POLL)
    }

    /// The target name, for messages.
    pub(crate) fn target(&self) -> &str {
        self.spec.target_name()
    }

    /// The outcome of a gate, or the need for it.
    pub(crate) fn gate(&self, kind: HookType) -> Result<&'a GateResult, Flow> {
        self.obs
            .gates
            .get(&kind)
            .ok_or(Flow::Need(Need::Gate(kind)))
    }

    /// Whether any webhook of this type is configured.
    pub(crate) fn has_hooks(&self, kind: HookType) -> bool {
        self.analysis.hooks(kind).next().is_some()
    }

    /// The strategy of this canary.
    pub(crate) fn strategy(&self) -> DeploymentStrategy {
        self.spec.strategy()
    }

    /// Records an event.
    pub(crate) fn event(&mut self, reason: &'static str, message: impl Into<String>) {
        self.actions.push(Event::normal(reason, message));
    }

    /// Records a warning event.
    pub(crate) fn warn(&mut self, reason: &'static str, message: impl Into<String>) {
        self.actions.push(Event::warning(reason, message));
    }

    /// Sends an alert.
    pub(crate) fn alert(&mut self, severity: Severity, message: impl Into<String>) {
        self.actions.push(Alert::send(severity, message));
    }

    /// The split that the status describes: what routing must look like now.
    pub(crate) fn current_split(&self) -> Split {
        let s = &self.s;
        let ab = self.strategy() == DeploymentStrategy::AbTesting
            && s.iterations > 0
            && matches!(s.phase, Phase::Progressing | Phase::WaitingPromotion);
        let mut split = if ab {
            let mut s = Split::to_canary(Weight::FULL);
            s.matches = self.analysis.matches().to_vec();
            s
        } else {
            Split::to_canary(s.weight())
        };
        if s.mirrored == Some(true) {
            split.mirror = Some(self.analysis.mirror_weight());
        }
        let sticky = Sticky {
            canary: s.session_affinity_cookie.clone(),
            primary: s.primary_session_affinity_cookie.clone(),
            previous: s.previous_session_affinity_cookie.clone(),
        };
        if sticky.canary.is_some() || sticky.primary.is_some() || sticky.previous.is_some() {
            split.sticky = Some(sticky);
        }
        split
    }

    /// Routes traffic as the status says.
    pub(crate) fn route(&mut self) {
        let split = self.current_split();
        self.actions.push(Action::SetRoutes(split));
    }

    /// Issues session cookies for this run if session affinity is on and none exist yet.
    pub(crate) fn issue_cookies(&mut self) {
        let Some(sa) = self.analysis.session_affinity.as_ref() else {
            return;
        };
        if self.s.session_affinity_cookie.is_some() {
            return;
        }
        let revision = self.s.last_applied_spec.clone().unwrap_or_default();
        self.s.session_affinity_cookie =
            Some(format!("{}={}", sa.cookie_name, token(&revision, "canary")));
        self.s.primary_session_affinity_cookie = sa
            .primary_cookie_name
            .as_ref()
            .map(|n| format!("{n}={}", token(&revision, "primary")));
    }

    /// Ends this run's cookies: the canary cookie becomes the previous one (expired on sight).
    pub(crate) fn retire_cookies(&mut self) {
        if let Some(c) = self.s.session_affinity_cookie.take() {
            self.s.previous_session_affinity_cookie = Some(c);
        }
        self.s.primary_session_affinity_cookie = None;
    }

    /// Starts (or restarts) a run for `target`'s revision.
    pub(crate) fn reset_run(&mut self, target: &Workload) {
        self.retire_cookies();
        let s = &mut self.s;
        s.phase = Phase::Progressing;
        s.canary_weight = 0;
        s.failed_checks = 0;
        s.iterations = 0;
        s.mirrored = None;
        s.checks = None;
        s.wait = None;
        s.last_applied_spec = Some(target.revision.clone());
        s.tracked_configs = tracked(&target.configs);
    }
}

fn kind_name(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Deployment => "Deployment",
        TargetKind::DaemonSet => "DaemonSet",
        TargetKind::Service => "Service",
    }
}

/// A cookie value for a run: derived from the revision, so it is stable across restarts and
/// new for every release.
fn token(revision: &str, side: &str) -> String {
    let digest = Sha256::digest(format!("{side}/{revision}").as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn tracked(configs: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!configs.is_empty()).then(|| configs.clone())
}

/// Condition `Ready` Unknown with `reason`: the run is held (suspended or paused). The
/// condition as `old` had it is kept when it already said so, so a held run writes nothing.
fn hold_condition(
    old: &CanaryStatus,
    s: &mut CanaryStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let kept = old
        .condition("Ready")
        .filter(|c| c.reason == reason && c.message.as_deref() == Some(message))
        .cloned();
    if let Some(c) = s
        .conditions
        .iter_mut()
        .flatten()
        .find(|c| c.r#type == "Ready")
    {
        match kept {
            Some(k) => *c = k,
            None => {
                c.status = "Unknown".to_string();
                c.reason = reason.to_string();
                c.message = Some(message.to_string());
                c.last_update_time =
                    Some(siskin_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
            }
        }
    }
}

fn dispatch(cx: &mut Cx<'_>) -> Flow {
    if cx.spec.suspended() {
        cx.suspended = true;
        let announced = cx
            .old
            .condition("Ready")
            .is_some_and(|c| c.reason == "Suspended");
        if !announced {
            cx.event("Suspended", "skipping canary run as object is suspended");
        }
        return Flow::Done(cx.interval());
    }
    if let Some(flow) = crate::manual::request(cx) {
        return flow;
    }
    if let Some(flow) = crate::manual::pause(cx) {
        return flow;
    }
    crate::manual::resumed(cx);
    match cx.s.phase {
        Phase::Unset | Phase::Initializing => initialize(cx),
        Phase::Initialized | Phase::Succeeded | Phase::Failed | Phase::Waiting => idle(cx),
        Phase::Progressing | Phase::WaitingPromotion => run::analysis(cx),
        Phase::Promoting => finish::promoting(cx),
        Phase::Finalising => finish::finalising(cx),
        Phase::Terminating | Phase::Terminated => Flow::Done(cx.interval()),
    }
}

/// Creates the primary, waits until it is ready, then routes all traffic to it and scales
/// the target down.
fn initialize(cx: &mut Cx<'_>) -> Flow {
    cx.s.phase = Phase::Initializing;
    let deadline = cx.spec.progress_deadline();
    let Some(target) = cx.obs.target.as_ref() else {
        let msg = format!("target {} not found", cx.target());
        stall_wait(cx, "TargetFound", &msg, deadline);
        return Flow::Done(cx.poll());
    };
    cx.actions.push(Action::InitializePrimary);
    let primary = match cx.obs.primary.as_ref().map(|p| &p.readiness) {
        None => Readiness::NotReady("primary workload not created yet".to_string()),
        Some(r) => r.clone(),
    };
    match primary {
        Readiness::NotReady(msg) => {
            stall_wait(
                cx,
                "PrimaryReady",
                &format!("primary not ready: {msg}"),
                deadline,
            );
            Flow::Done(cx.poll())
        }
        Readiness::Failed(msg) => {
            stall_wait(
                cx,
                "PrimaryReady",
                &format!("primary cannot become ready: {msg}"),
                Duration::ZERO,
            );
            Flow::Done(cx.poll())
        }
        Readiness::Ready => {
            if let Err(need) = probe(cx) {
                return need;
            }
            cx.s.wait = None;
            cx.s.last_applied_spec = Some(target.revision.clone());
            cx.s.last_promoted_spec = Some(target.revision.clone());
            cx.s.tracked_configs = tracked(&target.configs);
            cx.s.canary_weight = 0;
            cx.s.failed_checks = 0;
            cx.s.iterations = 0;
            cx.s.phase = Phase::Initialized;
            cx.route();
            cx.actions.push(Action::ScaleTarget(Scale::Zero));
            let kind = kind_name(cx.spec.target_kind());
            cx.event(
                "Initialized",
                format!("Initialization done! {}", cx.target()),
            );
            cx.actions.push(Alert::with_metadata(
                Severity::Info,
                format!("New {kind} detected, initialization completed."),
            ));
            Flow::Done(cx.interval())
        }
    }
}

/// Waits with a deadline; when it passes, marks the canary Stalled and alerts once.
pub(crate) fn stall_wait(cx: &mut Cx<'_>, reason: &str, msg: &str, limit: Duration) {
    let first = cx.s.wait.as_ref().is_none_or(|w| w.reason != reason);
    if conditions::wait(&mut cx.s, reason, msg, cx.now, limit) {
        let already = cx
            .old
            .condition("Stalled")
            .is_some_and(|c| c.status == "True");
        cx.stalled = Some(format!("{reason}: {msg}"));
        if !already {
            cx.warn("Stalled", format!("{} stalled: {msg}", cx.target()));
            cx.alert(Severity::Error, format!("{} stalled: {msg}", cx.target()));
        }
    } else if first {
        cx.warn("Waiting", format!("{}: {msg}", cx.target()));
    }
}

/// Whether the target holds a revision that has not been run yet.
pub(crate) fn is_new_revision(s: &CanaryStatus, target: &Workload) -> bool {
    let applied = s.last_applied_spec.as_deref();
    let promoted = s.last_promoted_spec.as_deref();
    let spec_changed =
        applied != Some(target.revision.as_str()) && promoted != Some(target.revision.as_str());
    spec_changed || configs_changed(s, target)
}

pub(crate) fn configs_changed(s: &CanaryStatus, target: &Workload) -> bool {
    s.tracked_configs.clone().unwrap_or_default() != target.configs
}

/// Initialized, Succeeded, Failed, Waiting: keep routing as it is and watch for a new
/// revision; start a run when one appears and the confirm-rollout gates agree.
fn idle(cx: &mut Cx<'_>) -> Flow {
    cx.route();
    let Some(target) = cx.obs.target.as_ref() else {
        return Flow::Done(cx.interval());
    };
    if !is_new_revision(&cx.s, target) {
        if cx.s.phase == Phase::Waiting {
            cx.s.phase = Phase::Initialized;
            cx.s.wait = None;
        }
        return Flow::Done(cx.interval());
    }
    if cx.has_hooks(HookType::ConfirmRollout) {
        let gate = match cx.gate(HookType::ConfirmRollout) {
            Ok(g) => g,
            Err(need) => return need,
        };
        if !gate.passed {
            return hold_rollout(cx, gate, target);
        }
        cx.event("GatePassed", gate.passed_event("Confirm-rollout"));
    }
    if let Err(need) = probe(cx) {
        return need;
    }
    cx.actions.retain(|a| !matches!(a, Action::SetRoutes(_)));
    cx.reset_run(target);
    cx.route();
    cx.actions.push(Action::ScaleTarget(Scale::Up));
    cx.event(
        "NewRevision",
        format!("New revision detected! Scaling up {}", cx.target()),
    );
    cx.actions.push(Alert::with_metadata(
        Severity::Info,
        "New revision detected, progressing canary analysis.",
    ));
    Flow::Done(cx.interval())
}

/// Asks every metric once before traffic moves and records in condition `MetricsAvailable`
/// whether each can be asked; a metric that cannot (a bad query, an unreachable provider,
/// refused credentials) is named with its cause, and warned about when it first is.
fn probe(cx: &mut Cx<'_>) -> Result<(), Flow> {
    let has_metrics = cx.analysis.metrics.as_ref().is_some_and(|m| !m.is_empty());
    if cx.spec.skip_analysis() || !has_metrics {
        return Ok(());
    }
    let Some(checks) = cx.obs.probe.as_ref() else {
        return Err(Flow::Need(Need::Probe));
    };
    let broken: Vec<String> = checks
        .iter()
        .filter(|c| c.verdict == siskin_api::status::Verdict::Error)
        .map(|c| {
            format!(
                "metric {}: {}",
                c.name,
                c.message.as_deref().unwrap_or("error")
            )
        })
        .collect();
    let was = cx
        .old
        .condition(conditions::METRICS_AVAILABLE)
        .map(|c| (c.status.clone(), c.message.clone()));
    if broken.is_empty() {
        let msg = format!("{} metric(s) can be asked", checks.len());
        conditions::set_metrics(&mut cx.s, true, "Available", &msg, cx.now);
    } else {
        let msg = broken.join("; ");
        if was != Some(("False".to_string(), Some(msg.clone()))) {
            cx.warn("MetricsUnavailable", format!("{}: {msg}", cx.target()));
        }
        conditions::set_metrics(&mut cx.s, false, "QueryFailed", &msg, cx.now);
    }
    Ok(())
}

fn hold_rollout(cx: &mut Cx<'_>, gate: &GateResult, target: &Workload) -> Flow {
    let first = cx.s.phase != Phase::Waiting;
    cx.s.phase = Phase::Waiting;
    let msg = format!("waiting for approval from {}", gate.hook);
    let expired = conditions::wait(
        &mut cx.s,
        "ConfirmRollout",
        &msg,
        cx.now,
        cx.spec.approval_deadline(),
    );
    if first {
        cx.warn(
            "WaitingForApproval",
            format!(
                "Halt {} advancement waiting for approval {}",
                cx.target(),
                gate.hook
            ),
        );
        if !gate.muted {
            cx.alert(Severity::Warn, "Canary is waiting for approval.");
        }
    }
    if expired {
        // Give up on this revision: it is not retried until the target changes again.
        cx.s.phase = Phase::Failed;
        cx.s.wait = None;
        cx.s.last_applied_spec = Some(target.revision.clone());
        cx.s.tracked_configs = tracked(&target.configs);
        let m = format!(
            "{} was not approved by {} within the approval deadline",
            cx.target(),
            gate.hook
        );
        crate::finish::remember(cx, Phase::Failed, m.clone());
        cx.warn("ApprovalExpired", m.clone());
        cx.alert(Severity::Error, m);
    }
    Flow::Done(cx.interval())
}
