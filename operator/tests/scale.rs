//! Scale: 1,000 Canaries (`SISKIN_SCALE_CANARIES`) with their Deployments on the real API
//! server, one `siskin operator` and one router. Deployments get a ready status from a small
//! status writer here (no process per pod: the point is the operator's cost, not the
//! harness's). Measured: the time until every Canary is `Initialized`, then over a steady
//! minute (every Canary ticking on its `interval: 10s`) the operator's CPU per reconcile,
//! its RSS, and the API server's requests per minute. Targets (issue 14): RSS < 100 MiB,
//! CPU < 5 ms per tick.
//!
//! A measurement, not part of CI (about 4 minutes):
//! `cargo test -p siskin-operator --release --test scale -- --ignored --nocapture`
//! (`SISKIN_SCALE_THREADINESS` sets the operator's `--threadiness`, 16 by default).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/scene.rs"]
mod scene;
use scene::*;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use siskin_e2e::{ControlPlane, localnode::Rollout};

/// Writes a ready status on every Deployment of `ns` whose status is behind its spec.
fn status_writer(client: Client, ns: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        stream
            .try_for_each_concurrent(8, |d| {
                let (client, ns) = (client.clone(), ns.clone());
                async move {
                    let status = d.status.clone().unwrap_or_default();
                    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    let stale = status.observed_generation != d.metadata.generation
                        || status.ready_replicas.unwrap_or(0) != replicas;
                    if stale {
                        let _ = siskin_e2e::localnode::set_deployment(
                            &client,
                            &ns,
                            &d.name_any(),
                            Rollout::Ready,
                        )
                        .await;
                    }
                    Ok(())
                }
            })
            .await
            .ok();
    })
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is the state (field 3); utime is field 14, stime 15.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb / 1024.0
}

/// Sum of a metric's samples on a Prometheus text page, by labels joined with '/' (none: all).
fn sum_by(text: &str, name: &str, by: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let (labels, value) = rest.rsplit_once(' ').unwrap();
        let key = by
            .iter()
            .map(|label| {
                labels
                    .split(&format!(",{label}=\""))
                    .nth(1)
                    .or_else(|| labels.split(&format!("{{{label}=\"")).nth(1))
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("/");
        *out.entry(key).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

async fn apiserver_metrics(admin: &Client) -> String {
    admin
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of a few minutes; run it with --ignored"]
async fn a_thousand_canaries() {
    let n: usize = std::env::var("SISKIN_SCALE_CANARIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let threadiness = std::env::var("SISKIN_SCALE_THREADINESS").unwrap_or_else(|_| "16".into());
    let plane = ControlPlane::shared();
    let admin = plane.client().await.unwrap();
    siskin_e2e::apply_rbac(&admin).await.unwrap();
    let ns = namespace(&admin, "scale").await;
    let router_name = "router-scale";
    let _router = start_router(plane, &admin, router_name).await;
    let writer = status_writer(admin.clone(), ns.clone());

    let started = Instant::now();
    let pp = PatchParams::apply("gitops").force();
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let canaries = Api::<kube::api::DynamicObject>::namespaced_with(
        admin.clone(),
        &ns,
        &canary_resource("siskin.dev"),
    );
    futures_util::stream::iter(0..n)
        .for_each_concurrent(8, |i| {
            let (deployments, canaries, pp, ns) =
                (deployments.clone(), canaries.clone(), pp.clone(), ns.clone());
            async move {
                let name = format!("app-{i:04}");
                let mut d = deployment("1.0.0", "0");
                d["metadata"]["name"] = json!(name);
                d["spec"]["selector"]["matchLabels"]["app"] = json!(name);
                d["spec"]["template"]["metadata"]["labels"]["app"] = json!(name);
                deployments
                    .patch(&name, &pp, &Patch::Apply(&d))
                    .await
                    .unwrap();
                let mut c: Value = canary_manifest(
                    "siskin.dev",
                    &ns,
                    json!({"analysis": {"interval": "10s", "threshold": 2, "maxWeight": 50, "stepWeight": 25,
                        "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}]}}),
                );
                c["metadata"]["name"] = json!(name);
                c["spec"]["targetRef"]["name"] = json!(name);
                canaries.patch(&name, &pp, &Patch::Apply(&c)).await.unwrap();
            }
        })
        .await;
    let created = started.elapsed();
    eprintln!("[scale] {n} Deployments and Canaries applied in {created:?}");

    let op = start_operator_for(
        &plane.dir,
        &operator_kubeconfig(plane),
        &ns,
        router_name,
        "scale",
        // Canaries reconciled at once: Flagger's default of 2 cannot keep 1,000 Canaries on a
        // 10 s interval (each reconcile waits on the API server and the routers).
        &[
            "--enable-leader-election",
            "false",
            "--threadiness",
            &threadiness,
        ],
        &[],
    );
    let pid = op.proc.0.id();
    let op_started = Instant::now();
    loop {
        let list = canaries.list(&ListParams::default()).await.unwrap();
        let done = list
            .items
            .iter()
            .filter(|c| c.data["status"]["phase"] == "Initialized")
            .count();
        if done == n {
            break;
        }
        assert!(
            op_started.elapsed() < Duration::from_secs(600),
            "{done} of {n} Initialized after 10 min; log: {}",
            op.log()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let init = op_started.elapsed();
    let init_cpu = cpu_seconds(pid);
    eprintln!(
        "[scale] all {n} Initialized {init:?} after the operator started; CPU {init_cpu:.1} s, RSS {:.1} MiB",
        rss_mib(pid)
    );

    // A settled minute: let the initialization's requeues pass first.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let window = Duration::from_secs(60);
    let reconciles = |m: &str| {
        sum_by(m, "siskin_canary_duration_seconds_count", &[])
            .values()
            .sum::<f64>()
    };
    let requests = |m: &str| sum_by(m, "apiserver_request_total", &["verb", "resource"]);
    let (cpu0, r0, a0) = (
        cpu_seconds(pid),
        reconciles(&op.get("/metrics")),
        requests(&apiserver_metrics(&admin).await),
    );
    let mut peak_rss: f64 = 0.0;
    let t0 = Instant::now();
    while t0.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(5)).await;
        peak_rss = peak_rss.max(rss_mib(pid));
    }
    let (cpu1, r1, a1) = (
        cpu_seconds(pid),
        reconciles(&op.get("/metrics")),
        requests(&apiserver_metrics(&admin).await),
    );
    let secs = t0.elapsed().as_secs_f64();
    let ticks = r1 - r0;
    let cpu_ms_per_tick = (cpu1 - cpu0) * 1000.0 / ticks.max(1.0);
    let per_minute: BTreeMap<String, f64> = a1
        .iter()
        .map(|(verb, v)| {
            (
                verb.clone(),
                ((v - a0.get(verb).copied().unwrap_or(0.0)) * 60.0 / secs).round(),
            )
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    let total: f64 = per_minute.values().sum();
    eprintln!(
        "[scale] steady {secs:.0} s: {ticks} reconciles ({:.1}/s), CPU {:.2} s = {cpu_ms_per_tick:.2} ms per reconcile, peak RSS {peak_rss:.1} MiB, API requests {total:.0}/min = {:.2} per reconcile {per_minute:?}",
        ticks / secs,
        cpu1 - cpu0,
        total * secs / 60.0 / ticks.max(1.0),
    );
    writer.abort();
    assert!(
        ticks >= n as f64 * 0.5 * secs / 10.0,
        "Canaries tick on their interval: {ticks}"
    );
    assert!(peak_rss < 100.0, "RSS {peak_rss:.1} MiB");
    assert!(
        cpu_ms_per_tick < 5.0,
        "{cpu_ms_per_tick:.2} ms CPU per tick"
    );
}
