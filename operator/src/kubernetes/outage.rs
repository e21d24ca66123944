//! API-server outages as a Canary saw them. While the API server cannot be reached nothing can
//! be written on the Canary, so the outage is remembered here and told once it is over: the
//! first reconcile that gets through writes condition `APIServerReachable` (True, reason
//! `Recovered`, with when, how long and the last error) and a Warning event
//! `APIServerUnavailable` with the same message.

use std::{collections::HashMap, sync::Mutex};

use jiff::Timestamp;
use siskin_driver::Error;

/// The condition written when a Canary's reconciles get through again.
pub const CONDITION: &str = "APIServerReachable";
/// Its reason.
pub const RECOVERED: &str = "Recovered";
/// The reason of the Warning event.
pub const EVENT_REASON: &str = "APIServerUnavailable";

/// Outages in progress (or over and not told yet), by Canary.
#[derive(Debug, Default)]
pub struct Outages {
    by_canary: Mutex<HashMap<String, Outage>>,
}

#[derive(Clone, Debug)]
struct Outage {
    since: Timestamp,
    failures: u32,
    last: String,
}

/// Whether `e` says the API server could not be reached or answer (a transport error, a
/// timeout, 429 or 5xx) rather than refusing a request on its merits.
pub fn is_outage(e: &Error) -> bool {
    let Error::Unavailable { source, .. } = e else {
        return false;
    };
    match source.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(s)) => s.code == 429 || s.code >= 500,
        Some(_) => true,
        None => false,
    }
}

// === impl Outages ===

impl Outages {
    /// A reconcile of `key` failed with `e`: remembered when it is an outage.
    pub fn failed(&self, key: &str, e: &Error) {
        if !is_outage(e) {
            return;
        }
        let mut map = self.by_canary.lock().unwrap_or_else(|e| e.into_inner());
        let o = map.entry(key.to_string()).or_insert_with(|| Outage {
            since: Timestamp::now(),
            failures: 0,
            last: String::new(),
        });
        o.failures += 1;
        o.last = e.to_string();
    }

    /// The message telling the outage `key` went through, if any (still remembered until
    /// [`Outages::told`]).
    pub fn report(&self, key: &str, now: Timestamp) -> Option<String> {
        let map = self.by_canary.lock().unwrap_or_else(|e| e.into_inner());
        let o = map.get(key)?;
        let secs = now.duration_since(o.since).as_secs().max(0);
        Some(format!(
            "the Kubernetes API server could not be reached from {} for {secs} s ({} failed \
             reconcile{}; the last: {}); the release resumed from its status",
            o.since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            o.failures,
            if o.failures == 1 { "" } else { "s" },
            o.last
        ))
    }

    /// The outage of `key` was written on its status and told.
    pub fn told(&self, key: &str) {
        self.by_canary
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn api(code: u16) -> Error {
        Error::unavailable(
            "get Canary a",
            kube::Error::Api(
                kube::core::Status::failure("m", "r")
                    .with_code(code)
                    .boxed(),
            ),
        )
    }

    #[test]
    fn only_unreachable_or_failing_servers_are_outages() {
        assert!(is_outage(&api(503)));
        assert!(is_outage(&api(429)));
        assert!(!is_outage(&api(422)), "a refused object is not an outage");
        assert!(!is_outage(&api(403)));
        assert!(!is_outage(&Error::invalid("spec", "bad")));
        assert!(!is_outage(&Error::unavailable("encode", "not JSON")));
    }

    #[test]
    fn an_outage_is_told_once_with_its_length_and_last_error() {
        let o = Outages::default();
        o.failed("c", &api(422));
        assert!(o.report("c", Timestamp::now()).is_none());
        o.failed("c", &api(503));
        o.failed("c", &api(500));
        let later = Timestamp::now() + jiff::SignedDuration::from_secs(31);
        let msg = o.report("c", later).unwrap();
        assert!(msg.contains("for 31 s (2 failed reconciles"), "{msg}");
        assert!(msg.contains("get Canary a"), "{msg}");
        o.told("c");
        assert!(o.report("c", later).is_none());
    }
}
