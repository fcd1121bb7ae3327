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
    health::HealthSource,
    metrics::Metrics,
    verdict::{Assessment, Conclusion, Judge, gate},
};
use crate::{
    fault::{Outcome, pod::PodFault},
    policy::{Config, Policy, domain::Fault},
    record::{
        ErrorReason, ExperimentRecord, SkipReason, TargetOutcome, TargetRecord, TriggerInfo,
        Verdict,
    },
    target::{Guards, Restriction, SnapshotSource, select_pods},
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

/// Runs one experiment to its verdict. Cluster and health errors never escape: they
/// become `skipped` (before injection) or `errored` (after).
pub async fn execute(
    env: &Env,
    source: &dyn SnapshotSource,
    policy: &Policy,
    trigger: TriggerInfo,
    opts: RunOptions,
) -> ExperimentRecord {
    let mut record = new_record(policy, trigger, opts.id);
    let fail_closed = env.config.health.fail_closed;

    // This version implements pod faults only; refuse others before anything else.
    let pod_fault = match &policy.fault {
        Fault::PodDelete { grace } => PodFault::Delete { grace: *grace },
        Fault::PodEvict { grace } => PodFault::Evict { grace: *grace },
        other => {
            record.error(&ErrorReason::Unsupported(other.name()));
            return record;
        }
    };
    // 1. gate
    let baseline = env.health.observe(&policy.health).await;
    record.slos = baseline.slos.clone();
    if let Err(why) = gate(&baseline, fail_closed) {
        record.skip(&why);
        return record;
    }

    // 2. select
    let mut snapshot = match source.snapshot().await {
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
    let selection = select_pods(
        &policy.target,
        &snapshot.pods,
        &snapshot.namespaces,
        &guards,
        Utc::now(),
        &mut rng,
    );
    if selection.chosen.is_empty() {
        record.skip(&SkipReason::NoTarget(selection.why_empty()));
        return record;
    }
    if opts.cancel.is_cancelled() {
        record.skip(&SkipReason::ShuttingDown);
        return record;
    }

    // 3-4. inject (pod faults need no revert record: the workload replaces the pod)
    for p in &selection.chosen {
        let outcome = if policy.dry_run {
            tracing::info!(policy = %policy.name, pod = %p.name, namespace = %p.namespace, fault = policy.fault.name(), "dry run: would inject");
            Ok(Outcome::DryRun)
        } else {
            let api: Api<Pod> = Api::namespaced(env.client.clone(), &p.namespace);
            crate::fault::pod::inject(&api, &p.name, pod_fault).await
        };
        let (outcome, detail, error) = match outcome {
            Ok(o) => {
                let (t, d) = o.target();
                (t, d, None)
            }
            Err(e) => (TargetOutcome::Errored, Some(e.to_string()), Some(e)),
        };
        record.targets.push(TargetRecord {
            kind: "Pod".to_string(),
            namespace: Some(p.namespace.clone()),
            name: p.name.clone(),
            outcome,
            detail,
        });
        if let Some(e) = error {
            // Pod faults leave nothing to revert: stop here.
            record.error(&ErrorReason::Injection(format!(
                "{} {}/{}: {e}",
                policy.fault.name(),
                p.namespace,
                p.name
            )));
            return record;
        }
    }
    let reached = record
        .targets
        .iter()
        .filter(|t| matches!(t.outcome, TargetOutcome::Injected | TargetOutcome::DryRun))
        .count();
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
    let injected_at = Utc::now();
    record.injected_at = Some(injected_at);
    if let Some(m) = &env.metrics {
        m.fault_injected(&policy.name, policy.fault.name(), reached as u64);
    }
    if let Some(ev) = &env.events {
        ev.injected(&record);
    }

    // 5. observe, 6. revert (nothing for pod faults), 7. settle
    let mut judge = Judge::new(injected_at, &baseline, fail_closed);
    let observing = Instant::now();
    let watch = Observer {
        env,
        policy,
        cancel: &opts.cancel,
    };
    let mut stop = watch
        .observe(&mut judge, policy.duration, Until::Deviation)
        .await;
    record.reverted_at = Some(Utc::now());
    // Settle also follows a deviation (the fault was reverted early): the alerts that a
    // breach sets off arrive seconds later, and the record should name them.
    if matches!(stop, Stop::Elapsed | Stop::Deviated) {
        stop = watch
            .observe(&mut judge, policy.health.settle, Until::End)
            .await;
    }

    // 8. verdict
    let mut conclusion = judge.verdict(None);
    if stop == Stop::Cancelled && conclusion == Conclusion::Passed {
        // Not observed to the end: not a pass. Errored is what "could not be carried out"
        // means; the record says why.
        conclusion = Conclusion::Errored(ErrorReason::Interrupted {
            observed_secs: observing.elapsed().as_secs(),
        });
    }
    record.alerts = judge.alerts();
    record.slos = judge.slos();
    conclusion.apply(&mut record);
    record
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

/// Polls health for one policy while its fault is held and while it settles.
struct Observer<'a> {
    env: &'a Env,
    policy: &'a Policy,
    cancel: &'a CancellationToken,
}

impl Observer<'_> {
    /// Polls every `health.interval` for `window`, until unreadable health, shutdown, or
    /// (with [`Until::Deviation`]) a deviation.
    async fn observe(&self, judge: &mut Judge, window: Duration, until: Until) -> Stop {
        let end = Instant::now() + window;
        let mut ticker = tokio::time::interval(self.env.config.health.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = self.cancel.cancelled() => return Stop::Cancelled,
            }
            let obs = tokio::select! {
                obs = self.env.health.observe(&self.policy.health) => obs,
                () = self.cancel.cancelled() => return Stop::Cancelled,
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
        target::{Snapshot, SnapshotError, fixtures as targets},
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
        fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, SnapshotError>> {
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
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let config = fixtures::config().interval_secs(1).build();
        let env = Env {
            client: Client::new(svc, "default"),
            config: Arc::new(config),
            health,
            guards: Guards {
                protected_namespaces: ["kube-system".to_string()].into(),
                own_pod: None,
                min_available_replicas: 1,
            },
            events: None,
            metrics: None,
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
        // the hold ended after the third poll (~2 s), then 5 s of settle
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
}
