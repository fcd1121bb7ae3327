//! Kubernetes Events on targets: `ChaosInjected` when a fault lands, and the verdict when
//! the experiment ends (`ChaosPassed`, `ChaosDeviated`, ...). Published in the background,
//! on tasks the service tracks and awaits at shutdown: an Event that cannot be written is
//! logged, never delays or fails an experiment.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};

use tokio_util::task::TaskTracker;

use crate::record::{ExperimentRecord, ObjectRef, TargetRecord, Verdict};

/// Publishes experiment Events.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    tasks: TaskTracker,
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
    let api_version = match kind {
        "Pod" | "Node" => "v1",
        "Deployment" | "StatefulSet" | "DaemonSet" => "apps/v1",
        "NetworkPolicy" => "networking.k8s.io/v1",
        "VirtualService" => "networking.istio.io/v1",
        _ => "v1",
    };
    ObjectReference {
        api_version: Some(api_version.to_string()),
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
    /// Publishes as `havoc` (`instance`: this pod), on tasks of `tasks`.
    pub fn new(client: Client, instance: Option<String>, tasks: TaskTracker) -> Self {
        Events {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "havoc".to_string(),
                    instance,
                },
            ),
            tasks,
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

    /// The verdict on every target the fault reached.
    pub fn verdict(&self, record: &ExperimentRecord) {
        if record.injected_at.is_none() {
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
