//! Gateway API (`gateway.networking.k8s.io`, standard channel), from the CRDs in
//! `../shared/crds/gateway-api/`.

/// `GRPCRoute` at `v1`.
#[allow(missing_docs, clippy::all)]
pub mod grpcroutes;
/// `HTTPRoute` at `v1` (the `v1beta1` schema is the same; only the version differs).
#[allow(missing_docs, clippy::all)]
pub mod httproutes;
