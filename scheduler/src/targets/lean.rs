//! [`PodFacts`]: a pod as the API server sends it, decoded into only what selection
//! reads ([`super::PodInfo`]).
//!
//! Every pod havoc watches or lists is decoded, and a pod is mostly what havoc never
//! reads: its containers, volumes, managed fields, every annotation but one. Decoding
//! `k8s_openapi`'s `Pod` builds all of that (a tree of strings, vectors and maps) only
//! to drop it again when the row is made; here serde skips it in the JSON without
//! building anything. The pod watch is most of what havoc decodes between experiments
//! (each pod killed is followed by about ten events: its deletion, its successor's
//! creation, scheduling and start), and a drain lists every pod of its node
//! (tests/bench/footprint measures both).
//!
//! [`PodFacts`] is a resource of its own for kube (`k8s_openapi::Resource` with `Pod`'s
//! names, `Metadata` with an `ObjectMeta` holding only the fields below), so `Api`,
//! lists and watches work with it as with `Pod`.

use std::collections::BTreeMap;

use k8s_openapi::{
    NamespaceResourceScope,
    api::core::v1::Pod,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time},
};
use serde::{Deserialize, Deserializer, de::IgnoredAny};

use crate::labels::{MIRROR_ANNOTATION, REVERT_ANNOTATION};

/// A pod, with only what selection reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodFacts {
    /// Name, namespace, uid, resource version, labels, creation and deletion time,
    /// owners, and the annotations havoc reads (a mirror pod's, havoc's revert record).
    #[serde(default, deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<FactsSpec>,
    #[serde(default)]
    pub status: Option<FactsStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FactsSpec {
    #[serde(default)]
    pub node_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FactsStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub conditions: Option<Vec<FactsCondition>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FactsCondition {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub status: String,
}

impl k8s_openapi::Resource for PodFacts {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = NamespaceResourceScope;
}

impl k8s_openapi::Metadata for PodFacts {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &Self::Ty {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut Self::Ty {
        &mut self.metadata
    }
}

/// The metadata fields [`PodFacts`] keeps (the rest, `managedFields` above all, is
/// skipped unread).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "read_annotations")]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    creation_timestamp: Option<Time>,
    #[serde(default)]
    deletion_timestamp: Option<Time>,
    #[serde(default)]
    owner_references: Option<Vec<OwnerReference>>,
}

fn lean_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = LeanMeta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        labels: m.labels,
        annotations: m.annotations,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        owner_references: m.owner_references,
        ..ObjectMeta::default()
    })
}

/// The annotations havoc reads; the others (a `kubectl apply` leaves a copy of the whole
/// object in one) are skipped without being copied.
fn read_annotations<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<BTreeMap<String, String>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of annotations")
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut kept = BTreeMap::new();
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == MIRROR_ANNOTATION || key == REVERT_ANNOTATION {
                    kept.insert(key.into_owned(), map.next_value::<String>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(Some(kept))
        }
    }
    d.deserialize_option(Visitor)
}

#[cfg(test)]
impl From<&Pod> for PodFacts {
    /// What the API server would have sent for `pod`, decoded as havoc decodes it.
    fn from(pod: &Pod) -> Self {
        serde_json::from_value(serde_json::to_value(pod).expect("a Pod serializes"))
            .expect("a Pod decodes as PodFacts")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A pod as the API server sends it: containers, volumes, managed fields and a
    /// `kubectl apply` annotation that [`PodFacts`] skips, and what it keeps.
    fn full() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-abc-1", "namespace": "d", "uid": "u-1", "resourceVersion": "42",
                "generateName": "web-abc-",
                "labels": {"app": "web", "pod-template-hash": "abc"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": [1, 2, 3]}",
                    MIRROR_ANNOTATION: "hash",
                    REVERT_ANNOTATION: "{\"v\":1}",
                    "other": "x"
                },
                "creationTimestamp": "2026-11-22T10:00:00Z",
                "deletionTimestamp": "2026-11-22T10:05:00Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "2", "controller": true}],
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                    "apiVersion": "v1", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]
            },
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "image": "pause", "env": [{"name": "A", "value": "1"}]}],
                "volumes": [{"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-22T10:00:01Z"}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "image": "pause", "imageID": ""}]
            }
        })
    }

    #[test]
    fn keeps_what_selection_reads_and_skips_the_rest() {
        let facts: PodFacts = serde_json::from_value(full()).expect("decodes");
        let m = &facts.metadata;
        assert_eq!(m.name.as_deref(), Some("web-abc-1"));
        assert_eq!(m.namespace.as_deref(), Some("d"));
        assert_eq!(m.uid.as_deref(), Some("u-1"));
        assert_eq!(m.resource_version.as_deref(), Some("42"));
        assert_eq!(m.labels.as_ref().map(BTreeMap::len), Some(2));
        assert_eq!(
            m.annotations
                .as_ref()
                .map(|a| a.keys().cloned().collect::<Vec<_>>()),
            Some({
                let mut kept = vec![MIRROR_ANNOTATION.to_string(), REVERT_ANNOTATION.to_string()];
                kept.sort();
                kept
            }),
            "only the annotations havoc reads"
        );
        assert!(m.creation_timestamp.is_some() && m.deletion_timestamp.is_some());
        assert_eq!(m.owner_references.as_ref().map(Vec::len), Some(1));
        assert!(m.managed_fields.is_none() && m.generate_name.is_none());
        assert_eq!(facts.spec.and_then(|s| s.node_name).as_deref(), Some("n1"));
        let status = facts.status.expect("status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let conditions = status.conditions.expect("conditions");
        assert_eq!(
            (conditions[0].type_.as_str(), conditions[0].status.as_str()),
            ("Ready", "True")
        );
    }

    #[test]
    fn decodes_what_pod_decodes() {
        // The bare minimum, nulls where the API server may send them, and a full pod:
        // whatever `Pod` accepts, `PodFacts` accepts, with the same facts.
        for value in [
            json!({"metadata": {}}),
            json!({"metadata": {"name": "p", "annotations": null, "labels": null}, "spec": null, "status": null}),
            json!({"metadata": {"name": "p"}, "spec": {"containers": []}, "status": {"conditions": null}}),
            full(),
        ] {
            let pod: Pod = serde_json::from_value(value.clone()).expect("Pod");
            let facts: PodFacts = serde_json::from_value(value).expect("PodFacts");
            let round = PodFacts::from(&pod);
            assert_eq!(facts.metadata.name, round.metadata.name);
            assert_eq!(facts.metadata.annotations, round.metadata.annotations);
            assert_eq!(
                facts.status.and_then(|s| s.phase),
                pod.status.and_then(|s| s.phase)
            );
        }
    }

    #[test]
    fn is_listed_and_watched_at_the_pods_path() {
        use kube::Resource;
        assert_eq!(PodFacts::kind(&()), "Pod");
        assert_eq!(PodFacts::api_version(&()), "v1");
        assert_eq!(
            PodFacts::url_path(&(), Some("d")),
            "/api/v1/namespaces/d/pods"
        );
    }
}
