//! The Grafana dashboards of `config/grafana/` against a real Prometheus (Debian's
//! `prometheus`) scraping a real operator and router on the test control plane, after a
//! release promoted, one rolled back, alerts sent, a Canary that cannot be reconciled and a
//! request no route matches: every panel's and every variable's query runs without error,
//! returns data, and names only metrics that exist; every metric family the operator and
//! the router expose is on a panel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/scene.rs"]
mod scene;
use scene::*;

#[path = "support/receiver.rs"]
mod receiver;

use std::{collections::BTreeSet, time::Duration};

use serde_json::{Value, json};
use siskin_e2e::prometheus::{Options, Prometheus};

/// Every query of a dashboard: (where, PromQL), variables' `label_values(X, l)` as
/// `count by (l) (X)`.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"].as_str().unwrap();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {} is not label_values(...): {q}", v["name"]));
        let (series, label) = inner.rsplit_once(',').unwrap();
        out.push((
            format!("variable {}", v["name"]),
            format!("count by ({}) ({series})", label.trim()),
        ));
    }
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            panels(&p["panels"], out);
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    format!(
                        "panel {:?} {}",
                        p["title"].as_str().unwrap_or_default(),
                        t["refId"]
                    ),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    panels(&dashboard["panels"], &mut out);
    out
}

/// Grafana's variables as the dashboard's "All" would fill them.
fn fill(q: &str) -> String {
    q.replace("$__rate_interval", "15s")
        .replace("$__range", "1h")
        .replace("$namespace", ".*")
        .replace("$canary", ".*")
        .replace("$route", ".*")
}

fn metric_names(q: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = q;
    while let Some(i) = rest.find("siskin_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The metric families a `/metrics` page declares (`# TYPE name kind`).
fn families(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, k)| (n.to_string(), k.trim().to_string()))
        .collect()
}

async fn query(http: &reqwest::Client, prom: &str, q: &str) -> Value {
    http.get(format!("{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn series(http: &reqwest::Client, prom: &str, name: &str) -> usize {
    let v: Value = http
        .get(format!("{prom}/api/v1/series"))
        .query(&[("match[]", name)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grafana_panel_queries_metrics_that_exist() {
    let (hooks, _calls) = receiver::receiver().await;
    let (sc, _counts, traffic) = initialized("grafana", json!({})).await;
    let slack = format!("http://{hooks}{}", receiver::SLACK_HOOK);
    let op = start_operator(
        &sc,
        "op",
        &["--control-loop-interval", "1s"],
        &[("SLACK_URL", slack.as_str())],
    );
    let prom = Prometheus::start(&Options {
        scrape: vec![
            format!("127.0.0.1:{}", op.port),
            format!("127.0.0.1:{}", sc.router.admin),
        ],
        ..Default::default()
    })
    .unwrap();
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    // Promoted, then rolled back.
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    wait_status(&sc, "2.0.0 promoted", Duration::from_secs(90), |s| {
        s["phase"] == "Succeeded"
    })
    .await;
    apply_deployment(&sc.admin, &sc.ns, &deployment("3.0.0", "0.5")).await;
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Failed",
        Duration::from_secs(90),
    )
    .await;
    // A Canary whose request annotation cannot be read: a reconcile error (invalid).
    let mut broken = canary_manifest(
        "siskin.dev",
        &sc.ns,
        json!({"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ghost"}}),
    );
    broken["metadata"]["name"] = json!("broken");
    broken["metadata"]["annotations"] = json!({"siskin.dev/request": "not json"});
    let api = dynamic_api(&sc, "siskin.dev", "v1beta1", "Canary", "canaries");
    api.patch(
        "broken",
        &kube::api::PatchParams::apply("gitops").force(),
        &kube::api::Patch::Apply(&broken),
    )
    .await
    .unwrap();
    // A request no route matches: a router error (no_route).
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: nowhere.invalid",
        ])
        .arg(format!("http://127.0.0.1:{}/", sc.router.port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    let started = std::time::Instant::now();
    while !op
        .get("/metrics")
        .contains("siskin_reconcile_errors_total{")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no reconcile error counted: {}",
            op.get("/metrics")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Two scrapes more, so rates over the last seconds have points.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let mut on_panels = BTreeSet::new();
    let mut problems = Vec::new();
    let mut count = 0;
    for file in ["siskin-operator.json", "siskin-router.json"] {
        let path = siskin_e2e::repo_root().join("config/grafana").join(file);
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (at, q) in queries(&dashboard) {
            count += 1;
            let filled = fill(&q);
            let v = query(&http, &prom.url, &filled).await;
            if v["status"] != "success" {
                problems.push(format!("{file} {at}: {filled}: {v}"));
                continue;
            }
            if v["data"]["result"].as_array().is_none_or(|r| r.is_empty()) {
                problems.push(format!("{file} {at}: no data for {filled}"));
            }
            for name in metric_names(&q) {
                if series(&http, &prom.url, &name).await == 0 {
                    problems.push(format!("{file} {at}: no series named {name}"));
                }
                on_panels.insert(name);
            }
        }
    }
    // Every family exposed is on a panel (a counter by its _total, a histogram by its _bucket,
    // _sum or _count).
    let exposed: BTreeSet<(String, String)> = families(&op.get("/metrics"))
        .into_iter()
        .chain(families(&sc.router.metrics()))
        .collect();
    assert!(exposed.len() > 15, "{exposed:?}");
    for (name, kind) in &exposed {
        // OpenMetrics names a counter's family without the `_total` its samples carry.
        let shown = on_panels.contains(name)
            || (kind == "counter" && on_panels.contains(&format!("{name}_total")))
            || (kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| on_panels.contains(&format!("{name}{s}"))));
        if !shown {
            problems.push(format!("{name} ({kind}) is on no panel"));
        }
    }
    traffic.abort();
    eprintln!(
        "[grafana] {count} queries, {} metric names, {} families exposed",
        on_panels.len(),
        exposed.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
