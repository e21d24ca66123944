//! The load tester's HTTP API, on the real binary over loopback: every endpoint's status
//! codes, gates per type vs shared, persistence of gates in a file across a restart, the task
//! types, `--namespace-regexp`, and real processes only with `--enable-exec`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Tester, payload};
use serde_json::json;

#[tokio::test]
async fn fixed_endpoints_answer_like_flagger() {
    let t = Tester::start(&[]);
    let r = t.get("/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    let r = t.post("/gate/approve", "anything").await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    let r = t.get("/gate/halt").await;
    assert_eq!((r.status, r.body.as_str()), (403, "Forbidden"));
    let r = t.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("# EOF"), "{}", r.body);
    assert_eq!(t.get("/nope").await.status, 404);
    // bad JSON and an unknown hook type are 400s
    assert_eq!(t.post("/gate/check", "{").await.status, 400);
    let r = t
        .post(
            "/gate/open",
            payload("test", "podinfo", Some("confirm-promtion"), None),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("known types: confirm-rollout"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn gates_are_per_type_and_untyped_calls_use_the_shared_key() {
    let t = Tester::start(&[]);
    let promo = payload("test", "podinfo", Some("confirm-promotion"), None);
    let rollout = payload("test", "podinfo", Some("confirm-rollout"), None);
    let flagger = payload("test", "podinfo", None, None);
    let other = payload("test", "other", None, None);
    for p in [&promo, &rollout, &flagger] {
        assert_eq!(
            t.post("/gate/check", p.clone()).await.status,
            403,
            "closed by default: {p}"
        );
    }
    // a typed open opens only that type's gate
    assert_eq!(t.post("/gate/open", promo.clone()).await.status, 202);
    let r = t.post("/gate/check", promo.clone()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "Approved"));
    assert_eq!(t.post("/gate/check", rollout.clone()).await.status, 403);
    assert_eq!(t.post("/gate/check", flagger.clone()).await.status, 403);
    // Flagger's curl workflow: an untyped open opens the shared gate and every confirm-* gate
    assert_eq!(t.post("/gate/close", promo.clone()).await.status, 202);
    assert_eq!(
        t.post("/gate/open", r#"{"name":"podinfo","namespace":"test"}"#)
            .await
            .status,
        202
    );
    for p in [&promo, &rollout, &flagger] {
        assert_eq!(t.post("/gate/check", p.clone()).await.status, 200, "{p}");
    }
    let traffic = payload("test", "podinfo", Some("confirm-traffic-increase"), None);
    assert_eq!(t.post("/gate/check", traffic.clone()).await.status, 200);
    // other canaries are untouched
    assert_eq!(t.post("/gate/check", other.clone()).await.status, 403);
    // a typed close closes only that type
    assert_eq!(t.post("/gate/close", rollout.clone()).await.status, 202);
    assert_eq!(t.post("/gate/check", rollout.clone()).await.status, 403);
    assert_eq!(t.post("/gate/check", promo.clone()).await.status, 200);
    // an untyped close closes them all
    assert_eq!(t.post("/gate/close", flagger.clone()).await.status, 202);
    for p in [&promo, &traffic, &flagger] {
        assert_eq!(t.post("/gate/check", p.clone()).await.status, 403, "{p}");
    }
    // the gauge follows
    let m = t.get("/metrics").await.body;
    assert!(
        m.contains(r#"siskin_loadtester_gate_open{namespace="test",canary="podinfo",gate="confirm-promotion"} 0"#),
        "{m}"
    );
}

#[tokio::test]
async fn rollback_gates_are_separate() {
    let t = Tester::start(&[]);
    let p = payload("test", "podinfo", None, None);
    assert_eq!(t.post("/rollback/check", p.clone()).await.status, 403);
    assert_eq!(t.post("/gate/open", p.clone()).await.status, 202);
    assert_eq!(
        t.post("/rollback/check", p.clone()).await.status,
        403,
        "a gate is not a rollback"
    );
    assert_eq!(t.post("/rollback/open", p.clone()).await.status, 202);
    let r = t.post("/rollback/check", p.clone()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "Approved"));
    // the operator's rollback hook sends type=rollback: same canary key
    let typed = payload("test", "podinfo", Some("rollback"), None);
    assert_eq!(t.post("/rollback/check", typed.clone()).await.status, 200);
    assert_eq!(t.post("/rollback/close", typed).await.status, 202);
    assert_eq!(t.post("/rollback/check", p).await.status, 403);
}

#[tokio::test]
async fn file_gates_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gates.json");
    let arg = format!("--gates-file={}", file.display());
    let promo = payload("test", "podinfo", Some("confirm-promotion"), None);
    let t = Tester::start(&[&arg]);
    assert_eq!(t.post("/gate/open", promo.clone()).await.status, 202);
    assert_eq!(
        t.post("/rollback/open", payload("test", "api", None, None))
            .await
            .status,
        202
    );
    t.stop(); // SIGKILL: nothing is flushed at exit
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved["gates"][0]["gate"], "confirm-promotion", "{saved}");

    // Flagger's single-dash spelling works too.
    let arg = format!("-gates-file={}", file.display());
    let t = Tester::start(&[&arg]);
    assert_eq!(
        t.post("/gate/check", promo.clone()).await.status,
        200,
        "still open after restart"
    );
    assert_eq!(
        t.post("/gate/check", payload("test", "podinfo", None, None))
            .await
            .status,
        403
    );
    assert_eq!(
        t.post("/rollback/check", payload("test", "api", None, None))
            .await
            .status,
        200
    );
    assert_eq!(t.post("/gate/close", promo.clone()).await.status, 202);
    t.stop();
    let t = Tester::start(&[&arg]);
    assert_eq!(
        t.post("/gate/check", promo).await.status,
        403,
        "closed stays closed"
    );
    // an unreadable gates file is a startup error, not an empty state
    std::fs::write(&file, "not json").unwrap();
    let (ok, err) = Tester::run_to_end(&["--port=0", &arg]);
    assert!(!ok && err.contains("not valid"), "{err}");
}

#[tokio::test]
async fn task_errors_name_what_is_wrong() {
    let t = Tester::start(&[]);
    let r = t.post("/", "not json").await;
    assert_eq!(r.status, 400);
    let r = t.post("/", payload("test", "podinfo", None, None)).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "metadata not found in payload")
    );
    let r = t
        .post("/", payload("test", "podinfo", None, Some(json!({}))))
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "metadata not found in payload")
    );
    let r = t.task(json!({"type": "k6", "cmd": "x"})).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("unknown task type \"k6\"")
            && r.body.contains("cmd, bash, helm, helmv3, kubectl"),
        "{}",
        r.body
    );
    for kind in ["concord", "ngrinder"] {
        let r = t.task(json!({"type": kind})).await;
        assert_eq!(r.status, 400);
        assert!(
            r.body.contains("not supported by siskin-loadtester"),
            "{}",
            r.body
        );
    }
    let r = t.task(json!({"type": "bash"})).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "cmd not found in metadata")
    );
    // an in-process command with a flag hey does not have
    let r = t
        .task(json!({"cmd": "hey -x http://proxy:1 http://127.0.0.1:1/"}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("unknown flag \"-x\""), "{}", r.body);
    let r = t
        .task(json!({"cmd": "hey -z 2h http://127.0.0.1:1/"}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("longer than --timeout 1h"), "{}", r.body);
}

#[tokio::test]
async fn namespace_regexp_refuses_other_namespaces() {
    let t = Tester::start(&["-namespace-regexp=^(test|prod)$"]);
    let r = t
        .post(
            "/",
            payload(
                "kube-system",
                "x",
                None,
                Some(json!({"type": "bash", "cmd": "true"})),
            ),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("--namespace-regexp"), "{}", r.body);
    // an allowed namespace gets past the check (and is then refused for lack of --enable-exec)
    let r = t.task(json!({"type": "bash", "cmd": "true"})).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("--enable-exec"), "{}", r.body);
    let r = t.task(json!({"type": "k6"})).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn processes_are_refused_without_enable_exec() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let t = Tester::start(&[]);
    let cmd = format!("touch {}", marker.display());
    for meta in [
        json!({"type": "bash", "cmd": cmd}),
        json!({"cmd": cmd}),
        json!({"type": "cmd", "cmd": "hey http://127.0.0.1:1/ | tee out"}),
        json!({"type": "helm", "cmd": "version"}),
        json!({"type": "helmv3", "cmd": "version"}),
        json!({"type": "kubectl", "cmd": "version --client"}),
    ] {
        let r = t.task(meta.clone()).await;
        assert_eq!(r.status, 403, "{meta}: {}", r.body);
        assert!(r.body.contains("--enable-exec"), "{meta}: {}", r.body);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.exists(), "nothing ran");
    let m = t.get("/metrics").await.body;
    assert!(
        m.contains(r#"siskin_loadtester_tasks_total{type="bash",outcome="refused"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn bash_and_kubectl_run_with_enable_exec() {
    // `kubectl` is whatever program of that name is first on PATH: here a script that answers
    // like `kubectl version --client` and echoes its arguments, so the test does not depend on
    // the machine having kubectl.
    let bin = tempfile::tempdir().unwrap();
    let kubectl = bin.path().join("kubectl");
    std::fs::write(
        &kubectl,
        "#!/bin/sh\necho \"Client Version: stand-in; args: $*\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &kubectl,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let t = Tester::start_with_env(&["--enable-exec"], &[("PATH", &path)]);
    let r = t
        .task(json!({"type": "bash", "cmd": "echo hello from $0", "returnCmdOutput": "true"}))
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello from bash\n"));
    let r = t.task(json!({"type": "bash", "cmd": "echo quiet"})).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, ""),
        "output only with returnCmdOutput"
    );
    let r = t
        .task(json!({"type": "bash", "cmd": "echo broken >&2; exit 4"}))
        .await;
    assert_eq!(r.status, 500);
    assert!(
        r.body.contains("broken") && r.body.contains("exit status: 4"),
        "{}",
        r.body
    );
    // kubectl with the command split on whitespace
    let r = t
        .task(json!({"type": "kubectl", "cmd": "version  --client", "returnCmdOutput": "true"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "Client Version: stand-in; args: version --client\n");
}

#[tokio::test]
async fn cmd_runs_in_the_background_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let t = Tester::start(&["--enable-exec"]);
    // sleeps first, so the second call finds it running
    let cmd = format!("sleep 1; echo x >> {}", marker.display());
    let started = Instant::now();
    let r = t.task(json!({"cmd": cmd, "logCmdOutput": "true"})).await;
    assert_eq!((r.status, r.body.as_str()), (202, "started"));
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "202 before the command ends"
    );
    let r = t.task(json!({"cmd": cmd})).await;
    assert_eq!((r.status, r.body.as_str()), (202, "already running"));
    // another canary's same command is not deduplicated with it
    let r = t
        .post(
            "/",
            payload("test", "other", None, Some(json!({"cmd": cmd}))),
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (202, "started"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = std::fs::read_to_string(&marker)
            .unwrap_or_default()
            .lines()
            .count();
        if lines == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "saw {lines} of 2 runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // finished: the next call starts it again
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = t.task(json!({"cmd": cmd})).await;
    assert_eq!((r.status, r.body.as_str()), (202, "started"));
}

#[tokio::test]
async fn commands_are_killed_at_the_timeout() {
    let t = Tester::start(&["--enable-exec", "-timeout=1s"]);
    let started = Instant::now();
    let r = t.task(json!({"type": "bash", "cmd": "sleep 20"})).await;
    assert_eq!(r.status, 500);
    assert!(
        r.body.contains("did not finish within --timeout 1s"),
        "{}",
        r.body
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_flags_stop_the_binary() {
    let (ok, err) = Tester::run_to_end(&["--gates-configmap=no-slash"]);
    assert!(!ok && err.contains("NAMESPACE/NAME"), "{err}");
    let (ok, err) = Tester::run_to_end(&["--timeout=10"]);
    assert!(!ok && err.contains("invalid duration"), "{err}");
    let (ok, err) = Tester::run_to_end(&["--namespace-regexp=("]);
    assert!(!ok && err.contains("--namespace-regexp"), "{err}");
    // --gates-configmap without any cluster config
    let (ok, err) = Tester::run_to_end(&["--port=0", "--gates-configmap=test/gates"]);
    assert!(
        !ok && err.contains("in-cluster config or KUBECONFIG"),
        "{err}"
    );
}
