//! One reconcile of one Canary: read it as the API server has it, handle the finalizer,
//! validate it with the same rules as `siskin validate`, and run one driver step in its
//! Kubernetes world; then record metrics and keep its critical checks watched.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{
    ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action as Requeue, events::Recorder, reflector::ObjectRef},
};
use serde_json::json;
use siskin_analysis::Analyzer;
use siskin_api::{Canary, Phase, validate};
use siskin_driver::{Error, Outcome, Release, Seams, SystemClock};
use tracing::{Instrument, info, warn};

use super::{
    FINALIZER, Settings,
    apply::kube_err,
    critical::CriticalWatch,
    fleet::RouterFleet,
    metrics::Metrics,
    outage::{self, Outages},
    status,
    versions::Versions,
    world::KubeWorld,
};
use crate::backends::REGISTRY;

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
    pub hooks: siskin_webhooks::client::HookClient,
    /// The global event webhook (`--event-webhook`).
    pub event_webhook: Option<siskin_api::CanaryWebhook>,
    /// Alerts to chat.
    pub alerts: crate::alerts::Dispatch,
    /// The router fleet's statistics.
    pub fleet: RouterFleet,
    /// Critical checks watched between steps.
    pub critical: Arc<CriticalWatch>,
    /// What this process last read and wrote.
    pub versions: Arc<Versions>,
    /// API-server outages not told yet.
    pub outages: Arc<Outages>,
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
            // Whatever was written before the error, the next reconcile reads the Canary.
            let group = canary.api_group().unwrap_or(ctx.settings.group);
            let vkey = status::version_key(&canary, group);
            ctx.versions.saw_canary(&vkey, None);
            ctx.outages.failed(&vkey, e);
            warn!(error = %e, kind = e.kind(), "reconcile failed");
            ctx.metrics
                .reconcile_errors
                .get_or_create(&vec![("kind", e.kind().to_string())])
                .inc();
            if let Error::Invalid { .. } = e {
                // Bad input is shown where the user looks: status and an event.
                let group = canary.api_group().unwrap_or(ctx.settings.group);
                if let Err(report) = status::report_invalid(
                    &ctx.client,
                    &ctx.recorder,
                    &canary,
                    group,
                    &e.to_string(),
                )
                .await
                {
                    warn!(error = %report, "cannot report the invalid spec on the Canary");
                }
            }
        }
        ctx.metrics
            .duration
            .get_or_create(&vec![
                ("name", canary.spec.target_name().to_string()),
                ("namespace", ns.clone()),
            ])
            .observe(started.elapsed().as_secs_f64());
        result
    }
    .instrument(span)
    .await
}

/// Backs off on errors: invalid specs are retried slowly (a fix re-triggers a reconcile), a
/// conflict at once.
pub fn error_policy(_canary: Arc<Canary>, err: &Error, _ctx: Arc<Ctx>) -> Requeue {
    match err {
        Error::Invalid { .. } => Requeue::requeue(Duration::from_secs(60)),
        // Someone (often this operator's previous step) changed the Canary since it was read.
        Error::Conflict { .. } => Requeue::requeue(Duration::from_millis(500)),
        Error::NotConverged { .. } => Requeue::requeue(Duration::from_secs(1)),
        Error::Unavailable { .. } => Requeue::requeue(Duration::from_secs(5)),
    }
}

async fn set_finalizers(ctx: &Ctx, canary: &Canary, finalizers: Vec<String>) -> Result<(), Error> {
    let group = canary.api_group().unwrap_or(ctx.settings.group);
    ctx.versions
        .saw_canary(&status::version_key(canary, group), None);
    status::api(&ctx.client, canary, group)
        .patch(
            &canary.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": finalizers}})),
        )
        .await
        .map_err(kube_err(format!(
            "set finalizers of Canary {}",
            canary.name_any()
        )))?;
    Ok(())
}

async fn run(cached: Arc<Canary>, ctx: &Ctx) -> Result<Requeue, Error> {
    let group = cached.api_group().unwrap_or(ctx.settings.group);
    let key = ObjectRef::from_obj_with(cached.as_ref(), group);
    // The cache may lag behind this operator's own last status write; decisions are made on
    // the Canary as the API server has it now. When the cache holds the version this process
    // last read or wrote, it is that (a lagging cache holds an older one).
    let vkey = status::version_key(&cached, group);
    let fresh = if ctx
        .versions
        .canary_is_current(&vkey, cached.resource_version().as_deref())
    {
        cached.as_ref().clone()
    } else {
        let Some(fresh) = status::api(&ctx.client, &cached, group)
            .get_opt(&cached.name_any())
            .await
            .map_err(kube_err(format!("get Canary {}", cached.name_any())))?
        else {
            ctx.critical.forget(&key);
            ctx.versions.forget_canary(&vkey);
            return Ok(Requeue::await_change());
        };
        ctx.versions.saw_canary(&vkey, fresh.resource_version());
        fresh
    };
    let canary = Arc::new(fresh.with_group(group));
    let ns = canary.namespace().unwrap_or_default();
    let deleting = canary.metadata.deletion_timestamp.is_some();
    let revert = canary.spec.revert_on_deletion.unwrap_or(false);
    let has_finalizer = canary.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        ctx.critical.forget(&key);
        return Ok(Requeue::await_change());
    }
    if !deleting && revert && !has_finalizer {
        let mut finalizers = canary.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        set_finalizers(ctx, &canary, finalizers).await?;
    }
    // Validation with the same rules (and the same backend registry) as `siskin validate`:
    // errors stop here, named by field.
    if !deleting {
        let errors: Vec<String> = validate::canary(
            &canary,
            &validate::Options {
                default_provider: ctx.settings.default_provider,
                backends: &REGISTRY,
            },
        )
        .into_iter()
        .filter(|p| p.is_error())
        .map(|p| p.to_string())
        .collect();
        if !errors.is_empty() {
            return Err(Error::invalid("spec", errors.join("; ")));
        }
    }
    let provider = canary
        .spec
        .provider
        .unwrap_or(ctx.settings.default_provider);
    let backend = REGISTRY.get(provider).ok_or_else(|| {
        Error::invalid(
            "spec.provider",
            format!(
                "provider {provider} is not implemented by this Siskin yet; use one of {}",
                REGISTRY.names().join(", ")
            ),
        )
    })?;
    // An API-server outage this Canary went through is told on the status this step writes.
    let outage_told = ctx.outages.report(&vkey, jiff::Timestamp::now());
    let world = KubeWorld::new(
        ctx.client.clone(),
        canary.clone(),
        group,
        backend,
        ctx.settings.clone(),
        ctx.fleet.clone(),
        ctx.recorder.clone(),
    )
    .await?
    .remembering(ctx.versions.clone())
    .report_outage(outage_told.clone());
    let status = status::read(&canary);
    let route = format!("{ns}/{}", canary.spec.apex_name());
    let name = canary.name_any();
    let control = crate::control::from_annotations(canary.annotations())
        .map_err(|e| Error::invalid(e.field.clone(), e.message))?;
    let release = Release {
        name: &name,
        namespace: &ns,
        spec: &canary.spec,
        status: &status,
        deleting,
        control: &control,
    };
    let templates = super::templates::read(
        &ctx.client,
        group,
        &crate::analysis::template_refs(&canary, &ns),
    )
    .await?;
    let secrets = super::templates::KubeSecrets {
        client: ctx.client.clone(),
    };
    let metrics_server = canary
        .spec
        .metrics_server
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| ctx.settings.metrics_server.clone());
    let analyzer = Analyzer {
        cx: siskin_analysis::resolve::Context {
            vars: crate::analysis::vars(&canary, &ns),
            provider,
            metrics_server: Some(&metrics_server),
            route: &route,
            templates: &templates,
            checks: canary.spec.analysis().checks_per_run(),
        },
        router: &ctx.fleet,
        secrets: &secrets,
        kube: Some(ctx.client.clone()),
    };
    let providers = super::templates::KubeAlertProviders {
        client: ctx.client.clone(),
        group,
    };
    let notifier = crate::alerts::CanaryAlerts {
        dispatch: &ctx.alerts,
        alerts: canary.spec.analysis().alerts.clone().unwrap_or_default(),
        namespace: ns.clone(),
        providers: &providers,
    };
    let seams = Seams {
        platform: &world,
        traffic: &world,
        metrics: &analyzer,
        webhooks: &ctx.hooks,
        notifier: &notifier,
        events: &world,
        store: &world,
        clock: &SystemClock,
        event_webhook: ctx.event_webhook.as_ref(),
    };
    let critical = ctx.critical.take(&key);
    let outcome = match siskin_driver::step(&release, &seams, critical.clone()).await {
        Ok(o) => o,
        Err(e) => {
            if let Some(f) = critical {
                ctx.critical.restore(key, f);
            }
            return Err(e);
        }
    };
    if outcome.persisted
        && let Some(message) = outage_told
    {
        status::publish(
            &ctx.recorder,
            &canary,
            group,
            true,
            outage::EVENT_REASON,
            &message,
        )
        .await;
        ctx.outages.told(&vkey);
    }
    record_metrics(ctx, &canary, &status, &outcome);
    ctx.critical
        .follow(key.clone(), &canary, &outcome.status, provider);
    if deleting && outcome.status.phase == Phase::Terminated {
        let finalizers: Vec<String> = canary
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        set_finalizers(ctx, &canary, finalizers).await?;
        ctx.critical.forget(&key);
        info!("terminated; finalizer removed");
        return Ok(Requeue::await_change());
    }
    Ok(Requeue::requeue(
        outcome.requeue_after.max(Duration::from_millis(500)),
    ))
}

fn record_metrics(ctx: &Ctx, canary: &Canary, before: &siskin_api::CanaryStatus, out: &Outcome) {
    let after = &out.status;
    let ns = canary.namespace().unwrap_or_default();
    let target = canary.spec.target_name().to_string();
    let code = match after.phase {
        Phase::Progressing => 0,
        Phase::Failed => 2,
        _ => 1,
    };
    let m = &ctx.metrics;
    m.status
        .get_or_create(&vec![("name", target.clone()), ("namespace", ns.clone())])
        .set(code);
    let weight = after.weight();
    m.weight
        .get_or_create(&vec![
            ("workload", format!("{target}-primary")),
            ("namespace", ns.clone()),
        ])
        .set(i64::from(weight.complement().get()));
    m.weight
        .get_or_create(&vec![
            ("workload", target.clone()),
            ("namespace", ns.clone()),
        ])
        .set(i64::from(weight.get()));
    for c in after.checks.iter().flatten() {
        if let Some(v) = c.value {
            m.analysis
                .get_or_create(&vec![
                    ("name", target.clone()),
                    ("namespace", ns.clone()),
                    ("metric", c.name.clone()),
                ])
                .set(v);
        }
    }
    let strategy = match canary.spec.strategy() {
        siskin_api::DeploymentStrategy::Canary => "canary",
        siskin_api::DeploymentStrategy::BlueGreen => "blue-green",
        siskin_api::DeploymentStrategy::AbTesting => "ab-testing",
    };
    let labels = |status: &str| {
        vec![
            ("name", target.clone()),
            ("namespace", ns.clone()),
            ("deployment_strategy", strategy.to_string()),
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
            Phase::Succeeded => {
                m.successes.get_or_create(&labels(analysis_status)).inc();
            }
            Phase::Failed => {
                m.failures.get_or_create(&labels(analysis_status)).inc();
            }
            _ => {}
        }
    }
}
