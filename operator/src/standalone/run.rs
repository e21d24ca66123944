//! `siskin run`: the standalone adapter of the driver — upstreams listed in a file, the router
//! in-process.
//!
//! Every step: read the file again if it changed, keep the upstreams' processes running, and
//! run one driver step in the file's world (routes are written for the in-process router,
//! which reloads them atomically; the status is persisted next to the file so a killed run
//! resumes where it stopped). Between steps the critical checks are watched on the router's
//! live statistics.

use std::{path::Path, sync::Arc, time::Duration};

use siskin_analysis::providers::router_stats::{DEFAULT_MIN_SAMPLES, RouterStatsProvider};
use siskin_analysis::{Analyzer, ProviderError, Secrets, resolve::Context};
use siskin_api::{Phase, validate};
use siskin_driver::{Release, Seams, SystemClock, watch_critical};
use siskin_router::{Options, Router, Source};

use super::{
    spec::{NAMESPACE, StandaloneFile, Upstream, load},
    world::{FileWorld, Output},
};
use crate::backends::REGISTRY;

/// How often critical checks read the live window between steps.
const CRITICAL_POLL: Duration = Duration::from_millis(200);

/// Options of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Stop once the current release has settled, returning its phase.
    pub once: bool,
    /// Canary addresses given on the command line: they replace the file's `canary` list.
    pub canary: Vec<String>,
    /// Hand traffic back to the file's `canary` upstreams without analysis and retire the
    /// primary (the standalone `revertOnDeletion`).
    pub revert: bool,
    /// Where reports go.
    pub output: Output,
    /// The global event webhook (`--event-webhook`).
    pub event_webhook: Option<String>,
    /// Where alerts go when the file names none (`--slack-url`, `--msteams-url`, …).
    pub alerts: Option<siskin_webhooks::notify::Destination>,
}

/// The problems `siskin run` refuses a file for: its own rules and the Canary's.
pub fn problems(file: &StandaloneFile) -> Vec<String> {
    let mut errors = super::spec::problems(file);
    errors.extend(
        validate::canary(
            &file.canary(),
            &validate::Options {
                default_provider: siskin_api::Provider::Builtin,
                backends: &REGISTRY,
            },
        )
        .iter()
        .filter(|p| p.is_error())
        .map(ToString::to_string),
    );
    errors
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
    let errors = problems(&file);
    if !errors.is_empty() {
        for p in &errors {
            eprintln!("{}: {p}", path.display());
        }
        anyhow::bail!("{} has {} error(s)", path.display(), errors.len());
    }
    let world = FileWorld::new(path, file.clone(), canary_override, opts.output.clone())?;
    let status = world.status();
    if status.phase != Phase::Unset {
        world.say(format!(
            "resuming {} at {} (weight {})",
            file.name, status.phase, status.canary_weight
        ));
    }
    // The router starts on the routes the status describes, so a resumed run serves at once.
    let config = world
        .routes_for(&file.canary().spec)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    world
        .write_routes(&config)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let router = Router::new(Options {
        drain_timeout: Duration::from_secs(5),
        ..Options::new(
            Source::File(world.routes_path().to_path_buf()),
            file.listen,
            file.admin_addr,
        )
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    tokio::spawn(router.run());
    world.say(format!(
        "{}: serving on {}, admin on {}",
        file.name, file.listen, file.admin_addr
    ));
    let result = drive(&world, &opts).await;
    world.stop_all();
    result
}

/// The file's `secrets`.
struct FileSecrets(std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>);

#[async_trait::async_trait]
impl Secrets for FileSecrets {
    async fn secret(
        &self,
        _namespace: &str,
        name: &str,
    ) -> Result<std::collections::BTreeMap<String, Vec<u8>>, ProviderError> {
        self.0
            .get(name)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                    .collect()
            })
            .ok_or_else(|| ProviderError::Config(format!("no secrets entry named {name:?}")))
    }
}

async fn drive(world: &FileWorld, opts: &RunOptions) -> anyhow::Result<Phase> {
    let router = RouterStatsProvider::new(
        format!("http://{}", world.file().admin_addr),
        DEFAULT_MIN_SAMPLES,
    );
    let webhooks = siskin_webhooks::client::HookClient::new()?;
    let event_webhook = crate::hooks::global_event_hook(opts.event_webhook.as_deref());
    let dispatch =
        crate::alerts::Dispatch::new(opts.alerts.clone(), String::new(), Arc::new(|_, _| {}));
    let result = drive_with(
        world,
        opts,
        &router,
        &webhooks,
        event_webhook.as_ref(),
        &dispatch,
    )
    .await;
    // The last messages (Succeeded, Failed) go out before siskin exits.
    dispatch.flush(Duration::from_secs(10)).await;
    result
}

async fn drive_with(
    world: &FileWorld,
    opts: &RunOptions,
    router: &RouterStatsProvider,
    webhooks: &siskin_webhooks::client::HookClient,
    event_webhook: Option<&siskin_api::CanaryWebhook>,
    dispatch: &crate::alerts::Dispatch,
) -> anyhow::Result<Phase> {
    let mut critical = None;
    loop {
        world.reload_file();
        world.reconcile_processes();
        let file = world.file();
        let canary = file.canary();
        let before = world.status();
        let route = file.route();
        let templates = file.templates();
        let secrets = FileSecrets(file.secrets.clone());
        let metrics = Analyzer {
            cx: Context {
                vars: crate::analysis::vars(&canary, NAMESPACE),
                provider: siskin_api::Provider::Builtin,
                metrics_server: file.metrics_server.as_deref(),
                route: &route,
                templates: &templates,
                checks: canary.spec.analysis().checks_per_run(),
            },
            router,
            secrets: &secrets,
            kube: None,
        };
        let providers = FileAlertProviders(file.alert_providers.clone(), file.secrets.clone());
        let notifier = Terminal {
            world,
            alerts: crate::alerts::CanaryAlerts {
                dispatch,
                alerts: canary.spec.analysis().alerts.clone().unwrap_or_default(),
                namespace: NAMESPACE.to_string(),
                providers: &providers,
            },
        };
        let seams = Seams {
            platform: world,
            traffic: world,
            metrics: &metrics,
            webhooks,
            notifier: &notifier,
            events: world,
            store: world,
            clock: &SystemClock,
            event_webhook,
        };
        let control = match world.control() {
            Ok(c) => c,
            Err(e) => {
                // Nothing is decided on a request that cannot be read.
                world.say(format!("control file refused, the release waits: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let release = Release {
            name: &file.name,
            namespace: NAMESPACE,
            spec: &canary.spec,
            status: &before,
            deleting: opts.revert,
            control: &control,
        };
        let outcome = match siskin_driver::step(&release, &seams, critical.take()).await {
            Ok(o) => o,
            Err(e) if e.is_transient() => {
                world.say(format!("step failed, retrying: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => anyhow::bail!("{e}"),
        };
        let phase = outcome.status.phase;
        if before.phase != phase {
            world.say(format!(
                "phase {phase} (canary weight {})",
                outcome.status.canary_weight
            ));
        }
        let settled = if opts.revert {
            phase == Phase::Terminated
        } else {
            matches!(phase, Phase::Succeeded | Phase::Failed)
        };
        if opts.once && settled {
            return Ok(phase);
        }
        // Between steps, watch the critical checks (fast failure).
        let wait = outcome
            .requeue_after
            .clamp(CRITICAL_POLL, Duration::from_secs(2));
        critical = watch_critical(
            &canary.spec,
            &outcome.status,
            &metrics,
            &SystemClock,
            CRITICAL_POLL,
            wait,
        )
        .await;
        if let Some(f) = &critical {
            world.say(format!(
                "critical check failed on live data: {} = {}",
                f.name,
                f.value.map_or("-".into(), |v| format!("{v:.1}"))
            ));
        }
    }
}

/// The file's `alertProviders`, their `secretRef`s read from its `secrets`.
struct FileAlertProviders(
    Vec<super::spec::NamedAlertProvider>,
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
);

#[async_trait::async_trait]
impl crate::alerts::Providers for FileAlertProviders {
    async fn resolve(
        &self,
        _namespace: &str,
        name: &str,
    ) -> Result<siskin_webhooks::notify::Destination, String> {
        let p = self
            .0
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("no alertProviders entry named {name:?}; add one"))?;
        let secret = match &p.spec.secret_ref {
            Some(r) => Some(self.1.get(&r.name).ok_or_else(|| {
                format!("alertProviders {name}: no secrets entry named {:?}", r.name)
            })?),
            None => None,
        };
        crate::alerts::destination(&p.spec, secret)
            .map_err(|e| format!("alertProviders {name}: {e}"))
    }
}

/// Alerts go to the terminal and to chat.
struct Terminal<'a> {
    world: &'a FileWorld,
    alerts: crate::alerts::CanaryAlerts<'a>,
}

#[async_trait::async_trait]
impl siskin_driver::Notifier for Terminal<'_> {
    async fn post(&self, n: &siskin_driver::Notification) -> Result<(), siskin_driver::Error> {
        siskin_driver::Notifier::post(self.world, n).await?;
        self.alerts.post(n).await
    }
}
