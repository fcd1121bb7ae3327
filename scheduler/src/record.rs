//! The records every part of havoc shares: what an experiment did, to what, and why it
//! ended as it did. The [`journal`](crate::journal) persists them, the HTTP API serves
//! them, notifications and Events quote them.
//!
//! Outcomes and reasons are typed ([`Verdict`], [`TargetOutcome`], [`SkipReason`],
//! [`ErrorReason`]); each has one `label()` that metrics, records and API answers use, so
//! a name is spelled in exactly one place.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The outcome of an experiment (DESIGN section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "The outcome of an experiment.")]
pub enum Verdict {
    /// Fault injected and reverted; no new alert, no SLO breach until settle ended.
    Passed,
    /// A new alert fired or an SLO was breached during the fault or settle.
    Deviated,
    /// The gate was closed; not a failure.
    Skipped,
    /// The experiment could not be carried out.
    Errored,
    /// A revert did not succeed: the most serious outcome.
    RollbackFailed,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Deviated => "deviated",
            Verdict::Skipped => "skipped",
            Verdict::Errored => "errored",
            Verdict::RollbackFailed => "rollbackFailed",
        }
    }
}

/// Why an experiment did not run: verdict `skipped`, never a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("havoc is shutting down")]
    ShuttingDown,
    #[error("all chaos is paused: {0}")]
    PausedAll(String),
    #[error("policy is paused: {0}")]
    PausedPolicy(String),
    #[error("the previous run {0} is still in progress")]
    StillRunning(String),
    #[error("limit reached: maxConcurrentExperiments is {limit} and {running} running")]
    Limit { limit: u32, running: usize },
    /// A fire that came too late, or fell while havoc was down.
    #[error("{0}")]
    Missed(String),
    #[error("health unreadable: {0}")]
    HealthUnreadable(String),
    #[error("alerts already firing: {0}")]
    AlertsFiring(String),
    #[error("SLO already breached: {0}")]
    SloBreached(String),
    #[error("cannot read targets: {0}")]
    TargetsUnreadable(String),
    /// No eligible target (the text says which were dropped and why).
    #[error("{0}")]
    NoTarget(String),
    /// Every chosen target refused or vanished (e.g. PodDisruptionBudgets said no).
    #[error("no target could be disrupted: {0}")]
    NotDisrupted(String),
    /// The intent line could not be written: nothing is changed unrecorded.
    #[error("the journal cannot be written: {0}")]
    JournalUnwritable(String),
    /// The experiment's object (its intent) could not be written to the cluster's
    /// history, or the history has not been read yet: nothing is changed unrecorded.
    #[error("the experiment history in the cluster: {0}")]
    HistoryUnavailable(String),
    /// The target kind's API is not served (e.g. Istio's VirtualService CRD).
    #[error("{0}")]
    Unavailable(String),
    #[error("this replica is no longer the leader")]
    NotLeader,
    /// The shared pause state has not been read (yet): fail closed.
    #[error("the shared pause state cannot be read: chaos stays paused until it can")]
    StateUnknown,
    /// Every candidate is a StatefulSet that would delete its volumes if scaled down
    /// (`whenScaled: Delete`), and the policy does not allow it.
    #[error("{0}")]
    WouldDeleteVolumes(String),
    /// The preflight hook answered, and not with 2xx (the text is what it said).
    #[error("{0}")]
    PreflightRefused(String),
    /// The preflight hook did not answer: fail closed.
    #[error("{0}")]
    PreflightUnavailable(String),
    /// An error budget is below the policy's minimum (the text has the values).
    #[error("{0}")]
    BudgetExhausted(String),
    /// An error budget's burn rate is already above the policy's limit.
    #[error("{0}")]
    BudgetBurning(String),
    /// An error budget cannot be read (an error, or no data): fail closed.
    #[error("{0}")]
    BudgetUnreadable(String),
    /// A namespace's chaos budget has not this experiment's hold left.
    #[error("{0}")]
    NamespaceBudgetSpent(String),
}

impl SkipReason {
    pub fn label(&self) -> &'static str {
        match self {
            SkipReason::ShuttingDown => "shuttingDown",
            SkipReason::PausedAll(_) | SkipReason::PausedPolicy(_) => "paused",
            SkipReason::StillRunning(_) => "stillRunning",
            SkipReason::Limit { .. } => "limit",
            SkipReason::Missed(_) => "missed",
            SkipReason::HealthUnreadable(_) => "healthUnreadable",
            SkipReason::AlertsFiring(_) => "alertsFiring",
            SkipReason::SloBreached(_) => "sloBreached",
            SkipReason::TargetsUnreadable(_) => "targetsUnreadable",
            SkipReason::NoTarget(_) => "noTarget",
            SkipReason::NotDisrupted(_) => "notDisrupted",
            SkipReason::JournalUnwritable(_) => "journalUnwritable",
            SkipReason::HistoryUnavailable(_) => "historyUnavailable",
            SkipReason::Unavailable(_) => "unavailable",
            SkipReason::NotLeader => "notLeader",
            SkipReason::StateUnknown => "stateUnknown",
            SkipReason::WouldDeleteVolumes(_) => "wouldDeleteVolumes",
            SkipReason::PreflightRefused(_) => "preflightRefused",
            SkipReason::PreflightUnavailable(_) => "preflightUnavailable",
            SkipReason::BudgetExhausted(_) => "budgetExhausted",
            SkipReason::BudgetBurning(_) => "budgetBurning",
            SkipReason::BudgetUnreadable(_) => "budgetUnreadable",
            SkipReason::NamespaceBudgetSpent(_) => "namespaceBudgetSpent",
        }
    }
}

/// Why an experiment could not be carried out: verdict `errored`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorReason {
    #[error("fault {0} is not supported by this version of havoc")]
    Unsupported(&'static str),
    /// The API refused or failed the fault (the text names the target).
    #[error("{0}")]
    Injection(String),
    #[error("{0}")]
    HealthUnreadable(String),
    #[error(
        "interrupted by shutdown after {observed_secs}s of observation; no deviation seen until then"
    )]
    Interrupted { observed_secs: u64 },
    /// `POST /api/v1/stop` ended it; its faults were reverted.
    #[error(
        "stopped through the API after {observed_secs}s of observation; its faults were reverted"
    )]
    Stopped { observed_secs: u64 },
    #[error("experiment task panicked: {0}")]
    Panicked(String),
    /// havoc stopped (killed, crashed, node lost) during the experiment; the next start
    /// closed the record after its recovery.
    #[error("interrupted: havoc stopped during the experiment (killed or crashed); {recovery}")]
    Crashed { recovery: String },
    /// This replica lost leadership during the experiment. Its fence stops every request,
    /// reverts too: the leader that follows reverts what it held (each target's revert
    /// says `handedOver`, or `notOurs` when that leader was first).
    #[error("lost leadership during the experiment; the next leader reverts what it held")]
    Demoted,
}

impl ErrorReason {
    pub fn label(&self) -> &'static str {
        match self {
            ErrorReason::Unsupported(_) => "unsupported",
            ErrorReason::Injection(_) => "injection",
            ErrorReason::HealthUnreadable(_) => "healthUnreadable",
            ErrorReason::Interrupted { .. } => "interrupted",
            ErrorReason::Stopped { .. } => "stopped",
            ErrorReason::Panicked(_) => "panicked",
            ErrorReason::Crashed { .. } => "crashed",
            ErrorReason::Demoted => "demoted",
        }
    }
}

/// What started an experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
#[schemars(rename = "Trigger")]
pub enum TriggerInfo {
    /// A clock schedule; `scheduledAt` is the planned fire time.
    #[serde(rename_all = "camelCase")]
    Schedule { scheduled_at: DateTime<Utc> },
    /// A completed rollout.
    #[serde(rename_all = "camelCase")]
    Rollout {
        workload: ObjectRef,
        revision: String,
        completed_at: DateTime<Utc>,
    },
    /// HTTP `POST /api/v1/policies/{name}/run` or `havoc run`.
    #[serde(rename_all = "camelCase")]
    Manual {
        /// Who asked: `http` (the API) or `havoc run`.
        source: String,
    },
}

/// A Kubernetes object.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub kind: String,
    /// Absent for cluster-scoped objects (nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn namespaced(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
        }
    }
}

/// What happened to one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TargetOutcome {
    /// The fault reached it.
    Injected,
    /// Dry run: only logged.
    DryRun,
    /// Not a failure: the target vanished, or a PodDisruptionBudget refused the eviction.
    Skipped,
    /// The fault could not be injected (the detail says why).
    Errored,
}

impl TargetOutcome {
    pub fn label(self) -> &'static str {
        match self {
            TargetOutcome::Injected => "injected",
            TargetOutcome::DryRun => "dryRun",
            TargetOutcome::Skipped => "skipped",
            TargetOutcome::Errored => "errored",
        }
    }
}

/// What the revert of one target did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RevertResult {
    /// The original state is back.
    Restored,
    /// The object no longer exists.
    Gone,
    /// The record was no longer this experiment's: left alone.
    NotOurs,
    /// Someone else changed what havoc had set: not fought, only the record removed.
    LeftAsIs,
    /// The revert did not succeed (retried later by the recovery sweep).
    Failed,
    /// The API server refused the revert for lack of permission (havoc's RBAC no longer
    /// allows it): reported (Event, metric, alert), retried rarely, never silently.
    Forbidden,
    /// Not reverted here: this replica lost its lease (fence) before it could; the record
    /// stays on the object and the leader that follows reverts it at once.
    HandedOver,
}

impl RevertResult {
    /// Whether the change may still be in place (the revert did not happen).
    pub fn is_failure(self) -> bool {
        matches!(self, RevertResult::Failed | RevertResult::Forbidden)
    }
}

impl RevertResult {
    pub fn label(self) -> &'static str {
        match self {
            RevertResult::Restored => "restored",
            RevertResult::Gone => "gone",
            RevertResult::NotOurs => "notOurs",
            RevertResult::LeftAsIs => "leftAsIs",
            RevertResult::Failed => "failed",
            RevertResult::Forbidden => "forbidden",
            RevertResult::HandedOver => "handedOver",
        }
    }
}

/// The revert of one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRevert {
    pub result: RevertResult,
    /// The object that carried the change (e.g. the NetworkPolicy of a partition).
    pub object: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

/// A target and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRecord {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub namespace: Option<String>,
    pub name: String,
    pub outcome: TargetOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub detail: Option<String>,
    /// Reversible faults: what the revert did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "TargetRevert")]
    pub revert: Option<TargetRevert>,
}

/// An alert attributed to the experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertRecord {
    pub name: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
}

/// An SLO reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SloRecord {
    pub name: String,
    /// `None`: the query returned no data.
    #[schemars(description = "null: the query returned no data.")]
    pub value: Option<f64>,
    pub objective: String,
    pub breached: bool,
    pub at: DateTime<Utc>,
}

/// An error budget through one experiment: what it was at the gate, and its burn rate
/// before, while the fault was held, and after the settle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetRecord {
    pub name: String,
    /// Where it was read: `sloth SERVICE/SLO`, `pyrra SLO` or `query`.
    pub source: String,
    /// The remaining share at the gate (`null`: unreadable).
    pub remaining: Option<f64>,
    pub min_remaining: f64,
    /// Burn rate at the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burn_rate_before: Option<f64>,
    /// The highest burn rate read while the fault was held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burn_rate_during: Option<f64>,
    /// The last burn rate read in the settle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burn_rate_after: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_burn_rate: Option<f64>,
    /// The verdict's `burnRateAfter` factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burn_rate_after_factor: Option<f64>,
}

/// One experiment, from start to verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentRecord {
    pub id: String,
    pub policy: String,
    pub verdict: Verdict,
    /// Why: the gate reason, the deviation, the error.
    pub reason: String,
    /// The reason's label for skipped and errored experiments (e.g. `alertsFiring`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "String",
        description = "The reason's label for skipped and errored experiments, e.g. paused, \
                       limit, alertsFiring, sloBreached, healthUnreadable, targetsUnreadable, \
                       noTarget, notDisrupted, stillRunning, missed, shuttingDown, \
                       preflightRefused, preflightUnavailable, budgetExhausted, budgetBurning, \
                       budgetUnreadable, namespaceBudgetSpent, injection, interrupted, \
                       stopped, unsupported, panicked."
    )]
    pub reason_code: Option<String>,
    pub dry_run: bool,
    pub trigger: TriggerInfo,
    pub targets: Vec<TargetRecord>,
    /// The fault's field name, e.g. `podDelete`.
    #[schemars(with = "crate::api::openapi::Fault")]
    pub fault: String,
    pub started_at: DateTime<Utc>,
    pub injected_at: Option<DateTime<Utc>>,
    pub reverted_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    /// Alerts attributed to the experiment.
    pub alerts: Vec<AlertRecord>,
    pub slos: Vec<SloRecord>,
    /// The error budgets it spent (none: no budget applies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetRecord>,
}

/// A new experiment id: policy name, UTC start time, and a random suffix.
pub fn new_id(policy: &str, at: DateTime<Utc>) -> String {
    use rand::Rng;
    format!(
        "{policy}-{}-{:04x}",
        at.format("%Y%m%dT%H%M%SZ"),
        rand::rng().random::<u16>()
    )
}

/// What a record of an experiment starts from: its policy's name, fault and dry run.
#[derive(Debug, Clone, Copy)]
pub struct Of<'a> {
    pub policy: &'a str,
    pub fault: &'a str,
    pub dry_run: bool,
}

impl ExperimentRecord {
    /// The record of an experiment that starts now (verdict `skipped` until decided); a
    /// new id when `id` is empty.
    pub fn start(of: Of<'_>, trigger: TriggerInfo, id: String) -> Self {
        let started_at = Utc::now();
        ExperimentRecord {
            id: if id.is_empty() {
                new_id(of.policy, started_at)
            } else {
                id
            },
            policy: of.policy.to_string(),
            verdict: Verdict::Skipped,
            reason: String::new(),
            reason_code: None,
            dry_run: of.dry_run,
            trigger,
            targets: Vec::new(),
            fault: of.fault.to_string(),
            started_at,
            injected_at: None,
            reverted_at: None,
            ended_at: started_at,
            alerts: Vec::new(),
            slos: Vec::new(),
            budgets: Vec::new(),
        }
    }

    /// A `skipped` record for a run that never started (paused, limit reached, missed).
    pub fn skipped(of: Of<'_>, trigger: TriggerInfo, why: &SkipReason) -> Self {
        let mut r = ExperimentRecord::start(of, trigger, String::new());
        r.skip(why);
        r
    }

    /// Ends the record with a verdict and a reason.
    pub fn finish(&mut self, verdict: Verdict, reason: String, code: Option<&'static str>) {
        self.verdict = verdict;
        self.reason = reason;
        self.reason_code = code.map(str::to_string);
        self.ended_at = Utc::now();
    }

    pub fn skip(&mut self, why: &SkipReason) {
        self.finish(Verdict::Skipped, why.to_string(), Some(why.label()));
    }

    pub fn error(&mut self, why: &ErrorReason) {
        self.finish(Verdict::Errored, why.to_string(), Some(why.label()));
    }

    /// The targets the fault reached.
    pub fn injected(&self) -> impl Iterator<Item = &TargetRecord> {
        self.targets
            .iter()
            .filter(|t| t.outcome == TargetOutcome::Injected)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An error budget through an experiment whose burn rate broke its limit, for tests.
    pub(crate) fn budget_record(name: &str) -> BudgetRecord {
        BudgetRecord {
            name: name.to_string(),
            source: "sloth checkout/availability".into(),
            remaining: Some(0.8),
            min_remaining: 0.25,
            burn_rate_before: Some(1.0),
            burn_rate_during: Some(14.5),
            burn_rate_after: Some(3.0),
            max_burn_rate: Some(10.0),
            burn_rate_after_factor: Some(2.0),
        }
    }

    /// A record with every field set, for tests.
    pub(crate) fn record(id: &str, verdict: Verdict) -> ExperimentRecord {
        let t: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().expect("valid");
        ExperimentRecord {
            id: id.to_string(),
            policy: "p".to_string(),
            verdict,
            reason: "because".to_string(),
            reason_code: None,
            dry_run: false,
            trigger: TriggerInfo::Schedule { scheduled_at: t },
            targets: vec![TargetRecord {
                kind: "Pod".to_string(),
                namespace: Some("go-demo-8".to_string()),
                name: "go-demo-8-db-1".to_string(),
                outcome: TargetOutcome::Injected,
                detail: None,
                revert: None,
            }],
            fault: "podDelete".to_string(),
            started_at: t,
            injected_at: Some(t),
            reverted_at: None,
            ended_at: t,
            alerts: vec![],
            slos: vec![],
            budgets: vec![],
        }
    }

    #[test]
    fn records_serialize_with_the_documented_names() {
        let v = serde_json::to_value(record("x", Verdict::RollbackFailed)).expect("serializes");
        for key in [
            "id",
            "policy",
            "verdict",
            "reason",
            "dryRun",
            "trigger",
            "targets",
            "fault",
            "startedAt",
            "injectedAt",
            "revertedAt",
            "endedAt",
            "alerts",
            "slos",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["verdict"], "rollbackFailed");
        assert_eq!(v["trigger"]["kind"], "schedule");
        assert_eq!(v["trigger"]["scheduledAt"], "2026-11-22T10:00:00Z");
        assert_eq!(v["targets"][0]["namespace"], "go-demo-8");
        assert_eq!(v["targets"][0]["outcome"], "injected");
    }

    #[test]
    fn labels_are_the_serialized_names() {
        for v in [
            Verdict::Passed,
            Verdict::Deviated,
            Verdict::Skipped,
            Verdict::Errored,
            Verdict::RollbackFailed,
        ] {
            assert_eq!(serde_json::to_value(v).expect("json"), v.label());
        }
        for o in [
            TargetOutcome::Injected,
            TargetOutcome::DryRun,
            TargetOutcome::Skipped,
            TargetOutcome::Errored,
        ] {
            assert_eq!(serde_json::to_value(o).expect("json"), o.label());
        }
        let mut r = record("x", Verdict::Passed);
        r.skip(&SkipReason::Limit {
            limit: 1,
            running: 1,
        });
        assert_eq!(r.verdict, Verdict::Skipped);
        assert_eq!(r.reason_code.as_deref(), Some("limit"));
        assert_eq!(
            r.reason,
            "limit reached: maxConcurrentExperiments is 1 and 1 running"
        );
    }
}
