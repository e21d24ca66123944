//! `siskin demo`: a good release promoted and a bad one rolled back, on this machine, with
//! nothing to install: two versions of the sample app, the router and `siskin run`'s driver,
//! and steady load.

use std::{
    collections::VecDeque,
    io::{IsTerminal, Write},
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
use siskin_analysis::{BuiltinMetric, providers::router_stats::combine};
use siskin_route::{Role, StatsReport};
use siskin_sample_app::App;
use tokio::sync::{Mutex, mpsc};

use crate::standalone::{
    run::RunOptions,
    world::{Output, Report},
};

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

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Nothing until the JSON summary.
    Quiet,
    /// One line every two seconds and one per event (not a terminal).
    Lines,
    /// A screen redrawn four times a second.
    Screen,
}

/// Live numbers of one backend (10-second window of the router's statistics).
#[derive(Clone, Copy, Debug, Default)]
struct Live {
    rate: f64,
    success: Option<f64>,
    p99: Option<f64>,
}

/// What the view shows besides the status file.
struct View {
    release: String,
    release_started: Instant,
    last_line: Instant,
    events: VecDeque<String>,
    reports: mpsc::UnboundedReceiver<Report>,
    checks_shown: String,
}

struct Demo {
    mode: Mode,
    file: PathBuf,
    listen: u16,
    admin: u16,
    primary: String,
    view: Mutex<View>,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
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

    fn status(&self) -> serde_json::Value {
        let path = self.file.with_file_name("checkout.status.yaml");
        let v: serde_json::Value = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_yaml::from_str(&t).ok())
            .unwrap_or_default();
        v["status"].clone()
    }

    /// Success rate, p99 and rate of the primary and the canary over the last 10 seconds.
    async fn live(&self) -> (Live, Live) {
        let Ok(uri) = format!("http://127.0.0.1:{}/stats", self.admin).parse::<http::Uri>() else {
            return Default::default();
        };
        let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(1), self.http.get(uri)).await
        else {
            return Default::default();
        };
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let stats: StatsReport = serde_json::from_slice(&body).unwrap_or_default();
        let one = |role: Role| {
            let metric = |m| {
                combine(
                    &stats.backends,
                    "standalone/checkout",
                    role,
                    Duration::from_secs(10),
                    m,
                    1,
                )
                .ok()
            };
            let rate = stats
                .backends
                .iter()
                .filter(|b| b.route == "standalone/checkout" && b.role == role)
                .map(|b| b.window_10s.rate)
                .sum();
            Live {
                rate,
                success: metric(BuiltinMetric::SuccessRate),
                p99: metric(BuiltinMetric::DurationP99),
            }
        };
        (one(Role::Primary), one(Role::Canary))
    }

    /// Waits for one of `phases`, showing progress as the mode says.
    async fn wait(&self, phases: &[&str], limit: Duration, show: bool) -> anyhow::Result<String> {
        let started = Instant::now();
        loop {
            let status = self.status();
            let phase = status["phase"].as_str().unwrap_or("").to_string();
            let done = phases.contains(&phase.as_str());
            if show || done {
                self.show(&status).await;
            }
            if done {
                return Ok(phase);
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "no {phases:?} within {limit:?} (at {phase})"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Drains the run's reports and draws the view.
    async fn show(&self, status: &serde_json::Value) {
        let mut view = self.view.lock().await;
        let mut new_lines = Vec::new();
        while let Ok(r) = view.reports.try_recv() {
            let line = match r {
                Report::Event {
                    warning,
                    reason,
                    message,
                } => format!(
                    "{} {:<7} {reason}: {message}",
                    jiff::Zoned::now().strftime("%H:%M:%S"),
                    if warning { "Warning" } else { "Normal" }
                ),
                Report::Line(l) => format!("{} {l}", jiff::Zoned::now().strftime("%H:%M:%S")),
            };
            new_lines.push(line.clone());
            view.events.push_back(line);
            while view.events.len() > 8 {
                view.events.pop_front();
            }
        }
        if self.mode == Mode::Quiet {
            return;
        }
        let phase = status["phase"].as_str().unwrap_or("");
        let weight = status["canaryWeight"].as_i64().unwrap_or(0);
        let (primary, canary) = self.live().await;
        let checks = checks(status);
        let elapsed = view.release_started.elapsed().as_secs_f64();
        match self.mode {
            Mode::Screen => {
                let mut out = String::new();
                let mut line = |l: String| {
                    out.push_str(&l);
                    out.push_str("\x1b[K\n");
                };
                line(format!(
                    "\x1b[1msiskin demo\x1b[0m  checkout through the router on 127.0.0.1:{}, ~100 requests/s",
                    self.listen
                ));
                line(format!("release {}   {elapsed:.0}s", view.release));
                line(String::new());
                line(format!("phase   {}", colour_phase(phase)));
                line(format!("weight  {}", bar(weight, 40)));
                line(String::new());
                line("          requests/s   success       p99".into());
                line(live_row("primary", primary));
                line(live_row("canary", canary));
                line(String::new());
                line("checks".into());
                if checks.is_empty() {
                    line("  (none yet: the first analysis runs one interval after the canary is ready)".into());
                }
                for c in &checks {
                    line(format!("  {c}"));
                }
                line(String::new());
                line("events".into());
                for e in &view.events {
                    line(format!("  {e}"));
                }
                out.push_str("\x1b[J");
                let mut stdout = std::io::stdout().lock();
                let _ = write!(stdout, "\x1b[H{out}");
                let _ = stdout.flush();
            }
            Mode::Lines => {
                for l in new_lines {
                    println!("    {l}");
                }
                let joined = checks.join("; ");
                if !checks.is_empty() && joined != view.checks_shown {
                    println!("    checks: {joined}");
                    view.checks_shown = joined;
                }
                if view.last_line.elapsed() >= Duration::from_secs(2) {
                    view.last_line = Instant::now();
                    println!(
                        "  {elapsed:>4.0}s  {phase:<12} {}  primary {}  canary {}",
                        bar(weight, 20),
                        short(primary),
                        short(canary)
                    );
                }
            }
            Mode::Quiet => {}
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
        let before = (
            counts.by_version[version].load(Relaxed),
            counts.failed.load(Relaxed),
        );
        let label = format!(
            "{name}, fast failure {}",
            if critical { "on" } else { "off" }
        );
        if self.mode == Mode::Lines {
            println!("release {label}: canary {canary}");
        }
        {
            let mut view = self.view.lock().await;
            view.release = label;
            view.release_started = Instant::now();
        }
        self.write(Some(canary), critical)?;
        let started = Instant::now();
        // Let the new revision be picked up before waiting for its outcome.
        self.wait(&["Progressing"], Duration::from_secs(20), true)
            .await?;
        let outcome = self
            .wait(&["Succeeded", "Failed"], Duration::from_secs(100), true)
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
    let mode = if args.json {
        Mode::Quiet
    } else if std::io::stdout().is_terminal()
        && std::env::var_os("TERM").is_some_and(|t| t != "dumb")
    {
        Mode::Screen
    } else {
        Mode::Lines
    };
    let dir = std::env::temp_dir().join(format!("siskin-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let v1 = start_app("1.0.0", 0.0, 0).await?;
    let v2 = start_app("2.0.0", 0.0, 0).await?;
    let bad = start_app("3.0.0", 0.3, 150).await?;
    let bad_again = start_app("3.0.0", 0.3, 150).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let demo = Demo {
        mode,
        view: Mutex::new(View {
            release: "none yet: 1.0.0 serving".into(),
            release_started: Instant::now(),
            last_line: Instant::now(),
            events: VecDeque::new(),
            reports: rx,
            checks_shown: String::new(),
        }),
        http: Client::builder(TokioExecutor::new()).build_http(),
        file: dir.join("checkout.yaml"),
        listen: free_port()?,
        admin: free_port()?,
        primary: v1.clone(),
    };
    demo.write(None, true)?;
    let driver = tokio::spawn({
        let file = demo.file.clone();
        let opts = RunOptions {
            once: false,
            canary: Vec::new(),
            revert: false,
            output: Output::Channel(tx),
            event_webhook: None,
            alerts: None,
        };
        async move { crate::standalone::run::run(&file, opts).await }
    });
    let counts = Arc::new(Counts::default());
    let load = tokio::spawn(load(demo.listen, counts.clone()));
    match mode {
        Mode::Lines => println!(
            "siskin demo: checkout 1.0.0 serving through the router on 127.0.0.1:{}, ~100 requests/s",
            demo.listen
        ),
        // A clean screen; the view redraws from its top-left corner.
        Mode::Screen => print!("\x1b[2J\x1b[H"),
        Mode::Quiet => {}
    }
    demo.wait(&["Initialized"], Duration::from_secs(30), false)
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

/// `primary [#####     ] 25% canary`.
fn bar(weight: i64, width: usize) -> String {
    let w = usize::try_from(weight.clamp(0, 100)).unwrap_or(0);
    let filled = w * width / 100;
    format!(
        "primary {:>3}% [{}{}] {:>3}% canary",
        100 - w,
        "=".repeat(width - filled),
        "#".repeat(filled),
        w
    )
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}%"))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0} ms"))
}

fn live_row(name: &str, l: Live) -> String {
    format!(
        "  {name:<8} {:>10.1} {:>10} {:>9}",
        l.rate,
        pct(l.success),
        ms(l.p99)
    )
}

fn short(l: Live) -> String {
    if l.rate == 0.0 {
        return "idle".into();
    }
    format!("{} p99 {}", pct(l.success), ms(l.p99))
}

fn colour_phase(phase: &str) -> String {
    let code = match phase {
        "Succeeded" => "32",
        "Failed" => "31",
        "Progressing" | "Promoting" | "Finalising" => "33",
        _ => "0",
    };
    format!("\x1b[1;{code}m{phase}\x1b[0m")
}

/// The status's checks as `name value (range) verdict`.
fn checks(status: &serde_json::Value) -> Vec<String> {
    status["checks"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|c| {
                    let range = match (c["min"].as_f64(), c["max"].as_f64()) {
                        (Some(a), Some(b)) => format!("{a}..{b}"),
                        (Some(a), None) => format!(">= {a}"),
                        (None, Some(b)) => format!("<= {b}"),
                        (None, None) => String::new(),
                    };
                    let value = c["value"]
                        .as_f64()
                        .map_or("no value".into(), |v| format!("{v:.1}"));
                    let why = c["message"]
                        .as_str()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default();
                    format!(
                        "{:<22} {value:>9} {range:<9} {}{why}",
                        c["name"].as_str().unwrap_or(""),
                        c["verdict"].as_str().unwrap_or("").to_lowercase()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
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
