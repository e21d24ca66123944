//! Graphite (`GET /render?<query>&format=json`): the query is the raw query string
//! (`target=...`); the last non-null datapoint over every target, as Flagger reads it. Basic
//! auth from the Secret's `username` and `password`.

use serde::Deserialize;

use super::http;
use crate::{MetricsProvider, ProviderError, Query};

/// One Graphite.
pub struct GraphiteProvider {
    client: reqwest::Client,
    address: String,
    auth: Option<(String, String)>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(default)]
    datapoints: Vec<(serde_json::Value, serde_json::Value)>,
}

fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl GraphiteProvider {
    /// A provider for `address` (required).
    pub fn new(
        address: &str,
        insecure: bool,
        secret: Option<&std::collections::BTreeMap<String, Vec<u8>>>,
    ) -> Result<Self, ProviderError> {
        let auth = match secret {
            None => None,
            Some(_) => Some((
                http::required(secret, "graphite", "username")?,
                http::required(secret, "graphite", "password")?,
            )),
        };
        Ok(GraphiteProvider {
            client: http::client(insecure)?,
            address: address.trim_end_matches('/').to_string(),
            auth,
        })
    }

    async fn render(&self, query: &str) -> Result<f64, ProviderError> {
        let mut params: Vec<(String, String)> = query
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (p.to_string(), String::new()),
            })
            .filter(|(k, _)| k != "format")
            .collect();
        params.push(("format".into(), "json".into()));
        params.sort();
        let mut req = self
            .client
            .get(format!("{}/render", self.address))
            .query(&params);
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        let body = http::send("Graphite", req).await?;
        let targets: Vec<Target> = http::json("Graphite", &body)?;
        targets
            .iter()
            .flat_map(|t| &t.datapoints)
            .filter_map(|(v, _)| number(v))
            .next_back()
            .ok_or(ProviderError::NoValues)
    }
}

#[async_trait::async_trait]
impl MetricsProvider for GraphiteProvider {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        match query {
            Query::Text(q) => self.render(q).await,
            _ => Err(ProviderError::Config("Graphite answers targets".into())),
        }
    }

    /// Flagger's check: `target=test` answers (no values is fine).
    async fn health(&self) -> Result<(), ProviderError> {
        match self.render("target=test").await {
            Ok(_) | Err(ProviderError::NoValues) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
