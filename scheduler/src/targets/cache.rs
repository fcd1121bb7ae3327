//! Watch caches: the service chooses targets from these instead of listing the cluster
//! on every run, and the recovery sweep finds revert records in them. Watches resume on
//! their own with backoff when the API server goes away.
//!
//! What is watched follows the policies ([`Needs`], re-derived on every reload): pods,
//! their ReplicaSets and HorizontalPodAutoscalers only in the namespaces the policies
//! cover, cluster-wide only when one uses a namespace selector or no namespace list, and
//! not at all when no policy reads them; Deployments and StatefulSets as targets only in
//! the namespaces of the policies that scale or partition them; Nodes as targets only for
//! a node drain or zone outage, and for a drain with a node selector only the nodes it
//! matches and the cordoned ones ([`Nodes::Matching`]). The kinds that carry revert
//! records (Nodes, Deployments, StatefulSets, havoc's NetworkPolicies, VirtualServices)
//! and Namespaces are always watched cluster-wide: recovery must find every record
//! whatever the policies say now, and a namespace's pause label applies to every policy.
//! For Nodes, Deployments and StatefulSets that watch selects the label that comes with
//! every revert record ([`REVERT_LABEL`]) and reads metadata only: a kubelet (or KWOK)
//! updates each node's status every 10-20 s, a Deployment's status changes with every pod
//! it replaces, and a watch of every object would decode each of those updates to find
//! nothing (about 1,400 events in 5 minutes at 100 nodes). A record written without the
//! label (by a havoc older than the label) is found by the leader's one paged metadata
//! list of the unlabelled objects of those kinds before its first sweep
//! ([`crate::fault::recovery::mark_unlabelled`]).
//!
//! Each object is reduced to what havoc reads before it is stored: a pod to its
//! [`PodInfo`] (no spec, status or annotations kept), a ReplicaSet and a Namespace come
//! as metadata only (`PartialObjectMeta`: the API server never sends their spec).

use crate::policy::set::PolicySet;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{Namespace, Node},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{Store, store::Writer},
        watcher,
    },
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    NamespaceInfo, NodeInfo, PodInfo, Snapshot, SnapshotError, SnapshotSource, VirtualServices,
    kube::{deployment_info, node_info, pod_info, statefulset_info, virtual_service_info},
    lean::PodFacts,
    scope::{FollowsPolicies, Namespaces, Needs, Nodes},
    watches::{Index, Unserved, WatchSet, cluster, filtered_set, index_set, namespaced},
};
use crate::{
    labels::{DEPLOYMENT_REVISION, MANAGED_BY, POD_TEMPLATE_HASH, REVERT_ANNOTATION, REVERT_LABEL},
    record::ObjectRef,
};

pub use super::watches::STALE_AFTER;

/// What the ReplicaSet cache keeps (from metadata only): the Deployment controlling it,
/// the Deployment revision it was created for and its pod-template-hash label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSetRow {
    pub namespace: String,
    pub name: String,
    pub deployment: Option<String>,
    pub revision: Option<String>,
    pub hash: Option<String>,
}

/// The service's watch caches.
#[derive(Clone)]
pub struct Caches {
    /// Pods with their owner as written (a ReplicaSet is resolved when read).
    pods: WatchSet<Index<PodInfo>>,
    replicasets: WatchSet<Index<ReplicaSetRow>>,
    /// The workload each autoscaler scales.
    autoscalers: WatchSet<Index<ObjectRef>>,
    namespaces: WatchSet<Index<NamespaceInfo>>,
    /// Nodes as drain targets (spec kept), watched only while a policy drains.
    nodes: WatchSet<Index<NodeInfo>>,
    /// The metadata of the Nodes that hold a revert record (label-selected), for the
    /// recovery sweep.
    node_records: WatchSet<Index<Node>>,
    /// Deployments and StatefulSets as targets (scale, partition), in the policies'
    /// namespaces.
    deployments: WatchSet<Index<Deployment>>,
    statefulsets: WatchSet<Index<StatefulSet>>,
    /// The metadata of the Deployments and StatefulSets that hold a record
    /// (label-selected, cluster-wide), for the recovery sweep.
    deployment_records: WatchSet<Index<Deployment>>,
    statefulset_records: WatchSet<Index<StatefulSet>>,
    /// NetworkPolicies havoc created (label-selected: only havoc's own are watched).
    network_policies: WatchSet<Index<NetworkPolicy>>,
    /// VirtualServices, once the CRD is found (`None`: not installed).
    virtual_services: Arc<RwLock<Option<VirtualServiceCache>>>,
    /// The VirtualService CRD was looked for and, if found, its watch has listed.
    virtual_services_synced: Arc<AtomicBool>,
    /// What the policies need, as they said it (a namespace selector unresolved): the
    /// pod-sized watches follow its resolution, again whenever a namespace changes.
    wanted: Arc<std::sync::Mutex<Needs>>,
    /// For what is read, not watched: a drain's nodes' pods.
    client: Client,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("synced", &self.is_synced())
            .finish_non_exhaustive()
    }
}

/// The VirtualService API and its store.
type VirtualServiceCache = (ApiResource, Store<DynamicObject>);

/// Drops managed fields and every annotation but havoc's revert record.
fn trim_meta<K: Resource>(o: &mut K) {
    o.managed_fields_mut().clear();
    o.annotations_mut().retain(|k, _| k == REVERT_ANNOTATION);
}

/// A pod as selection reads it; the owner is resolved through the ReplicaSets later (a
/// ReplicaSet may arrive after its pods).
fn pod_row(p: PodFacts) -> Option<PodInfo> {
    Some(pod_info(&p, &BTreeMap::new()))
}

fn replicaset_row(r: PartialObjectMeta<ReplicaSet>) -> Option<ReplicaSetRow> {
    let deployment = r
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Deployment")
        .map(|o| o.name.clone());
    Some(ReplicaSetRow {
        namespace: r.namespace().unwrap_or_default(),
        name: r.name_any(),
        deployment,
        revision: r.annotations().get(DEPLOYMENT_REVISION).cloned(),
        hash: r.labels().get(POD_TEMPLATE_HASH).cloned(),
    })
}

fn autoscaler_row(h: HorizontalPodAutoscaler) -> Option<ObjectRef> {
    let ns = h.metadata.namespace.as_deref()?;
    let target = &h.spec.scale_target_ref;
    Some(ObjectRef::namespaced(&target.kind, ns, &target.name))
}

fn namespace_row(n: PartialObjectMeta<Namespace>) -> Option<NamespaceInfo> {
    Some(NamespaceInfo {
        name: n.name_any(),
        labels: n.metadata.labels.unwrap_or_default(),
    })
}

/// A Node as selection reads it: name, labels, age, cordon and record.
fn node_row(n: Node) -> Option<NodeInfo> {
    Some(node_info(&n))
}

/// The key of the Node watch of every cordoned node (beside those of the policies'
/// selectors, [`Nodes::Matching`]): a field selector the API server filters on.
const CORDONED: &str = "fields:spec.unschedulable=true";
/// The prefix of the key of a Node watch by label selector.
const LABELED: &str = "labels:";

/// The Node watches of a scope, as the keys of their [`WatchSet`].
fn node_keys(nodes: &Nodes) -> Namespaces {
    match nodes {
        Nodes::All => Namespaces::All,
        Nodes::Matching(selectors) => Namespaces::Names(
            selectors
                .iter()
                .map(|s| format!("{LABELED}{s}"))
                .chain([CORDONED.to_string()])
                .collect(),
        ),
    }
}

/// The watch of one Node key ([`node_keys`]).
fn node_watch(key: Option<&str>) -> watcher::Config {
    let config = watcher::Config::default();
    match key {
        None => config,
        Some(CORDONED) => config.fields("spec.unschedulable=true"),
        Some(k) => config.labels(k.strip_prefix(LABELED).unwrap_or(k)),
    }
}

/// The nodes of `scope`, each once; a node two watches disagree on (one has seen it
/// cordoned, the other not yet) counts as cordoned.
fn read_nodes(
    set: &WatchSet<Index<NodeInfo>>,
    scope: &Nodes,
) -> Result<Vec<NodeInfo>, SnapshotError> {
    let keys = match node_keys(scope) {
        Namespaces::Names(keys) => keys.into_iter().map(Some).collect(),
        _ => vec![None],
    };
    let mut by_name: BTreeMap<String, NodeInfo> = BTreeMap::new();
    for key in keys {
        let index = set.serving(key.as_deref()).map_err(|e| match &key {
            Some(k) => unserved(&format!("{} ({k})", set.kind), None, e),
            None => unserved(set.kind, None, e),
        })?;
        for n in index.all() {
            match by_name.get(&n.name) {
                Some(seen) if seen.unschedulable || !n.unschedulable => {}
                _ => {
                    by_name.insert(n.name.clone(), NodeInfo::clone(&n));
                }
            }
        }
    }
    Ok(by_name.into_values().collect())
}

/// A Node's metadata as a Node without spec and status: what the recovery sweep reads.
fn node_record_row(n: PartialObjectMeta<Node>) -> Option<Node> {
    let mut node = Node {
        metadata: n.metadata,
        ..Node::default()
    };
    trim_meta(&mut node);
    Some(node)
}

/// A Deployment's metadata, for the recovery sweep.
fn deployment_record_row(d: PartialObjectMeta<Deployment>) -> Option<Deployment> {
    let mut d = Deployment {
        metadata: d.metadata,
        ..Deployment::default()
    };
    trim_meta(&mut d);
    Some(d)
}

/// A StatefulSet's metadata, for the recovery sweep.
fn statefulset_record_row(s: PartialObjectMeta<StatefulSet>) -> Option<StatefulSet> {
    let mut s = StatefulSet {
        metadata: s.metadata,
        ..StatefulSet::default()
    };
    trim_meta(&mut s);
    Some(s)
}

fn deployment_row(mut d: Deployment) -> Option<Deployment> {
    trim_meta(&mut d);
    d.status = None;
    if let Some(spec) = d.spec.as_mut() {
        spec.template = Default::default();
    }
    Some(d)
}

fn statefulset_row(mut s: StatefulSet) -> Option<StatefulSet> {
    trim_meta(&mut s);
    s.status = None;
    if let Some(spec) = s.spec.as_mut() {
        spec.template = Default::default();
        // Whether it has templates is all selection reads (scale's volume guard).
        if spec
            .volume_claim_templates
            .as_ref()
            .is_some_and(|t| !t.is_empty())
        {
            spec.volume_claim_templates = Some(vec![Default::default()]);
        }
    }
    Some(s)
}

fn network_policy_row(mut n: NetworkPolicy) -> Option<NetworkPolicy> {
    n.managed_fields_mut().clear();
    Some(n)
}

/// Why a set cannot serve `ns` (`None`: the cluster), as a snapshot error.
fn unserved(kind: &str, ns: Option<&str>, why: Unserved) -> SnapshotError {
    match why {
        Unserved::NotSynced => SnapshotError::NotSynced {
            what: match ns {
                Some(ns) => format!("{kind} in namespace {ns}"),
                None => kind.to_string(),
            },
        },
        Unserved::Stale(d) => SnapshotError::Stale {
            kind: kind.to_string(),
            secs: d.as_secs(),
        },
    }
}

/// The objects of `ns` in `set`, each namespace from the watch that serves it.
fn collect<T: Send + Sync + 'static>(
    set: &WatchSet<Index<T>>,
    ns: &Namespaces,
) -> Result<Vec<Arc<T>>, SnapshotError> {
    match ns {
        // Unresolved selectors are read from the cluster-wide watch, if there is one.
        Namespaces::All | Namespaces::Matching { .. } => Ok(set
            .serving(None)
            .map_err(|e| unserved(set.kind, None, e))?
            .all()),
        Namespaces::Names(names) => {
            let mut out = Vec::new();
            for n in names {
                let index = set
                    .serving(Some(n))
                    .map_err(|e| unserved(set.kind, Some(n), e))?;
                out.extend(index.in_namespace(n));
            }
            Ok(out)
        }
    }
}

/// Every object of a set's running watches (the record kinds have one, cluster-wide).
fn every<T: Send + Sync + 'static>(set: &WatchSet<Index<T>>) -> Vec<Arc<T>> {
    set.running().iter().flat_map(|i| i.all()).collect()
}

impl Caches {
    /// Starts the watches that do not depend on the policies, on `tasks`, until `stop`;
    /// the others start with [`Caches::apply`]. VirtualServices are watched if their CRD
    /// is installed.
    pub fn start(client: &Client, stop: &CancellationToken, tasks: &TaskTracker) -> Self {
        let all = watcher::Config::default;
        let managed =
            watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
        let held = || watcher::Config::default().labels(REVERT_LABEL.0);
        let caches = Caches {
            pods: index_set("Pod", namespaced(client), all(), pod_row, stop, tasks),
            replicasets: index_set(
                "ReplicaSet",
                namespaced::<PartialObjectMeta<ReplicaSet>>(client),
                all(),
                replicaset_row,
                stop,
                tasks,
            ),
            autoscalers: index_set(
                "HorizontalPodAutoscaler",
                namespaced(client),
                all(),
                autoscaler_row,
                stop,
                tasks,
            ),
            namespaces: index_set(
                "Namespace",
                cluster::<PartialObjectMeta<Namespace>>(client),
                all(),
                namespace_row,
                stop,
                tasks,
            ),
            nodes: filtered_set(
                "Node",
                Api::all(client.clone()),
                node_watch,
                node_row,
                stop,
                tasks,
            ),
            node_records: index_set(
                "Node (metadata)",
                cluster::<PartialObjectMeta<Node>>(client),
                held(),
                node_record_row,
                stop,
                tasks,
            ),
            deployment_records: index_set(
                "Deployment (metadata)",
                namespaced::<PartialObjectMeta<Deployment>>(client),
                held(),
                deployment_record_row,
                stop,
                tasks,
            ),
            statefulset_records: index_set(
                "StatefulSet (metadata)",
                namespaced::<PartialObjectMeta<StatefulSet>>(client),
                held(),
                statefulset_record_row,
                stop,
                tasks,
            ),
            deployments: index_set(
                "Deployment",
                namespaced(client),
                all(),
                deployment_row,
                stop,
                tasks,
            ),
            statefulsets: index_set(
                "StatefulSet",
                namespaced(client),
                all(),
                statefulset_row,
                stop,
                tasks,
            ),
            network_policies: index_set(
                "NetworkPolicy",
                namespaced(client),
                managed,
                network_policy_row,
                stop,
                tasks,
            ),
            virtual_services: Arc::default(),
            virtual_services_synced: Arc::new(AtomicBool::new(false)),
            wanted: Arc::default(),
            client: client.clone(),
        };
        caches.namespaces.set(Some(Namespaces::All));
        caches.node_records.set(Some(Namespaces::All));
        caches.deployment_records.set(Some(Namespaces::All));
        caches.statefulset_records.set(Some(Namespaces::All));
        caches.network_policies.set(Some(Namespaces::All));
        // A namespace selector's watches follow the namespaces' labels: re-resolved after
        // every Namespace event (a label added, a namespace created or deleted).
        if let Some(index) = caches.namespaces.running().into_iter().next() {
            let (this, stop) = (caches.clone(), stop.clone());
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = index.changed() => this.rescope(),
                    }
                }
            });
        }
        let (this, client, stop, t) = (caches.clone(), client.clone(), stop.clone(), tasks.clone());
        tasks.spawn(async move {
            let ready = async {
                match this.watch_virtual_services(&client, &stop, &t).await {
                    Some(store) => store.wait_until_ready().await.is_ok(),
                    None => true,
                }
            };
            tokio::select! {
                () = stop.cancelled() => {}
                ok = ready => if ok {
                    this.virtual_services_synced.store(true, Ordering::Release);
                },
            }
        });
        caches
    }

    /// Watches what the policies need (start-up and every reload: the reloader calls
    /// this through [`FollowsPolicies`]); a watch no longer needed stops once those
    /// replacing it have listed.
    pub fn apply(&self, needs: &Needs) {
        *self.wanted.lock().unwrap_or_else(|e| e.into_inner()) = needs.clone();
        self.rescope();
        self.nodes.set(needs.nodes.as_ref().map(node_keys));
    }

    /// Sets the pod-sized watches to what the policies need now: a namespace selector
    /// resolved against the namespaces watched (a scope that did not change is left
    /// alone: [`WatchSet::set`] compares).
    fn rescope(&self) {
        let (pods, workloads, autoscalers) = {
            let wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
            (
                wanted.pods.clone(),
                wanted.workloads.clone(),
                wanted.autoscalers.clone(),
            )
        };
        let namespaces = self.namespaces.running().into_iter().next();
        let resolve = |n: Option<Namespaces>| {
            n.map(|n| match &namespaces {
                Some(index) => {
                    let all = index.all();
                    n.resolve(all.iter().map(|i| (i.name.as_str(), &i.labels)))
                }
                None => n,
            })
        };
        let pods = resolve(pods);
        self.pods.set(pods.clone());
        self.replicasets.set(pods);
        self.autoscalers.set(resolve(autoscalers));
        let workloads = resolve(workloads);
        self.deployments.set(workloads.clone());
        self.statefulsets.set(workloads);
    }

    /// Finds the VirtualService CRD and, if installed, starts its watch.
    fn watch_virtual_services(
        &self,
        client: &Client,
        stop: &CancellationToken,
        tasks: &TaskTracker,
    ) -> BoxFuture<'static, Option<Store<DynamicObject>>> {
        let (this, client, stop, tasks) =
            (self.clone(), client.clone(), stop.clone(), tasks.clone());
        async move {
            let ar = loop {
                match crate::kinds::virtual_services(&client).await {
                    Ok(ar) => break ar?,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot discover VirtualServices; retrying");
                        tokio::select! {
                            () = stop.cancelled() => return None,
                            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                        }
                    }
                }
            };
            tracing::info!(version = %ar.version, "VirtualService CRD found: watching VirtualServices");
            let writer = Writer::new(ar.clone());
            let reader = writer.as_reader();
            let api = Api::<DynamicObject>::all_with(client, &ar);
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(|o: &mut DynamicObject| trim_meta(o))
                .reflect(writer)
                .touched_objects();
            tasks.spawn(async move {
                let mut stream = std::pin::pin!(stream);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        item = stream.next() => match item {
                            Some(Ok(_)) => {}
                            Some(Err(e)) => tracing::warn!(kind = "VirtualService", error = %e, "watch error; retrying"),
                            None => break,
                        },
                    }
                }
            });
            if let Ok(mut slot) = this.virtual_services.write() {
                *slot = Some((ar, reader.clone()));
            }
            Some(reader)
        }
        .boxed()
    }

    /// Every watch the policies need has listed (readiness).
    pub fn is_synced(&self) -> bool {
        self.recovery_synced()
            && self.namespaces.is_synced()
            && self.pods.is_synced()
            && self.replicasets.is_synced()
            && self.autoscalers.is_synced()
            && self.nodes.is_synced()
            && self.deployments.is_synced()
            && self.statefulsets.is_synced()
    }

    /// The watches of the kinds that carry revert records have listed: the recovery
    /// sweep can trust what it does not find.
    pub fn recovery_synced(&self) -> bool {
        self.node_records.is_synced()
            && self.deployment_records.is_synced()
            && self.statefulset_records.is_synced()
            && self.network_policies.is_synced()
            && self.virtual_services_synced.load(Ordering::Acquire)
    }

    /// The VirtualService API, if the CRD is installed.
    pub fn virtual_service_api(&self) -> Option<ApiResource> {
        self.virtual_services
            .read()
            .ok()
            .and_then(|s| s.as_ref().map(|(ar, _)| ar.clone()))
    }

    pub(crate) fn virtual_service_store(&self) -> Option<Store<DynamicObject>> {
        self.virtual_services
            .read()
            .ok()
            .and_then(|s| s.as_ref().map(|(_, st)| st.clone()))
    }

    /// Nodes, Deployments, StatefulSets and NetworkPolicies (with their annotations), for
    /// the recovery sweep.
    pub(crate) fn nodes(&self) -> Vec<Arc<Node>> {
        every(&self.node_records)
    }

    pub(crate) fn deployments(&self) -> Vec<Arc<Deployment>> {
        every(&self.deployment_records)
    }

    pub(crate) fn statefulsets(&self) -> Vec<Arc<StatefulSet>> {
        every(&self.statefulset_records)
    }

    pub(crate) fn network_policies(&self) -> Vec<Arc<NetworkPolicy>> {
        every(&self.network_policies)
    }

    /// How many objects are cached, by kind.
    pub fn sizes(&self) -> BTreeMap<&'static str, usize> {
        fn count<T: Send + Sync + 'static>(set: &WatchSet<Index<T>>) -> usize {
            set.running().iter().map(|i| i.len()).sum()
        }
        BTreeMap::from([
            ("pods", count(&self.pods)),
            ("replicasets", count(&self.replicasets)),
            ("autoscalers", count(&self.autoscalers)),
            ("namespaces", count(&self.namespaces)),
            ("nodes", count(&self.nodes)),
            ("nodes holding a record", count(&self.node_records)),
            ("deployments", count(&self.deployments)),
            ("statefulsets", count(&self.statefulsets)),
            (
                "deployments holding a record",
                count(&self.deployment_records),
            ),
            (
                "statefulsets holding a record",
                count(&self.statefulset_records),
            ),
        ])
    }

    /// Every namespace with its labels.
    pub fn namespaces(&self) -> BTreeMap<String, NamespaceInfo> {
        every(&self.namespaces)
            .iter()
            .map(|n| (n.name.clone(), NamespaceInfo::clone(n)))
            .collect()
    }

    /// The `pod-template-hash` of the ReplicaSet that `deployment`'s `revision` created
    /// (`None` when its namespace's pods are not watched: no pod there can be a target).
    pub fn replicaset_hash(&self, deployment: &ObjectRef, revision: &str) -> Option<String> {
        let ns = deployment.namespace.as_deref()?;
        let index = self.replicasets.serving(Some(ns)).ok()?;
        index.in_namespace(ns).iter().find_map(|rs| {
            (rs.deployment.as_deref() == Some(deployment.name.as_str())
                && rs.revision.as_deref() == Some(revision))
            .then(|| rs.hash.clone())
            .flatten()
        })
    }

    /// What `needs` names, from the watches that serve its namespaces; unreadable when
    /// one has not listed yet (a scope just added) or has been failing for too long.
    fn read(&self, needs: &Needs) -> Result<Snapshot, SnapshotError> {
        let all = Namespaces::All;
        let namespaces = collect(&self.namespaces, &all)?
            .iter()
            .map(|n| (n.name.clone(), NamespaceInfo::clone(n)))
            .collect();
        let mut snapshot = Snapshot {
            namespaces,
            ..Snapshot::default()
        };
        // A namespace selector reads the namespaces it matches now.
        let labels = &snapshot.namespaces;
        let resolve = |n: &Option<Namespaces>| {
            n.as_ref()
                .map(|n| n.resolve(labels.iter().map(|(k, v)| (k.as_str(), &v.labels))))
        };
        let (pods, workloads, autoscalers) = (
            resolve(&needs.pods),
            resolve(&needs.workloads),
            resolve(&needs.autoscalers),
        );
        if let Some(ns) = &pods {
            let rs = collect(&self.replicasets, ns)?;
            let owners: BTreeMap<(&str, &str), &str> = rs
                .iter()
                .filter_map(|r| {
                    Some((
                        (r.namespace.as_str(), r.name.as_str()),
                        r.deployment.as_deref()?,
                    ))
                })
                .collect();
            snapshot.pods = collect(&self.pods, ns)?
                .iter()
                .map(|p| {
                    let mut p = PodInfo::clone(p);
                    resolve_owner(&mut p, &owners);
                    p
                })
                .collect();
        }
        if let Some(ns) = &workloads {
            let scaled: BTreeSet<ObjectRef> = match &autoscalers {
                Some(a) => collect(&self.autoscalers, a)?
                    .iter()
                    .map(|o| ObjectRef::clone(o))
                    .collect(),
                None => BTreeSet::new(),
            };
            snapshot.workloads = collect(&self.deployments, ns)?
                .iter()
                .map(|d| deployment_info(d, &scaled))
                .chain(
                    collect(&self.statefulsets, ns)?
                        .iter()
                        .map(|s| statefulset_info(s, &scaled)),
                )
                .collect();
        }
        if let Some(scope) = &needs.nodes {
            snapshot.nodes = read_nodes(&self.nodes, scope)?;
        }
        if needs.virtual_services {
            snapshot.virtual_services = self.virtual_services.read().ok().and_then(|s| {
                s.as_ref().map(|(api, st)| VirtualServices {
                    api: api.clone(),
                    items: st.state().iter().map(|v| virtual_service_info(v)).collect(),
                })
            });
        }
        Ok(snapshot)
    }
}

/// A pod owned by a ReplicaSet belongs to the ReplicaSet's Deployment (`owners`:
/// (namespace, ReplicaSet) -> Deployment).
fn resolve_owner(p: &mut PodInfo, owners: &BTreeMap<(&str, &str), &str>) {
    let Some(o) = &p.owner else { return };
    if o.kind != "ReplicaSet" {
        return;
    }
    if let Some(d) = owners.get(&(p.namespace.as_str(), o.name.as_str())) {
        p.owner = Some(ObjectRef::namespaced("Deployment", &p.namespace, d));
    }
}

impl SnapshotSource for Caches {
    fn snapshot<'a>(&'a self, needs: &'a Needs) -> BoxFuture<'a, Result<Snapshot, SnapshotError>> {
        futures::future::ready(self.read(needs)).boxed()
    }

    /// Read from the API server, not the caches: no pod watch covers a drain's nodes.
    fn node_pods<'a>(
        &'a self,
        nodes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<PodInfo>, SnapshotError>> {
        async move { Ok(super::nodes::read(&self.client, nodes).await?) }.boxed()
    }
}

impl FollowsPolicies for Caches {
    fn policies_changed(&self, _: &PolicySet, needs: &Needs) {
        self.apply(needs);
    }
}

#[cfg(test)]
mod tests {
    //! The caches against a scripted API server (kube's `tower_test` pattern): what is
    //! watched follows the policies.

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    use super::*;
    use crate::policy::Policy;
    use crate::{
        policy::fixtures,
        targets::fixtures::{Seen, api_server as cluster, requested, until},
    };

    fn pod(ns: &str, name: &str, rs: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"},
                "creationTimestamp": "2026-11-22T10:00:00Z",
                "managedFields": [{"manager": "kubectl"}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "1", "controller": true}]},
            "spec": {"nodeName": "node-0", "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn replicaset(ns: &str, name: &str, deployment: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": ns,
            "labels": {"pod-template-hash": "abc"},
            "annotations": {DEPLOYMENT_REVISION: "3"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "uid": "2", "controller": true}]}})
    }

    #[tokio::test]
    async fn watches_follow_the_policies_namespaces() {
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let seen = Seen::default();
        let objects = BTreeMap::from([
            (
                "/api/v1/namespaces/d/pods",
                vec![pod("d", "web-abc-1", "web-abc")],
            ),
            (
                "/apis/apps/v1/namespaces/d/replicasets",
                vec![replicaset("d", "web-abc", "web")],
            ),
            (
                "/api/v1/namespaces/e/pods",
                vec![pod("e", "api-1", "api-x")],
            ),
            (
                "/api/v1/namespaces",
                vec![
                    json!({"metadata": {"name": "d"}}),
                    json!({"metadata": {"name": "e", "labels": {"env": "staging"}}}),
                ],
            ),
            (
                "/api/v1/nodes",
                vec![json!({"metadata": {"name": "a-1", "labels": {"pool": "a"}}})],
            ),
        ]);
        tokio::spawn(cluster(handle, objects, seen.clone()));
        let client = Client::new(svc, "default");
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        let caches = Caches::start(&client, &stop, &tasks);
        // What the policies need, as the reloader computes it for the caches.
        let needs = |p: &Policy| crate::fault::needs_of([p], "havoc-system");
        let in_d = needs(&fixtures::policy("in-d").namespaces(&["d"]).build());
        let in_e = needs(&fixtures::policy("in-e").namespaces(&["e"]).build());
        caches.apply(&in_d);
        until("synced", || caches.is_synced()).await;

        // Pods and ReplicaSets in d and havoc's own namespace only; ReplicaSets and
        // Namespaces as metadata; no autoscaler (no scale policy), nothing cluster-wide.
        assert!(requested(&seen, "GET /api/v1/pods").is_empty(), "{seen:?}");
        assert!(requested(&seen, "GET /apis/apps/v1/replicasets").is_empty());
        assert!(!requested(&seen, "GET /api/v1/namespaces/havoc-system/pods?").is_empty());
        let rs = requested(&seen, "GET /apis/apps/v1/namespaces/d/replicasets?");
        assert!(
            !rs.is_empty() && rs.iter().all(|r| r.ends_with(" meta")),
            "{rs:?}"
        );
        assert!(
            requested(&seen, "GET /api/v1/namespaces?")
                .iter()
                .all(|r| r.ends_with(" meta"))
        );
        assert!(requested(&seen, "GET /apis/autoscaling").is_empty());
        // Nodes: for the recovery sweep, the metadata of those holding a record only; no
        // drain policy, no full Node.
        let nodes = requested(&seen, "GET /api/v1/nodes?");
        assert!(
            !nodes.is_empty()
                && nodes
                    .iter()
                    .all(|r| r.ends_with(" meta") && r.contains("labelSelector=havoc.dev%2Frevert")),
            "{nodes:?}"
        );
        // Deployments and StatefulSets likewise: no scale policy, no full object.
        for kind in ["deployments", "statefulsets"] {
            let seen_kind: Vec<String> = seen
                .lock()
                .expect("lock")
                .iter()
                .filter(|r| r.starts_with("GET /apis/apps/v1/") && r.contains(kind))
                .cloned()
                .collect();
            assert!(
                !seen_kind.is_empty()
                    && seen_kind
                        .iter()
                        .all(|r| r.starts_with(&format!("GET /apis/apps/v1/{kind}?"))
                            && r.ends_with(" meta")
                            && r.contains("labelSelector=havoc.dev%2Frevert")),
                "{seen_kind:?}"
            );
        }

        let s = caches.snapshot(&in_d).await.expect("readable");
        assert_eq!(s.pods.len(), 1);
        assert_eq!(
            s.pods[0].owner,
            Some(ObjectRef::namespaced("Deployment", "d", "web")),
            "the ReplicaSet resolves to its Deployment"
        );
        assert_eq!(s.namespaces.len(), 2);
        assert_eq!(
            caches.replicaset_hash(&ObjectRef::namespaced("Deployment", "d", "web"), "3"),
            Some("abc".into())
        );
        // e is not watched: a policy on it is unreadable, never judged on an empty cache
        let err = caches.snapshot(&in_e).await.expect_err("not watched");
        assert!(matches!(err, SnapshotError::NotSynced { .. }), "{err}");

        // A reload moves the policies to e: e is listed, d is dropped once e has listed.
        caches.apply(&in_e);
        until("e listed", || {
            caches
                .snapshot(&in_e)
                .now_or_never()
                .is_some_and(|r| r.is_ok())
        })
        .await;
        let s = caches.snapshot(&in_e).await.expect("readable");
        assert_eq!(
            s.pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["api-1"]
        );
        until("d dropped", || {
            caches
                .snapshot(&in_d)
                .now_or_never()
                .is_some_and(|r| r.is_err())
        })
        .await;
        assert_eq!(caches.sizes()["pods"], 1);

        // A namespace selector needs the namespaces it matches (e), never the cluster.
        let staging = needs(
            &fixtures::policy("staging")
                .set("/target/namespaceSelector", json!("env=staging"))
                .build(),
        );
        caches.apply(&staging);
        until("synced", || caches.is_synced()).await;
        let s = caches.snapshot(&staging).await.expect("readable");
        assert_eq!(
            s.pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["api-1"]
        );
        assert!(requested(&seen, "GET /api/v1/pods?").is_empty(), "{seen:?}");

        // A drain reads as targets the Nodes of its pool and the cordoned ones (full
        // objects, each watch filtered by the API server), never every node; its nodes'
        // pods are read when it chooses them (targets::nodes), never watched.
        let drain = needs(
            &fixtures::policy("drain")
                .set("/target", json!({"kind": "Node", "selector": "pool=a"}))
                .set("/fault", json!({"nodeDrain": {}}))
                .build(),
        );
        caches.apply(&drain);
        let full_nodes = || -> Vec<String> {
            requested(&seen, "GET /api/v1/nodes?")
                .into_iter()
                .filter(|r| !r.ends_with(" meta"))
                .collect()
        };
        until("the pool's and the cordoned nodes listed", || {
            let full = full_nodes();
            full.iter().any(|r| r.contains("labelSelector=pool%3Da"))
                && full
                    .iter()
                    .any(|r| r.contains("fieldSelector=spec.unschedulable%3Dtrue"))
        })
        .await;
        until("synced", || caches.is_synced()).await;
        let s = caches.snapshot(&drain).await.expect("readable");
        // (this API server ignores selectors: both watches list node a-1; it is read once)
        assert_eq!(
            s.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["a-1"]
        );
        assert!(
            full_nodes()
                .iter()
                .all(|r| r.contains("labelSelector=pool%3Da") || r.contains("fieldSelector=")),
            "no Node watch of the whole cluster: {:?}",
            full_nodes()
        );
        assert!(requested(&seen, "GET /api/v1/pods?").is_empty(), "{seen:?}");

        // A scale policy reads the full Deployments and StatefulSets of its namespace.
        let scale = needs(
            &fixtures::policy("scale")
                .namespaces(&["d"])
                .kind("Deployment")
                .fault(json!({"scale": {"replicas": 0}}))
                .build(),
        );
        caches.apply(&scale);
        until("d's Deployments listed", || {
            requested(&seen, "GET /apis/apps/v1/namespaces/d/deployments?")
                .iter()
                .any(|r| !r.ends_with(" meta"))
        })
        .await;
        until("synced", || caches.is_synced()).await;
        assert!(caches.snapshot(&scale).await.is_ok());
        assert!(
            requested(&seen, "GET /apis/apps/v1/deployments?")
                .iter()
                .all(|r| r.ends_with(" meta")),
            "{seen:?}"
        );
        stop.cancel();
    }
}
