//! The YAML configuration file: loading, and reloading when it changes. A bad file keeps the
//! last good configuration; the error is shown on the admin port and counted in a metric.

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use siskin_route::Table;

/// Reads and compiles a configuration file. Errors name the file and the field.
pub fn load(path: &Path) -> Result<Table, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses and compiles configuration text, a route at a time ([`Table::from_yaml`]).
pub fn parse(text: &str) -> Result<Table, String> {
    Table::from_yaml(text)
}

/// A cheap fingerprint of a file: modification time and length.
pub fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// How often the file is checked for changes.
pub const POLL: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runnable_examples_compile() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/router");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("examples/router exists") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 3, "{n} examples");
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse("routes:\n- name: r\n  rules:\n  - backendRefs: [{name: b, wieght: 3}]\n")
            .unwrap_err();
        assert!(e.contains("unknown field `wieght`"), "{e}");
        let e =
            parse("routes: []\nbackends:\n- {name: b, endpoints: [\"no-port\"]}\n").unwrap_err();
        assert_eq!(e, "backends[0].endpoints[0]: \"no-port\" is not host:port");
    }
}
