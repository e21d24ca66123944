//! MetricTemplate queries rendered with handlebars and Flagger's variables: `{{ name }}`,
//! `{{ namespace }}`, `{{ target }}`, `{{ service }}`, `{{ ingress }}`, `{{ route }}`,
//! `{{ interval }}`, `{{ variables.KEY }}`. A missing variable is an error naming the
//! template, the variable and the Canary — never an empty string.

use std::collections::BTreeMap;

use handlebars::{Handlebars, RenderErrorReason};
use serde::Serialize;

/// The values a query may use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Vars {
    /// The Canary's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `spec.targetRef.name`.
    pub target: String,
    /// `spec.service.name`, else the target's name.
    pub service: String,
    /// `spec.ingressRef.name`, else the target's name.
    pub ingress: String,
    /// `spec.routeRef.name`, else the target's name.
    pub route: String,
    /// The metric's window (`1m` when unset).
    pub interval: String,
    /// `templateVariables`.
    pub variables: BTreeMap<String, String>,
}

/// A query that cannot be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The query uses a variable that has no value.
    #[error("template {template} of Canary {canary}: variable {variable:?} has no value; {hint}")]
    Missing {
        /// The template (`namespace/name`, or `metric NAME` for an inline query).
        template: String,
        /// The Canary (`namespace/name`).
        canary: String,
        /// The variable.
        variable: String,
        /// How to give it one.
        hint: String,
    },
    /// The query is not a valid template.
    #[error("template {template} of Canary {canary}: {message}")]
    Invalid {
        /// The template.
        template: String,
        /// The Canary.
        canary: String,
        /// The parser's message.
        message: String,
    },
}

/// Renders `query` for `vars`; `template` names it in errors.
pub fn render(template: &str, query: &str, vars: &Vars) -> Result<String, TemplateError> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    // PromQL, not HTML: nothing is escaped.
    hb.register_escape_fn(handlebars::no_escape);
    let canary = format!("{}/{}", vars.namespace, vars.name);
    hb.render_template(query, vars).map_err(|e| match e.reason() {
        RenderErrorReason::MissingVariable(Some(v)) => TemplateError::Missing {
            template: template.to_string(),
            canary,
            hint: match v.strip_prefix("variables.") {
                Some(key) => format!("set templateVariables.{key} on the metric"),
                None => "use one of name, namespace, target, service, ingress, route, interval, variables.KEY".into(),
            },
            variable: v.clone(),
        },
        _ => TemplateError::Invalid {
            template: template.to_string(),
            canary,
            message: e.to_string(),
        },
    })
}

/// A query with its whitespace collapsed, as Flagger sends it.
pub fn collapse(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn vars() -> Vars {
        Vars {
            name: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            service: "podinfo".into(),
            ingress: "podinfo".into(),
            route: "podinfo".into(),
            interval: "1m".into(),
            variables: [("quantile".to_string(), "0.99".to_string())].into(),
        }
    }

    #[test]
    fn flaggers_variables_render_and_nothing_is_escaped() {
        let q = render(
            "test/latency",
            r#"histogram_quantile({{ variables.quantile }}, sum(rate(x{ns="{{ namespace }}",app=~"{{ target }}-.*"}[{{ interval }}])) by (le)) > 0 & <"#,
            &vars(),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"histogram_quantile(0.99, sum(rate(x{ns="test",app=~"podinfo-.*"}[1m])) by (le)) > 0 & <"#
        );
    }

    #[test]
    fn a_missing_variable_names_the_template_the_variable_and_the_canary() {
        let e = render("test/error-rate", "x{a=\"{{ variables.team }}\"}", &vars()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "template test/error-rate of Canary test/podinfo: variable \"variables.team\" has no value; set templateVariables.team on the metric"
        );
        let e = render("t", "{{ pod }}", &vars()).unwrap_err();
        assert!(
            matches!(e, TemplateError::Missing { ref variable, .. } if variable == "pod"),
            "{e}"
        );
        let e = render("t", "{{ printf \"%s\" target }}", &vars()).unwrap_err();
        assert!(
            matches!(
                e,
                TemplateError::Invalid { .. } | TemplateError::Missing { .. }
            ),
            "{e}"
        );
    }

    #[test]
    fn whitespace_collapses() {
        assert_eq!(
            collapse("sum(\n  rate(x[1m])\n)  / 2"),
            "sum( rate(x[1m]) ) / 2"
        );
    }
}
