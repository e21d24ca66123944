//! Why a request failed, as a closed, low-cardinality set (the `error_kind` metric label).

use http::StatusCode;

/// Failure kinds, classified once at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No route matched (404).
    NoRoute,
    /// The rule's backends all have weight 0 (500, as Gateway API requires).
    NoBackend,
    /// The backend has no usable endpoint (503).
    NoEndpoint,
    /// Connecting to the endpoint failed (502).
    ConnectFailed,
    /// The endpoint failed mid-exchange (502).
    UpstreamFailed,
    /// The rule's request timeout passed (504).
    RequestTimeout,
    /// An attempt's backend timeout passed (504).
    BackendTimeout,
    /// The concurrency limit is reached (503).
    Overloaded,
    /// The request body is larger than allowed (413).
    BodyTooLarge,
    /// The request path is malformed: not absolute, or a bad percent escape (400).
    BadPath,
}

// === impl ErrorKind ===

impl ErrorKind {
    /// Every kind, in label order.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::NoRoute,
        ErrorKind::NoBackend,
        ErrorKind::NoEndpoint,
        ErrorKind::ConnectFailed,
        ErrorKind::UpstreamFailed,
        ErrorKind::RequestTimeout,
        ErrorKind::BackendTimeout,
        ErrorKind::Overloaded,
        ErrorKind::BodyTooLarge,
        ErrorKind::BadPath,
    ];

    /// The status answered to the client.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::NoBackend => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::NoEndpoint | ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::ConnectFailed | ErrorKind::UpstreamFailed => StatusCode::BAD_GATEWAY,
            ErrorKind::RequestTimeout | ErrorKind::BackendTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::BadPath => StatusCode::BAD_REQUEST,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "no_route",
            ErrorKind::NoBackend => "no_backend",
            ErrorKind::NoEndpoint => "no_endpoint",
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::UpstreamFailed => "upstream_failed",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::BackendTimeout => "backend_timeout",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::BadPath => "bad_path",
        }
    }

    /// Position in [`ErrorKind::ALL`].
    pub fn index(self) -> usize {
        ErrorKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}
