//! Test fixtures: snapshots of a made-up cluster.

use std::collections::BTreeMap;

use chrono::Utc;

use super::{NamespaceInfo, PodInfo, Snapshot};
use crate::record::ObjectRef;

/// A Running, Ready, hour-old pod `name` of Deployment `workload` in `namespace`.
pub fn pod(namespace: &str, workload: &str, name: &str) -> PodInfo {
    PodInfo {
        namespace: namespace.into(),
        name: name.into(),
        labels: BTreeMap::from([("app".into(), workload.into())]),
        created: Utc::now() - chrono::Duration::hours(1),
        running: true,
        terminating: false,
        ready: true,
        owner: Some(ObjectRef::namespaced("Deployment", namespace, workload)),
        node: Some("node-0".into()),
        mirror: false,
    }
}

/// One namespace holding `replicas` ready pods `WORKLOAD-0..` of one Deployment.
pub fn snapshot(namespace: &str, workload: &str, replicas: usize) -> Snapshot {
    let pods = (0..replicas)
        .map(|i| pod(namespace, workload, &format!("{workload}-{i}")))
        .collect();
    let ns = NamespaceInfo {
        name: namespace.into(),
        labels: BTreeMap::new(),
    };
    Snapshot {
        pods,
        namespaces: BTreeMap::from([(namespace.to_string(), ns)]),
        ..Snapshot::default()
    }
}
