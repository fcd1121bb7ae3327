//! Alertmanager v2 API: the alerts that are active now (not silenced, not inhibited),
//! filtered by Alertmanager itself with the configured matchers
//! (`severity=~"critical|warning"`).

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{Error, http};

/// A client of one Alertmanager. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    /// The URL without credentials or query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("alertmanager::Client")
            .field("url", &http::display(&self.base))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One alert as Alertmanager reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Alertmanager's identity of the alert (a hash of its labels).
    pub fingerprint: String,
    /// `labels.alertname` (empty if the alert has none).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    /// `status.state`.
    pub state: AlertState,
}

/// `status.state` of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AlertState {
    Active,
    Suppressed,
    Unprocessed,
    /// A state this client does not know (a newer Alertmanager).
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAlert {
    fingerprint: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: DateTime<Utc>,
    status: RawStatus,
}

#[derive(Deserialize)]
struct RawStatus {
    state: AlertState,
}

impl Client {
    /// A client of the Alertmanager at `base_url` (`http://alertmanager:9093`, a path
    /// prefix is kept); every call fails after `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, Error> {
        Ok(Client {
            base: http::parse_url(base_url)?,
            http: http::client(timeout)?,
            timeout,
        })
    }

    /// The active alerts (`active=true`, `silenced=false`, `inhibited=false`,
    /// `unprocessed=false`) matching every matcher (one `filter` parameter each; the
    /// matcher syntax is Alertmanager's: `alertname="X"`, `severity=~"critical|warning"`).
    pub async fn active_alerts(&self, matchers: &[String]) -> Result<Vec<Alert>, Error> {
        let url = http::endpoint(&self.base, "api/v2/alerts");
        let shown = http::display(&url);
        let mut query: Vec<(&str, &str)> = vec![
            ("active", "true"),
            ("silenced", "false"),
            ("inhibited", "false"),
            ("unprocessed", "false"),
        ];
        query.extend(matchers.iter().map(|m| ("filter", m.as_str())));
        let response = self
            .http
            .get(url)
            .query(&query)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| http::transport_error(e, shown.clone(), self.timeout))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| http::transport_error(e, shown.clone(), self.timeout))?;
        let result = check_answer(status.as_u16(), &body, shown);
        if result.is_err() {
            tracing::debug!(status = status.as_u16(), body = %http::log_excerpt(&body), "unexpected Alertmanager answer");
        }
        result
    }
}

/// The alerts of an answer, or an error quoting it short and sanitized.
fn check_answer(status: u16, body: &[u8], url: String) -> Result<Vec<Alert>, Error> {
    if !(200..300).contains(&status) {
        return Err(Error::Http {
            url,
            status,
            reason: http::body_reason(status, body),
        });
    }
    parse_alerts(body).map_err(|reason| Error::BadResponse {
        url,
        reason: http::sanitize(&reason, http::REASON_MAX),
    })
}

/// Parses the body of `GET /api/v2/alerts`.
fn parse_alerts(body: &[u8]) -> Result<Vec<Alert>, String> {
    let raw: Vec<RawAlert> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(raw
        .into_iter()
        .map(|a| Alert {
            name: a.labels.get("alertname").cloned().unwrap_or_default(),
            fingerprint: a.fingerprint,
            labels: a.labels,
            annotations: a.annotations,
            starts_at: a.starts_at,
            state: a.status.state,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;
    use crate::test_server::{Reply, Server};

    /// Shaped like Alertmanager 0.25's answer.
    const BODY: &str = r#"[
      {
        "annotations": {
          "description": "Deployment go-demo-8/go-demo-8-db has not matched the expected number of replicas.",
          "summary": "Deployment has unavailable replicas."
        },
        "endsAt": "2026-03-28T10:15:03.120Z",
        "fingerprint": "3c1c0a7d2c1e1f58",
        "receivers": [{"name": "null"}],
        "startsAt": "2026-03-28T10:11:33.120Z",
        "status": {"inhibitedBy": [], "silencedBy": [], "state": "active"},
        "updatedAt": "2026-03-28T10:11:33.125Z",
        "generatorURL": "http://127.0.0.1:19090/graph?g0.expr=...",
        "labels": {
          "alertname": "KubeDeploymentUnavailable",
          "deployment": "go-demo-8-db",
          "namespace": "go-demo-8",
          "severity": "warning"
        }
      },
      {
        "annotations": {},
        "endsAt": "2026-03-28T10:15:03Z",
        "fingerprint": "00000000000000ff",
        "receivers": [],
        "startsAt": "2026-03-28T12:11:33+02:00",
        "status": {"inhibitedBy": [], "silencedBy": ["abc"], "state": "suppressed"},
        "updatedAt": "2026-03-28T10:11:33Z",
        "labels": {"severity": "critical"}
      }
    ]"#;

    #[test]
    fn parses_the_v2_alerts_answer() {
        let alerts = parse_alerts(BODY.as_bytes()).expect("parses");
        assert_eq!(alerts.len(), 2);
        let a = &alerts[0];
        assert_eq!(a.fingerprint, "3c1c0a7d2c1e1f58");
        assert_eq!(a.name, "KubeDeploymentUnavailable");
        assert_eq!(a.labels["deployment"], "go-demo-8-db");
        assert_eq!(
            a.annotations["summary"],
            "Deployment has unavailable replicas."
        );
        assert_eq!(a.state, AlertState::Active);
        assert_eq!(
            a.starts_at,
            Utc.with_ymd_and_hms(2026, 3, 28, 10, 11, 33)
                .single()
                .expect("valid")
                + chrono::Duration::milliseconds(120)
        );
        let b = &alerts[1];
        assert_eq!(b.name, "");
        assert_eq!(b.state, AlertState::Suppressed);
        assert_eq!(
            b.starts_at,
            Utc.with_ymd_and_hms(2026, 3, 28, 10, 11, 33)
                .single()
                .expect("valid")
        );
    }

    #[test]
    fn empty_unknown_state_and_garbage() {
        assert_eq!(parse_alerts(b"[]").expect("empty"), vec![]);
        let odd = r#"[{"fingerprint":"f","startsAt":"2026-01-01T00:00:00Z","status":{"state":"sleeping"},"labels":{"alertname":"A"}}]"#;
        assert_eq!(
            parse_alerts(odd.as_bytes()).expect("odd")[0].state,
            AlertState::Unknown
        );
        assert!(parse_alerts(b"<html>").is_err());
        assert!(parse_alerts(br#"{"status":"error"}"#).is_err());
    }

    #[test]
    fn errors_quote_upstream_text_short_and_clean() {
        let url = "http://am:9093/api/v2/alerts";
        let page = format!("<html>\r\n{}\u{1b}]0;title\u{7}", "x".repeat(5000));
        // serde quotes the unexpected string in its message.
        let garbage = format!(r#"[{{"labels": "{}\u001b"}}]"#, "y".repeat(5000));
        let errors = [
            check_answer(503, page.as_bytes(), url.into()).expect_err("503"),
            check_answer(200, garbage.as_bytes(), url.into()).expect_err("garbage"),
            check_answer(401, b"", url.into()).expect_err("401"),
        ];
        let kinds: Vec<_> = errors.iter().map(Error::kind).collect();
        assert_eq!(kinds, ["http_5xx", "bad_response", "http_4xx"]);
        for e in &errors {
            let shown = e.to_string();
            assert!(shown.chars().count() <= url.len() + 260, "{shown}");
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
        assert_eq!(
            errors[2].to_string(),
            format!("{url}: HTTP 401: Unauthorized")
        );
        assert!(check_answer(200, b"[]", url.into()).expect("ok").is_empty());
    }

    #[tokio::test]
    async fn a_failing_alertmanager_is_reported_short() {
        let server = Server::start(|_, _| Reply::text(401, "")).await;
        let client = Client::new(&server.url, Duration::from_secs(5)).expect("client");
        let e = client
            .active_alerts(&[r#"severity=~"critical|warning""#.to_string()])
            .await
            .expect_err("401");
        assert_eq!(
            e.to_string(),
            format!("{}/api/v2/alerts: HTTP 401: Unauthorized", server.url)
        );
        let r = &server.requests()[0];
        assert_eq!(r.method, "GET");
        assert!(
            r.path
                .starts_with("/api/v2/alerts?active=true&silenced=false"),
            "{}",
            r.path
        );
        assert!(r.path.contains("&filter=severity"), "{}", r.path);
        assert_eq!(r.header("accept"), Some("application/json"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn debug_hides_credentials_and_query() {
        let client = Client::new(
            "http://am:s3cret@am.example:9093/?x=tok",
            Duration::from_secs(1),
        )
        .expect("client");
        let shown = format!("{client:?}");
        assert!(shown.contains("http://am.example:9093/"), "{shown}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("tok"),
            "{shown}"
        );
    }

    #[test]
    fn serializes_for_records() {
        let alerts = parse_alerts(BODY.as_bytes()).expect("parses");
        let v = serde_json::to_value(&alerts[0]).expect("serializes");
        assert_eq!(v["startsAt"], "2026-03-28T10:11:33.120Z");
        assert_eq!(v["state"], "active");
    }
}
