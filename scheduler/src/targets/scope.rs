//! What havoc must watch (pure): the kinds and namespaces a policy reads, and their union
//! over the loaded policy set. The watch caches and the rollout triggers follow the
//! union, so that havoc's cost grows with what its policies cover, not with the cluster.
//!
//! A policy that names its namespaces needs those namespaces; a namespace selector needs
//! the namespaces its selector matches ([`Namespaces::Matching`]), which the watch caches
//! resolve against the Namespaces they watch, again whenever a namespace's labels change;
//! no namespace list needs the kind cluster-wide. Kinds that carry revert records (Nodes, Deployments,
//! StatefulSets, havoc's NetworkPolicies, VirtualServices) and Namespaces are not scoped
//! here: the recovery sweep must find every record whatever the policies say now (one
//! may be left by a policy since removed, or by another installation), and the pause
//! label of a namespace applies to every policy. Those are small (no pod-sized kind).

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::{
    Policy, domain::NamespaceScope, domain::WorkloadKind, selector::LabelSelector, set::PolicySet,
};

/// Which namespaces a watch covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// The whole cluster (one watch).
    All,
    /// These namespaces (one watch each).
    Names(BTreeSet<String>),
    /// These namespaces and those whose labels match one of the selectors: resolved to
    /// [`Namespaces::Names`] with the namespaces' labels ([`Namespaces::resolve`]) by
    /// whoever watches. A follower that cannot resolve it watches the whole cluster.
    Matching {
        names: BTreeSet<String>,
        selectors: Vec<LabelSelector>,
    },
}

impl Namespaces {
    pub fn names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Namespaces::Names(names.into_iter().map(str::to_string).collect())
    }

    /// What a policy's namespace rule can match.
    pub fn of(scope: &NamespaceScope) -> Self {
        match scope {
            NamespaceScope::Names(names) => Namespaces::names(names.iter().map(String::as_str)),
            NamespaceScope::Selector(s) => Namespaces::Matching {
                names: BTreeSet::new(),
                selectors: vec![s.clone()],
            },
            NamespaceScope::All => Namespaces::All,
        }
    }

    /// Whether `ns` is covered; unresolved selectors may match any namespace.
    pub fn contains(&self, ns: &str) -> bool {
        match self {
            Namespaces::All | Namespaces::Matching { .. } => true,
            Namespaces::Names(n) => n.contains(ns),
        }
    }

    /// Both (the cluster, if either is).
    pub fn union(self, other: Self) -> Self {
        match (self, other) {
            (Namespaces::All, _) | (_, Namespaces::All) => Namespaces::All,
            (Namespaces::Names(mut a), Namespaces::Names(b)) => {
                a.extend(b);
                Namespaces::Names(a)
            }
            (a, b) => {
                let (mut names, mut selectors) = a.parts();
                let (more, others) = b.parts();
                names.extend(more);
                for s in others {
                    if !selectors.contains(&s) {
                        selectors.push(s);
                    }
                }
                Namespaces::Matching { names, selectors }
            }
        }
    }

    /// The names and selectors of a scope that is not the whole cluster.
    fn parts(self) -> (BTreeSet<String>, Vec<LabelSelector>) {
        match self {
            Namespaces::Names(names) => (names, Vec::new()),
            Namespaces::Matching { names, selectors } => (names, selectors),
            Namespaces::All => (BTreeSet::new(), Vec::new()),
        }
    }

    /// The namespaces this covers among `namespaces` (each with its labels): a
    /// [`Namespaces::Matching`] becomes the names it lists and those a selector matches;
    /// the others are what they are.
    pub fn resolve<'a>(
        &self,
        namespaces: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
    ) -> Namespaces {
        match self {
            Namespaces::Matching { names, selectors } => {
                let mut out = names.clone();
                out.extend(
                    namespaces
                        .into_iter()
                        .filter(|(_, labels)| selectors.iter().any(|s| s.matches(labels)))
                        .map(|(n, _)| n.to_string()),
                );
                Namespaces::Names(out)
            }
            other => other.clone(),
        }
    }

    /// With namespace `ns` added.
    pub fn with(self, ns: &str) -> Self {
        self.union(Namespaces::names([ns]))
    }
}

/// Which Nodes a policy reads as targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nodes {
    /// Every node (a zone outage weighs every zone; a drain without a selector may take
    /// any node).
    All,
    /// The nodes one of these (non-empty) selectors matches, and every cordoned node: the
    /// cordons are all that `maxUnschedulableNodes` counts beyond a drain's own nodes. A
    /// node pool's status updates (every node's, every few seconds) then cost havoc
    /// nothing outside the pools its policies drain.
    Matching(Vec<LabelSelector>),
}

impl Nodes {
    /// The nodes a node selector picks from.
    pub fn of(selector: &LabelSelector) -> Self {
        if selector.is_empty() {
            Nodes::All
        } else {
            Nodes::Matching(vec![selector.clone()])
        }
    }

    pub fn union(self, other: Self) -> Self {
        match (self, other) {
            (Nodes::Matching(mut a), Nodes::Matching(b)) => {
                for s in b {
                    if !a.contains(&s) {
                        a.push(s);
                    }
                }
                Nodes::Matching(a)
            }
            _ => Nodes::All,
        }
    }
}

/// What follows the policy set (start-up and every reload): the watch caches, the rollout
/// watches, the arbiter. The reloader calls each with the new set and what it needs
/// ([`crate::fault::needs_of`]): one place follows the policies, not a loop per follower.
pub trait FollowsPolicies: Send + Sync + std::fmt::Debug {
    fn policies_changed(&self, set: &PolicySet, needs: &Needs);
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
    /// Nodes as targets: those the policies' selectors match and every cordoned node
    /// (the `maxUnschedulableNodes` guard counts them), or every node.
    pub nodes: Option<Nodes>,
    /// The pods of the nodes it chooses, read from the API server when it chooses them
    /// (by `spec.nodeName`, with the other replicas of their workloads), never watched:
    /// a drain may evict any pod of its node, and a watch of every pod would make havoc's
    /// cost grow with the cluster ([`super::snapshot::SnapshotSource::node_pods`]).
    pub node_pods: bool,
    /// VirtualServices as targets.
    pub virtual_services: bool,
    /// Rollout triggers: the workloads watched for completed rollouts, by kind.
    pub rollouts: BTreeMap<WorkloadKind, Namespaces>,
}

impl Needs {
    /// What the rollout triggers of `policy` read: the workloads of each kind they name,
    /// in their namespaces. (What its fault reads: [`crate::fault::FaultKind::needs`].)
    pub fn of_triggers(policy: &Policy) -> Self {
        let mut needs = Needs::default();
        for rule in &policy.triggers {
            for kind in &rule.kinds {
                let ns = Namespaces::of(&rule.namespaces);
                let joined = join(needs.rollouts.remove(kind), Some(ns));
                needs.rollouts.extend(joined.map(|n| (*kind, n)));
            }
        }
        needs
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
            nodes: match (self.nodes, other.nodes) {
                (Some(a), Some(b)) => Some(a.union(b)),
                (a, b) => a.or(b),
            },
            node_pods: self.node_pods || other.node_pods,
            virtual_services: self.virtual_services || other.virtual_services,
            rollouts,
        }
    }
}
