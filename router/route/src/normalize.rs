//! Request path normalization before matching: the path a rule matches is the path the
//! upstream receives, so `/public/../admin/` cannot pass a rule for `/public` and reach
//! `/admin/` behind it.
//!
//! What is normalized (RFC 3986 §6.2.2, as Envoy's `normalize_path` and `merge_slashes`):
//! percent-encoded unreserved characters are decoded (`%2e` is `.`, `%41` is `A`), other
//! escapes get upper-case hex digits, runs of `/` become one, and the dot segments `.` and
//! `..` are removed (never above the root). An encoded slash (`%2F`) or backslash (`%5C`) is
//! kept encoded: it is data, not a separator. A path that is not absolute, or holds a
//! malformed escape, is refused.

use std::borrow::Cow;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// It does not start with `/`.
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEscape,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether an absolute path has nothing to normalize: no escape, no empty segment and no
/// dot segment. One pass over the bytes (this runs for every request).
fn is_normal(bytes: &[u8]) -> bool {
    let mut segment_start = 1;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            b'%' => return false,
            b'/' => {
                if matches!(&bytes[segment_start..i], b"" | b"." | b"..") {
                    return false;
                }
                segment_start = i + 1;
            }
            _ => {}
        }
    }
    !matches!(&bytes[segment_start.min(bytes.len())..], b"." | b"..")
}

/// The normalized path; borrowed when `path` is already normal.
pub fn path(path: &str) -> Result<Cow<'_, str>, BadPath> {
    if !path.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    let bytes = path.as_bytes();
    if is_normal(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    // Decode what must be decoded, upper-case the rest of the escapes.
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(BadPath::BadEscape);
            };
            let v = h * 16 + l;
            if unreserved(v) {
                decoded.push(char::from(v));
            } else {
                decoded.push_str(&format!("%{v:02X}"));
            }
            i += 3;
        } else if b.is_ascii() {
            decoded.push(char::from(b));
            i += 1;
        } else {
            decoded.push_str(&format!("%{b:02X}"));
            i += 1;
        }
    }
    // Segments without empty ones (merged slashes) and without dot segments.
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(decoded.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() || trailing {
        s.push('/');
    }
    Ok(Cow::Owned(s))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dot_segments_slashes_and_escapes_are_normalized() {
        for (input, want) in [
            ("/", "/"),
            ("/public/index.html", "/public/index.html"),
            ("/public/../admin/", "/admin/"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("//admin", "/admin"),
            ("/public//./x", "/public/x"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/%41pi", "/Api"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%5c..%5cb", "/a%5C..%5Cb"),
            ("/..", "/"),
            ("/a/%7euser", "/a/~user"),
        ] {
            assert_eq!(path(input).unwrap(), want, "{input}");
        }
        for normal in ["/", "/ok/path", "/a/", "/a.b/..c/.d"] {
            assert!(matches!(path(normal), Ok(Cow::Borrowed(_))), "{normal}");
        }
    }

    #[test]
    fn malformed_paths_are_refused() {
        assert_eq!(path("*"), Err(BadPath::NotAbsolute));
        assert_eq!(path("/a%2"), Err(BadPath::BadEscape));
        assert_eq!(path("/a%zz"), Err(BadPath::BadEscape));
    }
}
