//! `siskin run` with real upstream servers on loopback: a good release is promoted, a bad one
//! is rolled back, and a run killed mid-release resumes from its status file without a double
//! step.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    convert::Infallible,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use siskin_e2e::free_port;

/// An upstream answering its version; every `fail_every`-th answer is a 500 (0: never).
async fn upstream(version: &'static str, fail_every: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let n = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let n = n.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let i = n.fetch_add(1, SeqCst) + 1;
                    async move {
                        let mut r = http::Response::new(Full::new(Bytes::from(version)));
                        if fail_every > 0 && i.is_multiple_of(fail_every) {
                            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Steady GETs through the router at `listen`, one every `every`, as users would send.
fn steady_load(listen: u16, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        loop {
            let _ = client
                .get(format!("http://127.0.0.1:{listen}/").parse().unwrap())
                .await;
            tokio::time::sleep(every).await;
        }
    })
}

struct Run {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Run {
    fn start(file: &Path) -> Run {
        Self::start_with(file, &[])
    }

    fn start_with(file: &Path, args: &[&str]) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_siskin"))
            .arg("run")
            .arg(file)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Run { child, log }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_file(path: &Path, listen: u16, admin: u16, primary: &str, canary: &[String]) {
    let canary: Vec<String> = canary.iter().map(|c| format!("\"{c}\"")).collect();
    std::fs::write(path, format!(
        "name: checkout\nlisten: 127.0.0.1:{listen}\nadminAddr: 127.0.0.1:{admin}\nprimary: [\"{primary}\"]\ncanary: [{}]\nprogressDeadlineSeconds: 60\nanalysis:\n  interval: 10s\n  threshold: 1\n  maxWeight: 50\n  stepWeight: 50\n  metrics:\n  - name: request-success-rate\n    thresholdRange: {{min: 99}}\n    interval: 10s\n",
        canary.join(", ")
    )).unwrap();
}

fn status(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path.with_file_name("checkout.status.yaml")).unwrap_or_default();
    serde_yaml::from_str(&text).unwrap_or(serde_json::Value::Null)
}

async fn wait_phase(path: &Path, phase: &str, limit: Duration) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let s = status(path);
        if s["status"]["phase"] == phase {
            return s;
        }
        assert!(
            started.elapsed() < limit,
            "phase {phase} not reached in {limit:?}; status: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotes_a_good_release_resumes_after_kill_and_rolls_back_a_bad_one() {
    let (v1, v2, v3, bad) = (
        upstream("v1", 0).await,
        upstream("v2", 0).await,
        upstream("v3", 0).await,
        upstream("v4", 2).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("checkout.yaml");
    let (listen, admin) = (free_port(), free_port());
    write_file(&file, listen, admin, &v1, &[]);
    let mut run = Run::start(&file);
    // Steady traffic through the router, as users would send.
    let load = steady_load(listen, Duration::from_millis(20));
    wait_phase(&file, "Initialized", Duration::from_secs(20)).await;

    // A good release: promoted, and v2 now serves as the primary.
    write_file(&file, listen, admin, &v1, std::slice::from_ref(&v2));
    let s = wait_phase(&file, "Succeeded", Duration::from_secs(90)).await;
    assert_eq!(s["primary"], serde_json::json!([v2]));

    // Killed mid-release, restarted: it resumes at the same weight and finishes.
    write_file(&file, listen, admin, &v1, std::slice::from_ref(&v3));
    let started = Instant::now();
    while status(&file)["status"]["canaryWeight"] != 50 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "weight 50 not reached"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    let resumed = Run::start(&file);
    let s = wait_phase(&file, "Succeeded", Duration::from_secs(90)).await;
    assert_eq!(s["primary"], serde_json::json!([v3]));
    let lines = resumed.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("resuming checkout at Progressing (weight 50)")),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("Advance checkout canary weight 50")),
        "no double step: {lines:#?}"
    );
    run = resumed;

    // A bad release (half its answers fail): rolled back, the primary untouched.
    write_file(&file, listen, admin, &v1, std::slice::from_ref(&bad));
    let s = wait_phase(&file, "Failed", Duration::from_secs(60)).await;
    assert_eq!(s["primary"], serde_json::json!([v3]));
    assert_eq!(s["status"]["canaryWeight"], 0);
    let lines = run.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("request-success-rate") && l.contains("< 99 (fail)")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ALERT (Error) Failed checks threshold reached 1")),
        "{lines:#?}"
    );
    load.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_metric_rolls_back_within_seconds_not_at_the_next_interval() {
    let (v1, bad) = (upstream("v1", 0).await, upstream("bad", 2).await);
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("checkout.yaml");
    let (listen, admin) = (free_port(), free_port());
    let write = |canary: &[String]| {
        let canary: Vec<String> = canary.iter().map(|c| format!("\"{c}\"")).collect();
        std::fs::write(&file, format!(
            "name: checkout\nlisten: 127.0.0.1:{listen}\nadminAddr: 127.0.0.1:{admin}\nprimary: [\"{v1}\"]\ncanary: [{}]\nanalysis:\n  interval: 60s\n  threshold: 5\n  maxWeight: 50\n  stepWeight: 50\n  metrics:\n  - name: request-success-rate\n    critical: true\n    thresholdRange: {{min: 99}}\n    interval: 1m\n",
            canary.join(", ")
        )).unwrap();
    };
    write(&[]);
    let run = Run::start(&file);
    let load = steady_load(listen, Duration::from_millis(10));
    wait_phase(&file, "Initialized", Duration::from_secs(20)).await;
    write(std::slice::from_ref(&bad));
    // With a 60 s interval the first step (weight 50) comes a minute after the release starts;
    // the failure must be caught within seconds of traffic reaching the canary.
    let started = Instant::now();
    while status(&file)["status"]["canaryWeight"] != 50 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "weight 50 not reached"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exposed = Instant::now();
    let s = wait_phase(&file, "Failed", Duration::from_secs(30)).await;
    assert!(
        exposed.elapsed() < Duration::from_secs(15),
        "rolled back {:?} after exposure",
        exposed.elapsed()
    );
    assert_eq!(s["status"]["canaryWeight"], 0);
    let lines = run.lines();
    assert!(
        lines
            .iter()
            .any(|l| l
                .starts_with("ALERT (Error) Critical check failed: metric request-success-rate")),
        "{lines:#?}"
    );
    load.abort();
}

/// A process upstream running `siskin sample-app`.
fn app(port: u16, version: &str, error_rate: f64) -> String {
    format!(
        "{{address: \"127.0.0.1:{port}\", command: [\"{}\", \"sample-app\", \"--listen\", \"127.0.0.1:{port}\", \"--app-version\", \"{version}\", \"--error-rate\", \"{error_rate}\"]}}",
        env!("CARGO_BIN_EXE_siskin")
    )
}

fn answers(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

async fn wait_until(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "{what} not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Upstreams given as commands: Siskin starts the primary's, starts the canary's for a release,
/// keeps the promoted canary's and stops the old primary's; after a SIGKILL the new run adopts
/// the processes instead of starting them twice. Then `--canary ADDR --once` releases an
/// address given on the command line and exits 1 when it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_commands_and_releases_an_address_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("checkout.yaml");
    let (listen, admin, p1, p2) = (free_port(), free_port(), free_port(), free_port());
    let write = |canary: &str| {
        std::fs::write(&file, format!(
            "name: checkout\nlisten: 127.0.0.1:{listen}\nadminAddr: 127.0.0.1:{admin}\nprimary:\n- {}\ncanary: [{canary}]\nprogressDeadlineSeconds: 30\nanalysis:\n  interval: 5s\n  threshold: 1\n  maxWeight: 50\n  stepWeight: 50\n  metrics:\n  - name: request-success-rate\n    thresholdRange: {{min: 99}}\n    interval: 10s\n",
            app(p1, "1.0.0", 0.0)
        )).unwrap();
    };
    write("");
    let mut run = Run::start(&file);
    wait_phase(&file, "Initialized", Duration::from_secs(20)).await;
    assert!(answers(p1), "the primary's command was started");
    let recorded = status(&file)["processes"].clone();
    assert_eq!(recorded.as_array().map(Vec::len), Some(1), "{recorded}");

    // Killed and restarted: the running primary is adopted, not started twice.
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    let run = Run::start(&file);
    wait_until("adoption", Duration::from_secs(10), || {
        run.lines()
            .iter()
            .any(|l| l.starts_with("adopted 127.0.0.1:"))
    })
    .await;
    assert_eq!(
        status(&file)["processes"],
        recorded,
        "same pid after restart"
    );

    let load = steady_load(listen, Duration::from_millis(20));
    // A release whose canary is a command: started, promoted, old primary stopped.
    write(&app(p2, "2.0.0", 0.0));
    let s = wait_phase(&file, "Succeeded", Duration::from_secs(60)).await;
    assert_eq!(s["primary"][0]["address"], format!("127.0.0.1:{p2}"));
    wait_until("old primary stopped", Duration::from_secs(10), || {
        !answers(p1)
    })
    .await;
    assert!(answers(p2), "the promoted canary keeps running");
    let lines = run.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("started 127.0.0.1:{p2}"))),
        "{lines:#?}"
    );
    drop(run);

    // A bad address given with --canary and --once: rolled back, exit code 1, the file untouched.
    let bad = upstream("bad", 2).await;
    let before = std::fs::read_to_string(&file).unwrap();
    let out = tokio::task::spawn_blocking({
        let file = file.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_siskin"))
                .args(["run", "--once", "--canary", &bad])
                .arg(&file)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(status(&file)["status"]["phase"], "Failed");
    assert!(text.contains("request-success-rate"), "{text}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    load.abort();
    // The run ended: the processes it started are stopped.
    wait_until("processes stopped", Duration::from_secs(10), || {
        !answers(p2)
    })
    .await;
}

/// One GET through the router, with `header` set when given; the body (the version).
async fn get(listen: u16, header: Option<(&str, &str)>) -> String {
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let mut req = http::Request::get(format!("http://127.0.0.1:{listen}/"));
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let resp = client
        .request(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8_lossy(&body).to_string()
}

/// A/B through the in-process router: only requests matching `analysis.match` reach the
/// canary while the run iterates; then `--revert` hands every request to the file's canary
/// upstreams and retires the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_run_sends_only_matching_requests_to_the_canary_and_revert_hands_traffic_back() {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("checkout.yaml");
    let (listen, admin) = (free_port(), free_port());
    let (v1, v2) = (upstream("v1", 0).await, upstream("v2", 0).await);
    let write = |canary: &str| {
        std::fs::write(&file, format!(
            "name: checkout\nlisten: 127.0.0.1:{listen}\nadminAddr: 127.0.0.1:{admin}\nprimary: [\"{v1}\"]\ncanary: [{canary}]\nanalysis:\n  interval: 10s\n  threshold: 2\n  iterations: 30\n  match:\n  - headers:\n      x-canary: {{exact: insider}}\n"
        )).unwrap();
    };
    write("");
    let run = Run::start(&file);
    wait_phase(&file, "Initialized", Duration::from_secs(20)).await;
    write(&format!("\"{v2}\""));
    let started = Instant::now();
    while status(&file)["status"]["iterations"].as_i64().unwrap_or(0) < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "no A/B iteration: {}",
            status(&file)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The route the router serves may lag the status by one reload (50 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        assert_eq!(get(listen, Some(("x-canary", "insider"))).await, "v2");
        assert_eq!(
            get(listen, None).await,
            "v1",
            "non-matching requests stay on the primary"
        );
        assert_eq!(get(listen, Some(("x-canary", "outsider"))).await, "v1");
    }
    drop(run);

    // Revert: all traffic to the file's canary, the primary retired, Terminated.
    let _run = {
        let mut child = Command::new(env!("CARGO_BIN_EXE_siskin"))
            .args(["run", "--revert"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        child.stdout.take();
        Run { child, log }
    };
    let s = wait_phase(&file, "Terminated", Duration::from_secs(30)).await;
    assert_eq!(s["reverted"], true, "{s}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        assert_eq!(get(listen, None).await, "v2", "every request to the target");
    }
}

/// Checks against a real Prometheus scraping the in-process router every second: a good
/// release is promoted and a bad one rolled back on a MetricTemplate's query; with Prometheus
/// stopped mid-analysis the check is an error naming the cause and nothing is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_are_judged_by_prometheus_queries() {
    use siskin_e2e::prometheus::{Options, Prometheus};
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("checkout.yaml");
    let (listen, admin) = (free_port(), free_port());
    let mut prom = Prometheus::start(&Options {
        scrape: vec![format!("127.0.0.1:{admin}")],
        ..Default::default()
    })
    .unwrap();
    let (v1, v2, bad) = (
        upstream("v1", 0).await,
        upstream("v2", 0).await,
        upstream("bad", 3).await,
    );
    let write = |canary: &str, threshold: u32| {
        std::fs::write(&file, format!(
            "name: checkout\nlisten: 127.0.0.1:{listen}\nadminAddr: 127.0.0.1:{admin}\nprimary: [\"{v1}\"]\ncanary: [{canary}]\nprogressDeadlineSeconds: 60\nmetricTemplates:\n- name: error-rate\n  provider: {{type: prometheus, address: \"{}\"}}\n  query: |\n    sum(rate(siskin_router_requests_total{{route=\"{{{{ namespace }}}}/{{{{ target }}}}\", backend=\"canary\", status_class=\"5xx\"}}[{{{{ interval }}}}]))\n    / sum(rate(siskin_router_requests_total{{route=\"{{{{ namespace }}}}/{{{{ target }}}}\", backend=\"canary\"}}[{{{{ interval }}}}])) * 100\n    or on() vector(0)\nanalysis:\n  interval: 10s\n  threshold: {threshold}\n  maxWeight: 50\n  stepWeight: 25\n  metrics:\n  - name: error-rate\n    templateRef: {{name: error-rate}}\n    thresholdRange: {{max: 5}}\n    interval: 10s\n",
            prom.url
        )).unwrap();
    };
    write("", 1);
    let run = Run::start(&file);
    wait_phase(&file, "Initialized", Duration::from_secs(20)).await;
    let s = status(&file);
    let cond = s["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "MetricsAvailable")
        .cloned()
        .unwrap_or_default();
    assert_eq!(cond["status"], "True", "probed before traffic: {s}");
    let load = tokio::spawn(async move {
        loop {
            let _ = get_status(listen).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    write(&format!("\"{v2}\""), 1);
    let s = wait_phase(&file, "Succeeded", Duration::from_secs(120)).await;
    let check = s["status"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "error-rate")
        .cloned()
        .unwrap();
    assert_eq!(check["verdict"], "Pass", "{check}");
    assert_eq!(check["provider"], "prometheus");
    assert!(
        check["query"]
            .as_str()
            .unwrap()
            .contains(r#"route="standalone/checkout""#),
        "{check}"
    );
    // A third of the bad canary's answers are errors: rolled back on the query.
    write(&format!("\"{bad}\""), 1);
    let s = wait_phase(&file, "Failed", Duration::from_secs(120)).await;
    assert!(s["status"]["failedChecks"].as_i64().unwrap() >= 1, "{s}");
    // Prometheus stopped mid-analysis: an error naming the cause, and no promotion.
    write(&format!("\"{v1}\""), 3);
    let started = Instant::now();
    loop {
        let s = status(&file);
        if s["status"]["phase"] == "Progressing" && s["status"]["canaryWeight"].as_i64() > Some(0) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    prom.stop();
    let started = Instant::now();
    let check = loop {
        let s = status(&file);
        assert_ne!(
            s["status"]["phase"], "Succeeded",
            "promoted without data: {s}"
        );
        let c = s["status"]["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == "error-rate" && c["verdict"] == "Error")
            .cloned();
        if let Some(c) = c {
            break c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no error check: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .starts_with("unreachable:"),
        "{check}"
    );
    let s = wait_phase(&file, "Failed", Duration::from_secs(90)).await;
    assert_eq!(
        s["status"]["lastPromotedSpec"],
        status(&file)["status"]["lastPromotedSpec"]
    );
    load.abort();
    drop(run);
}

async fn get_status(listen: u16) -> Option<u16> {
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    client
        .get(format!("http://127.0.0.1:{listen}/").parse().unwrap())
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// A process upstream running `siskin sample-app` with log-normal latency around
/// `latency_ms` and failures drawn at random.
fn noisy_app(port: u16, version: &str, error_rate: f64, latency_ms: u64) -> String {
    format!(
        "{{address: \"127.0.0.1:{port}\", command: [\"{}\", \"sample-app\", \"--listen\", \"127.0.0.1:{port}\", \"--app-version\", \"{version}\", \"--error-rate\", \"{error_rate}\", \"--random-errors\", \"--latency-ms\", \"{latency_ms}\", \"--latency-spread\", \"0.3\"]}}",
        env!("CARGO_BIN_EXE_siskin")
    )
}

/// The statistical judge through `siskin run`: an identical release (same latency
/// distribution, no errors) is promoted, a release 60 % slower is rolled back on
/// `judge-latency`, and one failing 5 % of requests on `judge-errors`; each check shows the
/// test, the effect, its interval and the data it compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_are_judged_canary_against_primary() {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("checkout.yaml");
    let (listen, admin) = (free_port(), free_port());
    let primary = noisy_app(free_port(), "v1", 0.0, 20);
    let write = |canary: &str| {
        std::fs::write(&file, format!(
            "name: checkout\nlisten: 127.0.0.1:{listen}\nadminAddr: 127.0.0.1:{admin}\nprimary:\n- {primary}\ncanary: [{canary}]\nprogressDeadlineSeconds: 60\nanalysis:\n  interval: 10s\n  threshold: 1\n  maxWeight: 50\n  stepWeight: 50\n  metrics:\n  - name: judge-latency\n    thresholdRange: {{max: 10}}\n    interval: 10s\n  - name: judge-errors\n    thresholdRange: {{max: 1}}\n    interval: 10s\n",
        )).unwrap();
    };
    write("");
    let run = Run::start(&file);
    wait_phase(&file, "Initialized", Duration::from_secs(30)).await;
    // Four clients, each sending a request every 10 ms after the previous answer.
    let mut load = Vec::new();
    for _ in 0..4 {
        load.push(tokio::spawn(async move {
            loop {
                let _ = get_status(listen).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    let judged = |s: &serde_json::Value, name: &str| {
        s["status"]["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    write(&noisy_app(free_port(), "v2", 0.0, 20));
    let s = wait_phase(&file, "Succeeded", Duration::from_secs(120)).await;
    let lat = judged(&s, "judge-latency");
    assert_eq!(lat["verdict"], "Pass", "{lat}");
    assert_eq!(lat["judge"]["test"], "mann-whitney", "{lat}");
    assert!(
        lat["judge"]["canaryRequests"].as_u64().unwrap() >= 100,
        "{lat}"
    );
    assert!(
        lat["judge"]["primaryRequests"].as_u64().unwrap() >= 100,
        "{lat}"
    );
    let effect = lat["judge"]["effect"].as_f64().unwrap();
    assert!(effect.abs() < 10.0, "identical versions: {lat}");
    assert_eq!(lat["judge"]["alpha"], 0.05, "one check a run: {lat}");
    assert_eq!(judged(&s, "judge-errors")["verdict"], "Pass", "{s}");
    // v2 is the primary now. 60 % slower: rolled back on the latency judge.
    write(&noisy_app(free_port(), "slow", 0.0, 32));
    let s = wait_phase(&file, "Failed", Duration::from_secs(120)).await;
    let lat = judged(&s, "judge-latency");
    assert_eq!(lat["verdict"], "Fail", "{lat}");
    let j = &lat["judge"];
    let (effect, lower, upper) = (
        j["effect"].as_f64().unwrap(),
        j["lower"].as_f64().unwrap(),
        j["upper"].as_f64().unwrap(),
    );
    assert!((35.0..=90.0).contains(&effect), "{lat}");
    assert!(lower > 10.0 && lower <= effect && effect <= upper, "{lat}");
    assert_eq!(lat["value"], j["bound"]);
    assert!(
        lat["message"].as_str().unwrap().contains("Mann-Whitney U"),
        "{lat}"
    );
    assert_eq!(judged(&s, "judge-errors")["verdict"], "Pass", "{s}");
    // 5 % of requests fail: rolled back on the error judge.
    write(&noisy_app(free_port(), "flaky", 0.05, 20));
    wait_phase(&file, "Progressing", Duration::from_secs(60)).await;
    let s = wait_phase(&file, "Failed", Duration::from_secs(120)).await;
    let err = judged(&s, "judge-errors");
    assert_eq!(err["verdict"], "Fail", "{err}");
    assert_eq!(err["judge"]["test"], "two-proportion", "{err}");
    assert!(
        err["judge"]["canaryFailures"].as_u64().unwrap() > 0,
        "{err}"
    );
    assert!(err["value"].as_f64().unwrap() > 1.0, "{err}");
    for l in load {
        l.abort();
    }
    drop(run);
}

#[path = "support/receiver.rs"]
mod receiver;
use receiver::{SLACK_HOOK, bodies, paths, receiver};

#[path = "support/loadtester.rs"]
mod loadtester;
use loadtester::{LoadTester, post};

/// Every hook type through `siskin run`: gates held closed and opened with the real
/// `siskin-loadtester` (confirm-rollout, confirm-promotion, then a rollback gate), the load
/// tester restarted while a gate is open, hooks and events received in order with Flagger's
/// payloads, each result in the status, alerts in Slack's shape to a Slack stand-in, and a
/// hook that never answers failing the release at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_gates_and_alerts_drive_a_release() {
    let (v1, v2, v3, v4) = (
        upstream("v1", 0).await,
        upstream("v2", 0).await,
        upstream("v3", 0).await,
        upstream("v4", 0).await,
    );
    let (hooks, calls) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let gates = dir.path().join("gates.json");
    let lt = free_port();
    let mut tester = LoadTester::start(lt, &gates).await;
    let file: PathBuf = dir.path().join("checkout.yaml");
    let (listen, admin) = (free_port(), free_port());
    let write = |canary: &str, rollout: &str| {
        std::fs::write(&file, format!(
r#"name: checkout
listen: 127.0.0.1:{listen}
adminAddr: 127.0.0.1:{admin}
primary: ["{v1}"]
canary: [{canary}]
progressDeadlineSeconds: 600
secrets:
  slack: {{address: "http://{hooks}{SLACK_HOOK}"}}
alertProviders:
- {{name: chat, type: slack, channel: releases, username: siskin, secretRef: {{name: slack}}}}
analysis:
  interval: 10s
  threshold: 1
  maxWeight: 50
  stepWeight: 25
  alerts:
  - {{name: releases, severity: info, providerRef: {{name: chat}}}}
  webhooks:
  - {{name: approve-rollout, type: confirm-rollout, url: "http://127.0.0.1:{lt}/gate/check"}}
  - {{name: smoke, type: pre-rollout, url: "http://{hooks}/pre", metadata: {{cmd: "curl -s http://checkout/"}}}}
  - {{name: load, type: rollout, url: "http://{hooks}{rollout}", timeout: 1s}}
  - {{name: step, type: confirm-traffic-increase, url: "http://{hooks}/step"}}
  - {{name: approve-promotion, type: confirm-promotion, url: "http://127.0.0.1:{lt}/gate/check"}}
  - {{name: rollback-gate, type: rollback, url: "http://127.0.0.1:{lt}/rollback/check"}}
  - {{name: notify, type: post-rollout, url: "http://{hooks}/post"}}
  - {{name: events, type: event, url: "http://{hooks}/event"}}
"#)).unwrap();
    };
    write("", "/rollout");
    let run = Run::start(&file);
    wait_phase(&file, "Initialized", Duration::from_secs(20)).await;
    let key = serde_json::json!({"name": "checkout", "namespace": "standalone"});
    let typed = |t: &str| {
        let mut k = key.clone();
        k["type"] = t.into();
        k
    };

    // Release v2: held at confirm-rollout until that gate (and only it) opens.
    write(&format!("\"{v2}\""), "/rollout");
    let s = wait_phase(&file, "Waiting", Duration::from_secs(30)).await;
    assert_eq!(s["status"]["canaryWeight"], 0);
    let hook = |s: &serde_json::Value, name: &str| {
        s["status"]["webhooks"]
            .as_array()
            .and_then(|w| w.iter().find(|h| h["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no webhook result {name}: {s}"))
    };
    let gate = hook(&s, "approve-rollout");
    assert_eq!(
        (gate["passed"].clone(), gate["statusCode"].clone()),
        (false.into(), 403.into()),
        "{gate}"
    );
    assert!(
        !paths(&calls).contains(&"/pre".to_string()),
        "no pre-rollout before the gate opens"
    );
    assert_eq!(post(lt, "/gate/open", typed("confirm-rollout")).await, 202);
    assert_eq!(
        post(lt, "/gate/check", typed("confirm-promotion")).await,
        403,
        "per-type gates"
    );

    // It steps, then waits at confirm-promotion; the load tester is restarted meanwhile and
    // keeps the open confirm-rollout gate.
    let s = wait_phase(&file, "WaitingPromotion", Duration::from_secs(90)).await;
    assert_eq!(s["status"]["canaryWeight"], 50);
    drop(tester);
    tester = LoadTester::start(lt, &gates).await;
    assert_eq!(
        post(lt, "/gate/check", typed("confirm-rollout")).await,
        200,
        "kept across a restart"
    );
    assert_eq!(
        post(lt, "/gate/open", typed("confirm-promotion")).await,
        202
    );
    let s = wait_phase(&file, "Succeeded", Duration::from_secs(60)).await;
    assert_eq!(s["primary"], serde_json::json!([v2]));
    let promoted = hook(&s, "approve-promotion");
    assert_eq!(
        (promoted["passed"].clone(), promoted["statusCode"].clone()),
        (true.into(), 200.into()),
        "{promoted}"
    );
    let post_hook = hook(&s, "notify");
    assert_eq!(post_hook["passed"], true, "{post_hook}");

    // The hooks in Flagger's order, with its payload.
    let seen = paths(&calls);
    let first = |p: &str| {
        seen.iter()
            .position(|x| x == p)
            .unwrap_or_else(|| panic!("{p} never called: {seen:?}"))
    };
    assert!(first("/pre") < first("/rollout"), "{seen:?}");
    assert!(first("/rollout") < first("/post"), "{seen:?}");
    assert!(first("/step") < first("/post"), "{seen:?}");
    assert!(
        seen.iter().filter(|p| *p == "/pre").count() == 1,
        "pre-rollout once: {seen:?}"
    );
    let pre = bodies(&calls, "/pre").remove(0);
    assert_eq!(
        (
            pre["name"].clone(),
            pre["namespace"].clone(),
            pre["type"].clone()
        ),
        ("checkout".into(), "standalone".into(), "pre-rollout".into()),
        "{pre}"
    );
    assert_eq!(pre["phase"], "Progressing", "{pre}");
    assert!(!pre["checksum"].as_str().unwrap().is_empty(), "{pre}");
    assert_eq!(pre["metadata"]["cmd"], "curl -s http://checkout/", "{pre}");
    let events = bodies(&calls, "/event");
    assert!(
        events.iter().any(|e| e["metadata"]["eventMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("New revision detected")),
        "{events:#?}"
    );
    for e in &events {
        assert_eq!(e["type"], "event");
        assert!(
            ["Normal", "Warning"]
                .contains(&e["metadata"]["eventType"].as_str().unwrap_or_default()),
            "{e}"
        );
        assert!(
            e["metadata"]["timestamp"]
                .as_str()
                .is_some_and(|t| t.parse::<u64>().is_ok()),
            "{e}"
        );
    }
    // Alerts reached the Slack stand-in, each accepted, in Flagger's attachment shape.
    let slack = bodies(&calls, SLACK_HOOK);
    assert!(slack.len() >= 3, "a message per phase change: {slack:#?}");
    for m in &slack {
        assert_eq!(
            (m["channel"].clone(), m["username"].clone()),
            ("releases".into(), "siskin".into()),
            "{m}"
        );
        assert_eq!(
            m["attachments"][0]["author_name"], "checkout.standalone",
            "{m}"
        );
    }
    let texts: Vec<&str> = slack
        .iter()
        .filter_map(|m| m["attachments"][0]["text"].as_str())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("New revision detected")),
        "{texts:#?}"
    );
    assert!(texts.iter().any(|t| t.contains("promot")), "{texts:#?}");

    // Release v3: rolled back through the rollback gate, opened while it steps.
    write(&format!("\"{v3}\""), "/rollout");
    let started = Instant::now();
    while status(&file)["status"]["canaryWeight"] != 25 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "weight 25 not reached"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(post(lt, "/rollback/open", key.clone()).await, 202);
    let s = wait_phase(&file, "Failed", Duration::from_secs(30)).await;
    assert_eq!(s["primary"], serde_json::json!([v2]));
    let rb = hook(&s, "rollback-gate");
    assert_eq!(rb["passed"], true, "{rb}");
    assert_eq!(post(lt, "/rollback/close", key.clone()).await, 202);

    // Release v4: a rollout hook that never answers fails its check at the 1 s timeout.
    write(&format!("\"{v4}\""), "/hang");
    wait_phase(&file, "Progressing", Duration::from_secs(30)).await;
    let s = wait_phase(&file, "Failed", Duration::from_secs(90)).await;
    assert_eq!(s["primary"], serde_json::json!([v2]), "not promoted");
    let load = hook(&s, "load");
    assert_eq!(load["passed"], false, "{load}");
    assert!(
        load["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no answer within 1s"),
        "{load}"
    );
    let lines = run.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("load") && l.contains("no answer within 1s")),
        "{lines:#?}"
    );
    drop(tester);
}

/// The global destination of `siskin run` (`--slack-url`, `--slack-channel`, `--slack-user`,
/// used when the file names no alert providers) and `--event-webhook`: a failing release's
/// error alert reaches the Slack stand-in in red with the failing check's name, value and
/// threshold as a field, and every event reaches the event hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_slack_flags_and_event_webhook_tell_of_a_failed_release() {
    let (v1, bad) = (upstream("v1", 0).await, upstream("bad", 2).await);
    let (hooks, calls) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("checkout.yaml");
    let (listen, admin) = (free_port(), free_port());
    write_file(&file, listen, admin, &v1, &[]);
    let slack = format!("http://{hooks}{SLACK_HOOK}");
    let events = format!("http://{hooks}/events");
    let run = Run::start_with(
        &file,
        &[
            "--slack-url",
            &slack,
            "--slack-channel",
            "ops",
            "--slack-user",
            "releases",
            "--event-webhook",
            &events,
        ],
    );
    let load = steady_load(listen, Duration::from_millis(20));
    wait_phase(&file, "Initialized", Duration::from_secs(20)).await;
    write_file(&file, listen, admin, &v1, std::slice::from_ref(&bad));
    wait_phase(&file, "Failed", Duration::from_secs(90)).await;
    load.abort();
    // Alerts go out on their own tasks: give the last one a moment.
    let started = Instant::now();
    let failed = loop {
        let msgs = bodies(&calls, SLACK_HOOK);
        if let Some(m) = msgs
            .iter()
            .find(|m| m["attachments"][0]["color"] == "danger")
        {
            break m.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no error alert: {msgs:#?}\n{:#?}",
            run.lines()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (failed["channel"].as_str(), failed["username"].as_str()),
        (Some("ops"), Some("releases")),
        "{failed}"
    );
    let a = &failed["attachments"][0];
    assert_eq!(a["author_name"], "checkout.standalone", "{failed}");
    let field = a["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["title"] == "request-success-rate")
        .unwrap_or_else(|| panic!("the failing check is a field: {failed}"));
    let value = field["value"].as_str().unwrap();
    assert!(
        value.contains("(min 99)") && value.contains("Fail"),
        "{value}"
    );
    let fallback = a["fallback"].as_str().unwrap();
    assert!(
        fallback.contains("request-success-rate") && !fallback.contains("://"),
        "{fallback}"
    );
    // Every message went to the global destination (the file has no alertProviders).
    let all = bodies(&calls, SLACK_HOOK);
    assert!(all.len() >= 3, "{all:#?}");
    let told = bodies(&calls, "/events");
    assert!(
        told.iter().any(|e| e["metadata"]["eventType"] == "Warning"
            && e["metadata"]["eventMessage"]
                .as_str()
                .unwrap_or_default()
                .contains("request-success-rate")),
        "{told:#?}"
    );
}

/// `siskin <command> --file`: exit code and stdout.
fn ctl(file: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_siskin"))
        .args(args)
        .arg("--file")
        .arg(file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!(
        "$ siskin {} --file → {}\n{stdout}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

/// The CLI against a `siskin run` file: a pause holds a new release back, an abort rolls it
/// back, a retry promotes it, and `wait` exits 0, 1 and 3 as a pipeline needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pauses_aborts_and_retries_a_standalone_release() {
    let (v1, v2) = (upstream("v1", 0).await, upstream("v2", 0).await);
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("checkout.yaml");
    let (listen, admin) = (free_port(), free_port());
    write_file(&file, listen, admin, &v1, &[]);
    let run = Run::start(&file);
    let load = steady_load(listen, Duration::from_millis(20));
    wait_phase(&file, "Initialized", Duration::from_secs(20)).await;
    assert_eq!(
        ctl(&file, &["wait", "--for=Promoted", "--timeout", "5s"]).0,
        0
    );

    assert_eq!(ctl(&file, &["pause", "--reason", "change freeze"]).0, 0);
    write_file(&file, listen, admin, &v1, std::slice::from_ref(&v2));
    assert_eq!(
        ctl(&file, &["wait", "--for=Succeeded", "--timeout", "4s"]).0,
        3
    );
    assert_eq!(status(&file)["status"]["phase"], "Initialized", "held back");
    let (_, table) = ctl(&file, &["get"]);
    assert!(
        table.contains("checkout") && table.contains(" yes "),
        "{table}"
    );
    let (_, text) = ctl(&file, &["describe"]);
    assert!(text.contains("change freeze"), "{text}");

    assert_eq!(ctl(&file, &["resume"]).0, 0);
    wait_phase(&file, "Progressing", Duration::from_secs(30)).await;
    assert_eq!(ctl(&file, &["abort"]).0, 0);
    assert_eq!(
        ctl(&file, &["wait", "--for=Succeeded", "--timeout", "60s"]).0,
        1
    );
    assert_eq!(status(&file)["primary"], serde_json::json!([v1]));
    assert_eq!(ctl(&file, &["retry"]).0, 0);
    assert_eq!(
        ctl(&file, &["wait", "--for=Succeeded", "--timeout", "90s"]).0,
        0
    );
    assert_eq!(status(&file)["primary"], serde_json::json!([v2]));
    let (_, history) = ctl(&file, &["history"]);
    let rows: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{history}");
    assert!(
        rows[0].contains("Failed") && rows[0].contains("aborted by"),
        "{history}"
    );
    assert!(rows[1].contains("Succeeded"), "{history}");
    let lines = run.lines();
    assert!(lines.iter().any(|l| l.contains("Paused by")), "{lines:#?}");
    // A broken control file holds the release and says why.
    std::fs::write(dir.path().join("checkout.control.yaml"), "pause: [").unwrap();
    let started = Instant::now();
    while !run
        .lines()
        .iter()
        .any(|l| l.contains("control file refused"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:#?}",
            run.lines()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    load.abort();
}
