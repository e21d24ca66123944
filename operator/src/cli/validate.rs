//! `siskin validate FILE... | -`: what a GitOps pipeline runs before merge.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use siskin_api::{
    Provider,
    document::{Object, parse_stream},
    validate::{self, Options, Problem},
};

/// Arguments of `siskin validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories (searched for *.yaml and *.yml); `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    paths: Vec<PathBuf>,
    /// Provider assumed for Canaries without spec.provider (the operator's --mesh-provider).
    #[arg(long, env = "SISKIN_MESH_PROVIDER", default_value = "builtin", value_parser = parse_provider)]
    mesh_provider: Provider,
    /// Treat warnings as errors.
    #[arg(long)]
    strict: bool,
}

/// A provider with a backend (the registry is the one list).
fn parse_provider(s: &str) -> Result<Provider, String> {
    crate::backends::REGISTRY.resolve(s).map(|b| b.provider())
}

#[derive(Default)]
struct Tally {
    files: usize,
    canaries: usize,
    templates: usize,
    providers: usize,
    skipped: usize,
    errors: usize,
    warnings: usize,
    bad_objects: usize,
}

/// Validates every input and prints one line per problem and a summary.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let opts = Options {
        default_provider: args.mesh_provider,
        backends: &crate::backends::REGISTRY,
    };
    let mut inputs = Vec::new();
    for p in &args.paths {
        collect(p, &mut inputs)?;
    }
    let mut t = Tally::default();
    for input in &inputs {
        let (name, text) = read(input)?;
        t.files += 1;
        check_text(&name, &text, &opts, args.strict, &mut t);
    }
    let objects = t.canaries + t.templates + t.providers;
    let counts = format!(
        "{} file(s), {objects} object(s): {} Canary, {} MetricTemplate, {} AlertProvider{}",
        t.files,
        t.canaries,
        t.templates,
        t.providers,
        if t.skipped > 0 {
            format!(", {} other document(s) skipped", t.skipped)
        } else {
            String::new()
        }
    );
    if t.errors > 0 {
        println!(
            "{counts}; {} error(s) in {} object(s), {} warning(s)",
            t.errors, t.bad_objects, t.warnings
        );
        return Ok(ExitCode::FAILURE);
    }
    if objects == 0 {
        println!("{counts}; nothing to validate");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "{counts}; all valid{}",
        if t.warnings > 0 {
            format!(" ({} warning(s))", t.warnings)
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn check_text(name: &str, text: &str, opts: &Options<'_>, strict: bool, t: &mut Tally) {
    for doc in parse_stream(text) {
        if doc.foreign {
            t.skipped += 1;
            continue;
        }
        let mut problems = doc.problems.clone();
        match &doc.object {
            Some(Object::Canary(c)) => {
                t.canaries += 1;
                problems.extend(validate::canary(c, opts));
            }
            Some(Object::MetricTemplate(m)) => {
                t.templates += 1;
                problems.extend(validate::metric_template(m));
                if !siskin_analysis::registry::supported(m.spec.provider.r#type) {
                    problems.push(Problem::error(
                        "spec.provider.type",
                        format!(
                            "metrics provider {} is not supported by this Siskin yet",
                            siskin_analysis::resolve::type_name(m.spec.provider.r#type)
                        ),
                        &format!(
                            "use one of {}",
                            siskin_analysis::registry::supported_names().join(", ")
                        ),
                    ));
                }
            }
            Some(Object::AlertProvider(a)) => {
                t.providers += 1;
                problems.extend(validate::alert_provider(a));
            }
            None => match doc.kind.as_deref() {
                Some("Canary") => t.canaries += 1,
                Some("MetricTemplate") => t.templates += 1,
                Some("AlertProvider") => t.providers += 1,
                _ => {}
            },
        }
        let what = format!(
            "{name}: document {} (line {}) {} {}",
            doc.index,
            doc.line,
            doc.kind.as_deref().unwrap_or("(no kind)"),
            doc.name.as_deref().unwrap_or("(no name)")
        );
        let mut bad = false;
        for p in &problems {
            let error = p.is_error() || strict;
            bad |= error;
            print_problem(&what, p, error);
            if error {
                t.errors += 1;
            } else {
                t.warnings += 1;
            }
        }
        t.bad_objects += usize::from(bad);
    }
}

fn print_problem(what: &str, p: &Problem, error: bool) {
    let level = if error { "error" } else { "warning" };
    println!("{what}: {level}: {p}");
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path == Path::new("-") {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let yaml = p.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if p.is_dir() {
            collect(&p, out)?;
        } else if yaml {
            out.push(p);
        }
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<(String, String)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        return Ok(("<stdin>".to_string(), text));
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((path.display().to_string(), text))
}
