//! A kubelet for one namespace: every Deployment with replicas (and every DaemonSet, on one
//! node, unless a node selector keeps it off every node) runs as one local process of
//! the sample app (version from the image tag, faults from the container's environment), its
//! status is written as the controller-manager would, and every Service selecting its pods gets
//! an EndpointSlice pointing at that process.
//!
//! Environment of the first container read here: `ERROR_RATE` (0..1), `LATENCY_MS`, and
//! `ROLLOUT` = `NotReady` | `DeadlineExceeded` to hold a rollout back.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{PodTemplateSpec, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

use crate::{
    Result, kube_err,
    localnode::{LocalProcess, Rollout, local_endpoint, set_daemonset, set_deployment},
};

struct Pod {
    template: String,
    process: LocalProcess,
}

/// How long a replaced or removed process keeps serving, as a terminating pod does while its
/// endpoint is withdrawn and the proxies in front of it follow (Kubernetes' grace period).
const TERMINATION_GRACE: Duration = Duration::from_secs(5);

/// Processes replaced or removed, kept running until their grace period is over.
type Terminating = Arc<Mutex<Vec<(Instant, Pod)>>>;

/// The kubelet; stops its processes when dropped.
pub struct Kubelet {
    pods: Arc<Mutex<BTreeMap<String, Pod>>>,
    terminating: Terminating,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut pods) = self.pods.lock() {
            pods.clear();
        }
        if let Ok(mut t) = self.terminating.lock() {
            t.clear();
        }
    }
}

fn env_of(t: &PodTemplateSpec, name: &str) -> Option<String> {
    t.spec
        .as_ref()?
        .containers
        .first()?
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn image_tag(t: &PodTemplateSpec) -> String {
    t.spec
        .as_ref()
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .and_then(|i| i.rsplit_once(':').map(|(_, t)| t.to_string()))
        .unwrap_or_else(|| "latest".into())
}

impl Kubelet {
    /// Starts playing kubelet for `namespace`, running `sample_app` (`siskin`, whose
    /// `sample-app` subcommand serves the sample app).
    pub fn start(client: Client, namespace: &str, sample_app: PathBuf) -> Kubelet {
        let pods: Arc<Mutex<BTreeMap<String, Pod>>> = Arc::default();
        let terminating: Terminating = Arc::default();
        let ns = namespace.to_string();
        let task = tokio::spawn({
            let pods = pods.clone();
            let terminating = terminating.clone();
            async move {
                loop {
                    if let Ok(mut t) = terminating.lock() {
                        t.retain(|(since, _)| since.elapsed() < TERMINATION_GRACE);
                    }
                    if let Err(e) = pass(&client, &ns, &sample_app, &pods, &terminating).await {
                        eprintln!("kubelet {ns}: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        });
        Kubelet {
            pods,
            terminating,
            task,
        }
    }

    /// Port of the process serving Deployment `name`, if it runs.
    pub fn port(&self, name: &str) -> Option<u16> {
        self.pods.lock().ok()?.get(name).map(|p| p.process.port)
    }
}

async fn pass(
    client: &Client,
    ns: &str,
    program: &std::path::Path,
    pods: &Arc<Mutex<BTreeMap<String, Pod>>>,
    terminating: &Terminating,
) -> Result<()> {
    let terminate = |old: Option<Pod>| {
        if let (Some(old), Ok(mut t)) = (old, terminating.lock()) {
            t.push((Instant::now(), old));
        }
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let list = deployments
        .list(&ListParams::default())
        .await
        .map_err(kube_err("list deployments"))?;
    let ds_list = daemonsets
        .list(&ListParams::default())
        .await
        .map_err(kube_err("list daemonsets"))?;
    // (kind, name, template, replicas, generation and status summary)
    let mut workloads: Vec<(bool, String, PodTemplateSpec, i32)> = Vec::new();
    for d in &list.items {
        if let Some(spec) = &d.spec {
            workloads.push((
                false,
                d.name_any(),
                spec.template.clone(),
                spec.replicas.unwrap_or(1),
            ));
        }
    }
    for d in &ds_list.items {
        if let Some(spec) = &d.spec {
            let off = spec
                .template
                .spec
                .as_ref()
                .and_then(|p| p.node_selector.as_ref())
                .is_some_and(|n| !n.is_empty());
            workloads.push((true, d.name_any(), spec.template.clone(), i32::from(!off)));
        }
    }
    let mut running: BTreeMap<String, (BTreeMap<String, String>, u16)> = BTreeMap::new();
    for (is_ds, name, tmpl, replicas) in &workloads {
        let (name, replicas) = (name.clone(), *replicas);
        let template = serde_json::to_string(tmpl).unwrap_or_default();
        let rollout = match env_of(tmpl, "ROLLOUT").as_deref() {
            Some("NotReady") => Rollout::NotReady,
            Some("DeadlineExceeded") => Rollout::DeadlineExceeded,
            _ => Rollout::Ready,
        };
        if replicas == 0 || rollout != Rollout::Ready {
            let old = pods.lock().ok().and_then(|mut p| p.remove(&name));
            terminate(old);
        } else {
            let current = pods
                .lock()
                .ok()
                .and_then(|p| p.get(&name).map(|x| x.template.clone()));
            if current.as_deref() != Some(template.as_str()) {
                let port = crate::free_port();
                let args = vec![
                    "sample-app".to_string(),
                    "--listen".into(),
                    format!("127.0.0.1:{port}"),
                    "--name".into(),
                    name.clone(),
                    "--app-version".into(),
                    image_tag(tmpl),
                    "--error-rate".into(),
                    env_of(tmpl, "ERROR_RATE").unwrap_or_else(|| "0".into()),
                    "--latency-ms".into(),
                    env_of(tmpl, "LATENCY_MS").unwrap_or_else(|| "0".into()),
                ];
                let program = program.to_path_buf();
                let process = tokio::task::spawn_blocking(move || {
                    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                    LocalProcess::spawn(&program.display().to_string(), &refs, port)
                })
                .await
                .map_err(|e| crate::Error::Setup(e.to_string()))??;
                let old = pods.lock().ok().and_then(|mut p| {
                    p.insert(
                        name.clone(),
                        Pod {
                            template: template.clone(),
                            process,
                        },
                    )
                });
                terminate(old);
            }
        }
        let labels = tmpl
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if let Some(port) = pods
            .lock()
            .ok()
            .and_then(|p| p.get(&name).map(|x| x.process.port))
        {
            running.insert(name.clone(), (labels, port));
        }
        // Status as the controller-manager writes it, once per generation and state.
        let want_ready = if rollout == Rollout::Ready {
            replicas
        } else {
            0
        };
        if *is_ds {
            let Some(d) = ds_list.items.iter().find(|d| d.name_any() == name) else {
                continue;
            };
            let st = d.status.clone().unwrap_or_default();
            let stale = st.observed_generation != d.metadata.generation
                || st.number_ready != want_ready
                || st.desired_number_scheduled != replicas;
            if stale {
                set_daemonset(client, ns, &name, replicas, rollout).await?;
            }
        } else {
            let Some(d) = list.items.iter().find(|d| d.name_any() == name) else {
                continue;
            };
            let status = d.status.clone().unwrap_or_default();
            let stale = status.observed_generation != d.metadata.generation
                || status.ready_replicas.unwrap_or(0) != want_ready
                || status.replicas.unwrap_or(0) != replicas
                || (rollout == Rollout::DeadlineExceeded)
                    != status
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
            if stale {
                set_deployment(client, ns, &name, rollout).await?;
            }
        }
    }
    let gone: Vec<String> = pods
        .lock()
        .map(|p| {
            p.keys()
                .filter(|name| !workloads.iter().any(|w| w.1 == **name))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for name in gone {
        let old = pods.lock().ok().and_then(|mut p| p.remove(&name));
        terminate(old);
    }
    // EndpointSlices for every Service with a selector.
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    for svc in services
        .list(&ListParams::default())
        .await
        .map_err(kube_err("list services"))?
        .items
    {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let Some(selector) = spec.selector.clone().filter(|s| !s.is_empty()) else {
            continue;
        };
        let svc_name = svc.name_any();
        let port_name = spec
            .ports
            .iter()
            .flatten()
            .next()
            .and_then(|p| p.name.clone())
            .unwrap_or_default();
        let ports: Vec<u16> = running
            .values()
            .filter(|(labels, _)| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
            .map(|(_, port)| *port)
            .collect();
        let endpoints: Vec<serde_json::Value> = ports
            .iter()
            .enumerate()
            .map(|(i, _)| json!({"addresses": [local_endpoint(&svc_name, i)], "conditions": {"ready": true, "serving": true, "terminating": false}}))
            .collect();
        let slice_name = format!("{svc_name}-local");
        let body = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": slice_name, "namespace": ns, "labels": {
                "kubernetes.io/service-name": svc_name,
                "endpointslice.kubernetes.io/managed-by": "siskin-e2e-local-node"}},
            "addressType": "FQDN",
            "endpoints": endpoints.into_iter().take(1).collect::<Vec<_>>(),
            "ports": [{"name": port_name, "port": ports.first().copied().unwrap_or(1), "protocol": "TCP"}],
        });
        let current = slices
            .get_opt(&slice_name)
            .await
            .map_err(kube_err("get slice"))?;
        let same = current.as_ref().is_some_and(|c| {
            serde_json::to_value(&c.endpoints).ok() == Some(body["endpoints"].clone())
                && serde_json::to_value(&c.ports).ok() == Some(body["ports"].clone())
        });
        if !same {
            slices
                .patch(
                    &slice_name,
                    &PatchParams::apply("siskin-e2e").force(),
                    &Patch::Apply(&body),
                )
                .await
                .map_err(kube_err(format!("publish endpoints of {ns}/{svc_name}")))?;
        }
    }
    Ok(())
}
