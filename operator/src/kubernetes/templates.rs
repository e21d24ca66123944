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

/// AlertProviders (and their Secrets) read from the API server when an alert is sent.
pub struct KubeAlertProviders {
    /// The client.
    pub client: Client,
    /// The API group the Canaries are served under.
    pub group: ApiGroup,
}

#[async_trait]
impl crate::alerts::Providers for KubeAlertProviders {
    async fn resolve(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<siskin_webhooks::notify::Destination, String> {
        let api: Api<siskin_api::AlertProvider> =
            Api::namespaced_with(self.client.clone(), namespace, &self.group);
        let provider = api
            .get_opt(name)
            .await
            .map_err(|e| format!("get AlertProvider {namespace}/{name}: {e}"))?
            .ok_or_else(|| {
                format!(
                    "AlertProvider {namespace}/{name} does not exist; create it or fix providerRef"
                )
            })?;
        let secret = match &provider.spec.secret_ref {
            Some(r) => {
                let data = KubeSecrets {
                    client: self.client.clone(),
                }
                .secret(namespace, &r.name)
                .await
                .map_err(|e| format!("AlertProvider {namespace}/{name}: {e}"))?;
                Some(
                    data.into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v).trim().to_string()))
                        .collect::<BTreeMap<_, _>>(),
                )
            }
            None => None,
        };
        crate::alerts::destination(&provider.spec, secret.as_ref())
            .map_err(|e| format!("AlertProvider {namespace}/{name}: {e}"))
    }
}
