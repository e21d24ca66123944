//! The standalone file: a canary whose primary and canary are sets of upstream addresses.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use serde::{Deserialize, Serialize};
use siskin_api::{
    ApiGroup, Canary, CanaryAnalysis, CanarySpec,
    canary::{TargetKind, TargetRef},
    service::CanaryService,
};

/// `siskin run FILE`: what to release and how.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StandaloneFile {
    /// Name of the service.
    pub name: String,
    /// Where the router serves traffic.
    pub listen: SocketAddr,
    /// Where the router's admin port listens (statistics for the checks).
    pub admin_addr: SocketAddr,
    /// Upstreams of the version in service; replaced by the canary's on promotion.
    pub primary: Vec<Upstream>,
    /// Upstreams of the new version; changing this list starts a release.
    #[serde(default)]
    pub canary: Vec<Upstream>,
    /// The same analysis block as a Canary's.
    pub analysis: CanaryAnalysis,
    /// Seconds the canary may take to answer before the release is rolled back (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Promote without analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_analysis: Option<bool>,
    /// Prometheus for inline `query` metrics (the built-in checks read the router).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_server: Option<String>,
    /// MetricTemplates the metrics name with `templateRef` (a MetricTemplate's `spec`, with
    /// its name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_templates: Vec<NamedTemplate>,
    /// Credentials the templates and alert providers name with `secretRef`: Secret name →
    /// key → value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// AlertProviders that `analysis.alerts[].providerRef.name` names (an AlertProvider's
    /// `spec`, with its name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_providers: Vec<NamedAlertProvider>,
}

/// An AlertProvider in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedAlertProvider {
    /// The name `providerRef.name` uses.
    pub name: String,
    /// Type, address, channel, username, proxy, secretRef.
    #[serde(flatten)]
    pub spec: siskin_api::AlertProviderSpec,
}

/// A MetricTemplate in the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedTemplate {
    /// The name `templateRef.name` uses.
    pub name: String,
    /// Where the query runs.
    pub provider: siskin_api::metric_template::MetricsProvider,
    /// The query template.
    pub query: String,
}

/// One upstream: an address that runs on its own, or a command Siskin starts and stops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Upstream {
    /// `host:port` of a server that is already running.
    Address(String),
    /// A process Siskin runs while the upstream is in use.
    Process(ProcessSpec),
}

/// A command Siskin starts for an upstream (and stops once no route points at it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessSpec {
    /// Where the process listens (`host:port`); traffic and readiness checks go here.
    pub address: String,
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the file's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

// === impl Upstream ===

impl Upstream {
    /// Where traffic goes.
    pub fn address(&self) -> &str {
        match self {
            Upstream::Address(a) => a,
            Upstream::Process(p) => &p.address,
        }
    }

    /// The process to run, if Siskin runs one.
    pub fn process(&self) -> Option<&ProcessSpec> {
        match self {
            Upstream::Address(_) => None,
            Upstream::Process(p) => Some(p),
        }
    }
}

/// Reads and parses a standalone file.
pub fn load(path: &Path) -> anyhow::Result<StandaloneFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a valid standalone file", path.display()))
}

/// Problems the Canary rules cannot see: addresses and commands.
pub fn problems(file: &StandaloneFile) -> Vec<String> {
    let mut out = Vec::new();
    for (field, list) in [("primary", &file.primary), ("canary", &file.canary)] {
        for (i, u) in list.iter().enumerate() {
            if u.address().parse::<SocketAddr>().is_err() {
                out.push(format!(
                    "{field}[{i}]: `{}` is not an ip:port address; write e.g. 127.0.0.1:9001",
                    u.address()
                ));
            }
            if u.process().is_some_and(|p| p.command.is_empty()) {
                out.push(format!(
                    "{field}[{i}].command: empty; give the program and its arguments, e.g. [\"./server\", \"--port\", \"9001\"]"
                ));
            }
        }
    }
    if file.primary.is_empty() {
        out.push("primary: empty; list at least one upstream in service".into());
    }
    for (i, m) in file.analysis.metrics.iter().flatten().enumerate() {
        if let Some(r) = &m.template_ref
            && !file.metric_templates.iter().any(|t| t.name == r.name)
        {
            out.push(format!(
                "analysis.metrics[{i}].templateRef: no metricTemplates entry named {:?}; add one",
                r.name
            ));
        }
    }
    for (i, a) in file.analysis.alerts.iter().flatten().enumerate() {
        if !file
            .alert_providers
            .iter()
            .any(|p| p.name == a.provider_ref.name)
        {
            out.push(format!(
                "analysis.alerts[{i}].providerRef: no alertProviders entry named {:?}; add one",
                a.provider_ref.name
            ));
        }
    }
    for (i, p) in file.alert_providers.iter().enumerate() {
        if let Some(s) = &p.spec.secret_ref
            && !file.secrets.contains_key(&s.name)
        {
            out.push(format!(
                "alertProviders[{i}].secretRef: no secrets entry named {:?}; add one",
                s.name
            ));
        }
        if p.spec.secret_ref.is_none() && p.spec.address.as_deref().unwrap_or_default().is_empty() {
            out.push(format!(
                "alertProviders[{i}]: set address (the webhook URL) or secretRef (a secrets entry with an address key)"
            ));
        }
    }
    for (i, t) in file.metric_templates.iter().enumerate() {
        if let Some(s) = &t.provider.secret_ref
            && !file.secrets.contains_key(&s.name)
        {
            out.push(format!(
                "metricTemplates[{i}].provider.secretRef: no secrets entry named {:?}; add one",
                s.name
            ));
        }
        let kind = t.provider.r#type;
        let cluster_only = kind == siskin_api::MetricsProviderType::Keptn
            || (kind == siskin_api::MetricsProviderType::Externalmetrics
                && t.provider.address.as_deref().unwrap_or_default().is_empty());
        if cluster_only {
            out.push(format!(
                "metricTemplates[{i}].provider.type: {} reads a Kubernetes API server, which siskin run has none of; run the release with siskin operator{}",
                siskin_analysis::resolve::type_name(kind),
                if kind == siskin_api::MetricsProviderType::Externalmetrics {
                    ", or set provider.address to the metrics adapter"
                } else {
                    ""
                }
            ));
        }
        if !siskin_analysis::registry::supported(t.provider.r#type) {
            out.push(format!(
                "metricTemplates[{i}].provider.type: {} is not supported yet; use one of {}",
                siskin_analysis::resolve::type_name(t.provider.r#type),
                siskin_analysis::registry::supported_names().join(", ")
            ));
        }
    }
    out
}

/// The namespace a standalone release goes by (in payloads, routes and templates).
pub const NAMESPACE: &str = "standalone";

// === impl StandaloneFile ===

impl StandaloneFile {
    /// The Canary the engine runs: the same types and rules as on Kubernetes.
    pub fn canary(&self) -> Canary {
        let spec = CanarySpec {
            provider: Some(siskin_api::Provider::Builtin),
            target_ref: Some(TargetRef {
                api_version: "siskin.dev/v1beta1".into(),
                kind: TargetKind::Deployment,
                name: self.name.clone(),
            }),
            service: Some(CanaryService {
                port: Some(i32::from(self.listen.port())),
                ..Default::default()
            }),
            analysis: Some(self.analysis.clone()),
            progress_deadline_seconds: self.progress_deadline_seconds,
            skip_analysis: self.skip_analysis,
            metrics_server: self.metrics_server.clone(),
            ..Default::default()
        };
        let mut c = Canary::new(ApiGroup::Siskin, &self.name, spec);
        c.metadata.namespace = Some(NAMESPACE.to_string());
        c
    }

    /// The file's MetricTemplates, by (`standalone`, name).
    pub fn templates(&self) -> crate::analysis::Templates {
        self.metric_templates
            .iter()
            .map(|t| {
                (
                    (NAMESPACE.to_string(), t.name.clone()),
                    siskin_api::MetricTemplateSpec {
                        provider: t.provider.clone(),
                        query: t.query.clone(),
                    },
                )
            })
            .collect()
    }

    /// The route name the router reports statistics under.
    pub fn route(&self) -> String {
        format!("standalone/{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The files in examples/standalone parse and pass every rule `siskin run` applies.
    #[test]
    fn examples_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/standalone");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let file: StandaloneFile =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let errors = crate::standalone::run::problems(&file);
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            seen += 1;
        }
        assert!(seen >= 2);
    }

    #[test]
    fn bad_upstreams_are_named_with_a_fix() {
        let file: StandaloneFile = serde_yaml::from_str(
            "name: x\nlisten: 127.0.0.1:1\nadminAddr: 127.0.0.1:2\nprimary: [localhost]\ncanary: [{address: 127.0.0.1:3, command: []}]\nanalysis: {}\n",
        )
        .unwrap();
        let p = problems(&file);
        assert!(
            p[0].starts_with("primary[0]: `localhost` is not an ip:port"),
            "{p:?}"
        );
        assert!(p[1].starts_with("canary[0].command: empty"), "{p:?}");
    }
}
