//! Kubernetes Events on targets: `ChaosInjected` when a fault lands, and the verdict when
//! the experiment ends (`ChaosPassed`, `ChaosDeviated`, ...) for the outcomes
//! `events.verdicts` names — by default the failures only, so that a passing experiment
//! costs one Event (one request) per target, and an Event on a pod says something went
//! wrong only when something did. Published in the background, on tasks the service
//! tracks and awaits at shutdown: an Event that cannot be written is logged, never delays
//! or fails an experiment.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};

use tokio_util::task::TaskTracker;

use super::notify::on_for;
use crate::{
    policy::domain::NotifyOn,
    record::{ExperimentRecord, ObjectRef, TargetRecord, Verdict},
};

/// Publishes experiment Events.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    tasks: TaskTracker,
    /// The outcomes that get a verdict Event.
    verdicts: Vec<NotifyOn>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

/// The verdict as an Event reason.
pub fn verdict_reason(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "ChaosPassed",
        Verdict::Deviated => "ChaosDeviated",
        Verdict::Skipped => "ChaosSkipped",
        Verdict::Errored => "ChaosErrored",
        Verdict::RollbackFailed => "ChaosRollbackFailed",
    }
}

fn reference(kind: &str, namespace: Option<&str>, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(crate::kinds::api_version(kind)),
        kind: Some(kind.to_string()),
        namespace: namespace.map(str::to_string),
        name: Some(name.to_string()),
        ..ObjectReference::default()
    }
}

fn target_reference(t: &TargetRecord) -> ObjectReference {
    reference(&t.kind, t.namespace.as_deref(), &t.name)
}

impl Events {
    /// Publishes as `havoc` (`instance`: this pod), on tasks of `tasks`; verdict Events
    /// for the outcomes in `verdicts` only.
    pub fn new(
        client: Client,
        instance: Option<String>,
        tasks: TaskTracker,
        verdicts: Vec<NotifyOn>,
    ) -> Self {
        Events {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "havoc".to_string(),
                    instance,
                },
            ),
            tasks,
            verdicts,
        }
    }

    /// `ChaosInjected` on every target the fault reached.
    pub fn injected(&self, record: &ExperimentRecord) {
        let note = format!(
            "havoc experiment {} (policy {}): {}",
            record.id, record.policy, record.fault
        );
        self.publish(record, "ChaosInjected", EventType::Normal, note);
    }

    /// The verdict on every target the fault reached, if `events.verdicts` names it.
    pub fn verdict(&self, record: &ExperimentRecord) {
        if record.injected_at.is_none() || !self.verdicts.contains(&on_for(record)) {
            return;
        }
        let kind = match record.verdict {
            Verdict::Passed | Verdict::Skipped => EventType::Normal,
            _ => EventType::Warning,
        };
        let mut note = format!(
            "havoc experiment {} (policy {}): {}",
            record.id,
            record.policy,
            record.verdict.label()
        );
        if !record.reason.is_empty() {
            note.push_str(": ");
            note.push_str(&record.reason);
        }
        self.publish(record, verdict_reason(record.verdict), kind, note);
    }

    fn publish(&self, record: &ExperimentRecord, reason: &str, type_: EventType, note: String) {
        for t in record.injected() {
            self.send(target_reference(t), reason, type_, &note);
        }
    }

    /// An Event about a revert done outside an experiment (recovery), on the object
    /// that carried the change: `ChaosReverted`, or `ChaosRevertFailed` (a warning).
    pub fn revert(&self, object: &ObjectRef, ok: bool, note: String) {
        let (reason, type_) = if ok {
            ("ChaosReverted", EventType::Normal)
        } else {
            ("ChaosRevertFailed", EventType::Warning)
        };
        let r = reference(&object.kind, object.namespace.as_deref(), &object.name);
        self.send(r, reason, type_, &note);
    }

    fn send(&self, reference: ObjectReference, reason: &str, type_: EventType, note: &str) {
        // An Event note is at most 1 kB.
        let note: String = note.chars().take(1000).collect();
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: "Chaos".to_string(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        self.tasks.spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, object = ?reference.name, "cannot publish Event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    //! The requests an experiment's Events cost, against kube's `tower_test` mock.

    use std::time::Duration;

    use http::{Request, Response};
    use kube::client::Body;
    use tower_test::mock;

    use super::*;
    use crate::{
        policy::{domain::DEFAULT_NOTIFY_ON, fixtures},
        record::{TargetOutcome, TriggerInfo},
    };

    fn record(verdict: Verdict) -> ExperimentRecord {
        let p = fixtures::policy("p").namespaces(&["d"]).build();
        let trigger = TriggerInfo::Manual {
            source: "test".into(),
        };
        let mut r = crate::record::ExperimentRecord::start(p.record_of(), trigger, "p-1".into());
        r.verdict = verdict;
        r.injected_at = Some(chrono::Utc::now());
        r.targets.push(TargetRecord {
            kind: "Pod".into(),
            namespace: Some("d".into()),
            name: "web-1".into(),
            outcome: TargetOutcome::Injected,
            detail: None,
            revert: None,
        });
        r
    }

    /// The Event reasons created, until no request comes for a while.
    async fn created(mut handle: mock::Handle<Request<Body>, Response<Body>>) -> Vec<String> {
        let mut reasons = Vec::new();
        while let Ok(Some((req, send))) =
            tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await
        {
            assert_eq!(req.method(), "POST");
            assert_eq!(
                req.uri().path(),
                "/apis/events.k8s.io/v1/namespaces/d/events"
            );
            let body = req.into_body().collect_bytes().await.expect("body");
            let ev: serde_json::Value = serde_json::from_slice(&body).expect("json");
            reasons.push(ev["reason"].as_str().unwrap_or_default().to_string());
            send.send_response(
                Response::builder()
                    .body(Body::from(body.to_vec()))
                    .expect("response"),
            );
        }
        reasons
    }

    async fn published(verdict: Verdict, verdicts: Vec<NotifyOn>) -> Vec<String> {
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let tasks = TaskTracker::new();
        let events = Events::new(Client::new(svc, "default"), None, tasks.clone(), verdicts);
        let server = tokio::spawn(created(handle));
        let r = record(verdict);
        events.injected(&r);
        events.verdict(&r);
        tasks.close();
        tasks.wait().await;
        server.await.expect("server")
    }

    #[tokio::test]
    async fn one_event_per_target_when_the_experiment_passes() {
        let default = DEFAULT_NOTIFY_ON.to_vec();
        assert_eq!(
            published(Verdict::Passed, default.clone()).await,
            ["ChaosInjected"]
        );
        // a failure is said on the target too
        let mut reasons = published(Verdict::Deviated, default).await;
        reasons.sort();
        assert_eq!(reasons, ["ChaosDeviated", "ChaosInjected"]);
        // configured: every verdict
        let mut reasons = published(Verdict::Passed, vec![NotifyOn::Passed]).await;
        reasons.sort();
        assert_eq!(reasons, ["ChaosInjected", "ChaosPassed"]);
    }
}
