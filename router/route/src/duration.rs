//! Durations written as `250ms`, `10s`, `1m`, `1m30s`.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A non-negative duration with Gateway API's text form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

/// A duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: write it like 250ms, 10s, 1m or 1m30s")]
pub struct ParseDurationError(pub String);

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDurationError(s.to_string());
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(err());
        }
        let mut total = std::time::Duration::ZERO;
        while !rest.is_empty() {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (num, tail) = rest.split_at(n);
            let value: u64 = num.parse().map_err(|_| err())?;
            let u = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
            let (unit, tail) = tail.split_at(u);
            total += match unit {
                "h" => std::time::Duration::from_secs(value.saturating_mul(3600)),
                "m" => std::time::Duration::from_secs(value.saturating_mul(60)),
                "s" => std::time::Duration::from_secs(value),
                "ms" => std::time::Duration::from_millis(value),
                _ => return Err(err()),
            };
            rest = tail;
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
