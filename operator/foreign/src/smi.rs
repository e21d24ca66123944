//! SMI `TrafficSplit` (`split.smi-spec.io`): `v1alpha1` and `v1alpha2` from linkerd-smi's CRD,
//! `v1alpha3` from smi-sdk-go's, in `../shared/crds/smi/`.

/// `v1alpha1`: weights are quantities (`IntOrString`).
#[allow(missing_docs, clippy::all)]
pub mod v1alpha1;
/// `v1alpha2`: weights are numbers.
#[allow(missing_docs, clippy::all)]
pub mod v1alpha2;
/// `v1alpha3`: weights are numbers; optional `matches`.
#[allow(missing_docs, clippy::all)]
pub mod v1alpha3;
