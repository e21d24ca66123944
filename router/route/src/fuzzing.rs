//! Entry points for the fuzz targets in `router/fuzz`, shared with the corpus replay test
//! (`tests/fuzz_corpus.rs`) so every committed input and every finding runs in `cargo test`.
//! Each takes arbitrary bytes, must not panic, and asserts the invariants the code promises.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::{Config, Table, normalize};

/// The configuration file: parse, and compile what parses. Compiling twice gives the same
/// table shape (compilation is deterministic), and reading the file a route at a time
/// ([`Table::from_yaml`]) gives the same table, or the same error, as parsing it whole and
/// compiling it.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let streamed = Table::from_yaml(text);
    let Ok(config) = Config::from_yaml(text) else {
        assert!(
            streamed.is_err(),
            "a file that does not parse was compiled a route at a time"
        );
        return;
    };
    let first = Table::compile(config.clone());
    let second = Table::compile(config);
    match (&first, second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.rules.len(), b.rules.len());
            assert_eq!(a.backends, b.backends);
        }
        (Err(a), Err(b)) => assert_eq!(*a, b),
        _ => panic!("compiling the same configuration twice disagreed"),
    }
    match (first, streamed) {
        (Ok(whole), Ok(streamed)) => {
            assert_eq!(whole.rules.len(), streamed.rules.len());
            assert_eq!(whole.backends, streamed.backends);
            assert_eq!(
                whole.config_json().ok(),
                streamed.config_json().ok(),
                "the /config JSON differs"
            );
        }
        (Err(whole), Err(streamed)) => assert_eq!(whole.to_string(), streamed),
        (whole, streamed) => panic!(
            "compiled whole: {:?}; a route at a time: {:?}",
            whole.err(),
            streamed.err()
        ),
    }
}

/// Route compilation and selection: the input is a YAML configuration, a NUL byte, then a
/// request as lines `METHOD`, `HOST`, `PATH`, `QUERY`, and `name: value` headers, and a sample
/// number. Whatever is selected must point into the table.
pub fn route(data: &[u8]) {
    let Some(split) = data.iter().position(|b| *b == 0) else {
        return;
    };
    let (Ok(yaml), Ok(request)) = (
        std::str::from_utf8(&data[..split]),
        std::str::from_utf8(&data[split + 1..]),
    ) else {
        return;
    };
    let Ok(table) = Table::from_yaml(yaml) else {
        return;
    };
    let mut lines = request.split('\n');
    let method =
        Method::from_bytes(lines.next().unwrap_or("GET").as_bytes()).unwrap_or(Method::GET);
    let host = lines.next().filter(|h| !h.is_empty());
    let path = lines.next().unwrap_or("/");
    let query = lines.next().filter(|q| !q.is_empty());
    let mut headers = HeaderMap::new();
    let mut sample = 0u32;
    for line in lines {
        if let Some(n) = line.strip_prefix("#") {
            sample = n
                .bytes()
                .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
            continue;
        }
        if let Some((n, v)) = line.split_once(':')
            && let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.trim().as_bytes()),
                HeaderValue::from_str(v.trim()),
            )
        {
            headers.append(n, v);
        }
    }
    if let Some(sel) = table.select(&method, host, path, query, &headers, sample) {
        assert!(
            sel.rule_index < table.rules.len(),
            "rule index out of range"
        );
        assert!(
            std::ptr::eq(sel.rule, &table.rules[sel.rule_index]),
            "the rule returned is the rule at rule_index"
        );
        if let Some(b) = sel.backend {
            let (bi, weight, _) = sel.rule.backends[b];
            assert!(bi < table.backends.len(), "backend index out of range");
            assert!(weight > 0, "a backend of weight 0 was chosen");
        } else {
            assert!(
                sel.rule.backends.iter().all(|(_, w, _)| *w == 0),
                "no backend chosen though one has weight"
            );
        }
    }
}

/// A request path as the router receives it: normalized paths are absolute, have no empty,
/// `.` or `..` segments, and normalizing again changes nothing.
pub fn request_head(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normal) = normalize::path(path) else {
        return;
    };
    assert!(normal.starts_with('/'), "{normal:?} is not absolute");
    assert!(!normal.contains("//"), "{normal:?} has an empty segment");
    for segment in normal.split('/').skip(1) {
        assert!(
            segment != "." && segment != "..",
            "{normal:?} keeps a dot segment"
        );
    }
    let again = normalize::path(&normal).expect("a normalized path normalizes");
    assert_eq!(again, normal, "normalizing is not idempotent for {path:?}");
}

/// An HTTP/1.1 request head as the router's own server classifies it: a simple head's parts
/// lie inside it, its target is in origin form, no shorter prefix is a complete head, and it
/// never carries a body, an upgrade or `Expect` (those go to hyper's server).
pub fn server_head(data: &[u8]) {
    use crate::head::{HEAD_LIMIT, Head, classify};
    let Head::Simple(h) = classify(data) else {
        return;
    };
    assert!(
        h.len <= data.len() && h.len <= HEAD_LIMIT,
        "head length {}",
        h.len
    );
    let spans = [h.method, h.target]
        .into_iter()
        .chain(h.fields().iter().flat_map(|(n, v)| [*n, *v]));
    for s in spans {
        assert!(s.range().end <= h.len, "{s:?} lies outside the head");
    }
    assert!(!h.method.of(data).is_empty(), "empty method");
    assert!(
        h.target.of(data).starts_with(b"/"),
        "target not in origin form"
    );
    for k in [0, h.len / 2, h.len - 1] {
        assert!(
            !matches!(classify(&data[..k]), Head::Simple(_)),
            "a {k}-byte prefix of a {}-byte head is complete",
            h.len
        );
    }
    for (n, v) in h.fields() {
        let (n, v) = (n.of(data), v.of(data));
        for refused in [&b"transfer-encoding"[..], b"upgrade", b"expect"] {
            assert!(!n.eq_ignore_ascii_case(refused), "a simple head has {n:?}");
        }
        if n.eq_ignore_ascii_case(b"content-length") {
            assert_eq!(v, b"0", "a simple head declares a body");
        }
    }
}
