//! The built-in checks on Kubernetes: `/stats` of every router pod (found through the router
//! Service's EndpointSlices, port `admin`), added up. Each router sees only its share of the
//! traffic, so one pod's statistics are not enough.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

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

/// How long the routers' addresses and their `/config` answers are reused. Every Canary's
/// step asks; with many Canaries, each router would otherwise be read (and its whole
/// configuration parsed) once per Canary per interval.
const ADDRESSES_TTL: Duration = Duration::from_secs(2);
const REPORTS_TTL: Duration = Duration::from_secs(1);

/// Statistics of all router pods.
#[derive(Clone)]
pub struct RouterFleet {
    client: Client,
    service: (String, String),
    min_samples: u64,
    http: HttpClient<HttpConnector, Empty<Bytes>>,
    cache: Arc<Cache>,
}

/// Routers' `/config` answers: when read, at which routing generation.
type Reports = (Instant, u64, Arc<Vec<ConfigReport>>);

/// Answers shared by every Canary's step for a moment (one reader at a time fills each).
#[derive(Default)]
struct Cache {
    addresses: tokio::sync::Mutex<Option<(Instant, Arc<Vec<String>>)>>,
    reports: tokio::sync::Mutex<Option<Reports>>,
    /// Moved on by every routing change this process applies: older reports are not reused.
    generation: AtomicU64,
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
            cache: Arc::default(),
        }
    }

    /// `http://host:port` of every ready router pod's admin port (read at most every
    /// [`ADDRESSES_TTL`]).
    pub async fn admin_urls(&self) -> Result<Arc<Vec<String>>, ProviderError> {
        let mut cached = self.cache.addresses.lock().await;
        if let Some((at, urls)) = cached.as_ref()
            && at.elapsed() < ADDRESSES_TTL
        {
            return Ok(urls.clone());
        }
        let urls = Arc::new(self.read_admin_urls().await?);
        *cached = Some((Instant::now(), urls.clone()));
        Ok(urls)
    }

    async fn read_admin_urls(&self) -> Result<Vec<String>, ProviderError> {
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
    /// Reused for [`REPORTS_TTL`] unless this process changed routing since.
    pub async fn config_reports(&self) -> Result<Arc<Vec<ConfigReport>>, ProviderError> {
        let mut cached = self.cache.reports.lock().await;
        let generation = self.cache.generation.load(Ordering::Acquire);
        if let Some((at, g, reports)) = cached.as_ref()
            && *g == generation
            && at.elapsed() < REPORTS_TTL
        {
            return Ok(reports.clone());
        }
        let mut out = Vec::new();
        for url in self.admin_urls().await?.iter() {
            out.push(self.get_json(url, "/config").await?);
        }
        let reports = Arc::new(out);
        *cached = Some((Instant::now(), generation, reports.clone()));
        Ok(reports)
    }

    /// Routing changed: the next [`RouterFleet::config_reports`] asks the routers again.
    pub fn forget_reports(&self) {
        self.cache.generation.fetch_add(1, Ordering::AcqRel);
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
        for url in self.admin_urls().await?.iter() {
            // A router that cannot be read makes the total unknown, not smaller.
            let stats: StatsReport = self.get_json(url, &path).await?;
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
