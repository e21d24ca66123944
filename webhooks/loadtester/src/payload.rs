//! The webhook payload Flagger (and Siskin) POST to every endpoint.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The hook types a `type` field may name (Siskin's operator sends it; Flagger's does not).
pub const HOOK_TYPES: &[&str] = &[
    "confirm-rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "rollback",
    "pre-rollout",
    "rollout",
    "post-rollout",
    "event",
];

/// The confirm-* hook types: the gates a type-less `/gate/open` or `/gate/close` also sets.
pub const CONFIRM_TYPES: &[&str] = &[
    "confirm-rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
];

/// `{"name","namespace","metadata":{...},"type"}` of the payload; the rest (phase, checksum) is ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Payload {
    /// The canary's name.
    #[serde(default)]
    pub name: String,
    /// The canary's namespace.
    #[serde(default)]
    pub namespace: String,
    /// The hook's metadata (task definition for `/`).
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The hook type, when the operator sends it.
    #[serde(default, rename = "type")]
    pub hook_type: Option<String>,
}

// === impl Payload ===

impl Payload {
    /// Parses a request body; the error is the 400 message.
    pub fn parse(body: &[u8]) -> Result<Payload, String> {
        let p: Payload = serde_json::from_slice(body)
            .map_err(|e| format!("error decoding the payload as JSON: {e}"))?;
        if let Some(t) = p.hook_type.as_deref().filter(|t| !t.is_empty())
            && !HOOK_TYPES.contains(&t)
        {
            return Err(format!(
                "unknown hook type {t:?}; known types: {}",
                HOOK_TYPES.join(", ")
            ));
        }
        Ok(p)
    }

    /// The hook type, if one was sent (an empty string counts as none).
    pub fn hook_type(&self) -> Option<&str> {
        self.hook_type.as_deref().filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flagger_and_siskin_payloads() {
        let p = Payload::parse(br#"{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"abc","metadata":{"cmd":"x"},"extra":1}"#).unwrap();
        assert_eq!((p.name.as_str(), p.namespace.as_str()), ("podinfo", "test"));
        assert_eq!(p.metadata.as_ref().unwrap()["cmd"], "x");
        assert_eq!(p.hook_type(), None);
        let p =
            Payload::parse(br#"{"name":"a","namespace":"b","type":"confirm-promotion"}"#).unwrap();
        assert_eq!(p.hook_type(), Some("confirm-promotion"));
        let e = Payload::parse(br#"{"name":"a","type":"confirm-promtion"}"#).unwrap_err();
        assert!(e.contains("known types: confirm-rollout"), "{e}");
        assert!(Payload::parse(b"not json").is_err());
        assert!(Payload::parse(b"").is_err());
    }
}
