//! The preflight hook: before a live experiment injects, havoc `POST`s the planned
//! experiment (JSON) to a URL the operator names, signed like the notification webhooks
//! (`X-Havoc-Signature`, see [`crate::webhook`]) when a secret is configured. For change
//! freezes, on-call tools and ticket systems:
//!
//! - a 2xx answer lets the experiment go ahead;
//! - any other answer refuses it: the reason is the answer's body (sanitized, at most 200
//!   characters; a JSON body's `message` or `reason` field when it has one), else the
//!   status;
//! - no answer within the timeout, or no connection, refuses it too (fail closed).
//!
//! One attempt, no retries: the experiment is skipped and the next one asks again. The
//! secret never appears in an error; errors name only the URL's scheme, host, port and
//! path.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use url::Url;

use crate::{Error, SecretString, http, webhook};

/// Why the hook did not let an experiment go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It answered, and not with 2xx: `message` is what it said.
    #[error("the preflight hook answered {status}: {message}")]
    Refused { status: u16, message: String },
    /// No answer (timeout, connection refused, TLS...): fail closed.
    #[error("the preflight hook did not answer: {0}")]
    Unavailable(String),
}

/// A preflight hook client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    url: Url,
    secret: Option<SecretString>,
    timeout: Duration,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("preflight::Client")
            .field("url", &http::display(&self.url))
            .field("signed", &self.secret.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Client {
    pub fn new(url: &str, secret: Option<SecretString>, timeout: Duration) -> Result<Self, Error> {
        Ok(Client {
            url: http::parse_url(url)?,
            secret,
            timeout,
            http: http::client(timeout)?,
        })
    }

    /// Asks whether the experiment `planned` (its JSON) may go ahead.
    pub async fn ask(&self, planned: &serde_json::Value) -> Result<(), Refusal> {
        let body = serde_json::to_vec(planned).unwrap_or_default();
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            request = request
                .header(webhook::SIGNATURE_HEADER, webhook::sign(secret, now, &body))
                .header(webhook::TIMESTAMP_HEADER, now.to_string());
        }
        let target = http::display(&self.url);
        let response = request.body(body).send().await.map_err(|e| {
            Refusal::Unavailable(http::transport_error(e, target.clone(), self.timeout).to_string())
        })?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(());
        }
        let bytes = response.bytes().await.map_err(|e| {
            Refusal::Unavailable(http::transport_error(e, target, self.timeout).to_string())
        })?;
        Err(Refusal::Refused {
            status,
            message: message(status, &bytes),
        })
    }
}

/// What a refusing answer says: a JSON body's `message` (or `reason`), else the body.
fn message(status: u16, body: &[u8]) -> String {
    let said = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["message", "reason"]
                .iter()
                .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_string))
        });
    match said {
        Some(m) => http::body_reason(status, m.as_bytes()),
        None => http::body_reason(status, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{Reply, Server};

    fn planned() -> serde_json::Value {
        serde_json::json!({"id": "p-1", "policy": "p", "fault": "podDelete", "targets": []})
    }

    #[tokio::test]
    async fn a_2xx_lets_it_go_and_the_request_is_signed() {
        let server = Server::start(|_, _| Reply::text(204, "")).await;
        let secret = SecretString::new("hook-secret");
        let c =
            Client::new(&server.url, Some(secret.clone()), Duration::from_secs(5)).expect("client");
        assert_eq!(c.ask(&planned()).await, Ok(()));
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.json(), planned());
        let header = r.header(webhook::SIGNATURE_HEADER).expect("signed");
        webhook::verify(
            &secret,
            header,
            &r.body,
            SystemTime::now(),
            webhook::DEFAULT_TOLERANCE,
        )
        .expect("a valid signature");
        assert!(!format!("{c:?}").contains("hook-secret"));
    }

    #[tokio::test]
    async fn any_other_answer_refuses_with_what_it_said() {
        let server = Server::start(|i, _| match i {
            0 => Reply::json(
                423,
                serde_json::json!({"message": "change freeze until Monday"}),
            ),
            1 => Reply::text(500, "on-call is\u{1b}[31m busy\n"),
            _ => Reply::text(302, ""),
        })
        .await;
        let c = Client::new(&server.url, None, Duration::from_secs(5)).expect("client");
        assert_eq!(
            c.ask(&planned()).await,
            Err(Refusal::Refused {
                status: 423,
                message: "change freeze until Monday".into()
            })
        );
        let Err(Refusal::Refused {
            status: 500,
            message,
        }) = c.ask(&planned()).await
        else {
            panic!("refused")
        };
        assert!(
            message.contains("on-call is") && !message.contains('\u{1b}'),
            "{message}"
        );
        assert!(matches!(
            c.ask(&planned()).await,
            Err(Refusal::Refused { status: 302, .. })
        ));
        assert!(
            server.requests()[0]
                .header(webhook::SIGNATURE_HEADER)
                .is_none(),
            "unsigned without a secret"
        );
    }

    #[tokio::test]
    async fn no_answer_refuses() {
        // A port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let c = Client::new(
            &format!("http://127.0.0.1:{port}/preflight"),
            None,
            Duration::from_secs(2),
        )
        .expect("client");
        assert!(matches!(
            c.ask(&planned()).await,
            Err(Refusal::Unavailable(_))
        ));
    }
}
