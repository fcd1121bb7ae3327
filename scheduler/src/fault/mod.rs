//! Faults injected through the Kubernetes API.
//!
//! Pod faults (delete, evict) are not reversible: the owning workload replaces the pod.
//! Reversible faults (drain, scale, partition, HTTP faults) implement
//! [`revert::Reversible`]: the change and its revert record go in one patch, and orphaned
//! records are reverted at start-up ([`revert::expired`]).

pub mod pod;
pub mod revert;

use std::time::Duration;

use crate::record::TargetOutcome;

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
