//! The wire model of the service configuration (`kind: HavocConfig`): what serde reads,
//! unknown fields denied; [`crate::policy::validate`] turns it into the domain config.

use std::{fmt, path::PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::*;
use crate::policy::duration::HumanDuration;

#[serde_with::skip_serializing_none]
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
    #[serde(default)]
    pub history: HistoryConfig,
    /// This cluster's name: a `cluster` label on every metric and a `cluster:NAME` tag on
    /// every Grafana annotation, so that a dashboard over several clusters tells them
    /// apart. Required with `grafana`.
    pub cluster_name: Option<String>,
    /// Grafana annotations: a region on the dashboards for every live experiment, from
    /// its injection to the end of its settle.
    pub grafana: Option<GrafanaConfig>,
    /// A hook asked before every live injection: 2xx goes ahead, any other answer or
    /// none skips the experiment (for change freezes, on-call tools, ticket systems).
    pub preflight: Option<PreflightConfig>,
}

/// The preflight hook: `POST`ed the planned experiment before a live injection.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreflightConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// HMAC-SHA256 key for the X-Havoc-Signature header (as the notification webhooks).
    pub secret: Option<SecretRef>,
    /// How long to wait for the answer (default 5s); no answer skips the experiment.
    pub timeout: Option<HumanDuration>,
}

/// Where and how havoc annotates Grafana.
#[serde_with::skip_serializing_none]
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
    pub console_url: Option<String>,
    /// Per-request timeout (default 5s).
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
            history: HistoryConfig::default(),
            cluster_name: None,
            grafana: None,
            preflight: None,
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
    /// How much fault time each namespace may take per period, counted from the history
    /// in the cluster (so every replica and restart agree). None: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_budget: Option<NamespaceBudget>,
}

/// A namespace's chaos budget: fault time (from injection to revert; a pod kill's is its
/// observation `duration`) per rolling period. An experiment starts only when its hold
/// fits in what is left in every namespace it touches.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceBudget {
    /// Fault time each namespace may take per period, e.g. `30m`.
    pub fault_time: HumanDuration,
    /// The period: a window ending now (default 24h).
    pub per: Option<HumanDuration>,
    /// Another fault time for some namespaces, e.g. `{payments: 5m}` (`0s`: none at all).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, HumanDuration>,
}

/// An error budget read from Prometheus. Its source is exactly one of `sloth`, `pyrra`,
/// or the queries `remaining` (and `burnRate`); a policy's entry may instead name a
/// budget of the config's `health.budgets` and change its thresholds.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Budget {
    pub name: String,
    /// Sloth's recording rules (`slo:period_error_budget_remaining:ratio`,
    /// `slo:current_burn_rate:ratio`) of one service's SLO.
    pub sloth: Option<SlothSlo>,
    /// Pyrra's generic recording rules (`pyrra_availability`, `pyrra_objective`,
    /// `pyrra_errors:rate5m`, `pyrra_requests:rate5m`; Pyrra's `--generic-rules`) of one SLO.
    pub pyrra: Option<PyrraSlo>,
    /// PromQL giving the remaining error budget as a ratio (1: untouched, 0: spent,
    /// below 0: overspent).
    pub remaining: Option<String>,
    /// PromQL giving the current burn rate (1: the budget lasts exactly its period).
    pub burn_rate: Option<String>,
    /// Skip an experiment while less than this share of the budget remains (0..1;
    /// default 0: only a spent budget).
    pub min_remaining: Option<f64>,
    /// While a fault is held, a burn rate above this reverts it at once (deviated).
    pub max_burn_rate: Option<f64>,
    /// Verdict: deviated when the burn rate at the end of the settle is more than this
    /// many times the one before the injection (which counts as at least 1).
    pub burn_rate_after: Option<f64>,
}

/// A Sloth SLO: the `sloth_service` and `sloth_slo` labels of its recording rules.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlothSlo {
    pub service: String,
    pub slo: String,
}

/// A Pyrra SLO: the `slo` label of its recording rules (the SLO object's name).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PyrraSlo {
    pub slo: String,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_experiments: 1,
            min_available_replicas: 1,
            max_unschedulable_nodes: 1,
            namespace_budget: None,
        }
    }
}

fn default_one() -> u32 {
    1
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthConfig {
    /// Polling interval while a fault is held (default 10s).
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// A health source that cannot be read counts as unhealthy (default true).
    #[serde(default = "default_true")]
    pub fail_closed: bool,
    pub prometheus: Option<Endpoint>,
    pub alertmanager: Option<AlertmanagerConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slos: Vec<Slo>,
    /// Error budgets read from Prometheus (Sloth, Pyrra, or queries): an experiment is
    /// skipped while one is spent below its minimum, and reverted when its burn rate
    /// rises above the limit while the fault is held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<Budget>,
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
            budgets: Vec::new(),
            none: false,
        }
    }
}

fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(10)
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    pub url: String,
    /// Per-request timeout (default 5s).
    pub timeout: Option<HumanDuration>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertmanagerConfig {
    pub url: String,
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

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receiver {
    pub name: String,
    pub slack: Option<SlackReceiver>,
    pub webhook: Option<WebhookReceiver>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackReceiver {
    pub channel: String,
    pub token: SecretRef,
    /// Slack API base URL (default https://slack.com/api).
    pub api_url: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookReceiver {
    /// The URL, inline or (when its path is a secret, as for Slack-style incoming
    /// webhooks) by reference: `{env: NAME}` or `{file: PATH}`.
    pub url: WebhookUrl,
    /// HMAC-SHA256 key for the X-Havoc-Signature header.
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
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub env: Option<String>,
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

/// The experiment history in the cluster (`HavocExperiment` objects in havoc's
/// namespace): what the leader keeps. Skips are counted per policy, not kept as objects
/// (but a run whose object was written before it reached no target is closed as skipped).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryConfig {
    /// The newest experiments kept (default 500, at most 10000; each object is a few
    /// KiB, at most about 100 KiB with its targets bounded).
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// Experiments that ended longer ago are deleted (default 30d, at least 1h).
    #[serde(default = "default_max_age")]
    pub max_age: HumanDuration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            keep: default_keep(),
            max_age: default_max_age(),
        }
    }
}

fn default_keep() -> u32 {
    500
}

fn default_max_age() -> HumanDuration {
    HumanDuration::from_secs(30 * 86_400)
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

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address of the HTTP API and metrics (default 0.0.0.0:8080).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer token for mutating endpoints; without it they are off.
    pub token: Option<SecretRef>,
    /// Reading needs the token too: `GET /api/v1/*` needs `Authorization: Bearer`, and the
    /// console's pages need a login (`/metrics`, `/healthz`, `/readyz` stay open). Default
    /// false: reading is open, as for dashboards and scrapers. Needs `token`.
    #[serde(default)]
    pub read_requires_token: bool,
    /// A Grafana dashboard URL (e.g. `https://grafana.example.com/d/havoc/havoc`): the
    /// console links each experiment to it with the experiment's time range (`from`,
    /// `to`). Optional.
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
    crate::policy::domain::DEFAULT_HAVOC_NAMESPACE.to_string()
}
fn default_lease() -> String {
    "havoc".to_string()
}
