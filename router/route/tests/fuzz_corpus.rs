//! Replays every committed fuzz input (`router/fuzz/corpus/<target>/`) and every finding
//! (`router/fuzz/regressions/<target>/`) through the same entry points the fuzz targets call,
//! so `cargo test` on stable keeps them passing. An empty or missing corpus fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for kind in ["corpus", "regressions"] {
        let dir = root.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            assert_ne!(kind, "corpus", "{} is missing", dir.display());
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == ".gitkeep") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} fails", path.display());
            replayed += 1;
        }
    }
    assert!(replayed >= 3, "only {replayed} inputs for {target}");
}

#[test]
fn config_corpus() {
    replay("config", siskin_route::fuzzing::config);
}

#[test]
fn route_corpus() {
    replay("route", siskin_route::fuzzing::route);
}

#[test]
fn request_head_corpus() {
    replay("request_head", siskin_route::fuzzing::request_head);
}

#[test]
fn server_head_corpus() {
    replay("server_head", siskin_route::fuzzing::server_head);
}
