//! The wire model of `havoc.dev/v1alpha1`: exactly what a policy or config file may say.
//!
//! These types are deserialized with unknown fields denied; their meaning is checked
//! separately in `validate.rs`, which turns them into the domain types the engine uses.
//! Doc comments here become the descriptions of the published JSON Schema.

use std::{collections::BTreeMap, fmt, path::PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::duration::HumanDuration;

/// The only API version this havoc understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "havoc.dev/v1alpha1")]
    V1Alpha1,
}

/// A chaos policy: when, what and how to disrupt.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChaosPolicy {
    pub api_version: ApiVersion,
    /// Always `ChaosPolicy`.
    #[schemars(schema_with = "kind_chaos_policy")]
    pub kind: String,
    pub metadata: Metadata,
    pub spec: PolicySpec,
}

/// The service configuration (one file, passed with `--config`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HavocConfig {
    pub api_version: ApiVersion,
    /// Always `HavocConfig`.
    #[schemars(schema_with = "kind_havoc_config")]
    pub kind: String,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub spec: ConfigSpec,
}

fn kind_chaos_policy(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"const": "ChaosPolicy"})
}

fn kind_havoc_config(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"const": "HavocConfig"})
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// Unique across all policy files; a DNS-1123 label (lower case, digits, '-', at most 63).
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Only log what would be done. The service-level `dryRun: true` (the default) wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Clock trigger. At least one of `schedule` and `triggers` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Event triggers, e.g. a completed rollout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    pub target: Target,
    pub fault: Fault,
    /// How long a reversible fault is held and health is observed (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<PolicyHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// What a deviation does (default: pausePolicy for circuitBreaker.cooldown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_deviation: Option<OnDeviation>,
    /// Per-policy safety limits: they may only tighten the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<PolicyLimits>,
}

/// When a policy fires by the clock: exactly one of `cron`, `random`, `interval`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// IANA time zone (e.g. Europe/Berlin); default: the service's, else UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Standard 5-field crontab (Vixie semantics: Sunday is 0 or 7, day-of-month OR
    /// day-of-week), an optional leading seconds field, names (MON, JAN) and macros (@hourly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Poisson process: exponential gaps with this mean, never shorter than minInterval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random: Option<RandomSchedule>,
    /// Uniform random gaps between min and max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<IntervalSchedule>,
    /// Fire only inside these local-time windows (default: always).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    /// Never fire inside these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blackouts: Vec<Blackout>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RandomSchedule {
    /// Mean gap between fires (counted in allowed time only).
    pub mean_interval: HumanDuration,
    /// Floor: no gap is shorter. Gaps are minInterval + an exponential with mean
    /// (meanInterval - minInterval), so the mean stays meanInterval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_interval: Option<HumanDuration>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntervalSchedule {
    pub min: HumanDuration,
    pub max: HumanDuration,
}

/// Days of the week, Monday first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// An allowed stretch of local time on some weekdays. An `end` before `start` wraps past
/// midnight into the next day (the window belongs to the day it starts on); `end` equal
/// to `start` means 24 hours.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Window {
    /// Default: every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Weekday>,
    /// Local time HH:MM.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// Local time HH:MM (24:00 allowed).
    #[schemars(regex(pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"))]
    pub end: String,
}

/// A yearly day (`date: "MM-DD"`) or an absolute range (`from`/`until`, local time).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Blackout {
    /// Every year, the whole local day: "MM-DD".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-1][0-9]-[0-3][0-9]$"))]
    pub date: Option<String>,
    /// Start, local time: "YYYY-MM-DDTHH:MM" (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// End, local time: "YYYY-MM-DDTHH:MM" (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Free text for people (why this blackout exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An event trigger (exactly one kind).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutTrigger>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

/// Fires when a rollout of a matching workload completes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutTrigger {
    /// Workload kinds to watch (default: Deployment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<WorkloadKind>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Label selector on namespaces (instead of `namespaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Label selector on the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Wait this long after the rollout completed (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<HumanDuration>,
    /// Minimum time between two triggers for one workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<HumanDuration>,
    /// Fire only when a container image changed.
    #[serde(default)]
    pub image_change_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TargetKind {
    Pod,
    Node,
    Deployment,
    StatefulSet,
    VirtualService,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What to disrupt.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    pub kind: TargetKind,
    /// Namespaces to pick from (namespaced kinds need this or namespaceSelector).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Label selector on namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Label selector on the target objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Exclude>,
    /// Only objects at least this old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<HumanDuration>,
    /// How many to pick (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Or which share to pick, 1..100 (rounded up, at least one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// Nodes only: pick among the nodes that run pods of these namespaces (e.g. "drain
    /// a node that runs the demo's pods").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub with_pods_in: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exclude {
    /// Objects matching this label selector are never picked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Regular expressions on the object name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// How to disrupt: exactly one fault.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Delete pods (target kind Pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_delete: Option<PodDelete>,
    /// Evict pods through the Eviction API, honouring PodDisruptionBudgets (target kind Pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_evict: Option<PodEvict>,
    /// Cordon and drain nodes; revert uncordons (target kind Node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_drain: Option<NodeDrain>,
    /// Scale workloads; revert restores the replica count (Deployment, StatefulSet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
    /// Isolate pods with a NetworkPolicy; revert deletes it (target kind Pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_partition: Option<NetworkPartition>,
    /// Inject HTTP aborts/delays into an Istio VirtualService; revert restores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_fault: Option<HttpFault>,
    /// Take one failure domain away: cordon and drain every node of one zone
    /// (`topology.kubernetes.io/zone`); revert uncordons them (target kind Node; the
    /// policy must set `limits.maxUnschedulableNodes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_outage: Option<ZoneOutage>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneOutage {
    /// Give up evicting after this long (default 300s); the nodes are uncordoned on revert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDelete {
    /// Grace period (default: the pod's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<HumanDuration>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodEvict {
    /// Grace period (default: the pod's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<HumanDuration>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeDrain {
    /// Give up evicting after this long (default 120s); the node is uncordoned on revert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scale {
    /// Replica count while the fault is held.
    pub replicas: u32,
    /// DESTRUCTIVE. Allows scaling down a StatefulSet whose
    /// `persistentVolumeClaimRetentionPolicy.whenScaled` is `Delete`: Kubernetes deletes
    /// the PersistentVolumeClaims of the ordinals scaled away, and scaling back up gives
    /// them empty volumes. Default false: such StatefulSets are skipped
    /// (`wouldDeleteVolumes`). `havoc validate` warns when it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_volume_deletion: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    Ingress,
    Egress,
    #[default]
    Both,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPartition {
    #[serde(default)]
    pub direction: Direction,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<HttpAbort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<HttpDelay>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpAbort {
    /// Share of requests aborted, 0..100.
    pub percent: f64,
    /// HTTP status returned, 200..599.
    pub status: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpDelay {
    /// Share of requests delayed, 0..100.
    pub percent: f64,
    pub fixed: HumanDuration,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyHealth {
    /// Keep observing this long after the revert before the verdict (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle: Option<HumanDuration>,
    /// Names of the service's SLO checks that apply (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slos: Option<Vec<String>>,
    /// Alertmanager matchers that narrow which alerts count, e.g. `namespace="go-demo-8"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_matchers: Vec<String>,
}

/// Experiment outcomes that notifications can be sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum NotifyOn {
    Started,
    Passed,
    Deviated,
    Skipped,
    Errored,
    RollbackFailed,
    /// Cut short by havoc's own shutdown or an emergency stop, faults reverted cleanly:
    /// not a failure of the system under test (opt-in).
    Interrupted,
}

/// Kubernetes Events on targets: `ChaosInjected` on each target a fault reached, and the
/// verdict as a second Event only for these outcomes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Events {
    /// Outcomes published as a verdict Event on each target (`ChaosPassed`,
    /// `ChaosDeviated`, ...), after `ChaosInjected` (default: deviated, errored,
    /// rollbackFailed — a passing experiment costs one Event per target). `started` is
    /// not a verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdicts: Option<Vec<NotifyOn>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notify {
    /// Receiver names (default: the service's notify.receivers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receivers: Option<Vec<String>>,
    /// Which outcomes notify (default: deviated, errored, rollbackFailed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<NotifyOn>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnDeviation {
    Continue,
    PausePolicy,
    PauseAll,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyLimits {
    /// Never take a workload below this many ready pods: raises the service's
    /// limits.minAvailableReplicas for this policy (a lower value is an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available_replicas: Option<u32>,
    /// Nodes cordoned at once, counting others' cordons, for this policy's experiments:
    /// replaces the service's limits.maxUnschedulableNodes. A zoneOutage must set it (it
    /// cordons a whole zone: say how many nodes that may be, on purpose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unschedulable_nodes: Option<u32>,
}

// ---------------------------------------------------------------------------------------
// Service configuration

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigSpec {
    /// Only log what would be done (default true: chaos must be turned on on purpose).
    #[serde(default = "default_true")]
    pub dry_run: bool,
    /// Namespaces where chaos is real although `dryRun` is true: a policy runs live when
    /// every namespace its target names is listed here (policies that select namespaces
    /// by label, or target nodes, stay dry). Lets a cluster run dry except for a sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live_namespaces: Vec<String>,
    /// Default IANA time zone of schedules.
    #[serde(default = "default_utc")]
    pub timezone: String,
    /// Directory (or file) of ChaosPolicy documents.
    #[serde(default = "default_policies")]
    pub policies: PathBuf,
    /// Never touched, in addition to the built-in kube-system, kube-public,
    /// kube-node-lease and havoc's own namespace (which are always protected: this list
    /// adds to them, it never replaces them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected_namespaces: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receivers: Vec<Receiver>,
    #[serde(default)]
    pub notify: Notify,
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
    #[serde(default)]
    pub events: Events,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub leader_election: LeaderElection,
    /// This cluster's name: a `cluster` label on every metric and a `cluster:NAME` tag on
    /// every Grafana annotation, so that a dashboard over several clusters tells them
    /// apart. Required with `grafana`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Grafana annotations: a region on the dashboards for every live experiment, from
    /// its injection to the end of its settle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana: Option<GrafanaConfig>,
}

/// Where and how havoc annotates Grafana.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrafanaConfig {
    /// Grafana's base URL, e.g. `https://grafana.example` (a path prefix is kept).
    pub url: String,
    /// A Grafana service account token with the annotations:write permission.
    pub token: SecretRef,
    /// The dashboard the annotations belong to; without it they are organization
    /// annotations, which any dashboard shows by tag (`havoc`).
    #[serde(
        default,
        rename = "dashboardUID",
        skip_serializing_if = "Option::is_none"
    )]
    pub dashboard_uid: Option<String>,
    /// More tags on every annotation (havoc always adds `havoc`, `policy:`, `fault:`,
    /// `namespace:`, `cluster:` and, at the end, `verdict:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// havoc's console as Grafana's users reach it: the annotation's text links to the
    /// experiment there (`CONSOLE/experiments/ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
    /// Per-request timeout (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

impl Default for ConfigSpec {
    fn default() -> Self {
        ConfigSpec {
            dry_run: true,
            live_namespaces: Vec::new(),
            timezone: default_utc(),
            policies: default_policies(),
            protected_namespaces: Vec::new(),
            limits: Limits::default(),
            health: HealthConfig::default(),
            receivers: Vec::new(),
            notify: Notify::default(),
            circuit_breaker: CircuitBreaker::default(),
            events: Events::default(),
            server: ServerConfig::default(),
            leader_election: LeaderElection::default(),
            cluster_name: None,
            grafana: None,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_utc() -> String {
    "UTC".to_string()
}
fn default_policies() -> PathBuf {
    PathBuf::from("/etc/havoc/policies")
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// At most this many experiments at once (default 1).
    #[serde(default = "default_one")]
    pub max_concurrent_experiments: u32,
    /// A pod fault never leaves its workload with fewer ready replicas (default 1).
    #[serde(default = "default_one")]
    pub min_available_replicas: u32,
    /// Never more cordoned nodes at once than this, counting nodes cordoned by others
    /// (default 1).
    #[serde(default = "default_one")]
    pub max_unschedulable_nodes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_experiments: 1,
            min_available_replicas: 1,
            max_unschedulable_nodes: 1,
        }
    }
}

fn default_one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthConfig {
    /// Polling interval while a fault is held (default 10s).
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// A health source that cannot be read counts as unhealthy (default true).
    #[serde(default = "default_true")]
    pub fail_closed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slos: Vec<Slo>,
    /// Judge by nothing: no health source at all. UNSAFE: every experiment then passes
    /// whatever happens. A config without any source is refused unless it says this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub none: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: default_interval(),
            fail_closed: true,
            prometheus: None,
            alertmanager: None,
            slos: Vec::new(),
            none: false,
        }
    }
}

fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(10)
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    pub url: String,
    /// Per-request timeout (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertmanagerConfig {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Which alerts count at all, e.g. `severity=~"critical|warning"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<String>,
}

/// A global SLO check: a PromQL instant query and an objective it must meet.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Slo {
    pub name: String,
    pub query: String,
    /// A comparison with a number: `< 0.01`, `>= 0.99` (operators < <= > >= == !=).
    pub objective: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receiver {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackReceiver>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookReceiver>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackReceiver {
    pub channel: String,
    pub token: SecretRef,
    /// Slack API base URL (default https://slack.com/api).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookReceiver {
    /// The URL, inline or (when its path is a secret, as for Slack-style incoming
    /// webhooks) by reference: `{env: NAME}` or `{file: PATH}`.
    pub url: WebhookUrl,
    /// HMAC-SHA256 key for the X-Havoc-Signature header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
}

/// A webhook URL: inline, or a secret reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum WebhookUrl {
    Inline(String),
    Secret(SecretRef),
}

/// A secret by reference: exactly one of an environment variable or a file. Inline secrets
/// are refused so that they never sit in a ConfigMap or a log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl SecretRef {
    /// Reads the secret now (from the environment or the file).
    pub fn resolve(&self) -> Result<havoc_integrations::SecretString, havoc_integrations::Error> {
        havoc_integrations::secret::resolve(self.env.as_deref(), self.file.as_deref())
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Fields {
            #[serde(default)]
            env: Option<String>,
            #[serde(default)]
            file: Option<PathBuf>,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret reference {env: NAME} or {file: PATH}")
            }
            // The value is never echoed: it may be the secret itself.
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Err(E::custom(
                    "secrets must not be written inline; reference them with {env: NAME} or {file: PATH}",
                ))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let f = Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(SecretRef {
                    env: f.env,
                    file: f.file,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    /// How long an onDeviation pause lasts (default 1h).
    #[serde(default = "default_cooldown")]
    pub cooldown: HumanDuration,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            cooldown: default_cooldown(),
        }
    }
}

fn default_cooldown() -> HumanDuration {
    HumanDuration::from_secs(3600)
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address of the HTTP API and metrics (default 0.0.0.0:8080).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer token for mutating endpoints; without it they are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
    /// Reading needs the token too: `GET /api/v1/*` needs `Authorization: Bearer`, and the
    /// console's pages need a login (`/metrics`, `/healthz`, `/readyz` stay open). Default
    /// false: reading is open, as for dashboards and scrapers. Needs `token`.
    #[serde(default)]
    pub read_requires_token: bool,
    /// A Grafana dashboard URL (e.g. `https://grafana.example.com/d/havoc/havoc`): the
    /// console links each experiment to it with the experiment's time range (`from`,
    /// `to`). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            token: None,
            read_requires_token: false,
            grafana_url: None,
        }
    }
}

fn default_listen() -> String {
    "0.0.0.0:8080".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElection {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// havoc's own namespace; always protected.
    #[serde(default = "default_havoc_namespace")]
    pub namespace: String,
    #[serde(default = "default_lease")]
    pub lease: String,
}

impl Default for LeaderElection {
    fn default() -> Self {
        LeaderElection {
            enabled: true,
            namespace: default_havoc_namespace(),
            lease: default_lease(),
        }
    }
}

fn default_havoc_namespace() -> String {
    super::domain::DEFAULT_HAVOC_NAMESPACE.to_string()
}
fn default_lease() -> String {
    "havoc".to_string()
}
