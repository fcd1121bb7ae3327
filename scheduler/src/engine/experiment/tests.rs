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

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{
    engine::verdict::Observation,
    engine::{events::Events, health::HealthSource},
    fault,
    policy::Policy,
    policy::{domain::PolicyHealth, fixtures},
    record::AlertRecord,
    record::{SkipReason, TargetOutcome, TriggerInfo, Verdict},
    targets::Guards,
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
    fn snapshot<'a>(
        &'a self,
        _: &'a crate::targets::scope::Needs,
    ) -> BoxFuture<'a, Result<Snapshot, SnapshotError>> {
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
        history: None,
        owner: "test/havoc".into(),
        leader: crate::leader::Leadership::always(),
        claims: Default::default(),
        annotations: Default::default(),
        preflight: None,
        ledger: None,
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
    let kind = fault::of(&policy).expect("a known fault");
    let read = || targets::snapshot("d", "web", 2);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (first, claimed) = claims
        .choose(kind, &policy, &mut read(), &guards, &mut rng, None)
        .expect("the first takes a pod");
    assert_eq!(first.objects().len(), 1);
    let second = claims.choose(kind, &policy, &mut read(), &guards, &mut rng, None);
    assert!(
        matches!(second, Err(SkipReason::NoTarget(_))),
        "the second would leave web without a ready replica: {:?}",
        second.map(|(p, _)| p.objects())
    );
    drop(claimed);
    let (third, _claimed) = claims
        .choose(kind, &policy, &mut read(), &guards, &mut rng, None)
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

#[tokio::test]
async fn a_refusing_preflight_hook_skips_before_anything_changes() {
    use havoc_integrations::test_server::{Reply, Server};
    let hook = Server::start(|_, _| {
        Reply::json(
            423,
            serde_json::json!({"message": "change freeze until Monday"}),
        )
    })
    .await;
    let (mut env, mut handle) = env(Scripted::new(vec![healthy()]));
    env.preflight = Some(
        havoc_integrations::preflight::Client::new(&hook.url, None, Duration::from_secs(5))
            .expect("client"),
    );
    let r = execute(&env, &two_pods(), &policy(), manual(), opts()).await;
    assert_eq!(r.verdict, Verdict::Skipped);
    assert_eq!(r.reason_code.as_deref(), Some("preflightRefused"));
    assert!(
        r.reason.contains("change freeze until Monday"),
        "{}",
        r.reason
    );
    // It was shown the plan: the policy, the fault and the chosen target.
    let asked = hook.requests()[0].json();
    assert_eq!(asked["policy"], "p");
    assert_eq!(asked["fault"], "podDelete");
    assert_eq!(
        asked["targets"].as_array().map(Vec::len),
        Some(1),
        "{asked}"
    );
    assert!(asked["deadline"].is_string(), "{asked}");
    let next = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    assert!(next.is_err(), "nothing reaches the API server");
}

#[tokio::test]
async fn a_preflight_hook_that_does_not_answer_skips() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (mut env, mut handle) = env(Scripted::new(vec![healthy()]));
    env.preflight = Some(
        havoc_integrations::preflight::Client::new(
            &format!("http://127.0.0.1:{port}/"),
            None,
            Duration::from_secs(2),
        )
        .expect("client"),
    );
    let r = execute(&env, &two_pods(), &policy(), manual(), opts()).await;
    assert_eq!(
        r.reason_code.as_deref(),
        Some("preflightUnavailable"),
        "{}",
        r.reason
    );
    let next = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    assert!(next.is_err(), "nothing reaches the API server");
}

fn budget_reading(remaining: f64, burn: f64) -> Observation {
    use crate::{engine::budget::BudgetReading, policy::domain};
    Observation {
        budgets: vec![BudgetReading {
            budget: domain::Budget {
                name: "checkout".into(),
                source: domain::BudgetSource::sloth("checkout", "availability"),
                min_remaining: 0.25,
                max_burn_rate: Some(10.0),
                burn_rate_after: None,
            },
            remaining: Some(remaining),
            burn_rate: Some(burn),
        }],
        ..Observation::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_spent_error_budget_skips_with_its_value_before_anything_changes() {
    let (env, mut handle) = env(Scripted::new(vec![budget_reading(0.1, 1.0)]));
    let r = execute(&env, &two_pods(), &policy(), manual(), opts()).await;
    assert_eq!(r.verdict, Verdict::Skipped);
    assert_eq!(r.reason_code.as_deref(), Some("budgetExhausted"));
    assert!(r.reason.contains("0.1 remaining"), "{}", r.reason);
    assert_eq!(r.budgets[0].remaining, Some(0.1));
    assert_no_request(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn a_burn_rate_above_the_limit_reverts_early_and_the_record_keeps_before_during_after() {
    // gate, a quiet poll, then the burn rate jumps; the settle reads it falling
    let health = Scripted::new(vec![
        budget_reading(0.8, 1.0),
        budget_reading(0.8, 2.0),
        budget_reading(0.7, 15.0),
        budget_reading(0.7, 4.0),
    ]);
    let (env, mut handle) = env(health);
    let server = tokio::spawn(async move {
        answer(&mut handle, "DELETE", "/api/v1/namespaces/d/pods/web-", 200).await;
    });
    let r = execute(&env, &two_pods(), &policy(), manual(), opts()).await;
    server.await.expect("scripted");
    assert_eq!(r.verdict, Verdict::Deviated, "{r:?}");
    assert!(r.reason.contains("burned at 15"), "{}", r.reason);
    let held = r.reverted_at.expect("reverted") - r.injected_at.expect("injected");
    assert!(held < chrono::Duration::seconds(10), "held {held}");
    let b = &r.budgets[0];
    assert_eq!(
        (b.burn_rate_before, b.burn_rate_during, b.burn_rate_after),
        (Some(1.0), Some(15.0), Some(4.0))
    );
}

#[tokio::test(start_paused = true)]
async fn a_namespace_whose_chaos_budget_is_spent_is_skipped_before_anything_changes() {
    use crate::{
        history::InMemory,
        policy::domain::NamespaceBudget,
        record::{TargetRecord, tests::record},
    };
    let (mut env, mut handle) = env(Scripted::new(vec![healthy()]));
    let mut config = (*env.config).clone();
    config.limits.namespace_budget = Some(NamespaceBudget {
        fault_time: Duration::from_secs(25),
        per: Duration::from_secs(24 * 3600),
        namespaces: Default::default(),
    });
    env.config = Arc::new(config);
    // Two earlier experiments in `d` held their faults 10 s each.
    let now = Utc::now();
    let held = |id: &str, ago: i64| {
        let mut r = record(id, Verdict::Passed);
        r.targets = vec![TargetRecord {
            namespace: Some("d".into()),
            ..r.targets[0].clone()
        }];
        r.injected_at = Some(now - chrono::Duration::seconds(ago));
        r.reverted_at = Some(now - chrono::Duration::seconds(ago - 10));
        r
    };
    env.ledger = Some(Arc::new(InMemory(vec![held("a", 100)])));
    // 10 s spent + 10 s of this hold fit in 25 s: the experiment runs.
    env.config = {
        let mut c = (*env.config).clone();
        c.dry_run = true;
        Arc::new(c)
    };
    let mut dry = policy();
    dry.dry_run = true;
    let r = execute(&env, &two_pods(), &dry, manual(), opts()).await;
    assert_eq!(
        r.verdict,
        Verdict::Passed,
        "dry runs are never charged: {r:?}"
    );
    env.ledger = Some(Arc::new(InMemory(vec![held("a", 100), held("b", 50)])));
    let r = execute(&env, &two_pods(), &policy(), manual(), opts()).await;
    assert_eq!(r.verdict, Verdict::Skipped);
    assert_eq!(r.reason_code.as_deref(), Some("namespaceBudgetSpent"));
    assert!(r.reason.contains("namespace d has 5s"), "{}", r.reason);
    // Without the history read, a live experiment does not start (fail closed).
    env.ledger = None;
    let r = execute(&env, &two_pods(), &policy(), manual(), opts()).await;
    assert_eq!(r.reason_code.as_deref(), Some("historyUnavailable"));
    assert_no_request(&mut handle).await;
}

/// A source whose snapshot holds nodes but no pod on them: a drain reads its node's pods
/// with [`SnapshotSource::node_pods`], which records what it was asked for.
struct NodesOnly {
    snapshot: Snapshot,
    pods: Vec<crate::targets::PodInfo>,
    asked: Mutex<Vec<Vec<String>>>,
}

impl SnapshotSource for NodesOnly {
    fn snapshot<'a>(
        &'a self,
        _: &'a crate::targets::scope::Needs,
    ) -> BoxFuture<'a, Result<Snapshot, SnapshotError>> {
        futures::future::ready(Ok(self.snapshot.clone())).boxed()
    }

    fn node_pods<'a>(
        &'a self,
        nodes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<crate::targets::PodInfo>, SnapshotError>> {
        self.asked.lock().expect("lock").push(nodes.to_vec());
        let pods = crate::targets::nodes::of_nodes(self.pods.clone(), nodes);
        futures::future::ready(Ok(pods)).boxed()
    }
}

/// A drain chooses its node first, then reads that node's pods (and their workload's
/// replicas elsewhere) and plans its evictions with them, under the replica floor.
#[tokio::test(start_paused = true)]
async fn a_drain_reads_the_pods_of_the_node_it_chose() {
    let health = Scripted::new(vec![healthy()]);
    let (env, mut handle) = env(health);
    let node = |name: &str| crate::targets::NodeInfo {
        name: name.into(),
        labels: [("pool".to_string(), "a".to_string())].into(),
        created: Utc::now() - chrono::Duration::days(1),
        unschedulable: false,
        has_record: false,
    };
    let mut snapshot = targets::snapshot("d", "web", 0);
    snapshot.nodes = vec![node("node-0")];
    let mut pods = targets::snapshot("d", "web", 3).pods;
    pods[1].node = Some("node-1".into());
    pods[2].node = Some("node-1".into());
    let source = NodesOnly {
        snapshot,
        pods,
        asked: Mutex::default(),
    };
    let drain = fixtures::policy("drain")
        .set(
            "/target",
            serde_json::json!({"kind": "Node", "selector": "pool=a"}),
        )
        .fault(serde_json::json!({"nodeDrain": {}}))
        .duration_secs(10)
        .settle_secs(5)
        .build();
    assert!(drain.dry_run);
    // The dry run reads the node once, to say what it would do.
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("the node read");
        assert_eq!(req.uri().path(), "/api/v1/nodes/node-0");
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-0"}, "spec": {}});
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&body).expect("json")))
                .expect("response"),
        );
    });
    let r = execute(&env, &source, &drain, manual(), opts()).await;
    server.await.expect("scripted");
    assert_eq!(r.verdict, Verdict::Passed, "{r:?}");
    assert_eq!(*source.asked.lock().expect("lock"), [["node-0"]]);
    let detail = r.targets[0].detail.clone().unwrap_or_default();
    assert!(
        detail.contains("evict 1 pod(s): d/web-0"),
        "the node's pod, with two more replicas elsewhere: {detail}"
    );
}
