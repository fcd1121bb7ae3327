//! Faults injected through the Kubernetes API, and their reverts.
//!
//! - [`pod`]: `podDelete`, `podEvict` — not reversible: the owning workload replaces the
//!   pod.
//! - [`node`]: `nodeDrain` — cordon and evict; revert uncordons.
//! - [`scale`]: `scale` — set a workload's replicas; revert restores the count.
//! - [`partition`]: `networkPartition` — a NetworkPolicy havoc owns; revert deletes it.
//! - [`http`]: `httpFault` — routes with a fault inserted into an Istio VirtualService;
//!   revert removes exactly those routes.
//! - [`revert`]: the revert record (annotation `havoc.dev/revert`) every reversible
//!   change carries, written in the same request as the change or on the object havoc
//!   creates; [`recovery`] finds and reverts the records nobody is holding.
//!
//! A reversible change in place is a [`Held`]: the object and its record, everything a
//! revert needs — in this process, its successor, or `havoc revert --all`.

pub mod http;
pub mod node;
pub mod partition;
pub mod pod;
pub mod recovery;
pub mod revert;
pub mod scale;

use std::time::Duration;

use kube::Client;
use serde::{Deserialize, Serialize};

use self::revert::RevertRecord;
use crate::record::{ObjectRef, TargetOutcome};

/// What happened to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    /// Dry run: only logged.
    DryRun,
    /// Not a failure: the target vanished, or a PodDisruptionBudget refused the eviction.
    Skipped(String),
}

impl Outcome {
    /// The outcome as a record says it, with its detail.
    pub fn target(&self) -> (TargetOutcome, Option<String>) {
        match self {
            Outcome::Injected => (TargetOutcome::Injected, None),
            Outcome::DryRun => (TargetOutcome::DryRun, None),
            Outcome::Skipped(why) => (TargetOutcome::Skipped, Some(why.clone())),
        }
    }
}

/// A reversible change in place: which object carries it, and its revert record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    pub object: ObjectRef,
    pub record: RevertRecord,
}

/// What one injection into one target did.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    pub outcome: Outcome,
    /// The exact change (made, or in a dry run: that would have been made).
    pub detail: Option<String>,
    /// Set when a reversible change is in place.
    pub held: Option<Held>,
}

impl Injection {
    fn skipped(why: impl Into<String>) -> Self {
        Injection {
            outcome: Outcome::Skipped(why.into()),
            detail: None,
            held: None,
        }
    }

    fn dry_run(change: String) -> Self {
        tracing::info!(%change, "dry run: would inject");
        Injection {
            outcome: Outcome::DryRun,
            detail: Some(change),
            held: None,
        }
    }

    fn injected(change: String, held: Held) -> Self {
        tracing::info!(%change, experiment = %held.record.experiment, "fault injected");
        Injection {
            outcome: Outcome::Injected,
            detail: Some(change),
            held: Some(held),
        }
    }
}

/// What a revert did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "detail", rename_all = "camelCase")]
pub enum Reverted {
    /// The original state is back and the record removed.
    Restored,
    /// The object no longer exists: nothing to undo.
    Gone,
    /// The record is no longer this experiment's (someone removed it, or another run
    /// owns the object now): left alone.
    NotOurs(String),
    /// Someone else changed what havoc had set: havoc does not fight; only its record
    /// was removed.
    LeftAsIs(String),
}

impl Reverted {
    pub fn label(&self) -> &'static str {
        match self {
            Reverted::Restored => "restored",
            Reverted::Gone => "gone",
            Reverted::NotOurs(_) => "notOurs",
            Reverted::LeftAsIs(_) => "leftAsIs",
        }
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            Reverted::NotOurs(d) | Reverted::LeftAsIs(d) => Some(d),
            _ => None,
        }
    }
}

/// Why a fault or its revert could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the object kept changing under havoc (conflicts after {0} attempts)")]
    Conflicts(u32),
    #[error("unknown fault {0:?} in a revert record")]
    UnknownFault(String),
    #[error("{0}")]
    Invalid(String),
}

/// How often an API call is tried before the fault counts as errored (409, 5xx, timeouts).
pub const API_ATTEMPTS: u32 = 3;
/// Timeout of one API call.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether an API error is worth retrying.
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 409 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Whether an API error says the object does not exist.
pub fn is_not_found(e: &FaultError) -> bool {
    matches!(e, FaultError::Api(kube::Error::Api(s)) if s.code == 404)
}

/// Whether an API error is a resourceVersion conflict.
pub fn is_conflict(e: &FaultError) -> bool {
    matches!(e, FaultError::Api(kube::Error::Api(s)) if s.code == 409)
}

/// One API call with a timeout.
pub async fn bounded<T>(
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, FaultError> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(FaultError::Timeout(API_TIMEOUT)),
    }
}

/// Read-modify-write with a resourceVersion precondition: `attempt` reads the object,
/// decides, and writes with the version it read; a conflict (someone wrote in between)
/// reads again, at most [`API_ATTEMPTS`] times.
pub async fn with_conflict_retries<T, F, Fut>(mut attempt: F) -> Result<T, FaultError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, FaultError>>,
{
    for n in 1..=API_ATTEMPTS {
        match attempt().await {
            Err(e) if is_conflict(&e) && n < API_ATTEMPTS => {
                tracing::debug!(attempt = n, "conflict: reading the object again");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(n))).await;
            }
            Err(e) if is_conflict(&e) => return Err(FaultError::Conflicts(n)),
            other => return other,
        }
    }
    Err(FaultError::Conflicts(API_ATTEMPTS))
}

/// Undoes one held change from its record alone: what the experiment does on time,
/// what recovery does for records nobody holds, what `havoc revert --all` does.
pub async fn revert(client: &Client, held: &Held) -> Result<Reverted, FaultError> {
    let result = match held.record.fault.as_str() {
        "nodeDrain" => node::revert(client, held).await,
        "scale" => scale::revert(client, held).await,
        "networkPartition" => partition::revert(client, held).await,
        "httpFault" => http::revert(client, held).await,
        other => Err(FaultError::UnknownFault(other.to_string())),
    };
    match result {
        Err(e) if is_not_found(&e) => Ok(Reverted::Gone),
        other => other,
    }
}
