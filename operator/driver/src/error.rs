//! What can go wrong in a step, classified once so that every world reacts the same way: a
//! user's mistake is shown and not retried in a storm, a passing failure is retried soon.

/// A boxed cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failed seam call or step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Canary, its target or the file is wrong in a way a user must fix.
    #[error("{field}: {message}")]
    Invalid {
        /// The field to fix (`spec.service.port`, `primary[0]`).
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The outside world failed (API server, file system, a process); retried.
    #[error("{what}: {source}")]
    Unavailable {
        /// What was attempted.
        what: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The object changed since it was read (a status computed from an old version must not
    /// be written); the step runs again at once.
    #[error("{what}: changed since it was read")]
    Conflict {
        /// What was attempted.
        what: String,
    },
    /// Routing was written but is not served yet, so the workload it leaves is kept up.
    #[error("routing is not in place after {waited:?}: {detail}")]
    NotConverged {
        /// How long the driver waited.
        waited: std::time::Duration,
        /// What traffic looked like last.
        detail: String,
    },
}

/// Results of the driver.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// === impl Error ===

impl Error {
    /// A user's mistake in `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A failure of `what` caused by `source`.
    pub fn unavailable(what: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Unavailable {
            what: what.into(),
            source: source.into(),
        }
    }

    /// A closed set of labels for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Invalid { .. } => "invalid",
            Error::Unavailable { .. } => "unavailable",
            Error::Conflict { .. } => "conflict",
            Error::NotConverged { .. } => "not_converged",
        }
    }

    /// Whether retrying without a change can help (everything but a user's mistake).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Error::Invalid { .. })
    }
}
