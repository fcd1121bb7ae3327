//! The experiment as an object in the cluster: the custom resource `HavocExperiment`
//! (`havoc.dev/v1alpha1`, short name `hx`) in havoc's namespace, one per experiment that
//! ran (skips are counted per policy instead: [`super::skips`]; a run whose intent was
//! written and that then reached no target, every pod gone or every eviction refused, is
//! closed with its skip: the object exists, and nobody else would finish it).
//!
//! It is created before the first mutation, as the intent (`spec`: policy, fault, trigger,
//! the planned targets, the deadline of its revert records, who runs it) with
//! `status.phase: Running`; the final record replaces its `status` once, conditionally on
//! the phase still being `Running` (a JSON patch `test`), so that the experiment's own
//! record and a successor's "crashed" record can never both land.
//!
//! No status subresource: the record is written by the same principal that created the
//! object, and one resource keeps havoc's RBAC to one rule.
//!
//! Objects stay well under etcd's 1.5 MiB: at most [`MAX_TARGETS`] targets (the rest
//! counted), alerts and SLO readings likewise, reasons cut to [`MAX_REASON`] characters.

use chrono::{DateTime, Utc};
use kube::{CustomResource, ResourceExt, api::ObjectMeta};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::{
    journal::Intent,
    labels::MANAGED_BY,
    record::{ExperimentRecord, ObjectRef},
};

/// Targets kept in an object (spec and record); the rest is counted.
pub const MAX_TARGETS: usize = 100;
/// Alerts and SLO readings kept in a record.
pub const MAX_READINGS: usize = 50;
/// Characters kept of a reason or a target's detail.
pub const MAX_REASON: usize = 2000;
/// The label with the experiment's policy.
pub const POLICY_LABEL: &str = "havoc.dev/policy";
/// The label with the verdict, once there is one.
pub const VERDICT_LABEL: &str = "havoc.dev/verdict";
/// The label with the installation (its Lease's name): the service and its `havoc run`s
/// read their own installation's objects when several share a namespace.
pub const INSTALLATION_LABEL: &str = "havoc.dev/installation";

/// Who writes an experiment's object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// The installation: its Lease's name (a label value).
    pub installation: String,
    /// Whose revert records: `NAMESPACE/LEASE` (the service), `havoc-run/HOST-PID`.
    pub owner: String,
    /// The replica (pod, or host) that runs it.
    pub replica: String,
}

/// An experiment havoc ran: its intent, then its final record.
// `printcolumn(type_ = "string")` repeats by design: one column each.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "havoc.dev",
    version = "v1alpha1",
    kind = "HavocExperiment",
    plural = "havocexperiments",
    shortname = "hx",
    category = "havoc",
    namespaced,
    status = "ExperimentStatus",
    doc = "An experiment havoc ran: the intent (spec), created before its first change to the cluster, and the final record (status).",
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policy"),
    printcolumn(name = "Fault", type_ = "string", json_path = ".spec.fault"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reasonCode"),
    printcolumn(name = "Targets", type_ = "string", json_path = ".spec.targetSummary"),
    printcolumn(
        name = "Owner",
        type_ = "string",
        json_path = ".spec.owner",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// The experiment's id (the object's name is its lowercase).
    pub id: String,
    pub policy: String,
    /// The fault's field name, e.g. `scale`.
    pub fault: String,
    pub dry_run: bool,
    /// What started it (`kind`: schedule, rollout or manual).
    #[schemars(schema_with = "free_form")]
    pub trigger: serde_json::Value,
    pub started_at: DateTime<Utc>,
    /// When its revert records expire: after it, whoever finds them reverts them.
    pub deadline: DateTime<Utc>,
    /// When its final record is due at the latest: after it, any havoc's leader closes
    /// it as crashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_by: Option<DateTime<Utc>>,
    /// The havoc installation that runs it: `NAMESPACE/LEASE`, or `havoc-run/HOST`.
    pub owner: String,
    /// The replica (pod) of that installation that runs it.
    pub replica: String,
    /// The objects it is about to change (the first 100).
    #[serde(default)]
    pub targets: Vec<ObjectRef>,
    /// How many objects it is about to change.
    #[schemars(with = "i64")]
    pub target_count: usize,
    /// For `kubectl get`: e.g. `2 Pod` or `Node worker-3`.
    pub target_summary: String,
}

/// The experiment's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Its intent is written; its final record is not (yet).
    Running,
    /// Its final record is in `record`.
    Finished,
}

/// Where an experiment stands, and its final record.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    pub phase: Phase,
    /// `passed`, `deviated`, `errored`, `rollbackFailed` (once finished).
    pub verdict: Option<String>,
    /// Why, as a code (e.g. `crashed`, `alertsFiring`).
    pub reason_code: Option<String>,
    /// The final record (the API's `ExperimentRecord`), targets and readings bounded.
    #[serde(default)]
    #[schemars(schema_with = "free_form_optional")]
    pub record: Option<serde_json::Value>,
    /// Targets of the record beyond the first 100, counted only.
    #[schemars(with = "Option<i64>")]
    pub targets_omitted: Option<usize>,
}

fn free_form(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

fn free_form_optional(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The CustomResourceDefinition, as the chart's `crds/` and `deploy/local/up` install it
/// (`havoc schema crd`): JSON, which is YAML too, under a comment.
pub fn crd_document() -> String {
    format!(
        "# Generated by `havoc schema crd` from scheduler/src/history/object.rs; do not edit.\n\
         # Helm installs CRDs but never upgrades them: after an upgrade that changes this file,\n\
         # apply it yourself (kubectl apply -f crds/).\n{}\n",
        serde_json::to_string_pretty(&crd()).unwrap_or_default()
    )
}

/// The CRD of [`HavocExperiment`], without the status subresource the derive adds: the
/// status is written with the intent and replaced by the final record, by the same
/// principal, through the main resource (one RBAC rule, one request each).
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = HavocExperiment::crd();
    for v in &mut crd.spec.versions {
        v.subresources = None;
    }
    crd
}

/// The object name of experiment `id` (object names are lowercase).
pub fn object_name(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// `2 Pod`, `Node worker-3`, `1 Deployment, 2 StatefulSet`.
pub fn target_summary(targets: &[ObjectRef]) -> String {
    if let [one] = targets {
        return match &one.namespace {
            Some(ns) => format!("{} {ns}/{}", one.kind, one.name),
            None => format!("{} {}", one.kind, one.name),
        };
    }
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for t in targets {
        match kinds.iter_mut().find(|(k, _)| *k == t.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((&t.kind, 1)),
        }
    }
    if kinds.is_empty() {
        return "none".into();
    }
    kinds
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn labels(policy: &str, installation: &str) -> std::collections::BTreeMap<String, String> {
    let mut labels: std::collections::BTreeMap<String, String> = [
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (INSTALLATION_LABEL.to_string(), installation.to_string()),
    ]
    .into();
    // Policy names are DNS labels (validated), so also label values.
    if policy.len() <= 63 {
        labels.insert(POLICY_LABEL.into(), policy.into());
    }
    labels
}

/// The object of an experiment about to change the cluster: the intent, phase `Running`.
pub fn intent_object(intent: &Intent, author: &Author) -> HavocExperiment {
    let spec = ExperimentSpec {
        id: intent.id.clone(),
        policy: intent.policy.clone(),
        fault: intent.fault.clone(),
        dry_run: intent.dry_run,
        trigger: serde_json::to_value(&intent.trigger).unwrap_or_default(),
        started_at: intent.started_at,
        deadline: intent.deadline,
        ends_by: intent.ends_by,
        owner: author.owner.clone(),
        replica: author.replica.clone(),
        targets: intent.targets.iter().take(MAX_TARGETS).cloned().collect(),
        target_count: intent.targets.len(),
        target_summary: target_summary(&intent.targets),
    };
    HavocExperiment {
        metadata: ObjectMeta {
            name: Some(object_name(&intent.id)),
            labels: Some(labels(&intent.policy, &author.installation)),
            ..ObjectMeta::default()
        },
        spec,
        status: Some(ExperimentStatus {
            phase: Phase::Running,
            verdict: None,
            reason_code: None,
            record: None,
            targets_omitted: None,
        }),
    }
}

/// The intent a record implies, for an experiment that ended before its intent object
/// was written (e.g. errored before any change): created with its final status at once.
pub fn intent_of(record: &ExperimentRecord) -> Intent {
    Intent {
        id: record.id.clone(),
        policy: record.policy.clone(),
        fault: record.fault.clone(),
        dry_run: record.dry_run,
        trigger: record.trigger.clone(),
        started_at: record.started_at,
        targets: record
            .targets
            .iter()
            .map(|t| ObjectRef {
                kind: t.kind.clone(),
                namespace: t.namespace.clone(),
                name: t.name.clone(),
            })
            .collect(),
        deadline: record.ended_at,
        ends_by: Some(record.ended_at),
    }
}

fn cut(text: &mut String) {
    if let Some((i, _)) = text.char_indices().nth(MAX_REASON) {
        text.truncate(i);
        text.push('…');
    }
}

/// The final status of `record`: the record bounded to what an object should hold.
pub fn final_status(record: &ExperimentRecord) -> ExperimentStatus {
    let mut r = record.clone();
    let omitted = r.targets.len().saturating_sub(MAX_TARGETS);
    r.targets.truncate(MAX_TARGETS);
    r.alerts.truncate(MAX_READINGS);
    r.slos.truncate(MAX_READINGS);
    cut(&mut r.reason);
    for t in &mut r.targets {
        if let Some(d) = &mut t.detail {
            cut(d);
        }
        if let Some(d) = t.revert.as_mut().and_then(|v| v.detail.as_mut()) {
            cut(d);
        }
    }
    ExperimentStatus {
        phase: Phase::Finished,
        verdict: Some(record.verdict.label().to_string()),
        reason_code: record.reason_code.clone(),
        record: serde_json::to_value(&r).ok(),
        targets_omitted: (omitted > 0).then_some(omitted),
    }
}

/// What an object in havoc's namespace says, once read: an experiment still running (its
/// intent), or a finished one (its record). `Err`: not an experiment havoc can read (made
/// by hand, or corrupted): logged and ignored by the readers.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    Running(Box<Running>),
    Finished(Box<ExperimentRecord>),
}

/// An experiment whose final record is not written.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub intent: Intent,
    pub owner: String,
    pub replica: String,
}

/// Reads an object. Its shape is the CRD's (the API server validates it); what the
/// schema leaves open (the trigger, the record) is checked here.
pub fn read(mut hx: HavocExperiment) -> Result<Read, String> {
    // Taken by value: the record's JSON tree is moved out, not copied (a replica lists
    // the whole history at start; copies there are what its RSS keeps).
    let name = hx.name_any();
    if name != object_name(&hx.spec.id) {
        return Err(format!(
            "its name {name} is not its spec.id {} in lowercase",
            hx.spec.id
        ));
    }
    match hx.status.as_ref().map(|s| s.phase) {
        Some(Phase::Finished) => {
            let record = hx
                .status
                .as_mut()
                .and_then(|s| s.record.take())
                .ok_or("finished without a record")?;
            let record: ExperimentRecord =
                serde_json::from_value(record).map_err(|e| format!("its record: {e}"))?;
            if record.id != hx.spec.id {
                return Err("its record is another experiment's".into());
            }
            Ok(Read::Finished(Box::new(record)))
        }
        Some(Phase::Running) | None => {
            let trigger = serde_json::from_value(std::mem::take(&mut hx.spec.trigger))
                .map_err(|e| format!("its trigger: {e}"))?;
            Ok(Read::Running(Box::new(Running {
                intent: Intent {
                    id: hx.spec.id,
                    policy: hx.spec.policy,
                    fault: hx.spec.fault,
                    dry_run: hx.spec.dry_run,
                    trigger,
                    started_at: hx.spec.started_at,
                    targets: hx.spec.targets,
                    deadline: hx.spec.deadline,
                    ends_by: hx.spec.ends_by,
                },
                owner: hx.spec.owner,
                replica: hx.spec.replica,
            })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{TargetOutcome, TargetRecord, TriggerInfo, Verdict, tests::record};

    fn intent(targets: usize) -> Intent {
        Intent {
            id: "Scale-20261204T101500Z-00ab".into(),
            policy: "scale".into(),
            fault: "scale".into(),
            dry_run: false,
            trigger: TriggerInfo::Manual {
                source: "http".into(),
            },
            started_at: "2026-12-04T10:15:00Z".parse().expect("t"),
            targets: (0..targets)
                .map(|i| ObjectRef::namespaced("Pod", "d", &format!("web-{i}")))
                .collect(),
            deadline: "2026-12-04T10:16:00Z".parse().expect("t"),
            ends_by: None,
        }
    }

    fn author() -> Author {
        Author {
            installation: "havoc".into(),
            owner: "havoc-system/havoc".into(),
            replica: "havoc-0".into(),
        }
    }

    #[test]
    fn an_intent_reads_back_as_running_and_a_record_as_finished() {
        let i = intent(3);
        let mut hx = intent_object(&i, &author());
        assert_eq!(hx.name_any(), "scale-20261204t101500z-00ab");
        assert_eq!(hx.spec.target_summary, "3 Pod");
        match read(hx.clone()).expect("reads") {
            Read::Running(r) => {
                assert_eq!(r.intent, i);
                assert_eq!(r.owner, "havoc-system/havoc");
            }
            other => panic!("{other:?}"),
        }
        let mut rec = record(&i.id, Verdict::Errored);
        rec.reason_code = Some("crashed".into());
        hx.status = Some(final_status(&rec));
        assert_eq!(
            read(hx.clone()).expect("reads"),
            Read::Finished(Box::new(rec))
        );
    }

    #[test]
    fn large_records_are_bounded_and_counted() {
        let mut rec = record("x", Verdict::Passed);
        rec.reason = "r".repeat(10_000);
        rec.targets = (0..1000)
            .map(|i| TargetRecord {
                kind: "Pod".into(),
                namespace: Some("d".into()),
                name: format!("web-{i}"),
                outcome: TargetOutcome::Injected,
                detail: Some("d".repeat(5000)),
                revert: None,
            })
            .collect();
        let status = final_status(&rec);
        assert_eq!(status.targets_omitted, Some(900));
        let size = serde_json::to_string(&status).expect("json").len();
        assert!(size < 512 * 1024, "{size} bytes");
        let spec = intent_object(&intent(5000), &author()).spec;
        assert_eq!(spec.targets.len(), MAX_TARGETS);
        assert_eq!(spec.target_count, 5000);
    }

    #[test]
    fn hand_made_and_corrupted_objects_are_refused_not_fatal() {
        let hx = intent_object(&intent(1), &author());
        let mut renamed = hx.clone();
        renamed.metadata.name = Some("something-else".into());
        assert!(read(renamed.clone()).is_err());
        let mut finished_empty = hx.clone();
        finished_empty.status = Some(ExperimentStatus {
            phase: Phase::Finished,
            verdict: None,
            reason_code: None,
            record: None,
            targets_omitted: None,
        });
        assert!(read(finished_empty.clone()).is_err());
        let mut bad_trigger = hx.clone();
        bad_trigger.spec.trigger = serde_json::json!({"kind": "cosmic rays"});
        assert!(read(bad_trigger).is_err());
        let mut bad_record = hx;
        bad_record.status = Some(ExperimentStatus {
            phase: Phase::Finished,
            verdict: Some("passed".into()),
            reason_code: None,
            record: Some(serde_json::json!({"id": "x"})),
            targets_omitted: None,
        });
        assert!(read(bad_record.clone()).is_err());
    }

    #[test]
    fn target_summaries() {
        let p = |n: &str| ObjectRef::namespaced("Pod", "d", n);
        let node = ObjectRef {
            kind: "Node".into(),
            namespace: None,
            name: "w-1".into(),
        };
        assert_eq!(target_summary(&[]), "none");
        assert_eq!(target_summary(&[p("a")]), "Pod d/a");
        assert_eq!(target_summary(std::slice::from_ref(&node)), "Node w-1");
        assert_eq!(target_summary(&[p("a"), node, p("b")]), "2 Pod, 1 Node");
    }
}
