//! The experiment history lives in the cluster (HavocExperiment objects in havoc's
//! namespace), not in one pod's journal: every replica answers the same history, a
//! replica restarted with an empty journal still has it and counts the fires missed while
//! havoc was down from it, and the leader prunes it to the configured bounds.
//!
//! Each test has its own namespace, which is also its havoc's namespace (Lease, state,
//! experiment objects). The crash case (kill -9 the leader holding a scale fault) is in
//! recovery.rs: `a_follower_takes_over_and_reverts_the_killed_leaders_faults`.

use std::{collections::BTreeSet, time::Duration};

use anyhow::ensure;
use havoc_e2e::{
    fixtures::{self, PolicyDoc, target},
    history,
    serve::*,
    workloads::*,
    *,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use serde_json::{Value, json};

/// A dry-run pod delete in `ns`, run on demand (health: other tests' alerts do not
/// count).
fn probe(ns: &str) -> PolicyDoc {
    fixtures::manual(
        "probe",
        ns,
        target("Pod", ns, "app=web"),
        json!({"podDelete": {}}),
        "1s",
    )
    .blind()
}

/// [`with_namespace`] (the workloads), plus a namespace for the test's havoc (its Lease,
/// state and experiment objects: havoc's own namespace is never a target), deleted after.
async fn with_home<F, Fut>(prefix: &str, body: F) -> anyhow::Result<()>
where
    F: FnOnce(Env, kube::Client, String, String) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    with_namespace(prefix, move |env, client, ns| async move {
        let home = format!("{ns}-home");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let n: Namespace = serde_json::from_value(
            json!({"metadata": {"name": home, "labels": {"havoc.dev/e2e": "true"}}}),
        )?;
        namespaces.create(&PostParams::default(), &n).await?;
        let cleanup = {
            let (namespaces, home) = (namespaces.clone(), home.clone());
            async move {
                let _ = namespaces.delete(&home, &DeleteParams::background()).await;
                Ok(())
            }
        };
        cleaned_up(body(env, client, ns, home), cleanup).await
    })
    .await
}

/// A replica of the test's havoc: dry run, at `home` (its Lease, state and history).
fn replica<'a>(home: &str, lease: &str, pod: &str, leader: bool, policy: &PolicyDoc) -> Setup<'a> {
    Setup {
        dry_run: true,
        lease: Some(lease.to_string()),
        pod_name: Some(pod.to_string()),
        wait_leader: leader,
        overrides: vec![("/leaderElection/namespace", json!(home))],
        ..Setup::policy("policy.yaml", policy)
    }
    .limits(json!({"minAvailableReplicas": 0}))
}

/// The ids a replica's API lists.
async fn listed(serve: &Serve) -> anyhow::Result<BTreeSet<String>> {
    Ok(serve
        .get("/api/v1/experiments?limit=1000")
        .await?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect())
}

/// Runs `policy` `n` times on `leader`, one after the other; the ids.
async fn run_times(leader: &Serve, policy: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = leader.run_now(policy).await?;
        let r = leader.record(&id, Duration::from_secs(30)).await?;
        ensure!(r["verdict"] == "passed", "{r:#}");
        ids.push(id);
    }
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_replica_answers_the_same_history_even_with_an_empty_journal() -> anyhow::Result<()> {
    with_home("history", move |env, client, ns, home| async move {
        deployment(&client, &ns, "web", 2).await?;
        let lease = format!("hist-{}", &ns[ns.len() - 6..]);
        let probe = probe(&ns);
        let leader = Serve::start(&env, replica(&home, &lease, "replica-a", true, &probe)).await?;
        let mut follower =
            Serve::start(&env, replica(&home, &lease, "replica-b", false, &probe)).await?;
        let ids: BTreeSet<String> = run_times(&leader, "probe", 3).await?.into_iter().collect();
        // One object each in the cluster, finished.
        let objects = history::of_installation(&client, &home, &lease).await?;
        let finished: BTreeSet<&str> = objects
            .iter()
            .filter(|o| o["status"]["phase"] == "Finished")
            .filter_map(|o| o["spec"]["id"].as_str())
            .collect();
        ensure!(
            finished == ids.iter().map(String::as_str).collect(),
            "objects {finished:?}, ran {ids:?}"
        );
        // Both replicas list the same experiments (the follower through its watch).
        poll(
            Duration::from_secs(30),
            "both replicas list the same ids",
            || async {
                let (a, b) = (listed(&leader).await?, listed(&follower).await?);
                Ok((a == b && a == ids).then_some(()))
            },
        )
        .await?;
        // The follower restarted with an empty journal (a rescheduled pod on a new
        // emptyDir) still lists them.
        follower.kill().await?;
        std::fs::remove_file(follower.dir.path().join("journal.jsonl"))?;
        follower.respawn()?;
        follower.wait_ready(false).await?;
        ensure!(
            follower.journal().unwrap_or_default().is_empty(),
            "the journal starts empty"
        );
        ensure!(
            listed(&follower).await? == ids,
            "the restarted follower lists {:?}",
            listed(&follower).await?
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn fires_missed_while_down_are_counted_from_the_cluster_history() -> anyhow::Result<()> {
    with_home("missed", move |env, client, ns, home| async move {
        deployment(&client, &ns, "web", 2).await?;
        let lease = format!("missed-{}", &ns[ns.len() - 6..]);
        let tick = fixtures::policy("tick")
            .pods(&ns, "app=web")
            .interval("4s", "5s")
            .duration("1s")
            .settle("1s")
            .blind();
        let mut first =
            Serve::start(&env, replica(&home, &lease, "replica-a", true, &tick)).await?;
        first
            .wait_records(1, Duration::from_secs(60), "a scheduled run", |r| {
                r["trigger"]["kind"] == "schedule" && r["verdict"] == "passed"
            })
            .await?;
        let (code, _) = first.stop().await?;
        let stopped = chrono::Utc::now();
        ensure!(code == Some(0), "a clean stop: {code:?}");
        // The outage itself: havoc stays down until at least two fires have fallen due
        // (gaps of at most 5 s, the first counted from a fire before the stop).
        wait_past(stopped + chrono::Duration::seconds(11)).await;
        // Another replica, its own empty journal: what ran is in the cluster only.
        let second = Serve::start(&env, replica(&home, &lease, "replica-b", true, &tick)).await?;
        let missed: Value = poll(
            Duration::from_secs(30),
            "a skip for the fires missed while havoc was down",
            || async {
                Ok(second.journal().unwrap_or_default().into_iter().find(|r| {
                    r["reasonCode"] == "missed"
                        && r["reason"]
                            .as_str()
                            .is_some_and(|t| t.contains("havoc was not running"))
                }))
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nlog tail:\n{}", tail(&second.log(), 30)))?;
        let reason = missed["reason"].as_str().unwrap_or_default();
        ensure!(
            reason.starts_with("missed ") && !reason.starts_with("missed the run"),
            "more than one fire missed: {reason}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_prunes_the_history_to_its_bounds() -> anyhow::Result<()> {
    with_home("retention", move |env, client, ns, home| async move {
        deployment(&client, &ns, "web", 2).await?;
        let lease = format!("keep-{}", &ns[ns.len() - 6..]);
        let probe = probe(&ns);
        let mut setup = replica(&home, &lease, "replica-a", true, &probe);
        setup.overrides.push(("/history", json!({"keep": 2})));
        let leader = Serve::start(&env, setup).await?;
        let ids = run_times(&leader, "probe", 4).await?;
        // Pruned in the leader's next sweeps (every 30 s): the newest two are kept.
        let newest: BTreeSet<&str> = ids[2..].iter().map(String::as_str).collect();
        poll(
            Duration::from_secs(75),
            "the history pruned to 2",
            || async {
                let objects = history::of_installation(&client, &home, &lease).await?;
                let kept: BTreeSet<String> = objects
                    .iter()
                    .filter_map(|o| o["spec"]["id"].as_str().map(str::to_string))
                    .collect();
                Ok((kept.len() == 2).then_some(kept))
            },
        )
        .await
        .and_then(|kept| {
            let kept: BTreeSet<&str> = kept.iter().map(String::as_str).collect();
            ensure!(kept == newest, "kept {kept:?}, the newest are {newest:?}");
            Ok(())
        })
    })
    .await
}
