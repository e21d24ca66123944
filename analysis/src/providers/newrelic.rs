//! New Relic Insights (`GET /v1/accounts/<id>/query?nrql=...`): `results[0].result`, with
//! `SINCE <interval> seconds ago` appended as Flagger does. Keys from the Secret:
//! `newrelic_account_id`, `newrelic_query_key`.

use std::time::Duration;

use serde::Deserialize;

use super::http;
use crate::{MetricsProvider, ProviderError, Query};

/// The default API address.
pub const ADDRESS: &str = "https://insights-api.newrelic.com";

/// One New Relic account.
pub struct NewRelicProvider {
    client: reqwest::Client,
    address: String,
    account: String,
    key: String,
    interval: Duration,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl NewRelicProvider {
    /// A provider for `address` (default [`ADDRESS`]) with the Secret's keys.
    pub fn new(
        address: Option<&str>,
        secret: Option<&std::collections::BTreeMap<String, Vec<u8>>>,
        interval: Duration,
    ) -> Result<Self, ProviderError> {
        Ok(NewRelicProvider {
            client: http::client(false)?,
            address: address.unwrap_or(ADDRESS).trim_end_matches('/').to_string(),
            account: http::required(secret, "newrelic", "newrelic_account_id")?,
            key: http::required(secret, "newrelic", "newrelic_query_key")?,
            interval,
        })
    }

    async fn nrql(&self, q: &str) -> Result<Answer, ProviderError> {
        let nrql = format!("{q} SINCE {} seconds ago", self.interval.as_secs());
        let req = self
            .client
            .get(format!(
                "{}/v1/accounts/{}/query",
                self.address, self.account
            ))
            .header("X-Query-Key", &self.key)
            .query(&[("nrql", nrql)]);
        let body = http::send("New Relic", req).await?;
        http::json("New Relic", &body)
    }
}

#[async_trait::async_trait]
impl MetricsProvider for NewRelicProvider {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        let Query::Text(q) = query else {
            return Err(ProviderError::Config("New Relic answers NRQL".into()));
        };
        let answer = self.nrql(q).await?;
        if answer.results.len() > 1 {
            return Err(ProviderError::MultipleValues(answer.results.len()));
        }
        answer
            .results
            .first()
            .and_then(|r| r.get("result"))
            .and_then(serde_json::Value::as_f64)
            .ok_or(ProviderError::NoValues)
    }

    async fn health(&self) -> Result<(), ProviderError> {
        self.nrql("SELECT * FROM Metric").await.map(|_| ())
    }
}
