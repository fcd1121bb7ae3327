//! The pause switches: the emergency stop (experiments cut short first, the pause written
//! after, until it lands), pauses and resumes through the API, the circuit breakers'
//! pauses (decided at once, written until they land, restored after a restart from the
//! journal), and following the shared state that every replica writes.

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Arbiter;
use crate::{
    engine::emit::Breaker,
    history::Summary,
    policy::domain::OnDeviation,
    record::Verdict,
    state::{Doc, Pause, StateError},
};

/// A snapshot of the switches for the API.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "The pause switches after the request.")]
pub struct PauseView {
    /// All chaos paused; null when not.
    pub all: Option<Pause>,
    /// Paused policies by name.
    pub policies: BTreeMap<String, Pause>,
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

impl Arbiter {
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
    /// process died before its write): re-decided from the history.s records, once, as
    /// soon as the shared state is known. A pause already in the shared state, a resume
    /// after the deviation, or a cooldown that is over leaves it alone. Whether it ran.
    pub(super) fn restore_breakers(&self) -> bool {
        let Some(doc) = self.shared.doc() else {
            return false;
        };
        if !self.history.is_ready() {
            return false;
        }
        let now = Utc::now();
        let cooldown = chrono::Duration::from_std(self.env.config.circuit_breaker_cooldown)
            .unwrap_or_default();
        let on_deviation = self.state().on_deviation.clone();
        let mut newest: BTreeMap<Option<String>, Summary> = BTreeMap::new();
        for r in self.history.summaries() {
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

    /// A circuit breaker's pause: obeyed here at once, written to the shared state by
    /// [`Arbiter::keep_pauses_written`], retried until it lands.
    pub(super) fn trip(&self, b: Breaker) {
        self.pause_in_background(b.policy, b.until, b.reason);
    }
}
