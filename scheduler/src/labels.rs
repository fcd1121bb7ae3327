//! Labels and annotations havoc reads or writes on Kubernetes objects, in one place so
//! that the modules that write them and the ones that read them agree.

/// A namespace labelled `havoc.dev/paused=true` is never targeted.
pub const PAUSED_LABEL: &str = "havoc.dev/paused";
/// Pods labelled as havoc itself are never targets.
pub const HAVOC_APP_LABEL: (&str, &str) = ("app.kubernetes.io/name", "havoc");
/// The revert record on an object havoc changed (DESIGN section 5).
pub const REVERT_ANNOTATION: &str = "havoc.dev/revert";
/// Set (to `true`) in the same request as every revert record and removed with it, so a
/// watch can select the objects that hold one: the recovery watch of Nodes, whose status
/// changes every few seconds on every node, sees only the nodes havoc changed.
pub const REVERT_LABEL: (&str, &str) = ("havoc.dev/revert", "true");
/// The revision a Deployment controller stamps on its ReplicaSets.
pub const DEPLOYMENT_REVISION: &str = "deployment.kubernetes.io/revision";
/// The annotation that marks a static pod's mirror.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Set on every object havoc creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "havoc");
/// The experiment an object havoc created belongs to.
pub const EXPERIMENT_LABEL: &str = "havoc.dev/experiment";

/// Pod label of a ReplicaSet's pod template (a Deployment's revision).
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Pod label of a StatefulSet's or DaemonSet's revision.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";

/// The well-known label of a node's failure domain (`zoneOutage` takes one away).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
