//! The pods a drain acts on, read when it has chosen its nodes ([`Needs::node_pods`]):
//! the pods bound to those nodes (a list by `spec.nodeName`, in pages), and every pod of
//! the workloads they belong to, wherever it runs (a list by the workload's selector), so
//! that `minAvailableReplicas` counts a workload's ready replicas as it did when every pod
//! was watched. What this costs grows with the chosen nodes and their workloads, once per
//! drain, not with the cluster.
//!
//! [`Needs::node_pods`]: super::scope::Needs::node_pods

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::apps::v1::{Deployment, ReplicaSet, StatefulSet},
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use kube::{Api, Client, api::ListParams, core::Selector};

use super::{
    PodInfo,
    kube::{pod_info, replicaset_owners},
    lean::PodFacts,
};
use crate::record::ObjectRef;

/// Objects per page of a list.
const PAGE: u32 = 500;

/// The pods of `nodes`, and every pod of the workloads whose ready pods run there.
pub async fn read(client: &Client, nodes: &[String]) -> Result<Vec<PodInfo>, kube::Error> {
    let all: Api<PodFacts> = Api::all(client.clone());
    let mut on_nodes = Vec::new();
    for node in nodes {
        let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
        on_nodes.extend(list_pages(&all, lp).await?);
    }
    // A pod's ReplicaSet says which Deployment it belongs to. Listed by name: havoc may
    // list ReplicaSets (the pod watches' owner chain), not get them.
    let mut replicasets: BTreeMap<(String, String), ReplicaSet> = BTreeMap::new();
    for (ns, name) in on_nodes.iter().filter_map(controller_replicaset) {
        if replicasets.contains_key(&(ns.clone(), name.clone())) {
            continue;
        }
        let lp = ListParams::default().fields(&format!("metadata.name={name}"));
        let api = Api::<ReplicaSet>::namespaced(client.clone(), &ns);
        if let Some(rs) = api.list(&lp).await?.items.into_iter().next() {
            replicasets.insert((ns, name), rs);
        }
    }
    let owners = replicaset_owners(replicasets.values());
    let mut out: Vec<PodInfo> = on_nodes.iter().map(|p| pod_info(p, &owners)).collect();
    // Only a ready pod that a drain may evict consults its workload's count.
    let counted: BTreeSet<ObjectRef> = out
        .iter()
        .filter(|p| p.ready && !p.terminating && !p.mirror && !p.is_daemon())
        .filter_map(|p| p.owner.clone())
        .collect();
    for owner in counted {
        out.extend(replicas(client, &owner, &replicasets).await?);
    }
    let mut seen = BTreeSet::new();
    out.retain(|p| seen.insert((p.namespace.clone(), p.name.clone())));
    Ok(out)
}

/// The pods of `pods` bound to `nodes`, and those of the same workloads (what [`read`]
/// reads, from pods already at hand).
pub fn of_nodes(pods: Vec<PodInfo>, nodes: &[String]) -> Vec<PodInfo> {
    let on = |p: &PodInfo| p.node.as_ref().is_some_and(|n| nodes.contains(n));
    let owners: BTreeSet<ObjectRef> = pods
        .iter()
        .filter(|p| on(p))
        .filter_map(|p| p.owner.clone())
        .collect();
    pods.into_iter()
        .filter(|p| on(p) || p.owner.as_ref().is_some_and(|o| owners.contains(o)))
        .collect()
}

/// The (namespace, name) of a pod's controlling ReplicaSet.
fn controller_replicaset(pod: &PodFacts) -> Option<(String, String)> {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")?;
    Some((pod.metadata.namespace.clone()?, owner.name.clone()))
}

/// Every pod of `owner`: listed by its selector (Deployments, StatefulSets,
/// ReplicaSets), or, for another kind of owner (whose selector havoc does not know), its
/// namespace's pods; then only those it owns.
async fn replicas(
    client: &Client,
    owner: &ObjectRef,
    replicasets: &BTreeMap<(String, String), ReplicaSet>,
) -> Result<Vec<PodInfo>, kube::Error> {
    let ns = owner.namespace.clone().unwrap_or_default();
    let selector: Option<LabelSelector> = match owner.kind.as_str() {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), &ns)
            .get_opt(&owner.name)
            .await?
            .and_then(|d| d.spec.map(|s| s.selector)),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), &ns)
            .get_opt(&owner.name)
            .await?
            .and_then(|s| s.spec.map(|s| s.selector)),
        "ReplicaSet" => replicasets
            .get(&(ns.clone(), owner.name.clone()))
            .and_then(|r| r.spec.as_ref().map(|s| s.selector.clone())),
        _ => None,
    };
    let lp = match selector.map(Selector::try_from) {
        Some(Ok(s)) => ListParams::default().labels_from(&s),
        // Gone, or a selector that cannot be written as a query: the namespace.
        _ => ListParams::default(),
    };
    let pods = list_pages(
        &Api::<PodFacts>::namespaced(client.clone(), &ns),
        lp.clone(),
    )
    .await?;
    // A Deployment's pods name their ReplicaSets, which carry its selector's labels.
    let owners = if owner.kind == "Deployment" || owner.kind == "ReplicaSet" {
        let rs = list_pages(&Api::<ReplicaSet>::namespaced(client.clone(), &ns), lp).await?;
        replicaset_owners(&rs)
    } else {
        BTreeMap::new()
    };
    Ok(pods
        .iter()
        .map(|p| pod_info(p, &owners))
        .filter(|p| p.owner.as_ref() == Some(owner))
        .collect())
}

/// Every object of a list, a page at a time.
async fn list_pages<K>(api: &Api<K>, lp: ListParams) -> Result<Vec<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut page = lp.limit(PAGE);
    let mut out = Vec::new();
    loop {
        let list = api.list(&page).await?;
        out.extend(list.items);
        match list.metadata.continue_ {
            Some(token) if !token.is_empty() => page = page.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    use super::*;
    use crate::targets::fixtures::{self as targets, Seen, api_server, requested};

    fn pod(name: &str, node: &str, owner: (&str, &str)) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "d", "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner.0, "name": owner.1, "uid": "1", "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    /// A drain of node-a reads node-a's pods by field selector, and the other replicas of
    /// their Deployment by its selector; never every pod of the cluster.
    #[tokio::test]
    async fn reads_the_nodes_pods_and_their_workloads_replicas() {
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let seen = Seen::default();
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "namespace": "d", "labels": {"app": "web", "pod-template-hash": "abc"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "2", "controller": true}]},
            "spec": {"selector": {"matchLabels": {"app": "web", "pod-template-hash": "abc"}}}});
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "d"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}}}});
        let objects = BTreeMap::from([
            // The API server applies the field selector: only node-a's pods.
            (
                "/api/v1/pods",
                vec![
                    pod("web-abc-1", "node-a", ("ReplicaSet", "web-abc")),
                    pod("agent-x", "node-a", ("DaemonSet", "agent")),
                ],
            ),
            (
                "/api/v1/namespaces/d/pods",
                vec![
                    pod("web-abc-1", "node-a", ("ReplicaSet", "web-abc")),
                    pod("web-abc-2", "node-b", ("ReplicaSet", "web-abc")),
                    pod("other-1", "node-c", ("ReplicaSet", "other")),
                ],
            ),
            ("/apis/apps/v1/namespaces/d/replicasets", vec![rs]),
            ("/apis/apps/v1/namespaces/d/deployments", vec![deployment]),
        ]);
        tokio::spawn(api_server(handle, objects, seen.clone()));
        let client = Client::new(svc, "default");

        let pods = read(&client, &["node-a".to_string()]).await.expect("read");

        let mut names: Vec<(&str, Option<&str>)> = pods
            .iter()
            .map(|p| (p.name.as_str(), p.owner.as_ref().map(|o| o.name.as_str())))
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                ("agent-x", Some("agent")),
                ("web-abc-1", Some("web")),
                ("web-abc-2", Some("web"))
            ]
        );
        let cluster = requested(&seen, "GET /api/v1/pods?");
        assert_eq!(cluster.len(), 1, "{cluster:?}");
        assert!(
            cluster[0].contains("fieldSelector=spec.nodeName%3Dnode-a"),
            "{cluster:?}"
        );
        // ReplicaSets are listed by name (havoc may list them, not get them).
        assert!(requested(&seen, "GET /apis/apps/v1/namespaces/d/replicasets/").is_empty());
        let rs = requested(&seen, "GET /apis/apps/v1/namespaces/d/replicasets?");
        assert!(
            rs.iter()
                .any(|r| r.contains("fieldSelector=metadata.name%3Dweb-abc")),
            "{rs:?}"
        );
        let replicas = requested(&seen, "GET /api/v1/namespaces/d/pods?");
        assert!(
            replicas.len() == 1 && replicas[0].contains("labelSelector=app%3Dweb"),
            "{replicas:?}"
        );
    }

    #[test]
    fn of_nodes_keeps_the_nodes_pods_and_their_workloads_replicas() {
        let mut pods = targets::snapshot("d", "web", 3).pods;
        pods[0].node = Some("a".into());
        pods[1].node = Some("b".into());
        pods[2].node = Some("c".into());
        let mut other = pods[2].clone();
        other.name = "lone".into();
        other.owner = None;
        other.node = Some("c".into());
        pods.push(other);
        let read = of_nodes(pods, &["a".to_string()]);
        let names: Vec<&str> = read.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(!names.contains(&"lone"));
    }
}
