//! Google Cloud Monitoring MQL (`POST /v3/projects/<project>/timeSeries:query`): the first value
//! of the first point of the first time series, as Flagger reads it. The project from the
//! Secret's `project`; credentials from its `serviceAccountKey` (a service account's JSON key,
//! exchanged for an access token with a signed JWT, RS256), else the metadata server (Workload
//! Identity). `address` (Siskin) replaces `https://monitoring.googleapis.com`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::json;

use super::http;
use crate::{MetricsProvider, ProviderError, Query};

/// The API address.
pub const ADDRESS: &str = "https://monitoring.googleapis.com";
/// Where a workload on GKE gets a token for its service account.
pub const METADATA_TOKEN: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";
/// The scope a query needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/monitoring.read";

/// A service account's JSON key (the fields used).
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    /// `client_email`.
    pub client_email: String,
    /// `private_key`: PEM PKCS#8.
    pub private_key: String,
    /// `private_key_id`.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// `token_uri` (default Google's).
    #[serde(default)]
    pub token_uri: Option<String>,
}

/// One project.
pub struct StackdriverProvider {
    client: reqwest::Client,
    address: String,
    project: String,
    key: Option<ServiceAccountKey>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default)]
    time_series_data: Vec<Series>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Series {
    #[serde(default)]
    point_data: Vec<Point>,
}

#[derive(Deserialize)]
struct Point {
    #[serde(default)]
    values: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
}

fn pem_der(pem: &str) -> Result<Vec<u8>, ProviderError> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| ProviderError::Config(format!("serviceAccountKey.private_key: {e}")))
}

/// A JWT asking `key`'s token endpoint for an access token with [`SCOPE`], signed RS256.
pub fn assertion(key: &ServiceAccountKey, now: i64) -> Result<String, ProviderError> {
    let der = pem_der(&key.private_key)?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| {
        ProviderError::Config(format!(
            "serviceAccountKey.private_key is not an RSA PKCS#8 key: {e}"
        ))
    })?;
    let aud = key
        .token_uri
        .clone()
        .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": key.private_key_id});
    let claims =
        json!({"iss": key.client_email, "scope": SCOPE, "aud": aud, "iat": now, "exp": now + 3600});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|e| ProviderError::Config(format!("cannot sign the token request: {e}")))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

fn number(v: &serde_json::Value) -> Option<f64> {
    v.get("doubleValue")
        .and_then(serde_json::Value::as_f64)
        .or_else(|| {
            v.get("int64Value").and_then(|i| {
                i.as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| i.as_f64())
            })
        })
}

impl StackdriverProvider {
    /// A provider with the Secret's `project` (required) and `serviceAccountKey` (optional).
    pub fn new(
        address: Option<&str>,
        secret: Option<&std::collections::BTreeMap<String, Vec<u8>>>,
    ) -> Result<Self, ProviderError> {
        let key = match http::optional(secret, "serviceAccountKey") {
            None => None,
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                ProviderError::Config(format!(
                    "serviceAccountKey is not a service account key: {e}"
                ))
            })?),
        };
        Ok(StackdriverProvider {
            client: http::client(false)?,
            address: address.unwrap_or(ADDRESS).trim_end_matches('/').to_string(),
            project: http::required(secret, "stackdriver", "project")?,
            key,
        })
    }

    async fn token(&self) -> Result<String, ProviderError> {
        let Some(key) = &self.key else {
            let req = self
                .client
                .get(METADATA_TOKEN)
                .header("Metadata-Flavor", "Google");
            let body = http::send("the GCE metadata server", req).await?;
            return Ok(http::json::<Token>("the GCE metadata server", &body)?.access_token);
        };
        let uri = key
            .token_uri
            .clone()
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
        let jwt = assertion(key, http::now_secs())?;
        let req = self.client.post(&uri).form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", jwt.as_str()),
        ]);
        let body = match http::send("Google's token endpoint", req).await {
            // A refused assertion is refused credentials, whatever the status.
            Err(ProviderError::BadQuery(m)) => {
                return Err(ProviderError::Unauthorized {
                    status: 400,
                    body: m,
                });
            }
            other => other?,
        };
        Ok(http::json::<Token>("Google's token endpoint", &body)?.access_token)
    }

    async fn mql(&self, q: &str) -> Result<Answer, ProviderError> {
        let token = self.token().await?;
        let req = self
            .client
            .post(format!(
                "{}/v3/projects/{}/timeSeries:query",
                self.address, self.project
            ))
            .bearer_auth(token)
            .json(&json!({ "query": q }));
        let body = http::send("Cloud Monitoring", req).await?;
        http::json("Cloud Monitoring", &body)
    }
}

#[async_trait::async_trait]
impl MetricsProvider for StackdriverProvider {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        let Query::Text(q) = query else {
            return Err(ProviderError::Config("Cloud Monitoring answers MQL".into()));
        };
        let answer = self.mql(q).await?;
        answer
            .time_series_data
            .first()
            .and_then(|s| s.point_data.first())
            .and_then(|p| p.values.first())
            .and_then(number)
            .ok_or(ProviderError::NoValues)
    }

    /// Flagger's check: an empty query is refused as an invalid argument by a project that
    /// accepts the credentials.
    async fn health(&self) -> Result<(), ProviderError> {
        match self.mql("").await {
            Ok(_) | Err(ProviderError::BadQuery(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
