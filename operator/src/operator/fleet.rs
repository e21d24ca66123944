//! The built-in checks on Kubernetes: `/stats` of every router pod (found through the router
//! Service's EndpointSlices, port `admin`), added up. Each router sees only its share of the
//! traffic, so one pod's statistics are not enough.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client as HttpClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Api, Client, api::ListParams};
use serde_json::Value;
use siskin_analysis::{MetricsProvider, ProviderError, Query, providers::router_stats::combine};

/// Statistics of all router pods.
#[derive(Clone)]
pub struct RouterFleet {
    client: Client,
    service: (String, String),
    min_samples: u64,
    http: HttpClient<HttpConnector, Empty<Bytes>>,
}

impl RouterFleet {
    /// The fleet behind Service `namespace/name`.
    pub fn new(client: Client, service: (String, String), min_samples: u64) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        RouterFleet {
            client,
            service,
            min_samples,
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// `http://host:port` of every ready router pod's admin port.
    pub async fn admin_urls(&self) -> Result<Vec<String>, ProviderError> {
        let (ns, name) = &self.service;
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let slices = api
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
            .await
            .map_err(|e| ProviderError::Unreachable(format!("router Service {ns}/{name}: {e}")))?;
        let mut urls = Vec::new();
        for s in slices.items {
            let Some(port) = s
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some("admin"))
                .and_then(|p| p.port)
            else {
                continue;
            };
            for e in s.endpoints.iter().flatten() {
                if !e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true) {
                    continue;
                }
                for a in &e.addresses {
                    let host = if a == "localhost" || a.ends_with(".localhost") {
                        // RFC 6761: loopback (how the test harness publishes local processes).
                        "127.0.0.1".to_string()
                    } else if a.contains(':') {
                        format!("[{a}]")
                    } else {
                        a.clone()
                    };
                    urls.push(format!("http://{host}:{port}"));
                }
            }
        }
        if urls.is_empty() {
            return Err(ProviderError::Unreachable(format!(
                "router Service {ns}/{name} has no ready endpoint with a port named admin"
            )));
        }
        Ok(urls)
    }

    /// The weights (primary, canary) each router serves for `route`'s Siskin rule; None for
    /// a router that does not serve the route (yet).
    pub async fn served_weights(
        &self,
        route: &str,
    ) -> Result<Vec<Option<(u64, u64)>>, ProviderError> {
        let mut out = Vec::new();
        for url in self.admin_urls().await? {
            let config = self.get_json(&url, "/config").await?;
            let rule = config["config"]["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["name"] == route)
                .flat_map(|r| r["rules"].as_array().cloned().unwrap_or_default())
                .find(|r| matches!(r["name"].as_str(), Some("siskin-canary" | "siskin-ab")));
            out.push(rule.map(|rule| {
                let mut w = (0, 0);
                for b in rule["backendRefs"].as_array().into_iter().flatten() {
                    let weight = b["weight"].as_u64().unwrap_or(0);
                    let name = b["name"].as_str().unwrap_or_default();
                    if name
                        .rsplit_once(':')
                        .map_or(name, |(n, _)| n)
                        .ends_with("-canary")
                    {
                        w.1 += weight;
                    } else {
                        w.0 += weight;
                    }
                }
                w
            }));
        }
        Ok(out)
    }

    async fn stats(&self, url: &str) -> Result<Value, ProviderError> {
        self.get_json(url, "/stats").await
    }

    async fn get_json(&self, url: &str, path: &str) -> Result<Value, ProviderError> {
        let uri: http::Uri = format!("{url}{path}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| ProviderError::Unreachable(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(5), self.http.get(uri))
            .await
            .map_err(|_| ProviderError::Unreachable(format!("{url} did not answer in 5s")))?
            .map_err(|e| ProviderError::Unreachable(format!("{url}: {e}")))?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ProviderError::Unreachable(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| ProviderError::Decode(e.to_string()))
    }

    /// Every router's `backends` entries in one document.
    pub async fn merged(&self) -> Result<Value, ProviderError> {
        let mut all = Vec::new();
        let mut last_err = None;
        let urls = self.admin_urls().await?;
        for url in &urls {
            match self.stats(url).await {
                Ok(v) => all.extend(v["backends"].as_array().cloned().unwrap_or_default()),
                // A router that cannot be read makes the total unknown, not smaller.
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            return Err(e);
        }
        Ok(serde_json::json!({ "backends": all }))
    }
}

#[async_trait]
impl MetricsProvider for RouterFleet {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        let Query::Builtin {
            metric,
            route,
            backend,
            window,
        } = query
        else {
            return Err(ProviderError::Rejected {
                status: 400,
                body: "the router's statistics answer only the built-in checks".into(),
            });
        };
        let stats = self.merged().await?;
        combine(&stats, route, backend, *window, *metric, self.min_samples)
    }

    async fn health(&self) -> Result<(), ProviderError> {
        self.admin_urls().await.map(|_| ())
    }
}
