//! Rocket.Chat: the Slack payload to an incoming-webhook integration, in hex colours.

use super::{NotifyError, slack::Colours, text};

/// Rocket.Chat's colours (it does not know Slack's `good`/`danger`).
pub(super) const COLOURS: Colours = Colours {
    ok: "#0076D7",
    error: "#FF0000",
};

/// A 2xx reply is `{"success": true}`; one that says `"success": false` is a refusal.
pub(super) fn check_reply(status: u16, reply: &[u8]) -> Result<(), NotifyError> {
    let refused = serde_json::from_slice::<serde_json::Value>(reply)
        .ok()
        .and_then(|v| v.get("success").and_then(serde_json::Value::as_bool))
        == Some(false);
    if refused {
        return Err(NotifyError::Refused {
            service: "Rocket.Chat",
            status,
            body: text::snippet(reply),
        });
    }
    Ok(())
}
