//! `spec.analysis`: schedule, steps, checks, webhooks and alerts of a canary run.

use std::{collections::BTreeMap, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Weight, duration, service::HttpMatchRequest};

/// Default analysis interval when unset or unparsable (Flagger's `GetAnalysisInterval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Smallest interval; shorter ones are raised to it.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Default metric interval for built-in and template checks.
pub const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);
/// Default webhook timeout.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default session cookie lifetime in seconds.
pub const DEFAULT_COOKIE_MAX_AGE: i64 = 86400;

/// `spec.analysis`: how a release is checked and how traffic moves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.iterations) ? 1 : 0) + (has(self.stepWeight) ? 1 : 0) + (has(self.stepWeights) ? 1 : 0) == 1",
        "message": "set exactly one of iterations (blue/green, A/B), stepWeight or stepWeights (canary)"
    },
    {
        "rule": "!has(self.match) || size(self.match) == 0 || (has(self.iterations) && self.iterations > 0)",
        "message": "A/B testing (match) needs iterations > 0"
    },
    {
        "rule": "!has(self.stepWeights) || (self.stepWeights.isSorted() && self.stepWeights.all(w, self.stepWeights.exists_one(v, v == w)))",
        "message": "stepWeights must be strictly ascending"
    },
    {
        "rule": "!has(self.mirrorWeight) || (has(self.mirror) && self.mirror)",
        "message": "mirrorWeight needs mirror: true"
    },
    {
        "rule": "!has(self.sessionAffinity) || !has(self.sessionAffinity.primaryCookieName) || self.sessionAffinity.primaryCookieName != self.sessionAffinity.cookieName",
        "message": "sessionAffinity.primaryCookieName must differ from cookieName"
    }
]))]
pub struct CanaryAnalysis {
    /// Time between two analysis steps (`^[0-9]+(m|s)`, default 60s, minimum 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+(m|s)"))]
    pub interval: Option<String>,
    /// Number of iterations for blue/green and A/B runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub iterations: Option<i32>,
    /// Failed checks tolerated before rollback (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub threshold: Option<i32>,
    /// Highest canary weight before promotion (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_weight: Option<i32>,
    /// Weight added per step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub step_weight: Option<i32>,
    /// Explicit, ascending weight steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20), inner(range(min = 0, max = 100)))]
    pub step_weights: Option<Vec<i32>>,
    /// Weight moved back to the primary per step during promotion (0: all at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub step_weight_promotion: Option<i32>,
    /// Mirror traffic to the canary before shifting weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<bool>,
    /// Percentage of requests mirrored (0 or unset: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub mirror_weight: Option<i32>,
    /// Percentage of primary replicas that must be available (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub primary_ready_threshold: Option<i32>,
    /// Percentage of canary replicas that must be available (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub canary_ready_threshold: Option<i32>,
    /// Alerts sent while the release moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub alerts: Option<Vec<CanaryAlert>>,
    /// Checks run on each step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub metrics: Option<Vec<CanaryMetric>>,
    /// Webhooks (gates, tests, load, notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub webhooks: Option<Vec<CanaryWebhook>>,
    /// A/B conditions: matching requests go to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub r#match: Option<Vec<HttpMatchRequest>>,
    /// Sticky sessions during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
}

/// `analysis.metrics[]`: one check.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryMetric {
    /// Built-in name (`request-success-rate`, `request-duration`) or any name with a template or query.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
    /// Range window of the query (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+(m|s)"))]
    pub interval: Option<String>,
    /// Deprecated single threshold: a minimum for success rate, a maximum otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Accepted range (for `request-duration`, milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_range: Option<ThresholdRange>,
    /// Deprecated inline PromQL run against `spec.metricsServer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// A MetricTemplate to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<TemplateRef>,
    /// Variables for the template (`{{ variables.KEY }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_variables: Option<BTreeMap<String, String>>,
    /// Siskin: roll back as soon as this check fails on live data, without waiting for the
    /// next interval or for the failed-checks threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<bool>,
    /// Siskin: what a query that matches nothing means: `fail` (a failed check, as Flagger) or
    /// `hold` (no step forward and no failed check; rolled back at the progress deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_no_data: Option<Inconclusive>,
    /// Siskin: what a query that cannot run means (unreachable provider, refused credentials,
    /// bad query): `fail` (a failed check, as Flagger) or `hold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<Inconclusive>,
    /// Siskin, judge metrics only: the confidence of the whole run (default 0.95). A clean
    /// canary fails this check anywhere in its run with probability at most `1 - confidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.5, max = 0.999999))]
    pub confidence: Option<f64>,
}

/// The run's confidence of a judge metric without `confidence`.
pub const DEFAULT_JUDGE_CONFIDENCE: f64 = 0.95;

/// What a check without a measured value does to the release.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Inconclusive {
    /// Counts as a failed check.
    #[default]
    Fail,
    /// Holds the release where it is: no step forward, no failed check, until the progress
    /// deadline.
    Hold,
}

/// Accepted range of a metric value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
    "message": "thresholdRange.min must not exceed thresholdRange.max"
}]))]
pub struct ThresholdRange {
    /// Lowest accepted value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Highest accepted value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// Reference to a MetricTemplate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// Template name.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
    /// Template namespace (default: the Canary's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// API version (ignored; kept for Flagger compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind (ignored; kept for Flagger compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `analysis.webhooks[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "isURL(self.url)",
    "message": "url must be an absolute URL such as http://loadtester.test/"
}]))]
pub struct CanaryWebhook {
    /// Name of the webhook.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
    /// When it is called (empty means `rollout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<HookType>,
    /// Address to POST to.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub url: String,
    /// Timeout per attempt (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+(m|s)"))]
    pub timeout: Option<String>,
    /// Retries after a connection error, 429 or 5xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub retries: Option<i32>,
    /// Skip TLS verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "disableTLS")]
    pub disable_tls: Option<bool>,
    /// Do not alert when this gate holds a release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_alert: Option<bool>,
    /// Key-value pairs sent in the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Webhook types (Flagger's `HookType`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum HookType {
    /// `""`: same as `rollout`.
    #[serde(rename = "")]
    Unspecified,
    /// Gate before a new revision is scaled up.
    #[serde(rename = "confirm-rollout")]
    ConfirmRollout,
    /// Runs once before traffic is shifted; failures count as failed checks.
    #[serde(rename = "pre-rollout")]
    PreRollout,
    /// Runs on every analysis step; failures count as failed checks.
    #[serde(rename = "rollout")]
    Rollout,
    /// Gate before promotion.
    #[serde(rename = "confirm-promotion")]
    ConfirmPromotion,
    /// Runs after success or rollback.
    #[serde(rename = "post-rollout")]
    PostRollout,
    /// Receives every event.
    #[serde(rename = "event")]
    Event,
    /// Success means roll back now.
    #[serde(rename = "rollback")]
    Rollback,
    /// Gate before each weight increase.
    #[serde(rename = "confirm-traffic-increase")]
    ConfirmTrafficIncrease,
}

/// `analysis.alerts[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryAlert {
    /// Name of the alert.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
    /// Lowest severity sent (unset: `info`, where Flagger sends nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The AlertProvider to send through.
    #[serde(default)]
    pub provider_ref: ProviderRef,
}

/// Alert severities.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Severity {
    /// `""`: treated as `info`.
    #[serde(rename = "")]
    Unspecified,
    /// Everything.
    #[serde(rename = "info")]
    Info,
    /// Warnings and errors.
    #[serde(rename = "warn")]
    Warn,
    /// Errors only.
    #[serde(rename = "error")]
    Error,
}

/// Reference to an AlertProvider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderRef {
    /// Provider name.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
    /// Provider namespace (default: the Canary's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `analysis.sessionAffinity`: sticky sessions while the canary takes traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinity {
    /// Cookie that pins a client to the canary.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub cookie_name: String,
    /// Cookie that pins a client to the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_cookie_name: Option<String>,
    /// Cookie `Domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Cookie `HttpOnly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    /// Cookie `Max-Age` in seconds (default 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_age: Option<i64>,
    /// Cookie `Partitioned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioned: Option<bool>,
    /// Cookie `Path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Cookie `SameSite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
    /// Cookie `Secure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
}

/// Cookie `SameSite` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SameSite {
    /// Strict.
    Strict,
    /// Lax.
    Lax,
    /// None.
    None,
}

// === impl CanaryAnalysis ===

impl CanaryAnalysis {
    /// The analysis interval: default 60s when unset or unparsable, raised to at least 10s.
    pub fn interval(&self) -> Duration {
        let parsed = self
            .interval
            .as_deref()
            .and_then(|s| duration::parse(s).ok())
            .unwrap_or(DEFAULT_INTERVAL);
        parsed.max(MIN_INTERVAL)
    }

    /// Failed checks before rollback: 1 when unset or not positive.
    pub fn threshold(&self) -> u32 {
        match self.threshold {
            Some(t) if t > 0 => t.unsigned_abs(),
            _ => 1,
        }
    }

    /// Iterations of a blue/green or A/B run.
    pub fn iterations(&self) -> u32 {
        self.iterations
            .map(|i| i.max(0).unsigned_abs())
            .unwrap_or(0)
    }

    /// The weight at which the canary is promoted: the last step with `stepWeights`,
    /// else `maxWeight`, else 100.
    pub fn max_weight(&self) -> Weight {
        let w = match (&self.step_weights, self.max_weight) {
            (Some(steps), _) if !steps.is_empty() && self.step_weight.unwrap_or(0) <= 0 => {
                steps.last().copied().unwrap_or(100)
            }
            (_, Some(m)) if m > 0 => m,
            _ => 100,
        };
        Weight::clamped(i64::from(w))
    }

    /// `stepWeights` clamped to 0..=100, empty when unset.
    pub fn step_weights(&self) -> Vec<Weight> {
        self.step_weights
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|w| Weight::clamped(i64::from(*w)))
            .collect()
    }

    /// `stepWeight` clamped to 0..=100.
    pub fn step_weight(&self) -> u8 {
        clamp_percent(self.step_weight.unwrap_or(0))
    }

    /// `stepWeightPromotion` clamped to 0..=100 (0: move all traffic back at once).
    pub fn step_weight_promotion(&self) -> u8 {
        clamp_percent(self.step_weight_promotion.unwrap_or(0))
    }

    /// Whether mirroring is requested.
    pub fn mirror(&self) -> bool {
        self.mirror.unwrap_or(false)
    }

    /// Percentage of requests mirrored (100 when unset or 0).
    pub fn mirror_weight(&self) -> Weight {
        match self.mirror_weight {
            Some(w) if w > 0 => Weight::clamped(i64::from(w)),
            _ => Weight::FULL,
        }
    }

    /// Required available percentage of primary replicas.
    pub fn primary_ready_threshold(&self) -> u8 {
        clamp_percent(self.primary_ready_threshold.unwrap_or(100))
    }

    /// Required available percentage of canary replicas.
    pub fn canary_ready_threshold(&self) -> u8 {
        clamp_percent(self.canary_ready_threshold.unwrap_or(100))
    }

    /// Webhooks of one type, in spec order (`""` counts as `rollout`).
    pub fn hooks(&self, kind: HookType) -> impl Iterator<Item = &CanaryWebhook> {
        self.webhooks
            .iter()
            .flatten()
            .filter(move |h| h.hook_type() == kind)
    }

    /// The next canary weight after `w`: `stepWeight` more, or the next entry of
    /// `stepWeights`; never above the maximum.
    pub fn next_weight(&self, w: Weight) -> Weight {
        let max = self.max_weight();
        let steps = self.step_weights();
        let next = if self.step_weight() > 0 || steps.is_empty() {
            w.saturating_add(self.step_weight().max(1))
        } else {
            steps.iter().copied().find(|s| *s > w).unwrap_or(max)
        };
        next.min(max)
    }

    /// How many times a run that never fails measures its metrics: once per weight up to the
    /// maximum (and once mirrored, when mirroring first), or once per iteration.
    pub fn checks_per_run(&self) -> u32 {
        if self.iterations() > 0 {
            return self.iterations();
        }
        let (mut w, mut n) = (Weight::ZERO, u32::from(self.mirror()));
        while w < self.max_weight() && n < 1000 {
            w = self.next_weight(w);
            n += 1;
        }
        n.max(1)
    }

    /// The A/B match conditions (empty when unset).
    pub fn matches(&self) -> &[HttpMatchRequest] {
        self.r#match.as_deref().unwrap_or_default()
    }
}

/// Clamps a percentage to 0..=100.
pub fn clamp_percent(v: i32) -> u8 {
    u8::try_from(v.clamp(0, 100)).unwrap_or(100)
}

// === impl CanaryWebhook ===

impl CanaryWebhook {
    /// The effective type (`""` and unset are `rollout`).
    pub fn hook_type(&self) -> HookType {
        match self.r#type {
            None | Some(HookType::Unspecified) => HookType::Rollout,
            Some(t) => t,
        }
    }

    /// Timeout per attempt (default 10s, also when unparsable).
    pub fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(|s| duration::parse(s).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT)
    }
}

// === impl HookType ===

impl HookType {
    /// The name used in manifests.
    pub fn name(self) -> &'static str {
        match self {
            HookType::Unspecified | HookType::Rollout => "rollout",
            HookType::ConfirmRollout => "confirm-rollout",
            HookType::PreRollout => "pre-rollout",
            HookType::ConfirmPromotion => "confirm-promotion",
            HookType::PostRollout => "post-rollout",
            HookType::Event => "event",
            HookType::Rollback => "rollback",
            HookType::ConfirmTrafficIncrease => "confirm-traffic-increase",
        }
    }
}

// === impl CanaryMetric ===

impl CanaryMetric {
    /// The query window (default 1m, also for template metrics, where Flagger renders empty).
    pub fn interval(&self) -> Duration {
        self.interval
            .as_deref()
            .and_then(|s| duration::parse(s).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_METRIC_INTERVAL)
    }

    /// Whether a check without data counts as failed (`onNoData`, default `fail`).
    pub fn fails_on_no_data(&self) -> bool {
        self.on_no_data.unwrap_or_default() == Inconclusive::Fail
    }

    /// Whether a check that could not run counts as failed (`onError`, default `fail`).
    pub fn fails_on_error(&self) -> bool {
        self.on_error.unwrap_or_default() == Inconclusive::Fail
    }

    /// Whether a failure rolls back at once.
    pub fn is_critical(&self) -> bool {
        self.critical.unwrap_or(false)
    }

    /// Whether this is one of the built-in checks (the judge's included).
    pub fn is_builtin(&self) -> bool {
        self.template_ref.is_none()
            && self.query.is_none()
            && (self.name == crate::METRIC_REQUEST_SUCCESS_RATE
                || self.name == crate::METRIC_REQUEST_DURATION
                || self.is_judge())
    }

    /// Whether this is a statistical judge metric (`judge-latency`, `judge-errors`).
    pub fn is_judge(&self) -> bool {
        self.template_ref.is_none()
            && self.query.is_none()
            && (self.name == crate::METRIC_JUDGE_LATENCY || self.name == crate::METRIC_JUDGE_ERRORS)
    }

    /// The run's confidence of a judge metric.
    pub fn confidence(&self) -> f64 {
        self.confidence.unwrap_or(DEFAULT_JUDGE_CONFIDENCE)
    }
}

// === impl CanaryAlert ===

impl CanaryAlert {
    /// Effective severity filter: unset and `""` mean `info` (every alert).
    pub fn severity(&self) -> Severity {
        match self.severity {
            None | Some(Severity::Unspecified) => Severity::Info,
            Some(s) => s,
        }
    }
}

// === impl SessionAffinity ===

impl SessionAffinity {
    /// Cookie lifetime in seconds (default 86400).
    pub fn max_age(&self) -> i64 {
        self.max_age.unwrap_or(DEFAULT_COOKIE_MAX_AGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flagger_defaults() {
        let a = CanaryAnalysis::default();
        assert_eq!(a.interval(), Duration::from_secs(60));
        assert_eq!(a.threshold(), 1);
        assert_eq!(a.max_weight().get(), 100);
        assert_eq!(a.primary_ready_threshold(), 100);
        let fast = CanaryAnalysis {
            interval: Some("1s".into()),
            ..Default::default()
        };
        assert_eq!(fast.interval(), MIN_INTERVAL);
    }

    #[test]
    fn max_weight_follows_step_weights() {
        let a = CanaryAnalysis {
            step_weights: Some(vec![10, 20, 30, 40, 50, 60]),
            max_weight: Some(50),
            ..Default::default()
        };
        assert_eq!(a.max_weight().get(), 60);
        let b = CanaryAnalysis {
            step_weight: Some(10),
            max_weight: Some(30),
            ..Default::default()
        };
        assert_eq!(b.max_weight().get(), 30);
    }

    #[test]
    fn empty_hook_type_is_rollout() {
        let h = CanaryWebhook {
            r#type: Some(HookType::Unspecified),
            ..Default::default()
        };
        assert_eq!(h.hook_type(), HookType::Rollout);
        assert_eq!(h.timeout(), DEFAULT_WEBHOOK_TIMEOUT);
    }
}
