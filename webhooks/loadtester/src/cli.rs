//! Command-line flags (every one also an environment variable) and the [`Config`] they give.
//! Flagger's single-dash spellings (`-port=8080`, `-timeout=1h`, `-namespace-regexp=…`,
//! `-log-level=info`) are accepted, so its manifests carry over.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use regex::Regex;

/// siskin-loadtester: Flagger's load-tester API with a built-in hey/ghz load generator.
#[derive(Debug, Parser)]
#[command(name = "siskin-loadtester", version, about)]
pub struct Cli {
    /// Port to listen on.
    #[arg(long, env = "SISKIN_LOADTESTER_PORT", default_value_t = 9090)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "SISKIN_LOADTESTER_ADDRESS", default_value = "0.0.0.0")]
    pub address: std::net::IpAddr,
    /// Longest a command or load run may take (Go duration: 30s, 5m, 1h).
    #[arg(long, env = "SISKIN_LOADTESTER_TIMEOUT", default_value = "1h", value_parser = crate::duration::parse)]
    pub timeout: Duration,
    /// Tasks are refused (403) unless the payload's namespace matches this regular expression.
    #[arg(long, env = "SISKIN_LOADTESTER_NAMESPACE_REGEXP")]
    pub namespace_regexp: Option<String>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, env = "SISKIN_LOADTESTER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log as JSON lines (Flagger's zap encoding) or plain text.
    #[arg(long, env = "SISKIN_LOADTESTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Run real processes: bash, helm, helmv3 and kubectl tasks, and cmd tasks that are not the
    /// built-in hey/ghz. Off, they are refused with 403.
    #[arg(long, env = "SISKIN_LOADTESTER_ENABLE_EXEC")]
    pub enable_exec: bool,
    /// Keep gates in this JSON file.
    #[arg(
        long,
        env = "SISKIN_LOADTESTER_GATES_FILE",
        conflicts_with = "gates_configmap"
    )]
    pub gates_file: Option<PathBuf>,
    /// Keep gates in this ConfigMap (NAMESPACE/NAME), created when missing; in-cluster config or KUBECONFIG.
    #[arg(long, env = "SISKIN_LOADTESTER_GATES_CONFIGMAP", value_parser = parse_configmap)]
    pub gates_configmap: Option<(String, String)>,
    /// Accepted for Flagger compatibility; ignored (see --log-format).
    #[arg(long, hide = true)]
    pub zap_encoding: Option<String>,
    /// Accepted for Flagger compatibility; ignored.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub zap_replace_globals: Option<String>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object a line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Where gates are kept.
#[derive(Debug, Clone, PartialEq)]
pub enum GatesStore {
    /// In memory only (lost on restart).
    Memory,
    /// A JSON file.
    File(PathBuf),
    /// A ConfigMap.
    ConfigMap {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// The load tester's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Longest a command or load run may take.
    pub timeout: Duration,
    /// Namespaces whose tasks run (None: all).
    pub namespace_regexp: Option<Regex>,
    /// Whether real processes may run.
    pub enable_exec: bool,
    /// Where gates are kept.
    pub gates: GatesStore,
}

/// Long flags Flagger spells with one dash.
const LONG_FLAGS: &[&str] = &[
    "port",
    "address",
    "timeout",
    "namespace-regexp",
    "log-level",
    "log-format",
    "enable-exec",
    "gates-file",
    "gates-configmap",
    "zap-encoding",
    "zap-replace-globals",
];

/// Rewrites `-port=8080` and `-port 8080` to `--port…` for the flags above; anything else is
/// left for clap.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let single = i > 0 && a.starts_with('-') && !a.starts_with("--");
            let name = a
                .trim_start_matches('-')
                .split('=')
                .next()
                .unwrap_or_default();
            if single && LONG_FLAGS.contains(&name) {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

fn parse_configmap(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("{s:?} must be NAMESPACE/NAME")),
    }
}

// === impl Cli ===

impl Cli {
    /// The settings; a bad regular expression is an error naming the flag.
    pub fn config(&self) -> anyhow::Result<Config> {
        let namespace_regexp = match self.namespace_regexp.as_deref() {
            None | Some("") => None,
            Some(re) => Some(
                Regex::new(re).map_err(|e| anyhow::anyhow!("--namespace-regexp {re:?}: {e}"))?,
            ),
        };
        let gates = match (&self.gates_file, &self.gates_configmap) {
            (Some(f), _) => GatesStore::File(f.clone()),
            (None, Some((namespace, name))) => GatesStore::ConfigMap {
                namespace: namespace.clone(),
                name: name.clone(),
            },
            (None, None) => GatesStore::Memory,
        };
        Ok(Config {
            listen: SocketAddr::new(self.address, self.port),
            timeout: self.timeout,
            namespace_regexp,
            enable_exec: self.enable_exec,
            gates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args = std::iter::once("siskin-loadtester")
            .chain(args.iter().copied())
            .map(String::from);
        Cli::try_parse_from(normalize_args(args))
    }

    #[test]
    fn accepts_flaggers_spellings() {
        let cli = parse(&[
            "-port=8080",
            "-log-level=info",
            "-timeout=1h",
            "-namespace-regexp=^test$",
        ])
        .unwrap();
        assert_eq!(cli.port, 8080);
        assert_eq!(cli.timeout, Duration::from_secs(3600));
        assert_eq!(cli.log_level, "info");
        let cfg = cli.config().unwrap();
        assert!(cfg.namespace_regexp.unwrap().is_match("test"));
        assert_eq!(cfg.gates, GatesStore::Memory);
        let cli = parse(&[
            "-port",
            "8081",
            "-zap-encoding=json",
            "-zap-replace-globals",
        ])
        .unwrap();
        assert_eq!(cli.port, 8081);
    }

    #[test]
    fn defaults_and_stores() {
        let cli = parse(&[]).unwrap();
        assert_eq!((cli.port, cli.timeout), (9090, Duration::from_secs(3600)));
        assert!(!cli.enable_exec);
        let cfg = parse(&["--gates-configmap=test/siskin-loadtester-gates"])
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(
            cfg.gates,
            GatesStore::ConfigMap {
                namespace: "test".into(),
                name: "siskin-loadtester-gates".into()
            }
        );
        assert!(parse(&["--gates-configmap=nope"]).is_err());
        assert!(parse(&["--gates-file=/a", "--gates-configmap=a/b"]).is_err());
        assert!(parse(&["--timeout=10"]).is_err());
        assert!(parse(&["--namespace-regexp=("]).unwrap().config().is_err());
        // an empty regexp (Flagger's chart default) allows every namespace
        assert!(
            parse(&["-namespace-regexp="])
                .unwrap()
                .config()
                .unwrap()
                .namespace_regexp
                .is_none()
        );
    }
}
