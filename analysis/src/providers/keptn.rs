//! Keptn (`metrics.keptn.sh/v1beta1` on the cluster's API server), as Flagger reads it. The
//! query is `keptnmetric/<namespace>/<name>` (the `status.value` of a KeptnMetric) or
//! `analysis/<namespace>/<AnalysisDefinition>[/<timeframe>[/<k=v;k=v>]]` (an Analysis is
//! created, awaited up to 10 s and deleted: 1 when it passed, 0 when it did not).

use std::time::Duration;

use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams},
};
use serde_json::json;

use crate::{MetricsProvider, ProviderError, Query};

/// How long an Analysis may take.
pub const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(10);

/// Keptn on one cluster.
pub struct KeptnProvider {
    client: Client,
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeptnQuery {
    /// A KeptnMetric's value.
    Metric {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// An Analysis of an AnalysisDefinition.
    Analysis {
        /// Namespace.
        namespace: String,
        /// The AnalysisDefinition.
        definition: String,
        /// `timeframe.recent` (default `1m`).
        timeframe: String,
        /// `args`.
        args: std::collections::BTreeMap<String, String>,
    },
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.keptn.sh", "v1beta1", kind),
        plural,
    )
}

/// Parses a query as Flagger does (lower-cased, trimmed).
pub fn parse(query: &str) -> Result<KeptnQuery, ProviderError> {
    let q = query.trim().to_lowercase();
    let parts: Vec<&str> = q.split('/').collect();
    if parts.len() < 3 {
        return Err(ProviderError::BadQuery(format!(
            "{q:?}: write keptnmetric/<namespace>/<name> or analysis/<namespace>/<definition>[/<timeframe>[/<k=v;...>]]"
        )));
    }
    match parts[0] {
        "keptnmetric" | "keptnmetrics" => Ok(KeptnQuery::Metric {
            namespace: parts[1].to_string(),
            name: parts[2].to_string(),
        }),
        "analysis" | "analyses" => Ok(KeptnQuery::Analysis {
            namespace: parts[1].to_string(),
            definition: parts[2].to_string(),
            timeframe: parts
                .get(3)
                .filter(|t| !t.is_empty())
                .unwrap_or(&"1m")
                .to_string(),
            args: parts
                .get(4)
                .map(|a| {
                    a.split(';')
                        .filter_map(|kv| {
                            let (k, v) = kv.split_once('=')?;
                            Some((k.to_string(), v.to_string()))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }),
        other => Err(ProviderError::BadQuery(format!(
            "{other:?} is not keptnmetric or analysis"
        ))),
    }
}

fn kube_err(what: String) -> impl FnOnce(kube::Error) -> ProviderError {
    move |e| match &e {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => ProviderError::Unauthorized {
            status: s.code,
            body: s.message.clone(),
        },
        kube::Error::Api(s) if s.code == 404 => ProviderError::Config(format!("{what}: not found")),
        _ => ProviderError::Unreachable(format!("{what}: {e}")),
    }
}

impl KeptnProvider {
    /// A provider on the cluster `client` talks to.
    pub fn new(client: Client) -> Self {
        KeptnProvider { client }
    }

    async fn metric(&self, namespace: &str, name: &str) -> Result<f64, ProviderError> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            namespace,
            &resource("KeptnMetric", "keptnmetrics"),
        );
        let what = format!("KeptnMetric {namespace}/{name}");
        let m = api.get(name).await.map_err(kube_err(what.clone()))?;
        let value = m.data["status"]["value"]
            .as_str()
            .ok_or(ProviderError::NoValues)?;
        value
            .trim()
            .parse()
            .map_err(|e| ProviderError::Decode(format!("{what} status.value {value:?}: {e}")))
    }

    async fn analysis(
        &self,
        namespace: &str,
        definition: &str,
        timeframe: &str,
        args: &std::collections::BTreeMap<String, String>,
    ) -> Result<f64, ProviderError> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            namespace,
            &resource("Analysis", "analyses"),
        );
        let suffix = format!(
            "{:06x}",
            jiff::Timestamp::now().subsec_nanosecond() & 0xff_ffff
        );
        let name = format!("{definition}-{suffix}");
        let body: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metrics.keptn.sh/v1beta1", "kind": "Analysis",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"analysisDefinition": {"name": definition},
                "timeframe": {"recent": timeframe}, "args": args},
        }))
        .map_err(|e| ProviderError::Config(e.to_string()))?;
        let what = format!("Analysis {namespace}/{name}");
        api.create(&PostParams::default(), &body)
            .await
            .map_err(kube_err(what.clone()))?;
        let started = tokio::time::Instant::now();
        let outcome = loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match api.get(&name).await {
                Ok(a) if a.data["status"]["state"] == "Completed" => {
                    if let Some(pass) = a.data["status"]["pass"].as_bool() {
                        break Ok(if pass { 1.0 } else { 0.0 });
                    }
                }
                Ok(_) => {}
                Err(e) => break Err(kube_err(what.clone())(e)),
            }
            if started.elapsed() >= ANALYSIS_TIMEOUT {
                break Err(ProviderError::Unreachable(format!(
                    "{what} did not complete within {ANALYSIS_TIMEOUT:?}"
                )));
            }
        };
        if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
            tracing::warn!(analysis = %what, error = %e, "cannot delete the Analysis");
        }
        outcome
    }
}

#[async_trait::async_trait]
impl MetricsProvider for KeptnProvider {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        let Query::Text(q) = query else {
            return Err(ProviderError::Config(
                "Keptn answers keptnmetric/... or analysis/...".into(),
            ));
        };
        match parse(q)? {
            KeptnQuery::Metric { namespace, name } => self.metric(&namespace, &name).await,
            KeptnQuery::Analysis {
                namespace,
                definition,
                timeframe,
                args,
            } => {
                self.analysis(&namespace, &definition, &timeframe, &args)
                    .await
            }
        }
    }

    /// Always online, as in Flagger (the API server answers or every call says why).
    async fn health(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_as_flaggers() {
        assert_eq!(
            parse("KeptnMetric/Test/My-Metric\n"),
            Ok(KeptnQuery::Metric {
                namespace: "test".into(),
                name: "my-metric".into()
            })
        );
        assert_eq!(
            parse("analysis/test/def/5m/a=1;b=2;bad"),
            Ok(KeptnQuery::Analysis {
                namespace: "test".into(),
                definition: "def".into(),
                timeframe: "5m".into(),
                args: [("a".into(), "1".into()), ("b".into(), "2".into())].into(),
            })
        );
        assert!(parse("keptnmetric/x").is_err());
        assert!(parse("other/x/y").is_err());
    }
}
