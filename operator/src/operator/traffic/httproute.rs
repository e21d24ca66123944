//! The Gateway API `HTTPRoute` Siskin writes for the `builtin` and `gatewayapi` backends: rules
//! it owns are named `siskin-*`; every other rule of the route is the user's and is kept.

use kube::{
    Api, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, PostParams},
};
use serde_json::{Value, json};
use siskin_api::service::{HttpMatchRequest, StringMatch};
use siskin_engine::Split;

use crate::operator::{Error, context::Target};

/// Prefix of the rule names Siskin owns.
pub const RULE_PREFIX: &str = "siskin-";

/// `HTTPRoute` at a version (`v1`, `v1beta1`).
pub fn resource(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", version, "HTTPRoute"),
        "httproutes",
    )
}

fn string_match(m: &StringMatch) -> (&'static str, String) {
    if let Some(v) = &m.exact {
        ("Exact", v.clone())
    } else if let Some(v) = &m.prefix {
        ("RegularExpression", format!("^{}.*", regex_escape(v)))
    } else if let Some(v) = &m.suffix {
        ("RegularExpression", format!(".*{}$", regex_escape(v)))
    } else {
        ("RegularExpression", m.regex.clone().unwrap_or_default())
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A Flagger match (Istio's shape) as a Gateway API `HTTPRouteMatch`.
pub fn to_match(m: &HttpMatchRequest) -> Value {
    let mut out = json!({});
    if let Some(uri) = &m.uri {
        let (kind, value) = match (&uri.exact, &uri.prefix) {
            (Some(v), _) => ("Exact", v.clone()),
            (None, Some(v)) => ("PathPrefix", v.clone()),
            _ => string_match(uri),
        };
        out["path"] = json!({"type": kind, "value": value});
    }
    if let Some(method) = m.method.as_ref().and_then(|mm| mm.exact.clone()) {
        out["method"] = json!(method);
    }
    let pairs = |map: &std::collections::BTreeMap<String, StringMatch>| -> Vec<Value> {
        map.iter()
            .map(|(name, sm)| {
                let (kind, value) = string_match(sm);
                json!({"type": kind, "name": name, "value": value})
            })
            .collect()
    };
    if let Some(h) = &m.headers {
        out["headers"] = json!(pairs(h));
    }
    if let Some(q) = &m.query_params {
        out["queryParams"] = json!(pairs(q));
    }
    out
}

/// The rules Siskin owns for `split`.
pub fn rules(t: &Target, split: &Split) -> Result<Vec<Value>, Error> {
    let port = t.port()?;
    let spec = &t.canary.spec;
    let backends = |p: u8, c: u8| {
        json!([
            {"group": "", "kind": "Service", "name": spec.primary_service_name(), "port": port, "weight": p},
            {"group": "", "kind": "Service", "name": spec.canary_service_name(), "port": port, "weight": c},
        ])
    };
    let timeout = spec.service.as_ref().and_then(|s| s.timeout.clone());
    let decorate = |mut rule: Value| {
        if let Some(tm) = &timeout {
            rule["timeouts"] = json!({"request": tm});
        }
        rule
    };
    let mut filters = Vec::new();
    if let Some(pct) = split.mirror {
        filters.push(json!({
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"group": "", "kind": "Service", "name": spec.canary_service_name(), "port": port},
                "percent": pct,
            },
        }));
    }
    if split.matches.is_empty() {
        let Some(sticky) = &split.sticky else {
            return Ok(vec![decorate(json!({
                "name": format!("{RULE_PREFIX}canary"),
                "filters": filters,
                "backendRefs": backends(split.primary, split.canary),
            }))]);
        };
        return Ok(sticky_rules(t, split, sticky, filters, backends, decorate));
    }
    let matches: Vec<Value> = split.matches.iter().map(to_match).collect();
    Ok(vec![
        decorate(json!({
            "name": format!("{RULE_PREFIX}ab"),
            "matches": matches,
            "filters": filters,
            "backendRefs": backends(split.primary, split.canary),
        })),
        decorate(json!({
            "name": format!("{RULE_PREFIX}primary"),
            "backendRefs": backends(100, 0),
        })),
    ])
}

/// Session affinity in standard Gateway API terms (as Flagger writes it): each backendRef adds
/// its cookie to its responses, and a request carrying a cookie matches a rule that sends it
/// back to that side; the previous run's cookie is expired when it is seen.
fn sticky_rules(
    t: &Target,
    split: &Split,
    sticky: &siskin_engine::Sticky,
    filters: Vec<Value>,
    backends: impl Fn(u8, u8) -> Value,
    decorate: impl Fn(Value) -> Value,
) -> Vec<Value> {
    let analysis = t.canary.spec.analysis();
    let sa = analysis.session_affinity.as_ref();
    let interval = i64::try_from(analysis.interval().as_secs()).unwrap_or(60);
    let canary =
        crate::cookies::session_cookie(sticky.canary.as_deref(), sa.map(|s| s.max_age()), sa);
    let primary = crate::cookies::session_cookie(sticky.primary.as_deref(), Some(interval), sa);
    let set_cookie = |c: &Option<siskin_route::SessionCookie>| -> Value {
        match c {
            Some(c) => json!([{"type": "ResponseHeaderModifier",
                "responseHeaderModifier": {"add": [{"name": "Set-Cookie", "value": c.to_header()}]}}]),
            None => json!([]),
        }
    };
    let mut weighted = backends(split.primary, split.canary);
    weighted[0]["filters"] = set_cookie(&primary);
    weighted[1]["filters"] = set_cookie(&canary);
    let carrying = |pair: &str| {
        json!([{"headers": [{"type": "RegularExpression", "name": "Cookie",
            "value": format!("^(.*;\\s*)?{}(;.*)?$", regex_escape(pair))}]}])
    };
    let mut rules = Vec::new();
    if let (Some(pair), true) = (sticky.canary.as_deref(), split.canary > 0) {
        rules.push(decorate(json!({
            "name": format!("{RULE_PREFIX}sticky-canary"),
            "matches": carrying(pair),
            "backendRefs": backends(0, 100),
        })));
    }
    if let (Some(pair), true) = (sticky.primary.as_deref(), split.primary > 0) {
        rules.push(decorate(json!({
            "name": format!("{RULE_PREFIX}sticky-primary"),
            "matches": carrying(pair),
            "backendRefs": backends(100, 0),
        })));
    }
    if let Some(pair) = sticky.previous.as_deref() {
        let mut expire = filters.clone();
        expire.push(json!({"type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"add": [{"name": "Set-Cookie", "value": format!("{pair}; Max-Age=-1")}]}}));
        rules.push(decorate(json!({
            "name": format!("{RULE_PREFIX}sticky-expire"),
            "matches": carrying(pair),
            "filters": expire,
            "backendRefs": weighted.clone(),
        })));
    }
    rules.push(decorate(json!({
        "name": format!("{RULE_PREFIX}canary"),
        "filters": filters,
        "backendRefs": weighted,
    })));
    rules
}

/// Writes the route `<apex>` with `parents` (and `hostnames` when given), Siskin's rules
/// first, the user's rules kept.
pub async fn apply(
    t: &Target,
    res: &ApiResource,
    parents: Vec<Value>,
    hostnames: &[String],
    split: &Split,
) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &t.ns, res);
    let ours = rules(t, split)?;
    let existing = api
        .get_opt(&t.apex)
        .await
        .map_err(Error::kube(format!("get HTTPRoute {}/{}", t.ns, t.apex)))?;
    match existing {
        None => {
            let mut obj = DynamicObject::new(&t.apex, res).within(&t.ns);
            obj.metadata.owner_references = Some(vec![t.owner()?]);
            obj.metadata.labels = Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "siskin".to_string(),
                )]
                .into(),
            );
            obj.data = json!({"spec": {"parentRefs": parents, "rules": ours}});
            if !hostnames.is_empty() {
                obj.data["spec"]["hostnames"] = json!(hostnames);
            }
            api.create(&PostParams::default(), &obj)
                .await
                .map_err(Error::kube(format!("create HTTPRoute {}/{}", t.ns, t.apex)))?;
        }
        Some(mut obj) => {
            let theirs: Vec<Value> = obj.data["spec"]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| !is_ours(r))
                .cloned()
                .collect();
            let mut all = ours;
            all.extend(theirs);
            let before = obj.data["spec"].clone();
            obj.data["spec"]["parentRefs"] = json!(parents);
            if !hostnames.is_empty() {
                obj.data["spec"]["hostnames"] = json!(hostnames);
            }
            obj.data["spec"]["rules"] = json!(all);
            if obj.data["spec"] == before {
                return Ok(());
            }
            api.replace(&obj.name_any(), &PostParams::default(), &obj)
                .await
                .map_err(Error::kube(format!("update HTTPRoute {}/{}", t.ns, t.apex)))?;
        }
    }
    Ok(())
}

fn is_ours(rule: &Value) -> bool {
    rule["name"]
        .as_str()
        .is_some_and(|n| n.starts_with(RULE_PREFIX))
}

/// Reads the split back from Siskin's rules.
pub async fn current(t: &Target, res: &ApiResource) -> Result<Option<Split>, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &t.ns, res);
    let Some(obj) = api
        .get_opt(&t.apex)
        .await
        .map_err(Error::kube(format!("get HTTPRoute {}/{}", t.ns, t.apex)))?
    else {
        return Ok(None);
    };
    let rules = obj.data["spec"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(rule) = rules
        .iter()
        .find(|r| matches!(r["name"].as_str(), Some("siskin-canary" | "siskin-ab")))
    else {
        return Ok(None);
    };
    let canary_name = t.canary.spec.canary_service_name();
    let mut weights = (0u64, 0u64);
    for b in rule["backendRefs"].as_array().into_iter().flatten() {
        let w = b["weight"].as_u64().unwrap_or(1);
        if b["name"].as_str() == Some(canary_name.as_str()) {
            weights.1 += w;
        } else {
            weights.0 += w;
        }
    }
    let total = (weights.0 + weights.1).max(1);
    let canary = u8::try_from(weights.1 * 100 / total).unwrap_or(0);
    let mut split = Split::weights(100 - canary, canary);
    split.mirror = rule["filters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["type"] == "RequestMirror")
        .map(|f| {
            u8::try_from(f["requestMirror"]["percent"].as_u64().unwrap_or(100)).unwrap_or(100)
        });
    Ok(Some(split))
}

/// Removes Siskin's rules; deletes the route when no rule of the user's remains.
pub async fn remove(t: &Target, res: &ApiResource) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &t.ns, res);
    let Some(mut obj) = api
        .get_opt(&t.apex)
        .await
        .map_err(Error::kube(format!("get HTTPRoute {}/{}", t.ns, t.apex)))?
    else {
        return Ok(());
    };
    let theirs: Vec<Value> = obj.data["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| !is_ours(r))
        .cloned()
        .collect();
    if theirs.is_empty() {
        api.delete(&t.apex, &Default::default())
            .await
            .map_err(Error::kube(format!("delete HTTPRoute {}/{}", t.ns, t.apex)))?;
    } else {
        obj.data["spec"]["rules"] = json!(theirs);
        api.replace(&t.apex, &PostParams::default(), &obj)
            .await
            .map_err(Error::kube(format!("update HTTPRoute {}/{}", t.ns, t.apex)))?;
    }
    Ok(())
}

/// Whether every parent that reports status on the route has accepted its current
/// generation. A route no controller reports on (no `status.parents`) counts as accepted.
pub async fn accepted_by_parents(t: &Target, res: &ApiResource) -> Result<bool, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &t.ns, res);
    let Some(obj) = api
        .get_opt(&t.apex)
        .await
        .map_err(Error::kube(format!("get HTTPRoute {}/{}", t.ns, t.apex)))?
    else {
        return Ok(false);
    };
    let generation = obj.metadata.generation.unwrap_or(0);
    let parents = obj.data["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(parents.iter().all(|p| {
        p["conditions"].as_array().into_iter().flatten().any(|c| {
            c["type"] == "Accepted"
                && c["status"] == "True"
                && c["observedGeneration"].as_i64().unwrap_or(0) >= generation
        })
    }))
}
