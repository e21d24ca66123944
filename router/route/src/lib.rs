//! Siskin's route model: what the built-in router does with a request, as data.
//!
//! The shape follows Gateway API `HTTPRoute` (hostnames, rules with matches, filters, weighted
//! backends, timeouts) so the operator speaks one language to Siskin's router and to external
//! gateways, plus what progressive delivery needs on top: retry policies, percentage mirrors and
//! two-sided session cookies. Nothing here does I/O: [`Table::select`] is a pure function from a
//! request and a random sample to a rule and a backend.

mod compile;
mod duration;
#[doc(hidden)]
pub mod fuzzing;
pub mod head;
mod model;
pub mod normalize;
mod report;
mod select;
mod stream;

pub use compile::{CompileError, CompiledRule, HeaderEdit, RuleFilter, RulePolicy, Table};
pub use duration::Duration;
pub use model::*;
pub use report::{
    BackendReport, ConfigReport, ConfigStatus, Role, Samples, SiskinRule, StatsReport, WindowStats,
    latency,
};
pub use select::{Selection, Sticky};
