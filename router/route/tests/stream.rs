//! `Table::from_yaml` reads the file a route at a time; it must give what parsing the whole
//! file and compiling it gives: the same table and `/config` JSON, or the same error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::{HeaderMap, Method};
use siskin_route::{Config, Table};

const BACKENDS: &str = "backends:\n- {name: a, endpoints: ['127.0.0.1:1']}\n- {name: b, role: canary, endpoints: ['127.0.0.1:2']}\n";

fn both(text: &str) -> (Result<Table, String>, Result<Table, String>) {
    let whole = Config::from_yaml(text).and_then(|c| Table::compile(c).map_err(|e| e.to_string()));
    (whole, Table::from_yaml(text))
}

#[test]
fn tables_and_config_json_agree() {
    let texts = [
        String::new(),
        "{}".to_string(),
        "routes: []\n".to_string(),
        BACKENDS.to_string(),
        // Backends after the routes, as the router benchmark writes them.
        format!(
            "routes:\n- name: r\n  hostnames: [Svc.Example, '*.wild.example']\n  rules:\n  - matches: [{{path: {{value: /api}}, headers: [{{name: x-canary, value: insider}}]}}]\n    backendRefs: [{{name: b}}]\n  - backendRefs: [{{name: a, weight: 90}}, {{name: b, weight: 10}}]\n    timeouts: {{request: 2s}}\n    retry: {{attempts: 2, codes: [503]}}\n{BACKENDS}"
        ),
        // Backends first, two routes sharing a host name, a route without host names.
        format!(
            "{BACKENDS}routes:\n- name: one\n  hostnames: [x.example]\n  rules: [{{backendRefs: [{{name: a}}]}}]\n- name: any\n  rules: [{{backendRefs: [{{name: b}}]}}]\n- name: two\n  hostnames: [x.example]\n  rules: [{{matches: [{{path: {{type: Exact, value: /two}}}}], backendRefs: [{{name: b}}]}}]\n"
        ),
    ];
    for text in &texts {
        let (whole, streamed) = both(text);
        let whole = whole.unwrap_or_else(|e| panic!("{text}: {e}"));
        let streamed = streamed.unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(whole.rules.len(), streamed.rules.len(), "{text}");
        assert_eq!(whole.backends, streamed.backends, "{text}");
        assert_eq!(
            whole.config_json().unwrap(),
            streamed.config_json().unwrap(),
            "{text}"
        );
        // The same requests select the same rules and backends.
        for (host, path) in [
            ("svc.example", "/api"),
            ("svc.example", "/"),
            ("a.wild.example", "/x"),
            ("x.example", "/two"),
            ("x.example", "/"),
            ("other.example", "/"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("x-canary", "insider".parse().unwrap());
            for sample in [0, u32::MAX / 2, u32::MAX] {
                let pick = |t: &Table| {
                    t.select(&Method::GET, Some(host), path, None, &headers, sample)
                        .map(|s| (s.rule_index, s.backend))
                };
                assert_eq!(pick(&whole), pick(&streamed), "{text} {host}{path}");
            }
        }
    }
}

#[test]
fn errors_agree_and_name_the_place() {
    let cases = [
        (
            format!("{BACKENDS}routes:\n- name: r\n  rules: [{{backendRefs: [{{name: nope}}]}}]\n"),
            "routes[0].rules[0].backendRefs[0]: unknown backend \"nope\"",
        ),
        (
            format!(
                "routes:\n- name: r\n  rules: [{{backendRefs: [{{name: a}}]}}]\n- name: r\n  rules: []\n{BACKENDS}"
            ),
            "routes[1]: duplicate route name \"r\"",
        ),
        (
            format!("{BACKENDS}- {{name: a, endpoints: ['127.0.0.1:3']}}\nroutes: []\n"),
            "backends: duplicate backend name \"a\"",
        ),
        (
            format!("{BACKENDS}routes:\n- name: r\n  hostnames: ['*bad']\n  rules: []\n"),
            "routes[0].hostnames: \"*bad\": a wildcard must be *.domain",
        ),
        (
            "routes: []\nbackends:\n- {name: b, endpoints: [\"no-port\"]}\n".to_string(),
            "backends[0].endpoints[0]: \"no-port\" is not host:port",
        ),
    ];
    for (text, want) in &cases {
        let (whole, streamed) = both(text);
        let whole = whole.err().unwrap_or_else(|| panic!("{text}: accepted"));
        let streamed = streamed.err().unwrap_or_else(|| panic!("{text}: accepted"));
        assert_eq!(whole, streamed, "{text}");
        assert!(whole.contains(want), "{text}: {whole}");
    }
    // YAML errors: both refuse, and name the field.
    for text in [
        format!(
            "{BACKENDS}routes:\n- name: r\n  rules:\n  - backendRefs: [{{name: a, wieght: 3}}]\n"
        ),
        format!("{BACKENDS}rutes: []\n"),
        "routes: [\n".to_string(),
    ] {
        let (whole, streamed) = both(&text);
        assert!(whole.is_err() && streamed.is_err(), "{text}");
    }
    let (_, streamed) = both(&format!(
        "{BACKENDS}routes:\n- name: r\n  rules:\n  - backendRefs: [{{name: a, wieght: 3}}]\n"
    ));
    let e = streamed.err().unwrap();
    assert!(e.contains("wieght"), "{e}");
}

/// 6,000 routes are more nodes than the YAML parser's default limit (250,000): the limit grows
/// with the file.
#[test]
fn a_large_table_is_read() {
    let mut text = String::from("routes:\n");
    for i in 0..6000 {
        text.push_str(&format!(
            "- name: ns/route-{i}\n  hostnames: [svc-{i}.example]\n  rules:\n  - matches: [{{path: {{value: /api}}, headers: [{{name: x-canary, value: insider}}]}}]\n    backendRefs: [{{name: c-{i}}}]\n  - backendRefs: [{{name: p-{i}, weight: 90}}, {{name: c-{i}, weight: 10}}]\n"
        ));
    }
    text.push_str("backends:\n");
    for i in 0..6000 {
        text.push_str(&format!(
            "- {{name: p-{i}, endpoints: ['127.0.0.1:1']}}\n- {{name: c-{i}, role: canary, endpoints: ['127.0.0.1:2']}}\n"
        ));
    }
    let table = Table::from_yaml(&text).unwrap();
    assert_eq!(table.rules.len(), 12_000);
    assert_eq!(table.backends.len(), 12_000);
}

/// A table holds a rule per rule of every route: what a rule without filters, mirror, timeouts,
/// retry or cookies to expire carries inline stays small (those sit behind one pointer).
#[test]
fn a_compiled_rule_stays_small() {
    assert!(std::mem::size_of::<siskin_route::CompiledRule>() <= 96);
}
