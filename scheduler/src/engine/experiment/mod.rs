//! One experiment, start to verdict: gate, select, inject, observe, revert, settle,
//! verdict (DESIGN section 1, steps 1-8). Emitting (journal, notifications) is the
//! caller's ([`crate::engine::emit`]), so that `havoc run` and the service share this code.
//!
//! - this module: the lifecycle ([`execute`]);
//! - [`claims`]: what running experiments have taken, chosen and claimed atomically;
//! - [`inject`]: a plan injected target by target;
//! - [`observe`]: health watched while the fault is injected, held and settling;
//! - [`revert`]: reverting what is held, and the rule that a failed revert wins.
//!
//! What to inject where is each fault's ([`crate::fault::FaultKind::plan`]).

pub mod claims;
pub mod inject;
pub mod observe;
pub mod revert;
#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use kube::Client;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use self::{
    claims::Claims,
    revert::{revert_result, revert_with_retries},
};
use self::{
    inject::inject_all,
    observe::{Observer, Stop, Until},
    revert::{conclude_reverts, revert_all},
};
use super::{
    events::Events,
    health::HealthSource,
    metrics::Metrics,
    verdict::{Conclusion, Judge, gate},
};
use crate::fault::Act;
use crate::{
    fault::{self, Mutator, revert::Stamp},
    journal::{Intent, Journal},
    leader::Leadership,
    policy::{Config, Policy},
    record::{ErrorReason, ExperimentRecord, SkipReason, TargetOutcome, TriggerInfo},
    targets::{Guards, Restriction, SnapshotSource},
};

/// Beyond its deadline and settle, how long an experiment may take to write its final
/// record before another havoc may close it as crashed (health reads, reverts retried).
const ENDS_BY_MARGIN: Duration = Duration::from_secs(120);

/// What an experiment needs from outside: the cluster, health, safety guards, and where
/// it reports (Events and metrics in the service; `havoc run` has neither).
#[derive(Clone)]
pub struct Env {
    /// The client of the experiment's mutations (in the service, one whose connections
    /// stop when the fence lapses: `client::fenced`).
    pub client: Client,
    pub config: Arc<Config>,
    pub health: Arc<dyn HealthSource>,
    pub guards: Guards,
    pub events: Option<Events>,
    pub metrics: Option<Metrics>,
    /// Intents are journaled here before any mutation (the service's journal; `havoc
    /// run`'s, if it has one).
    pub journal: Option<Arc<Journal>>,
    /// The experiment objects in the cluster: the intent is written there before any
    /// mutation (`None`: tests, `havoc run --no-history`).
    pub history: Option<crate::history::writer::HistoryWriter>,
    /// Written into every revert record: whose change it is.
    pub owner: String,
    /// Checked right before every mutation and while a fault is held: a replica that is
    /// no longer the leader stops and reverts.
    pub leader: Leadership,
    /// What running experiments of this process have taken.
    pub claims: Claims,
    /// Live experiments marked on dashboards (gauge, Grafana); a no-op by default.
    pub annotations: super::annotations::Annotations,
    /// Asked before every live injection (`preflight`); `None`: nobody to ask.
    pub preflight: Option<havoc_integrations::preflight::Client>,
    /// The history namespace chaos budgets are counted from (`limits.namespaceBudget`);
    /// `None` with a budget configured: no live experiment starts (fail closed).
    pub ledger: Option<Arc<dyn crate::history::History>>,
}

/// The preflight hook's client for `config` (its secret read now), if one is configured.
pub fn preflight_client(
    config: &Config,
) -> Result<Option<havoc_integrations::preflight::Client>, String> {
    let Some(p) = &config.preflight else {
        return Ok(None);
    };
    let secret = match &p.secret {
        Some(s) => Some(s.resolve().map_err(|e| format!("preflight.secret: {e}"))?),
        None => None,
    };
    havoc_integrations::preflight::Client::new(&p.url, secret, p.timeout)
        .map(Some)
        .map_err(|e| format!("preflight.url: {e}"))
}

#[cfg(test)]
impl Env {
    /// A test environment: health from `config`, no Events or metrics, owner `test/havoc`.
    pub fn for_tests(
        client: Client,
        config: Arc<Config>,
        journal: Option<Arc<Journal>>,
        leader: Leadership,
    ) -> Env {
        Env {
            client,
            health: Arc::new(crate::engine::health::Health::from_config(&config).expect("health")),
            guards: Guards::default(),
            config,
            events: None,
            metrics: None,
            journal,
            history: None,
            owner: "test/havoc".into(),
            leader,
            claims: Claims::default(),
            annotations: Default::default(),
            preflight: None,
            ledger: None,
        }
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("guards", &self.guards)
            .finish_non_exhaustive()
    }
}

/// Per-run options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The experiment id; a new one when empty.
    pub id: String,
    /// Seeds the random choice of targets (tests).
    pub seed: Option<u64>,
    /// Cancelled on shutdown: observation stops early and the record is completed.
    pub cancel: CancellationToken,
    /// Only these pods may be chosen (a rollout's new revision).
    pub restrict: Option<Restriction>,
    /// The service's shutdown: when `cancel` fires but this has not, the experiment was
    /// stopped through the API rather than by a shutdown.
    pub shutdown: Option<CancellationToken>,
}

/// Whether the namespaces of `targets` have `policy`'s hold left in their chaos budgets
/// (`limits.namespaceBudget`), counted from the history in the cluster. Node faults
/// target nodes, which belong to no namespace: they are not charged.
fn namespace_budget(
    env: &Env,
    policy: &Policy,
    targets: &[crate::record::ObjectRef],
) -> Result<(), SkipReason> {
    let Some(budget) = &env.config.limits.namespace_budget else {
        return Ok(());
    };
    let namespaces = crate::history::namespaces_of(targets.iter().map(|t| t.namespace.as_ref()));
    if namespaces.is_empty() {
        return Ok(());
    }
    let Some(history) = env.ledger.as_ref().filter(|h| h.is_ready()) else {
        return Err(SkipReason::HistoryUnavailable(
            "namespace chaos budgets are counted from it, and it has not been read".into(),
        ));
    };
    crate::history::ledger::check(
        budget,
        history.as_ref(),
        &namespaces,
        policy.duration,
        Utc::now(),
    )
    .map_err(SkipReason::NamespaceBudgetSpent)
}

/// Watching health for this long is "until the injection ends" (it always ends first).
const UNTIL_INJECTED: Duration = Duration::from_secs(365 * 24 * 3600);

/// Runs one experiment to its verdict. Cluster and health errors never escape: they
/// become `skipped` (before injection), `errored` (after), or `rollbackFailed`.
pub async fn execute(
    env: &Env,
    source: &dyn SnapshotSource,
    policy: &Policy,
    trigger: TriggerInfo,
    opts: RunOptions,
) -> ExperimentRecord {
    let mut record = ExperimentRecord::start(policy.record_of(), trigger.clone(), opts.id);
    let fail_closed = env.config.health.fail_closed;
    let dry_run = policy.dry_run;

    // 1. gate
    let baseline = env.health.observe(&policy.health).await;
    let gate_read = Instant::now();
    record.slos = baseline.slos.clone();
    record.budgets = super::budget::Tracks::new(&baseline.budgets).records();
    if let Err(why) = gate(&baseline, fail_closed) {
        record.skip(&why);
        return record;
    }

    // 2. select: what the fault reads, chosen under the guards and the others' claims
    let kind = match fault::of(policy) {
        Ok(k) => k,
        Err(why) => {
            record.skip(&why);
            return record;
        }
    };
    let needs = kind.needs(policy, &crate::targets::own_namespace(&env.config));
    let mut snapshot = match source.snapshot(&needs).await {
        Ok(s) => s,
        Err(e) => {
            record.skip(&SkipReason::TargetsUnreadable(e.to_string()));
            return record;
        }
    };
    let guards = Guards {
        min_available_replicas: policy.min_available_replicas,
        max_unschedulable_nodes: policy
            .max_unschedulable_nodes
            .unwrap_or(env.guards.max_unschedulable_nodes),
        ..env.guards.clone()
    };
    let mut rng = match opts.seed {
        Some(s) => ChaCha8Rng::seed_from_u64(s),
        None => ChaCha8Rng::from_rng(&mut rand::rng()),
    };
    // A drain chooses its nodes first, then reads their pods (no watch holds them).
    let mut nodes = None;
    if needs.node_pods {
        match env
            .claims
            .choose_nodes(kind, policy, &mut snapshot, &guards, &mut rng)
        {
            Ok(None) => {}
            Ok(Some(chosen)) => {
                let names: Vec<String> = chosen.iter().map(|n| n.name.clone()).collect();
                match source.node_pods(&names).await {
                    Ok(pods) => snapshot.add_pods(pods),
                    Err(e) => {
                        record.skip(&SkipReason::TargetsUnreadable(e.to_string()));
                        return record;
                    }
                }
                nodes = Some(chosen);
            }
            Err(why) => {
                record.skip(&why);
                return record;
            }
        }
    }
    if let Some(r) = &opts.restrict {
        snapshot.pods.retain(|p| r.allows(p));
    }
    let (plan, _claimed) = match env.claims.choose(
        kind,
        policy,
        &mut snapshot,
        &guards,
        &mut rng,
        nodes.as_deref(),
    ) {
        Ok(p) => p,
        Err(why) => {
            record.skip(&why);
            return record;
        }
    };
    if opts.cancel.is_cancelled() {
        record.skip(&SkipReason::ShuttingDown);
        return record;
    }
    if !dry_run && let Err(why) = namespace_budget(env, policy, &plan.objects()) {
        record.skip(&why);
        return record;
    }

    // 3. intent: journaled before any mutation, so that a crash loses no record.
    let stamp = Stamp::new(&record.id, &policy.name, policy.duration, &env.owner);
    if !dry_run {
        if !env.leader.is_leader() {
            record.skip(&SkipReason::NotLeader);
            return record;
        }
        let deadline =
            stamp.deadline + chrono::Duration::from_std(plan.injection_time()).unwrap_or_default();
        let intent = Intent {
            id: record.id.clone(),
            policy: policy.name.clone(),
            fault: policy.fault.name().to_string(),
            dry_run,
            trigger,
            started_at: record.started_at,
            targets: plan.objects(),
            deadline,
            ends_by: Some(
                deadline
                    + chrono::Duration::from_std(policy.health.settle + ENDS_BY_MARGIN)
                        .unwrap_or_default(),
            ),
        };
        // The preflight hook sees the plan before anything is written or changed.
        if let Some(hook) = &env.preflight
            && let Err(refusal) = hook
                .ask(&serde_json::to_value(&intent).unwrap_or_default())
                .await
        {
            use havoc_integrations::preflight::Refusal;
            record.skip(&match refusal {
                r @ Refusal::Refused { .. } => SkipReason::PreflightRefused(r.to_string()),
                r @ Refusal::Unavailable(_) => SkipReason::PreflightUnavailable(r.to_string()),
            });
            return record;
        }
        if let Some(journal) = &env.journal
            && let Err(e) = journal.started(&intent)
        {
            record.skip(&SkipReason::JournalUnwritable(e.to_string()));
            return record;
        }
        if let Some(history) = &env.history
            && let Err(e) = history.intent(&intent).await
        {
            record.skip(&SkipReason::HistoryUnavailable(format!(
                "its intent cannot be written: {e}"
            )));
            return record;
        }
    }

    // 4. inject, target by target, every mutation fenced. Health is watched meanwhile: a
    //    deviation, unreadable health, a stop, a demotion or a shutdown interrupts the
    //    injection at once (no further request is sent, a drain stops evicting) and what
    //    is held is reverted.
    let interrupt = opts.cancel.child_token();
    let m = Mutator::new(env.client.clone(), env.leader.clone(), interrupt.clone());
    let began = Utc::now();
    let observing = Instant::now();
    let mut judge = Judge::new(began, &baseline, fail_closed);
    let mut watch = Observer {
        env,
        policy,
        cancel: &opts.cancel,
        last_read: gate_read,
    };
    let injecting = inject_all(
        Act {
            m: &m,
            stamp: &stamp,
            dry_run,
        },
        policy,
        plan.as_ref(),
    );
    tokio::pin!(injecting);
    let raced = tokio::select! {
        biased;
        done = &mut injecting => Ok(done),
        stop = watch.observe(&mut judge, UNTIL_INJECTED, Until::Deviation) => Err(stop),
    };
    let (injected, cut) = match raced {
        Ok(done) => (done, None),
        Err(stop) => {
            tracing::warn!(?stop, id = %record.id, "interrupting the injection");
            interrupt.cancel();
            (injecting.await, Some(stop))
        }
    };
    record.targets = injected.targets;
    let reached = record
        .targets
        .iter()
        .filter(|t| matches!(t.outcome, TargetOutcome::Injected | TargetOutcome::DryRun))
        .count();
    let live = record.injected().count();
    if reached > 0 {
        record.injected_at = Some(began);
        if let Some(metrics) = &env.metrics
            && live > 0
        {
            metrics.fault_injected(&policy.name, policy.fault.name(), live as u64);
        }
        if let Some(ev) = &env.events {
            ev.injected(&record);
        }
        env.annotations.injected(&record, policy);
    }
    let held = injected.held;
    if let Some(why) = injected.failure {
        // Nothing more is injected; what is held is reverted at once. A deviation seen
        // meanwhile says more than the error it may have caused.
        revert_all(env, &m, &mut record, &held).await;
        let conclusion = match judge.verdict(None) {
            deviated @ Conclusion::Deviated(_) => deviated,
            _ => Conclusion::Errored(why),
        };
        record.alerts = judge.alerts();
        record.slos = judge.slos();
        record.budgets = judge.budgets();
        conclude_reverts(&mut record, conclusion).apply(&mut record);
        return record;
    }
    if reached == 0 {
        let why = record
            .targets
            .iter()
            .filter_map(|t| t.detail.clone())
            .collect::<Vec<_>>()
            .join("; ");
        record.skip(&SkipReason::NotDisrupted(why));
        return record;
    }

    // 5. observe while the fault is held; a deviation, unreadable health, shutdown or
    //    demotion ends the hold early
    let mut stop = match cut {
        Some(stop) => stop,
        None => {
            watch
                .observe(&mut judge, policy.duration, Until::Deviation)
                .await
        }
    };
    // 6. revert: always, also on deviation, error, shutdown and demotion (a demoted
    //    replica sends nothing: the leader that follows reverts the records)
    revert_all(env, &m, &mut record, &held).await;
    record.reverted_at = Some(Utc::now());
    judge.reverted();
    // 7. settle: also after a deviation (the fault was reverted early): the alerts that a
    //    breach sets off arrive seconds later, and the record should name them.
    if matches!(stop, Stop::Elapsed | Stop::Deviated) {
        stop = watch
            .observe(&mut judge, policy.health.settle, Until::End)
            .await;
    }

    // 8. verdict
    let mut conclusion = judge.verdict(None);
    if conclusion == Conclusion::Passed {
        match stop {
            // Not observed to the end: not a pass. Errored is what "could not be carried
            // out" means; the record says why.
            Stop::Cancelled => {
                let observed_secs = observing.elapsed().as_secs();
                let stopped = opts.shutdown.as_ref().is_some_and(|s| !s.is_cancelled());
                conclusion = Conclusion::Errored(if stopped {
                    ErrorReason::Stopped { observed_secs }
                } else {
                    ErrorReason::Interrupted { observed_secs }
                });
            }
            Stop::Demoted => conclusion = Conclusion::Errored(ErrorReason::Demoted),
            _ => {}
        }
    }
    record.alerts = judge.alerts();
    record.slos = judge.slos();
    record.budgets = judge.budgets();
    conclude_reverts(&mut record, conclusion).apply(&mut record);
    record
}
