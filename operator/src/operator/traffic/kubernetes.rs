//! `kubernetes`: blue/green without a router; the apex Service selects either the primary's or
//! the canary's pods.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use siskin_engine::Split;

use super::TrafficBackend;
use crate::operator::{Error, context::Target, services};

/// The Service-selector backend.
pub struct Kubernetes;

#[async_trait]
impl TrafficBackend for Kubernetes {
    async fn apply(&self, t: &Target, split: &Split) -> Result<(), Error> {
        let selector = if split.canary == 100 {
            t.canary_selector()
        } else {
            t.primary_selector()
        };
        services::apply(t, &t.apex, Some(selector)).await
    }

    async fn current(&self, t: &Target) -> Result<Option<Split>, Error> {
        let api: Api<Service> = Api::namespaced(t.client.clone(), &t.ns);
        let Some(svc) = api
            .get_opt(&t.apex)
            .await
            .map_err(Error::kube(format!("get Service {}/{}", t.ns, t.apex)))?
        else {
            return Ok(None);
        };
        let selector = svc.spec.and_then(|s| s.selector).unwrap_or_default();
        let (k, v) = t.canary_selector();
        Ok(Some(if selector.get(&k) == Some(&v) {
            Split::weights(0, 100)
        } else {
            Split::primary_only()
        }))
    }

    async fn revert(&self, t: &Target) -> Result<(), Error> {
        services::point_apex(t, t.canary_selector()).await
    }
}
