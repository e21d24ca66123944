//! `siskin get|describe|promote|abort|retry|pause|resume|wait|history`: a release seen and
//! steered from the command line (also as the kubectl plugin `kubectl-siskin`), against the
//! cluster or a `siskin run` file.
//!
//! Actions are written where GitOps tools leave them alone: annotations on the Canary
//! ([`crate::control`]), never its spec, so applying the Git copy again does not undo a pause.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, anyhow, bail};
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::Event,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PostParams},
};
use serde_json::{Value, json};
use siskin_api::{ApiGroup, Canary, CanaryStatus, Phase, canary::TargetKind, status::Verdict};
use siskin_engine::RequestAction;

use crate::control::{
    Change, ControlDoc, PAUSE_ANNOTATION, REQUEST_ANNOTATION, RequestDoc, pause_value,
};

/// Exit code of `wait` when the release ended the other way.
pub const EXIT_OTHER_OUTCOME: u8 = 1;
/// Exit code of `wait` at its timeout.
pub const EXIT_TIMEOUT: u8 = 3;

/// Where the Canary is: the cluster (kubeconfig) or a `siskin run` file.
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
    /// Namespace of the Canary (default: the kubeconfig context's, else `default`).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Kubeconfig context to use (default: the current one).
    #[arg(long)]
    context: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// API group of the Canaries: siskin.dev, or flagger.app for Flagger manifests.
    #[arg(long, default_value = "siskin.dev")]
    api_group: String,
    /// A `siskin run` file instead of the cluster: its status and control files beside it.
    #[arg(long, conflicts_with_all = ["namespace", "context"])]
    file: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, clap::Subcommand)]
pub enum Ctl {
    /// List Canaries: phase, weight, failed checks, paused.
    Get(GetArgs),
    /// Show one release: phase, weights, every check (query, value, threshold, verdict),
    /// webhooks and their last answers, waits, conditions and recent events.
    Describe(NameArg),
    /// Promote the release in progress now, skipping its remaining steps, checks and gates.
    Promote(NameArg),
    /// Roll the release in progress back now.
    Abort(NameArg),
    /// Run the analysis again for a release that failed.
    Retry(NameArg),
    /// Hold the release where it is (no steps, no checks, no new release) until `resume`.
    Pause(PauseArgs),
    /// Let a paused release go on.
    Resume(NameArg),
    /// Wait for the release of the target's current revision to end; for CI. Exit codes:
    /// 0 the condition was met, 1 the release ended the other way, 2 an error, 3 the timeout.
    Wait(WaitArgs),
    /// The last releases that ended: when, outcome, revision, why.
    History(NameArg),
}

/// A Canary's name.
#[derive(Debug, Clone, clap::Args)]
pub struct NameArg {
    #[command(flatten)]
    source: Source,
    /// The Canary (with --file: optional, the file's).
    name: Option<String>,
}

/// Arguments of `get`.
#[derive(Debug, Clone, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    source: Source,
    /// One Canary (default: all in the namespace).
    name: Option<String>,
    /// Keep watching: print a row whenever a Canary changes.
    #[arg(short, long)]
    watch: bool,
    /// Output: table, json or yaml.
    #[arg(short, long, default_value = "table")]
    output: String,
}

/// Arguments of `pause`.
#[derive(Debug, Clone, clap::Args)]
pub struct PauseArgs {
    #[command(flatten)]
    source: Source,
    /// The Canary.
    name: Option<String>,
    /// Why, shown in the status and the event.
    #[arg(long)]
    reason: Option<String>,
}

/// Arguments of `wait`.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    #[command(flatten)]
    source: Source,
    /// The Canary.
    name: Option<String>,
    /// Succeeded (promoted after analysis), Failed (rolled back), or Promoted (the primary
    /// runs the target's revision: Succeeded, or Initialized for a first deployment).
    #[arg(long = "for")]
    condition: String,
    /// Give up after this long (Go durations: 90s, 10m).
    #[arg(long, default_value = "10m")]
    timeout: String,
}

/// One Canary as the CLI sees it.
struct Snapshot {
    name: String,
    namespace: String,
    status: CanaryStatus,
    paused: Option<String>,
    threshold: Option<i32>,
    max_weight: Option<i32>,
    /// The target's current revision, when it can be read.
    revision: Option<String>,
    /// A request written and not acted on yet: no outcome is final until it is.
    pending_request: bool,
    /// The object as stored (for -o json|yaml).
    object: Value,
}

enum Backend {
    Kube {
        client: Client,
        namespace: String,
        group: ApiGroup,
        user: String,
    },
    File {
        path: PathBuf,
    },
}

/// Runs one command.
pub async fn run(cmd: Ctl) -> anyhow::Result<ExitCode> {
    let source = match &cmd {
        Ctl::Get(a) => &a.source,
        Ctl::Pause(a) => &a.source,
        Ctl::Wait(a) => &a.source,
        Ctl::Describe(a)
        | Ctl::Promote(a)
        | Ctl::Abort(a)
        | Ctl::Retry(a)
        | Ctl::Resume(a)
        | Ctl::History(a) => &a.source,
    };
    let b = Backend::connect(source).await?;
    match cmd {
        Ctl::Get(a) => get(&b, a).await,
        Ctl::Describe(a) => {
            let s = b.one(a.name.as_deref()).await?;
            describe(&b, &s).await?;
            Ok(ExitCode::SUCCESS)
        }
        Ctl::History(a) => {
            let s = b.one(a.name.as_deref()).await?;
            history(&s);
            Ok(ExitCode::SUCCESS)
        }
        Ctl::Promote(a) => request(&b, a.name.as_deref(), RequestAction::Promote).await,
        Ctl::Abort(a) => request(&b, a.name.as_deref(), RequestAction::Abort).await,
        Ctl::Retry(a) => request(&b, a.name.as_deref(), RequestAction::Retry).await,
        Ctl::Pause(a) => {
            let s = b.one(a.name.as_deref()).await?;
            let who = b.user().await;
            let value = pause_value(&who, a.reason.as_deref());
            b.change(&s, Change::Pause(Some(value.clone()))).await?;
            println!(
                "{}: paused ({value}); the release holds at its next step until `siskin resume {}`",
                s.name, s.name
            );
            Ok(ExitCode::SUCCESS)
        }
        Ctl::Resume(a) => {
            let s = b.one(a.name.as_deref()).await?;
            if s.paused.is_none() {
                println!("{}: not paused", s.name);
                return Ok(ExitCode::SUCCESS);
            }
            b.change(&s, Change::Pause(None)).await?;
            println!("{}: resumed", s.name);
            Ok(ExitCode::SUCCESS)
        }
        Ctl::Wait(a) => wait(&b, a).await,
    }
}

// === impl Backend ===

impl Backend {
    async fn connect(source: &Source) -> anyhow::Result<Backend> {
        if let Some(path) = &source.file {
            if !path.exists() {
                bail!("--file {}: no such file", path.display());
            }
            return Ok(Backend::File { path: path.clone() });
        }
        let group = match source.api_group.as_str() {
            "siskin.dev" => ApiGroup::Siskin,
            "flagger.app" => ApiGroup::Flagger,
            other => bail!("--api-group {other:?}: use siskin.dev or flagger.app"),
        };
        let options = kube::config::KubeConfigOptions {
            context: source.context.clone(),
            ..Default::default()
        };
        let config = match &source.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("--kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &options).await?
            }
            None if source.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
            None => kube::Config::infer().await?,
        };
        let namespace = source
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)?;
        let user = whoami(&client).await;
        Ok(Backend::Kube {
            client,
            namespace,
            group,
            user,
        })
    }

    async fn user(&self) -> String {
        match self {
            Backend::Kube { user, .. } => user.clone(),
            Backend::File { .. } => std::env::var("USER").unwrap_or_else(|_| "a local user".into()),
        }
    }

    async fn list(&self) -> anyhow::Result<Vec<Snapshot>> {
        match self {
            Backend::Kube {
                client,
                namespace,
                group,
                ..
            } => {
                let api: Api<Canary> = Api::namespaced_with(client.clone(), namespace, group);
                let list = api
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| kube_error(e, namespace, None, *group))?;
                let mut out = Vec::new();
                for c in list.items {
                    out.push(snapshot(client, c.with_group(*group), false).await);
                }
                Ok(out)
            }
            Backend::File { .. } => Ok(vec![self.one(None).await?]),
        }
    }

    async fn one(&self, name: Option<&str>) -> anyhow::Result<Snapshot> {
        match self {
            Backend::Kube {
                client,
                namespace,
                group,
                ..
            } => {
                let name = name.ok_or_else(|| anyhow!("name the Canary: siskin <command> NAME"))?;
                let api: Api<Canary> = Api::namespaced_with(client.clone(), namespace, group);
                let c = api
                    .get(name)
                    .await
                    .map_err(|e| kube_error(e, namespace, Some(name), *group))?;
                Ok(snapshot(client, c.with_group(*group), true).await)
            }
            Backend::File { path } => {
                let file = crate::standalone::spec::load(path)?;
                if let Some(n) = name
                    && n != file.name
                {
                    bail!("{} releases {:?}, not {n:?}", path.display(), file.name);
                }
                let state = crate::standalone::world::sidecar(path, "status");
                let persisted: crate::standalone::world::Persisted =
                    match std::fs::read_to_string(&state) {
                        Ok(t) => serde_yaml::from_str(&t)
                            .with_context(|| format!("cannot read {}", state.display()))?,
                        Err(_) => Default::default(),
                    };
                let control = read_control(path)?;
                let canary = file.canary();
                let analysis = canary.spec.analysis();
                Ok(Snapshot {
                    name: file.name.clone(),
                    namespace: "standalone".into(),
                    threshold: i32::try_from(analysis.threshold()).ok(),
                    max_weight: Some(i32::from(analysis.max_weight().get())),
                    revision: Some(crate::standalone::world::revision(&file.canary)),
                    object: serde_json::to_value(&persisted.status)?,
                    pending_request: control
                        .request
                        .as_ref()
                        .is_some_and(|r| persisted.status.last_request.as_ref() != Some(&r.id)),
                    status: persisted.status,
                    paused: control.pause,
                })
            }
        }
    }

    /// Writes a change: annotations on the Canary, or the control file beside a run file.
    async fn change(&self, s: &Snapshot, change: Change) -> anyhow::Result<()> {
        match self {
            Backend::Kube {
                client,
                namespace,
                group,
                ..
            } => {
                let api: Api<Canary> = Api::namespaced_with(client.clone(), namespace, group);
                change
                    .write(&api, &s.name)
                    .await
                    .map_err(|e| kube_error(e, namespace, Some(&s.name), *group))
            }
            Backend::File { path } => {
                let mut c = read_control(path)?;
                change.apply_to(&mut c);
                write_control(path, &c)
            }
        }
    }

    async fn events(&self, name: &str) -> Vec<EventRow> {
        let Backend::Kube {
            client, namespace, ..
        } = self
        else {
            return Vec::new();
        };
        recent_events(client, namespace, name, 12)
            .await
            .unwrap_or_default()
    }
}

/// One event of a Canary, as `describe` and the dashboard show it.
pub struct EventRow {
    /// When it last happened (RFC 3339), empty when unknown.
    pub when: String,
    /// Normal or Warning.
    pub kind: String,
    /// The reason (`Synced`, `RolledBack`, ...).
    pub reason: String,
    /// The message.
    pub message: String,
}

/// The last `limit` events about Canary `name` in `ns`, oldest first.
pub async fn recent_events(
    client: &Client,
    ns: &str,
    name: &str,
    limit: usize,
) -> Result<Vec<EventRow>, kube::Error> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=Canary,involvedObject.name={name}"
    ));
    let mut events: Vec<Event> = api.list(&lp).await?.items;
    events.sort_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(e.event_time.as_ref().map(|t| t.0))
    });
    let skip = events.len().saturating_sub(limit);
    Ok(events
        .into_iter()
        .skip(skip)
        .map(|e| EventRow {
            when: e
                .last_timestamp
                .map(|t| t.0.to_string())
                .or(e.event_time.map(|t| t.0.to_string()))
                .unwrap_or_default(),
            kind: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e.message.unwrap_or_default(),
        })
        .collect())
}

fn kube_error(e: kube::Error, ns: &str, name: Option<&str>, group: ApiGroup) -> anyhow::Error {
    match (&e, name) {
        (kube::Error::Api(s), Some(n)) if s.code == 404 => anyhow!(
            "Canary {n:?} not found in namespace {ns:?} ({}); pick the namespace with -n, or --api-group flagger.app for Flagger's",
            group.api_version()
        ),
        (kube::Error::Api(s), _) if s.code == 403 => anyhow!(
            "forbidden: {} (ask for get/list/patch on canaries.{} in {ns:?})",
            s.message,
            group.api_version().split('/').next().unwrap_or_default()
        ),
        _ => anyhow!("{e}"),
    }
}

/// Who the API server says we are (SelfSubjectReview), for the events.
async fn whoami(client: &Client) -> String {
    let api: Api<k8s_openapi::api::authentication::v1::SelfSubjectReview> =
        Api::all(client.clone());
    let review = k8s_openapi::api::authentication::v1::SelfSubjectReview::default();
    match api.create(&PostParams::default(), &review).await {
        Ok(r) => r
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .unwrap_or_else(|| "an unnamed user".into()),
        Err(_) => std::env::var("USER").unwrap_or_else(|_| "an unnamed user".into()),
    }
}

async fn snapshot(client: &Client, c: Canary, with_revision: bool) -> Snapshot {
    let status = crate::kubernetes::status::read(&c);
    let analysis = c.spec.analysis();
    let ns = c.namespace().unwrap_or_default();
    let revision = if with_revision {
        target_revision(client, &ns, &c).await
    } else {
        None
    };
    let pending_request = c
        .annotations()
        .get(REQUEST_ANNOTATION)
        .and_then(|t| serde_json::from_str::<RequestDoc>(t).ok())
        .is_some_and(|r| status.last_request.as_ref() != Some(&r.id));
    Snapshot {
        pending_request,
        name: c.name_any(),
        namespace: ns,
        paused: c.annotations().get(PAUSE_ANNOTATION).cloned(),
        threshold: i32::try_from(analysis.threshold()).ok(),
        max_weight: Some(i32::from(analysis.max_weight().get())),
        revision,
        object: serde_json::to_value(&c).unwrap_or_default(),
        status,
    }
}

async fn target_revision(client: &Client, ns: &str, c: &Canary) -> Option<String> {
    let name = &c.spec.target_ref.as_ref()?.name;
    match c.spec.target_kind() {
        TargetKind::Deployment => Api::<Deployment>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .map(|d| crate::workloads::deployment::revision(&d)),
        TargetKind::DaemonSet => Api::<DaemonSet>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .map(|d| crate::workloads::daemonset::revision(&d)),
        TargetKind::Service => None,
    }
}

fn read_control(path: &std::path::Path) -> anyhow::Result<ControlDoc> {
    let p = crate::standalone::world::sidecar(path, "control");
    match std::fs::read_to_string(&p) {
        Ok(t) => serde_yaml::from_str(&t).with_context(|| format!("cannot read {}", p.display())),
        Err(_) => Ok(ControlDoc::default()),
    }
}

fn write_control(path: &std::path::Path, c: &ControlDoc) -> anyhow::Result<()> {
    let p = crate::standalone::world::sidecar(path, "control");
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, serde_yaml::to_string(c)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(())
}

// === commands ===

fn row(s: &Snapshot) -> String {
    let st = &s.status;
    let phase = if st.phase == Phase::Unset {
        "-"
    } else {
        st.phase.name()
    };
    format!(
        "{:<24} {:<18} {:>6} {:>7} {:<7} {}",
        s.name,
        phase,
        st.canary_weight,
        format!("{}/{}", st.failed_checks, s.threshold.unwrap_or(0)),
        if s.paused.is_some() { "yes" } else { "no" },
        st.last_transition_time
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default()
    )
}

const HEADER: &str =
    "NAME                     PHASE              WEIGHT  FAILED PAUSED  LAST CHANGE";

async fn get(b: &Backend, a: GetArgs) -> anyhow::Result<ExitCode> {
    if !matches!(a.output.as_str(), "table" | "json" | "yaml") {
        bail!("-o {:?}: use table, json or yaml", a.output);
    }
    let pick = |all: Vec<Snapshot>| -> anyhow::Result<Vec<Snapshot>> {
        match &a.name {
            None => Ok(all),
            Some(n) => {
                let one: Vec<Snapshot> = all.into_iter().filter(|s| &s.name == n).collect();
                if one.is_empty() {
                    bail!("Canary {n:?} not found");
                }
                Ok(one)
            }
        }
    };
    let list = pick(b.list().await?)?;
    print_list(&list, &a.output)?;
    if !a.watch {
        return Ok(ExitCode::SUCCESS);
    }
    let mut seen: BTreeMap<String, String> =
        list.iter().map(|s| (s.name.clone(), row(s))).collect();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(list) = b.list().await else { continue };
        for s in pick(list)? {
            let r = row(&s);
            if seen.get(&s.name) != Some(&r) {
                match a.output.as_str() {
                    "table" => println!("{r}"),
                    o => print_list(std::slice::from_ref(&s), o)?,
                }
                seen.insert(s.name.clone(), r);
            }
        }
    }
}

fn print_list(list: &[Snapshot], output: &str) -> anyhow::Result<()> {
    match output {
        "json" => {
            let v: Vec<&Value> = list.iter().map(|s| &s.object).collect();
            let out = if v.len() == 1 {
                serde_json::to_string_pretty(v[0])?
            } else {
                serde_json::to_string_pretty(
                    &json!({"apiVersion": "v1", "kind": "List", "items": v}),
                )?
            };
            println!("{out}");
        }
        "yaml" => {
            for s in list {
                println!("---\n{}", serde_yaml::to_string(&s.object)?.trim_end());
            }
        }
        _ => {
            println!("{HEADER}");
            for s in list {
                println!("{}", row(s));
            }
        }
    }
    Ok(())
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.2}"))
}

async fn describe(b: &Backend, s: &Snapshot) -> anyhow::Result<()> {
    let st = &s.status;
    println!("Name:         {}", s.name);
    println!("Namespace:    {}", s.namespace);
    println!("Phase:        {}", st.phase.name());
    println!(
        "Weights:      canary {}%, primary {}% (max {}%)",
        st.canary_weight,
        100 - st.canary_weight,
        s.max_weight.unwrap_or(0)
    );
    println!(
        "Failed:       {} of {} checks allowed",
        st.failed_checks,
        s.threshold.unwrap_or(0)
    );
    println!(
        "Paused:       {}",
        s.paused
            .as_deref()
            .map_or("no".to_string(), |p| format!("yes ({p})"))
    );
    if let Some(r) = &st.last_applied_spec {
        println!("Revision:     {r} (last run started)");
    }
    if let Some(r) = &st.last_promoted_spec {
        println!("Primary runs: {r}");
    }
    if let Some(id) = &st.last_request {
        println!("Last request: {id} (acted on)");
    }
    if let Some(w) = &st.wait {
        println!(
            "Waiting for:  {} since {} until {}{}",
            w.reason,
            w.since.0,
            w.deadline.0,
            w.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    println!("Conditions:");
    for c in st.conditions.iter().flatten() {
        println!(
            "  {:<18} {:<8} {:<22} {}",
            c.r#type,
            c.status,
            c.reason,
            c.message.as_deref().unwrap_or_default()
        );
    }
    println!("Checks:");
    let checks = st.checks.clone().unwrap_or_default();
    if checks.is_empty() {
        println!("  (none run yet)");
    }
    for c in &checks {
        let threshold = match (c.min, c.max) {
            (Some(a), Some(b)) => format!("{a} ≤ x ≤ {b}"),
            (Some(a), None) => format!("≥ {a}"),
            (None, Some(b)) => format!("≤ {b}"),
            (None, None) => "-".to_string(),
        };
        let verdict = match c.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::NoData => "no data",
            Verdict::Error => "error",
        };
        println!(
            "  {:<28} value {:<10} threshold {:<16} {}",
            c.name,
            num(c.value),
            threshold,
            verdict
        );
        if let Some(q) = &c.query {
            println!("      query: {}", q.replace('\n', " "));
        }
        if let Some(m) = &c.message {
            println!("      {m}");
        }
    }
    println!("Webhooks:");
    let hooks = st.webhooks.clone().unwrap_or_default();
    if hooks.is_empty() {
        println!("  (none called)");
    }
    for h in &hooks {
        println!(
            "  {:<20} {:<18} {:<6} status {} {}",
            h.name,
            h.r#type,
            if h.passed { "pass" } else { "FAIL" },
            h.status_code.map_or("-".to_string(), |c| c.to_string()),
            h.response.replace('\n', " ")
        );
    }
    if let Backend::Kube { .. } = b {
        println!("Events:");
        let events = b.events(&s.name).await;
        if events.is_empty() {
            println!("  (none)");
        }
        for e in events {
            println!("  {} {:<8} {:<20} {}", e.when, e.kind, e.reason, e.message);
        }
    }
    Ok(())
}

fn history(s: &Snapshot) {
    println!(
        "{:<28} {:<10} {:<18} WHY",
        "FINISHED", "OUTCOME", "REVISION"
    );
    for r in s.status.history.iter().flatten() {
        println!(
            "{:<28} {:<10} {:<18} {}",
            r.finished.0.to_string(),
            r.phase.name(),
            r.revision,
            r.message
        );
    }
}

async fn request(
    b: &Backend,
    name: Option<&str>,
    action: RequestAction,
) -> anyhow::Result<ExitCode> {
    let s = b.one(name).await?;
    let doc = RequestDoc::new(action, &b.user().await);
    b.change(&s, Change::Request(doc.clone())).await?;
    println!(
        "{}: {} requested (id {}); the operator acts on it at its next step, see `siskin describe {}`",
        s.name,
        action.name(),
        doc.id,
        s.name
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Goal {
    Succeeded,
    Failed,
    Promoted,
}

async fn wait(b: &Backend, a: WaitArgs) -> anyhow::Result<ExitCode> {
    let goal = match a.condition.as_str() {
        "Succeeded" => Goal::Succeeded,
        "Failed" => Goal::Failed,
        "Promoted" => Goal::Promoted,
        other => bail!("--for {other:?}: use Succeeded, Failed or Promoted"),
    };
    let timeout = siskin_api::duration::parse(&a.timeout)
        .map_err(|e| anyhow!("--timeout {:?}: {e}", a.timeout))?;
    let started = std::time::Instant::now();
    let mut last = String::new();
    loop {
        let s = b.one(a.name.as_deref()).await?;
        let st = &s.status;
        let r = format!(
            "{} weight {} failed checks {}",
            st.phase.name(),
            st.canary_weight,
            st.failed_checks
        );
        if r != last {
            eprintln!("{}: {r}", s.name);
            last = r;
        }
        // The outcome counts only for the target's revision as it is now, so a wait started
        // right after a new image was applied does not return the previous release's.
        let current = |spec: &Option<String>| match &s.revision {
            Some(rev) => spec.as_deref() == Some(rev.as_str()),
            None => true,
        };
        let settled = !s.pending_request;
        let promoted = settled
            && matches!(st.phase, Phase::Succeeded | Phase::Initialized)
            && current(&st.last_promoted_spec);
        let failed = settled && st.phase == Phase::Failed && current(&st.last_applied_spec);
        let met = match goal {
            Goal::Succeeded => st.phase == Phase::Succeeded && promoted,
            Goal::Promoted => promoted,
            Goal::Failed => failed,
        };
        if met {
            println!("{}: {}", s.name, a.condition);
            return Ok(ExitCode::SUCCESS);
        }
        let other = match goal {
            Goal::Succeeded | Goal::Promoted => failed,
            Goal::Failed => promoted,
        };
        if other {
            println!("{}: {} instead of {}", s.name, st.phase.name(), a.condition);
            return Ok(ExitCode::from(EXIT_OTHER_OUTCOME));
        }
        if started.elapsed() >= timeout {
            println!("{}: still {} after {}", s.name, st.phase.name(), a.timeout);
            return Ok(ExitCode::from(EXIT_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
