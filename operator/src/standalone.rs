//! Progressive delivery without Kubernetes: upstreams listed in a file, the router in-process,
//! the same engine and checks as the operator.

pub mod driver;
pub mod processes;
pub mod spec;
