//! Leader election: only the replica holding the Kubernetes Lease injects faults.
//!
//! The elector follows client-go's algorithm, with a fence of its own:
//! - every [`RETRY_PERIOD`] a replica reads the Lease (each call bounded by
//!   [`REQUEST_TIMEOUT`]); the holder renews it every [`RENEW_PERIOD`] (one request, see
//!   `Elector::held`), and again after [`RETRY_PERIOD`] when a renewal failed; the others
//!   take it over only when they have seen no renewal for a whole [`LEASE_DURATION`]
//!   (measured on their own clock, from when they observed the last change — no clock
//!   comparison between replicas);
//! - a leader is the leader only until its **validity deadline**: the start of its last
//!   successful renewal plus [`RENEW_DEADLINE`] (10 s, well below the 15 s lease).
//!   [`Leadership::is_leader`] checks that deadline at the moment it is asked, so a
//!   replica whose renewals fail (API server unreachable, process starved) stops
//!   mutating before any other replica may take over — even if this task is stuck;
//! - a replica restarted in the same pod (same `POD_NAME`) takes the Lease over at once:
//!   the holder is its own dead predecessor, not a live peer.
//!
//! `kube-lease-manager` is not used: it keeps reporting "leader" while renewals fail and
//! does not say when the last one succeeded, which a fence needs.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::policy::domain::LeaderElection;

/// What leadership reports to, and reads from, the rest of the service (the engine's
/// metrics implement it): whether this replica leads, and how many experiments it runs
/// (written into the Lease for `havoc run`).
pub trait Observer: Send + Sync + std::fmt::Debug {
    fn leading(&self, leading: bool);
    fn running(&self) -> usize;
}

/// How long a Lease is valid after its last renewal (what followers wait for).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long a leader trusts its last successful renewal: its fence.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often a follower reads the Lease, and how soon a failed renewal is retried.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// How often the holder renews after a successful renewal. A renewal that fails is
/// retried every [`RETRY_PERIOD`], so three attempts (4, 6 and 8 s after the last
/// success) come before the 10 s fence, and followers see a renewal well within the 15 s
/// lease. client-go renews every 2 s; each renewal is a write, and a service that runs
/// all the time pays for it forever (tests/bench/footprint): half as many.
pub const RENEW_PERIOD: Duration = Duration::from_secs(4);
/// Bound of every Lease request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The Lease annotation in which the leader says how many experiments it runs (renewed
/// with the Lease: no extra request); `havoc run` counts them against the limit.
pub const RUNNING_ANNOTATION: &str = "havoc.dev/running";

#[derive(Debug, Default)]
struct Shared {
    /// Leading until this instant (`None`: not leading).
    valid_until: Option<Instant>,
    /// The Lease state has been read at least once.
    known: bool,
}

/// Whether this replica leads. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
    shared: Arc<Mutex<Shared>>,
}

/// The write side, held by [`elect`] (or set once when election is off).
#[derive(Debug)]
pub struct Publisher {
    tx: watch::Sender<bool>,
    shared: Arc<Mutex<Shared>>,
    metrics: Option<Arc<dyn Observer>>,
}

/// A leadership channel, not leading and state unknown until published.
pub fn channel() -> (Publisher, Leadership) {
    let (tx, rx) = watch::channel(false);
    let shared = Arc::new(Mutex::new(Shared::default()));
    (
        Publisher {
            tx,
            shared: shared.clone(),
            metrics: None,
        },
        Leadership { rx, shared },
    )
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl Publisher {
    /// Publishes `havoc_leader` too.
    pub fn with_metrics(mut self, metrics: impl Observer + 'static) -> Self {
        self.metrics = Some(Arc::new(metrics));
        self
    }

    /// Leading until `until` (`None`: not leading); whether the state changed.
    pub fn publish_until(&self, until: Option<Instant>) -> bool {
        {
            let mut s = lock(&self.shared);
            s.valid_until = until;
            s.known = true;
        }
        let leading = until.is_some_and(|u| Instant::now() < u);
        if let Some(m) = &self.metrics {
            m.leading(leading);
        }
        // Receivers wake when leadership changes, not on every renewal (the sweeper and
        // the clock wake on these).
        self.tx.send_if_modified(|v| {
            let changed = *v != leading;
            *v = leading;
            changed
        })
    }

    /// Leading for good (leader election off) or not at all.
    pub fn publish(&self, leading: bool) -> bool {
        // A far deadline: "forever" without overflowing Instant arithmetic.
        let forever = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        self.publish_until(leading.then_some(forever))
    }
}

impl Leadership {
    /// A replica that always leads (leader election off, `havoc run`, tests).
    pub fn always() -> Self {
        let (publisher, leadership) = channel();
        publisher.publish(true);
        leadership
    }

    /// Leading now: the last renewal is recent enough (checked at the moment of asking:
    /// the fence before every mutation).
    pub fn is_leader(&self) -> bool {
        lock(&self.shared)
            .valid_until
            .is_some_and(|u| Instant::now() < u)
    }

    /// Whether the Lease state has been read at least once (for `/readyz`).
    pub fn is_known(&self) -> bool {
        lock(&self.shared).known
    }

    /// A receiver that wakes on every change (and when the deadline passes).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }
}

/// The identity of this replica in the Lease: the pod name, else the host name, plus a
/// random suffix so two processes on one host differ.
fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "havoc".to_string());
    format!("{base}-{:08x}", rand::random::<u32>())
}

/// What one round of the elector saw of the Lease held by someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    holder: String,
    renewed: Option<String>,
    since: Instant,
}

/// One bounded request.
async fn bounded<T>(call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, kube::Error> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(kube::Error::Service(
            format!("Lease request: no answer within {REQUEST_TIMEOUT:?}").into(),
        )),
    }
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// The elector's state between rounds.
struct Elector {
    api: Api<Lease>,
    name: String,
    id: String,
    /// This pod's name, if known: a holder named after it is a dead predecessor.
    pod: Option<String>,
    observed: Option<Observed>,
    /// The Lease as this replica last wrote it, while it holds it: the next renewal
    /// replaces it directly (one request, not a read and a write). A 409 means someone
    /// else wrote it since: the round then reads it and decides as any other round.
    held: Option<Lease>,
    /// How many experiments run here (written with each renewal).
    metrics: Option<Arc<dyn Observer>>,
}

impl Elector {
    /// One round: `Ok(true)` when this replica holds the Lease after it.
    async fn round(&mut self) -> Result<bool, kube::Error> {
        if let Some(lease) = self.held.take() {
            let spec = lease.spec.clone().unwrap_or_default();
            if self.write(lease, spec, false).await? {
                return Ok(true);
            }
        }
        let Some(lease) = bounded(self.api.get_opt(&self.name)).await? else {
            let created = bounded(self.api.create(&PostParams::default(), &self.fresh(0))).await;
            return match created {
                Ok(lease) => {
                    self.held = Some(lease);
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if holder == self.id {
            return self.write(lease, spec, false).await;
        }
        let renewed = spec.renew_time.as_ref().map(|t| t.0.to_string());
        let now = Instant::now();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renewed != renewed);
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renewed,
                since: now,
            });
        }
        let duration = spec
            .lease_duration_seconds
            .map_or(LEASE_DURATION, |s| Duration::from_secs(s.max(1) as u64));
        let since = self.observed.as_ref().map_or(now, |o| o.since);
        let expired = holder.is_empty() || now >= since + duration;
        let predecessor = self
            .pod
            .as_ref()
            .is_some_and(|p| holder.starts_with(&format!("{p}-")));
        if !(expired || predecessor) {
            return Ok(false);
        }
        if predecessor && !expired {
            tracing::info!(%holder, "the Lease holder is this pod's previous process: taking over");
        }
        self.write(lease, spec, true).await
    }

    fn fresh(&self, transitions: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.id.clone()),
                lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Renews (or, with `acquire`, takes over) with the version read: a concurrent
    /// writer makes it fail with 409, and this round is lost. What was written is kept
    /// for the next renewal.
    async fn write(
        &mut self,
        mut lease: Lease,
        spec: LeaseSpec,
        acquire: bool,
    ) -> Result<bool, kube::Error> {
        let mut next = spec.clone();
        next.holder_identity = Some(self.id.clone());
        next.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
        next.renew_time = Some(now_micro());
        if acquire {
            next.acquire_time = Some(now_micro());
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(next);
        let running = self.metrics.as_ref().map_or(0, |m| m.running());
        lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(RUNNING_ANNOTATION.to_string(), running.to_string());
        match self.replace(lease).await {
            Ok(written) => {
                self.held = Some(written);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up so that another replica takes over at once.
    async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = bounded(self.api.get_opt(&self.name)).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.id.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now_micro());
        self.replace(lease).await?;
        Ok(())
    }

    /// Writes `lease` over the stored one (failing with 409 if it changed since it was
    /// read). Its managed fields are left out: the API server keeps them as they are, and
    /// sending back what the last answer held would only make every renewal bigger.
    async fn replace(&self, mut lease: Lease) -> Result<Lease, kube::Error> {
        lease.metadata.managed_fields = None;
        bounded(self.api.replace(&self.name, &PostParams::default(), &lease)).await
    }
}

/// Holds the Lease until `stop`, publishing whether this replica leads (and until
/// when); releases it on the way out so that another replica takes over at once.
pub async fn elect(
    client: kube::Client,
    cfg: LeaderElection,
    publisher: Publisher,
    stop: CancellationToken,
) {
    elect_with(client, cfg, publisher, stop, identity()).await;
}

async fn elect_with(
    client: Client,
    cfg: LeaderElection,
    publisher: Publisher,
    stop: CancellationToken,
    id: String,
) {
    let mut elector = Elector {
        api: Api::namespaced(client, &cfg.namespace),
        name: cfg.lease.clone(),
        id: id.clone(),
        pod: std::env::var("POD_NAME").ok(),
        observed: None,
        held: None,
        metrics: publisher.metrics.clone(),
    };
    let mut valid_until: Option<Instant> = None;
    let mut known = false;
    loop {
        let started = Instant::now();
        let mut renewed = false;
        match elector.round().await {
            Ok(true) => {
                valid_until = Some(started + RENEW_DEADLINE);
                renewed = true;
            }
            Ok(false) => valid_until = None,
            Err(e) => {
                // Keep the deadline of the last success: it lapses on its own.
                tracing::warn!(error = %e, lease = %cfg.lease, namespace = %cfg.namespace, "cannot read or renew the leader Lease");
                if !known {
                    // Readiness waits for a first answer, not for a working API server.
                    known = true;
                    publisher.publish_until(None);
                }
            }
        }
        if publisher.publish_until(valid_until) || !known {
            tracing::info!(identity = %id, leading = valid_until.is_some(), "leadership changed");
        }
        known = true;
        let next = started + if renewed { RENEW_PERIOD } else { RETRY_PERIOD };
        let lapse = valid_until.filter(|u| *u < next);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(next), if lapse.is_none() => {}
            () = tokio::time::sleep_until(lapse.unwrap_or(next)), if lapse.is_some() => {
                // The fence passed without a successful renewal: not the leader now.
                tracing::warn!(identity = %id, "leadership lapsed: no successful renewal within the deadline");
                valid_until = None;
                publisher.publish_until(None);
            }
        }
    }
    let was_leading = valid_until.is_some_and(|u| Instant::now() < u);
    publisher.publish_until(None);
    if was_leading {
        match elector.release().await {
            Ok(()) => tracing::info!("Lease released"),
            Err(e) => tracing::warn!(error = %e, "cannot release the Lease"),
        }
    }
}

/// How many experiments the service's leader runs now, from its Lease (0 when nobody
/// leads: no valid renewal within the lease duration). For `havoc run`.
pub async fn leader_running(client: &Client, cfg: &LeaderElection) -> Result<usize, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let Some(lease) = bounded(api.get_opt(&cfg.lease)).await? else {
        return Ok(0);
    };
    let spec = lease.spec.unwrap_or_default();
    let fresh = spec.renew_time.is_some_and(|t| {
        let age = jiff::Timestamp::now().duration_since(t.0);
        age.as_secs() < LEASE_DURATION.as_secs() as i64
    });
    if !fresh || spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return Ok(0);
    }
    Ok(lease
        .metadata
        .annotations
        .and_then(|a| a.get(RUNNING_ANNOTATION).and_then(|v| v.parse().ok()))
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_fence_is_checked_when_asked_not_when_told() {
        let (publisher, leadership) = channel();
        assert!(!leadership.is_leader() && !leadership.is_known());
        publisher.publish_until(Some(Instant::now() + RENEW_DEADLINE));
        assert!(leadership.is_leader() && leadership.is_known());
        // Nobody publishes anything (the elector is stuck): the deadline still holds.
        tokio::time::advance(RENEW_DEADLINE).await;
        assert!(!leadership.is_leader());
    }

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn lease(holder: &str, renewed: &str) -> Response<Body> {
        let body = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "havoc", "namespace": "ns", "resourceVersion": "7"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed}});
        Response::builder()
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response")
    }

    async fn expect(handle: &mut Handle, method: &str, answer: Response<Body>) {
        let (req, send) = tokio::time::timeout(Duration::from_secs(60), handle.next_request())
            .await
            .expect("a request")
            .expect("alive");
        assert_eq!(req.method().as_str(), method, "{}", req.uri());
        send.send_response(answer);
    }

    fn elector(pod: Option<&str>) -> (Elector, Handle) {
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let elector = Elector {
            api: Api::namespaced(Client::new(svc, "ns"), "ns"),
            name: "havoc".into(),
            id: "me-00000001".into(),
            pod: pod.map(str::to_string),
            observed: None,
            held: None,
            metrics: None,
        };
        (elector, handle)
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_holder_is_waited_for_a_dead_predecessor_is_not() {
        let (mut e, mut handle) = elector(None);
        let server = tokio::spawn(async move {
            // Held by another replica: no takeover until a whole lease passed unrenewed.
            expect(
                &mut handle,
                "GET",
                lease("other-1", "2026-12-01T12:00:00.000000Z"),
            )
            .await;
            expect(
                &mut handle,
                "GET",
                lease("other-1", "2026-12-01T12:00:00.000000Z"),
            )
            .await;
            expect(
                &mut handle,
                "PUT",
                lease("me-00000001", "2026-12-01T12:00:20.000000Z"),
            )
            .await;
            handle
        });
        assert!(!e.round().await.expect("round"));
        tokio::time::advance(LEASE_DURATION).await;
        assert!(
            e.round().await.expect("round"),
            "taken over after the lease expired"
        );
        let _ = server.await.expect("scripted");

        // The holder is this pod's earlier process: taken over at once.
        let (mut e, mut handle) = elector(Some("havoc-abc"));
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                "GET",
                lease("havoc-abc-0000beef", "2026-12-01T12:00:00.000000Z"),
            )
            .await;
            expect(
                &mut handle,
                "PUT",
                lease("me-00000001", "2026-12-01T12:00:01.000000Z"),
            )
            .await;
        });
        assert!(e.round().await.expect("round"));
        server.await.expect("scripted");
    }

    fn conflict() -> Response<Body> {
        let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "the object has been modified", "reason": "Conflict", "code": 409});
        Response::builder()
            .status(409)
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response")
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_does_not_send_the_managed_fields_back() {
        let (mut e, mut handle) = elector(None);
        let server = tokio::spawn(async move {
            let with_fields = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "havoc", "namespace": "ns", "resourceVersion": "7",
                    "managedFields": [{"manager": "havoc", "operation": "Update", "apiVersion": "coordination.k8s.io/v1",
                        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:holderIdentity": {}, "f:renewTime": {}}}}]},
                "spec": {"holderIdentity": "me-00000001", "leaseDurationSeconds": 15,
                    "renewTime": "2026-12-01T12:01:00.000000Z"}});
            let answer = || {
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&with_fields).expect("json")))
                    .expect("response")
            };
            expect(&mut handle, "GET", answer()).await;
            for _ in 0..2 {
                let (req, send) = handle.next_request().await.expect("a renewal");
                assert_eq!(req.method().as_str(), "PUT");
                let body = req.into_body().collect_bytes().await.expect("body");
                let sent: serde_json::Value = serde_json::from_slice(&body).expect("json");
                assert_eq!(sent["metadata"]["resourceVersion"], "7", "{sent}");
                assert!(sent["metadata"].get("managedFields").is_none(), "{sent}");
                send.send_response(answer());
            }
        });
        assert!(e.round().await.expect("round"), "renewed after the read");
        assert!(
            e.round().await.expect("round"),
            "renewed from what was written"
        );
        server.await.expect("scripted");
    }

    #[tokio::test(start_paused = true)]
    async fn the_holder_renews_with_one_request_and_reads_only_after_a_conflict() {
        let (mut e, mut handle) = elector(None);
        let server = tokio::spawn(async move {
            // Taken (the Lease expired long ago), then renewed with a PUT alone.
            expect(&mut handle, "GET", lease("", "2026-12-01T12:00:00.000000Z")).await;
            expect(
                &mut handle,
                "PUT",
                lease("me-00000001", "2026-12-01T12:01:00.000000Z"),
            )
            .await;
            expect(
                &mut handle,
                "PUT",
                lease("me-00000001", "2026-12-01T12:01:02.000000Z"),
            )
            .await;
            expect(
                &mut handle,
                "PUT",
                lease("me-00000001", "2026-12-01T12:01:04.000000Z"),
            )
            .await;
            // Someone else wrote it meanwhile (took it over): the renewal conflicts, the
            // round reads it and follows.
            expect(&mut handle, "PUT", conflict()).await;
            expect(
                &mut handle,
                "GET",
                lease("other-1", "2026-12-01T12:01:03.000000Z"),
            )
            .await;
            // Following: reads only.
            expect(
                &mut handle,
                "GET",
                lease("other-1", "2026-12-01T12:01:03.000000Z"),
            )
            .await;
        });
        assert!(e.round().await.expect("round"), "taken");
        assert!(e.round().await.expect("round"), "renewed");
        assert!(e.round().await.expect("round"), "renewed");
        assert!(!e.round().await.expect("round"), "lost to other-1");
        assert!(!e.round().await.expect("round"), "following");
        server.await.expect("scripted");
    }
}
