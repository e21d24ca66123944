//! The in-process `ghz` for the one call whose schema every gRPC server shares:
//! `grpc.health.v1.Health/Check`. gRPC is spoken over HTTP/2 cleartext (`--insecure`) with
//! hyper's h2 client: `POST /grpc.health.v1.Health/Check`, a 5-byte length-prefixed message,
//! `grpc-status` read from the trailers. A health answer other than SERVING counts as an error,
//! as `grpc_health_probe` counts it.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{
    Amount, Limits, RunContext, Workers,
    flags::{self, Flag},
    stats::{Outcome, Summary, WorkerStats},
};

const FLAGS: &[Flag] = &[
    Flag {
        names: &["insecure"],
        boolean: true,
    },
    Flag {
        names: &["proto"],
        boolean: false,
    },
    Flag {
        names: &["protoset"],
        boolean: false,
    },
    Flag {
        names: &["call"],
        boolean: false,
    },
    Flag {
        names: &["i", "import-paths"],
        boolean: false,
    },
    Flag {
        names: &["d", "data"],
        boolean: false,
    },
    Flag {
        names: &["D", "data-file"],
        boolean: false,
    },
    Flag {
        names: &["z", "duration"],
        boolean: false,
    },
    Flag {
        names: &["n", "total"],
        boolean: false,
    },
    Flag {
        names: &["c", "concurrency"],
        boolean: false,
    },
    Flag {
        names: &["q", "rps"],
        boolean: false,
    },
    Flag {
        names: &["connect-timeout"],
        boolean: false,
    },
    Flag {
        names: &["t", "timeout"],
        boolean: false,
    },
    Flag {
        names: &["m", "metadata"],
        boolean: false,
    },
    Flag {
        names: &["connections"],
        boolean: false,
    },
];

/// The call the in-process ghz can encode, in both of ghz's spellings.
const HEALTH_CALLS: &[&str] = &["grpc.health.v1.Health/Check", "grpc.health.v1.Health.Check"];
const HEALTH_PATH: &str = "/grpc.health.v1.Health/Check";
const MAX_WORKERS: usize = 1000;

/// Why a ghz command does not run in-process.
#[derive(Debug, PartialEq)]
pub enum GhzError {
    /// The command is wrong (unknown flag, bad value): a 400.
    Invalid(String),
    /// The command is fine but needs the real ghz (another call, TLS): runs as a process with
    /// `--enable-exec`, else a 400 with this explanation.
    NeedsBinary(String),
}

/// A parsed `ghz` health-check command.
#[derive(Debug, Clone)]
pub struct GhzPlan {
    /// `host:port`.
    pub target: String,
    /// The `service` field of the HealthCheckRequest (`-d '{"service":"..."}'`).
    pub service: String,
    /// `-m`: request metadata.
    pub metadata: HeaderMap,
    /// `-z` or `-n`.
    pub amount: Amount,
    /// `-c`.
    pub workers: usize,
    /// `-q`: requests per second over all workers (0: no limit).
    pub rate: f64,
    /// `--connect-timeout`.
    pub connect_timeout: Duration,
    /// `-t`: per call.
    pub call_timeout: Duration,
    /// `--connections`.
    pub connections: usize,
}

/// Parses `ghz`'s arguments (without the program name).
pub fn parse(args: &[String], limits: &Limits) -> Result<GhzPlan, GhzError> {
    let call = find_call(args);
    match call.as_deref() {
        Some(c) if HEALTH_CALLS.contains(&c) => {}
        Some(c) => {
            return Err(GhzError::NeedsBinary(format!(
                "ghz --call {c}: only grpc.health.v1.Health/Check runs in-process (its schema is \
                 built in); other calls need the real ghz: start siskin-loadtester with \
                 --enable-exec and a ghz binary on PATH"
            )));
        }
        None => {
            return Err(GhzError::NeedsBinary(
                "ghz without --call: the in-process ghz runs --call grpc.health.v1.Health/Check; \
                 other calls (or reflection) need the real ghz: start siskin-loadtester with \
                 --enable-exec and a ghz binary on PATH"
                    .to_string(),
            ));
        }
    }
    let invalid = GhzError::Invalid;
    let p = flags::parse("ghz", FLAGS, args, true).map_err(invalid)?;
    if !p.is_set("insecure") {
        return Err(GhzError::NeedsBinary(
            "ghz without --insecure: the in-process ghz speaks plaintext gRPC (HTTP/2 cleartext) \
             only; TLS needs the real ghz: start siskin-loadtester with --enable-exec and a ghz \
             binary on PATH"
                .to_string(),
        ));
    }
    let target = match p.positional.as_slice() {
        [t] => t.clone(),
        [] => return Err(invalid("ghz: the host:port to call is missing".to_string())),
        [_, extra, ..] => return Err(invalid(format!("ghz: unexpected argument {extra:?}"))),
    };
    if target
        .rsplit_once(':')
        .is_none_or(|(_, port)| port.parse::<u16>().is_err())
    {
        return Err(invalid(format!("ghz: target {target:?} must be host:port")));
    }
    let workers: usize = p.number("ghz", "c", 50).map_err(invalid)?;
    if workers == 0 || workers > MAX_WORKERS {
        return Err(invalid(format!(
            "ghz: -c must be between 1 and {MAX_WORKERS}"
        )));
    }
    let amount = match p.last("z") {
        Some(z) => {
            let d = crate::duration::parse(z).map_err(|e| invalid(format!("ghz: -z: {e}")))?;
            if d.is_zero() {
                return Err(invalid("ghz: -z must be longer than 0".to_string()));
            }
            limits.check_duration("ghz -z", d).map_err(invalid)?;
            Amount::For(d)
        }
        None => {
            let n: u64 = p.number("ghz", "n", 200).map_err(invalid)?;
            if n < workers as u64 {
                return Err(invalid("ghz: -n cannot be less than -c".to_string()));
            }
            Amount::Requests(n)
        }
    };
    let rate: f64 = p.number("ghz", "q", 0.0).map_err(invalid)?;
    if !rate.is_finite() || rate < 0.0 {
        return Err(invalid("ghz: -q must be 0 (no limit) or more".to_string()));
    }
    let data = match (p.last("D"), p.last("d")) {
        (Some(file), _) => {
            std::fs::read_to_string(file).map_err(|e| invalid(format!("ghz: -D {file}: {e}")))?
        }
        (None, Some(d)) => d.to_string(),
        (None, None) => "{}".to_string(),
    };
    let duration_flag = |name: &str, default: u64| -> Result<Duration, GhzError> {
        match p.last(name) {
            None => Ok(Duration::from_secs(default)),
            Some(v) => {
                crate::duration::parse(v).map_err(|e| invalid(format!("ghz: --{name}: {e}")))
            }
        }
    };
    let connections: usize = p.number("ghz", "connections", 1).map_err(invalid)?;
    if connections == 0 || connections > workers {
        return Err(invalid(
            "ghz: --connections must be between 1 and -c".to_string(),
        ));
    }
    Ok(GhzPlan {
        target,
        service: health_service(&data).map_err(invalid)?,
        metadata: metadata(p.last("m")).map_err(invalid)?,
        amount,
        workers,
        rate,
        connect_timeout: duration_flag("connect-timeout", 10)?,
        call_timeout: duration_flag("t", 20)?,
        connections,
    })
}

/// `--call`'s value, found before full parsing so that a call the in-process ghz does not know
/// is reported as such rather than as an unknown flag.
fn find_call(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a
            .strip_prefix("--call=")
            .or_else(|| a.strip_prefix("-call="))
        {
            return Some(v.to_string());
        }
        if a == "--call" || a == "-call" {
            return it.next().cloned();
        }
    }
    None
}

fn health_service(data: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(data).map_err(|e| format!("ghz: -d is not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("ghz: -d must be a JSON object such as {\"service\":\"\"}")?;
    if let Some(k) = obj.keys().find(|k| *k != "service") {
        return Err(format!(
            "ghz: -d: HealthCheckRequest has no field {k:?} (its only field is \"service\")"
        ));
    }
    match obj.get("service") {
        None => Ok(String::new()),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err("ghz: -d: \"service\" must be a string".to_string()),
    }
}

fn metadata(json: Option<&str>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    let Some(json) = json else {
        return Ok(headers);
    };
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| format!("ghz: -m must be a JSON object: {e}"))?;
    for (k, v) in v {
        let value = v
            .as_str()
            .ok_or_else(|| format!("ghz: -m: value of {k:?} must be a string"))?;
        let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("ghz: -m: invalid metadata key {k:?}"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("ghz: -m: invalid value of {k:?}"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The length-prefixed gRPC message for `HealthCheckRequest { string service = 1; }`.
pub fn health_request(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a); // field 1, wire type 2 (length-delimited)
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + msg.len());
    frame.put_u8(0); // not compressed
    frame.put_u32(msg.len() as u32);
    frame.put_slice(&msg);
    frame.freeze()
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The `status` of a `HealthCheckResponse { ServingStatus status = 1; }` message (without the
/// 5-byte prefix); fields it does not know are skipped. An absent status is 0 (UNKNOWN).
pub fn health_status(msg: &[u8]) -> Option<u64> {
    let mut pos = 0;
    let mut status = 0;
    while pos < msg.len() {
        let key = varint(msg, &mut pos)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = varint(msg, &mut pos)?,
            (_, 0) => {
                varint(msg, &mut pos)?;
            }
            (_, 1) => pos += 8,
            (_, 2) => {
                let len = usize::try_from(varint(msg, &mut pos)?).ok()?;
                pos += len;
            }
            (_, 5) => pos += 4,
            _ => return None,
        }
    }
    (pos == msg.len()).then_some(status)
}

fn health_status_name(status: u64) -> &'static str {
    match status {
        1 => "OK",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

/// gRPC status code names (the code is the index).
const GRPC_CODES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A `grpc-message` as sent: percent-encoded UTF-8 (the gRPC HTTP/2 protocol); a `%` not
/// followed by two hex digits is kept as it is.
fn percent_decode(raw: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One HTTP/2 connection, made on first use and again after it closes.
#[derive(Default)]
struct Connection {
    sender: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

/// Paces all workers together to `rate` requests per second.
struct Pace {
    every: Duration,
    next: Mutex<Instant>,
}

/// Runs the plan and returns its results.
pub async fn run(plan: GhzPlan, ctx: RunContext) -> Result<Summary, String> {
    let started_at = jiff::Timestamp::now();
    let started = Instant::now();
    let hard_stop = started + ctx.limit;
    let connections: Arc<Vec<Connection>> = Arc::new(
        (0..plan.connections)
            .map(|_| Connection::default())
            .collect(),
    );
    let pace = (plan.rate > 0.0).then(|| {
        Arc::new(Pace {
            every: Duration::from_secs_f64(1.0 / plan.rate),
            next: Mutex::new(started),
        })
    });
    let frame = health_request(&plan.service);
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
        let worker = Worker {
            plan: plan.clone(),
            ctx: ctx.clone(),
            connections: connections.clone(),
            connection: w % plan.connections,
            pace: pace.clone(),
            frame: frame.clone(),
        };
        handles.spawn(async move { worker.run(share, deadline).await });
    }
    let mut total = WorkerStats::default();
    for stats in handles
        .join()
        .await
        .map_err(|e| format!("ghz worker failed: {e}"))?
    {
        total.merge(&stats);
    }
    Ok(total.summary(
        "ghz",
        &ctx.command,
        &plan.target,
        started_at,
        started.elapsed(),
    ))
}

struct Worker {
    plan: GhzPlan,
    ctx: RunContext,
    connections: Arc<Vec<Connection>>,
    connection: usize,
    pace: Option<Arc<Pace>>,
    frame: Bytes,
}

// === impl Worker ===

impl Worker {
    async fn run(self, share: u64, deadline: Instant) -> WorkerStats {
        let mut stats = WorkerStats::default();
        let deadline = tokio::time::Instant::from_std(deadline);
        while stats.requests < share {
            if let Some(pace) = &self.pace {
                let slot = pace.reserve();
                if tokio::time::Instant::from_std(slot) >= deadline {
                    break;
                }
                tokio::time::sleep_until(tokio::time::Instant::from_std(slot)).await;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            let t0 = Instant::now();
            let outcome = self.call().await;
            let latency = t0.elapsed();
            self.ctx
                .metrics
                .observe_request(&self.ctx.labels, "ghz", &outcome.code, latency);
            stats.record(&outcome, latency);
        }
        stats
    }

    async fn call(&self) -> Outcome {
        let failed = |message: String| Outcome {
            code: "error".to_string(),
            is_error: true,
            message: Some(message),
        };
        let mut sender = match self.sender().await {
            Ok(s) => s,
            Err(e) => return failed(e),
        };
        let mut req = http::Request::post(format!("http://{}{HEALTH_PATH}", self.plan.target))
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers")
            .header(header::USER_AGENT, "siskin-loadtester (ghz)")
            .header(
                "grpc-timeout",
                format!("{}m", self.plan.call_timeout.as_millis().max(1)),
            );
        if let Some(h) = req.headers_mut() {
            h.extend(self.plan.metadata.clone());
        }
        let req = match req.body(Full::new(self.frame.clone())) {
            Ok(r) => r,
            Err(e) => return failed(format!("building the request: {e}")),
        };
        let exchange = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| super::hey::error_chain(&e))?;
            let (parts, body) = resp.into_parts();
            let collected = body
                .collect()
                .await
                .map_err(|e| super::hey::error_chain(&e))?;
            Ok::<_, String>((parts, collected))
        };
        let (parts, collected) = match tokio::time::timeout(self.plan.call_timeout, exchange).await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return failed(e),
            Err(_) => {
                return Outcome {
                    code: "DEADLINE_EXCEEDED".to_string(),
                    is_error: true,
                    message: Some(format!("no answer within {:?}", self.plan.call_timeout)),
                };
            }
        };
        if parts.status != http::StatusCode::OK {
            return failed(format!("HTTP status {} (not a gRPC server?)", parts.status));
        }
        let trailers = collected.trailers().cloned().unwrap_or_default();
        // A Trailers-Only answer carries grpc-status in the headers.
        let status = trailers
            .get("grpc-status")
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let Some(code) = status else {
            return failed("the answer has no grpc-status".to_string());
        };
        if code != 0 {
            let message = trailers
                .get("grpc-message")
                .or_else(|| parts.headers.get("grpc-message"))
                .map(|v| percent_decode(v.as_bytes()))
                .map(|m| format!("{}: {m}", GRPC_CODES.get(code).unwrap_or(&"UNKNOWN")));
            return Outcome {
                code: GRPC_CODES.get(code).unwrap_or(&"UNKNOWN").to_string(),
                is_error: true,
                message,
            };
        }
        let data = collected.to_bytes();
        let serving = data
            .get(5..)
            .filter(|_| data[0] == 0)
            .and_then(health_status);
        match serving {
            Some(1) => Outcome {
                code: "OK".to_string(),
                is_error: false,
                message: None,
            },
            Some(s) => Outcome {
                code: health_status_name(s).to_string(),
                is_error: true,
                message: None,
            },
            None => failed("cannot decode the HealthCheckResponse".to_string()),
        }
    }

    /// The connection's sender, connecting first when there is none or it closed.
    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let conn = &self.connections[self.connection];
        let mut slot = conn.sender.lock().await;
        if let Some(s) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        let target = &self.plan.target;
        let stream = tokio::time::timeout(
            self.plan.connect_timeout,
            tokio::net::TcpStream::connect(target),
        )
        .await
        .map_err(|_| format!("connect to {target}: timed out"))?
        .map_err(|e| format!("connect to {target}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| {
                    format!(
                        "HTTP/2 handshake with {target}: {}",
                        super::hey::error_chain(&e)
                    )
                })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "gRPC connection ended");
            }
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }
}

// === impl Pace ===

impl Pace {
    /// The next free send slot (at least now).
    fn reserve(&self) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let slot = (*next).max(Instant::now());
        *next = slot + self.every;
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(line: &str) -> Result<GhzPlan, GhzError> {
        let words = crate::load::cmdline::split(line).unwrap().words;
        parse(
            &words[1..],
            &Limits {
                max_duration: Duration::from_secs(3600),
            },
        )
    }

    #[test]
    fn parses_the_health_check() {
        let p = plan("ghz --insecure --proto=/tmp/ghz/health.proto --call=grpc.health.v1.Health/Check podinfo.test:9898").unwrap();
        assert_eq!(p.target, "podinfo.test:9898");
        assert_eq!(p.service, "");
        assert_eq!(p.amount, Amount::Requests(200));
        let p = plan(r#"ghz -z 2s -q 10 -c 2 --insecure --call grpc.health.v1.Health.Check -d '{"service":"web"}' -m '{"X-Team":"a"}' --connect-timeout 1s 127.0.0.1:9000"#).unwrap();
        assert_eq!(p.service, "web");
        assert_eq!(p.amount, Amount::For(Duration::from_secs(2)));
        assert_eq!((p.workers, p.rate), (2, 10.0));
        assert_eq!(p.metadata["x-team"], "a");
        assert_eq!(p.connect_timeout, Duration::from_secs(1));
    }

    #[test]
    fn other_calls_and_tls_need_the_binary() {
        for line in [
            "ghz -z 1m -q 10 -c 2 --insecure podinfo.test:9898",
            "ghz --insecure --call helloworld.Greeter/SayHello -d '{}' a:1",
            "ghz --call grpc.health.v1.Health/Check a:1",
        ] {
            assert!(
                matches!(plan(line), Err(GhzError::NeedsBinary(_))),
                "{line}"
            );
        }
        let Err(GhzError::NeedsBinary(why)) = plan("ghz --insecure --call x.Y/Z a:1") else {
            panic!()
        };
        assert!(
            why.contains("--enable-exec") && why.contains("ghz binary on PATH"),
            "{why}"
        );
    }

    #[test]
    fn refuses_bad_commands() {
        let invalid = |line: &str| match plan(line) {
            Err(GhzError::Invalid(e)) => e,
            other => panic!("{line}: {other:?}"),
        };
        let call = "--insecure --call grpc.health.v1.Health/Check";
        assert!(invalid(&format!("ghz {call} --bogus 1 a:1")).contains("unknown flag \"--bogus\""));
        assert!(invalid(&format!("ghz {call} -d '{{\"x\":1}}' a:1")).contains("no field \"x\""));
        assert!(invalid(&format!("ghz {call} -z 3h a:1")).contains("longer than --timeout"));
        assert!(invalid(&format!("ghz {call} a")).contains("host:port"));
        assert!(invalid(&format!("ghz {call}")).contains("missing"));
    }

    #[test]
    fn encodes_and_decodes_health_messages() {
        assert_eq!(&health_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &health_request("ab")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']
        );
        assert_eq!(health_status(&[0x08, 0x01]), Some(1));
        assert_eq!(health_status(&[0x08, 0x02]), Some(2));
        assert_eq!(health_status(&[]), Some(0));
        // an unknown length-delimited field 2 is skipped
        assert_eq!(health_status(&[0x12, 0x01, b'x', 0x08, 0x01]), Some(1));
        assert_eq!(health_status(&[0x08]), None);
    }

    #[test]
    fn decodes_grpc_messages() {
        assert_eq!(
            percent_decode(b"service%20not%20registered"),
            "service not registered"
        );
        assert_eq!(percent_decode(b"caf%C3%A9 100%"), "caf\u{e9} 100%");
        assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
    }
}
