//! The webhook caller both worlds use: Flagger's payload POSTed as JSON, success up to 202.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use siskin_api::analysis::CanaryWebhook;
use siskin_driver::{Payload, Webhooks};

/// A webhook client (one per process, its connections reused).
#[derive(Clone)]
pub struct HttpWebhooks {
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpWebhooks {
    fn default() -> Self {
        HttpWebhooks {
            http: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }
}

#[async_trait]
impl Webhooks for HttpWebhooks {
    async fn call(&self, h: &CanaryWebhook, p: &Payload) -> Result<(), String> {
        let mut metadata: BTreeMap<String, String> = h.metadata.clone().unwrap_or_default();
        // The payload's own keys (an event's message, type and time) win over the hook's.
        metadata.extend(p.metadata.clone());
        let mut payload = serde_json::json!({
            "name": p.name, "namespace": p.namespace, "phase": p.phase, "checksum": p.checksum,
        });
        if !metadata.is_empty() {
            payload["metadata"] = serde_json::json!(metadata);
        }
        let req = http::Request::post(h.url.as_str())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(payload.to_string())))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(h.timeout(), self.http.request(req))
            .await
            .map_err(|_| format!("no answer within {:?}", h.timeout()))?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status <= 202 {
            Ok(())
        } else {
            let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            Err(format!("status {status}: {text}"))
        }
    }
}
