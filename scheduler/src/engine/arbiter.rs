//! The arbiter: the one place that decides whether an experiment starts, for every
//! trigger (clock, manual, rollout). It owns the pause switches, the concurrency limit,
//! the circuit breaker, and emitting records (journal, metrics, Events, notifications).

use crate::policy::set::PolicySet;
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
};
use crate::{
    journal::{Intent, Journal},
    leader::Leadership,
    policy::{Policy, domain::NotifyRule, model::OnDeviation},
    record::{
        ErrorReason, ExperimentRecord, SkipReason, TargetOutcome, TargetRecord, TargetRevert,
        TriggerInfo, Verdict,
    },
    state::{Doc, SharedState, StateError},
    targets::{Restriction, SnapshotSource},
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
    /// Pauses (and a stop) decided here and not yet seen in the shared state — an
    /// emergency stop's, a circuit breaker's — while their write is on its way: obeyed
    /// here at once, written by [`Arbiter::keep_pauses_written`] until it lands.
    pending: Doc,
    /// What each policy does on a deviation (from the last policy set).
    on_deviation: BTreeMap<String, OnDeviation>,
    /// The circuit breakers of deviations whose pause may not have landed (the journal's
    /// records) have been restored: until then nothing is admitted.
    breakers_restored: bool,
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
    /// Wakes [`Arbiter::keep_pauses_written`].
    write_pauses: tokio::sync::Notify,
}

/// What an emergency stop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The experiments cut short here.
    pub ids: Vec<String>,
    /// Whether the pause landed in the shared state before the answer (else it is
    /// retried until it lands, and obeyed here meanwhile).
    pub written: bool,
}

/// How long a stop waits for its pause to land before it answers.
pub const STOP_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Backoff of pause writes that failed: from the first to the last.
const PAUSE_RETRY: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(10),
);

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
            write_pauses: tokio::sync::Notify::new(),
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
        st.on_deviation = set
            .policies
            .iter()
            .map(|(name, p)| (name.clone(), p.on_deviation))
            .collect();
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

    /// The emergency stop: cuts every experiment running here short first (each reverts
    /// what it holds now), then pauses all chaos — obeyed here at once, written to the
    /// shared state (so every replica and `havoc run` obey it, and the leader of another
    /// replica cuts its experiments short too) in the background, retried until it lands.
    /// Waits at most [`STOP_WRITE_WAIT`] for the write: a slow or unreachable API server
    /// never delays the stop itself.
    pub async fn stop_all(&self, reason: String) -> Stopped {
        let now = Utc::now();
        let ids = self.cut_short(now);
        let pause = Pause {
            since: now,
            until: None,
            reason,
        };
        {
            let mut st = self.state();
            st.pending.all = Some(pause.clone());
            st.pending.stopped_at = Some(now);
        }
        self.metrics.paused(true, self.pauses().policies.len());
        self.write_pauses.notify_one();
        let mut changes = self.shared.changes();
        let landed =
            async {
                loop {
                    if self.shared.doc().is_some_and(|d| {
                        d.all.as_ref() == Some(&pause) && d.stopped_at >= Some(now)
                    }) {
                        return;
                    }
                    if changes.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
        let written = tokio::time::timeout(STOP_WRITE_WAIT, landed).await.is_ok();
        if !written {
            tracing::warn!(
                "stop: the pause is not in the shared state yet; it is obeyed here and written as soon as the API server answers"
            );
        }
        Stopped { ids, written }
    }

    /// What is decided here and not yet in the shared state.
    fn unwritten(&self) -> Option<Doc> {
        let shared = self.shared.doc().unwrap_or_default();
        let mut st = self.state();
        st.pending.prune(Utc::now());
        let mut want = Doc::default();
        if let Some(p) = &st.pending.all
            && shared.all.as_ref() != Some(p)
        {
            want.all = Some(p.clone());
        }
        for (k, v) in &st.pending.policies {
            if shared.policies.get(k) != Some(v) {
                want.policies.insert(k.clone(), v.clone());
            }
        }
        if let Some(at) = st.pending.stopped_at
            && shared.stopped_at.is_none_or(|s| s < at)
        {
            want.stopped_at = Some(at);
        }
        (want != Doc::default()).then_some(want)
    }

    /// Writes what is decided here (stops, circuit breakers) to the shared state until it
    /// lands: woken by each new decision, retried with backoff (0.5 s doubling to 10 s)
    /// while the API server refuses or does not answer. At shutdown, one last attempt.
    pub async fn keep_pauses_written(self: Arc<Self>) {
        let mut backoff = PAUSE_RETRY.0;
        loop {
            let Some(want) = self.unwritten() else {
                backoff = PAUSE_RETRY.0;
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = self.write_pauses.notified() => continue,
                }
            };
            let written = self
                .shared
                .update(|d| {
                    if let Some(p) = &want.all {
                        d.all = Some(p.clone());
                    }
                    d.policies.extend(want.policies.clone());
                    if let Some(at) = want.stopped_at {
                        d.stopped_at = Some(d.stopped_at.map_or(at, |s| s.max(at)));
                    }
                })
                .await;
            match written {
                Ok(_) => {
                    tracing::info!(all = want.all.is_some(), policies = ?want.policies.keys().collect::<Vec<_>>(), "pause written to the shared state");
                    backoff = PAUSE_RETRY.0;
                    self.pauses();
                }
                Err(e) => {
                    if self.stop.is_cancelled() {
                        tracing::error!(error = %e, "shutting down with a pause not written to the shared state");
                        return;
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot write a pause to the shared state; it holds here meanwhile");
                    tokio::select! {
                        () = self.stop.cancelled() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(PAUSE_RETRY.1);
                }
            }
        }
    }

    /// The circuit breakers of recent deviations whose pause may never have landed (the
    /// process died before its write): re-decided from the journal's records, once, as
    /// soon as the shared state is known. A pause already in the shared state, a resume
    /// after the deviation, or a cooldown that is over leaves it alone. Whether it ran.
    fn restore_breakers(&self) -> bool {
        let Some(doc) = self.shared.doc() else {
            return false;
        };
        let now = Utc::now();
        let cooldown = chrono::Duration::from_std(self.env.config.circuit_breaker_cooldown)
            .unwrap_or_default();
        let on_deviation = self.state().on_deviation.clone();
        let mut newest: BTreeMap<Option<String>, ExperimentRecord> = BTreeMap::new();
        for r in self.journal.newest(usize::MAX) {
            if r.verdict != Verdict::Deviated || r.ended_at + cooldown <= now {
                continue;
            }
            let scope = match on_deviation.get(&r.policy) {
                Some(OnDeviation::PausePolicy) => Some(r.policy.clone()),
                Some(OnDeviation::PauseAll) => None,
                Some(OnDeviation::Continue) | None => continue,
            };
            if newest
                .get(&scope)
                .is_none_or(|seen| seen.ended_at < r.ended_at)
            {
                newest.insert(scope, r);
            }
        }
        let resumed = |key: &str, at: DateTime<Utc>| doc.resumed.get(key).is_some_and(|t| *t >= at);
        let mut st = self.state();
        for (scope, r) in newest {
            let key = scope.as_deref().unwrap_or(crate::state::ALL);
            if resumed(key, r.ended_at) || resumed(crate::state::ALL, r.ended_at) {
                continue;
            }
            let until = r.ended_at + cooldown;
            let covered = |p: Option<&Pause>| p.is_some_and(|p| p.until.is_none_or(|u| u >= until));
            let pause = Pause {
                since: r.ended_at,
                until: Some(until),
                reason: format!(
                    "circuit breaker: experiment {} deviated ({}) [restored at start-up]",
                    r.id, r.reason
                ),
            };
            match scope {
                None if !covered(doc.all.as_ref()) => {
                    tracing::warn!(experiment = %r.id, "restoring the circuit breaker's pause of all chaos");
                    st.pending.all = Some(pause);
                }
                Some(p) if !covered(doc.policies.get(&p)) => {
                    tracing::warn!(experiment = %r.id, policy = %p, "restoring the circuit breaker's pause of the policy");
                    st.pending.policies.insert(p, pause);
                }
                _ => {}
            }
        }
        st.breakers_restored = true;
        drop(st);
        self.write_pauses.notify_one();
        true
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
        let mut restored = self.restore_breakers();
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            if !restored {
                restored = self.restore_breakers();
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
        let now = Utc::now();
        self.shared
            .update(|d| {
                match policy {
                    None => {
                        d.all = None;
                        d.policies.clear();
                    }
                    Some(p) => {
                        d.policies.remove(p);
                    }
                }
                d.resumed
                    .insert(policy.unwrap_or(crate::state::ALL).to_string(), now);
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
        if st
            .pending
            .stopped_at
            .is_some_and(|at| shared.stopped_at >= Some(at))
        {
            st.pending.stopped_at = None;
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

    /// A circuit breaker's pause: obeyed here at once, written to the shared state by
    /// [`Arbiter::keep_pauses_written`], retried until it lands.
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
                None => st.pending.all = Some(pause),
                Some(p) => {
                    st.pending.policies.insert(p.clone(), pause);
                }
            }
        }
        self.write_pauses.notify_one();
        self.pauses();
    }

    /// Why `policy` may not start now, if it may not; reserves a slot (with the token
    /// that cuts it short) if it may.
    fn admit(&self, policy: &Policy, id: &str, cancel: &CancellationToken) -> Option<SkipReason> {
        if !self.state().breakers_restored {
            self.restore_breakers();
        }
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
        } else if known.is_none() || !st.breakers_restored {
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
            .filter(|r| r.result.is_failure())
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
        self.env.annotations.ended(&record);
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
        targets::{Guards, Snapshot, SnapshotError, fixtures as targets},
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
        arbiter_sharing(
            config,
            source,
            SharedState::in_memory(),
            Arc::new(Journal::in_memory(100)),
        )
    }

    /// An arbiter on this shared state and journal (a restarted process).
    fn arbiter_sharing(
        config: crate::policy::Config,
        source: Arc<dyn SnapshotSource>,
        shared: SharedState,
        journal: Arc<Journal>,
    ) -> (Arc<Arbiter>, crate::leader::Publisher, Arc<Journal>) {
        let (svc, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let notifier = Arc::new(Notifier::from_config(&config).expect("notifier"));
        let config = Arc::new(config);
        let (publisher, leader) = crate::leader::channel();
        publisher.publish(true);
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
            shared,
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

    /// A deviation whose breaker pause never reached the shared state (the process was
    /// killed first): the next process pauses the policy from the journal's record, unless
    /// someone resumed it after the deviation.
    #[tokio::test(start_paused = true)]
    async fn a_breaker_pause_that_never_landed_is_restored_from_the_journal() {
        let (a, b) = policies();
        let set = PolicySet::new([(*a).clone(), (*b).clone()]);
        let journal = Arc::new(Journal::in_memory(100));
        let mut deviated = crate::record::tests::record("e-dev", Verdict::Deviated);
        deviated.policy = "a".into();
        deviated.ended_at = Utc::now() - chrono::Duration::minutes(1);
        journal.append(&deviated).expect("journaled");
        let shared = SharedState::in_memory();

        let config = || fixtures::config().build();
        let (restarted, _l, _) =
            arbiter_sharing(config(), Arc::new(TwoPods), shared.clone(), journal.clone());
        restarted.policies_changed(&set);
        let refused = restarted.start(a.clone(), manual());
        assert!(
            matches!(&refused, Start::Skipped { reason: SkipReason::PausedPolicy(r), .. } if r.contains("e-dev")),
            "{refused:?}"
        );
        assert!(
            matches!(restarted.start(b.clone(), manual()), Start::Started { .. }),
            "another policy is not paused"
        );
        // Written to the shared state by the writer.
        tokio::spawn(restarted.clone().keep_pauses_written());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(shared.doc().expect("known").policies.contains_key("a"));

        // Resumed by a human after the deviation: a later restart leaves it resumed.
        restarted.resume(Some("a")).await.expect("resumed");
        let (again, _l, _) =
            arbiter_sharing(config(), Arc::new(TwoPods), shared.clone(), journal.clone());
        again.policies_changed(&set);
        tokio::time::sleep(Duration::from_secs(200)).await;
        let started = again.start(a, manual());
        assert!(matches!(started, Start::Started { .. }), "{started:?}");
    }
}
