//! Who is asking, and may they: the user's own Kubernetes bearer token checked with a
//! TokenReview, and each view and action with a SubjectAccessReview for that user. Both
//! answers are kept for [`TTL`] so a page does not cost a review per row; a revoked token or
//! a removed RoleBinding takes effect within that time.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::{Api, Client, api::PostParams};
use sha2::{Digest, Sha256};

/// How long a review's answer is reused.
pub const TTL: Duration = Duration::from_secs(10);
/// Answers kept at most; when full, expired ones are dropped, and if none has expired all
/// are (so a flood of made-up tokens costs reviews, never the cache).
const CACHE_LIMIT: usize = 4096;

/// A user as the API server authenticated them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct User {
    /// `username` of the TokenReview.
    pub name: String,
    /// `uid`.
    pub uid: String,
    /// `groups`.
    pub groups: Vec<String>,
    /// `extra` (scopes, credential ids), passed on to every SubjectAccessReview.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// One thing a user may or may not do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    /// `get`, `list`, `patch`.
    pub verb: &'static str,
    /// API group (`siskin.dev`, `flagger.app`, `""` for core).
    pub group: String,
    /// `canaries`, `events`.
    pub resource: &'static str,
    /// Namespace; empty for every namespace.
    pub namespace: String,
    /// One object, or empty for all.
    pub name: String,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        write!(f, "{} {what}", self.verb)?;
        if !self.name.is_empty() {
            write!(f, " {:?}", self.name)?;
        }
        if self.namespace.is_empty() {
            write!(f, " in every namespace")
        } else {
            write!(f, " in namespace {:?}", self.namespace)
        }
    }
}

/// Why a user could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The API server does not accept the token.
    #[error("the API server did not accept this token{0}")]
    Rejected(String),
    /// The review itself failed (API server down, the operator lacks RBAC for reviews).
    #[error(
        "cannot ask the API server ({0}); try again, or check that the operator may create tokenreviews and subjectaccessreviews"
    )]
    Unavailable(String),
}

/// A TokenReview's answer: the user, or why the token was refused.
type Authenticated = Result<Arc<User>, String>;

/// The reviews, with their recent answers.
pub struct Auth {
    client: Client,
    /// By the token's SHA-256 (the tokens themselves are not kept).
    tokens: Mutex<HashMap<[u8; 32], (Instant, Authenticated)>>,
    decisions: Mutex<HashMap<(User, Access), (Instant, bool)>>,
}

fn fresh<K: Eq + std::hash::Hash, V: Clone>(
    map: &Mutex<HashMap<K, (Instant, V)>>,
    key: &K,
) -> Option<V> {
    let map = map.lock().ok()?;
    map.get(key)
        .filter(|(at, _)| at.elapsed() < TTL)
        .map(|(_, v)| v.clone())
}

fn remember<K: Eq + std::hash::Hash, V>(map: &Mutex<HashMap<K, (Instant, V)>>, key: K, v: V) {
    if let Ok(mut map) = map.lock() {
        if map.len() >= CACHE_LIMIT {
            map.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        if map.len() >= CACHE_LIMIT {
            map.clear();
        }
        map.insert(key, (Instant::now(), v));
    }
}

impl Auth {
    /// Reviews with the operator's client (it may create tokenreviews and subjectaccessreviews).
    pub fn new(client: Client) -> Auth {
        Auth {
            client,
            tokens: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        }
    }

    /// The user `token` belongs to (TokenReview).
    pub async fn authenticate(&self, token: &str) -> Result<Arc<User>, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(known) = fresh(&self.tokens, &key) {
            return known.map_err(AuthError::Rejected);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: None,
            },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let status = answer.status.unwrap_or_default();
        let user = status.user.unwrap_or_default();
        let result = match (status.authenticated, user.username) {
            (Some(true), Some(name)) if !name.is_empty() => Ok(Arc::new(User {
                name,
                uid: user.uid.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default(),
            })),
            _ => Err(status.error.map(|e| format!(": {e}")).unwrap_or_default()),
        };
        remember(&self.tokens, key, result.clone());
        result.map_err(AuthError::Rejected)
    }

    /// Whether `user` may do `access` (SubjectAccessReview).
    pub async fn allowed(&self, user: &User, access: &Access) -> Result<bool, AuthError> {
        let key = (user.clone(), access.clone());
        if let Some(known) = fresh(&self.decisions, &key) {
            return Ok(known);
        }
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: opt(&user.uid),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(access.verb.to_string()),
                    group: Some(access.group.clone()),
                    resource: Some(access.resource.to_string()),
                    namespace: opt(&access.namespace),
                    name: opt(&access.name),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let allowed = answer
            .status
            .is_some_and(|s| s.allowed && s.denied != Some(true));
        remember(&self.decisions, key, allowed);
        Ok(allowed)
    }
}

/// The bearer token of a request: `Authorization: Bearer …`, else the session cookie.
pub fn token(headers: &http::HeaderMap, cookie: &str) -> Option<String> {
    if let Some(t) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        let t = t.trim();
        return (!t.is_empty()).then(|| t.to_string());
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == cookie)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// Whether `token` can be kept in a cookie as it is (JWTs and static tokens of visible ASCII
/// without separators can).
pub fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 3800
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_header_wins_over_the_cookie() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=b; siskin_token=from-cookie".parse().unwrap(),
        );
        assert_eq!(token(&h, "siskin_token").unwrap(), "from-cookie");
        h.insert(http::header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(token(&h, "siskin_token").unwrap(), "abc");
        assert!(token(&http::HeaderMap::new(), "siskin_token").is_none());
    }

    #[test]
    fn only_plain_tokens_go_in_a_cookie() {
        assert!(cookie_safe("eyJhbGciOi.abc-_def.xyz"));
        assert!(!cookie_safe("a;b"));
        assert!(!cookie_safe("a b"));
        assert!(!cookie_safe(""));
    }

    #[test]
    fn access_reads_as_a_sentence() {
        let a = Access {
            verb: "patch",
            group: "siskin.dev".into(),
            resource: "canaries",
            namespace: "apps".into(),
            name: "podinfo".into(),
        };
        assert_eq!(
            a.to_string(),
            "patch canaries.siskin.dev \"podinfo\" in namespace \"apps\""
        );
    }
}
