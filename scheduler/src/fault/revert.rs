//! Crash-safe reverts (DESIGN section 5). Before a reversible fault changes an object,
//! havoc writes a revert record on it, in the same patch as the change:
//! the annotation `havoc.dev/revert` holds the experiment id, what to restore, and a
//! deadline. The revert restores the original state and removes the annotation, again in
//! one patch. If havoc dies in between, the record stays on the object; at start-up (and
//! on every replica that becomes leader) [`expired`] finds the records whose deadline has
//! passed and the fault's [`Reversible::revert_patch`] undoes them.
//!
//! Pod faults (delete, evict) need none of this: the owning workload replaces the pod.
//! Each reversible fault (nodeDrain, scale, networkPartition, httpFault) implements
//! [`Reversible`] for the one kind of object it changes.

use chrono::{DateTime, Utc};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use crate::labels::REVERT_ANNOTATION;

/// How long after the fault's planned end an orphaned record may be reverted by another
/// havoc (or the restarted one): covers settle and clock skew, so a running experiment's
/// own revert is never raced.
pub const DEADLINE_GRACE: chrono::Duration = chrono::Duration::minutes(2);

/// What a mutated object carries until its fault is reverted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevertRecord {
    pub experiment: String,
    pub policy: String,
    /// The fault's field name, e.g. `scale`.
    pub fault: String,
    /// What to restore, in the fault's own terms (e.g. `{"replicas": 3}`).
    pub original: Value,
    /// After this instant the record is orphaned: anyone may revert it.
    pub deadline: DateTime<Utc>,
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

    /// The metadata part of an inject patch: sets the annotation.
    pub fn annotate(&self) -> Value {
        json!({"metadata": {"annotations": {REVERT_ANNOTATION: self.encode()}}})
    }
}

/// The metadata part of a revert patch: removes the annotation (merge-patch null).
pub fn clear_annotation() -> Value {
    json!({"metadata": {"annotations": {REVERT_ANNOTATION: null}}})
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

/// A fault that changes one kind of object and can be undone.
pub trait Reversible {
    type Object: Resource + Clone;

    /// What a revert needs, read from the object before the change.
    fn capture(&self, object: &Self::Object) -> Value;

    /// The merge patch that injects the fault; [`inject_patch`] adds the revert record.
    fn fault_patch(&self, object: &Self::Object) -> Value;

    /// The merge patch that restores `original` (as captured).
    fn restore_patch(original: &Value) -> Value;
}

/// One patch that injects the fault and writes the revert record: the object is never
/// changed without its record.
pub fn inject_patch<F: Reversible>(fault: &F, object: &F::Object, record: &RevertRecord) -> Value {
    merge(fault.fault_patch(object), record.annotate())
}

/// One patch that restores the object and removes its record.
pub fn revert_patch<F: Reversible>(record: &RevertRecord) -> Value {
    merge(F::restore_patch(&record.original), clear_annotation())
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

/// The objects whose revert records are orphaned at `now`: what start-up recovery
/// reverts. Unreadable records are returned as errors.
pub fn expired<'a, K: Resource + 'a>(
    objects: impl IntoIterator<Item = &'a K>,
    now: DateTime<Utc>,
) -> Vec<(&'a K, Result<RevertRecord, UnreadableRecord>)> {
    objects
        .into_iter()
        .filter_map(|o| {
            let r = record_of(o)?;
            match r {
                Ok(rec) if !rec.is_expired(now) => None,
                other => Some((o, other)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;

    /// The shape of the coming `scale` fault, to exercise the contract.
    struct ScaleTo(i32);

    impl Reversible for ScaleTo {
        type Object = Deployment;
        fn capture(&self, d: &Deployment) -> Value {
            json!({"replicas": d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)})
        }
        fn fault_patch(&self, _: &Deployment) -> Value {
            json!({"spec": {"replicas": self.0}})
        }
        fn restore_patch(original: &Value) -> Value {
            json!({"spec": {"replicas": original["replicas"]}})
        }
    }

    fn deployment(replicas: i32, annotation: Option<&str>) -> Deployment {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "d"},
            "spec": {"replicas": replicas, "selector": {}, "template": {}}
        }))
        .expect("deployment");
        if let Some(a) = annotation {
            d.annotations_mut()
                .insert(REVERT_ANNOTATION.to_string(), a.to_string());
        }
        d
    }

    fn record(deadline: &str, original: Value) -> RevertRecord {
        RevertRecord {
            experiment: "e1".into(),
            policy: "p".into(),
            fault: "scale".into(),
            original,
            deadline: DateTime::parse_from_rfc3339(deadline)
                .expect("time")
                .to_utc(),
        }
    }

    #[test]
    fn inject_and_revert_are_single_patches_with_the_record() {
        let d = deployment(3, None);
        let fault = ScaleTo(0);
        let rec = record("2026-11-22T10:05:00Z", fault.capture(&d));
        let inject = inject_patch(&fault, &d, &rec);
        assert_eq!(inject["spec"]["replicas"], 0);
        let stored = inject["metadata"]["annotations"][REVERT_ANNOTATION]
            .as_str()
            .expect("annotation");
        assert_eq!(RevertRecord::decode(stored).expect("decodes"), rec);

        let revert = revert_patch::<ScaleTo>(&rec);
        assert_eq!(revert["spec"]["replicas"], 3);
        assert!(revert["metadata"]["annotations"][REVERT_ANNOTATION].is_null());
    }

    #[test]
    fn recovery_finds_only_expired_and_unreadable_records() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:10:00Z")
            .expect("time")
            .to_utc();
        let old = record("2026-11-22T10:05:00Z", json!({"replicas": 3})).encode();
        let live = record("2026-11-22T10:15:00Z", json!({"replicas": 2})).encode();
        let objects = [
            deployment(0, Some(&old)),
            deployment(0, Some(&live)),
            deployment(2, None),
            deployment(0, Some("{not json")),
        ];
        let found = expired(&objects, now);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].1.as_ref().expect("readable").original,
            json!({"replicas": 3})
        );
        assert!(
            found[1]
                .1
                .as_ref()
                .is_err_and(|e| e.to_string().contains("unreadable"))
        );
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
