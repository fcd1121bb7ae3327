//! Emitting here: records through the shared [`crate::engine::emit::Emitter`],
//! notifications queued per receiver, breakers tripped; and the records of experiments a
//! crash cut short.

use super::Arbiter;
use crate::{
    engine::emit::interrupted_record,
    journal::Intent,
    policy::Policy,
    record::{ExperimentRecord, TargetRevert},
};

impl Arbiter {
    /// The final record of an experiment a crash cut short (its intent was journaled,
    /// its record never was), after recovery reverted what it had left.
    pub fn close_interrupted(
        &self,
        intent: &Intent,
        policy: Option<&Policy>,
        reverts: &[&TargetRevert],
    ) {
        self.emit(policy, interrupted_record(intent, reverts));
    }

    /// Journal, metrics, Events and the annotation's end ([`crate::engine::emit`]), then
    /// the circuit breaker (obeyed at once) and notifications (in the background).
    pub(super) fn emit(&self, policy: Option<&Policy>, record: ExperimentRecord) {
        let emitted = self.emitter.emit(policy, &record);
        if let Some(b) = emitted.breaker {
            self.trip(b);
        }
        if !emitted.receivers.is_empty() {
            self.queues.enqueue(&emitted.receivers, record);
        }
    }
}
