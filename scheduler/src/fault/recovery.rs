//! Recovery: finding the revert records nobody is holding and undoing them.
//!
//! A record is due when its owner is this installation and its experiment is not
//! running in this process (havoc was restarted, or a revert failed), or when its
//! deadline has passed whoever owns it (another installation, a `havoc run` that died).
//! The service's leader sweeps its watch caches at start-up and periodically;
//! `havoc revert --all` lists the cluster and reverts everything, due or not.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::Node,
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DynamicObject, ListParams, Patch, PatchParams},
};

use super::{
    Held,
    revert::{RevertRecord, label, merge, precondition, record_of},
};
use crate::{
    labels::{MANAGED_BY, REVERT_ANNOTATION, REVERT_LABEL},
    record::ObjectRef,
    targets::cache::Caches,
};

/// Every havoc record found, and the objects whose record does not parse (a human
/// must look at those: havoc never guesses what to restore).
#[derive(Debug, Default, Clone)]
pub struct Found {
    pub held: Vec<Held>,
    pub unreadable: Vec<(ObjectRef, String)>,
    /// Kinds that could not be listed (`havoc revert --all`), with why: records of
    /// these kinds may be left.
    pub unlisted: Vec<(String, String)>,
}

impl Found {
    fn add<K: Resource>(&mut self, kind: &str, object: &K) {
        let Some(record) = record_of(object) else {
            return;
        };
        let object = ObjectRef {
            kind: kind.to_string(),
            namespace: object.namespace(),
            name: object.name_any(),
        };
        match record {
            Ok(record) => self.held.push(Held { object, record }),
            Err(e) => self.unreadable.push((object, e.to_string())),
        }
    }
}

/// The kinds of objects that carry revert records. Each fault names its own
/// ([`super::FaultKind::records_on`]); recovery watches and lists the union.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordKind {
    Node,
    Deployment,
    StatefulSet,
    /// havoc's own (label-selected).
    NetworkPolicy,
    /// When Istio's CRD is installed.
    VirtualService,
}

impl RecordKind {
    pub fn kind(self) -> &'static str {
        match self {
            RecordKind::Node => "Node",
            RecordKind::Deployment => "Deployment",
            RecordKind::StatefulSet => "StatefulSet",
            RecordKind::NetworkPolicy => "NetworkPolicy",
            RecordKind::VirtualService => crate::kinds::VIRTUAL_SERVICE,
        }
    }
}

/// Whether the sweep of `owner` (this installation, running `running`) reverts `record`
/// at `now`.
pub fn is_due(
    record: &RevertRecord,
    owner: &str,
    running: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> bool {
    if record.owner == owner {
        !running.contains(&record.experiment)
    } else {
        record.is_expired(now)
    }
}

/// The records in the service's watch caches, on every kind a fault records on.
pub fn in_caches(caches: &Caches) -> Found {
    let mut found = Found::default();
    for kind in super::record_kinds() {
        let name = kind.kind();
        match kind {
            RecordKind::Node => caches
                .nodes()
                .iter()
                .for_each(|o| found.add(name, o.as_ref())),
            RecordKind::Deployment => caches
                .deployments()
                .iter()
                .for_each(|o| found.add(name, o.as_ref())),
            RecordKind::StatefulSet => caches
                .statefulsets()
                .iter()
                .for_each(|o| found.add(name, o.as_ref())),
            RecordKind::NetworkPolicy => caches
                .network_policies()
                .iter()
                .for_each(|o| found.add(name, o.as_ref())),
            RecordKind::VirtualService => {
                if let Some(store) = caches.virtual_service_store() {
                    store
                        .state()
                        .iter()
                        .for_each(|o| found.add(name, o.as_ref()));
                }
            }
        }
    }
    found
}

/// Objects per page of that list: a page is read whole before it is decoded, and a
/// (KWOK) node's metadata is about 2 KB, mostly managed fields; pages keep the start-up
/// peak (which the allocator keeps as RSS) from growing with the cluster.
const NODE_PAGE: u32 = 25;

/// The records on Nodes, Deployments and StatefulSets that lack their label
/// ([`REVERT_LABEL`], which the caches' watches of those kinds select): written by a havoc
/// older than the label. One paged metadata list per kind of the objects without the
/// label; each one holding a record gets the label (a merge patch with its
/// resourceVersion as precondition, so a record removed meanwhile is not relabelled), so
/// the watch follows it from then on, and its record is returned for this sweep. Any
/// failure (a conflict included) is returned: the caller tries again on its next round.
pub async fn mark_unlabelled(m: &super::Mutator) -> Result<Found, super::FaultError> {
    use crate::targets::watches::{cluster, namespaced};
    let client = m.client();
    let mut found = Found::default();
    mark_kind::<Node>(m, cluster(client), &mut found).await?;
    mark_kind::<Deployment>(m, namespaced(client), &mut found).await?;
    mark_kind::<StatefulSet>(m, namespaced(client), &mut found).await?;
    Ok(found)
}

/// [`mark_unlabelled`] for one kind (`api`: its API in a namespace, or the cluster's).
async fn mark_kind<K>(
    m: &super::Mutator,
    api: impl Fn(Option<&str>) -> Api<K>,
    found: &mut Found,
) -> Result<(), super::FaultError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let all = api(None);
    let mut page = ListParams::default()
        .labels(&format!("!{}", REVERT_LABEL.0))
        .limit(NODE_PAGE);
    let mut held = Vec::new();
    loop {
        let list = super::bounded(all.list_metadata(&page)).await?;
        held.extend(
            list.items
                .into_iter()
                .filter(|n| n.annotations().contains_key(REVERT_ANNOTATION)),
        );
        match list.metadata.continue_ {
            Some(token) if !token.is_empty() => page = page.continue_token(&token),
            _ => break,
        }
    }
    let kind = K::kind(&());
    for o in held {
        let patch = merge(precondition(o.metadata.resource_version.clone()), label());
        let name = o.name_any();
        let ns = o.namespace();
        match m
            .send(api(ns.as_deref()).patch(&name, &PatchParams::default(), &Patch::Merge(&patch)))
            .await
        {
            Ok(_) => found.add(&kind, &o),
            Err(super::FaultError::Api(kube::Error::Api(s))) if s.code == 404 => {}
            // Not allowed to label it (the fault's permission was taken away): the record
            // is still swept, and its revert reports the missing permission.
            Err(super::FaultError::Api(kube::Error::Api(s))) if s.code == 403 => {
                found.add(&kind, &o);
            }
            // A conflict too: the caller lists again on its next round.
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Objects per page when `havoc revert --all` lists the cluster.
const LIST_PAGE: u32 = 250;

/// Every object of a kind, in pages, each page bounded in time.
async fn list_all<K>(api: &Api<K>, lp: &ListParams) -> Result<Vec<K>, super::FaultError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut page = lp.clone().limit(LIST_PAGE);
    let mut out = Vec::new();
    loop {
        let list = super::bounded(api.list(&page)).await?;
        out.extend(list.items);
        match list.metadata.continue_ {
            Some(token) if !token.is_empty() => page = page.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

/// The records in the cluster, by listing (`havoc revert --all`). Each kind is listed
/// in pages; a kind that cannot be listed (no permission, no answer) is reported in
/// [`Found::unlisted`] and the other kinds are still listed.
pub async fn in_cluster(client: &Client) -> Found {
    let mut found = Found::default();
    for kind in super::record_kinds() {
        let name = kind.kind();
        let listed = match kind {
            RecordKind::Node => {
                list_into(
                    &Api::<Node>::all(client.clone()),
                    &ListParams::default(),
                    name,
                    &mut found,
                )
                .await
            }
            RecordKind::Deployment => {
                list_into(
                    &Api::<Deployment>::all(client.clone()),
                    &ListParams::default(),
                    name,
                    &mut found,
                )
                .await
            }
            RecordKind::StatefulSet => {
                list_into(
                    &Api::<StatefulSet>::all(client.clone()),
                    &ListParams::default(),
                    name,
                    &mut found,
                )
                .await
            }
            RecordKind::NetworkPolicy => {
                let managed =
                    ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
                list_into(
                    &Api::<NetworkPolicy>::all(client.clone()),
                    &managed,
                    name,
                    &mut found,
                )
                .await
            }
            RecordKind::VirtualService => {
                match super::bounded(crate::kinds::virtual_services(client)).await {
                    Ok(Some(ar)) => {
                        let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
                        list_into(&api, &ListParams::default(), name, &mut found).await
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = listed {
            tracing::error!(kind = name, error = %e, "cannot list for havoc records");
            found.unlisted.push((name.to_string(), e.to_string()));
        }
    }
    tracing::debug!(
        records = found.held.len(),
        annotation = REVERT_ANNOTATION,
        "records listed"
    );
    found
}

/// Lists every object of `api` (in pages) into `found`.
async fn list_into<K>(
    api: &Api<K>,
    lp: &ListParams,
    kind: &str,
    found: &mut Found,
) -> Result<(), super::FaultError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for o in list_all(api, lp).await? {
        found.add(kind, &o);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(owner: &str, experiment: &str, deadline: &str) -> RevertRecord {
        RevertRecord {
            experiment: experiment.into(),
            policy: "p".into(),
            fault: "scale".into(),
            original: serde_json::json!({}),
            deadline: DateTime::parse_from_rfc3339(deadline).expect("t").to_utc(),
            owner: owner.into(),
        }
    }

    #[test]
    fn own_orphans_at_once_strangers_only_after_their_deadline() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .expect("t")
            .to_utc();
        let running = BTreeSet::from(["e-live".to_string()]);
        let me = "havoc-system/havoc";
        // mine, not running here (a crash, a failed revert): due now, deadline or not
        assert!(is_due(
            &record(me, "e-old", "2026-12-01T13:00:00Z"),
            me,
            &running,
            now
        ));
        // mine and running: never raced
        assert!(!is_due(
            &record(me, "e-live", "2026-12-01T11:00:00Z"),
            me,
            &running,
            now
        ));
        // someone else's: only after the deadline
        let other = "other/havoc";
        assert!(!is_due(
            &record(other, "e-x", "2026-12-01T12:00:01Z"),
            me,
            &running,
            now
        ));
        assert!(is_due(
            &record(other, "e-x", "2026-12-01T12:00:00Z"),
            me,
            &running,
            now
        ));
    }

    /// A record an older havoc wrote without its label: found by the start-up list of
    /// unlabelled Nodes (then Deployments and StatefulSets), labelled with the listed
    /// resourceVersion as precondition, and returned; an object without a record is left
    /// alone.
    #[tokio::test]
    async fn a_record_without_its_label_is_labelled_and_found() {
        use http::{Request, Response};
        use kube::client::Body;
        use serde_json::json;
        use tower_test::mock;

        let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let stored = record("havoc-system/havoc", "e1", "2026-11-22T10:05:00Z").encode();
        let server = tokio::spawn(async move {
            let respond = |v: serde_json::Value| {
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&v).expect("json")))
                    .expect("response")
            };
            let (req, send) = handle.next_request().await.expect("the list");
            assert_eq!(req.method(), "GET");
            assert_eq!(req.uri().path(), "/api/v1/nodes");
            let query = req.uri().query().unwrap_or_default().to_string();
            assert!(
                query.contains("labelSelector=%21havoc.dev%2Frevert"),
                "{query}"
            );
            send.send_response(respond(json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                "metadata": {"resourceVersion": "9"},
                "items": [
                    {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                     "metadata": {"name": "kwok-a", "resourceVersion": "7"}},
                    {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                     "metadata": {"name": "kwok-b", "resourceVersion": "8",
                        "annotations": {REVERT_ANNOTATION: stored}}},
                ]
            })));
            let (req, send) = handle.next_request().await.expect("the patch");
            assert_eq!(req.method(), "PATCH");
            assert_eq!(req.uri().path(), "/api/v1/nodes/kwok-b");
            let body = req.into_body().collect_bytes().await.expect("body");
            let patch: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(
                patch,
                json!({"metadata": {"resourceVersion": "8", "labels": {REVERT_LABEL.0: REVERT_LABEL.1}}})
            );
            send.send_response(respond(json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "kwok-b", "resourceVersion": "10"}})));
            // Then the Deployments (one holds a record) and the StatefulSets (none).
            let (req, send) = handle.next_request().await.expect("the Deployment list");
            assert_eq!(req.uri().path(), "/apis/apps/v1/deployments");
            send.send_response(respond(json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                "metadata": {"resourceVersion": "9"},
                "items": [{"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                    "metadata": {"name": "web", "namespace": "d", "resourceVersion": "5",
                        "annotations": {REVERT_ANNOTATION: stored}}}]
            })));
            let (req, send) = handle.next_request().await.expect("the Deployment patch");
            assert_eq!(req.method(), "PATCH");
            assert_eq!(
                req.uri().path(),
                "/apis/apps/v1/namespaces/d/deployments/web"
            );
            send.send_response(respond(
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "d", "resourceVersion": "11"}}),
            ));
            let (req, send) = handle.next_request().await.expect("the StatefulSet list");
            assert_eq!(req.uri().path(), "/apis/apps/v1/statefulsets");
            send.send_response(respond(json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                "metadata": {"resourceVersion": "9"}, "items": []
            })));
        });
        let found = mark_unlabelled(&crate::fault::Mutator::unfenced(client))
            .await
            .expect("listed");
        server.await.expect("scripted");
        let held: Vec<(&str, &str)> = found
            .held
            .iter()
            .map(|h| (h.object.kind.as_str(), h.object.name.as_str()))
            .collect();
        assert_eq!(held, [("Node", "kwok-b"), ("Deployment", "web")]);
        assert_eq!(found.held[0].record.experiment, "e1");
    }
}
