//! Slack: `chat.postMessage` over HTTPS with the crate's one HTTP client, with a
//! fallback `text` and Block Kit `blocks`, and failures classified as retryable or
//! permanent.
//!
//! Every message is cut to Slack's limits before it is sent ([`limits`],
//! [`SlackMessage::fit_to_limits`]); should Slack still refuse the blocks
//! (`invalid_blocks`), the message is posted once more as its text alone, so a deviation
//! is never lost to its formatting.
//!
//! One call of Slack's Web API needs no SDK: a JSON body with the channel, the text and the
//! blocks (sent as they are, so a block type newer than havoc goes through), the bot token
//! as a bearer token, and an answer `{"ok": …, "error": …, "channel": …, "ts": …}`. It
//! goes through the same reqwest client as the webhooks (TLS from [`crate::tls`]: ring and
//! the platform verifier), so the binary carries one HTTP client stack, not a second one
//! for Slack. An `https://` API URL is Slack itself; plain `http://` is accepted only to a
//! loopback host (`localhost`, `127.0.0.0/8`, `::1`: a local test server such as the e2e
//! sink), because every call carries the bot token; any other `http://` URL is
//! [`Error::InsecureUrl`] (kind `config`). The token is never logged or put in an error
//! (an answer echoing it is quoted with `***`).

pub mod limits;

use std::time::Duration;

use serde_json::{Value, json};
use url::Url;

use crate::{Error, NotifyError, SecretString, http};

/// Slack's Web API.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// What errors name as the target.
const TARGET: &str = "slack";

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
    pub blocks: Vec<Value>,
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
#[derive(Debug)]
enum PostError {
    /// Slack answered `"ok": false` with this `error` code (and `errors` details).
    Api { code: String, errors: Vec<String> },
    /// Anything else, already classified.
    Other(NotifyError),
}

/// Slack's answers to blocks it will not take.
const BLOCK_ERRORS: &[&str] = &["invalid_blocks", "invalid_blocks_format"];

/// Posts messages to one channel. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    endpoint: Url,
    http: reqwest::Client,
    api: String,
    channel: String,
    token: SecretString,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("slack::Notifier")
            .field("api", &self.api)
            .field("channel", &self.channel)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A client posting to `config.channel`. An `http://` API URL to a host other than
    /// loopback is refused ([`Error::InsecureUrl`]): it would send the token in clear.
    pub fn new(config: SlackConfig) -> Result<Self, Error> {
        let url = checked_api_url(&config.api_url)?;
        Ok(Notifier {
            endpoint: http::endpoint(&url, "chat.postMessage"),
            http: http::client(config.timeout)?,
            api: http::display(&url),
            channel: config.channel,
            token: config.token,
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
        if message.blocks.is_empty() {
            return self.post(&message.text, None).await.map_err(classify);
        }
        if let Some(i) = message.blocks.iter().position(|b| !b.is_object()) {
            tracing::warn!(channel = %self.channel, block = i, "a block is not a JSON object; posting the text alone");
            return self.post_text_only(&message).await;
        }
        match self.post(&message.text, Some(&message.blocks)).await {
            Err(PostError::Api { code, errors }) if BLOCK_ERRORS.contains(&code.as_str()) => {
                tracing::warn!(
                    channel = %self.channel,
                    %code,
                    errors = %http::sanitize(&errors.join("; "), http::REASON_MAX * 2),
                    "Slack refused the blocks; posting the text alone"
                );
                self.post_text_only(&message).await
            }
            other => other.map_err(classify),
        }
    }

    async fn post_text_only(&self, message: &SlackMessage) -> Result<Posted, NotifyError> {
        let posted = self
            .post(&message.fallback_text(), None)
            .await
            .map_err(classify)?;
        Ok(Posted {
            text_only: true,
            ..posted
        })
    }

    async fn post(&self, text: &str, blocks: Option<&[Value]>) -> Result<Posted, PostError> {
        let mut body = json!({"channel": self.channel, "text": text});
        if let Some(blocks) = blocks {
            body["blocks"] = Value::from(blocks);
        }
        let response = self
            .http
            .post(self.endpoint.clone())
            .bearer_auth(self.token.expose())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| PostError::Other(http::notify_transport_error(e, TARGET)))?;
        let status = response.status().as_u16();
        let retry_after = http::retry_after_header(&response);
        let answer = response
            .bytes()
            .await
            .map_err(|e| PostError::Other(http::notify_transport_error(e, TARGET)))?;
        answer_of(status, retry_after.as_deref(), &answer, self.token.expose())
    }
}

/// What one `chat.postMessage` answer means. A non-2xx status is classified like a
/// webhook's (429 and 5xx retryable, with `Retry-After`), except that a 429's reason is
/// Slack's error code; a 2xx answer is Slack's JSON verdict.
fn answer_of(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    token: &str,
) -> Result<Posted, PostError> {
    let verdict: Option<Value> = serde_json::from_slice(body).ok();
    let code = |v: &Value| v["error"].as_str().map(|c| http::sanitize(c, 64));
    if status == 429 {
        return Err(PostError::Other(NotifyError::Retryable {
            reason: format!(
                "{TARGET}: HTTP 429 {}",
                verdict
                    .as_ref()
                    .and_then(code)
                    .unwrap_or_else(|| "ratelimited".into())
            ),
            retry_after: retry_after.and_then(http::parse_retry_after),
        }));
    }
    http::classify_status(status, retry_after, body, TARGET, &[token]).map_err(PostError::Other)?;
    let Some(verdict) = verdict.filter(Value::is_object) else {
        return Err(PostError::Other(NotifyError::permanent(format!(
            "{TARGET}: unexpected answer: {}",
            http::body_reason(
                status,
                &http::redact(&String::from_utf8_lossy(body), &[token]).into_bytes()
            )
        ))));
    };
    if verdict["ok"].as_bool() != Some(true) {
        return Err(PostError::Api {
            code: code(&verdict).unwrap_or_else(|| "no error code".into()),
            errors: verdict["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect(),
        });
    }
    let field = |name: &str| verdict[name].as_str().unwrap_or_default().to_string();
    Ok(Posted {
        channel: field("channel"),
        ts: field("ts"),
        text_only: false,
    })
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

/// Slack API error codes worth retrying; every other code is permanent.
const RETRYABLE_CODES: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

fn classify(error: PostError) -> NotifyError {
    match error {
        PostError::Api { code, .. } => {
            let reason = format!("{TARGET}: {code}");
            if RETRYABLE_CODES.contains(&code.as_str()) {
                NotifyError::retryable(reason)
            } else {
                NotifyError::permanent(reason)
            }
        }
        PostError::Other(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_server::{Reply, Request, Server};

    fn verdict(status: u16, retry_after: Option<&str>, body: &str) -> NotifyError {
        match answer_of(
            status,
            retry_after,
            body.as_bytes(),
            "test-token-very-secret",
        ) {
            Ok(posted) => panic!("posted: {posted:?}"),
            Err(e) => classify(e),
        }
    }

    #[test]
    fn api_errors_are_classified() {
        for code in ["invalid_auth", "channel_not_found", "not_authed", "no_text"] {
            let e = verdict(200, None, &json!({"ok": false, "error": code}).to_string());
            assert!(!e.is_retryable(), "{code}");
            assert_eq!(e.reason(), format!("slack: {code}"));
        }
        for code in ["ratelimited", "internal_error"] {
            let e = verdict(200, None, &json!({"ok": false, "error": code}).to_string());
            assert!(e.is_retryable(), "{code}");
        }
        let posted = answer_of(
            200,
            None,
            br#"{"ok": true, "channel": "C0CHAOS", "ts": "1774692000.000100"}"#,
            "t",
        )
        .expect("posted");
        assert_eq!(
            (posted.channel.as_str(), posted.ts.as_str()),
            ("C0CHAOS", "1774692000.000100")
        );
    }

    #[test]
    fn http_errors_rate_limits_and_odd_answers_are_classified() {
        assert!(verdict(500, None, "").is_retryable());
        assert!(verdict(503, None, "busy").is_retryable());
        assert!(!verdict(404, None, "").is_retryable());
        assert_eq!(
            verdict(429, Some("1"), r#"{"ok": false, "error": "ratelimited"}"#),
            NotifyError::Retryable {
                reason: "slack: HTTP 429 ratelimited".into(),
                retry_after: Some(Duration::from_secs(1)),
            }
        );
        assert_eq!(
            verdict(429, None, "").reason(),
            "slack: HTTP 429 ratelimited"
        );
        // A 200 that is not Slack's JSON (a captive portal, a proxy's page) is permanent.
        let odd = verdict(200, None, "<html>sign in</html>");
        assert!(!odd.is_retryable());
        assert_eq!(
            odd.reason(),
            "slack: unexpected answer: <html>sign in</html>"
        );
        // An answer quoting the token does not put it in the error.
        for status in [200, 401, 502] {
            let e = verdict(status, None, "bad token test-token-very-secret");
            assert!(!e.reason().contains("very-secret"), "{status}: {e}");
        }
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
        assert_eq!(
            notifier.endpoint.as_str(),
            "http://user:pw-very-secret@127.0.0.1:9/api/chat.postMessage"
        );
        let https = Notifier::new(SlackConfig::new(SecretString::new("x"), "#c")).expect("https");
        assert_eq!(
            https.endpoint.as_str(),
            "https://slack.com/api/chat.postMessage"
        );
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
    async fn blocks_are_sent_as_given_including_unknown_ones() {
        let server = Server::start(|_, _| posted_reply()).await;
        let notifier = Notifier::new(api(&server)).expect("notifier");
        let blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": "havoc: deviated"}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": "*nightly* deviated"}}),
            json!({"type": "some_future_block", "answer": 42}),
        ];
        let message = SlackMessage {
            text: "havoc: nightly deviated".into(),
            blocks: blocks.clone(),
        };
        let posted = notifier.send(&message).await.expect("delivered");
        assert_eq!(
            posted,
            Posted {
                channel: "C0CHAOS".into(),
                ts: "1774692000.000100".into(),
                text_only: false,
            }
        );
        let sent = server.requests()[0].json();
        assert_eq!(sent["blocks"], json!(blocks));
        assert_eq!(sent["channel"], "#chaos");
        assert_eq!(
            server.requests()[0].header("content-type"),
            Some("application/json; charset=utf-8")
        );
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
