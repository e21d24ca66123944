//! Gates in one data key of a ConfigMap, written through the API server. The whole state is
//! one JSON value; every write replaces the ConfigMap at the resourceVersion last seen.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};

use super::{GateState, StoreError};

/// The data key holding the state.
pub const DATA_KEY: &str = "gates.json";

/// A gates ConfigMap.
pub struct ConfigMapStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    /// The resourceVersion of the last read or write.
    resource_version: Option<String>,
}

// === impl ConfigMapStore ===

impl ConfigMapStore {
    fn err(&self, what: &'static str) -> impl FnOnce(kube::Error) -> StoreError + '_ {
        move |source| StoreError::Kube {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            what,
            source: Box::new(source),
        }
    }

    /// Reads the ConfigMap, creating it (empty) when it does not exist.
    pub async fn open(
        client: kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<(ConfigMapStore, GateState), StoreError> {
        let mut store = ConfigMapStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            resource_version: None,
        };
        let existing = store.api.get_opt(name).await.map_err(store.err("get"))?;
        let state = match existing {
            Some(cm) => store.decode(&cm)?,
            None => {
                let state = GateState::default();
                let cm = store.object(&state)?;
                let created = store
                    .api
                    .create(&PostParams::default(), &cm)
                    .await
                    .map_err(store.err("create"))?;
                store.resource_version = created.metadata.resource_version;
                state
            }
        };
        Ok((store, state))
    }

    /// `namespace/name`.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn decode(&mut self, cm: &ConfigMap) -> Result<GateState, StoreError> {
        self.resource_version = cm.metadata.resource_version.clone();
        match cm.data.as_ref().and_then(|d| d.get(DATA_KEY)) {
            None => Ok(GateState::default()),
            Some(text) => serde_json::from_str(text).map_err(|source| StoreError::Decode {
                location: format!("ConfigMap {} key {DATA_KEY}", self.describe()),
                source,
            }),
        }
    }

    fn object(&self, state: &GateState) -> Result<ConfigMap, StoreError> {
        let text = serde_json::to_string_pretty(state).map_err(StoreError::Encode)?;
        Ok(ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: self.resource_version.clone(),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "siskin-loadtester".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(DATA_KEY.to_string(), text)])),
            ..ConfigMap::default()
        })
    }

    /// Replaces the ConfigMap's state. On a conflict (someone else wrote it) the latest
    /// resourceVersion is read and the write retried once: this process's state wins, as it is
    /// the only writer the manifests run.
    pub async fn save(&mut self, state: &GateState) -> Result<(), StoreError> {
        for attempt in 0..2 {
            let cm = self.object(state)?;
            match self
                .api
                .replace(&self.name, &PostParams::default(), &cm)
                .await
            {
                Ok(saved) => {
                    self.resource_version = saved.metadata.resource_version;
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if attempt == 0 && (s.code == 409 || s.code == 404) => {
                    tracing::warn!(configmap = %self.describe(), code = s.code, "gates ConfigMap changed underneath; overwriting");
                    match self
                        .api
                        .get_opt(&self.name)
                        .await
                        .map_err(self.err("get"))?
                    {
                        Some(current) => self.resource_version = current.metadata.resource_version,
                        None => {
                            self.resource_version = None;
                            let cm = self.object(state)?;
                            let created = self
                                .api
                                .create(&PostParams::default(), &cm)
                                .await
                                .map_err(self.err("create"))?;
                            self.resource_version = created.metadata.resource_version;
                            return Ok(());
                        }
                    }
                }
                Err(e) => return Err(self.err("update")(e)),
            }
        }
        Err(StoreError::Conflict {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        })
    }
}
