//! Watch caches (kube-runtime reflectors) of Pods, ReplicaSets and Namespaces: the
//! service chooses targets from these instead of listing the cluster on every run.
//! Watches resume on their own with kube-runtime's backoff when the API server goes away.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    core::v1::{Namespace, Pod},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use futures::{FutureExt, future::BoxFuture};

use super::{
    NamespaceInfo, Snapshot, SnapshotError, SnapshotSource,
    kube::{namespace_info, pod_info, replicaset_owners},
};
use crate::{labels::DEPLOYMENT_REVISION, record::ObjectRef};

/// The service's watch caches.
#[derive(Clone)]
pub struct Caches {
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
    namespaces: Store<Namespace>,
    synced: Arc<AtomicBool>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("synced", &self.is_synced())
            .finish_non_exhaustive()
    }
}

/// Starts one reflector per kind on `tasks`; they run until `stop` is cancelled.
fn spawn_reflector<K>(
    api: Api<K>,
    stop: CancellationToken,
    tasks: &TaskTracker,
    trim: fn(&mut K),
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .touched_objects();
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                item = stream.next() => match item {
                    Some(Ok(_)) => {}
                    // The watcher retries with backoff; errors are only reported.
                    Some(Err(e)) => tracing::warn!(%kind, error = %e, "watch error; retrying"),
                    None => break,
                },
            }
        }
    });
    reader
}

impl Caches {
    /// Starts the watches on `tasks`, until `stop`. They are synced once every first list
    /// has arrived.
    pub fn start(client: &Client, stop: &CancellationToken, tasks: &TaskTracker) -> Self {
        // Keep only what selection reads: managed fields and most annotations are the
        // bulk of a Pod object.
        let pods = spawn_reflector(
            Api::<Pod>::all(client.clone()),
            stop.clone(),
            tasks,
            |p: &mut Pod| {
                p.managed_fields_mut().clear();
                p.annotations_mut().clear();
                p.spec = None;
            },
        );
        let replicasets = spawn_reflector(
            Api::<ReplicaSet>::all(client.clone()),
            stop.clone(),
            tasks,
            |r: &mut ReplicaSet| {
                r.managed_fields_mut().clear();
                // Only the revision is needed (which ReplicaSet a rollout created).
                r.annotations_mut().retain(|k, _| k == DEPLOYMENT_REVISION);
                r.spec = None;
            },
        );
        let namespaces = spawn_reflector(
            Api::<Namespace>::all(client.clone()),
            stop.clone(),
            tasks,
            |n: &mut Namespace| n.managed_fields_mut().clear(),
        );
        let caches = Caches {
            pods,
            replicasets,
            namespaces,
            synced: Arc::new(AtomicBool::new(false)),
        };
        let (c, stop) = (caches.clone(), stop.clone());
        tasks.spawn(async move {
            let ready = futures::future::join3(
                c.pods.wait_until_ready(),
                c.replicasets.wait_until_ready(),
                c.namespaces.wait_until_ready(),
            );
            tokio::select! {
                () = stop.cancelled() => {}
                (a, b, n) = ready => if a.is_ok() && b.is_ok() && n.is_ok() {
                    tracing::info!("watch caches synced");
                    c.synced.store(true, Ordering::Release);
                },
            }
        });
        caches
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// How many objects are cached (pods, replicasets, namespaces).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.pods.len(),
            self.replicasets.len(),
            self.namespaces.len(),
        )
    }

    /// Every namespace with its labels.
    pub fn namespaces(&self) -> BTreeMap<String, NamespaceInfo> {
        self.namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), namespace_info(n)))
            .collect()
    }

    /// The `pod-template-hash` of the ReplicaSet that `deployment`'s `revision` created.
    pub fn replicaset_hash(&self, deployment: &ObjectRef, revision: &str) -> Option<String> {
        self.replicasets.state().iter().find_map(|rs| {
            let owned = rs.namespace() == deployment.namespace
                && rs.owner_references().iter().any(|o| {
                    o.controller == Some(true)
                        && o.kind == "Deployment"
                        && o.name == deployment.name
                });
            (owned && rs.annotations().get(DEPLOYMENT_REVISION) == Some(&revision.to_string()))
                .then(|| rs.labels().get("pod-template-hash").cloned())
                .flatten()
        })
    }

    fn read(&self) -> Snapshot {
        let rs = self.replicasets.state();
        let owners = replicaset_owners(rs.iter().map(AsRef::as_ref));
        let pods = self
            .pods
            .state()
            .iter()
            .map(|p| pod_info(p, &owners))
            .collect();
        let namespaces = self
            .namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), namespace_info(n)))
            .collect();
        Snapshot { pods, namespaces }
    }
}

impl SnapshotSource for Caches {
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, SnapshotError>> {
        let snapshot = if self.is_synced() {
            Ok(self.read())
        } else {
            Err(SnapshotError::NotSynced)
        };
        futures::future::ready(snapshot).boxed()
    }
}
