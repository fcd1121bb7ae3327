//! Nothing is left behind when havoc is killed: tested by killing it (SIGKILL), not by
//! trusting the code. A crash loop over all four reversible faults; `havoc revert --all`
//! cleaning up after a killed havoc without the service; a second replica that takes
//! over from a killed leader and reverts what the leader held; and a record written
//! without its label (as a havoc older than the label did) still found after a kill.
//!
//! `revert --all` run by an identity that may not list one kind still reverts the others
//! and says what it could not see; two drains started together never cordon more nodes
//! than `maxUnschedulableNodes`.
//!
//! These tests revert cluster-wide (`revert --all`) and drain nodes: run them alone
//! (tests/run does, after the others).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use havoc_e2e::{
    fixtures::{self, PolicyDoc, pool_nodes, target},
    history,
    serve::*,
    workloads::*,
    *,
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Node};
use kube::{Api, Client, ResourceExt, api::DynamicObject};
use serde_json::{Value, json};

/// What the fault tests of one namespace (and its node pool) act on.
struct Scene {
    ns: String,
    pool: String,
    pool_nodes: Vec<String>,
    shop_before: Value,
}

async fn scene(env: &Env, client: &Client, ns: &str, with_nodes: bool) -> anyhow::Result<Scene> {
    deployment(client, ns, "web", 3).await?;
    deployment(client, ns, "api", 2).await?;
    virtual_service(
        client,
        ns,
        "shop",
        json!([{"name": "main", "route": [{"destination": {"host": "shop"}}]}]),
    )
    .await?;
    let pool = ns.to_string();
    let pool_nodes = if with_nodes {
        let nodes = node_pool(client, &pool, 3).await?;
        deployment_on(client, ns, "spread", 3, Some(&pool)).await?;
        nodes
    } else {
        Vec::new()
    };
    monitoring_settled(env, ns, if with_nodes { 3 } else { 2 }).await?;
    let shop_before = virtual_services(client, ns).get("shop").await?.data["spec"].clone();
    Ok(Scene {
        ns: ns.to_string(),
        pool,
        pool_nodes,
        shop_before,
    })
}

/// One policy per fault on the scene; `schedule`: the clock (or None: manual only).
fn policies(s: &Scene, schedule: Option<Value>, hold: &str) -> Vec<(&'static str, String)> {
    let ns = &s.ns;
    let base = |name: &str| -> PolicyDoc {
        // The faults make the scene's own alerts fire; the gate and the verdict look at
        // nothing here, so that chaos keeps going.
        let p = fixtures::policy(name).duration(hold).settle("1s").blind();
        match &schedule {
            Some(v) => p.set("/schedule", v.clone()),
            None => p.manual_only(ns),
        }
    };
    let mut out = vec![
        (
            "scale.yaml",
            base("scale")
                .set("/target", target("Deployment", ns, "app=web"))
                .fault(json!({"scale": {"replicas": 1}}))
                .yaml(),
        ),
        (
            "partition.yaml",
            base("partition")
                .set("/target", target("Pod", ns, "app=api"))
                .fault(json!({"networkPartition": {"direction": "both"}}))
                .yaml(),
        ),
        (
            "http.yaml",
            base("http")
                .set("/target", target("VirtualService", ns, "app=shop"))
                .fault(json!({"httpFault": {"abort": {"percent": 50, "status": 503}}}))
                .yaml(),
        ),
    ];
    if !s.pool_nodes.is_empty() {
        out.push((
            "drain.yaml",
            base("drain")
                .set(
                    "/target",
                    json!({"kind": "Node", "selector": format!("{POOL}={}", s.pool), "withPodsIn": [ns]}),
                )
                .fault(json!({"nodeDrain": {"timeout": "5s"}}))
                .yaml(),
        ));
    }
    out
}

fn setup<'a>(s: &Scene, policies: Vec<(&'a str, String)>) -> Setup<'a> {
    // Nodes are not namespaced: the drain needs dry run off (everything here targets the
    // test's own namespace and nodes only).
    Setup::live_in(&s.ns, policies)
        .limits(json!({"maxConcurrentExperiments": 4, "minAvailableReplicas": 0, "maxUnschedulableNodes": 5}))
        .live_on_nodes()
}

/// The havoc records left on the scene: (object, experiment).
async fn leftovers(client: &Client, s: &Scene) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    // The record and its label go together (`has_record` says so, or fails).
    let mut add = |what: String, o: &dyn Fn() -> Option<String>| {
        if let Some(text) = o() {
            let experiment = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["experiment"].as_str().map(String::from))
                .unwrap_or_else(|| "?".into());
            out.push((what, experiment));
        }
    };
    for d in Api::<Deployment>::namespaced(client.clone(), &s.ns)
        .list(&Default::default())
        .await?
    {
        let a = has_record(&d).then(|| d.annotations()[REVERT].clone());
        add(format!("Deployment {}", d.name_any()), &|| a.clone());
    }
    for np in havoc_network_policies(client, &s.ns).await? {
        let a = has_record(&np).then(|| np.annotations()[REVERT].clone());
        add(format!("NetworkPolicy {}", np.name_any()), &|| a.clone());
    }
    for v in virtual_services(client, &s.ns)
        .list(&Default::default())
        .await?
    {
        let a = has_record(&v).then(|| v.annotations()[REVERT].clone());
        add(format!("VirtualService {}", v.name_any()), &|| a.clone());
    }
    for n in &s.pool_nodes {
        let node = Api::<Node>::all(client.clone()).get(n).await?;
        let a = has_record(&node).then(|| node.annotations()[REVERT].clone());
        add(format!("Node {n}"), &|| a.clone());
    }
    Ok(out)
}

/// Nothing disrupted: no record anywhere, counts, routes and cordons as they were.
async fn undisturbed(client: &Client, s: &Scene) -> anyhow::Result<()> {
    let left = leftovers(client, s).await?;
    ensure!(left.is_empty(), "left behind: {left:?}");
    let web = Api::<Deployment>::namespaced(client.clone(), &s.ns)
        .get("web")
        .await?;
    ensure!(replicas(&web) == 3, "web has {} replicas", replicas(&web));
    ensure!(havoc_network_policies(client, &s.ns).await?.is_empty());
    let shop: DynamicObject = virtual_services(client, &s.ns).get("shop").await?;
    ensure!(
        shop.data["spec"] == s.shop_before,
        "routes: {:#}",
        shop.data["spec"]
    );
    for n in &s.pool_nodes {
        let node = Api::<Node>::all(client.clone()).get(n).await?;
        ensure!(!unschedulable(&node), "{n} left cordoned");
    }
    Ok(())
}

/// Sleeps a random time up to `max`: the moment of a kill.
async fn random_moment(max: Duration) {
    let ms = rand::random::<u64>() % max.as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(300 + ms)).await;
}

/// havoc serving the four faults, killed with SIGKILL at random moments (20 times, or
/// `HAVOC_CRASH_KILLS`): after one more start nothing is left disrupted, and every
/// experiment that started has exactly one final record.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loop_leaves_nothing_behind_and_loses_no_record() -> anyhow::Result<()> {
    let kills: usize = var_or("HAVOC_CRASH_KILLS", 20);
    with_namespace("crash", move |env, client, ns| async move {
        let s = scene(&env, &client, &ns, true).await?;
        let result = crash_loop(&env, &client, &s, kills).await;
        delete_node_pool(&client, &s.pool).await?;
        result
    })
    .await
}

async fn crash_loop(env: &Env, client: &Client, s: &Scene, kills: usize) -> anyhow::Result<()> {
    let schedule = json!({"interval": {"min": "1s", "max": "3s"}});
    let mut serve = Serve::start(
        env,
        Setup {
            // A restart in the same pod takes the Lease over at once.
            pod_name: Some(format!("{}-havoc", s.ns)),
            ..setup(s, policies(s, Some(schedule), "4s"))
        },
    )
    .await?;
    let mut recovery = Vec::new();
    let mut held_at_kill = 0;
    for i in 0..kills {
        random_moment(Duration::from_secs(4)).await;
        let before: BTreeSet<String> = leftovers(client, s)
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        held_at_kill += usize::from(!before.is_empty());
        serve.kill().await?;
        let restarted = Instant::now();
        serve.respawn()?;
        serve
            .wait_ready(true)
            .await
            .with_context(|| format!("restart {i}"))?;
        // What the killed process held is reverted by its successor.
        let took = poll(
            Duration::from_secs(60),
            "the killed process's faults reverted",
            || async {
                let now: BTreeSet<String> = leftovers(client, s)
                    .await?
                    .into_iter()
                    .map(|(_, e)| e)
                    .collect();
                Ok(before.is_disjoint(&now).then(|| restarted.elapsed()))
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nlog:\n{}", tail(&serve.log(), 40)))?;
        if !before.is_empty() {
            recovery.push(took.as_secs_f64());
        }
    }
    // One more start, with no policy: it only recovers.
    serve.kill().await?;
    for f in std::fs::read_dir(serve.policies_dir())? {
        std::fs::remove_file(f?.path())?;
    }
    let restarted = Instant::now();
    serve.respawn()?;
    serve.wait_ready(true).await?;
    poll(
        Duration::from_secs(60),
        "nothing left disrupted",
        || async { Ok(leftovers(client, s).await?.is_empty().then_some(())) },
    )
    .await?;
    let last = restarted.elapsed();
    undisturbed(client, s).await?;
    // Every intent has exactly one final record.
    let (_, _) = serve.stop().await?;
    let text = std::fs::read(serve.dir.path().join("journal.jsonl"))?;
    let mut started = BTreeSet::new();
    let mut finals: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        if let Some(id) = v["started"]["id"].as_str() {
            started.insert(id.to_string());
        } else if let Some(id) = v["id"].as_str() {
            *finals.entry(id.to_string()).or_default() += 1;
        }
    }
    let missing: Vec<&String> = started
        .iter()
        .filter(|id| !finals.contains_key(*id))
        .collect();
    let doubled: Vec<&String> = finals
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    ensure!(
        missing.is_empty(),
        "experiments without a final record: {missing:?}"
    );
    ensure!(
        doubled.is_empty(),
        "experiments with two final records: {doubled:?}"
    );
    let crashed = finals.keys().filter(|id| started.contains(*id)).count();
    recovery.sort_by(f64::total_cmp);
    eprintln!(
        "crash loop: {kills} kills ({held_at_kill} while faults were held), {} experiments started, all closed; restart to reverted p50 {:.2} s, max {:.2} s; final start to clean {:.2} s",
        crashed,
        bench::percentile(&recovery, 0.5),
        recovery.last().copied().unwrap_or(f64::NAN),
        last.as_secs_f64()
    );
    ensure!(
        held_at_kill > 0,
        "no kill hit a held fault: the loop proved nothing"
    );
    Ok(())
}

/// `havoc revert --all` undoes a killed havoc's faults without the service.
#[tokio::test(flavor = "multi_thread")]
async fn revert_all_cleans_up_after_a_killed_havoc() -> anyhow::Result<()> {
    with_namespace("revertall", move |env, client, ns| async move {
        let s = scene(&env, &client, &ns, false).await?;
        let mut serve = Serve::start(&env, setup(&s, policies(&s, None, "5m"))).await?;
        for p in ["scale", "partition", "http"] {
            serve.run_now(p).await?;
        }
        poll(Duration::from_secs(30), "three faults held", || async {
            Ok((leftovers(&client, &s).await?.len() == 3).then_some(()))
        })
        .await?;
        serve.kill().await?;
        let havoc = havoc_bin()?;
        let kubeconfig = env.get("KUBECONFIG")?.to_string();
        let run = |dry: bool| {
            let mut c = std::process::Command::new(&havoc);
            c.args(["revert", "--all", "--kubeconfig", &kubeconfig]);
            if dry {
                c.arg("--dry-run");
            }
            c.output()
        };
        let dry = run(true)?;
        let said = String::from_utf8_lossy(&dry.stdout).to_string();
        ensure!(dry.status.success(), "{said}");
        ensure!(said.matches("would revert").count() >= 3, "{said}");
        ensure!(
            leftovers(&client, &s).await?.len() == 3,
            "a dry run reverts nothing"
        );
        let out = run(false)?;
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        ensure!(
            out.status.success(),
            "{said}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for what in ["Deployment", "NetworkPolicy", "VirtualService"] {
            ensure!(
                said.lines()
                    .any(|l| l.starts_with(what) && l.contains(&s.ns) && l.ends_with("restored")),
                "{what} not reported restored:\n{said}"
            );
        }
        undisturbed(&client, &s).await?;
        Ok(())
    })
    .await
}

/// Two replicas: the follower takes over from a killed leader and reverts what the
/// leader held (the same installation: it need not wait for the deadline).
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_takes_over_and_reverts_the_killed_leaders_faults() -> anyhow::Result<()> {
    with_namespace("takeover", move |env, client, ns| async move {
        let s = scene(&env, &client, &ns, false).await?;
        let lease = format!("havoc-e2e-{}", &ns[ns.len() - 6..]);
        let mut leader = Serve::start(
            &env,
            Setup {
                lease: Some(lease.clone()),
                pod_name: Some("replica-a".into()),
                ..setup(&s, policies(&s, None, "5m"))
            },
        )
        .await?;
        let follower = Serve::start(
            &env,
            Setup {
                lease: Some(lease.clone()),
                pod_name: Some("replica-b".into()),
                wait_leader: false,
                ..setup(&s, policies(&s, None, "5m"))
            },
        )
        .await?;
        ensure!(follower.get("/api/v1/policies").await?["leader"] == false);
        // The follower runs nothing, and says so.
        let (status, _) = follower.ask_run("scale").await?;
        ensure!(status == 503, "a follower refuses runs: {status}");
        let id = leader.run_now("scale").await?;
        let web = Api::<Deployment>::namespaced(client.clone(), &ns);
        // Held by the leader; its intent is in the cluster's history.
        wait_replicas(&web, "web", 1, Duration::from_secs(20)).await?;
        let intent = history::object(&client, "havoc-system", &id).await?;
        ensure!(
            intent
                .as_ref()
                .is_some_and(|o| o["status"]["phase"] == "Running"),
            "the intent before the change: {intent:?}"
        );
        leader.kill().await?;
        let killed = Instant::now();
        poll(
            Duration::from_secs(60),
            "the follower leads and reverted",
            || async {
                let leads = follower.get("/api/v1/policies").await?["leader"] == true;
                Ok((leads && replicas(&web.get("web").await?) == 3).then_some(()))
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nfollower log:\n{}", tail(&follower.log(), 30)))?;
        eprintln!(
            "takeover: leader killed to its faults reverted by the follower: {:.1} s",
            killed.elapsed().as_secs_f64()
        );
        // The follower closes what the dead leader left: errored (crashed), naming the
        // revert, in the cluster and in the API of both replicas.
        let left = Duration::from_secs(90).saturating_sub(killed.elapsed());
        let closed = poll(left, "the crashed experiment's final record", || async {
            let o = history::object(&client, "havoc-system", &id).await?;
            Ok(o.filter(|o| o["status"]["phase"] == "Finished"))
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nfollower log:\n{}", tail(&follower.log(), 30)))?;
        eprintln!(
            "takeover: leader killed to the experiment's record closed: {:.1} s",
            killed.elapsed().as_secs_f64()
        );
        let record = &closed["status"]["record"];
        ensure!(record["verdict"] == "errored", "{closed:#}");
        ensure!(record["reasonCode"] == "crashed", "{closed:#}");
        ensure!(
            record["reason"]
                .as_str()
                .is_some_and(|r| r.contains("Deployment web: restored")),
            "names the revert: {closed:#}"
        );
        leader.respawn()?;
        leader.wait_ready(false).await?;
        for (who, replica) in [("follower", &follower), ("restarted", &leader)] {
            let r = replica.record(&id, Duration::from_secs(30)).await?;
            ensure!(r["reasonCode"] == "crashed", "{who}: {r:#}");
        }
        undisturbed(&client, &s).await?;
        Ok(())
    })
    .await
}

/// A drain's and a scale's records that lost their label (as an older havoc wrote
/// records) are not seen by the Node and Deployment watches, which select the label: the
/// successor of a killed havoc finds them in its one start-up list of each kind, labels
/// them, uncordons the node and gives the Deployment its replicas back.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_without_its_label_is_still_reverted_after_a_kill() -> anyhow::Result<()> {
    with_namespace("unlabelled", move |env, client, ns| async move {
        let s = scene(&env, &client, &ns, true).await?;
        let result = async {
            let mut serve = Serve::start(
                &env,
                Setup {
                    pod_name: Some(format!("{}-havoc", s.ns)),
                    ..setup(&s, policies(&s, None, "5m"))
                },
            )
            .await?;
            serve.run_now("drain").await?;
            serve.run_now("scale").await?;
            let deployments = Api::<Deployment>::namespaced(client.clone(), &s.ns);
            poll(
                Duration::from_secs(30),
                "web scaled with its record",
                || async {
                    let d = deployments.get("web").await?;
                    Ok((replicas(&d) == 1 && has_record(&d)).then_some(()))
                },
            )
            .await?;
            let nodes = Api::<Node>::all(client.clone());
            let held = poll(
                Duration::from_secs(30),
                "a node cordoned with its record",
                || async {
                    for n in &s.pool_nodes {
                        let node = nodes.get(n).await?;
                        if unschedulable(&node) && has_record(&node) {
                            return Ok(Some(n.clone()));
                        }
                    }
                    Ok(None)
                },
            )
            .await?;
            serve.kill().await?;
            nodes
                .patch(
                    &held,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"metadata": {"labels": {REVERT: null}}})),
                )
                .await?;
            let node = nodes.get(&held).await?;
            ensure!(node.annotations().contains_key(REVERT) && !node.labels().contains_key(REVERT));
            deployments
                .patch(
                    "web",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"metadata": {"labels": {REVERT: null}}})),
                )
                .await?;
            serve.respawn()?;
            serve.wait_ready(true).await?;
            poll(
                Duration::from_secs(60),
                "the unlabelled record reverted",
                || async {
                    let node = nodes.get(&held).await?;
                    let annotated = node.annotations().contains_key(REVERT);
                    Ok((!unschedulable(&node) && !annotated).then_some(node))
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\nlog:\n{}", tail(&serve.log(), 40)))
            .and_then(|node| {
                ensure!(!has_record(&node), "record and label removed together");
                Ok(())
            })?;
            poll(
                Duration::from_secs(60),
                "the unlabelled scale reverted",
                || async {
                    let d = deployments.get("web").await?;
                    Ok((replicas(&d) == 3 && !d.annotations().contains_key(REVERT)).then_some(()))
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\nlog:\n{}", tail(&serve.log(), 40)))?;
            let log = serve.log();
            let labelled = log
                .lines()
                .filter(|l| l.contains("a record without its label, labelled"))
                .count();
            ensure!(
                labelled == 2,
                "the start-up lists found both ({labelled}):\n{}",
                tail(&log, 40)
            );
            undisturbed(&client, &s).await
        }
        .await;
        delete_node_pool(&client, &s.pool).await?;
        result
    })
    .await
}

/// `havoc revert --all` as a ServiceAccount that may list and revert everything but
/// VirtualServices: the kind it cannot list is reported, the others are still reverted,
/// and the exit status says something may be left.
#[tokio::test(flavor = "multi_thread")]
async fn revert_all_reverts_what_it_can_list_and_reports_what_it_cannot() -> anyhow::Result<()> {
    with_namespace("revertsome", move |env, client, ns| async move {
        let s = scene(&env, &client, &ns, false).await?;
        let mut serve = Serve::start(&env, setup(&s, policies(&s, None, "5m"))).await?;
        serve.run_now("scale").await?;
        poll(Duration::from_secs(30), "the scale held", || async {
            Ok((leftovers(&client, &s).await?.len() == 1).then_some(()))
        })
        .await?;
        serve.kill().await?;
        let role = format!("{ns}-reverter");
        let rbac = json!({
            "rules": [
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "patch"]},
                {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["get", "list", "patch"]},
                {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "delete"]},
            ]
        });
        let sa: k8s_openapi::api::core::v1::ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "reverter"}}))?;
        Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &ns)
            .create(&Default::default(), &sa)
            .await?;
        let cr: k8s_openapi::api::rbac::v1::ClusterRole =
            serde_json::from_value(json!({"metadata": {"name": role}, "rules": rbac["rules"]}))?;
        let roles = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(client.clone());
        roles.create(&Default::default(), &cr).await?;
        let crb: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "reverter", "namespace": ns}],
        }))?;
        let bindings = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone());
        bindings.create(&Default::default(), &crb).await?;
        let out = in_cluster(&env, &ns, "reverter")?
            .arg(havoc_bin()?)
            .args(["revert", "--all"])
            .output()
            .await;
        let _ = bindings.delete(&role, &Default::default()).await;
        let _ = roles.delete(&role, &Default::default()).await;
        let out = out?;
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        ensure!(
            out.status.code() == Some(1),
            "exit {:?}: {said}\n{err}",
            out.status.code()
        );
        ensure!(
            said.lines().any(|l| l.starts_with("VirtualService: CANNOT LIST")),
            "the kind it cannot list is reported:\n{said}\n{err}"
        );
        ensure!(
            said.lines()
                .any(|l| l.starts_with("Deployment") && l.contains(&s.ns) && l.ends_with("restored")),
            "the others are still reverted:\n{said}\n{err}"
        );
        undisturbed(&client, &s).await?;
        Ok(())
    })
    .await
}

/// Two drains started together, with room for one more cordoned node: the second sees
/// the first's claim (the watch has not seen its cordon yet) and is skipped.
#[tokio::test(flavor = "multi_thread")]
async fn two_drains_started_together_stay_within_max_unschedulable_nodes() -> anyhow::Result<()> {
    with_node_pool("twodrains", 3, move |env, client, ns, ours| async move {
        let cordoned_now = nodes(&client)
            .await?
            .iter()
            .filter(|n| unschedulable(n))
            .count();
        let drain = |name: &str| {
            let fault = json!({"nodeDrain": {"timeout": "5s"}});
            fixtures::manual(name, &ns, pool_nodes(&ns), fault, "8s")
                .blind()
                .yaml()
        };
        let serve = Serve::start(
            &env,
            Setup {
                dry_run: false,
                extra: json!({"limits": {
                    "maxConcurrentExperiments": 2,
                    "minAvailableReplicas": 0,
                    "maxUnschedulableNodes": cordoned_now + 1,
                }}),
                receivers: &["hook"],
                policies: vec![("a.yaml", drain("drain-a")), ("b.yaml", drain("drain-b"))],
                ..Setup::default()
            },
        )
        .await?;
        let (a, b) = tokio::join!(serve.run_now("drain-a"), serve.run_now("drain-b"));
        let ids = [a?, b?];
        let nodes_api: Api<Node> = Api::all(client.clone());
        let cordoned_in_pool = || async {
            let mut n = 0;
            for name in &ours {
                n += usize::from(unschedulable(&nodes_api.get(name).await?));
            }
            Ok::<_, anyhow::Error>(n)
        };
        poll(
            Duration::from_secs(20),
            "one pool node cordoned",
            || async { Ok((cordoned_in_pool().await? == 1).then_some(())) },
        )
        .await?;
        assert_quiet_for(Duration::from_secs(5), "never two cordoned", || async {
            Ok(cordoned_in_pool().await? <= 1)
        })
        .await?;
        let mut verdicts = Vec::new();
        for id in &ids {
            let r = serve.record(id, Duration::from_secs(60)).await?;
            verdicts.push((r["verdict"].clone(), r["reason"].clone()));
        }
        ensure!(
            verdicts.iter().filter(|(v, _)| v == "passed").count() == 1
                && verdicts.iter().any(|(v, r)| v == "skipped"
                    && r.as_str()
                        .is_some_and(|r| r.contains("maxUnschedulableNodes"))),
            "one drain, one skipped for the limit: {verdicts:?}"
        );
        ensure!(cordoned_in_pool().await? == 0, "uncordoned");
        Ok(())
    })
    .await
}

/// A zone outage killed (SIGKILL) while it holds its zone: after a restart in the same pod,
/// every node of the pool is schedulable again and no record is left.
#[tokio::test(flavor = "multi_thread")]
async fn a_zone_outage_killed_mid_way_leaves_every_node_schedulable() -> anyhow::Result<()> {
    with_zoned_pool(
        "zonekill",
        &[("a", 2), ("b", 2)],
        move |env, client, ns, zones| async move {
            let fault = json!({"zoneOutage": {"timeout": "5s"}});
            let outage = fixtures::manual("outage", &ns, pool_nodes(&ns), fault, "5m")
                .set("/limits/maxUnschedulableNodes", json!(10))
                .blind();
            let mut serve = Serve::start(
                &env,
                Setup {
                    dry_run: false,
                    receivers: &["hook"],
                    policies: vec![("outage.yaml", outage.yaml())],
                    pod_name: Some(format!("{ns}-havoc")),
                    ..Setup::default()
                },
            )
            .await?;
            let nodes_api: Api<Node> = Api::all(client.clone());
            serve.run_now("outage").await?;
            poll(Duration::from_secs(30), "a zone held", || async {
                let mut held = 0;
                for n in zones.values().flatten() {
                    held += usize::from(has_record(&nodes_api.get(n).await?));
                }
                Ok((held == 2).then_some(()))
            })
            .await?;
            serve.kill().await?;
            serve.respawn()?;
            serve.wait_ready(true).await?;
            poll(
                Duration::from_secs(60),
                "every node schedulable, no record",
                || async {
                    for n in zones.values().flatten() {
                        let node = nodes_api.get(n).await?;
                        if unschedulable(&node) || has_record(&node) {
                            return Ok(None);
                        }
                    }
                    Ok(Some(()))
                },
            )
            .await?;
            Ok(())
        },
    )
    .await
}
