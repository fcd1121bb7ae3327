//! Event triggers: rollouts. One watch per workload kind (Deployments, StatefulSets,
//! DaemonSets), shared by every policy; each completed rollout is matched against the
//! policies' `triggers: - rollout:` rules and, after `delay`, handed to the arbiter with
//! the targets restricted to the new revision's pods.

pub mod rollout;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::{
    Api, Client, Resource,
    runtime::{WatchStreamExt, watcher},
};
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::rollout::{Completion, RolloutState, Seen, Tracker};
use crate::{
    engine::{
        arbiter::{Arbiter, Start},
        policies::Policies,
    },
    labels::{CONTROLLER_REVISION_HASH, POD_TEMPLATE_HASH},
    policy::{Policy, domain::RolloutRule, model::WorkloadKind},
    record::{ObjectRef, TriggerInfo},
    target::{Restriction, cache::Caches, in_scope},
};

/// A rollout that triggered a policy, and what came of it (for the API).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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

fn changes<K>(
    client: &Client,
    state: fn(&K) -> Option<RolloutState>,
) -> BoxStream<'static, Result<Change, watcher::Error>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    watcher(Api::<K>::all(client.clone()), watcher::Config::default())
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
                    let left = cooldown - now.duration_since(*at);
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
            // The first list at start-up: learn, never fire (those rollouts completed
            // before havoc started). Later re-lists (after a watch gap) are compared:
            // a completion that happened during the gap fires once.
            Change::Listed(s) if !*synced => self.tracker().learn(&s),
            Change::Listed(s) | Change::Applied(s) => {
                let seen = self.tracker().observe(&s, Utc::now());
                match seen {
                    Seen::Completed(c) => self.completed(c),
                    Seen::Failed { workload, revision } => {
                        tracing::warn!(?workload, %revision, "rollout failed (progress deadline exceeded): no chaos for it");
                    }
                    Seen::Nothing => {}
                }
            }
            Change::Synced => *synced = true,
            Change::Deleted(w) => self.tracker().forget(&w),
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

impl Rollouts {
    /// Starts one watch per workload kind; they run on [`Rollouts::tasks`] until `stop`.
    pub fn start(self) {
        let client = self.client.clone();
        let (stop, tasks) = (self.stop.clone(), self.tasks.clone());
        let dispatcher = Arc::new(Dispatcher {
            parts: self,
            tracker: Mutex::new(Tracker::default()),
            last_fired: Mutex::new(BTreeMap::new()),
        });
        let kinds: [(&str, BoxStream<'static, Result<Change, watcher::Error>>); 3] = [
            (
                "Deployment",
                changes::<Deployment>(&client, rollout::deployment_state),
            ),
            (
                "StatefulSet",
                changes::<StatefulSet>(&client, rollout::statefulset_state),
            ),
            (
                "DaemonSet",
                changes::<DaemonSet>(&client, rollout::daemonset_state),
            ),
        ];
        for (kind, mut stream) in kinds {
            let (d, stop) = (dispatcher.clone(), stop.clone());
            tasks.spawn(async move {
                let mut synced = false;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        item = stream.next() => match item {
                            Some(Ok(change)) => d.handle(change, &mut synced),
                            Some(Err(e)) => tracing::warn!(%kind, error = %e, "rollout watch error; retrying"),
                            None => return,
                        },
                    }
                }
            });
        }
    }
}
