//! One step of one release: observe → engine `step` (re-run on each `Need`) → execute the
//! actions in order → persist the status.

use std::time::Duration;

use siskin_api::{
    CanarySpec, CanaryStatus, HookType, analysis::CanaryWebhook, status::CheckStatus,
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
    let workloads = seams.platform.observe().await?;
    let mut obs = Observations {
        target: workloads.target,
        primary: workloads.primary,
        routes: seams.traffic.observe().await?,
        critical,
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
                let g = gate(seams.webhooks, kind, &hooks, &payload).await;
                obs.gates.insert(kind, g);
            }
            Need::Analysis => {
                analysed = true;
                let analysis = spec.analysis();
                let result =
                    checks::analysis(&analysis, seams.webhooks, &payload, seams.metrics, now).await;
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
    let persisted = seams.store.persist(status, &step.status).await?;
    if step.status.phase != status.phase {
        info!(from = %status.phase, to = %step.status.phase, weight = step.status.canary_weight, "phase changed");
    }
    Ok(Outcome {
        status: step.status,
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
    for h in hooks {
        let outcome = webhooks.call(h, payload).await;
        let ok = outcome.is_ok();
        if (kind == HookType::Rollback) == ok {
            return GateResult {
                passed: ok,
                hook: h.name.clone(),
                message: outcome.err().unwrap_or_default(),
                muted: h.mute_alert.unwrap_or(false),
            };
        }
    }
    GateResult {
        passed: kind != HookType::Rollback,
        hook: hooks.last().map(|h| h.name.clone()).unwrap_or_default(),
        message: String::new(),
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
            alert(release, seams, a).await;
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
        match seams.webhooks.call(h, &p).await {
            Ok(()) => {
                seams
                    .events
                    .record(&normal(
                        "HookPassed",
                        format!("{} check {} passed", kind.name(), h.name),
                    ))
                    .await;
            }
            Err(e) => {
                warn!(hook = %h.name, kind = kind.name(), error = %e, "hook failed");
                seams
                    .events
                    .record(&warning(
                        "HookFailed",
                        format!("{} hook {} failed {e}", kind.name(), h.name),
                    ))
                    .await;
            }
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
    let hooks = release.spec.analysis_hooks(HookType::Event);
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
        if let Err(err) = seams.webhooks.call(h, &p).await {
            warn!(hook = %h.name, error = %err, "event hook failed");
        }
    }
}

async fn alert(release: &Release<'_>, seams: &Seams<'_>, a: &Alert) {
    let spec = release.spec;
    let fields = if a.with_metadata {
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
