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
    targets::{Claim, Guards, NodeInfo, Snapshot},
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
    /// The nodes `fault` would empty ([`FaultKind::choose_nodes`]), chosen with the
    /// others' claims marked; nothing is claimed yet (their pods are read first, then
    /// [`Claims::choose`] plans with them and claims).
    pub fn choose_nodes(
        &self,
        fault: &dyn FaultKind,
        policy: &Policy,
        snapshot: &mut Snapshot,
        guards: &Guards,
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Vec<NodeInfo>>, SkipReason> {
        let set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Claim::mark(&set, snapshot);
        fault.choose_nodes(PlanInput {
            policy,
            snapshot,
            guards,
            rng,
            nodes: None,
        })
    }

    /// Chooses `fault`'s plan with the others' claims marked in the snapshot (their pods
    /// gone, their nodes cordoned), and claims what this plan takes, atomically. `nodes`:
    /// what [`Claims::choose_nodes`] chose.
    pub fn choose(
        &self,
        fault: &dyn FaultKind,
        policy: &Policy,
        snapshot: &mut Snapshot,
        guards: &Guards,
        rng: &mut ChaCha8Rng,
        nodes: Option<&[NodeInfo]>,
    ) -> Result<(Box<dyn Planned>, Claimed), SkipReason> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Claim::mark(&set, snapshot);
        let plan = fault.plan(PlanInput {
            policy,
            snapshot,
            guards,
            rng,
            nodes,
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
