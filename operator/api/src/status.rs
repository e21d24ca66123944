//! `status`: Flagger's fields and phases, plus Siskin's explanations (checks, waits).

use std::{collections::BTreeMap, fmt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The phase of a canary, with Flagger's names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Not looked at yet.
    #[default]
    #[serde(rename = "")]
    Unset,
    /// Creating the primary and routing.
    Initializing,
    /// Primary serves all traffic; waiting for a new revision.
    Initialized,
    /// A confirm-rollout gate holds the new revision.
    Waiting,
    /// Analysis running.
    Progressing,
    /// A confirm-promotion gate holds promotion.
    WaitingPromotion,
    /// Primary being updated with the canary's spec.
    Promoting,
    /// Traffic back on the primary; scaling the canary down.
    Finalising,
    /// Release promoted.
    Succeeded,
    /// Release rolled back.
    Failed,
    /// Being deleted (revertOnDeletion).
    Terminating,
    /// Deleted and reverted.
    Terminated,
}

/// `status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// Current phase.
    #[serde(default)]
    pub phase: Phase,
    /// Failed checks in the current run.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub failed_checks: i32,
    /// Traffic weight of the canary (0–100).
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub canary_weight: i32,
    /// Iterations done in the current blue/green or A/B run.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub iterations: i32,
    /// Checksums of tracked ConfigMaps and Secrets (`configmap/NAME`, `secret/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracked_configs: Option<BTreeMap<String, String>>,
    /// Revision (pod template hash) of the last run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_spec: Option<String>,
    /// Revision currently in the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_promoted_spec: Option<String>,
    /// Time of the last status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Conditions: Flagger's `Promoted`, plus `Ready` and `Stalled` (kstatus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub conditions: Option<Vec<CanaryCondition>>,
    /// Session cookie (`name=value`) of the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_cookie: Option<String>,
    /// Primary session cookie of the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_session_affinity_cookie: Option<String>,
    /// Session cookie of the previous run, expired on sight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_session_affinity_cookie: Option<String>,
    /// Siskin: generation of the spec this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Siskin: traffic is being mirrored to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrored: Option<bool>,
    /// Siskin: the last result of every check (value, threshold, verdict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub checks: Option<Vec<CheckStatus>>,
    /// Siskin: what the run is waiting for, since when, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitStatus>,
    /// Siskin: the last call of every webhook (status code, first bytes of the answer,
    /// duration), one entry per hook name and type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub webhooks: Option<Vec<WebhookResult>>,
    /// Siskin: the id of the last request (`siskin promote|abort|retry`, annotation
    /// `siskin.dev/request`) acted on, so each is acted on once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request: Option<String>,
    /// Siskin: the last releases that ended, oldest first (at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub history: Option<Vec<ReleaseRecord>>,
}

/// How many ended releases `status.history` keeps.
pub const HISTORY_LIMIT: usize = 10;

/// One release that ended: promoted or rolled back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    /// The revision released (pod template hash).
    pub revision: String,
    /// `Succeeded` or `Failed`.
    pub phase: Phase,
    /// When it ended.
    pub finished: Time,
    /// Why, as the event said it (`Promotion completed!`, `failed checks threshold reached 2`).
    pub message: String,
}

/// How many bytes of a webhook's answer are kept in status, events and errors.
pub const WEBHOOK_BODY_BYTES: usize = 256;

/// One webhook call as it went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookResult {
    /// The hook's name.
    pub name: String,
    /// Its type (`confirm-rollout`, `rollout`, `event`, …).
    pub r#type: String,
    /// Whether the call succeeded (an answer with status 202 or lower).
    pub passed: bool,
    /// The last answer's status code; none when no answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// The first bytes of the last answer's body (lossy UTF-8).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response: String,
    /// Why it failed: no answer within the timeout, connection refused, TLS, status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attempts made (1 + retries used).
    pub attempts: u32,
    /// Milliseconds from the first attempt to the last answer.
    pub duration_ms: u64,
    /// When this outcome was first seen: a hook answering the same way again (a closed gate
    /// polled every interval) does not rewrite the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

impl WebhookResult {
    /// Whether `other` is the same outcome of the same hook (timing aside).
    pub fn same_outcome(&self, other: &WebhookResult) -> bool {
        self.name == other.name
            && self.r#type == other.r#type
            && self.passed == other.passed
            && self.status_code == other.status_code
            && self.response == other.response
            && self.error == other.error
    }

    /// One line for events and errors: `status 403 after 12 ms (2 attempts): Forbidden`.
    pub fn summary(&self) -> String {
        let mut s = match (self.status_code, &self.error) {
            (Some(code), _) => format!("status {code}"),
            (None, Some(e)) => e.clone(),
            (None, None) => "no answer".to_string(),
        };
        s.push_str(&format!(" after {} ms", self.duration_ms));
        if self.attempts > 1 {
            s.push_str(&format!(" ({} attempts)", self.attempts));
        }
        let body = self.response.trim();
        if !body.is_empty() {
            s.push_str(": ");
            s.push_str(body);
        } else if let (Some(_), Some(e)) = (self.status_code, &self.error) {
            s.push_str(": ");
            s.push_str(e);
        }
        s
    }
}

/// A status condition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryCondition {
    /// Type (`Promoted`, `Ready`, `Stalled`).
    pub r#type: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Last change of `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The outcome of one check: a metric or a webhook.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckStatus {
    /// Metric or webhook name.
    pub name: String,
    /// `metric` or `webhook`.
    pub kind: String,
    /// Measured value, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Accepted minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Accepted maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Verdict.
    pub verdict: Verdict,
    /// Where a metric was asked: `builtin` (the router's statistics), `prometheus`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The query exactly as it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Why (no data, query error, response body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Siskin: how the statistical judge decided (judge metrics only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<Judgement>,
}

/// What the statistical judge found, canary against primary over the same window. The check's
/// `value` is `bound`, compared with the tolerance in `max`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Judgement {
    /// `mann-whitney` (latency: the statistic is U, the canary-slower pairs beyond the
    /// tolerance) or `two-proportion` (errors: the statistic is the normal score z whose
    /// level puts the interval's edge on the tolerance).
    pub test: String,
    /// The test statistic.
    pub statistic: f64,
    /// One-sided p-value of "the canary is no worse than tolerated".
    pub p_value: f64,
    /// The level of this check: the run's `1 - confidence` spent over its checks.
    pub alpha: f64,
    /// Estimated effect: the canary's latency shift in percent (Hodges-Lehmann) or its excess
    /// failure rate in percentage points.
    pub effect: f64,
    /// Lower end of the effect's confidence interval (two-sided, `1 - 2 alpha`).
    pub lower: f64,
    /// Upper end of that interval.
    pub upper: f64,
    /// The one-sided lower confidence bound of the effect (the check's value).
    pub bound: f64,
    /// Seconds of traffic compared.
    pub seconds: u64,
    /// The canary's requests in the window.
    pub canary_requests: u64,
    /// The canary's failed requests.
    pub canary_failures: u64,
    /// The primary's requests in the window.
    pub primary_requests: u64,
    /// The primary's failed requests.
    pub primary_failures: u64,
}

/// Verdict of a check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Verdict {
    /// Within range.
    #[default]
    Pass,
    /// Out of range.
    Fail,
    /// The query matched nothing (or too few samples): never a pass; a failed check unless the
    /// metric's `onNoData` is `hold`.
    NoData,
    /// The query could not run (unreachable provider, refused credentials, bad query, bad
    /// answer): never a pass; a failed check unless the metric's `onError` is `hold`.
    #[serde(alias = "Inconclusive")]
    Error,
}

/// What the run waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitStatus {
    /// What is awaited (e.g. `PrimaryReady`, `CanaryReady`, `ConfirmPromotion`).
    pub reason: String,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When waiting began.
    pub since: Time,
    /// When waiting gives up.
    pub deadline: Time,
}

// === impl Phase ===

impl Phase {
    /// The Flagger name (empty for `Unset`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Unset => "",
            Phase::Initializing => "Initializing",
            Phase::Initialized => "Initialized",
            Phase::Waiting => "Waiting",
            Phase::Progressing => "Progressing",
            Phase::WaitingPromotion => "WaitingPromotion",
            Phase::Promoting => "Promoting",
            Phase::Finalising => "Finalising",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Terminating => "Terminating",
            Phase::Terminated => "Terminated",
        }
    }

    /// A release is under way (analysis, gates, promotion).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            Phase::Progressing | Phase::WaitingPromotion | Phase::Promoting | Phase::Finalising
        )
    }

    /// Waiting for a new revision.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            Phase::Initialized | Phase::Succeeded | Phase::Failed | Phase::Waiting
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if *self == Phase::Unset {
            "(none)"
        } else {
            self.name()
        })
    }
}

// === impl CanaryStatus ===

impl CanaryStatus {
    /// The condition of `type`, if present.
    pub fn condition(&self, r#type: &str) -> Option<&CanaryCondition> {
        self.conditions
            .iter()
            .flatten()
            .find(|c| c.r#type == r#type)
    }

    /// `canaryWeight` as a [`crate::Weight`] (clamped: the CRD keeps it within 0..=100).
    pub fn weight(&self) -> crate::Weight {
        crate::Weight::clamped(i64::from(self.canary_weight))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NoData => "no data",
            Verdict::Error => "error",
        })
    }
}
