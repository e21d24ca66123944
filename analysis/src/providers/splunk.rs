//! Splunk Observability (SignalFx) SignalFlow, over the REST endpoint that streams server-sent
//! events (`POST https://stream.<realm>.signalfx.com/v2/signalflow/execute`): the program runs
//! over ten metric intervals; the last non-null value, with more than one time series an error,
//! as Flagger reads it. Token from the Secret's `sf_token_key` (`X-SF-Token`).

use std::{collections::BTreeSet, time::Duration};

use serde::Deserialize;

use super::http;
use crate::{MetricsProvider, ProviderError, Query};

/// One Splunk Observability realm.
pub struct SplunkProvider {
    client: reqwest::Client,
    api: String,
    stream: String,
    token: String,
    interval: Duration,
}

#[derive(Deserialize)]
struct DataEvent {
    #[serde(default)]
    data: Vec<Point>,
}

#[derive(Deserialize)]
struct Point {
    #[serde(rename = "tsId")]
    ts_id: String,
    value: Option<f64>,
}

/// The value of an SSE stream of SignalFlow messages, as Flagger reads the channel.
pub fn value_of(stream: &str) -> Result<f64, ProviderError> {
    let mut series = BTreeSet::new();
    let mut last = None;
    for message in stream.split("\n\n") {
        let mut event = "";
        let mut data = String::new();
        for line in message.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim());
            }
        }
        match event {
            "data" => {
                let d: DataEvent = http::json("Splunk data", data.as_bytes())?;
                for p in d.data {
                    if let Some(v) = p.value {
                        series.insert(p.ts_id);
                        last = Some(v);
                    }
                }
            }
            "error" => {
                return Err(ProviderError::BadQuery(format!("Splunk: {data}")));
            }
            _ => {}
        }
    }
    if series.len() > 1 {
        return Err(ProviderError::MultipleValues(series.len()));
    }
    last.ok_or(ProviderError::NoValues)
}

impl SplunkProvider {
    /// A provider for `address` (`https://api.<realm>.signalfx.com`, required).
    pub fn new(
        address: &str,
        secret: Option<&std::collections::BTreeMap<String, Vec<u8>>>,
        interval: Duration,
    ) -> Result<Self, ProviderError> {
        let api = address.trim_end_matches('/').to_string();
        // As Flagger derives it: the first "api" of the address becomes "stream".
        let stream = api.replacen("api", "stream", 1);
        Ok(SplunkProvider {
            client: http::client(false)?,
            api,
            stream,
            token: http::required(secret, "splunk", "sf_token_key")?,
            interval,
        })
    }
}

#[async_trait::async_trait]
impl MetricsProvider for SplunkProvider {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        let Query::Text(program) = query else {
            return Err(ProviderError::Config(
                "Splunk answers SignalFlow programs".into(),
            ));
        };
        let stop = http::now_secs() * 1000;
        let start = stop - http::lookback(self.interval) * 1000;
        let req = self
            .client
            .post(format!("{}/v2/signalflow/execute", self.stream))
            .query(&[
                ("start", start.to_string()),
                ("stop", stop.to_string()),
                ("immediate", "true".to_string()),
            ])
            .header("X-SF-Token", &self.token)
            .header("Content-Type", "text/plain")
            .body(program.clone());
        // The channel ends with END_OF_CHANNEL; the connection may stay open after it.
        let stream = http::send_until("Splunk", req, "END_OF_CHANNEL").await?;
        value_of(&stream)
    }

    async fn health(&self) -> Result<(), ProviderError> {
        let req = self
            .client
            .get(format!("{}/v2/metric", self.api))
            .query(&[("limit", "1")])
            .header("X-SF-Token", &self.token);
        http::send("Splunk", req).await.map(|_| ())
    }
}
