//! Clock triggers in the service: steps every scheduled policy one fire at a time and
//! hands due fires to the arbiter. A fire that comes too late (the process was stopped or
//! starved, or it was down) is recorded as skipped, never run late in a burst.

use crate::policy::set::{Policies, PolicySet};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{arbiter::Arbiter, metrics::Metrics};
use crate::{
    history::{History, skips::Skips},
    leader::Leadership,
    policy::Policy,
    record::{SkipReason, TriggerInfo},
    schedule::{Schedule, stable_hash},
    state::SharedState,
};

/// A fire handled later than this after its time is missed, not run.
pub const LATE_TOLERANCE: Duration = Duration::from_secs(10);
/// The loop wakes at least this often, so that wall-clock jumps are noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How often the clock looks whether the history was read, until it was.
const HISTORY_POLL: Duration = Duration::from_millis(500);
/// Counting the fires missed while havoc was down stops here.
const MAX_COUNTED_MISSES: usize = 100_000;

/// The seed of the gap after `at`: independent per policy and per step.
fn step_seed(base: u64, policy: &str, at: DateTime<Utc>) -> u64 {
    base ^ stable_hash(policy) ^ (at.timestamp_millis() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn next_after(
    schedule: &Schedule,
    base: u64,
    policy: &str,
    at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    schedule.next_after(at, step_seed(base, policy, at))
}

struct Entry {
    policy: Arc<Policy>,
    next: Option<DateTime<Utc>>,
}

/// The next clock fire of each scheduled policy, for the API and the metrics. Cheap to
/// clone; written by the clock only.
#[derive(Debug, Clone, Default)]
pub struct NextFires {
    fires: Arc<Mutex<BTreeMap<String, DateTime<Utc>>>>,
    metrics: Option<Metrics>,
}

impl NextFires {
    pub fn new(metrics: Metrics) -> Self {
        NextFires {
            fires: Arc::default(),
            metrics: Some(metrics),
        }
    }

    pub fn get(&self, policy: &str) -> Option<DateTime<Utc>> {
        self.lock().get(policy).copied()
    }

    fn set(&self, policy: &str, at: Option<DateTime<Utc>>) {
        if let Some(m) = &self.metrics {
            m.next_run(policy, at);
        }
        let mut fires = self.lock();
        match at {
            Some(t) => fires.insert(policy.to_string(), t),
            None => fires.remove(policy),
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DateTime<Utc>>> {
        self.fires.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the clock reads and drives.
#[derive(Debug, Clone)]
pub struct Clock {
    pub arbiter: Arc<Arbiter>,
    pub policies: Policies,
    pub leader: Leadership,
    /// What ran (the cluster's history; the journal in tests) and the skips counted in
    /// the shared state: where missed fires are counted from after downtime.
    pub history: Arc<dyn History>,
    pub shared: SharedState,
    pub next_fires: NextFires,
    pub stop: CancellationToken,
    /// Seeds random schedules.
    pub seed: u64,
}

/// The fires of one policy that fell due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The one to run: the newest, if it is still on time.
    pub run: Option<DateTime<Utc>>,
    /// The others: recorded as skipped.
    pub missed: Vec<DateTime<Utc>>,
    /// The first fire after `now`.
    pub next: Option<DateTime<Utc>>,
}

/// Fires that fall due at `now`, from `first` on.
pub fn due(
    schedule: &Schedule,
    base: u64,
    policy: &str,
    first: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Due {
    let tolerance = chrono::Duration::from_std(LATE_TOLERANCE).unwrap_or_default();
    let mut fires = vec![first];
    let mut next = next_after(schedule, base, policy, first);
    while let Some(n) = next.filter(|n| *n <= now) {
        if fires.len() >= MAX_COUNTED_MISSES {
            // Skip ahead: counting stops, the schedule resumes from now.
            next = next_after(schedule, base, policy, now);
            break;
        }
        fires.push(n);
        next = next_after(schedule, base, policy, n);
    }
    let run = fires.last().copied().filter(|f| now - *f <= tolerance);
    if run.is_some() {
        fires.pop();
    }
    Due {
        run,
        missed: fires,
        next,
    }
}

impl Clock {
    /// Runs the clock until shutdown.
    pub async fn drive(self) {
        let mut rx = self.policies.subscribe();
        let mut leader = self.leader.watch();
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        let mut downtime_checked = false;
        self.rebuild(&mut entries, &rx.borrow_and_update());
        loop {
            if !downtime_checked && self.leader.is_leader() && self.history.is_ready() {
                downtime_checked = true;
                let skipped = match self.shared.skips().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the skip counts: missed fires are counted from the experiments that ran");
                        Skips::default()
                    }
                };
                self.record_downtime(&entries, &skipped);
            }
            // Until the history is read, look again now and then.
            let history_wait = if downtime_checked || self.history.is_ready() {
                MAX_SLEEP
            } else {
                HISTORY_POLL
            };
            let now = Utc::now();
            let wait = entries
                .values()
                .filter_map(|e| e.next)
                .min()
                .map_or(MAX_SLEEP, |t| (t - now).to_std().unwrap_or_default())
                .min(MAX_SLEEP)
                .min(history_wait);
            tokio::select! {
                () = self.stop.cancelled() => return,
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.rebuild(&mut entries, &rx.borrow_and_update());
                    continue;
                }
                // A closed channel (shutdown) disables this branch instead of spinning.
                Ok(()) = leader.changed() => continue,
                () = tokio::time::sleep(wait) => {}
            }
            self.fire_due(&mut entries);
        }
    }

    fn fire_due(&self, entries: &mut BTreeMap<String, Entry>) {
        let now = Utc::now();
        for (name, e) in entries {
            let Some(first) = e.next.filter(|t| *t <= now) else {
                continue;
            };
            let Some(schedule) = &e.policy.schedule else {
                continue;
            };
            let Due { run, missed, next } = due(schedule, self.seed, name, first, now);
            e.next = next;
            self.next_fires.set(name, next);
            if let (Some(first_missed), Some(last_missed)) = (missed.first(), missed.last()) {
                self.arbiter.record_skip(
                    &e.policy,
                    TriggerInfo::Schedule {
                        scheduled_at: *last_missed,
                    },
                    SkipReason::Missed(missed_reason(
                        missed.len(),
                        *first_missed,
                        *last_missed,
                        "havoc handled it too late",
                    )),
                );
            }
            if let Some(at) = run {
                self.arbiter
                    .start(e.policy.clone(), TriggerInfo::Schedule { scheduled_at: at });
            }
        }
    }

    fn rebuild(&self, entries: &mut BTreeMap<String, Entry>, set: &PolicySet) {
        let now = Utc::now();
        let mut fresh = BTreeMap::new();
        for (name, policy) in &set.policies {
            let Some(schedule) = &policy.schedule else {
                continue;
            };
            // An unchanged policy keeps its next fire across reloads.
            let next = match entries.remove(name) {
                Some(old) if old.policy.fingerprint == policy.fingerprint => old.next,
                _ => next_after(schedule, self.seed, name, now),
            };
            self.next_fires.set(name, next);
            fresh.insert(
                name.clone(),
                Entry {
                    policy: policy.clone(),
                    next,
                },
            );
        }
        for name in entries.keys() {
            self.next_fires.set(name, None);
        }
        *entries = fresh;
    }

    /// Once leader: fires between each policy's last handled fire (in the history, or
    /// its last skip) and now were missed while havoc was down (or not leading); one
    /// skipped record per policy says how many.
    fn record_downtime(&self, entries: &BTreeMap<String, Entry>, skipped: &Skips) {
        let now = Utc::now();
        let mut last: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        let ran = self
            .history
            .summaries()
            .into_iter()
            .filter_map(|s| Some((s.policy, s.scheduled_at?)));
        let skips = skipped
            .iter()
            .filter_map(|(p, s)| Some((p.clone(), s.last.as_ref()?.scheduled_at?)));
        for (policy, scheduled_at) in ran.chain(skips) {
            let e = last.entry(policy).or_insert(scheduled_at);
            *e = (*e).max(scheduled_at);
        }
        for (name, e) in entries {
            let (Some(schedule), Some(from)) = (&e.policy.schedule, last.get(name)) else {
                continue;
            };
            let mut missed = Vec::new();
            let mut at = next_after(schedule, self.seed, name, *from);
            while let Some(t) = at.filter(|t| *t < now) {
                if missed.len() >= MAX_COUNTED_MISSES {
                    break;
                }
                missed.push(t);
                at = next_after(schedule, self.seed, name, t);
            }
            if let (Some(first), Some(last)) = (missed.first(), missed.last()) {
                self.arbiter.record_skip(
                    &e.policy,
                    TriggerInfo::Schedule {
                        scheduled_at: *last,
                    },
                    SkipReason::Missed(missed_reason(
                        missed.len(),
                        *first,
                        *last,
                        "havoc was not running",
                    )),
                );
            }
        }
    }
}

fn missed_reason(n: usize, first: DateTime<Utc>, last: DateTime<Utc>, why: &str) -> String {
    if n == 1 {
        format!("missed the run scheduled at {}: {why}", first.to_rfc3339())
    } else {
        format!(
            "missed {n} scheduled runs from {} to {}: {why}",
            first.to_rfc3339(),
            last.to_rfc3339()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures;

    fn schedule(schedule: serde_json::Value) -> Schedule {
        fixtures::policy("p")
            .namespaces(&["d"])
            .set("/schedule", schedule)
            .build()
            .schedule
            .expect("schedule")
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").to_utc()
    }

    #[test]
    fn an_on_time_fire_runs_and_nothing_is_missed() {
        let s = schedule(serde_json::json!({"cron": "* * * * *"}));
        let Due { run, missed, next } = due(
            &s,
            0,
            "p",
            t("2026-11-22T10:00:00Z"),
            t("2026-11-22T10:00:03Z"),
        );
        assert_eq!(run, Some(t("2026-11-22T10:00:00Z")));
        assert!(missed.is_empty());
        assert_eq!(next, Some(t("2026-11-22T10:01:00Z")));
    }

    #[test]
    fn late_fires_are_missed_not_run_in_a_burst() {
        let s = schedule(serde_json::json!({"cron": "* * * * *"}));
        // Woken 3.5 minutes late: three fires are over, the fourth is 30 s old.
        let Due { run, missed, next } = due(
            &s,
            0,
            "p",
            t("2026-11-22T10:00:00Z"),
            t("2026-11-22T10:03:30Z"),
        );
        assert_eq!(run, None);
        assert_eq!(missed.len(), 4);
        assert_eq!(next, Some(t("2026-11-22T10:04:00Z")));
        // Woken 5 s after the fourth fire: that one runs, the three before are missed.
        let Due { run, missed, .. } = due(
            &s,
            0,
            "p",
            t("2026-11-22T10:00:00Z"),
            t("2026-11-22T10:03:05Z"),
        );
        assert_eq!(run, Some(t("2026-11-22T10:03:00Z")));
        assert_eq!(missed.len(), 3);
    }

    #[test]
    fn random_steps_differ_per_step_and_keep_the_floor() {
        let s = schedule(serde_json::json!({"interval": {"min": "10s", "max": "20s"}}));
        let mut at = t("2026-11-22T10:00:00Z");
        let mut gaps = Vec::new();
        for _ in 0..200 {
            let n = next_after(&s, 7, "p", at).expect("next");
            gaps.push((n - at).num_milliseconds());
            at = n;
        }
        assert!(
            gaps.iter().all(|g| (10_000..=20_000).contains(g)),
            "{gaps:?}"
        );
        // Whole-second fires: gaps are 10..=19 s (20 only on an exact draw), evenly.
        for secs in 10..20 {
            let n = gaps.iter().filter(|g| **g / 1000 == secs).count();
            assert!(
                (5..=45).contains(&n),
                "{n} gaps of {secs}s in 200: {gaps:?}"
            );
        }
    }
}
