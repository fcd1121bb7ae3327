//! Injecting a plan, target by target: each target's record, what is held, and why the
//! injection ended early if it did.

use crate::{
    fault::{Act, FaultError, Held, Injection, Planned},
    policy::Policy,
    record::{ErrorReason, ObjectRef, TargetOutcome, TargetRecord},
};

/// Injects into target `i` of the plan: the record of that target, and what is held.
async fn inject_one(
    act: Act<'_>,
    plan: &dyn Planned,
    i: usize,
) -> (TargetRecord, Result<Option<Held>, FaultError>) {
    let mut record = skipped(&plan.objects()[i], None);
    let result: Result<Injection, FaultError> =
        plan.inject(act, i).await.map_err(|e| act.m.or_fenced(e));
    match result {
        Ok(inj) => {
            let (outcome, why) = inj.outcome.target();
            record.outcome = outcome;
            record.detail = why.or(inj.detail);
            (record, Ok(inj.held))
        }
        // Not sent: the experiment was stopped or this replica was demoted.
        Err(e @ (FaultError::Cancelled | FaultError::Fenced)) => {
            record.detail = Some(e.to_string());
            (record, Err(e))
        }
        Err(e) => {
            record.outcome = TargetOutcome::Errored;
            record.detail = Some(e.to_string());
            (record, Err(e))
        }
    }
}

/// The record of a target before (or without) its injection.
fn skipped(object: &ObjectRef, detail: Option<String>) -> TargetRecord {
    TargetRecord {
        kind: object.kind.clone(),
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        outcome: TargetOutcome::Skipped,
        detail,
        revert: None,
    }
}

/// What the injection did: a record per target (in plan order), what is held, and why
/// it ended early, if it did.
#[derive(Debug, Default)]
pub struct Injected {
    pub targets: Vec<TargetRecord>,
    /// Index into `targets`, and the change.
    pub held: Vec<(usize, Held)>,
    pub failure: Option<ErrorReason>,
}

/// Injects into every target of the plan, one after the other. Stops at the first error;
/// stops without an error when `m` is interrupted (the caller knows why) — the targets
/// not reached are recorded as skipped, so the record names every planned target.
pub async fn inject_all(act: Act<'_>, policy: &Policy, plan: &dyn Planned) -> Injected {
    let Act { m, dry_run, .. } = act;
    let mut out = Injected::default();
    let planned = plan.objects();
    for i in 0..planned.len() {
        if let Some(stop) = out.failure.is_none().then(|| m.refusal()).flatten()
            && !dry_run
        {
            if matches!(stop, FaultError::Fenced) {
                out.failure = Some(ErrorReason::Demoted);
            }
            for o in &planned[i..] {
                out.targets
                    .push(skipped(o, Some(format!("not attempted: {stop}"))));
            }
            break;
        }
        if out.failure.is_some() {
            break;
        }
        let (target, result) = inject_one(act, plan, i).await;
        let label = format!(
            "{} {}/{}",
            policy.fault.name(),
            target.namespace.as_deref().unwrap_or("-"),
            target.name
        );
        out.targets.push(target);
        match result {
            Ok(Some(h)) => out.held.push((out.targets.len() - 1, h)),
            Ok(None) | Err(FaultError::Cancelled) => {}
            Err(FaultError::Fenced) => out.failure = Some(ErrorReason::Demoted),
            Err(e) => out.failure = Some(ErrorReason::Injection(format!("{label}: {e}"))),
        }
    }
    out
}
