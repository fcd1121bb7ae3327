//! Target selection (pure): a policy's namespaces, selectors and exclusions, the safety
//! rules of DESIGN section 5, and a random pick — for each kind of target.
//!
//! Every kind goes through the same filter ([`prefilter`]); each adds its own rules:
//! pods keep their workload above `minAvailableReplicas`, nodes stay within
//! `maxUnschedulableNodes` and never host havoc, workloads scaled by an autoscaler are
//! left alone, and nothing that already carries a havoc record is hit twice.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rand::{Rng, seq::SliceRandom};

use super::{
    Guards, HAVOC_APP_LABEL, NamespaceInfo, NodeInfo, PodInfo, Snapshot, VirtualServiceInfo,
    WorkloadInfo, in_scope,
};
use crate::{
    policy::domain::{Pick, TargetRule},
    record::ObjectRef,
};

/// What every kind of target offers selection.
trait Candidate {
    fn namespace(&self) -> Option<&str>;
    fn name(&self) -> &str;
    fn labels(&self) -> &BTreeMap<String, String>;
    fn created(&self) -> DateTime<Utc>;
}

/// `Candidate` for a type with `name`, `labels` and `created` fields; `|c| EXPR` gives
/// its namespace.
macro_rules! candidate {
    ($t:ty, |$c:ident| $namespace:expr) => {
        impl Candidate for $t {
            fn namespace(&self) -> Option<&str> {
                let $c = self;
                $namespace
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn labels(&self) -> &BTreeMap<String, String> {
                &self.labels
            }
            fn created(&self) -> DateTime<Utc> {
                self.created
            }
        }
    };
}

candidate!(PodInfo, |c| Some(&c.namespace));
candidate!(WorkloadInfo, |c| Some(&c.namespace));
candidate!(VirtualServiceInfo, |c| Some(&c.namespace));
candidate!(NodeInfo, |_node| None);

/// The result of a selection, with why candidates were dropped (for the record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection<T> {
    pub chosen: Vec<T>,
    /// How many candidates matched the policy's namespaces and selectors.
    pub matched: usize,
    /// Reason -> count of matching candidates that were not eligible.
    pub dropped: BTreeMap<&'static str, usize>,
    /// What the candidates are, for messages (`pods`, `nodes`, ...).
    pub noun: &'static str,
}

impl<T> Selection<T> {
    fn new(noun: &'static str) -> Self {
        Selection {
            chosen: Vec::new(),
            matched: 0,
            dropped: BTreeMap::new(),
            noun,
        }
    }

    fn drop(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_default() += 1;
    }

    /// The chosen candidates, or `noTarget` saying why none was.
    pub fn into_chosen(self) -> Result<Vec<T>, crate::record::SkipReason> {
        if self.chosen.is_empty() {
            Err(crate::record::SkipReason::NoTarget(self.why_empty()))
        } else {
            Ok(self.chosen)
        }
    }

    /// A one-line explanation when nothing was chosen.
    pub fn why_empty(&self) -> String {
        if self.matched == 0 {
            let one = self.noun.trim_end_matches('s');
            return format!("no {one} matches the target");
        }
        let parts: Vec<String> = self
            .dropped
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        format!(
            "no eligible target among {} matching {} ({})",
            self.matched,
            self.noun,
            parts.join(", ")
        )
    }
}

/// How many to pick out of `eligible`.
fn wanted(pick: Pick, eligible: usize) -> usize {
    match pick {
        Pick::Count(n) => n as usize,
        Pick::Percent(pct) => (eligible * pct as usize).div_ceil(100).max(1),
    }
}

/// The rules every kind shares: scope, selector, protected and paused namespaces,
/// exclusions, minAge; then `own`, the kind's rules. Returns the eligible candidates.
fn prefilter<'a, T: Candidate>(
    rule: &TargetRule,
    items: &'a [T],
    namespaces: &BTreeMap<String, NamespaceInfo>,
    guards: &Guards,
    now: DateTime<Utc>,
    sel: &mut Selection<T>,
    own: impl Fn(&T) -> Option<&'static str>,
) -> Vec<&'a T> {
    let min_age = chrono::Duration::from_std(rule.min_age).unwrap_or(chrono::Duration::MAX);
    let mut eligible = Vec::new();
    for c in items {
        if let Some(ns) = c.namespace()
            && !in_scope(&rule.namespaces, ns, namespaces)
        {
            continue;
        }
        if !rule.selector.matches(c.labels()) {
            continue;
        }
        sel.matched += 1;
        let ns = c.namespace();
        let reason = if ns.is_some_and(|ns| guards.protected_namespaces.contains(ns)) {
            Some("in protected namespaces")
        } else if let Some(r) = own(c) {
            Some(r)
        } else if ns.is_some_and(|ns| namespaces.get(ns).is_some_and(NamespaceInfo::paused)) {
            Some("in paused namespaces")
        } else if rule
            .exclude_selector
            .as_ref()
            .is_some_and(|s| s.matches(c.labels()))
            || rule.exclude_names.iter().any(|r| r.is_match(c.name()))
        {
            Some("excluded")
        } else if now - c.created() < min_age {
            Some("younger than minAge")
        } else {
            None
        };
        match reason {
            Some(r) => sel.drop(r),
            None => eligible.push(c),
        }
    }
    eligible
}

/// havoc's own pod, its workload (every replica) and its node, from the snapshot.
struct Own<'a> {
    pod: Option<&'a PodInfo>,
}

impl<'a> Own<'a> {
    fn find(pods: &'a [PodInfo], guards: &Guards) -> Self {
        let pod = guards
            .own_pod
            .as_ref()
            .and_then(|(ns, name)| pods.iter().find(|p| p.namespace == *ns && p.name == *name));
        Own { pod }
    }

    /// This pod, a replica of it (same workload), or any pod labelled as havoc.
    fn is_havoc(&self, p: &PodInfo, guards: &Guards) -> bool {
        let own = guards
            .own_pod
            .as_ref()
            .is_some_and(|(ns, n)| *ns == p.namespace && *n == p.name);
        let sibling = self
            .pod
            .and_then(|me| me.owner.as_ref())
            .is_some_and(|owner| p.owner.as_ref() == Some(owner));
        own || sibling
            || p.labels
                .get(HAVOC_APP_LABEL.0)
                .is_some_and(|v| v == HAVOC_APP_LABEL.1)
    }

    fn workload(&self) -> Option<&ObjectRef> {
        self.pod.and_then(|p| p.owner.as_ref())
    }
}

/// The pod rules (besides the shared ones): havoc itself, terminating, not running.
fn pod_rule<'a>(
    own: &'a Own<'a>,
    guards: &'a Guards,
) -> impl Fn(&PodInfo) -> Option<&'static str> + 'a {
    move |p| {
        if own.is_havoc(p, guards) {
            Some("are havoc itself")
        } else if p.terminating {
            Some("already terminating")
        } else if !p.running {
            Some("not running")
        } else {
            None
        }
    }
}

/// Picks pods for a pod fault: never leaves a workload below `minAvailableReplicas`
/// ready pods, counting every pod of the snapshot (not only the eligible ones).
pub fn select_pods(
    rule: &TargetRule,
    pods: &[PodInfo],
    namespaces: &BTreeMap<String, NamespaceInfo>,
    guards: &Guards,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Selection<PodInfo> {
    let mut sel = Selection::new("pods");
    let own = Own::find(pods, guards);
    let mut eligible = prefilter(
        rule,
        pods,
        namespaces,
        guards,
        now,
        &mut sel,
        pod_rule(&own, guards),
    );
    let want = wanted(rule.pick, eligible.len());
    // Ready pods per workload, over every pod we know (not only the eligible ones).
    let mut ready: BTreeMap<Option<&ObjectRef>, u32> = BTreeMap::new();
    for p in pods.iter().filter(|p| p.ready && !p.terminating) {
        *ready.entry(p.owner.as_ref()).or_default() += 1;
    }
    eligible.shuffle(rng);
    for p in eligible {
        if sel.chosen.len() >= want {
            break;
        }
        // A bare pod is a workload of one.
        let budget = match &p.owner {
            Some(_) => ready.get(&p.owner.as_ref()).copied().unwrap_or(0),
            None => u32::from(p.ready),
        };
        let after = budget.saturating_sub(u32::from(p.ready));
        if after < guards.min_available_replicas {
            sel.drop("would leave their workload below minAvailableReplicas");
            continue;
        }
        if p.ready && p.owner.is_some() {
            ready.insert(p.owner.as_ref(), after);
        }
        sel.chosen.push(p.clone());
    }
    sel
}

/// Picks nodes to drain: never one that someone (or havoc) already cordoned, never the
/// node havoc runs on, optionally only nodes running pods of `rule.hosting`, and never
/// more cordoned nodes at once than `maxUnschedulableNodes`, counting others' cordons.
pub fn select_nodes(
    rule: &TargetRule,
    snapshot: &Snapshot,
    guards: &Guards,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Selection<NodeInfo> {
    let mut sel = Selection::new("nodes");
    let own = Own::find(&snapshot.pods, guards);
    let havoc_nodes: BTreeSet<&str> = snapshot
        .pods
        .iter()
        .filter(|p| own.is_havoc(p, guards))
        .filter_map(|p| p.node.as_deref())
        .collect();
    let hosting: BTreeSet<&str> = snapshot
        .pods
        .iter()
        .filter(|p| rule.hosting.contains(&p.namespace) && !p.terminating)
        .filter_map(|p| p.node.as_deref())
        .collect();
    let mut eligible = prefilter(
        rule,
        &snapshot.nodes,
        &snapshot.namespaces,
        guards,
        now,
        &mut sel,
        |n| {
            if n.has_record {
                Some("already hold a havoc record")
            } else if n.unschedulable {
                Some("already cordoned")
            } else if havoc_nodes.contains(n.name.as_str()) {
                Some("run havoc itself")
            } else if !rule.hosting.is_empty() && !hosting.contains(n.name.as_str()) {
                Some("run no pod of the namespaces asked for")
            } else {
                None
            }
        },
    );
    let cordoned = snapshot.nodes.iter().filter(|n| n.unschedulable).count();
    let room = (guards.max_unschedulable_nodes as usize).saturating_sub(cordoned);
    let want = wanted(rule.pick, eligible.len());
    eligible.shuffle(rng);
    for (i, n) in eligible.into_iter().enumerate() {
        if sel.chosen.len() >= want {
            break;
        }
        if i >= room {
            sel.drop("would exceed maxUnschedulableNodes");
            continue;
        }
        sel.chosen.push(n.clone());
    }
    sel
}

/// The nodes a drain or zone outage chose before their pods were read, as the snapshot
/// sees them now, if they are still free: none cordoned meanwhile (by anyone, or taken by
/// another experiment of this process), and all of them still within
/// `maxUnschedulableNodes` beside the other cordons.
pub fn still_free(
    snapshot: &Snapshot,
    chosen: &[NodeInfo],
    guards: &Guards,
) -> Result<Vec<NodeInfo>, crate::record::SkipReason> {
    use crate::record::SkipReason;
    // The limit first: a node another drain of this process took meanwhile (its claim is
    // a cordon here) leaves no room for this one when the limit is reached, and that is
    // the reason to report.
    let cordoned = snapshot.nodes.iter().filter(|n| n.unschedulable).count();
    if cordoned + chosen.len() > guards.max_unschedulable_nodes as usize {
        return Err(SkipReason::NoTarget(format!(
            "{} more cordoned node(s) would exceed maxUnschedulableNodes: {cordoned} are cordoned now, some since its nodes were chosen",
            chosen.len()
        )));
    }
    let mut now = Vec::with_capacity(chosen.len());
    for c in chosen {
        match snapshot.nodes.iter().find(|n| n.name == c.name) {
            Some(n) if !n.unschedulable && !n.has_record => now.push(n.clone()),
            Some(_) => {
                return Err(SkipReason::NoTarget(format!(
                    "node {} was cordoned while its pods were read",
                    c.name
                )));
            }
            None => {
                return Err(SkipReason::NoTarget(format!(
                    "node {} was deleted or relabelled while its pods were read",
                    c.name
                )));
            }
        }
    }
    Ok(now)
}

/// One node of a drain: the node, the pods it evicts, and the pods the guards keep on it
/// (with why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainTarget {
    pub node: NodeInfo,
    pub evict: Vec<PodInfo>,
    pub kept: Vec<(PodInfo, &'static str)>,
}

/// Why a drain keeps a pod: evicting it would take its workload below the floor.
pub const KEPT_FOR_FLOOR: &str = "would leave its workload below minAvailableReplicas";
/// Why a drain keeps a pod: its namespace is paused (`havoc.dev/paused=true`).
pub const KEPT_PAUSED: &str = "its namespace is paused";

/// The pods each drain of `nodes` evicts, under every guard a pod fault obeys: not
/// DaemonSet pods (they would come straight back), not mirror pods, not pods in
/// protected namespaces, not havoc's own, not pods already terminating (all skipped
/// silently: a drain never evicts them); not pods of paused namespaces, and no pod whose
/// eviction would leave its workload with fewer ready pods than `minAvailableReplicas`
/// (counting every pod of the snapshot and the evictions planned before it, across all
/// the nodes of the plan) — those are kept and named in the record. A bare pod is a
/// workload of one.
pub fn drain_plan(snapshot: &Snapshot, nodes: Vec<NodeInfo>, guards: &Guards) -> Vec<DrainTarget> {
    let own = Own::find(&snapshot.pods, guards);
    let mut ready: BTreeMap<Option<&ObjectRef>, u32> = BTreeMap::new();
    for p in snapshot.pods.iter().filter(|p| p.ready && !p.terminating) {
        *ready.entry(p.owner.as_ref()).or_default() += 1;
    }
    let paused = |ns: &str| {
        snapshot
            .namespaces
            .get(ns)
            .is_some_and(NamespaceInfo::paused)
    };
    let mut plan = Vec::new();
    for node in nodes {
        let mut target = DrainTarget {
            node,
            evict: Vec::new(),
            kept: Vec::new(),
        };
        for p in snapshot.pods.iter().filter(|p| {
            p.node.as_deref() == Some(target.node.name.as_str())
                && !p.is_daemon()
                && !p.mirror
                && !p.terminating
                && !guards.protected_namespaces.contains(&p.namespace)
                && !own.is_havoc(p, guards)
        }) {
            if paused(&p.namespace) {
                target.kept.push((p.clone(), KEPT_PAUSED));
                continue;
            }
            if p.ready {
                let budget = match &p.owner {
                    Some(_) => ready.get(&p.owner.as_ref()).copied().unwrap_or(0),
                    None => 1,
                };
                let after = budget.saturating_sub(1);
                if after < guards.min_available_replicas {
                    target.kept.push((p.clone(), KEPT_FOR_FLOOR));
                    continue;
                }
                if p.owner.is_some() {
                    ready.insert(p.owner.as_ref(), after);
                }
            }
            target.evict.push(p.clone());
        }
        plan.push(target);
    }
    plan
}

/// What a scale fault sets, for the volume guard of [`select_workloads`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleGuard {
    /// The replica count the fault sets.
    pub set: u32,
    /// The policy accepts that a StatefulSet with `whenScaled: Delete` loses the volumes
    /// of the ordinals scaled away.
    pub allow_volume_deletion: bool,
}

/// Why selection drops a StatefulSet that would lose volumes.
pub const VOLUME_LOSS: &str =
    "would delete their PersistentVolumeClaims when scaled down (whenScaled: Delete)";

/// Picks Deployments or StatefulSets (the policy's target kind) to scale: never one a
/// HorizontalPodAutoscaler manages, never havoc's own, never one already held, never a
/// StatefulSet that would delete volumes when scaled below its replicas (unless the policy
/// allows it).
pub fn select_workloads(
    rule: &TargetRule,
    snapshot: &Snapshot,
    guards: &Guards,
    scale: ScaleGuard,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Selection<WorkloadInfo> {
    let mut sel = Selection::new("workloads");
    let kind = rule.kind.to_string();
    let of_kind: Vec<WorkloadInfo> = snapshot
        .workloads
        .iter()
        .filter(|w| w.kind == kind)
        .cloned()
        .collect();
    let own = Own::find(&snapshot.pods, guards);
    let own_workload = own.workload().cloned();
    let mut eligible = prefilter(
        rule,
        &of_kind,
        &snapshot.namespaces,
        guards,
        now,
        &mut sel,
        |w| {
            workload_rule(w, own_workload.as_ref()).or_else(|| {
                (w.volumes_at_risk
                    && i64::from(scale.set) < i64::from(w.replicas)
                    && !scale.allow_volume_deletion)
                    .then_some(VOLUME_LOSS)
            })
        },
    );
    let want = wanted(rule.pick, eligible.len());
    eligible.shuffle(rng);
    sel.chosen = eligible.into_iter().take(want).cloned().collect();
    sel
}

fn workload_rule(w: &WorkloadInfo, own: Option<&ObjectRef>) -> Option<&'static str> {
    if own == Some(&w.object()) {
        Some("are havoc itself")
    } else if w.has_record {
        Some("already hold a havoc record")
    } else if w.autoscaled {
        Some("are scaled by a HorizontalPodAutoscaler")
    } else {
        None
    }
}

/// Picks the workloads whose pods a partition cuts off: the policy's target selects
/// pods; the pods' Deployment or StatefulSet is what the NetworkPolicy selects (by the
/// workload's own pod selector), so `count` and `percent` count workloads.
pub fn select_partitions(
    rule: &TargetRule,
    snapshot: &Snapshot,
    guards: &Guards,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Selection<WorkloadInfo> {
    let mut pods = Selection::new("pods");
    let own = Own::find(&snapshot.pods, guards);
    let eligible = prefilter(
        rule,
        &snapshot.pods,
        &snapshot.namespaces,
        guards,
        now,
        &mut pods,
        pod_rule(&own, guards),
    );
    let mut sel = Selection {
        chosen: Vec::new(),
        matched: pods.matched,
        dropped: pods.dropped,
        noun: "pods",
    };
    let mut workloads: Vec<&WorkloadInfo> = Vec::new();
    for p in eligible {
        let w = p.owner.as_ref().and_then(|o| {
            snapshot
                .workloads
                .iter()
                .find(|w| w.object() == *o && w.selector.is_some())
        });
        match w {
            Some(w) if w.has_record => sel.drop("belong to a workload already partitioned"),
            Some(w) => {
                if !workloads.contains(&w) {
                    workloads.push(w);
                }
            }
            None => sel.drop("not part of a Deployment or StatefulSet with a label selector"),
        }
    }
    let want = wanted(rule.pick, workloads.len());
    workloads.shuffle(rng);
    sel.chosen = workloads.into_iter().take(want).cloned().collect();
    sel
}

/// Picks a VirtualService for an HTTP fault: a random one among those matching.
pub fn select_virtual_services(
    rule: &TargetRule,
    services: &[VirtualServiceInfo],
    namespaces: &BTreeMap<String, NamespaceInfo>,
    guards: &Guards,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Selection<VirtualServiceInfo> {
    let mut sel = Selection::new("VirtualServices");
    let mut eligible = prefilter(rule, services, namespaces, guards, now, &mut sel, |v| {
        v.has_record.then_some("already hold a havoc record")
    });
    let want = wanted(rule.pick, eligible.len());
    eligible.shuffle(rng);
    sel.chosen = eligible.into_iter().take(want).cloned().collect();
    sel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        policy::{domain::NamespaceScope, selector::LabelSelector},
        targets::PAUSED_LABEL,
    };
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::time::Duration;

    fn now() -> DateTime<Utc> {
        "2026-11-22T12:00:00Z".parse().expect("valid")
    }

    /// A running, ready, hour-old pod of `workload` in go-demo-8.
    fn pod(workload: &str, i: usize) -> PodInfo {
        PodInfo {
            namespace: "go-demo-8".into(),
            name: format!("{workload}-{i}"),
            labels: BTreeMap::from([("app".to_string(), workload.to_string())]),
            created: now() - chrono::Duration::hours(1),
            running: true,
            terminating: false,
            ready: true,
            owner: Some(ObjectRef::namespaced("Deployment", "go-demo-8", workload)),
            node: Some(format!("node-{}", i % 2)),
            mirror: false,
        }
    }

    fn demo() -> Vec<PodInfo> {
        vec![
            pod("go-demo-8", 0),
            pod("go-demo-8", 1),
            pod("go-demo-8-db", 0),
            pod("repeater", 0),
            pod("repeater", 1),
        ]
    }

    fn rule() -> TargetRule {
        TargetRule {
            kind: crate::policy::domain::TargetKind::Pod,
            namespaces: NamespaceScope::Names(vec!["go-demo-8".into()]),
            selector: LabelSelector::default(),
            exclude_selector: None,
            exclude_names: vec![],
            min_age: Duration::ZERO,
            pick: Pick::Count(1),
            hosting: vec![],
        }
    }

    fn guards(min: u32) -> Guards {
        Guards {
            protected_namespaces: BTreeSet::from(["kube-system".to_string()]),
            own_pod: None,
            min_available_replicas: min,
            max_unschedulable_nodes: 1,
        }
    }

    fn names(s: &Selection<PodInfo>) -> Vec<String> {
        s.chosen.iter().map(|p| p.name.clone()).collect()
    }

    #[test]
    fn default_min_available_never_picks_the_single_replica_db() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..500 {
            let s = select_pods(
                &rule(),
                &demo(),
                &BTreeMap::new(),
                &guards(1),
                now(),
                &mut rng,
            );
            assert_eq!(s.chosen.len(), 1);
            assert!(!s.chosen[0].name.starts_with("go-demo-8-db"));
        }
    }

    #[test]
    fn min_available_zero_picks_every_pod_sometimes() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut seen = BTreeSet::new();
        for _ in 0..500 {
            seen.extend(names(&select_pods(
                &rule(),
                &demo(),
                &BTreeMap::new(),
                &guards(0),
                now(),
                &mut rng,
            )));
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
    }

    #[test]
    fn min_available_is_per_workload_across_picks() {
        // asking for everything: only one pod of each 2-replica workload may go
        let mut r = rule();
        r.pick = Pick::Percent(100);
        let s = select_pods(
            &r,
            &demo(),
            &BTreeMap::new(),
            &guards(1),
            now(),
            &mut ChaCha8Rng::seed_from_u64(3),
        );
        let mut owners: Vec<String> = s
            .chosen
            .iter()
            .map(|p| p.owner.clone().map(|o| o.name).unwrap_or_default())
            .collect();
        owners.sort();
        assert_eq!(owners, ["go-demo-8", "repeater"]);
        assert_eq!(
            s.dropped
                .get("would leave their workload below minAvailableReplicas"),
            Some(&3)
        );
    }

    #[test]
    fn unready_pods_do_not_count_towards_the_budget() {
        let mut pods = demo();
        pods[1].ready = false; // go-demo-8 has one ready pod left
        let mut r = rule();
        r.selector = "app=go-demo-8".parse().expect("valid");
        let s = select_pods(
            &r,
            &pods,
            &BTreeMap::new(),
            &guards(1),
            now(),
            &mut ChaCha8Rng::seed_from_u64(4),
        );
        // deleting the unready one leaves one ready pod: allowed; the ready one is not
        assert_eq!(names(&s), ["go-demo-8-1"]);
    }

    #[test]
    fn exclusions_age_state_protection_and_pause() {
        let mut pods = demo();
        pods[0].created = now() - chrono::Duration::seconds(30); // young
        pods[1].terminating = true;
        pods[3].running = false;
        pods[4]
            .labels
            .insert("havoc.dev/exclude".into(), "true".into());
        let mut r = rule();
        r.min_age = Duration::from_secs(60);
        r.exclude_selector = Some("havoc.dev/exclude=true".parse().expect("valid"));
        r.exclude_names = vec![regex::Regex::new("^go-demo-8-db-").expect("valid")];
        let s = select_pods(
            &r,
            &pods,
            &BTreeMap::new(),
            &guards(0),
            now(),
            &mut ChaCha8Rng::seed_from_u64(5),
        );
        assert!(s.chosen.is_empty());
        assert_eq!(s.matched, 5);
        assert_eq!(s.dropped.values().sum::<usize>(), 5);
        assert!(
            s.why_empty().contains("1 younger than minAge"),
            "{}",
            s.why_empty()
        );

        let ns = BTreeMap::from([(
            "go-demo-8".to_string(),
            NamespaceInfo {
                name: "go-demo-8".into(),
                labels: BTreeMap::from([(PAUSED_LABEL.to_string(), "true".to_string())]),
            },
        )]);
        let s = select_pods(
            &rule(),
            &demo(),
            &ns,
            &guards(0),
            now(),
            &mut ChaCha8Rng::seed_from_u64(6),
        );
        assert!(s.chosen.is_empty());
        assert_eq!(s.dropped.get("in paused namespaces"), Some(&5));

        let mut g = guards(0);
        g.protected_namespaces.insert("go-demo-8".into());
        g.own_pod = Some(("go-demo-8".into(), "repeater-0".into()));
        let s = select_pods(
            &rule(),
            &demo(),
            &BTreeMap::new(),
            &g,
            now(),
            &mut ChaCha8Rng::seed_from_u64(7),
        );
        assert!(s.chosen.is_empty());
    }

    #[test]
    fn namespace_selectors_and_percent_rounding() {
        let mut pods = demo();
        pods.push(PodInfo {
            namespace: "other".into(),
            ..pod("x", 0)
        });
        let ns = BTreeMap::from([
            (
                "go-demo-8".to_string(),
                NamespaceInfo {
                    name: "go-demo-8".into(),
                    labels: BTreeMap::from([("env".into(), "staging".into())]),
                },
            ),
            (
                "other".to_string(),
                NamespaceInfo {
                    name: "other".into(),
                    labels: BTreeMap::new(),
                },
            ),
        ]);
        let mut r = rule();
        r.namespaces = NamespaceScope::Selector("env=staging".parse().expect("valid"));
        r.pick = Pick::Percent(25);
        let s = select_pods(
            &r,
            &pods,
            &ns,
            &guards(0),
            now(),
            &mut ChaCha8Rng::seed_from_u64(8),
        );
        assert_eq!(s.matched, 5);
        assert_eq!(s.chosen.len(), 2, "25% of 5 rounds up to 2");
        assert!(s.chosen.iter().all(|p| p.namespace == "go-demo-8"));
    }

    #[test]
    fn bare_pods_are_workloads_of_one() {
        let mut p = pod("bare", 0);
        p.owner = None;
        let s = select_pods(
            &rule(),
            std::slice::from_ref(&p),
            &BTreeMap::new(),
            &guards(1),
            now(),
            &mut ChaCha8Rng::seed_from_u64(9),
        );
        assert!(s.chosen.is_empty());
        let s = select_pods(
            &rule(),
            &[p],
            &BTreeMap::new(),
            &guards(0),
            now(),
            &mut ChaCha8Rng::seed_from_u64(9),
        );
        assert_eq!(s.chosen.len(), 1);
    }

    fn node(name: &str, unschedulable: bool) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: BTreeMap::from([("type".to_string(), "kwok".to_string())]),
            created: now() - chrono::Duration::days(1),
            unschedulable,
            has_record: false,
        }
    }

    fn node_rule() -> TargetRule {
        TargetRule {
            kind: crate::policy::domain::TargetKind::Node,
            namespaces: NamespaceScope::All,
            ..rule()
        }
    }

    fn cluster(nodes: Vec<NodeInfo>) -> Snapshot {
        Snapshot {
            pods: demo(),
            nodes,
            ..Snapshot::default()
        }
    }

    #[test]
    fn nodes_never_cordoned_twice_nor_beyond_the_limit_nor_havocs_own() {
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        let mut g = guards(0);
        // node-9 is cordoned by someone else: with a limit of 1 nothing may go
        let s = cluster(vec![
            node("node-0", false),
            node("node-1", false),
            node("node-9", true),
        ]);
        let sel = select_nodes(&node_rule(), &s, &g, now(), &mut rng);
        assert!(sel.chosen.is_empty(), "{sel:?}");
        assert_eq!(sel.dropped.get("already cordoned"), Some(&1));
        assert_eq!(
            sel.dropped.get("would exceed maxUnschedulableNodes"),
            Some(&2)
        );
        g.max_unschedulable_nodes = 2;
        let sel = select_nodes(&node_rule(), &s, &g, now(), &mut rng);
        assert_eq!(sel.chosen.len(), 1);
        // havoc runs on node-0 (pods with an odd index run on node-1)
        let mut s = s;
        s.pods.push(PodInfo {
            namespace: "havoc-system".into(),
            labels: BTreeMap::from([(
                HAVOC_APP_LABEL.0.to_string(),
                HAVOC_APP_LABEL.1.to_string(),
            )]),
            node: Some("node-0".into()),
            ..pod("havoc", 0)
        });
        for _ in 0..20 {
            let sel = select_nodes(&node_rule(), &s, &g, now(), &mut rng);
            assert_eq!(names_of(&sel.chosen), ["node-1"]);
        }
    }

    /// Nodes chosen before their pods were read are planned only if nothing took them
    /// meanwhile: a cordon by anyone, or one that leaves no room under the limit.
    #[test]
    fn nodes_chosen_before_their_pods_were_read_must_still_be_free() {
        let mut g = guards(0);
        g.max_unschedulable_nodes = 2;
        let chosen = [node("node-0", false)];
        let s = cluster(vec![node("node-0", false), node("node-1", false)]);
        assert_eq!(
            names_of(&still_free(&s, &chosen, &g).expect("free")),
            ["node-0"]
        );
        // node-0 cordoned meanwhile (by someone, or claimed by another drain)
        let s = cluster(vec![node("node-0", true), node("node-1", false)]);
        let why = still_free(&s, &chosen, &g).expect_err("taken");
        assert!(why.to_string().contains("cordoned while"), "{why}");
        // ... and when that cordon reached the limit, the limit is the reason
        let mut full = g.clone();
        full.max_unschedulable_nodes = 1;
        let why = still_free(&s, &chosen, &full).expect_err("no room");
        assert!(why.to_string().contains("maxUnschedulableNodes"), "{why}");
        // two other nodes cordoned meanwhile: no room left for a third
        let s = cluster(vec![
            node("node-0", false),
            node("node-1", true),
            node("node-2", true),
        ]);
        let why = still_free(&s, &chosen, &g).expect_err("no room");
        assert!(why.to_string().contains("maxUnschedulableNodes"), "{why}");
        // gone
        let s = cluster(vec![node("node-1", false)]);
        assert!(still_free(&s, &chosen, &g).is_err());
    }

    fn names_of<T: Candidate>(v: &[T]) -> Vec<String> {
        v.iter().map(|c| c.name().to_string()).collect()
    }

    #[test]
    fn nodes_can_be_limited_to_those_hosting_a_namespace() {
        let mut r = node_rule();
        r.hosting = vec!["go-demo-8".into()];
        let mut s = cluster(vec![node("node-0", false), node("node-5", false)]);
        // every demo pod runs on node-0 or node-1: node-5 hosts none
        s.pods.retain(|p| p.node.as_deref() == Some("node-0"));
        let mut g = guards(0);
        g.max_unschedulable_nodes = 5;
        let sel = select_nodes(&r, &s, &g, now(), &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(names_of(&sel.chosen), ["node-0"]);
        assert_eq!(
            sel.dropped.get("run no pod of the namespaces asked for"),
            Some(&1)
        );
    }

    fn workload(kind: &str, name: &str) -> WorkloadInfo {
        WorkloadInfo {
            kind: kind.into(),
            namespace: "go-demo-8".into(),
            name: name.into(),
            labels: BTreeMap::from([("app".to_string(), name.to_string())]),
            created: now() - chrono::Duration::hours(1),
            replicas: 2,
            selector: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
            autoscaled: false,
            has_record: false,
            volumes_at_risk: false,
        }
    }

    #[test]
    fn workloads_of_the_kind_without_autoscaler_or_record() {
        let mut s = cluster(vec![]);
        s.workloads = vec![
            workload("Deployment", "go-demo-8"),
            WorkloadInfo {
                autoscaled: true,
                ..workload("Deployment", "repeater")
            },
            WorkloadInfo {
                has_record: true,
                ..workload("Deployment", "go-demo-8-db")
            },
            workload("StatefulSet", "db"),
        ];
        let mut r = rule();
        r.kind = crate::policy::domain::TargetKind::Deployment;
        r.pick = Pick::Percent(100);
        let scale = ScaleGuard {
            set: 0,
            allow_volume_deletion: false,
        };
        let sel = select_workloads(
            &r,
            &s,
            &guards(1),
            scale,
            now(),
            &mut ChaCha8Rng::seed_from_u64(4),
        );
        assert_eq!(names_of(&sel.chosen), ["go-demo-8"]);
        assert_eq!(sel.matched, 3, "the StatefulSet is another kind");
        assert_eq!(
            sel.dropped.get("are scaled by a HorizontalPodAutoscaler"),
            Some(&1)
        );
        assert_eq!(sel.dropped.get("already hold a havoc record"), Some(&1));
    }

    #[test]
    fn partitions_pick_workloads_of_the_selected_pods() {
        let mut s = cluster(vec![]);
        s.workloads = vec![
            workload("Deployment", "repeater"),
            workload("Deployment", "go-demo-8"),
        ];
        let mut r = rule();
        r.selector = "app=repeater".parse().expect("valid");
        let sel = select_partitions(&r, &s, &guards(1), now(), &mut ChaCha8Rng::seed_from_u64(5));
        assert_eq!(names_of(&sel.chosen), ["repeater"]);
        // a pod without a known workload cannot be partitioned by selector
        r.selector = "app=go-demo-8-db".parse().expect("valid");
        let sel = select_partitions(&r, &s, &guards(1), now(), &mut ChaCha8Rng::seed_from_u64(5));
        assert!(sel.chosen.is_empty());
        assert!(
            sel.why_empty().contains("not part of a Deployment"),
            "{}",
            sel.why_empty()
        );
    }

    #[test]
    fn havocs_own_replicas_are_never_pods_to_hit() {
        // two replicas of havoc's own Deployment, unlabelled: only the owner relates them
        let mut pods = demo();
        pods.push(pod("havoc", 0));
        pods.push(pod("havoc", 1));
        let mut g = guards(0);
        g.own_pod = Some(("go-demo-8".into(), "havoc-0".into()));
        let mut r = rule();
        r.pick = Pick::Percent(100);
        let sel = select_pods(
            &r,
            &pods,
            &BTreeMap::new(),
            &g,
            now(),
            &mut ChaCha8Rng::seed_from_u64(6),
        );
        assert!(
            names(&sel).iter().all(|n| !n.starts_with("havoc-")),
            "{sel:?}"
        );
        assert_eq!(sel.dropped.get("are havoc itself"), Some(&2));
    }
}
