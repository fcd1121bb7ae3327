//! The arbiter: the one place that decides whether an experiment starts, for every
//! trigger (clock, manual, rollout).
//!
//! - this module: admission (leadership, pauses, the limit, one run per policy) and
//!   starting experiments;
//! - [`pauses`]: the pause switches, the emergency stop, the circuit breakers;
//! - [`emit`]: records emitted, notifications queued, breakers tripped, the records of
//!   experiments a crash cut short.

mod emit;
mod pauses;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, MutexGuard},
};

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use self::pauses::{PauseView, STOP_WRITE_WAIT, Stopped};
use super::{
    emit::Emitter,
    experiment::{self, Env, RunOptions},
    metrics::Metrics,
    notify::{Notifier, Queues},
};
pub use crate::state::Pause;
use crate::{
    history::{History, skips::SkipCounter},
    journal::Journal,
    leader::Leadership,
    policy::{Policy, domain::OnDeviation, set::PolicySet},
    record::{ErrorReason, ExperimentRecord, SkipReason, TriggerInfo},
    state::{Doc, SharedState},
    targets::{FollowsPolicies, Restriction, SnapshotSource, scope::Needs},
};

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

/// Everything an arbiter is built from.
pub struct Parts {
    pub env: Env,
    pub source: Arc<dyn SnapshotSource>,
    pub journal: Arc<Journal>,
    /// Where the circuit breakers of recent deviations are restored from at start: the
    /// cluster's history (the service), or the journal (tests).
    pub history: Arc<dyn History>,
    /// Skips counted per policy (the service).
    pub skips: Option<SkipCounter>,
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
    history: Arc<dyn History>,
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
    emitter: Emitter,
}

impl std::fmt::Debug for Arbiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arbiter").finish_non_exhaustive()
    }
}

impl Arbiter {
    /// The state shared by every replica (pauses, stops, skip counts).
    pub fn shared_state(&self) -> &SharedState {
        &self.shared
    }

    pub fn new(parts: Parts) -> Arc<Self> {
        let notifications = TaskTracker::new();
        let queues = parts.notifier.queues(parts.metrics.clone(), &notifications);
        let emitter = Emitter {
            config: parts.env.config.clone(),
            journal: Some(parts.journal.clone()),
            history: parts.env.history.clone(),
            skips: parts.skips,
            metrics: Some(parts.metrics.clone()),
            events: parts.env.events.clone(),
            annotations: parts.env.annotations.clone(),
        };
        Arc::new(Arbiter {
            emitter,
            env: parts.env,
            source: parts.source,
            state: Mutex::new(State::default()),
            journal: parts.journal,
            history: parts.history,
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
    fn apply(&self, set: &PolicySet) {
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
        } else if !self.history.is_ready() {
            // The breakers of recent deviations are restored from it first.
            Some(SkipReason::HistoryUnavailable(
                "it has not been read yet: chaos waits until it is".into(),
            ))
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
        let id = crate::record::new_id(&policy.name, Utc::now());
        let cancel = self.stop.child_token();
        if let Some(reason) = self.admit(&policy, &id, &cancel) {
            let record = ExperimentRecord::skipped(policy.record_of(), trigger, &reason);
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
            let fallback =
                ExperimentRecord::start(policy.record_of(), trigger.clone(), opts.id.clone());
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
        let record = ExperimentRecord::skipped(policy.record_of(), trigger, &reason);
        self.emit(Some(policy), record);
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

impl FollowsPolicies for Arbiter {
    fn policies_changed(&self, set: &PolicySet, _: &Needs) {
        self.apply(set);
    }
}
