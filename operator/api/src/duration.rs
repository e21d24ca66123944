//! Durations as Flagger writes them (`30s`, `1m`, `1m30s`, `500ms`, `2h`).
//!
//! Flagger parses these with Go's `time.ParseDuration`; the CRD pattern `^[0-9]+(m|s)` only
//! anchors the start. We accept the same integer forms Go accepts (`h`, `m`, `s`, `ms`
//! components, in any order) and reject everything else with a message, never a silent default.

use std::time::Duration;

/// The CRD pattern Flagger uses for interval and timeout fields.
pub const PATTERN: &str = "^[0-9]+(m|s)";

/// A duration string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (write it like 30s, 1m, 1m30s or 500ms)")]
pub struct ParseDurationError {
    /// The text that was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a Go-style duration made of integer components (`1h2m3s`, `250ms`).
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let err = |reason| ParseDurationError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("each component must start with a whole number"));
        }
        let (num, tail) = rest.split_at(digits);
        let value: u64 = num.parse().map_err(|_| err("the number is too large"))?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit {
            "h" => value.checked_mul(3600).map(Duration::from_secs),
            "m" => value.checked_mul(60).map(Duration::from_secs),
            "s" => Some(Duration::from_secs(value)),
            "ms" => Some(Duration::from_millis(value)),
            "" => return Err(err("a unit (h, m, s or ms) is missing")),
            _ => return Err(err("the unit must be h, m, s or ms")),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| err("the duration is too large"))?;
        rest = tail;
    }
    Ok(total)
}

/// Formats a duration the way Flagger users write it (`90s` → `1m30s`).
pub fn format(d: Duration) -> String {
    let ms = d.subsec_millis();
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || (out.is_empty() && ms == 0) {
        out.push_str(&format!("{s}s"));
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn rejects_garbage_with_reason() {
        for bad in ["", "m", "10", "1d", "1.5m", "-1s", "1m x"] {
            let e = parse(bad).unwrap_err();
            assert!(e.to_string().contains("invalid duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["30s", "1m", "1m30s", "2h", "500ms", "0s", "1h1m1s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
