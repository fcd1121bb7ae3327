//! Webhooks: a JSON body `POST`ed to a URL, signed when a secret is configured.
//!
//! # Signatures
//!
//! A signed delivery carries two headers (here for the secret `s3cret` and the body `{}`):
//!
//! ```text
//! X-Havoc-Timestamp: 1774692000
//! X-Havoc-Signature: t=1774692000,v1=66371cc411fa9ed14057f5c6ee95fd2db62ca7df5b373aace2dbcc449300ab14
//! ```
//!
//! `t` is the time of sending in Unix seconds and `v1` the lowercase hex
//! HMAC-SHA256, keyed with the secret, of the bytes `<t>.<body>`: the decimal timestamp, a
//! full stop, and the exact body bytes (the scheme Stripe uses). Every attempt, retries
//! included, is signed afresh with its own timestamp. `X-Havoc-Timestamp` repeats `t` for
//! receivers' logs; only the `t` inside the signature is authenticated.
//!
//! A receiver ([`verify`] does exactly this):
//!
//! 1. splits `X-Havoc-Signature` at `,` into `key=value` pairs, takes the one `t` and every
//!    `v1` (several `v1` may come, for a secret rotation; unknown keys are ignored);
//! 2. computes HMAC-SHA256(secret, `<t>.<raw body>`) over the body bytes as received
//!    (before any JSON parsing) and compares it with each `v1` in constant time;
//! 3. rejects the delivery unless one matches and `t` is within a tolerance of its own
//!    clock, in either direction (5 minutes is recommended: [`DEFAULT_TOLERANCE`]);
//! 4. to reject replays within that window, remembers the signatures of the deliveries it
//!    accepted for as long as the tolerance and rejects one it has seen. (A retry is never a
//!    replay: it is sent only after a failed attempt, and it carries a new timestamp.)
//!    The body is an experiment record with an `id`, so a receiver can also deduplicate.
//!
//! # The URL is a secret too
//!
//! Slack-style incoming webhooks put their credential in the URL's path, so messages
//! and `Debug` output name only the URL's scheme, host and port, and a receiver's answer
//! quoted in an error has the URL's path and query replaced by `***`. Build the notifier
//! with [`Notifier::from_secret_url`] when the URL comes from a secret reference.
//!
//! Plain `http://` URLs are allowed (in-cluster receivers often speak plain HTTP): the
//! signing secret never travels, and the signature keeps a tampered or replayed delivery
//! from being accepted. But the body, and a credential in the URL's path, go in clear:
//! use `https://` for anything that leaves the cluster.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use url::Url;

use crate::{Error, NotifyError, SecretString, http};

/// The header carrying the signature: `t=<unix seconds>,v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Havoc-Signature";

/// The header repeating the signature's timestamp (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-Havoc-Timestamp";

/// The recommended tolerance between a signature's timestamp and the receiver's clock.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &SecretString, timestamp: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<lowercase hex HMAC-SHA256 of "<timestamp>.<body>" keyed with secret>`.
pub fn sign(secret: &SecretString, timestamp: u64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Why a signature was not accepted. `Display` never shows the secret or the expected
/// signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No signature header, or an empty one.
    #[error("no signature")]
    Missing,
    /// The header is not `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`.
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    /// No `v1` is the HMAC of this body and timestamp with this secret.
    #[error("signature does not match")]
    Mismatch,
    /// The signature matches but its timestamp is further from now than the tolerance.
    #[error(
        "signature timestamp {timestamp} is {age_secs} s from now, beyond the tolerance of {tolerance_secs} s"
    )]
    Stale {
        timestamp: u64,
        age_secs: u64,
        tolerance_secs: u64,
    },
}

impl VerifyError {
    /// A short stable label: `missing`, `malformed`, `mismatch` or `stale`.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::Missing => "missing",
            VerifyError::Malformed(_) => "malformed",
            VerifyError::Mismatch => "mismatch",
            VerifyError::Stale { .. } => "stale",
        }
    }
}

/// Checks a delivery the way a receiver should (see the [module docs](self)): `header` is
/// the value of [`SIGNATURE_HEADER`], `body` the raw body bytes, `now` the receiver's
/// clock and `tolerance` how far the signed timestamp may be from it, either way
/// ([`DEFAULT_TOLERANCE`] is recommended). The signature is checked first (in constant
/// time), the timestamp only for a matching one. Replays within the tolerance are the
/// receiver's to reject, by remembering what it accepted.
pub fn verify(
    secret: &SecretString,
    header: &str,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let header = header.trim();
    if header.is_empty() {
        return Err(VerifyError::Missing);
    }
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(VerifyError::Malformed("expected key=value pairs"))?;
        match key.trim() {
            "t" => {
                if timestamp.is_some() {
                    return Err(VerifyError::Malformed("more than one t"));
                }
                let value = value.trim();
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VerifyError::Malformed("t is not a number of seconds"));
                }
                timestamp = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| VerifyError::Malformed("t is out of range"))?,
                );
            }
            // A v1 that is not hex cannot match; it does not spoil the others.
            "v1" => candidates.extend(hex::decode(value.trim()).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed("no t"))?;
    if candidates.is_empty() {
        return Err(VerifyError::Malformed("no v1"));
    }
    let expected = mac(secret, timestamp, body);
    if !candidates
        .iter()
        .any(|tag| expected.clone().verify_slice(tag).is_ok())
    {
        return Err(VerifyError::Mismatch);
    }
    let now = unix_seconds(now);
    let age_secs = now.abs_diff(timestamp);
    if age_secs > tolerance.as_secs() {
        return Err(VerifyError::Stale {
            timestamp,
            age_secs,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    Ok(())
}

/// Whole seconds since the Unix epoch (0 before it).
fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Posts to one webhook. Cheap to clone. Its URL's path and query may hold a token, so
/// messages name only the scheme, host and port.
#[derive(Clone)]
pub struct Notifier {
    url: Url,
    target: String,
    secret: Option<SecretString>,
    http: reqwest::Client,
    /// The clock signatures are stamped with (a test's own in unit tests).
    clock: fn() -> SystemTime,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("webhook::Notifier")
            .field("target", &self.target)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A webhook at `url`, signing with `secret` when given; each delivery fails after
    /// `timeout`. The URL's path and query never appear in an error or in `Debug`.
    pub fn new(url: &str, secret: Option<SecretString>, timeout: Duration) -> Result<Self, Error> {
        let url = http::parse_url(url)?;
        Ok(Notifier {
            target: format!("webhook {}", http::origin(&url)),
            url,
            secret,
            http: http::client(timeout)?,
            clock: SystemTime::now,
        })
    }

    /// [`Notifier::new`] for a URL that is itself a secret (a Slack-style incoming
    /// webhook, read from `{env: NAME}` or `{file: PATH}`).
    pub fn from_secret_url(
        url: &SecretString,
        secret: Option<SecretString>,
        timeout: Duration,
    ) -> Result<Self, Error> {
        Notifier::new(url.expose(), secret, timeout)
    }

    /// Whether deliveries are signed.
    pub fn is_signed(&self) -> bool {
        self.secret.is_some()
    }

    /// Posts `body` (JSON bytes, sent as they are), signed with the current time when a
    /// secret is configured. 2xx is success; 429, 5xx, network errors and timeouts are
    /// retryable; other statuses are permanent.
    pub async fn send(&self, body: &[u8]) -> Result<(), NotifyError> {
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if let Some(secret) = &self.secret {
            let timestamp = unix_seconds((self.clock)());
            request = request
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, sign(secret, timestamp, body));
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::notify_transport_error(e, &self.target))?;
        let status = response.status().as_u16();
        let retry_after = http::retry_after_header(&response);
        // The answer's body only matters for the message of a failure.
        let answer = if (200..300).contains(&status) {
            Vec::new()
        } else {
            response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default()
        };
        let path = self.url.path();
        let secrets = [path, self.url.query().unwrap_or_default()];
        let secrets: &[&str] = if path == "/" { &secrets[1..] } else { &secrets };
        http::classify_status(
            status,
            retry_after.as_deref(),
            &answer,
            &self.target,
            secrets,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::{
        Backoff, retry,
        test_server::{Reply, Server},
    };

    const T: u64 = 1_774_692_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        // HMAC-SHA256("Jefe", "1774692000.what do ya want for nothing?"), computed with
        // Python's hmac module.
        let secret = SecretString::new("Jefe");
        assert_eq!(
            sign(&secret, T, b"what do ya want for nothing?"),
            "t=1774692000,v1=db5d59363511bad301060ebaff015918371db7fd11cefec43635afe1deff8789"
        );
    }

    #[test]
    fn the_documented_example_holds() {
        assert_eq!(
            sign(&SecretString::new("s3cret"), T, b"{}"),
            "t=1774692000,v1=66371cc411fa9ed14057f5c6ee95fd2db62ca7df5b373aace2dbcc449300ab14"
        );
    }

    #[test]
    fn signature_covers_the_exact_bytes_and_the_timestamp() {
        let secret = SecretString::new("k");
        assert_ne!(
            sign(&secret, T, b"{\"a\":1}"),
            sign(&secret, T, b"{\"a\": 1}")
        );
        let a = sign(&secret, T, b"{}");
        let b = sign(&secret, T + 1, b"{}");
        assert_ne!(
            a.split_once(",v1=").map(|x| x.1),
            b.split_once(",v1=").map(|x| x.1)
        );
    }

    #[test]
    fn verify_accepts_what_sign_made_within_the_tolerance() {
        let secret = SecretString::new("s3cret");
        let body = br#"{"verdict":"deviated"}"#;
        let header = sign(&secret, T, body);
        let tolerance = DEFAULT_TOLERANCE;
        assert_eq!(verify(&secret, &header, body, at(T), tolerance), Ok(()));
        assert_eq!(
            verify(&secret, &header, body, at(T + 300), tolerance),
            Ok(())
        );
        assert_eq!(
            verify(&secret, &header, body, at(T - 300), tolerance),
            Ok(())
        );
        // Spaces around the pairs and unknown keys are tolerated; a rotated secret's v1
        // next to the current one is fine.
        let v1 = header.split_once("v1=").map(|x| x.1).unwrap_or_default();
        let rotated = format!(" t={T} , v0=old, v1={}, v1={v1} ", "ab".repeat(32));
        assert_eq!(verify(&secret, &rotated, body, at(T), tolerance), Ok(()));
    }

    #[test]
    fn verify_rejects_tampering_staleness_and_garbage() {
        let secret = SecretString::new("s3cret");
        let body = br#"{"verdict":"deviated"}"#;
        let header = sign(&secret, T, body);
        let tol = DEFAULT_TOLERANCE;
        let check =
            |header: &str, body: &[u8], now: u64| verify(&secret, header, body, at(now), tol);

        assert_eq!(
            check(&header, br#"{"verdict":"passed"}"#, T),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&SecretString::new("other"), &header, body, at(T), tol),
            Err(VerifyError::Mismatch)
        );
        // Moving the timestamp breaks the signature: it is signed.
        let moved = header.replace(&format!("t={T}"), &format!("t={}", T + 3600));
        assert_eq!(check(&moved, body, T + 3600), Err(VerifyError::Mismatch));
        let stale = check(&header, body, T + 301).expect_err("stale");
        assert_eq!(
            stale,
            VerifyError::Stale {
                timestamp: T,
                age_secs: 301,
                tolerance_secs: 300
            }
        );
        assert_eq!(stale.kind(), "stale");
        assert_eq!(
            check(&header, body, T - 301).map_err(|e| e.kind()),
            Err("stale")
        );

        assert_eq!(check("", body, T), Err(VerifyError::Missing));
        assert_eq!(check("  ", body, T), Err(VerifyError::Missing));
        for bad in [
            // The old scheme.
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "v1=00",
            "t=1774692000",
            "t=-1,v1=00",
            "t=1e9,v1=00",
            "t=99999999999999999999999,v1=00",
            "t=1,t=2,v1=00",
            "t=1774692000;v1=00",
        ] {
            let e = check(bad, body, T).expect_err(bad);
            assert_eq!(e.kind(), "malformed", "{bad}: {e}");
        }
        assert_eq!(
            check(&format!("t={T},v1=zz"), body, T),
            Err(VerifyError::Malformed("no v1"))
        );
    }

    /// A clock that moves 7 s forward every time it is read.
    fn ticking_clock() -> SystemTime {
        static NOW: AtomicU64 = AtomicU64::new(T);
        at(NOW.fetch_add(7, Ordering::SeqCst))
    }

    #[tokio::test]
    async fn every_attempt_is_signed_afresh() {
        let server = Server::start(|n, _| {
            if n == 0 {
                Reply::json(503, serde_json::json!({"ok": false}))
            } else {
                Reply::json(200, serde_json::json!({"ok": true}))
            }
        })
        .await;
        let secret = SecretString::new("e2e-webhook-secret");
        let mut hook = Notifier::new(
            &format!("{}/webhook/x", server.url),
            Some(secret.clone()),
            Duration::from_secs(5),
        )
        .expect("webhook");
        hook.clock = ticking_clock;
        let quick = Backoff {
            initial: Duration::from_millis(1),
            ..Backoff::default()
        };
        let body = br#"{"id":"e1"}"#;
        let ((), attempts) = retry(&quick, || hook.send(body)).await.expect("delivered");
        assert_eq!(attempts, 2);
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        let mut stamps = Vec::new();
        for r in &requests {
            assert_eq!(r.body, body);
            let sig = r.header("x-havoc-signature").expect("signed");
            let t: u64 = r
                .header("x-havoc-timestamp")
                .expect("stamped")
                .parse()
                .expect("seconds");
            assert!(sig.starts_with(&format!("t={t},v1=")), "{sig}");
            assert_eq!(verify(&secret, sig, &r.body, at(t), Duration::ZERO), Ok(()));
            stamps.push(t);
        }
        assert!(stamps[1] > stamps[0], "{stamps:?}");
    }

    #[tokio::test]
    async fn unsigned_deliveries_carry_no_signature() {
        let server = Server::start(|_, _| Reply::json(200, serde_json::json!({}))).await;
        let hook = Notifier::new(&server.url, None, Duration::from_secs(5)).expect("webhook");
        assert!(!hook.is_signed());
        hook.send(b"{}").await.expect("delivered");
        let r = &server.requests()[0];
        assert_eq!(r.header("x-havoc-signature"), None);
        assert_eq!(r.header("x-havoc-timestamp"), None);
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    #[test]
    fn messages_never_show_the_path() {
        let url = SecretString::new("https://hooks.example/services/T000/B000/XXXXSECRET");
        let n =
            Notifier::from_secret_url(&url, Some(SecretString::new("s")), Duration::from_secs(1))
                .expect("webhook");
        assert_eq!(n.target, "webhook https://hooks.example");
        assert!(!format!("{n:?}").contains("SECRET"), "{n:?}");
        assert!(n.is_signed());
        // Nor does a URL that does not parse or has the wrong scheme.
        for bad in [
            "ftp://hooks.example/XXXXSECRET",
            "https://hooks example/XXXXSECRET",
            "XXXXSECRET",
        ] {
            let e =
                Notifier::from_secret_url(&SecretString::new(bad), None, Duration::from_secs(1))
                    .expect_err(bad);
            assert_eq!(e.kind(), "invalid_url");
            assert!(!format!("{e} {e:?}").contains("XXXXSECRET"), "{e:?}");
        }
    }

    #[tokio::test]
    async fn errors_hide_an_echoed_path_and_query() {
        let server =
            Server::start(|_, r| Reply::text(404, &format!("no route for POST {}\n", r.path)))
                .await;
        let url = SecretString::new(format!(
            "{}/services/T0/B0/XXSECRET?token=QQTOKEN",
            server.url
        ));
        let hook = Notifier::from_secret_url(&url, None, Duration::from_secs(5)).expect("webhook");
        let e = hook.send(b"{}").await.expect_err("404");
        assert!(!e.is_retryable());
        let shown = format!("{e} {e:?}");
        assert!(
            shown.contains("HTTP 404: no route for POST ***?***"),
            "{shown}"
        );
        assert!(
            !shown.contains("XXSECRET") && !shown.contains("QQTOKEN"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn a_day_long_retry_after_does_not_stall_the_delivery() {
        let server = Server::start(|n, _| {
            if n < 2 {
                Reply::json(429, serde_json::json!({"ok": false})).header("Retry-After", "86400")
            } else {
                Reply::json(200, serde_json::json!({"ok": true}))
            }
        })
        .await;
        let hook = Notifier::new(&server.url, None, Duration::from_secs(5)).expect("webhook");
        let err = hook.send(b"{}").await.expect_err("429");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(86_400)));
        let backoff = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            factor: 2.0,
            max_attempts: 5,
        };
        let delivered = tokio::time::timeout(
            Duration::from_secs(20),
            retry(&backoff, || hook.send(b"{}")),
        )
        .await
        .expect("not stalled by Retry-After");
        assert_eq!(delivered.expect("delivered").1, 2);
        assert_eq!(server.requests().len(), 3);
    }
}
