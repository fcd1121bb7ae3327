//! Error types. Each variant has a short stable label ([`Error::kind`],
//! [`NotifyError::kind`]) for metrics and logs.
//!
//! No error ever carries a secret: URLs are shown without credentials or query (webhook
//! URLs by scheme, host and port only), tokens and signing secrets never appear. Text
//! that came from upstream (a response body, Prometheus' error message) is quoted short
//! (at most 200 characters) and without control characters, because errors end up in
//! experiment records that unauthenticated `GET` endpoints serve; the client logs a
//! longer excerpt at debug level.

use std::{path::PathBuf, time::Duration};

/// Errors of the health clients (Prometheus, Alertmanager), of configuration and of
/// secret resolution.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configured URL does not parse or has an unsupported scheme.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The TLS configuration could not be built.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// No complete answer within the configured timeout.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The connection could not be established (refused, DNS, TLS handshake).
    #[error("{url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    /// The request failed after connecting (connection reset, broken body).
    #[error("{url}: request failed: {reason}")]
    Transport { url: String, reason: String },
    /// A non-success HTTP status without a more specific meaning. `reason` is a short,
    /// sanitized excerpt of the answer (or the status' canonical reason), never the whole
    /// body.
    #[error("{url}: HTTP {status}: {reason}")]
    Http {
        url: String,
        status: u16,
        reason: String,
    },
    /// A URL that would send a credential in clear: a Slack API URL over plain `http://`
    /// to a host that is not loopback.
    #[error(
        "{url}: refusing to send a token over plain http; use https (http is allowed only to localhost, 127.0.0.0/8 and ::1)"
    )]
    InsecureUrl { url: String },
    /// The answer is not what the API documents (not JSON, missing fields).
    #[error("{url}: unexpected answer: {reason}")]
    BadResponse { url: String, reason: String },
    /// Prometheus refused or failed the query (`status: error`). Both fields are
    /// Prometheus' words, sanitized and bounded.
    #[error("query failed ({error_type}): {message}")]
    Query { error_type: String, message: String },
    /// The query result is not a number (a range vector or a string).
    #[error("query result is a {result_type}, not a number")]
    NotANumber { result_type: String },
    /// An SLO query returned more than one sample.
    #[error("query returned {0} samples, expected exactly one")]
    Ambiguous(usize),
    /// A secret reference names neither an environment variable nor a file.
    #[error("secret reference names neither an environment variable nor a file")]
    SecretNotConfigured,
    /// The environment variable of a secret is unset or not UTF-8.
    #[error("secret environment variable {var} is not set (or not UTF-8)")]
    SecretEnv { var: String },
    /// The file of a secret cannot be read.
    #[error("secret file {}: {source}", path.display())]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The secret is empty.
    #[error("secret from {from} is empty")]
    SecretEmpty { from: String },
}

impl Error {
    /// A short stable label for metrics (`health_checks_total{result}` and the like).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidUrl { .. } => "invalid_url",
            Error::Tls(_) => "tls",
            Error::Timeout { .. } => "timeout",
            Error::Connect { .. } => "connect",
            Error::Transport { .. } => "transport",
            Error::Http { status, .. } if *status >= 500 => "http_5xx",
            Error::Http { .. } => "http_4xx",
            Error::InsecureUrl { .. } => "config",
            Error::BadResponse { .. } => "bad_response",
            Error::Query { .. } => "query",
            Error::NotANumber { .. } => "not_a_number",
            Error::Ambiguous(_) => "ambiguous",
            Error::SecretNotConfigured
            | Error::SecretEnv { .. }
            | Error::SecretFile { .. }
            | Error::SecretEmpty { .. } => "secret",
        }
    }
}

/// A failed notification: worth retrying, or not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// A transient failure (HTTP 5xx, 429/`ratelimited`, network error, timeout). When the
    /// receiver said how long to wait (`Retry-After`), `retry_after` carries it.
    #[error("retryable: {reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// A failure that retrying will not fix (`invalid_auth`, `channel_not_found`, other 4xx).
    #[error("permanent: {reason}")]
    Permanent { reason: String },
}

impl NotifyError {
    pub(crate) fn retryable(reason: impl Into<String>) -> Self {
        NotifyError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub(crate) fn permanent(reason: impl Into<String>) -> Self {
        NotifyError::Permanent {
            reason: reason.into(),
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, NotifyError::Retryable { .. })
    }

    /// How long the receiver asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NotifyError::Retryable { retry_after, .. } => *retry_after,
            NotifyError::Permanent { .. } => None,
        }
    }

    /// The human-readable reason.
    pub fn reason(&self) -> &str {
        match self {
            NotifyError::Retryable { reason, .. } | NotifyError::Permanent { reason } => reason,
        }
    }

    /// A short stable label for metrics: `retryable` or `permanent`.
    pub fn kind(&self) -> &'static str {
        match self {
            NotifyError::Retryable { .. } => "retryable",
            NotifyError::Permanent { .. } => "permanent",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stable_labels() {
        let http = |status| Error::Http {
            url: "u".into(),
            status,
            reason: String::new(),
        };
        assert_eq!(http(503).kind(), "http_5xx");
        assert_eq!(http(404).kind(), "http_4xx");
        assert_eq!(Error::Ambiguous(2).kind(), "ambiguous");
        assert_eq!(
            Error::Timeout {
                url: "u".into(),
                timeout: Duration::from_secs(1)
            }
            .kind(),
            "timeout"
        );
        assert_eq!(
            Error::InsecureUrl {
                url: "http://slack.example".into()
            }
            .kind(),
            "config"
        );
        assert_eq!(NotifyError::permanent("x").kind(), "permanent");
        assert_eq!(NotifyError::retryable("x").kind(), "retryable");
    }
}
