//! Reverting what an experiment holds: each change retried with backoff through the
//! experiment's fence, the result on its target, and the rule that a failed revert wins
//! over every other conclusion.

use std::time::Duration;

use chrono::Utc;

use super::Env;
use crate::{
    engine::{metrics::Metrics, verdict::Conclusion},
    fault::{FaultError, Held, Mutator, Reverted},
    record::{ExperimentRecord, RevertResult, TargetRevert},
};

/// How often a held change's revert is tried within the experiment (1 s, 2 s, 4 s
/// apart); after that the recovery sweep keeps trying.
const REVERT_ATTEMPTS: u32 = 4;

/// Reverts one held change through `m`, retrying transient failures with backoff; never
/// gives up early on shutdown. Not retried: a refusal for lack of permission
/// (`forbidden`: reported, the sweep tries again rarely), and a lapsed fence
/// (`handedOver`: the next leader reverts it).
pub async fn revert_with_retries(
    m: &Mutator,
    metrics: Option<&Metrics>,
    held: &Held,
) -> TargetRevert {
    let mut delay = Duration::from_secs(1);
    let mut attempt = 0;
    let (result, detail) = loop {
        attempt += 1;
        match crate::fault::revert(m, held)
            .await
            .map_err(|e| m.or_fenced(e))
        {
            Ok(r) => break (revert_result(&r), r.detail().map(str::to_string)),
            Err(e @ FaultError::Fenced) => {
                tracing::warn!(object = ?held.object, "revert not sent: this replica is no longer the leader; the next leader reverts it");
                break (RevertResult::HandedOver, Some(e.to_string()));
            }
            Err(e) if e.is_forbidden() => {
                tracing::error!(object = ?held.object, error = %e, "revert refused by the API server (RBAC): havoc may no longer undo this change; run `havoc revert --all` with enough permissions, or give havoc's ServiceAccount its revert permissions back");
                break (
                    RevertResult::Forbidden,
                    Some(format!("forbidden by the API server (RBAC): {e}")),
                );
            }
            Err(e) if attempt < REVERT_ATTEMPTS => {
                tracing::warn!(object = ?held.object, attempt, error = %e, "revert failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::error!(object = ?held.object, error = %e, "revert failed; the recovery sweep keeps trying");
                break (RevertResult::Failed, Some(e.to_string()));
            }
        }
    };
    if let Some(m) = metrics {
        m.revert(result);
    }
    TargetRevert {
        result,
        object: held.object.clone(),
        detail,
        at: Utc::now(),
    }
}

/// The record's name for what a revert did.
pub fn revert_result(r: &Reverted) -> RevertResult {
    match r {
        Reverted::Restored => RevertResult::Restored,
        Reverted::Gone => RevertResult::Gone,
        Reverted::NotOurs(_) => RevertResult::NotOurs,
        Reverted::LeftAsIs(_) => RevertResult::LeftAsIs,
    }
}

/// Reverts every held change (through the experiment's fence, not its interruption) and
/// notes the result on its target.
pub async fn revert_all(
    env: &Env,
    m: &Mutator,
    record: &mut ExperimentRecord,
    held: &[(usize, Held)],
) {
    let m = m.for_revert();
    let reverts = held
        .iter()
        .map(|(_, h)| revert_with_retries(&m, env.metrics.as_ref(), h));
    let results = futures::future::join_all(reverts).await;
    for ((i, _), r) in held.iter().zip(results) {
        record.targets[*i].revert = Some(r);
    }
}

/// A failed revert wins over every other conclusion.
pub fn conclude_reverts(record: &mut ExperimentRecord, conclusion: Conclusion) -> Conclusion {
    let failed: Vec<String> = record
        .targets
        .iter()
        .filter_map(|t| t.revert.as_ref())
        .filter(|r| r.result.is_failure())
        .map(|r| {
            format!(
                "{} {}: {}",
                r.object.kind,
                r.object.name,
                r.detail.as_deref().unwrap_or("failed")
            )
        })
        .collect();
    if failed.is_empty() {
        conclusion
    } else {
        Conclusion::RollbackFailed(format!("revert failed: {}", failed.join("; ")))
    }
}
