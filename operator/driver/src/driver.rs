//! One step of one release: observe → engine `step` (re-run on each `Need`) → execute the
//! actions in order → persist the status.

use std::time::Duration;

use siskin_api::{
    CanarySpec, CanaryStatus, HookType, Phase, Severity,
    analysis::CanaryWebhook,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    status::{CheckStatus, Verdict, WebhookResult},
};
use siskin_engine::{
    Action, Alert, Event, EventType, GateResult, Need, Observations, RouteState, Scale, Split, Step,
};
use tracing::{Instrument, info, warn};

use crate::{
    Clock, Error, Events, Notification, Notifier, Payload, Platform, Result, RoutingIntent,
    StatusStore, Traffic, Webhooks, checks,
};

/// At most this many needs are fulfilled in one step (each gate type once, the analysis once).
const MAX_NEEDS: usize = 8;

/// How long a scale-down waits for routing to leave the workload it scales down.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);

/// How often routing is read back while waiting for it.
const CONFIRM_POLL: Duration = Duration::from_millis(250);

/// One release, as the driver sees it.
#[derive(Clone, Copy, Debug)]
pub struct Release<'a> {
    /// The Canary's name.
    pub name: &'a str,
    /// Its namespace (`standalone` for `siskin run`).
    pub namespace: &'a str,
    /// What to release and how.
    pub spec: &'a CanarySpec,
    /// The status as last persisted.
    pub status: &'a CanaryStatus,
    /// The Canary is being deleted with `revertOnDeletion`.
    pub deleting: bool,
    /// What a user asked by hand (pause, promote, abort, retry).
    pub control: &'a siskin_engine::Control,
}

/// The world the release runs in.
#[derive(Clone, Copy)]
pub struct Seams<'a> {
    /// Workloads.
    pub platform: &'a dyn Platform,
    /// Routing.
    pub traffic: &'a dyn Traffic,
    /// Metric values.
    pub metrics: &'a dyn siskin_analysis::MetricSource,
    /// Webhook calls.
    pub webhooks: &'a dyn Webhooks,
    /// Alerts.
    pub notifier: &'a dyn Notifier,
    /// Events.
    pub events: &'a dyn Events,
    /// The status.
    pub store: &'a dyn StatusStore,
    /// Time.
    pub clock: &'a dyn Clock,
    /// The global event webhook (`--event-webhook`): told every event of Canaries that have no
    /// `event` hook of their own.
    pub event_webhook: Option<&'a CanaryWebhook>,
}

/// What a step did.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The status after the step (persisted when it changed).
    pub status: CanaryStatus,
    /// The actions executed, in order.
    pub actions: Vec<Action>,
    /// When to step again.
    pub requeue_after: Duration,
    /// Whether an analysis ran.
    pub analysed: bool,
    /// Whether the store wrote the status.
    pub persisted: bool,
}

/// Runs one step of `release` in `seams`. `critical` is a critical check that failed on live
/// data since the last step ([`crate::watch_critical`]): the run is rolled back at once.
///
/// Actions run in order and the first failure stops the step without persisting: the next
/// step decides again from the same status, and every action is idempotent.
pub async fn step(
    release: &Release<'_>,
    seams: &Seams<'_>,
    critical: Option<CheckStatus>,
) -> Result<Outcome> {
    let span = tracing::info_span!(
        "step",
        canary = release.name,
        namespace = release.namespace,
        phase = %release.status.phase,
    );
    run(release, seams, critical).instrument(span).await
}

async fn run(
    release: &Release<'_>,
    seams: &Seams<'_>,
    critical: Option<CheckStatus>,
) -> Result<Outcome> {
    let recorder = Recorder::new(seams.webhooks, seams.clock);
    let seams = &Seams {
        webhooks: &recorder,
        ..*seams
    };
    let workloads = seams.platform.observe().await?;
    let mut obs = Observations {
        target: workloads.target,
        primary: workloads.primary,
        routes: seams.traffic.observe().await?,
        critical,
        control: release.control.clone(),
        ..Default::default()
    };
    let now = seams.clock.now();
    let (spec, status) = (release.spec, release.status);
    let engine = |obs: &Observations| {
        if release.deleting {
            siskin_engine::finalize(spec, status, obs, now)
        } else {
            siskin_engine::step(spec, status, obs, now)
        }
    };
    let payload = payload(release, status);
    let mut step: Step = engine(&obs);
    let mut analysed = false;
    for _ in 0..MAX_NEEDS {
        let Some(need) = step.need else { break };
        match need {
            Need::Gate(kind) => {
                let hooks: Vec<&CanaryWebhook> = spec.analysis_hooks(kind);
                let g = gate(seams.webhooks, kind, &hooks, &payload.for_hook(kind)).await;
                obs.gates.insert(kind, g);
            }
            Need::Analysis => {
                analysed = true;
                let analysis = spec.analysis();
                let result = checks::analysis(
                    &analysis,
                    seams.webhooks,
                    &payload.for_hook(HookType::Rollout),
                    seams.metrics,
                    now,
                )
                .await;
                obs.analysis = Some(result);
            }
            Need::Probe => {
                let analysis = spec.analysis();
                obs.probe = Some(checks::probe(&analysis, seams.metrics, now).await);
            }
        }
        step = engine(&obs);
    }
    if let Some(need) = step.need {
        // The engine asks for the same outcome again: a bug, not a state to persist.
        return Err(Error::unavailable(
            "step",
            format!("the engine still needs {need:?} after {MAX_NEEDS} answers"),
        ));
    }
    for (i, action) in step.actions.iter().enumerate() {
        let scales_down = step.actions[i + 1..]
            .iter()
            .any(|a| matches!(a, Action::ScaleTarget(Scale::Zero)));
        execute(release, seams, action, &obs, &step.status, scales_down).await?;
    }
    let mut after = step.status;
    record_webhooks(&mut after, recorder.take());
    let alerted = step.actions.iter().any(|a| matches!(a, Action::Alert(_)));
    if after.phase != status.phase && !alerted && status.phase != Phase::Unset {
        // Every phase change is told; the engine's own alerts cover the rest.
        let a = Alert {
            severity: siskin_api::Severity::Info,
            message: phase_message(status.phase, after.phase),
            with_metadata: false,
        };
        alert(release, seams, &a, &after).await;
    }
    let persisted = seams.store.persist(status, &after).await?;
    if after.phase != status.phase {
        info!(from = %status.phase, to = %after.phase, weight = after.canary_weight, "phase changed");
    }
    Ok(Outcome {
        status: after,
        actions: step.actions,
        requeue_after: step.requeue_after,
        analysed,
        persisted,
    })
}

/// Flagger's payload for the hooks of this step.
fn payload(release: &Release<'_>, status: &CanaryStatus) -> Payload {
    Payload {
        name: release.name.to_string(),
        namespace: release.namespace.to_string(),
        phase: status.phase.name().to_string(),
        checksum: status.last_applied_spec.clone().unwrap_or_default(),
        metadata: Default::default(),
    }
}

/// Runs every hook of a gate type in spec order: the first failure decides (for `rollback`,
/// the first success).
pub async fn gate(
    webhooks: &dyn Webhooks,
    kind: HookType,
    hooks: &[&CanaryWebhook],
    payload: &Payload,
) -> GateResult {
    let mut answered = Vec::with_capacity(hooks.len());
    for h in hooks {
        let outcome = webhooks.call(h, payload).await;
        let ok = outcome.passed;
        if (kind == HookType::Rollback) == ok {
            return GateResult {
                passed: ok,
                hook: h.name.clone(),
                message: outcome.summary(),
                muted: h.mute_alert.unwrap_or(false),
            };
        }
        answered.push((h.name.as_str(), outcome.summary()));
    }
    // None decided: every hook's answer, for the event.
    let (hook, message) = match answered.as_slice() {
        [(name, summary)] => (name.to_string(), summary.clone()),
        many => (
            many.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            many.iter()
                .map(|(n, s)| format!("{n}: {s}"))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    GateResult {
        passed: kind != HookType::Rollback,
        hook,
        message,
        muted: false,
    }
}

async fn execute(
    release: &Release<'_>,
    seams: &Seams<'_>,
    action: &Action,
    obs: &Observations,
    after: &CanaryStatus,
    scales_down: bool,
) -> Result<()> {
    match action {
        Action::InitializePrimary => seams.platform.initialize_primary().await,
        Action::SetRoutes(split) => {
            let intent = RoutingIntent::resolve(release.spec, split)?;
            seams.traffic.apply(&intent).await?;
            if scales_down {
                confirm(seams, split).await?;
            }
            Ok(())
        }
        Action::ScaleTarget(scale) => seams.platform.scale_target(*scale).await,
        Action::PromotePrimary => seams.platform.promote_primary().await,
        Action::RunHooks(kind) => {
            run_hooks(release, seams, *kind, after).await;
            Ok(())
        }
        Action::Event(e) => {
            event(release, seams, e, after).await;
            Ok(())
        }
        Action::Alert(a) => {
            alert(release, seams, a, after).await;
            Ok(())
        }
        Action::RevertTarget => {
            seams.platform.scale_target(Scale::Up).await?;
            if obs.target.as_ref().is_some_and(|w| w.readiness.is_ready()) {
                seams.traffic.revert().await?;
                seams.platform.revert().await?;
            }
            Ok(())
        }
    }
}

/// Waits until live routing carries `split`, so the workload it leaves is not scaled down
/// while it still takes traffic.
async fn confirm(seams: &Seams<'_>, split: &Split) -> Result<()> {
    let start = tokio::time::Instant::now();
    loop {
        let state = seams.traffic.observe().await?;
        let detail = match &state {
            RouteState::Applied(s) if s.canary() == split.canary() => return Ok(()),
            RouteState::Applied(s) => format!("canary weight {} is served", s.canary()),
            RouteState::Converging => "not every router or gateway serves it yet".to_string(),
            // Nothing routes anywhere: nothing routes to the workload either.
            RouteState::Absent => return Ok(()),
        };
        let waited = start.elapsed();
        if waited >= CONFIRM_TIMEOUT {
            return Err(Error::NotConverged { waited, detail });
        }
        tokio::time::sleep(CONFIRM_POLL).await;
    }
}

async fn run_hooks(release: &Release<'_>, seams: &Seams<'_>, kind: HookType, after: &CanaryStatus) {
    let p = payload(release, after);
    for h in release.spec.analysis_hooks(kind) {
        let r = seams.webhooks.call(h, &p).await;
        if r.passed {
            seams
                .events
                .record(&normal(
                    "HookPassed",
                    format!("{} check {} passed ({})", kind.name(), h.name, r.summary()),
                ))
                .await;
        } else {
            warn!(hook = %h.name, kind = kind.name(), result = %r.summary(), "hook failed");
            seams
                .events
                .record(&warning(
                    "HookFailed",
                    format!("{} hook {} failed: {}", kind.name(), h.name, r.summary()),
                ))
                .await;
            // Flagger stops at the first failing post-rollout hook.
            break;
        }
    }
}

/// Records an event and sends it to the Canary's `event` webhooks (Flagger's event payload).
async fn event(release: &Release<'_>, seams: &Seams<'_>, e: &Event, after: &CanaryStatus) {
    match e.kind {
        EventType::Warning => warn!(reason = e.reason, message = %e.message, "event"),
        EventType::Normal => info!(reason = e.reason, message = %e.message, "event"),
    }
    seams.events.record(e).await;
    let mut hooks = release.spec.analysis_hooks(HookType::Event);
    if hooks.is_empty() {
        hooks.extend(seams.event_webhook);
    }
    if hooks.is_empty() {
        return;
    }
    let mut p = payload(release, after);
    let kind = match e.kind {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    };
    p.metadata = [
        ("eventMessage".to_string(), e.message.clone()),
        ("eventType".to_string(), kind.to_string()),
        (
            "timestamp".to_string(),
            seams.clock.now().as_millisecond().to_string(),
        ),
    ]
    .into();
    for h in hooks {
        let r = seams.webhooks.call(h, &p).await;
        if !r.passed {
            warn!(hook = %h.name, result = %r.summary(), "event hook failed");
        }
    }
}

async fn alert(release: &Release<'_>, seams: &Seams<'_>, a: &Alert, after: &CanaryStatus) {
    let spec = release.spec;
    let mut fields = if a.with_metadata {
        let analysis = spec.analysis();
        vec![
            (
                "Target".to_string(),
                format!(
                    "{:?}/{}.{}",
                    spec.target_kind(),
                    spec.target_name(),
                    release.namespace
                ),
            ),
            ("Strategy".to_string(), format!("{:?}", spec.strategy())),
            (
                "Failed checks threshold".to_string(),
                analysis.threshold().to_string(),
            ),
            (
                "Progress deadline".to_string(),
                format!("{}s", spec.progress_deadline().as_secs()),
            ),
        ]
    } else {
        Vec::new()
    };
    if a.severity == Severity::Error {
        // A failure names what failed: each failing check with its value and threshold.
        fields.extend(failing_checks(after));
    }
    let n = Notification {
        name: release.name.to_string(),
        namespace: release.namespace.to_string(),
        severity: a.severity,
        message: a.message.clone(),
        fields,
    };
    if let Err(e) = seams.notifier.post(&n).await {
        // A lost alert does not hold the release back; it is logged where operators look.
        warn!(error = %e, severity = ?a.severity, "cannot send alert");
        seams
            .events
            .record(&warning("AlertNotSent", format!("alert not sent: {e}")))
            .await;
    }
}

/// The checks of the run that did not pass, as alert fields: `request-success-rate` →
/// `50.00 (min 99): Fail`.
fn failing_checks(status: &CanaryStatus) -> Vec<(String, String)> {
    status
        .checks
        .iter()
        .flatten()
        .filter(|c| c.verdict != Verdict::Pass)
        .map(|c| {
            let mut v = match c.value {
                Some(x) => format!("{x:.2}"),
                None => "no value".to_string(),
            };
            match (c.min, c.max) {
                (Some(lo), Some(hi)) => v.push_str(&format!(" (range {lo}–{hi})")),
                (Some(lo), None) => v.push_str(&format!(" (min {lo})")),
                (None, Some(hi)) => v.push_str(&format!(" (max {hi})")),
                (None, None) => {}
            }
            v.push_str(&format!(": {:?}", c.verdict));
            if let Some(m) = c.message.as_deref().filter(|m| !m.is_empty()) {
                v.push_str(&format!(" — {m}"));
            }
            (c.name.clone(), v)
        })
        .collect()
}

/// The message for a phase change the engine did not alert about itself.
fn phase_message(from: Phase, to: Phase) -> String {
    match to {
        Phase::Promoting => "Canary analysis passed, promoting the canary to the primary.".into(),
        Phase::Finalising => "Primary updated, routing all traffic back to it.".into(),
        Phase::Progressing => format!("Canary analysis progressing (was {}).", from.name()),
        _ => format!("Phase changed from {} to {}.", from.name(), to.name()),
    }
}

/// Wraps the world's webhook caller to keep every result of a step for the status.
struct Recorder<'a> {
    inner: &'a dyn Webhooks,
    clock: &'a dyn Clock,
    results: std::sync::Mutex<Vec<WebhookResult>>,
}

impl<'a> Recorder<'a> {
    fn new(inner: &'a dyn Webhooks, clock: &'a dyn Clock) -> Self {
        Recorder {
            inner,
            clock,
            results: Default::default(),
        }
    }

    fn take(&self) -> Vec<WebhookResult> {
        self.results
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Webhooks for Recorder<'_> {
    async fn call(&self, hook: &CanaryWebhook, payload: &Payload) -> WebhookResult {
        let mut r = self.inner.call(hook, payload).await;
        r.time = Some(Time(self.clock.now()));
        if let Ok(mut results) = self.results.lock() {
            results.push(r.clone());
        }
        r
    }
}

/// Keeps the last result of each hook (name and type) in `status.webhooks`; an unchanged
/// outcome keeps its entry (and its time), so a gate polled every interval writes nothing.
fn record_webhooks(status: &mut CanaryStatus, results: Vec<WebhookResult>) {
    if results.is_empty() {
        return;
    }
    let list = status.webhooks.get_or_insert_with(Vec::new);
    for r in results {
        match list
            .iter_mut()
            .find(|e| e.name == r.name && e.r#type == r.r#type)
        {
            Some(e) if e.same_outcome(&r) => {}
            Some(e) => *e = r,
            None => list.push(r),
        }
    }
    // Bounded like the CRD says: the oldest go first.
    if list.len() > 64 {
        list.sort_by(|a, b| b.time.cmp(&a.time));
        list.truncate(64);
    }
}

fn normal(reason: &'static str, message: String) -> Event {
    Event {
        kind: EventType::Normal,
        reason,
        message,
    }
}

fn warning(reason: &'static str, message: String) -> Event {
    Event {
        kind: EventType::Warning,
        reason,
        message,
    }
}

/// Between steps: evaluates the critical checks every `poll` for at most `wait`; returns the
/// first that failed on live data, or None when `wait` passed without one.
pub async fn watch_critical(
    spec: &CanarySpec,
    status: &CanaryStatus,
    metrics: &dyn siskin_analysis::MetricSource,
    clock: &dyn Clock,
    poll: Duration,
    wait: Duration,
) -> Option<CheckStatus> {
    let analysis = spec.analysis();
    let until = tokio::time::Instant::now() + wait;
    if !checks::exposed(status) || !checks::has_critical(&analysis, metrics) {
        tokio::time::sleep_until(until).await;
        return None;
    }
    loop {
        let now = tokio::time::Instant::now();
        if now >= until {
            return None;
        }
        tokio::time::sleep(poll.min(until - now)).await;
        if let Some(failed) = checks::critical(&analysis, status, metrics, clock.now()).await {
            warn!(metric = %failed.name, value = ?failed.value, "critical check failed on live data");
            return Some(failed);
        }
    }
}
