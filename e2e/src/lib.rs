//! Siskin's test harness: a real `kube-apiserver` backed by a real `etcd` on loopback, with our
//! CRDs and the mesh CRDs from `shared/crds/` installed, plus a "local node" that plays kubelet
//! and controller-manager for the workloads a test creates.
//!
//! One control plane per test binary ([`ControlPlane::shared`]); each test builds its own
//! `kube::Client` ([`ControlPlane::client`]) because a client is tied to the runtime that made it.
//! Everything started is stopped by PID, also when a test panics or the binary is killed: a
//! watchdog process outlives the test binary by at most a second.

mod certs;
mod controlplane;
mod crds;
pub mod kubelet;
pub mod localnode;
pub mod ports;
pub mod prometheus;

use std::path::PathBuf;

pub use controlplane::{ControlPlane, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT};
pub use ports::free_port;

/// What went wrong while setting up or using the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: Box<kube::Error>,
    },
    /// Something did not happen in time.
    #[error("timed out after {secs}s waiting for {what}; last seen: {saw}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        secs: u64,
        /// The last observation.
        saw: String,
    },
    /// The harness cannot run here (missing binaries, bad input).
    #[error("{0}")]
    Setup(String),
}

/// Harness result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

pub(crate) fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube {
        what,
        source: Box::new(source),
    }
}

/// The repository root (the folder holding `Cargo.toml` of the workspace).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The `shared/` folder beside the repository (`SISKIN_SHARED` overrides).
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("SISKIN_SHARED") {
        Some(d) => PathBuf::from(d),
        None => repo_root().join("../shared"),
    }
}

/// Server-side applies `config/rbac/` as written (ServiceAccount, ClusterRole(Binding),
/// Role(Binding)), as `kubectl apply -k config/rbac` would.
pub async fn apply_rbac(client: &kube::Client) -> Result<()> {
    use k8s_openapi::api::{
        core::v1::ServiceAccount,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    };
    use kube::{
        Api,
        api::{Patch, PatchParams},
    };
    let pp = PatchParams::apply("siskin-test").force();
    for file in [
        "service_account.yaml",
        "role.yaml",
        "role_binding.yaml",
        "user_roles.yaml",
    ] {
        let path = repo_root().join("config/rbac").join(file);
        let text =
            std::fs::read_to_string(&path).map_err(io(format!("read {}", path.display())))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| Error::Setup(format!("{}: {e}", path.display())))?;
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ns = v["metadata"]["namespace"]
                .as_str()
                .unwrap_or(OPERATOR_NAMESPACE)
                .to_string();
            let what = format!("apply {} {name}", v["kind"]);
            let patch = Patch::Apply(&v);
            match v["kind"].as_str().unwrap_or_default() {
                "ServiceAccount" => Api::<ServiceAccount>::namespaced(client.clone(), &ns)
                    .patch(&name, &pp, &patch)
                    .await
                    .map(|_| ()),
                "ClusterRole" => Api::<ClusterRole>::all(client.clone())
                    .patch(&name, &pp, &patch)
                    .await
                    .map(|_| ()),
                "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(client.clone())
                    .patch(&name, &pp, &patch)
                    .await
                    .map(|_| ()),
                "Role" => Api::<Role>::namespaced(client.clone(), &ns)
                    .patch(&name, &pp, &patch)
                    .await
                    .map(|_| ()),
                "RoleBinding" => Api::<RoleBinding>::namespaced(client.clone(), &ns)
                    .patch(&name, &pp, &patch)
                    .await
                    .map(|_| ()),
                other => {
                    return Err(Error::Setup(format!(
                        "unexpected kind {other} in {}",
                        path.display()
                    )));
                }
            }
            .map_err(kube_err(what))?;
        }
    }
    Ok(())
}
