//! One experiment, start to verdict: gate, select, inject, observe, revert, settle,
//! verdict (DESIGN section 1, steps 1-8). Emitting (journal, notifications) is the
//! caller's, so that `havoc run` and the service share this code.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{
    events::Events,
    health::Health,
    metrics::Metrics,
    verdict::{Assessment, Judge, gate},
};
use crate::{
    fault::{Outcome, pod::PodFault},
    journal::{ExperimentRecord, TargetRecord, TriggerInfo, Verdict},
    policy::{
        Config, Policy,
        validate::{FaultKind, NamespaceScope},
    },
    target::{Guards, NamespaceInfo, PodInfo, Restriction, select_pods},
};

/// Default `duration` of a policy: how long health is observed after a pod fault.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);
/// Default `health.settle`.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(30);

/// What an experiment needs from the service.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub config: Arc<Config>,
    pub health: Arc<Health>,
    pub guards: Guards,
    /// Publishes Kubernetes Events on targets (the service; `havoc run` has none).
    pub events: Option<Events>,
    /// Counts faults (the service's metrics; `havoc run` has none).
    pub metrics: Option<Metrics>,
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
}

/// Where targets come from: the service's watch caches, or a listing (`havoc run`).
pub trait Snapshot {
    fn snapshot(
        &self,
    ) -> impl Future<
        Output = anyhow::Result<(
            Vec<PodInfo>,
            std::collections::BTreeMap<String, NamespaceInfo>,
        )>,
    > + Send;
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("guards", &self.guards)
            .finish_non_exhaustive()
    }
}

/// Lists the cluster once per experiment.
#[derive(Clone)]
pub struct ListSnapshot(pub Client);

impl std::fmt::Debug for ListSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListSnapshot")
    }
}

impl Snapshot for ListSnapshot {
    async fn snapshot(
        &self,
    ) -> anyhow::Result<(
        Vec<PodInfo>,
        std::collections::BTreeMap<String, NamespaceInfo>,
    )> {
        Ok(crate::target::kube::list_snapshot(&self.0).await?)
    }
}

/// A new experiment id: policy name, UTC start time, and a random suffix.
pub fn new_id(policy: &str, at: DateTime<Utc>) -> String {
    format!(
        "{policy}-{}-{:04x}",
        at.format("%Y%m%dT%H%M%SZ"),
        rand::rng().random::<u16>()
    )
}

/// Whether a policy runs dry: a policy may ask for it; the service-level dryRun wins
/// unless every namespace the policy's target names is one of `liveNamespaces`.
pub fn is_dry_run(config: &Config, policy: &Policy) -> bool {
    if policy.spec.dry_run == Some(true) {
        return true;
    }
    if !config.spec.dry_run {
        return false;
    }
    let live = &config.spec.live_namespaces;
    match &policy.target.namespaces {
        NamespaceScope::Names(names) => names.is_empty() || !names.iter().all(|n| live.contains(n)),
        NamespaceScope::All | NamespaceScope::Selector(_) => true,
    }
}

/// A record for an experiment that starts now (verdict `skipped` until decided).
pub fn new_record(
    config: &Config,
    policy: &Policy,
    trigger: TriggerInfo,
    id: String,
) -> ExperimentRecord {
    let started_at = Utc::now();
    ExperimentRecord {
        id: if id.is_empty() {
            new_id(&policy.name, started_at)
        } else {
            id
        },
        policy: policy.name.clone(),
        verdict: Verdict::Skipped,
        reason: String::new(),
        dry_run: is_dry_run(config, policy),
        trigger,
        targets: Vec::new(),
        fault: policy.fault.name().to_string(),
        started_at,
        injected_at: None,
        reverted_at: None,
        ended_at: started_at,
        alerts: Vec::new(),
        slos: Vec::new(),
    }
}

/// A `skipped` record for a run that never started (paused, limit reached, missed).
pub fn skipped_record(
    config: &Config,
    policy: &Policy,
    trigger: TriggerInfo,
    reason: String,
) -> ExperimentRecord {
    let mut r = new_record(config, policy, trigger, String::new());
    r.reason = reason;
    r
}

/// Runs one experiment to its verdict. Never panics on cluster or health errors: they
/// become `skipped` (before injection) or `errored` (after).
pub async fn run(
    ctx: &Context,
    snapshot: &impl Snapshot,
    policy: &Policy,
    trigger: TriggerInfo,
    opts: RunOptions,
) -> ExperimentRecord {
    let mut record = new_record(&ctx.config, policy, trigger, opts.id);
    let dry_run = record.dry_run;
    let finish = |mut r: ExperimentRecord, verdict: Verdict, reason: String| {
        r.verdict = verdict;
        r.reason = reason;
        r.ended_at = Utc::now();
        r
    };
    let health_cfg = &ctx.config.spec.health;
    let matchers: Vec<String> = policy
        .alert_matchers
        .iter()
        .map(ToString::to_string)
        .collect();
    let slo_names = policy.spec.health.as_ref().and_then(|h| h.slos.clone());

    // This version implements pod faults only; refuse others before anything else.
    let pod_fault = match &policy.fault {
        FaultKind::PodDelete(f) => PodFault::Delete {
            grace: f.grace_period.map(|g| g.0),
        },
        FaultKind::PodEvict(f) => PodFault::Evict {
            grace: f.grace_period.map(|g| g.0),
        },
        other => {
            return finish(
                record,
                Verdict::Errored,
                format!(
                    "fault {} is not supported by this version of havoc",
                    other.name()
                ),
            );
        }
    };
    // 1. gate
    let baseline = ctx.health.observe(&matchers, slo_names.as_deref()).await;
    record.slos = baseline.slos.clone();
    if let Err(reason) = gate(&baseline, health_cfg.fail_closed) {
        return finish(record, Verdict::Skipped, reason);
    }

    // 2. select
    let (mut pods, namespaces) = match snapshot.snapshot().await {
        Ok(s) => s,
        Err(e) => {
            return finish(
                record,
                Verdict::Skipped,
                format!("cannot read targets: {e:#}"),
            );
        }
    };
    if let Some(r) = &opts.restrict {
        pods.retain(|p| r.allows(p));
    }
    let mut guards = ctx.guards.clone();
    if let Some(min) = policy
        .spec
        .limits
        .as_ref()
        .and_then(|l| l.min_available_replicas)
    {
        guards.min_available_replicas = min;
    }
    let mut rng = match opts.seed {
        Some(s) => ChaCha8Rng::seed_from_u64(s),
        None => ChaCha8Rng::from_rng(&mut rand::rng()),
    };
    let selection = select_pods(
        &policy.target,
        &pods,
        &namespaces,
        &guards,
        Utc::now(),
        &mut rng,
    );
    if selection.chosen.is_empty() {
        return finish(record, Verdict::Skipped, selection.why_empty());
    }

    if opts.cancel.is_cancelled() {
        return finish(
            record,
            Verdict::Skipped,
            "havoc is shutting down".to_string(),
        );
    }

    // 3-4. inject (pod faults need no revert record: the workload replaces the pod)
    let mut injected = 0;
    for p in &selection.chosen {
        let outcome = if dry_run {
            tracing::info!(policy = %policy.name, pod = %p.name, namespace = %p.namespace, fault = policy.fault.name(), "dry run: would inject");
            Ok(Outcome::DryRun)
        } else {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &p.namespace);
            crate::fault::pod::inject(&api, &p.name, pod_fault).await
        };
        let (label, detail) = match &outcome {
            Ok(o @ Outcome::Skipped(why)) => (o.label(), Some(why.clone())),
            Ok(o) => {
                injected += 1;
                (o.label(), None)
            }
            Err(e) => ("errored", Some(e.to_string())),
        };
        record.targets.push(TargetRecord {
            kind: "Pod".to_string(),
            namespace: Some(p.namespace.clone()),
            name: p.name.clone(),
            outcome: label.to_string(),
            detail,
        });
        if let Err(e) = outcome {
            // Pod faults leave nothing to revert: stop here.
            return finish(
                record,
                Verdict::Errored,
                format!("{} {}/{}: {e}", policy.fault.name(), p.namespace, p.name),
            );
        }
    }
    if injected == 0 {
        let why = record
            .targets
            .iter()
            .filter_map(|t| t.detail.clone())
            .collect::<Vec<_>>()
            .join("; ");
        return finish(
            record,
            Verdict::Skipped,
            format!("no target could be disrupted: {why}"),
        );
    }
    let injected_at = Utc::now();
    record.injected_at = Some(injected_at);
    if let Some(m) = &ctx.metrics {
        m.fault_injected(&policy.name, policy.fault.name(), injected);
    }
    if let Some(ev) = &ctx.events {
        ev.injected(&record);
    }

    // 5. observe, 6. revert (nothing for pod faults), 7. settle
    let duration = policy.spec.duration.map_or(DEFAULT_DURATION, |d| d.0);
    let settle = policy
        .spec
        .health
        .as_ref()
        .and_then(|h| h.settle)
        .map_or(DEFAULT_SETTLE, |d| d.0);
    let mut judge = Judge::new(injected_at, &baseline, health_cfg.fail_closed);
    let interval = health_cfg.interval.0;
    let observing = Instant::now();
    let mut stop = observe(
        ctx,
        &mut judge,
        &matchers,
        slo_names.as_deref(),
        duration,
        interval,
        Until::Deviation,
        &opts.cancel,
    )
    .await;
    record.reverted_at = Some(Utc::now());
    // Settle also follows a deviation (the fault was reverted early): the alerts that a
    // breach sets off arrive seconds later, and the record should name them.
    if matches!(stop, Stop::Elapsed | Stop::Deviated) {
        stop = observe(
            ctx,
            &mut judge,
            &matchers,
            slo_names.as_deref(),
            settle,
            interval,
            Until::End,
            &opts.cancel,
        )
        .await;
    }

    // 8. verdict
    let (mut verdict, mut reason) = judge.verdict(None);
    if stop == Stop::Cancelled && verdict == Verdict::Passed {
        // Not observed to the end: not a pass. Errored is what "could not be carried out"
        // means; the record says why.
        verdict = Verdict::Errored;
        reason = format!(
            "interrupted by shutdown after {}s of observation; no deviation seen until then",
            observing.elapsed().as_secs()
        );
    }
    record.alerts = judge.alerts();
    record.slos = judge.slos();
    finish(record, verdict, reason)
}

/// Why observation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The window passed.
    Elapsed,
    /// A deviation (with [`Until::Deviation`]).
    Deviated,
    /// Health became unreadable.
    Unreadable,
    /// Shutdown.
    Cancelled,
}

/// Whether a deviation ends the observation window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    Deviation,
    End,
}

/// Polls health every `interval` for `window`, until unreadable health, shutdown, or
/// (with [`Until::Deviation`]) a deviation.
#[allow(clippy::too_many_arguments)]
async fn observe(
    ctx: &Context,
    judge: &mut Judge,
    matchers: &[String],
    slos: Option<&[String]>,
    window: Duration,
    interval: Duration,
    until: Until,
    cancel: &CancellationToken,
) -> Stop {
    let end = Instant::now() + window;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = cancel.cancelled() => return Stop::Cancelled,
        }
        let obs = tokio::select! {
            obs = ctx.health.observe(matchers, slos) => obs,
            () = cancel.cancelled() => return Stop::Cancelled,
        };
        match judge.observe(&obs) {
            Assessment::Holding => {}
            Assessment::Deviated(reason) => {
                if until == Until::Deviation {
                    tracing::info!(%reason, "deviation: ending the fault early");
                    return Stop::Deviated;
                }
            }
            Assessment::Unreadable(reason) => {
                tracing::info!(%reason, "health unreadable: stopping the experiment");
                return Stop::Unreadable;
            }
        }
        if Instant::now() >= end {
            return Stop::Elapsed;
        }
    }
}
