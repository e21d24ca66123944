//! `siskin validate` as a pipeline runs it: real binary, real files, exit codes and messages.

#![allow(clippy::unwrap_used)]

use std::{io::Write, path::Path, process::Command};

fn siskin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_siskin"))
}

/// Runs `siskin validate` on `yaml` (written to a temp file) and returns (exit code, stdout).
fn validate(yaml: &str, extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = siskin()
        .arg("validate")
        .args(extra)
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

const GOOD: &str = r#"
apiVersion: siskin.dev/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis:
    interval: 30s
    threshold: 5
    stepWeights: [5, 10, 30]
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
    - name: latency
      templateRef: {name: latency}
      thresholdRange: {max: 500}
    webhooks:
    - name: load
      url: http://loadtester.test/
---
apiVersion: siskin.dev/v1beta1
kind: MetricTemplate
metadata: {name: latency}
spec:
  provider: {type: prometheus, address: "http://prometheus:9090"}
  query: histogram_quantile(0.99, sum(rate(x[{{ interval }}])) by (le))
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {name: slack}
spec:
  type: slack
  address: https://hooks.slack.com/services/T/B/X
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo}
"#;

#[test]
fn valid_objects_pass_with_a_summary() {
    let (code, out) = validate(GOOD, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("3 object(s): 1 Canary, 1 MetricTemplate, 1 AlertProvider"),
        "{out}"
    );
    assert!(
        out.contains("1 other document(s) skipped") && out.contains("all valid"),
        "{out}"
    );
}

#[test]
fn the_same_objects_pass_under_flagger_group() {
    let (code, out) = validate(
        &GOOD.replace("siskin.dev/v1beta1", "flagger.app/v1beta1"),
        &[],
    );
    assert_eq!(code, 0, "{out}");
}

fn assert_rejected(yaml: &str, path: &str, words: &str) {
    let (code, out) = validate(yaml, &[]);
    assert_eq!(code, 1, "expected failure for {path}: {out}");
    let line = out
        .lines()
        .find(|l| l.contains(&format!(" {path}:")) || l.contains(&format!(" {path} ")))
        .unwrap_or_else(|| panic!("no problem at {path} in:\n{out}"));
    assert!(line.contains(words), "{line}");
    assert!(
        line.contains("input.yaml: document 1") && line.contains("Canary podinfo")
            || !line.contains("Canary"),
        "{line}"
    );
    assert!(line.contains("(fix: "), "a hint: {line}");
}

#[test]
fn step_weights_must_ascend() {
    assert_rejected(
        &GOOD.replace("[5, 10, 30]", "[5, 30, 10]"),
        "spec.analysis.stepWeights[2]",
        "strictly ascending",
    );
}

#[test]
fn weights_within_0_100() {
    let y = GOOD.replace(
        "stepWeights: [5, 10, 30]",
        "stepWeight: 10\n    maxWeight: 120",
    );
    assert_rejected(&y, "spec.analysis.maxWeight", "not a percentage");
}

#[test]
fn unknown_provider_is_an_error_not_istio() {
    let y = GOOD.replace("  targetRef:", "  provider: gatewayapi\n  targetRef:");
    assert_rejected(&y, "spec.provider", "unknown provider \"gatewayapi\"");
}

#[test]
fn unknown_webhook_type_is_an_error() {
    let y = GOOD.replace(
        "    - name: load\n",
        "    - name: load\n      type: pre-flight\n",
    );
    assert_rejected(&y, "spec.analysis.webhooks[0].type", "pre-flight");
}

#[test]
fn unknown_alert_provider_type_is_an_error() {
    let (code, out) = validate(&GOOD.replace("type: slack", "type: telegram"), &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("AlertProvider slack: error: spec.type") && out.contains("telegram"),
        "{out}"
    );
}

#[test]
fn metric_needs_builtin_name_template_or_query() {
    let y = GOOD.replace("      templateRef: {name: latency}\n", "");
    assert_rejected(
        &y,
        "spec.analysis.metrics[1]",
        "not built in and has no templateRef or query",
    );
}

#[test]
fn ab_needs_iterations() {
    let y = GOOD.replace(
        "stepWeights: [5, 10, 30]",
        "stepWeight: 10\n    match:\n    - headers: {x-canary: {exact: insider}}",
    );
    assert_rejected(&y, "spec.analysis.match", "needs iterations");
}

#[test]
fn provider_that_cannot_mirror_in_a_canary_run_is_named_with_one_that_can() {
    let y = GOOD
        .replace("  targetRef:", "  provider: gatewayapi:v1\n  targetRef:")
        .replace(
            "  service: {port: 9898}",
            "  service: {port: 9898, gatewayRefs: [{name: gw}]}",
        )
        .replace("threshold: 5", "threshold: 5\n    mirror: true");
    assert_rejected(
        &y,
        "spec.analysis.mirror",
        "provider gatewayapi:v1 mirrors only in blue/green runs (fix: set iterations (blue/green), or use provider builtin or istio)",
    );
    // The built-in router can.
    let builtin = GOOD.replace("threshold: 5", "threshold: 5\n    mirror: true");
    let (code, out) = validate(&builtin, &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn header_match_and_session_affinity_need_capable_provider() {
    let ab = GOOD
        .replace("  targetRef:", "  provider: kubernetes\n  targetRef:")
        .replace(
            "stepWeights: [5, 10, 30]",
            "iterations: 5\n    match:\n    - headers: {x-canary: {exact: insider}}",
        );
    assert_rejected(
        &ab,
        "spec.analysis.match",
        "provider kubernetes cannot route by header",
    );
    let sa = GOOD
        .replace("  targetRef:", "  provider: kubernetes\n  targetRef:")
        .replace("stepWeights: [5, 10, 30]", "iterations: 5")
        .replace(
            "threshold: 5",
            "threshold: 5\n    sessionAffinity: {cookieName: c}",
        );
    assert_rejected(
        &sa,
        "spec.analysis.sessionAffinity",
        "provider kubernetes cannot pin sessions",
    );
}

#[test]
fn providers_without_a_backend_are_refused_with_the_ones_that_exist() {
    for name in ["traefik", "contour", "appmesh", "knative"] {
        let y = GOOD.replace("  targetRef:", &format!("  provider: {name}\n  targetRef:"));
        assert_rejected(
            &y,
            "spec.provider",
            &format!(
                "provider {name} is not implemented by this Siskin yet (fix: use one of builtin, gatewayapi:v1, gatewayapi:v1beta1, kubernetes, istio, linkerd, smi:v1alpha1, smi:v1alpha2, smi:v1alpha3, osm, consul)"
            ),
        );
    }
    let (code, out) = validate(GOOD, &["--mesh-provider", "nginx"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("provider nginx is not implemented"), "{out}");
}

#[test]
fn route_options_the_backend_does_not_apply_are_refused() {
    let y = GOOD.replace(
        "  service: {port: 9898}",
        "  service: {port: 9898, retries: {attempts: 2}}",
    );
    assert_rejected(
        &y,
        "spec.service.retries",
        "provider builtin does not apply service.retries",
    );
}

#[test]
fn default_provider_flag_applies_to_canaries_without_provider() {
    let y = GOOD.replace("threshold: 5", "threshold: 5\n    mirror: true");
    let (code, out) = validate(&y, &["--mesh-provider", "kubernetes"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("provider kubernetes cannot mirror"), "{out}");
}

#[test]
fn unknown_fields_are_reported_with_a_suggestion() {
    let y = GOOD.replace("threshold: 5", "threshhold: 5");
    let (code, out) = validate(&y, &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("spec.analysis.threshhold: unknown field"),
        "{out}"
    );
    assert!(out.contains("did you mean threshold?"), "{out}");
}

#[test]
fn malformed_yaml_reports_the_line() {
    let y = "apiVersion: siskin.dev/v1beta1\nkind: Canary\nmetadata:\n  name: x\nspec:\n  analysis:\n    interval: [1m\n";
    let (code, out) = validate(y, &[]);
    assert_eq!(code, 1);
    // The parser notices the unclosed list at the end of the document (line 7 or just after).
    assert!(
        out.contains("malformed YAML (line 7") || out.contains("malformed YAML (line 8"),
        "{out}"
    );
    let tab = "apiVersion: siskin.dev/v1beta1\nkind: Canary\nmetadata:\n  name: x\nspec:\n\tanalysis: {}\n";
    let (code, out) = validate(tab, &[]);
    assert_eq!(code, 1);
    assert!(out.contains("malformed YAML (line 6"), "{out}");
}

#[test]
fn wrong_type_reports_path_and_line() {
    let (code, out) = validate(&GOOD.replace("threshold: 5", "threshold: five"), &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("spec.analysis.threshold: invalid type") && out.contains("(line 10)"),
        "{out}"
    );
}

#[test]
fn reads_standard_input_and_directories() {
    let mut child = siskin()
        .args(["validate", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(GOOD.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let out = siskin().arg("validate").arg(&examples).output().unwrap();
    assert!(
        out.status.success(),
        "examples/ must pass: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn empty_input_is_not_a_pass() {
    let (code, out) = validate(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("nothing to validate"));
}

#[test]
fn judge_metrics_take_a_tolerance_and_the_builtin_router() {
    let judge = "    - name: judge-latency\n      thresholdRange: {max: 10}\n      confidence: 0.99\n    webhooks:\n";
    let good = GOOD.replacen("    webhooks:\n", judge, 1);
    let (code, out) = validate(&good, &[]);
    assert_eq!(code, 0, "{out}");
    assert_rejected(
        &good.replace("{max: 10}", "{min: 1, max: 10}"),
        "spec.analysis.metrics[2].thresholdRange.min",
        "a minimum means nothing",
    );
    assert_rejected(
        &good.replace("confidence: 0.99", "critical: true"),
        "spec.analysis.metrics[2].critical",
        "spends its confidence",
    );
    assert_rejected(
        &good.replace("  targetRef:", "  provider: istio\n  targetRef:"),
        "spec.analysis.metrics[2].name",
        "provider istio has none",
    );
    assert_rejected(
        &good.replace(
            "      thresholdRange: {min: 99}\n",
            "      thresholdRange: {min: 99}\n      confidence: 0.9\n",
        ),
        "spec.analysis.metrics[0].confidence",
        "read only by the judge metrics",
    );
    assert_rejected(
        &good.replace(
            "      thresholdRange: {max: 10}\n",
            "      thresholdRange: {max: 10}\n      interval: 5m\n",
        ),
        "spec.analysis.metrics[2].interval",
        "last minute",
    );
}

#[test]
fn mesh_providers_are_judged_by_what_their_backend_writes() {
    let ab = GOOD.replace(
        "    stepWeights: [5, 10, 30]\n",
        "    iterations: 5\n    match:\n    - headers: {x-canary: {exact: insider}}\n",
    );
    let with = |provider: &str, service: &str| {
        ab.replace(
            "  targetRef:",
            &format!("  provider: {provider}\n  targetRef:"),
        )
        .replace("  service: {port: 9898}", service)
    };
    // SMI routes by weight only: A/B is refused with the providers that can do it.
    assert_rejected(
        &with("smi:v1alpha2", "  service: {port: 9898}"),
        "spec.analysis.match",
        "provider smi:v1alpha2 cannot route by header",
    );
    assert_rejected(
        &with("linkerd", "  service: {port: 9898}"),
        "spec.analysis.match",
        "use provider builtin or gatewayapi:v1 or gatewayapi:v1beta1 or istio or consul",
    );
    // Linkerd with the apex Service as parent (GAMMA): an HTTPRoute, which can.
    let gamma = "  service: {port: 9898, gatewayRefs: [{group: core, kind: Service, name: podinfo, port: 9898}]}";
    let (code, out) = validate(&with("linkerd", gamma), &[]);
    assert_eq!(code, 0, "{out}");
    // Istio and Consul match on headers; Istio takes its own route options.
    for p in ["istio", "consul"] {
        let (code, out) = validate(&with(p, "  service: {port: 9898}"), &[]);
        assert_eq!(code, 0, "{p}: {out}");
    }
    let istio = with(
        "istio",
        "  service: {port: 9898, retries: {attempts: 2}, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}, gateways: [public]}",
    );
    let (code, out) = validate(&istio, &[]);
    assert_eq!(code, 0, "{out}");
    assert_rejected(
        &with("consul", "  service: {port: 9898, retries: {attempts: 2}}"),
        "spec.service.retries",
        "",
    );
}
