//! Builds selection snapshots ([`PodInfo`], [`NamespaceInfo`]) from Kubernetes objects,
//! and [`ListSource`]: a snapshot by listing the cluster once (`havoc run`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::{FutureExt, future::BoxFuture};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet, StatefulSet},
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{Namespace, Node},
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time},
};
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams},
};

use super::lean::PodFacts;
use super::scope::{Namespaces, Needs};
use super::{
    NamespaceInfo, NodeInfo, PodInfo, Snapshot, SnapshotError, SnapshotSource, VirtualServiceInfo,
    VirtualServices, WorkloadInfo,
};
use crate::{
    labels::{MIRROR_ANNOTATION, REVERT_ANNOTATION},
    record::ObjectRef,
};

/// Converts a Kubernetes timestamp.
pub fn to_chrono(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// The workload owning a pod: its controller, with ReplicaSets resolved to their
/// Deployment through `replicasets` (namespace, name) -> owner.
pub fn owner_of(
    meta: &ObjectMeta,
    replicasets: &BTreeMap<(String, String), ObjectRef>,
) -> Option<ObjectRef> {
    let ns = meta.namespace.clone().unwrap_or_default();
    let owner = meta
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    if owner.kind == "ReplicaSet"
        && let Some(deployment) = replicasets.get(&(ns.clone(), owner.name.clone()))
    {
        return Some(deployment.clone());
    }
    Some(ObjectRef::namespaced(&owner.kind, &ns, &owner.name))
}

/// What selection needs to know about one pod.
pub fn pod_info(pod: &PodFacts, replicasets: &BTreeMap<(String, String), ObjectRef>) -> PodInfo {
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    PodInfo {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        created: meta
            .creation_timestamp
            .as_ref()
            .map(to_chrono)
            .unwrap_or_default(),
        running: status.and_then(|s| s.phase.as_deref()) == Some("Running"),
        terminating: meta.deletion_timestamp.is_some(),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        owner: owner_of(meta, replicasets),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        mirror: meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION)),
    }
}

fn created(meta: &ObjectMeta) -> DateTime<Utc> {
    meta.creation_timestamp
        .as_ref()
        .map(to_chrono)
        .unwrap_or_default()
}

fn has_record(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(REVERT_ANNOTATION))
}

pub fn node_info(node: &Node) -> NodeInfo {
    let meta = &node.metadata;
    NodeInfo {
        name: meta.name.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        created: created(meta),
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        has_record: has_record(meta),
    }
}

/// `matchLabels` of a selector without expressions (what a NetworkPolicy can reuse
/// exactly).
fn match_labels(sel: &LabelSelector) -> Option<BTreeMap<String, String>> {
    if sel
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        return None;
    }
    sel.match_labels.clone().filter(|m| !m.is_empty())
}

/// The (kind, namespace, name) of every workload an autoscaler scales.
pub fn autoscaled<'a>(
    hpas: impl IntoIterator<Item = &'a HorizontalPodAutoscaler>,
) -> BTreeSet<ObjectRef> {
    hpas.into_iter()
        .filter_map(|h| {
            let ns = h.metadata.namespace.as_deref()?;
            let target = &h.spec.scale_target_ref;
            Some(ObjectRef::namespaced(&target.kind, ns, &target.name))
        })
        .collect()
}

pub fn deployment_info(d: &Deployment, autoscaled: &BTreeSet<ObjectRef>) -> WorkloadInfo {
    let spec = d.spec.as_ref();
    workload_info(
        "Deployment",
        &d.metadata,
        spec.and_then(|s| s.replicas).unwrap_or(1),
        spec.and_then(|s| match_labels(&s.selector)),
        autoscaled,
    )
}

pub fn statefulset_info(s: &StatefulSet, autoscaled: &BTreeSet<ObjectRef>) -> WorkloadInfo {
    let spec = s.spec.as_ref();
    let mut info = workload_info(
        "StatefulSet",
        &s.metadata,
        spec.and_then(|s| s.replicas).unwrap_or(1),
        spec.and_then(|s| match_labels(&s.selector)),
        autoscaled,
    );
    info.volumes_at_risk = spec.is_some_and(|s| {
        s.persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_scaled.as_deref())
            == Some("Delete")
            && s.volume_claim_templates
                .as_ref()
                .is_some_and(|t| !t.is_empty())
    });
    info
}

fn workload_info(
    kind: &str,
    meta: &ObjectMeta,
    replicas: i32,
    selector: Option<BTreeMap<String, String>>,
    autoscaled: &BTreeSet<ObjectRef>,
) -> WorkloadInfo {
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    WorkloadInfo {
        autoscaled: autoscaled.contains(&ObjectRef::namespaced(kind, &namespace, &name)),
        kind: kind.to_string(),
        namespace,
        name,
        labels: meta.labels.clone().unwrap_or_default(),
        created: created(meta),
        replicas,
        selector,
        has_record: has_record(meta),
        volumes_at_risk: false,
    }
}

pub fn virtual_service_info(v: &DynamicObject) -> VirtualServiceInfo {
    let meta = &v.metadata;
    VirtualServiceInfo {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        created: created(meta),
        has_record: has_record(meta),
    }
}

/// ReplicaSet (namespace, name) -> the Deployment controlling it.
pub fn replicaset_owners<'a>(
    rs: impl IntoIterator<Item = &'a ReplicaSet>,
) -> BTreeMap<(String, String), ObjectRef> {
    rs.into_iter()
        .filter_map(|r| {
            let ns = r.metadata.namespace.clone()?;
            let owner = r
                .metadata
                .owner_references
                .as_ref()?
                .iter()
                .find(|o| o.controller == Some(true) && o.kind == "Deployment")?;
            Some((
                (ns.clone(), r.metadata.name.clone()?),
                ObjectRef::namespaced("Deployment", &ns, &owner.name),
            ))
        })
        .collect()
}

pub fn namespace_info(ns: &Namespace) -> NamespaceInfo {
    NamespaceInfo {
        name: ns.metadata.name.clone().unwrap_or_default(),
        labels: ns.metadata.labels.clone().unwrap_or_default(),
    }
}

/// Lists the cluster once per experiment (`havoc run`; the service reads its watch
/// caches): only the kinds and namespaces the policy reads.
#[derive(Clone)]
pub struct ListSource {
    pub client: Client,
    /// havoc's own namespace (its pods are read with every pod selection).
    pub own_namespace: String,
}

impl std::fmt::Debug for ListSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListSource")
    }
}

impl SnapshotSource for ListSource {
    fn snapshot<'a>(&'a self, needs: &'a Needs) -> BoxFuture<'a, Result<Snapshot, SnapshotError>> {
        async move { Ok(list_snapshot(&self.client, needs).await?) }.boxed()
    }

    fn node_pods<'a>(
        &'a self,
        nodes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<PodInfo>, SnapshotError>> {
        async move { Ok(super::nodes::read(&self.client, nodes).await?) }.boxed()
    }
}

/// Lists a namespaced kind in `ns`: one list per namespace, or one for the cluster.
async fn list_in<K>(client: &Client, ns: &Namespaces) -> Result<Vec<K>, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let lp = ListParams::default();
    match ns {
        // A one-off list: every namespace, selection reads the labels afterwards.
        Namespaces::All | Namespaces::Matching { .. } => {
            Ok(Api::<K>::all(client.clone()).list(&lp).await?.items)
        }
        Namespaces::Names(names) => {
            let mut out = Vec::new();
            for n in names {
                out.extend(
                    Api::<K>::namespaced(client.clone(), n)
                        .list(&lp)
                        .await?
                        .items,
                );
            }
            Ok(out)
        }
    }
}

/// A one-off snapshot by listing what `needs` names.
pub async fn list_snapshot(client: &Client, needs: &Needs) -> Result<Snapshot, kube::Error> {
    let lp = ListParams::default();
    let mut snapshot = Snapshot {
        namespaces: Api::<Namespace>::all(client.clone())
            .list(&lp)
            .await?
            .items
            .iter()
            .map(|n| {
                (
                    n.metadata.name.clone().unwrap_or_default(),
                    namespace_info(n),
                )
            })
            .collect(),
        ..Snapshot::default()
    };
    if let Some(ns) = &needs.pods {
        let rs = list_in::<ReplicaSet>(client, ns).await?;
        let owners = replicaset_owners(&rs);
        snapshot.pods = list_in::<PodFacts>(client, ns)
            .await?
            .iter()
            .map(|p| pod_info(p, &owners))
            .collect();
    }
    if let Some(ns) = &needs.workloads {
        let hpas = match &needs.autoscalers {
            Some(a) => list_in::<HorizontalPodAutoscaler>(client, a).await?,
            None => Vec::new(),
        };
        let scaled = autoscaled(&hpas);
        snapshot.workloads = list_in::<Deployment>(client, ns)
            .await?
            .iter()
            .map(|d| deployment_info(d, &scaled))
            .chain(
                list_in::<StatefulSet>(client, ns)
                    .await?
                    .iter()
                    .map(|s| statefulset_info(s, &scaled)),
            )
            .collect();
    }
    // Every node, whatever the scope: one list, for one plan.
    if needs.nodes.is_some() {
        snapshot.nodes = Api::<Node>::all(client.clone())
            .list(&lp)
            .await?
            .items
            .iter()
            .map(node_info)
            .collect();
    }
    if needs.virtual_services {
        snapshot.virtual_services = match crate::kinds::virtual_services(client).await? {
            Some(api) => Some(VirtualServices {
                items: Api::<DynamicObject>::all_with(client.clone(), &api)
                    .list(&lp)
                    .await?
                    .items
                    .iter()
                    .map(virtual_service_info)
                    .collect(),
                api,
            }),
            None => None,
        };
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_resolve_to_their_deployment() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "d",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "1", "controller": true}]}
        }))
        .expect("rs");
        let pod: PodFacts = serde_json::from_value(json!({
            "metadata": {"name": "web-abc-1", "namespace": "d", "labels": {"app": "web"},
                "creationTimestamp": "2026-11-22T10:00:00Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "2", "controller": true}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .expect("pod");
        let info = pod_info(&pod, &replicaset_owners([&rs]));
        assert_eq!(
            info.owner,
            Some(ObjectRef::namespaced("Deployment", "d", "web"))
        );
        assert!(info.running && info.ready && !info.terminating);
        assert_eq!(info.created.to_rfc3339(), "2026-11-22T10:00:00+00:00");

        let sts: PodFacts = serde_json::from_value(json!({
            "metadata": {"name": "db-0", "namespace": "d", "deletionTimestamp": "2026-11-22T10:00:00Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "3", "controller": true}]},
            "status": {"phase": "Pending"}
        }))
        .expect("pod");
        let info = pod_info(&sts, &BTreeMap::new());
        assert_eq!(
            info.owner,
            Some(ObjectRef::namespaced("StatefulSet", "d", "db"))
        );
        assert!(!info.running && !info.ready && info.terminating);
    }
}
