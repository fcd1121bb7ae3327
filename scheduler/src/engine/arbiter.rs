//! The arbiter: the one place that decides whether an experiment starts, for every
//! trigger (clock, manual, rollout). It owns the pause switches, the concurrency limit,
//! the circuit breaker, and emitting records (journal, metrics, Events, notifications).

use std::{
    collections::BTreeMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, MutexGuard},
};

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde::Serialize;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    experiment::{self, Env, RunOptions},
    metrics::Metrics,
    notify::{Notifier, Queues},
    policies::PolicySet,
};
use crate::{
    journal::{Intent, Journal},
    leader::Leadership,
    policy::{Policy, domain::NotifyRule, model::OnDeviation},
    record::{
        ErrorReason, ExperimentRecord, RevertResult, SkipReason, TargetOutcome, TargetRecord,
        TargetRevert, TriggerInfo, Verdict,
    },
    state::{Doc, SharedState, StateError},
    target::{Restriction, SnapshotSource},
};

pub use crate::state::Pause;

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Running; the record comes when it ends.
    Started { id: String },
    /// Not run; a `skipped` record was written.
    Skipped { id: String, reason: SkipReason },
    /// This replica is not the leader: nothing run, nothing recorded.
    NotLeader,
}

#[derive(Debug, Default)]
struct State {
    /// Pauses written here and not yet seen in the shared state (a circuit breaker's,
    /// while its write is on its way): obeyed at once.
    pending: Doc,
    /// Running experiments: id -> (policy, what cuts it short).
    running: BTreeMap<String, Running>,
    /// The last emergency stop acted on.
    stopped_at: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct Running {
    policy: String,
    cancel: CancellationToken,
}

/// A snapshot of the switches for the API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseView {
    pub all: Option<Pause>,
    pub policies: BTreeMap<String, Pause>,
}

/// Everything an arbiter is built from.
pub struct Parts {
    pub env: Env,
    pub source: Arc<dyn SnapshotSource>,
    pub journal: Arc<Journal>,
    pub notifier: Arc<Notifier>,
    pub metrics: Metrics,
    pub leader: Leadership,
    /// Pauses, `havoc run`s in progress and emergency stops, shared by every replica.
    pub shared: SharedState,
    /// Cancelled on shutdown: no new experiments, running ones cut short.
    pub stop: CancellationToken,
    /// Seeds target choice (tests); `None`: random.
    pub seed: Option<u64>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

/// The engine's decision point.
pub struct Arbiter {
    env: Env,
    source: Arc<dyn SnapshotSource>,
    state: Mutex<State>,
    journal: Arc<Journal>,
    queues: Queues,
    metrics: Metrics,
    leader: Leadership,
    shared: SharedState,
    stop: CancellationToken,
    experiments: TaskTracker,
    notifications: TaskTracker,
    seed: Option<u64>,
}

impl std::fmt::Debug for Arbiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arbiter").finish_non_exhaustive()
    }
}

impl Arbiter {
    pub fn new(parts: Parts) -> Arc<Self> {
        let notifications = TaskTracker::new();
        let queues = parts.notifier.queues(parts.metrics.clone(), &notifications);
        Arc::new(Arbiter {
            env: parts.env,
            source: parts.source,
            state: Mutex::new(State::default()),
            journal: parts.journal,
            queues,
            metrics: parts.metrics,
            leader: parts.leader,
            shared: parts.shared,
            stop: parts.stop,
            experiments: TaskTracker::new(),
            notifications,
            seed: parts.seed,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent in a way that
        // matters more than stopping chaos would: keep going with what is there.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_leader(&self) -> bool {
        self.leader.is_leader()
    }

    /// After a reload: the gauges count only the pauses of policies that exist.
    pub fn policies_changed(&self, set: &PolicySet) {
        let mut st = self.state();
        st.pending
            .policies
            .retain(|name, _| set.policies.contains_key(name));
        drop(st);
        self.pauses();
    }

    /// Running experiments: id -> policy.
    pub fn running(&self) -> BTreeMap<String, String> {
        self.state()
            .running
            .iter()
            .map(|(id, r)| (id.clone(), r.policy.clone()))
            .collect()
    }

    /// The emergency stop: pauses all chaos (in the shared state, so every replica and
    /// `havoc run` obey it) and cuts every experiment running here short, so that each
    /// reverts what it holds now; the leader of another replica does the same when it
    /// sees the stop. The ids of the experiments stopped here.
    pub async fn stop_all(&self, reason: String) -> Result<Vec<String>, StateError> {
        let now = Utc::now();
        let pause = Pause {
            since: now,
            until: None,
            reason: reason.clone(),
        };
        self.state().pending.all = Some(pause.clone());
        self.shared
            .update(|d| {
                d.all = Some(pause.clone());
                d.stopped_at = Some(now);
            })
            .await?;
        Ok(self.cut_short(now))
    }

    /// Ends every experiment running here (each reverts what it holds).
    fn cut_short(&self, at: DateTime<Utc>) -> Vec<String> {
        let mut st = self.state();
        st.stopped_at = Some(at);
        for (id, r) in &st.running {
            tracing::warn!(id = %id, policy = %r.policy, "stop: ending the experiment and reverting its faults");
            r.cancel.cancel();
        }
        st.running.keys().cloned().collect()
    }

    /// Ends one experiment running here ("revert now" in the console): it reverts what it
    /// holds now, like an emergency stop, without pausing anything. Whether it ran here.
    pub fn cut_short_one(&self, id: &str) -> bool {
        let st = self.state();
        let Some(r) = st.running.get(id) else {
            return false;
        };
        tracing::warn!(id = %id, policy = %r.policy, "revert now: ending the experiment and reverting its faults");
        r.cancel.cancel();
        true
    }

    /// Retries the journal's pending writes every `every` until shutdown; while it cannot
    /// write, chaos is paused with the reason (`journalUnwritable`), and resumes by itself
    /// when space returns.
    pub async fn keep_journal_writing(self: Arc<Self>, every: std::time::Duration) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if self.journal.write_error().is_none() {
                continue;
            }
            match self.journal.retry_pending() {
                Ok(()) if self.journal.write_error().is_none() => {
                    if failing {
                        tracing::info!("the journal writes again: chaos resumes");
                    }
                    failing = false;
                }
                Ok(()) => {}
                Err(e) => {
                    if !failing {
                        tracing::error!(error = %e, "the journal cannot be written: chaos is paused until it can");
                    }
                    failing = true;
                }
            }
        }
    }

    /// Follows the shared state until shutdown: an emergency stop sent to any replica
    /// ends the experiments running here too.
    pub async fn follow_stops(self: Arc<Self>) {
        let mut changes = self.shared.changes();
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            let stopped = self.shared.doc().and_then(|d| d.stopped_at);
            let seen = self.state().stopped_at;
            if let Some(at) = stopped
                && seen.is_none_or(|s| at > s)
            {
                let cut = self.cut_short(at);
                if !cut.is_empty() {
                    tracing::warn!(experiments = ?cut, "emergency stop seen in the shared state");
                }
            }
            self.pauses();
        }
    }

    /// Pauses everything (`policy: None`) or one policy; `until: None` lasts until
    /// resumed. Written to the shared state: every replica obeys it, and it survives
    /// restarts.
    pub async fn pause(
        &self,
        policy: Option<&str>,
        until: Option<DateTime<Utc>>,
        reason: String,
    ) -> Result<PauseView, StateError> {
        let pause = Pause {
            since: Utc::now(),
            until,
            reason,
        };
        tracing::warn!(policy = policy.unwrap_or("*"), until = ?until, reason = %pause.reason, "chaos paused");
        self.shared
            .update(|d| match policy {
                None => d.all = Some(pause.clone()),
                Some(p) => {
                    d.policies.insert(p.to_string(), pause.clone());
                }
            })
            .await?;
        Ok(self.pauses())
    }

    /// Resumes everything (clearing every pause, circuit breakers included) or one policy.
    pub async fn resume(&self, policy: Option<&str>) -> Result<PauseView, StateError> {
        tracing::info!(policy = policy.unwrap_or("*"), "chaos resumed");
        {
            let mut st = self.state();
            match policy {
                None => st.pending = Doc::default(),
                Some(p) => {
                    st.pending.policies.remove(p);
                }
            }
        }
        self.shared
            .update(|d| match policy {
                None => {
                    d.all = None;
                    d.policies.clear();
                }
                Some(p) => {
                    d.policies.remove(p);
                }
            })
            .await?;
        Ok(self.pauses())
    }

    /// The pauses in force: the shared state's and the ones on their way there.
    pub fn pauses(&self) -> PauseView {
        let now = Utc::now();
        let shared = self.shared.doc().unwrap_or_default();
        let mut st = self.state();
        st.pending.prune(now);
        // A pending pause is done once the shared state has it.
        if st.pending.all.is_some() && shared.all == st.pending.all {
            st.pending.all = None;
        }
        let seen: Vec<String> = st
            .pending
            .policies
            .iter()
            .filter(|(k, v)| shared.policies.get(*k) == Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        for k in seen {
            st.pending.policies.remove(&k);
        }
        let mut policies = shared.policies.clone();
        for (k, v) in &st.pending.policies {
            policies.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let view = PauseView {
            all: shared.all.clone().or_else(|| st.pending.all.clone()),
            policies,
        };
        self.metrics.paused(view.all.is_some(), view.policies.len());
        view
    }

    /// A circuit breaker's pause: obeyed here at once, written to the shared state in
    /// the background (retried by the next write if it fails).
    fn pause_in_background(&self, policy: Option<String>, until: DateTime<Utc>, reason: String) {
        let pause = Pause {
            since: Utc::now(),
            until: Some(until),
            reason,
        };
        tracing::warn!(policy = policy.as_deref().unwrap_or("*"), until = %until, reason = %pause.reason, "chaos paused");
        {
            let mut st = self.state();
            match &policy {
                None => st.pending.all = Some(pause.clone()),
                Some(p) => {
                    st.pending.policies.insert(p.clone(), pause.clone());
                }
            }
        }
        let shared = self.shared.clone();
        self.notifications.spawn(async move {
            let written = shared
                .update(|d| match &policy {
                    None => d.all = Some(pause.clone()),
                    Some(p) => {
                        d.policies.insert(p.clone(), pause.clone());
                    }
                })
                .await;
            if let Err(e) = written {
                tracing::error!(error = %e, "cannot write the circuit breaker's pause to the shared state; it holds in this process only");
            }
        });
    }

    /// Why `policy` may not start now, if it may not; reserves a slot (with the token
    /// that cuts it short) if it may.
    fn admit(&self, policy: &Policy, id: &str, cancel: &CancellationToken) -> Option<SkipReason> {
        let known = self.shared.doc();
        let pauses = self.pauses();
        let external = known.as_ref().map_or(0, |d| d.runs.len());
        let mut st = self.state();
        let limit = self.env.config.limits.max_concurrent_experiments;
        let running = st.running.len() + external;
        let refusal = if self.stop.is_cancelled() {
            Some(SkipReason::ShuttingDown)
        } else if let Some(why) = self.journal.write_error() {
            // Nothing is changed unrecorded: chaos waits until the journal writes again.
            Some(SkipReason::JournalUnwritable(why))
        } else if known.is_none() {
            Some(SkipReason::StateUnknown)
        } else if let Some(p) = &pauses.all {
            Some(SkipReason::PausedAll(p.reason.clone()))
        } else if let Some(p) = pauses.policies.get(&policy.name) {
            Some(SkipReason::PausedPolicy(p.reason.clone()))
        } else if let Some((other, _)) = st.running.iter().find(|(_, r)| r.policy == policy.name) {
            Some(SkipReason::StillRunning(other.clone()))
        } else if running >= limit as usize {
            Some(SkipReason::Limit { limit, running })
        } else {
            None
        };
        if refusal.is_none() {
            st.running.insert(
                id.to_string(),
                Running {
                    policy: policy.name.clone(),
                    cancel: cancel.clone(),
                },
            );
            self.metrics.active_experiments(st.running.len());
        }
        refusal
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
        restrict: Option<Restriction>,
    ) -> Start {
        if !self.is_leader() {
            return Start::NotLeader;
        }
        let id = experiment::new_id(&policy.name, Utc::now());
        let cancel = self.stop.child_token();
        if let Some(reason) = self.admit(&policy, &id, &cancel) {
            let record = experiment::skipped_record(&policy, trigger, &reason);
            let id = record.id.clone();
            self.emit(Some(&policy), record);
            return Start::Skipped { id, reason };
        }
        let this = self.clone();
        let opts = RunOptions {
            id: id.clone(),
            seed: self.seed,
            cancel,
            restrict,
            shutdown: Some(self.stop.clone()),
        };
        self.experiments.spawn(async move {
            tracing::info!(id = %opts.id, policy = %policy.name, "experiment starting");
            let fallback = experiment::new_record(&policy, trigger.clone(), opts.id.clone());
            let run = experiment::execute(&this.env, this.source.as_ref(), &policy, trigger, opts);
            // A panic must not leave the slot taken forever (with a limit of 1 that would
            // stop all chaos): it becomes an errored record and the slot is freed.
            let record = match AssertUnwindSafe(run).catch_unwind().await {
                Ok(record) => record,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_string());
                    tracing::error!(id = %fallback.id, %message, "experiment task panicked");
                    let mut r = fallback;
                    r.error(&ErrorReason::Panicked(message));
                    r
                }
            };
            {
                let mut st = this.state();
                st.running.remove(&record.id);
                this.metrics.active_experiments(st.running.len());
            }
            this.emit(Some(&policy), record);
        });
        Start::Started { id }
    }

    /// Records a run that did not happen (a missed fire) without starting anything.
    pub fn record_skip(&self, policy: &Policy, trigger: TriggerInfo, reason: SkipReason) {
        if !self.is_leader() {
            return;
        }
        let record = experiment::skipped_record(policy, trigger, &reason);
        self.emit(Some(policy), record);
    }

    /// The final record of an experiment a crash cut short (its intent was journaled,
    /// its record never was), after recovery reverted what it had left.
    pub fn close_interrupted(
        &self,
        intent: &Intent,
        policy: Option<&Policy>,
        reverts: &[&TargetRevert],
    ) {
        let mut record = ExperimentRecord {
            id: intent.id.clone(),
            policy: intent.policy.clone(),
            verdict: Verdict::Errored,
            reason: String::new(),
            reason_code: None,
            dry_run: intent.dry_run,
            trigger: intent.trigger.clone(),
            targets: intent
                .targets
                .iter()
                .map(|o| TargetRecord {
                    kind: o.kind.clone(),
                    namespace: o.namespace.clone(),
                    name: o.name.clone(),
                    outcome: TargetOutcome::Injected,
                    detail: Some("state unknown: havoc stopped during the experiment".into()),
                    revert: None,
                })
                .collect(),
            fault: intent.fault.clone(),
            started_at: intent.started_at,
            injected_at: None,
            reverted_at: None,
            ended_at: Utc::now(),
            alerts: Vec::new(),
            slos: Vec::new(),
        };
        for r in reverts {
            // A partition's change is on a NetworkPolicy; attach it to the first target.
            let i = record
                .targets
                .iter()
                .position(|t| t.kind == r.object.kind && t.name == r.object.name)
                .unwrap_or(0);
            if let Some(t) = record.targets.get_mut(i) {
                t.revert = Some((*r).clone());
            }
            record.reverted_at = Some(r.at);
        }
        let summary = crate::engine::sweeper::recovery_summary(intent, reverts);
        let failed: Vec<String> = reverts
            .iter()
            .filter(|r| r.result == RevertResult::Failed)
            .map(|r| format!("{} {}", r.object.kind, r.object.name))
            .collect();
        if failed.is_empty() {
            record.error(&ErrorReason::Crashed { recovery: summary });
        } else {
            record.finish(
                Verdict::RollbackFailed,
                format!(
                    "interrupted: havoc stopped during the experiment, and its revert failed: {}",
                    failed.join(", ")
                ),
                Some("revertFailed"),
            );
        }
        self.emit(policy, record);
    }

    /// Journal, metrics, Events, circuit breaker, and notifications (in the background).
    fn emit(&self, policy: Option<&Policy>, record: ExperimentRecord) {
        tracing::info!(
            id = %record.id,
            policy = %record.policy,
            verdict = record.verdict.label(),
            reason = %record.reason,
            dry_run = record.dry_run,
            targets = record.targets.len(),
            "experiment ended"
        );
        if let Err(e) = self.journal.append(&record) {
            tracing::error!(error = %e, id = %record.id, "cannot append to the journal");
        }
        self.metrics.experiment(&record);
        if let Some(ev) = &self.env.events {
            ev.verdict(&record);
        }
        if record.verdict == Verdict::Deviated {
            let cooldown = self.env.config.circuit_breaker_cooldown;
            let until = Utc::now() + chrono::Duration::from_std(cooldown).unwrap_or_default();
            let reason = format!(
                "circuit breaker: experiment {} deviated ({})",
                record.id, record.reason
            );
            match policy.map_or(OnDeviation::PausePolicy, |p| p.on_deviation) {
                OnDeviation::Continue => {}
                OnDeviation::PausePolicy => {
                    self.pause_in_background(Some(record.policy.clone()), until, reason)
                }
                OnDeviation::PauseAll => self.pause_in_background(None, until, reason),
            }
        }
        let rule = policy.map_or_else(|| self.env.config.notify.clone(), |p| p.notify.clone());
        self.notify(rule, record);
    }

    fn notify(&self, rule: NotifyRule, record: ExperimentRecord) {
        let receivers = Notifier::route(&rule, &record);
        if !receivers.is_empty() {
            self.queues.enqueue(&receivers, record);
        }
    }

    /// Stops starting experiments, cuts running ones short (each completes its record),
    /// and waits for them and pending notifications until `deadline`. Whether everything
    /// finished in time.
    pub async fn shut_down(&self, deadline: tokio::time::Instant) -> bool {
        self.stop.cancel();
        self.experiments.close();
        let experiments = tokio::time::timeout_at(deadline, self.experiments.wait())
            .await
            .is_ok();
        // Only now: the experiments' last records notify too.
        self.queues.close();
        self.notifications.close();
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
    use std::time::Duration;

    use futures::future::BoxFuture;

    use super::*;
    use crate::{
        policy::fixtures,
        target::{Guards, Snapshot, SnapshotError, fixtures as targets},
    };

    /// Two Running, Ready pods of one workload, forever.
    struct TwoPods;

    impl SnapshotSource for TwoPods {
        fn snapshot<'a>(&'a self, _: &'a Policy) -> BoxFuture<'a, Result<Snapshot, SnapshotError>> {
            futures::future::ready(Ok(targets::snapshot("d", "web", 2))).boxed()
        }
    }

    /// A source that panics: an experiment task that blows up.
    struct Panics;

    impl SnapshotSource for Panics {
        fn snapshot<'a>(&'a self, _: &'a Policy) -> BoxFuture<'a, Result<Snapshot, SnapshotError>> {
            async { panic!("snapshot exploded") }.boxed()
        }
    }

    fn arbiter(
        config: crate::policy::Config,
        source: Arc<dyn SnapshotSource>,
    ) -> (Arc<Arbiter>, crate::leader::Publisher, Arc<Journal>) {
        let (svc, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let notifier = Arc::new(Notifier::from_config(&config).expect("notifier"));
        let config = Arc::new(config);
        let (publisher, leader) = crate::leader::channel();
        publisher.publish(true);
        let journal = Arc::new(Journal::in_memory(100));
        let a = Arbiter::new(Parts {
            env: Env {
                guards: Guards {
                    min_available_replicas: 1,
                    ..Guards::default()
                },
                ..Env::for_tests(
                    kube::Client::new(svc, "default"),
                    config,
                    Some(journal.clone()),
                    leader.clone(),
                )
            },
            source,
            journal: journal.clone(),
            notifier,
            metrics: Metrics::new(),
            leader,
            shared: SharedState::in_memory(),
            stop: CancellationToken::new(),
            seed: Some(1),
        });
        (a, publisher, journal)
    }

    fn policies() -> (Arc<Policy>, Arc<Policy>) {
        let p = |name| Arc::new(fixtures::policy(name).namespaces(&["d"]).build());
        (p("a"), p("b"))
    }

    fn manual() -> TriggerInfo {
        TriggerInfo::Manual {
            source: "test".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_pauses_and_leadership_decide_who_runs() {
        let (a, b) = policies();
        let (arbiter, leader, journal) = arbiter(fixtures::config().build(), Arc::new(TwoPods));
        let Start::Started { id } = arbiter.start(a.clone(), manual()) else {
            panic!("the first run starts");
        };
        // Same policy again, and another policy over the limit of one: skipped, recorded.
        let again = arbiter.start(a.clone(), manual());
        assert!(
            matches!(&again, Start::Skipped { reason: SkipReason::StillRunning(other), .. } if *other == id),
            "{again:?}"
        );
        let other = arbiter.start(b.clone(), manual());
        assert!(
            matches!(&other, Start::Skipped { reason, .. } if reason.to_string().contains("maxConcurrentExperiments is 1")),
            "{other:?}"
        );
        assert_eq!(journal.newest(10).len(), 2);

        // The dry run ends (paused clock: duration and settle pass at once).
        tokio::time::sleep(Duration::from_secs(200)).await;
        let records = journal.newest(10);
        assert_eq!(records[0].id, id);
        assert_eq!(records[0].verdict, Verdict::Passed, "{:?}", records[0]);
        assert!(arbiter.running().is_empty());

        // Paused: everything, then one policy; resume clears both.
        arbiter
            .pause(None, None, "maintenance".into())
            .await
            .expect("paused");
        assert!(
            matches!(arbiter.start(b.clone(), manual()), Start::Skipped { reason: SkipReason::PausedAll(r), .. } if r == "maintenance")
        );
        arbiter.resume(None).await.expect("resumed");
        arbiter
            .pause(
                Some("b"),
                Some(Utc::now() + chrono::Duration::hours(1)),
                "breaker".into(),
            )
            .await
            .expect("paused");
        assert!(
            matches!(arbiter.start(b.clone(), manual()), Start::Skipped { reason, .. } if reason.to_string().contains("breaker"))
        );
        arbiter.resume(Some("b")).await.expect("resumed");

        // Not the leader: nothing runs and nothing is recorded.
        leader.publish(false);
        let before = journal.newest(100).len();
        assert_eq!(arbiter.start(b.clone(), manual()), Start::NotLeader);
        arbiter.record_skip(&b, manual(), SkipReason::Missed("missed".into()));
        assert_eq!(journal.newest(100).len(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_pause_lets_runs_through() {
        let (a, _) = policies();
        let (arbiter, _leader, _) = arbiter(fixtures::config().build(), Arc::new(TwoPods));
        arbiter
            .pause(
                Some("a"),
                Some(Utc::now() - chrono::Duration::seconds(1)),
                "over".into(),
            )
            .await
            .expect("paused");
        let started = arbiter.start(a, manual());
        assert!(matches!(started, Start::Started { .. }), "{started:?}");
        assert!(arbiter.pauses().policies.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_experiment_is_recorded_and_frees_its_slot() {
        let (a, b) = policies();
        let (arbiter, _leader, journal) = arbiter(fixtures::config().build(), Arc::new(Panics));
        let Start::Started { id } = arbiter.start(a, manual()) else {
            panic!("starts");
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let records = journal.newest(10);
        assert_eq!(records[0].id, id);
        assert_eq!(records[0].verdict, Verdict::Errored);
        assert_eq!(records[0].reason_code.as_deref(), Some("panicked"));
        assert!(
            records[0].reason.contains("snapshot exploded"),
            "{}",
            records[0].reason
        );
        assert!(arbiter.running().is_empty(), "the slot is free");
        // With maxConcurrentExperiments 1, the next run still starts.
        assert!(matches!(arbiter.start(b, manual()), Start::Started { .. }));
    }
}
