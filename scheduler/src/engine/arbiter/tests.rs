//! The arbiter with an in-memory shared state and journal, a scripted API server that
//! answers nothing, and tokio's paused clock.

use std::time::Duration;

use futures::future::BoxFuture;

use super::*;
use crate::record::Verdict;
use crate::{
    policy::fixtures,
    targets::{Guards, Snapshot, SnapshotError, fixtures as targets},
};

/// Two Running, Ready pods of one workload, forever.
struct TwoPods;

impl SnapshotSource for TwoPods {
    fn snapshot<'a>(
        &'a self,
        _: &'a crate::targets::scope::Needs,
    ) -> BoxFuture<'a, Result<Snapshot, SnapshotError>> {
        futures::future::ready(Ok(targets::snapshot("d", "web", 2))).boxed()
    }
}

/// A source that panics: an experiment task that blows up.
struct Panics;

impl SnapshotSource for Panics {
    fn snapshot<'a>(
        &'a self,
        _: &'a crate::targets::scope::Needs,
    ) -> BoxFuture<'a, Result<Snapshot, SnapshotError>> {
        async { panic!("snapshot exploded") }.boxed()
    }
}

fn arbiter(
    config: crate::policy::Config,
    source: Arc<dyn SnapshotSource>,
) -> (Arc<Arbiter>, crate::leader::Publisher, Arc<Journal>) {
    arbiter_sharing(
        config,
        source,
        SharedState::in_memory(),
        Arc::new(Journal::in_memory(100)),
    )
}

/// An arbiter on this shared state and journal (a restarted process).
fn arbiter_sharing(
    config: crate::policy::Config,
    source: Arc<dyn SnapshotSource>,
    shared: SharedState,
    journal: Arc<Journal>,
) -> (Arc<Arbiter>, crate::leader::Publisher, Arc<Journal>) {
    let (svc, _handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let notifier = Arc::new(Notifier::from_config(&config).expect("notifier"));
    let config = Arc::new(config);
    let (publisher, leader) = crate::leader::channel();
    publisher.publish(true);
    let a = Arbiter::new(Parts {
        env: Env {
            guards: Guards {
                min_available_replicas: 1,
                ..Guards::default()
            },
            ..Env::for_tests(
                kube::Client::new(svc, "default"),
                config,
                Some(journal.clone()),
                leader.clone(),
            )
        },
        source,
        journal: journal.clone(),
        history: journal.clone(),
        skips: None,
        notifier,
        metrics: Metrics::new(),
        leader,
        shared,
        stop: CancellationToken::new(),
        seed: Some(1),
    });
    (a, publisher, journal)
}

fn policies() -> (Arc<Policy>, Arc<Policy>) {
    let p = |name| Arc::new(fixtures::policy(name).namespaces(&["d"]).build());
    (p("a"), p("b"))
}

fn manual() -> TriggerInfo {
    TriggerInfo::Manual {
        source: "test".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn the_limit_pauses_and_leadership_decide_who_runs() {
    let (a, b) = policies();
    let (arbiter, leader, journal) = arbiter(fixtures::config().build(), Arc::new(TwoPods));
    let Start::Started { id } = arbiter.start(a.clone(), manual()) else {
        panic!("the first run starts");
    };
    // Same policy again, and another policy over the limit of one: skipped, recorded.
    let again = arbiter.start(a.clone(), manual());
    assert!(
        matches!(&again, Start::Skipped { reason: SkipReason::StillRunning(other), .. } if *other == id),
        "{again:?}"
    );
    let other = arbiter.start(b.clone(), manual());
    assert!(
        matches!(&other, Start::Skipped { reason, .. } if reason.to_string().contains("maxConcurrentExperiments is 1")),
        "{other:?}"
    );
    assert_eq!(journal.newest(10).len(), 2);

    // The dry run ends (paused clock: duration and settle pass at once).
    tokio::time::sleep(Duration::from_secs(200)).await;
    let records = journal.newest(10);
    assert_eq!(records[0].id, id);
    assert_eq!(records[0].verdict, Verdict::Passed, "{:?}", records[0]);
    assert!(arbiter.running().is_empty());

    // Paused: everything, then one policy; resume clears both.
    arbiter
        .pause(None, None, "maintenance".into())
        .await
        .expect("paused");
    assert!(
        matches!(arbiter.start(b.clone(), manual()), Start::Skipped { reason: SkipReason::PausedAll(r), .. } if r == "maintenance")
    );
    arbiter.resume(None).await.expect("resumed");
    arbiter
        .pause(
            Some("b"),
            Some(Utc::now() + chrono::Duration::hours(1)),
            "breaker".into(),
        )
        .await
        .expect("paused");
    assert!(
        matches!(arbiter.start(b.clone(), manual()), Start::Skipped { reason, .. } if reason.to_string().contains("breaker"))
    );
    arbiter.resume(Some("b")).await.expect("resumed");

    // Not the leader: nothing runs and nothing is recorded.
    leader.publish(false);
    let before = journal.newest(100).len();
    assert_eq!(arbiter.start(b.clone(), manual()), Start::NotLeader);
    arbiter.record_skip(&b, manual(), SkipReason::Missed("missed".into()));
    assert_eq!(journal.newest(100).len(), before);
}

#[tokio::test(start_paused = true)]
async fn an_expired_pause_lets_runs_through() {
    let (a, _) = policies();
    let (arbiter, _leader, _) = arbiter(fixtures::config().build(), Arc::new(TwoPods));
    arbiter
        .pause(
            Some("a"),
            Some(Utc::now() - chrono::Duration::seconds(1)),
            "over".into(),
        )
        .await
        .expect("paused");
    let started = arbiter.start(a, manual());
    assert!(matches!(started, Start::Started { .. }), "{started:?}");
    assert!(arbiter.pauses().policies.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_experiment_is_recorded_and_frees_its_slot() {
    let (a, b) = policies();
    let (arbiter, _leader, journal) = arbiter(fixtures::config().build(), Arc::new(Panics));
    let Start::Started { id } = arbiter.start(a, manual()) else {
        panic!("starts");
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let records = journal.newest(10);
    assert_eq!(records[0].id, id);
    assert_eq!(records[0].verdict, Verdict::Errored);
    assert_eq!(records[0].reason_code.as_deref(), Some("panicked"));
    assert!(
        records[0].reason.contains("snapshot exploded"),
        "{}",
        records[0].reason
    );
    assert!(arbiter.running().is_empty(), "the slot is free");
    // With maxConcurrentExperiments 1, the next run still starts.
    assert!(matches!(arbiter.start(b, manual()), Start::Started { .. }));
}

/// A deviation whose breaker pause never reached the shared state (the process was
/// killed first): the next process pauses the policy from the journal's record, unless
/// someone resumed it after the deviation.
#[tokio::test(start_paused = true)]
async fn a_breaker_pause_that_never_landed_is_restored_from_the_journal() {
    let (a, b) = policies();
    let set = PolicySet::new([(*a).clone(), (*b).clone()]);
    let journal = Arc::new(Journal::in_memory(100));
    let mut deviated = crate::record::tests::record("e-dev", Verdict::Deviated);
    deviated.policy = "a".into();
    deviated.ended_at = Utc::now() - chrono::Duration::minutes(1);
    journal.append(&deviated).expect("journaled");
    let shared = SharedState::in_memory();

    let config = || fixtures::config().build();
    let (restarted, _l, _) =
        arbiter_sharing(config(), Arc::new(TwoPods), shared.clone(), journal.clone());
    restarted.policies_changed(&set, &Default::default());
    let refused = restarted.start(a.clone(), manual());
    assert!(
        matches!(&refused, Start::Skipped { reason: SkipReason::PausedPolicy(r), .. } if r.contains("e-dev")),
        "{refused:?}"
    );
    assert!(
        matches!(restarted.start(b.clone(), manual()), Start::Started { .. }),
        "another policy is not paused"
    );
    // Written to the shared state by the writer.
    tokio::spawn(restarted.clone().keep_pauses_written());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(shared.doc().expect("known").policies.contains_key("a"));

    // Resumed by a human after the deviation: a later restart leaves it resumed.
    restarted.resume(Some("a")).await.expect("resumed");
    let (again, _l, _) =
        arbiter_sharing(config(), Arc::new(TwoPods), shared.clone(), journal.clone());
    again.policies_changed(&set, &Default::default());
    tokio::time::sleep(Duration::from_secs(200)).await;
    let started = again.start(a, manual());
    assert!(matches!(started, Start::Started { .. }), "{started:?}");
}
