//! The statistical judge's figures at the demo's load (`siskin demo`: about 100 requests a
//! second, a 10 s interval, the canary at 25 % then 50 %, confidence 0.95 spent over those two
//! checks, so each check runs at alpha 0.025), with the strictest tolerance (0: any
//! significant regression fails):
//!
//! 1. Simulated checks (the judge's own code on drawn samples): the false-failure rate on
//!    identical versions and the chance that one check catches a +20 % latency and a +1
//!    percentage point error regression, per check and per run.
//! 2. Live checks: sample apps behind a real `siskin-router` on loopback at 100 requests a
//!    second, judged every 10 s through the same `Analyzer` the operator uses, reading the
//!    router's `/stats?window=10`.
//!
//! `cargo run --release -p siskin-analysis --example judge-figures [-- --quick] [-- --write]`
//! (`--write` refreshes the section of docs/benchmarks.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use siskin_analysis::{
    Analyzer, MetricSource, NoSecrets,
    judge::{self, JudgeKind, Pooled},
    providers::router_stats::RouterStatsProvider,
    resolve::Context,
};
use siskin_api::{CanaryMetric, Provider};
use siskin_route::latency;
use siskin_router::{Options, Router, Source};

/// The demo's load, requests a second.
const RATE: u64 = 100;
/// The demo's interval.
const INTERVAL: Duration = Duration::from_secs(10);
/// The demo's run: two checks (25 % and 50 %), confidence 0.95.
const CHECKS: u32 = 2;
const CONFIDENCE: f64 = 0.95;
/// The sample service: a 20 ms median, log-normal spread 0.3, 0.1 % errors.
const MEDIAN_MS: f64 = 20.0;
const SPREAD: f64 = 0.3;
const BASE_ERRORS: f64 = 0.001;

/// xorshift64*: repeatable draws.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    fn side(&mut self, n: u64, median_ms: f64, errors: f64) -> Pooled {
        let mut p = Pooled {
            seconds: 10,
            requests: n,
            ..Default::default()
        };
        for _ in 0..n {
            let ms = median_ms * (SPREAD * self.normal()).exp();
            p.latency[latency::bucket(ms)] += 1;
            if self.uniform() < errors {
                p.failures += 1;
            }
        }
        p
    }
}

/// The share of `trials` checks over `window` seconds that fail, at canary weight `weight`.
fn failing_share(
    rng: &mut Rng,
    trials: u32,
    (weight, window): (f64, u64),
    kind: JudgeKind,
    canary_median: f64,
    canary_errors: f64,
) -> f64 {
    let total = (RATE * window) as f64;
    let (nc, np) = ((total * weight) as u64, (total * (1.0 - weight)) as u64);
    let alpha = judge::alpha(CONFIDENCE, CHECKS);
    let mut failed = 0u32;
    for _ in 0..trials {
        let canary = rng.side(nc, canary_median, canary_errors);
        let primary = rng.side(np, MEDIAN_MS, BASE_ERRORS);
        let j = judge::judge(kind, &canary, &primary, 0.0, alpha, 10).unwrap();
        failed += u32::from(j.bound > 0.0);
    }
    f64::from(failed) / f64::from(trials)
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A sample app in-process on a free port.
async fn app(version: &str, latency_ms: u64, errors: f64) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let app = siskin_sample_app::App::new("checkout", version, errors, latency_ms);
    app.set_latency_spread(SPREAD);
    app.set_random_errors(true);
    tokio::spawn(siskin_sample_app::serve_on(l, app));
    port
}

/// A router splitting `primary` and `canary` at 75/25, and its admin address.
fn router(primary: u16, canary: u16) -> (u16, String) {
    let dir = std::env::temp_dir().join(format!("siskin-judge-figures-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("router.yaml");
    std::fs::write(&path, format!(
        "routes:\n- name: demo/checkout\n  rules:\n  - backendRefs: [{{name: p, weight: 75}}, {{name: c, weight: 25}}]\nbackends:\n- {{name: p, role: primary, endpoints: ['127.0.0.1:{primary}']}}\n- {{name: c, role: canary, endpoints: ['127.0.0.1:{canary}']}}\n"
    )).unwrap();
    let (listen, admin) = (free_port(), free_port());
    let router = Router::new(Options {
        connect_timeout: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(1),
        ..Options::new(
            Source::File(path),
            SocketAddr::from((Ipv4Addr::LOCALHOST, listen)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, admin)),
        )
    })
    .unwrap();
    tokio::spawn(router.run());
    (listen, format!("http://127.0.0.1:{admin}"))
}

/// Open-loop load: a request every 1/RATE s, not waiting for answers.
fn load(port: u16) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let uri: http::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
        loop {
            tick.tick().await;
            let (client, uri) = (client.clone(), uri.clone());
            tokio::spawn(async move {
                let _ = client.get(uri).await;
            });
        }
    })
}

fn metric(name: &str) -> CanaryMetric {
    serde_yaml::from_str(&format!(
        "{{name: {name}, thresholdRange: {{max: 0}}, interval: 10s, confidence: {CONFIDENCE}}}"
    ))
    .unwrap()
}

/// Judges `windows` consecutive 10 s windows of live traffic: how many fail, and when the
/// first did (seconds after the canary took traffic).
async fn live(
    canary_ms: u64,
    canary_errors: f64,
    kind: &str,
    windows: u32,
) -> (u32, u32, Option<u64>) {
    let primary = app("v1", MEDIAN_MS as u64, BASE_ERRORS).await;
    let canary = app("v2", canary_ms, canary_errors).await;
    let (listen, admin) = router(primary, canary);
    let stats = RouterStatsProvider::new(admin, 10);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let traffic = load(listen);
    let templates = BTreeMap::new();
    let analyzer = Analyzer {
        cx: Context {
            vars: siskin_analysis::Vars::default(),
            provider: Provider::Builtin,
            metrics_server: None,
            route: "demo/checkout",
            templates: &templates,
            checks: CHECKS,
        },
        router: &stats,
        secrets: &NoSecrets,
        kube: None,
    };
    let m = metric(kind);
    let started = Instant::now();
    let (mut failed, mut first) = (0, None);
    for i in 1..=windows {
        tokio::time::sleep_until((started + INTERVAL * i).into()).await;
        let measured = analyzer.measure(&m, None).await;
        let bound = measured.value.expect("a judgement");
        if bound > 0.0 {
            failed += 1;
            first.get_or_insert(started.elapsed().as_secs());
        }
    }
    traffic.abort();
    (failed, windows, first)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let write = args.iter().any(|a| a == "--write");
    let trials = if quick { 2_000 } else { 20_000 };
    let alpha = judge::alpha(CONFIDENCE, CHECKS);
    let mut rng = Rng(0x5155_4B49_4E00_0001);
    let mut out = String::new();
    let command = format!(
        "cargo run --release -p siskin-analysis --example judge-figures{}",
        if quick { " -- --quick" } else { "" }
    );
    let _ = writeln!(
        out,
        "Command: `{command}` ({}). Demo load: {RATE} requests/s, {}s interval, canary at 25 % then 50 %, confidence {CONFIDENCE} over {CHECKS} checks (alpha {alpha:.4} per check), tolerance 0. Service: log-normal latency, median {MEDIAN_MS} ms, spread {SPREAD}; {} % errors drawn at random.\n",
        jiff::Timestamp::now().strftime("%Y-%m-%d"),
        INTERVAL.as_secs(),
        BASE_ERRORS * 100.0,
    );
    let _ = writeln!(
        out,
        "| simulated ({trials} trials per cell) | window | one check at 25 % | one check at 50 % | a run (25 % then 50 %) |\n|---|---|---|---|---|"
    );
    let cases = [
        (
            "identical versions, judge-latency: false failures",
            JudgeKind::Latency,
            MEDIAN_MS,
            BASE_ERRORS,
        ),
        (
            "identical versions, judge-errors: false failures",
            JudgeKind::Errors,
            MEDIAN_MS,
            BASE_ERRORS,
        ),
        (
            "+20 % latency: caught",
            JudgeKind::Latency,
            MEDIAN_MS * 1.2,
            BASE_ERRORS,
        ),
        (
            "+1 point errors: caught",
            JudgeKind::Errors,
            MEDIAN_MS,
            BASE_ERRORS + 0.01,
        ),
    ];
    let begun = Instant::now();
    for window in [10, 60] {
        for (what, kind, median, errors) in cases {
            let a = failing_share(&mut rng, trials, (0.25, window), kind, median, errors);
            let b = failing_share(&mut rng, trials, (0.50, window), kind, median, errors);
            let run = 1.0 - (1.0 - a) * (1.0 - b);
            eprintln!(
                "[judge-figures] {what}, {window} s: done at {:?}",
                begun.elapsed()
            );
            let _ = writeln!(
                out,
                "| {what} | {window} s | {:.2} % | {:.2} % | {:.2} % |",
                a * 100.0,
                b * 100.0,
                run * 100.0
            );
        }
    }
    let windows_aa = if quick { 6 } else { 18 };
    let windows = if quick { 3 } else { 6 };
    let _ = writeln!(
        out,
        "\n| live, real router at 25 %, one judgement every 10 s | windows failing | first failure after |\n|---|---|---|"
    );
    for (what, ms, errors, kind, n) in [
        (
            "identical versions, judge-latency",
            20,
            BASE_ERRORS,
            "judge-latency",
            windows_aa,
        ),
        (
            "identical versions, judge-errors",
            20,
            BASE_ERRORS,
            "judge-errors",
            windows_aa,
        ),
        (
            "+20 % latency (24 ms median), judge-latency",
            24,
            BASE_ERRORS,
            "judge-latency",
            windows,
        ),
        (
            "+1 point errors (1.1 %), judge-errors",
            20,
            BASE_ERRORS + 0.01,
            "judge-errors",
            windows,
        ),
    ] {
        let (failed, total, first) = live(ms, errors, kind, n).await;
        let _ = writeln!(
            out,
            "| {what} | {failed} of {total} | {} |",
            first.map_or("–".to_string(), |s| format!("{s} s"))
        );
    }
    print!("{out}");
    if write {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (start, end) = ("<!-- judge:start -->\n", "<!-- judge:end -->");
        let (Some(a), Some(b)) = (doc.find(start), doc.find(end)) else {
            panic!("{path} has no {start:?} ... {end:?} section");
        };
        let doc = format!("{}{start}{out}{}", &doc[..a], &doc[b..]);
        std::fs::write(path, doc).unwrap();
        eprintln!("wrote {path}");
    }
}
