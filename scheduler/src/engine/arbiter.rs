//! The arbiter: the one place that decides whether an experiment starts, for every
//! trigger (clock, manual, rollout). It owns the pause switches, the concurrency limit,
//! the circuit breaker, and emitting records (journal, metrics, Events, notifications).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    experiment::{self, RunOptions, Snapshot},
    metrics::Metrics,
    notify::Notifier,
};
use crate::{
    journal::{ExperimentRecord, Journal, TriggerInfo, Verdict},
    policy::{Policy, model::OnDeviation},
};

/// At most this many notification sends in flight; more are dropped and counted, so a
/// receiver that hangs cannot pile up memory.
pub const MAX_PENDING_NOTIFICATIONS: usize = 256;

/// The policies the engine runs; replaced as a whole on reload.
#[derive(Debug, Default)]
pub struct PolicySet {
    pub policies: BTreeMap<String, Arc<Policy>>,
    pub loaded_at: Option<DateTime<Utc>>,
}

/// A pause switch.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    pub since: DateTime<Utc>,
    /// `None`: until resumed.
    pub until: Option<DateTime<Utc>>,
    pub reason: String,
}

impl Pause {
    fn active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// A rollout that triggered a policy, and what came of it (for the API).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerView {
    pub workload: crate::journal::ObjectRef,
    pub revision: String,
    pub completed_at: DateTime<Utc>,
    /// `started ID`, `skipped ID: why`, `cooldown: ...`, `superseded ...`.
    pub outcome: String,
    pub at: DateTime<Utc>,
}

/// Recent triggers kept per policy.
pub const RECENT_TRIGGERS: usize = 20;

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Running; the record comes when it ends.
    Started { id: String },
    /// Not run; a `skipped` record was written.
    Skipped { id: String, reason: String },
    /// This replica is not the leader: nothing run, nothing recorded.
    NotLeader,
}

#[derive(Debug, Default)]
struct State {
    pause_all: Option<Pause>,
    paused: BTreeMap<String, Pause>,
    /// Running experiments: id -> policy.
    running: BTreeMap<String, String>,
    /// Next clock fire of each scheduled policy.
    next_fires: BTreeMap<String, DateTime<Utc>>,
    /// Recent rollout triggers of each policy, newest last.
    triggers: BTreeMap<String, std::collections::VecDeque<TriggerView>>,
}

/// A snapshot of the switches for the API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseView {
    pub all: Option<Pause>,
    pub policies: BTreeMap<String, Pause>,
}

/// The engine's shared core.
pub struct Arbiter<S> {
    ctx: experiment::Context,
    snapshot: S,
    policies: watch::Sender<Arc<PolicySet>>,
    state: Mutex<State>,
    journal: Journal,
    notifier: Arc<Notifier>,
    metrics: Metrics,
    leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
    experiments: TaskTracker,
    notifications: TaskTracker,
    /// Seeds target choice (tests); `None`: random.
    seed: Option<u64>,
}

impl<S> std::fmt::Debug for Arbiter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arbiter").finish_non_exhaustive()
    }
}

/// Everything an arbiter is built from.
#[derive(Debug)]
pub struct Parts<S> {
    pub ctx: experiment::Context,
    pub snapshot: S,
    pub journal: Journal,
    pub notifier: Arc<Notifier>,
    pub metrics: Metrics,
    pub leader: watch::Receiver<bool>,
    pub shutdown: CancellationToken,
    pub seed: Option<u64>,
}

impl<S: Snapshot + Send + Sync + 'static> Arbiter<S> {
    pub fn new(parts: Parts<S>) -> Arc<Self> {
        let (policies, _) = watch::channel(Arc::new(PolicySet::default()));
        Arc::new(Arbiter {
            ctx: parts.ctx,
            snapshot: parts.snapshot,
            policies,
            state: Mutex::new(State::default()),
            journal: parts.journal,
            notifier: parts.notifier,
            metrics: parts.metrics,
            leader: parts.leader,
            shutdown: parts.shutdown,
            experiments: TaskTracker::new(),
            notifications: TaskTracker::new(),
            seed: parts.seed,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent in a way that
        // matters more than stopping chaos would: keep going with what is there.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn config(&self) -> &crate::policy::Config {
        &self.ctx.config
    }

    pub fn snapshot_source(&self) -> &S {
        &self.snapshot
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn protected_namespaces(&self) -> &std::collections::BTreeSet<String> {
        &self.ctx.guards.protected_namespaces
    }

    pub fn record_trigger(&self, policy: &str, view: TriggerView) {
        tracing::info!(policy, workload = ?view.workload, revision = %view.revision, outcome = %view.outcome, "rollout trigger");
        let mut st = self.state();
        let q = st.triggers.entry(policy.to_string()).or_default();
        q.push_back(view);
        while q.len() > RECENT_TRIGGERS {
            q.pop_front();
        }
    }

    /// Recent rollout triggers of a policy, newest first.
    pub fn recent_triggers(&self, policy: &str) -> Vec<TriggerView> {
        self.state()
            .triggers
            .get(policy)
            .map(|q| q.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    pub fn leader_watch(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies.borrow().clone()
    }

    pub fn subscribe_policies(&self) -> watch::Receiver<Arc<PolicySet>> {
        self.policies.subscribe()
    }

    /// Replaces the running policies (start-up and reload).
    pub fn set_policies(&self, set: PolicySet) {
        self.metrics.policies_loaded(set.policies.len());
        let names: Vec<String> = set.policies.keys().cloned().collect();
        self.policies.send_replace(Arc::new(set));
        let mut st = self.state();
        st.paused.retain(|name, _| names.contains(name));
        st.next_fires.retain(|name, _| names.contains(name));
        st.triggers.retain(|name, _| names.contains(name));
    }

    pub fn set_next_fire(&self, policy: &str, at: Option<DateTime<Utc>>) {
        self.metrics.next_run(policy, at);
        let mut st = self.state();
        match at {
            Some(t) => st.next_fires.insert(policy.to_string(), t),
            None => st.next_fires.remove(policy),
        };
    }

    pub fn next_fire(&self, policy: &str) -> Option<DateTime<Utc>> {
        self.state().next_fires.get(policy).copied()
    }

    pub fn running(&self) -> BTreeMap<String, String> {
        self.state().running.clone()
    }

    /// Pauses everything (`policy: None`) or one policy; `until: None` lasts until resumed.
    pub fn pause(&self, policy: Option<&str>, until: Option<DateTime<Utc>>, reason: String) {
        let pause = Pause {
            since: Utc::now(),
            until,
            reason,
        };
        tracing::warn!(policy = policy.unwrap_or("*"), until = ?until, reason = %pause.reason, "chaos paused");
        let mut st = self.state();
        match policy {
            None => st.pause_all = Some(pause),
            Some(p) => {
                st.paused.insert(p.to_string(), pause);
            }
        }
        self.publish_pauses(&mut st);
    }

    /// Resumes everything (clearing every pause, circuit breakers included) or one policy.
    pub fn resume(&self, policy: Option<&str>) {
        tracing::info!(policy = policy.unwrap_or("*"), "chaos resumed");
        let mut st = self.state();
        match policy {
            None => {
                st.pause_all = None;
                st.paused.clear();
            }
            Some(p) => {
                st.paused.remove(p);
            }
        }
        self.publish_pauses(&mut st);
    }

    pub fn pauses(&self) -> PauseView {
        let mut st = self.state();
        self.publish_pauses(&mut st);
        PauseView {
            all: st.pause_all.clone(),
            policies: st.paused.clone(),
        }
    }

    /// Drops expired pauses and updates the gauges.
    fn publish_pauses(&self, st: &mut State) {
        let now = Utc::now();
        if st.pause_all.as_ref().is_some_and(|p| !p.active(now)) {
            st.pause_all = None;
        }
        st.paused.retain(|_, p| p.active(now));
        self.metrics.paused(st.pause_all.is_some(), st.paused.len());
    }

    /// Decides whether `policy` runs now, and starts it if so.
    pub fn start(self: &Arc<Self>, policy: Arc<Policy>, trigger: TriggerInfo) -> Start {
        self.start_restricted(policy, trigger, None)
    }

    /// [`Arbiter::start`], with targets limited to `restrict` (a rollout's new revision).
    pub fn start_restricted(
        self: &Arc<Self>,
        policy: Arc<Policy>,
        trigger: TriggerInfo,
        restrict: Option<crate::target::Restriction>,
    ) -> Start {
        if !self.is_leader() {
            return Start::NotLeader;
        }
        let id = experiment::new_id(&policy.name, Utc::now());
        let refusal = {
            let mut st = self.state();
            self.publish_pauses(&mut st);
            let limit = self.ctx.config.spec.limits.max_concurrent_experiments as usize;
            let refusal = if self.shutdown.is_cancelled() {
                Some("havoc is shutting down".to_string())
            } else if let Some(p) = &st.pause_all {
                Some(format!("all chaos is paused: {}", p.reason))
            } else if let Some(p) = st.paused.get(&policy.name) {
                Some(format!("policy is paused: {}", p.reason))
            } else if let Some((other, _)) = st.running.iter().find(|(_, p)| **p == policy.name) {
                Some(format!("the previous run {other} is still in progress"))
            } else if st.running.len() >= limit {
                Some(format!(
                    "limit reached: maxConcurrentExperiments is {limit} and {} running",
                    st.running.len()
                ))
            } else {
                None
            };
            if refusal.is_none() {
                st.running.insert(id.clone(), policy.name.clone());
                self.metrics.active_experiments(st.running.len());
            }
            refusal
        };
        if let Some(reason) = refusal {
            let record = experiment::skipped_record(&self.ctx.config, &policy, trigger, reason);
            let start = Start::Skipped {
                id: record.id.clone(),
                reason: record.reason.clone(),
            };
            self.emit(&policy, record);
            return start;
        }
        let this = self.clone();
        let opts = RunOptions {
            id: id.clone(),
            seed: self.seed,
            cancel: self.shutdown.child_token(),
            restrict,
        };
        self.experiments.spawn(async move {
            tracing::info!(id = %opts.id, policy = %policy.name, "experiment starting");
            let record = experiment::run(&this.ctx, &this.snapshot, &policy, trigger, opts).await;
            {
                let mut st = this.state();
                st.running.remove(&record.id);
                this.metrics.active_experiments(st.running.len());
            }
            this.emit(&policy, record);
        });
        Start::Started { id }
    }

    /// Records a run that did not happen (a missed fire) without starting anything.
    pub fn record_skip(&self, policy: &Policy, trigger: TriggerInfo, reason: String) {
        if !self.is_leader() {
            return;
        }
        let record = experiment::skipped_record(&self.ctx.config, policy, trigger, reason);
        self.emit(policy, record);
    }

    /// Journal, metrics, Events, circuit breaker, and notifications (in the background).
    fn emit(&self, policy: &Policy, record: ExperimentRecord) {
        tracing::info!(
            id = %record.id,
            policy = %record.policy,
            verdict = record.verdict.as_str(),
            reason = %record.reason,
            dry_run = record.dry_run,
            targets = record.targets.len(),
            "experiment ended"
        );
        if let Err(e) = self.journal.append(&record) {
            tracing::error!(error = %e, id = %record.id, "cannot append to the journal");
        }
        self.metrics.experiment(&record);
        if let Some(ev) = &self.ctx.events {
            ev.verdict(&record);
        }
        if record.verdict == Verdict::Deviated {
            let cooldown = self.ctx.config.spec.circuit_breaker.cooldown.0;
            let until = Utc::now() + chrono::Duration::from_std(cooldown).unwrap_or_default();
            let reason = format!(
                "circuit breaker: experiment {} deviated ({})",
                record.id, record.reason
            );
            match policy.spec.on_deviation.unwrap_or(OnDeviation::PausePolicy) {
                OnDeviation::Continue => {}
                OnDeviation::PausePolicy => self.pause(Some(&policy.name), Some(until), reason),
                OnDeviation::PauseAll => self.pause(None, Some(until), reason),
            }
        }
        self.notify(policy, record);
    }

    fn notify(&self, policy: &Policy, record: ExperimentRecord) {
        let receivers = self.notifier.route(policy, &record);
        if receivers.is_empty() {
            return;
        }
        if self.notifications.len() >= MAX_PENDING_NOTIFICATIONS {
            for r in receivers {
                tracing::warn!(receiver = %r, id = %record.id, "notification dropped: too many pending");
                self.metrics.notification(&r, "dropped");
            }
            return;
        }
        let (notifier, metrics, policy) =
            (self.notifier.clone(), self.metrics.clone(), policy.clone());
        self.notifications.spawn(async move {
            for d in notifier.notify(&policy, &record).await {
                metrics.notification(&d.receiver, d.result);
            }
        });
    }

    /// Stops starting experiments, cuts running ones short (each completes its record),
    /// and waits for them and pending notifications, at most `timeout` in all. Whether
    /// everything finished in time.
    pub async fn shut_down(&self, timeout: Duration) -> bool {
        self.shutdown.cancel();
        self.experiments.close();
        self.notifications.close();
        let deadline = tokio::time::Instant::now() + timeout;
        let experiments = tokio::time::timeout_at(deadline, self.experiments.wait())
            .await
            .is_ok();
        let notifications = tokio::time::timeout_at(deadline, self.notifications.wait())
            .await
            .is_ok();
        if !experiments {
            tracing::error!(running = ?self.running(), "shutdown timeout: experiments still running");
        }
        if !notifications {
            tracing::error!(
                pending = self.notifications.len(),
                "shutdown timeout: notifications still pending"
            );
        }
        experiments && notifications
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        engine::health::Health,
        policy::{Expect, load_str},
        target::{Guards, NamespaceInfo, PodInfo},
    };

    /// One Running, Ready pod of a two-replica workload, forever.
    struct OnePod;

    impl Snapshot for OnePod {
        async fn snapshot(
            &self,
        ) -> anyhow::Result<(Vec<PodInfo>, BTreeMap<String, NamespaceInfo>)> {
            let pod = |name: &str| PodInfo {
                namespace: "d".into(),
                name: name.into(),
                labels: BTreeMap::from([("app".into(), "web".into())]),
                created: Utc::now() - chrono::Duration::hours(1),
                running: true,
                terminating: false,
                ready: true,
                owner: Some(crate::journal::ObjectRef::namespaced(
                    "Deployment",
                    "d",
                    "web",
                )),
            };
            let ns = NamespaceInfo {
                name: "d".into(),
                labels: BTreeMap::new(),
            };
            Ok((
                vec![pod("web-1"), pod("web-2")],
                BTreeMap::from([("d".into(), ns)]),
            ))
        }
    }

    fn load(text: &str) -> (crate::policy::Config, Vec<Arc<Policy>>) {
        let report = load_str(
            std::path::Path::new("t.yaml"),
            text,
            &Default::default(),
            Expect::Any,
        );
        assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
        let config = report.configs.into_iter().next().expect("config");
        let policies = report
            .policies
            .into_iter()
            .map(|(p, _)| Arc::new(p))
            .collect();
        (config, policies)
    }

    fn arbiter(config: crate::policy::Config) -> (Arc<Arbiter<OnePod>>, watch::Sender<bool>) {
        let (svc, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let notifier = Arc::new(Notifier::from_config(&config).expect("notifier"));
        let config = Arc::new(config);
        let (leader_tx, leader) = watch::channel(true);
        let a = Arbiter::new(Parts {
            ctx: experiment::Context {
                client: kube::Client::new(svc, "default"),
                health: Arc::new(Health::from_config(&config).expect("health")),
                guards: Guards {
                    min_available_replicas: 1,
                    ..Guards::default()
                },
                config,
                events: None,
                metrics: None,
            },
            snapshot: OnePod,
            journal: Journal::in_memory(100),
            notifier,
            metrics: Metrics::new(),
            leader,
            shutdown: CancellationToken::new(),
            seed: Some(1),
        });
        (a, leader_tx)
    }

    const DOCS: &str = "apiVersion: havoc.dev/v1alpha1\nkind: HavocConfig\nspec:\n  dryRun: true\n  limits: {maxConcurrentExperiments: 1}\n---\napiVersion: havoc.dev/v1alpha1\nkind: ChaosPolicy\nmetadata: {name: a}\nspec:\n  schedule: {cron: '@hourly'}\n  target: {kind: Pod, namespaces: [d]}\n  fault: {podDelete: {}}\n  duration: 1m\n---\napiVersion: havoc.dev/v1alpha1\nkind: ChaosPolicy\nmetadata: {name: b}\nspec:\n  schedule: {cron: '@hourly'}\n  target: {kind: Pod, namespaces: [d]}\n  fault: {podDelete: {}}\n  duration: 1m\n";

    #[tokio::test(start_paused = true)]
    async fn the_limit_pauses_and_leadership_decide_who_runs() {
        let (config, policies) = load(DOCS);
        let (arbiter, leader) = arbiter(config);
        let manual = || TriggerInfo::Manual {
            source: "test".into(),
        };
        let Start::Started { id } = arbiter.start(policies[0].clone(), manual()) else {
            panic!("the first run starts");
        };
        // Same policy again, and another policy over the limit of one: skipped, recorded.
        let again = arbiter.start(policies[0].clone(), manual());
        assert!(
            matches!(&again, Start::Skipped { reason, .. } if reason.contains(&id)),
            "{again:?}"
        );
        let other = arbiter.start(policies[1].clone(), manual());
        assert!(
            matches!(&other, Start::Skipped { reason, .. } if reason.contains("maxConcurrentExperiments is 1")),
            "{other:?}"
        );
        assert_eq!(arbiter.journal().newest(10).len(), 2);

        // The dry run ends (paused clock: duration and settle pass at once).
        tokio::time::sleep(Duration::from_secs(200)).await;
        let records = arbiter.journal().newest(10);
        assert_eq!(records[0].id, id);
        assert_eq!(records[0].verdict, Verdict::Passed, "{:?}", records[0]);
        assert!(arbiter.running().is_empty());

        // Paused: everything, then one policy; resume clears both.
        arbiter.pause(None, None, "maintenance".into());
        assert!(
            matches!(arbiter.start(policies[1].clone(), manual()), Start::Skipped { reason, .. } if reason.contains("maintenance"))
        );
        arbiter.resume(None);
        arbiter.pause(
            Some("b"),
            Some(Utc::now() + chrono::Duration::hours(1)),
            "breaker".into(),
        );
        assert!(
            matches!(arbiter.start(policies[1].clone(), manual()), Start::Skipped { reason, .. } if reason.contains("breaker"))
        );
        arbiter.resume(Some("b"));

        // Not the leader: nothing runs and nothing is recorded.
        leader.send_replace(false);
        let before = arbiter.journal().newest(100).len();
        assert_eq!(
            arbiter.start(policies[1].clone(), manual()),
            Start::NotLeader
        );
        arbiter.record_skip(&policies[1], manual(), "missed".into());
        assert_eq!(arbiter.journal().newest(100).len(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_pause_lets_runs_through() {
        let (config, policies) = load(DOCS);
        let (arbiter, _leader) = arbiter(config);
        arbiter.pause(
            Some("a"),
            Some(Utc::now() - chrono::Duration::seconds(1)),
            "over".into(),
        );
        let started = arbiter.start(
            policies[0].clone(),
            TriggerInfo::Manual { source: "t".into() },
        );
        assert!(matches!(started, Start::Started { .. }), "{started:?}");
        assert!(arbiter.pauses().policies.is_empty());
    }
}
