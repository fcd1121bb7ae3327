//! Crash-safe reverts (DESIGN section 5). A reversible fault never changes an object
//! without its revert record: the annotation `havoc.dev/revert` — experiment, policy,
//! fault, the original state, a deadline and the owner — goes in the same request as the
//! change (a merge patch with the object's resourceVersion as precondition), or on the
//! object havoc creates. The revert restores the original state and removes the record,
//! again in one request. If havoc dies in between, the record stays on the object, and
//! whoever finds it expired ([`super::recovery`]) undoes it.
//!
//! The record comes with the label `havoc.dev/revert=true` ([`REVERT_LABEL`]), set and
//! removed in the same requests, so that watches can select the objects that hold a
//! record instead of every object of their kind.

use chrono::{DateTime, Utc};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::{FaultError, Mutator};

pub use crate::labels::{REVERT_ANNOTATION, REVERT_LABEL};

/// How long after the fault's planned end an orphaned record may be reverted by another
/// havoc: covers a slow revert and clock skew, so a running experiment's own revert is
/// never raced by a stranger.
pub const DEADLINE_GRACE: chrono::Duration = chrono::Duration::minutes(2);

/// What a mutated object carries until its fault is reverted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevertRecord {
    pub experiment: String,
    pub policy: String,
    /// The fault's field name, e.g. `scale`.
    pub fault: String,
    /// What to restore, in the fault's own terms (e.g. `{"replicas": 3, "set": 0}`).
    pub original: Value,
    /// After this instant the record is orphaned: anyone may revert it.
    pub deadline: DateTime<Utc>,
    /// The havoc installation that holds it (`NAMESPACE/LEASE`, or `havoc-run/HOST`):
    /// until the deadline, only its owner reverts it.
    #[serde(default)]
    pub owner: String,
}

impl RevertRecord {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.deadline
    }

    /// The metadata part of an inject patch: sets the annotation and its label.
    pub fn annotate(&self) -> Value {
        merge(
            json!({"metadata": {"annotations": {REVERT_ANNOTATION: self.encode()}}}),
            label(),
        )
    }
}

/// What every record of one experiment shares; [`Stamp::record`] adds the fault's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub experiment: String,
    pub policy: String,
    /// The deadline of a change made now.
    pub deadline: DateTime<Utc>,
    /// How long after a change is in place its record expires (the hold plus
    /// [`DEADLINE_GRACE`]): a change that takes long to complete (a drain's evictions)
    /// moves its deadline to this long after it completed.
    pub hold: chrono::Duration,
    pub owner: String,
}

impl Stamp {
    /// The stamp of an experiment that holds its faults for `hold`, starting now.
    pub fn new(experiment: &str, policy: &str, hold: std::time::Duration, owner: &str) -> Self {
        let hold = chrono::Duration::from_std(hold).unwrap_or_default() + DEADLINE_GRACE;
        Stamp {
            experiment: experiment.to_string(),
            policy: policy.to_string(),
            deadline: Utc::now() + hold,
            hold,
            owner: owner.to_string(),
        }
    }

    pub fn record(&self, fault: &str, original: Value) -> RevertRecord {
        RevertRecord {
            experiment: self.experiment.clone(),
            policy: self.policy.clone(),
            fault: fault.to_string(),
            original,
            deadline: self.deadline,
            owner: self.owner.clone(),
        }
    }
}

/// Why an object is no longer havoc's to revert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotOurs {
    #[error("its revert record is gone (reverted or removed by someone else)")]
    Gone,
    #[error("its revert record is unreadable: {0}")]
    Unreadable(String),
    #[error("it now carries the record of experiment {0}")]
    Other(String),
}

/// Checks that `object` still carries `ours` (same experiment): the record on the object
/// is what a revert acts on.
pub fn still_ours<K: Resource>(object: &K, ours: &RevertRecord) -> Result<RevertRecord, NotOurs> {
    match record_of(object) {
        None => Err(NotOurs::Gone),
        Some(Err(e)) => Err(NotOurs::Unreadable(e.to_string())),
        Some(Ok(r)) if r.experiment != ours.experiment => Err(NotOurs::Other(r.experiment)),
        Some(Ok(r)) => Ok(r),
    }
}

/// A Kubernetes-safe name for something an experiment creates: lower case, at most 63
/// characters (a hash keeps long ids unique).
pub fn object_name(prefix: &str, experiment: &str) -> String {
    let id: String = experiment
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let full = format!("{prefix}-{id}");
    if full.len() <= 63 {
        return full;
    }
    let hash = format!("{:016x}", crate::schedule::stable_hash(experiment));
    let keep = 63 - hash.len() - 1;
    format!("{}-{hash}", full[..keep].trim_end_matches('-'))
}

/// The metadata patch that sets the record's label (alone: for a record written without it).
pub fn label() -> Value {
    json!({"metadata": {"labels": {REVERT_LABEL.0: REVERT_LABEL.1}}})
}

/// The metadata part of a revert patch: removes the annotation and its label (merge-patch
/// null).
pub fn clear_annotation() -> Value {
    json!({"metadata": {
        "annotations": {REVERT_ANNOTATION: null},
        "labels": {REVERT_LABEL.0: null},
    }})
}

/// The resourceVersion precondition of a merge patch: the API server refuses it with 409
/// if the object changed since it was read.
pub fn precondition(resource_version: Option<String>) -> Value {
    json!({"metadata": {"resourceVersion": resource_version}})
}

/// Sends `patch` as one merge patch to the object `current` was read as, with its
/// resourceVersion as precondition (the API server refuses with 409 if it changed since:
/// the caller's conflict retry reads it again).
pub async fn patch_as_read<K>(
    m: &Mutator,
    api: &Api<K>,
    current: &K,
    patch: Value,
) -> Result<(), FaultError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = merge(precondition(current.meta().resource_version.clone()), patch);
    let name = current.name_any();
    m.send(api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)))
        .await?;
    Ok(())
}

/// Merges JSON merge-patches (later keys win; objects merge recursively).
pub fn merge(mut a: Value, b: Value) -> Value {
    match (&mut a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in y {
                let merged = match x.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                x.insert(k, merged);
            }
            a
        }
        (_, b) => b,
    }
}

/// A revert record that does not parse: a human has to look at the object.
#[derive(Debug, thiserror::Error)]
#[error("{object} has an unreadable {REVERT_ANNOTATION} annotation: {source}")]
pub struct UnreadableRecord {
    pub object: String,
    #[source]
    pub source: serde_json::Error,
}

/// The revert record on an object, if any. A record that does not parse is reported, so
/// that a human looks at the object (havoc will not guess what to restore).
pub fn record_of<K: Resource>(object: &K) -> Option<Result<RevertRecord, UnreadableRecord>> {
    let text = object.annotations().get(REVERT_ANNOTATION)?;
    Some(
        RevertRecord::decode(text).map_err(|source| UnreadableRecord {
            object: object.name_any(),
            source,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;

    fn record(deadline: &str) -> RevertRecord {
        RevertRecord {
            experiment: "e1".into(),
            policy: "p".into(),
            fault: "scale".into(),
            original: json!({"replicas": 3, "set": 0}),
            deadline: DateTime::parse_from_rfc3339(deadline)
                .expect("time")
                .to_utc(),
            owner: "havoc-system/havoc".into(),
        }
    }

    #[test]
    fn records_round_trip_through_the_annotation() {
        let rec = record("2026-11-22T10:05:00Z");
        let patch = merge(json!({"spec": {"replicas": 0}}), rec.annotate());
        assert_eq!(patch["spec"]["replicas"], 0);
        assert_eq!(patch["metadata"]["labels"][REVERT_LABEL.0], REVERT_LABEL.1);
        let stored = patch["metadata"]["annotations"][REVERT_ANNOTATION]
            .as_str()
            .expect("annotation");
        assert_eq!(RevertRecord::decode(stored).expect("decodes"), rec);
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "d", "annotations": {REVERT_ANNOTATION: stored}},
            "spec": {"selector": {}, "template": {}}
        }))
        .expect("deployment");
        assert_eq!(record_of(&d).and_then(Result::ok), Some(rec));
        d.annotations_mut()
            .insert(REVERT_ANNOTATION.into(), "{not json".into());
        assert!(record_of(&d).is_some_and(|r| r.is_err()));
    }

    #[test]
    fn expiry_and_the_patch_helpers() {
        let rec = record("2026-11-22T10:05:00Z");
        let before = DateTime::parse_from_rfc3339("2026-11-22T10:04:59Z")
            .expect("t")
            .to_utc();
        assert!(!rec.is_expired(before));
        assert!(rec.is_expired(rec.deadline));
        let revert = merge(
            merge(precondition(Some("42".into())), clear_annotation()),
            json!({"spec": {"replicas": 3}}),
        );
        assert_eq!(revert["metadata"]["resourceVersion"], "42");
        assert!(revert["metadata"]["annotations"][REVERT_ANNOTATION].is_null());
        let label = &revert["metadata"]["labels"];
        assert!(
            label.get(REVERT_LABEL.0).is_some_and(|v| v.is_null()),
            "{label}"
        );
    }

    #[test]
    fn names_are_lower_case_and_short() {
        assert_eq!(
            object_name("havoc", "p-20261201T120000Z-ab12"),
            "havoc-p-20261201t120000z-ab12"
        );
        let long = format!("{}-20261201T120000Z-ab12", "x".repeat(63));
        let n = object_name("havoc", &long);
        assert!(n.len() <= 63 && n.starts_with("havoc-xxx"), "{n}");
        assert_ne!(n, object_name("havoc", &long.replace("ab12", "ab13")));
    }

    #[test]
    fn merge_patches_recursively() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}});
        let b = json!({"metadata": {"annotations": {"k": "v"}}, "spec": {"x": 2}});
        assert_eq!(
            merge(a, b),
            json!({"metadata": {"labels": {"a": "1"}, "annotations": {"k": "v"}}, "spec": {"x": 2}})
        );
    }
}
