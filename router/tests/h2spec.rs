//! The HTTP/2 conformance suite h2spec (strict mode, every case) against the real router's h2c
//! and TLS listeners. h2spec comes from `scripts/tools.sh` (SISKIN_H2SPEC).
//!
//! Every case passes on TLS, where ALPN says h2 before a byte of HTTP is sent. On cleartext one
//! case is expected to fail, and is the only one allowed to: §3.5 "Sends invalid connection
//! preface". HTTP/1.1 and h2c share the port, so bytes that are not the HTTP/2 preface are read
//! as an HTTP/1.1 request and answered as one (400), where h2spec wants the connection closed
//! without a reply.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use rcgen::{CertificateParams, KeyPair};
use support::{RouterProcess, TempDir, Upstream, free_port, one_route};

/// Runs h2spec; returns (cases run, titles of the failed cases). The path answers with a body
/// of more than 5 bytes (the upstream echoes it), which the negative-window case needs to run
/// rather than be skipped.
fn h2spec(args: &[&str]) -> (usize, Vec<String>) {
    let bin = std::env::var("SISKIN_H2SPEC").unwrap_or_else(|_| {
        panic!("SISKIN_H2SPEC is not set: run scripts/tools.sh (scripts/test-all.sh does) and export its output")
    });
    let out = Command::new(&bin)
        .args(["-S", "-o", "3", "-P", "/h2spec"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = text
        .lines()
        .rev()
        .find(|l| l.contains(" tests, "))
        .unwrap_or_else(|| panic!("no summary from h2spec:\n{text}"));
    let total = summary.split(' ').next().unwrap().parse().unwrap();
    let failures = text
        .split_once("\nFailures:")
        .map(|(_, f)| {
            f.lines()
                .filter_map(|l| l.trim().strip_prefix("× "))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    eprintln!("h2spec {args:?}: {summary}");
    if let Some((_, failed)) = text.split_once("\nFailures:") {
        eprintln!("h2spec {args:?} failures, as h2spec describes them:{failed}");
    }
    assert!(
        summary.contains(" 0 skipped"),
        "no case may be skipped: {summary}"
    );
    (total, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2spec_on_the_h2c_and_tls_listeners() {
    let up = Upstream::start("up", false).await;
    let dir = TempDir(std::env::temp_dir().join(format!("siskin-h2spec-{}", free_port())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (crt, k) = (dir.0.join("tls.crt"), dir.0.join("tls.key"));
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let tls_port = free_port();
    let config = one_route(up.port);
    let router = RouterProcess::start_with(
        &config,
        &[
            "--tls-listen",
            &format!("127.0.0.1:{tls_port}"),
            "--tls-certificate",
            &format!("{},{}", crt.display(), k.display()),
        ],
    )
    .await;
    let port = router.port.to_string();
    let tls = tls_port.to_string();
    let (cleartext, tls_run) = tokio::task::spawn_blocking(move || {
        (
            h2spec(&["-h", "127.0.0.1", "-p", &port]),
            h2spec(&["-h", "localhost", "-p", &tls, "-t", "-k"]),
        )
    })
    .await
    .unwrap();
    assert!(cleartext.0 >= 146, "h2spec ran {} cases", cleartext.0);
    assert_eq!(
        cleartext.1,
        vec!["2: Sends invalid connection preface".to_string()],
        "h2c: only the shared-port preface case may fail"
    );
    assert!(tls_run.0 >= 146, "h2spec ran {} cases", tls_run.0);
    assert!(tls_run.1.is_empty(), "TLS failures: {:?}", tls_run.1);
    assert!(
        router.admin_get("/readyz").await.is_some(),
        "the router is still up"
    );
}
