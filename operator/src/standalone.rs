//! `siskin run`, the standalone adapter: progressive delivery without Kubernetes — upstreams
//! listed in a file, the router in-process, the same driver, engine and checks as the operator.

pub mod processes;
pub mod routes;
pub mod run;
pub mod spec;
pub mod world;
