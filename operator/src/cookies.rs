//! Session-affinity cookies of a run, as the router (or a Gateway) sets them.

use siskin_api::analysis::SessionAffinity;
use siskin_route::SessionCookie;

/// The cookie for `pair` (`name=value`) with the attributes of `sessionAffinity`.
pub fn session_cookie(
    pair: Option<&str>,
    max_age: Option<i64>,
    sa: Option<&SessionAffinity>,
) -> Option<SessionCookie> {
    let (name, value) = pair?.split_once('=')?;
    Some(SessionCookie {
        name: name.into(),
        value: value.into(),
        max_age,
        domain: sa.and_then(|s| s.domain.clone()),
        path: sa.and_then(|s| s.path.clone()),
        secure: sa.and_then(|s| s.secure).unwrap_or(false),
        http_only: sa.and_then(|s| s.http_only).unwrap_or(false),
        partitioned: sa.and_then(|s| s.partitioned).unwrap_or(false),
        same_site: sa.and_then(|s| s.same_site).map(|v| format!("{v:?}")),
    })
}
