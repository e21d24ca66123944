//! The driver's seams for `siskin run`: workloads are lists of upstreams (addresses, or commands
//! Siskin starts), routing is the in-process router's configuration file, the status is a file
//! beside the standalone file, events and alerts are printed.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use siskin_api::CanaryStatus;
use siskin_driver::{
    Error, Events, Notification, Notifier, Platform, RoutingIntent, StatusStore, Traffic, Workloads,
};
use siskin_engine::{Event, EventType, Readiness, RouteState, Scale, Workload};
use siskin_route::ConfigReport;

use super::{
    processes::{Processes, Recorded},
    routes::{self, Sides},
    spec::{StandaloneFile, Upstream},
};

/// What is persisted next to the file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Persisted {
    /// The engine's status.
    pub status: CanaryStatus,
    /// Upstreams serving as the primary (the file's `primary` until a promotion).
    pub primary: Vec<Upstream>,
    /// Whether the canary's upstreams should run (false after promotion or rollback).
    #[serde(default = "yes")]
    pub canary_up: bool,
    /// Routing was handed back to the file's `canary` upstreams (`--revert`): no primary.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverted: bool,
    /// Processes started for upstreams with a `command`, adopted after a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<Recorded>,
}

fn yes() -> bool {
    true
}

/// What the run reports as it goes.
#[derive(Clone, Debug)]
pub enum Report {
    /// A Kubernetes-style event of the engine.
    Event {
        /// Warning rather than normal.
        warning: bool,
        /// Short reason (`NewRevision`, `Promoted`, `Rollback`, ...).
        reason: String,
        /// What happened.
        message: String,
    },
    /// Anything else worth a line (phase changes, processes, fast failure).
    Line(String),
}

/// Where reports go.
#[derive(Clone, Debug)]
pub enum Output {
    /// Printed on standard output.
    Print,
    /// Sent to a channel (the demo's live view).
    Channel(tokio::sync::mpsc::UnboundedSender<Report>),
}

struct State {
    file: StandaloneFile,
    persisted: Persisted,
    procs: Processes,
    /// Modification time of the file as last read.
    seen: Option<SystemTime>,
}

/// One standalone file's world.
pub struct FileWorld {
    state: Mutex<State>,
    output: Output,
    file_path: PathBuf,
    state_path: PathBuf,
    routes_path: PathBuf,
    canary_override: Vec<Upstream>,
    admin: String,
    http: Client<HttpConnector, Empty<Bytes>>,
}

/// The path of a file beside `path`: `<stem>.<what>.yaml`.
pub fn sidecar(path: &Path, what: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}.{what}.yaml"))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}

/// Identity of a list of upstreams: the addresses, and for processes the command too.
pub fn revision(list: &[Upstream]) -> String {
    let key: Vec<String> = list
        .iter()
        .map(|u| match u {
            Upstream::Address(a) => a.clone(),
            Upstream::Process(p) => format!(
                "{}|{}|{}|{}",
                p.address,
                p.command.join(" "),
                p.env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                p.dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            ),
        })
        .collect();
    let digest = Sha256::digest(key.join(",").as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn addresses(list: &[Upstream]) -> Vec<String> {
    list.iter().map(|u| u.address().to_string()).collect()
}

/// Ready when every upstream runs and accepts a connection (checked without blocking).
async fn readiness(list: &[(Upstream, bool)]) -> Readiness {
    let mut up = 0;
    for (u, running) in list {
        let Ok(addr) = u.address().parse::<std::net::SocketAddr>() else {
            continue;
        };
        let connect = tokio::net::TcpStream::connect(addr);
        if *running
            && matches!(
                tokio::time::timeout(Duration::from_millis(300), connect).await,
                Ok(Ok(_))
            )
        {
            up += 1;
        }
    }
    if up == list.len() {
        Readiness::Ready
    } else {
        Readiness::NotReady(format!("{up} of {} endpoints answer", list.len()))
    }
}

// === impl State ===

impl State {
    fn primary_list(&self) -> &[Upstream] {
        if self.persisted.reverted {
            &[]
        } else if self.persisted.primary.is_empty() {
            &self.file.primary
        } else {
            &self.persisted.primary
        }
    }

    fn sides(&self) -> Sides {
        Sides {
            primary: addresses(self.primary_list()),
            canary: addresses(&self.file.canary),
        }
    }
}

// === impl FileWorld ===

impl FileWorld {
    /// The world of the file at `path` (already loaded and checked as `file`), resuming from
    /// its status file when there is one.
    pub fn new(
        path: &Path,
        file: StandaloneFile,
        canary_override: Vec<Upstream>,
        output: Output,
    ) -> anyhow::Result<FileWorld> {
        let state_path = sidecar(path, "status");
        let persisted: Persisted = match std::fs::read_to_string(&state_path) {
            Ok(text) => serde_yaml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", state_path.display()))?,
            Err(_) => Persisted::default(),
        };
        let admin = format!("http://{}", file.admin_addr);
        Ok(FileWorld {
            state: Mutex::new(State {
                procs: Processes::new(path, &persisted.processes),
                seen: modified(path),
                file,
                persisted,
            }),
            output,
            file_path: path.to_path_buf(),
            routes_path: sidecar(path, "routes"),
            state_path,
            canary_override,
            admin,
            http: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file as it is now.
    pub fn file(&self) -> StandaloneFile {
        self.lock().file.clone()
    }

    /// The status as last persisted.
    pub fn status(&self) -> CanaryStatus {
        self.lock().persisted.status.clone()
    }

    /// What a user asked by hand: `<file>.control.yaml`, written by `siskin pause|resume|
    /// promote|abort|retry --file`. None (and nothing asked) when there is no such file.
    pub fn control(&self) -> Result<siskin_engine::Control, String> {
        let path = sidecar(&self.file_path, "control");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(siskin_engine::Control::default());
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let doc: crate::control::ControlDoc = serde_yaml::from_str(&text).map_err(|e| {
            format!(
                "{}: {e}; write it with `siskin pause|resume|promote|abort|retry --file`",
                path.display()
            )
        })?;
        doc.control(&format!("{}: request", path.display()))
            .map_err(|e| e.to_string())
    }

    /// Where the router reads its configuration.
    pub fn routes_path(&self) -> &Path {
        &self.routes_path
    }

    /// Prints (or sends) a line.
    pub fn say(&self, line: String) {
        match &self.output {
            Output::Print => println!("{line}"),
            Output::Channel(tx) => {
                if tx.send(Report::Line(line)).is_err() {
                    tracing::debug!("the live view is gone");
                }
            }
        }
    }

    /// Reads the file again when it changed; a bad version is reported and the previous kept.
    pub fn reload_file(&self) {
        let mut st = self.lock();
        let now = modified(&self.file_path);
        if now == st.seen {
            return;
        }
        st.seen = now;
        match super::spec::load(&self.file_path) {
            Ok(mut f) => {
                if !self.canary_override.is_empty() {
                    f.canary = self.canary_override.clone();
                }
                let problems = super::spec::problems(&f);
                if problems.is_empty() {
                    st.file = f;
                } else {
                    for p in problems {
                        eprintln!("{}: {p}", self.file_path.display());
                    }
                    eprintln!("keeping the previous version of the file");
                }
            }
            Err(e) => eprintln!("{e:#}; keeping the previous version of the file"),
        }
    }

    /// Runs the processes a route may point at: the primary's, and the canary's unless it is
    /// scaled to zero; records their pids.
    pub fn reconcile_processes(&self) {
        let (notes, changed) = {
            let mut st = self.lock();
            let mut wanted: Vec<Upstream> = st.primary_list().to_vec();
            if st.persisted.canary_up {
                wanted.extend(st.file.canary.iter().cloned());
            }
            let refs: Vec<&Upstream> = wanted.iter().collect();
            st.procs.reconcile(&refs);
            let notes = st.procs.take_notes();
            let recorded = st.procs.recorded();
            let changed = recorded != st.persisted.processes;
            st.persisted.processes = recorded;
            (notes, changed)
        };
        for n in notes {
            self.say(n);
        }
        if changed && let Err(e) = self.write_state() {
            eprintln!("cannot write {}: {e}", self.state_path.display());
        }
    }

    /// Stops every process Siskin started.
    pub fn stop_all(&self) {
        self.lock().procs.stop_all();
    }

    fn write_state(&self) -> std::io::Result<()> {
        let text = serde_yaml::to_string(&self.lock().persisted)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let tmp = self.state_path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.state_path)
    }

    /// Writes the router's configuration; the router swaps it in within 50 ms.
    pub fn write_routes(&self, config: &siskin_route::Config) -> Result<(), Error> {
        let what = || format!("write {}", self.routes_path.display());
        let text = serde_yaml::to_string(config).map_err(|e| Error::unavailable(what(), e))?;
        let tmp = self.routes_path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| Error::unavailable(what(), e))?;
        std::fs::rename(&tmp, &self.routes_path).map_err(|e| Error::unavailable(what(), e))
    }

    /// The router's configuration for the split the status describes (before the router runs).
    pub fn routes_for(&self, spec: &siskin_api::CanarySpec) -> Result<siskin_route::Config, Error> {
        let st = self.lock();
        if st.persisted.reverted {
            return Ok(routes::reverted(
                &st.file.route(),
                addresses(&st.file.canary),
            ));
        }
        let split = siskin_engine::routing(spec, &st.persisted.status);
        let intent = RoutingIntent::resolve(spec, &split)?;
        routes::plan(&st.file.route(), &st.sides(), &intent)
            .map_err(|e| Error::invalid(e.field, e.message))
    }

    async fn config_report(&self) -> Result<ConfigReport, String> {
        let uri: http::Uri = format!("{}/config", self.admin)
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(2), self.http.get(uri))
            .await
            .map_err(|_| "the router's admin port did not answer in 2s".to_string())?
            .map_err(|e| e.to_string())?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Platform for FileWorld {
    async fn observe(&self) -> Result<Workloads, Error> {
        let (target, primary, file_canary, primary_list) = {
            let st = self.lock();
            let up = |l: &[Upstream]| -> Vec<(Upstream, bool)> {
                l.iter().map(|u| (u.clone(), st.procs.is_up(u))).collect()
            };
            (
                up(&st.file.canary),
                (!st.persisted.primary.is_empty() && !st.persisted.reverted)
                    .then(|| up(&st.persisted.primary)),
                revision(&st.file.canary),
                revision(&st.persisted.primary),
            )
        };
        let primary = match primary {
            Some(list) => Some(Workload {
                revision: primary_list,
                configs: Default::default(),
                readiness: readiness(&list).await,
            }),
            None => None,
        };
        Ok(Workloads {
            target: Some(Workload {
                revision: file_canary,
                configs: Default::default(),
                readiness: readiness(&target).await,
            }),
            primary,
        })
    }

    async fn initialize_primary(&self) -> Result<(), Error> {
        let mut st = self.lock();
        if st.persisted.primary.is_empty() {
            st.persisted.primary = st.file.primary.clone();
        }
        Ok(())
    }

    async fn promote_primary(&self) -> Result<(), Error> {
        let mut st = self.lock();
        st.persisted.primary = st.file.canary.clone();
        Ok(())
    }

    /// Processes follow this flag; addresses run on their own.
    async fn scale_target(&self, scale: Scale) -> Result<(), Error> {
        self.lock().persisted.canary_up = scale == Scale::Up;
        self.reconcile_processes();
        Ok(())
    }

    /// The primary's upstreams are retired (their processes stop once no route uses them).
    async fn revert(&self) -> Result<(), Error> {
        {
            let mut st = self.lock();
            st.persisted.reverted = true;
            st.persisted.primary.clear();
            st.persisted.canary_up = true;
        }
        self.reconcile_processes();
        Ok(())
    }
}

#[async_trait]
impl Traffic for FileWorld {
    /// What the in-process router serves, from its admin port.
    async fn observe(&self) -> Result<RouteState, Error> {
        let route = self.lock().file.route();
        match self.config_report().await {
            Ok(report) => Ok(match routes::served(&report, &route) {
                Some(split) => RouteState::Applied(split),
                None if self.routes_path.exists() => RouteState::Converging,
                None => RouteState::Absent,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the router's configuration");
                Ok(RouteState::Converging)
            }
        }
    }

    async fn apply(&self, intent: &RoutingIntent) -> Result<(), Error> {
        let config = {
            let st = self.lock();
            routes::plan(&st.file.route(), &st.sides(), intent)
                .map_err(|e| Error::invalid(e.field, e.message))?
        };
        self.write_routes(&config)
    }

    async fn revert(&self) -> Result<(), Error> {
        let config = {
            let st = self.lock();
            routes::reverted(&st.file.route(), addresses(&st.file.canary))
        };
        self.write_routes(&config)
    }
}

#[async_trait]
impl StatusStore for FileWorld {
    async fn persist(&self, before: &CanaryStatus, after: &CanaryStatus) -> Result<bool, Error> {
        self.lock().persisted.status = after.clone();
        // The upstream lists may have changed with the actions even when the status did not.
        self.write_state()
            .map_err(|e| Error::unavailable(format!("write {}", self.state_path.display()), e))?;
        Ok(before != after)
    }
}

#[async_trait]
impl Events for FileWorld {
    async fn record(&self, e: &Event) {
        match &self.output {
            Output::Print => println!("{:?} {}: {}", e.kind, e.reason, e.message),
            Output::Channel(tx) => {
                let sent = tx.send(Report::Event {
                    warning: e.kind == EventType::Warning,
                    reason: e.reason.to_string(),
                    message: e.message.clone(),
                });
                if sent.is_err() {
                    tracing::debug!("the live view is gone");
                }
            }
        }
    }
}

#[async_trait]
impl Notifier for FileWorld {
    async fn post(&self, n: &Notification) -> Result<(), Error> {
        self.say(format!("ALERT ({:?}) {}", n.severity, n.message));
        Ok(())
    }
}
