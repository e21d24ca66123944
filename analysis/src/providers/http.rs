//! What the HTTP providers share: one client, their error classes, and reading Secret keys.

use std::{collections::BTreeMap, time::Duration};

use crate::ProviderError;

/// How long one request to a SaaS API may take (Flagger: 5 s).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A client for a provider (`insecure`: accept any certificate).
pub fn client(insecure: bool) -> Result<reqwest::Client, ProviderError> {
    super::http()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .tls_danger_accept_invalid_certs(insecure)
        .build()
        .map_err(|e| ProviderError::Config(format!("HTTP client: {e}")))
}

/// Sends `req`; the body of a 2xx answer, or the error class of any other outcome: refused
/// credentials (401, 403), a refused query (400, 422), another refusal, or no answer.
pub async fn send(what: &str, req: reqwest::RequestBuilder) -> Result<bytes::Bytes, ProviderError> {
    // No answer at all (refused, timed out, reset): the provider cannot be reached.
    let resp = req
        .send()
        .await
        .map_err(|e| ProviderError::Unreachable(format!("{what}: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp
        .bytes()
        .await
        .map_err(|e| ProviderError::Unreachable(format!("{what}: {e}")))?;
    match status {
        200..=299 => Ok(body),
        401 | 403 => Err(ProviderError::Unauthorized {
            status,
            body: ProviderError::snippet(&body),
        }),
        400 | 422 => Err(ProviderError::BadQuery(format!(
            "{what} answered {status}: {}",
            ProviderError::snippet(&body)
        ))),
        _ => Err(ProviderError::Rejected {
            status,
            body: ProviderError::snippet(&body),
        }),
    }
}

/// Like [`send`], for a stream of server-sent events that the server may hold open: reads
/// until `last` appears (or the stream ends).
pub async fn send_until(
    what: &str,
    req: reqwest::RequestBuilder,
    last: &str,
) -> Result<String, ProviderError> {
    let mut resp = req
        .send()
        .await
        .map_err(|e| ProviderError::Unreachable(format!("{what}: {e}")))?;
    let status = resp.status().as_u16();
    if !(200..=299).contains(&status) {
        let body = resp.bytes().await.unwrap_or_default();
        return Err(match status {
            401 | 403 => ProviderError::Unauthorized {
                status,
                body: ProviderError::snippet(&body),
            },
            400 | 422 => ProviderError::BadQuery(format!(
                "{what} answered {status}: {}",
                ProviderError::snippet(&body)
            )),
            _ => ProviderError::Rejected {
                status,
                body: ProviderError::snippet(&body),
            },
        });
    }
    let mut text = String::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ProviderError::Unreachable(format!("{what}: {e}")))?
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.contains(last) {
            break;
        }
    }
    Ok(text)
}

/// Decodes a JSON answer.
pub fn json<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::Decode(format!("{what}: {e} in {}", ProviderError::snippet(body)))
    })
}

/// The Secret's value of `key`, required.
pub fn required(
    secret: Option<&BTreeMap<String, Vec<u8>>>,
    provider: &str,
    key: &str,
) -> Result<String, ProviderError> {
    optional(secret, key).ok_or_else(|| {
        ProviderError::Config(format!(
            "the {provider} provider needs key {key:?} in the Secret named by spec.provider.secretRef"
        ))
    })
}

/// The Secret's value of `key`, if set.
pub fn optional(secret: Option<&BTreeMap<String, Vec<u8>>>, key: &str) -> Option<String> {
    secret?
        .get(key)
        .map(|v| String::from_utf8_lossy(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Now, in seconds since the epoch.
pub fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The window Flagger's SaaS providers ask for: ten metric intervals back from now.
pub fn lookback(interval: Duration) -> i64 {
    i64::try_from(interval.as_secs().saturating_mul(10)).unwrap_or(i64::MAX)
}
