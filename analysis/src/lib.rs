//! Siskin's checks.
//!
//! A check turns a metric into a verdict: [`check::assess`] is pure (value, range → pass,
//! fail, or inconclusive when there is no data — never a pass), and [`MetricsProvider`]s fetch
//! values. Providers are chosen through an explicit registry ([`registry::provider`]) that
//! refuses names it does not know.

pub mod check;
pub mod provider;
pub mod providers;
pub mod registry;

pub use check::{Range, assess};
pub use provider::{BuiltinMetric, MetricsProvider, ProviderError, Query};
