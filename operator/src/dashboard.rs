//! The dashboard `siskin operator --dashboard-address` serves: every Canary the user may
//! list, with its phase, weight over time, checks, webhooks and events, and buttons for
//! promote, abort, retry, pause and resume.
//!
//! It acts as the user, never as itself: each request carries the user's own Kubernetes
//! bearer token (pasted at sign-in and kept in an HttpOnly, SameSite=Strict cookie, or sent
//! as `Authorization: Bearer`), checked with a TokenReview; each page and each action is
//! checked with a SubjectAccessReview for that user (`list`/`get canaries` to see, `list
//! events` for the events, `patch canaries` to act). Actions write the same annotations as
//! the CLI ([`crate::control`]), so GitOps tools leave them alone and the engine acts on each
//! once. Actions need the `X-Siskin-Request` header the page's script sends (a form on another
//! site cannot), and a same-origin `Origin` when the browser sends one.

pub mod auth;
pub mod chart;
pub mod pages;

use std::{collections::BTreeSet, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use futures_util::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, reflector, watcher},
};
use siskin_api::{ApiGroup, Canary};
use siskin_engine::RequestAction;
use tracing::{debug, error, info};

use crate::control::{Change, PAUSE_ANNOTATION, RequestDoc, pause_value};
use auth::{Access, Auth, AuthError, User};
use chart::{Sample, Series};
use pages::{Actions, Detail, Row};

/// Name of the session cookie (it holds the user's bearer token).
pub const COOKIE: &str = "siskin_token";
/// Its name with `--dashboard-secure-cookie`: browsers only accept a `__Host-` cookie that is
/// Secure, has Path=/ and no Domain, so a sibling subdomain cannot plant one.
pub const SECURE_COOKIE: &str = "__Host-siskin_token";
/// The header an action must carry.
pub const REQUEST_HEADER: &str = "x-siskin-request";

/// Dashboard flags of `siskin operator`.
#[derive(Debug, Clone, clap::Args)]
pub struct DashboardArgs {
    /// Serve the dashboard on this address (e.g. 0.0.0.0:8090); no dashboard when unset.
    #[arg(long = "dashboard-address", env = "SISKIN_DASHBOARD_ADDRESS")]
    pub address: Option<SocketAddr>,
    /// Show releases but offer no actions (and refuse them).
    #[arg(long = "dashboard-read-only", env = "SISKIN_DASHBOARD_READ_ONLY", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub read_only: bool,
    /// Mark the session cookie `Secure`: set it when users reach the dashboard over HTTPS
    /// (an Ingress that terminates TLS); browsers then never send it in cleartext.
    #[arg(long = "dashboard-secure-cookie", env = "SISKIN_DASHBOARD_SECURE_COOKIE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub secure_cookie: bool,
    /// Seconds between reloads of an open page (0: never).
    #[arg(
        long = "dashboard-refresh",
        env = "SISKIN_DASHBOARD_REFRESH",
        default_value_t = 5
    )]
    pub refresh: u32,
}

struct Dash {
    client: Client,
    group: ApiGroup,
    auth: Auth,
    store: reflector::Store<Canary>,
    series: Arc<Series>,
    read_only: bool,
    secure_cookie: bool,
    refresh: u32,
}

type St = State<Arc<Dash>>;

/// Serves the dashboard on `args.address` until the process ends; watches Canaries (of
/// `namespace`, or all) for the pages and the weight chart.
pub async fn serve(
    args: DashboardArgs,
    client: Client,
    group: ApiGroup,
    namespace: Option<String>,
) {
    let Some(addr) = args.address else {
        return;
    };
    let api: Api<Canary> = match &namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &group),
        None => Api::all_with(client.clone(), &group),
    };
    let writer = reflector::store::Writer::new(group);
    let store = writer.as_reader();
    let series = Arc::new(Series::default());
    {
        let series = series.clone();
        let stream = reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        tokio::spawn(async move {
            stream
                .for_each(|ev| {
                    match ev {
                        Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => {
                            let s = crate::kubernetes::status::read(&c);
                            series.record(
                                (c.namespace().unwrap_or_default(), c.name_any()),
                                Sample {
                                    at: jiff::Timestamp::now(),
                                    weight: s.canary_weight,
                                    phase: s.phase,
                                },
                            );
                        }
                        Ok(watcher::Event::Delete(c)) => {
                            series.forget(&(c.namespace().unwrap_or_default(), c.name_any()));
                        }
                        Ok(_) => {}
                        Err(e) => debug!(error = %e, "dashboard watch"),
                    }
                    std::future::ready(())
                })
                .await;
        });
    }
    let dash = Arc::new(Dash {
        auth: Auth::new(client.clone()),
        client,
        group,
        store,
        series,
        read_only: args.read_only,
        secure_cookie: args.secure_cookie,
        refresh: args.refresh,
    });
    let app = router(dash);
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            info!(%addr, read_only = args.read_only, "dashboard");
            if let Err(e) = axum::serve(l, app).await {
                error!(error = %e, "dashboard stopped");
            }
        }
        Err(e) => {
            error!(%addr, error = %e, "cannot bind --dashboard-address");
            std::process::exit(2);
        }
    }
}

fn router(dash: Arc<Dash>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/canaries/{ns}/{name}", get(canary))
        .route("/canaries/{ns}/{name}/{action}", post(act))
        .route(
            "/static/dashboard.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    include_str!("dashboard/assets/dashboard.css"),
                )
            }),
        )
        .route(
            "/static/dashboard.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    include_str!("dashboard/assets/dashboard.js"),
                )
            }),
        )
        .route("/healthz", get(|| async { "OK" }))
        .layer(axum::middleware::map_response(secure_headers))
        // A token and a reason fit in far less.
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(dash)
}

/// Headers on every answer: no inline script or style, no framing, nothing cached, no
/// referrer to other sites (`same-origin`: with `no-referrer` browsers send `Origin: null` on
/// the sign-in form, which [`same_origin`] refuses).
async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The value of `key` in a form body or query string.
fn field(text: &[u8], key: &str) -> Option<String> {
    form_urlencoded::parse(text)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// `?refresh=N` of a page.
struct PageQuery {
    refresh: Option<u32>,
}

impl PageQuery {
    fn parse(q: Option<String>) -> PageQuery {
        PageQuery {
            refresh: q
                .and_then(|q| field(q.as_bytes(), "refresh"))
                .and_then(|r| r.parse().ok()),
        }
    }
}

impl Dash {
    /// The user of a request, or the answer to give instead: to the sign-in page for pages,
    /// 401 for actions.
    async fn user(&self, headers: &HeaderMap, page: bool) -> Result<Arc<User>, Response> {
        let Some(token) = auth::token(headers, self.cookie_name()) else {
            return Err(if page {
                Redirect::to("/login").into_response()
            } else {
                (StatusCode::UNAUTHORIZED, "sign in first").into_response()
            });
        };
        match self.auth.authenticate(&token).await {
            Ok(u) => Ok(u),
            Err(AuthError::Rejected(why)) if page => Err((
                StatusCode::UNAUTHORIZED,
                [(header::SET_COOKIE, self.cookie(""))],
                Html(pages::login(Some(&format!(
                    "Signed out: the API server no longer accepts your token{why}."
                )))),
            )
                .into_response()),
            Err(e @ AuthError::Rejected(_)) => {
                Err((StatusCode::UNAUTHORIZED, e.to_string()).into_response())
            }
            Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()),
        }
    }

    async fn may(&self, user: &User, access: &Access) -> Result<bool, Response> {
        self.auth
            .allowed(user, access)
            .await
            .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response())
    }

    fn canaries(&self, verb: &'static str, namespace: &str, name: &str) -> Access {
        Access {
            verb,
            group: self.group.name().to_string(),
            resource: "canaries",
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    fn cookie_name(&self) -> &'static str {
        if self.secure_cookie {
            SECURE_COOKIE
        } else {
            COOKIE
        }
    }

    fn cookie(&self, token: &str) -> String {
        let (name, secure) = if self.secure_cookie {
            (SECURE_COOKIE, "; Secure")
        } else {
            (COOKIE, "")
        };
        if token.is_empty() {
            format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
        } else {
            format!("{name}={token}; Path=/; HttpOnly; SameSite=Strict{secure}")
        }
    }

    fn refresh(&self, q: &PageQuery) -> u32 {
        q.refresh.unwrap_or(self.refresh)
    }

    /// Waits up to 5 s for the first complete read of the Canaries; else the page answers 503.
    async fn ready(&self) -> Result<(), Response> {
        tokio::time::timeout(Duration::from_secs(5), self.store.wait_until_ready())
            .await
            .map(|_| ())
            .map_err(|_| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the Canaries have not been read from the API server yet; try again",
                )
                    .into_response()
            })
    }

    fn row(c: &Canary) -> Row {
        let analysis = c.spec.analysis();
        Row {
            namespace: c.namespace().unwrap_or_default(),
            name: c.name_any(),
            status: crate::kubernetes::status::read(c),
            paused: c.annotations().get(PAUSE_ANNOTATION).cloned(),
            threshold: analysis.threshold(),
            max_weight: i32::from(analysis.max_weight().get()),
        }
    }
}

async fn index(State(d): St, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = PageQuery::parse(q);
    let user = match d.user(&headers, true).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = d.ready().await {
        return r;
    }
    let all = match d.may(&user, &d.canaries("list", "", "")).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut canaries = d.store.state();
    canaries.sort_by_key(|c| (c.namespace(), c.name_any()));
    let mut hidden = false;
    let mut visible = BTreeSet::new();
    if !all {
        let namespaces: BTreeSet<String> = canaries
            .iter()
            .map(|c| c.namespace().unwrap_or_default())
            .collect();
        for ns in namespaces {
            match d.may(&user, &d.canaries("list", &ns, "")).await {
                Ok(true) => {
                    visible.insert(ns);
                }
                Ok(false) => hidden = true,
                Err(r) => return r,
            }
        }
    }
    let rows: Vec<Row> = canaries
        .iter()
        .filter(|c| all || visible.contains(&c.namespace().unwrap_or_default()))
        .map(|c| Dash::row(c))
        .collect();
    Html(pages::list(
        &user.name,
        d.read_only,
        d.refresh(&q),
        &rows,
        hidden,
    ))
    .into_response()
}

async fn login_form() -> Html<String> {
    Html(pages::login(None))
}

async fn login(State(d): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = same_origin(&headers) {
        return r;
    }
    let token = field(&body, "token").unwrap_or_default();
    let token = token.trim();
    let refuse =
        |msg: String| (StatusCode::UNAUTHORIZED, Html(pages::login(Some(&msg)))).into_response();
    if !auth::cookie_safe(token) {
        return refuse(
            "This token cannot be used here: paste a bearer token (a JWT such as `kubectl create token` prints, or a static token of letters, digits and -._~+/=).".into(),
        );
    }
    match d.auth.authenticate(token).await {
        Ok(user) => {
            info!(user = %user.name, "dashboard sign-in");
            (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, d.cookie(token)),
                    (header::LOCATION, "/".to_string()),
                ],
            )
                .into_response()
        }
        Err(e @ AuthError::Rejected(_)) => refuse(format!("{e}.")),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(pages::login(Some(&e.to_string()))),
        )
            .into_response(),
    }
}

async fn logout(State(d): St, headers: HeaderMap) -> Response {
    if let Err(r) = same_origin(&headers) {
        return r;
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, d.cookie("")),
            (header::LOCATION, "/login".to_string()),
        ],
    )
        .into_response()
}

async fn canary(
    State(d): St,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = PageQuery::parse(q);
    if !valid_names(&ns, &name) {
        return bad_names(&ns, &name);
    }
    let user = match d.user(&headers, true).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let get = d.canaries("get", &ns, &name);
    match d.may(&user, &get).await {
        Ok(true) => {}
        Ok(false) => {
            return (
                StatusCode::FORBIDDEN,
                Html(pages::message(
                    "Forbidden",
                    Some(&user.name),
                    d.read_only,
                    &format!("{} may not {get}.", user.name),
                )),
            )
                .into_response();
        }
        Err(r) => return r,
    }
    if let Err(r) = d.ready().await {
        return r;
    }
    let key = kube::runtime::reflector::ObjectRef::new_with(&name, d.group).within(&ns);
    let Some(c) = d.store.get(&key) else {
        return (
            StatusCode::NOT_FOUND,
            Html(pages::message(
                "Not found",
                Some(&user.name),
                d.read_only,
                &format!("There is no Canary {name:?} in namespace {ns:?}."),
            )),
        )
            .into_response();
    };
    let row = Dash::row(&c);
    let events_access = Access {
        verb: "list",
        group: String::new(),
        resource: "events",
        namespace: ns.clone(),
        name: String::new(),
    };
    let events = match d.may(&user, &events_access).await {
        Ok(true) => crate::cli::ctl::recent_events(&d.client, &ns, &name, 20)
            .await
            .map_err(|e| format!("Events cannot be read now: {e}")),
        Ok(false) => Err(format!(
            "Events are not shown: {} may not {events_access}.",
            user.name
        )),
        Err(r) => return r,
    };
    let actions = if d.read_only {
        Actions::ReadOnly
    } else {
        let patch = d.canaries("patch", &ns, &name);
        match d.may(&user, &patch).await {
            Ok(true) => Actions::Allowed,
            Ok(false) => Actions::Denied(format!("{} may not {patch}", user.name)),
            Err(r) => return r,
        }
    };
    let samples = d.series.of(&(ns.clone(), name.clone()));
    let detail = Detail {
        chart: chart::svg(&samples, row.max_weight, jiff::Timestamp::now()),
        row: &row,
        events,
        actions,
    };
    Html(pages::detail(
        &user.name,
        d.read_only,
        d.refresh(&q),
        &detail,
    ))
    .into_response()
}

/// A POST from a page on another site: refused when the browser says where it came from and
/// that is not this host (an `Origin` that cannot be read, or `null`, is refused too).
#[allow(clippy::result_large_err)]
fn same_origin(headers: &HeaderMap) -> Result<(), Response> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = origin.to_str().unwrap_or("an unreadable origin");
    let from = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    if from.is_some() && from == host {
        return Ok(());
    }
    Err((
        StatusCode::FORBIDDEN,
        format!("refused: this request comes from {origin}, not from the dashboard"),
    )
        .into_response())
}

/// Whether `ns` and `name` can be a namespace and a Canary's name (DNS-1123 label and
/// subdomain): anything else is refused before it reaches a review or a URL.
fn valid_names(ns: &str, name: &str) -> bool {
    let label = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    label(ns, 63) && name.len() <= 253 && name.split('.').all(|part| label(part, 63))
}

fn bad_names(ns: &str, name: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!(
            "{ns:?}/{name:?} is not a namespace and Canary name (lowercase letters, digits, '-' and '.')"
        ),
    )
        .into_response()
}

async fn act(
    State(d): St,
    headers: HeaderMap,
    Path((ns, name, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    if d.read_only {
        return (
            StatusCode::FORBIDDEN,
            "this dashboard is read-only (--dashboard-read-only); use siskin promote|abort|pause|resume|retry",
        )
            .into_response();
    }
    if headers.get(REQUEST_HEADER).and_then(|v| v.to_str().ok()) != Some("1") {
        return (
            StatusCode::FORBIDDEN,
            "refused: actions carry the X-Siskin-Request: 1 header the dashboard's buttons send",
        )
            .into_response();
    }
    if let Err(r) = same_origin(&headers) {
        return r;
    }
    if !valid_names(&ns, &name) {
        return bad_names(&ns, &name);
    }
    let user = match d.user(&headers, false).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let reason = field(&body, "reason").unwrap_or_default();
    let reason: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let patch = d.canaries("patch", &ns, &name);
    match d.may(&user, &patch).await {
        Ok(true) => {}
        Ok(false) => {
            info!(user = %user.name, %action, canary = %name, namespace = %ns, "dashboard action refused by RBAC");
            return (
                StatusCode::FORBIDDEN,
                format!("forbidden: {} may not {patch}", user.name),
            )
                .into_response();
        }
        Err(r) => return r,
    }
    let api: Api<Canary> = Api::namespaced_with(d.client.clone(), &ns, &d.group);
    let current = match api.get_opt(&name).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                format!("there is no Canary {name:?} in namespace {ns:?}"),
            )
                .into_response();
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let (change, said) = match action.as_str() {
        "pause" => {
            let value = pause_value(&user.name, Some(&reason));
            (
                Change::Pause(Some(value.clone())),
                format!("paused ({value}); the release holds at its next step"),
            )
        }
        "resume" => {
            if !current.annotations().contains_key(PAUSE_ANNOTATION) {
                return (StatusCode::OK, "not paused").into_response();
            }
            (Change::Pause(None), "resumed".to_string())
        }
        other => match RequestAction::parse(other) {
            Some(a) => {
                let doc = RequestDoc::new(a, &user.name);
                let said = format!(
                    "{} requested (id {}); the operator acts on it at its next step",
                    a.name(),
                    doc.id
                );
                (Change::Request(doc), said)
            }
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no action {other:?}: promote, abort, retry, pause or resume"),
                )
                    .into_response();
            }
        },
    };
    if let Err(e) = change.write(&api, &name).await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not written: {e}")).into_response();
    }
    info!(user = %user.name, %action, canary = %name, namespace = %ns, "dashboard action");
    (StatusCode::OK, said).into_response()
}
