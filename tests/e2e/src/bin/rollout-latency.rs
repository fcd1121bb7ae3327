//! Benchmark: how fast a completed rollout becomes an injected fault. A program, not a
//! test: it asserts nothing about speed, it measures and prints.
//!
//!   ROLLOUTS=20 cargo run -p havoc-e2e --bin rollout-latency
//!
//! For each rollout, an independent watcher in this process notes when it receives the
//! status update that completes the rollout (within a few ms of the API server writing
//! it; both watchers see the same event). havoc's record gives `injectedAt`, stamped when
//! the delete call returned. Latency = injectedAt - observed completion, with `delay: 0s`.
//! Background load (e.g. 2,000 pods in other namespaces) is set up outside
//! (tests/bench/rollout-latency, which also points HAVOC_BIN at the release build).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use havoc_e2e::{serve::*, *};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

fn complete(d: &Deployment) -> bool {
    let (Some(spec), Some(st)) = (&d.spec, &d.status) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    st.observed_generation >= d.metadata.generation
        && st.updated_replicas.unwrap_or(0) >= want
        && st.replicas.unwrap_or(0) <= st.updated_replicas.unwrap_or(0)
        && st.available_replicas.unwrap_or(0) >= st.updated_replicas.unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::load()?;
    let rollouts: usize = std::env::var("ROLLOUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    with_namespace("latency", move |client, ns| async move {
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}}}
        }))?;
        api.create(&PostParams::default(), &d).await?;
        wait_for_object(api.clone(), "web", deployment_available(), Duration::from_secs(120), "web available").await?;

        // The independent observer: revision -> when its completion was received.
        let seen: Arc<Mutex<BTreeMap<String, DateTime<Utc>>>> = Arc::default();
        let observer = {
            let (api, seen) = (api.clone(), seen.clone());
            tokio::spawn(async move {
                let stream = watcher(api, watcher::Config::default().fields("metadata.name=web"))
                    .default_backoff()
                    .applied_objects();
                let mut stream = std::pin::pin!(stream);
                while let Some(Ok(d)) = stream.next().await {
                    let now = Utc::now();
                    if complete(&d)
                        && let Some(rev) = d.annotations().get("deployment.kubernetes.io/revision")
                    {
                        seen.lock().expect("lock").entry(rev.clone()).or_insert(now);
                    }
                }
            })
        };

        let policy = havoc_e2e::fixtures::policy("react")
            .on_rollout(json!({"namespaces": [&ns], "delay": "0s", "cooldown": "0s"}))
            .pods(&ns, "")
            .duration("1s")
            .settle("1s")
            .yaml();
        let serve = Serve::start(
            &env,
            Setup {
                dry_run: true,
                extra: json!({"liveNamespaces": [&ns]}),
                receivers: &["hook"],
                policies: vec![("react.yaml", policy)],
                ..Setup::default()
            },
        )
        .await?;

        let mut latencies = Vec::new();
        let mut internal = Vec::new();
        for i in 0..rollouts {
            let image = format!("registry.k8s.io/pause:3.{}", if i % 2 == 0 { 9 } else { 10 });
            let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}});
            api.patch("web", &PatchParams::default(), &Patch::Strategic(patch)).await?;
            // Revisions count from 1 (the creation); a return to an older template is a
            // new revision too.
            let rev = (i + 2).to_string();
            let record = poll(Duration::from_secs(120), &format!("experiment for revision {rev}"), || async {
                Ok(serve.records().await?.into_iter().find(|r| {
                    r["trigger"]["kind"] == "rollout" && r["trigger"]["revision"] == rev.as_str()
                }))
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\nlog tail:\n{}", tail(&serve.log(), 30)))?;
            let observed = *seen.lock().expect("lock").get(&rev).context("observer missed the completion")?;
            let ts = |k: &str| -> anyhow::Result<DateTime<Utc>> {
                Ok(DateTime::parse_from_rfc3339(record[k].as_str().context("timestamp")?)?.to_utc())
            };
            let injected = ts("injectedAt").with_context(|| format!("{record:#}"))?;
            let completed = DateTime::parse_from_rfc3339(record["trigger"]["completedAt"].as_str().context("completedAt")?)?.to_utc();
            let ms = (injected - observed).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            let inner = (injected - completed).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            println!("rollout {:2} revision {rev}: injected {ms:7.1} ms after the completing update (havoc internal {inner:6.1} ms)", i + 1);
            latencies.push(ms);
            internal.push(inner);
            // The next rollout starts right away: the deleted pod's replacement is part
            // of it, and completion is still judged on the whole Deployment.
        }
        observer.abort();
        latencies.sort_by(f64::total_cmp);
        internal.sort_by(f64::total_cmp);
        println!(
            "LATENCY n={} p50={:.1}ms p95={:.1}ms max={:.1}ms (havoc internal: p50={:.1}ms p95={:.1}ms max={:.1}ms)",
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.95),
            latencies[latencies.len() - 1],
            percentile(&internal, 0.5),
            percentile(&internal, 0.95),
            internal[internal.len() - 1],
        );
        ensure!(latencies.len() == rollouts);
        Ok(())
    })
    .await
}
