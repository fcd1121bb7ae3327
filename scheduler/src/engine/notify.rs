//! Notifications: failure-only by default, to Slack and signed webhooks, with bounded
//! retries. A failing receiver never blocks another: each is sent on its own.

use std::{collections::BTreeMap, time::Duration};

use std::sync::Arc;

use havoc_integrations::{Backoff, SecretString, retry, slack, webhook};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::metrics::Metrics;
use serde_json::{Value, json};

use crate::{
    policy::{
        Config,
        domain::{NotifyOn, NotifyRule, Receiver as ReceiverConfig, WebhookUrl},
    },
    record::{ExperimentRecord, Verdict},
    report::model::{alert_labels, slo_value},
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
pub fn on_for(record: &ExperimentRecord) -> NotifyOn {
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
                        sc.api_url.clone_from(url);
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
                    let notifier = match url {
                        WebhookUrl::Inline(u) => webhook::Notifier::new(u, secret, SEND_TIMEOUT),
                        WebhookUrl::Secret(r) => {
                            let u = r.resolve().map_err(fail)?;
                            webhook::Notifier::from_secret_url(&u, secret, SEND_TIMEOUT)
                        }
                    };
                    Receiver::Webhook(notifier.map_err(fail)?)
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
        self.send_to(&Self::route(rule, record), record).await
    }

    /// Sends a record to these receivers, concurrently, each with bounded retries.
    pub async fn send_to(&self, receivers: &[String], record: &ExperimentRecord) -> Vec<Delivery> {
        let sends = receivers
            .iter()
            .map(|name| self.deliver(name.clone(), record));
        futures::future::join_all(sends).await
    }

    /// Sends one record to one receiver, with bounded retries.
    async fn deliver(&self, name: String, record: &ExperimentRecord) -> Delivery {
        let Some(receiver) = self.receivers.get(&name) else {
            return Delivery {
                receiver: name,
                result: DeliveryResult::Dropped,
                attempts: 0,
                error: Some("unknown receiver".into()),
            };
        };
        let outcome = match receiver {
            Receiver::Slack(s) => {
                let message = slack_message(record);
                retry(&self.backoff, || s.send(&message))
                    .await
                    .map(|(_, n)| n)
            }
            Receiver::Webhook(w) => {
                let body = serde_json::to_vec(record).unwrap_or_default();
                retry(&self.backoff, || w.send(&body))
                    .await
                    .map(|((), n)| n)
            }
        };
        match outcome {
            Ok(attempts) => Delivery {
                receiver: name,
                result: DeliveryResult::Sent,
                attempts,
                error: None,
            },
            Err(f) => {
                tracing::warn!(receiver = %name, attempts = f.attempts, error = %f.error, "notification dropped");
                Delivery {
                    receiver: name,
                    result: DeliveryResult::Dropped,
                    attempts: f.attempts,
                    error: Some(f.error.to_string()),
                }
            }
        }
    }

    /// One bounded queue and one sender task per receiver (on `tasks`): a receiver that
    /// hangs or refuses fills only its own queue, never another's. Deliveries are
    /// counted in `metrics`.
    pub fn queues(self: Arc<Self>, metrics: Metrics, tasks: &TaskTracker) -> Queues {
        let mut senders = BTreeMap::new();
        for name in self.receivers.keys() {
            let (tx, mut rx) = mpsc::channel::<Arc<ExperimentRecord>>(QUEUE_CAPACITY);
            let (this, metrics, name2) = (self.clone(), metrics.clone(), name.clone());
            tasks.spawn(async move {
                while let Some(record) = rx.recv().await {
                    let d = this.deliver(name2.clone(), &record).await;
                    metrics.notification(&d.receiver, d.result);
                }
            });
            senders.insert(name.clone(), tx);
        }
        Queues {
            senders: std::sync::Mutex::new(Some(senders)),
            metrics,
        }
    }
}

/// Records waiting per receiver before new ones are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 64;

/// The per-receiver queues of the service.
#[derive(Debug)]
pub struct Queues {
    senders: std::sync::Mutex<Option<BTreeMap<String, mpsc::Sender<Arc<ExperimentRecord>>>>>,
    metrics: Metrics,
}

impl Queues {
    /// Queues a record for `receivers`; a full (or closed) queue drops it for that
    /// receiver only.
    pub fn enqueue(&self, receivers: &[String], record: ExperimentRecord) {
        let record = Arc::new(record);
        let senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        for r in receivers {
            let queued = senders
                .as_ref()
                .and_then(|s| s.get(r))
                .is_some_and(|tx| tx.try_send(record.clone()).is_ok());
            if !queued {
                tracing::warn!(receiver = %r, id = %record.id, "notification dropped: the receiver's queue is full");
                self.metrics.notification(r, DeliveryResult::Dropped);
            }
        }
    }

    /// No more records: each sender task ends once its queue is empty.
    pub fn close(&self) {
        self.senders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
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
                format!(
                    "• *{}* since {} ({})",
                    a.name,
                    a.starts_at.to_rfc3339(),
                    alert_labels(a)
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
                slo_value(s),
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

#[cfg(test)]
mod queue_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::{policy::fixtures, record::tests::record};

    /// A webhook receiver on loopback: answers 200 and counts, or never answers.
    async fn receiver(answers: bool) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = sock.read(&mut buf).await;
                    if !answers {
                        // Hold the connection: the sender waits for its timeout.
                        tokio::time::sleep(Duration::from_secs(600)).await;
                        return;
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn a_hanging_receiver_fills_only_its_own_queue() {
        let (hangs, _) = receiver(false).await;
        let (answers, delivered) = receiver(true).await;
        let config = fixtures::config()
            .set(
                "/receivers",
                serde_json::json!([
                    {"name": "stuck", "webhook": {"url": hangs}},
                    {"name": "fine", "webhook": {"url": answers}},
                ]),
            )
            .build();
        let notifier = Arc::new(Notifier::from_config(&config).expect("notifier"));
        let metrics = Metrics::new();
        let tasks = TaskTracker::new();
        let queues = notifier.queues(metrics.clone(), &tasks);
        // Two waves of 50, each within the working receiver's queue: it delivers both
        // while the stuck one holds its first record and fills up.
        let wave = 50;
        let mut n = 0;
        for _ in 0..2 {
            for _ in 0..wave {
                queues.enqueue(
                    &["stuck".to_string(), "fine".to_string()],
                    record(&format!("e{n}"), Verdict::Deviated),
                );
                n += 1;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while delivered.load(Ordering::SeqCst) < n && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(
                delivered.load(Ordering::SeqCst),
                n,
                "the working receiver got every record"
            );
        }
        let text = metrics.encode();
        let dropped = text
            .lines()
            .find(|l| {
                l.starts_with("havoc_notifications_total{receiver=\"stuck\",result=\"dropped\"}")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        // One record is being sent, QUEUE_CAPACITY wait; the rest were dropped at once.
        assert_eq!(dropped, n - QUEUE_CAPACITY - 1, "{text}");
        assert!(
            !text.contains("receiver=\"fine\",result=\"dropped\""),
            "{text}"
        );
    }
}
