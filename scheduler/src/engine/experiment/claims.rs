//! What running experiments of this process have taken ([`Claim`]s): chosen and claimed
//! under one lock, released when the experiment ends (by which time the watches know).

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use rand_chacha::ChaCha8Rng;

use crate::fault::PlanInput;
use crate::{
    fault::{FaultKind, Planned},
    policy::Policy,
    record::SkipReason,
    targets::{Claim, Guards, Snapshot},
};

/// The claims of the experiments running in this process. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Claims(Arc<Mutex<BTreeSet<Claim>>>);

/// Releases an experiment's claims when dropped (also on an early return or a panic).
#[derive(Debug)]
pub struct Claimed {
    claims: Claims,
    keys: Vec<Claim>,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        let mut set = self.claims.0.lock().unwrap_or_else(|e| e.into_inner());
        for k in &self.keys {
            set.remove(k);
        }
    }
}

impl Claims {
    /// Chooses `fault`'s plan with the others' claims marked in the snapshot (their pods
    /// gone, their nodes cordoned), and claims what this plan takes, atomically.
    pub fn choose(
        &self,
        fault: &dyn FaultKind,
        policy: &Policy,
        snapshot: &mut Snapshot,
        guards: &Guards,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Box<dyn Planned>, Claimed), SkipReason> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Claim::mark(&set, snapshot);
        let plan = fault.plan(PlanInput {
            policy,
            snapshot,
            guards,
            rng,
        })?;
        let keys = plan.claims();
        set.extend(keys.iter().cloned());
        Ok((
            plan,
            Claimed {
                claims: self.clone(),
                keys,
            },
        ))
    }
}
