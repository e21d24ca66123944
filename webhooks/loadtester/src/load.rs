//! The built-in load generator: task command lines that start with `hey` or `ghz` are parsed
//! and run in-process, so no external binary is needed.

use std::{sync::Arc, time::Duration};

mod cmdline;
mod flags;
pub mod ghz;
pub mod hey;
pub mod stats;

pub use stats::Summary;

use crate::metrics::{CanaryLabels, Metrics};

/// Bounds every run obeys.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The load tester's `--timeout`: no run may be asked to last longer.
    pub max_duration: Duration,
}

/// How much load a run sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// For this long (`-z`).
    For(Duration),
    /// This many requests in total (`-n`).
    Requests(u64),
}

/// A command the built-in generator runs.
#[derive(Debug, Clone)]
pub enum Plan {
    /// An HTTP run.
    Hey(hey::HeyPlan),
    /// A gRPC health-check run.
    Ghz(ghz::GhzPlan),
}

/// Where a task's command line goes.
#[derive(Debug)]
pub enum Route {
    /// Run in-process.
    InProcess(Box<Plan>),
    /// Run as a process (needs `--enable-exec`). `why` says why the built-in generator cannot
    /// run it, when the command is `hey` or `ghz`.
    Process {
        /// Why it is not in-process (None: it is not hey or ghz at all).
        why: Option<String>,
        /// With `--enable-exec` off, answer 400 with `why` rather than 403.
        bad_request: bool,
    },
    /// A hey or ghz command that is wrong: a 400 with this message.
    Invalid(String),
}

/// What a run reports to and is bounded by.
#[derive(Clone)]
pub struct RunContext {
    /// The command line, for the results.
    pub command: String,
    /// The canary the run is for (metric labels).
    pub labels: CanaryLabels,
    /// Where per-request metrics go.
    pub metrics: Arc<Metrics>,
    /// The longest the run may take (the load tester's `--timeout`).
    pub limit: Duration,
}

/// Decides how to run `line`.
pub fn route(line: &str, limits: &Limits) -> Route {
    let words = match cmdline::split(line) {
        Ok(w) => w,
        Err(e) => {
            return match first_word(line) {
                Some("hey" | "ghz") => Route::Invalid(format!("cannot parse the command: {e}")),
                _ => Route::Process {
                    why: None,
                    bad_request: false,
                },
            };
        }
    };
    let tool = words.words.first().map(String::as_str);
    if !matches!(tool, Some("hey" | "ghz")) {
        return Route::Process {
            why: None,
            bad_request: false,
        };
    }
    if words.needs_shell {
        return Route::Process {
            why: Some(
                "the command uses shell syntax (pipes, &&, redirects, $variables), which the \
                 in-process generator does not run; quote it or run it through a shell"
                    .to_string(),
            ),
            bad_request: false,
        };
    }
    let args = &words.words[1..];
    match tool {
        Some("hey") => match hey::parse(args, limits) {
            Ok(p) => Route::InProcess(Box::new(Plan::Hey(p))),
            Err(e) => Route::Invalid(e),
        },
        _ => match ghz::parse(args, limits) {
            Ok(p) => Route::InProcess(Box::new(Plan::Ghz(p))),
            Err(ghz::GhzError::Invalid(e)) => Route::Invalid(e),
            Err(ghz::GhzError::NeedsBinary(why)) => Route::Process {
                why: Some(why),
                bad_request: true,
            },
        },
    }
}

/// A run's worker tasks, aborted when dropped: when the future awaiting a run is dropped (the
/// caller of a synchronous `bash` task went away), its workers stop sending at once rather
/// than running on to their deadline.
pub(crate) struct Workers<T> {
    handles: Vec<tokio::task::JoinHandle<T>>,
}

impl<T: Send + 'static> Workers<T> {
    /// Room for `n` workers.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Workers {
            handles: Vec::with_capacity(n),
        }
    }

    /// Starts one worker.
    pub(crate) fn spawn(&mut self, f: impl std::future::Future<Output = T> + Send + 'static) {
        self.handles.push(tokio::spawn(f));
    }

    /// Waits for every worker, in order.
    pub(crate) async fn join(mut self) -> Result<Vec<T>, tokio::task::JoinError> {
        let mut out = Vec::with_capacity(self.handles.len());
        for h in &mut self.handles {
            out.push(h.await?);
        }
        Ok(out)
    }
}

impl<T> Drop for Workers<T> {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

fn first_word(line: &str) -> Option<&str> {
    line.split_whitespace().next()
}

/// Runs a plan to its end.
pub async fn run(plan: Plan, ctx: RunContext) -> Result<Summary, String> {
    match plan {
        Plan::Hey(p) => hey::run(p, ctx).await,
        Plan::Ghz(p) => ghz::run(p, ctx).await,
    }
}

// === impl Limits ===

impl Limits {
    /// Refuses a run longer than `--timeout`.
    pub fn check_duration(&self, what: &str, d: Duration) -> Result<(), String> {
        if d > self.max_duration {
            return Err(format!(
                "{what} {} is longer than --timeout {}: raise the load tester's --timeout or \
                 shorten the run",
                crate::duration::format(d),
                crate::duration::format(self.max_duration)
            ));
        }
        Ok(())
    }
}

// === impl Plan ===

impl Plan {
    /// `hey` or `ghz`.
    pub fn tool(&self) -> &'static str {
        match self {
            Plan::Hey(_) => "hey",
            Plan::Ghz(_) => "ghz",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_duration: Duration::from_secs(3600),
        }
    }

    #[test]
    fn routes_command_lines() {
        assert!(matches!(
            route("hey -z 1m http://a/", &limits()),
            Route::InProcess(p) if matches!(*p, Plan::Hey(_))
        ));
        assert!(matches!(
            route(
                "ghz --insecure --call grpc.health.v1.Health/Check a:1",
                &limits()
            ),
            Route::InProcess(p) if matches!(*p, Plan::Ghz(_))
        ));
        assert!(matches!(
            route("curl -sf http://a/", &limits()),
            Route::Process { why: None, .. }
        ));
        assert!(matches!(
            route("hey http://a/ | tee x", &limits()),
            Route::Process {
                why: Some(_),
                bad_request: false
            }
        ));
        assert!(matches!(
            route("ghz --insecure --call a.B/C a:1", &limits()),
            Route::Process {
                why: Some(_),
                bad_request: true
            }
        ));
        assert!(matches!(
            route("hey -bogus http://a/", &limits()),
            Route::Invalid(_)
        ));
        assert!(matches!(route("hey 'open", &limits()), Route::Invalid(_)));
        assert!(matches!(
            route("echo 'open", &limits()),
            Route::Process { why: None, .. }
        ));
    }
}
