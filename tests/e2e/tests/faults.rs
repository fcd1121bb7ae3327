//! The reversible faults against the local cluster, each test in its own namespace with
//! its own workloads and its own `havoc serve`: injected as specified (the object's
//! state checked while held), the verdict, and the revert exact (the object equals its
//! original apart from server-managed fields). Ownership: what someone else set is never
//! overwritten. Deviation and SIGTERM end the hold early, reverted.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use havoc_e2e::{
    fixtures::{self, node_named, pool_nodes, target},
    serve::*,
    workloads::*,
    *,
};
use k8s_openapi::api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

fn revert_of(record: &Value) -> &Value {
    &record["targets"][0]["revert"]
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_is_held_restored_exactly_and_never_fights_a_change() -> anyhow::Result<()> {
    with_namespace("scale", move |env, client, ns| async move {
        let before = as_value(&deployment(&client, &ns, "web", 3).await?)?;
        monitoring_settled(&env, &ns, 1).await?;
        let web = target("Deployment", &ns, "app=web");
        let policy = fixtures::manual("shrink", &ns, web, json!({"scale": {"replicas": 1}}), "6s")
            .alerts_from(&ns);
        let serve = Serve::start(&env, Setup::live_in(&ns, vec![("p.yaml", policy.yaml())])).await?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);

        // Held: one replica, and the record with the original count on the object.
        let id = serve.run_now("shrink").await?;
        let held = poll(Duration::from_secs(20), "scaled to 1 with its record", || async {
            let d = api.get("web").await?;
            Ok((replicas(&d) == 1 && has_record(&d)).then_some(d))
        })
        .await?;
        let record: Value = serde_json::from_str(&held.annotations()[REVERT])?;
        ensure!(record["original"] == json!({"replicas": 3, "set": 1}), "{record:#}");
        ensure!(record["experiment"] == id.as_str(), "{record:#}");
        let r = serve.record(&id, Duration::from_secs(40)).await?;
        ensure!(r["verdict"] == "passed", "{r:#}");
        ensure!(revert_of(&r)["result"] == "restored", "{r:#}");
        let after = as_value(&api.get("web").await?)?;
        ensure!(
            restorable(&after) == restorable(&before),
            "not restored exactly:\n{:#}\nvs\n{:#}",
            restorable(&after),
            restorable(&before)
        );

        // Someone scales it during the hold: havoc does not fight, and says so.
        let id = serve.run_now("shrink").await?;
        wait_replicas(&api, "web", 1, Duration::from_secs(20)).await?;
        api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}})))
            .await?;
        let r = serve.record(&id, Duration::from_secs(40)).await?;
        ensure!(revert_of(&r)["result"] == "leftAsIs", "{r:#}");
        let d = api.get("web").await?;
        ensure!(replicas(&d) == 5 && !has_record(&d), "someone else's 5 replicas stay: {d:?}");

        // An autoscaled workload is never scaled.
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5}
        }))?;
        Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &hpa)
            .await?;
        let r = serve
            .run_until("shrink", Duration::from_secs(20), "a run that sees the autoscaler", |r| {
                r["reason"]
                    .as_str()
                    .is_some_and(|s| s.contains("HorizontalPodAutoscaler"))
            })
            .await?;
        ensure_verdict(&r, "skipped", "HorizontalPodAutoscaler")?;
        ensure!(replicas(&api.get("web").await?) == 5);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_is_a_network_policy_of_havocs_that_goes_away() -> anyhow::Result<()> {
    with_namespace("partition", move |env, client, ns| async move {
        deployment(&client, &ns, "api", 2).await?;
        monitoring_settled(&env, &ns, 1).await?;
        let policy = fixtures::manual(
            "cut",
            &ns,
            target("Pod", &ns, "app=api"),
            json!({"networkPartition": {"direction": "both"}}),
            "6s",
        )
        .alerts_from(&ns);
        let serve =
            Serve::start(&env, Setup::live_in(&ns, vec![("p.yaml", policy.yaml())])).await?;
        let id = serve.run_now("cut").await?;
        let np = poll(Duration::from_secs(20), "the partition", || async {
            Ok(havoc_network_policies(&client, &ns)
                .await?
                .into_iter()
                .next())
        })
        .await?;
        let spec = np.spec.clone().context("spec")?;
        ensure!(
            spec.pod_selector.and_then(|s| s.match_labels)
                == Some([("app".to_string(), "api".to_string())].into()),
            "selects the workload's pods: {np:?}"
        );
        ensure!(
            spec.policy_types == Some(vec!["Ingress".into(), "Egress".into()]),
            "{np:?}"
        );
        ensure!(
            spec.ingress.is_none() && spec.egress.is_none(),
            "no rule allows anything: {np:?}"
        );
        ensure!(
            np.labels().contains_key("havoc.dev/experiment") && has_record(&np),
            "{np:?}"
        );
        let r = serve.record(&id, Duration::from_secs(40)).await?;
        ensure!(r["verdict"] == "passed", "{r:#}");
        ensure!(revert_of(&r)["result"] == "restored", "{r:#}");
        ensure!(
            havoc_network_policies(&client, &ns).await?.is_empty(),
            "the partition is gone"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_fault_is_routes_ahead_of_the_users_and_only_those_are_removed()
-> anyhow::Result<()> {
    with_namespace("http", move |env, client, ns| async move {
        // The user's routes: one with a fault of their own, and a catch-all.
        let user = json!([
            {"name": "canary", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
             "route": [{"destination": {"host": "shop-canary"}}],
             "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 1.0}}}},
            {"name": "main", "route": [{"destination": {"host": "shop"}}]},
        ]);
        virtual_service(&client, &ns, "shop", user.clone()).await?;
        let api = virtual_services(&client, &ns);
        let before = api.get("shop").await?;
        let shop = target("VirtualService", &ns, "app=shop");
        let fault = json!({"httpFault": {"abort": {"percent": 50, "status": 503}, "delay": {"percent": 100, "fixed": "2s"}}});
        let policy = fixtures::manual("flaky", &ns, shop, fault, "6s").alerts_from(&ns);
        let serve = Serve::start(&env, Setup::live_in(&ns, vec![("p.yaml", policy.yaml())])).await?;
        let id = serve.run_now("flaky").await?;
        let held = poll(Duration::from_secs(20), "fault routes in place", || async {
            let vs = api.get("shop").await?;
            Ok((vs.data["spec"]["http"].as_array().map_or(0, Vec::len) == 4).then_some(vs))
        })
        .await?;
        let http = held.data["spec"]["http"].as_array().context("http")?;
        for r in &http[..2] {
            ensure!(r["name"].as_str().is_some_and(|n| n.starts_with("havoc-")), "{r:#}");
            ensure!(r["fault"]["abort"]["httpStatus"] == 503 && r["fault"]["delay"]["fixedDelay"] == "2s", "{r:#}");
        }
        ensure!(http[0]["match"] == user[0]["match"] && http[1]["route"] == user[1]["route"]);
        ensure!(before.data["spec"]["http"][0]["fault"]["abort"]["httpStatus"] == 418);
        ensure!(
            Value::Array(http[2..].to_vec()) == before.data["spec"]["http"],
            "the user's routes and fault are untouched: {:#}",
            Value::Array(http.to_vec())
        );
        let r = serve.record(&id, Duration::from_secs(40)).await?;
        ensure!(r["verdict"] == "passed", "{r:#}");
        let after = api.get("shop").await?;
        ensure!(after.data["spec"] == before.data["spec"], "restored exactly: {:#}", after.data["spec"]);
        ensure!(!has_record(&after) && after.labels() == before.labels());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_cordons_evicts_and_uncordons_and_leaves_others_cordons_alone() -> anyhow::Result<()>
{
    // Nodes of the test's own, tainted: the drain evicts no other test's pods.
    with_node_pool("drain", 3, move |env, client, ns, nodes| async move {
        let pool = &ns;
        deployment_spread_on(&client, &ns, "spread", 3, pool).await?;
        monitoring_settled(&env, &ns, 1).await?;
        let mut with_our_pods = pool_nodes(pool);
        with_our_pods["withPodsIn"] = json!([ns]);
        let drain = fixtures::manual(
            "drain",
            &ns,
            with_our_pods,
            json!({"nodeDrain": {"timeout": "20s"}}),
            "8s",
        )
        .alerts_from(&ns);
        // Someone else's cordon, and a policy aimed at exactly that node.
        let victim = nodes[2].clone();
        let aimed = fixtures::manual(
            "aimed",
            &ns,
            node_named(&victim),
            json!({"nodeDrain": {"timeout": "20s"}}),
            "4s",
        )
        .alerts_from(&ns);
        // Other tests may cordon nodes too: room for all of them.
        let policies = vec![("drain.yaml", drain.yaml()), ("aimed.yaml", aimed.yaml())];
        let setup = Setup::live_in(&ns, policies)
            .limits(json!({"maxUnschedulableNodes": 5}))
            .live_on_nodes();
        let serve = Serve::start(&env, setup).await?;
        let nodes_api = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
        let id = serve.run_now("drain").await?;
        let name = poll(
            Duration::from_secs(20),
            "a pool node cordoned by havoc",
            || async {
                for n in &nodes {
                    let node = nodes_api.get(n).await?;
                    if unschedulable(&node) && has_record(&node) {
                        return Ok(Some(n.clone()));
                    }
                }
                Ok(None)
            },
        )
        .await?;
        // Its pods are evicted (replaced on the other pool nodes).
        let evicted = poll(
            Duration::from_secs(30),
            "no pod of the test left on the node",
            || async { Ok((pods_on_node(&client, &ns, "", &name).await? == 0).then_some(())) },
        )
        .await;
        if let Err(e) = evicted {
            let r = serve.record(&id, Duration::from_secs(60)).await;
            anyhow::bail!("{e:#}\nrecord: {r:#?}\nlog:\n{}", tail(&serve.log(), 40));
        }
        let r = serve.record(&id, Duration::from_secs(60)).await?;
        ensure!(r["verdict"] == "passed", "{r:#}");
        ensure!(revert_of(&r)["result"] == "restored", "{r:#}");
        // It read the node's pods when it chose the node: no pod watch went cluster-wide.
        let pod_scopes = serve.watch_scopes("Pod");
        ensure!(
            !pod_scopes.is_empty() && pod_scopes.iter().all(|l| !l.contains("All")),
            "the pod watches: {pod_scopes:#?}"
        );
        // Nor the Node watch: the pool's nodes (and the aimed one's), and the cordoned ones.
        let node_scopes = serve.watch_scopes("Node");
        ensure!(
            node_scopes.last().is_some_and(|l| !l.contains("All")
                && l.contains(&format!("labels:{POOL}={pool}"))
                && l.contains("fields:spec.unschedulable=true")),
            "the node watches: {node_scopes:#?}"
        );
        let n = nodes_api.get(&name).await?;
        ensure!(
            !unschedulable(&n) && !has_record(&n),
            "uncordoned: {:?}",
            n.spec
        );

        cordon(&client, &victim, true).await?;
        let id = serve.run_now("aimed").await?;
        let r = serve.record(&id, Duration::from_secs(30)).await?;
        ensure_verdict(&r, "skipped", "already cordoned")?;
        let n = nodes_api.get(&victim).await?;
        ensure!(
            unschedulable(&n) && !has_record(&n),
            "someone else's cordon stays: {:?}",
            n.spec
        );
        Ok(())
    })
    .await
}

/// `web` (2 replicas, seen available by Prometheus) in `ns`, and a service whose policy
/// `hold` scales it to 0 for 5 minutes, run and holding: the service, the run's id and
/// the namespace's Deployments.
async fn web_held_at_zero(
    env: &Env,
    client: &kube::Client,
    ns: &str,
) -> anyhow::Result<(Serve, String, Api<Deployment>)> {
    deployment(client, ns, "web", 2).await?;
    monitoring_settled(env, ns, 1).await?;
    let web = target("Deployment", ns, "app=web");
    let policy =
        fixtures::manual("hold", ns, web, json!({"scale": {"replicas": 0}}), "5m").alerts_from(ns);
    let serve = Serve::start(env, Setup::live_in(ns, vec![("p.yaml", policy.yaml())])).await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let id = serve.run_now("hold").await?;
    wait_replicas(&api, "web", 0, Duration::from_secs(20)).await?;
    Ok((serve, id, api))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deviation_during_the_hold_reverts_at_once() -> anyhow::Result<()> {
    with_namespace("deviate", move |env, client, ns| async move {
        let (serve, id, api) = web_held_at_zero(&env, &client, &ns).await?;
        let starts = chrono::Utc::now();
        post_deviation_alert(&env, &ns, starts, starts + chrono::Duration::minutes(2)).await?;
        let posted = Instant::now();
        let restored = poll(
            Duration::from_secs(60),
            "reverted after the deviation",
            || async { Ok((replicas(&api.get("web").await?) == 2).then(|| posted.elapsed())) },
        )
        .await;
        post_deviation_alert(&env, &ns, starts, chrono::Utc::now()).await?;
        let restored = restored?;
        eprintln!(
            "deviation to revert: {:.1} s (alert posted to replicas restored)",
            restored.as_secs_f64()
        );
        let r = serve.record(&id, Duration::from_secs(60)).await?;
        ensure_verdict(&r, "deviated", "HavocE2EDeviation")?;
        ensure!(revert_of(&r)["result"] == "restored", "{r:#}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_the_hold_reverts_before_exit() -> anyhow::Result<()> {
    with_namespace("sigterm", move |env, client, ns| async move {
        let (mut serve, id, api) = web_held_at_zero(&env, &client, &ns).await?;
        let (code, took) = serve.stop().await?;
        ensure!(code == Some(0), "exit {code:?}\n{}", tail(&serve.log(), 20));
        let d = api.get("web").await?;
        ensure!(
            replicas(&d) == 2 && !has_record(&d),
            "reverted before exit ({took:?})"
        );
        let r = serve
            .journal()?
            .into_iter()
            .find(|r| r["id"] == id.as_str())
            .context("the record is journaled")?;
        ensure!(
            r["reasonCode"] == "interrupted" && revert_of(&r)["result"] == "restored",
            "{r:#}"
        );
        Ok(())
    })
    .await
}

/// `zoneOutage`: every node of one zone cordoned (each with its own record), the zone's
/// pods evicted, the other zone left alone; reverted, every node schedulable again.
#[tokio::test(flavor = "multi_thread")]
async fn a_zone_outage_cordons_one_zone_and_uncordons_it() -> anyhow::Result<()> {
    with_zoned_pool(
        "zone",
        &[("a", 2), ("b", 1)],
        move |env, client, ns, zones| async move {
            let pool = &ns;
            deployment_spread_on(&client, &ns, "spread", 3, pool).await?;
            monitoring_settled(&env, &ns, 1).await?;
            let outage = fixtures::manual(
                "outage",
                &ns,
                pool_nodes(pool),
                json!({"zoneOutage": {"timeout": "10s"}}),
                "6s",
            )
            .alerts_from(&ns)
            .set("/limits/maxUnschedulableNodes", json!(10));
            let setup = Setup::live_in(&ns, vec![("outage.yaml", outage.yaml())])
                .limits(json!({"maxUnschedulableNodes": 1}))
                .live_on_nodes();
            let serve = Serve::start(&env, setup).await?;
            let nodes_api = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
            let id = serve.run_now("outage").await?;
            let down = poll(Duration::from_secs(30), "one zone cordoned", || async {
                if let Some(r) = serve
                    .records()
                    .await?
                    .into_iter()
                    .find(|r| r["id"] == id.as_str())
                {
                    anyhow::bail!("ended before its zone was seen down: {r:#}");
                }
                for (zone, names) in &zones {
                    let mut all = true;
                    for n in names {
                        let node = nodes_api.get(n).await?;
                        let record = node.annotations().get(REVERT).cloned().unwrap_or_default();
                        all &= unschedulable(&node) && record.contains("\"zoneOutage\"");
                    }
                    if all {
                        return Ok(Some(zone.clone()));
                    }
                }
                Ok(None)
            })
            .await?;
            for (zone, names) in &zones {
                if *zone != down {
                    for n in names {
                        ensure!(
                            !unschedulable(&nodes_api.get(n).await?),
                            "{n} of {zone} left alone"
                        );
                    }
                }
            }
            let r = serve.record(&id, Duration::from_secs(60)).await?;
            ensure!(r["verdict"] == "passed", "{r:#}");
            ensure!(r["fault"] == "zoneOutage", "{r:#}");
            ensure!(
                r["targets"]
                    .as_array()
                    .is_some_and(|t| t.len() == zones[&down].len()
                        && t.iter().all(|t| t["revert"]["result"] == "restored")),
                "every node of {down} reverted: {r:#}"
            );
            for n in zones.values().flatten() {
                let node = nodes_api.get(n).await?;
                ensure!(
                    !unschedulable(&node) && !has_record(&node),
                    "{n} uncordoned"
                );
            }
            Ok(())
        },
    )
    .await
}
