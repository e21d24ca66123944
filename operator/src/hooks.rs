//! Webhook calls with Flagger's payload, shared by the operator and `siskin run`.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use siskin_api::{HookType, analysis::CanaryWebhook};
use siskin_engine::GateResult;

/// What a webhook is told about the canary.
#[derive(Clone, Debug)]
pub struct Payload {
    /// Canary name.
    pub name: String,
    /// Canary namespace.
    pub namespace: String,
    /// Phase before this step.
    pub phase: String,
    /// Checksum of the release (the status's `lastAppliedSpec`).
    pub checksum: String,
}

/// A webhook client.
#[derive(Clone)]
pub struct Hooks {
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            http: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }
}

// === impl Hooks ===

impl Hooks {
    /// POSTs Flagger's payload; success is a status up to 202, anything else is the error text.
    pub async fn call(&self, h: &CanaryWebhook, p: &Payload) -> Result<(), String> {
        let metadata: BTreeMap<String, String> = h.metadata.clone().unwrap_or_default();
        let payload = serde_json::json!({
            "name": p.name, "namespace": p.namespace, "phase": p.phase,
            "checksum": p.checksum, "metadata": metadata,
        });
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

    /// Runs every hook of a gate type in spec order: the first failure decides (for
    /// `rollback`, the first success).
    pub async fn gate(&self, kind: HookType, hooks: &[CanaryWebhook], p: &Payload) -> GateResult {
        for h in hooks {
            let outcome = self.call(h, p).await;
            let ok = outcome.is_ok();
            if (kind == HookType::Rollback) == ok {
                return GateResult {
                    passed: ok,
                    hook: h.name.clone(),
                    message: outcome.err().unwrap_or_default(),
                    muted: h.mute_alert.unwrap_or(false),
                };
            }
        }
        GateResult {
            passed: kind != HookType::Rollback,
            hook: hooks.last().map(|h| h.name.clone()).unwrap_or_default(),
            message: String::new(),
            muted: false,
        }
    }

    /// Calls every hook of a type whose outcome does not change the release; returns the
    /// failures as `(hook, error)`.
    pub async fn notify(&self, hooks: &[CanaryWebhook], p: &Payload) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for h in hooks {
            if let Err(e) = self.call(h, p).await {
                failed.push((h.name.clone(), e));
            }
        }
        failed
    }
}
