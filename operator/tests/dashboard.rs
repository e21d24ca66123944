//! The dashboard of `siskin operator --dashboard-address` on a real API server, used from
//! headless Chromium (Debian's `chromium` through `chromedriver`) and plain HTTP as three
//! ServiceAccounts: one bound to siskin-release-viewer, one to siskin-release-manager, one
//! bound to nothing. Sign-in with a real token (TokenRequest), pages per RBAC, a pause,
//! resume and promote that take effect on the Canary, refused actions (RBAC, a missing CSRF
//! header, another origin, a read-only replica), and no webhook URL on any page.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/scene.rs"]
mod scene;
use scene::*;

#[path = "support/browser.rs"]
mod browser;
#[path = "support/receiver.rs"]
mod receiver;

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
    rbac::v1::RoleBinding,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

/// A secret that must never reach a page: it is in the webhook's URL.
const HOOK_SECRET: &str = "s3cr3t-hook-token";

/// A ServiceAccount in `ns`, bound to `role` there when given; returns its token.
async fn account(admin: &Client, ns: &str, name: &str, role: Option<&str>) -> String {
    let pp = PatchParams::apply("siskin-test").force();
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    sas.patch(
        name,
        &pp,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns}})),
    )
    .await
    .unwrap();
    if let Some(role) = role {
        Api::<RoleBinding>::namespaced(admin.clone(), ns)
            .patch(
                name,
                &pp,
                &Patch::Apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": name, "namespace": ns},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                    "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]})),
            )
            .await
            .unwrap();
    }
    let tr = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    sas.create_token_request(name, &PostParams::default(), &tr)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap()
}

fn screenshots() -> PathBuf {
    let dir = std::env::var("SISKIN_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| siskin_e2e::ControlPlane::shared().dir.join("screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn annotations(c: &Value) -> Value {
    c["metadata"]["annotations"].clone()
}

async fn canary_object(sc: &Scene) -> Value {
    let api = dynamic_api(sc, "siskin.dev", "v1beta1", "Canary", "canaries");
    serde_json::to_value(api.get("podinfo").await.unwrap()).unwrap()
}

/// Plain HTTP to the dashboard, redirects not followed.
struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    fn new(port: u16) -> Http {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Http {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn get(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut r = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        (
            r.status().as_u16(),
            r.headers().clone(),
            r.text().await.unwrap(),
        )
    }

    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let r = r.send().await.unwrap();
        (
            r.status().as_u16(),
            r.headers().clone(),
            r.text().await.unwrap(),
        )
    }
}

/// A kubeconfig acting with `token` on the plane's cluster.
fn kubeconfig_for(name: &str, token: &str) -> PathBuf {
    let plane = siskin_e2e::ControlPlane::shared();
    let mut kc: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&plane.kubeconfig).unwrap()).unwrap();
    kc["users"] = json!([{"name": name, "user": {"token": token}}]);
    kc["contexts"] = json!([{"name": name, "context": {"cluster": "envtest", "user": name}}]);
    kc["current-context"] = json!(name);
    let path = plane
        .dir
        .join(format!("kubeconfig-{name}-{}", std::process::id()));
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    path
}

/// `siskin ARGS -n NS` with `kubeconfig`: exit code, stdout, stderr.
fn cli_with(kubeconfig: &std::path::Path, ns: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(siskin())
        .args(args)
        .args(["-n", ns, "--kubeconfig"])
        .arg(kubeconfig)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn wait_for_log(op: &Operator, needle: &str, limit: Duration) {
    let started = std::time::Instant::now();
    while !op.log().contains(needle) {
        assert!(
            started.elapsed() < limit,
            "{needle:?} not logged: {}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_acts_as_its_user() {
    let (hooks, _calls) = receiver::receiver().await;
    let (sc, _counts, traffic) = initialized(
        "dash",
        json!({"analysis": {"interval": "3s", "threshold": 2, "maxWeight": 50, "stepWeight": 5,
            "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"}],
            "webhooks": [{"name": "smoke", "type": "rollout",
                "url": format!("http://{hooks}/smoke?token={HOOK_SECRET}")}]}}),
    )
    .await;
    let viewer = account(&sc.admin, &sc.ns, "viewer", Some("siskin-release-viewer")).await;
    let manager = account(&sc.admin, &sc.ns, "manager", Some("siskin-release-manager")).await;
    let stranger = account(&sc.admin, &sc.ns, "stranger", None).await;
    let manager_name = format!("system:serviceaccount:{}:manager", sc.ns);

    // Two replicas: the leader, and one waiting for the lease that serves a read-only
    // dashboard (every replica serves it).
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let op = start_operator(
        &sc,
        "op",
        &["--dashboard-address", &addr, "--dashboard-refresh", "0"],
        &[],
    );
    wait_for_log(&op, "leading", Duration::from_secs(30)).await;
    let ro_port = free_port();
    let ro_addr = format!("127.0.0.1:{ro_port}");
    let standby = start_operator(
        &sc,
        "standby",
        &["--dashboard-address", &ro_addr, "--dashboard-read-only"],
        &[],
    );
    wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Initialized",
        Duration::from_secs(60),
    )
    .await;

    // --- plain HTTP: sign-in, RBAC per page and action, CSRF, headers ---
    let http = Http::new(port);
    let detail = format!("/canaries/{}/podinfo", sc.ns);
    let (code, headers, _) = http.get("/", None).await;
    assert_eq!(code, 303);
    assert_eq!(headers["location"], "/login");
    let (code, _, answer) = http
        .post(
            "/login",
            None,
            &[("origin", "null")],
            &format!("token={viewer}"),
        )
        .await;
    assert_eq!(code, 403, "sign-in from an opaque origin: {answer}");
    let (code, _, _) = http
        .get(
            &format!("/canaries/{}/podinfo%2Fstatus", sc.ns),
            Some(&viewer),
        )
        .await;
    assert_eq!(code, 400, "a name that is not a Kubernetes name");
    let (code, _, page) = http.post("/login", None, &[], "token=not-a-token").await;
    assert_eq!(code, 401, "{page}");
    assert!(
        page.contains("the API server did not accept this token"),
        "{page}"
    );
    let (code, headers, _) = http
        .post("/login", None, &[], &format!("token={viewer}"))
        .await;
    assert_eq!(code, 303);
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let (code, headers, page) = http.get(&detail, Some(&viewer)).await;
    assert_eq!(code, 200, "{page}");
    for h in [
        "content-security-policy",
        "x-frame-options",
        "x-content-type-options",
    ] {
        assert!(headers.contains_key(h), "{h} missing: {headers:?}");
    }
    assert!(
        page.contains("request-success-rate") || page.contains("none run yet"),
        "{page}"
    );
    assert!(page.contains("may not patch canaries.siskin.dev"), "{page}");
    assert!(
        !page.contains(HOOK_SECRET) && !page.contains("/smoke"),
        "{page}"
    );
    let (code, _, answer) = http
        .post(
            &format!("{detail}/pause"),
            Some(&viewer),
            &[("x-siskin-request", "1")],
            "reason=x",
        )
        .await;
    assert_eq!(code, 403, "{answer}");
    assert!(answer.contains("may not patch"), "{answer}");
    let (code, _, page) = http.get("/", Some(&stranger)).await;
    assert_eq!(code, 200);
    assert!(page.contains("No Canaries you may list"), "{page}");
    let (code, _, _) = http.get(&detail, Some(&stranger)).await;
    assert_eq!(code, 403);
    // The manager may act, but not without the header, nor from another origin.
    let (code, _, answer) = http
        .post(&format!("{detail}/abort"), Some(&manager), &[], "")
        .await;
    assert_eq!(code, 403, "{answer}");
    assert!(answer.contains("X-Siskin-Request"), "{answer}");
    let (code, _, answer) = http
        .post(
            &format!("{detail}/abort"),
            Some(&manager),
            &[("x-siskin-request", "1"), ("origin", "http://evil.example")],
            "",
        )
        .await;
    assert_eq!(code, 403, "{answer}");
    // The read-only replica shows the release and refuses every action.
    let ro = Http::new(ro_port);
    let (code, _, page) = ro.get(&detail, Some(&manager)).await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("read-only"), "{page}");
    assert!(!page.contains("data-action"), "{page}");
    let (code, _, answer) = ro
        .post(
            &format!("{detail}/abort"),
            Some(&manager),
            &[("x-siskin-request", "1")],
            "",
        )
        .await;
    assert_eq!(code, 403, "{answer}");
    let c = canary_object(&sc).await;
    assert!(
        annotations(&c).get("siskin.dev/request").is_none(),
        "nothing was written: {c:#}"
    );

    // The same roles for the CLI: the viewer reads and may not pause; the stranger may not
    // read; the manager's pause and resume go through.
    let as_viewer = kubeconfig_for("viewer", &viewer);
    let (code, out, err) = cli_with(&as_viewer, &sc.ns, &["describe", "podinfo"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Phase:        Initialized") && out.contains("Events:"),
        "{out}"
    );
    let (code, _, err) = cli_with(&as_viewer, &sc.ns, &["pause", "podinfo"]);
    assert_eq!(code, 2);
    assert!(err.contains("forbidden"), "{err}");
    let (code, _, err) = cli_with(&kubeconfig_for("stranger", &stranger), &sc.ns, &["get"]);
    assert_eq!(code, 2);
    assert!(err.contains("forbidden"), "{err}");
    let as_manager = kubeconfig_for("manager", &manager);
    assert_eq!(cli_with(&as_manager, &sc.ns, &["pause", "podinfo"]).0, 0);
    assert_eq!(cli_with(&as_manager, &sc.ns, &["resume", "podinfo"]).0, 0);

    // --- the browser ---
    let b = browser::Browser::start().await;
    let shots = screenshots();
    let base = format!("http://{addr}");
    b.goto(&format!("{base}/")).await;
    assert!(b.url().await.ends_with("/login"), "{}", b.url().await);
    b.type_into("#token", &viewer).await;
    b.click("#sign-in").await;
    b.find("#canaries").await;
    assert_eq!(
        b.text("#user").await,
        format!("system:serviceaccount:{}:viewer", sc.ns)
    );
    b.click(&format!("tr[data-canary=\"{}/podinfo\"] a", sc.ns))
        .await;
    let why = b.text("#no-actions").await;
    assert!(why.contains("may not patch"), "{why}");
    // The viewer's browser posts an action anyway: refused by RBAC.
    let answer = b
        .run_async(&format!(
            "const done = arguments[arguments.length - 1];
             fetch('{detail}/promote', {{method: 'POST', headers: {{'X-Siskin-Request': '1'}}}})
               .then(r => r.text().then(t => done([r.status, t])));"
        ))
        .await;
    assert_eq!(answer[0], 403, "{answer}");
    assert!(
        answer[1].as_str().unwrap().contains("may not patch"),
        "{answer}"
    );
    b.click("header form button").await;
    b.find("#token").await;

    // The manager pauses before the release, which then holds at weight 0.
    b.type_into("#token", &manager).await;
    b.click("#sign-in").await;
    b.find("#canaries").await;
    b.goto(&format!("{base}{detail}")).await;
    b.type_into("#reason", "waiting for QA").await;
    b.click("button[data-action=pause]").await;
    let said = b
        .wait_text("#result", Duration::from_secs(10), |t| !t.is_empty())
        .await;
    assert!(said.starts_with("paused"), "{said}");
    let c = canary_object(&sc).await;
    assert_eq!(
        annotations(&c)["siskin.dev/pause"],
        format!("{manager_name}: waiting for QA"),
        "{c:#}"
    );
    apply_deployment(&sc.admin, &sc.ns, &deployment("2.0.0", "0")).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let s = canary_status(&sc.admin, &sc.ns, "siskin.dev").await;
    assert_eq!(s["canaryWeight"], 0, "the pause holds the release: {s:#}");
    b.goto(&format!("{base}{detail}")).await;
    assert!(b.text("#paused").await.contains("waiting for QA"));
    b.screenshot(&shots.join("dashboard-paused.png")).await;

    // Resumed: the analysis runs; promoted by hand part-way.
    b.click("button[data-action=resume]").await;
    let said = b
        .wait_text("#result", Duration::from_secs(10), |t| !t.is_empty())
        .await;
    assert_eq!(said, "resumed");
    wait_status(&sc, "weight 15", Duration::from_secs(60), |s| {
        s["canaryWeight"].as_i64().unwrap_or(0) >= 15 && s["phase"] == "Progressing"
    })
    .await;
    b.goto(&format!("{base}{detail}")).await;
    let samples: u32 = b
        .run_async(
            "const done = arguments[arguments.length - 1];
             done(document.getElementById('weight-chart').dataset.samples);",
        )
        .await
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(samples >= 3, "the chart drew {samples} samples");
    let source = b.source().await;
    assert!(source.contains("smoke"), "the webhook is listed");
    assert!(!source.contains(HOOK_SECRET), "no webhook URL on the page");
    b.screenshot(&shots.join("dashboard-progressing.png")).await;
    b.click("button[data-action=promote]").await;
    let said = b
        .wait_text("#result", Duration::from_secs(10), |t| !t.is_empty())
        .await;
    assert!(said.starts_with("promote requested"), "{said}");
    let s = wait_phase(
        &sc.admin,
        &sc.ns,
        "siskin.dev",
        "Succeeded",
        Duration::from_secs(60),
    )
    .await;
    assert!(
        s["canaryWeight"] == 0,
        "promoted and routed back to the primary: {s:#}"
    );
    wait_for_log(
        &op,
        &format!("requested by {manager_name}"),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        op.log().contains("dashboard action"),
        "the action is logged"
    );
    b.goto(&format!("{base}/")).await;
    b.find("#canaries").await;
    b.screenshot(&shots.join("dashboard-list.png")).await;
    b.goto(&format!("{base}{detail}")).await;
    b.find("#history").await;
    b.screenshot(&shots.join("dashboard-succeeded.png")).await;
    traffic.abort();
    drop(standby);
}
