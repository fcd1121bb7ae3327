//! Injecting a plan, target by target: each target's record, what is held, and why the
//! injection ended early if it did.

use crate::{
    fault::{FaultError, Held, Injection, Mutator, Planned, revert::Stamp},
    policy::Policy,
    record::{ErrorReason, TargetOutcome, TargetRecord},
};

/// Injects into target `i` of the plan: the record of that target, and what is held.
async fn inject_one(
    m: &Mutator,
    plan: &dyn Planned,
    i: usize,
    stamp: &Stamp,
    dry_run: bool,
) -> (TargetRecord, Result<Option<Held>, FaultError>) {
    let object = plan.objects().swap_remove(i);
    let mut record = TargetRecord {
        kind: object.kind,
        namespace: object.namespace,
        name: object.name,
        outcome: TargetOutcome::Skipped,
        detail: None,
        revert: None,
    };
    let result: Result<Injection, FaultError> = plan.inject(m, i, stamp, dry_run).await;
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
pub async fn inject_all(
    m: &Mutator,
    policy: &Policy,
    plan: &dyn Planned,
    stamp: &Stamp,
    dry_run: bool,
) -> Injected {
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
                out.targets.push(TargetRecord {
                    kind: o.kind.clone(),
                    namespace: o.namespace.clone(),
                    name: o.name.clone(),
                    outcome: TargetOutcome::Skipped,
                    detail: Some(format!("not attempted: {stop}")),
                    revert: None,
                });
            }
            break;
        }
        if out.failure.is_some() {
            break;
        }
        let (target, result) = inject_one(m, plan, i, stamp, dry_run).await;
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
