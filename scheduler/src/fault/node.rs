//! `nodeDrain {timeout}`: cordons a node, as a cluster upgrade would, then evicts its
//! pods through the Eviction API, so PodDisruptionBudgets are honoured: a refusal (429)
//! is retried until `timeout`, then the pod is left where it is. DaemonSet pods, mirror
//! pods, pods in protected namespaces and havoc's own pods are never evicted.
//!
//! The cordon and its revert record go in one merge patch (resourceVersion
//! precondition). The revert uncordons — only if havoc's own record is still on the node:
//! a node someone else cordoned is never chosen (selection) and never uncordoned here.
//!
//! The pods it evicts obey every guard pod faults obey (protected and paused namespaces,
//! havoc's own pods, `minAvailableReplicas` per workload): the plan comes from
//! [`crate::targets::drain_plan`]. A stop, a deviation, a demotion or a shutdown interrupts
//! the evictions at once ([`Mutator`]).
//!
//! RBAC: `patch` on `nodes`, `create` on `pods/eviction`.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api,
    api::{EvictParams, Patch, PatchParams},
};
use schemars::JsonSchema;
use serde_json::json;
use tokio::time::Instant;

use super::{
    Act, FaultError, FaultKind, Held, Injection, Mutator, Plan, PlanInput, Planned, Reverted, Step,
    access::{FaultAccess, rule},
    bounded,
    revert::patch_as_read,
    revert::{REVERT_ANNOTATION, RevertRecord, clear_annotation, merge, record_of, still_ours},
    with_conflict_retries,
};
use crate::{
    policy::{Policy, domain::Fault},
    record::ObjectRef,
    record::SkipReason,
    targets::{
        Claim, DrainTarget, NodeInfo, PodInfo, drain_plan,
        scope::{Namespaces, Needs, Nodes},
        select_nodes, still_free,
    },
};

pub const FAULT: &str = "nodeDrain";

/// `nodeDrain`.
#[derive(Debug)]
pub struct NodeDrain;

/// What a drain's revert record keeps: the node was schedulable.
#[derive(Debug, JsonSchema)]
#[allow(dead_code)] // the schema's shape; the record is written with `json!`
pub(super) struct Original {
    /// Always `false`: havoc drains only nodes nobody cordoned.
    unschedulable: bool,
}

/// The RBAC of node cordons and a drain's evictions, with the reasons (shared with
/// `zoneOutage`).
pub fn drain_access(patch: &'static str, evict: &'static str) -> FaultAccess {
    FaultAccess {
        cluster: vec![
            rule(&[""], &["nodes"], &["patch"], patch),
            rule(&[""], &["pods/eviction"], &["create"], evict),
        ],
        ..FaultAccess::default()
    }
}

/// What a drain reads: the nodes its selector matches and the cordoned ones
/// ([`Nodes::Matching`]); the pods of havoc's namespace (which nodes run havoc) and of
/// `withPodsIn`'s (which nodes host them), watched; and, once it has chosen its nodes,
/// their pods, read then ([`Needs::node_pods`]): not every pod of the cluster.
pub fn drain_needs(policy: &Policy, own_namespace: &str) -> Needs {
    Needs {
        pods: Some(Namespaces::names(
            policy
                .target
                .hosting
                .iter()
                .map(String::as_str)
                .chain([own_namespace]),
        )),
        nodes: Some(Nodes::of(&policy.target.selector)),
        node_pods: true,
        ..Needs::default()
    }
}

impl FaultKind for NodeDrain {
    fn name(&self) -> &'static str {
        FAULT
    }

    fn access(&self) -> FaultAccess {
        drain_access(
            "nodeDrain: cordon and uncordon, with the revert record in the same patch",
            "nodeDrain: a drained node's pods can be in any namespace",
        )
    }

    reversible!(records on Node; reverted by revert; original Original);

    fn needs(&self, policy: &Policy, own_namespace: &str) -> Needs {
        drain_needs(policy, own_namespace)
    }

    fn choose_nodes(&self, input: PlanInput<'_>) -> Result<Option<Vec<NodeInfo>>, SkipReason> {
        let nodes = select_nodes(
            &input.policy.target,
            input.snapshot,
            input.guards,
            Utc::now(),
            input.rng,
        )
        .into_chosen()?;
        Ok(Some(nodes))
    }

    fn plan(&self, input: PlanInput<'_>) -> Plan {
        let Fault::NodeDrain { timeout } = input.policy.fault else {
            return Err(super::not_mine(self, input.policy));
        };
        let nodes = match input.nodes {
            Some(chosen) => still_free(input.snapshot, chosen, input.guards)?,
            None => select_nodes(
                &input.policy.target,
                input.snapshot,
                input.guards,
                Utc::now(),
                input.rng,
            )
            .into_chosen()?,
        };
        Ok(Box::new(DrainPlan {
            timeout,
            nodes: drain_plan(input.snapshot, nodes, input.guards),
        }))
    }
}

/// The nodes a drain cordons and the pods it evicts from them.
#[derive(Debug)]
pub struct DrainPlan {
    pub timeout: Duration,
    pub nodes: Vec<DrainTarget>,
}

/// The nodes of a drain plan (a drain's or a zone outage's), as the record names them.
pub(super) fn node_objects(nodes: &[DrainTarget]) -> Vec<ObjectRef> {
    nodes.iter().map(|t| node_object(&t.node.name)).collect()
}

fn node_object(name: &str) -> ObjectRef {
    ObjectRef {
        kind: "Node".into(),
        namespace: None,
        name: name.to_string(),
    }
}

/// What a drain plan takes while it runs: its nodes and the pods it evicts.
pub(super) fn node_claims(nodes: &[DrainTarget]) -> Vec<Claim> {
    nodes
        .iter()
        .flat_map(|t| {
            std::iter::once(Claim::Node(t.node.name.clone())).chain(t.evict.iter().map(Claim::pod))
        })
        .collect()
}

impl Planned for DrainPlan {
    fn objects(&self) -> Vec<ObjectRef> {
        node_objects(&self.nodes)
    }

    fn claims(&self) -> Vec<Claim> {
        node_claims(&self.nodes)
    }

    fn injection_time(&self) -> Duration {
        self.timeout
    }

    fn inject<'a>(&'a self, act: Act<'a>, i: usize) -> Step<'a, Injection> {
        Box::pin(inject(act, FAULT, &self.nodes[i], self.timeout))
    }
}
/// Pause between two eviction attempts that a PodDisruptionBudget refused.
const EVICTION_RETRY: Duration = Duration::from_secs(2);

/// What the drain did to the node's pods.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    pub evicted: Vec<String>,
    /// Still refused (by a PodDisruptionBudget, or an error) when the timeout passed, or
    /// not evicted because the drain was stopped.
    pub refused: Vec<(String, String)>,
}

impl Drained {
    fn describe(&self, kept: &[(PodInfo, &'static str)]) -> String {
        let mut s = format!("evicted {} pod(s)", self.evicted.len());
        if !self.refused.is_empty() {
            let r: Vec<String> = self
                .refused
                .iter()
                .map(|(p, why)| format!("{p} ({why})"))
                .collect();
            s.push_str(&format!("; not evicted: {}", r.join(", ")));
        }
        if !kept.is_empty() {
            let k: Vec<String> = kept
                .iter()
                .map(|(p, why)| format!("{}/{} ({why})", p.namespace, p.name))
                .collect();
            s.push_str(&format!("; kept by the guards: {}", k.join(", ")));
        }
        s
    }
}

/// Cordons the target's node, then evicts the pods the plan chose (the guards have
/// filtered DaemonSet, mirror, protected, paused and havoc's own pods out, and kept each
/// workload at `minAvailableReplicas`).
///
/// The cordon's revert record first gets a deadline that covers the evictions (`timeout`
/// more than the hold); when the evictions end, the deadline is set from then: a drain
/// that evicts for minutes is not orphaned before its hold has even begun.
pub async fn inject(
    act: Act<'_>,
    fault: &'static str,
    target: &DrainTarget,
    timeout: Duration,
) -> Result<Injection, FaultError> {
    let Act { m, stamp, dry_run } = act;
    let api: Api<Node> = Api::all(m.client().clone());
    let name = &target.node.name;
    let names: Vec<String> = target
        .evict
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    let change = format!(
        "cordon node {name} and evict {} pod(s){}",
        target.evict.len(),
        if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        }
    );
    let covering = stamp.deadline + chrono::Duration::from_std(timeout).unwrap_or_default();
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
        let mut record = stamp.record(fault, json!({"unschedulable": false}));
        record.deadline = covering;
        let patch = merge(record.annotate(), json!({"spec": {"unschedulable": true}}));
        patch_as_read(m, &api, &current, patch).await?;
        Ok(Ok(Some(record)))
    })
    .await?;
    let record = match cordoned {
        Err(why) => return Ok(Injection::skipped(why)),
        Ok(None) => {
            let mut dry = Injection::dry_run(change);
            if !target.kept.is_empty() {
                dry.detail = dry
                    .detail
                    .map(|d| format!("{d}; {}", Drained::default().describe(&target.kept)));
            }
            return Ok(dry);
        }
        Ok(Some(r)) => r,
    };
    let mut held = Held {
        object: node_object(name),
        record,
    };
    // Cordoned and recorded: from here on the node is held, whatever the evictions do.
    let drained = drain(m, &target.evict, timeout).await;
    if m.refusal().is_none() {
        let deadline = Utc::now() + stamp.hold;
        match restamp(m, name, &held.record, deadline).await {
            Ok(r) => held.record = r,
            // The record keeps its later deadline: reverted later, never earlier.
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "cannot move the drain's revert deadline; it keeps the one covering the evictions");
            }
        }
    }
    let mut injection = Injection::injected(change, held);
    injection.detail = Some(format!(
        "cordoned node {name}; {}",
        drained.describe(&target.kept)
    ));
    Ok(injection)
}

/// Rewrites the record on `node` with a new deadline, only if the record on the node is
/// still exactly `record` (a JSON patch `test`: node status updates in between do not
/// conflict, a record that changed or went away is never written back).
async fn restamp(
    m: &Mutator,
    node: &str,
    record: &RevertRecord,
    deadline: chrono::DateTime<Utc>,
) -> Result<RevertRecord, FaultError> {
    let api: Api<Node> = Api::all(m.client().clone());
    let mut next = record.clone();
    next.deadline = deadline;
    let path = format!(
        "/metadata/annotations/{}",
        REVERT_ANNOTATION.replace('/', "~1")
    );
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": path, "value": record.encode()},
        {"op": "replace", "path": path, "value": next.encode()},
    ]))
    .map_err(|e| FaultError::Invalid(e.to_string()))?;
    m.send(api.patch(node, &PatchParams::default(), &Patch::<()>::Json(ops)))
        .await?;
    Ok(next)
}

/// How many eviction requests of one drain are in flight at once. Each is a request of
/// its own on an HTTP/1.1 connection of its own (kube's client does not multiplex), so a
/// node of 110 pods evicted all at once opened 110 TLS connections to the API server in
/// one burst and kept them idle in the pool afterwards. Only the request holds a slot: a
/// pod a PodDisruptionBudget refused waits for its retry without one, so refused pods
/// never keep the others from being evicted.
pub const EVICTIONS_AT_ONCE: usize = 8;

/// Evicts every pod, retrying refusals until `timeout`; every pod is worked on at once,
/// at most [`EVICTIONS_AT_ONCE`] requests in flight. Stops at once (no further eviction
/// is sent) when the injection is interrupted or the fence lapses.
pub async fn drain(m: &Mutator, pods: &[PodInfo], timeout: Duration) -> Drained {
    let deadline = Instant::now() + timeout;
    let slots = tokio::sync::Semaphore::new(EVICTIONS_AT_ONCE);
    let evictions = pods.iter().map(|p| {
        let slots = &slots;
        async move {
            let api: Api<Pod> = Api::namespaced(m.client().clone(), &p.namespace);
            let name = format!("{}/{}", p.namespace, p.name);
            loop {
                let attempt = tokio::time::timeout_at(deadline, async {
                    // Never closed: a permit always comes.
                    let _slot = slots.acquire().await;
                    m.send(api.evict(&p.name, &EvictParams::default())).await
                })
                .await;
                let why = match attempt {
                    Ok(Ok(_)) => return Ok(name),
                    Ok(Err(FaultError::Api(kube::Error::Api(s)))) if s.code == 404 => {
                        return Ok(name);
                    }
                    Ok(Err(FaultError::Api(kube::Error::Api(s)))) if s.code == 429 => {
                        format!("refused by a PodDisruptionBudget: {}", s.message)
                    }
                    Ok(Err(FaultError::Api(e))) if super::is_transient(&e) => e.to_string(),
                    Ok(Err(FaultError::Timeout(_))) | Err(_) => "no answer".to_string(),
                    Ok(Err(e)) => return Err((name, e.to_string())),
                };
                if Instant::now() + EVICTION_RETRY >= deadline {
                    return Err((name, why));
                }
                if m.pause(EVICTION_RETRY).await {
                    return Err((name, FaultError::Cancelled.to_string()));
                }
            }
        }
    });
    let mut drained = Drained::default();
    let results = futures::future::join_all(evictions).await;
    for r in results {
        match r {
            Ok(n) => drained.evicted.push(n),
            Err(e) => drained.refused.push(e),
        }
    }
    drained
}

/// Uncordons the node if havoc's record is still on it.
pub async fn revert(m: &Mutator, held: &Held) -> Result<Reverted, FaultError> {
    let api: Api<Node> = Api::all(m.client().clone());
    let name = &held.object.name;
    with_conflict_retries(|| async {
        let Some(current) = bounded(api.get_opt(name)).await? else {
            return Ok(Reverted::Gone);
        };
        if let Err(why) = still_ours(&current, &held.record) {
            return Ok(Reverted::NotOurs(why.to_string()));
        }
        if current.spec.as_ref().and_then(|s| s.unschedulable) != Some(true) {
            patch_as_read(m, &api, &current, clear_annotation()).await?;
            return Ok(Reverted::LeftAsIs(
                "someone else uncordoned the node during the experiment".into(),
            ));
        }
        let patch = merge(
            clear_annotation(),
            json!({"spec": {"unschedulable": false}}),
        );
        patch_as_read(m, &api, &current, patch).await?;
        tracing::info!(node = %name, "node uncordoned");
        Ok(Reverted::Restored)
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use kube::{Client, client::Body};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::leader::Leadership;

    fn pod(i: usize) -> PodInfo {
        PodInfo {
            namespace: "shop".into(),
            name: format!("web-{i}"),
            labels: Default::default(),
            created: Utc::now(),
            running: true,
            terminating: false,
            ready: true,
            owner: None,
            node: Some("n1".into()),
            mirror: false,
        }
    }

    /// An API server (kube's mock-service pattern) that answers each eviction after a
    /// little while, refusing the pods `refused` names as a PodDisruptionBudget does (429).
    struct Server {
        client: Client,
        /// The most evictions it had in flight at once.
        most: Arc<AtomicUsize>,
        /// Evictions answered.
        served: Arc<AtomicUsize>,
        /// When it last accepted one.
        last_ok: Arc<Mutex<Option<Instant>>>,
    }

    fn server(refused: fn(&str) -> bool) -> Server {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let last_ok = Arc::new(Mutex::new(None));
        let (now, max, count, ok) = (
            in_flight.clone(),
            most.clone(),
            served.clone(),
            last_ok.clone(),
        );
        let svc = tower::service_fn(move |req: http::Request<Body>| {
            let (now, max, count, ok) = (now.clone(), max.clone(), count.clone(), ok.clone());
            async move {
                let path = req.uri().path().to_string();
                assert!(path.ends_with("/eviction"), "{path}");
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                count.fetch_add(1, Ordering::SeqCst);
                let pod = path.trim_end_matches("/eviction").rsplit('/').next();
                let (code, status) = if pod.is_some_and(refused) {
                    (
                        429,
                        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"TooManyRequests","message":"Cannot evict pod as it would violate the pod's disruption budget.","code":429}"#,
                    )
                } else {
                    *ok.lock().expect("lock") = Some(Instant::now());
                    (
                        201,
                        r#"{"kind":"Status","apiVersion":"v1","status":"Success","code":201}"#,
                    )
                };
                http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(status.as_bytes().to_vec()))
                    .map_err(|e| e.to_string())
            }
        });
        Server {
            client: Client::new(svc, "default"),
            most,
            served,
            last_ok,
        }
    }

    fn none(_: &str) -> bool {
        false
    }

    #[tokio::test]
    async fn a_full_node_is_evicted_a_few_pods_at_a_time_in_order() {
        let s = server(none);
        let pods: Vec<PodInfo> = (0..30).map(pod).collect();
        let drained = drain(&Mutator::unfenced(s.client), &pods, Duration::from_secs(30)).await;
        assert!(drained.refused.is_empty(), "{drained:?}");
        let names: Vec<String> = pods.iter().map(|p| format!("shop/{}", p.name)).collect();
        assert_eq!(drained.evicted, names);
        assert_eq!(s.served.load(Ordering::SeqCst), 30);
        let most = s.most.load(Ordering::SeqCst);
        assert!(
            (2..=EVICTIONS_AT_ONCE).contains(&most),
            "at most {most} evictions in flight"
        );
    }

    #[tokio::test]
    async fn an_interrupted_drain_sends_no_further_eviction() {
        let s = server(none);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let m = Mutator::new(s.client, Leadership::always(), cancel);
        let drained = drain(
            &m,
            &(0..20).map(pod).collect::<Vec<_>>(),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(s.served.load(Ordering::SeqCst), 0);
        assert!(drained.evicted.is_empty());
        assert_eq!(drained.refused.len(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn pods_a_budget_refuses_do_not_keep_the_others_from_being_evicted() {
        // Ten pods refused until the timeout, more than there are slots: the other ten
        // are still evicted, and at once, not when the refused ones give up.
        fn first_ten(pod: &str) -> bool {
            pod.trim_start_matches("web-")
                .parse::<usize>()
                .is_ok_and(|i| i < 10)
        }
        let s = server(first_ten);
        let pods: Vec<PodInfo> = (0..20).map(pod).collect();
        let started = Instant::now();
        let drained = drain(&Mutator::unfenced(s.client), &pods, Duration::from_secs(60)).await;
        let last_ok = s.last_ok.lock().expect("lock").expect("evictions accepted");
        assert!(
            last_ok - started < Duration::from_secs(1),
            "the last eviction was accepted after {:?}",
            last_ok - started
        );
        let evicted: Vec<String> = (10..20).map(|i| format!("shop/web-{i}")).collect();
        assert_eq!(drained.evicted, evicted);
        assert_eq!(drained.refused.len(), 10);
        for (name, why) in &drained.refused {
            assert!(
                why.starts_with("refused by a PodDisruptionBudget"),
                "{name}: {why}"
            );
        }
        assert!(s.most.load(Ordering::SeqCst) <= EVICTIONS_AT_ONCE);
    }
}
