//! The [`Snapshot`] of the cluster that target selection reads, and the sources it comes
//! from: the service's watch caches ([`super::cache::Caches`]) or a one-off listing
//! ([`super::kube::ListSource`], for `havoc run`).

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::scope::Needs;

use super::{NamespaceInfo, NodeInfo, PodInfo, VirtualServiceInfo, WorkloadInfo};

/// What selection knows about the cluster at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The pods of the policy's namespaces and havoc's own; for a drain, also those of
    /// the nodes it chose and the other replicas of their workloads
    /// ([`SnapshotSource::node_pods`]).
    pub pods: Vec<PodInfo>,
    /// Every namespace with its labels, by name.
    pub namespaces: BTreeMap<String, NamespaceInfo>,
    pub nodes: Vec<NodeInfo>,
    /// Deployments and StatefulSets.
    pub workloads: Vec<WorkloadInfo>,
    /// Istio VirtualServices; `None` when the CRD is not installed.
    pub virtual_services: Option<VirtualServices>,
}

/// The VirtualServices of a cluster that serves Istio's CRD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServices {
    /// The API (group, served version) to reach them.
    pub api: kube::api::ApiResource,
    pub items: Vec<VirtualServiceInfo>,
}

/// Why no snapshot could be taken (the experiment is skipped).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the watch of {what} has not synced yet")]
    NotSynced { what: String },
    #[error("the {kind} watch has failed for {secs}s: its cache may be out of date")]
    Stale { kind: String, secs: u64 },
    #[error("listing the cluster: {0}")]
    List(#[from] kube::Error),
}

/// Where snapshots come from. A trait object, so that the engine does not depend on
/// which source it reads.
pub trait SnapshotSource: Send + Sync {
    /// What a policy can select from: the kinds its fault reads (`needs`), in the
    /// namespaces it covers (and havoc's own), not the whole cluster.
    fn snapshot<'a>(&'a self, needs: &'a Needs) -> BoxFuture<'a, Result<Snapshot, SnapshotError>>;

    /// The pods bound to `nodes`, and every pod of the workloads they belong to (a drain
    /// counts a workload's ready replicas wherever they run), read when a drain has
    /// chosen its nodes ([`Needs::node_pods`]). The default reads a snapshot of every
    /// pod: right for sources that hold the whole cluster anyway (tests).
    fn node_pods<'a>(
        &'a self,
        nodes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<PodInfo>, SnapshotError>> {
        Box::pin(async move {
            let all = Needs {
                pods: Some(super::scope::Namespaces::All),
                ..Needs::default()
            };
            let pods = self.snapshot(&all).await?.pods;
            Ok(super::nodes::of_nodes(pods, nodes))
        })
    }
}

impl Snapshot {
    /// Adds `pods`, except those already in (the same pod read twice).
    pub fn add_pods(&mut self, pods: Vec<PodInfo>) {
        let have: std::collections::BTreeSet<(String, String)> = self
            .pods
            .iter()
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .collect();
        self.pods.extend(
            pods.into_iter()
                .filter(|p| !have.contains(&(p.namespace.clone(), p.name.clone()))),
        );
    }
}
