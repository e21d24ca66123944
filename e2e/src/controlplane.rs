//! Starting and stopping etcd and kube-apiserver on loopback.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, Config,
    api::{Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::json;

use crate::{Error, Result, certs, crds, io, kube_err, repo_root};

/// Namespace of the operator's ServiceAccount (the identity of the `as-operator` context).
pub const OPERATOR_NAMESPACE: &str = "siskin-system";
/// Name of the operator's ServiceAccount.
pub const OPERATOR_SERVICE_ACCOUNT: &str = "siskin";

/// A running control plane.
pub struct ControlPlane {
    /// Working folder: certificates, tokens, data, logs, kubeconfig.
    pub dir: PathBuf,
    /// Kubeconfig with contexts `envtest` (admin) and `as-operator`.
    pub kubeconfig: PathBuf,
    /// API server URL.
    pub server: String,
    /// Every process started, by name (`watchdog`, `etcd`, `kube-apiserver`).
    children: Mutex<Vec<(String, Child)>>,
    /// How kube-apiserver was started, to start it again after [`ControlPlane::restart_apiserver`].
    apiserver: Mutex<Option<(PathBuf, Vec<String>)>>,
    pids: PathBuf,
}

// === impl ControlPlane ===

impl ControlPlane {
    /// The control plane of this test binary, started on first use. Panics (failing the test
    /// loudly) when it cannot start: the tests never pass by skipping.
    pub fn shared() -> &'static ControlPlane {
        static PLANE: OnceLock<std::result::Result<ControlPlane, String>> = OnceLock::new();
        let plane = PLANE.get_or_init(|| {
            // Started on a thread of its own: it runs its own Tokio runtime for the setup
            // calls, which must not nest inside a test's runtime.
            std::thread::spawn(|| ControlPlane::start().map_err(|e| e.to_string()))
                .join()
                .unwrap_or_else(|_| Err("control plane setup panicked".to_string()))
        });
        match plane {
            Ok(p) => p,
            Err(e) => panic!("cannot start the test control plane: {e}"),
        }
    }

    /// Starts etcd and kube-apiserver, writes the kubeconfig, installs CRDs and waits until
    /// they are served. A start that fails (a process that exits, a port taken meanwhile, a
    /// server that never gets ready) is tried again from scratch, twice at most; the error
    /// carries the end of each component's log.
    pub fn start() -> Result<ControlPlane> {
        let mut failures = Vec::new();
        for attempt in 1..=3 {
            match Self::start_once() {
                Ok(plane) => return Ok(plane),
                Err(e) => {
                    eprintln!("[e2e] control plane start, attempt {attempt} of 3, failed: {e}");
                    failures.push(format!("attempt {attempt}: {e}"));
                }
            }
        }
        Err(Error::Setup(format!(
            "the control plane did not start in 3 attempts:\n{}",
            failures.join("\n")
        )))
    }

    fn start_once() -> Result<ControlPlane> {
        let bins = kube_bins()?;
        let dir = work_dir()?;
        eprintln!(
            "[e2e] control plane in {} (binaries {})",
            dir.display(),
            bins.display()
        );
        let pids = dir.join("pids");
        std::fs::write(&pids, "").map_err(io("write pid file"))?;
        let watchdog = watchdog(&dir, &pids)?;
        let mut plane = ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            server: String::new(),
            dir,
            children: Mutex::new(vec![("watchdog".to_string(), watchdog)]),
            apiserver: Mutex::new(None),
            pids: pids.clone(),
        };
        match plane.boot(&bins, &pids) {
            Ok(()) => {
                eprintln!("[e2e] control plane ready at {}", plane.server);
                Ok(plane)
            }
            // Dropping the plane stops what it started and removes its folder: keep the logs.
            Err(e) => Err(Error::Setup(format!("{e}{}", plane.log_tails()))),
        }
    }

    /// Certificates, etcd, kube-apiserver, kubeconfig, then the bootstrap objects.
    fn boot(&mut self, bins: &Path, pids: &Path) -> Result<()> {
        certs::write(&self.dir.join("pki"))?;
        let token = random_hex(16)?;
        let tokens = self.dir.join("tokens.csv");
        let groups = format!("system:serviceaccounts,system:serviceaccounts:{OPERATOR_NAMESPACE}");
        let line = format!(
            "{token},system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT},siskin-uid,\"{groups}\"\n"
        );
        std::fs::write(&tokens, line).map_err(io("write tokens.csv"))?;

        let (etcd_port, peer_port, api_port) =
            (crate::free_port(), crate::free_port(), crate::free_port());
        self.spawn(
            pids,
            "etcd",
            Command::new(bins.join("etcd")).args([
                "--name=siskin-test".to_string(),
                format!("--data-dir={}", self.dir.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=siskin-test=http://127.0.0.1:{peer_port}"),
                "--unsafe-no-fsync=true".to_string(),
                "--log-level=warn".to_string(),
            ]),
        )?;
        wait_for(
            Duration::from_secs(60),
            "etcd /health",
            || http_get(etcd_port, "/health").filter(|b| b.contains("\"health\":\"true\"")),
            || self.exited("etcd"),
        )?;

        let pki_dir = self.dir.join("pki");
        let p = |f: &str| pki_dir.join(f).display().to_string();
        let apiserver_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", tokens.display()),
            "--authorization-mode=RBAC".to_string(),
            format!("--service-account-issuer=https://127.0.0.1:{api_port}"),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/16".to_string(),
            "--allow-privileged=true".to_string(),
            "--disable-admission-plugins=ServiceAccount".to_string(),
            "--endpoint-reconciler-type=none".to_string(),
            "--enable-priority-and-fairness=false".to_string(),
            "--profiling=false".to_string(),
            "--v=1".to_string(),
        ];
        self.spawn(
            pids,
            "kube-apiserver",
            Command::new(bins.join("kube-apiserver")).args(&apiserver_args),
        )?;
        *self
            .apiserver
            .lock()
            .map_err(|_| Error::Setup("poisoned".into()))? =
            Some((bins.join("kube-apiserver"), apiserver_args));
        self.server = format!("https://127.0.0.1:{api_port}");
        write_kubeconfig(&self.kubeconfig, &self.server, &pki_dir, &token)?;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("start a Tokio runtime"))?;
        rt.block_on(self.bootstrap())?;
        Ok(())
    }

    /// The last lines of etcd's and kube-apiserver's logs, for an error message.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for name in ["etcd", "kube-apiserver"] {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!(
                "\n--- last lines of {name}.log ---\n{}",
                tail.join("\n")
            ));
        }
        out
    }

    fn spawn(&self, pids: &Path, name: &str, cmd: &mut Command) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .map_err(io(format!("open {name}.log")))?;
        let err = log.try_clone().map_err(io("clone log handle"))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io(format!("start {name}")))?;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(pids)
            .map_err(io("open pid file"))?;
        writeln!(f, "{}", child.id()).map_err(io("write pid file"))?;
        self.children
            .lock()
            .map_err(|_| Error::Setup("poisoned".into()))?
            .push((name.to_string(), child));
        Ok(())
    }

    /// The process id of the running component `name`.
    fn pid_of(&self, name: &str) -> Result<u32> {
        let children = self
            .children
            .lock()
            .map_err(|_| Error::Setup("poisoned".into()))?;
        children
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
            .ok_or_else(|| Error::Setup(format!("{name} is not running")))
    }

    /// How the newest process named `name` ended, if it has.
    fn exited(&self, name: &str) -> Option<String> {
        let mut children = self.children.lock().ok()?;
        let (_, child) = children.iter_mut().rev().find(|(n, _)| n == name)?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("{name} exited ({status})")),
            _ => None,
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`…) to component `name`.
    fn signal(&self, name: &str, signal: &str) -> Result<()> {
        let pid = self.pid_of(name)?;
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .map_err(io("run kill"))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Setup(format!(
                "kill -{signal} {name} ({pid}) failed"
            )))
        }
    }

    /// Freezes etcd (SIGSTOP): the API server stays up but every read and write stalls until
    /// [`ControlPlane::resume_etcd`].
    pub fn pause_etcd(&self) -> Result<()> {
        self.signal("etcd", "STOP")
    }

    /// Lets a paused etcd run again (SIGCONT).
    pub fn resume_etcd(&self) -> Result<()> {
        self.signal("etcd", "CONT")
    }

    /// Kills kube-apiserver (SIGKILL, as a crash would), keeps it down for `down`, starts it
    /// again with the same flags and port, and waits until it is ready. Clients see refused
    /// connections meanwhile and then a new server: their watches end and must be started again.
    pub async fn restart_apiserver(&self, down: Duration) -> Result<()> {
        let mut old = {
            let mut children = self
                .children
                .lock()
                .map_err(|_| Error::Setup("poisoned".into()))?;
            let at = children
                .iter()
                .rposition(|(n, _)| n == "kube-apiserver")
                .ok_or_else(|| Error::Setup("kube-apiserver is not running".into()))?;
            children.remove(at).1
        };
        let _ = old.kill();
        let _ = old.wait();
        tokio::time::sleep(down).await;
        let (program, args) = self
            .apiserver
            .lock()
            .map_err(|_| Error::Setup("poisoned".into()))?
            .clone()
            .ok_or_else(|| Error::Setup("kube-apiserver was never started".into()))?;
        self.spawn(
            &self.pids,
            "kube-apiserver",
            Command::new(program).args(&args),
        )?;
        self.wait_ready().await
    }

    async fn bootstrap(&self) -> Result<()> {
        self.wait_ready().await?;
        let client = self.client().await?;
        self.after_ready(client).await
    }

    /// Waits until kube-apiserver answers `/readyz` with `ok` (90 s at most).
    async fn wait_ready(&self) -> Result<()> {
        let client = self.client().await?;
        let started = Instant::now();
        let mut saw;
        loop {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| Error::Setup(e.to_string()))?;
            match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => break,
                Ok(body) => saw = body,
                Err(e) => saw = e.to_string(),
            }
            if let Some(how) = self.exited("kube-apiserver") {
                return Err(Error::Setup(format!(
                    "{how} before it was ready; last seen: {saw}"
                )));
            }
            if started.elapsed() > Duration::from_secs(90) {
                return Err(Error::Timeout {
                    what: "kube-apiserver /readyz".into(),
                    secs: 90,
                    saw: format!(
                        "{saw}; see {}",
                        self.dir.join("kube-apiserver.log").display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(())
    }

    async fn after_ready(&self, client: Client) -> Result<()> {
        // envtest also waits for the default namespace: it proves the bootstrap controllers ran.
        let ns: Api<Namespace> = Api::all(client.clone());
        crate::controlplane::poll(Duration::from_secs(30), "namespace default", || {
            let ns = ns.clone();
            async move { ns.get_opt("default").await.ok().flatten().map(|_| ()) }
        })
        .await?;
        crds::install(&client).await?;
        let pp = PatchParams::apply("siskin-e2e").force();
        ns.patch(
            OPERATOR_NAMESPACE,
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}
            })),
        )
        .await
        .map_err(kube_err("create the operator namespace"))?;
        let sa: Api<ServiceAccount> = Api::namespaced(client, OPERATOR_NAMESPACE);
        sa.patch(
            OPERATOR_SERVICE_ACCOUNT,
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": OPERATOR_SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE}
            })),
        )
        .await
        .map_err(kube_err("create the operator service account"))?;
        Ok(())
    }

    /// A client with the admin context (`system:masters`).
    pub async fn client(&self) -> Result<Client> {
        self.client_for("envtest").await
    }

    /// A client acting as the operator's ServiceAccount (RBAC applies).
    pub async fn operator_client(&self) -> Result<Client> {
        self.client_for("as-operator").await
    }

    async fn client_for(&self, context: &str) -> Result<Client> {
        let kc = Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|e| Error::Setup(format!("read kubeconfig: {e}")))?;
        let opts = KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        };
        let cfg = Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| Error::Setup(format!("kubeconfig context {context}: {e}")))?;
        Client::try_from(cfg).map_err(kube_err("build a client"))
    }

    /// Stops everything this plane started (also done by the watchdog when the test binary exits).
    pub fn stop(&self) {
        if let Ok(mut children) = self.children.lock() {
            for (_, c) in children.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            children.clear();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `f` every 200 ms until it yields a value or `limit` passes.
pub async fn poll<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if started.elapsed() > limit {
            return Err(Error::Timeout {
                what: what.to_string(),
                secs: limit.as_secs(),
                saw: "nothing".to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The folder with `etcd` and `kube-apiserver`: `SISKIN_KUBE_BINS`, else built (or reused from
/// the cache) by `e2e/controlplane/build.sh`.
fn kube_bins() -> Result<PathBuf> {
    let dir = match std::env::var_os("SISKIN_KUBE_BINS") {
        Some(d) => PathBuf::from(d),
        None => {
            let script = repo_root().join("e2e/controlplane/build.sh");
            eprintln!(
                "[e2e] SISKIN_KUBE_BINS is not set; running {}",
                script.display()
            );
            let out = Command::new(&script)
                .stderr(Stdio::inherit())
                .output()
                .map_err(io(format!("run {}", script.display())))?;
            if !out.status.success() {
                return Err(Error::Setup(format!("{} failed", script.display())));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            PathBuf::from(text.lines().last().unwrap_or_default().trim())
        }
    };
    for bin in ["etcd", "kube-apiserver"] {
        if !dir.join(bin).is_file() {
            return Err(Error::Setup(format!(
                "{} is missing: run e2e/controlplane/build.sh (or set SISKIN_KUBE_BINS)",
                dir.join(bin).display()
            )));
        }
    }
    Ok(dir)
}

fn work_dir() -> Result<PathBuf> {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "siskin-cp-{}-{}",
        std::process::id(),
        random_hex(4)?
    ));
    std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    Ok(dir)
}

/// A process that waits for this test binary to exit, then stops every PID listed in `pids`
/// (TERM, then KILL) and removes the folder. It covers panics, aborts and SIGKILL.
fn watchdog(dir: &Path, pids: &Path) -> Result<Child> {
    let script = r#"
parent=$1; pids=$2; dir=$3
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
for p in $(cat "$pids"); do kill -TERM "$p" 2>/dev/null; done
sleep 2
for p in $(cat "$pids"); do kill -KILL "$p" 2>/dev/null; done
rm -rf "$dir"
"#;
    Command::new("sh")
        .args(["-c", script, "siskin-e2e-watchdog"])
        .arg(std::process::id().to_string())
        .arg(pids)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("start the watchdog"))
}

fn write_kubeconfig(path: &Path, server: &str, pki: &Path, token: &str) -> Result<()> {
    let p = |f: &str| pki.join(f).display().to_string();
    let kc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": {"server": server, "certificate-authority": p("ca.crt")}}],
        "users": [
            {"name": "test-admin", "user": {"client-certificate": p("admin.crt"), "client-key": p("admin.key")}},
            {"name": "siskin-operator", "user": {"token": token}},
        ],
        "contexts": [
            {"name": "envtest", "context": {"cluster": "envtest", "user": "test-admin"}},
            {"name": "as-operator", "context": {"cluster": "envtest", "user": "siskin-operator"}},
        ],
        "current-context": "envtest",
    });
    let text = serde_yaml::to_string(&kc).map_err(|e| Error::Setup(e.to_string()))?;
    std::fs::write(path, text).map_err(io("write kubeconfig"))
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io("read /dev/urandom"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A plain HTTP/1.0 GET on loopback; the body, or None.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn wait_for(
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<String>,
    mut gone: impl FnMut() -> Option<String>,
) -> Result<String> {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if let Some(how) = gone() {
            return Err(Error::Setup(format!("waiting for {what}: {how}")));
        }
        if started.elapsed() > limit {
            return Err(Error::Timeout {
                what: what.to_string(),
                secs: limit.as_secs(),
                saw: "no answer".to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
