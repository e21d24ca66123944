//! A "local node": there is no kubelet or controller-manager in the test control plane, so
//! this module writes the workload status they would write, and runs real local processes for
//! workloads with `EndpointSlice`s pointing at them on 127.0.0.1.

use std::{
    net::{Ipv4Addr, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};

use crate::{Error, Result, io, kube_err};

/// The rollout state to report for a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Every replica updated and available.
    Ready,
    /// Updated but not available yet.
    NotReady,
    /// The controller gave up: `Progressing=False`, reason `ProgressDeadlineExceeded`.
    DeadlineExceeded,
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Writes the status a controller-manager would write for a Deployment's current generation.
pub async fn set_deployment(
    client: &Client,
    namespace: &str,
    name: &str,
    state: Rollout,
) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let d = api
        .get(name)
        .await
        .map_err(kube_err(format!("get deployment {namespace}/{name}")))?;
    let generation = d.metadata.generation.unwrap_or(1);
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let t = now();
    let (available, progressing) = match state {
        Rollout::Ready => (
            json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.", "lastUpdateTime": t, "lastTransitionTime": t}),
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{name}\" has successfully progressed."), "lastUpdateTime": t, "lastTransitionTime": t}),
        ),
        Rollout::NotReady => (
            json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability.", "lastUpdateTime": t, "lastTransitionTime": t}),
            json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": format!("ReplicaSet \"{name}\" is progressing."), "lastUpdateTime": t, "lastTransitionTime": t}),
        ),
        Rollout::DeadlineExceeded => (
            json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability.", "lastUpdateTime": t, "lastTransitionTime": t}),
            json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": format!("ReplicaSet \"{name}\" has timed out progressing."), "lastUpdateTime": t, "lastTransitionTime": t}),
        ),
    };
    let ready = if state == Rollout::Ready { replicas } else { 0 };
    let status = json!({
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": replicas - ready,
        "conditions": [available, progressing],
    });
    patch_status(&api, name, status).await
}

/// Writes the status a DaemonSet controller would write (one node per "desired" pod).
pub async fn set_daemonset(
    client: &Client,
    namespace: &str,
    name: &str,
    nodes: i32,
    state: Rollout,
) -> Result<()> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let d = api
        .get(name)
        .await
        .map_err(kube_err(format!("get daemonset {namespace}/{name}")))?;
    let generation = d.metadata.generation.unwrap_or(1);
    let ready = if state == Rollout::Ready { nodes } else { 0 };
    let status = json!({
        "observedGeneration": generation,
        "desiredNumberScheduled": nodes,
        "currentNumberScheduled": nodes,
        "updatedNumberScheduled": nodes,
        "numberMisscheduled": 0,
        "numberReady": ready,
        "numberAvailable": ready,
        "numberUnavailable": nodes - ready,
    });
    patch_status(&api, name, status).await
}

async fn patch_status<K>(api: &Api<K>, name: &str, status: Value) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(kube_err(format!("patch status of {name}")))?;
    Ok(())
}

/// A real local process serving a workload on 127.0.0.1, killed on drop.
pub struct LocalProcess {
    /// The port it listens on.
    pub port: u16,
    child: Child,
}

// === impl LocalProcess ===

impl LocalProcess {
    /// Starts `program args…`, which must listen on 127.0.0.1:`port`, and waits until it accepts
    /// connections (15 s at most).
    pub fn spawn(program: &str, args: &[&str], port: u16) -> Result<LocalProcess> {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io(format!("start {program}")))?;
        let mut p = LocalProcess { port, child };
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(Error::Setup(format!("{program} exited early: {status}")));
            }
            if started.elapsed() > Duration::from_secs(15) {
                let _ = p.child.kill();
                return Err(Error::Timeout {
                    what: format!("{program} listening on 127.0.0.1:{port}"),
                    secs: 15,
                    saw: "connection refused".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        p.port = port;
        Ok(p)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The name a local process is published under. The API server refuses loopback IPs in
/// EndpointSlices ("may not be in the loopback range") and FQDNs of one label, so slices use
/// `addressType: FQDN` with a name under `.localhost`, which RFC 6761 reserves for loopback:
/// Siskin's router (and [`resolve_local`]) map every `*.localhost` name to 127.0.0.1.
pub fn local_endpoint(service: &str, index: usize) -> String {
    format!("{service}-{index}.localhost")
}

/// The loopback address of a `*.localhost` name (RFC 6761 §6.3), or None for other names.
pub fn resolve_local(host: &str) -> Option<Ipv4Addr> {
    let host = host.trim_end_matches('.');
    (host == "localhost" || host.ends_with(".localhost")).then_some(Ipv4Addr::LOCALHOST)
}

/// Publishes `EndpointSlice`s for Service `service`: one ready endpoint per local process
/// (each on its own port, so one slice each), as the endpoint-slice controller would for
/// running pods.
pub async fn publish_endpoints(
    client: &Client,
    namespace: &str,
    service: &str,
    port_name: &str,
    ports: &[u16],
) -> Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let name = format!("{service}-local");
    let endpoints: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, _)| {
            json!({
                "addresses": [local_endpoint(service, i)],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "targetRef": {"kind": "Pod", "name": format!("{service}-local-{i}"), "namespace": namespace},
            })
        })
        .collect();
    // One slice can carry one port list; with several processes each needs its own port, so
    // publish one slice per process.
    for (i, port) in ports.iter().enumerate() {
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{name}-{i}"),
                "namespace": namespace,
                "labels": {
                    "kubernetes.io/service-name": service,
                    "endpointslice.kubernetes.io/managed-by": "siskin-e2e-local-node",
                },
            },
            "addressType": "FQDN",
            "endpoints": [endpoints[i]],
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        });
        api.patch(
            &format!("{name}-{i}"),
            &PatchParams::apply("siskin-e2e").force(),
            &Patch::Apply(&slice),
        )
        .await
        .map_err(kube_err(format!(
            "publish endpoints of {namespace}/{service}"
        )))?;
    }
    Ok(())
}
