//! Shared plumbing of the reqwest-based clients (Prometheus, Alertmanager, webhooks):
//! client construction with timeouts and TLS, URL handling that never exposes
//! credentials, mapping of transport errors, and the sanitizing of upstream text before
//! it goes into an error.
//!
//! Errors end up in experiment records that unauthenticated `GET` endpoints serve, so
//! whatever an upstream said (a response body, an error message) is quoted only through
//! [`sanitize`]: at most [`REASON_MAX`] characters, no control or invisible formatting
//! characters. Longer excerpts go to debug logs only ([`log_excerpt`]).

use std::{
    net::{IpAddr, Ipv6Addr},
    time::Duration,
};

use url::{Host, Url};

use crate::{Error, NotifyError, tls};

/// Longest upstream text (a response body, an error message) an error quotes.
pub(crate) const REASON_MAX: usize = 200;

/// Longest excerpt of a response body written to a debug log.
const LOG_EXCERPT: usize = 1024;

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

/// Whether `url` names this machine: `localhost`, `127.0.0.0/8` or `::1` (also as an
/// IPv4-mapped IPv6 address). Only the name `localhost` itself counts, not its subdomains,
/// which resolvers do not all send to loopback.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            name.eq_ignore_ascii_case("localhost")
        }
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => ipv6_is_loopback(ip),
        None => false,
    }
}

fn ipv6_is_loopback(ip: Ipv6Addr) -> bool {
    ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
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

/// [`display`] of a URL given as text (`<unparseable>` when it does not parse).
pub(crate) fn display_str(url: &str) -> String {
    Url::parse(url).map_or_else(|_| "<unparseable>".to_string(), |u| display(&u))
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

/// `text` made safe to quote: control characters (newlines, escapes) and invisible
/// formatting characters (zero-width, bidirectional overrides) become spaces, runs of
/// whitespace one space, and the result has at most `max` characters (a cut one ends in
/// `…`).
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let mut clean = String::new();
    let mut count = 0;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || is_unsafe(c) {
            space = count > 0;
            continue;
        }
        if space {
            clean.push(' ');
            count += 1;
            space = false;
        }
        clean.push(c);
        count += 1;
        if count > max {
            break;
        }
    }
    if count <= max {
        return clean;
    }
    if max == 0 {
        return String::new();
    }
    let end = clean
        .char_indices()
        .nth(max - 1)
        .map_or(clean.len(), |(i, _)| i);
    clean.truncate(end);
    clean.truncate(clean.trim_end().len());
    clean.push('…');
    clean
}

/// Control characters and the invisible ones that can disguise text in a log or a page.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width space, joiners, direction marks
            | '\u{2028}'..='\u{202e}' // line/paragraph separators, bidirectional embeddings
            | '\u{2060}'..='\u{206f}' // word joiner, invisible operators, bidi isolates
            | '\u{feff}' // byte order mark
        )
}

/// A short reason from an upstream response body, for an error's message: sanitized, at
/// most [`REASON_MAX`] characters; the status' canonical reason when the body is empty.
pub(crate) fn body_reason(status: u16, body: &[u8]) -> String {
    let reason = sanitize(&String::from_utf8_lossy(body), REASON_MAX);
    if reason.is_empty() {
        reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no body")
            .to_string()
    } else {
        reason
    }
}

/// A longer (but still bounded and sanitized) excerpt of a body, for debug logs only.
pub(crate) fn log_excerpt(body: &[u8]) -> String {
    sanitize(&String::from_utf8_lossy(body), LOG_EXCERPT)
}

/// `text` with every occurrence of each secret (of at least two characters) replaced by
/// `***`.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 2)
        .fold(text.to_string(), |text, secret| text.replace(secret, "***"))
}

/// Maps a reqwest error (sending, or reading the body) to [`Error`].
pub(crate) fn transport_error(e: reqwest::Error, url: String, timeout: Duration) -> Error {
    let e = e.without_url();
    if e.is_timeout() {
        Error::Timeout { url, timeout }
    } else if e.is_connect() {
        Error::Connect {
            url,
            reason: sanitize(&chain(&e), REASON_MAX),
        }
    } else if e.is_builder() {
        Error::InvalidUrl {
            url,
            reason: sanitize(&chain(&e), REASON_MAX),
        }
    } else {
        Error::Transport {
            url,
            reason: sanitize(&chain(&e), REASON_MAX),
        }
    }
}

/// Maps a reqwest error of a notification to [`NotifyError`]: network errors and timeouts
/// are retryable, a request that cannot even be built is not.
pub(crate) fn notify_transport_error(e: reqwest::Error, target: &str) -> NotifyError {
    let e = e.without_url();
    let reason = sanitize(&chain(&e), REASON_MAX);
    if e.is_builder() {
        NotifyError::permanent(format!("{target}: {reason}"))
    } else if e.is_timeout() {
        NotifyError::retryable(format!("{target}: timeout: {reason}"))
    } else {
        NotifyError::retryable(format!("{target}: {reason}"))
    }
}

/// Classifies an HTTP status of a notification: 2xx ok, 429 and 5xx retryable (with the
/// `Retry-After` seconds when given), everything else permanent. The reason quotes the
/// answer's body sanitized and short, with every one of `secrets` (a webhook URL's path
/// and query, which a receiver may echo) replaced by `***`.
pub(crate) fn classify_status(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    target: &str,
    secrets: &[&str],
) -> Result<(), NotifyError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = redact(&String::from_utf8_lossy(body), secrets);
    let reason = format!(
        "{target}: HTTP {status}: {}",
        body_reason(status, body.as_bytes())
    );
    match status {
        429 | 500..=599 => Err(NotifyError::Retryable {
            reason,
            retry_after: retry_after.and_then(parse_retry_after),
        }),
        _ => Err(NotifyError::permanent(reason)),
    }
}

/// A response's `Retry-After` header as text (for [`classify_status`]).
pub(crate) fn retry_after_header(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
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
        assert_eq!(classify_status(204, None, b"", "t", &[]), Ok(()));
        let e = classify_status(429, Some("3"), b"{}", "t", &[]).expect_err("429");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(
            classify_status(503, None, b"", "t", &[])
                .expect_err("503")
                .is_retryable()
        );
        assert!(
            !classify_status(404, None, b"", "t", &[])
                .expect_err("404")
                .is_retryable()
        );
        assert!(
            !classify_status(401, None, b"", "t", &[])
                .expect_err("401")
                .is_retryable()
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn notification_reasons_are_short_clean_and_redacted() {
        let body = format!(
            "Cannot POST /services/T0/B0/XXSECRET?token=abc\n\u{1b}[31m{}",
            "x".repeat(5000)
        );
        let e = classify_status(
            404,
            None,
            body.as_bytes(),
            "webhook https://hooks.example",
            &["/services/T0/B0/XXSECRET", "token=abc"],
        )
        .expect_err("404");
        let reason = e.reason();
        assert!(
            !reason.contains("XXSECRET") && !reason.contains("abc"),
            "{reason}"
        );
        assert!(reason.contains("Cannot POST ***?***"), "{reason}");
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
        assert!(reason.chars().count() <= 260, "{}", reason.len());
        // An empty body says what the status means.
        let e = classify_status(502, None, b"", "t", &[]).expect_err("502");
        assert_eq!(e.reason(), "t: HTTP 502: Bad Gateway");
    }

    #[test]
    fn sanitize_bounds_and_cleans() {
        assert_eq!(sanitize("  a\r\n\tb\u{202e}c\u{0}  ", 100), "a b c");
        assert_eq!(sanitize("", 10), "");
        let long = "é".repeat(2000);
        let cut = sanitize(&long, REASON_MAX);
        assert_eq!(cut.chars().count(), REASON_MAX);
        assert!(cut.ends_with('…'));
        assert_eq!(sanitize("abc def", 7), "abc def");
        assert_eq!(sanitize("abc defg", 7), "abc de…");
        assert_eq!(sanitize("abc    defg", 5), "abc…");
        assert_eq!(sanitize("abcdef", 1), "…");
        assert_eq!(sanitize("abcdef", 0), "");
    }

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://127.0.0.1:18090/api",
            "http://127.1.2.3/",
            "http://localhost:8080/api",
            "http://LOCALHOST./",
            "http://[::1]:9/api",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(is_loopback(&parse_url(url).expect("url")), "{url}");
        }
        for url in [
            "http://10.0.0.1/api",
            "http://slack.com/api",
            "http://localhost.example/api",
            "http://foo.localhost/api",
            "http://[::2]/",
            "http://0.0.0.0/",
        ] {
            assert!(!is_loopback(&parse_url(url).expect("url")), "{url}");
        }
    }
}
