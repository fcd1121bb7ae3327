//! What each fault reads, needs and records, through the registry.

use serde_json::json;

use std::collections::BTreeMap;

use super::*;
use crate::{
    policy::{domain::WorkloadKind, fixtures},
    targets::scope::{Namespaces, Nodes},
};

const OWN: &str = "havoc-system";

fn names(n: &[&str]) -> Option<Namespaces> {
    Some(Namespaces::names(n.iter().copied()))
}

#[test]
fn named_namespaces_are_watched_alone_with_havocs_own() {
    let p = fixtures::policy("p").namespaces(&["a", "b"]).build();
    let n = needs_of([&p], OWN);
    assert_eq!(n.pods, names(&["a", "b", OWN]));
    assert_eq!((n.workloads, n.autoscalers, n.nodes), (None, None, None));
    assert!(n.rollouts.is_empty());
}

#[test]
fn a_selector_needs_the_namespaces_it_matches_not_the_cluster() {
    let p = fixtures::policy("p")
        .set("/target/namespaceSelector", json!("env=staging"))
        .build();
    let matching = |names: &[&str]| {
        Some(Namespaces::Matching {
            names: names.iter().map(|n| n.to_string()).collect(),
            selectors: vec!["env=staging".parse().expect("selector")],
        })
    };
    assert_eq!(needs_of([&p], OWN).pods, matching(&[OWN]));
    // with a policy naming its namespaces: both, still not the cluster
    let q = fixtures::policy("q").namespaces(&["a"]).build();
    let set = needs_of([&q, &p], OWN);
    assert_eq!(set.pods, matching(&["a", OWN]));
    assert_eq!(needs_of([&q], OWN).pods, names(&["a", OWN]));
    // resolved against the namespaces' labels
    let labels = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    let (staging, prod) = (labels(&[("env", "staging")]), labels(&[("env", "prod")]));
    let resolved =
        set.pods
            .expect("pods")
            .resolve([("s1", &staging), ("p1", &prod), ("s2", &staging)]);
    assert_eq!(resolved, Namespaces::names(["a", OWN, "s1", "s2"]));
}

#[test]
fn each_fault_reads_its_kinds() {
    let scale = fixtures::policy("s")
        .namespaces(&["a"])
        .kind("Deployment")
        .fault(json!({"scale": {"replicas": 0}}))
        .build();
    let n = needs_of([&scale], OWN);
    assert_eq!(n.pods, names(&[OWN]), "only to know havoc's own workload");
    assert_eq!(n.workloads, names(&["a"]));
    assert_eq!(n.autoscalers, names(&["a"]));

    let drain = fixtures::policy("d")
        .kind("Node")
        .fault(json!({"nodeDrain": {}}))
        .build();
    let n = needs_of([&drain], OWN);
    assert_eq!(
        n.pods,
        names(&[OWN]),
        "its nodes' pods are read, not watched"
    );
    assert_eq!(n.nodes, Some(Nodes::All), "no selector: any node");
    assert!(n.node_pods);
    let hosting = fixtures::policy("d")
        .set(
            "/target",
            json!({"kind": "Node", "selector": "pool=a", "withPodsIn": ["a"]}),
        )
        .fault(json!({"nodeDrain": {}}))
        .build();
    let n = needs_of([&hosting], OWN);
    assert_eq!(n.pods, names(&["a", OWN]), "which nodes run their pods");
    let pool_a = "pool=a".parse().expect("selector");
    assert_eq!(
        n.nodes,
        Some(Nodes::Matching(vec![pool_a])),
        "the nodes of its pool (and the cordoned ones), not every node"
    );
    let zone = fixtures::policy("z")
        .set("/target", json!({"kind": "Node", "selector": "pool=a"}))
        .fault(json!({"zoneOutage": {}}))
        .set("/limits", json!({"maxUnschedulableNodes": 3}))
        .build();
    assert_eq!(
        needs_of([&hosting, &zone], OWN).nodes,
        Some(Nodes::All),
        "a zone outage weighs every zone"
    );
    let pool_b = fixtures::policy("b")
        .set("/target", json!({"kind": "Node", "selector": "pool=b"}))
        .fault(json!({"nodeDrain": {}}))
        .build();
    assert_eq!(
        needs_of([&hosting, &pool_b, &hosting], OWN).nodes,
        Some(Nodes::Matching(vec![
            "pool=a".parse().expect("selector"),
            "pool=b".parse().expect("selector")
        ]))
    );

    let cut = fixtures::policy("c")
        .namespaces(&["a"])
        .fault(json!({"networkPartition": {}}))
        .build();
    let n = needs_of([&cut], OWN);
    assert_eq!(n.pods, names(&["a", OWN]));
    assert_eq!(n.workloads, names(&["a"]));
    assert_eq!(n.autoscalers, None);

    // no policy: nothing scoped is watched
    assert_eq!(needs_of([], OWN), Needs::default());
}

#[test]
fn rollout_triggers_by_kind() {
    let p = fixtures::policy("r")
        .namespaces(&["a"])
        .set(
            "/triggers",
            json!([
                {"rollout": {"kinds": ["Deployment"], "namespaces": ["a"]}},
                {"rollout": {"kinds": ["Deployment", "StatefulSet"], "namespaces": ["b"]}},
            ]),
        )
        .build();
    let q = fixtures::policy("q")
        .namespaces(&["c"])
        .set(
            "/triggers",
            json!([{"rollout": {"kinds": ["StatefulSet"], "namespaceSelector": "x=y"}}]),
        )
        .build();
    let n = needs_of([&p], OWN);
    assert_eq!(
        n.rollouts,
        BTreeMap::from([
            (
                WorkloadKind::Deployment,
                Namespaces::names(["a", "b"].into_iter())
            ),
            (WorkloadKind::StatefulSet, Namespaces::names(["b"])),
        ])
    );
    let set = needs_of([&p, &q], OWN);
    assert_eq!(
        set.rollouts.get(&WorkloadKind::StatefulSet),
        Some(&Namespaces::Matching {
            names: ["b".to_string()].into(),
            selectors: vec!["x=y".parse().expect("selector")]
        }),
        "the rollout watches take an unresolved selector as the cluster"
    );
    assert_eq!(
        set.rollouts.get(&WorkloadKind::Deployment),
        Some(&Namespaces::names(["a", "b"]))
    );
    assert_eq!(set.rollouts.get(&WorkloadKind::DaemonSet), None);
    assert_eq!(set.pods, names(&["a", "c", OWN]));
}

/// Every fault is registered once, under the name its policies use, and its records'
/// schema exists exactly when it is reversible.
#[test]
fn the_registry_names_each_fault_once() {
    let names: Vec<&str> = registry().iter().map(|k| k.name()).collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for k in registry() {
        assert_eq!(kind(k.name()).map(|f| f.name()), Some(k.name()));
        assert_eq!(k.record_schema().is_some(), k.reversible(), "{}", k.name());
    }
    assert!(kind("podKill").is_none());
}
