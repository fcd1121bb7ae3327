//! Targets: which objects a policy may hit right now.
//!
//! - this module: selection (pure): a policy's selectors and exclusions and the safety
//!   rules of DESIGN section 5 over a [`Snapshot`], then a random pick;
//! - [`snapshot`]: the [`Snapshot`] of the cluster that selection reads, and where it
//!   comes from ([`SnapshotSource`]);
//! - [`cache`]: the service's watch caches (a [`SnapshotSource`]);
//! - [`kube`]: conversions from Kubernetes objects, and a listing source for `havoc run`.

pub mod cache;
#[cfg(test)]
pub mod fixtures;
pub mod kube;
pub mod snapshot;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rand::{Rng, seq::SliceRandom};

pub use self::snapshot::{Snapshot, SnapshotError, SnapshotSource};
use crate::{
    policy::domain::{NamespaceScope, Pick, TargetRule},
    record::ObjectRef,
};

pub use crate::labels::{HAVOC_APP_LABEL, PAUSED_LABEL};

/// What selection needs to know about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub created: DateTime<Utc>,
    /// Phase Running.
    pub running: bool,
    /// Has a deletion timestamp.
    pub terminating: bool,
    /// Condition Ready is True.
    pub ready: bool,
    /// The workload that owns it (ReplicaSets resolved to their Deployment); `None` for a
    /// bare pod, which counts as a workload of one.
    pub owner: Option<ObjectRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl NamespaceInfo {
    pub fn paused(&self) -> bool {
        self.labels.get(PAUSED_LABEL).is_some_and(|v| v == "true")
    }
}

/// Safety context of a selection.
#[derive(Debug, Clone, Default)]
pub struct Guards {
    pub protected_namespaces: BTreeSet<String>,
    /// havoc's own pod (`namespace`, `name`), when running in a cluster.
    pub own_pod: Option<(String, String)>,
    /// Never leave a workload with fewer ready pods than this.
    pub min_available_replicas: u32,
}

impl Guards {
    /// The service's guards: protected namespaces (havoc's own included), this pod
    /// (`POD_NAMESPACE`/`POD_NAME` from the downward API), `limits.minAvailableReplicas`.
    pub fn for_service(config: &crate::policy::Config) -> Self {
        Guards {
            protected_namespaces: config.protected_namespaces.clone(),
            own_pod: std::env::var("POD_NAMESPACE")
                .ok()
                .zip(std::env::var("POD_NAME").ok()),
            min_available_replicas: config.limits.min_available_replicas,
        }
    }
}

/// The result of a selection, with why candidates were dropped (for the record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub chosen: Vec<PodInfo>,
    /// How many pods matched the policy's namespaces and selectors.
    pub matched: usize,
    /// Reason -> count of matching pods that were not eligible.
    pub dropped: BTreeMap<&'static str, usize>,
}

impl Selection {
    /// A one-line explanation when nothing was chosen.
    pub fn why_empty(&self) -> String {
        if self.matched == 0 {
            return "no pod matches the target".to_string();
        }
        let parts: Vec<String> = self
            .dropped
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        format!(
            "no eligible target among {} matching pods ({})",
            self.matched,
            parts.join(", ")
        )
    }
}

/// Limits targets to one workload's pods carrying these labels (a rollout's new
/// revision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction {
    pub owner: ObjectRef,
    pub labels: BTreeMap<String, String>,
}

impl Restriction {
    pub fn allows(&self, p: &PodInfo) -> bool {
        p.owner.as_ref() == Some(&self.owner)
            && self.labels.iter().all(|(k, v)| p.labels.get(k) == Some(v))
    }
}

/// Whether namespace `ns` is in `scope` (`namespaces` holds every namespace's labels).
pub fn in_scope(
    scope: &NamespaceScope,
    ns: &str,
    namespaces: &BTreeMap<String, NamespaceInfo>,
) -> bool {
    match scope {
        NamespaceScope::All => true,
        NamespaceScope::Names(names) => names.iter().any(|n| n == ns),
        NamespaceScope::Selector(sel) => namespaces.get(ns).is_some_and(|n| sel.matches(&n.labels)),
    }
}

/// Picks pods for a policy. `namespaces` holds the labels of every known namespace.
pub fn select_pods(
    rule: &TargetRule,
    pods: &[PodInfo],
    namespaces: &BTreeMap<String, NamespaceInfo>,
    guards: &Guards,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Selection {
    let mut sel = Selection::default();
    let mut eligible: Vec<&PodInfo> = Vec::new();
    for p in pods {
        if !in_scope(&rule.namespaces, &p.namespace, namespaces)
            || !rule.selector.matches(&p.labels)
        {
            continue;
        }
        sel.matched += 1;
        let reason = if guards.protected_namespaces.contains(&p.namespace) {
            Some("in protected namespaces")
        } else if guards
            .own_pod
            .as_ref()
            .is_some_and(|(ns, n)| *ns == p.namespace && *n == p.name)
            || p.labels
                .get(HAVOC_APP_LABEL.0)
                .is_some_and(|v| v == HAVOC_APP_LABEL.1)
        {
            Some("are havoc itself")
        } else if namespaces
            .get(&p.namespace)
            .is_some_and(NamespaceInfo::paused)
        {
            Some("in paused namespaces")
        } else if rule
            .exclude_selector
            .as_ref()
            .is_some_and(|s| s.matches(&p.labels))
            || rule.exclude_names.iter().any(|r| r.is_match(&p.name))
        {
            Some("excluded")
        } else if p.terminating {
            Some("already terminating")
        } else if !p.running {
            Some("not running")
        } else if now - p.created
            < chrono::Duration::from_std(rule.min_age).unwrap_or(chrono::Duration::MAX)
        {
            Some("younger than minAge")
        } else {
            None
        };
        match reason {
            Some(r) => *sel.dropped.entry(r).or_default() += 1,
            None => eligible.push(p),
        }
    }
    let want = match rule.pick {
        Pick::Count(n) => n as usize,
        Pick::Percent(pct) => (eligible.len() * pct as usize).div_ceil(100).max(1),
    };
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
            *sel.dropped
                .entry("would leave their workload below minAvailableReplicas")
                .or_default() += 1;
            continue;
        }
        if p.ready && p.owner.is_some() {
            ready.insert(p.owner.as_ref(), after);
        }
        sel.chosen.push(p.clone());
    }
    sel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::selector::LabelSelector;
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
            kind: crate::policy::model::TargetKind::Pod,
            namespaces: NamespaceScope::Names(vec!["go-demo-8".into()]),
            selector: LabelSelector::default(),
            exclude_selector: None,
            exclude_names: vec![],
            min_age: Duration::ZERO,
            pick: Pick::Count(1),
        }
    }

    fn guards(min: u32) -> Guards {
        Guards {
            protected_namespaces: BTreeSet::from(["kube-system".to_string()]),
            own_pod: None,
            min_available_replicas: min,
        }
    }

    fn names(s: &Selection) -> Vec<String> {
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
}
