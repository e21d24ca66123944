//! The compiled, immutable routing state the request path reads, and the registry that keeps
//! endpoint health and statistics across configuration versions.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use siskin_route::{Role, Table};

use crate::{
    stats::BackendStats,
    upstream::{Endpoint, Pool, dial_addr},
};

/// One configuration version, ready to serve.
#[derive(Debug)]
pub struct State {
    /// Routes.
    pub table: Table,
    /// Version number (1 for the first configuration).
    pub generation: u64,
    /// Endpoints of each backend, by backend index.
    pub pools: Vec<Pool>,
    /// Statistics of each rule's backends, aligned with `table.rules[i].backends`.
    pub stats: Vec<Vec<Arc<BackendStats>>>,
    /// Statistics of requests that matched no route.
    pub unrouted: Arc<BackendStats>,
}

/// Endpoint and statistics objects, reused when a new configuration names them again.
#[derive(Debug, Default)]
pub struct Registry {
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    stats: Mutex<HashMap<(String, String), Arc<BackendStats>>>,
}

// === impl Registry ===

impl Registry {
    /// Builds the state for `table`, reusing known endpoints and series and dropping the rest.
    pub fn build(&self, table: Table, generation: u64) -> State {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept_eps = HashMap::new();
        let pools = table
            .backends
            .iter()
            .map(|b| Pool {
                protocol: b.protocol,
                endpoints: b
                    .endpoints
                    .iter()
                    .map(|e| {
                        let addr = dial_addr(e);
                        let ep = endpoints
                            .get(&addr)
                            .cloned()
                            .unwrap_or_else(|| Arc::new(Endpoint::new(addr.clone())));
                        kept_eps.insert(addr, ep.clone());
                        ep
                    })
                    .collect(),
            })
            .collect();
        *endpoints = kept_eps;
        drop(endpoints);

        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = HashMap::new();
        let mut series = |route: &str, rule: &str, backend: &str, role: Role| {
            let key = (rule.to_string(), backend.to_string());
            let s = stats
                .get(&key)
                .filter(|s| s.role == role)
                .cloned()
                .unwrap_or_else(|| Arc::new(BackendStats::new(route, rule, backend, role)));
            kept.insert(key, s.clone());
            s
        };
        let per_rule = table
            .rules
            .iter()
            .map(|r| {
                r.backends
                    .iter()
                    .map(|(bi, _, _)| {
                        let b = &table.backends[*bi];
                        series(&r.route, &r.label, &b.name, b.role.unwrap_or_default())
                    })
                    .collect()
            })
            .collect();
        let unrouted = series("", "(unrouted)", "", Role::None);
        *stats = kept;
        State {
            table,
            generation,
            pools,
            stats: per_rule,
            unrouted,
        }
    }
}
