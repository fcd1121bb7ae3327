//! One experiment, start to verdict: gate, select, inject, observe, revert, settle,
//! verdict (DESIGN section 1, steps 1-8). Emitting (journal, notifications) is the
//! caller's, so that `havoc run` and the service share this code.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use kube::{Client, api::ApiResource};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    events::Events,
    health::HealthSource,
    metrics::Metrics,
    verdict::{Assessment, Conclusion, Judge, gate},
};
use crate::{
    fault::{
        FaultError, Held, Injection, Mutator, Outcome, Reverted, pod::PodFault, revert::Stamp,
    },
    journal::{Intent, Journal},
    leader::Leadership,
    policy::{
        Config, Policy,
        domain::{Fault, HttpFault},
        model::Direction,
    },
    record::{
        ErrorReason, ExperimentRecord, ObjectRef, RevertResult, SkipReason, TargetOutcome,
        TargetRecord, TargetRevert, TriggerInfo, Verdict,
    },
    targets::{
        DrainTarget, Guards, PodInfo, Restriction, ScaleGuard, Selection, Snapshot, SnapshotSource,
        VirtualServiceInfo, WorkloadInfo, drain_plan, select::VOLUME_LOSS, select_nodes,
        select_partitions, select_pods, select_virtual_services, select_workloads,
    },
};

/// What an experiment needs from outside: the cluster, health, safety guards, and where
/// it reports (Events and metrics in the service; `havoc run` has neither).
#[derive(Clone)]
pub struct Env {
    pub client: Client,
    pub config: Arc<Config>,
    pub health: Arc<dyn HealthSource>,
    pub guards: Guards,
    pub events: Option<Events>,
    pub metrics: Option<Metrics>,
    /// Intents are journaled here before any mutation (the service's journal; `havoc
    /// run`'s, if it has one).
    pub journal: Option<Arc<Journal>>,
    /// Written into every revert record: whose change it is.
    pub owner: String,
    /// Checked right before every mutation and while a fault is held: a replica that is
    /// no longer the leader stops and reverts.
    pub leader: Leadership,
    /// Pods that running experiments of this process have taken.
    pub claims: Claims,
    /// Live experiments marked on dashboards (gauge, Grafana); a no-op by default.
    pub annotations: super::annotations::Annotations,
}

/// What running experiments of this process have taken: the pods they delete, evict or
/// drain, and the nodes they cordon. Selection counts claimed pods as already gone and
/// claimed nodes as already cordoned: two experiments that start together read the same
/// snapshot, in which the other's victim still looks ready and the other's node still
/// schedulable (the watch has not seen the change yet), and could each take a replica of
/// one workload (breaking `minAvailableReplicas` between them) or each cordon a node
/// (breaking `maxUnschedulableNodes`). Choosing and claiming happen under one lock; the
/// claim is released when the experiment ends, by which time the watch knows.
#[derive(Debug, Clone, Default)]
pub struct Claims(Arc<std::sync::Mutex<BTreeSet<Claim>>>);

/// One claimed object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Claim {
    Pod { namespace: String, name: String },
    Node(String),
}

impl Claim {
    fn pod(p: &PodInfo) -> Self {
        Claim::Pod {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
        }
    }
}

/// Releases an experiment's claims when dropped (also on an early return or a panic).
#[derive(Debug)]
struct Claimed {
    claims: Claims,
    keys: Vec<Claim>,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        let mut set = self.claims.0.lock().unwrap_or_else(|e| e.into_inner());
        for k in &self.keys {
            set.remove(k);
        }
    }
}

impl Claims {
    /// Chooses the plan with other experiments' claimed pods counted as gone and their
    /// nodes as cordoned, and claims what this plan disrupts, atomically.
    fn choose(
        &self,
        policy: &Policy,
        snapshot: &mut Snapshot,
        guards: &Guards,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Plan, Claimed), SkipReason> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !set.is_empty() {
            for p in snapshot.pods.iter_mut() {
                if set.contains(&Claim::pod(p)) {
                    p.terminating = true;
                    p.ready = false;
                }
            }
            for n in snapshot.nodes.iter_mut() {
                if set.contains(&Claim::Node(n.name.clone())) {
                    n.unschedulable = true;
                }
            }
        }
        let plan = Plan::choose(policy, snapshot, guards, rng)?;
        let keys: Vec<Claim> = match &plan {
            Plan::Pods(_, pods) => pods.iter().map(Claim::pod).collect(),
            Plan::Drain { nodes, .. } => nodes
                .iter()
                .flat_map(|t| {
                    std::iter::once(Claim::Node(t.node.name.clone()))
                        .chain(t.evict.iter().map(Claim::pod))
                })
                .collect(),
            _ => Vec::new(),
        };
        set.extend(keys.iter().cloned());
        Ok((
            plan,
            Claimed {
                claims: self.clone(),
                keys,
            },
        ))
    }
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
            owner: "test/havoc".into(),
            leader,
            claims: Claims::default(),
            annotations: Default::default(),
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

/// A new experiment id: policy name, UTC start time, and a random suffix.
pub fn new_id(policy: &str, at: DateTime<Utc>) -> String {
    format!(
        "{policy}-{}-{:04x}",
        at.format("%Y%m%dT%H%M%SZ"),
        rand::rng().random::<u16>()
    )
}

/// A record for an experiment that starts now (verdict `skipped` until decided).
pub fn new_record(policy: &Policy, trigger: TriggerInfo, id: String) -> ExperimentRecord {
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
        reason_code: None,
        dry_run: policy.dry_run,
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
pub fn skipped_record(policy: &Policy, trigger: TriggerInfo, why: &SkipReason) -> ExperimentRecord {
    let mut r = new_record(policy, trigger, String::new());
    r.skip(why);
    r
}

/// The targets an experiment acts on, chosen for its fault.
#[derive(Debug, Clone)]
enum Plan {
    Pods(PodFault, Vec<PodInfo>),
    Drain {
        timeout: Duration,
        nodes: Vec<DrainTarget>,
    },
    Scale {
        replicas: u32,
        allow_volume_deletion: bool,
        workloads: Vec<WorkloadInfo>,
    },
    Partition {
        direction: Direction,
        workloads: Vec<WorkloadInfo>,
    },
    Http {
        api: ApiResource,
        fault: HttpFault,
        services: Vec<VirtualServiceInfo>,
    },
}

impl Plan {
    /// Chooses the targets of `policy` from `snapshot`, or says why there are none.
    fn choose(
        policy: &Policy,
        snapshot: &Snapshot,
        guards: &Guards,
        rng: &mut ChaCha8Rng,
    ) -> Result<Plan, SkipReason> {
        let (rule, now) = (&policy.target, Utc::now());
        fn chosen<T>(sel: Selection<T>) -> Result<Vec<T>, SkipReason> {
            if sel.chosen.is_empty() {
                Err(SkipReason::NoTarget(sel.why_empty()))
            } else {
                Ok(sel.chosen)
            }
        }
        Ok(match &policy.fault {
            Fault::PodDelete { grace } | Fault::PodEvict { grace } => {
                let fault = match policy.fault {
                    Fault::PodDelete { .. } => PodFault::Delete { grace: *grace },
                    _ => PodFault::Evict { grace: *grace },
                };
                let sel = select_pods(rule, &snapshot.pods, &snapshot.namespaces, guards, now, rng);
                Plan::Pods(fault, chosen(sel)?)
            }
            Fault::NodeDrain { timeout } => {
                let nodes = chosen(select_nodes(rule, snapshot, guards, now, rng))?;
                Plan::Drain {
                    timeout: *timeout,
                    nodes: drain_plan(snapshot, nodes, guards),
                }
            }
            Fault::Scale {
                replicas,
                allow_volume_deletion,
            } => {
                let guard = ScaleGuard {
                    set: *replicas,
                    allow_volume_deletion: *allow_volume_deletion,
                };
                let sel = select_workloads(rule, snapshot, guards, guard, now, rng);
                if sel.chosen.is_empty() && sel.dropped.contains_key(VOLUME_LOSS) {
                    // Its own reason code: the data-loss guard, not an empty cluster.
                    return Err(SkipReason::WouldDeleteVolumes(sel.why_empty()));
                }
                Plan::Scale {
                    replicas: *replicas,
                    allow_volume_deletion: *allow_volume_deletion,
                    workloads: chosen(sel)?,
                }
            }
            Fault::NetworkPartition { direction } => Plan::Partition {
                direction: *direction,
                workloads: chosen(select_partitions(rule, snapshot, guards, now, rng))?,
            },
            Fault::HttpFault(fault) => {
                let Some(vs) = &snapshot.virtual_services else {
                    return Err(SkipReason::Unavailable(
                        "the VirtualService CRD (networking.istio.io) is not installed".into(),
                    ));
                };
                let sel = select_virtual_services(
                    rule,
                    &vs.items,
                    &snapshot.namespaces,
                    guards,
                    now,
                    rng,
                );
                Plan::Http {
                    api: vs.api.clone(),
                    fault: fault.clone(),
                    services: chosen(sel)?,
                }
            }
        })
    }

    /// The objects it is about to change, for the intent line.
    fn objects(&self) -> Vec<ObjectRef> {
        match self {
            Plan::Pods(_, pods) => pods
                .iter()
                .map(|p| ObjectRef::namespaced("Pod", &p.namespace, &p.name))
                .collect(),
            Plan::Drain { nodes, .. } => nodes
                .iter()
                .map(|t| ObjectRef {
                    kind: "Node".into(),
                    namespace: None,
                    name: t.node.name.clone(),
                })
                .collect(),
            Plan::Scale { workloads, .. } | Plan::Partition { workloads, .. } => {
                workloads.iter().map(WorkloadInfo::object).collect()
            }
            Plan::Http { services, .. } => services
                .iter()
                .map(|v| ObjectRef::namespaced("VirtualService", &v.namespace, &v.name))
                .collect(),
        }
    }

    /// How long injecting may take beyond its requests: a drain's evictions.
    fn injection_time(&self) -> Duration {
        match self {
            Plan::Drain { timeout, .. } => *timeout,
            _ => Duration::ZERO,
        }
    }
}

/// Injects into target `i` of the plan: the record of that target, and what is held.
async fn inject_one(
    m: &Mutator,
    plan: &Plan,
    i: usize,
    stamp: &Stamp,
    dry_run: bool,
) -> (TargetRecord, Result<Option<Held>, FaultError>) {
    let object = plan.objects().swap_remove(i);
    let mut record = TargetRecord {
        kind: object.kind,
        namespace: object.namespace,
        name: object.name,
        outcome: TargetOutcome::Skipped,
        detail: None,
        revert: None,
    };
    let result: Result<Injection, FaultError> = match plan {
        Plan::Pods(fault, pods) => {
            let p = &pods[i];
            if dry_run {
                tracing::info!(pod = %p.name, namespace = %p.namespace, fault = ?fault, "dry run: would inject");
                Ok(Injection {
                    outcome: Outcome::DryRun,
                    detail: None,
                    held: None,
                })
            } else {
                crate::fault::pod::inject(m, &p.namespace, &p.name, *fault)
                    .await
                    .map(|outcome| Injection {
                        outcome,
                        detail: None,
                        held: None,
                    })
            }
        }
        Plan::Drain { timeout, nodes } => {
            crate::fault::node::inject(m, &nodes[i], *timeout, stamp, dry_run).await
        }
        Plan::Scale {
            replicas,
            allow_volume_deletion,
            workloads,
        } => {
            crate::fault::scale::inject(
                m,
                &workloads[i],
                *replicas,
                *allow_volume_deletion,
                stamp,
                dry_run,
            )
            .await
        }
        Plan::Partition {
            direction,
            workloads,
        } => crate::fault::partition::inject(m, &workloads[i], *direction, stamp, dry_run).await,
        Plan::Http {
            api,
            fault,
            services,
        } => crate::fault::http::inject(m, api, &services[i], fault, stamp, dry_run).await,
    };
    match result {
        Ok(inj) => {
            let (outcome, why) = inj.outcome.target();
            record.outcome = outcome;
            record.detail = why.or(inj.detail);
            (record, Ok(inj.held))
        }
        // Not sent: the experiment was stopped or this replica was demoted.
        Err(e @ (FaultError::Cancelled | FaultError::Fenced)) => {
            record.detail = Some(e.to_string());
            (record, Err(e))
        }
        Err(e) => {
            record.outcome = TargetOutcome::Errored;
            record.detail = Some(e.to_string());
            (record, Err(e))
        }
    }
}

/// What the injection did: a record per target (in plan order), what is held, and why
/// it ended early, if it did.
#[derive(Debug, Default)]
struct Injected {
    targets: Vec<TargetRecord>,
    /// Index into `targets`, and the change.
    held: Vec<(usize, Held)>,
    failure: Option<ErrorReason>,
}

/// Injects into every target of the plan, one after the other. Stops at the first error;
/// stops without an error when `m` is interrupted (the caller knows why) — the targets
/// not reached are recorded as skipped, so the record names every planned target.
async fn inject_all(
    m: &Mutator,
    policy: &Policy,
    plan: &Plan,
    stamp: &Stamp,
    dry_run: bool,
) -> Injected {
    let mut out = Injected::default();
    let planned = plan.objects();
    for i in 0..planned.len() {
        if let Some(stop) = out.failure.is_none().then(|| m.refusal()).flatten()
            && !dry_run
        {
            if matches!(stop, FaultError::Fenced) {
                out.failure = Some(ErrorReason::Demoted);
            }
            for o in &planned[i..] {
                out.targets.push(TargetRecord {
                    kind: o.kind.clone(),
                    namespace: o.namespace.clone(),
                    name: o.name.clone(),
                    outcome: TargetOutcome::Skipped,
                    detail: Some(format!("not attempted: {stop}")),
                    revert: None,
                });
            }
            break;
        }
        if out.failure.is_some() {
            break;
        }
        let (target, result) = inject_one(m, plan, i, stamp, dry_run).await;
        let label = format!(
            "{} {}/{}",
            policy.fault.name(),
            target.namespace.as_deref().unwrap_or("-"),
            target.name
        );
        out.targets.push(target);
        match result {
            Ok(Some(h)) => out.held.push((out.targets.len() - 1, h)),
            Ok(None) | Err(FaultError::Cancelled) => {}
            Err(FaultError::Fenced) => out.failure = Some(ErrorReason::Demoted),
            Err(e) => out.failure = Some(ErrorReason::Injection(format!("{label}: {e}"))),
        }
    }
    out
}

/// How often a held change's revert is tried within the experiment (1 s, 2 s, 4 s
/// apart); after that the recovery sweep keeps trying.
const REVERT_ATTEMPTS: u32 = 4;

/// Reverts one held change through `m`, retrying transient failures with backoff; never
/// gives up early on shutdown. Not retried: a refusal for lack of permission
/// (`forbidden`: reported, the sweep tries again rarely), and a lapsed fence
/// (`handedOver`: the next leader reverts it).
pub async fn revert_with_retries(
    m: &Mutator,
    metrics: Option<&Metrics>,
    held: &Held,
) -> TargetRevert {
    let mut delay = Duration::from_secs(1);
    let mut attempt = 0;
    let (result, detail) = loop {
        attempt += 1;
        match crate::fault::revert(m, held).await {
            Ok(r) => break (revert_result(&r), r.detail().map(str::to_string)),
            Err(e @ FaultError::Fenced) => {
                tracing::warn!(object = ?held.object, "revert not sent: this replica is no longer the leader; the next leader reverts it");
                break (RevertResult::HandedOver, Some(e.to_string()));
            }
            Err(e) if e.is_forbidden() => {
                tracing::error!(object = ?held.object, error = %e, "revert refused by the API server (RBAC): havoc may no longer undo this change; run `havoc revert --all` with enough permissions, or give havoc's ServiceAccount its revert permissions back");
                break (
                    RevertResult::Forbidden,
                    Some(format!("forbidden by the API server (RBAC): {e}")),
                );
            }
            Err(e) if attempt < REVERT_ATTEMPTS => {
                tracing::warn!(object = ?held.object, attempt, error = %e, "revert failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::error!(object = ?held.object, error = %e, "revert failed; the recovery sweep keeps trying");
                break (RevertResult::Failed, Some(e.to_string()));
            }
        }
    };
    if let Some(m) = metrics {
        m.revert(result);
    }
    TargetRevert {
        result,
        object: held.object.clone(),
        detail,
        at: Utc::now(),
    }
}

/// The record's name for what a revert did.
pub fn revert_result(r: &Reverted) -> RevertResult {
    match r {
        Reverted::Restored => RevertResult::Restored,
        Reverted::Gone => RevertResult::Gone,
        Reverted::NotOurs(_) => RevertResult::NotOurs,
        Reverted::LeftAsIs(_) => RevertResult::LeftAsIs,
    }
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
    let mut record = new_record(policy, trigger.clone(), opts.id);
    let fail_closed = env.config.health.fail_closed;
    let dry_run = policy.dry_run;

    // 1. gate
    let baseline = env.health.observe(&policy.health).await;
    let gate_read = Instant::now();
    record.slos = baseline.slos.clone();
    if let Err(why) = gate(&baseline, fail_closed) {
        record.skip(&why);
        return record;
    }

    // 2. select
    let mut snapshot = match source.snapshot(policy).await {
        Ok(s) => s,
        Err(e) => {
            record.skip(&SkipReason::TargetsUnreadable(e.to_string()));
            return record;
        }
    };
    if let Some(r) = &opts.restrict {
        snapshot.pods.retain(|p| r.allows(p));
    }
    let guards = Guards {
        min_available_replicas: policy.min_available_replicas,
        ..env.guards.clone()
    };
    let mut rng = match opts.seed {
        Some(s) => ChaCha8Rng::seed_from_u64(s),
        None => ChaCha8Rng::from_rng(&mut rand::rng()),
    };
    let (plan, _claimed) = match env.claims.choose(policy, &mut snapshot, &guards, &mut rng) {
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

    // 3. intent: journaled before any mutation, so that a crash loses no record.
    let stamp = Stamp::new(&record.id, &policy.name, policy.duration, &env.owner);
    if !dry_run {
        if !env.leader.is_leader() {
            record.skip(&SkipReason::NotLeader);
            return record;
        }
        if let Some(journal) = &env.journal {
            let intent = Intent {
                id: record.id.clone(),
                policy: policy.name.clone(),
                fault: policy.fault.name().to_string(),
                dry_run,
                trigger,
                started_at: record.started_at,
                targets: plan.objects(),
                deadline: stamp.deadline
                    + chrono::Duration::from_std(plan.injection_time()).unwrap_or_default(),
            };
            if let Err(e) = journal.started(&intent) {
                record.skip(&SkipReason::JournalUnwritable(e.to_string()));
                return record;
            }
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
    let injecting = inject_all(&m, policy, &plan, &stamp, dry_run);
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
    conclude_reverts(&mut record, conclusion).apply(&mut record);
    record
}

/// Reverts every held change (through the experiment's fence, not its interruption) and
/// notes the result on its target.
async fn revert_all(env: &Env, m: &Mutator, record: &mut ExperimentRecord, held: &[(usize, Held)]) {
    let m = m.for_revert();
    let reverts = held
        .iter()
        .map(|(_, h)| revert_with_retries(&m, env.metrics.as_ref(), h));
    let results = futures::future::join_all(reverts).await;
    for ((i, _), r) in held.iter().zip(results) {
        record.targets[*i].revert = Some(r);
    }
}

/// A failed revert wins over every other conclusion.
fn conclude_reverts(record: &mut ExperimentRecord, conclusion: Conclusion) -> Conclusion {
    let failed: Vec<String> = record
        .targets
        .iter()
        .filter_map(|t| t.revert.as_ref())
        .filter(|r| r.result.is_failure())
        .map(|r| {
            format!(
                "{} {}: {}",
                r.object.kind,
                r.object.name,
                r.detail.as_deref().unwrap_or("failed")
            )
        })
        .collect();
    if failed.is_empty() {
        conclusion
    } else {
        Conclusion::RollbackFailed(format!("revert failed: {}", failed.join("; ")))
    }
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
    /// This replica lost leadership.
    Demoted,
}

/// Whether a deviation ends the observation window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    Deviation,
    End,
}

/// Polls health for one policy while its fault is held and while it settles.
struct Observer<'a> {
    env: &'a Env,
    policy: &'a Policy,
    cancel: &'a CancellationToken,
    /// When health was last read (the gate's reading, then each of the windows').
    last_read: Instant,
}

impl Observer<'_> {
    /// Polls every `health.interval` for `window`, until unreadable health, shutdown, or
    /// (with [`Until::Deviation`]) a deviation. The window ends on time: a window shorter
    /// than the interval (or not a multiple of it) ends with a last reading at its end,
    /// not at the next tick, so that a fault is held for its `duration`, not up to one
    /// interval longer.
    ///
    /// Readings are one interval apart across windows: the first is one interval after
    /// the reading before the window (the gate's before the hold, the hold's last before
    /// the settle), at once if that is already past (a drain that took minutes to evict),
    /// or at the window's end if that comes first. A window usually begins milliseconds
    /// after a reading, and another one then could not see anything new (alerts take
    /// their `for:` to fire): an experiment held 1 s and settling 2 s reads health 3
    /// times, not 5.
    async fn observe(&mut self, judge: &mut Judge, window: Duration, until: Until) -> Stop {
        let end = Instant::now() + window;
        let every = self.env.config.health.interval;
        let mut ticker = tokio::time::interval_at(self.last_read + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let at_end = tokio::time::sleep_until(end);
        tokio::pin!(at_end);
        let mut leader = self.env.leader.watch();
        let demoted = !self.policy.dry_run;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = &mut at_end => {}
                () = self.cancel.cancelled() => return Stop::Cancelled,
                Ok(()) = leader.changed(), if demoted => {
                    if !self.env.leader.is_leader() {
                        tracing::warn!("leadership lost: ending the fault early");
                        return Stop::Demoted;
                    }
                    continue;
                }
            }
            let obs = tokio::select! {
                obs = self.env.health.observe(&self.policy.health) => obs,
                () = self.cancel.cancelled() => return Stop::Cancelled,
            };
            self.last_read = Instant::now();
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
}

#[cfg(test)]
mod tests {
    //! The lifecycle against a scripted API server (kube's `tower_test` pattern), scripted
    //! health readings and tokio's paused clock.

    use std::{
        collections::VecDeque,
        sync::{
            Mutex,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use futures::{FutureExt, future::BoxFuture};
    use http::{Request, Response};
    use kube::client::Body;
    use tower_test::mock;

    use super::*;
    use crate::{
        engine::verdict::Observation,
        policy::{domain::PolicyHealth, fixtures},
        record::AlertRecord,
        targets::{Snapshot, SnapshotError, fixtures as targets},
    };

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    /// Health readings in order; the last one repeats. Counts the reads.
    struct Scripted {
        readings: Mutex<VecDeque<Observation>>,
        reads: AtomicUsize,
    }

    impl Scripted {
        fn new(readings: Vec<Observation>) -> Arc<Self> {
            Arc::new(Scripted {
                readings: Mutex::new(readings.into()),
                reads: AtomicUsize::new(0),
            })
        }

        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }
    }

    impl HealthSource for Scripted {
        fn observe<'a>(&'a self, _: &'a PolicyHealth) -> BoxFuture<'a, Observation> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let mut q = self.readings.lock().expect("lock");
            let obs = if q.len() > 1 {
                q.pop_front().unwrap_or_default()
            } else {
                q.front().cloned().unwrap_or_default()
            };
            futures::future::ready(obs).boxed()
        }
    }

    struct Fixed(Snapshot);

    impl SnapshotSource for Fixed {
        fn snapshot<'a>(&'a self, _: &'a Policy) -> BoxFuture<'a, Result<Snapshot, SnapshotError>> {
            futures::future::ready(Ok(self.0.clone())).boxed()
        }
    }

    fn healthy() -> Observation {
        Observation::default()
    }

    fn firing(name: &str, starts_at: DateTime<Utc>) -> Observation {
        Observation {
            alerts: vec![AlertRecord {
                name: name.to_string(),
                fingerprint: format!("fp-{name}"),
                labels: Default::default(),
                starts_at,
            }],
            ..Observation::default()
        }
    }

    fn env(health: Arc<Scripted>) -> (Env, Handle) {
        env_polling_every(health, 1)
    }

    /// [`env`] with health polled every `secs` seconds while a fault is held.
    fn env_polling_every(health: Arc<Scripted>, secs: u64) -> (Env, Handle) {
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let config = fixtures::config().interval_secs(secs).build();
        let env = Env {
            client: Client::new(svc, "default"),
            config: Arc::new(config),
            health,
            guards: Guards {
                protected_namespaces: ["kube-system".to_string()].into(),
                own_pod: None,
                min_available_replicas: 1,
                max_unschedulable_nodes: 1,
            },
            events: None,
            metrics: None,
            journal: None,
            owner: "test/havoc".into(),
            leader: crate::leader::Leadership::always(),
            claims: Default::default(),
            annotations: Default::default(),
        };
        (env, handle)
    }

    /// A live pod-delete policy on namespace `d`, held 10 s, settling 5 s.
    fn policy() -> Policy {
        fixtures::policy("p")
            .namespaces(&["d"])
            .live()
            .duration_secs(10)
            .settle_secs(5)
            .build()
    }

    fn two_pods() -> Fixed {
        Fixed(targets::snapshot("d", "web", 2))
    }

    fn manual() -> TriggerInfo {
        TriggerInfo::Manual {
            source: "test".into(),
        }
    }

    fn opts() -> RunOptions {
        RunOptions {
            seed: Some(7),
            ..RunOptions::default()
        }
    }

    /// Answers one request, checking its method and path prefix.
    async fn answer(handle: &mut Handle, method: &str, path_prefix: &str, status: u16) {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .expect("a request comes")
            .expect("client alive");
        assert_eq!(req.method().as_str(), method);
        assert!(
            req.uri().path().starts_with(path_prefix),
            "{}",
            req.uri().path()
        );
        let body = if status < 300 {
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "d"}})
        } else {
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "scripted", "reason": "Forbidden", "code": status})
        };
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&body).expect("json")))
                .expect("response"),
        );
    }

    /// No request reaches the API server (the paused clock makes this instant).
    async fn assert_no_request(handle: &mut Handle) {
        let next = tokio::time::timeout(Duration::from_secs(60), handle.next_request()).await;
        assert!(next.is_err(), "unexpected request");
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_gate_skips_without_touching_the_cluster() {
        let health = Scripted::new(vec![firing("Old", Utc::now())]);
        let (env, mut handle) = env(health.clone());
        let r = execute(&env, &two_pods(), &policy(), manual(), opts()).await;
        assert_eq!(r.verdict, Verdict::Skipped);
        assert_eq!(r.reason_code.as_deref(), Some("alertsFiring"));
        assert!(r.reason.contains("Old"), "{}", r.reason);
        assert!(r.targets.is_empty());
        assert_eq!(health.reads(), 1);
        assert_no_request(&mut handle).await;
    }

    #[tokio::test(start_paused = true)]
    async fn no_eligible_target_is_a_skip() {
        let (env, mut handle) = env(Scripted::new(vec![healthy()]));
        // one replica and the default floor of 1: nothing may go
        let one = Fixed(targets::snapshot("d", "web", 1));
        let r = execute(&env, &one, &policy(), manual(), opts()).await;
        assert_eq!(r.verdict, Verdict::Skipped);
        assert_eq!(r.reason_code.as_deref(), Some("noTarget"));
        assert!(r.reason.contains("minAvailableReplicas"), "{}", r.reason);
        assert_no_request(&mut handle).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_injection_error_ends_errored_and_names_the_target() {
        let (env, mut handle) = env(Scripted::new(vec![healthy()]));
        let server = tokio::spawn(async move {
            answer(&mut handle, "DELETE", "/api/v1/namespaces/d/pods/web-", 403).await;
        });
        let r = execute(&env, &two_pods(), &policy(), manual(), opts()).await;
        server.await.expect("scripted");
        assert_eq!(r.verdict, Verdict::Errored);
        assert_eq!(r.reason_code.as_deref(), Some("injection"));
        assert!(r.reason.starts_with("podDelete d/web-"), "{}", r.reason);
        assert_eq!(r.targets[0].outcome, TargetOutcome::Errored);
        assert!(r.injected_at.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn windows_shorter_than_the_health_interval_end_on_time() {
        // Polled every 10 s, held 1 s, settling 2 s: each window ends with a reading at
        // its end, not at the next tick (which held the fault 10 s and settled 10 s).
        let health = Scripted::new(vec![healthy()]);
        let (env, mut handle) = env_polling_every(health.clone(), 10);
        let server = tokio::spawn(async move {
            answer(&mut handle, "DELETE", "/api/v1/namespaces/d/pods/web-", 200).await;
        });
        let short = fixtures::policy("p")
            .namespaces(&["d"])
            .live()
            .duration_secs(1)
            .settle_secs(2)
            .build();
        let began = Instant::now();
        let r = execute(&env, &two_pods(), &short, manual(), opts()).await;
        server.await.expect("scripted");
        assert_eq!(r.verdict, Verdict::Passed, "{r:?}");
        let took = began.elapsed();
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_secs(4),
            "took {took:?}"
        );
        // the gate; the hold's reading at its end (1 s); settle's at its end (3 s): none
        // at a window's start, milliseconds after the reading before it
        assert_eq!(health.reads(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_injection_is_watched_while_it_runs() {
        // Polled every 2 s; the delete is answered after 3 s (as a drain evicting for
        // minutes would take long): health is read during the injection, the alert at 2 s
        // ends it (no hold), and the settle reads once at its end.
        let alert = firing(
            "KubeDeploymentUnavailable",
            Utc::now() + chrono::Duration::hours(1),
        );
        let health = Scripted::new(vec![healthy(), alert]);
        let (env, mut handle) = env_polling_every(health.clone(), 2);
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.expect("the delete");
            tokio::time::sleep(Duration::from_secs(3)).await;
            let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-0", "namespace": "d"}});
            send.send_response(Response::new(Body::from(pod.to_string().into_bytes())));
            assert_no_request(&mut handle).await;
        });
        let long = fixtures::policy("p")
            .namespaces(&["d"])
            .live()
            .duration_secs(60)
            .settle_secs(1)
            .build();
        let began = Instant::now();
        let r = execute(&env, &two_pods(), &long, manual(), opts()).await;
        assert_eq!(r.verdict, Verdict::Deviated, "{r:?}");
        assert_eq!(r.targets[0].outcome, TargetOutcome::Injected, "{r:?}");
        // 3 s of injection (its request was in flight: answered, not abandoned), no hold,
        // 1 s of settle.
        let took = began.elapsed();
        assert!(
            took >= Duration::from_secs(4) && took < Duration::from_secs(5),
            "took {took:?}"
        );
        assert_eq!(
            health.reads(),
            3,
            "gate, the alert during the injection, settle"
        );
        server.await.expect("scripted");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_a_multi_target_injection_sends_nothing_more() {
        let (env, mut handle) = env(Scripted::new(vec![healthy()]));
        let cancel = CancellationToken::new();
        let stopper = cancel.clone();
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.expect("the first delete");
            // The stop comes while the first request is in flight.
            stopper.cancel();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-0", "namespace": "d"}});
            send.send_response(Response::new(Body::from(pod.to_string().into_bytes())));
            assert_no_request(&mut handle).await;
        });
        let two = fixtures::policy("p")
            .namespaces(&["d"])
            .live()
            .count(2)
            .duration_secs(10)
            .settle_secs(1)
            .build();
        let three = Fixed(targets::snapshot("d", "web", 3));
        let shutdown = CancellationToken::new();
        let r = execute(
            &env,
            &three,
            &two,
            manual(),
            RunOptions {
                cancel,
                shutdown: Some(shutdown),
                ..opts()
            },
        )
        .await;
        server.await.expect("no second delete");
        assert_eq!(r.verdict, Verdict::Errored, "{r:?}");
        assert_eq!(r.reason_code.as_deref(), Some("stopped"), "{r:?}");
        assert_eq!(r.targets.len(), 2, "{r:?}");
        assert_eq!(r.targets[0].outcome, TargetOutcome::Injected);
        assert_eq!(r.targets[1].outcome, TargetOutcome::Skipped);
        assert!(
            r.targets[1]
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("not attempted")),
            "{r:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deviation_ends_the_hold_early_and_settle_names_the_alert() {
        let start = Utc::now();
        // gate, then two healthy polls, then an alert that started after the injection
        let alert = firing(
            "KubeDeploymentUnavailable",
            start + chrono::Duration::hours(1),
        );
        let health = Scripted::new(vec![healthy(), healthy(), healthy(), alert]);
        let (env, mut handle) = env(health.clone());
        let server = tokio::spawn(async move {
            answer(&mut handle, "DELETE", "/api/v1/namespaces/d/pods/web-", 200).await;
        });
        let began = Instant::now();
        let r = execute(&env, &two_pods(), &policy(), manual(), opts()).await;
        server.await.expect("scripted");
        assert_eq!(r.verdict, Verdict::Deviated, "{r:?}");
        assert!(
            r.reason.contains("KubeDeploymentUnavailable"),
            "{}",
            r.reason
        );
        assert_eq!(r.alerts.len(), 1);
        assert_eq!(r.targets[0].outcome, TargetOutcome::Injected);
        let held = r.reverted_at.expect("reverted") - r.injected_at.expect("injected");
        assert!(held < chrono::Duration::seconds(10), "held {held}");
        // the hold ended at its third poll (~3 s: one interval after the gate's reading,
        // then one a second), then 5 s of settle
        let took = began.elapsed();
        assert!(
            took >= Duration::from_secs(7) && took < Duration::from_secs(10),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_during_the_hold_is_an_interruption_not_a_pass() {
        let health = Scripted::new(vec![healthy()]);
        let (env, mut handle) = env(health);
        let cancel = CancellationToken::new();
        let server = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                answer(&mut handle, "DELETE", "/api/v1/namespaces/d/pods/web-", 200).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                cancel.cancel();
            })
        };
        let r = execute(
            &env,
            &two_pods(),
            &policy(),
            manual(),
            RunOptions { cancel, ..opts() },
        )
        .await;
        server.await.expect("scripted");
        assert_eq!(r.verdict, Verdict::Errored);
        assert_eq!(r.reason_code.as_deref(), Some("interrupted"));
        assert!(r.reason.contains("after 3s"), "{}", r.reason);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dry_run_goes_through_the_lifecycle_and_mutates_nothing() {
        let health = Scripted::new(vec![healthy()]);
        let (env, mut handle) = env(health.clone());
        let dry = fixtures::policy("p")
            .namespaces(&["d"])
            .duration_secs(10)
            .settle_secs(5)
            .build();
        assert!(dry.dry_run, "the service default is dry");
        let r = execute(&env, &two_pods(), &dry, manual(), opts()).await;
        assert_eq!(r.verdict, Verdict::Passed, "{r:?}");
        assert!(r.dry_run);
        assert_eq!(r.targets.len(), 1);
        assert_eq!(r.targets[0].outcome, TargetOutcome::DryRun);
        // gate + ~10 polls of the hold + ~5 of settle (1 s interval)
        assert!(health.reads() >= 15, "{}", health.reads());
        assert_no_request(&mut handle).await;
    }

    /// Two experiments that start together read one snapshot: with a floor of 1 and two
    /// ready replicas, only the first may take one; the second sees it taken until the
    /// first ends.
    #[test]
    fn a_pod_chosen_by_a_running_experiment_counts_as_gone() {
        let claims = Claims::default();
        let guards = Guards {
            protected_namespaces: Default::default(),
            own_pod: None,
            min_available_replicas: 1,
            max_unschedulable_nodes: 1,
        };
        let policy = policy();
        let read = || targets::snapshot("d", "web", 2);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (first, claimed) = claims
            .choose(&policy, &mut read(), &guards, &mut rng)
            .expect("the first takes a pod");
        assert_eq!(first.objects().len(), 1);
        let second = claims.choose(&policy, &mut read(), &guards, &mut rng);
        assert!(
            matches!(second, Err(SkipReason::NoTarget(_))),
            "the second would leave web without a ready replica: {:?}",
            second.map(|(p, _)| p.objects())
        );
        drop(claimed);
        let (third, _claimed) = claims
            .choose(&policy, &mut read(), &guards, &mut rng)
            .expect("free again once the first ended");
        assert_eq!(third.objects().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_passing_pod_experiment_costs_two_requests_the_delete_and_one_event() {
        let (mut env, mut handle) = env(Scripted::new(vec![healthy()]));
        let tasks = tokio_util::task::TaskTracker::new();
        env.events = Some(Events::new(
            env.client.clone(),
            None,
            tasks.clone(),
            crate::policy::domain::DEFAULT_NOTIFY_ON.to_vec(),
        ));
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let uri = req.uri().clone();
                let (verb, resource) = crate::client::classify(
                    req.method().as_str(),
                    uri.path(),
                    uri.query().unwrap_or(""),
                );
                record
                    .lock()
                    .expect("lock")
                    .push(format!("{verb} {resource}"));
                let body = req.into_body().collect_bytes().await.expect("body");
                let body = if body.is_empty() {
                    serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "x", "namespace": "d"}}))
                    .expect("json")
                } else {
                    body.to_vec()
                };
                send.send_response(
                    Response::builder()
                        .body(Body::from(body))
                        .expect("response"),
                );
            }
        });
        let r = execute(&env, &two_pods(), &policy(), manual(), opts()).await;
        assert_eq!(r.verdict, Verdict::Passed);
        // what the arbiter does when it emits the record
        if let Some(ev) = &env.events {
            ev.verdict(&r);
        }
        tasks.close();
        tasks.wait().await;
        let mut seen = seen.lock().expect("lock").clone();
        seen.sort();
        assert_eq!(seen, ["create events", "delete pods"]);
    }
}
