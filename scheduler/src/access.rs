//! What each policy's fault needs the API server to allow, checked when policies load.
//!
//! havoc installs with RBAC generated from the faults a user enables (the chart's
//! `faults:` values). A policy whose fault is disabled there would otherwise load, fire,
//! and end `errored` on a 403 in the middle of an experiment, possibly after part of the
//! fault was made. Instead, every load (start-up and each reload) asks the API server with
//! `SelfSubjectAccessReview`s whether havoc's own identity may make the mutations each
//! policy's fault makes, and refuses a policy that may not with a located error, like any
//! other invalid policy: the file is left out at start-up, a reload is rejected as a whole.
//!
//! Choices:
//! - Dry-run policies are checked too: a dry run is a rehearsal of the real fault, and one
//!   that could never be carried out rehearses nothing.
//! - A namespace list is checked namespace by namespace (a RoleBinding per namespace is a
//!   legitimate install); a namespace selector, or no namespace restriction, needs the
//!   permission in every namespace (a ClusterRole), since the selector can match any.
//! - Only the mutating verbs are checked: reads (the watch caches) fail loudly at start-up
//!   on their own, and events, leases and the state ConfigMap are always granted.
//! - A review that cannot be made (API server unreachable) does not refuse the policy: a
//!   passing outage must not silently unload policies until the next edit. That is logged,
//!   and the runtime still fails closed on a refused request.

use std::{collections::BTreeMap, fmt, future::Future, pin::Pin};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::{Api, Client, api::PostParams};

use crate::fault::access::{FaultAccess, Rule, rule};

use crate::policy::{
    Diagnostic, LoadReport,
    domain::{NamespaceScope, Policy},
};

/// One request havoc makes: `verb` on `resource[/subresource]` of `group`, in `namespace`
/// (`None`: cluster-scoped, or every namespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    pub namespace: Option<String>,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` on {}", self.verb, self.resource)?;
        if let Some(s) = self.subresource {
            write!(f, "/{s}")?;
        }
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => write!(f, " in every namespace"),
        }
    }
}

/// What havoc always needs, whatever faults are on: the watch caches, recovery's view of
/// every revert record, and Events (the ClusterRole).
pub fn always() -> Vec<Rule> {
    vec![
        rule(
            &[""],
            &["pods"],
            &["get", "list", "watch"],
            "target selection, the replica guards and havoc's own pods",
        ),
        rule(
            &[""],
            &["namespaces"],
            &["get", "list", "watch"],
            "namespace selectors, the havoc.dev/paused label, protected namespaces",
        ),
        rule(
            &[""],
            &["nodes"],
            &["get", "list", "watch"],
            "recovery finds every revert record on nodes, also one left while nodeDrain was on",
        ),
        rule(
            &["apps"],
            &["replicasets"],
            &["list", "watch"],
            "a pod's owner chain (pod -> ReplicaSet -> Deployment) for the replica guards",
        ),
        rule(
            &["apps"],
            &["deployments", "statefulsets", "daemonsets"],
            &["get", "list", "watch"],
            "rollout triggers, the replica guards, and recovery of scale's records",
        ),
        rule(
            &["networking.k8s.io"],
            &["networkpolicies"],
            &["get", "list", "watch"],
            "recovery finds havoc's own NetworkPolicies, also those left while networkPartition was on",
        ),
        rule(
            &["networking.istio.io"],
            &["virtualservices"],
            &["get", "list", "watch"],
            "recovery finds havoc's routes, also those left while httpFault was on",
        ),
        rule(
            &["", "events.k8s.io"],
            &["events"],
            &["create", "patch"],
            "Kubernetes Events on each target (ChaosInjected, the verdict, reverts)",
        ),
    ]
}

/// What havoc needs in its own namespace: its Lease and its state ConfigMap, by name
/// (`$LEASE` and `$STATE` stand for the names the chart gives them; the chart creates
/// both, so havoc needs no `create`), its experiment objects (any name: one per
/// experiment), never its own config or policies.
pub fn own_namespace() -> Vec<Rule> {
    vec![
        Rule {
            resource_names: vec!["$LEASE"],
            ..rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["get", "update", "patch"],
                "leader election",
            )
        },
        Rule {
            resource_names: vec!["$STATE"],
            ..rule(
                &[""],
                &["configmaps"],
                &["get", "list", "watch", "update", "patch"],
                "durable shared state: pauses, circuit breakers, stops, havoc run's runs, skip counts",
            )
        },
        rule(
            &["havoc.dev"],
            &["havocexperiments"],
            &["get", "list", "watch", "create", "patch", "delete"],
            "the experiment history: an object per experiment (its intent, then its final record), pruned by the leader",
        ),
    ]
}

/// The RBAC table the chart renders (`havoc schema rbac`, checked in as
/// `deploy/helm/havoc/files/rbac.json`).
pub fn rbac_table() -> serde_json::Value {
    let faults: serde_json::Map<String, serde_json::Value> = crate::fault::registry()
        .iter()
        .map(|f| {
            (
                f.name().to_string(),
                serde_json::to_value(f.access()).unwrap_or_default(),
            )
        })
        .collect();
    serde_json::json!({
        "comment": "Generated by `havoc schema rbac` from havoc's own table (scheduler/src/access.rs); templates/rbac.yaml renders it and tests/install/run checks the API server against it. Do not edit: regenerate with HAVOC_UPDATE_SCHEMA=1 cargo test -p havoc --test schema.",
        "always": always(),
        "ownNamespace": own_namespace(),
        "faults": faults,
    })
}

/// The mutations `policy`'s fault makes, deduplicated and in a stable order.
pub fn required(policy: &Policy) -> Vec<Permission> {
    let namespaces: Vec<Option<String>> = match &policy.target.namespaces {
        NamespaceScope::Names(names) => names.iter().cloned().map(Some).collect(),
        NamespaceScope::All | NamespaceScope::Selector(_) => vec![None],
    };
    let access =
        crate::fault::kind(policy.fault.name()).map_or_else(FaultAccess::default, |k| k.access());
    let permissions = |r: &Rule, namespaces: &[Option<String>]| {
        let mut out = Vec::new();
        if r.for_kind.is_some_and(|k| k != policy.target.kind) {
            return out;
        }
        for (group, resource, verb) in r.api_groups.iter().flat_map(|g| {
            r.resources
                .iter()
                .flat_map(move |res| r.verbs.iter().map(move |v| (*g, *res, *v)))
        }) {
            let (resource, subresource) = match resource.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (resource, None),
            };
            for ns in namespaces {
                out.push(Permission {
                    verb,
                    group,
                    resource,
                    subresource,
                    namespace: ns.clone(),
                });
            }
        }
        out
    };
    let mut out: Vec<Permission> = access
        .namespaced
        .iter()
        .flat_map(|r| permissions(r, &namespaces))
        .chain(access.cluster.iter().flat_map(|r| permissions(r, &[None])))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The answer to one access review.
pub type Review<'a> = Pin<Box<dyn Future<Output = Result<bool, kube::Error>> + Send + 'a>>;

/// Asks whether havoc's own identity may do something.
pub trait AccessReviewer: Send + Sync + fmt::Debug {
    fn allowed<'a>(&'a self, permission: &'a Permission) -> Review<'a>;
}

/// `SelfSubjectAccessReview`s against the API server (any authenticated identity may make
/// them: `system:basic-user`).
#[derive(Clone)]
pub struct ApiReviewer {
    client: Client,
}

impl fmt::Debug for ApiReviewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiReviewer").finish_non_exhaustive()
    }
}

impl ApiReviewer {
    pub fn new(client: Client) -> Self {
        ApiReviewer { client }
    }
}

impl AccessReviewer for ApiReviewer {
    fn allowed<'a>(&'a self, p: &'a Permission) -> Review<'a> {
        Box::pin(async move {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(p.verb.to_string()),
                        group: Some(p.group.to_string()),
                        resource: Some(p.resource.to_string()),
                        subresource: p.subresource.map(str::to_string),
                        namespace: p.namespace.clone(),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
            let answer = api.create(&PostParams::default(), &review).await?;
            Ok(answer.status.is_some_and(|s| s.allowed))
        })
    }
}

/// What one check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Policies refused, by name.
    pub refused: Vec<String>,
    /// Reviews that could not be made (the policies that needed them were kept).
    pub unreviewed: usize,
}

/// Reviews every valid policy of `report` and adds a located error to the file of each one
/// whose fault havoc may not carry out. Each distinct permission is reviewed once.
pub async fn check(report: &mut LoadReport, reviewer: &dyn AccessReviewer) -> Outcome {
    let mut answers = Answers::default();
    let mut outcome = Outcome::default();
    for file in report.files.iter_mut().filter(|f| f.is_valid()) {
        let mut problems = Vec::new();
        for (policy, pos) in &file.policies {
            let missing = answers.missing(policy, reviewer).await;
            if missing.is_empty() {
                continue;
            }
            outcome.refused.push(policy.name.clone());
            problems.push(Diagnostic {
                file: file.path.clone(),
                pos: *pos,
                message: refusal(policy, &missing),
            });
        }
        file.diagnostics.extend(problems);
    }
    outcome.unreviewed = answers.unreviewed;
    outcome
}

/// The permissions `policy` needs that havoc's identity does not have (an empty list also
/// when the API server could not answer).
pub async fn missing(policy: &Policy, reviewer: &dyn AccessReviewer) -> Vec<Permission> {
    Answers::default().missing(policy, reviewer).await
}

/// Why `policy` is refused, given what it lacks.
pub fn refusal(policy: &Policy, missing: &[Permission]) -> String {
    let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
    format!(
        "policy {:?}: its fault {} needs {}, which havoc's identity may not do; enable the \
         fault in the install's RBAC (the chart's `faults.{}` value) or remove the policy",
        policy.name,
        policy.fault.name(),
        list.join(", "),
        policy.fault.name(),
    )
}

/// Review answers of one load: `None` for a review that could not be made.
#[derive(Debug, Default)]
struct Answers {
    known: BTreeMap<Permission, Option<bool>>,
    unreviewed: usize,
}

impl Answers {
    async fn missing(&mut self, policy: &Policy, reviewer: &dyn AccessReviewer) -> Vec<Permission> {
        let mut missing = Vec::new();
        for p in required(policy) {
            let answer = match self.known.get(&p) {
                Some(a) => *a,
                None => {
                    let a = match reviewer.allowed(&p).await {
                        Ok(a) => Some(a),
                        Err(e) => {
                            tracing::warn!(permission = %p, error = %e, "cannot review a permission; the policy stays loaded");
                            self.unreviewed += 1;
                            None
                        }
                    };
                    self.known.insert(p.clone(), a);
                    a
                }
            };
            if answer == Some(false) {
                missing.push(p);
            }
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, sync::Mutex};

    use serde_json::{Value, json};

    use super::*;
    use crate::policy::{self, Context, Expect, fixtures};

    /// Allows everything except what it was told to deny; counts the reviews.
    #[derive(Debug, Default)]
    struct Rbac {
        denied: BTreeSet<(&'static str, &'static str, Option<&'static str>)>,
        unreachable: bool,
        asked: Mutex<Vec<Permission>>,
    }

    impl AccessReviewer for Rbac {
        fn allowed<'a>(&'a self, p: &'a Permission) -> Review<'a> {
            self.asked.lock().expect("lock").push(p.clone());
            let verdict = if self.unreachable {
                Err(kube::Error::Service("connection refused".into()))
            } else {
                Ok(!self.denied.contains(&(p.verb, p.resource, p.subresource)))
            };
            Box::pin(async move { verdict })
        }
    }

    fn load(files: &[(&str, String)]) -> (tempfile::TempDir, LoadReport) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let report = policy::load_paths(
            &[dir.path().to_path_buf()],
            &Context::default(),
            Expect::Policies,
        );
        assert!(
            report.is_valid(),
            "{:?}",
            report.diagnostics().collect::<Vec<_>>()
        );
        (dir, report)
    }

    #[tokio::test]
    async fn a_policy_whose_fault_is_not_allowed_is_refused_with_its_location() {
        let (_dir, mut report) = load(&[
            (
                "a-kill.yaml",
                fixtures::policy("kill").namespaces(&["demo"]).text(),
            ),
            (
                "b-evict.yaml",
                fixtures::policy("evict")
                    .namespaces(&["demo"])
                    .fault(json!({"podEvict": {}}))
                    .text(),
            ),
        ]);
        let rbac = Rbac {
            denied: [("delete", "pods", None)].into(),
            ..Rbac::default()
        };
        let outcome = check(&mut report, &rbac).await;
        assert_eq!(outcome.refused, ["kill"]);
        let names: Vec<&str> = report.policies().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["evict"], "the other file still loads");
        let d: Vec<String> = report.diagnostics().map(ToString::to_string).collect();
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].contains("a-kill.yaml:"), "{}", d[0]);
        assert!(
            d[0].contains("`delete` on pods in namespace demo")
                && d[0].contains("faults.podDelete"),
            "{}",
            d[0]
        );
    }

    #[tokio::test]
    async fn each_permission_is_reviewed_once_and_selectors_need_every_namespace() {
        let (_dir, mut report) = load(&[
            (
                "a.yaml",
                fixtures::policy("one").namespaces(&["demo"]).text(),
            ),
            (
                "b.yaml",
                fixtures::policy("two").namespaces(&["demo"]).text(),
            ),
            (
                "c.yaml",
                fixtures::policy("drain")
                    .kind("Node")
                    .fault(json!({"nodeDrain": {}}))
                    .text(),
            ),
        ]);
        let rbac = Rbac::default();
        let outcome = check(&mut report, &rbac).await;
        assert_eq!(outcome, Outcome::default());
        let asked = rbac.asked.lock().expect("lock").clone();
        let shown: Vec<String> = asked.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "`delete` on pods in namespace demo",
                "`create` on pods/eviction in every namespace",
                "`patch` on nodes in every namespace",
            ]
        );
    }

    #[tokio::test]
    async fn an_unreachable_api_server_keeps_the_policies() {
        let (_dir, mut report) = load(&[(
            "a.yaml",
            fixtures::policy("kill").namespaces(&["demo"]).text(),
        )]);
        let rbac = Rbac {
            unreachable: true,
            ..Rbac::default()
        };
        let outcome = check(&mut report, &rbac).await;
        assert_eq!(outcome.unreviewed, 1);
        assert!(outcome.refused.is_empty());
        assert!(report.is_valid());
    }

    #[test]
    fn every_fault_names_what_it_mutates() {
        let p = |kind: &str, fault: Value| {
            let policy = fixtures::policy("p")
                .namespaces(&["a", "b"])
                .kind(kind)
                .fault(fault)
                .build();
            required(&policy)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            p("Deployment", json!({"scale": {"replicas": 0}})),
            [
                "`patch` on deployments.apps in namespace a",
                "`patch` on deployments.apps in namespace b"
            ]
        );
        assert_eq!(
            p("Pod", json!({"networkPartition": {}}))[0],
            "`create` on networkpolicies.networking.k8s.io in namespace a"
        );
        assert_eq!(
            p(
                "VirtualService",
                json!({"httpFault": {"abort": {"percent": 50, "status": 503}}})
            )[0],
            "`patch` on virtualservices.networking.istio.io in namespace a"
        );
    }

    /// Every fault's load-time access check asks only for what its own RBAC rules grant
    /// (the chart renders those rules: a check beyond them would refuse a policy the
    /// chart allows).
    #[test]
    fn the_access_checks_ask_for_what_the_rules_grant() {
        let example = |name: &str| -> (&str, Value) {
            match name {
                "podDelete" => ("Pod", json!({"podDelete": {}})),
                "podEvict" => ("Pod", json!({"podEvict": {}})),
                "nodeDrain" => ("Node", json!({"nodeDrain": {}})),
                "zoneOutage" => ("Node", json!({"zoneOutage": {}})),
                "scale" => ("StatefulSet", json!({"scale": {"replicas": 0}})),
                "networkPartition" => ("Pod", json!({"networkPartition": {}})),
                "httpFault" => (
                    "VirtualService",
                    json!({"httpFault": {"abort": {"percent": 50, "status": 503}}}),
                ),
                other => panic!("a policy example for the new fault {other} belongs here"),
            }
        };
        for fault in crate::fault::registry() {
            let (kind, spec) = example(fault.name());
            let mut policy = fixtures::policy("p").kind(kind);
            if kind != "Node" {
                policy = policy.namespaces(&["a"]);
            }
            let policy = policy
                .fault(spec)
                .set("/limits/maxUnschedulableNodes", json!(3))
                .build();
            let access = fault.access();
            let granted = |p: &Permission| {
                let resource = match p.subresource {
                    Some(s) => format!("{}/{s}", p.resource),
                    None => p.resource.to_string(),
                };
                let rules = if p.namespace.is_some() {
                    access
                        .namespaced
                        .iter()
                        .chain(&access.cluster)
                        .collect::<Vec<_>>()
                } else {
                    access.cluster.iter().chain(&access.namespaced).collect()
                };
                rules.iter().any(|r| {
                    r.api_groups.contains(&p.group)
                        && r.resources.contains(&resource.as_str())
                        && r.verbs.contains(&p.verb)
                })
            };
            let required = required(&policy);
            assert!(!required.is_empty(), "{}: checks nothing", fault.name());
            for p in &required {
                assert!(granted(p), "{}: {p} is not in its rules", fault.name());
            }
        }
    }
}
