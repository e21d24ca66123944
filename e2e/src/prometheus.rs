//! A real Prometheus (Debian's `prometheus` package) on loopback for tests: it scrapes the
//! targets it is given every second, can start from series written into its storage with
//! `promtool tsdb create-blocks-from openmetrics` (mesh metrics no local data plane produces),
//! and can require basic auth. Stopped when dropped.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{Error, Result, io};

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its data folder (removed when dropped).
    pub dir: PathBuf,
}

/// How to start it.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `host:port` targets scraped every second (path `/metrics`).
    pub scrape: Vec<String>,
    /// OpenMetrics text written into the storage before it starts.
    pub openmetrics: Option<String>,
    /// A user and the bcrypt hash of their password, required on every request.
    pub basic_auth: Option<(String, String)>,
}

fn which(program: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "{program} is not installed: apt-get install prometheus (scripts/test-all.sh does)"
        )))
    }
}

// === impl Prometheus ===

impl Prometheus {
    /// Starts Prometheus and waits until it answers queries.
    pub fn start(opts: &Options) -> Result<Prometheus> {
        which("prometheus")?;
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("siskin-prometheus-{port}"));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(io(format!("create {}", data.display())))?;
        if let Some(text) = &opts.openmetrics {
            which("promtool")?;
            let file = dir.join("series.om");
            std::fs::write(&file, text).map_err(io("write the OpenMetrics series"))?;
            let out = Command::new("promtool")
                .args(["tsdb", "create-blocks-from", "openmetrics"])
                .arg(&file)
                .arg(&data)
                .output()
                .map_err(io("run promtool"))?;
            if !out.status.success() {
                return Err(Error::Setup(format!(
                    "promtool refused the series: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        let targets: Vec<String> = opts.scrape.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: test\n  static_configs:\n  - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).map_err(io("write prometheus.yml"))?;
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=1d")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("prometheus.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            );
        if let Some((user, hash)) = &opts.basic_auth {
            let web = dir.join("web.yml");
            std::fs::write(&web, format!("basic_auth_users:\n  {user}: {hash}\n"))
                .map_err(io("write web.yml"))?;
            cmd.arg(format!("--web.config.file={}", web.display()));
        }
        let child = cmd.spawn().map_err(io("start prometheus"))?;
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                return Err(Error::Timeout {
                    what: "prometheus listening".into(),
                    secs: started.elapsed().as_secs(),
                    saw: p.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(p)
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Freezes it (SIGSTOP): connections are accepted by the kernel but nothing answers, as
    /// a Prometheus stuck in a long GC or on a dead disk looks, until [`Prometheus::thaw`].
    pub fn freeze(&self) -> Result<()> {
        self.signal("STOP")
    }

    /// Lets a frozen Prometheus run again (SIGCONT).
    pub fn thaw(&self) -> Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args([format!("-{signal}"), pid.clone()])
            .status()
            .map_err(io("run kill"))?
            .success();
        if ok {
            Ok(())
        } else {
            Err(Error::Setup(format!(
                "kill -{signal} prometheus ({pid}) failed"
            )))
        }
    }

    /// Stops it (queries fail from now on).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
