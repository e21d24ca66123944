//! Istio networking (`networking.istio.io`), from `../shared/crds/istio/` (Istio 1.30), at
//! `v1beta1`, the version Flagger writes (served by every Istio since 1.5).

/// `DestinationRule`.
#[allow(missing_docs, clippy::all)]
pub mod destinationrules;
/// `VirtualService`.
#[allow(missing_docs, clippy::all)]
pub mod virtualservices;
