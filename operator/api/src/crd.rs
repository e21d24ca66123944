//! CustomResourceDefinitions generated from the Rust types, for either API group.
//!
//! The schemas are structural (kube's rewriters), keep Flagger's `required` lists and defaults,
//! and add validation Flagger lacks: ranges, patterns and CEL rules for cross-field checks, so
//! the API server itself refuses a bad manifest.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde_json::{Value, json};

use crate::{
    AlertProvider, ApiGroup, Canary, MetricTemplate, VERSION, alert_provider::AlertProviderSpec,
    canary::CanarySpec, metric_template::MetricTemplateSpec, metric_template::TemplateStatus,
    status::CanaryStatus,
};

/// A generated schema could not be turned into a CRD schema (a bug in the types).
#[derive(Debug, thiserror::Error)]
#[error("schema of {kind} is not a valid JSONSchemaProps: {source}")]
pub struct SchemaError {
    kind: &'static str,
    #[source]
    source: serde_json::Error,
}

/// The three CRDs of `group`: Canary, MetricTemplate, AlertProvider.
pub fn all(group: ApiGroup) -> Result<Vec<CustomResourceDefinition>, SchemaError> {
    Ok(vec![
        canary(group)?,
        metric_template(group)?,
        alert_provider(group)?,
    ])
}

/// Required fields of a Canary's `spec`, as in Flagger's schema. (The Rust types read these
/// leniently so that `siskin validate` can name every missing field at once.)
const CANARY_REQUIRED: &[(&str, &[&str])] = &[
    ("", &["targetRef", "analysis"]),
    ("targetRef", &["apiVersion", "kind", "name"]),
    ("autoscalerRef", &["apiVersion", "kind", "name"]),
    ("ingressRef", &["apiVersion", "kind", "name"]),
    ("routeRef", &["apiVersion", "kind", "name"]),
    ("upstreamRef", &["apiVersion", "kind", "name"]),
    ("service", &["port"]),
    ("service.mirror[]", &["backendRef"]),
    ("service.mirror[].backendRef", &["name"]),
    ("service.gatewayRefs[]", &["name"]),
    ("analysis.metrics[]", &["name"]),
    ("analysis.metrics[].templateRef", &["name"]),
    ("analysis.webhooks[]", &["name", "url"]),
    ("analysis.alerts[]", &["name", "providerRef"]),
    ("analysis.alerts[].providerRef", &["name"]),
    ("analysis.sessionAffinity", &["cookieName"]),
    ("canaryAnalysis.metrics[]", &["name"]),
    ("canaryAnalysis.metrics[].templateRef", &["name"]),
    ("canaryAnalysis.webhooks[]", &["name", "url"]),
    ("canaryAnalysis.alerts[]", &["name", "providerRef"]),
    ("canaryAnalysis.alerts[].providerRef", &["name"]),
    ("canaryAnalysis.sessionAffinity", &["cookieName"]),
];

/// A server-side default: (parent path, field, value).
type ServerDefault = (&'static str, &'static str, fn() -> Value);

/// Defaults the API server fills in for a Canary's `spec`, as in Flagger's schema.
const CANARY_DEFAULTS: &[ServerDefault] = &[
    ("analysis.sessionAffinity", "maxAge", || json!(86400)),
    ("canaryAnalysis.sessionAffinity", "maxAge", || json!(86400)),
    ("service.gatewayRefs[]", "group", || {
        json!("gateway.networking.k8s.io")
    }),
    ("service.gatewayRefs[]", "kind", || json!("Gateway")),
    ("service.mirror[].backendRef", "group", || json!("")),
    ("service.mirror[].backendRef", "kind", || json!("Service")),
];

/// Required fields of a MetricTemplate's `spec`.
const TEMPLATE_REQUIRED: &[(&str, &[&str])] = &[
    ("", &["provider", "query"]),
    ("provider", &["type"]),
    ("provider.secretRef", &["name"]),
];

/// Required fields of an AlertProvider's `spec`.
const ALERT_REQUIRED: &[(&str, &[&str])] = &[("", &["type"]), ("secretRef", &["name"])];

/// The Canary CRD.
pub fn canary(group: ApiGroup) -> Result<CustomResourceDefinition, SchemaError> {
    let schema = root_schema(
        "Canary releases a workload progressively: it shifts traffic step by step, checks metrics and webhooks, and promotes or rolls back.",
        spec_schema::<CanarySpec>(CANARY_REQUIRED, CANARY_DEFAULTS),
        schema_of::<CanaryStatus>(),
    );
    let columns = [
        ("Status", "string", ".status.phase", 0),
        ("Weight", "string", ".status.canaryWeight", 0),
        ("Suspended", "boolean", ".spec.suspend", 1),
        ("FailedChecks", "string", ".status.failedChecks", 1),
        ("Interval", "string", ".spec.analysis.interval", 1),
        ("Mirror", "boolean", ".spec.analysis.mirror", 1),
        ("StepWeight", "string", ".spec.analysis.stepWeight", 1),
        ("StepWeights", "string", ".spec.analysis.stepWeights", 1),
        ("MaxWeight", "string", ".spec.analysis.maxWeight", 1),
        (
            "LastTransitionTime",
            "string",
            ".status.lastTransitionTime",
            0,
        ),
    ];
    build(group, Canary::KIND, Canary::PLURAL, schema, &columns)
}

/// The MetricTemplate CRD.
pub fn metric_template(group: ApiGroup) -> Result<CustomResourceDefinition, SchemaError> {
    let schema = root_schema(
        "MetricTemplate is a reusable query against a metrics provider.",
        spec_schema::<MetricTemplateSpec>(TEMPLATE_REQUIRED, &[]),
        schema_of::<TemplateStatus>(),
    );
    let columns = [("Provider", "string", ".spec.provider.type", 0)];
    build(
        group,
        MetricTemplate::KIND,
        MetricTemplate::PLURAL,
        schema,
        &columns,
    )
}

/// The AlertProvider CRD.
pub fn alert_provider(group: ApiGroup) -> Result<CustomResourceDefinition, SchemaError> {
    let schema = root_schema(
        "AlertProvider is a chat destination (Slack, MS Teams, Discord, Rocket.Chat, Google Chat) for release alerts.",
        spec_schema::<AlertProviderSpec>(ALERT_REQUIRED, &[]),
        schema_of::<TemplateStatus>(),
    );
    let columns = [("Type", "string", ".spec.type", 0)];
    build(
        group,
        AlertProvider::KIND,
        AlertProvider::PLURAL,
        schema,
        &columns,
    )
}

/// Renders CRDs as one multi-document YAML text.
pub fn to_yaml(crds: &[CustomResourceDefinition]) -> Result<String, serde_yaml::Error> {
    let mut out = String::from(
        "# Generated by `cargo run -p siskin-api --bin crdgen`; do not edit by hand.\n",
    );
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(crd)?);
    }
    Ok(out)
}

/// The JSON schema of `T` with the settings kube-derive uses for CRDs.
fn schema_of<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        .with_transform(kube::core::schema::OptionalIntOrString)
        .into_generator();
    let mut v = generator.into_root_schema_for::<T>().to_value();
    if let Value::Object(m) = &mut v {
        m.remove("title");
    }
    tidy(&mut v);
    v
}

/// The schema of a `spec` type with its `required` lists and server-side defaults set.
fn spec_schema<T: JsonSchema>(required: &[(&str, &[&str])], defaults: &[ServerDefault]) -> Value {
    let mut v = schema_of::<T>();
    for (path, fields) in required {
        at(&mut v, path)["required"] = json!(fields);
    }
    for (path, field, value) in defaults {
        at(&mut v, path)["properties"][*field]["default"] = value();
    }
    v
}

/// The schema node at a dotted property path (`a.b[]` steps into the items of `b`).
fn at<'a>(mut node: &'a mut Value, path: &str) -> &'a mut Value {
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (name, items) = match seg.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (seg, false),
        };
        node = &mut node["properties"][name];
        if items {
            node = &mut node["items"];
        }
    }
    node
}

/// Makes schemars' output fit a CRD: our optional fields are omitted, never sent as `null`,
/// so `nullable` and `null` enum members go; schemars' defaults only mirror Rust's `Default`
/// (used for lenient reading), so they go too and the API server invents no values. The
/// defaults Flagger's schema has are set explicitly by [`spec_schema`].
fn tidy(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("nullable");
            m.remove("default");
            if let Some(Value::Array(e)) = m.get_mut("enum") {
                e.retain(|x| !x.is_null());
            }
            m.values_mut().for_each(tidy);
        }
        Value::Array(a) => a.iter_mut().for_each(tidy),
        _ => {}
    }
}

fn root_schema(description: &str, spec: Value, status: Value) -> Value {
    json!({
        "description": description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        }
    })
}

fn build(
    group: ApiGroup,
    kind: &'static str,
    plural: &str,
    schema: Value,
    columns: &[(&str, &str, &str, i32)],
) -> Result<CustomResourceDefinition, SchemaError> {
    let props: JSONSchemaProps =
        serde_json::from_value(schema).map_err(|source| SchemaError { kind, source })?;
    let printer_columns = columns
        .iter()
        .map(
            |(name, ty, path, priority)| CustomResourceColumnDefinition {
                name: (*name).to_string(),
                type_: (*ty).to_string(),
                json_path: (*path).to_string(),
                priority: (*priority > 0).then_some(*priority),
                ..Default::default()
            },
        )
        .collect();
    Ok(CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{plural}.{}", group.name())),
            annotations: Some(BTreeMap::from([(
                "helm.sh/resource-policy".to_string(),
                "keep".to_string(),
            )])),
            ..Default::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: group.name().to_string(),
            names: CustomResourceDefinitionNames {
                kind: kind.to_string(),
                list_kind: Some(format!("{kind}List")),
                plural: plural.to_string(),
                singular: Some(kind.to_lowercase()),
                categories: Some(vec!["all".to_string()]),
                ..Default::default()
            },
            scope: "Namespaced".to_string(),
            versions: vec![CustomResourceDefinitionVersion {
                name: VERSION.to_string(),
                served: true,
                storage: true,
                subresources: Some(CustomResourceSubresources {
                    status: Some(CustomResourceSubresourceStatus(json!({}))),
                    scale: None,
                }),
                additional_printer_columns: Some(printer_columns),
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(props),
                }),
                ..Default::default()
            }],
            ..Default::default()
        },
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_props(crd: &CustomResourceDefinition) -> Value {
        let v = serde_json::to_value(crd).unwrap();
        v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    }

    #[test]
    fn canary_schema_keeps_flagger_required_fields_and_adds_validation() {
        let spec = spec_props(&canary(ApiGroup::Flagger).unwrap());
        let required: Vec<&str> = spec["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(required.contains(&"targetRef") && required.contains(&"analysis"));
        let analysis = &spec["properties"]["analysis"];
        assert_eq!(analysis["properties"]["maxWeight"]["maximum"], json!(100.0));
        assert!(analysis["x-kubernetes-validations"].is_array());
        assert_eq!(
            spec["properties"]["service"]["required"],
            json!(["port"]),
            "service.port is required"
        );
    }

    #[test]
    fn schema_has_no_nullable_or_refs() {
        for crd in all(ApiGroup::Siskin).unwrap() {
            let text = serde_json::to_string(&crd).unwrap();
            assert!(!text.contains("\"nullable\""), "{}", crd.spec.names.kind);
            assert!(!text.contains("$ref"), "{}", crd.spec.names.kind);
        }
    }

    #[test]
    fn crd_names_follow_group() {
        let c = canary(ApiGroup::Siskin).unwrap();
        assert_eq!(c.metadata.name.as_deref(), Some("canaries.siskin.dev"));
        let f = canary(ApiGroup::Flagger).unwrap();
        assert_eq!(f.metadata.name.as_deref(), Some("canaries.flagger.app"));
    }
}
