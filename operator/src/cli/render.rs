//! `siskin render`: every object the operator would apply for a Canary at a routing state,
//! printed for review (a GitOps pull request, a provider's golden test). It calls the same
//! plans as the operator: the primary workload, the generated Services, the provider's routing
//! objects, and the Canary with the status it would write.

use std::{io::Read as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use kube::ResourceExt;
use serde_json::{Value, json};
use siskin_api::{ApiGroup, Canary, Provider, Weight, validate};
use siskin_driver::RoutingIntent;
use siskin_engine::RouteState;

use crate::{
    backends::{Context, REGISTRY, plan_routing},
    kubernetes::status,
    objects::Cluster,
    workloads,
};

/// Arguments of `siskin render`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A YAML stream (`-`: standard input) holding the Canary (with its status, if any), its
    /// target workload and tracked ConfigMaps/Secrets, and any objects as they already are in
    /// the cluster (the route, the apex Service, the router's EndpointSlices).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The primary's share of traffic (the canary gets the rest).
    #[arg(long, value_name = "P")]
    primary_weight: Option<i64>,
    /// The canary's share of traffic (the primary gets the rest).
    #[arg(long, value_name = "C")]
    canary_weight: Option<i64>,
    /// Mirror requests to the canary (`analysis.mirrorWeight` percent of them).
    #[arg(long)]
    mirrored: bool,
    /// Output format: yaml (a stream of documents) or json (one v1 List).
    #[arg(short = 'o', long, default_value = "yaml", value_parser = ["yaml", "json"])]
    output: String,
    /// Provider for Canaries that name none (the operator's --mesh-provider).
    #[arg(long, env = "SISKIN_MESH_PROVIDER", default_value = "builtin")]
    mesh_provider: String,
    /// The router's Service (`namespace/name`), whose EndpointSlices the builtin apex mirrors.
    #[arg(long, default_value = "siskin-system/siskin-router")]
    router_service: String,
    /// Selector label keys that tell a workload's pods apart, in order of preference.
    #[arg(long, default_value = "app,name,app.kubernetes.io/name")]
    selector_labels: String,
    /// Label and annotation key prefixes copied to primary objects (`*`: all).
    #[arg(long, default_value = "")]
    include_label_prefix: String,
    /// Copy tracked ConfigMaps and Secrets for the primary.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_config_tracking: bool,
    /// Print, for each metric, the provider, the address and the query exactly as it would be
    /// sent, instead of the objects.
    #[arg(long)]
    queries: bool,
    /// Prometheus for built-in checks outside the router and inline queries (the operator's
    /// --metrics-server; a Canary's spec.metricsServer wins).
    #[arg(
        long,
        env = "SISKIN_METRICS_SERVER",
        default_value = "http://prometheus:9090"
    )]
    metrics_server: String,
    /// The time written into the status (RFC 3339; default: now), for reproducible output.
    #[arg(long, hide = true)]
    now: Option<jiff::Timestamp>,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// The canary's weight the flags ask for, if they ask for one.
fn flag_weight(args: &Args) -> anyhow::Result<Option<Weight>> {
    let w = |flag: &str, v: i64| {
        Weight::new(u8::try_from(v).unwrap_or(u8::MAX))
            .map_err(|e| anyhow::anyhow!("{flag} {v}: {e}"))
    };
    Ok(match (args.primary_weight, args.canary_weight) {
        (None, None) => None,
        (Some(p), None) => Some(w("--primary-weight", p)?.complement()),
        (None, Some(c)) => Some(w("--canary-weight", c)?),
        (Some(p), Some(c)) => {
            let (p, c) = (w("--primary-weight", p)?, w("--canary-weight", c)?);
            anyhow::ensure!(
                u16::from(p.get()) + u16::from(c.get()) == 100,
                "--primary-weight {p} and --canary-weight {c} must add up to 100"
            );
            Some(c)
        }
    })
}

fn read_input(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let text = read_input(&args.file)?;
    let mut canaries = Vec::new();
    let mut others = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let v: Value = serde::Deserialize::deserialize(doc)
            .with_context(|| format!("document {}: not YAML", i + 1))?;
        if v.is_null() {
            continue;
        }
        let kind = v["kind"].as_str().unwrap_or_default();
        let group = v["apiVersion"]
            .as_str()
            .map(ApiGroup::from_api_version)
            .and_then(Result::ok);
        if kind == "Canary" && group.is_some() {
            let c: Canary = serde_json::from_value(v)
                .with_context(|| format!("document {}: not a valid Canary", i + 1))?;
            canaries.push(c);
        } else if kind == "List" {
            others.extend(v["items"].as_array().cloned().unwrap_or_default());
        } else {
            others.push(v);
        }
    }
    anyhow::ensure!(
        !canaries.is_empty(),
        "{}: no Canary (siskin.dev/v1beta1 or flagger.app/v1beta1) in the input",
        args.file.display()
    );
    let default_provider = REGISTRY
        .resolve(&args.mesh_provider)
        .map_err(|e| anyhow::anyhow!("--mesh-provider: {e}"))?
        .provider();
    if args.queries {
        return queries(args, &canaries, &others, default_provider);
    }
    let mut items = Vec::new();
    for canary in &canaries {
        items.extend(render(args, canary, &others, default_provider)?);
    }
    match args.output.as_str() {
        "json" => {
            let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        _ => {
            for item in &items {
                print!("---\n{}", serde_yaml::to_string(item)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--queries`: what every metric asks, and where; exit 1 when one cannot be resolved.
fn queries(
    args: &Args,
    canaries: &[Canary],
    others: &[Value],
    default_provider: Provider,
) -> anyhow::Result<ExitCode> {
    let mut templates = crate::analysis::Templates::new();
    for v in others {
        let group = v["apiVersion"]
            .as_str()
            .map(ApiGroup::from_api_version)
            .and_then(Result::ok);
        if v["kind"] == "MetricTemplate" && group.is_some() {
            let t: siskin_api::MetricTemplate =
                serde_json::from_value(v.clone()).context("not a valid MetricTemplate")?;
            let ns = t.namespace().unwrap_or_else(|| "default".into());
            templates.insert((ns, t.name_any()), t.spec);
        }
    }
    let mut rows = Vec::new();
    let mut broken = 0;
    for canary in canaries {
        let ns = canary.namespace().unwrap_or_else(|| "default".into());
        let provider = canary.spec.provider.unwrap_or(default_provider);
        let route = format!("{ns}/{}", canary.spec.apex_name());
        let server = canary
            .spec
            .metrics_server
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| args.metrics_server.clone());
        let cx = siskin_analysis::resolve::Context {
            vars: crate::analysis::vars(canary, &ns),
            provider,
            metrics_server: Some(&server),
            route: &route,
            templates: &templates,
            checks: canary.spec.analysis().checks_per_run(),
        };
        for m in canary.spec.analysis().metrics.iter().flatten() {
            let mut row =
                json!({"canary": format!("{ns}/{}", canary.name_any()), "metric": m.name});
            match siskin_analysis::resolve(m, &cx, None) {
                Ok(r) => {
                    row["provider"] = json!(r.provider());
                    row["address"] = match r.address() {
                        Some(a) => json!(a),
                        None => json!(format!(
                            "the routers' admin ports ({})",
                            args.router_service
                        )),
                    };
                    row["query"] = json!(r.text());
                    if m.is_judge() {
                        // The level each check of a clean run is judged at.
                        let checks = canary.spec.analysis().checks_per_run();
                        row["alpha"] = json!(siskin_analysis::judge::alpha(m.confidence(), checks));
                        row["checksPerRun"] = json!(checks);
                    }
                }
                Err(e) => {
                    broken += 1;
                    row["error"] = json!(e.to_string());
                }
            }
            rows.push(row);
        }
    }
    match args.output.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&rows)?),
        _ => print!("{}", serde_yaml::to_string(&rows)?),
    }
    Ok(if broken > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn render(
    args: &Args,
    canary: &Canary,
    others: &[Value],
    default_provider: Provider,
) -> anyhow::Result<Vec<Value>> {
    let name = canary.name_any();
    let ns = canary.namespace().unwrap_or_else(|| "default".into());
    let group = canary.api_group().unwrap_or(ApiGroup::Siskin);
    let problems: Vec<String> = validate::canary(
        canary,
        &validate::Options {
            default_provider,
            backends: &REGISTRY,
        },
    )
    .into_iter()
    .filter(|p| p.is_error())
    .map(|p| p.to_string())
    .collect();
    anyhow::ensure!(
        problems.is_empty(),
        "Canary {ns}/{name} is invalid:\n  {}",
        problems.join("\n  ")
    );
    let mut cluster = Cluster::new();
    for o in others {
        let mut o = o.clone();
        // Objects without a namespace are the Canary's neighbours.
        if o["metadata"]["namespace"].is_null() && o["metadata"].is_object() {
            o["metadata"]["namespace"] = json!(ns);
        }
        cluster.insert(o);
    }
    let provider = canary.spec.provider.unwrap_or(default_provider);
    let backend = REGISTRY
        .get(provider)
        .ok_or_else(|| anyhow::anyhow!("provider {provider} has no backend"))?;
    let kind = workloads::kind_of(canary.spec.target_kind()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let target = canary.spec.target_name();
    let selector = workloads::selector(
        kind,
        &cluster,
        &ns,
        target,
        &split_list(&args.selector_labels),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .ok_or_else(|| {
        anyhow::anyhow!(
            "the target {} {ns}/{target} is not in the input; add it (kubectl get {} {target} -n {ns} -o yaml)",
            kind.name(),
            kind.name().to_ascii_lowercase()
        )
    })?;
    let (router_ns, router_name) = args.router_service.split_once('/').ok_or_else(|| {
        anyhow::anyhow!(
            "--router-service {:?}: write namespace/name",
            args.router_service
        )
    })?;
    let cx = Context {
        canary,
        namespace: &ns,
        selector: &selector,
        router_service: (router_ns, router_name),
        group,
    };
    let settings = workloads::Settings {
        include_label_prefix: split_list(&args.include_label_prefix),
        config_tracking: args.enable_config_tracking,
    };
    let (target_w, _) =
        workloads::observe(&cx, &settings, &cluster).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The routing state: the flags', else what the routing objects carry, else all on the
    // primary (as the operator starts).
    let (weight, mirrored) = match flag_weight(args)? {
        Some(w) => (w, args.mirrored),
        None => match backend
            .observe(&cx, &cluster, None)
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            RouteState::Applied(s) => (s.canary(), args.mirrored || s.mirror.is_some()),
            RouteState::Absent | RouteState::Converging => (Weight::ZERO, args.mirrored),
        },
    };
    let caps = backend.capabilities_for(&canary.spec);
    anyhow::ensure!(
        caps.weights || weight == Weight::ZERO || weight == Weight::FULL,
        "provider {provider} routes all traffic to one side: use a canary weight of 0 or 100, not {weight}"
    );
    anyhow::ensure!(
        !mirrored || caps.mirror,
        "provider {provider} cannot mirror traffic"
    );
    let before = status::read(canary);
    let now = args.now.unwrap_or_else(jiff::Timestamp::now);
    let after = siskin_engine::at_routing(
        &canary.spec,
        &before,
        target_w.as_ref(),
        weight,
        mirrored,
        now,
    );
    let intent =
        RoutingIntent::resolve(&canary.spec, &siskin_engine::routing(&canary.spec, &after))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out: Vec<Value> = Vec::new();
    for obj in workloads::plan_primary(&cx, &settings, &cluster, None)
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        out.push(obj.value);
    }
    for obj in plan_routing(backend, &cx, &intent, &cluster).map_err(|e| anyhow::anyhow!("{e}"))? {
        out.push(obj.value);
    }
    out.push(canary_with_status(canary, group, &after)?);
    Ok(out)
}

/// The Canary as the operator leaves it: its spec, and the status it writes (for
/// `flagger.app`, Siskin's own fields in the annotation).
fn canary_with_status(
    canary: &Canary,
    group: ApiGroup,
    status: &siskin_api::CanaryStatus,
) -> anyhow::Result<Value> {
    let (status_json, extras) = status::for_group(status, group)?;
    let mut c = canary.clone().with_group(group);
    c.status = None;
    c.metadata.managed_fields = None;
    if let Some(text) = extras {
        c.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(status::STATUS_ANNOTATION.to_string(), text);
    }
    let mut v = serde_json::to_value(&c)?;
    v["status"] = status_json;
    Ok(v)
}
