//! Selection: Gateway API precedence, weighted split within binomial bounds, session cookies.

#![allow(clippy::unwrap_used)]

use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;
use siskin_route::{Config, Sticky, Table};

fn table(yaml: &str) -> Table {
    Table::compile(serde_yaml::from_str::<Config>(yaml).unwrap()).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

const BACKENDS: &str = "
backends:
- {name: primary, endpoints: ['127.0.0.1:9001']}
- {name: canary, endpoints: ['127.0.0.1:9002'], role: canary}
";

/// A small deterministic generator, so a failing run can be replayed.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
}

fn label(
    t: &Table,
    method: &str,
    host: &str,
    path: &str,
    query: Option<&str>,
    h: &HeaderMap,
) -> String {
    let s = t
        .select(
            &Method::from_bytes(method.as_bytes()).unwrap(),
            Some(host),
            path,
            query,
            h,
            0,
        )
        .unwrap();
    s.rule.label.to_string()
}

#[test]
fn gateway_api_precedence() {
    let t = table(&format!("{BACKENDS}
routes:
- name: r
  rules:
  - name: catch-all
    backendRefs: [{{name: primary}}]
  - name: api-prefix
    matches: [{{path: {{type: PathPrefix, value: /api}}}}]
    backendRefs: [{{name: primary}}]
  - name: api-v1-prefix
    matches: [{{path: {{type: PathPrefix, value: /api/v1}}}}]
    backendRefs: [{{name: primary}}]
  - name: exact
    matches: [{{path: {{type: Exact, value: /api/v1/status}}}}]
    backendRefs: [{{name: primary}}]
  - name: header
    matches: [{{path: {{type: PathPrefix, value: /api}}, headers: [{{name: x-canary, value: insider}}]}}]
    backendRefs: [{{name: canary}}]
  - name: method
    matches: [{{path: {{type: PathPrefix, value: /api}}, method: POST}}]
    backendRefs: [{{name: canary}}]
  - name: query
    matches: [{{path: {{type: PathPrefix, value: /api}}, queryParams: [{{name: v, value: '2', type: RegularExpression}}]}}]
    backendRefs: [{{name: canary}}]
- name: host-specific
  hostnames: [shop.example.com]
  rules:
  - name: shop
    backendRefs: [{{name: primary}}]
- name: wildcard
  hostnames: ['*.example.com']
  rules:
  - name: wild
    backendRefs: [{{name: primary}}]
"));
    let none = HeaderMap::new();
    assert_eq!(label(&t, "GET", "x.test", "/", None, &none), "r/catch-all");
    assert_eq!(
        label(&t, "GET", "x.test", "/apix", None, &none),
        "r/catch-all",
        "prefix matches whole segments"
    );
    assert_eq!(
        label(&t, "GET", "x.test", "/api/users", None, &none),
        "r/api-prefix"
    );
    assert_eq!(
        label(&t, "GET", "x.test", "/api/v1/users", None, &none),
        "r/api-v1-prefix",
        "longest prefix"
    );
    assert_eq!(
        label(&t, "GET", "x.test", "/api/v1/status", None, &none),
        "r/exact",
        "exact beats prefix"
    );
    assert_eq!(
        label(&t, "POST", "x.test", "/api/x", None, &none),
        "r/method",
        "method beats headers"
    );
    let insider = headers(&[("X-Canary", "insider")]);
    assert_eq!(
        label(&t, "GET", "x.test", "/api/x", None, &insider),
        "r/header"
    );
    assert_eq!(
        label(&t, "GET", "x.test", "/api/x", Some("a=1&v=2"), &none),
        "r/query"
    );
    assert_eq!(
        label(&t, "GET", "x.test", "/api/x", Some("v=3"), &none),
        "r/api-prefix"
    );
    assert_eq!(
        label(&t, "GET", "shop.example.com:8080", "/", None, &none),
        "host-specific/shop",
        "exact host wins"
    );
    assert_eq!(
        label(&t, "GET", "a.example.com", "/", None, &none),
        "wildcard/wild"
    );
    assert_eq!(
        label(&t, "GET", "example.com", "/", None, &none),
        "r/catch-all",
        "wildcard needs a label"
    );
}

#[test]
fn sticky_cookies_follow_weight() {
    let yaml = format!(
        "{BACKENDS}
routes:
- name: r
  rules:
  - backendRefs:
    - {{name: primary, weight: 90, sessionCookie: {{name: p, value: '1'}}}}
    - {{name: canary, weight: 10, sessionCookie: {{name: c, value: '2'}}}}
"
    );
    let t = table(&yaml);
    let pick = |cookie: &str, sample: u32| {
        let h = headers(&[("cookie", cookie)]);
        let s = t.select(&Method::GET, None, "/", None, &h, sample).unwrap();
        (s.backend.unwrap(), s.sticky)
    };
    assert_eq!(
        pick("a=b; c=2", 0),
        (1, Sticky::Cookie),
        "canary users stay on the canary"
    );
    assert_eq!(
        pick("p=1", u32::MAX),
        (0, Sticky::Cookie),
        "primary users stay on the primary"
    );
    assert_eq!(
        pick("c=old", u32::MAX).1,
        Sticky::Weighted,
        "a stale value is not honoured"
    );
    // Rolled back: weight 0 sends even canary-cookie holders to the primary.
    let t = table(
        &yaml
            .replace("weight: 10,", "weight: 0,")
            .replace("weight: 90", "weight: 100"),
    );
    let s = t
        .select(
            &Method::GET,
            None,
            "/",
            None,
            &headers(&[("cookie", "c=2")]),
            0,
        )
        .unwrap();
    assert_eq!((s.backend, s.sticky), (Some(0), Sticky::Weighted));
}

#[test]
fn zero_total_weight_selects_no_backend() {
    let t = table(&format!(
        "{BACKENDS}\nroutes:\n- name: r\n  rules:\n  - backendRefs: [{{name: primary, weight: 0}}]\n"
    ));
    assert_eq!(
        t.select(&Method::GET, None, "/", None, &HeaderMap::new(), 7)
            .unwrap()
            .backend,
        None
    );
}

#[test]
fn compile_errors_name_the_place() {
    let bad = Table::compile(
        serde_yaml::from_str(&format!(
            "{BACKENDS}\nroutes:\n- name: r\n  rules:\n  - backendRefs: [{{name: nope}}]\n"
        ))
        .unwrap(),
    );
    assert_eq!(
        bad.unwrap_err().to_string(),
        "routes[0].rules[0].backendRefs[0]: unknown backend \"nope\"; define it under backends"
    );
    let bad = Table::compile(serde_yaml::from_str(&format!("{BACKENDS}\nroutes:\n- name: r\n  rules:\n  - matches: [{{path: {{type: RegularExpression, value: '(['}}}}]\n")).unwrap());
    assert!(
        bad.unwrap_err()
            .to_string()
            .starts_with("routes[0].rules[0].matches[0].path: invalid regular expression")
    );
}

proptest! {
    #[test]
    fn weighted_split_stays_within_binomial_bounds(canary in 1u32..=99, seed in 1u64..u64::MAX) {
        let t = table(&format!("{BACKENDS}\nroutes:\n- name: r\n  rules:\n  - backendRefs: [{{name: primary, weight: {}}}, {{name: canary, weight: {canary}}}]\n", 100 - canary));
        let mut rng = XorShift(seed);
        let n = 4000u32;
        let h = HeaderMap::new();
        let hits = (0..n).filter(|_| t.select(&Method::GET, None, "/", None, &h, rng.next()).unwrap().backend == Some(1)).count();
        let p = f64::from(canary) / 100.0;
        let mean = f64::from(n) * p;
        let sd = (f64::from(n) * p * (1.0 - p)).sqrt();
        // 6 standard deviations: a correct sampler fails this about once in 10^9 runs.
        prop_assert!((hits as f64 - mean).abs() <= 6.0 * sd + 1.0, "{} hits for p={}", hits, p);
    }

    #[test]
    fn longest_prefix_wins(prefixes in proptest::collection::btree_set("/[a-c]{1,3}(/[a-c]{1,3}){0,2}", 1..8), path in "/[a-c]{1,3}(/[a-c]{1,3}){0,3}") {
        let rules: String = prefixes.iter().enumerate().map(|(i, p)| format!("  - name: r{i}\n    matches: [{{path: {{value: '{p}'}}}}]\n    backendRefs: [{{name: primary}}]\n")).collect();
        let t = table(&format!("{BACKENDS}\nroutes:\n- name: t\n  rules:\n{rules}"));
        let expected = prefixes.iter().enumerate()
            .filter(|(_, p)| path == **p || path.starts_with(&format!("{p}/")))
            .max_by_key(|(i, p)| (p.len(), std::cmp::Reverse(*i)))
            .map(|(i, _)| format!("t/r{i}"));
        let got = t.select(&Method::GET, None, &path, None, &HeaderMap::new(), 0).map(|s| s.rule.label.to_string());
        prop_assert_eq!(got, expected);
    }
}
