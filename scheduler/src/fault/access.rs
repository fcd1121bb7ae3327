//! What a fault needs of the API server, as RBAC rules: the one table the chart renders
//! (`havoc schema rbac`), the load-time access checks read ([`crate::access`]) and
//! `tests/install/run` compares the API server with. Each fault declares its own
//! ([`super::FaultKind::access`]).

use serde::Serialize;

use crate::policy::domain::TargetKind;

/// One RBAC rule as the chart renders it: what havoc does, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub api_groups: Vec<&'static str>,
    pub resources: Vec<&'static str>,
    pub verbs: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<&'static str>,
    /// Why havoc needs it (a comment in the rendered RBAC).
    pub why: &'static str,
    /// Only needed for policies on this target kind (`scale` of a Deployment needs no
    /// StatefulSet permission); the chart grants it with the fault anyway.
    #[serde(skip)]
    pub for_kind: Option<TargetKind>,
}

pub fn rule(
    groups: &[&'static str],
    resources: &[&'static str],
    verbs: &[&'static str],
    why: &'static str,
) -> Rule {
    Rule {
        api_groups: groups.to_vec(),
        resources: resources.to_vec(),
        verbs: verbs.to_vec(),
        resource_names: Vec::new(),
        why,
        for_kind: None,
    }
}

/// What one fault needs beyond what havoc always has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultAccess {
    /// Mutations in the namespaces its policies target: a Role per namespace when the
    /// chart confines mutations (`rbac.scope: namespaces`), else the ClusterRole.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaced: Vec<Rule>,
    /// Mutations that are cluster-wide whatever the chart's scope (nodes; evictions of a
    /// drained node's pods, which can be in any namespace).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster: Vec<Rule>,
    /// Reads only this fault needs (the ClusterRole).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<Rule>,
}
