//! Datadog (`GET /api/v1/query`): the first (oldest) point of the first series over ten metric
//! intervals, as Flagger reads it (the newest bucket is often incomplete). Keys from the
//! Secret: `datadog_api_key`, `datadog_application_key`.

use std::time::Duration;

use serde::Deserialize;

use super::http;
use crate::{MetricsProvider, ProviderError, Query};

/// The default API address.
pub const ADDRESS: &str = "https://api.datadoghq.com";

/// One Datadog account.
pub struct DatadogProvider {
    client: reqwest::Client,
    address: String,
    api_key: String,
    app_key: String,
    interval: Duration,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    series: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    pointlist: Vec<Vec<Option<f64>>>,
}

impl DatadogProvider {
    /// A provider for `address` (default [`ADDRESS`]) with the Secret's keys.
    pub fn new(
        address: Option<&str>,
        secret: Option<&std::collections::BTreeMap<String, Vec<u8>>>,
        interval: Duration,
    ) -> Result<Self, ProviderError> {
        Ok(DatadogProvider {
            client: http::client(false)?,
            address: address.unwrap_or(ADDRESS).trim_end_matches('/').to_string(),
            api_key: http::required(secret, "datadog", "datadog_api_key")?,
            app_key: http::required(secret, "datadog", "datadog_application_key")?,
            interval,
        })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.address))
            .header("DD-API-KEY", &self.api_key)
            .header("DD-APPLICATION-KEY", &self.app_key)
    }
}

#[async_trait::async_trait]
impl MetricsProvider for DatadogProvider {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        let Query::Text(q) = query else {
            return Err(ProviderError::Config("Datadog answers queries".into()));
        };
        let to = http::now_secs();
        let from = to - http::lookback(self.interval);
        let req = self.get("/api/v1/query").query(&[
            ("from", from.to_string()),
            ("query", q.clone()),
            ("to", to.to_string()),
        ]);
        let body = http::send("Datadog", req).await?;
        let answer: Answer = http::json("Datadog", &body)?;
        answer
            .series
            .first()
            .and_then(|s| s.pointlist.first())
            .and_then(|p| p.get(1).copied().flatten())
            .ok_or(ProviderError::NoValues)
    }

    async fn health(&self) -> Result<(), ProviderError> {
        http::send("Datadog", self.get("/api/v1/validate"))
            .await
            .map(|_| ())
    }
}
