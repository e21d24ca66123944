//! The metrics-provider seam.

use std::time::Duration;

use siskin_route::Role;

/// Why a provider gave no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The query matched nothing (no traffic yet, or a wrong query).
    #[error("no values found")]
    NoValues,
    /// The query matched several series where one was expected.
    #[error("{0} series returned where one was expected")]
    MultipleValues(usize),
    /// Too few samples to judge.
    #[error("only {got} requests in the window (at least {need} needed)")]
    TooFewSamples {
        /// Samples seen.
        got: u64,
        /// Samples needed.
        need: u64,
    },
    /// The provider could not be reached.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The provider refused the credentials (or has none for this caller).
    #[error("credentials refused with status {status}: {body}")]
    Unauthorized {
        /// HTTP status (401, 403).
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// The provider refused the query itself (a syntax error, an unknown function).
    #[error("bad query: {0}")]
    BadQuery(String),
    /// The provider is not set up well enough to ask (no address, a missing secret key).
    #[error("not configured: {0}")]
    Config(String),
    /// The provider answered with an error.
    #[error("rejected with status {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// The answer could not be read.
    #[error("cannot decode the answer: {0}")]
    Decode(String),
}

// === impl ProviderError ===

impl ProviderError {
    /// The query matched nothing (or too little): no data, not a broken check.
    pub fn is_no_data(&self) -> bool {
        matches!(
            self,
            ProviderError::NoValues | ProviderError::TooFewSamples { .. }
        )
    }

    /// A closed set of labels for metrics and conditions.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::NoValues | ProviderError::TooFewSamples { .. } => "no_data",
            ProviderError::MultipleValues(_) => "multiple_values",
            ProviderError::Unreachable(_) => "unreachable",
            ProviderError::Unauthorized { .. } => "unauthorized",
            ProviderError::BadQuery(_) => "bad_query",
            ProviderError::Config(_) => "not_configured",
            ProviderError::Rejected { .. } => "rejected",
            ProviderError::Decode(_) => "decode",
        }
    }

    /// The first `n` characters of a response body, for messages.
    pub fn snippet(body: &[u8]) -> String {
        String::from_utf8_lossy(body).chars().take(300).collect()
    }
}

/// A built-in check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinMetric {
    /// Percentage of requests that did not fail.
    SuccessRate,
    /// 99th percentile latency in milliseconds.
    DurationP99,
}

/// What to measure.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    /// A built-in metric of the canary.
    Builtin {
        /// Which one.
        metric: BuiltinMetric,
        /// The route (`namespace/name` in the router).
        route: String,
        /// Backend role (the canary's, or the primary's for a comparison).
        backend: Role,
        /// Window.
        window: Duration,
    },
    /// The statistical judge: the canary's samples against the primary's.
    Judge {
        /// Latency or errors.
        kind: crate::judge::JudgeKind,
        /// The route (`namespace/name` in the router).
        route: String,
        /// Window (at most the router's minute).
        window: Duration,
    },
    /// A rendered provider query (PromQL, …).
    Text(String),
}

/// A source of metric values. Implementations are dyn-dispatched per check, never on the
/// router's request path.
#[async_trait::async_trait]
pub trait MetricsProvider: Send + Sync {
    /// Runs a query; exactly one value or an error.
    async fn query(&self, query: &Query) -> Result<f64, ProviderError>;
    /// Whether the provider answers at all (Flagger's `IsOnline`).
    async fn health(&self) -> Result<(), ProviderError>;
}
