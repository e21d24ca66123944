//! The in-process `hey`: its command line (the flags Flagger's docs and e2e tests use) and an
//! HTTP load run with `c` workers, each optionally rate-limited to `q` requests per second.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use tokio::time::MissedTickBehavior;

use super::{
    Amount, Limits, RunContext, Workers,
    flags::{self, Flag},
    stats::{Outcome, Summary, WorkerStats},
};

const FLAGS: &[Flag] = &[
    Flag {
        names: &["z"],
        boolean: false,
    },
    Flag {
        names: &["n"],
        boolean: false,
    },
    Flag {
        names: &["c"],
        boolean: false,
    },
    Flag {
        names: &["q"],
        boolean: false,
    },
    Flag {
        names: &["m"],
        boolean: false,
    },
    Flag {
        names: &["H"],
        boolean: false,
    },
    Flag {
        names: &["d"],
        boolean: false,
    },
    Flag {
        names: &["D"],
        boolean: false,
    },
    Flag {
        names: &["t"],
        boolean: false,
    },
    Flag {
        names: &["T"],
        boolean: false,
    },
    Flag {
        names: &["A"],
        boolean: false,
    },
    Flag {
        names: &["a"],
        boolean: false,
    },
    Flag {
        names: &["host"],
        boolean: false,
    },
    Flag {
        names: &["cpus"],
        boolean: false,
    },
    Flag {
        names: &["disable-keepalive"],
        boolean: true,
    },
    Flag {
        names: &["disable-compression"],
        boolean: true,
    },
    Flag {
        names: &["disable-redirects"],
        boolean: true,
    },
    Flag {
        names: &["h2"],
        boolean: true,
    },
];

/// The most workers one run may start.
const MAX_WORKERS: usize = 1000;

/// A parsed `hey` command.
#[derive(Debug, Clone)]
pub struct HeyPlan {
    /// Where requests go (http or https).
    pub url: reqwest::Url,
    /// `-m`.
    pub method: Method,
    /// `-H`, `-T`, `-A`, `-a`, `-host`.
    pub headers: HeaderMap,
    /// `-d` or `-D`.
    pub body: Option<Bytes>,
    /// `-z` or `-n`.
    pub amount: Amount,
    /// `-c`.
    pub workers: usize,
    /// `-q` (0: no limit).
    pub rate_per_worker: f64,
    /// `-t` (None: bounded by the run's limit only).
    pub request_timeout: Option<Duration>,
    /// Not `-disable-keepalive`.
    pub keepalive: bool,
    /// `-h2` (HTTP/2 over TLS; plain `http://` stays HTTP/1.1, as with Go's client).
    pub h2: bool,
    /// Not `-disable-redirects`.
    pub follow_redirects: bool,
}

/// Parses `hey`'s arguments (without the program name).
pub fn parse(args: &[String], limits: &Limits) -> Result<HeyPlan, String> {
    let p = flags::parse("hey", FLAGS, args, false)?;
    let url = match p.positional.as_slice() {
        [url] => url,
        [] => return Err("hey: the URL is missing".to_string()),
        [_, extra, ..] => return Err(format!("hey: unexpected argument {extra:?} after the URL")),
    };
    let url = reqwest::Url::parse(url).map_err(|e| format!("hey: invalid URL {url:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("hey: URL {url} must be http:// or https://"));
    }
    let workers: usize = p.number("hey", "c", 50)?;
    if workers == 0 || workers > MAX_WORKERS {
        return Err(format!("hey: -c must be between 1 and {MAX_WORKERS}"));
    }
    let amount = match p.last("z") {
        Some(z) => {
            let d = crate::duration::parse(z).map_err(|e| format!("hey: -z: {e}"))?;
            if d.is_zero() {
                return Err("hey: -z must be longer than 0".to_string());
            }
            limits.check_duration("hey -z", d)?;
            Amount::For(d)
        }
        None => {
            let n: u64 = p.number("hey", "n", 200)?;
            if n == 0 {
                return Err("hey: -n must be at least 1".to_string());
            }
            if n < workers as u64 {
                return Err("hey: -n cannot be less than -c".to_string());
            }
            Amount::Requests(n)
        }
    };
    let rate_per_worker: f64 = p.number("hey", "q", 0.0)?;
    if !rate_per_worker.is_finite() || rate_per_worker < 0.0 {
        return Err("hey: -q must be 0 (no limit) or more".to_string());
    }
    let timeout_secs: u64 = p.number("hey", "t", 20)?;
    let body = match (p.last("D"), p.last("d")) {
        (Some(file), _) => Some(Bytes::from(
            std::fs::read(file).map_err(|e| format!("hey: -D {file}: {e}"))?,
        )),
        (None, Some(d)) => Some(Bytes::from(d.to_string())),
        (None, None) => None,
    };
    Ok(HeyPlan {
        headers: headers(&p)?,
        method: Method::from_bytes(p.last("m").unwrap_or("GET").to_uppercase().as_bytes())
            .map_err(|_| "hey: -m: invalid method".to_string())?,
        url,
        body,
        amount,
        workers,
        rate_per_worker,
        request_timeout: (timeout_secs > 0).then(|| Duration::from_secs(timeout_secs)),
        keepalive: !p.is_set("disable-keepalive"),
        h2: p.is_set("h2"),
        follow_redirects: !p.is_set("disable-redirects"),
    })
}

fn headers(p: &flags::Parsed) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    let mut set = |name: HeaderName, value: &str, what: &str| -> Result<(), String> {
        let v = HeaderValue::from_str(value)
            .map_err(|_| format!("hey: {what}: invalid header value"))?;
        headers.insert(name, v);
        Ok(())
    };
    set(
        header::CONTENT_TYPE,
        p.last("T").unwrap_or("text/html"),
        "-T",
    )?;
    set(header::USER_AGENT, "siskin-loadtester (hey)", "user agent")?;
    if let Some(accept) = p.last("A") {
        set(header::ACCEPT, accept, "-A")?;
    }
    if let Some(auth) = p.last("a") {
        if !auth.contains(':') {
            return Err("hey: -a must be user:password".to_string());
        }
        set(
            header::AUTHORIZATION,
            &format!("Basic {}", base64(auth.as_bytes())),
            "-a",
        )?;
    }
    for h in p.all("H") {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("hey: -H {h:?} must be \"Name: value\""))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("hey: -H {h:?}: invalid header name"))?;
        set(name, value.trim(), "-H")?;
    }
    if let Some(host) = p.last("host") {
        set(header::HOST, host, "-host")?;
    }
    Ok(headers)
}

/// Standard base64 (for `-a`'s basic auth), to spare a dependency.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Runs the plan and returns its results.
pub async fn run(plan: HeyPlan, ctx: RunContext) -> Result<Summary, String> {
    let client = client(&plan)?;
    let started_at = jiff::Timestamp::now();
    let started = Instant::now();
    // Every run is bounded by the load tester's --timeout, also a count run against a slow target.
    let hard_stop = started + ctx.limit;
    let mut handles = Workers::with_capacity(plan.workers);
    for w in 0..plan.workers {
        let share = match plan.amount {
            Amount::For(_) => u64::MAX,
            Amount::Requests(n) => {
                n / plan.workers as u64 + u64::from((w as u64) < n % plan.workers as u64)
            }
        };
        let deadline = match plan.amount {
            Amount::For(d) => (started + d).min(hard_stop),
            Amount::Requests(_) => hard_stop,
        };
        let (client, plan, ctx) = (client.clone(), plan.clone(), ctx.clone());
        handles.spawn(async move { worker(&client, &plan, &ctx, share, deadline).await });
    }
    let mut total = WorkerStats::default();
    for stats in handles
        .join()
        .await
        .map_err(|e| format!("hey worker failed: {e}"))?
    {
        total.merge(&stats);
    }
    Ok(total.summary(
        "hey",
        &ctx.command,
        plan.url.as_str(),
        started_at,
        started.elapsed(),
    ))
}

fn client(plan: &HeyPlan) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        // hey skips certificate verification too: a load test targets canaries by Service name.
        .tls_danger_accept_invalid_certs(true);
    if let Some(t) = plan.request_timeout {
        b = b.timeout(t);
    }
    if !plan.keepalive {
        b = b.pool_max_idle_per_host(0);
    }
    if !plan.h2 || plan.url.scheme() == "http" {
        b = b.http1_only();
    }
    if !plan.follow_redirects {
        b = b.redirect(reqwest::redirect::Policy::none());
    }
    b.build()
        .map_err(|e| format!("hey: cannot build the HTTP client: {e}"))
}

async fn worker(
    client: &reqwest::Client,
    plan: &HeyPlan,
    ctx: &RunContext,
    share: u64,
    deadline: Instant,
) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let mut ticker = (plan.rate_per_worker > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate_per_worker));
        t.set_missed_tick_behavior(MissedTickBehavior::Skip);
        t
    });
    let deadline = tokio::time::Instant::from_std(deadline);
    while stats.requests < share {
        if let Some(t) = ticker.as_mut() {
            tokio::select! {
                _ = t.tick() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let mut req = client.request(plan.method.clone(), plan.url.clone());
        req = req.headers(plan.headers.clone());
        if let Some(body) = &plan.body {
            req = req.body(body.clone());
        }
        let t0 = Instant::now();
        let outcome = send(req).await;
        let latency = t0.elapsed();
        ctx.metrics
            .observe_request(&ctx.labels, "hey", &outcome.code, latency);
        stats.record(&outcome, latency);
    }
    stats
}

async fn send(req: reqwest::RequestBuilder) -> Outcome {
    let failed = |e: reqwest::Error| Outcome {
        code: "error".to_string(),
        is_error: true,
        message: Some(error_chain(&e)),
    };
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let status = resp.status();
    // Read the whole body, as hey does: latency is to the last byte.
    loop {
        match resp.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return failed(e),
        }
    }
    Outcome {
        code: status.as_u16().to_string(),
        is_error: !status.is_success(),
        message: None,
    }
}

/// An error and its causes on one line (reqwest's own message names only the URL).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(line: &str) -> Result<HeyPlan, String> {
        let words = crate::load::cmdline::split(line).unwrap().words;
        parse(
            &words[1..],
            &Limits {
                max_duration: Duration::from_secs(3600),
            },
        )
    }

    #[test]
    fn parses_flaggers_command_lines() {
        let p = plan("hey -z 1m -q 10 -c 2 -H 'Cookie: type=insider' -host app.example.com http://podinfo.test:9898/").unwrap();
        assert_eq!(p.amount, Amount::For(Duration::from_secs(60)));
        assert_eq!((p.workers, p.rate_per_worker), (2, 10.0));
        assert_eq!(p.headers["cookie"], "type=insider");
        assert_eq!(p.headers["host"], "app.example.com");
        assert_eq!(p.headers["content-type"], "text/html");
        assert_eq!(p.url.as_str(), "http://podinfo.test:9898/");
        let p = plan("hey -z 1m -q 10 -c 2 -m POST -d '{test: 2}' -T application/json http://podinfo-canary.test:9898/echo").unwrap();
        assert_eq!(p.method, Method::POST);
        assert_eq!(p.body.as_deref(), Some(&b"{test: 2}"[..]));
        assert_eq!(p.headers["content-type"], "application/json");
        let p = plan("hey -z 1m -q 10 -c 2 -h2 https://podinfo.example.com/").unwrap();
        assert!(p.h2);
        let p = plan("hey -n 10 -c 5 -disable-keepalive -a user:pass http://a/").unwrap();
        assert_eq!(p.amount, Amount::Requests(10));
        assert!(!p.keepalive);
        assert_eq!(p.headers["authorization"], "Basic dXNlcjpwYXNz");
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let err = |line: &str| plan(line).unwrap_err();
        assert!(err("hey -x http://proxy:1 http://a/").contains("unknown flag \"-x\""));
        assert!(err("hey -z 2h http://a/").contains("longer than --timeout"));
        assert!(err("hey -n 1 -c 2 http://a/").contains("-n cannot be less than -c"));
        assert!(err("hey -z 1s").contains("URL is missing"));
        assert!(err("hey -z 1s ftp://a/").contains("http://"));
        assert!(err("hey -z 1s -H nocolon http://a/").contains("Name: value"));
        assert!(err("hey -c 0 http://a/").contains("-c must be"));
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
