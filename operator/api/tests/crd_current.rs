//! The CRDs committed under `config/crd/` are exactly what the types generate.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use siskin_api::{ApiGroup, crd};

#[test]
fn committed_crds_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/crd");
    for group in ApiGroup::ALL {
        let path = dir.join(format!("{}.yaml", group.name()));
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let generated = crd::to_yaml(&crd::all(group).unwrap()).unwrap();
        assert!(
            committed == generated,
            "{} is stale: run `cargo run -p siskin-api --bin crdgen` and commit the result",
            path.display()
        );
    }
}
