//! Targets: which objects a policy may hit right now.
//!
//! - this module: selection (pure): a policy's selectors and exclusions and the safety
//!   rules of DESIGN section 5 over a [`Snapshot`], then a random pick;
//! - [`snapshot`]: the [`Snapshot`] of the cluster that selection reads, and where it
//!   comes from ([`SnapshotSource`]);
//! - [`cache`]: the service's watch caches (a [`SnapshotSource`]), scoped by [`scope`]
//!   to what the policies read and kept by [`watches`];
//! - [`kube`]: conversions from Kubernetes objects, and a listing source for `havoc run`;
//! - [`nodes`]: the pods of the nodes a drain chose, read when it chooses them;
//! - [`lean`]: pods decoded into only what selection reads.

pub mod cache;
#[cfg(test)]
pub mod fixtures;
pub mod kube;
pub mod lean;
pub mod nodes;
pub mod scope;
pub mod select;
pub mod snapshot;
pub mod watches;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

pub use self::{
    scope::FollowsPolicies,
    select::{
        DrainTarget, ScaleGuard, Selection, drain_plan, select_nodes, select_partitions,
        select_pods, select_virtual_services, select_workloads, still_free,
    },
    snapshot::{Snapshot, SnapshotError, SnapshotSource, VirtualServices},
};
use crate::{policy::domain::NamespaceScope, record::ObjectRef};

pub use crate::labels::{HAVOC_APP_LABEL, PAUSED_LABEL};

/// What selection needs to know about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub created: DateTime<Utc>,
    /// Phase Running.
    pub running: bool,
    /// Has a deletion timestamp.
    pub terminating: bool,
    /// Condition Ready is True.
    pub ready: bool,
    /// The workload that owns it (ReplicaSets resolved to their Deployment); `None` for a
    /// bare pod, which counts as a workload of one.
    pub owner: Option<ObjectRef>,
    /// The node it is bound to.
    pub node: Option<String>,
    /// A static pod's mirror (the kubelet's, not the API server's): never evicted.
    pub mirror: bool,
}

impl PodInfo {
    /// Owned by a DaemonSet: a drain leaves it (it would come straight back).
    pub fn is_daemon(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.kind == "DaemonSet")
    }
}

/// What selection needs to know about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub created: DateTime<Utc>,
    /// Cordoned (`spec.unschedulable`), by anyone.
    pub unschedulable: bool,
    /// Carries a havoc revert record (a drain is held or was left behind).
    pub has_record: bool,
}

/// What selection needs to know about a Deployment or StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadInfo {
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub created: DateTime<Utc>,
    pub replicas: i32,
    /// The pod selector (`matchLabels` only; `None` when it uses expressions).
    pub selector: Option<BTreeMap<String, String>>,
    /// Scaled by a HorizontalPodAutoscaler (which would fight a scale fault).
    pub autoscaled: bool,
    /// Carries a havoc revert record.
    pub has_record: bool,
    /// A StatefulSet with volume claim templates whose PersistentVolumeClaims are
    /// deleted when it scales down (`persistentVolumeClaimRetentionPolicy.whenScaled:
    /// Delete`): scaling it down destroys data.
    pub volumes_at_risk: bool,
}

impl WorkloadInfo {
    pub fn object(&self) -> ObjectRef {
        ObjectRef::namespaced(&self.kind, &self.namespace, &self.name)
    }
}

/// Whether a StatefulSet's `spec` (as JSON) deletes the PersistentVolumeClaims of the
/// ordinals it scales away: `persistentVolumeClaimRetentionPolicy.whenScaled: Delete`
/// with volume claim templates.
pub fn deletes_volumes_when_scaled(spec: &serde_json::Value) -> bool {
    spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Delete"
        && spec["volumeClaimTemplates"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
}

/// What selection needs to know about an Istio VirtualService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServiceInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub created: DateTime<Utc>,
    pub has_record: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl NamespaceInfo {
    pub fn paused(&self) -> bool {
        self.labels.get(PAUSED_LABEL).is_some_and(|v| v == "true")
    }
}

/// Safety context of a selection.
#[derive(Debug, Clone, Default)]
pub struct Guards {
    pub protected_namespaces: BTreeSet<String>,
    /// havoc's own pod (`namespace`, `name`), when running in a cluster: neither it, nor
    /// the other replicas of its workload, nor the node it runs on is ever a target.
    pub own_pod: Option<(String, String)>,
    /// Never leave a workload with fewer ready pods than this.
    pub min_available_replicas: u32,
    /// Never more cordoned nodes at once than this, counting others' cordons.
    pub max_unschedulable_nodes: u32,
}

impl Guards {
    /// The service's guards: protected namespaces (havoc's own included), this pod
    /// (`POD_NAMESPACE`/`POD_NAME` from the downward API), `limits.minAvailableReplicas`.
    pub fn for_service(config: &crate::policy::Config) -> Self {
        Guards {
            protected_namespaces: config.protected_namespaces.clone(),
            own_pod: std::env::var("POD_NAMESPACE")
                .ok()
                .zip(std::env::var("POD_NAME").ok()),
            min_available_replicas: config.limits.min_available_replicas,
            max_unschedulable_nodes: config.limits.max_unschedulable_nodes,
        }
    }
}

/// havoc's own namespace: `POD_NAMESPACE` (the downward API), else
/// `leaderElection.namespace` (DESIGN section 5).
pub fn own_namespace(config: &crate::policy::Config) -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| config.leader_election.namespace.clone())
}

/// What a running experiment takes: the pods it deletes, evicts or drains, and the nodes
/// it cordons. Experiments that start together read the same snapshot, in which the
/// other's victim still looks ready and the other's node still schedulable (the watch has
/// not seen the change yet): a snapshot [`Claim::mark`]ed with the others' claims counts
/// their pods as gone and their nodes as cordoned, so that together they keep
/// `minAvailableReplicas` and `maxUnschedulableNodes`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Claim {
    Pod { namespace: String, name: String },
    Node(String),
}

impl Claim {
    pub fn pod(p: &PodInfo) -> Self {
        Claim::Pod {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
        }
    }

    /// Marks in `snapshot` what `claims` took: claimed pods terminating and not ready,
    /// claimed nodes cordoned.
    pub fn mark(claims: &BTreeSet<Claim>, snapshot: &mut Snapshot) {
        if claims.is_empty() {
            return;
        }
        for p in &mut snapshot.pods {
            if claims.contains(&Claim::pod(p)) {
                p.terminating = true;
                p.ready = false;
            }
        }
        for n in &mut snapshot.nodes {
            if claims.contains(&Claim::Node(n.name.clone())) {
                n.unschedulable = true;
            }
        }
    }
}

/// Limits targets to one workload's pods carrying these labels (a rollout's new
/// revision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction {
    pub owner: ObjectRef,
    pub labels: BTreeMap<String, String>,
}

impl Restriction {
    pub fn allows(&self, p: &PodInfo) -> bool {
        p.owner.as_ref() == Some(&self.owner)
            && self.labels.iter().all(|(k, v)| p.labels.get(k) == Some(v))
    }
}

/// Whether namespace `ns` is in `scope` (`namespaces` holds every namespace's labels).
pub fn in_scope(
    scope: &NamespaceScope,
    ns: &str,
    namespaces: &BTreeMap<String, NamespaceInfo>,
) -> bool {
    match scope {
        NamespaceScope::All => true,
        NamespaceScope::Names(names) => names.iter().any(|n| n == ns),
        NamespaceScope::Selector(sel) => namespaces.get(ns).is_some_and(|n| sel.matches(&n.labels)),
    }
}
