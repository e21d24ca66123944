//! One reconcile of one Canary: observe, run the engine until it decides, execute its actions,
//! write the status, record events and metrics.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action as Requeue,
        events::{Event as KubeEvent, EventType as KubeEventType, Recorder},
    },
};
use serde_json::json;
use siskin_api::{Canary, HookType, Phase, Provider, analysis::CanaryWebhook, validate};
use siskin_engine::{Action, AnalysisResult, EventType, Need, Observations, Step};
use tracing::{Instrument, info, warn};

use super::{
    Error, FIELD_MANAGER, FINALIZER,
    context::{Settings, Target},
    fleet::RouterFleet,
    metrics::Metrics,
    platform, traffic,
};
use crate::hooks::{Hooks, Payload};

/// Status fields Flagger's own CRD declares.
const FLAGGER_STATUS_FIELDS: [&str; 12] = [
    "phase",
    "failedChecks",
    "canaryWeight",
    "iterations",
    "trackedConfigs",
    "lastAppliedSpec",
    "lastPromotedSpec",
    "lastTransitionTime",
    "sessionAffinityCookie",
    "primarySessionAffinityCookie",
    "previousSessionAffinityCookie",
    "conditions",
];

/// Where Siskin's own status fields live on a flagger.app Canary.
const STATUS_ANNOTATION: &str = "siskin.dev/status";

/// The status as last written: for flagger.app, with Siskin's fields from the annotation.
fn read_status(canary: &Canary) -> siskin_api::CanaryStatus {
    let mut v = serde_json::to_value(canary.status.clone().unwrap_or_default()).unwrap_or_default();
    if let (Some(text), Some(obj)) = (
        canary.annotations().get(STATUS_ANNOTATION),
        v.as_object_mut(),
    ) && let Ok(serde_json::Value::Object(extras)) = serde_json::from_str(text)
    {
        for (k, x) in extras {
            obj.entry(k).or_insert(x);
        }
    }
    serde_json::from_value(v).unwrap_or_else(|_| canary.status.clone().unwrap_or_default())
}

/// Shared by every reconcile.
pub struct Ctx {
    /// API client.
    pub client: kube::Client,
    /// Operator settings.
    pub settings: Arc<Settings>,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Webhook client.
    pub hooks: Hooks,
    /// The router fleet's statistics.
    pub fleet: RouterFleet,
}

/// Entry point for the controller.
pub async fn reconcile(canary: Arc<Canary>, ctx: Arc<Ctx>) -> Result<Requeue, Error> {
    let name = canary.name_any();
    let ns = canary.namespace().unwrap_or_default();
    let span = tracing::info_span!("reconcile", canary = %name, namespace = %ns);
    async move {
        let started = Instant::now();
        let result = run(canary.clone(), &ctx).await;
        if let Err(e) = &result {
            warn!(error = %e, "reconcile failed");
            if let Error::Invalid { .. } = e {
                // Bad input is shown where the user looks: status and an event.
                let _ = report_invalid(&canary, &ctx, &e.to_string()).await;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        ctx.metrics.observe_duration(
            vec![
                ("name", canary.spec.target_name().to_string()),
                ("namespace", ns.clone()),
            ],
            secs,
        );
        result
    }
    .instrument(span)
    .await
}

/// Backs off on errors: invalid specs are retried slowly (a fix re-triggers a reconcile).
pub fn error_policy(_canary: Arc<Canary>, err: &Error, _ctx: Arc<Ctx>) -> Requeue {
    match err {
        Error::Invalid { .. } => Requeue::requeue(Duration::from_secs(60)),
        // Someone (often this operator's previous step) changed the Canary since it was read.
        Error::Kube { source, .. } if matches!(&**source, kube::Error::Api(e) if e.code == 409) => {
            Requeue::requeue(Duration::from_millis(500))
        }
        _ => Requeue::requeue(Duration::from_secs(5)),
    }
}

fn api(ctx: &Ctx, canary: &Canary) -> Api<Canary> {
    let group = canary.api_group().unwrap_or(ctx.settings.group);
    Api::namespaced_with(
        ctx.client.clone(),
        &canary.namespace().unwrap_or_default(),
        &group,
    )
}

async fn publish(ctx: &Ctx, canary: &Canary, warning: bool, reason: &str, note: String) {
    let group = canary.api_group().unwrap_or(ctx.settings.group);
    let reference = canary.object_ref(&group);
    let ev = KubeEvent {
        type_: if warning {
            KubeEventType::Warning
        } else {
            KubeEventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        // The recorder folds events with the same action and reason into one series that
        // keeps the first note; the note as action keeps different messages apart.
        action: note.chars().take(128).collect(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
        warn!(error = %e, reason, "cannot record event");
    }
}

async fn report_invalid(canary: &Canary, ctx: &Ctx, message: &str) -> Result<(), Error> {
    publish(ctx, canary, true, "InvalidSpec", message.to_string()).await;
    let mut status = canary.status.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let cond = siskin_api::status::CanaryCondition {
        r#type: "Stalled".into(),
        status: "True".into(),
        reason: "InvalidSpec".into(),
        message: Some(message.to_string()),
        last_transition_time: Some(
            siskin_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
        ),
        last_update_time: Some(
            siskin_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
        ),
    };
    let mut conds: Vec<_> = status
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.r#type != "Stalled")
        .collect();
    conds.push(cond);
    status.conditions = Some(conds);
    status.observed_generation = canary.metadata.generation;
    write_status(ctx, canary, &status).await
}

async fn write_status(
    ctx: &Ctx,
    canary: &Canary,
    status: &siskin_api::CanaryStatus,
) -> Result<(), Error> {
    let group = canary.api_group().unwrap_or(ctx.settings.group);
    let mut precondition = true;
    let mut status_json = serde_json::to_value(status).map_err(|e| Error::Invalid {
        field: "status".into(),
        message: e.to_string(),
    })?;
    if group == siskin_api::ApiGroup::Flagger {
        // Flagger's CRD declares only its own status fields: Siskin's (checks, wait,
        // observedGeneration, mirrored) are kept in an annotation so nothing is lost.
        let mut extras = serde_json::Map::new();
        if let Some(obj) = status_json.as_object_mut() {
            let keys: Vec<String> = obj.keys().cloned().collect();
            for k in keys {
                if !FLAGGER_STATUS_FIELDS.contains(&k.as_str())
                    && let Some(v) = obj.remove(&k)
                {
                    extras.insert(k, v);
                }
            }
        }
        let text = serde_json::Value::Object(extras).to_string();
        if canary.annotations().get(STATUS_ANNOTATION) != Some(&text) {
            api(ctx, canary)
                .patch(
                    &canary.name_any(),
                    &PatchParams::default(),
                    // Conditional on the Canary as read (see the status write below).
                    &Patch::Merge(json!({"metadata": {
                        "resourceVersion": canary.resource_version(),
                        "annotations": {STATUS_ANNOTATION: text},
                    }})),
                )
                .await
                .map_err(Error::kube(format!(
                    "annotate Canary {}",
                    canary.name_any()
                )))?;
            precondition = false;
        }
    }
    let mut body = json!({
        "apiVersion": group.api_version(),
        "kind": "Canary",
        "status": status_json,
    });
    // Only a status computed from the latest Canary may be written: a reconcile that read an
    // older version gets a conflict and runs again, instead of writing back an old phase.
    if precondition {
        body["metadata"] = json!({"resourceVersion": canary.resource_version()});
    }
    api(ctx, canary)
        .patch_status(
            &canary.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::kube(format!(
            "write status of Canary {}",
            canary.name_any()
        )))?;
    Ok(())
}

fn provider_name(canary: &Canary, settings: &Settings) -> String {
    match canary.spec.provider {
        Some(p) => p.name().to_string(),
        None => settings.default_provider.clone(),
    }
}

async fn run(cached: Arc<Canary>, ctx: &Ctx) -> Result<Requeue, Error> {
    // The cache may lag behind this operator's own last status write; decisions are made on
    // the Canary as the API server has it now.
    let Some(fresh) = api(ctx, &cached)
        .get_opt(&cached.name_any())
        .await
        .map_err(Error::kube(format!("get Canary {}", cached.name_any())))?
    else {
        return Ok(Requeue::await_change());
    };
    let canary = Arc::new(fresh.with_group(cached.api_group().unwrap_or(ctx.settings.group)));
    let ns = canary.namespace().unwrap_or_default();
    let deleting = canary.metadata.deletion_timestamp.is_some();
    let revert = canary.spec.revert_on_deletion.unwrap_or(false);
    let has_finalizer = canary.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        return Ok(Requeue::await_change());
    }
    if !deleting && revert && !has_finalizer {
        let mut finalizers = canary.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        api(ctx, &canary)
            .patch(
                &canary.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": finalizers}})),
            )
            .await
            .map_err(Error::kube("add finalizer".into()))?;
    }
    // Validation with the same rules as `siskin validate`: errors stop here, named by field.
    if !deleting {
        let default_provider = ctx
            .settings
            .default_provider
            .parse::<Provider>()
            .unwrap_or(Provider::Builtin);
        let errors: Vec<String> =
            validate::canary(&canary, &validate::Options { default_provider })
                .into_iter()
                .filter(|p| p.is_error())
                .map(|p| p.to_string())
                .collect();
        if !errors.is_empty() {
            return Err(Error::Invalid {
                field: "spec".into(),
                message: errors.join("; "),
            });
        }
    }
    let plat = platform::for_kind(canary.spec.target_kind())?;
    let backend = traffic::registry(&provider_name(&canary, &ctx.settings))?;
    let target_name = canary.spec.target_name().to_string();
    let selector = plat
        .selector(
            &ctx.client,
            &ns,
            &target_name,
            &ctx.settings.selector_labels,
        )
        .await?;
    let (label, label_value) = selector.clone().unwrap_or_default();
    let t = Target {
        client: ctx.client.clone(),
        canary: canary.clone(),
        ns: ns.clone(),
        name: target_name.clone(),
        apex: canary.spec.apex_name().to_string(),
        primary: canary.spec.primary_workload_name(),
        label,
        label_value,
        settings: ctx.settings.clone(),
    };
    let mut obs = Observations {
        target: if selector.is_some() {
            plat.target(&t).await?
        } else {
            None
        },
        primary: if selector.is_some() {
            plat.primary(&t).await?
        } else {
            None
        },
        routes: backend.current(&t).await?,
        ..Default::default()
    };
    let status = read_status(&canary);
    let now = jiff::Timestamp::now();
    let spec = &canary.spec;
    let engine = |obs: &Observations| {
        if deleting {
            siskin_engine::finalize(spec, &status, obs, now)
        } else {
            siskin_engine::step(spec, &status, obs, now)
        }
    };
    let mut step: Step = engine(&obs);
    let mut analysed = false;
    for _ in 0..8 {
        let Some(need) = step.need else { break };
        match need {
            Need::Gate(kind) => {
                let hooks: Vec<CanaryWebhook> = spec.analysis().hooks(kind).cloned().collect();
                let g = ctx
                    .hooks
                    .gate(kind, &hooks, &payload(&canary, &status))
                    .await;
                obs.gates.insert(kind, g);
            }
            Need::Analysis => {
                analysed = true;
                obs.analysis = Some(analysis(&canary, &status, ctx).await);
            }
        }
        step = engine(&obs);
    }
    for action in &step.actions {
        execute(
            action,
            &t,
            plat.as_ref(),
            backend.as_ref(),
            ctx,
            &obs,
            &status,
        )
        .await?;
    }
    // Between releases all traffic is on the primary: put back generated Services and routes
    // that were deleted or edited by hand (no drift from what the status says).
    let idle = matches!(
        step.status.phase,
        Phase::Initialized | Phase::Succeeded | Phase::Failed
    );
    let routed = step
        .actions
        .iter()
        .any(|a| matches!(a, Action::SetRoutes(_)));
    if !deleting && idle && !routed && selector.is_some() {
        super::services::ensure_generated(&t).await?;
        backend
            .apply(&t, &siskin_engine::Split::primary_only())
            .await?;
    }
    let mut new_status = step.status.clone();
    new_status.observed_generation = canary.metadata.generation;
    // A valid spec clears a previous InvalidSpec stall.
    if let Some(conds) = new_status.conditions.as_mut() {
        conds.retain(|c| c.reason != "InvalidSpec");
    }
    if new_status != status || canary.status.is_none() {
        write_status(ctx, &canary, &new_status).await?;
    }
    record_metrics(ctx, &canary, &status, &new_status, analysed);
    if deleting && new_status.phase == Phase::Terminated {
        let finalizers: Vec<String> = canary
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        api(ctx, &canary)
            .patch(
                &canary.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": finalizers}})),
            )
            .await
            .map_err(Error::kube("remove finalizer".into()))?;
        info!("terminated; finalizer removed");
        return Ok(Requeue::await_change());
    }
    Ok(Requeue::requeue(
        step.requeue_after.max(Duration::from_millis(500)),
    ))
}

fn payload(canary: &Canary, status: &siskin_api::CanaryStatus) -> Payload {
    Payload {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        phase: status.phase.name().to_string(),
        checksum: status.last_applied_spec.clone().unwrap_or_default(),
    }
}

async fn execute(
    action: &Action,
    t: &Target,
    plat: &dyn platform::Platform,
    backend: &dyn traffic::TrafficBackend,
    ctx: &Ctx,
    obs: &Observations,
    status: &siskin_api::CanaryStatus,
) -> Result<(), Error> {
    match action {
        Action::InitializePrimary => {
            plat.initialize(t).await?;
            super::autoscaler::sync_primary(t).await
        }
        Action::SetRoutes(split) => {
            super::services::ensure_generated(t).await?;
            backend.apply(t, split).await
        }
        Action::ScaleTarget(scale) => plat.scale(t, *scale).await,
        Action::PromotePrimary => {
            plat.promote(t).await?;
            super::autoscaler::sync_primary(t).await
        }
        Action::RunHooks(kind) => {
            let hooks: Vec<CanaryWebhook> =
                t.canary.spec.analysis().hooks(*kind).cloned().collect();
            for (hook, e) in ctx.hooks.notify(&hooks, &payload(&t.canary, status)).await {
                publish(
                    ctx,
                    &t.canary,
                    true,
                    "HookFailed",
                    format!("{} hook {hook} failed: {e}", kind.name()),
                )
                .await;
            }
            Ok(())
        }
        Action::Event(e) => {
            let warning = e.kind == EventType::Warning;
            if warning {
                warn!(reason = e.reason, "{}", e.message);
            } else {
                info!(reason = e.reason, "{}", e.message);
            }
            publish(ctx, &t.canary, warning, e.reason, e.message.clone()).await;
            let event_hooks: Vec<CanaryWebhook> = t
                .canary
                .spec
                .analysis()
                .hooks(HookType::Event)
                .cloned()
                .collect();
            if !event_hooks.is_empty() {
                let mut p = payload(&t.canary, status);
                p.phase = e.message.clone();
                let _ = ctx.hooks.notify(&event_hooks, &p).await;
            }
            Ok(())
        }
        Action::Alert(a) => {
            info!(severity = ?a.severity, "alert: {}", a.message);
            Ok(())
        }
        Action::RevertTarget => {
            plat.scale(t, siskin_engine::Scale::Up).await?;
            if obs.target.as_ref().is_some_and(|w| w.readiness.is_ready()) {
                backend.revert(t).await?;
                plat.revert(t).await?;
            }
            Ok(())
        }
    }
}

/// Rollout webhooks, then the metrics: built-in checks from the router fleet.
async fn analysis(canary: &Canary, status: &siskin_api::CanaryStatus, ctx: &Ctx) -> AnalysisResult {
    let route = format!(
        "{}/{}",
        canary.namespace().unwrap_or_default(),
        canary.spec.apex_name()
    );
    crate::analysis_run::run(
        &canary.spec.analysis(),
        &ctx.hooks,
        &payload(canary, status),
        &ctx.fleet,
        &route,
        "MetricTemplates and custom queries need the Prometheus provider, which this operator does not have yet; use request-success-rate or request-duration",
    )
    .await
}

fn record_metrics(
    ctx: &Ctx,
    canary: &Canary,
    before: &siskin_api::CanaryStatus,
    after: &siskin_api::CanaryStatus,
    _analysed: bool,
) {
    let ns = canary.namespace().unwrap_or_default();
    let target = canary.spec.target_name().to_string();
    let code = match after.phase {
        Phase::Progressing => 0.0,
        Phase::Failed => 2.0,
        _ => 1.0,
    };
    let m = &ctx.metrics;
    m.set(
        "siskin_canary_status",
        vec![("name", target.clone()), ("namespace", ns.clone())],
        code,
    );
    m.set(
        "siskin_canary_weight",
        vec![
            ("workload", format!("{target}-primary")),
            ("namespace", ns.clone()),
        ],
        f64::from(100 - after.canary_weight.clamp(0, 100)),
    );
    m.set(
        "siskin_canary_weight",
        vec![("workload", target.clone()), ("namespace", ns.clone())],
        f64::from(after.canary_weight.clamp(0, 100)),
    );
    for c in after.checks.iter().flatten() {
        if let Some(v) = c.value {
            m.set(
                "siskin_canary_metric_analysis",
                vec![
                    ("name", target.clone()),
                    ("namespace", ns.clone()),
                    ("metric", c.name.clone()),
                ],
                v,
            );
        }
    }
    let strategy = format!("{:?}", canary.spec.strategy()).to_lowercase();
    let strategy = match strategy.as_str() {
        "bluegreen" => "blue-green".to_string(),
        "abtesting" => "ab-testing".to_string(),
        s => s.to_string(),
    };
    let labels = |status: &str| {
        vec![
            ("name", target.clone()),
            ("namespace", ns.clone()),
            ("deployment_strategy", strategy.clone()),
            ("analysis_status", status.to_string()),
        ]
    };
    let analysis_status = if canary.spec.skip_analysis() {
        "skipped"
    } else {
        "completed"
    };
    if before.phase != after.phase {
        match after.phase {
            Phase::Succeeded => m.inc("siskin_canary_successes_total", labels(analysis_status)),
            Phase::Failed => m.inc("siskin_canary_failures_total", labels(analysis_status)),
            _ => {}
        }
    }
}
