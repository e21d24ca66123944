//! Consul service mesh config entries (`consul.hashicorp.com/v1alpha1`), from consul-k8s's
//! CRDs in `../shared/crds/consul/`.

/// `ServiceDefaults`.
#[allow(missing_docs, clippy::all)]
pub mod servicedefaults;
/// `ServiceRouter`.
#[allow(missing_docs, clippy::all)]
pub mod servicerouters;
/// `ServiceSplitter`.
#[allow(missing_docs, clippy::all)]
pub mod servicesplitters;
