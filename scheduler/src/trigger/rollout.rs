//! When is a rollout complete? Pure logic over workload objects, as `kubectl rollout
//! status` defines completion, and a tracker that turns a stream of object versions into
//! exactly one completion per new revision.
//!
//! A *revision* is identified by a hash of the workload's pod template: scaling, labels on
//! the workload or a strategy change keep it, so they are not rollouts. A rollback to an
//! older template is a new rollout (it differs from the last completed one).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    core::v1::PodTemplateSpec,
};
use kube::ResourceExt;

use crate::{policy::domain::WorkloadKind, record::ObjectRef, schedule::stable_hash};

/// The Deployment annotation holding its revision number.
pub use crate::labels::DEPLOYMENT_REVISION;

/// What the tracker needs to know about one version of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutState {
    pub workload: ObjectRef,
    pub labels: BTreeMap<String, String>,
    /// Hash of the pod template: the identity of a revision.
    pub template: u64,
    /// The revision as Kubernetes names it (Deployment revision number, StatefulSet
    /// updateRevision; a DaemonSet has none, so its template hash).
    pub revision: String,
    /// Container and init-container images, sorted.
    pub images: Vec<String>,
    /// The controller saw this spec and every replica runs it and is available.
    pub complete: bool,
    /// The controller gave up (Deployment progress deadline exceeded).
    pub failed: bool,
}

fn template_hash(t: &PodTemplateSpec) -> u64 {
    stable_hash(&serde_json::to_string(t).unwrap_or_default())
}

fn images(t: &PodTemplateSpec) -> Vec<String> {
    let mut v: Vec<String> = t
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .filter_map(|c| c.image.clone())
        })
        .collect();
    v.sort();
    v
}

fn observed(generation: Option<i64>, observed: Option<i64>) -> bool {
    matches!((generation, observed), (Some(g), Some(o)) if o >= g)
}

pub fn deployment_state(d: &Deployment) -> Option<RolloutState> {
    let spec = d.spec.as_ref()?;
    let status = d.status.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    // kubectl rollout status: observed, all replicas updated, no old replicas left, and
    // the updated ones available.
    let complete = observed(d.metadata.generation, status.observed_generation)
        && updated >= want
        && status.replicas.unwrap_or(0) <= updated
        && status.available_replicas.unwrap_or(0) >= updated;
    let failed = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    Some(RolloutState {
        workload: ObjectRef::namespaced(
            "Deployment",
            &d.namespace().unwrap_or_default(),
            &d.name_any(),
        ),
        labels: d.labels().clone(),
        template: template_hash(&spec.template),
        revision: d
            .annotations()
            .get(DEPLOYMENT_REVISION)
            .cloned()
            .unwrap_or_default(),
        images: images(&spec.template),
        complete: complete && !failed,
        failed,
    })
}

pub fn statefulset_state(s: &StatefulSet) -> Option<RolloutState> {
    let spec = s.spec.as_ref()?;
    let status = s.status.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1);
    let update = status.update_revision.clone().unwrap_or_default();
    // kubectl rollout status (RollingUpdate, no partition): observed, every replica
    // ready and on the update revision, which is now the current one.
    let complete = observed(s.metadata.generation, status.observed_generation)
        && !update.is_empty()
        && status.current_revision.as_deref() == Some(update.as_str())
        && status.updated_replicas.unwrap_or(0) >= want
        && status.ready_replicas.unwrap_or(0) >= want
        && status.replicas <= want;
    Some(RolloutState {
        workload: ObjectRef::namespaced(
            "StatefulSet",
            &s.namespace().unwrap_or_default(),
            &s.name_any(),
        ),
        labels: s.labels().clone(),
        template: template_hash(&spec.template),
        revision: update,
        images: images(&spec.template),
        complete,
        failed: false,
    })
}

pub fn daemonset_state(d: &DaemonSet) -> Option<RolloutState> {
    let spec = d.spec.as_ref()?;
    let status = d.status.clone().unwrap_or_default();
    let desired = status.desired_number_scheduled;
    // kubectl rollout status: observed, every scheduled pod updated and available.
    let complete = observed(d.metadata.generation, status.observed_generation)
        && status.updated_number_scheduled.unwrap_or(0) >= desired
        && status.number_available.unwrap_or(0) >= desired;
    let template = template_hash(&spec.template);
    Some(RolloutState {
        workload: ObjectRef::namespaced(
            "DaemonSet",
            &d.namespace().unwrap_or_default(),
            &d.name_any(),
        ),
        labels: d.labels().clone(),
        template,
        revision: format!("{template:016x}"),
        images: images(&spec.template),
        complete,
        failed: false,
    })
}

pub fn kind_of(w: &ObjectRef) -> Option<WorkloadKind> {
    match w.kind.as_str() {
        "Deployment" => Some(WorkloadKind::Deployment),
        "StatefulSet" => Some(WorkloadKind::StatefulSet),
        "DaemonSet" => Some(WorkloadKind::DaemonSet),
        _ => None,
    }
}

/// A rollout that just completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub workload: ObjectRef,
    pub labels: BTreeMap<String, String>,
    pub revision: String,
    pub template: u64,
    pub completed_at: DateTime<Utc>,
    /// Whether any image differs from the previous completed revision.
    pub image_changed: bool,
}

/// What the tracker concluded from one object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Nothing,
    Completed(Completion),
    /// The rollout of this revision failed (logged once; never fires).
    Failed {
        workload: ObjectRef,
        revision: String,
    },
}

#[derive(Debug, Clone)]
struct Known {
    /// Template of the last version seen.
    template: u64,
    /// Template and images of the last completed revision.
    completed: Option<(u64, Vec<String>)>,
    failed_reported: Option<u64>,
}

/// Remembers, per workload, the last completed revision, so that each new revision fires
/// once: not again after a watch restart (the re-list shows the same revision), not for
/// a scale (same template), and once for the newest of overlapping rollouts.
#[derive(Debug, Default)]
pub struct Tracker {
    known: BTreeMap<ObjectRef, Known>,
}

impl Tracker {
    /// Learns a workload without firing (the initial list at start-up: rollouts that
    /// completed before havoc started must not fire).
    pub fn learn(&mut self, s: &RolloutState) {
        self.known.insert(
            s.workload.clone(),
            Known {
                template: s.template,
                completed: s.complete.then(|| (s.template, s.images.clone())),
                failed_reported: s.failed.then_some(s.template),
            },
        );
    }

    /// One version of a workload, as a watch delivered it.
    pub fn observe(&mut self, s: &RolloutState, now: DateTime<Utc>) -> Seen {
        let Some(k) = self.known.get_mut(&s.workload) else {
            // Created after start-up: its first complete revision is a rollout.
            self.known.insert(
                s.workload.clone(),
                Known {
                    template: s.template,
                    completed: None,
                    failed_reported: None,
                },
            );
            return self.observe(s, now);
        };
        k.template = s.template;
        if s.failed {
            if k.failed_reported != Some(s.template) {
                k.failed_reported = Some(s.template);
                return Seen::Failed {
                    workload: s.workload.clone(),
                    revision: s.revision.clone(),
                };
            }
            return Seen::Nothing;
        }
        if !s.complete || k.completed.as_ref().is_some_and(|(t, _)| *t == s.template) {
            return Seen::Nothing;
        }
        let image_changed = k.completed.as_ref().is_none_or(|(_, i)| *i != s.images);
        k.completed = Some((s.template, s.images.clone()));
        Seen::Completed(Completion {
            workload: s.workload.clone(),
            labels: s.labels.clone(),
            revision: s.revision.clone(),
            template: s.template,
            completed_at: now,
            image_changed,
        })
    }

    /// Whether the workload is tracked.
    pub fn knows(&self, w: &ObjectRef) -> bool {
        self.known.contains_key(w)
    }

    /// Keeps only the workloads `keep` says yes to.
    pub fn retain(&mut self, keep: impl Fn(&ObjectRef) -> bool) {
        self.known.retain(|w, _| keep(w));
    }

    /// The workload is gone.
    pub fn forget(&mut self, w: &ObjectRef) {
        self.known.remove(w);
    }

    /// The template last seen for a workload (a newer rollout supersedes a pending fire).
    pub fn current_template(&self, w: &ObjectRef) -> Option<u64> {
        self.known.get(w).map(|k| k.template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str, replicas: i32, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "d", "generation": 2,
                "labels": {"app": "web"},
                "annotations": {DEPLOYMENT_REVISION: "2"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}},
            "status": status,
        }))
        .expect("deployment")
    }

    fn done(n: i32) -> serde_json::Value {
        json!({"observedGeneration": 2, "replicas": n, "updatedReplicas": n,
            "availableReplicas": n, "readyReplicas": n})
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    #[test]
    fn deployment_completion_follows_kubectl() {
        let s = deployment_state(&deployment("a:1", 2, done(2))).expect("state");
        assert!(s.complete && !s.failed);
        assert_eq!(s.revision, "2");
        assert_eq!(s.images, ["a:1"]);
        // Old replicas still around: not complete.
        let mut st = done(2);
        st["replicas"] = json!(3);
        assert!(
            !deployment_state(&deployment("a:1", 2, st))
                .expect("s")
                .complete
        );
        // Updated but not yet available.
        let mut st = done(2);
        st["availableReplicas"] = json!(1);
        assert!(
            !deployment_state(&deployment("a:1", 2, st))
                .expect("s")
                .complete
        );
        // Controller has not observed the new generation.
        let mut st = done(2);
        st["observedGeneration"] = json!(1);
        assert!(
            !deployment_state(&deployment("a:1", 2, st))
                .expect("s")
                .complete
        );
        // Progress deadline exceeded.
        let mut st = done(1);
        st["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        let s = deployment_state(&deployment("a:1", 2, st)).expect("s");
        assert!(s.failed && !s.complete);
    }

    #[test]
    fn one_completion_per_revision_not_for_scaling_nor_restarts() {
        let mut tr = Tracker::default();
        tr.learn(&deployment_state(&deployment("a:1", 2, done(2))).expect("s"));
        // Scaling: same template, status dips and recovers: nothing.
        for st in [
            done(2),
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
            done(3),
        ] {
            let s = deployment_state(&deployment("a:1", 3, st)).expect("s");
            assert_eq!(tr.observe(&s, t0()), Seen::Nothing);
        }
        // New image: in progress, then complete: one completion.
        let progressing = json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3});
        let s = deployment_state(&deployment("a:2", 3, progressing)).expect("s");
        assert_eq!(tr.observe(&s, t0()), Seen::Nothing);
        let s = deployment_state(&deployment("a:2", 3, done(3))).expect("s");
        let Seen::Completed(c) = tr.observe(&s, t0()) else {
            panic!("expected a completion");
        };
        assert!(c.image_changed);
        // The same complete version again (a watch re-list): nothing.
        assert_eq!(tr.observe(&s, t0()), Seen::Nothing);
    }

    #[test]
    fn superseded_rollouts_fire_once_for_the_newest() {
        let mut tr = Tracker::default();
        tr.learn(&deployment_state(&deployment("a:1", 2, done(2))).expect("s"));
        let half = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2});
        let s = deployment_state(&deployment("a:2", 2, half.clone())).expect("s");
        assert_eq!(tr.observe(&s, t0()), Seen::Nothing);
        let s = deployment_state(&deployment("a:3", 2, half)).expect("s");
        assert_eq!(tr.observe(&s, t0()), Seen::Nothing);
        let s = deployment_state(&deployment("a:3", 2, done(2))).expect("s");
        let Seen::Completed(c) = tr.observe(&s, t0()) else {
            panic!("expected a completion");
        };
        assert_eq!(c.template, s.template);
        assert_eq!(tr.current_template(&s.workload), Some(s.template));
    }

    #[test]
    fn image_change_is_told_apart_from_other_template_changes() {
        let mut tr = Tracker::default();
        tr.learn(&deployment_state(&deployment("a:1", 2, done(2))).expect("s"));
        let mut d = deployment("a:1", 2, done(2));
        if let Some(t) = d.spec.as_mut().and_then(|s| s.template.metadata.as_mut()) {
            t.annotations = Some([("restartedAt".to_string(), "now".to_string())].into());
        }
        let s = deployment_state(&d).expect("s");
        let Seen::Completed(c) = tr.observe(&s, t0()) else {
            panic!("a restart is a rollout");
        };
        assert!(!c.image_changed);
    }

    #[test]
    fn failed_rollouts_are_reported_once_and_never_complete() {
        let mut tr = Tracker::default();
        tr.learn(&deployment_state(&deployment("a:1", 2, done(2))).expect("s"));
        let st = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]});
        let s = deployment_state(&deployment("a:2", 2, st)).expect("s");
        assert!(matches!(tr.observe(&s, t0()), Seen::Failed { .. }));
        assert_eq!(tr.observe(&s, t0()), Seen::Nothing);
    }

    #[test]
    fn statefulset_and_daemonset_completion() {
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "d", "generation": 3},
            "spec": {"replicas": 2, "serviceName": "db", "selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "db:2"}]}}},
            "status": {"observedGeneration": 3, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2,
                "currentRevision": "db-new", "updateRevision": "db-new"}
        }))
        .expect("sts");
        let s = statefulset_state(&sts).expect("s");
        assert!(s.complete);
        assert_eq!(s.revision, "db-new");
        let mut mid = sts.clone();
        if let Some(st) = mid.status.as_mut() {
            st.current_revision = Some("db-old".into());
        }
        assert!(!statefulset_state(&mid).expect("s").complete);

        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "d", "generation": 2},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}},
            "status": {"observedGeneration": 2, "desiredNumberScheduled": 4, "currentNumberScheduled": 4,
                "numberMisscheduled": 0, "numberReady": 4, "updatedNumberScheduled": 4, "numberAvailable": 4}
        }))
        .expect("ds");
        assert!(daemonset_state(&ds).expect("s").complete);
        let mut mid = ds.clone();
        if let Some(st) = mid.status.as_mut() {
            st.updated_number_scheduled = Some(2);
        }
        assert!(!daemonset_state(&mid).expect("s").complete);
    }
}
