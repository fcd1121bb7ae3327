//! What havoc must watch (pure): the kinds and namespaces a policy reads, and their union
//! over the loaded policy set. The watch caches and the rollout triggers follow the
//! union, so that havoc's cost grows with what its policies cover, not with the cluster.
//!
//! A policy that names its namespaces needs those namespaces; a namespace selector (or
//! no namespace list) can match any namespace, now or after a label changes, so it needs
//! the kind cluster-wide. Kinds that carry revert records (Nodes, Deployments,
//! StatefulSets, havoc's NetworkPolicies, VirtualServices) and Namespaces are not scoped
//! here: the recovery sweep must find every record whatever the policies say now (one
//! may be left by a policy since removed, or by another installation), and the pause
//! label of a namespace applies to every policy. Those are small (no pod-sized kind).

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::{
    Policy,
    domain::{Fault, NamespaceScope},
    model::WorkloadKind,
};

/// Which namespaces a watch covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// The whole cluster (one watch).
    All,
    /// These namespaces (one watch each).
    Names(BTreeSet<String>),
}

impl Namespaces {
    pub fn names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Namespaces::Names(names.into_iter().map(str::to_string).collect())
    }

    /// What a policy's namespace rule can match.
    pub fn of(scope: &NamespaceScope) -> Self {
        match scope {
            NamespaceScope::Names(names) => Namespaces::names(names.iter().map(String::as_str)),
            NamespaceScope::All | NamespaceScope::Selector(_) => Namespaces::All,
        }
    }

    pub fn contains(&self, ns: &str) -> bool {
        match self {
            Namespaces::All => true,
            Namespaces::Names(n) => n.contains(ns),
        }
    }

    /// Both (the cluster, if either is).
    pub fn union(self, other: Self) -> Self {
        match (self, other) {
            (Namespaces::Names(mut a), Namespaces::Names(b)) => {
                a.extend(b);
                Namespaces::Names(a)
            }
            _ => Namespaces::All,
        }
    }

    /// With namespace `ns` added.
    pub fn with(self, ns: &str) -> Self {
        self.union(Namespaces::names([ns]))
    }
}

/// `a ∪ b` where `None` is "not watched".
fn join(a: Option<Namespaces>, b: Option<Namespaces>) -> Option<Namespaces> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.union(b)),
        (a, b) => a.or(b),
    }
}

/// What one policy, or a set of them, reads. `None`: not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Pods, and the ReplicaSets that resolve their owners (same namespaces: a pod's
    /// ReplicaSet is in its namespace).
    pub pods: Option<Namespaces>,
    /// Deployments and StatefulSets as targets (scale, partition).
    pub workloads: Option<Namespaces>,
    /// HorizontalPodAutoscalers (a scaled workload is never a scale target).
    pub autoscalers: Option<Namespaces>,
    /// Nodes as targets.
    pub nodes: bool,
    /// VirtualServices as targets.
    pub virtual_services: bool,
    /// Rollout triggers: the workloads watched for completed rollouts, by kind.
    pub rollouts: BTreeMap<WorkloadKind, Namespaces>,
}

impl Needs {
    /// What `policy` reads. `own_namespace` is havoc's: its pods are read by every
    /// selection that must recognise havoc (its own pod and replicas, the node it runs
    /// on, its own workload), so it is watched whenever pods are read at all.
    pub fn of_policy(policy: &Policy, own_namespace: &str) -> Self {
        let target = Namespaces::of(&policy.target.namespaces);
        let own = || Some(Namespaces::names([own_namespace]));
        let mut needs = match &policy.fault {
            Fault::PodDelete { .. } | Fault::PodEvict { .. } => Needs {
                pods: Some(target.with(own_namespace)),
                ..Needs::default()
            },
            // A partition selects pods, then cuts off their workload.
            Fault::NetworkPartition { .. } => Needs {
                pods: Some(target.clone().with(own_namespace)),
                workloads: Some(target),
                ..Needs::default()
            },
            // A drain evicts every pod of its node, whatever its namespace, and must know
            // which nodes run havoc: every pod of the cluster.
            Fault::NodeDrain { .. } => Needs {
                pods: Some(Namespaces::All),
                nodes: true,
                ..Needs::default()
            },
            // Never havoc's own workload: its pods tell which one that is.
            Fault::Scale { .. } => Needs {
                pods: own(),
                workloads: Some(target.clone()),
                autoscalers: Some(target),
                ..Needs::default()
            },
            Fault::HttpFault(_) => Needs {
                virtual_services: true,
                ..Needs::default()
            },
        };
        for rule in &policy.triggers {
            for kind in &rule.kinds {
                let ns = Namespaces::of(&rule.namespaces);
                let joined = join(needs.rollouts.remove(kind), Some(ns));
                needs.rollouts.extend(joined.map(|n| (*kind, n)));
            }
        }
        needs
    }

    /// What every policy of a set reads together.
    pub fn of_set<'a>(policies: impl IntoIterator<Item = &'a Policy>, own_namespace: &str) -> Self {
        policies
            .into_iter()
            .map(|p| Needs::of_policy(p, own_namespace))
            .fold(Needs::default(), Needs::union)
    }

    pub fn union(self, other: Self) -> Self {
        let mut rollouts = self.rollouts;
        for (kind, ns) in other.rollouts {
            let joined = join(rollouts.remove(&kind), Some(ns));
            rollouts.extend(joined.map(|n| (kind, n)));
        }
        Needs {
            pods: join(self.pods, other.pods),
            workloads: join(self.workloads, other.workloads),
            autoscalers: join(self.autoscalers, other.autoscalers),
            nodes: self.nodes || other.nodes,
            virtual_services: self.virtual_services || other.virtual_services,
            rollouts,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::fixtures;

    const OWN: &str = "havoc-system";

    fn names(n: &[&str]) -> Option<Namespaces> {
        Some(Namespaces::names(n.iter().copied()))
    }

    #[test]
    fn named_namespaces_are_watched_alone_with_havocs_own() {
        let p = fixtures::policy("p").namespaces(&["a", "b"]).build();
        let n = Needs::of_policy(&p, OWN);
        assert_eq!(n.pods, names(&["a", "b", OWN]));
        assert_eq!((n.workloads, n.autoscalers, n.nodes), (None, None, false));
        assert!(n.rollouts.is_empty());
    }

    #[test]
    fn a_selector_or_no_namespace_list_needs_the_cluster() {
        let p = fixtures::policy("p")
            .set("/target/namespaceSelector", json!("env=staging"))
            .build();
        assert_eq!(Needs::of_policy(&p, OWN).pods, Some(Namespaces::All));
        // one selector policy widens the union for every policy
        let q = fixtures::policy("q").namespaces(&["a"]).build();
        let set = Needs::of_set([&q, &p], OWN);
        assert_eq!(set.pods, Some(Namespaces::All));
        assert_eq!(Needs::of_set([&q], OWN).pods, names(&["a", OWN]));
    }

    #[test]
    fn each_fault_reads_its_kinds() {
        let scale = fixtures::policy("s")
            .namespaces(&["a"])
            .kind("Deployment")
            .fault(json!({"scale": {"replicas": 0}}))
            .build();
        let n = Needs::of_policy(&scale, OWN);
        assert_eq!(n.pods, names(&[OWN]), "only to know havoc's own workload");
        assert_eq!(n.workloads, names(&["a"]));
        assert_eq!(n.autoscalers, names(&["a"]));

        let drain = fixtures::policy("d")
            .kind("Node")
            .fault(json!({"nodeDrain": {}}))
            .build();
        let n = Needs::of_policy(&drain, OWN);
        assert_eq!(n.pods, Some(Namespaces::All), "a drain evicts any pod");
        assert!(n.nodes);

        let cut = fixtures::policy("c")
            .namespaces(&["a"])
            .fault(json!({"networkPartition": {}}))
            .build();
        let n = Needs::of_policy(&cut, OWN);
        assert_eq!(n.pods, names(&["a", OWN]));
        assert_eq!(n.workloads, names(&["a"]));
        assert_eq!(n.autoscalers, None);

        // no policy: nothing scoped is watched
        assert_eq!(Needs::of_set([], OWN), Needs::default());
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
        let n = Needs::of_policy(&p, OWN);
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
        let set = Needs::of_set([&p, &q], OWN);
        assert_eq!(
            set.rollouts.get(&WorkloadKind::StatefulSet),
            Some(&Namespaces::All)
        );
        assert_eq!(
            set.rollouts.get(&WorkloadKind::Deployment),
            Some(&Namespaces::names(["a", "b"]))
        );
        assert_eq!(set.rollouts.get(&WorkloadKind::DaemonSet), None);
        assert_eq!(set.pods, names(&["a", "c", OWN]));
    }
}
