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
use siskin_analysis::{ProviderError, RouterStats};
use siskin_route::{BackendReport, ConfigReport, StatsReport};

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

    /// What every router serves (`GET /config`). A router that cannot be read makes the
    /// answer unknown: an error, not a shorter list.
    pub async fn config_reports(&self) -> Result<Vec<ConfigReport>, ProviderError> {
        let mut out = Vec::new();
        for url in self.admin_urls().await? {
            out.push(self.get_json(&url, "/config").await?);
        }
        Ok(out)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        path: &str,
    ) -> Result<T, ProviderError> {
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

    /// Every router's statistics entries together (with the judge's samples of `samples`
    /// seconds when asked).
    pub async fn merged(&self, samples: Option<u64>) -> Result<Vec<BackendReport>, ProviderError> {
        let path = match samples {
            Some(w) => format!("/stats?window={w}"),
            None => "/stats".to_string(),
        };
        let mut all = Vec::new();
        for url in self.admin_urls().await? {
            // A router that cannot be read makes the total unknown, not smaller.
            let stats: StatsReport = self.get_json(&url, &path).await?;
            all.extend(stats.backends);
        }
        Ok(all)
    }
}

#[async_trait]
impl RouterStats for RouterFleet {
    async fn backends(&self, samples: Option<u64>) -> Result<Vec<BackendReport>, ProviderError> {
        self.merged(samples).await
    }

    fn min_samples(&self) -> u64 {
        self.min_samples
    }
}
