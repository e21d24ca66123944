//! The API group as a runtime choice, and the `kube::Resource` plumbing shared by our kinds.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Which API group a resource is served under.
///
/// `siskin.dev` is Siskin's own group; `flagger.app` lets Siskin run on a cluster that has
/// Flagger's CRDs installed, with the manifests unchanged.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum ApiGroup {
    /// `siskin.dev/v1beta1`
    #[default]
    #[serde(rename = "siskin.dev")]
    Siskin,
    /// `flagger.app/v1beta1`
    #[serde(rename = "flagger.app")]
    Flagger,
}

/// An `apiVersion` or group name that is neither of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown API group {0:?}: expected siskin.dev or flagger.app")]
pub struct UnknownGroup(pub String);

// === impl ApiGroup ===

impl ApiGroup {
    /// Both groups, Siskin's first.
    pub const ALL: [ApiGroup; 2] = [ApiGroup::Siskin, ApiGroup::Flagger];

    /// The group name, e.g. `siskin.dev`.
    pub fn name(self) -> &'static str {
        match self {
            ApiGroup::Siskin => "siskin.dev",
            ApiGroup::Flagger => "flagger.app",
        }
    }

    /// The full `apiVersion`, e.g. `siskin.dev/v1beta1`.
    pub fn api_version(self) -> String {
        format!("{}/{}", self.name(), crate::VERSION)
    }

    /// Parses an `apiVersion` (`group/version`); only `v1beta1` is served.
    pub fn from_api_version(api_version: &str) -> Result<Self, UnknownGroup> {
        match api_version.split_once('/') {
            Some((group, crate::VERSION)) => group.parse(),
            _ => Err(UnknownGroup(api_version.to_string())),
        }
    }
}

impl FromStr for ApiGroup {
    type Err = UnknownGroup;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "siskin.dev" => Ok(ApiGroup::Siskin),
            "flagger.app" => Ok(ApiGroup::Flagger),
            other => Err(UnknownGroup(other.to_string())),
        }
    }
}

impl fmt::Display for ApiGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Implements `kube::Resource` for a root object whose group is an [`ApiGroup`].
macro_rules! group_resource {
    ($ty:ident, $kind:literal, $plural:literal) => {
        impl kube::Resource for $ty {
            type DynamicType = $crate::ApiGroup;
            type Scope = kube::core::DynamicResourceScope;

            fn kind(_: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($kind)
            }
            fn group(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed(dt.name())
            }
            fn version(_: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($crate::VERSION)
            }
            fn plural(_: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($plural)
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }

        impl $ty {
            /// The kind name.
            pub const KIND: &'static str = $kind;
            /// The plural resource name.
            pub const PLURAL: &'static str = $plural;

            /// The group this object declares in its `apiVersion`, if it is one of ours.
            pub fn api_group(&self) -> Option<$crate::ApiGroup> {
                $crate::ApiGroup::from_api_version(&self.api_version).ok()
            }

            /// Sets `apiVersion` and `kind` for `group`.
            pub fn with_group(mut self, group: $crate::ApiGroup) -> Self {
                self.api_version = group.api_version();
                self.kind = $kind.to_string();
                self
            }
        }
    };
}
pub(crate) use group_resource;
