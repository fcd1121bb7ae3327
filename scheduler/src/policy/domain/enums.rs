//! The domain's own enums. The wire model ([`crate::policy::model`]) has its twins, with
//! serde and JSON Schema attributes; validation converts each into these, and nothing
//! outside `policy/` names the wire ones. Each conversion is an exhaustive `match`
//! generated below: a variant added to the wire model without its domain twin does not
//! compile.

use std::fmt;

use crate::policy::model;

/// Declares a domain enum and its conversion from the wire enum of the same name.
macro_rules! domain_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),*
        }

        impl From<model::$name> for $name {
            fn from(wire: model::$name) -> Self {
                match wire {
                    $(model::$name::$variant => Self::$variant),*
                }
            }
        }
    };
}

domain_enum! {
    /// The kind of object a policy's target selects.
    TargetKind { Pod, Node, Deployment, StatefulSet, VirtualService }
}

domain_enum! {
    /// A workload kind whose rollouts trigger experiments.
    WorkloadKind { Deployment, StatefulSet, DaemonSet }
}

domain_enum! {
    /// Which traffic a network partition cuts.
    Direction { Ingress, Egress, Both }
}

domain_enum! {
    /// An outcome notifications and verdict Events can be asked for.
    /// `Interrupted`: cut short by havoc's own shutdown or an emergency stop, faults
    /// reverted cleanly (opt-in: not a failure of the system under test).
    NotifyOn { Started, Passed, Deviated, Skipped, Errored, RollbackFailed, Interrupted }
}

domain_enum! {
    /// What a deviated verdict does to further experiments.
    OnDeviation { Continue, PausePolicy, PauseAll }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_variants_convert_to_their_twins() {
        for k in [
            model::TargetKind::Pod,
            model::TargetKind::Node,
            model::TargetKind::Deployment,
            model::TargetKind::StatefulSet,
            model::TargetKind::VirtualService,
        ] {
            assert_eq!(TargetKind::from(k).to_string(), k.to_string());
        }
        assert_eq!(
            NotifyOn::from(model::NotifyOn::RollbackFailed),
            NotifyOn::RollbackFailed
        );
        assert_eq!(
            OnDeviation::from(model::OnDeviation::PauseAll),
            OnDeviation::PauseAll
        );
    }
}
