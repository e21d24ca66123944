//! The compiled, immutable routing state the request path reads, and the registry that keeps
//! endpoint health and statistics across configuration versions.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use siskin_route::{BackendTls, Protocol, Role, Table};

use crate::{
    stats::BackendStats,
    upstream::{Clients, Endpoint, Pool, UpstreamClient, dial_addr},
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

/// A series' identity: rule label and backend name.
type SeriesKey = (Arc<str>, Arc<str>);

/// Endpoint and statistics objects, reused when a new configuration names them again.
#[derive(Debug, Default)]
pub struct Registry {
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    /// Series by rule label and backend name.
    stats: Mutex<HashMap<SeriesKey, Arc<BackendStats>>>,
    /// TLS clients by setting, so their connection pools outlive a reload.
    tls: Mutex<HashMap<(BackendTls, Protocol), Arc<UpstreamClient>>>,
}

// === impl Registry ===

impl Registry {
    /// Builds the state for `table`, reusing known endpoints, series and TLS clients and
    /// dropping the rest. Fails (naming the backend) when a backend's TLS setting cannot be
    /// used: an unreadable CA file, no usable CA certificate.
    pub fn build(&self, table: Table, generation: u64, clients: &Clients) -> Result<State, String> {
        let mut tls = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept_tls = HashMap::new();
        let mut upstream = Vec::with_capacity(table.backends.len());
        for (i, b) in table.backends.iter().enumerate() {
            let client = match &b.tls {
                None => clients.for_protocol(b.protocol),
                Some(t) => {
                    let key = ((**t).clone(), b.protocol);
                    let client = match tls.get(&key) {
                        Some(c) => c.clone(),
                        None => Arc::new(
                            clients
                                .tls(t, b.protocol)
                                .map_err(|e| format!("backends[{i}] ({}): {e}", b.name))?,
                        ),
                    };
                    kept_tls.insert(key, client.clone());
                    client
                }
            };
            upstream.push(client);
        }
        *tls = kept_tls;
        drop(tls);
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept_eps = HashMap::new();
        let pools = table
            .backends
            .iter()
            .zip(upstream)
            .map(|(b, client)| Pool {
                client,
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
        let mut kept = HashMap::with_capacity(stats.len());
        let mut series = |route: &Arc<str>, rule: &Arc<str>, backend: &Arc<str>, role: Role| {
            let key = (rule.clone(), backend.clone());
            let s = stats
                .get(&key)
                .filter(|s| s.role == role)
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(BackendStats::new(
                        route.clone(),
                        rule.clone(),
                        backend.clone(),
                        role,
                    ))
                });
            kept.insert(key, s.clone());
            s
        };
        // One name per backend, shared by the series of every rule that sends to it.
        let names: Vec<Arc<str>> = table
            .backends
            .iter()
            .map(|b| Arc::from(b.name.as_str()))
            .collect();
        let per_rule = table
            .rules
            .iter()
            .map(|r| {
                r.backends
                    .iter()
                    .map(|(bi, _, _)| {
                        let role = table.backends[*bi].role.unwrap_or_default();
                        series(&r.route, &r.label, &names[*bi], role)
                    })
                    .collect()
            })
            .collect();
        let unrouted = series(
            &Arc::from(""),
            &Arc::from("(unrouted)"),
            &Arc::from(""),
            Role::None,
        );
        *stats = kept;
        Ok(State {
            table,
            generation,
            pools,
            stats: per_rule,
            unrouted,
        })
    }
}
