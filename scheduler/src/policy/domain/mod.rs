//! The domain model: what a validated policy and the service configuration mean, with
//! every default resolved. Validation ([`super::validate`]) is the only producer of these
//! types; nothing outside `policy/` reads the wire model ([`super::model`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::PathBuf,
    time::Duration,
};

use chrono_tz::Tz;
use regex::Regex;

mod budget;
mod enums;

pub use budget::{
    Budget, BudgetSelection, BudgetSource, BudgetUse, DEFAULT_BUDGET_PERIOD, NamespaceBudget,
};
pub use enums::{Direction, NotifyOn, OnDeviation, TargetKind, WorkloadKind};

use super::{
    expr::{LabelMatcher, Objective},
    model::SecretRef,
    selector::LabelSelector,
};
use crate::schedule::Schedule;

/// Default `duration` of a policy: how long a fault is held and health observed.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);
/// Default `health.settle`.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(30);
/// Default `nodeDrain.timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a zone outage evicts before it gives up on what is left.
pub const DEFAULT_ZONE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default timeout of a health source request.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Outcomes that notify unless a policy or the config says otherwise: failure only.
pub const DEFAULT_NOTIFY_ON: [NotifyOn; 3] = [
    NotifyOn::Deviated,
    NotifyOn::Errored,
    NotifyOn::RollbackFailed,
];
/// Namespaces no fault ever touches, whatever the config says.
pub const BUILTIN_PROTECTED_NAMESPACES: [&str; 3] =
    ["kube-system", "kube-public", "kube-node-lease"];
/// havoc's own namespace when neither `POD_NAMESPACE` nor the config names one.
pub const DEFAULT_HAVOC_NAMESPACE: &str = "havoc-system";

/// A validated policy, ready for the engine.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The line of its `metadata.name` in that file (0: not known).
    pub line: usize,
    /// A stable hash of the policy as written: an unchanged policy keeps its next fire
    /// across reloads.
    pub fingerprint: u64,
    /// Resolved against the service: the service-level `dryRun` wins unless every
    /// namespace the target names is one of `liveNamespaces`; a policy may ask for it.
    pub dry_run: bool,
    pub schedule: Option<Schedule>,
    pub triggers: Vec<RolloutRule>,
    pub target: TargetRule,
    pub fault: Fault,
    /// How long a reversible fault is held and health is observed.
    pub duration: Duration,
    pub health: PolicyHealth,
    pub notify: NotifyRule,
    pub on_deviation: OnDeviation,
    /// The replica floor of pod faults for this policy.
    pub min_available_replicas: u32,
    /// The policy's own `limits.maxUnschedulableNodes` (`None`: the service's).
    pub max_unschedulable_nodes: Option<u32>,
}

impl Policy {
    /// What the record of one of its experiments starts from.
    pub fn record_of(&self) -> crate::record::Of<'_> {
        crate::record::Of {
            policy: &self.name,
            fault: self.fault.name(),
            dry_run: self.dry_run,
        }
    }
}

/// What a policy judges by.
#[derive(Debug, Clone)]
pub struct PolicyHealth {
    /// Observation after the revert, before the verdict.
    pub settle: Duration,
    /// Which of the service's SLO checks apply.
    pub slos: SloSelection,
    /// Narrow which alerts count (added to the service's matchers).
    pub alert_matchers: Vec<LabelMatcher>,
    /// Which error budgets it spends.
    pub budgets: BudgetSelection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SloSelection {
    All,
    Named(Vec<String>),
}

impl SloSelection {
    pub fn includes(&self, name: &str) -> bool {
        match self {
            SloSelection::All => true,
            SloSelection::Named(names) => names.iter().any(|n| n == name),
        }
    }
}

/// Who hears about which outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyRule {
    pub receivers: Vec<String>,
    pub on: Vec<NotifyOn>,
}

/// Which namespaces something applies to.
#[derive(Debug, Clone)]
pub enum NamespaceScope {
    /// Every namespace that is not protected (cluster-scoped kinds, or no restriction).
    All,
    Names(Vec<String>),
    Selector(LabelSelector),
}

#[derive(Debug, Clone)]
pub struct TargetRule {
    pub kind: TargetKind,
    pub namespaces: NamespaceScope,
    pub selector: LabelSelector,
    pub exclude_selector: Option<LabelSelector>,
    pub exclude_names: Vec<Regex>,
    pub min_age: Duration,
    pub pick: Pick,
    /// Nodes only: the namespaces whose pods a chosen node must run (empty: any node).
    pub hosting: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Count(u32),
    Percent(u32),
}

#[derive(Debug, Clone)]
pub struct RolloutRule {
    pub kinds: Vec<WorkloadKind>,
    pub namespaces: NamespaceScope,
    pub selector: LabelSelector,
    pub delay: Duration,
    pub cooldown: Duration,
    pub image_change_only: bool,
}

/// The one fault of a policy, with its parameters resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    PodDelete {
        grace: Option<Duration>,
    },
    PodEvict {
        grace: Option<Duration>,
    },
    NodeDrain {
        timeout: Duration,
    },
    ZoneOutage {
        timeout: Duration,
    },
    Scale {
        replicas: u32,
        /// Destructive opt-in: StatefulSets with `whenScaled: Delete` may be scaled down.
        allow_volume_deletion: bool,
    },
    NetworkPartition {
        direction: Direction,
    },
    HttpFault(HttpFault),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpFault {
    pub abort: Option<HttpAbort>,
    pub delay: Option<HttpDelay>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpAbort {
    pub percent: f64,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpDelay {
    pub percent: f64,
    pub fixed: Duration,
}

impl Fault {
    /// The field name, used in records, metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::PodDelete { .. } => "podDelete",
            Fault::PodEvict { .. } => "podEvict",
            Fault::NodeDrain { .. } => "nodeDrain",
            Fault::Scale { .. } => "scale",
            Fault::NetworkPartition { .. } => "networkPartition",
            Fault::HttpFault(_) => "httpFault",
            Fault::ZoneOutage { .. } => "zoneOutage",
        }
    }

    /// The target kinds this fault can act on.
    pub fn target_kinds(&self) -> &'static [TargetKind] {
        match self {
            Fault::PodDelete { .. } | Fault::PodEvict { .. } | Fault::NetworkPartition { .. } => {
                &[TargetKind::Pod]
            }
            Fault::NodeDrain { .. } | Fault::ZoneOutage { .. } => &[TargetKind::Node],
            Fault::Scale { .. } => &[TargetKind::Deployment, TargetKind::StatefulSet],
            Fault::HttpFault(_) => &[TargetKind::VirtualService],
        }
    }

    /// Whether the fault is held for `duration` and then undone.
    pub fn is_reversible(&self) -> bool {
        !matches!(self, Fault::PodDelete { .. } | Fault::PodEvict { .. })
    }
}

/// A validated service configuration, defaults resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub dry_run: bool,
    /// Namespaces where chaos is real although `dry_run` is true.
    pub live_namespaces: BTreeSet<String>,
    pub timezone: Tz,
    pub policies: PathBuf,
    /// Never touched: the built-in list, havoc's own namespace, and the configured ones.
    pub protected_namespaces: BTreeSet<String>,
    pub limits: Limits,
    pub health: HealthConfig,
    pub receivers: BTreeMap<String, Receiver>,
    pub notify: NotifyRule,
    /// How long an `onDeviation` pause lasts.
    pub circuit_breaker_cooldown: Duration,
    /// Outcomes published as a verdict Event after `ChaosInjected` (`events.verdicts`).
    pub event_verdicts: Vec<NotifyOn>,
    pub server: ServerConfig,
    pub leader_election: LeaderElection,
    pub history: HistoryRetention,
    /// `clusterName`: a label on the metrics, a tag on annotations.
    pub cluster_name: Option<String>,
    pub grafana: Option<Grafana>,
    pub preflight: Option<Preflight>,
}

/// The preflight hook (`preflight`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preflight {
    pub url: String,
    pub secret: Option<SecretRef>,
    pub timeout: Duration,
}

/// How much of the experiment history in the cluster the leader keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRetention {
    pub keep: usize,
    pub max_age: Duration,
}

/// Grafana annotations, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grafana {
    pub url: String,
    pub token: SecretRef,
    pub dashboard_uid: Option<String>,
    /// The configured extra tags.
    pub tags: Vec<String>,
    /// The console's base URL, without a trailing `/`.
    pub console_url: Option<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_concurrent_experiments: u32,
    pub min_available_replicas: u32,
    pub max_unschedulable_nodes: u32,
    pub namespace_budget: Option<NamespaceBudget>,
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Polling interval while a fault is held.
    pub interval: Duration,
    /// A health source that cannot be read counts as unhealthy.
    pub fail_closed: bool,
    pub prometheus: Option<Endpoint>,
    pub alertmanager: Option<AlertmanagerSource>,
    pub slos: Vec<Slo>,
    /// Error budgets, with their default thresholds.
    pub budgets: Vec<Budget>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AlertmanagerSource {
    pub endpoint: Endpoint,
    /// Which alerts count at all.
    pub matchers: Vec<LabelMatcher>,
}

/// A global SLO check.
#[derive(Debug, Clone)]
pub struct Slo {
    pub name: String,
    pub query: String,
    pub objective: Objective,
    /// As written, for records.
    pub objective_text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receiver {
    Slack {
        channel: String,
        token: SecretRef,
        api_url: Option<String>,
    },
    Webhook {
        url: WebhookUrl,
        secret: Option<SecretRef>,
    },
}

/// A webhook URL: inline, or read from a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookUrl {
    Inline(String),
    Secret(SecretRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub token: Option<SecretRef>,
    /// `GET /api/v1/*` and the console's pages need the token (a login) too.
    pub read_requires_token: bool,
    /// Where the console links an experiment's time range.
    pub grafana_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    pub enabled: bool,
    /// havoc's own namespace (always protected).
    pub namespace: String,
    pub lease: String,
}

impl Config {
    /// Adds havoc's own namespace as the pod sees it (`POD_NAMESPACE`, from the downward
    /// API) to the protected ones: no fault ever touches it, whatever the config says.
    pub fn with_own_namespace(mut self, namespace: Option<String>) -> Self {
        if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
            self.live_namespaces.remove(&ns);
            self.protected_namespaces.insert(ns);
        }
        self
    }

    /// This installation's name in revert records: `NAMESPACE/LEASE`. Its successor (a
    /// restart, another replica taking over) has the same name, so it reverts what a
    /// crash left behind at once; another installation waits for the deadline.
    pub fn owner(&self) -> String {
        format!(
            "{}/{}",
            self.leader_election.namespace, self.leader_election.lease
        )
    }

    /// The context policies are validated in.
    pub fn context(&self) -> Context {
        Context {
            default_tz: self.timezone,
            protected_namespaces: self.protected_namespaces.clone(),
            receivers: Some(self.receivers.keys().cloned().collect()),
            slos: Some(self.health.slos.iter().map(|s| s.name.clone()).collect()),
            budgets: Some(self.health.budgets.iter().map(|b| b.name.clone()).collect()),
            dry_run: self.dry_run,
            live_namespaces: self.live_namespaces.clone(),
            notify: self.notify.clone(),
            min_available_replicas: self.limits.min_available_replicas,
        }
    }
}

/// What policies are checked against and resolved with: the service configuration, or
/// defaults (`havoc validate` and `havoc plan` without `--config`).
#[derive(Debug, Clone)]
pub struct Context {
    pub default_tz: Tz,
    pub protected_namespaces: BTreeSet<String>,
    /// Known receivers and SLOs; `None` when validating without a config file.
    pub receivers: Option<BTreeSet<String>>,
    pub slos: Option<BTreeSet<String>>,
    /// Known error budgets; `None` without a config file.
    pub budgets: Option<BTreeSet<String>>,
    pub dry_run: bool,
    pub live_namespaces: BTreeSet<String>,
    /// The service's notification defaults.
    pub notify: NotifyRule,
    pub min_available_replicas: u32,
}

impl Default for Context {
    fn default() -> Self {
        let mut protected: BTreeSet<String> = BUILTIN_PROTECTED_NAMESPACES
            .iter()
            .map(|s| s.to_string())
            .collect();
        protected.insert(DEFAULT_HAVOC_NAMESPACE.to_string());
        Context {
            default_tz: Tz::UTC,
            protected_namespaces: protected,
            receivers: None,
            slos: None,
            budgets: None,
            dry_run: true,
            live_namespaces: BTreeSet::new(),
            notify: NotifyRule {
                receivers: Vec::new(),
                on: DEFAULT_NOTIFY_ON.to_vec(),
            },
            min_available_replicas: 1,
        }
    }
}
