//! Emitting an experiment's final record (DESIGN section 1, step 9), the same for the
//! service and `havoc run`: the log line, the journal, the experiment's object in the
//! cluster (a skip is counted per policy instead), metrics, Kubernetes Events, the
//! Grafana annotation's end, then what the caller does its own way — the circuit
//! breaker's pause (the service obeys it at once and writes it until it lands; `havoc
//! run` writes it before it exits) and the notifications (the service queues them, `havoc
//! run` sends them and prints the outcome).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{annotations::Annotations, events::Events, metrics::Metrics, notify::Notifier};
use crate::{
    history::{skips::SkipCounter, writer::HistoryWriter},
    journal::{Intent, Journal},
    policy::{Config, Policy, domain::NotifyRule, domain::OnDeviation},
    record::{ErrorReason, ExperimentRecord, TargetOutcome, TargetRecord, TargetRevert, Verdict},
};

/// Where final records go.
#[derive(Clone)]
pub struct Emitter {
    pub config: Arc<Config>,
    /// `None`: `havoc run` without `--journal`.
    pub journal: Option<Arc<Journal>>,
    /// The experiment objects in the cluster: final records of experiments that ran
    /// (`None`: tests, `havoc run --no-history`).
    pub history: Option<HistoryWriter>,
    /// Skips, counted per policy into the shared state (the service's leader).
    pub skips: Option<SkipCounter>,
    pub metrics: Option<Metrics>,
    pub events: Option<Events>,
    pub annotations: Annotations,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter").finish_non_exhaustive()
    }
}

/// A circuit breaker's decision after a deviation: pause this policy (`None`: all chaos)
/// until then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    pub policy: Option<String>,
    pub until: DateTime<Utc>,
    pub reason: String,
}

/// What the caller still has to do with an emitted record.
#[derive(Debug)]
pub struct Emitted {
    /// The circuit breaker's pause, if the record tripped it.
    pub breaker: Option<Breaker>,
    /// Who is notified of it, by the policy's rule (or the service's default).
    pub receivers: Vec<String>,
}

impl Emitter {
    /// Logs, journals, counts and publishes `record`; says what the breaker decided and
    /// whom to notify. `policy`: the record's policy if it still exists (a record closed
    /// after a reload may have none: the service's defaults apply).
    pub fn emit(&self, policy: Option<&Policy>, record: &ExperimentRecord) -> Emitted {
        self.annotations.ended(record);
        tracing::info!(
            id = %record.id,
            policy = %record.policy,
            verdict = record.verdict.label(),
            reason = %record.reason,
            dry_run = record.dry_run,
            targets = record.targets.len(),
            "experiment ended"
        );
        if let Some(journal) = &self.journal
            && let Err(e) = journal.append(record)
        {
            tracing::error!(error = %e, id = %record.id, "cannot append to the journal");
        }
        if record.verdict == Verdict::Skipped
            && let Some(skips) = &self.skips
        {
            skips.count(record);
        }
        // A skip is counted, not kept as an object, unless its intent's object was written
        // before the skip was known (no target reached: every pod gone, every eviction
        // refused): that object gets its final record too, or the sweep would close it as
        // crashed.
        if let Some(history) = &self.history
            && (record.verdict != Verdict::Skipped || history.wrote_intent(&record.id))
        {
            history.finished(record);
        }
        if let Some(m) = &self.metrics {
            m.experiment(record);
        }
        if let Some(ev) = &self.events {
            ev.verdict(record);
        }
        let breaker = (record.verdict == Verdict::Deviated)
            .then(|| self.breaker(policy, record))
            .flatten();
        let rule: NotifyRule =
            policy.map_or_else(|| self.config.notify.clone(), |p| p.notify.clone());
        Emitted {
            breaker,
            receivers: Notifier::route(&rule, record),
        }
    }

    fn breaker(&self, policy: Option<&Policy>, record: &ExperimentRecord) -> Option<Breaker> {
        let cooldown = self.config.circuit_breaker_cooldown;
        let until = Utc::now() + chrono::Duration::from_std(cooldown).unwrap_or_default();
        let reason = format!(
            "circuit breaker: experiment {} deviated ({})",
            record.id, record.reason
        );
        match policy.map_or(OnDeviation::PausePolicy, |p| p.on_deviation) {
            OnDeviation::Continue => None,
            OnDeviation::PausePolicy => Some(Breaker {
                policy: Some(record.policy.clone()),
                until,
                reason,
            }),
            OnDeviation::PauseAll => Some(Breaker {
                policy: None,
                until,
                reason,
            }),
        }
    }
}

/// The final record of an experiment a crash cut short (its intent was journaled, its
/// record never was), after recovery reverted what it had left: `errored` (`crashed`)
/// naming what the reverts did, or `rollbackFailed`.
pub fn interrupted_record(intent: &Intent, reverts: &[&TargetRevert]) -> ExperimentRecord {
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
        budgets: Vec::new(),
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
    let summary = recovery_summary(intent, reverts);
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
    record
}

/// What recovery did for one interrupted experiment, in words.
pub fn recovery_summary(intent: &Intent, reverts: &[&TargetRevert]) -> String {
    if reverts.is_empty() {
        let reversible = crate::fault::kind(&intent.fault).is_some_and(|k| k.reversible());
        return if reversible {
            "no revert record of it was left in the cluster".to_string()
        } else {
            format!("nothing to revert ({} is not reversible)", intent.fault)
        };
    }
    let parts: Vec<String> = reverts
        .iter()
        .map(|r| format!("{} {}: {}", r.object.kind, r.object.name, r.result.label()))
        .collect();
    format!("recovery: {}", parts.join(", "))
}
