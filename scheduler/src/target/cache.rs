//! Watch caches (kube-runtime reflectors): the service chooses targets from these
//! instead of listing the cluster on every run, and the recovery sweep finds revert
//! records in them. Watches resume on their own with kube-runtime's backoff when the API
//! server goes away. Each object is trimmed to what havoc reads before it is stored.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{Namespace, Node, Pod, PodSpec},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
    runtime::{
        WatchStreamExt,
        reflector::{self, Store, store::Writer},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    NamespaceInfo, Snapshot, SnapshotError, SnapshotSource, VirtualServices,
    kube::{
        autoscaled, deployment_info, namespace_info, node_info, pod_info, replicaset_owners,
        statefulset_info, virtual_service_info,
    },
};
use crate::{
    labels::{DEPLOYMENT_REVISION, MANAGED_BY, MIRROR_ANNOTATION, REVERT_ANNOTATION},
    record::ObjectRef,
};

/// The service's watch caches.
#[derive(Clone)]
pub struct Caches {
    pub(crate) pods: Store<Pod>,
    pub(crate) replicasets: Store<ReplicaSet>,
    pub(crate) namespaces: Store<Namespace>,
    pub(crate) nodes: Store<Node>,
    pub(crate) deployments: Store<Deployment>,
    pub(crate) statefulsets: Store<StatefulSet>,
    pub(crate) autoscalers: Store<HorizontalPodAutoscaler>,
    /// NetworkPolicies havoc created (label-selected: only havoc's own are watched).
    pub(crate) network_policies: Store<NetworkPolicy>,
    /// VirtualServices, once the CRD is found (`None`: not installed).
    virtual_services: Arc<RwLock<Option<VirtualServiceCache>>>,
    synced: Arc<AtomicBool>,
    /// Whether each watch delivers.
    health: Arc<Vec<Arc<WatchHealth>>>,
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

/// How long a watch may keep failing before its cache counts as unreadable (the
/// experiments that need it are skipped).
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// Whether one watch delivers: failing since when, if it is failing.
#[derive(Debug, Default)]
pub struct WatchHealth {
    kind: String,
    failing_since: Mutex<Option<Instant>>,
}

impl WatchHealth {
    fn ok(&self) {
        *self.failing_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn failed(&self) {
        self.failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Instant::now);
    }

    /// Failing for longer than [`STALE_AFTER`]: since when.
    fn stale(&self) -> Option<Duration> {
        let since = (*self.failing_since.lock().unwrap_or_else(|e| e.into_inner()))?;
        let for_ = since.elapsed();
        (for_ > STALE_AFTER).then_some(for_)
    }
}

/// Runs one reflector on `tasks` until `stop`, feeding `writer`. After an error the watch
/// is started afresh (a new list, with backoff) rather than resumed: a fresh list always
/// delivers, so a cache is known to be current again as soon as it has one — what
/// [`WatchHealth`] reports.
fn run_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    mut writer: Writer<K>,
    stop: CancellationToken,
    tasks: &TaskTracker,
    trim: fn(&mut K),
    health: Arc<WatchHealth>,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    tasks.spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let stream = watcher(api.clone(), config.clone());
            let mut stream = std::pin::pin!(stream);
            loop {
                let item = tokio::select! {
                    () = stop.cancelled() => return,
                    item = stream.next() => item,
                };
                match item {
                    Some(Ok(event)) => {
                        let event = event.modify(trim);
                        writer.apply_watcher_event(&event);
                        // `Init` comes before the list is made (and the store swaps only at
                        // `InitDone`): only a finished list or a live event proves the cache
                        // current, and only that may reset the backoff — else a list that
                        // keeps failing (a 403, say) is retried every half second.
                        if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
                            health.ok();
                            backoff = Duration::from_millis(500);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(kind = %health.kind, error = %e, "watch error; listing again");
                        health.failed();
                        break;
                    }
                    None => break,
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    });
}

/// Starts one reflector for a typed kind and returns its store.
fn spawn_reflector<K>(
    api: Api<K>,
    stop: CancellationToken,
    tasks: &TaskTracker,
    trim: fn(&mut K),
    health: &mut Vec<Arc<WatchHealth>>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    spawn_reflector_with(api, watcher::Config::default(), stop, tasks, trim, health)
}

fn spawn_reflector_with<K>(
    api: Api<K>,
    config: watcher::Config,
    stop: CancellationToken,
    tasks: &TaskTracker,
    trim: fn(&mut K),
    health: &mut Vec<Arc<WatchHealth>>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let h = Arc::new(WatchHealth {
        kind: K::kind(&K::DynamicType::default()).to_string(),
        ..WatchHealth::default()
    });
    health.push(h.clone());
    run_reflector(api, config, writer, stop, tasks, trim, h);
    reader
}

impl Caches {
    /// Starts the watches on `tasks`, until `stop`. They are synced once every first list
    /// has arrived. VirtualServices are watched if their CRD is installed.
    pub fn start(client: &Client, stop: &CancellationToken, tasks: &TaskTracker) -> Self {
        let c = || client.clone();
        let s = || stop.clone();
        let mut health = Vec::new();
        // Keep only what selection reads: managed fields, annotations and the spec are
        // the bulk of a Pod object.
        let pods = spawn_reflector(
            Api::<Pod>::all(c()),
            s(),
            tasks,
            |p: &mut Pod| {
                p.managed_fields_mut().clear();
                p.annotations_mut().retain(|k, _| k == MIRROR_ANNOTATION);
                let node_name = p.spec.as_ref().and_then(|s| s.node_name.clone());
                p.spec = Some(PodSpec {
                    node_name,
                    ..PodSpec::default()
                });
            },
            &mut health,
        );
        let replicasets = spawn_reflector(
            Api::<ReplicaSet>::all(c()),
            s(),
            tasks,
            |r: &mut ReplicaSet| {
                r.managed_fields_mut().clear();
                // Only the revision is needed (which ReplicaSet a rollout created).
                r.annotations_mut().retain(|k, _| k == DEPLOYMENT_REVISION);
                r.spec = None;
            },
            &mut health,
        );
        let namespaces = spawn_reflector(
            Api::<Namespace>::all(c()),
            s(),
            tasks,
            |n: &mut Namespace| {
                trim_meta(n);
                n.spec = None;
            },
            &mut health,
        );
        let nodes = spawn_reflector(
            Api::<Node>::all(c()),
            s(),
            tasks,
            |n: &mut Node| {
                trim_meta(n);
                n.status = None;
            },
            &mut health,
        );
        let deployments = spawn_reflector(
            Api::<Deployment>::all(c()),
            s(),
            tasks,
            |d: &mut Deployment| {
                trim_meta(d);
                d.status = None;
                if let Some(spec) = d.spec.as_mut() {
                    spec.template = Default::default();
                }
            },
            &mut health,
        );
        let statefulsets = spawn_reflector(
            Api::<StatefulSet>::all(c()),
            s(),
            tasks,
            |d: &mut StatefulSet| {
                trim_meta(d);
                d.status = None;
                if let Some(spec) = d.spec.as_mut() {
                    spec.template = Default::default();
                    spec.volume_claim_templates = None;
                }
            },
            &mut health,
        );
        let autoscalers = spawn_reflector(
            Api::<HorizontalPodAutoscaler>::all(c()),
            s(),
            tasks,
            |h: &mut HorizontalPodAutoscaler| {
                trim_meta(h);
                h.status = None;
            },
            &mut health,
        );
        let network_policies = spawn_reflector_with(
            Api::<NetworkPolicy>::all(c()),
            watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)),
            s(),
            tasks,
            |n: &mut NetworkPolicy| n.managed_fields_mut().clear(),
            &mut health,
        );
        let caches = Caches {
            pods,
            replicasets,
            namespaces,
            nodes,
            deployments,
            statefulsets,
            autoscalers,
            network_policies,
            virtual_services: Arc::default(),
            synced: Arc::new(AtomicBool::new(false)),
            health: Arc::new(health),
        };
        let (this, client, stop, t) = (caches.clone(), client.clone(), stop.clone(), tasks.clone());
        tasks.spawn(async move {
            let vs = this.watch_virtual_services(&client, &stop, &t);
            let ready = async {
                let all = futures::future::join_all([
                    this.pods.wait_until_ready().boxed(),
                    this.replicasets.wait_until_ready().boxed(),
                    this.namespaces.wait_until_ready().boxed(),
                    this.nodes.wait_until_ready().boxed(),
                    this.deployments.wait_until_ready().boxed(),
                    this.statefulsets.wait_until_ready().boxed(),
                    this.autoscalers.wait_until_ready().boxed(),
                    this.network_policies.wait_until_ready().boxed(),
                ])
                .await;
                let vs_ready = match vs.await {
                    Some(store) => store.wait_until_ready().await.is_ok(),
                    None => true,
                };
                all.iter().all(Result::is_ok) && vs_ready
            };
            tokio::select! {
                () = stop.cancelled() => {}
                ok = ready => if ok {
                    tracing::info!("watch caches synced");
                    this.synced.store(true, Ordering::Release);
                },
            }
        });
        caches
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
                match crate::fault::http::discover(&client).await {
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

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// A watch that has failed for longer than [`STALE_AFTER`]: its kind and for how
    /// long. Its cache may be out of date, so no target is chosen from the caches.
    pub fn stale(&self) -> Option<(String, Duration)> {
        self.health
            .iter()
            .find_map(|h| h.stale().map(|d| (h.kind.clone(), d)))
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

    /// How many objects are cached, by kind.
    pub fn sizes(&self) -> BTreeMap<&'static str, usize> {
        BTreeMap::from([
            ("pods", self.pods.len()),
            ("replicasets", self.replicasets.len()),
            ("namespaces", self.namespaces.len()),
            ("nodes", self.nodes.len()),
            ("deployments", self.deployments.len()),
            ("statefulsets", self.statefulsets.len()),
        ])
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
        let scaled = autoscaled(self.autoscalers.state().iter().map(AsRef::as_ref));
        let mut workloads: Vec<_> = self
            .deployments
            .state()
            .iter()
            .map(|d| deployment_info(d, &scaled))
            .collect();
        workloads.extend(
            self.statefulsets
                .state()
                .iter()
                .map(|s| statefulset_info(s, &scaled)),
        );
        Snapshot {
            pods,
            namespaces: self.namespaces(),
            nodes: self.nodes.state().iter().map(|n| node_info(n)).collect(),
            workloads,
            virtual_services: self.virtual_services.read().ok().and_then(|s| {
                s.as_ref().map(|(api, st)| VirtualServices {
                    api: api.clone(),
                    items: st.state().iter().map(|v| virtual_service_info(v)).collect(),
                })
            }),
        }
    }
}

impl SnapshotSource for Caches {
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, SnapshotError>> {
        let snapshot = if !self.is_synced() {
            Err(SnapshotError::NotSynced)
        } else if let Some((kind, for_)) = self.stale() {
            Err(SnapshotError::Stale {
                kind,
                secs: for_.as_secs(),
            })
        } else {
            Ok(self.read())
        };
        futures::future::ready(snapshot).boxed()
    }
}
