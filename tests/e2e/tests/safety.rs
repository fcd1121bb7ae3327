//! Safety rules that protect a cluster that trusts havoc, each shown against the real
//! local cluster in the test's own namespace: a scale never destroys a StatefulSet's
//! volumes; drains obey the guards pod faults obey; a stop or SIGTERM interrupts a drain
//! that is evicting; a revert the API server refuses is reported as such; a circuit
//! breaker's pause survives a kill before it was written; a second replica without
//! leader election is refused; `havoc run` reverts on SIGTERM and two runs never pass the
//! limit together; dry runs inject nothing in the metrics either; a preflight hook that
//! says no (or nothing) keeps an experiment from changing anything; an eviction a
//! disruption budget refuses is a skip, also in the experiment's object.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use havoc_e2e::{
    fixtures::{self, manual, node_named, target},
    identity::with_identity_beside,
    serve::*,
    workloads::*,
    *,
};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ConfigMap, Event, Namespace, Node, Pod},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::{Value, json};

fn statefulset(name: &str, when_scaled: &str) -> anyhow::Result<StatefulSet> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 3,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": when_scaled, "whenDeleted": "Retain"},
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "registry.invalid/db:1"}]},
            },
        },
    }))?)
}

fn sts_replicas(s: &StatefulSet) -> i32 {
    s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_never_shrinks_a_statefulset_that_deletes_its_volumes() -> anyhow::Result<()> {
    with_namespace("volumes", move |env, client, ns| async move {
        let api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        api.create(&PostParams::default(), &statefulset("db", "Delete")?)
            .await?;
        api.create(&PostParams::default(), &statefulset("cache", "Retain")?)
            .await?;
        let sts = |app: &str| target("StatefulSet", &ns, &format!("app={app}"));
        let scale = json!({"scale": {"replicas": 1}});
        let guarded = manual("guarded", &ns, sts("db"), scale.clone(), "3s").blind();
        let rehearsal = manual("rehearsal", &ns, sts("db"), scale.clone(), "3s")
            .blind()
            .set("/dryRun", json!(true));
        let opted_in = manual(
            "opted-in",
            &ns,
            sts("db"),
            json!({"scale": {"replicas": 1, "allowVolumeDeletion": true}}),
            "3s",
        )
        .blind();
        let retained = manual("retained", &ns, sts("cache"), scale, "3s").blind();
        let policies = vec![
            ("guarded.yaml", guarded.yaml()),
            ("rehearsal.yaml", rehearsal.yaml()),
            ("opted-in.yaml", opted_in.yaml()),
            ("retained.yaml", retained.yaml()),
        ];
        let serve = Serve::start(&env, Setup::live_in(&ns, policies)).await?;

        // Live and dry: skipped with the guard's own reason code; nothing scaled.
        for policy in ["guarded", "rehearsal"] {
            let id = serve.run_now(policy).await?;
            let r = serve.record(&id, Duration::from_secs(30)).await?;
            ensure_verdict(&r, "skipped", "whenScaled: Delete")?;
            ensure!(r["reasonCode"] == "wouldDeleteVolumes", "{policy}: {r:#}");
            ensure!(sts_replicas(&api.get("db").await?) == 3, "db untouched");
        }
        ensure!(
            serve
                .records()
                .await?
                .iter()
                .any(|r| r["dryRun"] == true && r["reasonCode"] == "wouldDeleteVolumes"),
            "the dry run says so too"
        );
        // A run of `policy` scales StatefulSet `app` to 1, passes and restores its 3.
        let scales_and_restores = async |policy: &str, app: &str| -> anyhow::Result<()> {
            let id = serve.run_now(policy).await?;
            poll(
                Duration::from_secs(20),
                &format!("{app} scaled to 1"),
                || async { Ok((sts_replicas(&api.get(app).await?) == 1).then_some(())) },
            )
            .await?;
            let r = serve.record(&id, Duration::from_secs(30)).await?;
            ensure!(r["verdict"] == "passed", "{r:#}");
            ensure!(sts_replicas(&api.get(app).await?) == 3, "{app} restored");
            Ok(())
        };
        // A StatefulSet that keeps its claims is scaled as any workload.
        scales_and_restores("retained", "cache").await?;
        // The explicit, destructive opt-in scales it.
        scales_and_restores("opted-in", "db").await?;
        Ok(())
    })
    .await
}

/// A pod fault on the pods `app=web` of `ns`, run when asked, held 1 s, blind to
/// other tests' alerts.
fn on_web_pods(name: &str, ns: &str, fault: Value) -> fixtures::PolicyDoc {
    manual(name, ns, target("Pod", ns, "app=web"), fault, "1s").blind()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_counts_no_injected_fault() -> anyhow::Result<()> {
    with_namespace("dry-metric", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 3).await?;
        let policy =
            on_web_pods("rehearsal", &ns, json!({"podDelete": {}})).set("/dryRun", json!(true));
        let serve =
            Serve::start(&env, Setup::live_in(&ns, vec![("p.yaml", policy.yaml())])).await?;
        let id = serve.run_now("rehearsal").await?;
        let r = serve.record(&id, Duration::from_secs(30)).await?;
        ensure!(
            r["verdict"] == "passed"
                && r["dryRun"] == true
                && r["targets"][0]["outcome"] == "dryRun",
            "{r:#}"
        );
        let injected = metric_value(
            &serve.metrics().await?,
            "havoc_faults_injected_total{policy=\"rehearsal\",fault=\"podDelete\"}",
        );
        ensure!(
            injected == 0.0,
            "a dry run injected nothing, yet havoc_faults_injected_total says {injected}"
        );
        Ok(())
    })
    .await
}

/// An eviction a PodDisruptionBudget refuses changes nothing: the run is skipped
/// (`notDisrupted`), and the experiment's object, written before the eviction was tried,
/// is closed with that skip at once. Before, it stayed `Running` until the leader's sweep
/// closed it as `errored` (`crashed`): a false error, notified as one (CI, 2026-12-07).
#[tokio::test(flavor = "multi_thread")]
async fn an_eviction_the_budget_refuses_closes_its_object_as_skipped() -> anyhow::Result<()> {
    with_namespace("evict-refused", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 2).await?;
        disruption_budget(&client, &ns, "web", 2).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let uids = || async {
            let list = pods.list(&ListParams::default().labels("app=web")).await?;
            let mut uids: Vec<String> = list.items.iter().filter_map(ResourceExt::uid).collect();
            uids.sort();
            anyhow::Ok(uids)
        };
        let before = uids().await?;
        let policy = on_web_pods("evict", &ns, json!({"podEvict": {}}));
        let serve =
            Serve::start(&env, Setup::live_in(&ns, vec![("p.yaml", policy.yaml())])).await?;
        let id = serve.run_now("evict").await?;
        let r = serve.record(&id, Duration::from_secs(30)).await?;
        ensure_verdict(&r, "skipped", "eviction refused")?;
        ensure!(r["reasonCode"] == "notDisrupted", "{r:#}");
        // The object the intent wrote: finished with the skip, never left running.
        let status = poll(
            Duration::from_secs(30),
            "the experiment's object finished",
            || async {
                let o = havoc_e2e::history::object(&client, "havoc-system", &id).await?;
                Ok(o.map(|o| o["status"].clone())
                    .filter(|s| s["phase"] == "Finished"))
            },
        )
        .await?;
        ensure!(
            status["verdict"] == "skipped" && status["reasonCode"] == "notDisrupted",
            "{status:#}"
        );
        ensure!(uids().await? == before, "no pod may be evicted");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_spares_paused_namespaces_and_keeps_the_replica_floor() -> anyhow::Result<()> {
    with_node_pool(
        "drain-guards",
        2,
        move |env, client, ns, nodes| async move {
            let paused = format!("{ns}-paused");
            let result = drain_guards(&env, &client, &ns, &paused, &nodes[0]).await;
            let _ = Api::<Namespace>::all(client.clone())
                .delete(&paused, &DeleteParams::background())
                .await;
            result
        },
    )
    .await
}

/// A node drain of `victim` (of the pool named `ns`) that the guards keep from evicting
/// everything: a replica floor of 1 for `web` in `ns`, and namespace `paused`.
async fn drain_guards(
    env: &Env,
    client: &Client,
    ns: &str,
    paused: &str,
    victim: &str,
) -> anyhow::Result<()> {
    let pool = ns;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let p: Namespace = serde_json::from_value(json!({"metadata": {"name": paused, "labels": {
        "havoc.dev/e2e": "true", "havoc.dev/paused": "true"}}}))?;
    namespaces.create(&PostParams::default(), &p).await?;
    // Every replica of web on the victim: the floor (1) keeps one of them there.
    deployment_pinned(client, ns, "web", 2, pool, victim).await?;
    // A paused namespace's pods are never evicted, whatever the floor would allow.
    deployment_pinned(client, paused, "quiet", 3, pool, victim).await?;
    let drain = json!({"nodeDrain": {"timeout": "10s"}});
    let drain = manual("drain", ns, node_named(victim), drain, "6s").blind();
    let setup = Setup::live_in(ns, vec![("drain.yaml", drain.yaml())])
        .limits(json!({"maxUnschedulableNodes": 5, "minAvailableReplicas": 1}))
        .live_on_nodes();
    let serve = Serve::start(env, setup).await?;
    let nodes_api: Api<Node> = Api::all(client.clone());
    let id = serve.run_now("drain").await?;
    poll(Duration::from_secs(20), "the victim cordoned", || async {
        let n = nodes_api.get(victim).await?;
        Ok((unschedulable(&n) && has_record(&n)).then_some(()))
    })
    .await?;
    // One web pod evicted (its replacement lands on the other pool node), one kept.
    poll(Duration::from_secs(30), "one web pod evicted", || async {
        Ok((pods_on_node(client, ns, "app=web", victim).await? == 1).then_some(()))
    })
    .await?;
    assert_quiet_for(Duration::from_secs(3), "the floor's pod stays", || async {
        Ok(pods_on_node(client, ns, "app=web", victim).await? == 1
            && pods_on_node(client, paused, "app=quiet", victim).await? == 3)
    })
    .await?;
    let r = serve.record(&id, Duration::from_secs(60)).await?;
    ensure!(r["verdict"] == "passed", "{r:#}");
    let detail = r["targets"][0]["detail"].as_str().unwrap_or_default();
    ensure!(
        detail.contains("evicted 1 pod(s)")
            && detail.contains("below minAvailableReplicas")
            && detail.contains("its namespace is paused"),
        "the record names what the guards kept: {detail}"
    );
    let n = nodes_api.get(victim).await?;
    ensure!(!unschedulable(&n) && !has_record(&n), "uncordoned");
    Ok(())
}

/// A drain that cannot finish: every pod of `held` on the victim (of the pool named
/// `ns`) is protected by a PodDisruptionBudget that allows no disruption, so evictions
/// are refused and retried.
async fn stuck_drain(env: &Env, client: &Client, ns: &str, victim: &str) -> anyhow::Result<Serve> {
    deployment_pinned(client, ns, "held", 2, ns, victim).await?;
    disruption_budget(client, ns, "held", 2).await?;
    let drain = json!({"nodeDrain": {"timeout": "90s"}});
    let drain = manual("drain", ns, node_named(victim), drain, "30s").blind();
    let setup = Setup::live_in(ns, vec![("drain.yaml", drain.yaml())])
        .limits(json!({"maxUnschedulableNodes": 5, "minAvailableReplicas": 0}))
        .live_on_nodes();
    let serve = Serve::start(env, setup).await?;
    let nodes_api: Api<Node> = Api::all(client.clone());
    serve.run_now("drain").await?;
    poll(Duration::from_secs(20), "the victim cordoned", || async {
        let n = nodes_api.get(victim).await?;
        Ok((unschedulable(&n) && has_record(&n)).then_some(()))
    })
    .await?;
    // The evictions are refused and retried (every 2 s) meanwhile.
    assert_quiet_for(
        Duration::from_secs(3),
        "the budget refuses the evictions",
        || async { Ok(pods_on_node(client, ns, "app=held", victim).await? == 2) },
    )
    .await?;
    Ok(serve)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_interrupts_a_drain_that_is_evicting() -> anyhow::Result<()> {
    with_node_pool("drain-stop", 2, move |env, client, ns, nodes| async move {
        let serve = stuck_drain(&env, &client, &ns, &nodes[0]).await?;
        let nodes_api: Api<Node> = Api::all(client.clone());
        let stopped = Instant::now();
        let (status, body) = serve.emergency_stop("e2e: stop mid-drain").await?;
        let answered = stopped.elapsed();
        ensure!(status == 200, "{status} {body}");
        let uncordoned = poll(
            Duration::from_secs(30),
            "uncordoned after the stop",
            || async {
                let n = nodes_api.get(&nodes[0]).await?;
                Ok((!unschedulable(&n) && !has_record(&n)).then(|| stopped.elapsed()))
            },
        )
        .await?;
        eprintln!(
            "stop mid-drain: answered in {:.2} s, node uncordoned {:.2} s after the stop",
            answered.as_secs_f64(),
            uncordoned.as_secs_f64()
        );
        ensure!(
            uncordoned < Duration::from_secs(10),
            "the drain went on evicting after the stop: uncordoned after {uncordoned:?}"
        );
        let id = body["reverted"][0]
            .as_str()
            .context("the drain was stopped")?;
        let r = serve.record(id, Duration::from_secs(30)).await?;
        ensure!(r["reasonCode"] == "stopped", "{r:#}");
        ensure!(r["targets"][0]["revert"]["result"] == "restored", "{r:#}");
        serve.resume().await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_drain_exits_in_time_with_the_node_uncordoned() -> anyhow::Result<()> {
    with_node_pool("drain-term", 2, move |env, client, ns, nodes| async move {
        let mut serve = stuck_drain(&env, &client, &ns, &nodes[0]).await?;
        let (code, took) = serve.stop().await?;
        eprintln!("SIGTERM mid-drain: exited in {:.2} s", took.as_secs_f64());
        ensure!(
            code == Some(0),
            "exit {code:?} after {took:?} (shutdown timeout 10 s)\n{}",
            tail(&serve.log(), 20)
        );
        let n = Api::<Node>::all(client.clone()).get(&nodes[0]).await?;
        ensure!(
            !unschedulable(&n) && !has_record(&n),
            "left cordoned: {:?}",
            n.spec
        );
        let r = serve
            .journal()?
            .into_iter()
            .find(|r| r["fault"] == "nodeDrain" && r.get("verdict").is_some())
            .context("the drain's record is journaled")?;
        ensure!(r["reasonCode"] == "interrupted", "{r:#}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revert_refused_by_rbac_is_reported() -> anyhow::Result<()> {
    with_identity_beside(
        "forbidden",
        &["scale"],
        move |env, client, ns, identity| async move {
            deployment(&client, &ns, "web", 2).await?;
            let web = target("Deployment", &ns, "app=web");
            let policy = manual("hold", &ns, web, json!({"scale": {"replicas": 0}}), "15s").blind();
            let setup = Setup::live_in(&ns, vec![("p.yaml", policy.yaml())]).run_as(&identity);
            let serve = Serve::start(&env, setup).await?;
            let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let run = serve.run_now("hold").await?;
            wait_replicas(&api, "web", 0, Duration::from_secs(20)).await?;
            // The permission to revert goes (as a chart upgrade turning scale off would take it).
            identity.revoke(&client, "deployments", "patch").await?;
            let r = serve.record(&run, Duration::from_secs(60)).await?;
            ensure!(r["verdict"] == "rollbackFailed", "{r:#}");
            ensure!(
                r["targets"][0]["revert"]["result"] == "forbidden",
                "reported as forbidden, not as a passing error: {r:#}"
            );
            ensure!(
                metric_value(
                    &serve.metrics().await?,
                    "havoc_reverts_total{result=\"forbidden\"}"
                ) >= 1.0,
                "counted"
            );
            // The recovery sweep finds the stranded record: a gauge for the alert, and an Event.
            poll(
                Duration::from_secs(60),
                "havoc_reverts_forbidden 1",
                || async {
                    let metrics = serve.metrics().await?;
                    Ok((metric_value(&metrics, "havoc_reverts_forbidden") == 1.0).then_some(()))
                },
            )
            .await?;
            let events: Api<Event> = Api::namespaced(client.clone(), &ns);
            poll(
                Duration::from_secs(30),
                "a ChaosRevertFailed Event",
                || async {
                    Ok(events
                        .list(&ListParams::default())
                        .await?
                        .items
                        .into_iter()
                        .find(|e| {
                            e.reason.as_deref() == Some("ChaosRevertFailed")
                                && e.involved_object.name.as_deref() == Some("web")
                                && e.message
                                    .as_deref()
                                    .is_some_and(|m| m.contains("forbidden"))
                        }))
                },
            )
            .await?;
            ensure!(
                serve
                    .log()
                    .contains("revert refused by the API server (RBAC)"),
                "logged as an error"
            );
            ensure!(
                replicas(&api.get("web").await?) == 0,
                "still held: stranded"
            );
            // Cleaned up by someone who may: `havoc revert --all` for this installation.
            let out = std::process::Command::new(havoc_bin()?)
                .args(["revert", "--all", "--owner"])
                .arg(format!("{}/{}", identity.namespace, identity.lease))
                .arg("--kubeconfig")
                .arg(env.get("KUBECONFIG")?)
                .output()?;
            ensure!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            ensure!(
                replicas(&api.get("web").await?) == 2,
                "reverted by revert --all"
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breaker_pause_survives_a_kill_before_it_is_written() -> anyhow::Result<()> {
    with_identity_beside(
        "breaker",
        &["scale"],
        move |env, client, ns, identity| async move {
            deployment(&client, &ns, "web", 2).await?;
            monitoring_settled(&env, &ns, 1).await?;
            // The state ConfigMap can be read, not written: the breaker's pause cannot land.
            let chart_rules = identity.chart_own_rules()?;
            let mut read_only = chart_rules.clone();
            for r in read_only.as_array_mut().into_iter().flatten() {
                if r["resources"][0] == "configmaps" {
                    r["verbs"] = json!(["get", "list", "watch"]);
                }
            }
            identity.own_rules(&client, read_only).await?;
            let web = target("Deployment", &ns, "app=web");
            let policy =
                manual("hold", &ns, web, json!({"scale": {"replicas": 1}}), "2m").alerts_from(&ns);
            let setup = Setup::live_in(&ns, vec![("p.yaml", policy.yaml())]).run_as(&identity);
            let mut serve = Serve::start(&env, setup).await?;
            let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let run = serve.run_now("hold").await?;
            wait_replicas(&api, "web", 1, Duration::from_secs(20)).await?;
            let starts = chrono::Utc::now();
            post_deviation_alert(&env, &ns, starts, starts + chrono::Duration::minutes(3)).await?;
            let r = serve.record(&run, Duration::from_secs(60)).await;
            post_deviation_alert(&env, &ns, starts, chrono::Utc::now()).await?;
            let r = r?;
            ensure!(r["verdict"] == "deviated", "{r:#}");
            // Obeyed here, not written: the ConfigMap holds no pause. The write is tried
            // after the verdict, by a task of its own: its refusal is awaited, not assumed.
            poll(Duration::from_secs(20), "the pause obeyed here", || async {
                let policies = serve.get("/api/v1/policies").await?;
                Ok(policies
                    .to_string()
                    .contains("circuit breaker")
                    .then_some(()))
            })
            .await?;
            poll(
                Duration::from_secs(20),
                "the write refused and retried",
                || async {
                    Ok(serve
                        .log()
                        .contains("cannot write a pause to the shared state")
                        .then_some(()))
                },
            )
            .await?;
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &identity.namespace);
            let state = || async {
                Ok::<_, anyhow::Error>(
                    cms.get(&format!("{}-state", identity.lease))
                        .await?
                        .data
                        .unwrap_or_default()
                        .get("state.json")
                        .cloned()
                        .unwrap_or_default(),
                )
            };
            ensure!(
                !state().await?.contains("circuit breaker"),
                "the write cannot have landed"
            );
            // Killed before the write could land; the permission comes back; restarted.
            serve.kill().await?;
            identity.own_rules(&client, chart_rules).await?;
            serve.respawn()?;
            serve.wait_ready(true).await?;
            let (status, body) = serve.ask_run("hold").await?;
            ensure!(
                status == 409 && body.to_string().contains("circuit breaker"),
                "still paused after the restart: {status} {body}"
            );
            poll(
                Duration::from_secs(30),
                "the pause written at last",
                || async { Ok(state().await?.contains("circuit breaker").then_some(())) },
            )
            .await?;
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_replica_without_leader_election_is_refused() -> anyhow::Result<()> {
    with_namespace("one-replica", move |env, client, ns| async move {
        deployment(&client, &ns, "havoc", 2).await?;
        let pods: Vec<String> = Api::<Pod>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().labels("app=havoc"))
            .await?
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        ensure!(pods.len() == 2, "{pods:?}");
        let dir = tempfile::tempdir()?;
        let config = fixtures::config()
            .set("/health", json!({"none": true}))
            .set(
                "/server",
                json!({"listen": format!("127.0.0.1:{}", free_port()?)}),
            )
            .set(
                "/leaderElection",
                json!({"enabled": false, "namespace": ns, "lease": "havoc"}),
            )
            .yaml();
        run::write_dir(dir.path(), &config, &[])?;
        let started = Instant::now();
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(havoc_bin()?)
                .args(["serve", "--config"])
                .arg(dir.path().join("havoc.yaml"))
                .arg("--policies")
                .arg(dir.path().join("policies"))
                .arg("--kubeconfig")
                .arg(env.get("KUBECONFIG")?)
                .env("POD_NAMESPACE", &ns)
                .env("POD_NAME", &pods[0])
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .context("havoc serve should refuse to start, not run")??;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2),
            "exit {:?} after {:?}: {stderr}",
            out.status.code(),
            started.elapsed()
        );
        ensure!(
            stderr.contains("leaderElection.enabled is false") && stderr.contains(&pods[1]),
            "{stderr}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn havoc_run_reverts_on_sigterm_and_two_runs_never_pass_the_limit() -> anyhow::Result<()> {
    with_namespace("run-once", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 2).await?;
        let dir = tempfile::tempdir()?;
        // Its own installation (lease): no service counts against its limit.
        let config = fixtures::config()
            .set("/dryRun", json!(false))
            .set("/health", json!({"none": true}))
            .set("/limits", json!({"maxConcurrentExperiments": 1}))
            .set(
                "/leaderElection",
                json!({"namespace": "havoc-system", "lease": format!("{ns}-run")}),
            )
            .yaml();
        let web = target("Deployment", &ns, "app=web");
        let scale = json!({"scale": {"replicas": 1}});
        let hold = manual("hold", &ns, web.clone(), scale.clone(), "5m").blind();
        let other = manual("other", &ns, web, scale, "5m").blind();
        let policies = [("hold.yaml", hold.yaml()), ("other.yaml", other.yaml())];
        run::write_dir(dir.path(), &config, &policies)?;
        // Two runs started together with a limit of 1: exactly one is admitted.
        let spawn = |policy: &str| {
            run::once(&env, dir.path(), policy)?
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("havoc run")
        };
        let (a, b) = (spawn("hold")?, spawn("other")?);
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        // One run holds the scale.
        wait_replicas(&api, "web", 1, Duration::from_secs(30)).await?;
        // The refused one ends at once; SIGTERM the one that holds.
        let mut outs = Vec::new();
        for mut child in [a, b] {
            let pid = child.id().context("pid")?;
            let done = tokio::time::timeout(Duration::from_secs(3), child.wait()).await;
            if done.is_err() {
                std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()?;
            }
            let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
                .await
                .context("havoc run did not end within 30 s of SIGTERM")??;
            let record: Value = serde_json::from_slice(&out.stdout).with_context(|| {
                format!("a record; stderr: {}", String::from_utf8_lossy(&out.stderr))
            })?;
            outs.push((out.status.code(), record));
        }
        let admitted: Vec<&(Option<i32>, Value)> = outs
            .iter()
            .filter(|(_, r)| r["reasonCode"] != "limit")
            .collect();
        ensure!(admitted.len() == 1, "exactly one admitted: {outs:#?}");
        let (code, r) = admitted[0];
        ensure!(
            *code == Some(2) && r["reasonCode"] == "interrupted",
            "interrupted: {code:?} {r:#}"
        );
        ensure!(r["targets"][0]["revert"]["result"] == "restored", "{r:#}");
        let d = api.get("web").await?;
        ensure!(replicas(&d) == 2 && !has_record(&d), "nothing left");
        Ok(())
    })
    .await
}

/// The preflight hook is the local sink's webhook, told how to answer: 409 with a message
/// (skipped with it: the pods stay), no answer within the timeout (skipped, fail closed),
/// then 200 (the same policy deletes the very target it showed the hook). Every request
/// carries a signature the sink verifies.
#[tokio::test(flavor = "multi_thread")]
async fn a_preflight_hook_decides_before_anything_changes() -> anyhow::Result<()> {
    with_namespace("preflight", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 3).await?;
        monitoring_settled(&env, &ns, 1).await?;
        let sink = env.sink()?.to_string();
        let http = reqwest::Client::new();
        let hook = format!("preflight-{ns}");
        let control = |path: &str, body: Value| {
            let (http, url) = (http.clone(), format!("{sink}{path}"));
            async move {
                http.post(url).json(&body).send().await?.error_for_status()?;
                anyhow::Ok(())
            }
        };
        let secret = "e2e-preflight-secret";
        control("/control/webhook-secret", json!({"name": hook, "secret": secret})).await?;
        let dir = tempfile::tempdir()?;
        let secret_file = dir.path().join("preflight-secret");
        std::fs::write(&secret_file, secret)?;
        let policy = manual(
            "web-kill",
            &ns,
            target("Pod", &ns, "app=web"),
            json!({"podDelete": {"gracePeriod": "0s"}}),
            "1s",
        )
        // Other tests' alerts (they run beside this one) do not gate it.
        .alerts_from(&ns);
        let serve = Serve::start(
            &env,
            Setup {
                dry_run: true,
                extra: json!({
                    "liveNamespaces": [ns],
                    "preflight": {
                        "url": format!("{sink}/webhook/{hook}"),
                        "secret": {"file": secret_file},
                        "timeout": "2s",
                    },
                }),
                ..Setup::policy("p.yaml", &policy)
            },
        )
        .await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let uids = || async {
            let list = pods.list(&ListParams::default().labels("app=web")).await?;
            anyhow::Ok(
                list.items
                    .iter()
                    .filter_map(|p| p.metadata.uid.clone())
                    .collect::<std::collections::BTreeSet<_>>(),
            )
        };
        let before = uids().await?;

        // 409 with a message: skipped with the message.
        control(
            "/control/answer",
            json!({"name": hook, "status": 409, "body": {"message": "change freeze until Monday (CHG-42)"}}),
        )
        .await?;
        let id = serve.run_now("web-kill").await?;
        let refused = serve.record(&id, Duration::from_secs(60)).await?;
        ensure!(
            refused["verdict"] == "skipped" && refused["reasonCode"] == "preflightRefused",
            "{refused:#}"
        );
        ensure!(
            refused["reason"]
                .as_str()
                .is_some_and(|r| r.contains("change freeze until Monday (CHG-42)")),
            "{refused:#}"
        );
        ensure!(uids().await? == before, "a pod was deleted while the hook said no");

        // No answer within the timeout: skipped, fail closed.
        control("/control/answer", json!({"name": hook, "status": 200, "seconds": 10})).await?;
        let id = serve.run_now("web-kill").await?;
        let hung = serve.record(&id, Duration::from_secs(60)).await?;
        ensure!(
            hung["verdict"] == "skipped" && hung["reasonCode"] == "preflightUnavailable",
            "{hung:#}"
        );
        ensure!(uids().await? == before, "a pod was deleted while the hook hung");

        // 200: the experiment goes ahead.
        control("/control/answer", json!({"name": hook, "status": 200})).await?;
        let id = serve.run_now("web-kill").await?;
        let passed = serve.record(&id, Duration::from_secs(60)).await?;
        ensure!(passed["verdict"] == "passed", "{passed:#}");
        let victim = passed["targets"][0]["name"].as_str().context("target")?;
        control("/control/answer", json!({"name": hook, "status": null})).await?;

        let asked: Vec<Value> = http
            .get(format!("{sink}/received?kind=webhook&name={hook}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ensure!(asked.len() == 3, "{} requests: {asked:#?}", asked.len());
        for a in &asked {
            ensure!(a["signature"] == "valid", "{a:#}");
            ensure!(a["json"]["policy"] == "web-kill", "{a:#}");
        }
        let planned = &asked[2]["json"];
        ensure!(
            planned["targets"][0]["name"] == victim,
            "the hook was shown {planned}, the run deleted {victim}"
        );
        ensure!(uids().await? != before, "the open hook's run deleted no pod");
        Ok(())
    })
    .await
}

/// A `namespaceSelector` policy watches the pods of the namespaces its selector matches,
/// not the cluster's, and follows their labels while it runs: a namespace labelled later
/// is watched and chosen from, one whose label is taken away is never chosen again, and
/// with none left the run is skipped (no target), never run on a stale cache.
#[tokio::test(flavor = "multi_thread")]
async fn a_selector_policy_follows_namespace_labels_while_it_runs() -> anyhow::Result<()> {
    with_namespace("selector", move |env, client, ns| async move {
        let other = format!("{ns}-b");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let n: Namespace = serde_json::from_value(
            json!({"metadata": {"name": other, "labels": {"havoc.dev/e2e": "true"}}}),
        )?;
        namespaces.create(&PostParams::default(), &n).await?;
        let cleanup = {
            let (namespaces, other) = (namespaces.clone(), other.clone());
            async move {
                let _ = namespaces.delete(&other, &DeleteParams::background()).await;
                Ok(())
            }
        };
        let body = async move {
            deployment(&client, &ns, "web", 3).await?;
            deployment(&client, &other, "web", 3).await?;
            let group = format!("chaos-group={ns}");
            let label = |name: String, on: bool| {
                let namespaces = namespaces.clone();
                let key = "chaos-group";
                let value = if on { json!(ns) } else { Value::Null };
                async move {
                    namespaces
                        .patch(
                            &name,
                            &kube::api::PatchParams::default(),
                            &kube::api::Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
                        )
                        .await?;
                    anyhow::Ok(())
                }
            };
            label(ns.clone(), true).await?;
            let policy = fixtures::policy("by-label")
                .manual_only(&ns)
                .set(
                    "/target",
                    json!({"kind": "Pod", "namespaceSelector": group, "selector": "app=web"}),
                )
                .duration("1s")
                .settle("1s")
                .blind();
            // Live everywhere: a selector policy is never live by `liveNamespaces`; this
            // havoc has this one policy, which touches only the labelled namespaces.
            let serve = Serve::start(
                &env,
                Setup {
                    dry_run: false,
                    ..Setup::policy("p.yaml", &policy)
                },
            )
            .await?;
            let run_in = |expected: String| {
                let serve = &serve;
                async move {
                    // A namespace just (un)labelled is re-scoped within moments; until its
                    // watch has listed, a run is skipped as unreadable, never misjudged.
                    poll(
                        Duration::from_secs(30),
                        &format!("a run in {expected}"),
                        || async {
                            let id = serve.run_now("by-label").await?;
                            let r = serve.record(&id, Duration::from_secs(30)).await?;
                            if r["verdict"] == "skipped" && r["reasonCode"] == "targetsUnreadable" {
                                return Ok(None);
                            }
                            ensure!(r["verdict"] == "passed", "{r:#}");
                            ensure!(r["targets"][0]["namespace"] == expected.as_str(), "{r:#}");
                            Ok(Some(()))
                        },
                    )
                    .await
                }
            };
            run_in(ns.clone()).await?;
            // The other namespace joins, this one leaves: only the other is chosen.
            label(other.clone(), true).await?;
            label(ns.clone(), false).await?;
            for _ in 0..3 {
                run_in(other.clone()).await?;
            }
            // The log says the pod watch followed the labels, and never went cluster-wide.
            let log = serve.log();
            let pod_scopes = serve.watch_scopes("Pod");
            ensure!(
                pod_scopes.iter().any(|l| l.contains(&other)),
                "no re-scope to {other}: {pod_scopes:#?}\n{}",
                tail(&log, 60)
            );
            ensure!(
                pod_scopes.iter().all(|l| !l.contains("All")),
                "a cluster-wide pod watch: {pod_scopes:#?}"
            );
            // No labelled namespace left: nothing to choose from.
            label(other.clone(), false).await?;
            poll(Duration::from_secs(30), "a run without target", || async {
                let id = serve.run_now("by-label").await?;
                let r = serve.record(&id, Duration::from_secs(30)).await?;
                Ok((r["verdict"] == "skipped" && r["reasonCode"] == "noTarget").then_some(()))
            })
            .await?;
            Ok(())
        };
        cleaned_up(body, cleanup).await
    })
    .await
}
