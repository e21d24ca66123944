//! The standalone file: a canary whose primary and canary are sets of upstream addresses.

use std::net::SocketAddr;

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
    /// Addresses of the version in service (`host:port`); replaced by the canary's on promotion.
    pub primary: Vec<String>,
    /// Addresses of the new version; changing this list starts a release.
    #[serde(default)]
    pub canary: Vec<String>,
    /// The same analysis block as a Canary's.
    pub analysis: CanaryAnalysis,
    /// Seconds the canary may take to answer before the release is rolled back (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Promote without analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_analysis: Option<bool>,
}

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
            ..Default::default()
        };
        Canary::new(ApiGroup::Siskin, &self.name, spec)
    }

    /// The route name the router reports statistics under.
    pub fn route(&self) -> String {
        format!("standalone/{}", self.name)
    }
}
