//! Dynatrace (`GET /api/v2/metrics/query?metricSelector=...&resolution=Inf`): the first value
//! of the last data entry of the first result over ten metric intervals, as Flagger reads it.
//! Token from the Secret's `dynatrace_token` (`Authorization: Api-Token ...`).

use std::time::Duration;

use serde::Deserialize;

use super::http;
use crate::{MetricsProvider, ProviderError, Query};

/// One Dynatrace environment.
pub struct DynatraceProvider {
    client: reqwest::Client,
    address: String,
    token: String,
    interval: Duration,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    result: Vec<Result_>,
}

#[derive(Deserialize)]
struct Result_ {
    #[serde(default)]
    data: Vec<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    values: Vec<Option<f64>>,
}

impl DynatraceProvider {
    /// A provider for `address` (required) with the Secret's token.
    pub fn new(
        address: &str,
        secret: Option<&std::collections::BTreeMap<String, Vec<u8>>>,
        interval: Duration,
    ) -> Result<Self, ProviderError> {
        Ok(DynatraceProvider {
            client: http::client(false)?,
            address: address.trim_end_matches('/').to_string(),
            token: http::required(secret, "dynatrace", "dynatrace_token")?,
            interval,
        })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.address))
            .header("Authorization", format!("Api-Token {}", self.token))
    }
}

#[async_trait::async_trait]
impl MetricsProvider for DynatraceProvider {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        let Query::Text(q) = query else {
            return Err(ProviderError::Config(
                "Dynatrace answers metric selectors".into(),
            ));
        };
        let to = http::now_secs() * 1000;
        let from = to - http::lookback(self.interval) * 1000;
        let req = self.get("/api/v2/metrics/query").query(&[
            ("from", from.to_string()),
            ("metricSelector", q.clone()),
            ("resolution", "Inf".to_string()),
            ("to", to.to_string()),
        ]);
        let body = http::send("Dynatrace", req).await?;
        let answer: Answer = http::json("Dynatrace", &body)?;
        answer
            .result
            .first()
            .and_then(|r| r.data.last())
            .and_then(|d| d.values.first().copied().flatten())
            .ok_or(ProviderError::NoValues)
    }

    async fn health(&self) -> Result<(), ProviderError> {
        let req = self.get("/api/v2/metrics").query(&[("pageSize", "1")]);
        http::send("Dynatrace", req).await.map(|_| ())
    }
}
