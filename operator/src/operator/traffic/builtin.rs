//! `builtin`: Siskin's own router. The apex Service has no selector; its endpoints are the
//! router pods (mirrored from the router Service's EndpointSlices), so in-cluster clients of
//! the apex reach a router, which finds the `HTTPRoute` whose parent is that Service and splits
//! between `<apex>-primary` and `<apex>-canary`.

use async_trait::async_trait;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use siskin_engine::Split;

use super::{TrafficBackend, httproute};
use crate::operator::{Error, FIELD_MANAGER, context::Target, fleet::RouterFleet, services};

/// The built-in router backend.
pub struct Builtin;

const SLICE_SUFFIX: &str = "-siskin-router";

/// The router's ready endpoints grouped by address type, with its `http` port.
pub async fn router_endpoints(
    t: &Target,
    port_name: &str,
) -> Result<Vec<(String, Vec<String>, i32)>, Error> {
    let (ns, name) = &t.settings.router_service;
    let api: Api<EndpointSlice> = Api::namespaced(t.client.clone(), ns);
    let slices = api
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await
        .map_err(Error::kube(format!(
            "list EndpointSlices of Service {ns}/{name}"
        )))?;
    let mut out: Vec<(String, Vec<String>, i32)> = Vec::new();
    for s in slices.items {
        let Some(port) = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(port_name))
            .and_then(|p| p.port)
        else {
            continue;
        };
        let addrs: Vec<String> = s
            .endpoints
            .iter()
            .flatten()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .flat_map(|e| e.addresses.clone())
            .collect();
        match out
            .iter_mut()
            .find(|(kind, _, p)| *kind == s.address_type && *p == port)
        {
            Some(entry) => entry.1.extend(addrs),
            None => out.push((s.address_type.clone(), addrs, port)),
        }
    }
    Ok(out)
}

async fn mirror_router_endpoints(t: &Target) -> Result<(), Error> {
    let groups = router_endpoints(t, "http").await?;
    if groups.iter().all(|g| g.1.is_empty()) {
        tracing::warn!(
            router = %format!("{}/{}", t.settings.router_service.0, t.settings.router_service.1),
            "the router Service has no ready endpoints: traffic to the apex Service has nowhere to go"
        );
    }
    let api: Api<EndpointSlice> = Api::namespaced(t.client.clone(), &t.ns);
    for (kind, addrs, port) in groups {
        let name = format!("{}{SLICE_SUFFIX}-{}", t.apex, kind.to_ascii_lowercase());
        let endpoints: Vec<Value> = addrs
            .iter()
            .map(|a| json!({"addresses": [a], "conditions": {"ready": true, "serving": true, "terminating": false}}))
            .collect();
        let body = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": t.ns,
                "labels": {
                    "kubernetes.io/service-name": t.apex,
                    "endpointslice.kubernetes.io/managed-by": "siskin.dev",
                },
                "ownerReferences": [t.owner()?],
            },
            "addressType": kind,
            "endpoints": endpoints,
            "ports": [{"name": t.port_name(), "port": port, "protocol": "TCP"}],
        });
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::kube(format!("apply EndpointSlice {}/{name}", t.ns)))?;
    }
    Ok(())
}

#[async_trait]
impl TrafficBackend for Builtin {
    async fn apply(&self, t: &Target, split: &Split) -> Result<(), Error> {
        services::apply(t, &t.apex, None).await?;
        mirror_router_endpoints(t).await?;
        let parent = json!({"group": "", "kind": "Service", "name": t.apex, "port": t.port()?});
        // The router answers for the Service's DNS names (its parent); no hostnames needed.
        httproute::apply(t, &httproute::resource("v1"), vec![parent], &[], split).await
    }

    /// The split as the routers serve it: the route as written, unless a router has not
    /// loaded it yet (then its own weights, so nothing is scaled down before every router
    /// moved).
    async fn current(&self, t: &Target) -> Result<Option<Split>, Error> {
        let Some(written) = httproute::current(t, &httproute::resource("v1")).await? else {
            return Ok(None);
        };
        let fleet = RouterFleet::new(t.client.clone(), t.settings.router_service.clone(), 0);
        let route = format!("{}/{}", t.ns, t.apex);
        let served = match fleet.served_weights(&route).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the routers' configuration");
                return Ok(Some(Split::weights(0, 100)));
            }
        };
        for s in served {
            let Some((p, c)) = s else {
                // Not loaded yet: nothing is in place on this router.
                return Ok(Some(Split::weights(0, 100)));
            };
            let total = (p + c).max(1);
            let canary = u8::try_from(c * 100 / total).unwrap_or(0);
            if canary != written.canary {
                return Ok(Some(Split::weights(100 - canary, canary)));
            }
        }
        Ok(Some(written))
    }

    async fn revert(&self, t: &Target) -> Result<(), Error> {
        httproute::remove(t, &httproute::resource("v1")).await?;
        let api: Api<EndpointSlice> = Api::namespaced(t.client.clone(), &t.ns);
        let ours = api
            .list(&ListParams::default().labels(&format!(
                "kubernetes.io/service-name={},endpointslice.kubernetes.io/managed-by=siskin.dev",
                t.apex
            )))
            .await
            .map_err(Error::kube(format!(
                "list EndpointSlices of {}/{}",
                t.ns, t.apex
            )))?;
        for s in ours.items {
            let name = s.metadata.name.unwrap_or_default();
            api.delete(&name, &Default::default())
                .await
                .map_err(Error::kube(format!("delete EndpointSlice {}/{name}", t.ns)))?;
        }
        services::point_apex(t, t.canary_selector()).await
    }
}
