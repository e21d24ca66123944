//! Manual gates, keyed per canary and per gate type, persisted on every change so a restart
//! loses none.
//!
//! A gate key is (namespace, name, gate) where gate is `shared` (what a type-less check reads:
//! Flagger's operator and curl send no type) or a hook type (what Siskin's operator sends).
//! Rollback gates are a separate set, one per canary. The state is the set of open gates; it
//! is written whole, as JSON, to a file (temp file + rename) or to one key of a ConfigMap.

use std::{collections::BTreeSet, path::PathBuf, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{cli::GatesStore, metrics::Metrics, payload::CONFIRM_TYPES};

mod configmap;
mod file;

/// The gate a check without a hook type reads.
pub const SHARED: &str = "shared";

/// What failed while loading or saving gates.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The gates file could not be read or written.
    #[error("gates file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The stored state is not valid JSON of the expected shape.
    #[error("stored gates in {location} are not valid: {source}")]
    Decode {
        /// Where they were read from.
        location: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A Kubernetes API call on the gates ConfigMap failed.
    #[error("gates ConfigMap {namespace}/{name}: {what}: {source}")]
    Kube {
        /// The ConfigMap's namespace.
        namespace: String,
        /// The ConfigMap's name.
        name: String,
        /// The call.
        what: &'static str,
        /// The cause.
        #[source]
        source: Box<kube::Error>,
    },
    /// The ConfigMap kept changing underneath every write.
    #[error("gates ConfigMap {namespace}/{name}: changed by someone else on every try")]
    Conflict {
        /// The ConfigMap's namespace.
        namespace: String,
        /// The ConfigMap's name.
        name: String,
    },
    /// No Kubernetes client could be built for `--gates-configmap`.
    #[error("--gates-configmap needs in-cluster config or KUBECONFIG: {0}")]
    Client(#[source] Box<kube::Error>),
    /// The state could not be encoded.
    #[error("cannot encode the gates: {0}")]
    Encode(#[source] serde_json::Error),
}

/// One canary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CanaryKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// One gate of one canary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GateKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `shared` or a hook type.
    pub gate: String,
}

/// Every open gate: what is persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateState {
    /// Format version.
    #[serde(default = "version")]
    pub version: u32,
    /// Open manual gates.
    #[serde(default)]
    pub gates: BTreeSet<GateKey>,
    /// Open rollback gates.
    #[serde(default)]
    pub rollbacks: BTreeSet<CanaryKey>,
}

fn version() -> u32 {
    1
}

impl Default for GateState {
    /// No gate open, in the current format version (what a stored state without `version`
    /// reads as, too).
    fn default() -> Self {
        GateState {
            version: version(),
            gates: BTreeSet::new(),
            rollbacks: BTreeSet::new(),
        }
    }
}

/// Where the state is kept.
pub enum Backend {
    /// Nowhere: lost on restart.
    Memory,
    /// A JSON file.
    File(file::FileStore),
    /// One key of a ConfigMap.
    ConfigMap(Box<configmap::ConfigMapStore>),
}

/// The gates, behind one lock that is held while a change is persisted, so writes are ordered
/// and memory never runs ahead of the store.
pub struct Gates {
    inner: tokio::sync::Mutex<Inner>,
    location: String,
    metrics: Arc<Metrics>,
}

struct Inner {
    state: GateState,
    backend: Backend,
}

/// A change to the gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Open.
    Open,
    /// Close.
    Close,
}

// === impl Backend ===

impl Backend {
    /// The store `--gates-file` / `--gates-configmap` name, and the state it holds.
    pub async fn open(store: &GatesStore) -> Result<(Backend, GateState), StoreError> {
        match store {
            GatesStore::Memory => Ok((Backend::Memory, GateState::default())),
            GatesStore::File(path) => Backend::file(path.clone()).await,
            GatesStore::ConfigMap { namespace, name } => {
                let client = kube::Client::try_default()
                    .await
                    .map_err(|e| StoreError::Client(Box::new(e)))?;
                Backend::configmap(client, namespace, name).await
            }
        }
    }

    /// A gates file (read now; an absent file is an empty state).
    pub async fn file(path: PathBuf) -> Result<(Backend, GateState), StoreError> {
        let store = file::FileStore::new(path);
        let state = store.load().await?;
        Ok((Backend::File(store), state))
    }

    /// A ConfigMap `namespace/name`, created when missing.
    pub async fn configmap(
        client: kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<(Backend, GateState), StoreError> {
        let (store, state) = configmap::ConfigMapStore::open(client, namespace, name).await?;
        Ok((Backend::ConfigMap(Box::new(store)), state))
    }

    /// Where the gates live, for logs.
    pub fn describe(&self) -> String {
        match self {
            Backend::Memory => "memory (lost on restart)".to_string(),
            Backend::File(f) => format!("file {}", f.path().display()),
            Backend::ConfigMap(c) => format!("ConfigMap {}", c.describe()),
        }
    }

    async fn save(&mut self, state: &GateState) -> Result<(), StoreError> {
        match self {
            Backend::Memory => Ok(()),
            Backend::File(f) => f.save(state).await,
            Backend::ConfigMap(c) => c.save(state).await,
        }
    }
}

// === impl Gates ===

impl Gates {
    /// Gates starting from `state`, kept in `backend`.
    pub fn new(backend: Backend, state: GateState, metrics: Arc<Metrics>) -> Gates {
        for g in &state.gates {
            metrics.gate(&g.namespace, &g.name, &g.gate, true);
        }
        for r in &state.rollbacks {
            metrics.gate(&r.namespace, &r.name, "rollback", true);
        }
        Gates {
            location: backend.describe(),
            inner: tokio::sync::Mutex::new(Inner { state, backend }),
            metrics,
        }
    }

    /// Where the gates live, for logs.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether a manual gate is open.
    pub async fn is_open(&self, key: &GateKey) -> bool {
        self.inner.lock().await.state.gates.contains(key)
    }

    /// Whether a canary's rollback gate is open.
    pub async fn is_rollback_open(&self, key: &CanaryKey) -> bool {
        self.inner.lock().await.state.rollbacks.contains(key)
    }

    /// Opens or closes manual gates; persisted before it returns.
    pub async fn set(&self, keys: &[GateKey], change: Change) -> Result<(), StoreError> {
        self.update(|s| {
            for k in keys {
                match change {
                    Change::Open => s.gates.insert(k.clone()),
                    Change::Close => s.gates.remove(k),
                };
            }
        })
        .await?;
        for k in keys {
            self.metrics
                .gate(&k.namespace, &k.name, &k.gate, change == Change::Open);
        }
        Ok(())
    }

    /// Opens or closes a rollback gate; persisted before it returns.
    pub async fn set_rollback(&self, key: &CanaryKey, change: Change) -> Result<(), StoreError> {
        self.update(|s| {
            match change {
                Change::Open => s.rollbacks.insert(key.clone()),
                Change::Close => s.rollbacks.remove(key),
            };
        })
        .await?;
        self.metrics.gate(
            &key.namespace,
            &key.name,
            "rollback",
            change == Change::Open,
        );
        Ok(())
    }

    async fn update(&self, f: impl FnOnce(&mut GateState)) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().await;
        let mut next = inner.state.clone();
        f(&mut next);
        if next == inner.state {
            return Ok(());
        }
        inner.backend.save(&next).await?;
        inner.state = next;
        Ok(())
    }
}

/// The gate a check reads: the hook type's own, or the shared one when no type was sent.
pub fn check_key(namespace: &str, name: &str, hook_type: Option<&str>) -> GateKey {
    GateKey {
        namespace: namespace.to_string(),
        name: name.to_string(),
        gate: hook_type.unwrap_or(SHARED).to_string(),
    }
}

/// The gates an open or close sets: the hook type's own, or (no type: Flagger's curl workflow)
/// the shared gate and every confirm-* gate of the canary.
pub fn change_keys(namespace: &str, name: &str, hook_type: Option<&str>) -> Vec<GateKey> {
    let gates: Vec<&str> = match hook_type {
        Some(t) => vec![t],
        None => std::iter::once(SHARED)
            .chain(CONFIRM_TYPES.iter().copied())
            .collect(),
    };
    gates
        .into_iter()
        .map(|g| check_key(namespace, name, Some(g)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates() -> Gates {
        Gates::new(
            Backend::Memory,
            GateState::default(),
            Arc::new(Metrics::new()),
        )
    }

    #[tokio::test]
    async fn typed_gates_are_separate_and_untyped_opens_all() {
        let g = gates();
        let promo = check_key("test", "podinfo", Some("confirm-promotion"));
        let rollout = check_key("test", "podinfo", Some("confirm-rollout"));
        let shared = check_key("test", "podinfo", None);
        g.set(
            &change_keys("test", "podinfo", Some("confirm-promotion")),
            Change::Open,
        )
        .await
        .unwrap();
        assert!(g.is_open(&promo).await);
        assert!(!g.is_open(&rollout).await);
        assert!(!g.is_open(&shared).await);
        g.set(&change_keys("test", "podinfo", None), Change::Open)
            .await
            .unwrap();
        assert!(g.is_open(&rollout).await && g.is_open(&shared).await);
        assert!(!g.is_open(&check_key("test", "other", None)).await);
        g.set(&change_keys("test", "podinfo", None), Change::Close)
            .await
            .unwrap();
        assert!(!g.is_open(&promo).await && !g.is_open(&shared).await);
    }

    #[test]
    fn an_empty_state_has_the_current_version() {
        assert_eq!(GateState::default().version, 1);
        let read: GateState = serde_json::from_str("{}").unwrap();
        assert_eq!(read, GateState::default());
    }

    #[tokio::test]
    async fn rollback_gates_are_their_own() {
        let g = gates();
        let c = CanaryKey {
            namespace: "test".into(),
            name: "podinfo".into(),
        };
        g.set_rollback(&c, Change::Open).await.unwrap();
        assert!(g.is_rollback_open(&c).await);
        assert!(
            !g.is_open(&check_key("test", "podinfo", Some("rollback")))
                .await
        );
        g.set_rollback(&c, Change::Close).await.unwrap();
        assert!(!g.is_rollback_open(&c).await);
    }
}
