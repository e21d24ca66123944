//! The sample app as a process: version, injected errors and latency, runtime fault changes.

#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

struct App(Child, u16);
impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the app on a free port. Another test process may take the same port between the
/// choice and the bind (the app then exits, and a connection would reach the other process), so
/// the app counts as started only while it is still running after the port answers; else it is
/// started again on another port.
fn start(args: &[&str]) -> App {
    for _ in 0..3 {
        let port = siskin_e2e::free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_siskin-sample-app"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
                if child.try_wait().unwrap().is_none() {
                    return App(child, port);
                }
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("the sample app did not start on any of three ports");
}

fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out.split_once("\r\n\r\n").unwrap().1.to_string())
}

#[test]
fn version_errors_and_latency_follow_flags_and_runtime_changes() {
    let app = start(&["--version", "2.1.0", "--error-rate", "0.3"]);
    assert_eq!(request(app.1, "GET", "/healthz"), (200, "ok\n".into()));
    let failures = (0..1000)
        .filter(|_| request(app.1, "GET", "/").0 == 500)
        .count();
    assert!((250..=350).contains(&failures), "{failures} of 1000 at 30%");
    let (_, body) = request(app.1, "GET", "/version");
    assert!(
        body == "2.1.0\n" || body.contains("injected error"),
        "{body}"
    );
    assert_eq!(request(app.1, "GET", "/status/418").0, 418);
    assert_eq!(
        request(app.1, "PUT", "/admin/faults?error_rate=0&latency_ms=150").0,
        200
    );
    let t = Instant::now();
    let (status, body) = request(app.1, "GET", "/");
    assert_eq!(status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert!(body.contains("\"version\":\"2.1.0\""), "{body}");
    assert_eq!(
        request(app.1, "PUT", "/admin/faults?error_rate=3").0,
        400,
        "bad input is refused"
    );
    let metrics = request(app.1, "GET", "/metrics").1;
    assert!(
        metrics.contains("sample_requests_total{version=\"2.1.0\",status_class=\"5xx\"}"),
        "{metrics}"
    );
}

#[test]
fn bad_flags_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_siskin-sample-app"))
        .args(["--error-rate", "1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--error-rate must be between 0 and 1"));
}
