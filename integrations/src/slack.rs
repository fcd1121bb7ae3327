//! Slack: `chat.postMessage` through slack-morphism, with a fallback `text` and Block Kit
//! `blocks`, and failures classified as retryable or permanent.
//!
//! An `http://` API URL (a local test server) uses a plain hyper connector; an `https://`
//! one (Slack itself) uses hyper-rustls with the configuration of [`crate::tls`] (ring and
//! the platform verifier) — the same connector type as slack-morphism's default, without
//! relying on a process-wide crypto provider. The token is never logged or put in an error.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::{errors::*, prelude::*};

use crate::{Error, NotifyError, SecretString, http, tls};

/// Slack's Web API.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// Where and how to post.
#[derive(Clone)]
pub struct SlackConfig {
    /// The Web API base, [`DEFAULT_API_URL`] unless testing.
    pub api_url: String,
    /// A bot token (`xoxb-…`).
    pub token: SecretString,
    /// A channel name (`#chaos`) or ID.
    pub channel: String,
    /// Each call fails (retryably) after this long.
    pub timeout: Duration,
}

impl std::fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackConfig")
            .field("api_url", &http::display_str(&self.api_url))
            .field("token", &self.token)
            .field("channel", &self.channel)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SlackConfig {
    /// Posting to `channel` of the real Slack, with a 10 s timeout.
    pub fn new(token: SecretString, channel: impl Into<String>) -> Self {
        SlackConfig {
            api_url: DEFAULT_API_URL.to_string(),
            token,
            channel: channel.into(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// A message: `text` is the fallback (notifications, screen readers), `blocks` the Block
/// Kit layout (JSON objects as Slack documents them; may be empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlackMessage {
    pub text: String,
    pub blocks: Vec<serde_json::Value>,
}

/// Where Slack put a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The channel ID (`C…`).
    pub channel: String,
    /// The message timestamp, Slack's message ID within the channel.
    pub ts: String,
}

#[derive(Clone)]
enum Transport {
    Http(SlackClient<SlackClientHyperConnector<HttpConnector>>),
    Https(SlackClient<SlackClientHyperHttpsConnector>),
}

/// Posts messages to one channel. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    transport: Transport,
    api: String,
    channel: String,
    token: SecretString,
    timeout: Duration,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("slack::Notifier")
            .field("api", &self.api)
            .field("channel", &self.channel)
            .field("token", &self.token)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    pub fn new(config: SlackConfig) -> Result<Self, Error> {
        let url = http::parse_url(&config.api_url)?;
        let api_url = config.api_url.trim_end_matches('/');
        let transport = if url.scheme() == "https" {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls::client_config()?)
                .https_only()
                .enable_http1()
                .build();
            Transport::Https(SlackClient::new(
                SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url),
            ))
        } else {
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(config.timeout));
            Transport::Http(SlackClient::new(
                SlackClientHyperConnector::with_connector(connector).with_slack_api_url(api_url),
            ))
        };
        Ok(Notifier {
            transport,
            api: http::display(&url),
            channel: config.channel,
            token: config.token,
            timeout: config.timeout,
        })
    }

    /// Posts `message` with `chat.postMessage`. HTTP 5xx, 429/`ratelimited` (with Slack's
    /// `Retry-After`), network errors and timeouts are retryable; `invalid_auth`,
    /// `channel_not_found`, other API errors and other 4xx are permanent.
    pub async fn send(&self, message: &SlackMessage) -> Result<Posted, NotifyError> {
        let mut content = SlackMessageContent::new().with_text(message.text.clone());
        if !message.blocks.is_empty() {
            content = content.with_blocks(to_blocks(&message.blocks)?);
        }
        let request =
            SlackApiChatPostMessageRequest::new(SlackChannelId::new(self.channel.clone()), content);
        let token = SlackApiToken::new(SlackApiTokenValue::new(self.token.expose().to_string()));
        let call = async {
            match &self.transport {
                Transport::Http(client) => {
                    client
                        .open_session(&token)
                        .chat_post_message(&request)
                        .await
                }
                Transport::Https(client) => {
                    client
                        .open_session(&token)
                        .chat_post_message(&request)
                        .await
                }
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => Ok(Posted {
                channel: response.channel.to_string(),
                ts: response.ts.to_string(),
            }),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(NotifyError::retryable(format!(
                "slack: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// Block Kit JSON to slack-morphism blocks. A block slack-morphism does not model (or
/// models differently) is kept as raw JSON, so this fails only for non-objects.
fn to_blocks(blocks: &[serde_json::Value]) -> Result<Vec<SlackBlock>, NotifyError> {
    blocks
        .iter()
        .enumerate()
        .map(|(i, block)| {
            if !block.is_object() {
                return Err(NotifyError::permanent(format!(
                    "slack: block {i} is not a JSON object"
                )));
            }
            serde_json::from_value(block.clone())
                .map_err(|e| NotifyError::permanent(format!("slack: block {i}: {e}")))
        })
        .collect()
}

/// Slack API error codes worth retrying; every other code is permanent.
const RETRYABLE_CODES: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

fn classify(error: SlackClientError) -> NotifyError {
    match error {
        SlackClientError::ApiError(api) => {
            let reason = format!("slack: {}", http::sanitize(&api.code, 64));
            if RETRYABLE_CODES.contains(&api.code.as_str()) {
                NotifyError::retryable(reason)
            } else {
                NotifyError::permanent(reason)
            }
        }
        SlackClientError::RateLimitError(limit) => NotifyError::Retryable {
            reason: format!(
                "slack: HTTP 429 {}",
                limit.code.as_deref().unwrap_or("ratelimited")
            ),
            retry_after: limit.retry_after,
        },
        SlackClientError::HttpError(e) => {
            let status = e.status_code.as_u16();
            let body = http::body_reason(
                status,
                e.http_response_body
                    .as_deref()
                    .unwrap_or_default()
                    .as_bytes(),
            );
            let reason = format!("slack: HTTP {status}: {body}");
            if status == 429 || status >= 500 {
                NotifyError::retryable(reason)
            } else {
                NotifyError::permanent(reason)
            }
        }
        SlackClientError::HttpProtocolError(e) => {
            let cause = e
                .cause
                .as_deref()
                .map_or_else(|| "unknown".to_string(), |c| http::chain(c));
            NotifyError::retryable(format!(
                "slack: network error: {}",
                http::sanitize(&cause, http::REASON_MAX)
            ))
        }
        SlackClientError::EndOfStream(_) => {
            NotifyError::retryable("slack: connection closed before the answer")
        }
        SlackClientError::ProtocolError(e) => NotifyError::permanent(format!(
            "slack: unexpected answer: {}",
            http::sanitize(&e.json_error.to_string(), http::REASON_MAX)
        )),
        other => NotifyError::permanent(format!(
            "slack: {}",
            http::sanitize(&other.to_string(), http::REASON_MAX)
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn api_error(code: &str) -> SlackClientError {
        SlackClientError::ApiError(SlackClientApiError::new(code.to_string()))
    }

    #[test]
    fn api_errors_are_classified() {
        for code in ["invalid_auth", "channel_not_found", "not_authed", "no_text"] {
            let e = classify(api_error(code));
            assert!(!e.is_retryable(), "{code}");
            assert_eq!(e.reason(), format!("slack: {code}"));
        }
        assert!(classify(api_error("ratelimited")).is_retryable());
        assert!(classify(api_error("internal_error")).is_retryable());
    }

    #[test]
    fn http_errors_and_rate_limits_are_classified() {
        let http = |s: u16| {
            SlackClientError::HttpError(SlackClientHttpError::new(
                reqwest::StatusCode::from_u16(s).expect("status"),
            ))
        };
        assert!(classify(http(500)).is_retryable());
        assert!(classify(http(503)).is_retryable());
        assert!(!classify(http(404)).is_retryable());
        let limited = SlackClientError::RateLimitError(
            SlackRateLimitError::new()
                .with_retry_after(Duration::from_secs(1))
                .with_code("ratelimited".to_string()),
        );
        assert_eq!(
            classify(limited),
            NotifyError::Retryable {
                reason: "slack: HTTP 429 ratelimited".into(),
                retry_after: Some(Duration::from_secs(1)),
            }
        );
    }

    #[test]
    fn blocks_round_trip_including_unknown_ones() {
        let blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": "havoc: deviated"}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": "*nightly* deviated"}}),
            json!({"type": "some_future_block", "answer": 42}),
        ];
        let typed = to_blocks(&blocks).expect("blocks");
        let back = serde_json::to_value(&typed).expect("serializes");
        assert_eq!(back, json!(blocks));
        assert!(
            !to_blocks(&[json!("text")])
                .expect_err("not an object")
                .is_retryable()
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let mut config = SlackConfig::new(SecretString::new("test-token-very-secret"), "#chaos");
        config.api_url = "http://user:pw-very-secret@127.0.0.1:9/api/?q=very-secret".into();
        let notifier = Notifier::new(config.clone()).expect("http notifier");
        assert!(
            !format!("{notifier:?}").contains("very-secret"),
            "{notifier:?}"
        );
        assert!(!format!("{config:?}").contains("very-secret"), "{config:?}");
        assert!(
            format!("{config:?}").contains("http://127.0.0.1:9/api/"),
            "{config:?}"
        );
        assert_eq!(notifier.api, "http://127.0.0.1:9/api/");
        let https = Notifier::new(SlackConfig::new(SecretString::new("x"), "#c")).expect("https");
        assert!(matches!(https.transport, Transport::Https(_)));
    }
}
