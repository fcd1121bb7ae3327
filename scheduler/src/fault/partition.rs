//! `networkPartition {direction}`: cuts a workload's pods off the network with a
//! NetworkPolicy that havoc owns — named after the experiment, labelled
//! `app.kubernetes.io/managed-by: havoc` and `havoc.dev/experiment`, its revert record
//! (with the deadline) in an annotation — selecting the pods by the workload's own pod
//! selector, with no allow rule for the blocked direction(s). The revert deletes it.
//! Nothing of the user's is changed.
//!
//! RBAC: `create`, `delete` (and `get`/`list`/`watch` for recovery) on `networkpolicies`.

use std::collections::BTreeMap;

use chrono::Utc;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, PostParams, Preconditions},
};
use schemars::JsonSchema;
use serde_json::json;

use super::{
    Act, FaultError, FaultKind, Held, Injection, Mutator, Plan, PlanInput, Planned, Reverted, Step,
    access::{FaultAccess, rule},
    bounded,
    revert::{REVERT_ANNOTATION, REVERT_LABEL, Stamp, object_name, record_of, still_ours},
};
use crate::{
    labels::{EXPERIMENT_LABEL, MANAGED_BY},
    policy::{Policy, domain::Direction, domain::Fault},
    record::ObjectRef,
    targets::{
        WorkloadInfo,
        scope::{Namespaces, Needs},
        select_partitions,
    },
};

pub const FAULT: &str = "networkPartition";

/// `networkPartition`.
#[derive(Debug)]
pub struct Partition;

/// What a partition's revert record keeps.
#[derive(Debug, JsonSchema)]
#[allow(dead_code)] // the schema's shape; the record is written with `json!`
struct Original {
    /// The workload whose pods the NetworkPolicy cuts off (the revert deletes the policy).
    workload: ObjectRef,
}

impl FaultKind for Partition {
    fn name(&self) -> &'static str {
        FAULT
    }

    fn access(&self) -> FaultAccess {
        FaultAccess {
            namespaced: vec![rule(
                &["networking.k8s.io"],
                &["networkpolicies"],
                &["create", "delete"],
                "networkPartition: havoc's own NetworkPolicy, carrying its revert record",
            )],
            ..FaultAccess::default()
        }
    }

    reversible!(records on NetworkPolicy; reverted by revert; original Original);

    /// A partition selects pods (and havoc's own, never cut off), then their workload.
    fn needs(&self, policy: &Policy, own_namespace: &str) -> Needs {
        let target = Namespaces::of(&policy.target.namespaces);
        Needs {
            pods: Some(target.clone().with(own_namespace)),
            workloads: Some(target),
            ..Needs::default()
        }
    }

    fn plan(&self, input: PlanInput<'_>) -> Plan {
        let Fault::NetworkPartition { direction } = input.policy.fault else {
            return Err(super::not_mine(self, input.policy));
        };
        let sel = select_partitions(
            &input.policy.target,
            input.snapshot,
            input.guards,
            Utc::now(),
            input.rng,
        );
        Ok(Box::new(PartitionPlan {
            direction,
            workloads: sel.into_chosen()?,
        }))
    }
}

/// The workloads a partition cuts off.
#[derive(Debug)]
struct PartitionPlan {
    direction: Direction,
    workloads: Vec<WorkloadInfo>,
}

impl Planned for PartitionPlan {
    fn objects(&self) -> Vec<ObjectRef> {
        self.workloads.iter().map(WorkloadInfo::object).collect()
    }

    fn inject<'a>(&'a self, act: Act<'a>, i: usize) -> Step<'a, Injection> {
        Box::pin(inject(act, &self.workloads[i], self.direction))
    }
}

fn policy_types(d: Direction) -> &'static [&'static str] {
    match d {
        Direction::Ingress => &["Ingress"],
        Direction::Egress => &["Egress"],
        Direction::Both => &["Ingress", "Egress"],
    }
}

/// A label value for an experiment id (at most 63 characters).
pub fn experiment_label(id: &str) -> String {
    object_name("e", id).trim_start_matches("e-").to_string()
}

/// The NetworkPolicy that partitions `target`.
pub fn network_policy(
    target: &WorkloadInfo,
    selector: &BTreeMap<String, String>,
    direction: Direction,
    stamp: &Stamp,
) -> Result<NetworkPolicy, FaultError> {
    let record = stamp.record(FAULT, json!({"workload": target.object()}));
    serde_json::from_value(json!({
        "metadata": {
            "name": object_name("havoc", &stamp.experiment),
            "namespace": target.namespace,
            "labels": {
                MANAGED_BY.0: MANAGED_BY.1,
                EXPERIMENT_LABEL: experiment_label(&stamp.experiment),
                REVERT_LABEL.0: REVERT_LABEL.1,
            },
            "annotations": {REVERT_ANNOTATION: record.encode()},
        },
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": policy_types(direction),
            // No rule for a listed direction: nothing is allowed in (or out).
        }
    }))
    .map_err(|e| FaultError::Invalid(e.to_string()))
}

/// Creates the partition (or, in a dry run, says exactly which one it would create).
pub async fn inject(
    act: Act<'_>,
    target: &WorkloadInfo,
    direction: Direction,
) -> Result<Injection, FaultError> {
    let Act { m, stamp, dry_run } = act;
    let Some(selector) = &target.selector else {
        return Ok(Injection::skipped(
            "the workload's pod selector uses expressions",
        ));
    };
    let np = network_policy(target, selector, direction, stamp)?;
    let name = np.name_any();
    let sel: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let change = format!(
        "create NetworkPolicy {}/{name} denying {} of the pods {} ({} {}/{})",
        target.namespace,
        policy_types(direction).join("+").to_lowercase(),
        sel.join(","),
        target.kind,
        target.namespace,
        target.name
    );
    if dry_run {
        return Ok(Injection::dry_run(change));
    }
    let api: Api<NetworkPolicy> = Api::namespaced(m.client().clone(), &target.namespace);
    let Some(Ok(record)) = record_of(&np) else {
        return Err(FaultError::Invalid("no record on the NetworkPolicy".into()));
    };
    match m.send(api.create(&PostParams::default(), &np)).await {
        Ok(_) => {}
        // Ours already (a retried request that did arrive): fine; anyone else's: an error.
        Err(FaultError::Api(kube::Error::Api(s))) if s.code == 409 => {
            let existing = bounded(api.get(&name)).await?;
            if still_ours(&existing, &record).is_err() {
                return Err(FaultError::Invalid(format!(
                    "a NetworkPolicy {name} that is not this experiment's exists"
                )));
            }
        }
        Err(e) => return Err(e),
    }
    Ok(Injection::injected(
        change,
        Held {
            object: ObjectRef::namespaced("NetworkPolicy", &target.namespace, &name),
            record,
        },
    ))
}

/// Deletes the NetworkPolicy if it is still this experiment's.
pub async fn revert(m: &Mutator, held: &Held) -> Result<Reverted, FaultError> {
    let ns = held.object.namespace.as_deref().unwrap_or_default();
    let api: Api<NetworkPolicy> = Api::namespaced(m.client().clone(), ns);
    let name = &held.object.name;
    let Some(current) = bounded(api.get_opt(name)).await? else {
        return Ok(Reverted::Gone);
    };
    if let Err(why) = still_ours(&current, &held.record) {
        return Ok(Reverted::NotOurs(why.to_string()));
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: current.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match m.send(api.delete(name, &dp)).await {
        Ok(_) => {}
        Err(e) if super::is_not_found(&e) => return Ok(Reverted::Gone),
        Err(e) => return Err(e),
    }
    tracing::info!(networkpolicy = %name, namespace = %ns, "partition removed");
    Ok(Reverted::Restored)
}
