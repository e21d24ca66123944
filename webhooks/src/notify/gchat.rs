//! Google Chat: a card message (the v1 `cards` shape Flagger sends) to a space's webhook URL.
//!
//! Unlike Flagger's, the header says "Siskin" and has no `imageUrl`: a notification should
//! not make every reader's client fetch an image from a third-party site.

use serde::Serialize;

use super::{Message, text};

/// A message with one card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct ChatMessage {
    cards: Vec<Card>,
}

/// The card: a header and one section for the text, then one per field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Card {
    header: Header,
    sections: Vec<Section>,
}

/// The card's header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Header {
    title: &'static str,
    subtitle: String,
}

/// A section with one text paragraph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Section {
    widgets: [Widget; 1],
}

/// A widget: a paragraph of Google Chat's small HTML subset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Widget {
    #[serde(rename = "textParagraph")]
    text_paragraph: Paragraph,
}

/// Paragraph text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Paragraph {
    text: String,
}

// === impl ChatMessage ===

impl ChatMessage {
    /// The card for `m`. User text is HTML-escaped: the paragraph is HTML.
    pub(super) fn new(m: &Message) -> Self {
        let mut sections = vec![Section::paragraph(format!(
            "<font color=\"#848484\"><strong>{}</strong></font>",
            text::escape_html(&m.text)
        ))];
        sections.extend(m.fields.iter().map(|(name, value)| {
            Section::paragraph(format!(
                "{}<br><font color=\"#848484\"><strong>{}</strong></font>",
                text::escape_html(name),
                text::escape_html(value)
            ))
        }));
        Self {
            cards: vec![Card {
                header: Header {
                    title: "Siskin",
                    subtitle: text::subject(m),
                },
                sections,
            }],
        }
    }
}

impl Section {
    fn paragraph(text: String) -> Self {
        Self {
            widgets: [Widget {
                text_paragraph: Paragraph { text },
            }],
        }
    }
}
