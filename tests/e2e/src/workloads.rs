//! Workloads and objects for fault tests, each in the test's own namespace: Deployments
//! whose simulated pods get Ready within about a second, VirtualServices, and readers of
//! the state havoc changes.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Context as _;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Node, Pod},
    networking::v1::NetworkPolicy,
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client, ResourceExt,
    api::{
        ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    },
};
use serde_json::{Value, json};

use crate::{poll, wait_available, wait_for_object};

/// The annotation that holds havoc's revert record.
pub const REVERT: &str = "havoc.dev/revert";

/// A Deployment `name` (label `app=name`) of `replicas` pods that are Ready about a
/// second after they start, spread over the nodes.
pub async fn deployment(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
) -> anyhow::Result<Deployment> {
    deployment_on(client, ns, name, replicas, None).await
}

/// The label and taint of a test's own node pool.
pub const POOL: &str = "havoc-e2e/pool";

/// [`deployment`], on the nodes of `pool` only (see [`node_pool`]).
pub async fn deployment_on(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
    pool: Option<&str>,
) -> anyhow::Result<Deployment> {
    let mut d = quick_pods(ns, name, replicas)?;
    if let Some(pool) = pool
        && let Some(spec) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut())
    {
        spec.node_selector = Some([(POOL.to_string(), pool.to_string())].into());
        spec.tolerations = Some(vec![pool_toleration(pool)?]);
    }
    create_available(client, ns, &d).await
}

/// [`deployment_on`] a node `pool`, with at most one pod more on any node than on another
/// (`DoNotSchedule`): a test that drains one node needs the pods spread, and the
/// scheduler's `ScheduleAnyway` preference alone put all three pods of a 3-node pool on
/// one node about once in eight runs (2026-12-05).
pub async fn deployment_spread_on(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
    pool: &str,
) -> anyhow::Result<Deployment> {
    let mut d = quick_pods(ns, name, replicas)?;
    if let Some(spec) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.node_selector = Some([(POOL.to_string(), pool.to_string())].into());
        spec.tolerations = Some(vec![pool_toleration(pool)?]);
        for c in spec.topology_spread_constraints.iter_mut().flatten() {
            c.when_unsatisfiable = "DoNotSchedule".to_string();
        }
    }
    create_available(client, ns, &d).await
}

/// A Deployment `name` (label `app=name`) of `replicas` pods pinned to `node` of the
/// test's node `pool` (see [`node_pool`]), Ready about a second after they start.
pub async fn deployment_pinned(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
    pool: &str,
    node: &str,
) -> anyhow::Result<Deployment> {
    let mut d = quick_pods(ns, name, replicas)?;
    if let Some(spec) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.node_selector =
            Some([("kubernetes.io/hostname".to_string(), node.to_string())].into());
        spec.tolerations = Some(vec![pool_toleration(pool)?]);
        spec.topology_spread_constraints = None;
    }
    create_available(client, ns, &d).await
}

/// The Deployment of [`deployment`], not created yet.
fn quick_pods(ns: &str, name: &str, replicas: i32) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {
                        "pod-ready.stage.kwok.x-k8s.io/delay": "1s",
                        "pod-ready.stage.kwok.x-k8s.io/jitter-delay": "1s",
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "main", "image": "registry.invalid/app:1"}],
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": {"app": name}},
                    }],
                }
            }
        }
    }))?)
}

/// The toleration of the taint on the nodes of `pool`.
fn pool_toleration(pool: &str) -> anyhow::Result<k8s_openapi::api::core::v1::Toleration> {
    Ok(serde_json::from_value(json!({
        "key": POOL, "operator": "Equal", "value": pool, "effect": "NoSchedule"
    }))?)
}

/// Creates the Deployment `d` in `ns` and waits (90 s at most) until it is available.
pub async fn create_available(
    client: &Client,
    ns: &str,
    d: &Deployment,
) -> anyhow::Result<Deployment> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let created = api.create(&PostParams::default(), d).await?;
    wait_available(&api, &created.name_any(), Duration::from_secs(90)).await
}

/// Waits until Deployment `name` of `api` has `n` replicas (a fault holds it there, or
/// its revert restored it).
pub async fn wait_replicas(
    api: &Api<Deployment>,
    name: &str,
    n: i32,
    timeout: Duration,
) -> anyhow::Result<Deployment> {
    poll(timeout, &format!("{name} at {n} replica(s)"), || async {
        let d = api.get(name).await?;
        Ok((replicas(&d) == n).then_some(d))
    })
    .await
}

/// A PodDisruptionBudget keeping `min_available` pods of `app=app` in `ns`: with all of
/// them required, every eviction is refused (429).
pub async fn disruption_budget(
    client: &Client,
    ns: &str,
    app: &str,
    min_available: i32,
) -> anyhow::Result<()> {
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": app, "namespace": ns},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}},
    }))?;
    Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pdb)
        .await?;
    Ok(())
}

pub fn virtual_services(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// A VirtualService `name` (label `app=name`) with these HTTP routes.
pub async fn virtual_service(
    client: &Client,
    ns: &str,
    name: &str,
    http: Value,
) -> anyhow::Result<DynamicObject> {
    let api = virtual_services(client, ns);
    let mut vs = DynamicObject::new(
        name,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "VirtualService",
        )),
    )
    .within(ns);
    vs.metadata.labels = Some([("app".to_string(), name.to_string())].into());
    vs.data = json!({"spec": {"hosts": [name], "http": http}});
    Ok(api.create(&PostParams::default(), &vs).await?)
}

/// The nodes, by name.
pub async fn nodes(client: &Client) -> anyhow::Result<Vec<Node>> {
    Ok(Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items)
}

/// How many pods of `ns` matching `selector` (all of them: "") are on `node`, not
/// terminating.
pub async fn pods_on_node(
    client: &Client,
    ns: &str,
    selector: &str,
    node: &str,
) -> anyhow::Result<usize> {
    let mut params = ListParams::default();
    if !selector.is_empty() {
        params = params.labels(selector);
    }
    Ok(Api::<Pod>::namespaced(client.clone(), ns)
        .list(&params)
        .await?
        .items
        .iter()
        .filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                && p.metadata.deletion_timestamp.is_none()
        })
        .count())
}

/// Cordons (`true`) or uncordons a node, as `kubectl cordon` does.
pub async fn cordon(client: &Client, node: &str, on: bool) -> anyhow::Result<()> {
    Api::<Node>::all(client.clone())
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": on}})),
        )
        .await?;
    Ok(())
}

pub fn unschedulable(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

/// Whether `o` holds a havoc revert record: the annotation, with the label that lets
/// havoc's watches select it. One without the other is havoc's bug, and fails here.
pub fn has_record<K: ResourceExt>(o: &K) -> bool {
    let annotated = o.annotations().contains_key(REVERT);
    let labelled = o.labels().get(REVERT).is_some_and(|v| v == "true");
    assert_eq!(
        annotated,
        labelled,
        "{} holds the revert annotation and its label apart: {:?} / {:?}",
        o.name_any(),
        o.annotations().get(REVERT),
        o.labels().get(REVERT)
    );
    annotated
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The NetworkPolicies havoc created in a namespace.
pub async fn havoc_network_policies(
    client: &Client,
    ns: &str,
) -> anyhow::Result<Vec<NetworkPolicy>> {
    Ok(Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=havoc"))
        .await?
        .items)
}

/// What of an object a revert must restore exactly: labels, annotations and spec
/// (server-managed fields — status, resourceVersion, managedFields, generation — left out).
pub fn restorable(o: &Value) -> Value {
    json!({
        "labels": o["metadata"]["labels"],
        "annotations": o["metadata"]["annotations"],
        "spec": o["spec"],
    })
}

pub fn as_value<K: serde::Serialize>(o: &K) -> anyhow::Result<Value> {
    serde_json::to_value(o).context("serialize")
}

/// `n` KWOK nodes of a test's own (`POOL=pool`, tainted so that no other pod lands
/// there), Ready; deleted by [`delete_node_pool`].
pub async fn node_pool(client: &Client, pool: &str, n: usize) -> anyhow::Result<Vec<String>> {
    add_pool_nodes(client, pool, 0..n).await
}

/// Nodes `pool-i` for `i` in `range` of [`node_pool`]'s kind (a pool grows by calling
/// this again with the next range), Ready.
pub async fn add_pool_nodes(
    client: &Client,
    pool: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = range.map(|i| format!("{pool}-{i}")).collect();
    for name in &names {
        create_pool_node(client, pool, name, None).await?;
    }
    wait_nodes_ready(client, names.iter()).await?;
    Ok(names)
}

/// Grows node `pool` ([`node_pool`]) to at least `n` nodes.
pub async fn grow_pool(client: &Client, pool: &str, n: usize) -> anyhow::Result<()> {
    let have = Api::<Node>::all(client.clone())
        .list_metadata(&ListParams::default().labels(&format!("{POOL}={pool}")))
        .await?
        .items
        .len();
    if have < n {
        add_pool_nodes(client, pool, have..n).await?;
    }
    Ok(())
}

/// The label of a node's failure domain.
pub const ZONE: &str = "topology.kubernetes.io/zone";

/// A node pool of [`node_pool`]'s kind over zones: for each `(zone, n)`, `n` nodes
/// `pool-zone-i` labelled `topology.kubernetes.io/zone=pool-zone`, Ready. Deleted by
/// [`delete_node_pool`].
pub async fn zoned_pool(
    client: &Client,
    pool: &str,
    zones: &[(&str, usize)],
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    for (zone, n) in zones {
        let zone = format!("{pool}-{zone}");
        let names: Vec<String> = (0..*n).map(|i| format!("{zone}-{i}")).collect();
        for name in &names {
            create_pool_node(client, pool, name, Some(&zone)).await?;
        }
        out.insert(zone, names);
    }
    wait_nodes_ready(client, out.values().flatten()).await?;
    Ok(out)
}

/// Creates KWOK node `name` of `pool` (labelled `POOL=pool`, tainted for it), in `zone`.
async fn create_pool_node(
    client: &Client,
    pool: &str,
    name: &str,
    zone: Option<&str>,
) -> anyhow::Result<()> {
    let mut labels = json!({
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
        "type": "kwok", POOL: pool,
    });
    if let Some(zone) = zone {
        labels[ZONE] = json!(zone);
    }
    let node: Node = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": labels,
        },
        "spec": {"taints": [{"key": POOL, "value": pool, "effect": "NoSchedule"}]},
    }))?;
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await?;
    Ok(())
}

/// Waits (60 s at most each) until these nodes are Ready.
async fn wait_nodes_ready(
    client: &Client,
    names: impl Iterator<Item = &String>,
) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    for name in names {
        wait_for_object(
            api.clone(),
            name,
            |n: Option<&Node>| {
                n.and_then(|n| n.status.as_ref()?.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            },
            Duration::from_secs(60),
            "pool node Ready",
        )
        .await?;
    }
    Ok(())
}

pub async fn delete_node_pool(client: &Client, pool: &str) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    for n in api
        .list(&ListParams::default().labels(&format!("{POOL}={pool}")))
        .await?
    {
        api.delete(&n.name_any(), &Default::default()).await?;
    }
    Ok(())
}

/// Waits until Prometheus has scraped every Deployment of `ns` (at least `count`) with
/// all replicas available, and no alert about `ns` fires: a workload just created is
/// briefly unavailable, and the alert that sets off must not land in an experiment.
pub async fn monitoring_settled(env: &crate::Env, ns: &str, count: usize) -> anyhow::Result<()> {
    let query = format!(
        "kube_deployment_spec_replicas{{namespace=\"{ns}\"}} - kube_deployment_status_replicas_available{{namespace=\"{ns}\"}}"
    );
    crate::poll(
        Duration::from_secs(90),
        "Prometheus sees the workloads available",
        || async {
            let results = crate::prometheus_query(env, &query).await?;
            let all_zero = results.iter().all(|r| r["value"][1].as_str() == Some("0"));
            Ok((results.len() >= count && all_zero).then_some(()))
        },
    )
    .await?;
    crate::wait_alert_gone(env, &[("namespace", ns)], Duration::from_secs(60)).await
}
