//! Starting the real `siskin-loadtester` binary on loopback and talking to it over HTTP.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::{Value, json};

/// A running load tester; killed when dropped.
pub struct Tester {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    client: reqwest::Client,
}

/// A reply: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

impl Tester {
    /// Starts the binary with `args` (plus `--port=0 --address=127.0.0.1`), waits until it
    /// listens and returns its address; panics with its output when it exits instead.
    pub fn start(args: &[&str]) -> Tester {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Tester {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_siskin-loadtester"));
        cmd.args([
            "--port=0",
            "--address=127.0.0.1",
            "--log-format=json",
            "--log-level=info",
        ])
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start siskin-loadtester");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[loadtester] {line}");
                if !sent
                    && let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["fields"]["message"] == "siskin-loadtester listening"
                {
                    let _ = tx.send(v["fields"]["addr"].as_str().unwrap_or_default().to_string());
                    sent = true;
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Tester {
                child,
                base: format!("http://{addr}"),
                client: client(),
            },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!(
                    "siskin-loadtester {args:?} did not start listening within 30s (exit: {status})"
                );
            }
        }
    }

    /// Runs the binary to its end (for flag errors); returns exit success and stderr.
    pub fn run_to_end(args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_siskin-loadtester"))
            .args(args)
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("HOME", "/nonexistent")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub async fn post(&self, path: &str, body: impl Into<String>) -> Reply {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.into())
            .send()
            .await
            .unwrap();
        Reply {
            status: resp.status().as_u16(),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        Reply {
            status: resp.status().as_u16(),
            body: resp.text().await.unwrap(),
        }
    }

    /// POSTs a task with this metadata for canary test/podinfo.
    pub async fn task(&self, metadata: Value) -> Reply {
        self.post("/", payload("test", "podinfo", None, Some(metadata)))
            .await
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tester {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A webhook payload as Flagger (no `type`) or Siskin (`type`) sends it.
pub fn payload(
    namespace: &str,
    name: &str,
    hook_type: Option<&str>,
    metadata: Option<Value>,
) -> String {
    let mut v =
        json!({"name": name, "namespace": namespace, "phase": "Progressing", "checksum": "abc"});
    if let Some(t) = hook_type {
        v["type"] = json!(t);
    }
    if let Some(m) = metadata {
        v["metadata"] = m;
    }
    v.to_string()
}
