//! `nodeDrain {timeout}`: cordons a node, as a cluster upgrade would, then evicts its
//! pods through the Eviction API, so PodDisruptionBudgets are honoured: a refusal (429)
//! is retried until `timeout`, then the pod is left where it is. DaemonSet pods, mirror
//! pods, pods in protected namespaces and havoc's own pods are never evicted.
//!
//! The cordon and its revert record go in one merge patch (resourceVersion
//! precondition). The revert uncordons — only if havoc's own record is still on the node:
//! a node someone else cordoned is never chosen (selection) and never uncordoned here.
//!
//! RBAC: `patch` on `nodes`, `create` on `pods/eviction`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api, Client,
    api::{EvictParams, Patch, PatchParams},
};
use serde_json::json;
use tokio::time::Instant;

use super::{
    FaultError, Held, Injection, Reverted, bounded,
    revert::{Stamp, clear_annotation, merge, precondition, record_of, still_ours},
    with_conflict_retries,
};
use crate::{
    record::ObjectRef,
    target::{NodeInfo, PodInfo},
};

pub const FAULT: &str = "nodeDrain";
/// Pause between two eviction attempts that a PodDisruptionBudget refused.
const EVICTION_RETRY: Duration = Duration::from_secs(2);

/// What the drain did to the node's pods.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    pub evicted: Vec<String>,
    /// Still refused (by a PodDisruptionBudget, or an error) when the timeout passed.
    pub refused: Vec<(String, String)>,
}

impl Drained {
    fn describe(&self) -> String {
        let mut s = format!("evicted {} pod(s)", self.evicted.len());
        if !self.refused.is_empty() {
            let r: Vec<String> = self
                .refused
                .iter()
                .map(|(p, why)| format!("{p} ({why})"))
                .collect();
            s.push_str(&format!("; left after the timeout: {}", r.join(", ")));
        }
        s
    }
}

/// Cordons `node`, then evicts `pods` (the node's pods that may be evicted; the caller
/// has filtered DaemonSet, mirror, protected and havoc's own pods out).
pub async fn inject(
    client: &Client,
    node: &NodeInfo,
    pods: &[PodInfo],
    timeout: Duration,
    stamp: &Stamp,
    dry_run: bool,
) -> Result<Injection, FaultError> {
    let api: Api<Node> = Api::all(client.clone());
    let name = &node.name;
    let names: Vec<String> = pods
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    let change = format!(
        "cordon node {name} and evict {} pod(s){}",
        pods.len(),
        if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        }
    );
    let cordoned = with_conflict_retries(|| async {
        let Some(current) = bounded(api.get_opt(name)).await? else {
            return Ok(Err("the node is gone"));
        };
        if record_of(&current).is_some() {
            return Ok(Err("it already holds a havoc revert record"));
        }
        if current.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            return Ok(Err("it was cordoned by someone else meanwhile"));
        }
        if dry_run {
            return Ok(Ok(None));
        }
        let record = stamp.record(FAULT, json!({"unschedulable": false}));
        let patch = merge(
            merge(
                precondition(current.metadata.resource_version.clone()),
                record.annotate(),
            ),
            json!({"spec": {"unschedulable": true}}),
        );
        bounded(api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))).await?;
        Ok(Ok(Some(record)))
    })
    .await?;
    let record = match cordoned {
        Err(why) => return Ok(Injection::skipped(why)),
        Ok(None) => return Ok(Injection::dry_run(change)),
        Ok(Some(r)) => r,
    };
    let held = Held {
        object: ObjectRef {
            kind: "Node".into(),
            namespace: None,
            name: name.clone(),
        },
        record,
    };
    // Cordoned and recorded: from here on the node is held, whatever the evictions do.
    let drained = drain(client, pods, timeout).await;
    let mut injection = Injection::injected(change, held);
    injection.detail = Some(format!("cordoned node {name}; {}", drained.describe()));
    Ok(injection)
}

/// Evicts every pod, retrying refusals until `timeout`; all pods at once.
pub async fn drain(client: &Client, pods: &[PodInfo], timeout: Duration) -> Drained {
    let deadline = Instant::now() + timeout;
    let evictions = pods.iter().map(|p| async move {
        let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
        let name = format!("{}/{}", p.namespace, p.name);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(
                left.min(super::API_TIMEOUT),
                api.evict(&p.name, &EvictParams::default()),
            )
            .await;
            let why = match attempt {
                Ok(Ok(_)) => return Ok(name),
                Ok(Err(kube::Error::Api(s))) if s.code == 404 => return Ok(name),
                Ok(Err(kube::Error::Api(s))) if s.code == 429 => {
                    format!("refused by a PodDisruptionBudget: {}", s.message)
                }
                Ok(Err(e)) if super::is_transient(&e) => e.to_string(),
                Ok(Err(e)) => return Err((name, e.to_string())),
                Err(_) => "no answer".to_string(),
            };
            if Instant::now() + EVICTION_RETRY >= deadline {
                return Err((name, why));
            }
            tokio::time::sleep(EVICTION_RETRY).await;
        }
    });
    let mut drained = Drained::default();
    for r in futures::future::join_all(evictions).await {
        match r {
            Ok(n) => drained.evicted.push(n),
            Err(e) => drained.refused.push(e),
        }
    }
    drained
}

/// Uncordons the node if havoc's record is still on it.
pub async fn revert(client: &Client, held: &Held) -> Result<Reverted, FaultError> {
    let api: Api<Node> = Api::all(client.clone());
    let name = &held.object.name;
    with_conflict_retries(|| async {
        let Some(current) = bounded(api.get_opt(name)).await? else {
            return Ok(Reverted::Gone);
        };
        if let Err(why) = still_ours(&current, &held.record) {
            return Ok(Reverted::NotOurs(why.to_string()));
        }
        let clear = merge(
            precondition(current.metadata.resource_version.clone()),
            clear_annotation(),
        );
        if current.spec.as_ref().and_then(|s| s.unschedulable) != Some(true) {
            bounded(api.patch(name, &PatchParams::default(), &Patch::Merge(&clear))).await?;
            return Ok(Reverted::LeftAsIs(
                "someone else uncordoned the node during the experiment".into(),
            ));
        }
        let patch = merge(clear, json!({"spec": {"unschedulable": false}}));
        bounded(api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))).await?;
        tracing::info!(node = %name, "node uncordoned");
        Ok(Reverted::Restored)
    })
    .await
}
