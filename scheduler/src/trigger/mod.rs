//! Event triggers: rollouts. Watches per workload kind (Deployments, StatefulSets,
//! DaemonSets) in the namespaces the triggers name, shared by every policy; each completed rollout is matched against the
//! policies' `triggers: - rollout:` rules and, after `delay`, handed to the arbiter with
//! the targets restricted to the new revision's pods.

pub mod rollout;

use crate::policy::set::{Policies, PolicySet};
use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::{
    Client, Resource,
    core::NamespaceResourceScope,
    runtime::{WatchStreamExt, watcher},
};
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::rollout::{Completion, RolloutState, Seen, Tracker};
use crate::{
    engine::arbiter::{Arbiter, Start},
    labels::{CONTROLLER_REVISION_HASH, POD_TEMPLATE_HASH},
    policy::{Policy, domain::RolloutRule, domain::WorkloadKind},
    record::{ObjectRef, TriggerInfo},
    targets::{
        FollowsPolicies, Restriction,
        cache::Caches,
        in_scope,
        scope::Needs,
        watches::{Watch, WatchSet, namespaced},
    },
};

/// A rollout that triggered a policy, and what came of it (for the API).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerView {
    pub workload: ObjectRef,
    pub revision: String,
    pub completed_at: DateTime<Utc>,
    /// `started ID`, `skipped ID: why`, `cooldown: ...`, `superseded ...`.
    pub outcome: String,
    pub at: DateTime<Utc>,
}

/// Recent triggers kept per policy.
pub const RECENT_TRIGGERS: usize = 20;

/// The recent rollout triggers of each policy, newest last. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RecentTriggers(Arc<Mutex<BTreeMap<String, VecDeque<TriggerView>>>>);

impl RecentTriggers {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, VecDeque<TriggerView>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, policy: &str, view: TriggerView, known: impl Fn(&str) -> bool) {
        tracing::info!(policy, workload = ?view.workload, revision = %view.revision, outcome = %view.outcome, "rollout trigger");
        let mut all = self.lock();
        all.retain(|name, _| known(name));
        let q = all.entry(policy.to_string()).or_default();
        q.push_back(view);
        while q.len() > RECENT_TRIGGERS {
            q.pop_front();
        }
    }

    /// Recent rollout triggers of a policy, newest first.
    pub fn of(&self, policy: &str) -> Vec<TriggerView> {
        self.lock()
            .get(policy)
            .map(|q| q.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

/// What the rollout triggers read and drive.
#[derive(Clone)]
pub struct Rollouts {
    pub arbiter: Arc<Arbiter>,
    pub policies: Policies,
    pub caches: Caches,
    pub client: Client,
    pub protected_namespaces: BTreeSet<String>,
    pub recent: RecentTriggers,
    pub stop: CancellationToken,
    /// Watch loops and delayed fires run here (awaited at shutdown).
    pub tasks: TaskTracker,
}

enum Change {
    /// A version seen while (re-)listing.
    Listed(RolloutState),
    /// The first list of this kind is complete.
    Synced,
    Applied(RolloutState),
    Deleted(ObjectRef),
}

/// The changes of kind `K` in namespace `ns` (`None`: the cluster).
fn changes<K>(
    client: &Client,
    ns: Option<&str>,
    state: fn(&K) -> Option<RolloutState>,
) -> BoxStream<'static, Result<Change, watcher::Error>>
where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default,
{
    watcher(namespaced::<K>(client)(ns), watcher::Config::default())
        .default_backoff()
        .map(move |ev| {
            ev.map(|ev| match ev {
                watcher::Event::InitApply(o) => state(&o).map(Change::Listed),
                watcher::Event::InitDone => Some(Change::Synced),
                watcher::Event::Apply(o) => state(&o).map(Change::Applied),
                watcher::Event::Delete(o) => state(&o).map(|s| Change::Deleted(s.workload)),
                watcher::Event::Init => None,
            })
        })
        .filter_map(|r| async move { r.transpose() })
        .boxed()
}

/// Matches completed rollouts to policies and fires them.
struct Dispatcher {
    parts: Rollouts,
    tracker: Mutex<Tracker>,
    /// (policy, workload) -> when it last fired, for `cooldown`.
    last_fired: Mutex<BTreeMap<(String, ObjectRef), tokio::time::Instant>>,
}

fn kind_matches(rule: &RolloutRule, w: &ObjectRef) -> bool {
    rollout::kind_of(w).is_some_and(|k| rule.kinds.contains(&k))
}

impl Dispatcher {
    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The delay of the first rule of `policy` that `c` satisfies, if any.
    fn matches(&self, policy: &Policy, c: &Completion) -> Option<Duration> {
        let ns = c.workload.namespace.as_deref().unwrap_or_default();
        let namespaces = self.parts.caches.namespaces();
        policy
            .triggers
            .iter()
            .find(|r| {
                kind_matches(r, &c.workload)
                    && in_scope(&r.namespaces, ns, &namespaces)
                    && r.selector.matches(&c.labels)
                    && (!r.image_change_only || c.image_changed)
            })
            .map(|r| r.delay)
    }

    fn cooldown(policy: &Policy, c: &Completion) -> Duration {
        policy
            .triggers
            .iter()
            .filter(|r| kind_matches(r, &c.workload))
            .map(|r| r.cooldown)
            .max()
            .unwrap_or_default()
    }

    fn completed(self: &Arc<Self>, c: Completion) {
        let ns = c.workload.namespace.clone().unwrap_or_default();
        if self.parts.protected_namespaces.contains(&ns) {
            return;
        }
        tracing::info!(workload = ?c.workload, revision = %c.revision, image_changed = c.image_changed, "rollout complete");
        for policy in self.parts.policies.current().policies.values() {
            let Some(delay) = self.matches(policy, &c) else {
                continue;
            };
            let key = (policy.name.clone(), c.workload.clone());
            let now = tokio::time::Instant::now();
            let cooldown = Self::cooldown(policy, &c);
            {
                let mut last = self.last_fired.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(at) = last.get(&key)
                    && now.duration_since(*at) < cooldown
                {
                    let left = cooldown.saturating_sub(now.duration_since(*at));
                    self.record(
                        &policy.name,
                        view(&c, format!("cooldown: {}s left", left.as_secs())),
                    );
                    continue;
                }
                last.insert(key, now);
            }
            let (this, policy, c) = (self.clone(), policy.clone(), c.clone());
            self.parts.tasks.spawn(async move {
                tokio::select! {
                    () = this.parts.stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                this.fire(policy, c);
            });
        }
    }

    fn fire(&self, policy: Arc<Policy>, c: Completion) {
        if self.tracker().current_template(&c.workload) != Some(c.template) {
            self.record(
                &policy.name,
                view(&c, "superseded by a newer rollout".to_string()),
            );
            return;
        }
        let restrict = self.restriction(&c);
        let trigger = TriggerInfo::Rollout {
            workload: c.workload.clone(),
            revision: c.revision.clone(),
            completed_at: c.completed_at,
        };
        let outcome =
            match self
                .parts
                .arbiter
                .start_restricted(policy.clone(), trigger, Some(restrict))
            {
                Start::Started { id } => format!("started {id}"),
                Start::Skipped { id, reason } => format!("skipped {id}: {reason}"),
                Start::NotLeader => "not the leader".to_string(),
            };
        self.record(&policy.name, view(&c, outcome));
    }

    fn record(&self, policy: &str, view: TriggerView) {
        let set = self.parts.policies.current();
        self.parts
            .recent
            .record(policy, view, |name| set.policies.contains_key(name));
    }

    /// The new revision's pods: owned by the workload and, where Kubernetes labels
    /// revisions on pods, carrying the new revision's label.
    fn restriction(&self, c: &Completion) -> Restriction {
        let labels = match rollout::kind_of(&c.workload) {
            Some(WorkloadKind::Deployment) => self
                .parts
                .caches
                .replicaset_hash(&c.workload, &c.revision)
                .map(|h| BTreeMap::from([(POD_TEMPLATE_HASH.to_string(), h)]))
                .unwrap_or_default(),
            Some(WorkloadKind::StatefulSet) => {
                BTreeMap::from([(CONTROLLER_REVISION_HASH.to_string(), c.revision.clone())])
            }
            // A DaemonSet's status does not name its revision; once its rollout is
            // complete every scheduled pod that is not terminating runs it.
            Some(WorkloadKind::DaemonSet) | None => BTreeMap::new(),
        };
        Restriction {
            owner: c.workload.clone(),
            labels,
        }
    }

    fn handle(self: &Arc<Self>, change: Change, synced: &mut bool) {
        match change {
            // A watch's first list (at start-up, or a namespace a reload added): learn,
            // never fire (those rollouts completed before havoc looked). A workload
            // another watch already tracks (a namespace moving to the cluster-wide
            // watch) is compared instead, so that the move loses no completion. Later
            // re-lists (after a watch gap) are compared: a completion that happened
            // during the gap fires once.
            Change::Listed(s) if !*synced => {
                let mut tracker = self.tracker();
                if tracker.knows(&s.workload) {
                    let seen = tracker.observe(&s, Utc::now());
                    drop(tracker);
                    self.seen(seen);
                } else {
                    tracker.learn(&s);
                }
            }
            Change::Listed(s) | Change::Applied(s) => {
                let seen = self.tracker().observe(&s, Utc::now());
                self.seen(seen);
            }
            Change::Synced => *synced = true,
            Change::Deleted(w) => self.tracker().forget(&w),
        }
    }

    /// Acts on what the tracker concluded.
    fn seen(self: &Arc<Self>, seen: Seen) {
        match seen {
            Seen::Completed(c) => self.completed(c),
            Seen::Failed { workload, revision } => {
                tracing::warn!(?workload, %revision, "rollout failed (progress deadline exceeded): no chaos for it");
            }
            Seen::Nothing => {}
        }
    }
}

fn view(c: &Completion, outcome: String) -> TriggerView {
    TriggerView {
        workload: c.workload.clone(),
        revision: c.revision.clone(),
        completed_at: c.completed_at,
        outcome,
        at: Utc::now(),
    }
}

impl std::fmt::Debug for Rollouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollouts").finish_non_exhaustive()
    }
}

/// One rollout watch: whether its first list is complete.
#[derive(Debug, Default)]
struct RolloutWatch {
    synced: std::sync::atomic::AtomicBool,
}

impl Watch for RolloutWatch {
    fn synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    fn stale(&self) -> Option<Duration> {
        None
    }
}

/// The state stream of one workload kind.
type Changes = fn(&Client, Option<&str>) -> BoxStream<'static, Result<Change, watcher::Error>>;

fn kind_changes(kind: WorkloadKind) -> Changes {
    match kind {
        WorkloadKind::Deployment => |c, ns| changes::<Deployment>(c, ns, rollout::deployment_state),
        WorkloadKind::StatefulSet => {
            |c, ns| changes::<StatefulSet>(c, ns, rollout::statefulset_state)
        }
        WorkloadKind::DaemonSet => |c, ns| changes::<DaemonSet>(c, ns, rollout::daemonset_state),
    }
}

fn kind_name(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::DaemonSet => "DaemonSet",
    }
}

impl Rollouts {
    /// Watches each workload kind in the namespaces the policies' rollout triggers name
    /// (cluster-wide for a trigger with a namespace selector or no namespace list; not
    /// at all for a kind no trigger names), re-scoped on every reload (the returned
    /// [`RolloutWatches`] follows the policies). The watches run on [`Rollouts::tasks`]
    /// until `stop`.
    pub fn start(self) -> Arc<RolloutWatches> {
        let client = self.client.clone();
        let (stop, tasks) = (self.stop.clone(), self.tasks.clone());
        let self_policies = self.policies.clone();
        let dispatcher = Arc::new(Dispatcher {
            parts: self,
            tracker: Mutex::new(Tracker::default()),
            last_fired: Mutex::new(BTreeMap::new()),
        });
        let kinds = [
            WorkloadKind::Deployment,
            WorkloadKind::StatefulSet,
            WorkloadKind::DaemonSet,
        ];
        let sets: Vec<(WorkloadKind, WatchSet<RolloutWatch>)> = kinds
            .into_iter()
            .map(|kind| {
                let (client, d, t) = (client.clone(), dispatcher.clone(), tasks.clone());
                let name = kind_name(kind);
                let set = WatchSet::new(name, &stop, &tasks, move |ns, stop| {
                    let watch = Arc::new(RolloutWatch::default());
                    let mut stream = kind_changes(kind)(&client, ns);
                    let (d, w) = (d.clone(), watch.clone());
                    t.spawn(async move {
                        let mut synced = false;
                        loop {
                            tokio::select! {
                                biased;
                                () = stop.cancelled() => return,
                                item = stream.next() => match item {
                                    Some(Ok(change)) => {
                                        d.handle(change, &mut synced);
                                        if synced {
                                            w.synced.store(true, std::sync::atomic::Ordering::Release);
                                        }
                                    }
                                    Some(Err(e)) => tracing::warn!(kind = name, error = %e, "rollout watch error; retrying"),
                                    None => return,
                                },
                            }
                        }
                    });
                    watch
                });
                (kind, set)
            })
            .collect();
        let watches = Arc::new(RolloutWatches { sets, dispatcher });
        let needs = crate::fault::needs_of(
            self_policies.current().policies.values().map(AsRef::as_ref),
            "",
        );
        watches.scope(&needs);
        watches
    }
}

/// The rollout watches of each workload kind, re-scoped when the policies change.
pub struct RolloutWatches {
    sets: Vec<(WorkloadKind, WatchSet<RolloutWatch>)>,
    dispatcher: Arc<Dispatcher>,
}

impl std::fmt::Debug for RolloutWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutWatches").finish_non_exhaustive()
    }
}

impl RolloutWatches {
    /// Watches what the triggers need: each kind in the namespaces they name.
    fn scope(&self, needs: &Needs) {
        for (kind, watches) in &self.sets {
            let wanted = needs.rollouts.get(kind).cloned();
            watches.set(wanted.clone());
            // Forget the workloads of namespaces no longer watched: if one comes back,
            // its first list is learnt again, not compared with a stale memory.
            let kind = kind_name(*kind);
            self.dispatcher.tracker().retain(|w| {
                w.kind != kind
                    || wanted
                        .as_ref()
                        .is_some_and(|n| n.contains(w.namespace.as_deref().unwrap_or("")))
            });
        }
    }
}

impl FollowsPolicies for RolloutWatches {
    fn policies_changed(&self, _: &PolicySet, needs: &Needs) {
        self.scope(needs);
    }
}

#[cfg(test)]
mod tests {
    //! The rollout watches against a scripted API server (kube's `tower_test` pattern).

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock;

    use super::*;
    use crate::{
        engine::{arbiter::Parts, experiment::Env, metrics::Metrics, notify::Notifier},
        journal::Journal,
        policy::fixtures,
        state::SharedState,
        targets::fixtures::{Seen, api_server, requested, until},
    };

    fn triggered(name: &str, rollout: serde_json::Value) -> Policy {
        fixtures::policy(name)
            .namespaces(&["d"])
            .set("/triggers", json!([{ "rollout": rollout }]))
            .build()
    }

    #[tokio::test]
    async fn rollout_watches_cover_the_triggers_namespaces_only() {
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let seen = Seen::default();
        tokio::spawn(api_server(handle, BTreeMap::new(), seen.clone()));
        let client = Client::new(svc, "default");
        // The caches (not under test) talk to a server that never answers.
        let (quiet, _quiet) = mock::pair::<Request<Body>, Response<Body>>();
        let quiet = Client::new(quiet, "default");
        let config = Arc::new(fixtures::config().build());
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        let journal = Arc::new(Journal::in_memory(10));
        let arbiter = Arbiter::new(Parts {
            env: Env::for_tests(
                client.clone(),
                config.clone(),
                Some(journal.clone()),
                crate::leader::Leadership::always(),
            ),
            source: Arc::new(Caches::start(&quiet, &stop, &tasks)),
            journal: journal.clone(),
            history: journal,
            skips: None,
            notifier: Arc::new(Notifier::from_config(&config).expect("notifier")),
            metrics: Metrics::new(),
            leader: crate::leader::Leadership::always(),
            shared: SharedState::in_memory(),
            stop: stop.clone(),
            seed: Some(1),
        });
        let policies = Policies::default();
        let watches = Rollouts {
            arbiter,
            policies: policies.clone(),
            caches: Caches::start(&quiet, &stop, &tasks),
            client,
            protected_namespaces: BTreeSet::new(),
            recent: RecentTriggers::default(),
            stop: stop.clone(),
            tasks: tasks.clone(),
        }
        .start();
        // What the reloader does with a new set.
        let reload = |set: PolicySet| {
            let needs = crate::fault::needs_of(set.policies.values().map(AsRef::as_ref), "");
            watches.policies_changed(&set, &needs);
            policies.replace(set);
        };
        reload(PolicySet::new([triggered(
            "a",
            json!({"kinds": ["Deployment"], "namespaces": ["a"]}),
        )]));
        let lists = |path: &str| -> Vec<String> {
            let all = requested(&seen, &format!("GET {path}?"));
            all.into_iter()
                .filter(|r| !r.contains("watch=true"))
                .collect()
        };
        until("Deployments of a listed", || {
            !lists("/apis/apps/v1/namespaces/a/deployments").is_empty()
        })
        .await;
        assert!(lists("/apis/apps/v1/deployments").is_empty(), "{seen:?}");
        assert!(requested(&seen, "GET /apis/apps/v1/statefulsets").is_empty());
        assert!(requested(&seen, "GET /apis/apps/v1/daemonsets").is_empty());

        // A reload adds a StatefulSet trigger with a namespace selector: cluster-wide.
        reload(PolicySet::new([
            triggered("a", json!({"kinds": ["Deployment"], "namespaces": ["a"]})),
            triggered(
                "b",
                json!({"kinds": ["StatefulSet"], "namespaceSelector": "x=y"}),
            ),
        ]));
        until("StatefulSets listed cluster-wide", || {
            !lists("/apis/apps/v1/statefulsets").is_empty()
        })
        .await;
        let deployments = lists("/apis/apps/v1/namespaces/a/deployments").len();
        assert_eq!(deployments, 1, "the unchanged scope keeps its watch");
        assert!(lists("/apis/apps/v1/deployments").is_empty());
        stop.cancel();
    }
}
