//! `siskin operator`: the Kubernetes adapter of the driver. Watches Canaries and their
//! targets, runs one driver step per Canary on its analysis interval in its Kubernetes world
//! (workloads, the provider's backend plans applied by one server-side-apply executor, status,
//! events), watches critical checks between steps; serves `/metrics`, `/healthz` and `/readyz`.

pub mod apply;
pub mod critical;
pub mod fleet;
pub mod leader;
pub mod metrics;
pub mod outage;
pub mod reconcile;
pub mod status;
pub mod templates;
pub mod versions;
pub mod world;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{ConfigMap, Secret, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller,
        controller::Config as ControllerConfig,
        events::{Recorder, Reporter},
        reflector::ObjectRef,
        watcher,
    },
};
use siskin_api::{ApiGroup, Canary};
use tracing::{error, info};

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "siskin";
/// Finalizer added when `revertOnDeletion` is set.
pub const FINALIZER: &str = "siskin.dev/finalizer";

/// Settings of the operator that reconciles need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The API group served.
    pub group: ApiGroup,
    /// Candidate selector label keys, in order (`--selector-labels`).
    pub selector_labels: Vec<String>,
    /// Provider used when a Canary names none (`--mesh-provider`).
    pub default_provider: siskin_api::Provider,
    /// The router's Service, `namespace/name`.
    pub router_service: (String, String),
    /// What the workload plans follow (`--include-label-prefix`, `--enable-config-tracking`).
    pub workloads: crate::workloads::Settings,
    /// Prometheus for built-in checks outside the router and inline queries
    /// (`--metrics-server`; a Canary's `spec.metricsServer` wins).
    pub metrics_server: String,
}

/// Arguments of `siskin operator` (Flagger's flag names where they exist; each also an
/// environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Kubeconfig file (default: in-cluster, then ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "SISKIN_NAMESPACE")]
    namespace: Option<String>,
    /// Provider for Canaries that name none.
    #[arg(long, env = "SISKIN_MESH_PROVIDER", default_value = "builtin")]
    mesh_provider: String,
    /// API group of the Canaries to serve: siskin.dev, or flagger.app for Flagger's own CRDs.
    #[arg(long, env = "SISKIN_API_GROUP", default_value = "siskin.dev")]
    api_group: String,
    /// Port of /metrics, /healthz and /readyz.
    #[arg(long, env = "SISKIN_PORT", default_value_t = 8080)]
    port: u16,
    /// Address to bind the port to.
    #[arg(long, env = "SISKIN_LISTEN_ADDRESS", default_value = "0.0.0.0")]
    listen_address: std::net::IpAddr,
    /// How often every Canary is looked at even without changes.
    #[arg(long, env = "SISKIN_CONTROL_LOOP_INTERVAL", default_value = "10s")]
    control_loop_interval: String,
    /// Log level (debug, info, warn, error).
    #[arg(long, env = "SISKIN_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log encoding: json or console.
    #[arg(
        long,
        alias = "zap-encoding",
        env = "SISKIN_LOG_ENCODING",
        default_value = "json"
    )]
    log_encoding: String,
    /// Selector label keys that tell a workload's pods apart, in order of preference.
    #[arg(
        long,
        env = "SISKIN_SELECTOR_LABELS",
        default_value = "app,name,app.kubernetes.io/name"
    )]
    selector_labels: String,
    /// Track the ConfigMaps and Secrets the target uses: a change starts a release, and the
    /// primary runs on `-primary` copies.
    #[arg(long, env = "SISKIN_ENABLE_CONFIG_TRACKING", default_value_t = true, action = clap::ArgAction::Set)]
    enable_config_tracking: bool,
    /// Label and annotation key prefixes copied to primary objects (`*`: all).
    #[arg(long, env = "SISKIN_INCLUDE_LABEL_PREFIX", default_value = "")]
    include_label_prefix: String,
    /// Run only while holding the leader Lease.
    #[arg(long, env = "SISKIN_ENABLE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    enable_leader_election: bool,
    /// Namespace of the leader Lease (default: POD_NAMESPACE, else siskin-system).
    #[arg(long, env = "SISKIN_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// The router's Service (`namespace/name`); port `http` carries traffic, `admin` /stats.
    #[arg(
        long,
        env = "SISKIN_ROUTER_SERVICE",
        default_value = "siskin-system/siskin-router"
    )]
    router_service: String,
    /// Prometheus for the built-in checks of providers other than builtin and for inline
    /// queries; a Canary's spec.metricsServer wins.
    #[arg(
        long,
        env = "SISKIN_METRICS_SERVER",
        default_value = "http://prometheus:9090"
    )]
    metrics_server: String,
    /// Cluster name in alerts (a `Cluster` field on every message).
    #[arg(long, env = "SISKIN_CLUSTER_NAME", default_value = "")]
    cluster_name: String,
    /// Webhook told every event of Canaries that have no `event` webhook of their own.
    #[arg(long, env = "EVENT_WEBHOOK_URL")]
    event_webhook: Option<String>,
    /// Where alerts of Canaries without analysis.alerts go.
    #[command(flatten)]
    alerts: crate::alerts::GlobalAlertArgs,
    /// Canaries reconciled at once.
    #[arg(long, env = "SISKIN_THREADINESS", default_value_t = 2)]
    threadiness: u16,
    /// The dashboard.
    #[command(flatten)]
    dashboard: crate::dashboard::DashboardArgs,
}

fn init_logs(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{},kube=warn,hyper=warn,tower=warn",
        args.log_level
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if args.log_encoding == "json" {
        let _ = builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init();
    } else {
        let _ = builder.try_init();
    }
}

async fn client(args: &Args) -> anyhow::Result<Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// Runs the operator until it is killed or loses leadership.
pub async fn run(args: Args) -> anyhow::Result<()> {
    init_logs(&args);
    let group = match args.api_group.as_str() {
        "siskin.dev" => ApiGroup::Siskin,
        "flagger.app" => ApiGroup::Flagger,
        other => anyhow::bail!("--api-group {other:?}: use siskin.dev or flagger.app"),
    };
    let default_provider = crate::backends::REGISTRY
        .resolve(&args.mesh_provider)
        .map_err(|e| anyhow::anyhow!("--mesh-provider: {e}"))?
        .provider();
    let loop_interval = siskin_api::duration::parse(&args.control_loop_interval)
        .map_err(|e| anyhow::anyhow!("--control-loop-interval: {e}"))?;
    let (router_ns, router_name) = args.router_service.split_once('/').ok_or_else(|| {
        anyhow::anyhow!(
            "--router-service {:?}: write namespace/name, e.g. siskin-system/siskin-router",
            args.router_service
        )
    })?;
    let client = client(&args).await?;
    let settings = Arc::new(Settings {
        group,
        selector_labels: split_list(&args.selector_labels),
        default_provider,
        router_service: (router_ns.to_string(), router_name.to_string()),
        workloads: crate::workloads::Settings {
            include_label_prefix: split_list(&args.include_label_prefix),
            config_tracking: args.enable_config_tracking,
        },
        metrics_server: args.metrics_server.clone(),
    });
    let metrics = Arc::new(metrics::Metrics::default());
    metrics
        .info
        .get_or_create(&vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("mesh_provider", args.mesh_provider.clone()),
        ])
        .set(1);
    let ready = Arc::new(AtomicBool::new(false));
    let addr = SocketAddr::new(args.listen_address, args.port);
    tokio::spawn(serve(addr, metrics.clone(), ready.clone()));
    client.apiserver_version().await?;
    ready.store(true, Ordering::Relaxed);
    // Every replica serves the dashboard, leader or not: it reads the API and writes
    // annotations, which the leader acts on.
    tokio::spawn(crate::dashboard::serve(
        args.dashboard.clone(),
        client.clone(),
        group,
        args.namespace.clone(),
    ));

    let identity = format!(
        "{}_{:08x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "siskin".into()),
        siskin_router_rand()
    );
    let elector = args.enable_leader_election.then(|| {
        let ns = args
            .leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "siskin-system".into());
        Arc::new(leader::Elector::new(
            client.clone(),
            &ns,
            "siskin-leader-election",
            identity.clone(),
        ))
    });
    if let Some(e) = &elector {
        info!(identity = e.identity(), "waiting for the leader lease");
        e.acquire().await;
        info!(identity = e.identity(), "leading");
        metrics.leader.set(1);
        let e = e.clone();
        tokio::spawn(async move {
            e.keep().await;
            error!("leadership lost; exiting so that only one replica reconciles");
            std::process::exit(1);
        });
    }

    let canaries: Api<Canary> = match &args.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &group),
        None => Api::all_with(client.clone(), &group),
    };
    let deployments: Api<Deployment> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let daemonsets: Api<DaemonSet> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let router_slices: Api<EndpointSlice> = Api::namespaced(client.clone(), router_ns);
    // Metadata-only watches (PartialObjectMeta): Secrets' data never enters the operator's memory.
    let (services, config_maps, secrets): (
        Api<Service>,
        Api<PartialObjectMeta<ConfigMap>>,
        Api<PartialObjectMeta<Secret>>,
    ) = match &args.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let fleet = fleet::RouterFleet::new(
        client.clone(),
        settings.router_service.clone(),
        siskin_analysis::providers::router_stats::DEFAULT_MIN_SAMPLES,
    );
    let (trigger, failures) = tokio::sync::mpsc::unbounded_channel();
    let ctx = Arc::new(reconcile::Ctx {
        client: client.clone(),
        settings: settings.clone(),
        metrics: metrics.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "siskin".into(),
                instance: Some(identity.clone()),
            },
        ),
        hooks: siskin_webhooks::client::HookClient::new()?,
        event_webhook: crate::hooks::global_event_hook(args.event_webhook.as_deref()),
        alerts: {
            let metrics = metrics.clone();
            crate::alerts::Dispatch::new(
                args.alerts.destination(),
                args.cluster_name.clone(),
                Arc::new(move |kind, ok| {
                    metrics
                        .notifications
                        .get_or_create(&vec![
                            (
                                "provider",
                                kind.map_or("unknown", crate::hooks::alert_kind).to_string(),
                            ),
                            ("outcome", if ok { "sent" } else { "failed" }.to_string()),
                        ])
                        .inc();
                }),
            )
        },
        critical: Arc::new(critical::CriticalWatch::new(fleet.clone(), trigger)),
        versions: Arc::default(),
        outages: Arc::default(),
        fleet,
    });
    let controller = Controller::new_with(canaries, watcher::Config::default(), group);
    let store = controller.store();
    // Count Canaries per namespace on the control loop interval.
    {
        let store = store.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(loop_interval).await;
                let mut per_ns = std::collections::BTreeMap::<String, usize>::new();
                for c in store.state() {
                    *per_ns.entry(c.namespace().unwrap_or_default()).or_default() += 1;
                }
                for (ns, n) in per_ns {
                    metrics
                        .canaries
                        .get_or_create(&vec![("namespace", ns)])
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
        });
    }
    info!(group = group.name(), provider = %args.mesh_provider, "watching Canaries");
    // A change to a target (or its primary) reconciles the Canaries that name it.
    let owners = |store: kube::runtime::reflector::Store<Canary>| {
        move |ns: Option<String>, name: String| {
            store
                .state()
                .into_iter()
                .filter(|c| {
                    c.namespace() == ns
                        && (c.spec.target_name() == name || c.spec.primary_workload_name() == name)
                })
                .map(|c| ObjectRef::from_obj_with(c.as_ref(), group))
                .collect::<Vec<_>>()
        }
    };
    let by_deployment = owners(store.clone());
    let by_daemonset = owners(store.clone());
    // A ConfigMap or Secret changed: the Canaries of its namespace look at their tracked
    // configs.
    let in_namespace = |store: kube::runtime::reflector::Store<Canary>| {
        move |ns: Option<String>| {
            store
                .state()
                .into_iter()
                .filter(|c| c.namespace() == ns)
                .map(|c| ObjectRef::from_obj_with(c.as_ref(), group))
                .collect::<Vec<_>>()
        }
    };
    let by_config_map = in_namespace(store.clone());
    let by_secret = in_namespace(store.clone());
    // The router's pods changed: every Canary's apex endpoints follow at once.
    let every = store.clone();
    let router_selector = format!("kubernetes.io/service-name={router_name}");
    controller
        .watches(
            deployments,
            watcher::Config::default(),
            move |d: Deployment| by_deployment(d.namespace(), d.name_any()),
        )
        .watches(
            daemonsets,
            watcher::Config::default(),
            move |d: DaemonSet| by_daemonset(d.namespace(), d.name_any()),
        )
        .watches(config_maps, watcher::Config::default(), move |m| {
            by_config_map(m.namespace())
        })
        .watches(secrets, watcher::Config::default(), move |m| {
            by_secret(m.namespace())
        })
        // The Services it generated: one deleted or edited by hand is put back.
        .owns(services, watcher::Config::default())
        .watches(
            router_slices,
            watcher::Config::default().labels(&router_selector),
            move |_: EndpointSlice| {
                every
                    .state()
                    .into_iter()
                    .map(|c| ObjectRef::from_obj_with(c.as_ref(), group))
                    .collect::<Vec<_>>()
            },
        )
        // A critical check failed on live data: that Canary's step runs now.
        .reconcile_on(tokio_stream_of(failures))
        .with_config(ControllerConfig::default().concurrency(args.threadiness))
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "reconcile");
            }
        })
        .await;
    Ok(())
}

/// The receiving end of a channel as a stream.
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

fn siskin_router_rand() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() ^ std::process::id().rotate_left(16)
}

async fn serve(addr: SocketAddr, metrics: Arc<metrics::Metrics>, ready: Arc<AtomicBool>) {
    use axum::{http::StatusCode, routing::get};
    let app = axum::Router::new()
        .route(
            "/metrics",
            get({
                let m = metrics.clone();
                move || async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
                        m.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "OK" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "OK")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not connected to the API server yet",
                    )
                }
            }),
        );
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            if let Err(e) = axum::serve(l, app).await {
                error!(error = %e, "HTTP server stopped");
            }
        }
        Err(e) => {
            error!(%addr, error = %e, "cannot bind the HTTP port");
            std::process::exit(2);
        }
    }
    let _ = Duration::ZERO;
}
