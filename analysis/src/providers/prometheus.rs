//! Prometheus (`GET /api/v1/query`, through `prometheus-http-query`): the value of the last
//! series of an instant vector (or a scalar), as Flagger reads it. Credentials from the
//! template's Secret as Flagger reads them: `token` → `Authorization: Bearer`, else `username`
//! and `password` → basic auth; `headers` and `insecureSkipVerify` from the template.

use std::{collections::BTreeMap, time::Duration};

use prometheus_http_query::{Client, Error as PromError, response::Data};

use crate::{MetricsProvider, ProviderError, Query};

/// How long one query may take (Flagger: 5 s).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// One Prometheus server.
pub struct PrometheusProvider {
    client: Client,
    address: String,
    headers: Vec<(String, String)>,
    auth: Option<Auth>,
}

enum Auth {
    Bearer(String),
    Basic(String, String),
}

fn secret_str(secret: &BTreeMap<String, Vec<u8>>, key: &str) -> Option<String> {
    secret
        .get(key)
        .map(|v| String::from_utf8_lossy(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

// === impl PrometheusProvider ===

impl PrometheusProvider {
    /// A provider for the server at `address` (a path prefix is kept).
    pub fn new(
        address: &str,
        headers: &BTreeMap<String, Vec<String>>,
        insecure_skip_verify: bool,
        secret: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Result<Self, ProviderError> {
        let http = super::http()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .tls_danger_accept_invalid_certs(insecure_skip_verify)
            .build()
            .map_err(|e| ProviderError::Config(format!("HTTP client: {e}")))?;
        let client = Client::from(http, address)
            .map_err(|e| ProviderError::Config(format!("address {address:?}: {e}")))?;
        let auth = match secret {
            None => None,
            Some(s) => match (
                secret_str(s, "token"),
                secret_str(s, "username"),
                secret_str(s, "password"),
            ) {
                (Some(t), _, _) => Some(Auth::Bearer(t)),
                (None, Some(u), Some(p)) => Some(Auth::Basic(u, p)),
                _ => {
                    return Err(ProviderError::Config(
                        "the Secret has neither `token` nor `username` and `password`".into(),
                    ));
                }
            },
        };
        Ok(PrometheusProvider {
            client,
            address: address.to_string(),
            headers: headers
                .iter()
                .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
                .collect(),
            auth,
        })
    }

    async fn instant(&self, query: &str) -> Result<f64, ProviderError> {
        let mut b = self.client.query(query).timeout(TIMEOUT.as_millis() as i64);
        for (k, v) in &self.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| ProviderError::Config(format!("header {k:?}: {e}")))?;
            let value = http::HeaderValue::from_str(v)
                .map_err(|e| ProviderError::Config(format!("header {k:?}: {e}")))?;
            b = b.header(name, value);
        }
        match &self.auth {
            Some(Auth::Bearer(t)) => {
                let v = http::HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|e| ProviderError::Config(format!("token: {e}")))?;
                b = b.header(http::header::AUTHORIZATION, v);
            }
            Some(Auth::Basic(u, p)) => {
                let v = http::HeaderValue::from_str(&format!(
                    "Basic {}",
                    base64(format!("{u}:{p}").as_bytes())
                ))
                .map_err(|e| ProviderError::Config(format!("basic auth: {e}")))?;
                b = b.header(http::header::AUTHORIZATION, v);
            }
            None => {}
        }
        let result = b.get().await.map_err(|e| classify(&self.address, e))?;
        let value = match result.data() {
            Data::Vector(v) => match v.last() {
                Some(s) => s.sample().value(),
                None => return Err(ProviderError::NoValues),
            },
            Data::Scalar(s) => s.value(),
            Data::Matrix(m) => return Err(ProviderError::MultipleValues(m.len())),
        };
        if value.is_nan() {
            return Err(ProviderError::NoValues);
        }
        Ok(value)
    }
}

/// Standard base64 (for basic auth), without a dependency for twenty lines.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A client error as Siskin's kinds: refused credentials, a refused query, an unreachable
/// server, an answer that is not Prometheus's.
fn classify(address: &str, e: PromError) -> ProviderError {
    match e {
        PromError::Prometheus(p) => match p.error_type() {
            prometheus_http_query::error::PrometheusErrorType::BadData => {
                ProviderError::BadQuery(p.message().to_string())
            }
            _ => ProviderError::Rejected {
                status: 422,
                body: p.to_string(),
            },
        },
        PromError::Client(c) => match c.inner() {
            Some(r) if r.is_connect() || r.is_timeout() => {
                ProviderError::Unreachable(format!("{address}: {r}"))
            }
            Some(r) => match r.status().map(|s| s.as_u16()) {
                Some(status @ (401 | 403)) => ProviderError::Unauthorized {
                    status,
                    body: r.to_string(),
                },
                Some(status) => ProviderError::Rejected {
                    status,
                    body: r.to_string(),
                },
                None => ProviderError::Unreachable(format!("{address}: {r}")),
            },
            None => ProviderError::Decode(c.to_string()),
        },
        other => ProviderError::Config(other.to_string()),
    }
}

#[async_trait::async_trait]
impl MetricsProvider for PrometheusProvider {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        match query {
            Query::Text(q) => self.instant(q).await,
            _ => Err(ProviderError::Config(
                "Prometheus answers PromQL; the built-in checks have their queries resolved first"
                    .into(),
            )),
        }
    }

    /// Flagger's `IsOnline`: `vector(1)` answers 1.
    async fn health(&self) -> Result<(), ProviderError> {
        let v = self.instant("vector(1)").await?;
        if (v - 1.0).abs() < f64::EPSILON {
            Ok(())
        } else {
            Err(ProviderError::Decode(format!("vector(1) answered {v}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_as_rfc_4648() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
