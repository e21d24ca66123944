//! What the router reports on its admin port (`GET /config`, `GET /stats`) and the names both
//! sides agree on: the router serializes these types and the operator and the analysis read
//! them back with the same code, so a renamed field breaks the build, not a release.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Config;

/// The role of a backend in a release; the router's statistics are kept per role.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The version in service.
    #[default]
    Primary,
    /// The version being released.
    Canary,
    /// Requests that matched no route.
    None,
}

/// The rules Siskin's operator owns in a route, by name. Every other rule is the user's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SiskinRule {
    /// The weighted rule of a canary, blue/green or mirrored run.
    Canary,
    /// The rule of an A/B run: requests matching the conditions follow the weights.
    Ab,
    /// Everything an A/B rule did not match: all to the primary.
    Primary,
    /// Requests carrying the canary's session cookie: to the canary.
    StickyCanary,
    /// Requests carrying the primary's session cookie: to the primary.
    StickyPrimary,
    /// Requests carrying the previous run's cookie: answered with an expired cookie.
    StickyExpire,
}

/// `GET /config`: the configuration in service and how the router got it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigReport {
    /// Version in service (1 for the first configuration).
    pub generation: u64,
    /// How loading went.
    #[serde(default)]
    pub status: ConfigStatus,
    /// The configuration in service.
    pub config: Config,
}

/// What the router knows about its configuration source (field names as documented in
/// docs/router.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// The file (empty in Kubernetes mode).
    #[serde(default)]
    pub path: String,
    /// Version in service.
    #[serde(default)]
    pub generation: u64,
    /// The last load error, while the source stays bad (null when the source is good).
    #[serde(default)]
    pub last_error: Option<String>,
    /// Failed loads since start.
    #[serde(default)]
    pub errors_total: u64,
    /// Successful loads since start.
    #[serde(default)]
    pub reloads_total: u64,
}

/// `GET /stats`: live statistics per rule and backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsReport {
    /// Configuration version the statistics belong to.
    pub generation: u64,
    /// One entry per rule × backend.
    pub backends: Vec<BackendReport>,
    /// Requests that matched no route.
    pub unrouted: BackendReport,
}

/// Statistics of one backend of one rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendReport {
    /// Route name (`namespace/name` in Kubernetes mode).
    pub route: String,
    /// Rule label (`route/rule`).
    pub rule: String,
    /// Backend name.
    pub backend: String,
    /// Role of the backend.
    pub role: Role,
    /// The last 10 seconds.
    #[serde(rename = "window10s")]
    pub window_10s: WindowStats,
    /// The last minute.
    #[serde(rename = "window1m")]
    pub window_1m: WindowStats,
    /// Counts and latency histogram of the window asked for (`GET /stats?window=SECONDS`);
    /// absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<Samples>,
}

/// What the statistical judge compares: requests, failures and the latency histogram of one
/// backend over a window, in [`latency`]'s buckets. Samples of several rules or routers add up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    /// Seconds covered: the window rounded up to whole [`latency::SLOT_SECONDS`] slots, the
    /// current one counted as far as it has run.
    pub seconds: u64,
    /// Requests answered (or failed by the router).
    pub requests: u64,
    /// Requests that failed (5xx or a proxy error).
    pub failures: u64,
    /// Latency histogram, sparse: `[bucket, count]` for each non-empty bucket, bucket indexes
    /// as [`latency::bucket`] numbers them.
    pub latency: Vec<(u16, u64)>,
}

/// The latency buckets of [`Samples`]: four per doubling from 62.5 µs to 16.4 s, then one
/// overflow bucket, so neighbouring buckets differ by 19 % and a 20 % shift moves a request
/// about one bucket on.
pub mod latency {
    /// Buckets per doubling of latency.
    pub const PER_DOUBLING: u32 = 4;
    /// Upper bound of the first bucket, in milliseconds.
    pub const FIRST_UPPER_MS: f64 = 0.0625;
    /// Buckets with an upper bound (18 doublings above the first); one overflow bucket follows.
    pub const BOUNDED: usize = 73;
    /// Every bucket, the overflow one included.
    pub const BUCKETS: usize = BOUNDED + 1;
    /// The router keeps these samples in slots of this many seconds.
    pub const SLOT_SECONDS: u64 = 5;

    /// Upper bound of bucket `i` in milliseconds (None for the overflow bucket).
    pub fn upper_ms(i: usize) -> Option<f64> {
        (i < BOUNDED).then(|| FIRST_UPPER_MS * 2f64.powf(i as f64 / f64::from(PER_DOUBLING)))
    }

    /// Lower bound of bucket `i` in milliseconds (the first bucket's is taken one bucket
    /// width below its upper bound, for log-scale arithmetic).
    pub fn lower_ms(i: usize) -> f64 {
        FIRST_UPPER_MS * 2f64.powf((i as f64 - 1.0) / f64::from(PER_DOUBLING))
    }

    /// The bucket of a latency in milliseconds.
    pub fn bucket(ms: f64) -> usize {
        if ms.is_nan() || ms <= FIRST_UPPER_MS {
            return 0;
        }
        let i = ((ms / FIRST_UPPER_MS).log2() * f64::from(PER_DOUBLING)).ceil();
        // Guard the boundaries against rounding: a value equal to a bound is in that bucket.
        let mut i = if i.is_finite() { i as usize } else { BOUNDED };
        while i > 0 && upper_ms(i - 1).is_some_and(|lo| ms <= lo) {
            i -= 1;
        }
        while upper_ms(i).is_some_and(|hi| ms > hi) {
            i += 1;
        }
        i.min(BOUNDED)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn buckets_are_four_per_doubling() {
            assert_eq!(bucket(0.0), 0);
            assert_eq!(bucket(0.0625), 0);
            assert_eq!(bucket(0.0626), 1);
            assert_eq!(bucket(0.125), 4);
            assert_eq!(bucket(1.0), 16);
            assert_eq!(bucket(1.01), 17);
            assert_eq!(bucket(16384.0), 72);
            assert_eq!(bucket(16385.0), BOUNDED);
            assert_eq!(bucket(1e9), BOUNDED);
            for i in 0..BOUNDED {
                let hi = upper_ms(i).unwrap();
                assert_eq!(bucket(hi), i, "upper bound of {i}");
                assert_eq!(bucket(hi * 1.0001), i + 1);
                assert!((lower_ms(i + 1) - hi).abs() < 1e-9 * hi);
            }
            assert_eq!(upper_ms(BOUNDED), None);
        }
    }
}

/// A window's summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Window length in seconds.
    pub seconds: u64,
    /// Requests in the window.
    pub requests: u64,
    /// Requests per second.
    pub rate: f64,
    /// Percentage of requests that did not fail (no 5xx, no proxy error); None without requests.
    pub success_rate: Option<f64>,
    /// Median latency in milliseconds.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
}

// === impl Role ===

impl Role {
    /// The label value (`primary`, `canary`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Canary => "canary",
            Role::None => "none",
        }
    }

    /// The role of a Service Siskin generated: `<apex>-canary` is the canary, anything else
    /// serves as the primary.
    pub fn of_service(name: &str) -> Role {
        if name.ends_with("-canary") {
            Role::Canary
        } else {
            Role::Primary
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl SiskinRule ===

impl SiskinRule {
    /// Prefix of every rule name Siskin owns.
    pub const PREFIX: &'static str = "siskin-";

    /// Every rule, in the order Siskin writes them.
    pub const ALL: [SiskinRule; 6] = [
        SiskinRule::StickyCanary,
        SiskinRule::StickyPrimary,
        SiskinRule::StickyExpire,
        SiskinRule::Ab,
        SiskinRule::Canary,
        SiskinRule::Primary,
    ];

    /// The rule's name in the route.
    pub fn name(self) -> &'static str {
        match self {
            SiskinRule::Canary => "siskin-canary",
            SiskinRule::Ab => "siskin-ab",
            SiskinRule::Primary => "siskin-primary",
            SiskinRule::StickyCanary => "siskin-sticky-canary",
            SiskinRule::StickyPrimary => "siskin-sticky-primary",
            SiskinRule::StickyExpire => "siskin-sticky-expire",
        }
    }

    /// The rule of this name, if Siskin writes one.
    pub fn parse(name: &str) -> Option<SiskinRule> {
        SiskinRule::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Whether a rule of this name is Siskin's (any `siskin-` name, so rules of a newer
    /// version are not mistaken for the user's).
    pub fn is_owned(name: Option<&str>) -> bool {
        name.is_some_and(|n| n.starts_with(Self::PREFIX))
    }

    /// Whether this rule carries the release's split (the weights read back).
    pub fn carries_split(self) -> bool {
        matches!(self, SiskinRule::Canary | SiskinRule::Ab)
    }
}

impl fmt::Display for SiskinRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// === impl ConfigReport ===

impl ConfigReport {
    /// The relative weights (primary, canary) the split rule of `route` serves, summing the
    /// backends by role; None when the route or its split rule is not in service.
    pub fn served_weights(&self, route: &str) -> Option<(u64, u64)> {
        let rule = self
            .config
            .routes
            .iter()
            .filter(|r| r.name == route)
            .flat_map(|r| &r.rules)
            .find(|r| {
                r.name
                    .as_deref()
                    .and_then(SiskinRule::parse)
                    .is_some_and(SiskinRule::carries_split)
            })?;
        let role = |name: &str| {
            self.config
                .backends
                .iter()
                .find(|b| *b.name == *name)
                .and_then(|b| b.role)
                .unwrap_or(Role::Primary)
        };
        let mut w = (0, 0);
        for b in &rule.backend_refs {
            match role(&b.name) {
                Role::Canary => w.1 += u64::from(b.weight),
                _ => w.0 += u64::from(b.weight),
            }
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rule_names_round_trip() {
        for r in SiskinRule::ALL {
            assert_eq!(SiskinRule::parse(r.name()), Some(r));
            assert!(SiskinRule::is_owned(Some(r.name())));
        }
        assert!(!SiskinRule::is_owned(Some("mine")));
        assert!(!SiskinRule::is_owned(None));
    }

    #[test]
    fn reports_round_trip_through_json() {
        let r = StatsReport {
            generation: 3,
            backends: vec![BackendReport {
                route: "ns/app".into(),
                role: Role::Canary,
                window_10s: WindowStats {
                    seconds: 10,
                    requests: 5,
                    success_rate: Some(80.0),
                    ..Default::default()
                },
                ..Default::default()
            }],
            unrouted: BackendReport {
                role: Role::None,
                ..Default::default()
            },
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"window10s\"") && text.contains("\"role\":\"canary\""));
        assert_eq!(serde_json::from_str::<StatsReport>(&text).unwrap(), r);
    }
}
