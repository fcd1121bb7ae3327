//! Faults injected through the Kubernetes API, and their reverts: **one fault, one file**.
//!
//! Each fault is one type implementing [`FaultKind`] — its name, what it needs of the API
//! server ([`access`]: the RBAC the chart renders and the load-time checks), what its
//! policies read (the watch caches follow it), how it chooses among the candidates beyond
//! the shared guards of [`crate::targets`] ([`FaultKind::plan`], whose [`Planned`] injects
//! target by target and says what it would do in a dry run), how it reverts, and its revert
//! record's schema — registered once in [`registry`]. Nothing else in havoc matches on a
//! fault's name: the engine, the recovery sweep, scope derivation, access checks and Event
//! publishing go through this trait.
//!
//! - [`pod`]: `podDelete`, `podEvict` — not reversible: the owning workload replaces the
//!   pod.
//! - [`node`]: `nodeDrain` — cordon and evict; revert uncordons.
//! - [`zone`]: `zoneOutage` — cordon and drain every node of one zone; revert uncordons.
//! - [`scale`]: `scale` — set a workload's replicas; revert restores the count.
//! - [`partition`]: `networkPartition` — a NetworkPolicy havoc owns; revert deletes it.
//! - [`http`]: `httpFault` — routes with a fault inserted into an Istio VirtualService;
//!   revert removes exactly those routes.
//! - [`revert`]: the revert record (annotation `havoc.dev/revert`) every reversible
//!   change carries, written in the same request as the change or on the object havoc
//!   creates; [`recovery`] finds and reverts the records nobody is holding.
//! - [`mutate`]: what a change is made of, and the [`Mutator`] every mutation goes through:
//!   sent only while this replica's fence holds (checked at send time, also before each
//!   retry) and the experiment has not been stopped, bounded by [`MUTATION_TIMEOUT`],
//!   shorter than the margin between the fence and the earliest takeover.
//!
//! A reversible change in place is a [`Held`]: the object and its record, everything a
//! revert needs — in this process, its successor, or `havoc revert --all`.

/// The items of a reversible fault's [`FaultKind`] impl, written once: the kinds its
/// records are on, its revert (an `async fn(&Mutator, &Held) -> Result<Reverted, _>` of its
/// file, from the record alone) and the schema of its record's `original`.
macro_rules! reversible {
    (records on $($kind:ident),+; reverted by $revert:path; original $original:ty) => {
        fn records_on(&self) -> &'static [$crate::fault::recovery::RecordKind] {
            &[$($crate::fault::recovery::RecordKind::$kind),+]
        }

        fn revert<'a>(
            &'a self,
            m: &'a $crate::fault::Mutator,
            held: &'a $crate::fault::Held,
        ) -> $crate::fault::Step<'a, $crate::fault::Reverted> {
            Box::pin($revert(m, held))
        }

        fn record_schema(&self) -> Option<schemars::Schema> {
            Some(schemars::schema_for!($original))
        }
    };
}

pub mod access;
pub mod http;
pub mod mutate;
pub mod node;
pub mod partition;
pub mod pod;
pub mod recovery;
pub mod revert;
pub mod scale;
#[cfg(test)]
mod tests;
pub mod zone;

use std::{fmt::Debug, time::Duration};

use futures::future::BoxFuture;
use rand_chacha::ChaCha8Rng;

pub use self::mutate::*;
use self::{access::FaultAccess, recovery::RecordKind, revert::Stamp};
use crate::{
    policy::Policy,
    record::{ObjectRef, SkipReason},
    targets::{Claim, Guards, NodeInfo, Snapshot, scope::Needs},
};

/// One kind of fault (one file under `fault/`).
pub trait FaultKind: Send + Sync + Debug {
    /// The policy field name, e.g. `scale` (records, metrics, logs).
    fn name(&self) -> &'static str;

    /// Whether its change is held for `duration` and undone (`false`: nothing to undo,
    /// e.g. a deleted pod that its workload replaces).
    fn reversible(&self) -> bool {
        !self.records_on().is_empty()
    }

    /// What it needs of the API server beyond what havoc always has.
    fn access(&self) -> FaultAccess;

    /// The kinds of objects its revert records are on (recovery finds them there).
    fn records_on(&self) -> &'static [RecordKind] {
        &[]
    }

    /// What a policy of this fault reads (the watch caches follow it). `own_namespace` is
    /// havoc's: its pods tell which pods, workloads and nodes are havoc itself.
    fn needs(&self, policy: &Policy, own_namespace: &str) -> Needs;

    /// The targets of the input's policy in its snapshot, chosen under its guards (the
    /// shared rules of selection plus this fault's own), or why there are none.
    fn plan(&self, input: PlanInput<'_>) -> Plan;

    /// For a fault that empties whole nodes (drain, zone outage): the nodes it would act
    /// on, chosen from the snapshot before their pods are read ([`Needs::node_pods`]).
    /// The engine then reads those pods into the snapshot and plans with the same nodes
    /// ([`PlanInput::nodes`]). `None`: it reads no node's pods.
    ///
    /// [`Needs::node_pods`]: crate::targets::scope::Needs::node_pods
    fn choose_nodes(&self, _input: PlanInput<'_>) -> Result<Option<Vec<NodeInfo>>, SkipReason> {
        Ok(None)
    }

    /// Undoes one of its records (the record alone says what to restore). Reversible
    /// faults write it with [`reversible!`].
    fn revert<'a>(&'a self, _m: &'a Mutator, held: &'a Held) -> Step<'a, Reverted> {
        let fault = held.record.fault.clone();
        Box::pin(async move { Err(FaultError::UnknownFault(fault)) })
    }

    /// The JSON Schema of its revert records' `original` (`None`: it holds nothing).
    fn record_schema(&self) -> Option<schemars::Schema> {
        None
    }
}

/// A plan: the targets an experiment acts on, chosen for its fault.
pub trait Planned: Send + Sync + Debug {
    /// The objects it is about to change, in order (the intent line, the record).
    fn objects(&self) -> Vec<ObjectRef>;

    /// What it takes while it runs (other experiments count these as gone).
    fn claims(&self) -> Vec<Claim> {
        Vec::new()
    }

    /// How long injecting may take beyond its requests (a drain's evictions).
    fn injection_time(&self) -> Duration {
        Duration::ZERO
    }

    /// Injects into target `i` (or, in a dry run, says exactly what it would do).
    fn inject<'a>(&'a self, act: Act<'a>, i: usize) -> Step<'a, Injection>;
}

/// What a fault plans from: the policy, the cluster as the watch caches see it, the
/// shared guards of selection, and the experiment's random source.
#[derive(Debug)]
pub struct PlanInput<'a> {
    pub policy: &'a Policy,
    pub snapshot: &'a Snapshot,
    pub guards: &'a Guards,
    pub rng: &'a mut ChaCha8Rng,
    /// The nodes [`FaultKind::choose_nodes`] chose, their pods now in the snapshot.
    pub nodes: Option<&'a [NodeInfo]>,
}

/// A fault's plan, or why the experiment is skipped.
pub type Plan = Result<Box<dyn Planned>, SkipReason>;

/// One asynchronous step of a fault against the API server.
pub type Step<'a, T> = BoxFuture<'a, Result<T, FaultError>>;

/// How an injection is made: through `m` (fence and stop checked), its revert record
/// stamped from `stamp`, or, in a dry run, only described.
#[derive(Debug, Clone, Copy)]
pub struct Act<'a> {
    pub m: &'a Mutator,
    pub stamp: &'a Stamp,
    pub dry_run: bool,
}

/// Every fault havoc knows, once.
pub fn registry() -> &'static [&'static dyn FaultKind] {
    &[
        &pod::POD_DELETE,
        &pod::POD_EVICT,
        &node::NodeDrain,
        &zone::ZoneOutage,
        &scale::Scale,
        &partition::Partition,
        &http::Http,
    ]
}

/// The fault named `name` (a policy field name), if havoc knows it.
pub fn kind(name: &str) -> Option<&'static dyn FaultKind> {
    registry().iter().copied().find(|k| k.name() == name)
}

/// The fault of a (validated) policy.
pub fn of(policy: &Policy) -> Result<&'static dyn FaultKind, SkipReason> {
    kind(policy.fault.name()).ok_or_else(|| {
        SkipReason::Unavailable(format!(
            "fault {} is not supported by this version of havoc",
            policy.fault.name()
        ))
    })
}

/// A policy handed to a fault that is not its own (a registry bug, never a user's).
fn not_mine(kind: &dyn FaultKind, policy: &Policy) -> SkipReason {
    SkipReason::Unavailable(format!(
        "fault {} cannot plan policy {}'s {}",
        kind.name(),
        policy.name,
        policy.fault.name()
    ))
}

/// What every policy of a set reads together: each fault's needs, and the rollout
/// triggers' workloads.
pub fn needs_of<'a>(policies: impl IntoIterator<Item = &'a Policy>, own_namespace: &str) -> Needs {
    policies
        .into_iter()
        .map(|p| {
            let faults = kind(p.fault.name()).map(|k| k.needs(p, own_namespace));
            faults.unwrap_or_default().union(Needs::of_triggers(p))
        })
        .fold(Needs::default(), Needs::union)
}

/// The kinds any fault's records can be on (recovery watches and lists these).
pub fn record_kinds() -> Vec<RecordKind> {
    let mut kinds: Vec<RecordKind> = registry()
        .iter()
        .flat_map(|k| k.records_on().iter().copied())
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Undoes one held change from its record alone: what the experiment does on time,
/// what recovery does for records nobody holds, what `havoc revert --all` does.
pub async fn revert(m: &Mutator, held: &Held) -> Result<Reverted, FaultError> {
    let Some(fault) = kind(&held.record.fault) else {
        return Err(FaultError::UnknownFault(held.record.fault.clone()));
    };
    match fault.revert(m, held).await {
        Err(e) if is_not_found(&e) => Ok(Reverted::Gone),
        other => other,
    }
}
