//! Fast failure on Kubernetes: while a canary takes traffic, its critical checks are read from
//! the router fleet's live window between steps (the driver's [`watch_critical`], as `siskin
//! run` does); a failure is handed to the Canary's next reconcile, which is triggered at once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use siskin_analysis::{Analyzer, NoSecrets, resolve::Context};
use siskin_api::{Canary, CanaryStatus, Provider, status::CheckStatus};
use siskin_driver::{SystemClock, checks, watch_critical};
use tokio::{sync::mpsc, task::AbortHandle};

use super::fleet::RouterFleet;

/// How often a watched canary's live window is read.
pub const POLL: Duration = Duration::from_millis(500);

/// The watchers of every exposed canary with critical metrics.
pub struct CriticalWatch {
    fleet: RouterFleet,
    trigger: mpsc::UnboundedSender<ObjectRef<Canary>>,
    failures: Mutex<HashMap<ObjectRef<Canary>, CheckStatus>>,
    watchers: Mutex<HashMap<ObjectRef<Canary>, (String, AbortHandle)>>,
}

// === impl CriticalWatch ===

impl CriticalWatch {
    /// Watchers reading `fleet`; failures are announced on `trigger`.
    pub fn new(fleet: RouterFleet, trigger: mpsc::UnboundedSender<ObjectRef<Canary>>) -> Self {
        CriticalWatch {
            fleet,
            trigger,
            failures: Mutex::new(HashMap::new()),
            watchers: Mutex::new(HashMap::new()),
        }
    }

    /// The live failure found for `key` since its last step, if any.
    pub fn take(&self, key: &ObjectRef<Canary>) -> Option<CheckStatus> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
    }

    /// Keeps a failure for the next step (the step that took it did not complete).
    pub fn restore(&self, key: ObjectRef<Canary>, failure: CheckStatus) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, failure);
    }

    /// After a step: watches `key` while its canary takes traffic and has critical metrics,
    /// with the status the step wrote; stops watching otherwise.
    pub fn follow(
        self: &Arc<Self>,
        key: ObjectRef<Canary>,
        canary: &Canary,
        status: &CanaryStatus,
        provider: Provider,
    ) {
        let spec = &canary.spec;
        let ns = canary.namespace().unwrap_or_default();
        let route = format!("{ns}/{}", spec.apex_name());
        let vars = crate::analysis::vars(canary, &ns);
        let templates = crate::analysis::Templates::new();
        let live = Analyzer {
            cx: Context {
                vars: vars.clone(),
                provider,
                metrics_server: None,
                route: &route,
                templates: &templates,
                checks: spec.analysis().checks_per_run(),
            },
            router: &self.fleet,
            secrets: &NoSecrets,
            kube: None,
        };
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if !checks::exposed(status) || !checks::has_critical(&spec.analysis(), &live) {
            if let Some((_, h)) = watchers.remove(&key) {
                h.abort();
            }
            return;
        }
        // The same run at the same weight: the watcher already reads the right window.
        let identity = format!(
            "{}/{}/{}/{:?}/{:?}",
            status.phase,
            status.canary_weight,
            status.last_applied_spec.as_deref().unwrap_or_default(),
            status.mirrored,
            spec.analysis().metrics
        );
        if let Some((id, h)) = watchers.get(&key)
            && *id == identity
            && !h.is_finished()
        {
            return;
        }
        let (spec, status, me, k) = (spec.clone(), status.clone(), self.clone(), key.clone());
        let task = tokio::spawn(async move {
            let templates = crate::analysis::Templates::new();
            // Only the router's live statistics are watched: no templates, no Secrets.
            let live = Analyzer {
                cx: Context {
                    vars,
                    provider,
                    metrics_server: None,
                    route: &route,
                    templates: &templates,
                    checks: spec.analysis().checks_per_run(),
                },
                router: &me.fleet,
                secrets: &NoSecrets,
                kube: None,
            };
            let failed = watch_critical(
                &spec,
                &status,
                &live,
                &SystemClock,
                POLL,
                Duration::from_secs(365 * 24 * 3600),
            )
            .await;
            if let Some(f) = failed {
                me.restore(k.clone(), f);
                // The controller runs the Canary's step now.
                if me.trigger.send(k).is_err() {
                    tracing::debug!(
                        "the controller is stopping; the live failure waits for the next start"
                    );
                }
            }
        });
        if let Some((_, old)) = watchers.insert(key, (identity, task.abort_handle())) {
            old.abort();
        }
    }

    /// Stops watching `key` (the Canary is gone).
    pub fn forget(&self, key: &ObjectRef<Canary>) {
        if let Some((_, h)) = self
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
        {
            h.abort();
        }
        self.take(key);
    }
}
