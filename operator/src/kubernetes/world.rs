//! The driver's seams over Kubernetes objects, for one Canary: workloads (Deployments and
//! DaemonSets), routing (the provider's backend plans applied by the executor), the status,
//! events and alerts.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::Recorder,
};
use serde_json::json;
use siskin_api::{ApiGroup, Canary, CanaryStatus};
use siskin_driver::{Error, Events, Platform, RoutingIntent, StatusStore, Traffic, Workloads};
use siskin_engine::{Event, EventType, RouteState, Scale};
use tracing::warn;

use super::{Settings, apply, fleet::RouterFleet, outage, status, versions::Versions};
use crate::{
    backends::{Context, PlanError, Selector, TrafficBackend, plan_routing, routing_reads},
    objects::{Change, Cluster, Kind, Read},
    workloads::{self, REPLICAS_ANNOTATION, configs, daemonset},
};

/// One Canary's world on Kubernetes.
pub struct KubeWorld {
    client: Client,
    canary: Arc<Canary>,
    ns: String,
    group: ApiGroup,
    /// The target's selector label; None when neither the target nor its primary exists.
    selector: Option<Selector>,
    backend: &'static dyn TrafficBackend,
    settings: Arc<Settings>,
    fleet: RouterFleet,
    recorder: Recorder,
    /// The target and primary read to learn the selector, reused by the step's observation.
    first_read: std::sync::Mutex<Option<Cluster>>,
    /// The routing objects read by the step's observation, reused by its routing plan.
    routing_read: std::sync::Mutex<Option<Cluster>>,
    /// What this process last read and applied.
    versions: Arc<Versions>,
    /// An API-server outage this Canary went through, told on its status by this step.
    outage: Option<String>,
}

/// A plan error as the driver reports it.
pub fn plan_err(e: PlanError) -> Error {
    match e {
        PlanError::Invalid { field, message } => Error::invalid(field, message),
        PlanError::Decode(d) => Error::invalid(
            format!("{} {}/{}", d.kind, d.namespace, d.name),
            format!("cannot be read: {}", d.source),
        ),
    }
}

// === impl KubeWorld ===

impl KubeWorld {
    /// The world of `canary`: reads its target (or primary) once to learn the selector label.
    pub async fn new(
        client: Client,
        canary: Arc<Canary>,
        group: ApiGroup,
        backend: &'static dyn TrafficBackend,
        settings: Arc<Settings>,
        fleet: RouterFleet,
        recorder: Recorder,
    ) -> Result<KubeWorld, Error> {
        let ns = canary.namespace().unwrap_or_default();
        let kind = workloads::kind_of(canary.spec.target_kind()).map_err(plan_err)?;
        let target = canary.spec.target_name().to_string();
        let mut cluster = Cluster::new();
        apply::read(
            &client,
            &[
                Read::Named(crate::objects::ObjectRef::new(kind, &ns, &target)),
                Read::Named(crate::objects::ObjectRef::new(
                    kind,
                    &ns,
                    &format!("{target}-primary"),
                )),
            ],
            &mut cluster,
        )
        .await?;
        let selector = workloads::selector(kind, &cluster, &ns, &target, &settings.selector_labels)
            .map_err(plan_err)?;
        Ok(KubeWorld {
            client,
            canary,
            ns,
            group,
            selector,
            backend,
            settings,
            fleet,
            recorder,
            first_read: std::sync::Mutex::new(Some(cluster)),
            routing_read: std::sync::Mutex::new(None),
            versions: Arc::default(),
            outage: None,
        })
    }

    /// Remembers what it reads and applies in `versions` (shared by the operator's steps).
    pub fn remembering(mut self, versions: Arc<Versions>) -> Self {
        self.versions = versions;
        self
    }

    /// Tells `outage` (see [`super::outage`]) on the status this step writes.
    pub fn report_outage(mut self, outage: Option<String>) -> Self {
        self.outage = outage;
        self
    }

    fn cx(&self) -> Option<Context<'_>> {
        Some(Context {
            canary: &self.canary,
            namespace: &self.ns,
            selector: self.selector.as_ref()?,
            router_service: (
                &self.settings.router_service.0,
                &self.settings.router_service.1,
            ),
            group: self.group,
        })
    }

    /// Target and primary, with the configs the target references.
    async fn read_workloads(&self, cx: &Context<'_>, fresh: bool) -> Result<Cluster, Error> {
        let (t, p) = (workloads::target(cx), workloads::primary(cx));
        let cached = self
            .first_read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let mut cluster = match cached {
            Some(c) if !fresh => c,
            _ => {
                let mut c = Cluster::new();
                apply::read(
                    &self.client,
                    &[Read::Named(t.clone()), Read::Named(p)],
                    &mut c,
                )
                .await?;
                c
            }
        };
        if self.settings.workloads.config_tracking
            && let Some(raw) = cluster.raw(t.kind, &t.namespace, &t.name)
            && let Ok(template) = serde_json::from_value(raw["spec"]["template"].clone())
        {
            let reads: Vec<Read> = configs::reads(&self.ns, &template)
                .into_iter()
                .map(Read::Named)
                .collect();
            apply::read(&self.client, &reads, &mut cluster).await?;
        }
        Ok(cluster)
    }

    /// Applies the primary's plan (copies of configs, the workload, its autoscaler).
    async fn write_primary(&self, cx: &Context<'_>, cluster: &mut Cluster) -> Result<(), Error> {
        if let Some(hpa) = workloads::autoscaler::reads(cx) {
            apply::read(&self.client, &[Read::Named(hpa)], cluster).await?;
        }
        let plan = workloads::plan_primary(cx, &self.settings.workloads, cluster, None)
            .map_err(plan_err)?;
        for obj in &plan {
            apply::apply(&self.client, obj).await?;
        }
        Ok(())
    }

    /// Keeps what the observation read for this step's routing plan.
    fn keep_routing_read(&self, cluster: Cluster) {
        *self.routing_read.lock().unwrap_or_else(|e| e.into_inner()) = Some(cluster);
    }

    /// What the backend reads, as it is now.
    async fn read_routing(&self, cx: &Context<'_>) -> Result<Cluster, Error> {
        let mut cluster = Cluster::new();
        apply::read(&self.client, &routing_reads(self.backend, cx), &mut cluster).await?;
        Ok(cluster)
    }
}

#[async_trait]
impl Platform for KubeWorld {
    async fn observe(&self) -> Result<Workloads, Error> {
        let Some(cx) = self.cx() else {
            return Ok(Workloads::default());
        };
        let cluster = self.read_workloads(&cx, false).await?;
        let (target, primary) =
            workloads::observe(&cx, &self.settings.workloads, &cluster).map_err(plan_err)?;
        Ok(Workloads { target, primary })
    }

    async fn initialize_primary(&self) -> Result<(), Error> {
        let Some(cx) = self.cx() else {
            return Ok(());
        };
        let mut cluster = self.read_workloads(&cx, true).await?;
        let p = workloads::primary(&cx);
        if cluster.raw(p.kind, &p.namespace, &p.name).is_some() {
            return Ok(());
        }
        self.write_primary(&cx, &mut cluster).await
    }

    async fn promote_primary(&self) -> Result<(), Error> {
        let Some(cx) = self.cx() else {
            return Ok(());
        };
        let mut cluster = self.read_workloads(&cx, true).await?;
        self.write_primary(&cx, &mut cluster).await
    }

    async fn scale_target(&self, scale: Scale) -> Result<(), Error> {
        let Some(cx) = self.cx() else {
            return Ok(());
        };
        let t = workloads::target(&cx);
        let what = format!("scale {t}");
        let patch = match t.kind {
            Kind::DaemonSet => {
                let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &self.ns);
                let Some(d) = api
                    .get_opt(&t.name)
                    .await
                    .map_err(apply::kube_err(what.clone()))?
                else {
                    return Ok(());
                };
                match (scale, daemonset::scaled_to_zero(&d)) {
                    (Scale::Zero, false) => json!({"spec": {"template": {"spec": {
                        "nodeSelector": {daemonset::SCALE_TO_ZERO_LABEL: "true"}}}}}),
                    (Scale::Up, true) => json!({"spec": {"template": {"spec": {
                        "nodeSelector": {daemonset::SCALE_TO_ZERO_LABEL: null}}}}}),
                    _ => return Ok(()),
                }
            }
            _ => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
                let Some(d) = api
                    .get_opt(&t.name)
                    .await
                    .map_err(apply::kube_err(what.clone()))?
                else {
                    return Ok(());
                };
                let current = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                match scale {
                    Scale::Zero if current == 0 => return Ok(()),
                    Scale::Zero => json!({
                        "metadata": {"annotations": {REPLICAS_ANNOTATION: current.to_string()}},
                        "spec": {"replicas": 0},
                    }),
                    Scale::Up if current > 0 => return Ok(()),
                    Scale::Up => json!({"spec": {
                        "replicas": workloads::deployment::saved_replicas(&d)}}),
                }
            }
        };
        // The target is the user's object: only its scale changes (a merge patch, no
        // ownership of the rest).
        Api::<kube::api::DynamicObject>::namespaced_with(
            self.client.clone(),
            &self.ns,
            &t.kind.resource(),
        )
        .patch(&t.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(apply::kube_err(what))?;
        Ok(())
    }

    async fn revert(&self) -> Result<(), Error> {
        let Some(cx) = self.cx() else {
            return Ok(());
        };
        self.scale_target(Scale::Up).await?;
        apply::execute(&self.client, &[Change::Delete(workloads::primary(&cx))]).await
    }
}

#[async_trait]
impl Traffic for KubeWorld {
    async fn observe(&self) -> Result<RouteState, Error> {
        let Some(cx) = self.cx() else {
            return Ok(RouteState::Absent);
        };
        let cluster = self.read_routing(&cx).await?;
        let reports = if self.backend.reads_router_reports() {
            match self.fleet.config_reports().await {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(error = %e, "cannot read the routers' configuration");
                    self.keep_routing_read(cluster);
                    return Ok(RouteState::Converging);
                }
            }
        } else {
            None
        };
        let state = self
            .backend
            .observe(&cx, &cluster, reports.as_deref().map(|r| r.as_slice()))
            .map_err(plan_err);
        self.keep_routing_read(cluster);
        state
    }

    async fn apply(&self, intent: &RoutingIntent) -> Result<(), Error> {
        let Some(cx) = self.cx() else {
            warn!("neither the target nor its primary exists: routing is left as it is");
            return Ok(());
        };
        // What the observation of this step read: nothing in between writes routing objects.
        let observed = self
            .routing_read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let cluster = match observed {
            Some(c) => c,
            None => self.read_routing(&cx).await?,
        };
        let plan = plan_routing(self.backend, &cx, intent, &cluster).map_err(plan_err)?;
        let mut changed = false;
        for obj in &plan {
            changed |= apply::apply_planned(&self.client, obj, &cluster, &self.versions).await?;
        }
        if changed {
            // The routers' answers from before this change no longer tell whether they serve it.
            self.fleet.forget_reports();
        }
        Ok(())
    }

    async fn revert(&self) -> Result<(), Error> {
        let Some(cx) = self.cx() else {
            return Ok(());
        };
        let cluster = self.read_routing(&cx).await?;
        let changes = self.backend.revert(&cx, &cluster).map_err(plan_err)?;
        apply::execute(&self.client, &changes).await
    }
}

#[async_trait]
impl StatusStore for KubeWorld {
    async fn persist(&self, before: &CanaryStatus, after: &CanaryStatus) -> Result<bool, Error> {
        let mut status = after.clone();
        status.observed_generation = self.canary.metadata.generation;
        // A valid spec clears a previous InvalidSpec stall.
        if let Some(conds) = status.conditions.as_mut() {
            conds.retain(|c| c.reason != "InvalidSpec");
        }
        if let Some(message) = &self.outage {
            let now = siskin_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::now(),
            );
            let conds = status.conditions.get_or_insert_with(Vec::new);
            conds.retain(|c| c.r#type != outage::CONDITION);
            conds.push(siskin_api::status::CanaryCondition {
                r#type: outage::CONDITION.into(),
                status: "True".into(),
                reason: outage::RECOVERED.into(),
                message: Some(message.clone()),
                last_transition_time: Some(now.clone()),
                last_update_time: Some(now),
            });
        }
        if status == *before && self.canary.status.is_some() {
            return Ok(false);
        }
        let version = status::write(&self.client, &self.canary, self.group, &status).await?;
        self.versions
            .saw_canary(&status::version_key(&self.canary, self.group), version);
        Ok(true)
    }
}

#[async_trait]
impl Events for KubeWorld {
    async fn record(&self, e: &Event) {
        status::publish(
            &self.recorder,
            &self.canary,
            self.group,
            e.kind == EventType::Warning,
            e.reason,
            &e.message,
        )
        .await;
    }
}
