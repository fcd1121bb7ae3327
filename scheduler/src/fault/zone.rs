//! `zoneOutage {timeout}`: takes one failure domain away, as a zone that goes dark would.
//! Among the zones (`topology.kubernetes.io/zone`) that the target's nodes span, it
//! chooses one, cordons every node of it (each cordon with its revert record, as a drain's),
//! then evicts the zone's pods under every guard a drain obeys; the revert uncordons them.
//!
//! Its own guards, beyond the shared ones of node selection:
//! - never the zone of the node havoc itself (this replica, the leader) runs on;
//! - never the last zone with schedulable nodes: another zone must keep at least one
//!   uncordoned node (nodes are "up" here when schedulable: the node cache keeps no
//!   status);
//! - never more cordoned nodes than `limits.maxUnschedulableNodes`, counting others'
//!   cordons and the whole zone; validation makes the policy set that limit itself;
//! - the evictions obey the drain guards (protected and paused namespaces, havoc's own
//!   pods, `minAvailableReplicas` across the whole zone: [`crate::targets::drain_plan`]).
//!
//! Every node is cordoned first, then the zone's pods are evicted together (a zone goes
//! down at once, not node by node), retrying PodDisruptionBudget refusals until `timeout`.
//!
//! RBAC: `patch` on `nodes`, `create` on `pods/eviction` (cluster-wide: a zone's pods can be
//! in any namespace).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use chrono::Utc;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use super::{
    Act, FaultKind, Injection, Plan, PlanInput, Planned, Step,
    access::FaultAccess,
    node::{self, drain_access, drain_needs},
};
use crate::{
    labels::ZONE_LABEL,
    policy::{Policy, domain::Fault},
    record::{ObjectRef, SkipReason},
    targets::{
        Claim, DrainTarget, Guards, NodeInfo, PodInfo, Snapshot, drain_plan,
        scope::{Needs, Nodes},
        select_nodes, still_free,
    },
};

pub const FAULT: &str = "zoneOutage";

/// `zoneOutage`.
#[derive(Debug)]
pub struct ZoneOutage;

impl FaultKind for ZoneOutage {
    fn name(&self) -> &'static str {
        FAULT
    }

    fn access(&self) -> FaultAccess {
        drain_access(
            "zoneOutage: cordon and uncordon every node of the zone, with the revert record in the same patch",
            "zoneOutage: the zone's pods can be in any namespace",
        )
    }

    reversible!(records on Node; reverted by node::revert; original node::Original);

    /// A drain's, but every node: a zone is weighed against every other zone's
    /// schedulable nodes, and havoc's own node's zone is never taken.
    fn needs(&self, policy: &Policy, own_namespace: &str) -> Needs {
        Needs {
            nodes: Some(Nodes::All),
            ..drain_needs(policy, own_namespace)
        }
    }

    /// Every node of the zone it takes away.
    fn choose_nodes(&self, input: PlanInput<'_>) -> Result<Option<Vec<NodeInfo>>, SkipReason> {
        let zone = choose_zone(input.policy, input.snapshot, input.guards, input.rng)?;
        Ok(Some(nodes_of(input.snapshot, &zone)))
    }

    fn plan(&self, input: PlanInput<'_>) -> Plan {
        let Fault::ZoneOutage { timeout } = input.policy.fault else {
            return Err(super::not_mine(self, input.policy));
        };
        let (zone, nodes) = match input.nodes {
            Some(chosen) => {
                let nodes = still_free(input.snapshot, chosen, input.guards)?;
                let zone = nodes.first().and_then(zone_of).unwrap_or_default();
                (zone.to_string(), nodes)
            }
            None => {
                let zone = choose_zone(input.policy, input.snapshot, input.guards, input.rng)?;
                let nodes = nodes_of(input.snapshot, &zone);
                (zone, nodes)
            }
        };
        Ok(Box::new(ZonePlan {
            zone,
            timeout,
            nodes: drain_plan(input.snapshot, nodes, input.guards),
        }))
    }
}

/// The nodes of `zone`.
fn nodes_of(snapshot: &Snapshot, zone: &str) -> Vec<NodeInfo> {
    snapshot
        .nodes
        .iter()
        .filter(|n| zone_of(n) == Some(zone))
        .cloned()
        .collect()
}

fn zone_of(n: &NodeInfo) -> Option<&str> {
    n.labels.get(ZONE_LABEL).map(String::as_str)
}

/// Why a zone is not eligible (the record says it, counted per zone).
const HAVOC_ZONE: &str = "run havoc itself";
const LAST_ZONE: &str = "are the last zone with schedulable nodes";
const TOO_MANY: &str = "would exceed maxUnschedulableNodes";

/// The zone to take away: one at random among those the policy's nodes span that pass
/// every guard, or why there is none.
fn choose_zone(
    policy: &Policy,
    snapshot: &Snapshot,
    guards: &Guards,
    rng: &mut ChaCha8Rng,
) -> Result<String, SkipReason> {
    // The nodes the policy may target (selector, exclusions, minAge; not cordoned, no
    // record, not havoc's own node). `percent: 100`: every candidate, to see its zones.
    let mut rule = policy.target.clone();
    rule.pick = crate::policy::domain::Pick::Percent(100);
    let all_room = Guards {
        max_unschedulable_nodes: u32::MAX,
        ..guards.clone()
    };
    let candidates = select_nodes(&rule, snapshot, &all_room, Utc::now(), rng).into_chosen()?;
    let zones: BTreeSet<&str> = candidates.iter().filter_map(zone_of).collect();
    if zones.is_empty() {
        return Err(SkipReason::NoTarget(format!(
            "none of the {} matching nodes has a {ZONE_LABEL} label",
            candidates.len()
        )));
    }
    // havoc's zone: the node of this replica's own pod.
    let own_node = guards.own_pod.as_ref().and_then(|(ns, name)| {
        snapshot
            .pods
            .iter()
            .find(|p| p.namespace == *ns && p.name == *name)
            .and_then(|p: &PodInfo| p.node.clone())
    });
    let havoc_zone = own_node
        .and_then(|n| snapshot.nodes.iter().find(|x| x.name == n))
        .and_then(|n| zone_of(n).map(str::to_string));
    // Every node of the cluster by zone: (schedulable, all).
    let mut by_zone: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for n in &snapshot.nodes {
        if let Some(z) = zone_of(n) {
            let e = by_zone.entry(z).or_default();
            e.1 += 1;
            e.0 += usize::from(!n.unschedulable);
        }
    }
    let cordoned = snapshot.nodes.iter().filter(|n| n.unschedulable).count();
    let mut dropped: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut eligible: Vec<&str> = Vec::new();
    for z in zones {
        let (up, _) = by_zone.get(z).copied().unwrap_or_default();
        let others_up = by_zone
            .iter()
            .filter(|(other, _)| **other != z)
            .any(|(_, (up, _))| *up > 0);
        let why = if havoc_zone.as_deref() == Some(z) {
            Some(HAVOC_ZONE)
        } else if !others_up {
            Some(LAST_ZONE)
        } else if cordoned + up > guards.max_unschedulable_nodes as usize {
            Some(TOO_MANY)
        } else {
            None
        };
        match why {
            Some(w) => *dropped.entry(w).or_default() += 1,
            None => eligible.push(z),
        }
    }
    match eligible.choose(rng) {
        Some(z) => Ok((*z).to_string()),
        None => {
            let parts: Vec<String> = dropped.iter().map(|(w, n)| format!("{n} {w}")).collect();
            Err(SkipReason::NoTarget(format!(
                "no eligible zone ({})",
                parts.join(", ")
            )))
        }
    }
}

/// The zone a zone outage takes away: its nodes, and the pods evicted from them.
#[derive(Debug)]
struct ZonePlan {
    zone: String,
    timeout: Duration,
    nodes: Vec<DrainTarget>,
}

impl Planned for ZonePlan {
    fn objects(&self) -> Vec<ObjectRef> {
        node::node_objects(&self.nodes)
    }

    fn claims(&self) -> Vec<Claim> {
        node::node_claims(&self.nodes)
    }

    fn injection_time(&self) -> Duration {
        self.timeout
    }

    /// Cordons node `i`; with the last one, evicts the pods of the whole zone together.
    fn inject<'a>(&'a self, act: Act<'a>, i: usize) -> Step<'a, Injection> {
        let last = i + 1 == self.nodes.len();
        let target = DrainTarget {
            node: self.nodes[i].node.clone(),
            evict: if last {
                self.nodes.iter().flat_map(|t| t.evict.clone()).collect()
            } else {
                Vec::new()
            },
            kept: if last {
                self.nodes.iter().flat_map(|t| t.kept.clone()).collect()
            } else {
                Vec::new()
            },
        };
        Box::pin(async move {
            let mut inj = node::inject(act, FAULT, &target, self.timeout).await?;
            inj.detail = inj.detail.map(|d| format!("zone {}: {d}", self.zone));
            Ok(inj)
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use serde_json::json;

    use super::*;
    use crate::{
        policy::fixtures,
        targets::{NodeInfo, fixtures as targets},
    };

    fn node(name: &str, zone: &str, cordoned: bool) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: [
                (ZONE_LABEL.to_string(), zone.to_string()),
                ("pool".to_string(), "z".to_string()),
            ]
            .into(),
            created: Utc::now() - chrono::Duration::hours(1),
            unschedulable: cordoned,
            has_record: false,
        }
    }

    fn policy() -> Policy {
        fixtures::policy("zone")
            .set("/target", json!({"kind": "Node", "selector": "pool=z"}))
            .set("/fault", json!({"zoneOutage": {"timeout": "10s"}}))
            .set("/limits/maxUnschedulableNodes", json!(5))
            .build()
    }

    fn guards(room: u32) -> Guards {
        Guards {
            max_unschedulable_nodes: room,
            min_available_replicas: 1,
            ..Guards::default()
        }
    }

    fn chosen(s: &Snapshot, g: &Guards) -> Result<String, SkipReason> {
        choose_zone(&policy(), s, g, &mut ChaCha8Rng::seed_from_u64(1))
    }

    #[test]
    fn one_zone_is_chosen_and_all_its_nodes_planned() {
        let mut s = targets::snapshot("d", "web", 0);
        s.nodes = vec![
            node("a-1", "a", false),
            node("a-2", "a", false),
            node("b-1", "b", false),
        ];
        let plan = ZoneOutage
            .plan(PlanInput {
                policy: &policy(),
                snapshot: &s,
                guards: &guards(5),
                rng: &mut ChaCha8Rng::seed_from_u64(3),
                nodes: None,
            })
            .expect("a zone");
        let names: Vec<String> = plan.objects().into_iter().map(|o| o.name).collect();
        assert!(
            names == ["a-1", "a-2"] || names == ["b-1"],
            "every node of one zone: {names:?}"
        );
        assert_eq!(plan.claims().len(), names.len(), "its cordons are claimed");
    }

    #[test]
    fn never_havocs_zone_the_last_zone_up_or_more_cordons_than_allowed() {
        let mut s = targets::snapshot("havoc-system", "havoc", 1);
        s.pods[0].node = Some("a-1".into());
        s.nodes = vec![node("a-1", "a", false), node("b-1", "b", false)];
        let mut g = guards(5);
        g.own_pod = Some(("havoc-system".into(), s.pods[0].name.clone()));
        // havoc runs in a: b is the one; then b is the last zone up once a is down.
        assert_eq!(chosen(&s, &g).expect("b"), "b");
        s.nodes[0].unschedulable = true;
        let why = chosen(&s, &g).expect_err("b is the last zone up");
        assert!(why.to_string().contains("last zone"), "{why}");
        // Room for one cordon, a zone of two nodes: refused.
        let mut s = targets::snapshot("d", "web", 0);
        s.nodes = vec![
            node("a-1", "a", false),
            node("a-2", "a", false),
            node("b-1", "b", false),
            node("b-2", "b", false),
        ];
        let why = chosen(&s, &guards(1)).expect_err("too many cordons");
        assert!(why.to_string().contains("maxUnschedulableNodes"), "{why}");
        assert!(chosen(&s, &guards(2)).is_ok());
    }

    #[test]
    fn a_policy_must_say_how_many_nodes_it_may_cordon() {
        let report = crate::policy::load_str(
            std::path::Path::new("zone.yaml"),
            &fixtures::policy("zone")
                .set("/target", json!({"kind": "Node"}))
                .set("/fault", json!({"zoneOutage": {}}))
                .text(),
            &Default::default(),
            crate::policy::Expect::Policies,
        );
        assert!(
            report
                .diagnostics
                .iter()
                .any(|d| d.message.contains("limits.maxUnschedulableNodes")),
            "{:?}",
            report.diagnostics
        );
    }
}
