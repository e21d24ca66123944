//! Which HTTP/1.1 request heads the router's own server answers, and where their parts lie.
//!
//! The router answers simple requests itself (`router/src/h1server.rs`): a keep-alive
//! `HTTP/1.1` request in origin form without a body, `Expect` or an upgrade. [`classify`] reads
//! a head with `httparse` and says whether it is one of those and where its method, target and
//! fields are in the bytes; every other head is left to hyper's server. Pure, so it is fuzzed
//! (`router/fuzz`, target `server_head`).

/// A head longer than this is never simple; hyper's server applies the configured limit.
pub const HEAD_LIMIT: usize = 8192;

/// Most fields a simple head may have.
pub const MAX_FIELDS: usize = 64;

/// Where one part of a head lies in the bytes read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Offset from the start of the head.
    pub start: u16,
    /// Length in bytes.
    pub len: u16,
}

impl Span {
    /// The part itself.
    pub fn of<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.range()]
    }

    /// The part's place as a range.
    pub fn range(&self) -> std::ops::Range<usize> {
        usize::from(self.start)..usize::from(self.start) + usize::from(self.len)
    }
}

/// A simple request's head.
#[derive(Clone, Debug)]
pub struct SimpleHead {
    /// Length of the head, its blank line included.
    pub len: usize,
    /// The method.
    pub method: Span,
    /// The request target (origin form: starts with `/`).
    pub target: Span,
    fields: [(Span, Span); MAX_FIELDS],
    count: usize,
    /// The client asked to close the connection after this request (`Connection: close`).
    pub close: bool,
}

impl SimpleHead {
    /// The header fields in order: name and value.
    pub fn fields(&self) -> &[(Span, Span)] {
        &self.fields[..self.count]
    }
}

/// What the bytes read so far hold. The large variant is the usual one; boxing it would cost
/// an allocation per request.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Head {
    /// A complete simple head.
    Simple(SimpleHead),
    /// The start of a head, not complete yet.
    Partial,
    /// A head for hyper's server: not simple, malformed, or longer than [`HEAD_LIMIT`].
    Other,
}

/// Classifies the head at the start of `bytes`.
pub fn classify(bytes: &[u8]) -> Head {
    let bytes = &bytes[..bytes.len().min(HEAD_LIMIT)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    let (Some(method), Some(target), Some(1)) = (parsed.method, parsed.path, parsed.version) else {
        return Head::Other;
    };
    if !target.starts_with('/') {
        return Head::Other;
    }
    let base = bytes.as_ptr() as usize;
    // Offsets fit in u16: the head is at most HEAD_LIMIT bytes.
    let span = |part: &[u8]| Span {
        start: u16::try_from(part.as_ptr() as usize - base).unwrap_or(u16::MAX),
        len: u16::try_from(part.len()).unwrap_or(0),
    };
    let mut head = SimpleHead {
        len,
        method: span(method.as_bytes()),
        target: span(target.as_bytes()),
        fields: [(Span::default(), Span::default()); MAX_FIELDS],
        count: parsed.headers.len(),
        close: false,
    };
    for (slot, h) in head.fields.iter_mut().zip(parsed.headers.iter()) {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            if h.value != b"0" {
                return Head::Other;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Head::Other;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Head::Other;
                }
            }
        }
        *slot = (span(name), span(h.value));
    }
    Head::Simple(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(text: &[u8]) -> SimpleHead {
        match classify(text) {
            Head::Simple(h) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
        }
    }

    #[test]
    fn simple_heads_are_taken_apart_and_the_rest_left_to_hyper() {
        let text = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next";
        let h = simple(text);
        assert_eq!(h.len, text.len() - b"GET /next".len());
        assert_eq!(h.method.of(text), b"GET");
        assert_eq!(h.target.of(text), b"/a?b=1");
        let fields: Vec<(&[u8], &[u8])> = h
            .fields()
            .iter()
            .map(|(n, v)| (n.of(text), v.of(text)))
            .collect();
        assert_eq!(
            fields,
            [
                (&b"Host"[..], &b"x"[..]),
                (b"X-Two", b"1"),
                (b"x-two", b"2")
            ]
        );
        assert!(!h.close);
        assert!(matches!(
            classify(b"GET / HTTP/1.1\r\nhost: x\r\n"),
            Head::Partial
        ));
        let h = simple(
            b"HEAD / HTTP/1.1\r\nconnection: keep-alive, close\r\ncontent-length: 0\r\n\r\n",
        );
        assert!(h.close);
        for other in [
            &b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
            b"PUT / HTTP/1.1\r\nexpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
        ] {
            assert!(
                matches!(classify(other), Head::Other),
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
        // Longer than the limit: not simple even once complete.
        let mut long = b"GET / HTTP/1.1\r\nx-long: ".to_vec();
        long.resize(HEAD_LIMIT + 10, b'a');
        assert!(matches!(classify(&long), Head::Partial));
        long.extend_from_slice(b"\r\n\r\n");
        assert!(!matches!(classify(&long), Head::Simple(_)));
    }
}
