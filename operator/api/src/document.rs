//! Reading our kinds from multi-document YAML, with every problem located.
//!
//! Each document is read twice: once as plain YAML (to find `apiVersion`/`kind` and to report
//! malformed YAML with its line), then into the typed resource, recording type errors with their
//! field path and line and every field the type does not know (the API server would prune it
//! silently; in Git it is almost always a typo).

use serde::de::DeserializeOwned;

use crate::{AlertProvider, ApiGroup, Canary, MetricTemplate, validate::Problem};

/// One of our resources.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A Canary.
    Canary(Box<Canary>),
    /// A MetricTemplate.
    MetricTemplate(Box<MetricTemplate>),
    /// An AlertProvider.
    AlertProvider(Box<AlertProvider>),
}

/// One document of a YAML stream.
#[derive(Clone, Debug)]
pub struct Document {
    /// 1-based index of the document in the stream.
    pub index: usize,
    /// 1-based line where the document starts.
    pub line: usize,
    /// `kind`, when the document has one.
    pub kind: Option<String>,
    /// `metadata.name`, when the document has one.
    pub name: Option<String>,
    /// The API group, when it is one of ours.
    pub group: Option<ApiGroup>,
    /// The typed object, when the document is one of our kinds and could be read.
    pub object: Option<Object>,
    /// Problems found while reading.
    pub problems: Vec<Problem>,
    /// True when the document is not one of our kinds (a Deployment next to a Canary).
    pub foreign: bool,
}

/// Splits a YAML stream into documents and reads each one.
pub fn parse_stream(text: &str) -> Vec<Document> {
    split_documents(text)
        .into_iter()
        .enumerate()
        .filter(|(_, (_, body))| !is_blank(body))
        .map(|(i, (line, body))| parse_document(i + 1, line, &body))
        .collect()
}

fn is_blank(body: &str) -> bool {
    body.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

/// Splits on `---` and `...` lines, keeping the 1-based line each document starts on.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut body = String::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        let is_marker = trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "...";
        if is_marker {
            docs.push((start, std::mem::take(&mut body)));
            start = i + 2;
            if let Some(rest) = trimmed.strip_prefix("--- ") {
                body.push_str(rest);
                body.push('\n');
                start = i + 1;
            }
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    docs.push((start, body));
    docs
}

fn parse_document(index: usize, line: usize, body: &str) -> Document {
    let mut doc = Document {
        index,
        line,
        kind: None,
        name: None,
        group: None,
        object: None,
        problems: Vec::new(),
        foreign: false,
    };
    let value: serde_yaml::Value = match serde_yaml::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            let at = e.location().map(|l| l.line() + line - 1);
            doc.problems.push(Problem::error(
                "",
                format!(
                    "malformed YAML{}: {}",
                    at_line(at),
                    strip_location(&e.to_string())
                ),
                "fix the indentation or quoting on that line",
            ));
            return doc;
        }
    };
    let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_string);
    doc.kind = text("kind");
    doc.name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string);
    let api_version = text("apiVersion").unwrap_or_default();
    let ours = matches!(
        doc.kind.as_deref(),
        Some("Canary" | "MetricTemplate" | "AlertProvider")
    );
    if !ours {
        // Other kinds (and kind-less files such as kustomization.yaml) sit next to ours in
        // Git; they are skipped unless they claim one of our groups.
        doc.foreign = ApiGroup::from_api_version(&api_version).is_err();
        if !doc.foreign {
            doc.problems.push(Problem::error(
                "kind",
                format!(
                    "{api_version} has no kind {:?}",
                    doc.kind.as_deref().unwrap_or_default()
                ),
                "use kind Canary, MetricTemplate or AlertProvider",
            ));
        }
        return doc;
    }
    match ApiGroup::from_api_version(&api_version) {
        Ok(g) => doc.group = Some(g),
        Err(_) => {
            doc.problems.push(Problem::error(
                "apiVersion",
                format!("unsupported apiVersion {api_version:?}"),
                "use siskin.dev/v1beta1 (or flagger.app/v1beta1)",
            ));
            return doc;
        }
    }
    if doc.name.as_deref().unwrap_or_default().is_empty() {
        doc.problems.push(Problem::error(
            "metadata.name",
            "the object has no name",
            "set metadata.name",
        ));
    }
    doc.object = match doc.kind.as_deref() {
        Some("Canary") => typed::<Canary>(&value, body, line, &mut doc.problems)
            .map(|c| Object::Canary(Box::new(c))),
        Some("MetricTemplate") => typed::<MetricTemplate>(&value, body, line, &mut doc.problems)
            .map(|m| Object::MetricTemplate(Box::new(m))),
        _ => typed::<AlertProvider>(&value, body, line, &mut doc.problems)
            .map(|a| Object::AlertProvider(Box::new(a))),
    };
    doc
}

/// Reads `T`, collecting unknown fields and the first type error with its path and line.
///
/// A `null` is an absent field, as the API server treats it (it prunes nulls before
/// validation), so the typed read runs on the document with nulls removed. When that read
/// fails, the text is read again to locate the error.
fn typed<T: DeserializeOwned>(
    value: &serde_yaml::Value,
    body: &str,
    first_line: usize,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let pruned = without_nulls(value.clone());
    let ignored = serde_ignored::Deserializer::new(pruned, &mut record);
    let result: Result<T, _> = serde_path_to_error::deserialize(ignored);
    for path in unknown {
        let path = path.trim_start_matches('?').replace(".?", "");
        if path == "status" || path.starts_with("status.") {
            continue;
        }
        problems.push(Problem::error(
            &path,
            "unknown field (the API server would drop it)",
            &suggest(&path),
        ));
    }
    match result {
        Ok(v) => Some(v),
        Err(pruned_err) => {
            let located =
                serde_path_to_error::deserialize::<_, T>(serde_yaml::Deserializer::from_str(body));
            let (path, inner) = match located {
                Err(e) => (e.path().to_string(), e.into_inner()),
                Ok(_) => (pruned_err.path().to_string(), pruned_err.into_inner()),
            };
            let at = inner.location().map(|l| l.line() + first_line - 1);
            let path = if path == "." { String::new() } else { path };
            problems.push(Problem::error(
                &path,
                format!(
                    "{}{}",
                    clean_message(&inner.to_string(), &path),
                    at_line(at)
                ),
                "use the type the field expects (see config/crd/ for the schema)",
            ));
            None
        }
    }
}

/// Removes `key: null` entries at every level.
fn without_nulls(v: serde_yaml::Value) -> serde_yaml::Value {
    match v {
        serde_yaml::Value::Mapping(m) => serde_yaml::Value::Mapping(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        serde_yaml::Value::Sequence(s) => {
            serde_yaml::Value::Sequence(s.into_iter().map(without_nulls).collect())
        }
        other => other,
    }
}

/// serde_yaml prefixes the path and appends "at line X column Y"; we report both ourselves.
fn clean_message(msg: &str, path: &str) -> String {
    let msg = msg
        .strip_prefix(path)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(msg);
    strip_location(msg)
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

/// serde_yaml appends "at line X column Y"; we report absolute lines ourselves.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// A hint for an unknown field: a known sibling with a close spelling, if any.
fn suggest(path: &str) -> String {
    let (parent, field) = path.rsplit_once('.').unwrap_or(("", path));
    let known = crate::validate::known_fields(parent);
    let lower = field.to_lowercase();
    let best = known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, k)) => format!("did you mean {k}?"),
        None if known.is_empty() => "remove it".to_string(),
        None => format!("remove it; known fields here: {}", known.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_keeps_lines() {
        let text = "a: 1\n---\nb: 2\n---\n# only a comment\n---\nc: 3\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[1].0, 3);
        assert_eq!(docs[3].0, 7);
    }

    #[test]
    fn malformed_yaml_reports_absolute_line() {
        let text = "kind: Deployment\n---\napiVersion: siskin.dev/v1beta1\nkind: Canary\nmetadata:\n  name: x\n spec: [\n";
        let docs = parse_stream(text);
        let p = &docs[1].problems[0];
        assert!(p.message.contains("malformed YAML (line"), "{p:?}");
    }

    #[test]
    fn unknown_field_gets_a_suggestion() {
        let text = "apiVersion: siskin.dev/v1beta1\nkind: Canary\nmetadata:\n  name: x\nspec:\n  analysis:\n    stepweight: 10\n";
        let docs = parse_stream(text);
        let p = docs[0]
            .problems
            .iter()
            .find(|p| p.path == "spec.analysis.stepweight")
            .expect("unknown field reported");
        assert_eq!(p.hint.as_deref(), Some("did you mean stepWeight?"));
    }

    #[test]
    fn type_error_names_path_and_line() {
        let text = "apiVersion: siskin.dev/v1beta1\nkind: Canary\nmetadata:\n  name: x\nspec:\n  analysis:\n    threshold: lots\n";
        let docs = parse_stream(text);
        let p = &docs[0].problems[0];
        assert_eq!(p.path, "spec.analysis.threshold");
        assert!(p.message.contains("line 7"), "{p:?}");
    }

    #[test]
    fn foreign_kinds_are_skipped() {
        let docs = parse_stream("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n");
        assert!(docs[0].foreign && docs[0].problems.is_empty());
    }
}
