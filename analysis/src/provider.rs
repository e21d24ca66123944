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
