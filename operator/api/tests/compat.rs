//! Every Canary, MetricTemplate and AlertProvider document in Flagger's own manifests,
//! examples and docs (`../shared/flagger-data/`) reads under both API groups and writes back
//! with no field lost or changed.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use siskin_api::{
    AlertProvider, ApiGroup, Canary, MetricTemplate,
    document::{Object, parse_stream},
};

fn flagger_data() -> PathBuf {
    let dir = match std::env::var_os("SISKIN_SHARED") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
    .join("flagger-data");
    assert!(
        dir.is_dir(),
        "Flagger's data is missing at {} (set SISKIN_SHARED to the shared/ folder)",
        dir.display()
    );
    dir
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // Helm chart templates are Go templates, not YAML documents.
            if path.file_name().is_some_and(|n| n == "templates") {
                continue;
            }
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Every leaf of `original` is in `written` with the same value (numbers compared as numbers).
fn assert_subset(original: &Value, written: &Value, path: &str, file: &Path) {
    match (original, written) {
        (Value::Object(a), Value::Object(b)) => {
            // A null is an absent field to the API server.
            for (k, v) in a.iter().filter(|(_, v)| !v.is_null()) {
                let w = b.get(k).unwrap_or_else(|| {
                    panic!(
                        "{}: field {path}.{k} lost on re-serialization",
                        file.display()
                    )
                });
                assert_subset(v, w, &format!("{path}.{k}"), file);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(
                a.len(),
                b.len(),
                "{}: {path} length changed",
                file.display()
            );
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_subset(x, y, &format!("{path}[{i}]"), file);
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            assert_eq!(a.as_f64(), b.as_f64(), "{}: {path} changed", file.display());
        }
        (a, b) => assert_eq!(a, b, "{}: {path} changed", file.display()),
    }
}

fn round_trip(doc_value: &Value, group: ApiGroup, file: &Path) -> usize {
    let mut v = doc_value.clone();
    v["apiVersion"] = Value::String(group.api_version());
    let yaml = serde_yaml::to_string(&v).unwrap();
    let docs = parse_stream(&yaml);
    assert_eq!(docs.len(), 1);
    let doc = &docs[0];
    let unknown: Vec<_> = doc
        .problems
        .iter()
        .filter(|p| p.message.contains("unknown field") || p.message.contains("malformed"))
        .collect();
    // Fragments in the docs may lack a name; everything else must read cleanly.
    let reading: Vec<_> = doc
        .problems
        .iter()
        .filter(|p| p.path != "metadata.name")
        .collect();
    assert!(unknown.is_empty(), "{}: {unknown:?}", file.display());
    assert!(reading.is_empty(), "{}: {reading:?}", file.display());
    let written = match doc.object.as_ref().expect("typed object") {
        Object::Canary(c) => {
            assert_eq!(c.api_group(), Some(group));
            serde_json::to_value(c.as_ref()).unwrap()
        }
        Object::MetricTemplate(m) => serde_json::to_value(m.as_ref()).unwrap(),
        Object::AlertProvider(a) => serde_json::to_value(a.as_ref()).unwrap(),
    };
    assert_subset(&v, &written, "", file);
    1
}

#[test]
fn flagger_documents_round_trip_under_both_groups() {
    let mut files = Vec::new();
    yaml_files(&flagger_data(), &mut files);
    files.sort();
    let (mut canaries, mut templates, mut providers) = (0, 0, 0);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for de in serde_yaml::Deserializer::from_str(&text) {
            let Ok(value) = Value::deserialize(de) else {
                continue;
            };
            let kind = value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let api = value
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !api.starts_with("flagger.app/") {
                continue;
            }
            let n: usize = ApiGroup::ALL
                .iter()
                .map(|g| round_trip(&value, *g, file))
                .sum();
            match kind {
                "Canary" => canaries += n / 2,
                "MetricTemplate" => templates += n / 2,
                "AlertProvider" => providers += n / 2,
                other => panic!("{}: unexpected flagger.app kind {other}", file.display()),
            }
        }
    }
    // The inventory in ../shared/spec/flagger.md §8: guard against silently reading nothing.
    assert!(canaries >= 70, "only {canaries} Canaries found");
    assert!(templates >= 30, "only {templates} MetricTemplates found");
    assert!(providers >= 1, "only {providers} AlertProviders found");
}

#[test]
fn typed_objects_accept_both_groups() {
    let c = Canary::default().with_group(ApiGroup::Flagger);
    assert_eq!(c.api_version, "flagger.app/v1beta1");
    let m = MetricTemplate::default().with_group(ApiGroup::Siskin);
    assert_eq!(m.api_group(), Some(ApiGroup::Siskin));
    let a = AlertProvider::default().with_group(ApiGroup::Flagger);
    assert_eq!(a.kind, "AlertProvider");
}
