//! Siskin's built-in L7 router.
//!
//! A hyper 1.x proxy for HTTP/1.1 and HTTP/2 (h2c, gRPC with trailers, WebSocket upgrades)
//! that routes by [`siskin_route`] tables. The request path reads the current configuration
//! through an `ArcSwap` and records statistics with atomics: it takes no lock a configuration
//! update holds, and a new configuration applies to the next request.

pub mod admin;
pub mod config;
pub mod conn;
pub mod error;
pub mod h1;
pub mod h1server;
pub mod kube_source;
pub mod proxy;
pub mod server;
pub mod state;
pub mod stats;
pub mod tls;
pub mod upstream;

pub use error::ErrorKind;
pub use server::{H2Limits, Options, Router, Source, TlsListener};
/// Request path normalization (in [`siskin_route`], beside the matching it protects).
pub use siskin_route::normalize;
