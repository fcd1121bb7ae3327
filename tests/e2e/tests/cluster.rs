//! The local cluster behaves like a real one where havoc depends on it: ReplicaSets
//! replace deleted pods, readiness takes time, evictions honour PodDisruptionBudgets,
//! alert rules fire and resolve, cordoned nodes get no new pods, and the sink speaks
//! Slack's API. Requires `deploy/local/up` (tests/run does it).

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use havoc_e2e::{
    workloads::{POOL, cordon, create_available},
    *,
};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Node, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, EvictParams, ListParams, PostParams},
};
use serde_json::json;

const GO_DEMO: &str = "go-demo-8";

/// A Deployment of simulated pods scheduled on KWOK nodes.
fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
                }
            }
        }
    }))
    .expect("valid deployment")
}

async fn pods_of(client: &Client, ns: &str, app: &str) -> anyhow::Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items)
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn ready_delay(env: &Env) -> u64 {
    env.get("HAVOC_POD_READY_DELAY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_pod_is_replaced_and_ready_only_after_the_delay() -> anyhow::Result<()> {
    with_namespace("replace", |env, client, ns| async move {
        let delay = ready_delay(&env);
        create_available(&client, &ns, &deployment("web", 2)).await?;
        let before = pods_of(&client, &ns, "web").await?;
        let victim = before[0].name_any();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        pods.delete(&victim, &DeleteParams::default()).await?;
        let deleted_at = Instant::now();
        // The ReplicaSet creates a replacement with a new name...
        let replacement = poll(Duration::from_secs(30), "replacement pod", || async {
            Ok(pods_of(&client, &ns, "web")
                .await?
                .into_iter()
                .find(|p| before.iter().all(|b| b.name_any() != p.name_any())))
        })
        .await?;
        let owner = |p: &Pod| p.owner_references().first().map(|o| o.name.clone());
        ensure!(
            owner(&replacement) == owner(&before[0]),
            "same ReplicaSet owns the replacement"
        );
        // ... which is not Ready at once, but after the simulated readiness delay.
        ensure!(
            !is_ready(&replacement),
            "a new pod must not be Ready immediately"
        );
        let name = replacement.name_any();
        wait_for_object(
            pods.clone(),
            &name,
            |p: Option<&Pod>| p.is_some_and(is_ready),
            Duration::from_secs(delay + 45),
            "replacement Ready",
        )
        .await?;
        let took = deleted_at.elapsed();
        ensure!(
            took >= Duration::from_secs(delay.saturating_sub(2)),
            "Ready after {took:?}, configured delay {delay}s"
        );
        Ok(())
    })
    .await
}

/// Creates a PodDisruptionBudget `minAvailable: 1` over `app` and waits until the
/// disruption controller has computed it.
async fn guard(client: &Client, ns: &str, app: &str, healthy: i32) -> anyhow::Result<()> {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": app},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}}
    }))?;
    within(
        Duration::from_secs(20),
        "create PDB",
        pdbs.create(&PostParams::default(), &pdb),
    )
    .await?;
    poll(Duration::from_secs(60), "PDB computed", || async {
        let status = within(Duration::from_secs(10), "get PDB", pdbs.get(app))
            .await?
            .status;
        Ok(status
            .filter(|s| s.current_healthy == Some(healthy) && s.observed_generation.is_some())
            .map(|_| ()))
    })
    .await
}

/// Evicts a pod through the Eviction API: `Ok(())` for 201, `Err(status)` for a refusal.
async fn evict(pods: &Api<Pod>, pod: &str) -> anyhow::Result<Result<(), String>> {
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        pods.evict(pod, &EvictParams::default()),
    )
    .await
    .context("eviction: no answer within 20s")?;
    match answer {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(s)) if s.code == 429 => {
            Ok(Err(format!("{} {}: {}", s.code, s.reason, s.message)))
        }
        Err(e) => Err(e.into()),
    }
}

fn expect_429(result: Result<(), String>) -> anyhow::Result<()> {
    match result {
        Err(msg) => {
            ensure!(
                msg.contains("TooManyRequests"),
                "expected 429 TooManyRequests, got {msg}"
            );
            ensure!(msg.contains("disruption budget"), "{msg}");
            Ok(())
        }
        Ok(()) => {
            anyhow::bail!("expected the eviction to be refused with 429, but it was accepted")
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn evicting_the_only_allowed_pod_under_a_disruption_budget_is_refused_with_429()
-> anyhow::Result<()> {
    with_namespace("pdb", |_env, client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        // One replica, minAvailable 1: its only pod cannot be evicted.
        create_available(&client, &ns, &deployment("single", 1)).await?;
        guard(&client, &ns, "single", 1).await?;
        let only = pods_of(&client, &ns, "single").await?[0].name_any();
        expect_429(evict(&pods, &only).await?)?;
        ensure!(
            pods.get(&only).await?.metadata.deletion_timestamp.is_none(),
            "the pod must survive"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_single_db_pod_fires_the_unavailable_alert_and_it_resolves()
-> anyhow::Result<()> {
    let env = Env::load()?;
    let client = env.client().await?;
    let labels = [
        ("alertname", "KubeDeploymentUnavailable"),
        ("namespace", GO_DEMO),
        ("deployment", "go-demo-8-db"),
    ];
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), GO_DEMO);
    // Start from a healthy state: db available and no such alert active.
    wait_available(&deployments, "go-demo-8-db", Duration::from_secs(90)).await?;
    wait_alert_gone(&env, &labels, Duration::from_secs(90)).await?;

    let pods = pods_of(&client, GO_DEMO, "go-demo-8-db").await?;
    ensure!(
        pods.len() == 1,
        "go-demo-8-db has one pod, found {}",
        pods.len()
    );
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), GO_DEMO);
    let deleted_at = Instant::now();
    // Alertmanager's startsAt is RFC 3339 UTC; compare at second precision (minus a second
    // of clock-skew allowance between this process and Prometheus).
    let wall = (chrono::Utc::now() - chrono::Duration::seconds(1))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    pod_api
        .delete(&pods[0].name_any(), &DeleteParams::default())
        .await?;

    let alert = wait_alert_firing(&env, &labels, Duration::from_secs(60)).await?;
    let fired_after = deleted_at.elapsed();
    let starts_at = alert["startsAt"].as_str().unwrap_or_default().to_string();
    ensure!(
        starts_at.as_str() >= wall.as_str(),
        "alert started at {starts_at}, before the deletion at {wall}"
    );
    eprintln!("KubeDeploymentUnavailable firing {fired_after:?} after the deletion");

    // Available again.
    wait_available(&deployments, "go-demo-8-db", Duration::from_secs(90)).await?;
    wait_alert_gone(&env, &labels, Duration::from_secs(60)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cordoned_node_is_unschedulable_and_new_pods_avoid_it() -> anyhow::Result<()> {
    with_namespace("cordon", |_env, client, ns| async move {
        let nodes: Api<Node> = Api::all(client.clone());
        let all = nodes
            // The local cluster's own nodes: not the pools other tests add and delete
            // while this one runs.
            .list(&ListParams::default().labels(&format!("type=kwok,!{POOL}")))
            .await?
            .items;
        ensure!(
            all.len() >= 2,
            "need at least two nodes, found {}",
            all.len()
        );
        let victim = all[0].name_any();
        cordon(&client, &victim, true).await?;
        let result = async {
            let node = nodes.get(&victim).await?;
            ensure!(
                node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true),
                "node is unschedulable"
            );
            create_available(&client, &ns, &deployment("spread", 8)).await?;
            let pods = pods_of(&client, &ns, "spread").await?;
            let on_victim: Vec<_> = pods
                .iter()
                .filter(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(victim.as_str())
                })
                .map(|p| p.name_any())
                .collect();
            ensure!(
                on_victim.is_empty(),
                "pods scheduled on cordoned node {victim}: {on_victim:?}"
            );
            Ok(())
        }
        .await;
        cordon(&client, &victim, false).await?;
        result
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sink_records_a_slack_message_sent_with_slack_morphism() -> anyhow::Result<()> {
    use slack_morphism::prelude::*;
    let env = Env::load()?;
    install_crypto_provider();
    let marker = format!("havoc e2e {}", rand::random::<u64>());
    let connector = SlackClientHyperConnector::with_connector(
        hyper_util::client::legacy::connect::HttpConnector::new(),
    )
    .with_slack_api_url(&format!("{}/api", env.sink()?));
    let slack = SlackClient::new(connector);
    let token = SlackApiToken::new(SlackApiTokenValue::new(env.slack_token()?.to_string()));
    let session = slack.open_session(&token);
    let request = SlackApiChatPostMessageRequest::new(
        SlackChannelId::new("#chaos".to_string()),
        SlackMessageContent::new().with_text(marker.clone()),
    );
    let response = session
        .chat_post_message(&request)
        .await
        .context("chat.postMessage through the sink")?;
    ensure!(
        !response.ts.to_string().is_empty(),
        "Slack-like answer carries a ts"
    );

    let got = wait_sink_received(&env, 1, Duration::from_secs(10), |r| {
        r["path"] == "/api/chat.postMessage"
            && r["body"].as_str().is_some_and(|b| b.contains(&marker))
    })
    .await?;
    ensure!(got[0]["outcome"] == "ok", "{}", got[0]);
    // A wrong token is refused the way Slack refuses it.
    let bad = SlackApiToken::new(SlackApiTokenValue::new("wrong-token".to_string()));
    let refused = slack.open_session(&bad).chat_post_message(&request).await;
    ensure!(refused.is_err(), "a wrong token must be refused");
    Ok(())
}
