//! Slack: `chat.postMessage` through slack-morphism, with a fallback `text` and Block Kit
//! `blocks`, and failures classified as retryable or permanent.
//!
//! Every message is cut to Slack's limits before it is sent ([`limits`],
//! [`SlackMessage::fit_to_limits`]); should Slack still refuse the blocks
//! (`invalid_blocks`), the message is posted once more as its text alone, so a deviation
//! is never lost to its formatting.
//!
//! An `https://` API URL (Slack itself) uses hyper-rustls with the configuration of
//! [`crate::tls`] (ring and the platform verifier) — the same connector type as
//! slack-morphism's default, without relying on a process-wide crypto provider. Plain
//! `http://` is accepted only to a loopback host (`localhost`, `127.0.0.0/8`, `::1`: a
//! local test server such as the e2e sink), because every call carries the bot token;
//! any other `http://` URL is [`Error::InsecureUrl`] (kind `config`). The token is never
//! logged or put in an error.

pub mod limits;

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::{errors::*, prelude::*};

use crate::{Error, NotifyError, SecretString, http, tls};

/// Slack's Web API.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// Where and how to post.
#[derive(Clone)]
pub struct SlackConfig {
    /// The Web API base, [`DEFAULT_API_URL`] unless testing. `https://`, or `http://` to a
    /// loopback host only.
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

impl SlackMessage {
    /// Cuts the message to Slack's limits (see [`limits`]): texts end with
    /// `… (cut: N more characters)`, lists that are too long with an item saying how many
    /// were left out. Returns whether anything was cut. [`Notifier::send`] does this to
    /// every message, so callers need not.
    pub fn fit_to_limits(&mut self) -> bool {
        let mut changed = false;
        if let Some(text) = limits::cut(&self.text, limits::MAX_TEXT) {
            self.text = text;
            changed = true;
        }
        changed | limits::fit_blocks(&mut self.blocks)
    }

    /// The text to post when Slack refuses the blocks: `text`, or when that is empty the
    /// texts of the blocks, one per line; within [`limits::MAX_TEXT`].
    pub fn fallback_text(&self) -> String {
        let text = if self.text.trim().is_empty() {
            limits::blocks_text(&self.blocks)
        } else {
            self.text.clone()
        };
        limits::cut(&text, limits::MAX_TEXT).unwrap_or(text)
    }
}

/// Where Slack put a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The channel ID (`C…`).
    pub channel: String,
    /// The message timestamp, Slack's message ID within the channel.
    pub ts: String,
    /// Slack refused the blocks (`invalid_blocks`) and the message was posted as its
    /// fallback text alone.
    pub text_only: bool,
}

/// A `chat.postMessage` call that did not succeed.
enum PostError {
    Slack(SlackClientError),
    Timeout,
}

/// Slack's answers to blocks it will not take.
const BLOCK_ERRORS: &[&str] = &["invalid_blocks", "invalid_blocks_format"];

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
    /// A client posting to `config.channel`. An `http://` API URL to a host other than
    /// loopback is refused ([`Error::InsecureUrl`]): it would send the token in clear.
    pub fn new(config: SlackConfig) -> Result<Self, Error> {
        let url = checked_api_url(&config.api_url)?;
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

    /// Posts `message` with `chat.postMessage`, cut to Slack's limits first
    /// ([`SlackMessage::fit_to_limits`]). If Slack still refuses the blocks
    /// (`invalid_blocks`), or a block is not even a JSON object, posts the [fallback
    /// text](SlackMessage::fallback_text) alone, once, and says so in [`Posted::text_only`].
    ///
    /// HTTP 5xx, 429/`ratelimited` (with Slack's `Retry-After`), network errors and
    /// timeouts are retryable; `invalid_auth`, `channel_not_found`, other API errors and
    /// other 4xx are permanent. Each call to Slack has the configured timeout.
    pub async fn send(&self, message: &SlackMessage) -> Result<Posted, NotifyError> {
        let mut message = message.clone();
        if message.fit_to_limits() {
            tracing::debug!(channel = %self.channel, "Slack message cut to Slack's limits");
        }
        let mut content = SlackMessageContent::new().with_text(message.text.clone());
        if !message.blocks.is_empty() {
            match to_blocks(&message.blocks) {
                Ok(blocks) => content = content.with_blocks(blocks),
                Err(e) => {
                    tracing::warn!(channel = %self.channel, error = %e, "unusable blocks; posting the text alone");
                    return self.post_text_only(&message).await;
                }
            }
        }
        match self.post(content).await {
            Ok(posted) => Ok(posted),
            Err(PostError::Slack(SlackClientError::ApiError(api)))
                if BLOCK_ERRORS.contains(&api.code.as_str()) && !message.blocks.is_empty() =>
            {
                tracing::warn!(
                    channel = %self.channel,
                    code = %api.code,
                    errors = %http::sanitize(
                        &api.errors.as_deref().unwrap_or_default().join("; "),
                        http::REASON_MAX * 2
                    ),
                    "Slack refused the blocks; posting the text alone"
                );
                self.post_text_only(&message).await
            }
            Err(e) => Err(self.classify(e)),
        }
    }

    async fn post_text_only(&self, message: &SlackMessage) -> Result<Posted, NotifyError> {
        let content = SlackMessageContent::new().with_text(message.fallback_text());
        let posted = self.post(content).await.map_err(|e| self.classify(e))?;
        Ok(Posted {
            text_only: true,
            ..posted
        })
    }

    async fn post(&self, content: SlackMessageContent) -> Result<Posted, PostError> {
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
                text_only: false,
            }),
            Ok(Err(e)) => Err(PostError::Slack(e)),
            Err(_) => Err(PostError::Timeout),
        }
    }

    fn classify(&self, error: PostError) -> NotifyError {
        match error {
            PostError::Slack(e) => classify(e),
            PostError::Timeout => {
                NotifyError::retryable(format!("slack: no answer within {:?}", self.timeout))
            }
        }
    }
}

/// Checks a Slack API URL as [`Notifier::new`] does: `https://`, or `http://` to a
/// loopback host only ([`Error::InsecureUrl`], kind `config`, otherwise). For
/// configuration validation, so the problem is reported before start-up. The error
/// shows the URL without credentials or query.
pub fn validate_api_url(api_url: &str) -> Result<(), Error> {
    checked_api_url(api_url).map(drop)
}

fn checked_api_url(api_url: &str) -> Result<url::Url, Error> {
    let url = http::parse_url(api_url)?;
    if url.scheme() == "http" && !http::is_loopback(&url) {
        return Err(Error::InsecureUrl {
            url: http::display(&url),
        });
    }
    Ok(url)
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
    use crate::test_server::{Reply, Request, Server};

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

    fn config(api_url: &str) -> SlackConfig {
        let mut config = SlackConfig::new(SecretString::new("test-token-very-secret"), "#chaos");
        config.api_url = api_url.to_string();
        config.timeout = Duration::from_secs(5);
        config
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:18090/api",
            "http://localhost:18090/api",
            "http://[::1]:18090/api",
            "https://slack.example/api",
        ] {
            Notifier::new(config(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
            validate_api_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for refused in [
            "http://slack.com/api",
            "http://10.1.2.3:8080/api",
            "http://localhost.evil.example/api",
            "http://[2001:db8::1]/api",
            "http://user:pw-very-secret@slack.example/api?token=very-secret",
        ] {
            let e = Notifier::new(config(refused)).expect_err(refused);
            assert_eq!(e.kind(), "config", "{refused}: {e}");
            let v = validate_api_url(refused).expect_err(refused);
            assert_eq!(v.to_string(), e.to_string());
            assert!(matches!(e, Error::InsecureUrl { .. }), "{e:?}");
            let shown = format!("{e} {e:?}");
            assert!(shown.contains("plain http"), "{shown}");
            assert!(!shown.contains("very-secret"), "{shown}");
        }
    }

    /// Answers `chat.postMessage` like Slack does, refusing sections over 3,000
    /// characters with `invalid_blocks`.
    fn slack_like(_: usize, r: &Request) -> Reply {
        let args = r.json();
        let oversized = args["blocks"].as_array().is_some_and(|blocks| {
            blocks.iter().any(|b| {
                b["text"]["text"]
                    .as_str()
                    .is_some_and(|t| t.chars().count() > limits::MAX_SECTION_TEXT)
            })
        });
        if oversized {
            return Reply::json(
                200,
                json!({"ok": false, "error": "invalid_blocks",
                "errors": ["must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]}),
            );
        }
        posted_reply()
    }

    fn posted_reply() -> Reply {
        Reply::json(
            200,
            json!({"ok": true, "channel": "C0CHAOS", "ts": "1774692000.000100",
            "message": {"type": "message", "text": "x", "user": "U0HAVOC", "ts": "1774692000.000100"}}),
        )
    }

    fn api(server: &Server) -> SlackConfig {
        config(&format!("{}/api", server.url))
    }

    #[tokio::test]
    async fn an_oversized_section_is_cut_and_delivered_with_its_blocks() {
        let server = Server::start(slack_like).await;
        let notifier = Notifier::new(api(&server)).expect("notifier");
        let long = format!(
            "*Alerts*\n{}",
            "• KubePodCrashLooping since 10:00 (pod=x)\n".repeat(200)
        );
        let message = SlackMessage {
            text: "havoc: nightly deviated".into(),
            blocks: vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": long}})],
        };
        let posted = notifier.send(&message).await.expect("delivered");
        assert_eq!(posted.channel, "C0CHAOS");
        assert!(!posted.text_only);
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].path, "/api/chat.postMessage");
        assert_eq!(
            requests[0].header("authorization"),
            Some("Bearer test-token-very-secret")
        );
        let sent = requests[0].json();
        let text = sent["blocks"][0]["text"]["text"]
            .as_str()
            .expect("section text");
        assert_eq!(text.chars().count(), limits::MAX_SECTION_TEXT);
        assert!(text.starts_with("*Alerts*\n• KubePodCrashLooping"));
        assert!(text.contains("… (cut: "), "{text}");
        assert_eq!(sent["text"], "havoc: nightly deviated");
    }

    #[tokio::test]
    async fn refused_blocks_are_sent_again_as_text_alone() {
        // Refuses any blocks, as Slack does for ones it cannot parse.
        let server = Server::start(|_, r| {
            if r.json().get("blocks").is_some() {
                Reply::json(200, json!({"ok": false, "error": "invalid_blocks"}))
            } else {
                posted_reply()
            }
        })
        .await;
        let notifier = Notifier::new(api(&server)).expect("notifier");
        let message = SlackMessage {
            text: "havoc: nightly deviated: alert KubeDeploymentUnavailable".into(),
            blocks: vec![json!({"type": "some_future_block", "x": 1})],
        };
        let posted = notifier.send(&message).await.expect("delivered as text");
        assert!(posted.text_only);
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert!(requests[0].json().get("blocks").is_some());
        let second = requests[1].json();
        assert_eq!(second.get("blocks"), None);
        assert_eq!(second["text"], message.text.as_str());
        assert_eq!(second["channel"], "#chaos");

        // Without a text, the blocks' texts are the fallback.
        let message = SlackMessage {
            text: String::new(),
            blocks: vec![
                json!({"type": "header", "text": {"type": "plain_text", "text": "havoc: deviated"}}),
                json!({"type": "section", "text": {"type": "mrkdwn", "text": "why"}}),
            ],
        };
        assert!(notifier.send(&message).await.expect("delivered").text_only);
        assert_eq!(server.requests()[3].json()["text"], "havoc: deviated\nwhy");

        // A block that is not a JSON object is not sent at all: the text goes alone.
        let message = SlackMessage {
            text: "havoc: nightly errored".into(),
            blocks: vec![json!("not a block")],
        };
        assert!(notifier.send(&message).await.expect("delivered").text_only);
        assert_eq!(server.requests().len(), 5);
        assert_eq!(
            server.requests()[4].json()["text"],
            "havoc: nightly errored"
        );
    }

    #[tokio::test]
    async fn the_text_alone_is_tried_once_and_other_refusals_stay_permanent() {
        let server = Server::start(|n, _| match n {
            0 | 1 => Reply::json(200, json!({"ok": false, "error": "invalid_blocks"})),
            _ => Reply::json(200, json!({"ok": false, "error": "channel_not_found"})),
        })
        .await;
        let notifier = Notifier::new(api(&server)).expect("notifier");
        let message = SlackMessage {
            text: "t".into(),
            blocks: vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": "b"}})],
        };
        // Refused twice: the second refusal is the answer, and permanent.
        let e = notifier.send(&message).await.expect_err("refused");
        assert_eq!(e, NotifyError::permanent("slack: invalid_blocks"));
        assert_eq!(server.requests().len(), 2);
        // Any other refusal is not retried as text.
        let e = notifier.send(&message).await.expect_err("refused");
        assert_eq!(e.reason(), "slack: channel_not_found");
        assert_eq!(server.requests().len(), 3);
        // A text-only message refused for its "blocks" is not sent again either.
        let e = notifier
            .send(&SlackMessage {
                text: "t".into(),
                blocks: vec![],
            })
            .await
            .expect_err("refused");
        assert!(!e.is_retryable());
        assert_eq!(server.requests().len(), 4);
    }

    #[tokio::test]
    async fn errors_quote_slack_short_and_never_the_token() {
        let server = Server::start(|_, _| {
            Reply::text(
                503,
                &format!("upstream\r\n\u{1b}[31m{}", "x".repeat(10_000)),
            )
        })
        .await;
        let notifier = Notifier::new(api(&server)).expect("notifier");
        let e = notifier
            .send(&SlackMessage {
                text: "t".into(),
                blocks: vec![],
            })
            .await
            .expect_err("503");
        assert!(e.is_retryable());
        let shown = format!("{e} {e:?}");
        assert!(
            shown.contains("slack: HTTP 503: upstream [31mxxx"),
            "{shown}"
        );
        assert!(e.reason().chars().count() < 250, "{}", e.reason().len());
        assert!(!e.reason().chars().any(char::is_control));
        assert!(!shown.contains("very-secret"));
    }

    #[test]
    fn fit_to_limits_cuts_the_text_and_the_blocks() {
        let mut message = SlackMessage {
            text: "t".repeat(50_000),
            blocks: vec![
                json!({"type": "header", "text": {"type": "plain_text", "text": "h".repeat(151)}}),
            ],
        };
        assert!(message.fit_to_limits());
        assert_eq!(message.text.chars().count(), limits::MAX_TEXT);
        assert!(message.text.ends_with("more characters)"));
        assert_eq!(
            message.blocks[0]["text"]["text"]
                .as_str()
                .map(|t| t.chars().count()),
            Some(limits::MAX_HEADER_TEXT)
        );
        assert!(!message.fit_to_limits());
        let mut short = SlackMessage {
            text: "ok".into(),
            blocks: vec![],
        };
        assert!(!short.fit_to_limits());
        assert_eq!(short.text, "ok");
    }
}
