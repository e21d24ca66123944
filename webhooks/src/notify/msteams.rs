//! Microsoft Teams: a legacy `MessageCard` to an incoming-webhook (or Workflows) URL.

use serde::Serialize;
use siskin_api::Severity;

use super::{Message, text};

/// A MessageCard with one section (Flagger's shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct MessageCard {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "@context")]
    context: &'static str,
    #[serde(rename = "themeColor")]
    theme_color: &'static str,
    summary: String,
    sections: Vec<Section>,
}

/// A card section: the message, the canary, and the fields as facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Section {
    #[serde(rename = "activityTitle")]
    activity_title: String,
    #[serde(rename = "activitySubtitle")]
    activity_subtitle: String,
    facts: Vec<Fact>,
}

/// A name/value fact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Fact {
    name: String,
    value: String,
}

// === impl MessageCard ===

impl MessageCard {
    /// The card for `m`: blue, or red for an error.
    pub(super) fn new(m: &Message) -> Self {
        let subject = text::subject(m);
        Self {
            kind: "MessageCard",
            context: "http://schema.org/extensions",
            theme_color: if m.severity == Severity::Error {
                "FF0000"
            } else {
                "0076D7"
            },
            summary: subject.clone(),
            sections: vec![Section {
                activity_title: m.text.clone(),
                activity_subtitle: subject,
                facts: m
                    .fields
                    .iter()
                    .map(|(name, value)| Fact {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            }],
        }
    }
}
