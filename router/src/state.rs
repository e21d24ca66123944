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
    /// Routes. Its backends' endpoints have moved to [`State::pools`].
    pub table: Table,
    /// Version number (1 for the first configuration).
    pub generation: u64,
    /// Endpoints of each backend, by backend index.
    pub pools: Vec<Pool>,
    /// Statistics of every rule's backends, rule after rule (see [`State::rule_series`]): one
    /// vector rather than one per rule, which cost more than the series it held.
    series: Vec<Arc<BackendStats>>,
    /// Where each rule's series start in `series`.
    series_start: Vec<u32>,
    /// Statistics of requests that matched no route.
    pub unrouted: Arc<BackendStats>,
}

/// Endpoints and TLS clients, reused when a new configuration names them again. (Statistics
/// are carried over from the state being replaced, see [`Registry::build`].)
#[derive(Debug, Default)]
pub struct Registry {
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    /// TLS clients by setting, so their connection pools outlive a reload.
    tls: Mutex<HashMap<(BackendTls, Protocol), Arc<UpstreamClient>>>,
}

// === impl State ===

impl State {
    /// The statistics of rule `rule`'s backends, aligned with `table.rules[rule].backends`.
    pub fn rule_series(&self, rule: usize) -> &[Arc<BackendStats>] {
        let start = self.series_start.get(rule).map_or(0, |s| *s as usize);
        let end = self
            .series_start
            .get(rule + 1)
            .map_or(self.series.len(), |s| *s as usize);
        self.series.get(start..end).unwrap_or_default()
    }

    /// Every rule's statistics, rule after rule.
    pub fn all_series(&self) -> &[Arc<BackendStats>] {
        &self.series
    }
}

// === impl Registry ===

impl Registry {
    /// Builds the state for `table`, reusing known endpoints and TLS clients, and the series
    /// of `previous` (the state this one replaces) whose rule label, backend name and role are
    /// the same; the rest are dropped. Fails (naming the backend) when a backend's TLS setting
    /// cannot be used: an unreadable CA file, no usable CA certificate.
    pub fn build(
        &self,
        mut table: Table,
        generation: u64,
        clients: &Clients,
        previous: Option<&State>,
    ) -> Result<State, String> {
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
        // The endpoints move from the table to the pools: requests read them there only.
        let pools = table
            .backends
            .iter_mut()
            .zip(upstream)
            .map(|(b, client)| Pool {
                client,
                endpoints: std::mem::take(&mut b.endpoints)
                    .iter()
                    .map(|e| {
                        let addr = dial_addr(e);
                        // One endpoint per address, shared by every backend that lists it
                        // (and its idle connections with it).
                        let ep = kept_eps
                            .get(&addr)
                            .or_else(|| endpoints.get(&addr))
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

        // The previous state's series by rule label and backend name, for this build only.
        let known: HashMap<(&str, &str), &Arc<BackendStats>> = previous
            .map(|p| {
                p.series
                    .iter()
                    .map(|s| ((&*s.rule, &*s.backend), s))
                    .collect()
            })
            .unwrap_or_default();
        let series = |route: &Arc<str>, rule: &Arc<str>, backend: &Arc<str>, role: Role| {
            known
                .get(&(&**rule, &**backend))
                .filter(|s| s.role == role)
                .map(|s| Arc::clone(s))
                .unwrap_or_else(|| {
                    Arc::new(BackendStats::new(
                        route,
                        rule.clone(),
                        backend.clone(),
                        role,
                    ))
                })
        };
        // One name per backend, shared by the series of every rule that sends to it.
        let names: Vec<Arc<str>> = table.backends.iter().map(|b| b.name.clone()).collect();
        let count = table.rules.iter().map(|r| r.backends.len()).sum();
        let mut all = Vec::with_capacity(count);
        let mut series_start = Vec::with_capacity(table.rules.len());
        for r in &table.rules {
            series_start.push(u32::try_from(all.len()).map_err(|_| "too many rules".to_string())?);
            for (bi, _, _) in &r.backends {
                let role = table.backends[*bi].role.unwrap_or_default();
                all.push(series(&r.route, &r.label, &names[*bi], role));
            }
        }
        let unrouted = previous.map(|p| p.unrouted.clone()).unwrap_or_else(|| {
            Arc::new(BackendStats::new(
                "",
                Arc::from("(unrouted)"),
                Arc::from(""),
                Role::None,
            ))
        });
        drop(known);
        Ok(State {
            table,
            generation,
            pools,
            series: all,
            series_start,
            unrouted,
        })
    }
}
