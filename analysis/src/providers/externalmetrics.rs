//! The Kubernetes external metrics API (`external.metrics.k8s.io/v1beta1`), as Flagger reads
//! it: the query is `<namespace>/<metric>[?labelSelector=...]` (namespace default `default`);
//! the value of the first item.

use kube::Client;
use serde::Deserialize;

use crate::{MetricsProvider, ProviderError, Query};

/// The external metrics API of one cluster.
pub struct ExternalMetricsProvider {
    client: Client,
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
    /// A provider on the cluster `client` talks to.
    pub fn new(client: Client) -> Self {
        ExternalMetricsProvider { client }
    }
}

#[async_trait::async_trait]
impl MetricsProvider for ExternalMetricsProvider {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        let Query::Text(q) = query else {
            return Err(ProviderError::Config(
                "external metrics answer <namespace>/<metric>".into(),
            ));
        };
        let q = q.trim();
        let (path, selector) = q.split_once('?').unwrap_or((q, ""));
        let (ns, metric) = match path.split_once('/') {
            Some((ns, m)) if !ns.is_empty() => (ns, m),
            Some((_, m)) => ("default", m),
            None => ("default", path),
        };
        let uri = format!(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}{}",
            if selector.is_empty() {
                String::new()
            } else {
                format!("?{selector}")
            }
        );
        let req = http::Request::get(&uri)
            .body(Vec::new())
            .map_err(|e| ProviderError::BadQuery(format!("{q:?}: {e}")))?;
        let list: List = self.client.request(req).await.map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 401 || s.code == 403 => ProviderError::Unauthorized {
                status: s.code,
                body: s.message.clone(),
            },
            kube::Error::Api(s) if s.code == 404 => ProviderError::NoValues,
            _ => ProviderError::Unreachable(format!("{uri}: {e}")),
        })?;
        let first = list.items.first().ok_or(ProviderError::NoValues)?;
        quantity(&first.value)
            .ok_or_else(|| ProviderError::Decode(format!("{:?} is not a quantity", first.value)))
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
