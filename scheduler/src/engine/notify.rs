//! Notifications: failure-only by default, to Slack and signed webhooks, with bounded
//! retries. A failing receiver never blocks another: each is sent on its own.

use std::{collections::BTreeMap, time::Duration};

use havoc_integrations::{Backoff, SecretString, retry, slack, webhook};
use serde_json::{Value, json};

use crate::{
    policy::{
        Config,
        domain::{NotifyRule, Receiver as ReceiverConfig},
        model::NotifyOn,
    },
    record::{ExperimentRecord, Verdict},
};

/// Per-request timeout of a notification.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A receiver that cannot be set up (its secret is missing, its URL is wrong).
#[derive(Debug, thiserror::Error)]
#[error("receiver {receiver}: {source}")]
pub struct ReceiverError {
    pub receiver: String,
    #[source]
    pub source: havoc_integrations::Error,
}

#[derive(Debug)]
enum Receiver {
    Slack(slack::Notifier),
    Webhook(webhook::Notifier),
}

/// The configured receivers.
#[derive(Debug)]
pub struct Notifier {
    receivers: BTreeMap<String, Receiver>,
    backoff: Backoff,
}

/// What became of one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    Sent,
    /// Gave up (retries exhausted, permanent error, unknown receiver, queue full).
    Dropped,
}

impl DeliveryResult {
    pub fn label(self) -> &'static str {
        match self {
            DeliveryResult::Sent => "sent",
            DeliveryResult::Dropped => "dropped",
        }
    }
}

/// The result of notifying one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub receiver: String,
    pub result: DeliveryResult,
    pub attempts: u32,
    pub error: Option<String>,
}

/// Which outcome a record is for routing. An experiment that havoc's own shutdown or an
/// emergency stop cut short, its faults reverted, is `interrupted`, not `errored`: a
/// routine restart of havoc never pages anyone.
fn on_for(record: &ExperimentRecord) -> NotifyOn {
    match record.verdict {
        Verdict::Passed => NotifyOn::Passed,
        Verdict::Deviated => NotifyOn::Deviated,
        Verdict::Skipped => NotifyOn::Skipped,
        Verdict::Errored
            if matches!(
                record.reason_code.as_deref(),
                Some("interrupted" | "stopped")
            ) =>
        {
            NotifyOn::Interrupted
        }
        Verdict::Errored => NotifyOn::Errored,
        Verdict::RollbackFailed => NotifyOn::RollbackFailed,
    }
}

impl Notifier {
    /// Builds the receivers, reading their secrets now (a missing secret fails start-up,
    /// never silently drops notifications later).
    pub fn from_config(cfg: &Config) -> Result<Self, ReceiverError> {
        let mut receivers = BTreeMap::new();
        for (name, r) in &cfg.receivers {
            let fail = |source| ReceiverError {
                receiver: name.clone(),
                source,
            };
            let receiver = match r {
                ReceiverConfig::Slack {
                    channel,
                    token,
                    api_url,
                } => {
                    let token = token.resolve().map_err(fail)?;
                    let mut sc = slack::SlackConfig::new(token, channel.clone());
                    if let Some(url) = api_url {
                        sc.api_url = url.clone();
                    }
                    sc.timeout = SEND_TIMEOUT;
                    Receiver::Slack(slack::Notifier::new(sc).map_err(fail)?)
                }
                ReceiverConfig::Webhook { url, secret } => {
                    let secret: Option<SecretString> = secret
                        .as_ref()
                        .map(|s| s.resolve())
                        .transpose()
                        .map_err(fail)?;
                    Receiver::Webhook(
                        webhook::Notifier::new(url, secret, SEND_TIMEOUT).map_err(fail)?,
                    )
                }
            };
            receivers.insert(name.clone(), receiver);
        }
        Ok(Notifier {
            receivers,
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(30),
                factor: 2.0,
                max_attempts: 5,
            },
        })
    }

    /// Which receivers a record goes to under `rule` (a policy's, or the service's for a
    /// record whose policy is gone); empty: no notification.
    pub fn route(rule: &NotifyRule, record: &ExperimentRecord) -> Vec<String> {
        if !rule.on.contains(&on_for(record)) {
            return Vec::new();
        }
        rule.receivers.clone()
    }

    /// Sends a record to its receivers, concurrently, each with bounded retries.
    pub async fn notify(&self, rule: &NotifyRule, record: &ExperimentRecord) -> Vec<Delivery> {
        let names = Self::route(rule, record);
        let body = serde_json::to_vec(record).unwrap_or_default();
        let message = slack_message(record);
        let sends = names.into_iter().map(|name| {
            let (body, message) = (&body, &message);
            async move {
                let Some(receiver) = self.receivers.get(&name) else {
                    return Delivery { receiver: name, result: DeliveryResult::Dropped, attempts: 0, error: Some("unknown receiver".into()) };
                };
                let outcome = match receiver {
                    Receiver::Slack(s) => retry(&self.backoff, || s.send(message)).await.map(|(_, n)| n),
                    Receiver::Webhook(w) => retry(&self.backoff, || w.send(body)).await.map(|(_, n)| n),
                };
                match outcome {
                    Ok(attempts) => Delivery { receiver: name, result: DeliveryResult::Sent, attempts, error: None },
                    Err(f) => {
                        tracing::warn!(receiver = %name, attempts = f.attempts, error = %f.error, "notification dropped");
                        Delivery { receiver: name, result: DeliveryResult::Dropped, attempts: f.attempts, error: Some(f.error.to_string()) }
                    }
                }
            }
        });
        futures::future::join_all(sends).await
    }
}

/// The Slack message for a record: a fallback text and Block Kit blocks with the policy,
/// verdict, targets, fault, the alerts and SLO values behind the verdict, and times.
pub fn slack_message(r: &ExperimentRecord) -> slack::SlackMessage {
    let icon = match r.verdict {
        Verdict::Passed => ":white_check_mark:",
        Verdict::Skipped => ":fast_forward:",
        Verdict::Deviated => ":rotating_light:",
        Verdict::Errored => ":x:",
        Verdict::RollbackFailed => ":fire:",
    };
    let text = format!(
        "havoc: policy {} {}: {}",
        r.policy,
        r.verdict.label(),
        r.reason
    );
    let targets: Vec<String> = r
        .targets
        .iter()
        .map(|t| {
            format!(
                "{} {}/{} ({})",
                t.kind,
                t.namespace.as_deref().unwrap_or("-"),
                t.name,
                t.outcome.label()
            )
        })
        .collect();
    let mut blocks: Vec<Value> = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": format!("havoc: {} {}", r.policy, r.verdict.label())}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("{icon} *{}*: {}", r.verdict.label(), r.reason)}}),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*Policy*\n{}", r.policy)},
            {"type": "mrkdwn", "text": format!("*Fault*\n{}{}", r.fault, if r.dry_run { " (dry run)" } else { "" })},
            {"type": "mrkdwn", "text": format!("*Started*\n{}", r.started_at.to_rfc3339())},
            {"type": "mrkdwn", "text": format!("*Ended*\n{}", r.ended_at.to_rfc3339())},
        ]}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Targets*\n{}", if targets.is_empty() { "none".to_string() } else { targets.join("\n") })}}),
    ];
    if !r.alerts.is_empty() {
        let lines: Vec<String> = r
            .alerts
            .iter()
            .map(|a| {
                let labels: Vec<String> = a
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "alertname")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!(
                    "• *{}* since {} ({})",
                    a.name,
                    a.starts_at.to_rfc3339(),
                    labels.join(", ")
                )
            })
            .collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Alerts*\n{}", lines.join("\n"))}}));
    }
    let breached: Vec<String> = r
        .slos
        .iter()
        .filter(|s| s.breached)
        .map(|s| {
            format!(
                "• *{}* = {} (objective {})",
                s.name,
                s.value.map_or("no data".to_string(), |v| v.to_string()),
                s.objective
            )
        })
        .collect();
    if !breached.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*SLOs*\n{}", breached.join("\n"))}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("experiment {}", r.id)}]}));
    slack::SlackMessage { text, blocks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AlertRecord, tests::record};

    #[test]
    fn an_interrupted_experiment_is_not_a_failure_notification_by_default() {
        let rule = NotifyRule {
            receivers: vec!["oncall".into()],
            on: crate::policy::domain::DEFAULT_NOTIFY_ON.to_vec(),
        };
        let mut r = record("e1", Verdict::Errored);
        r.error(&crate::record::ErrorReason::Interrupted { observed_secs: 3 });
        assert!(Notifier::route(&rule, &r).is_empty());
        r.error(&crate::record::ErrorReason::Injection("403".into()));
        assert_eq!(Notifier::route(&rule, &r), ["oncall"]);
        let opted = NotifyRule {
            on: vec![NotifyOn::Interrupted],
            ..rule
        };
        r.error(&crate::record::ErrorReason::Stopped { observed_secs: 3 });
        assert_eq!(Notifier::route(&opted, &r), ["oncall"]);
    }

    #[test]
    fn slack_message_names_what_caused_the_deviation() {
        let mut r = record("e1", Verdict::Deviated);
        r.alerts.push(AlertRecord {
            name: "KubeDeploymentUnavailable".into(),
            fingerprint: "f".into(),
            labels: BTreeMap::from([
                ("alertname".into(), "KubeDeploymentUnavailable".into()),
                ("deployment".into(), "go-demo-8-db".into()),
            ]),
            starts_at: r.started_at,
        });
        let m = slack_message(&r);
        assert!(m.text.contains("deviated"));
        let all = serde_json::to_string(&m.blocks).expect("json");
        for needle in [
            "KubeDeploymentUnavailable",
            "deployment=go-demo-8-db",
            "go-demo-8-db-1",
            "podDelete",
            "experiment e1",
        ] {
            assert!(all.contains(needle), "{needle} missing from {all}");
        }
    }
}
