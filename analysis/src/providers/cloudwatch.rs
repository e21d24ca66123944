//! AWS CloudWatch `GetMetricData` (the AWS JSON 1.0 protocol, signed with Signature Version 4):
//! the query is Flagger's JSON array of `MetricDataQuery`; the window is ten metric intervals;
//! the first value of the first result (the newest point), as Flagger reads it.
//!
//! Credentials, as the AWS SDKs' environment provider reads them: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`; or (Siskin) the Secret's
//! `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`. `address` (Siskin)
//! replaces the regional endpoint (a VPC endpoint).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::http;
use crate::{MetricsProvider, ProviderError, Query};

/// AWS credentials.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Session token, with temporary credentials.
    pub session_token: Option<String>,
}

/// CloudWatch in one region.
pub struct CloudWatchProvider {
    client: reqwest::Client,
    endpoint: String,
    host: String,
    region: String,
    credentials: Credentials,
    interval: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    #[serde(default)]
    metric_data_results: Vec<MetricResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetricResult {
    #[serde(default)]
    values: Vec<f64>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > 64 {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let inner: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(data.iter().copied())
        .collect();
    let inner_hash = Sha256::digest(&inner);
    let outer: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(inner_hash.iter().copied())
        .collect();
    Sha256::digest(&outer).to_vec()
}

/// The SigV4 `Authorization` value of a POST to `/` of `host` with `headers` (lower-case
/// names, sorted) and `body`, at `amz_date` (`YYYYMMDDTHHMMSSZ`).
pub fn sign(
    credentials: &Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> String {
    let date = &amz_date[..8];
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{signed}\n{}",
        hex(&Sha256::digest(body))
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(
        format!("AWS4{}", credentials.secret_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        credentials.access_key
    )
}

/// Object keys with their first letter upper-cased, as the JSON protocol wants them (Flagger
/// decodes the query case-insensitively).
fn pascal(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let mut c = k.chars();
                    let k = match c.next() {
                        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                        None => k,
                    };
                    (k, pascal(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(pascal).collect()),
        other => other,
    }
}

fn credentials(
    secret: Option<&std::collections::BTreeMap<String, Vec<u8>>>,
) -> Result<Credentials, ProviderError> {
    if let Some(access_key) = http::optional(secret, "aws_access_key_id") {
        return Ok(Credentials {
            access_key,
            secret_key: http::required(secret, "cloudwatch", "aws_secret_access_key")?,
            session_token: http::optional(secret, "aws_session_token"),
        });
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key), Some(secret_key)) => Ok(Credentials {
            access_key,
            secret_key,
            session_token: env("AWS_SESSION_TOKEN"),
        }),
        _ => Err(ProviderError::Config(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the operator, or aws_access_key_id and aws_secret_access_key in the template's Secret".into(),
        )),
    }
}

impl CloudWatchProvider {
    /// A provider for `region` (required), at `address` when given.
    pub fn new(
        region: Option<&str>,
        address: Option<&str>,
        secret: Option<&std::collections::BTreeMap<String, Vec<u8>>>,
        interval: Duration,
    ) -> Result<Self, ProviderError> {
        let region = region.filter(|r| !r.is_empty()).ok_or_else(|| {
            ProviderError::Config("the cloudwatch provider needs spec.provider.region".into())
        })?;
        let endpoint = match address {
            Some(a) => a.trim_end_matches('/').to_string(),
            None if region.starts_with("cn-") => {
                format!("https://monitoring.{region}.amazonaws.com.cn")
            }
            None => format!("https://monitoring.{region}.amazonaws.com"),
        };
        let host = endpoint
            .split_once("://")
            .map_or(endpoint.as_str(), |(_, h)| h)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(CloudWatchProvider {
            client: http::client(false)?,
            endpoint,
            host,
            region: region.to_string(),
            credentials: credentials(secret)?,
            interval,
        })
    }

    async fn get_metric_data(&self, queries: Value) -> Result<Answer, ProviderError> {
        let end = http::now_secs();
        let start = end - http::lookback(self.interval);
        let body = json!({
            "MetricDataQueries": queries,
            "StartTime": start,
            "EndTime": end,
            "MaxDatapoints": 20,
        })
        .to_string();
        let amz_date = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let mut headers = vec![
            (
                "content-type".to_string(),
                "application/x-amz-json-1.0".to_string(),
            ),
            ("host".to_string(), self.host.clone()),
            ("x-amz-date".to_string(), amz_date.clone()),
        ];
        if let Some(t) = &self.credentials.session_token {
            headers.push(("x-amz-security-token".to_string(), t.clone()));
        }
        headers.push((
            "x-amz-target".to_string(),
            "GraniteServiceVersion20100801.GetMetricData".to_string(),
        ));
        let auth = sign(
            &self.credentials,
            &self.region,
            "monitoring",
            &amz_date,
            &headers,
            body.as_bytes(),
        );
        let mut req = self
            .client
            .post(format!("{}/", self.endpoint))
            .header("Authorization", auth)
            .body(body);
        for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
            req = req.header(k.as_str(), v.as_str());
        }
        let answer = http::send("CloudWatch", req).await?;
        http::json("CloudWatch", &answer)
    }
}

#[async_trait::async_trait]
impl MetricsProvider for CloudWatchProvider {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        let Query::Text(q) = query else {
            return Err(ProviderError::Config(
                "CloudWatch answers MetricDataQueries".into(),
            ));
        };
        let queries: Value = serde_json::from_str(q).map_err(|e| {
            ProviderError::BadQuery(format!(
                "the query must be a JSON array of MetricDataQuery: {e}"
            ))
        })?;
        if !queries.is_array() {
            return Err(ProviderError::BadQuery(
                "the query must be a JSON array of MetricDataQuery".into(),
            ));
        }
        let answer = self.get_metric_data(pascal(queries)).await?;
        answer
            .metric_data_results
            .first()
            .and_then(|r| r.values.first().copied())
            .ok_or(ProviderError::NoValues)
    }

    /// Flagger's check: an empty query list is refused with 400 by a CloudWatch that accepts
    /// the credentials.
    async fn health(&self) -> Result<(), ProviderError> {
        match self.get_metric_data(json!([])).await {
            Ok(_) | Err(ProviderError::BadQuery(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HMAC test vector of RFC 4231 (case 2), and AWS's SigV4 signing-key example.
    #[test]
    fn hmac_and_signing_key_match_the_published_vectors() {
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let k = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215");
        let k = hmac(&k, b"us-east-1");
        let k = hmac(&k, b"iam");
        let k = hmac(&k, b"aws4_request");
        assert_eq!(
            hex(&k),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn keys_are_pascal_cased() {
        assert_eq!(
            pascal(json!([{"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2"}}}])),
            json!([{"Id": "m1", "MetricStat": {"Metric": {"Namespace": "AWS/EC2"}}}])
        );
    }
}
