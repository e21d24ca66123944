//! Starts the test control plane and keeps it open until interrupted, for poking at it with
//! `kubectl`: `cargo run -p siskin-e2e --bin siskin-controlplane [-- --local-node NS...]`.
//!
//! With `--local-node NS` (repeatable), the harness's kubelet plays the node for namespace NS:
//! Deployments and DaemonSets run as `siskin sample-app` processes (`--sample-app PATH`,
//! default `siskin` on PATH) and their Services get EndpointSlices, so a Canary applied with
//! kubectl goes through a whole release.

use std::{path::PathBuf, time::Duration};

use siskin_e2e::{ControlPlane, kubelet::Kubelet};

fn main() -> anyhow::Result<()> {
    let mut namespaces = Vec::new();
    let mut sample_app = PathBuf::from("siskin");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--local-node" => namespaces.push(
                args.next()
                    .ok_or_else(|| anyhow::anyhow!("--local-node needs a namespace"))?,
            ),
            "--sample-app" => {
                sample_app = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--sample-app needs a path"))?
                    .into();
            }
            other => anyhow::bail!(
                "unknown argument {other:?}; usage: siskin-controlplane [--local-node NS]... [--sample-app PATH]"
            ),
        }
    }
    let plane = ControlPlane::start()?;
    println!("export KUBECONFIG={}", plane.kubeconfig.display());
    println!("# contexts: envtest (admin), as-operator (the operator's ServiceAccount)");
    println!(
        "# Ctrl-C stops etcd and kube-apiserver and removes {}",
        plane.dir.display()
    );
    if namespaces.is_empty() {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = plane.client().await?;
        let mut kubelets = Vec::new();
        for ns in &namespaces {
            println!(
                "# local node for namespace {ns} (sample app: {})",
                sample_app.display()
            );
            kubelets.push(Kubelet::start(client.clone(), ns, sample_app.clone()));
        }
        // Ctrl-C or SIGTERM: stop the sample apps (dropping the kubelets) and the plane.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        drop(kubelets);
        plane.stop();
        Ok::<(), anyhow::Error>(())
    })
}
