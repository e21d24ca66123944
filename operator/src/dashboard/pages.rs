//! The dashboard's HTML, written on the server: every value escaped, every free text (check
//! and webhook messages, events) with URLs cut to their scheme and host, since provider and
//! webhook errors can carry a URL with a token in it. Webhook URLs, metadata, alert
//! providers and secret references are never read here.

use std::fmt::Write;

use siskin_api::{CanaryStatus, Phase, status::Verdict};

use crate::cli::ctl::EventRow;

/// Escapes text for HTML content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Cuts every URL in `s` to `scheme://host/…` (dropping user info, path and query). A URL
/// ends only at whitespace, `<`, `>` or `"` (commas, quotes and parentheses can be inside
/// one); JSON's escaped `\/` counts as `/`.
pub fn redact_urls(s: &str) -> String {
    let s = s.replace("\\/", "/");
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find("://") {
        let scheme_start = rest[..i]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(p, c)| p + c.len_utf8());
        out.push_str(&rest[..i + 3]);
        let after = &rest[i + 3..];
        if scheme_start == i {
            rest = after;
            continue;
        }
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
            .unwrap_or(after.len());
        let url = &after[..end];
        // User info ends at the last '@' before the path; the host at '/', '?' or '#'.
        let without_user = url.rsplit_once('@').map_or(url, |(_, h)| h);
        let host_end = without_user
            .find(['/', '?', '#'])
            .unwrap_or(without_user.len());
        out.push_str(&without_user[..host_end]);
        if host_end < without_user.len() || without_user.len() < url.len() {
            out.push_str("/…");
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Free text as shown: URLs cut, escaped, at most `limit` characters.
fn text(s: &str, limit: usize) -> String {
    let r = redact_urls(s);
    if r.chars().count() > limit {
        let cut: String = r.chars().take(limit).collect();
        format!("{}…", esc(&cut))
    } else {
        esc(&r)
    }
}

/// A whole page around `body`. `refresh`: seconds between reloads (0: none).
pub fn page(title: &str, user: Option<&str>, refresh: u32, read_only: bool, body: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{} · Siskin</title><link rel="stylesheet" href="/static/dashboard.css"><script src="/static/dashboard.js" defer></script></head><body data-refresh="{refresh}"><header><a class="brand" href="/">Siskin</a>"#,
        esc(title)
    );
    if read_only {
        out.push_str(r#"<span class="badge ro" id="read-only">read-only</span>"#);
    }
    if let Some(u) = user {
        let _ = write!(
            out,
            r#"<span class="user">signed in as <b id="user">{}</b></span><form method="post" action="/logout"><button type="submit">Sign out</button></form>"#,
            esc(u)
        );
    }
    let _ = write!(out, "</header><main>{body}</main></body></html>");
    out
}

/// The sign-in form, with an error when the last token was refused.
pub fn login(error: Option<&str>) -> String {
    let mut body = String::from("<h1>Sign in</h1>");
    if let Some(e) = error {
        let _ = write!(body, r#"<p class="error" id="login-error">{}</p>"#, esc(e));
    }
    body.push_str(
        r#"<form method="post" action="/login" class="login"><label for="token">Kubernetes bearer token</label><textarea id="token" name="token" rows="5" autocomplete="off" spellcheck="false" required></textarea><button type="submit" id="sign-in">Sign in</button></form><p class="hint">The dashboard acts as you: it asks the API server who the token belongs to (TokenReview) and whether you may see or change each Canary (SubjectAccessReview). A ServiceAccount's token: <code>kubectl create token NAME -n NAMESPACE</code>. The token is kept in an HttpOnly cookie for this browser session only.</p>"#,
    );
    page("Sign in", None, 0, false, &body)
}

/// A page that only says why not.
pub fn message(title: &str, user: Option<&str>, read_only: bool, msg: &str) -> String {
    page(
        title,
        user,
        0,
        read_only,
        &format!(
            r#"<h1>{}</h1><p class="error" id="message">{}</p><p><a href="/">All Canaries</a></p>"#,
            esc(title),
            esc(msg)
        ),
    )
}

/// One row of the list.
pub struct Row {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Status.
    pub status: CanaryStatus,
    /// The pause annotation.
    pub paused: Option<String>,
    /// `analysis.threshold`.
    pub threshold: u32,
    /// `analysis.maxWeight` (or the last step).
    pub max_weight: i32,
}

fn phase_badge(p: Phase) -> String {
    let class = match p {
        Phase::Failed => "bad",
        Phase::Succeeded | Phase::Initialized => "good",
        Phase::Progressing | Phase::Promoting | Phase::Finalising => "busy",
        _ => "idle",
    };
    let name = if p == Phase::Unset { "New" } else { p.name() };
    format!(r#"<span class="phase {class}">{name}</span>"#)
}

fn weight_bar(w: i32) -> String {
    let w = w.clamp(0, 100);
    format!(
        r##"<svg class="bar" viewBox="0 0 100 8" width="100" height="8" aria-hidden="true"><rect width="100" height="8" fill="#dde"/><rect width="{w}" height="8" fill="#246"/></svg> {w}%"##
    )
}

fn href(ns: &str, name: &str) -> String {
    format!("/canaries/{}/{}", esc(ns), esc(name))
}

/// The list of every Canary the user may list.
pub fn list(user: &str, read_only: bool, refresh: u32, rows: &[Row], hidden: bool) -> String {
    let mut body = String::from(
        r#"<h1>Canaries</h1><table id="canaries"><thead><tr><th>Namespace</th><th>Name</th><th>Phase</th><th>Canary weight</th><th>Failed checks</th><th>Last change</th></tr></thead><tbody>"#,
    );
    for r in rows {
        let changed = r
            .status
            .last_transition_time
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        let _ = write!(
            body,
            r#"<tr data-canary="{ns}/{name}"><td>{ns}</td><td><a href="{href}">{name}</a>{paused}</td><td>{phase}</td><td>{bar}</td><td>{failed} / {threshold}</td><td>{changed}</td></tr>"#,
            ns = esc(&r.namespace),
            name = esc(&r.name),
            href = href(&r.namespace, &r.name),
            paused = if r.paused.is_some() {
                r#" <span class="badge">paused</span>"#
            } else {
                ""
            },
            phase = phase_badge(r.status.phase),
            bar = weight_bar(r.status.canary_weight),
            failed = r.status.failed_checks,
            threshold = r.threshold,
            changed = esc(&changed),
        );
    }
    body.push_str("</tbody></table>");
    if rows.is_empty() {
        body.push_str(r#"<p id="empty">No Canaries you may list.</p>"#);
    }
    if hidden {
        body.push_str(
            r#"<p class="hint">Canaries in namespaces where you may not list canaries are not shown.</p>"#,
        );
    }
    page("Canaries", Some(user), refresh, read_only, &body)
}

/// What the user may do on one Canary.
pub enum Actions {
    /// The dashboard runs with `--dashboard-read-only`.
    ReadOnly,
    /// RBAC says no: why.
    Denied(String),
    /// The buttons.
    Allowed,
}

/// Everything the detail page shows.
pub struct Detail<'a> {
    /// The row data.
    pub row: &'a Row,
    /// The SVG chart.
    pub chart: String,
    /// Recent events, or why they are not shown.
    pub events: Result<Vec<EventRow>, String>,
    /// Buttons or why not.
    pub actions: Actions,
}

fn threshold(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("{a} ≤ x ≤ {b}"),
        (Some(a), None) => format!("≥ {a}"),
        (None, Some(b)) => format!("≤ {b}"),
        (None, None) => "-".to_string(),
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    })
}

/// One Canary.
pub fn detail(user: &str, read_only: bool, refresh: u32, d: &Detail<'_>) -> String {
    let r = d.row;
    let st = &r.status;
    let mut b = String::new();
    let _ = write!(
        b,
        r#"<p class="crumbs"><a href="/">Canaries</a> / {ns}</p><h1 id="name">{name} {phase}</h1><dl class="facts"><dt>Canary weight</dt><dd id="weight">{w}% (primary {pw}%, max {mw}%)</dd><dt>Failed checks</dt><dd id="failed">{f} of {t} allowed</dd><dt>Paused</dt><dd id="paused">{paused}</dd>"#,
        ns = esc(&r.namespace),
        name = esc(&r.name),
        phase = phase_badge(st.phase),
        w = st.canary_weight,
        pw = 100 - st.canary_weight.clamp(0, 100),
        mw = r.max_weight,
        f = st.failed_checks,
        t = r.threshold,
        paused = r
            .paused
            .as_deref()
            .map_or("no".to_string(), |p| format!("yes, by {}", text(p, 200))),
    );
    if let Some(rev) = &st.last_applied_spec {
        let _ = write!(b, "<dt>Revision</dt><dd>{}</dd>", esc(rev));
    }
    if let Some(rev) = &st.last_promoted_spec {
        let _ = write!(b, "<dt>Primary runs</dt><dd>{}</dd>", esc(rev));
    }
    if let Some(w) = &st.wait {
        let _ = write!(
            b,
            "<dt>Waiting for</dt><dd>{} until {}{}</dd>",
            esc(&w.reason),
            esc(&w.deadline.0.to_string()),
            w.message
                .as_deref()
                .map(|m| format!(": {}", text(m, 300)))
                .unwrap_or_default()
        );
    }
    b.push_str("</dl>");
    match &d.actions {
        Actions::ReadOnly => b.push_str(
            r#"<p class="hint" id="no-actions">This dashboard is read-only: use <code>siskin promote|abort|pause|resume|retry</code>.</p>"#,
        ),
        Actions::Denied(why) => {
            let _ = write!(
                b,
                r#"<p class="hint" id="no-actions">No actions: {}.</p>"#,
                esc(why)
            );
        }
        Actions::Allowed => {
            let _ = write!(
                b,
                r#"<div class="actions" id="actions" data-path="{}"><button data-action="promote">Promote</button><button data-action="abort" class="danger">Abort</button><button data-action="retry">Retry</button><input id="reason" name="reason" placeholder="reason for a pause" maxlength="200"><button data-action="pause">Pause</button><button data-action="resume">Resume</button></div>"#,
                href(&r.namespace, &r.name)
            );
        }
    }
    b.push_str(r#"<p id="result" role="status"></p>"#);
    let _ = write!(
        b,
        r#"<h2>Weight over time</h2>{}<p class="hint">As seen by this operator replica since it started.</p>"#,
        d.chart
    );

    b.push_str(r#"<h2>Conditions</h2><table id="conditions"><thead><tr><th>Type</th><th>Status</th><th>Reason</th><th>Message</th></tr></thead><tbody>"#);
    for c in st.conditions.iter().flatten() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.r#type),
            esc(&c.status),
            esc(&c.reason),
            text(c.message.as_deref().unwrap_or_default(), 500)
        );
    }
    b.push_str("</tbody></table>");

    b.push_str(r#"<h2>Checks</h2><table id="checks"><thead><tr><th>Name</th><th>Provider</th><th>Value</th><th>Threshold</th><th>Verdict</th><th>Query and message</th></tr></thead><tbody>"#);
    let checks = st.checks.clone().unwrap_or_default();
    if checks.is_empty() {
        b.push_str(r#"<tr><td colspan="6">none run yet</td></tr>"#);
    }
    for c in &checks {
        let (class, verdict) = match c.verdict {
            Verdict::Pass => ("good", "pass"),
            Verdict::Fail => ("bad", "fail"),
            Verdict::NoData => ("idle", "no data"),
            Verdict::Error => ("bad", "error"),
        };
        let _ = write!(
            b,
            r#"<tr data-check="{name}"><td>{name}</td><td>{provider}</td><td>{value}</td><td>{threshold}</td><td><span class="phase {class}">{verdict}</span></td><td>{query}{message}</td></tr>"#,
            name = esc(&c.name),
            provider = esc(c.provider.as_deref().unwrap_or(&c.kind)),
            value = num(c.value),
            threshold = esc(&threshold(c.min, c.max)),
            query = c
                .query
                .as_deref()
                .map(|q| format!("<code>{}</code>", text(q, 1000)))
                .unwrap_or_default(),
            message = c
                .message
                .as_deref()
                .map(|m| format!("<br>{}", text(m, 500)))
                .unwrap_or_default(),
        );
    }
    b.push_str("</tbody></table>");

    b.push_str(r#"<h2>Webhooks</h2><table id="webhooks"><thead><tr><th>Name</th><th>Type</th><th>Result</th><th>Status</th><th>Answer</th></tr></thead><tbody>"#);
    let hooks = st.webhooks.clone().unwrap_or_default();
    if hooks.is_empty() {
        b.push_str(r#"<tr><td colspan="5">none called</td></tr>"#);
    }
    for h in &hooks {
        let _ = write!(
            b,
            r#"<tr data-hook="{name}"><td>{name}</td><td>{kind}</td><td><span class="phase {class}">{result}</span></td><td>{code}</td><td>{answer}</td></tr>"#,
            name = esc(&h.name),
            kind = esc(&h.r#type),
            class = if h.passed { "good" } else { "bad" },
            result = if h.passed { "pass" } else { "fail" },
            code = h.status_code.map_or("-".to_string(), |c| c.to_string()),
            answer = text(h.error.as_deref().unwrap_or(&h.response), 300),
        );
    }
    b.push_str("</tbody></table>");

    b.push_str(r#"<h2>History</h2><table id="history"><thead><tr><th>Finished</th><th>Outcome</th><th>Revision</th><th>Why</th></tr></thead><tbody>"#);
    for h in st.history.iter().flatten().rev() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&h.finished.0.to_string()),
            phase_badge(h.phase),
            esc(&h.revision),
            text(&h.message, 300)
        );
    }
    b.push_str("</tbody></table>");

    b.push_str("<h2>Events</h2>");
    match &d.events {
        Err(why) => {
            let _ = write!(b, r#"<p class="hint" id="events-hidden">{}</p>"#, esc(why));
        }
        Ok(events) => {
            b.push_str(r#"<table id="events"><thead><tr><th>When</th><th>Type</th><th>Reason</th><th>Message</th></tr></thead><tbody>"#);
            for e in events.iter().rev() {
                let _ = write!(
                    b,
                    r#"<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                    if e.kind == "Warning" { "warn" } else { "" },
                    esc(&e.when),
                    esc(&e.kind),
                    esc(&e.reason),
                    text(&e.message, 500)
                );
            }
            b.push_str("</tbody></table>");
        }
    }
    page(
        &format!("{}/{}", r.namespace, r.name),
        Some(user),
        refresh,
        read_only,
        &b,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_everything_but_their_host() {
        assert_eq!(
            redact_urls(
                r#"error sending request for url (https://hooks.slack.com/services/T0/B0/XYZ?token=s3cr3t)"#
            ),
            "error sending request for url (https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_urls("see https://h/x?a=1,token=SECRET, then"),
            "see https://h/… then"
        );
        assert_eq!(redact_urls("https://u:p/w@h/x"), "https://h/…");
        assert_eq!(
            redact_urls(r#"{"url":"https:\/\/h\/hook?t=SECRET"}"#),
            r#"{"url":"https://h/…"}"#
        );
        assert_eq!(redact_urls("é://x é https://h/p"), "é://x é https://h/…");
        assert_eq!(
            redact_urls("GET http://user:pass@prom:9090/api/v1/query failed"),
            "GET http://prom:9090/… failed"
        );
        assert_eq!(redact_urls("plain http://host ok"), "plain http://host ok");
        assert_eq!(redact_urls("no urls :// here"), "no urls :// here");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<script>"x"&'"#),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
        assert_eq!(text("<b>", 10), "&lt;b&gt;");
        assert_eq!(text("abcdef", 3), "abc…");
    }
}
