//! Background `cmd` tasks, one at a time per canary and command (as Flagger: a second call
//! while the same command runs is skipped), with the last finished load run's results.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::load::Summary;

/// One canary's command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunKey {
    /// The payload's namespace.
    pub namespace: String,
    /// The payload's name.
    pub name: String,
    /// The command line.
    pub cmd: String,
}

#[derive(Debug, Default)]
struct Slot {
    running: bool,
    last: Option<Summary>,
}

/// The background runs.
#[derive(Debug, Default)]
pub struct Runs {
    slots: Mutex<HashMap<RunKey, Slot>>,
}

/// Marks a run finished when dropped (also when the run panics), keeping its results.
pub struct RunGuard {
    runs: Arc<Runs>,
    key: RunKey,
    /// The results to keep as the last run's.
    pub summary: Option<Summary>,
}

// === impl Runs ===

impl Runs {
    /// Starts `key` unless it is running. Returns the guard (None: already running) and the
    /// last finished run's results.
    pub fn try_start(self: &Arc<Self>, key: RunKey) -> (Option<RunGuard>, Option<Summary>) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(key.clone()).or_default();
        let last = slot.last.clone();
        if slot.running {
            return (None, last);
        }
        slot.running = true;
        let guard = RunGuard {
            runs: self.clone(),
            key,
            summary: None,
        };
        (Some(guard), last)
    }
}

// === impl RunGuard ===

impl RunGuard {
    /// Keeps `summary` as the last run's results (stored when the guard drops).
    pub fn keep(&mut self, summary: Summary) {
        self.summary = Some(summary);
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let mut slots = self.runs.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get_mut(&self.key) {
            slot.running = false;
            if let Some(s) = self.summary.take() {
                slot.last = Some(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_a_running_command() {
        let runs = Arc::new(Runs::default());
        let key = RunKey {
            namespace: "test".into(),
            name: "podinfo".into(),
            cmd: "hey".into(),
        };
        let (guard, last) = runs.try_start(key.clone());
        assert!(guard.is_some() && last.is_none());
        assert!(runs.try_start(key.clone()).0.is_none());
        let other = RunKey {
            name: "other".into(),
            ..key.clone()
        };
        assert!(runs.try_start(other).0.is_some());
        drop(guard);
        assert!(runs.try_start(key).0.is_some());
    }
}
