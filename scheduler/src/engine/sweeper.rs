//! The recovery sweep (DESIGN section 5): on the leader, at start-up and then every
//! `interval`, the revert records in the watch caches are checked and every due one is
//! reverted ([`crate::fault::recovery::is_due`]): this installation's records whose
//! experiment is not running in this process (havoc restarted, or a revert failed), and
//! anyone's records past their deadline. A revert that fails is retried with backoff
//! (doubling up to [`MAX_BACKOFF`]), counted in `havoc_reverts_total{result}`, and
//! published as a Kubernetes Event once per failure streak. A revert the API server
//! refuses (403: havoc's RBAC no longer allows it) is not a transient failure: it is
//! logged as an error on every attempt, published as a `ChaosRevertFailed` Event, counted
//! in `havoc_reverts_forbidden` (the chart's PrometheusRule alerts on it) and tried again
//! only every [`MAX_BACKOFF`], in case the permission comes back.
//!
//! Before its first sweep the leader lists the Nodes, Deployments and StatefulSets once
//! for records written without their label ([`recovery::mark_unlabelled`]): the watches
//! of those kinds select that label.
//!
//! The first sweep also closes the journal's dangling intents (experiments a crash cut
//! short): one final record each, `errored` (reasonCode `crashed`) naming what its revert
//! did, or `rollbackFailed` if it could not be undone.

use crate::policy::set::Policies;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    arbiter::Arbiter,
    experiment::{Env, revert_with_retries},
};
use crate::{
    fault::{Held, Mutator, recovery},
    history::{History, cluster::ClusterHistory, skips::SkipCounter},
    journal::Journal,
    leader::Leadership,
    record::{ObjectRef, RevertResult, TargetRevert},
    targets::cache::Caches,
};

/// Default time between two sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// The longest wait before a failed revert is tried again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// What the sweep reads and drives.
#[derive(Debug, Clone)]
pub struct Sweeper {
    pub env: Env,
    pub caches: Caches,
    pub arbiter: Arc<Arbiter>,
    pub journal: Arc<Journal>,
    /// The experiment objects: the leader closes those nobody will finish, and prunes.
    pub history: Option<ClusterHistory>,
    /// Skips counted here, written into the shared state by the leader.
    pub skips: Option<SkipCounter>,
    /// The shared state ConfigMap (where skips are written).
    pub shared_name: String,
    pub policies: Policies,
    pub leader: Leadership,
    pub interval: Duration,
    pub stop: CancellationToken,
}

/// How long a new leader waits before it closes the experiments of the replica it took
/// over from: a demoted replica that is still alive writes its own final record first.
pub const TAKEOVER_GRACE: Duration = Duration::from_secs(10);

/// What the sweeps reverted lately, by experiment: named when its record is closed.
#[derive(Debug, Default)]
struct RecentReverts(BTreeMap<String, Vec<(Instant, TargetRevert)>>);

impl RecentReverts {
    const KEEP: Duration = Duration::from_secs(3600);

    fn add(&mut self, reverted: &[(String, TargetRevert)]) {
        for (experiment, r) in reverted {
            self.0
                .entry(experiment.clone())
                .or_default()
                .push((Instant::now(), r.clone()));
        }
        self.0.retain(|_, v| {
            v.retain(|(at, _)| at.elapsed() < Self::KEEP);
            !v.is_empty()
        });
    }

    fn of(&self, experiment: &str) -> Vec<&TargetRevert> {
        self.0
            .get(experiment)
            .map(|v| v.iter().map(|(_, r)| r).collect())
            .unwrap_or_default()
    }
}

/// A revert that failed: when to try again.
#[derive(Debug)]
struct Failing {
    next: Instant,
    backoff: Duration,
    /// Refused for lack of permission (last attempt).
    forbidden: bool,
}

impl Sweeper {
    /// Reverts go through the leader's fence (a demoted leader sends none).
    fn mutator(&self) -> Mutator {
        Mutator::new(
            self.env.client.clone(),
            self.leader.clone(),
            CancellationToken::new(),
        )
    }

    /// Sweeps until `stop`.
    pub async fn run(self) {
        let mut synced = self.caches_synced();
        let mut leader = self.leader.watch();
        let mut failing: BTreeMap<ObjectRef, Failing> = BTreeMap::new();
        let mut dangling_closed = false;
        let mut unlabelled_marked = false;
        let mut led_since: Option<Instant> = None;
        let mut recent = RecentReverts::default();
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                _ = ticker.tick() => {}
                // Becoming leader sweeps at once (a takeover after the leader died).
                Ok(()) = leader.changed() => {}
                () = &mut synced, if !self.caches.recovery_synced() => {}
            }
            if !self.caches.recovery_synced() {
                continue;
            }
            let mut found = recovery::in_caches(&self.caches);
            if let Some(m) = &self.env.metrics {
                m.faults_held(found.held.len());
            }
            if !self.leader.is_leader() {
                led_since = None;
                continue;
            }
            let led_for = led_since.get_or_insert_with(Instant::now).elapsed();
            // Once per process, before the first sweep closes the journal's intents.
            if !unlabelled_marked {
                unlabelled_marked = self.adopt_unlabelled(&mut found).await;
            }
            for (object, why) in &found.unreadable {
                tracing::error!(?object, %why, "a havoc record havoc cannot read: look at this object");
            }
            let reverted = self.sweep(&found.held, &mut failing).await;
            recent.add(&reverted);
            let history = self.history.as_ref().filter(|h| h.is_ready());
            // The journal's intents once the history is read (not one it shows finished).
            if !dangling_closed && (self.history.is_none() || history.is_some()) {
                dangling_closed = true;
                self.close_dangling(&reverted, history);
            }
            if let Some(h) = history {
                self.close_orphans(h, &found.held, &failing, &recent, led_for);
                if let Some(w) = &self.env.history {
                    let keep = &self.env.config.history;
                    if let Err(e) = w.prune(h, keep.keep, keep.max_age).await {
                        tracing::warn!(error = %e, "cannot prune the experiment history; the next sweep tries again");
                    }
                }
            }
            if let Some(skips) = &self.skips {
                let ns = &self.env.config.leader_election.namespace;
                if let Err(e) = skips.write(&self.env.client, ns, &self.shared_name).await {
                    tracing::warn!(error = %e, "cannot write the skip counts; the next sweep tries again");
                }
            }
        }
    }

    /// Closes the experiments in the cluster's history whose final record nobody will
    /// write: this installation's (not running in this process, nor started or finished by
    /// it: [`crate::history::writer::HistoryWriter::is_ours`]) once this replica has led
    /// for [`TAKEOVER_GRACE`] (a demoted replica that is still alive writes its own
    /// first), and anyone's past their `endsBy` (a `havoc run` that died).
    /// Never while something of it is still to be reverted: after its reverts, naming
    /// them.
    fn close_orphans(
        &self,
        history: &ClusterHistory,
        held: &[Held],
        failing: &BTreeMap<ObjectRef, Failing>,
        recent: &RecentReverts,
        led_for: Duration,
    ) {
        let running: BTreeSet<String> = self.arbiter.running().into_keys().collect();
        let now = Utc::now();
        for r in history.running() {
            let id = &r.intent.id;
            if running.contains(id) || self.env.history.as_ref().is_some_and(|w| w.is_ours(id)) {
                continue;
            }
            let ends_by = r
                .intent
                .ends_by
                .unwrap_or(r.intent.deadline + chrono::Duration::minutes(5));
            let ours = r.owner == self.env.owner && led_for >= TAKEOVER_GRACE;
            if !ours && now <= ends_by {
                continue;
            }
            let to_revert = held
                .iter()
                .any(|h| h.record.experiment == *id && !failing.contains_key(&h.object));
            if to_revert {
                continue;
            }
            let reverts = recent.of(id);
            tracing::warn!(experiment = %id, owner = %r.owner, replica = %r.replica, "closing an experiment its havoc did not finish");
            let set = self.policies.current();
            let policy = set.get(&r.intent.policy).map(|p| p.as_ref());
            self.arbiter.close_interrupted(&r.intent, policy, &reverts);
        }
    }

    /// Adds to `found` the records written without their label (and labels them);
    /// whether that list succeeded. A failure never holds up the sweep of the records the
    /// watches see: the next round tries again.
    async fn adopt_unlabelled(&self, found: &mut recovery::Found) -> bool {
        let old = match recovery::mark_unlabelled(&self.mutator()).await {
            Ok(old) => old,
            Err(e) => {
                tracing::warn!(error = %e, "recovery: listing Nodes, Deployments and StatefulSets for unlabelled records failed; the next sweep tries again");
                return false;
            }
        };
        for h in old.held {
            if !found.held.iter().any(|f| f.object == h.object) {
                tracing::info!(object = ?h.object, "recovery: a record without its label, labelled");
                found.held.push(h);
            }
        }
        found.unreadable.extend(old.unreadable);
        true
    }

    fn caches_synced(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        let caches = self.caches.clone();
        Box::pin(async move {
            while !caches.recovery_synced() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    /// Reverts every due record (failed ones only when their backoff has passed).
    async fn sweep(
        &self,
        held: &[Held],
        failing: &mut BTreeMap<ObjectRef, Failing>,
    ) -> Vec<(String, TargetRevert)> {
        let running: BTreeSet<String> = self.arbiter.running().into_keys().collect();
        let now = Utc::now();
        let due: Vec<&Held> = held
            .iter()
            .filter(|h| recovery::is_due(&h.record, &self.env.owner, &running, now))
            .filter(|h| {
                failing
                    .get(&h.object)
                    .is_none_or(|f| Instant::now() >= f.next)
            })
            .collect();
        let present: BTreeSet<&ObjectRef> = held.iter().map(|h| &h.object).collect();
        failing.retain(|o, _| present.contains(o));
        let mut out = Vec::new();
        let m = self.mutator();
        for h in due {
            tracing::info!(object = ?h.object, experiment = %h.record.experiment, owner = %h.record.owner, "recovery: reverting an orphaned record");
            let r = revert_with_retries(&m, self.env.metrics.as_ref(), h).await;
            let note = format!(
                "havoc recovery: {} of experiment {} (policy {}): {}{}",
                h.record.fault,
                h.record.experiment,
                h.record.policy,
                r.result.label(),
                r.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            );
            if r.result.is_failure() {
                let forbidden = r.result == RevertResult::Forbidden;
                let entry = failing.entry(h.object.clone()).or_insert(Failing {
                    next: Instant::now(),
                    backoff: self.interval,
                    forbidden,
                });
                if entry.backoff == self.interval || forbidden != entry.forbidden {
                    // The first failure of a streak (or a new kind of failure): say it.
                    if let Some(ev) = &self.env.events {
                        ev.revert(&h.object, false, note);
                    }
                }
                entry.forbidden = forbidden;
                // A missing permission does not come back by itself within seconds.
                if forbidden {
                    entry.backoff = MAX_BACKOFF;
                }
                entry.next = Instant::now() + entry.backoff;
                entry.backoff = (entry.backoff * 2).min(MAX_BACKOFF);
            } else if (failing.remove(&h.object).is_some() || r.result == RevertResult::Restored)
                && let Some(ev) = &self.env.events
            {
                ev.revert(&h.object, true, note);
            }
            out.push((h.record.experiment.clone(), r));
        }
        if let Some(metrics) = &self.env.metrics {
            metrics.reverts_forbidden(failing.values().filter(|f| f.forbidden).count());
        }
        out
    }

    /// One final record for each intent a crash left without one (unless the cluster's
    /// history shows it finished: a successor closed it meanwhile).
    fn close_dangling(
        &self,
        reverted: &[(String, TargetRevert)],
        history: Option<&ClusterHistory>,
    ) {
        let running: BTreeSet<String> = self.arbiter.running().into_keys().collect();
        let finished: BTreeSet<String> = history
            .map(|h| h.summaries().into_iter().map(|s| s.id).collect())
            .unwrap_or_default();
        for intent in self.journal.dangling() {
            if running.contains(&intent.id) || finished.contains(&intent.id) {
                continue;
            }
            let mine: Vec<&TargetRevert> = reverted
                .iter()
                .filter(|(experiment, _)| *experiment == intent.id)
                .map(|(_, r)| r)
                .collect();
            let set = self.policies.current();
            let policy = set.get(&intent.policy).map(|p| p.as_ref());
            self.arbiter.close_interrupted(&intent, policy, &mine);
        }
    }
}
