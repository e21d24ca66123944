//! Built-in checks answered by the router's own live statistics (`GET /stats` on its admin
//! port): no Prometheus needed, and the windows are seconds old, not scrape intervals.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use siskin_route::{BackendReport, Role, StatsReport, WindowStats};

use crate::{BuiltinMetric, MetricsProvider, ProviderError, Query, source::RouterStats};

/// Fewest requests in a window before a built-in check judges the canary.
pub const DEFAULT_MIN_SAMPLES: u64 = 10;

/// Reads `/stats` of one router.
#[derive(Clone)]
pub struct RouterStatsProvider {
    admin: String,
    min_samples: u64,
    client: Client<HttpConnector, Empty<Bytes>>,
}

// === impl RouterStatsProvider ===

impl RouterStatsProvider {
    /// A provider for the router whose admin port is at `admin` (`http://host:port`).
    pub fn new(admin: impl Into<String>, min_samples: u64) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        RouterStatsProvider {
            admin: admin.into().trim_end_matches('/').to_string(),
            min_samples,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    async fn get(&self, path: &str) -> Result<Bytes, ProviderError> {
        let uri: http::Uri = format!("{}{path}", self.admin)
            .parse()
            .map_err(|e: http::uri::InvalidUri| ProviderError::Unreachable(e.to_string()))?;
        let fut = self.client.get(uri);
        let resp = tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .map_err(|_| {
                ProviderError::Unreachable(format!("{} did not answer in 5s", self.admin))
            })?
            .map_err(|e| ProviderError::Unreachable(format!("{}: {e}", self.admin)))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ProviderError::Unreachable(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(ProviderError::Rejected {
                status: status.as_u16(),
                body: text,
            });
        }
        Ok(body)
    }
}

/// Combines the windows of every rule where the backend serves the route, over the entries of
/// one or more routers: requests add up, the success rate is weighted by requests, and the p99
/// is the worst (quantiles do not add).
pub fn combine<'a>(
    backends: impl IntoIterator<Item = &'a BackendReport>,
    route: &str,
    role: Role,
    window: Duration,
    metric: BuiltinMetric,
    min_samples: u64,
) -> Result<f64, ProviderError> {
    let short = window <= Duration::from_secs(10);
    let entries: Vec<&WindowStats> = backends
        .into_iter()
        .filter(|b| b.route == route && b.role == role)
        .map(|b| if short { &b.window_10s } else { &b.window_1m })
        .collect();
    let requests: u64 = entries.iter().map(|w| w.requests).sum();
    if requests == 0 {
        return Err(ProviderError::NoValues);
    }
    if requests < min_samples {
        return Err(ProviderError::TooFewSamples {
            got: requests,
            need: min_samples,
        });
    }
    match metric {
        BuiltinMetric::SuccessRate => {
            let ok: f64 = entries
                .iter()
                .filter_map(|w| Some(w.requests as f64 * w.success_rate? / 100.0))
                .sum();
            Ok(100.0 * ok / requests as f64)
        }
        BuiltinMetric::DurationP99 => entries
            .iter()
            .filter_map(|w| w.p99_ms)
            .reduce(f64::max)
            .ok_or(ProviderError::NoValues),
    }
}

#[async_trait::async_trait]
impl RouterStats for RouterStatsProvider {
    async fn backends(&self, samples: Option<u64>) -> Result<Vec<BackendReport>, ProviderError> {
        let path = match samples {
            Some(w) => format!("/stats?window={w}"),
            None => "/stats".to_string(),
        };
        let body = self.get(&path).await?;
        let stats: StatsReport =
            serde_json::from_slice(&body).map_err(|e| ProviderError::Decode(e.to_string()))?;
        Ok(stats.backends)
    }

    fn min_samples(&self) -> u64 {
        self.min_samples
    }
}

#[async_trait::async_trait]
impl MetricsProvider for RouterStatsProvider {
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
        let backends = self.backends(None).await?;
        combine(
            &backends,
            route,
            *backend,
            *window,
            *metric,
            self.min_samples,
        )
    }

    async fn health(&self) -> Result<(), ProviderError> {
        self.get("/healthz").await.map(|_| ())
    }
}
