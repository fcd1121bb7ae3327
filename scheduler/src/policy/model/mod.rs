//! The wire model of `havoc.dev/v1alpha1`: exactly what a policy or config file may say.
//!
//! These types are deserialized with unknown fields denied; their meaning is checked
//! separately in `validate.rs`, which turns them into the domain types the engine uses.
//! Doc comments here become the descriptions of the published JSON Schema.

use std::{collections::BTreeMap, fmt};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Only log what would be done. The service-level `dryRun: true` (the default) wins.
    pub dry_run: Option<bool>,
    /// Clock trigger. At least one of `schedule` and `triggers` is required.
    pub schedule: Option<Schedule>,
    /// Event triggers, e.g. a completed rollout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    pub target: Target,
    pub fault: Fault,
    /// How long a reversible fault is held and health is observed (default 1m).
    pub duration: Option<HumanDuration>,
    pub health: Option<PolicyHealth>,
    pub notify: Option<Notify>,
    /// What a deviation does (default: pausePolicy for circuitBreaker.cooldown).
    pub on_deviation: Option<OnDeviation>,
    /// Per-policy safety limits: they may only tighten the service's.
    pub limits: Option<PolicyLimits>,
}

/// When a policy fires by the clock: exactly one of `cron`, `random`, `interval`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// IANA time zone (e.g. Europe/Berlin); default: the service's, else UTC.
    pub timezone: Option<String>,
    /// Standard 5-field crontab (Vixie semantics: Sunday is 0 or 7, day-of-month OR
    /// day-of-week), an optional leading seconds field, names (MON, JAN) and macros (@hourly).
    pub cron: Option<String>,
    /// Poisson process: exponential gaps with this mean, never shorter than minInterval.
    pub random: Option<RandomSchedule>,
    /// Uniform random gaps between min and max.
    pub interval: Option<IntervalSchedule>,
    /// Fire only inside these local-time windows (default: always).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    /// Never fire inside these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blackouts: Vec<Blackout>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RandomSchedule {
    /// Mean gap between fires (counted in allowed time only).
    pub mean_interval: HumanDuration,
    /// Floor: no gap is shorter. Gaps are minInterval + an exponential with mean
    /// (meanInterval - minInterval), so the mean stays meanInterval.
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
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Blackout {
    /// Every year, the whole local day: "MM-DD".
    #[schemars(regex(pattern = r"^[0-1][0-9]-[0-3][0-9]$"))]
    pub date: Option<String>,
    /// Start, local time: "YYYY-MM-DDTHH:MM" (inclusive).
    pub from: Option<String>,
    /// End, local time: "YYYY-MM-DDTHH:MM" (exclusive).
    pub until: Option<String>,
    /// Free text for people (why this blackout exists).
    pub reason: Option<String>,
}

/// An event trigger (exactly one kind).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
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
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutTrigger {
    /// Workload kinds to watch (default: Deployment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<WorkloadKind>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Label selector on namespaces (instead of `namespaces`).
    pub namespace_selector: Option<String>,
    /// Label selector on the workload.
    pub selector: Option<String>,
    /// Wait this long after the rollout completed (default 0s).
    pub delay: Option<HumanDuration>,
    /// Minimum time between two triggers for one workload.
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
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    pub kind: TargetKind,
    /// Namespaces to pick from (namespaced kinds need this or namespaceSelector).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Label selector on namespaces.
    pub namespace_selector: Option<String>,
    /// Label selector on the target objects.
    pub selector: Option<String>,
    pub exclude: Option<Exclude>,
    /// Only objects at least this old.
    pub min_age: Option<HumanDuration>,
    /// How many to pick (default 1).
    pub count: Option<u32>,
    /// Or which share to pick, 1..100 (rounded up, at least one).
    pub percent: Option<u32>,
    /// Nodes only: pick among the nodes that run pods of these namespaces (e.g. "drain
    /// a node that runs the demo's pods").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub with_pods_in: Vec<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exclude {
    /// Objects matching this label selector are never picked.
    pub selector: Option<String>,
    /// Regular expressions on the object name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// How to disrupt: exactly one fault.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Delete pods (target kind Pod).
    pub pod_delete: Option<PodDelete>,
    /// Evict pods through the Eviction API, honouring PodDisruptionBudgets (target kind Pod).
    pub pod_evict: Option<PodEvict>,
    /// Cordon and drain nodes; revert uncordons (target kind Node).
    pub node_drain: Option<NodeDrain>,
    /// Scale workloads; revert restores the replica count (Deployment, StatefulSet).
    pub scale: Option<Scale>,
    /// Isolate pods with a NetworkPolicy; revert deletes it (target kind Pod).
    pub network_partition: Option<NetworkPartition>,
    /// Inject HTTP aborts/delays into an Istio VirtualService; revert restores it.
    pub http_fault: Option<HttpFault>,
    /// Take one failure domain away: cordon and drain every node of one zone
    /// (`topology.kubernetes.io/zone`); revert uncordons them (target kind Node; the
    /// policy must set `limits.maxUnschedulableNodes`).
    pub zone_outage: Option<ZoneOutage>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneOutage {
    /// Give up evicting after this long (default 300s); the nodes are uncordoned on revert.
    pub timeout: Option<HumanDuration>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDelete {
    /// Grace period (default: the pod's own).
    pub grace_period: Option<HumanDuration>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodEvict {
    /// Grace period (default: the pod's own).
    pub grace_period: Option<HumanDuration>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeDrain {
    /// Give up evicting after this long (default 120s); the node is uncordoned on revert.
    pub timeout: Option<HumanDuration>,
}

#[serde_with::skip_serializing_none]
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

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFault {
    pub abort: Option<HttpAbort>,
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

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyHealth {
    /// Keep observing this long after the revert before the verdict (default 30s).
    pub settle: Option<HumanDuration>,
    /// Names of the service's SLO checks that apply (default: all).
    pub slos: Option<Vec<String>>,
    /// Alertmanager matchers that narrow which alerts count, e.g. `namespace="go-demo-8"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_matchers: Vec<String>,
    /// Error budgets this policy spends (default: every budget of the config's
    /// `health.budgets`, with its thresholds; `[]`: none). An entry names a config budget
    /// (and may change its thresholds) or brings its own source.
    pub budgets: Option<Vec<Budget>>,
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
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Events {
    /// Outcomes published as a verdict Event on each target (`ChaosPassed`,
    /// `ChaosDeviated`, ...), after `ChaosInjected` (default: deviated, errored,
    /// rollbackFailed — a passing experiment costs one Event per target). `started` is
    /// not a verdict.
    pub verdicts: Option<Vec<NotifyOn>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notify {
    /// Receiver names (default: the service's notify.receivers).
    pub receivers: Option<Vec<String>>,
    /// Which outcomes notify (default: deviated, errored, rollbackFailed).
    pub on: Option<Vec<NotifyOn>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnDeviation {
    Continue,
    PausePolicy,
    PauseAll,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyLimits {
    /// Never take a workload below this many ready pods: raises the service's
    /// limits.minAvailableReplicas for this policy (a lower value is an error).
    pub min_available_replicas: Option<u32>,
    /// Nodes cordoned at once, counting others' cordons, for this policy's experiments:
    /// replaces the service's limits.maxUnschedulableNodes. A zoneOutage must set it (it
    /// cordons a whole zone: say how many nodes that may be, on purpose).
    pub max_unschedulable_nodes: Option<u32>,
}

mod config;
pub use self::config::*;
