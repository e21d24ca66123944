//! `siskin get|describe|pause|resume|promote|abort|retry|wait|history` against a real API
//! server and a running operator, as a user and a CI pipeline would run them: a release
//! paused mid-step (and held while the Git copy of the Canary is applied again), promoted by
//! hand, one aborted, retried and promoted, with `wait`'s exit codes for each outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/scene.rs"]
mod scene;
use scene::*;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use siskin_e2e::ControlPlane;

/// Runs `program` (siskin, or its kubectl-plugin name) as the cluster admin in the scene's
/// namespace; returns the exit code and stdout (stderr is printed).
fn cli_as(program: &std::path::Path, sc: &Scene, args: &[&str]) -> (i32, String) {
    let out = Command::new(program)
        .args(args)
        .args(["-n", &sc.ns])
        .arg("--kubeconfig")
        .arg(&ControlPlane::shared().kubeconfig)
        .output()
        .unwrap();
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("$ siskin {} →\n{stdout}", args.join(" "));
    (out.status.code().unwrap_or(-1), stdout)
}

fn cli(sc: &Scene, args: &[&str]) -> (i32, String) {
    cli_as(&siskin(), sc, args)
}

fn ready_reason(s: &Value) -> String {
    s["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["reason"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_paused_promoted_aborted_and_retried_from_the_cli() {
    let (sc, _counts, traffic) = initialized("cli", json!({})).await;
    let op = start_operator(&sc, "op", &["--enable-leader-election", "false"], &[]);
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;
    // A first deployment counts as promoted; it did not succeed a release.
    assert_eq!(cli(&sc, &["wait", "podinfo", "--for=Promoted"]).0, 0);
    let (code, table) = cli(&sc, &["get"]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("NAME") && table.contains("Initialized"),
        "{table}"
    );

    // Release 2.0.0 and pause it at weight 50 (the checks at 25 have run).
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    // Right after the new image, the previous outcome does not count: wait times out (3).
    let (code, _) = cli(
        &sc,
        &["wait", "podinfo", "--for=Succeeded", "--timeout", "2s"],
    );
    assert_eq!(code, 3, "timeout exit code");
    wait_status(&sc, "weight 50", Duration::from_secs(60), |s| {
        s["canaryWeight"] == 50
    })
    .await;
    assert_eq!(
        cli(&sc, &["pause", "podinfo", "--reason", "waiting for QA"]).0,
        0
    );
    wait_status(&sc, "paused", Duration::from_secs(20), |s| {
        ready_reason(s) == "Paused"
    })
    .await;
    // The Git copy applied again, as Flux or Argo CD would: the pause is not theirs to undo.
    apply_canary(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        &canary_manifest("siskin.dev", &sc.ns, json!({})),
    )
    .await;
    let held_from = Instant::now();
    while held_from.elapsed() < Duration::from_secs(10) {
        let s = canary_status(&sc.admin, &sc.ns, "siskin.dev").await;
        assert_eq!(s["canaryWeight"], 50, "the pause holds: {s:#}");
        assert_eq!(s["phase"], "Progressing", "{s:#}");
        assert_eq!(ready_reason(&s), "Paused", "{s:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (code, text) = cli(&sc, &["describe", "podinfo"]);
    assert_eq!(code, 0);
    for needle in [
        "Phase:        Progressing",
        "canary 50%, primary 50%",
        "Paused:       yes (",
        "waiting for QA",
        "request-success-rate",
        "pass",
        "Paused",
        "New revision detected",
    ] {
        assert!(text.contains(needle), "describe shows {needle:?}:\n{text}");
    }
    let (code, json_out) = cli(&sc, &["get", "podinfo", "-o", "json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(v["metadata"]["name"], "podinfo");
    assert!(
        v["metadata"]["annotations"]["siskin.dev/pause"]
            .as_str()
            .unwrap()
            .ends_with("waiting for QA")
    );
    // Promoted by hand while paused: the last checks are skipped.
    assert_eq!(cli(&sc, &["promote", "podinfo"]).0, 0);
    assert_eq!(
        cli(
            &sc,
            &["wait", "podinfo", "--for=Succeeded", "--timeout", "90s"]
        )
        .0,
        0
    );
    let log = op.log();
    assert!(log.contains("requested by siskin-test-admin"), "{log}");
    assert_eq!(cli(&sc, &["resume", "podinfo"]).0, 0);

    // Release 3.0.0, aborted at weight 25: `wait --for=Succeeded` exits 1, `--for=Failed` 0.
    apply_deployment(&sc.admin, &sc.ns, &deployment("3.0.0", "0")).await;
    wait_status(&sc, "weight 25", Duration::from_secs(60), |s| {
        s["canaryWeight"] == 25 && s["phase"] == "Progressing"
    })
    .await;
    assert_eq!(cli(&sc, &["abort", "podinfo"]).0, 0);
    assert_eq!(
        cli(
            &sc,
            &["wait", "podinfo", "--for=Succeeded", "--timeout", "60s"]
        )
        .0,
        1
    );
    assert_eq!(
        cli(&sc, &["wait", "podinfo", "--for=Failed", "--timeout", "5s"]).0,
        0
    );
    let evs = events(&sc).await;
    assert!(
        evs.iter()
            .any(|(_, reason, msg)| reason == "RolledBack" && msg.contains("aborted by")),
        "{evs:#?}"
    );
    // A retry of a Failed release runs the analysis again, here to promotion; a second
    // `abort` now (nothing in progress) is refused in an event, not acted on.
    assert_eq!(cli(&sc, &["retry", "podinfo"]).0, 0);
    assert_eq!(
        cli(
            &sc,
            &["wait", "podinfo", "--for=Succeeded", "--timeout", "90s"]
        )
        .0,
        0
    );
    assert_eq!(cli(&sc, &["abort", "podinfo"]).0, 0);
    let started = Instant::now();
    while !events(&sc)
        .await
        .iter()
        .any(|(_, reason, _)| reason == "RequestIgnored")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "abort after success not refused"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        canary_status(&sc.admin, &sc.ns, "siskin.dev").await["phase"],
        "Succeeded"
    );
    let (code, history) = cli(&sc, &["history", "podinfo"]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{history}");
    assert!(
        rows[0].contains("Succeeded") && rows[0].contains("promoted"),
        "{history}"
    );
    assert!(
        rows[1].contains("Failed") && rows[1].contains("aborted by"),
        "{history}"
    );
    assert!(rows[2].contains("Succeeded"), "{history}");

    // The same binary as a kubectl plugin (kubectl runs `kubectl-siskin` from PATH).
    let dir = std::env::temp_dir().join(format!("siskin-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = dir.join("kubectl-siskin");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(siskin(), &plugin).unwrap();
    let (code, table) = cli_as(&plugin, &sc, &["get"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("podinfo") && table.contains("Succeeded"),
        "{table}"
    );
    let help = Command::new(&plugin).arg("--help").output().unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("Usage: kubectl siskin"),
        "{}",
        String::from_utf8_lossy(&help.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
    traffic.abort();
}
