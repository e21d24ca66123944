//! `siskin run`: the engine's driver for upstreams listed in a file, with the router in-process.
//!
//! Every step: observe the upstreams, ask the engine, fulfil what it needs (webhooks, checks from
//! the router's live statistics), execute its actions (routes are written for the in-process
//! router, which reloads them atomically), then persist the status next to the file so a killed
//! run resumes where it stopped.

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use siskin_analysis::{
    MetricsProvider, Query, assess, providers::router_stats::RouterStatsProvider,
};
use siskin_api::{
    CanaryStatus, Phase,
    analysis::CanaryWebhook,
    status::{CheckStatus, Verdict},
    validate,
};
use siskin_engine::{Action, AnalysisResult, Need, Observations, Readiness, Split, Workload};
use siskin_route::{Backend, BackendRef, Config, Filter, Mirror, Route, Rule};
use siskin_router::{Options, Router, Source};

use super::{
    processes::{Processes, Recorded},
    spec::{StandaloneFile, Upstream},
};

/// What is persisted next to the file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Persisted {
    /// The engine's status.
    status: CanaryStatus,
    /// Upstreams serving as the primary (the file's `primary` until a promotion).
    primary: Vec<Upstream>,
    /// Whether the canary's upstreams should run (false after promotion or rollback).
    #[serde(default = "yes")]
    canary_up: bool,
    /// Processes started for upstreams with a `command`, adopted after a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    processes: Vec<Recorded>,
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

/// Options of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Stop once the current release has settled, returning its phase.
    pub once: bool,
    /// Canary addresses given on the command line: they replace the file's `canary` list.
    pub canary: Vec<String>,
    /// Where reports go.
    pub output: Output,
}

struct Driver {
    output: Output,
    canary_override: Vec<Upstream>,
    procs: Processes,
    file_path: PathBuf,
    state_path: PathBuf,
    routes_path: PathBuf,
    file: StandaloneFile,
    seen: Option<SystemTime>,
    state: Persisted,
    provider: RouterStatsProvider,
    hooks: crate::hooks::Hooks,
}

/// Runs the release described by `path` until interrupted or, with `once`, until the current
/// release settles; returns the phase it settled in.
pub async fn run(path: &Path, opts: RunOptions) -> anyhow::Result<Phase> {
    let canary_override: Vec<Upstream> = opts
        .canary
        .iter()
        .map(|a| Upstream::Address(a.clone()))
        .collect();
    let mut file = load(path)?;
    if !canary_override.is_empty() {
        file.canary = canary_override.clone();
    }
    let mut errors: Vec<String> = super::spec::problems(&file);
    errors.extend(
        validate::canary(&file.canary(), &validate::Options::default())
            .iter()
            .filter(|p| p.is_error())
            .map(ToString::to_string),
    );
    if !errors.is_empty() {
        for p in &errors {
            eprintln!("{}: {p}", path.display());
        }
        anyhow::bail!("{} has {} error(s)", path.display(), errors.len());
    }
    let once = opts.once;
    let state_path = sidecar(path, "status");
    let routes_path = sidecar(path, "routes");
    let state: Persisted = match std::fs::read_to_string(&state_path) {
        Ok(text) => serde_yaml::from_str(&text)
            .with_context(|| format!("cannot read {}", state_path.display()))?,
        Err(_) => Persisted::default(),
    };
    let mut d = Driver {
        output: opts.output,
        canary_override,
        procs: Processes::new(path, &state.processes),
        seen: modified(path),
        file_path: path.to_path_buf(),
        provider: RouterStatsProvider::new(
            format!("http://{}", file.admin_addr),
            siskin_analysis::providers::router_stats::DEFAULT_MIN_SAMPLES,
        ),
        hooks: crate::hooks::Hooks::default(),
        state_path,
        routes_path,
        file,
        state,
    };
    if d.state.status.phase != Phase::Unset {
        d.say(format!(
            "resuming {} at {} (weight {})",
            d.file.name, d.state.status.phase, d.state.status.canary_weight
        ));
    }
    d.write_routes(&current_split(&d.state.status))?;
    let router = Router::new(Options {
        source: Source::File(d.routes_path.clone()),
        listen: d.file.listen,
        admin: d.file.admin_addr,
        max_concurrent: 10_000,
        max_header_bytes: 64 * 1024,
        max_body_bytes: 0,
        connect_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(5),
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    tokio::spawn(router.run());
    d.say(format!(
        "{}: serving on {}, admin on {}",
        d.file.name, d.file.listen, d.file.admin_addr
    ));
    let result = d.drive(once).await;
    d.procs.stop_all();
    result
}

// === impl Driver ===

impl Driver {
    async fn drive(&mut self, once: bool) -> anyhow::Result<Phase> {
        let d = self;
        loop {
            d.reload_file();
            d.reconcile_processes();
            let wait = d.tick(None).await?;
            let phase = d.state.status.phase;
            if once && matches!(phase, Phase::Succeeded | Phase::Failed) {
                return Ok(phase);
            }
            // Between steps, watch the critical checks every second (fast failure).
            let until = tokio::time::Instant::now()
                + wait.clamp(Duration::from_millis(200), Duration::from_secs(2));
            while tokio::time::Instant::now() < until {
                tokio::time::sleep(
                    Duration::from_millis(200).min(until - tokio::time::Instant::now()),
                )
                .await;
                d.reconcile_processes();
                if let Some(failed) = d.critical().await {
                    d.say(format!(
                        "critical check failed on live data: {} = {}",
                        failed.name,
                        failed.value.map_or("-".into(), |v| format!("{v:.1}"))
                    ));
                    d.tick(Some(failed)).await?;
                    break;
                }
            }
        }
    }
}

fn load(path: &Path) -> anyhow::Result<StandaloneFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a valid standalone file", path.display()))
}

fn sidecar(path: &Path, what: &str) -> PathBuf {
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
fn revision(list: &[Upstream]) -> String {
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

fn current_split(s: &CanaryStatus) -> Split {
    let w = u8::try_from(s.canary_weight.clamp(0, 100)).unwrap_or(0);
    Split::weights(100 - w, w)
}

/// Ready when every upstream runs and accepts a connection.
fn readiness(list: &[Upstream], procs: &Processes) -> Readiness {
    let up = list
        .iter()
        .filter(|u| {
            procs.is_up(u)
                && u.address().parse::<SocketAddr>().ok().is_some_and(|sa| {
                    TcpStream::connect_timeout(&sa, Duration::from_millis(300)).is_ok()
                })
        })
        .count();
    if up == list.len() {
        Readiness::Ready
    } else {
        Readiness::NotReady(format!("{up} of {} endpoints answer", list.len()))
    }
}

impl Driver {
    fn say(&self, line: String) {
        match &self.output {
            Output::Print => println!("{line}"),
            Output::Channel(tx) => {
                let _ = tx.send(Report::Line(line));
            }
        }
    }

    fn primary_list(&self) -> &[Upstream] {
        if self.state.primary.is_empty() {
            &self.file.primary
        } else {
            &self.state.primary
        }
    }

    /// Runs the processes a route may point at: the primary's, and the canary's unless it is
    /// scaled to zero.
    fn reconcile_processes(&mut self) {
        let mut wanted: Vec<&Upstream> = self.primary_list().iter().collect();
        if self.state.canary_up {
            wanted.extend(self.file.canary.iter());
        }
        let wanted: Vec<Upstream> = wanted.into_iter().cloned().collect();
        let refs: Vec<&Upstream> = wanted.iter().collect();
        self.procs.reconcile(&refs);
        for note in self.procs.take_notes() {
            self.say(note);
        }
        let recorded = self.procs.recorded();
        if recorded != self.state.processes {
            self.state.processes = recorded;
            if let Err(e) = self.persist() {
                eprintln!("cannot write {}: {e:#}", self.state_path.display());
            }
        }
    }

    fn persist(&self) -> anyhow::Result<()> {
        let text = serde_yaml::to_string(&self.state)?;
        let tmp = self.state_path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.state_path)?;
        Ok(())
    }

    fn reload_file(&mut self) {
        let now = modified(&self.file_path);
        if now == self.seen {
            return;
        }
        self.seen = now;
        match load(&self.file_path) {
            Ok(mut f) => {
                if !self.canary_override.is_empty() {
                    f.canary = self.canary_override.clone();
                }
                let problems = super::spec::problems(&f);
                if problems.is_empty() {
                    self.file = f;
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

    fn observations(&self) -> Observations {
        let primary = (!self.state.primary.is_empty()).then(|| Workload {
            revision: revision(&self.state.primary),
            configs: Default::default(),
            readiness: readiness(&self.state.primary, &self.procs),
        });
        Observations {
            target: Some(Workload {
                revision: revision(&self.file.canary),
                configs: Default::default(),
                readiness: readiness(&self.file.canary, &self.procs),
            }),
            primary,
            ..Default::default()
        }
    }

    /// Evaluates the critical metrics on the router's 10-second window while the canary takes
    /// traffic. Only a measured failure counts: too few samples or no data is not a verdict
    /// that can roll back at once (the regular step judges those).
    async fn critical(&mut self) -> Option<CheckStatus> {
        let s = &self.state.status;
        let exposed = s.canary_weight > 0 || s.mirrored == Some(true);
        if !exposed || !matches!(s.phase, Phase::Progressing | Phase::WaitingPromotion) {
            return None;
        }
        let now = jiff::Timestamp::now();
        for m in self
            .file
            .analysis
            .metrics
            .iter()
            .flatten()
            .filter(|m| m.is_critical())
        {
            let Some(metric) = crate::analysis_run::builtin(m) else {
                continue;
            };
            let q = Query::Builtin {
                metric,
                route: self.file.route(),
                backend: "canary".into(),
                window: Duration::from_secs(10),
            };
            let check = assess(m, self.provider.query(&q).await, now);
            if check.verdict == Verdict::Fail {
                return Some(check);
            }
        }
        None
    }

    async fn tick(&mut self, critical: Option<CheckStatus>) -> anyhow::Result<Duration> {
        let canary = self.file.canary();
        let mut obs = self.observations();
        obs.critical = critical;
        let now = jiff::Timestamp::now();
        let mut step = siskin_engine::step(&canary.spec, &self.state.status, &obs, now);
        for _ in 0..6 {
            let Some(need) = step.need else { break };
            match need {
                Need::Gate(kind) => {
                    let hooks: Vec<CanaryWebhook> =
                        self.file.analysis.hooks(kind).cloned().collect();
                    let g = self.hooks.gate(kind, &hooks, &self.payload()).await;
                    obs.gates.insert(kind, g);
                }
                Need::Analysis => obs.analysis = Some(self.analysis().await),
            }
            step = siskin_engine::step(&canary.spec, &self.state.status, &obs, now);
        }
        for action in &step.actions {
            self.execute(action).await?;
        }
        let before = self.state.status.phase;
        self.state.status = step.status;
        self.persist()?;
        if before != self.state.status.phase {
            self.say(format!(
                "phase {} (canary weight {})",
                self.state.status.phase, self.state.status.canary_weight
            ));
        }
        Ok(step.requeue_after)
    }

    async fn execute(&mut self, action: &Action) -> anyhow::Result<()> {
        match action {
            Action::InitializePrimary => {
                if self.state.primary.is_empty() {
                    self.state.primary = self.file.primary.clone();
                }
            }
            Action::SetRoutes(split) => self.write_routes(split)?,
            Action::PromotePrimary => self.state.primary = self.file.canary.clone(),
            // Processes follow this flag (reconcile_processes); addresses run on their own.
            Action::ScaleTarget(scale) => {
                self.state.canary_up = matches!(scale, siskin_engine::Scale::Up);
                self.reconcile_processes();
            }
            Action::RevertTarget => {}
            Action::RunHooks(kind) => {
                let hooks: Vec<CanaryWebhook> = self.file.analysis.hooks(*kind).cloned().collect();
                for (name, e) in self.hooks.notify(&hooks, &self.payload()).await {
                    eprintln!("warning: {} hook {name} failed: {e}", kind.name());
                }
            }
            Action::Event(e) => match &self.output {
                Output::Print => println!("{:?} {}: {}", e.kind, e.reason, e.message),
                Output::Channel(tx) => {
                    let _ = tx.send(Report::Event {
                        warning: e.kind == siskin_engine::EventType::Warning,
                        reason: e.reason.to_string(),
                        message: e.message.clone(),
                    });
                }
            },
            Action::Alert(a) => self.say(format!("ALERT ({:?}) {}", a.severity, a.message)),
        }
        Ok(())
    }

    /// Writes the router's routes for `split`; the router swaps them in within 50 ms.
    fn write_routes(&self, split: &Split) -> anyhow::Result<()> {
        let addresses =
            |l: &[Upstream]| -> Vec<String> { l.iter().map(|u| u.address().to_string()).collect() };
        let primary = addresses(self.primary_list());
        let sa = self.file.analysis.session_affinity.as_ref();
        let cookie = |pair: &Option<String>, max_age: Option<i64>| {
            crate::cookies::session_cookie(pair.as_deref(), max_age, sa)
        };
        let sticky = split.sticky.clone();
        let interval = i64::try_from(self.file.analysis.interval().as_secs()).unwrap_or(60);
        let mut filters = Vec::new();
        if let Some(pct) = split.mirror {
            filters.push(Filter::RequestMirror {
                mirror: Mirror {
                    backend_ref: siskin_route::BackendName {
                        name: "canary".into(),
                    },
                    percent: Some(pct),
                },
            });
        }
        let rule = Rule {
            name: Some("siskin-canary".into()),
            filters,
            backend_refs: vec![
                BackendRef {
                    name: "primary".into(),
                    weight: u32::from(split.primary),
                    session_cookie: sticky
                        .as_ref()
                        .and_then(|s| cookie(&s.primary, Some(interval))),
                },
                BackendRef {
                    name: "canary".into(),
                    weight: u32::from(split.canary),
                    session_cookie: sticky
                        .as_ref()
                        .and_then(|s| cookie(&s.canary, sa.map(|s| s.max_age()))),
                },
            ],
            expire_cookies: sticky.and_then(|s| s.previous).into_iter().collect(),
            ..Default::default()
        };
        let config = Config {
            routes: vec![Route {
                name: self.file.route(),
                hostnames: vec![],
                rules: vec![rule],
            }],
            backends: vec![
                Backend {
                    name: "primary".into(),
                    endpoints: primary,
                    role: Some("primary".into()),
                    ..Default::default()
                },
                Backend {
                    name: "canary".into(),
                    endpoints: addresses(&self.file.canary),
                    role: Some("canary".into()),
                    ..Default::default()
                },
            ],
        };
        let tmp = self.routes_path.with_extension("tmp");
        std::fs::write(&tmp, serde_yaml::to_string(&config)?)?;
        std::fs::rename(&tmp, &self.routes_path)?;
        Ok(())
    }

    fn payload(&self) -> crate::hooks::Payload {
        crate::hooks::Payload {
            name: self.file.name.clone(),
            namespace: "standalone".into(),
            phase: self.state.status.phase.name().to_string(),
            checksum: self
                .state
                .status
                .last_applied_spec
                .clone()
                .unwrap_or_default(),
        }
    }

    /// Rollout hooks, then metrics from the router's live statistics.
    async fn analysis(&self) -> AnalysisResult {
        crate::analysis_run::run(
            &self.file.analysis,
            &self.hooks,
            &self.payload(),
            &self.provider,
            &self.file.route(),
            "standalone mode runs the built-in checks only (request-success-rate, request-duration)",
        )
        .await
    }
}
