//! Siskin's one driver, shared by `siskin operator` (Kubernetes objects), `siskin run` (a file
//! and processes) and the tests (recording fakes).
//!
//! A step observes the world through the [`Platform`] and [`Traffic`] seams, asks the engine
//! what to do ([`siskin_engine::step`], run again for each [`siskin_engine::Need`]: gate
//! webhooks through [`Webhooks`], the analysis through [`siskin_analysis::MetricsProvider`]),
//! executes the actions in order — routing through [`Traffic`] as a [`RoutingIntent`],
//! workloads through [`Platform`], events and alerts through [`Events`] and [`Notifier`] — and
//! persists the status through [`StatusStore`]. Between steps, [`watch_critical`] reads the
//! critical checks on live data so a failing canary is rolled back in seconds.
//!
//! Nothing here knows Kubernetes or files: a feature written once behaves the same in every
//! world.

pub mod checks;
mod driver;
mod error;
mod intent;
mod seams;

pub use driver::{CONFIRM_TIMEOUT, Outcome, Release, Seams, gate, step, watch_critical};
pub use error::{BoxError, Error, Result};
pub use intent::{
    Cookies, RoutingIntent, Timeouts, Unmatchable, merge, regex_escape, session_cookie,
};
pub use seams::{
    Clock, Events, Notification, Notifier, Payload, Platform, StatusStore, SystemClock, Traffic,
    Webhooks, Workloads,
};
