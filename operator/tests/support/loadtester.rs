//! The real `siskin-loadtester` for the end-to-end tests: its gates hold releases.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// `siskin-loadtester` from the same target folder, brought up to date first.
fn loadtester_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_siskin")).with_file_name("siskin-loadtester");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "siskin-loadtester"]);
    if path.parent().is_some_and(|p| p.ends_with("release")) {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().unwrap().success(),
        "cannot build siskin-loadtester"
    );
    path
}

/// The real load tester on a fixed loopback port, gates in `gates`.
pub struct LoadTester(Child);

impl LoadTester {
    pub async fn start(port: u16, gates: &Path) -> LoadTester {
        let child = Command::new(loadtester_binary())
            .args([
                "--address",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--log-format",
                "text",
            ])
            .arg("--gates-file")
            .arg(gates)
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the load tester does not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        LoadTester(child)
    }
}

impl Drop for LoadTester {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// POSTs `body` to the load tester as a user would with curl; returns the status.
pub async fn post(port: u16, path: &str, body: serde_json::Value) -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
