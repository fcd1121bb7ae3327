//! What a fault's change is made of: the outcome of one injection, the change it holds,
//! what a revert did, the errors, and the [`Mutator`] every mutation goes through (the
//! fence at send time, the interruption, the timeout), with the request helpers the
//! faults share.

use std::time::Duration;

use kube::Client;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::revert::RevertRecord;
use crate::{
    leader::{LEASE_DURATION, Leadership, RENEW_DEADLINE},
    record::{ObjectRef, TargetOutcome},
};

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

impl Held {
    pub fn new(object: ObjectRef, record: RevertRecord) -> Self {
        Held { object, record }
    }
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
    pub(crate) fn skipped(why: impl Into<String>) -> Self {
        Injection {
            outcome: Outcome::Skipped(why.into()),
            detail: None,
            held: None,
        }
    }

    pub(crate) fn dry_run(change: String) -> Self {
        tracing::info!(%change, "dry run: would inject");
        Injection {
            outcome: Outcome::DryRun,
            detail: Some(change),
            held: None,
        }
    }

    /// A change that is not reverted (a pod deleted or evicted): nothing is held.
    pub(crate) fn not_reversible(detail: Option<String>) -> Self {
        Injection {
            outcome: Outcome::Injected,
            detail,
            held: None,
        }
    }

    pub(crate) fn injected(change: String, held: Held) -> Self {
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
    /// Not sent: this replica's fence does not hold (it is not, or no longer surely, the
    /// leader). The leader that follows reverts what this one held.
    #[error("not sent: this replica is not the leader (its lease could not be renewed in time)")]
    Fenced,
    /// Not sent: the experiment was stopped (stop, deviation, demotion, shutdown).
    #[error("not sent: the experiment was stopped")]
    Cancelled,
}

impl FaultError {
    /// The API server refused the request for lack of permission (RBAC).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, FaultError::Api(kube::Error::Api(s)) if s.code == 403)
    }
}

/// How often an API call is tried before the fault counts as errored (409, 5xx, timeouts).
pub const API_ATTEMPTS: u32 = 3;
/// Timeout of one API call that reads.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of one mutation. A leader's fence ends [`RENEW_DEADLINE`] after its last
/// successful renewal began; a follower takes over no sooner than [`LEASE_DURATION`]
/// after it saw that renewal. A mutation is sent only while the fence holds and is
/// abandoned after this long, so it is over before any follower may take over.
pub const MUTATION_TIMEOUT: Duration = Duration::from_secs(4);
const _: () = assert!(
    MUTATION_TIMEOUT.as_millis() < LEASE_DURATION.as_millis() - RENEW_DEADLINE.as_millis(),
    "a mutation must end within the margin between the fence and a takeover"
);

/// What every mutation goes through: the client, the fence checked right before each
/// request is sent (retries included), and the token that interrupts an injection (a
/// stop, a deviation, a demotion, a shutdown). Cheap to clone.
#[derive(Clone)]
pub struct Mutator {
    client: Client,
    fence: Leadership,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Mutator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutator")
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Mutator {
    pub fn new(client: Client, fence: Leadership, cancel: CancellationToken) -> Self {
        Mutator {
            client,
            fence,
            cancel,
        }
    }

    /// A mutator for a process that is the only actor (`havoc run`, `havoc revert`,
    /// tests): always fenced in, never cancelled.
    pub fn unfenced(client: Client) -> Self {
        Mutator::new(client, Leadership::always(), CancellationToken::new())
    }

    /// The same fence, without the interruption: a revert runs to its end when the
    /// experiment was stopped (that is what a stop asks for).
    pub fn for_revert(&self) -> Self {
        Mutator::new(
            self.client.clone(),
            self.fence.clone(),
            CancellationToken::new(),
        )
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Cancelled when the injection must stop.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Why a mutation may not be sent now, if it may not.
    pub fn refusal(&self) -> Option<FaultError> {
        if self.cancel.is_cancelled() {
            Some(FaultError::Cancelled)
        } else if !self.fence.is_leader() {
            Some(FaultError::Fenced)
        } else {
            None
        }
    }

    /// `e`, or [`FaultError::Fenced`] when the fence has lapsed meanwhile. The service's
    /// client drops its connections when the fence lapses (`client::fenced`), so a request
    /// in flight then (a read or a write) fails with a connection error, which means
    /// "this replica may not act any more", not "the API server failed".
    pub fn or_fenced(&self, e: FaultError) -> FaultError {
        if matches!(e, FaultError::Cancelled) || self.fence.is_leader() {
            e
        } else {
            FaultError::Fenced
        }
    }

    /// Sends one mutation: only if the experiment goes on and the fence holds now, and
    /// bounded by [`MUTATION_TIMEOUT`]. (`call` is a future: nothing is sent before it is
    /// polled here.)
    pub async fn send<T>(
        &self,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, FaultError> {
        if let Some(no) = self.refusal() {
            return Err(no);
        }
        match tokio::time::timeout(MUTATION_TIMEOUT, call).await {
            Ok(r) => r.map_err(|e| self.or_fenced(e.into())),
            Err(_) => Err(self.or_fenced(FaultError::Timeout(MUTATION_TIMEOUT))),
        }
    }

    /// Sleeps `d`, or less if the injection is interrupted meanwhile; whether it was.
    pub async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => true,
            () = tokio::time::sleep(d) => self.cancel.is_cancelled(),
        }
    }
}

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
/// decides, and writes with the version it read (through a [`Mutator`], which checks the
/// fence again for every attempt); a conflict (someone wrote in between) reads again, at
/// most [`API_ATTEMPTS`] times.
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::{Client, client::Body};
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    use super::{FaultError, Mutator};
    use crate::leader;

    /// A client nobody answers (the errors here are made up, not received).
    fn client() -> Client {
        let (svc, _handle) = tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        Client::new(svc, "default")
    }

    fn unavailable() -> FaultError {
        FaultError::Api(kube::Error::Api(
            kube::core::Status::failure("connection closed", "ServiceUnavailable")
                .with_code(503)
                .boxed(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_after_the_fence_lapsed_means_fenced() {
        let (publisher, fence) = leader::channel();
        publisher.publish_until(Some(Instant::now() + Duration::from_secs(10)));
        let m = Mutator::new(client(), fence, CancellationToken::new());
        assert!(matches!(m.or_fenced(unavailable()), FaultError::Api(_)));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(matches!(m.or_fenced(unavailable()), FaultError::Fenced));
        assert!(matches!(
            m.or_fenced(FaultError::Cancelled),
            FaultError::Cancelled
        ));
    }
}
