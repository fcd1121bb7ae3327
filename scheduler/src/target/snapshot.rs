//! The [`Snapshot`] of the cluster that target selection reads, and the sources it comes
//! from: the service's watch caches ([`super::cache::Caches`]) or a one-off listing
//! ([`super::kube::ListSource`], for `havoc run`).

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::{NamespaceInfo, PodInfo};

/// What selection knows about the cluster at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub pods: Vec<PodInfo>,
    /// Every namespace with its labels, by name.
    pub namespaces: BTreeMap<String, NamespaceInfo>,
}

/// Why no snapshot could be taken (the experiment is skipped).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("watch caches are not synced yet")]
    NotSynced,
    #[error("listing the cluster: {0}")]
    List(#[from] kube::Error),
}

/// Where snapshots come from. A trait object, so that the engine does not depend on
/// which source it reads.
pub trait SnapshotSource: Send + Sync {
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, SnapshotError>>;
}
