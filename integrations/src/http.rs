//! Shared plumbing of the reqwest-based clients (Prometheus, Alertmanager, webhooks):
//! client construction with timeouts and TLS, URL handling that never exposes
//! credentials, and mapping of transport errors.

use std::time::Duration;

use url::Url;

use crate::{Error, NotifyError, tls};

/// Longest response body quoted in an error.
const BODY_EXCERPT: usize = 512;

/// A reqwest client whose every request (connect, send, read the body) has `timeout`.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls::client_config()?)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("havoc/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Tls(chain(&e.without_url())))
}

/// Parses an `http` or `https` URL.
pub(crate) fn parse_url(url: &str) -> Result<Url, Error> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: redact_str(url),
        reason,
    };
    let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(parsed),
        "http" | "https" => Err(invalid("no host".into())),
        other => Err(invalid(format!("unsupported scheme {other:?}"))),
    }
}

/// `base` with `path` appended to its own path (so `http://h/prefix` works), no query.
pub(crate) fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// The URL for messages: scheme, host, port and path; never credentials or the query.
pub(crate) fn display(url: &Url) -> String {
    let mut shown = origin(url);
    shown.push_str(url.path());
    shown
}

/// Scheme, host and port only (for URLs whose path may be a secret, like webhooks).
pub(crate) fn origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

fn redact_str(url: &str) -> String {
    Url::parse(url).map_or_else(|_| "<unparseable>".to_string(), |u| origin(&u))
}

/// An error and its sources, joined by `: `.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

/// At most [`BODY_EXCERPT`] characters of a response body.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Maps a reqwest error (sending, or reading the body) to [`Error`].
pub(crate) fn transport_error(e: reqwest::Error, url: String, timeout: Duration) -> Error {
    let e = e.without_url();
    if e.is_timeout() {
        Error::Timeout { url, timeout }
    } else if e.is_connect() {
        Error::Connect {
            url,
            reason: chain(&e),
        }
    } else if e.is_builder() {
        Error::InvalidUrl {
            url,
            reason: chain(&e),
        }
    } else {
        Error::Transport {
            url,
            reason: chain(&e),
        }
    }
}

/// Maps a reqwest error of a notification to [`NotifyError`]: network errors and timeouts
/// are retryable, a request that cannot even be built is not.
pub(crate) fn notify_transport_error(e: reqwest::Error, target: &str) -> NotifyError {
    let e = e.without_url();
    if e.is_builder() {
        NotifyError::permanent(format!("{target}: {}", chain(&e)))
    } else if e.is_timeout() {
        NotifyError::retryable(format!("{target}: timeout: {}", chain(&e)))
    } else {
        NotifyError::retryable(format!("{target}: {}", chain(&e)))
    }
}

/// Classifies an HTTP status of a notification: 2xx ok, 429 and 5xx retryable (with the
/// `Retry-After` seconds when given), everything else permanent.
pub(crate) fn classify_status(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    target: &str,
) -> Result<(), NotifyError> {
    match status {
        200..=299 => Ok(()),
        429 | 500..=599 => Err(NotifyError::Retryable {
            reason: format!("{target}: HTTP {status}: {}", excerpt(body)),
            retry_after: retry_after.and_then(parse_retry_after),
        }),
        _ => Err(NotifyError::permanent(format!(
            "{target}: HTTP {status}: {}",
            excerpt(body)
        ))),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Slack and is ignored).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_a_path_prefix_and_displays_drop_credentials() {
        let base = parse_url("http://user:pw@prom.example:9090/prefix/?x=1").expect("url");
        let url = endpoint(&base, "/api/v1/query");
        assert_eq!(url.path(), "/prefix/api/v1/query");
        assert_eq!(url.query(), None);
        assert_eq!(
            display(&url),
            "http://prom.example:9090/prefix/api/v1/query"
        );
        let plain = parse_url("https://am.example").expect("url");
        assert_eq!(
            endpoint(&plain, "api/v2/alerts").as_str(),
            "https://am.example/api/v2/alerts"
        );
    }

    #[test]
    fn rejects_other_schemes_without_echoing_the_url() {
        let err = parse_url("ftp://user:secret@host/x").expect_err("ftp");
        assert_eq!(err.kind(), "invalid_url");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(parse_url("not a url").is_err());
    }

    #[test]
    fn notification_statuses_are_classified() {
        assert_eq!(classify_status(204, None, b"", "t"), Ok(()));
        let e = classify_status(429, Some("3"), b"{}", "t").expect_err("429");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(
            classify_status(503, None, b"", "t")
                .expect_err("503")
                .is_retryable()
        );
        assert!(
            !classify_status(404, None, b"", "t")
                .expect_err("404")
                .is_retryable()
        );
        assert!(
            !classify_status(401, None, b"", "t")
                .expect_err("401")
                .is_retryable()
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn excerpts_are_bounded() {
        let long = "é".repeat(2000);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), BODY_EXCERPT + 1);
    }
}
