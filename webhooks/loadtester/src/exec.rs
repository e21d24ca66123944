//! Running real processes for `bash`, `helm`, `helmv3`, `kubectl` and non-built-in `cmd` tasks
//! (only with `--enable-exec`). Each runs in its own process group, killed whole when the
//! load tester's `--timeout` passes or the caller goes away.

use std::{process::Stdio, time::Duration};

/// How a process ended.
#[derive(Debug)]
pub struct Output {
    /// Exit status 0.
    pub success: bool,
    /// Standard output, then standard error.
    pub text: String,
}

/// Kills a process group when dropped, unless disarmed after the leader exited by itself.
struct GroupGuard {
    pid: Option<rustix::process::Pid>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Runs `program args…` to its end or until `limit`; the error says what went wrong.
pub async fn run(program: &str, args: &[String], limit: Duration) -> Result<Output, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut guard = GroupGuard {
        pid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw),
    };
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            guard.pid = None;
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            if !out.status.success() {
                text.push_str(&format!("\n{program}: {}", out.status));
            }
            Ok(Output {
                success: out.status.success(),
                text,
            })
        }
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Err(_) => Err(format!(
            "{program} did not finish within --timeout {}; killed",
            crate::duration::format(limit)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn runs_and_reports_output() {
        let out = run(
            "sh",
            &args(&["-c", "echo out; echo err >&2"]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(out.success);
        assert_eq!(out.text, "out\nerr\n");
        let out = run("sh", &args(&["-c", "exit 3"]), Duration::from_secs(10))
            .await
            .unwrap();
        assert!(!out.success);
        assert!(out.text.contains("exit status: 3"), "{}", out.text);
        assert!(
            run("no-such-binary-here", &[], Duration::from_secs(1))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn kills_the_whole_group_on_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let err = run("sh", &args(&["-c", &script]), Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background sleep was in the group: it is gone (or a zombie being reaped).
        let mut gone = false;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(gone, "sleep {pid} survived the timeout");
    }
}
