//! Upstreams Siskin runs itself: started when a route may point at them, stopped once none does.
//!
//! The process ids are persisted with the status, so a `siskin run` killed with SIGKILL adopts
//! the processes it left running instead of starting a second copy on the same port.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::spec::{ProcessSpec, Upstream};

/// How long a process that no route points at keeps running (requests in flight finish).
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Fewest seconds between two starts of the same upstream (a crashing command is not spun).
const RESTART_BACKOFF: Duration = Duration::from_secs(2);

/// A process as persisted: enough to adopt it after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// The upstream it serves.
    pub spec: ProcessSpec,
    /// Its process id.
    pub pid: u32,
}

struct Running {
    spec: ProcessSpec,
    pid: u32,
    /// Our child; None for a process adopted from a previous run.
    child: Option<tokio::process::Child>,
    started: Instant,
    unwanted_since: Option<Instant>,
}

/// The processes of one standalone file.
pub struct Processes {
    base_dir: PathBuf,
    log_prefix: PathBuf,
    running: BTreeMap<String, Running>,
    last_start: BTreeMap<String, Instant>,
    notes: Vec<String>,
}

// === impl Processes ===

impl Processes {
    /// Processes for the file at `file`; logs go to `<stem>.<port>.log` beside it.
    pub fn new(file: &Path, recorded: &[Recorded]) -> Processes {
        let base_dir = file
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut p = Processes {
            log_prefix: base_dir.join(stem),
            base_dir,
            running: BTreeMap::new(),
            last_start: BTreeMap::new(),
            notes: Vec::new(),
        };
        for r in recorded {
            if alive(r.pid) && runs(r.pid, &r.spec) {
                p.notes.push(format!(
                    "adopted {} (pid {}) from the previous run",
                    r.spec.address, r.pid
                ));
                p.running.insert(
                    r.spec.address.clone(),
                    Running {
                        spec: r.spec.clone(),
                        pid: r.pid,
                        child: None,
                        started: Instant::now(),
                        unwanted_since: None,
                    },
                );
            }
        }
        p
    }

    /// What happened since the last call (starts, exits, stops), for the log.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// What to persist.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.running
            .values()
            .map(|r| Recorded {
                spec: r.spec.clone(),
                pid: r.pid,
            })
            .collect()
    }

    /// Whether the process for `address` is running (true for plain addresses).
    pub fn is_up(&self, upstream: &Upstream) -> bool {
        match upstream {
            Upstream::Address(_) => true,
            Upstream::Process(p) => self.running.get(&p.address).is_some_and(|r| r.spec == *p),
        }
    }

    /// Starts what `wanted` lists and is not running (or exited), and stops what it no longer
    /// lists once the grace period has passed.
    pub fn reconcile(&mut self, wanted: &[&Upstream]) {
        let wanted: BTreeMap<&str, &ProcessSpec> = wanted
            .iter()
            .filter_map(|u| u.process())
            .map(|p| (p.address.as_str(), p))
            .collect();
        // Reap exits.
        let mut exited = Vec::new();
        let prefix = self.log_prefix.clone();
        for (addr, r) in &mut self.running {
            let gone = match r.child.as_mut() {
                Some(c) => match c.try_wait() {
                    Ok(Some(status)) => Some(status.to_string()),
                    Ok(None) => None,
                    Err(e) => Some(e.to_string()),
                },
                None => (!alive(r.pid)).then(|| "gone".to_string()),
            };
            if let Some(how) = gone {
                self.notes.push(format!(
                    "{addr} (pid {}) exited after {:.0?}: {how}; log in {}",
                    r.pid,
                    r.started.elapsed(),
                    log_path(&prefix, addr).display()
                ));
                exited.push(addr.clone());
            }
        }
        for addr in exited {
            self.running.remove(&addr);
        }
        // Stop what is not wanted, or wanted with another command.
        let now = Instant::now();
        let mut stopped = Vec::new();
        for (addr, r) in &mut self.running {
            let keep = wanted.get(addr.as_str()).is_some_and(|w| **w == r.spec);
            if keep {
                r.unwanted_since = None;
                continue;
            }
            let since = *r.unwanted_since.get_or_insert(now);
            let replaced = wanted.contains_key(addr.as_str());
            if replaced || now.duration_since(since) >= STOP_GRACE {
                terminate(r);
                self.notes
                    .push(format!("stopped {addr} (pid {}): no route uses it", r.pid));
                stopped.push(addr.clone());
            }
        }
        for addr in stopped {
            self.running.remove(&addr);
        }
        // Start what is missing.
        for (addr, spec) in wanted {
            if self.running.contains_key(addr) {
                continue;
            }
            if self
                .last_start
                .get(addr)
                .is_some_and(|t| t.elapsed() < RESTART_BACKOFF)
            {
                continue;
            }
            self.last_start.insert(addr.to_string(), Instant::now());
            match self.start(spec) {
                Ok(r) => {
                    self.notes.push(format!(
                        "started {addr} (pid {}): {}",
                        r.pid,
                        spec.command.join(" ")
                    ));
                    self.running.insert(addr.to_string(), r);
                }
                Err(e) => self.notes.push(format!(
                    "cannot start {addr} ({}): {e}",
                    spec.command.join(" ")
                )),
            }
        }
    }

    /// Stops every process (the run ends).
    pub fn stop_all(&mut self) {
        for r in self.running.values_mut() {
            terminate(r);
        }
        self.running.clear();
    }

    fn start(&self, spec: &ProcessSpec) -> std::io::Result<Running> {
        let (program, args) = spec
            .command
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty command"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path(&self.log_prefix, &spec.address))?;
        let dir = match &spec.dir {
            Some(d) if d.is_absolute() => d.clone(),
            Some(d) => self.base_dir.join(d),
            None => self.base_dir.clone(),
        };
        let child = tokio::process::Command::new(program)
            .args(args)
            .envs(&spec.env)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let pid = child.id().unwrap_or_default();
        Ok(Running {
            spec: spec.clone(),
            pid,
            child: Some(child),
            started: Instant::now(),
            unwanted_since: None,
        })
    }
}

/// `<stem>.<port>.log` beside the file.
fn log_path(prefix: &Path, addr: &str) -> PathBuf {
    let port = addr.rsplit(':').next().unwrap_or("upstream");
    PathBuf::from(format!("{}.{port}.log", prefix.display()))
}

/// Whether a process with this id exists (and is not a zombie we already reaped).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    !stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// Whether `pid` still runs this spec's program (process ids are reused).
fn runs(pid: u32, spec: &ProcessSpec) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let name = |s: &[u8]| -> String {
        let s = String::from_utf8_lossy(s).to_string();
        s.rsplit('/').next().unwrap_or_default().to_string()
    };
    match (argv.first(), spec.command.first()) {
        (Some(a), Some(b)) => name(a) == name(b.as_bytes()),
        _ => false,
    }
}

/// SIGTERM, so the process can finish its requests; a child is reaped in the background.
fn terminate(r: &mut Running) {
    if let Some(pid) = rustix::process::Pid::from_raw(i32::try_from(r.pid).unwrap_or(0)) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if let Some(mut child) = r.child.take() {
        tokio::spawn(async move {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        });
    }
}
