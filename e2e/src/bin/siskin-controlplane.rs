//! Starts the test control plane and keeps it open until interrupted, for poking at it with
//! `kubectl`: `cargo run -p siskin-e2e --bin siskin-controlplane`.

use std::time::Duration;

use siskin_e2e::ControlPlane;

fn main() -> anyhow::Result<()> {
    let plane = ControlPlane::start()?;
    println!("export KUBECONFIG={}", plane.kubeconfig.display());
    println!("# contexts: envtest (admin), as-operator (the operator's ServiceAccount)");
    println!(
        "# Ctrl-C stops etcd and kube-apiserver and removes {}",
        plane.dir.display()
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
