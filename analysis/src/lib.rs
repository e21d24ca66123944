//! Siskin's checks.
//!
//! A check turns a metric into a verdict: [`resolve`] says what each metric asks and where
//! (pure: `siskin render --queries` prints it), [`MetricsProvider`]s fetch values (one file
//! each, chosen by the explicit [`registry`], which refuses types it has no implementation
//! for), and [`check::assess`] is pure (value, range → pass, fail; no data or error — never a
//! pass). [`Analyzer`] puts them together behind the driver's [`MetricSource`] seam.

pub mod check;
pub mod judge;
pub mod observers;
pub mod provider;
pub mod providers;
pub mod registry;
pub mod resolve;
pub mod source;
pub mod template;

pub use check::{Range, assess, assess_measurement};
pub use provider::{BuiltinMetric, MetricsProvider, ProviderError, Query};
pub use resolve::{ProviderSpec, Resolved, Source, resolve};
pub use source::{Analyzer, Measurement, MetricSource, NoSecrets, RouterStats, Secrets};
pub use template::{TemplateError, Vars};
