//! `scale {replicas}`: sets a Deployment's or StatefulSet's replica count for the hold.
//!
//! The original count goes into the revert record in the same merge patch as the change
//! (resourceVersion precondition), so a crash never loses it. The revert restores it only
//! if the count is still the one havoc set: if someone changed it meanwhile (a person, a
//! pipeline), havoc does not fight — it removes its record and says so. Workloads scaled
//! by a HorizontalPodAutoscaler are never chosen (selection skips them).
//!
//! A StatefulSet whose `persistentVolumeClaimRetentionPolicy.whenScaled` is `Delete` loses
//! the PersistentVolumeClaims of the ordinals it scales away: scaling back up gives empty
//! volumes. havoc never scales such a StatefulSet below its current replicas unless the
//! policy says `allowVolumeDeletion: true` (selection skips it with the reason code
//! `wouldDeleteVolumes`; the injection checks the live object again).
//!
//! RBAC: `patch` on `deployments` / `statefulsets` (not the `/scale` subresource, which
//! cannot carry the record in the same request).

use chrono::Utc;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject},
};
use schemars::JsonSchema;
use serde_json::json;

use super::{
    Act, FaultError, FaultKind, Held, Injection, Mutator, Plan, PlanInput, Planned, Reverted, Step,
    access::{FaultAccess, Rule, rule},
    bounded,
    revert::patch_as_read,
    revert::{clear_annotation, merge, record_of, still_ours},
    with_conflict_retries,
};
pub use crate::targets::deletes_volumes_when_scaled;
use crate::{
    policy::{Policy, domain::Fault, domain::TargetKind},
    record::{ObjectRef, SkipReason},
    targets::{
        ScaleGuard, WorkloadInfo,
        scope::{Namespaces, Needs},
        select::VOLUME_LOSS,
        select_workloads,
    },
};

pub const FAULT: &str = "scale";

/// `scale`.
#[derive(Debug)]
pub struct Scale;

/// What a scale's revert record keeps.
#[derive(Debug, JsonSchema)]
#[allow(dead_code)] // the schema's shape; the record is written with `json!`
struct Original {
    /// The replica count before the fault: what the revert restores.
    replicas: i64,
    /// The count havoc set: restored only if it is still this one.
    set: i64,
}

impl FaultKind for Scale {
    fn name(&self) -> &'static str {
        FAULT
    }

    fn access(&self) -> FaultAccess {
        // The replica count and the revert record go in one patch of the workload itself
        // (the scale subresource cannot carry an annotation).
        let patch = |resource, kind| Rule {
            for_kind: Some(kind),
            ..rule(
                &["apps"],
                &[resource],
                &["patch"],
                "scale: the replica count and the revert record in one patch",
            )
        };
        FaultAccess {
            namespaced: vec![
                patch("deployments", TargetKind::Deployment),
                patch("statefulsets", TargetKind::StatefulSet),
            ],
            reads: vec![rule(
                &["autoscaling"],
                &["horizontalpodautoscalers"],
                &["get", "list", "watch"],
                "scale: workloads managed by a HorizontalPodAutoscaler are skipped",
            )],
            ..FaultAccess::default()
        }
    }

    reversible!(records on Deployment, StatefulSet; reverted by revert; original Original);

    /// The workloads and their autoscalers in the policy's namespaces; havoc's own pods
    /// (never havoc's own workload: its pods tell which one that is).
    fn needs(&self, policy: &Policy, own_namespace: &str) -> Needs {
        let target = Namespaces::of(&policy.target.namespaces);
        Needs {
            pods: Some(Namespaces::names([own_namespace])),
            workloads: Some(target.clone()),
            autoscalers: Some(target),
            ..Needs::default()
        }
    }

    fn plan(&self, input: PlanInput<'_>) -> Plan {
        let Fault::Scale {
            replicas,
            allow_volume_deletion,
        } = input.policy.fault
        else {
            return Err(super::not_mine(self, input.policy));
        };
        let guard = ScaleGuard {
            set: replicas,
            allow_volume_deletion,
        };
        let sel = select_workloads(
            &input.policy.target,
            input.snapshot,
            input.guards,
            guard,
            Utc::now(),
            input.rng,
        );
        if sel.chosen.is_empty() && sel.dropped.contains_key(VOLUME_LOSS) {
            // Its own reason code: the data-loss guard, not an empty cluster.
            return Err(SkipReason::WouldDeleteVolumes(sel.why_empty()));
        }
        Ok(Box::new(ScalePlan {
            replicas,
            allow_volume_deletion,
            workloads: sel.into_chosen()?,
        }))
    }
}

/// The workloads a scale sets, and to what.
#[derive(Debug)]
struct ScalePlan {
    replicas: u32,
    allow_volume_deletion: bool,
    workloads: Vec<WorkloadInfo>,
}

impl Planned for ScalePlan {
    fn objects(&self) -> Vec<ObjectRef> {
        self.workloads.iter().map(WorkloadInfo::object).collect()
    }

    fn inject<'a>(&'a self, act: Act<'a>, i: usize) -> Step<'a, Injection> {
        Box::pin(inject(
            act,
            &self.workloads[i],
            self.replicas,
            self.allow_volume_deletion,
        ))
    }
}

fn resource(kind: &str) -> Result<ApiResource, FaultError> {
    crate::kinds::Kind::named(kind)
        .filter(|k| k.api.group == "apps" && k.api.kind != "DaemonSet")
        .map(|k| k.api)
        .ok_or_else(|| FaultError::Invalid(format!("cannot scale a {kind}")))
}

fn api(client: &Client, object: &ObjectRef) -> Result<Api<DynamicObject>, FaultError> {
    let ar = resource(&object.kind)?;
    let ns = object.namespace.as_deref().unwrap_or_default();
    Ok(Api::namespaced_with(client.clone(), ns, &ar))
}

fn replicas(o: &DynamicObject) -> i64 {
    o.data["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// Why a StatefulSet may not be scaled down to `set`: it would delete volumes.
pub const VOLUME_LOSS_AT_INJECTION: &str = "scaling it down would delete the PersistentVolumeClaims of the ordinals scaled away (persistentVolumeClaimRetentionPolicy.whenScaled: Delete); the policy does not allow volume deletion";

/// Scales `target` to `set` replicas (or, in a dry run, says exactly what it would do).
/// `allow_volume_deletion`: the policy accepts that a StatefulSet with `whenScaled:
/// Delete` loses the volumes of the ordinals scaled away.
pub async fn inject(
    act: Act<'_>,
    target: &WorkloadInfo,
    set: u32,
    allow_volume_deletion: bool,
) -> Result<Injection, FaultError> {
    let Act { m, stamp, dry_run } = act;
    let object = target.object();
    let api = api(m.client(), &object)?;
    let name = &object.name;
    with_conflict_retries(|| async {
        let Some(current) = bounded(api.get_opt(name)).await? else {
            return Ok(Injection::skipped("the workload is gone"));
        };
        if record_of(&current).is_some() {
            return Ok(Injection::skipped("it already holds a havoc revert record"));
        }
        let was = replicas(&current);
        if was == i64::from(set) {
            return Ok(Injection::skipped(format!("already at {set} replicas")));
        }
        if i64::from(set) < was
            && !allow_volume_deletion
            && object.kind == "StatefulSet"
            && deletes_volumes_when_scaled(&current.data["spec"])
        {
            return Ok(Injection::skipped(VOLUME_LOSS_AT_INJECTION));
        }
        let change = format!(
            "scale {} {}/{} from {was} to {set} replicas",
            object.kind, target.namespace, name
        );
        if dry_run {
            return Ok(Injection::dry_run(change));
        }
        let record = stamp.record(FAULT, json!({"replicas": was, "set": set}));
        let patch = merge(record.annotate(), json!({"spec": {"replicas": set}}));
        patch_as_read(m, &api, &current, patch).await?;
        Ok(Injection::injected(
            change,
            Held::new(object.clone(), record),
        ))
    })
    .await
}

/// Restores the original count if the count is still the one havoc set.
pub async fn revert(m: &Mutator, held: &Held) -> Result<Reverted, FaultError> {
    let api = api(m.client(), &held.object)?;
    let name = &held.object.name;
    with_conflict_retries(|| async {
        let Some(current) = bounded(api.get_opt(name)).await? else {
            return Ok(Reverted::Gone);
        };
        let record = match still_ours(&current, &held.record) {
            Ok(r) => r,
            Err(why) => return Ok(Reverted::NotOurs(why.to_string())),
        };
        let (was, set) = (
            record.original["replicas"].as_i64().unwrap_or(1),
            record.original["set"].as_i64(),
        );
        let now = replicas(&current);
        if set != Some(now) {
            patch_as_read(m, &api, &current, clear_annotation()).await?;
            return Ok(Reverted::LeftAsIs(format!(
                "replicas were changed by someone else to {now} during the experiment; left as is (havoc set {}, the original was {was})",
                set.map_or("?".to_string(), |s| s.to_string())
            )));
        }
        let patch = merge(clear_annotation(), json!({"spec": {"replicas": was}}));
        patch_as_read(m, &api, &current, patch).await?;
        tracing::info!(workload = ?held.object, replicas = was, "scale reverted");
        Ok(Reverted::Restored)
    })
    .await
}
