//! Rollout triggers against the local cluster: each test gets its own namespace with its
//! own workloads (the demo stays untouched) and its own `havoc serve`.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use havoc_e2e::{fixtures, serve::*, workloads::create_available, *};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

fn template(app: &str, image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": image}]
        }
    })
}

async fn create_deployment(client: &Client, ns: &str, name: &str) -> anyhow::Result<()> {
    let d = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            // Replace both pods at once: one readiness delay per rollout.
            "strategy": {"rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}},
            "template": template(name, "registry.k8s.io/pause:3.10"),
        }
    }))?;
    create_available(client, ns, &d).await?;
    Ok(())
}

/// `kubectl set image deployment/NAME main=IMAGE`.
async fn set_image<K>(api: &Api<K>, name: &str, image: &str) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    Ok(())
}

/// Waits until a Deployment's rollout is complete (kubectl's definition).
async fn rolled_out(api: &Api<Deployment>, name: &str) -> anyhow::Result<Deployment> {
    poll(Duration::from_secs(120), "rollout complete", || async {
        let d = api.get(name).await?;
        let (spec, st) = (
            d.spec.clone().context("spec")?,
            d.status.clone().unwrap_or_default(),
        );
        let want = spec.replicas.unwrap_or(1);
        let done = st.observed_generation >= d.metadata.generation
            && st.updated_replicas.unwrap_or(0) == want
            && st.replicas.unwrap_or(0) == want
            && st.available_replicas.unwrap_or(0) == want;
        Ok(done.then_some(d))
    })
    .await
}

/// [`set_image`] on Deployment `name`, then waits until its rollout is complete.
async fn roll_out(api: &Api<Deployment>, name: &str, image: &str) -> anyhow::Result<Deployment> {
    set_image(api, name, image).await?;
    rolled_out(api, name).await
}

fn rollout_policy(name: &str, ns: &str, kinds: &str, delay: &str, cooldown: &str) -> String {
    fixtures::policy(name)
        .on_rollout(
            json!({"kinds": [kinds], "namespaces": [ns], "delay": delay, "cooldown": cooldown}),
        )
        .pods(ns, "")
        .duration("2s")
        .settle("1s")
        .yaml()
}

async fn start(env: &Env, ns: &str, policies: Vec<(&str, String)>) -> anyhow::Result<Serve> {
    let setup = Setup::live_in(ns, policies).limits(json!({"minAvailableReplicas": 0}));
    Serve::start(env, setup).await
}

/// A Deployment `name` in `ns`, and a service whose policy `shake` reacts to its
/// rollouts `delay` after they complete, at most once per `cooldown`: the service and
/// the Deployments of `ns`.
async fn watched_deployment(
    env: &Env,
    client: &Client,
    ns: &str,
    name: &str,
    delay: &str,
    cooldown: &str,
) -> anyhow::Result<(Serve, Api<Deployment>)> {
    create_deployment(client, ns, name).await?;
    let policy = rollout_policy("shake", ns, "Deployment", delay, cooldown);
    let serve = start(env, ns, vec![("p.yaml", policy)]).await?;
    Ok((serve, Api::namespaced(client.clone(), ns)))
}

async fn rollout_records(serve: &Serve) -> anyhow::Result<Vec<Value>> {
    Ok(serve
        .records()
        .await?
        .into_iter()
        .filter(|r| r["trigger"]["kind"] == "rollout")
        .collect())
}

/// Waits for `n` rollout records, then `quiet` more to be sure no other comes.
async fn exactly(serve: &Serve, n: usize, quiet: Duration) -> anyhow::Result<Vec<Value>> {
    if n > 0 {
        let what = format!("{n} rollout experiment(s)");
        serve
            .wait_records(n, Duration::from_secs(90), &what, |r| {
                r["trigger"]["kind"] == "rollout"
            })
            .await?;
    }
    assert_quiet_for(
        quiet,
        &format!("exactly {n} rollout experiment(s)"),
        || async { Ok(rollout_records(serve).await?.len() == n) },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\nlog tail:\n{}", tail(&serve.log(), 30)))?;
    rollout_records(serve).await
}

fn ts(v: &Value) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    Ok(chrono::DateTime::parse_from_rfc3339(v.as_str().context("timestamp")?)?.to_utc())
}

/// Scaling or relabelling fires nothing; `set image` fires exactly one experiment,
/// `delay` after completion, on pods of the new ReplicaSet only.
#[tokio::test(flavor = "multi_thread")]
async fn set_image_fires_once_after_the_delay_on_the_new_replicaset() -> anyhow::Result<()> {
    with_namespace("rollout", move |env, client, ns| async move {
        let (serve, api) = watched_deployment(&env, &client, &ns, "go-demo-8", "5s", "0s").await?;

        // Not rollouts: scale, and a label on the Deployment.
        api.patch(
            "go-demo-8",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
        api.patch(
            "go-demo-8",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "x"}}})),
        )
        .await?;
        wait_available(&api, "go-demo-8", Duration::from_secs(90)).await?;
        rolled_out(&api, "go-demo-8").await?;
        exactly(&serve, 0, Duration::from_secs(8)).await?;

        let d = roll_out(&api, "go-demo-8", "registry.k8s.io/pause:3.9").await?;
        let revision = d
            .annotations()
            .get("deployment.kubernetes.io/revision")
            .cloned()
            .context("revision")?;
        let rs = exactly(&serve, 1, Duration::from_secs(10)).await?;
        let r = &rs[0];
        ensure!(
            r["trigger"]["workload"]
                == json!({"kind": "Deployment", "namespace": ns, "name": "go-demo-8"}),
            "{r:#}"
        );
        ensure!(r["trigger"]["revision"] == revision.as_str(), "{r:#}");
        let delay = ts(&r["startedAt"])? - ts(&r["trigger"]["completedAt"])?;
        ensure!(
            delay >= chrono::Duration::seconds(5) && delay < chrono::Duration::seconds(7),
            "started {delay} after completion, want 5 s"
        );
        // The new ReplicaSet and its pod-template-hash.
        let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let new_rs = rss
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|x| x.annotations().get("deployment.kubernetes.io/revision") == Some(&revision))
            .context("new ReplicaSet")?;
        ensure!(r["verdict"] == "passed", "{r:#}");
        for t in r["targets"].as_array().context("targets")? {
            let name = t["name"].as_str().context("name")?;
            ensure!(
                name.starts_with(&format!("{}-", new_rs.name_any())),
                "{name} is not a pod of {}",
                new_rs.name_any()
            );
            ensure!(t["outcome"] == "injected", "{t}");
        }
        let p = serve.get("/api/v1/policies").await?;
        ensure!(
            p["policies"][0]["recentTriggers"][0]["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("started")),
            "{p:#}"
        );
        Ok(())
    })
    .await
}

/// Two image changes in quick succession: one experiment, for the final revision.
#[tokio::test(flavor = "multi_thread")]
async fn a_superseded_rollout_fires_once_for_the_final_revision() -> anyhow::Result<()> {
    with_namespace("rollout", move |env, client, ns| async move {
        let (serve, api) = watched_deployment(&env, &client, &ns, "web", "0s", "0s").await?;
        set_image(&api, "web", "registry.k8s.io/pause:3.9").await?;
        // The controller has started revision 2 (its new pods take 15-20 s to be ready,
        // so it cannot complete before the next change supersedes it).
        poll(Duration::from_secs(30), "revision 2 started", || async {
            let d = api.get("web").await?;
            let observed = d.status.as_ref().and_then(|s| s.observed_generation);
            Ok((observed >= d.metadata.generation
                && d.annotations()
                    .get("deployment.kubernetes.io/revision")
                    .map(String::as_str)
                    == Some("2"))
            .then_some(()))
        })
        .await?;
        let d = roll_out(&api, "web", "registry.k8s.io/pause:3.8").await?;
        let revision = d
            .annotations()
            .get("deployment.kubernetes.io/revision")
            .cloned()
            .context("revision")?;
        ensure!(
            revision == "3",
            "two new revisions after the first: {revision}"
        );
        let rs = exactly(&serve, 1, Duration::from_secs(10)).await?;
        ensure!(rs[0]["trigger"]["revision"] == "3", "{:#}", rs[0]);
        Ok(())
    })
    .await
}

/// A StatefulSet and a DaemonSet rollout each trigger their policy.
#[tokio::test(flavor = "multi_thread")]
async fn statefulset_and_daemonset_rollouts_trigger() -> anyhow::Result<()> {
    with_namespace("rollout", move |env, client, ns| async move {
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": ns, "labels": {"app": "db"}},
            "spec": {"replicas": 2, "serviceName": "db", "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": "db"}}, "template": template("db", "registry.k8s.io/pause:3.10")}
        }))?;
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": ns, "labels": {"app": "agent"}},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "updateStrategy": {"rollingUpdate": {"maxUnavailable": "100%"}},
                "template": template("agent", "registry.k8s.io/pause:3.10")}
        }))?;
        let stss: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let dss: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
        stss.create(&PostParams::default(), &sts).await?;
        dss.create(&PostParams::default(), &ds).await?;
        poll(Duration::from_secs(120), "sts and ds ready", || async {
            let s = stss.get("db").await?.status.unwrap_or_default();
            let d = dss.get("agent").await?.status.unwrap_or_default();
            Ok((s.ready_replicas == Some(2) && d.desired_number_scheduled > 0 && d.number_available == Some(d.desired_number_scheduled)).then_some(()))
        })
        .await?;
        let serve = start(&env, &ns, vec![
            ("sts.yaml", rollout_policy("sts-shake", &ns, "StatefulSet", "0s", "0s")),
            ("ds.yaml", rollout_policy("ds-shake", &ns, "DaemonSet", "0s", "0s")),
        ]).await?;
        set_image(&stss, "db", "registry.k8s.io/pause:3.9").await?;
        set_image(&dss, "agent", "registry.k8s.io/pause:3.9").await?;
        let rs = exactly(&serve, 2, Duration::from_secs(10)).await?;
        let by = |p: &str| rs.iter().find(|r| r["policy"] == p).cloned();
        let s = by("sts-shake").context("sts experiment")?;
        ensure!(s["trigger"]["workload"]["kind"] == "StatefulSet", "{s:#}");
        let update = stss.get("db").await?.status.and_then(|x| x.update_revision).context("updateRevision")?;
        ensure!(s["trigger"]["revision"] == update.as_str(), "{s:#}");
        let d = by("ds-shake").context("ds experiment")?;
        ensure!(d["trigger"]["workload"]["kind"] == "DaemonSet", "{d:#}");
        // Targets are the workload's own pods.
        for (r, prefix) in [(&s, "db-"), (&d, "agent-")] {
            for t in r["targets"].as_array().context("targets")? {
                ensure!(t["name"].as_str().is_some_and(|n| n.starts_with(prefix)), "{t}");
            }
        }
        Ok(())
    })
    .await
}

/// A second rollout inside `cooldown` fires nothing; one after it fires again.
#[tokio::test(flavor = "multi_thread")]
async fn cooldown_per_workload() -> anyhow::Result<()> {
    with_namespace("rollout", move |env, client, ns| async move {
        let (serve, api) = watched_deployment(&env, &client, &ns, "web", "0s", "45s").await?;
        roll_out(&api, "web", "registry.k8s.io/pause:3.9").await?;
        let first = exactly(&serve, 1, Duration::from_secs(2)).await?;
        let fired = ts(&first[0]["startedAt"])?;
        // Second rollout, well inside the cooldown.
        roll_out(&api, "web", "registry.k8s.io/pause:3.8").await?;
        exactly(&serve, 1, Duration::from_secs(5)).await?;
        let p = serve.get("/api/v1/policies").await?;
        ensure!(
            p["policies"][0]["recentTriggers"][0]["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("cooldown")),
            "{p:#}"
        );
        // Third rollout, after it.
        wait_past(fired + chrono::Duration::seconds(46)).await;
        roll_out(&api, "web", "registry.k8s.io/pause:3.7").await?;
        exactly(&serve, 2, Duration::from_secs(5)).await?;
        Ok(())
    })
    .await
}

/// A rollout that completed while havoc was not running fires nothing at start-up.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_completed_before_start_does_not_fire() -> anyhow::Result<()> {
    with_namespace("rollout", move |env, client, ns| async move {
        let (mut serve, api) = watched_deployment(&env, &client, &ns, "web", "0s", "0s").await?;
        serve.stop().await?;
        roll_out(&api, "web", "registry.k8s.io/pause:3.9").await?;
        let policy = rollout_policy("shake", &ns, "Deployment", "0s", "0s");
        let serve = start(&env, &ns, vec![("p.yaml", policy)]).await?;
        exactly(&serve, 0, Duration::from_secs(10)).await?;
        // And it still reacts to the next one.
        roll_out(&api, "web", "registry.k8s.io/pause:3.8").await?;
        exactly(&serve, 1, Duration::from_secs(3)).await?;
        Ok(())
    })
    .await
}

/// A workload in a protected namespace never triggers, even for a policy that watches
/// every namespace; the same rollout elsewhere does.
#[tokio::test(flavor = "multi_thread")]
async fn protected_namespaces_never_trigger() -> anyhow::Result<()> {
    with_namespace("rollout", move |env, client, ns| async move {
        let app = format!("guard-{}", &ns[ns.len() - 6..]);
        let protected = "havoc-system";
        create_deployment(&client, protected, &app).await?;
        let result = async {
            create_deployment(&client, &ns, &app).await?;
            // Any namespace (no `namespaces`), selected by the workload's label.
            let policy = fixtures::policy("everywhere")
                .on_rollout(json!({"selector": format!("app={app}")}))
                .set("/target", json!({"kind": "Pod", "namespaces": [ns]}))
                .fault(json!({"podDelete": {}}))
                .duration("1s")
                .settle("1s")
                .yaml();
            let serve = start(&env, &ns, vec![("p.yaml", policy)]).await?;
            let sys: Api<Deployment> = Api::namespaced(client.clone(), protected);
            roll_out(&sys, &app, "registry.k8s.io/pause:3.9").await?;
            exactly(&serve, 0, Duration::from_secs(5)).await?;
            let mine: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            roll_out(&mine, &app, "registry.k8s.io/pause:3.9").await?;
            let rs = exactly(&serve, 1, Duration::from_secs(3)).await?;
            ensure!(
                rs[0]["trigger"]["workload"]["namespace"] == ns.as_str(),
                "{:#}",
                rs[0]
            );
            anyhow::Ok(())
        }
        .await;
        let _ = Api::<Deployment>::namespaced(client.clone(), protected)
            .delete(&app, &Default::default())
            .await;
        result
    })
    .await
}
