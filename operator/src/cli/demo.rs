//! `siskin demo`: a good release promoted and a bad one rolled back, on this machine, with
//! nothing to install: two versions of the sample app, the router and `siskin run`'s driver,
//! and steady load.

use std::{
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde::Serialize;
use siskin_sample_app::App;

/// Arguments of `siskin demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Also run the bad release with Flagger's interval semantics only (no critical metric),
    /// and compare the failed requests of both modes.
    #[arg(long)]
    no_fast_fail: bool,
}

/// Requests seen by the load generator.
#[derive(Default)]
struct Counts {
    by_version: [AtomicU64; 4],
    failed: AtomicU64,
    total: AtomicU64,
}

/// One release in the summary.
#[derive(Debug, Serialize)]
struct Release {
    release: String,
    expected: &'static str,
    outcome: String,
    seconds: f64,
    canary_requests: u64,
    failed_requests: u64,
    fast_fail: bool,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

async fn start_app(version: &str, error_rate: f64, latency_ms: u64) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?.to_string();
    let app = App::new("checkout", version, error_rate, latency_ms);
    tokio::spawn(siskin_sample_app::serve_on(listener, app));
    Ok(addr)
}

struct Demo {
    quiet: bool,
    file: PathBuf,
    listen: u16,
    admin: u16,
    primary: String,
}

// === impl Demo ===

impl Demo {
    fn write(&self, canary: Option<&str>, critical: bool) -> anyhow::Result<()> {
        let canary = canary.map(|c| format!("\"{c}\"")).unwrap_or_default();
        std::fs::write(
            &self.file,
            format!(
                "name: checkout\nlisten: 127.0.0.1:{}\nadminAddr: 127.0.0.1:{}\nprimary: [\"{}\"]\ncanary: [{canary}]\nprogressDeadlineSeconds: 30\nanalysis:\n  interval: 10s\n  threshold: 2\n  maxWeight: 50\n  stepWeight: 25\n  metrics:\n  - name: request-success-rate\n    critical: {critical}\n    thresholdRange: {{min: 99}}\n    interval: 10s\n  - name: request-duration\n    thresholdRange: {{max: 500}}\n    interval: 10s\n",
                self.listen, self.admin, self.primary
            ),
        )?;
        Ok(())
    }

    fn status(&self) -> (String, i64) {
        let path = self.file.with_file_name("checkout.status.yaml");
        let v: serde_json::Value = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_yaml::from_str(&t).ok())
            .unwrap_or_default();
        (
            v["status"]["phase"].as_str().unwrap_or("").to_string(),
            v["status"]["canaryWeight"].as_i64().unwrap_or(0),
        )
    }

    /// Waits for one of `phases`, printing a progress line every two seconds.
    async fn wait(&self, phases: &[&str], limit: Duration, quiet: bool) -> anyhow::Result<String> {
        let started = Instant::now();
        let mut last_print = Instant::now() - Duration::from_secs(10);
        loop {
            let (phase, weight) = self.status();
            if phases.contains(&phase.as_str()) {
                return Ok(phase);
            }
            if !quiet && last_print.elapsed() >= Duration::from_secs(2) {
                last_print = Instant::now();
                let filled = usize::try_from(weight.clamp(0, 100) / 5).unwrap_or(0);
                println!(
                    "  {:>4.0}s  {:<12} canary [{}{}] {:>3}%",
                    started.elapsed().as_secs_f64(),
                    phase,
                    "#".repeat(filled),
                    " ".repeat(20 - filled),
                    weight
                );
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "no {phases:?} within {limit:?} (at {phase})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn release(
        &self,
        counts: &Counts,
        name: &str,
        version: usize,
        canary: &str,
        critical: bool,
        expected: &'static str,
    ) -> anyhow::Result<Release> {
        let quiet = self.quiet;
        let before = (
            counts.by_version[version].load(Relaxed),
            counts.failed.load(Relaxed),
        );
        if !quiet {
            println!(
                "release {name} ({}fast failure): canary {canary}",
                if critical { "" } else { "no " }
            );
        }
        self.write(Some(canary), critical)?;
        let started = Instant::now();
        // Let the new revision be picked up before waiting for its outcome.
        self.wait(&["Progressing"], Duration::from_secs(20), true)
            .await?;
        let outcome = self
            .wait(&["Succeeded", "Failed"], Duration::from_secs(100), quiet)
            .await?;
        Ok(Release {
            release: name.to_string(),
            expected,
            outcome,
            seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            canary_requests: counts.by_version[version].load(Relaxed) - before.0,
            failed_requests: counts.failed.load(Relaxed) - before.1,
            fast_fail: critical,
        })
    }
}

/// Runs the demo; exit code 0 only when the good release was promoted and the bad one rolled back.
pub async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let quiet = args.json;
    let dir = std::env::temp_dir().join(format!("siskin-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let v1 = start_app("1.0.0", 0.0, 0).await?;
    let v2 = start_app("2.0.0", 0.0, 0).await?;
    let bad = start_app("3.0.0", 0.3, 150).await?;
    let bad_again = start_app("3.0.0", 0.3, 150).await?;
    let demo = Demo {
        quiet,
        file: dir.join("checkout.yaml"),
        listen: free_port()?,
        admin: free_port()?,
        primary: v1.clone(),
    };
    demo.write(None, true)?;
    let driver = tokio::spawn({
        let file = demo.file.clone();
        async move { crate::standalone::driver::run_with(&file, false, false).await }
    });
    let counts = Arc::new(Counts::default());
    let load = tokio::spawn(load(demo.listen, counts.clone()));
    if !quiet {
        println!(
            "siskin demo: checkout 1.0.0 serving through the router on 127.0.0.1:{}, ~100 requests/s",
            demo.listen
        );
    }
    demo.wait(&["Initialized"], Duration::from_secs(30), true)
        .await?;
    let mut releases = vec![
        demo.release(&counts, "2.0.0 (good)", 2, &v2, true, "Succeeded")
            .await?,
    ];
    let fast = !args.no_fast_fail;
    releases.push(
        demo.release(
            &counts,
            "3.0.0 (30% errors, +150 ms)",
            3,
            &bad,
            fast,
            "Failed",
        )
        .await?,
    );
    if args.no_fast_fail {
        releases.push(
            demo.release(
                &counts,
                "3.0.0 again (fast failure on)",
                3,
                &bad_again,
                true,
                "Failed",
            )
            .await?,
        );
    }
    load.abort();
    driver.abort();
    let ok = releases.iter().all(|r| r.outcome == r.expected);
    let ratio = (releases.len() == 3 && releases[2].failed_requests > 0)
        .then(|| releases[1].failed_requests as f64 / releases[2].failed_requests as f64);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"releases": releases, "ok": ok, "failed_requests_ratio_without_to_with_fast_failure": ratio})
            )?
        );
    } else {
        summary(&releases, ratio);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn summary(releases: &[Release], ratio: Option<f64>) {
    println!(
        "\n| release | fast failure | outcome | time | requests to the canary | failed requests |"
    );
    println!("|---|---|---|---|---|---|");
    for r in releases {
        let verdict = if r.outcome == r.expected {
            ""
        } else {
            " (unexpected)"
        };
        println!(
            "| {} | {} | {}{verdict} | {:.1} s | {} | {} |",
            r.release,
            if r.fast_fail { "on" } else { "off" },
            r.outcome,
            r.seconds,
            r.canary_requests,
            r.failed_requests
        );
    }
    if let Some(x) = ratio {
        println!("\nwithout fast failure the bad release failed {x:.1}x as many requests");
    }
}

/// Steady load through the router; counts answers by version and failures.
async fn load(port: u16, counts: Arc<Counts>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let Ok(uri) = format!("http://127.0.0.1:{port}/").parse::<http::Uri>() else {
        return;
    };
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        counts.total.fetch_add(1, Relaxed);
        let Ok(resp) = client.get(uri.clone()).await else {
            counts.failed.fetch_add(1, Relaxed);
            continue;
        };
        let failed = resp.status().is_server_error();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        for (i, v) in ["", "1.0.0", "2.0.0", "3.0.0"].iter().enumerate().skip(1) {
            if text.contains(&format!(" {v} ")) || text.contains(&format!("\"version\":\"{v}\"")) {
                counts.by_version[i].fetch_add(1, Relaxed);
            }
        }
        if failed {
            counts.failed.fetch_add(1, Relaxed);
        }
    }
}
