//! Webhooks: a JSON body `POST`ed to a URL, signed when a secret is configured.
//!
//! The signature header is `X-Havoc-Signature: sha256=<hex>`, the lowercase hex
//! HMAC-SHA256 of the exact body bytes keyed with the secret; a receiver recomputes it over
//! the raw body it received and compares in constant time.
//!
//! Slack-style incoming webhooks put their credential in the URL's path, so messages
//! and `Debug` output name only the URL's scheme, host and port, and a receiver's answer
//! quoted in an error has the URL's path and query replaced by `***`. Build the notifier
//! with [`Notifier::from_secret_url`] when the URL comes from a secret reference.

use std::time::Duration;

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use url::Url;

use crate::{Error, NotifyError, SecretString, http};

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Havoc-Signature";

/// `sha256=<lowercase hex HMAC-SHA256 of body keyed with secret>`.
pub fn signature(secret: &SecretString, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts to one webhook. Cheap to clone. Its URL's path and query may hold a token, so
/// messages name only the scheme, host and port.
#[derive(Clone)]
pub struct Notifier {
    url: Url,
    target: String,
    secret: Option<SecretString>,
    http: reqwest::Client,
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

    /// Posts `body` (JSON bytes, sent as they are). 2xx is success; 429, 5xx, network
    /// errors and timeouts are retryable; other statuses are permanent.
    pub async fn send(&self, body: &[u8]) -> Result<(), NotifyError> {
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, body));
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::notify_transport_error(e, &self.target))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
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
    use super::*;
    use crate::test_server::{Reply, Server};

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        let secret = SecretString::new("Jefe");
        assert_eq!(
            signature(&secret, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signature_covers_the_exact_bytes() {
        let secret = SecretString::new("k");
        assert_ne!(
            signature(&secret, b"{\"a\":1}"),
            signature(&secret, b"{\"a\": 1}")
        );
    }

    #[test]
    fn messages_never_show_the_path() {
        let url = SecretString::new("https://hooks.example/services/T000/B000/XXXXSECRET");
        let n =
            Notifier::from_secret_url(&url, Some(SecretString::new("s")), Duration::from_secs(1))
                .expect("webhook");
        assert_eq!(n.target, "webhook https://hooks.example");
        assert!(!format!("{n:?}").contains("SECRET"), "{n:?}");
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
}
