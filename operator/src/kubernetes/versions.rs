//! What this operator last knew of the objects it reads and writes, by `resourceVersion`, so a
//! steady tick neither re-reads a Canary its cache already has nor re-applies an object that
//! nobody changed since Siskin applied the same plan to it.
//!
//! Both answers are conservative: a version that differs in any way (someone else wrote, the
//! cache lags, the operator restarted and knows nothing) means "read" or "apply", as before.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Mutex,
};

/// Versions known to this process, keyed by `kind namespace/name`.
#[derive(Debug, Default)]
pub struct Versions {
    canaries: Mutex<HashMap<String, String>>,
    applied: Mutex<HashMap<String, Applied>>,
}

/// One server-side apply: the plan's fingerprint and the version the API server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Applied {
    plan: u64,
    version: String,
}

/// A fingerprint of a planned object (its JSON text: maps are ordered, so equal plans agree).
pub fn fingerprint(value: &serde_json::Value) -> u64 {
    let mut h = DefaultHasher::new();
    value.to_string().hash(&mut h);
    h.finish()
}

// === impl Versions ===

impl Versions {
    /// Whether `version` of Canary `key` is the newest this process has read or written.
    pub fn canary_is_current(&self, key: &str, version: Option<&str>) -> bool {
        let known = lock(&self.canaries);
        matches!((known.get(key), version), (Some(k), Some(v)) if k == v)
    }

    /// Canary `key` was read or written at `version` (None: written without an answer, so
    /// the next reconcile reads it).
    pub fn saw_canary(&self, key: &str, version: Option<String>) {
        let mut known = lock(&self.canaries);
        match version {
            Some(v) => known.insert(key.to_string(), v),
            None => known.remove(key),
        };
    }

    /// Forgets Canary `key` (deleted).
    pub fn forget_canary(&self, key: &str) {
        lock(&self.canaries).remove(key);
    }

    /// Whether applying `plan` to object `key`, now at `version`, would change nothing: this
    /// process applied the same plan and the object is still at the version it answered.
    pub fn apply_is_noop(&self, key: &str, plan: u64, version: Option<&str>) -> bool {
        let Some(version) = version else {
            return false;
        };
        lock(&self.applied)
            .get(key)
            .is_some_and(|a| a.plan == plan && a.version == version)
    }

    /// Object `key` was applied with `plan` and is now at `version`.
    pub fn applied(&self, key: &str, plan: u64, version: Option<String>) {
        let mut known = lock(&self.applied);
        match version {
            Some(version) => known.insert(key.to_string(), Applied { plan, version }),
            None => known.remove(key),
        };
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_is_current_only_at_the_version_last_seen() {
        let v = Versions::default();
        assert!(
            !v.canary_is_current("Canary a/b", Some("1")),
            "nothing known"
        );
        v.saw_canary("Canary a/b", Some("5".into()));
        assert!(v.canary_is_current("Canary a/b", Some("5")));
        assert!(
            !v.canary_is_current("Canary a/b", Some("4")),
            "cache behind"
        );
        assert!(!v.canary_is_current("Canary a/b", None));
        v.saw_canary("Canary a/b", None);
        assert!(
            !v.canary_is_current("Canary a/b", Some("5")),
            "written blind"
        );
    }

    #[test]
    fn an_apply_is_skipped_only_for_the_same_plan_on_the_same_version() {
        let v = Versions::default();
        let plan = fingerprint(&serde_json::json!({"spec": {"weight": 10}}));
        let other = fingerprint(&serde_json::json!({"spec": {"weight": 20}}));
        assert!(!v.apply_is_noop("Service a/b", plan, Some("7")));
        v.applied("Service a/b", plan, Some("7".into()));
        assert!(v.apply_is_noop("Service a/b", plan, Some("7")));
        assert!(
            !v.apply_is_noop("Service a/b", other, Some("7")),
            "new plan"
        );
        assert!(
            !v.apply_is_noop("Service a/b", plan, Some("8")),
            "changed by someone"
        );
        assert!(!v.apply_is_noop("Service a/b", plan, None), "gone");
        v.applied("Service a/b", plan, None);
        assert!(
            !v.apply_is_noop("Service a/b", plan, Some("7")),
            "applied blind"
        );
    }
}
