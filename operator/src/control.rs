//! Where the CLI (and the dashboard) put a user's hand on a release, and how the operator and
//! `siskin run` read it back: annotations on the Canary, which Flux and Argo CD leave alone
//! because the Git copy does not name them (server-side apply keeps fields another manager
//! owns; client-side `kubectl apply` only prunes what it applied itself), or a JSON file
//! beside a `siskin run` file holding the same two values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use siskin_engine::{Control, Request, RequestAction};

/// Present: the release is paused; the value says who paused it and why.
pub const PAUSE_ANNOTATION: &str = "siskin.dev/pause";

/// The last one-shot request, as JSON: `{"id": "...", "action": "promote", "by": "..."}`.
pub const REQUEST_ANNOTATION: &str = "siskin.dev/request";

/// The request as written in [`REQUEST_ANNOTATION`] and in a `siskin run` control file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDoc {
    /// Unique per request.
    pub id: String,
    /// `promote`, `abort` or `retry`.
    pub action: String,
    /// Who asked.
    #[serde(default)]
    pub by: String,
}

/// What a `siskin run` control file holds (`<file>.control.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlDoc {
    /// Who paused and why; absent when not paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
    /// The last request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestDoc>,
}

/// A request that cannot be read: the field and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidControl {
    /// Where (`metadata.annotations[siskin.dev/request]`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl RequestDoc {
    /// A new request of `action` by `by`, with an id unique to this moment.
    pub fn new(action: RequestAction, by: &str) -> RequestDoc {
        let now = jiff::Timestamp::now();
        RequestDoc {
            id: format!("{}-{:04x}", now, rand_suffix(now)),
            action: action.name().to_string(),
            by: by.to_string(),
        }
    }
}

fn rand_suffix(now: jiff::Timestamp) -> u16 {
    // Distinct ids for two requests in the same nanosecond from different processes.
    let pid = std::process::id();
    (now.subsec_nanosecond().unsigned_abs() ^ pid.rotate_left(7)) as u16
}

impl ControlDoc {
    /// The control as the engine takes it; `field` names where the request was read.
    pub fn control(&self, field: &str) -> Result<Control, InvalidControl> {
        let request = match &self.request {
            None => None,
            Some(r) => {
                let action = RequestAction::parse(&r.action).ok_or_else(|| InvalidControl {
                    field: field.to_string(),
                    message: format!(
                        "action {:?} is not one of promote, abort, retry; write it with `siskin promote|abort|retry`",
                        r.action
                    ),
                })?;
                if r.id.is_empty() {
                    return Err(InvalidControl {
                        field: field.to_string(),
                        message: "id is empty; write the request with `siskin promote|abort|retry`"
                            .to_string(),
                    });
                }
                Some(Request {
                    id: r.id.clone(),
                    action,
                    by: if r.by.is_empty() {
                        "an unnamed user".to_string()
                    } else {
                        r.by.clone()
                    },
                })
            }
        };
        Ok(Control {
            paused: self.pause.clone().map(|p| {
                if p.is_empty() {
                    "an unnamed user".to_string()
                } else {
                    p
                }
            }),
            request,
        })
    }
}

/// The control a Canary's annotations hold.
pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<Control, InvalidControl> {
    let field = format!("metadata.annotations[{REQUEST_ANNOTATION}]");
    let request = match annotations.get(REQUEST_ANNOTATION) {
        None => None,
        Some(text) => Some(serde_json::from_str::<RequestDoc>(text).map_err(|e| {
            InvalidControl {
                field: field.clone(),
                message: format!(
                    "not a request ({e}); expected {{\"id\": \"...\", \"action\": \"promote|abort|retry\", \"by\": \"...\"}} as `siskin promote|abort|retry` writes it, or remove the annotation"
                ),
            }
        })?),
    };
    ControlDoc {
        pause: annotations.get(PAUSE_ANNOTATION).cloned(),
        request,
    }
    .control(&field)
}

/// One hand on a release, as the CLI and the dashboard write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Pause (`Some(who: why)`) or resume (`None`).
    Pause(Option<String>),
    /// A one-shot request.
    Request(RequestDoc),
}

/// The pause annotation's value: who paused, and why when given.
pub fn pause_value(who: &str, reason: Option<&str>) -> String {
    match reason.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => format!("{who}: {r}"),
        None => who.to_string(),
    }
}

impl Change {
    /// The annotations a merge patch sets (`null` removes the pause).
    pub fn annotations(&self) -> serde_json::Value {
        match self {
            Change::Pause(v) => serde_json::json!({ PAUSE_ANNOTATION: v }),
            Change::Request(doc) => serde_json::json!({
                REQUEST_ANNOTATION: serde_json::to_string(doc).unwrap_or_default()
            }),
        }
    }

    /// The same change in a `siskin run` control file.
    pub fn apply_to(&self, doc: &mut ControlDoc) {
        match self {
            Change::Pause(v) => doc.pause = v.clone(),
            Change::Request(r) => doc.request = Some(r.clone()),
        }
    }

    /// Writes it on the Canary: a merge patch of annotations only, so nothing a GitOps tool
    /// applies is touched.
    pub async fn write(
        &self,
        api: &kube::Api<siskin_api::Canary>,
        name: &str,
    ) -> Result<(), kube::Error> {
        api.patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                serde_json::json!({"metadata": {"annotations": self.annotations()}}),
            ),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn annotations_round_trip() {
        let doc = RequestDoc::new(RequestAction::Promote, "alice");
        let a = BTreeMap::from([
            (
                PAUSE_ANNOTATION.to_string(),
                "bob: waiting for QA".to_string(),
            ),
            (
                REQUEST_ANNOTATION.to_string(),
                serde_json::to_string(&doc).unwrap(),
            ),
        ]);
        let c = from_annotations(&a).unwrap();
        assert_eq!(c.paused.as_deref(), Some("bob: waiting for QA"));
        let r = c.request.unwrap();
        assert_eq!(
            (r.action, r.by.as_str(), r.id),
            (RequestAction::Promote, "alice", doc.id)
        );
    }

    #[test]
    fn a_bad_request_names_the_annotation_and_the_fix() {
        let a = BTreeMap::from([(REQUEST_ANNOTATION.to_string(), "promote".to_string())]);
        let e = from_annotations(&a).unwrap_err().to_string();
        assert!(
            e.starts_with("metadata.annotations[siskin.dev/request]: not a request"),
            "{e}"
        );
        let a = BTreeMap::from([(
            REQUEST_ANNOTATION.to_string(),
            r#"{"id": "1", "action": "rollback"}"#.to_string(),
        )]);
        let e = from_annotations(&a).unwrap_err().to_string();
        assert!(
            e.contains("\"rollback\" is not one of promote, abort, retry"),
            "{e}"
        );
    }
}
