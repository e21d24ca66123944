//! `gatewayapi:v1` and `gatewayapi:v1beta1`: the same `HTTPRoute` as `builtin`, attached to the
//! Gateways in `service.gatewayRefs` of an external Gateway API implementation. The apex
//! Service selects the primary's pods.

use async_trait::async_trait;
use kube::api::ApiResource;
use serde_json::json;
use siskin_engine::Split;

use super::{TrafficBackend, httproute};
use crate::operator::{Error, context::Target, services};

/// The Gateway API backend at one version.
pub struct GatewayApi {
    resource: ApiResource,
}

impl GatewayApi {
    /// `gateway.networking.k8s.io/v1`.
    pub fn v1() -> Self {
        GatewayApi {
            resource: httproute::resource("v1"),
        }
    }

    /// `gateway.networking.k8s.io/v1beta1`.
    pub fn v1beta1() -> Self {
        GatewayApi {
            resource: httproute::resource("v1beta1"),
        }
    }
}

#[async_trait]
impl TrafficBackend for GatewayApi {
    async fn apply(&self, t: &Target, split: &Split) -> Result<(), Error> {
        let refs = t
            .canary
            .spec
            .service
            .as_ref()
            .and_then(|s| s.gateway_refs.clone())
            .unwrap_or_default();
        if refs.is_empty() {
            return Err(Error::Invalid {
                field: "spec.service.gatewayRefs".into(),
                message: "the gatewayapi provider needs at least one Gateway to attach the route to; list it here (name, namespace)".into(),
            });
        }
        services::apply(t, &t.apex, Some(t.primary_selector())).await?;
        let parents = refs
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_else(|_| json!({"name": r.name})))
            .collect();
        // `service.hosts` are the route's hostnames, as with Flagger's Gateway API provider.
        let hosts = t
            .canary
            .spec
            .service
            .as_ref()
            .and_then(|s| s.hosts.clone())
            .unwrap_or_default();
        httproute::apply(t, &self.resource, parents, &hosts, split).await
    }

    /// The written split once every Gateway that reports on the route (`status.parents`) has
    /// accepted its current generation; before that, nothing counts as in place.
    async fn current(&self, t: &Target) -> Result<Option<Split>, Error> {
        let Some(split) = httproute::current(t, &self.resource).await? else {
            return Ok(None);
        };
        if httproute::accepted_by_parents(t, &self.resource).await? {
            Ok(Some(split))
        } else {
            Ok(Some(Split::weights(0, 100)))
        }
    }

    async fn revert(&self, t: &Target) -> Result<(), Error> {
        httproute::remove(t, &self.resource).await?;
        services::point_apex(t, t.canary_selector()).await
    }
}
