//! What the analysis reads from the API server: the MetricTemplates a Canary's metrics name
//! (read once per step) and the Secrets they name for credentials (read when a query runs).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use siskin_analysis::{ProviderError, Secrets};
use siskin_api::{ApiGroup, MetricTemplate};
use siskin_driver::Error;

use super::apply::kube_err;
use crate::analysis::Templates;

/// The templates named in `refs`, in `group`; a missing one is left out (the metric then says
/// which is missing).
pub async fn read(
    client: &Client,
    group: ApiGroup,
    refs: &BTreeSet<(String, String)>,
) -> Result<Templates, Error> {
    let mut out = Templates::new();
    for (ns, name) in refs {
        let api: Api<MetricTemplate> = Api::namespaced_with(client.clone(), ns, &group);
        if let Some(t) = api
            .get_opt(name)
            .await
            .map_err(kube_err(format!("get MetricTemplate {ns}/{name}")))?
        {
            out.insert((ns.clone(), name.clone()), t.spec);
        }
    }
    Ok(out)
}

/// Secrets read from the API server.
pub struct KubeSecrets {
    /// The client (the operator's ServiceAccount may read Secrets).
    pub client: Client,
}

#[async_trait]
impl Secrets for KubeSecrets {
    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, ProviderError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(Some(s)) => Ok(s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()),
            Ok(None) => Err(ProviderError::Config(format!(
                "Secret {namespace}/{name} does not exist; create it or fix secretRef"
            ))),
            Err(e) => Err(ProviderError::Unreachable(format!(
                "get Secret {namespace}/{name}: {e}"
            ))),
        }
    }
}
