//! What a routing table costs in memory, counted exactly: every allocation of this test binary
//! goes through a counting allocator, so the figures are the heap the router holds, not the
//! resident size (which also carries what the allocator keeps from parsing). The table is the
//! router benchmark's: 1,000 routes, each with a host name, a rule matching a path and a header,
//! and a 90/10 split, over 2,000 backends. The bounds fail the test when a change makes the
//! table grow; `cargo test -p siskin-router --test memory -- --nocapture` prints the figures
//! recorded in docs/benchmarks.md.

#![allow(clippy::unwrap_used)]

use std::{alloc::System, time::Duration};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn bench_config(routes: usize) -> String {
    let mut out = String::from("routes:\n");
    for i in 0..routes {
        out.push_str(&format!(
            "- name: ns/route-{i}\n  hostnames: [svc-{i}.example]\n  rules:\n  - matches: [{{path: {{value: /api}}, headers: [{{name: x-canary, value: insider}}]}}]\n    backendRefs: [{{name: c-{i}}}]\n  - backendRefs: [{{name: p-{i}, weight: 90}}, {{name: c-{i}, weight: 10}}]\n"
        ));
    }
    out.push_str("backends:\n");
    for i in 0..routes {
        out.push_str(&format!(
            "- {{name: p-{i}, endpoints: ['127.0.0.1:18081']}}\n- {{name: c-{i}, role: canary, endpoints: ['127.0.0.1:18082']}}\n"
        ));
    }
    out
}

/// Bytes allocated and not freed since `region` began.
fn held(region: &Region<'_, System>) -> i64 {
    let s = region.change();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

#[test]
fn a_thousand_routes_hold_under_one_and_a_half_mib_and_a_used_series_under_two_thirds_of_a_kib() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let text = bench_config(1000);
    let clients = siskin_router::upstream::Clients::new(Duration::from_secs(2));
    let registry = siskin_router::state::Registry::default();

    let region = Region::new(GLOBAL);
    let table = siskin_router::config::parse(&text).unwrap();
    let table_bytes = held(&region);
    let json_bytes = table.config_bytes() as i64;
    let state = registry.build(table, 1, &clients, None).unwrap();
    let idle = held(&region);
    // Each allocation also costs the allocator a header and rounding (about 16 bytes here),
    // which counts in the resident size: fewer of them is less memory.
    let changes = region.change();
    let live_allocations = changes.allocations as i64 - changes.deallocations as i64;
    // The benchmark's "every route hit once": one request per route, on the split rule.
    for rule in (1..state.table.rules.len()).step_by(2) {
        state.rule_series(rule)[0].record(1_000_000, 200, None, Duration::from_millis(3));
    }
    let hit_once = held(&region);
    // Every series of every rule used (a busy table), in one five-second period.
    for series in state.all_series() {
        series.record(1_000_000, 200, None, Duration::from_millis(3));
    }
    let all_used = held(&region);
    let series_count = state.all_series().len();
    let kib = |b: i64| b as f64 / 1024.0;
    eprintln!(
        "1,000 routes (2,000 rules, 2,000 backends, {series_count} series): table {:.0} KiB \
         (of which the /config JSON {:.0} KiB, compressed), with endpoints and series {:.0} KiB \
         idle in {live_allocations} allocations; {:.0} KiB after one request per route; {:.0} KiB \
         with every series used once ({:.2} KiB per used series)",
        kib(table_bytes),
        kib(json_bytes),
        kib(idle),
        kib(hit_once),
        kib(all_used),
        kib(all_used - idle) / series_count as f64,
    );
    assert!(idle < 1_500 * 1024, "idle table {idle} bytes");
    assert!(
        live_allocations < 26_000,
        "idle table in {live_allocations} allocations"
    );
    assert!(
        hit_once < 1_800 * 1024,
        "after one request per route {hit_once} bytes"
    );
    assert!(
        (all_used - idle) / (series_count as i64) < 640,
        "a used series holds {} bytes",
        (all_used - idle) / series_count as i64
    );
    drop(state);
}
