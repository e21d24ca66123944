//! What both adapters give the analysis: the template variables of a Canary and the
//! MetricTemplates its metrics name.

use std::collections::{BTreeMap, BTreeSet};

use siskin_analysis::Vars;
use siskin_api::{Canary, MetricTemplateSpec};

/// The variables a query may use, for `canary` in `namespace` (the interval is each
/// metric's own).
pub fn vars(canary: &Canary, namespace: &str) -> Vars {
    let spec = &canary.spec;
    let target = spec.target_name().to_string();
    let or_target = |name: Option<&str>| {
        name.filter(|n| !n.is_empty())
            .unwrap_or(&target)
            .to_string()
    };
    Vars {
        name: canary.metadata.name.clone().unwrap_or_default(),
        namespace: namespace.to_string(),
        service: or_target(spec.service.as_ref().and_then(|s| s.name.as_deref())),
        ingress: or_target(spec.ingress_ref.as_ref().map(|r| r.name.as_str())),
        route: or_target(spec.route_ref.as_ref().map(|r| r.name.as_str())),
        target,
        interval: String::new(),
        variables: BTreeMap::new(),
    }
}

/// The MetricTemplates the metrics of `canary` name, as (`namespace`, `name`).
pub fn template_refs(canary: &Canary, namespace: &str) -> BTreeSet<(String, String)> {
    canary
        .spec
        .analysis()
        .metrics
        .iter()
        .flatten()
        .filter_map(|m| m.template_ref.as_ref())
        .map(|r| {
            (
                r.namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| namespace.to_string()),
                r.name.clone(),
            )
        })
        .collect()
}

/// Templates by (`namespace`, `name`).
pub type Templates = BTreeMap<(String, String), MetricTemplateSpec>;
