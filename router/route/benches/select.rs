//! Micro-benchmarks of the request path's pure parts: route selection in tables of 1, 100
//! and 1,000 routes (one host name each, a 90/10 split, as the operator writes them), a
//! wildcard host, and a header modifier applied to a typical request's headers.
//!
//! `cargo bench -p siskin-route --bench select` (figures in docs/benchmarks.md).

// criterion's macros define undocumented functions.
#![allow(missing_docs)]

use std::{fmt::Write, hint::black_box};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use siskin_route::{Config, RuleFilter, Table};

/// `n` routes `app-i.bench.svc` (plus a wildcard route), each splitting 90/10.
fn table(n: usize) -> Table {
    let mut yaml = String::from("routes:\n");
    for i in 0..n {
        let _ = write!(
            yaml,
            "- name: app-{i}\n  hostnames: [app-{i}.bench.svc]\n  rules:\n  - name: split\n    \
             filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier:\n        \
             set: [{{name: x-siskin-route, value: app-{i}}}]\n        add: [{{name: x-forwarded-by, value: siskin}}]\n        \
             remove: [x-internal]\n    \
             backendRefs: [{{name: p{i}, weight: 90}}, {{name: c{i}, weight: 10}}]\n"
        );
    }
    yaml.push_str(
        "- name: wild\n  hostnames: ['*.wild.example']\n  rules:\n  - backendRefs: [{name: p0}]\nbackends:\n",
    );
    for i in 0..n {
        let _ = write!(
            yaml,
            "- {{name: p{i}, endpoints: ['127.0.0.1:9001']}}\n- {{name: c{i}, endpoints: ['127.0.0.1:9002'], role: canary}}\n"
        );
    }
    Table::compile(serde_yaml::from_str::<Config>(&yaml).expect("bench config parses"))
        .expect("bench config compiles")
}

fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("accept", "application/json"),
        ("user-agent", "bench/1.0"),
        ("x-request-id", "0b6f1c1e-0d3c-4a51-9a58-7d1c2f0e9b11"),
        ("x-internal", "yes"),
        ("accept-encoding", "gzip"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

fn selection(c: &mut Criterion) {
    let headers = request_headers();
    let mut group = c.benchmark_group("select");
    for n in [1usize, 100, 1000] {
        let t = table(n);
        let host = format!("app-{}.bench.svc", n - 1);
        group.bench_with_input(BenchmarkId::new("exact host", n), &t, |b, t| {
            let mut sample = 0u32;
            b.iter(|| {
                sample = sample.wrapping_add(0x9e37_79b9);
                let s = t.select(
                    &Method::GET,
                    Some(black_box(&host)),
                    black_box("/api/items"),
                    None,
                    &headers,
                    sample,
                );
                black_box(s.map(|s| s.backend))
            })
        });
        group.bench_with_input(BenchmarkId::new("wildcard host", n), &t, |b, t| {
            b.iter(|| {
                let s = t.select(
                    &Method::GET,
                    Some(black_box("a.b.wild.example:8080")),
                    black_box("/"),
                    None,
                    &headers,
                    7,
                );
                black_box(s.map(|s| s.rule_index))
            })
        });
    }
    group.finish();
}

fn header_rewrite(c: &mut Criterion) {
    let t = table(1);
    let Some(RuleFilter::RequestHeaders(edit)) = t.rules[0].policy().filters.first() else {
        panic!("the bench route has a header modifier");
    };
    let headers = request_headers();
    c.bench_function("header modifier (set, add, remove)", |b| {
        b.iter_batched_ref(
            || headers.clone(),
            |h| edit.apply(black_box(h)),
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, selection, header_rewrite);
criterion_main!(benches);
