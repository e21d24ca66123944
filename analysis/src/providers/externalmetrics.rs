//! The Kubernetes external metrics API (`external.metrics.k8s.io/v1beta1`), as Flagger reads
//! it: the query is `<namespace>/<metric>[?labelSelector=...]` (namespace default `default`);
//! the value of the first item. Asked through the cluster's API server (with the operator's
//! service account), or, when `spec.provider.address` is set, of that server directly, with the
//! bearer token in the Secret's `token` key if there is one.

use std::collections::BTreeMap;

use kube::Client;
use serde::Deserialize;

use super::http;
use crate::{MetricsProvider, ProviderError, Query};

/// The external metrics API of one cluster.
pub struct ExternalMetricsProvider {
    via: Via,
}

enum Via {
    /// The cluster's API server (which proxies to the registered metrics adapter).
    Cluster(Client),
    /// A server named by `spec.provider.address`.
    Address {
        client: reqwest::Client,
        base: String,
        token: Option<String>,
    },
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    value: String,
}

/// A Kubernetes quantity (`1500m`, `2`, `3k`) as a number.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| {
            !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E')
        })
        .unwrap_or(q.len());
    // An exponent written as `e` would be eaten above only when followed by digits.
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let m = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * m)
}

impl ExternalMetricsProvider {
    /// A provider asking through the cluster `client` talks to.
    pub fn new(client: Client) -> Self {
        ExternalMetricsProvider {
            via: Via::Cluster(client),
        }
    }

    /// A provider asking the server at `address` (bearer token from the Secret's `token`).
    pub fn at(
        address: &str,
        insecure: bool,
        secret: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Result<Self, ProviderError> {
        Ok(ExternalMetricsProvider {
            via: Via::Address {
                client: http::client(insecure)?,
                base: address.trim_end_matches('/').to_string(),
                token: http::optional(secret, "token"),
            },
        })
    }
}

/// The API path of `query` (`<namespace>/<metric>[?labelSelector=...]`).
pub fn path(query: &str) -> Result<String, ProviderError> {
    let q = query.trim();
    let (name, selector) = q.split_once('?').unwrap_or((q, ""));
    let (ns, metric) = match name.split_once('/') {
        Some((ns, m)) if !ns.is_empty() => (ns, m),
        Some((_, m)) => ("default", m),
        None => ("default", name),
    };
    if metric.is_empty() || metric.contains('/') {
        return Err(ProviderError::BadQuery(format!(
            "{q:?}: an external metric is asked as <namespace>/<metric>[?labelSelector=...]"
        )));
    }
    Ok(format!(
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}{}",
        if selector.is_empty() {
            String::new()
        } else {
            format!("?{selector}")
        }
    ))
}

fn first(list: List) -> Result<f64, ProviderError> {
    let first = list.items.first().ok_or(ProviderError::NoValues)?;
    quantity(&first.value)
        .ok_or_else(|| ProviderError::Decode(format!("{:?} is not a quantity", first.value)))
}

#[async_trait::async_trait]
impl MetricsProvider for ExternalMetricsProvider {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        let Query::Text(q) = query else {
            return Err(ProviderError::Config(
                "external metrics answer <namespace>/<metric>".into(),
            ));
        };
        let uri = path(q)?;
        match &self.via {
            Via::Cluster(client) => {
                let req = ::http::Request::get(&uri)
                    .body(Vec::new())
                    .map_err(|e| ProviderError::BadQuery(format!("{q:?}: {e}")))?;
                let list: List = client.request(req).await.map_err(|e| match &e {
                    kube::Error::Api(s) if s.code == 401 || s.code == 403 => {
                        ProviderError::Unauthorized {
                            status: s.code,
                            body: s.message.clone(),
                        }
                    }
                    // The API server answers 404 for a metric the adapter does not have, and
                    // for an API no adapter serves.
                    kube::Error::Api(s) if s.code == 404 => ProviderError::NoValues,
                    _ => ProviderError::Unreachable(format!("{uri}: {e}")),
                })?;
                first(list)
            }
            Via::Address {
                client,
                base,
                token,
            } => {
                let mut req = client
                    .get(format!("{base}{uri}"))
                    .header("Accept", "application/json");
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let body = match http::send("external metrics", req).await {
                    Err(ProviderError::Rejected { status: 404, .. }) => {
                        return Err(ProviderError::NoValues);
                    }
                    other => other?,
                };
                first(http::json("external metrics", &body)?)
            }
        }
    }

    async fn health(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::quantity;

    #[test]
    fn quantities() {
        assert_eq!(quantity("1500m"), Some(1.5));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("3k"), Some(3000.0));
        assert_eq!(quantity("x"), None);
    }
}
