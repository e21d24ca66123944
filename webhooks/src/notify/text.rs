//! Text shared by the payloads: the subject line, the plain-text summary, body snippets.

use super::Message;

/// How many bytes of a refusing service's body an error keeps.
const SNIPPET_BYTES: usize = 200;

/// `<name>.<namespace>`, as Flagger names the canary in every message.
pub(super) fn subject(m: &Message) -> String {
    format!("{}.{}", m.canary, m.namespace)
}

/// One plain, link-free line with everything the message says, for clients that show no
/// attachments or cards (and for phone notifications): `<name>.<ns>: <text>; <Field>: <value>…`.
///
/// Slack shows `fallback` as plain text, so its link markup would show raw and a URL would be
/// a link: markup `<target|label>` keeps its label, `<target>` its target, and every
/// `scheme://` is dropped (`https://x.example/a` reads `x.example/a`). A `<` that opens no
/// link (`91.2 < 99`) stays.
pub(super) fn plain_summary(m: &Message) -> String {
    let mut out = format!("{}: {}", subject(m), unlink(&m.text));
    for (name, value) in &m.fields {
        out.push_str("; ");
        out.push_str(&unlink(name));
        out.push_str(": ");
        out.push_str(&unlink(value));
    }
    out
}

/// `s` without links: see [`plain_summary`].
pub(super) fn unlink(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('>').map(|close| (&after[..close], close)) {
            Some((inner, close)) if is_markup(inner) => {
                // `<target|label>` shows the label; `<target>` the target.
                out.push_str(inner.rsplit_once('|').map_or(inner, |(_, label)| label));
                rest = &after[close + 1..];
            }
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    strip_schemes(&out)
}

/// Whether `<inner>` is Slack link markup: a URL, `mailto:`, a channel, user or special
/// mention.
fn is_markup(inner: &str) -> bool {
    !inner.contains('<')
        && (inner.contains("://")
            || inner.starts_with("mailto:")
            || inner.starts_with(['#', '@', '!']))
}

/// `s` with every `scheme://` (a letter, then letters, digits, `+`, `-`, `.`) removed.
fn strip_schemes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("://") {
        let head = &rest[..at];
        let scheme = head
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(at, |(i, _)| i);
        // The scheme starts at its first letter.
        let scheme = head[scheme..]
            .find(|c: char| c.is_ascii_alphabetic())
            .map_or(at, |i| scheme + i);
        out.push_str(&head[..scheme]);
        if scheme == at {
            // No scheme before it: not a URL.
            out.push_str("://");
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out
}

/// The first bytes of a body (lossy UTF-8), for an error message.
pub(super) fn snippet(body: &[u8]) -> String {
    let cut = body.len().min(SNIPPET_BYTES);
    let mut s = String::from_utf8_lossy(&body[..cut]).into_owned();
    if body.len() > cut {
        s.push('…');
    }
    s
}

/// `s` with `&`, `<`, `>` and `"` escaped, for HTML-ish text (Google Chat's `textParagraph`).
pub(super) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use siskin_api::Severity;

    #[test]
    fn unlink_keeps_labels_and_drops_schemes() {
        assert_eq!(unlink("see <https://x.example/a|the run>"), "see the run");
        assert_eq!(unlink("at <https://x.example/a>"), "at x.example/a");
        assert_eq!(
            unlink("bare http://x.example/b and ftp://y"),
            "bare x.example/b and y"
        );
        assert_eq!(unlink("91.2 < 99 and 3 > 2"), "91.2 < 99 and 3 > 2");
        assert_eq!(unlink("<!here> <#C123|general>"), "!here general");
        assert_eq!(unlink("no links"), "no links");
    }

    #[test]
    fn summary_has_every_field() {
        let m = Message {
            canary: "podinfo".into(),
            namespace: "test".into(),
            severity: Severity::Error,
            text: "Failed checks threshold reached 2".into(),
            fields: vec![("request-success-rate".into(), "91.2 < 99".into())],
        };
        assert_eq!(
            plain_summary(&m),
            "podinfo.test: Failed checks threshold reached 2; request-success-rate: 91.2 < 99"
        );
    }

    #[test]
    fn snippet_cuts() {
        assert_eq!(snippet(b"short"), "short");
        assert_eq!(snippet(&[b'a'; 300]).chars().count(), SNIPPET_BYTES + 1);
    }
}
