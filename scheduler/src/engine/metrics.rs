//! Prometheus metrics (DESIGN section 8, prefix `havoc_`), with prometheus-client.
//!
//! [`Metrics`] is cheap to clone: every family is shared.

use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Metric, Registry},
};

use crate::record::{ExperimentRecord, Verdict};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyVerdict {
    policy: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyReason {
    policy: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabel {
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyFault {
    policy: String,
    fault: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceiverResult {
    receiver: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceResult {
    source: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunningLabels {
    policy: String,
    fault: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabel {
    verb: String,
    resource: String,
}

/// All of havoc's metrics and their registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    experiments: Family<PolicyVerdict, Counter>,
    skips: Family<PolicyReason, Counter>,
    duration: Family<PolicyLabel, Histogram>,
    faults: Family<PolicyFault, Counter>,
    reverts: Family<ResultLabel, Counter>,
    faults_held: Gauge<i64, AtomicI64>,
    reverts_forbidden: Gauge<i64, AtomicI64>,
    leader: Gauge<i64, AtomicI64>,
    next_run: Family<PolicyLabel, Gauge<f64, AtomicU64>>,
    active: Gauge<i64, AtomicI64>,
    paused: Gauge<i64, AtomicI64>,
    policies_paused: Gauge<i64, AtomicI64>,
    notifications: Family<ReceiverResult, Counter>,
    health_checks: Family<SourceResult, Counter>,
    policies: Gauge<i64, AtomicI64>,
    reloads: Family<ResultLabel, Counter>,
    kube_requests: Family<VerbLabel, Counter>,
    experiment_running: Family<RunningLabels, Gauge<i64, AtomicI64>>,
    grafana_annotations: Family<ResultLabel, Counter>,
    last_passed: Family<PolicyLabel, Gauge<f64, AtomicU64>>,
    /// When this process first saw each live policy: the coverage clock of a policy
    /// that never passed starts there.
    first_seen: Arc<std::sync::Mutex<std::collections::HashMap<String, f64>>>,
}

/// Registers `metric` as `havoc_NAME` with its help text, and returns it.
fn register<M: Metric + Clone>(r: &mut Registry, name: &str, help: &str, metric: M) -> M {
    r.register(name, help, metric.clone());
    metric
}

/// A new metric of the field's type, registered.
fn registered<M: Metric + Clone + Default>(r: &mut Registry, name: &str, help: &str) -> M {
    register(r, name, help, M::default())
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_cluster(None)
    }

    /// With `clusterName`: every metric carries the label `cluster="NAME"`, so that one
    /// Prometheus (or dashboard) over several clusters tells their havocs apart.
    pub fn with_cluster(cluster: Option<&str>) -> Self {
        let mut r = match cluster {
            Some(c) => Registry::with_prefix_and_labels(
                "havoc",
                std::iter::once((
                    std::borrow::Cow::Borrowed("cluster"),
                    std::borrow::Cow::Owned(c.to_string()),
                )),
            ),
            None => Registry::with_prefix("havoc"),
        };
        Metrics {
            experiments: registered(&mut r, "experiments", "Experiments by policy and verdict"),
            skips: registered(
                &mut r,
                "skips",
                "Skipped experiments by policy and reason (the records' reasonCode)",
            ),
            duration: register(
                &mut r,
                "experiment_duration_seconds",
                "Wall time of experiments, start to verdict",
                Family::new_with_constructor(|| Histogram::new(exponential_buckets(1.0, 2.0, 12))),
            ),
            faults: registered(
                &mut r,
                "faults_injected",
                "Targets a fault was injected into (dry runs excluded)",
            ),
            reverts: registered(
                &mut r,
                "reverts",
                "Reverts of reversible faults by result (restored, gone, notOurs, leftAsIs, failed, forbidden, handedOver)",
            ),
            faults_held: registered(
                &mut r,
                "faults_held",
                "Reversible changes held in the cluster now (havoc revert records seen)",
            ),
            reverts_forbidden: registered(
                &mut r,
                "reverts_forbidden",
                "Revert records the leader cannot revert because the API server refuses it (RBAC): faults stranded until someone with the permission reverts them",
            ),
            leader: registered(&mut r, "leader", "1 while this replica leads"),
            next_run: registered(
                &mut r,
                "next_run_timestamp_seconds",
                "Next clock fire of each policy (Unix time)",
            ),
            active: registered(&mut r, "active_experiments", "Experiments running now"),
            paused: registered(
                &mut r,
                "paused",
                "1 while all chaos is paused (HTTP or circuit breaker)",
            ),
            policies_paused: registered(
                &mut r,
                "policies_paused",
                "Policies paused on their own (circuit breaker or HTTP)",
            ),
            notifications: registered(
                &mut r,
                "notifications",
                "Notifications by receiver and result (sent, dropped)",
            ),
            health_checks: registered(
                &mut r,
                "health_checks",
                "Reads of health sources by result (ok, error)",
            ),
            policies: registered(&mut r, "policies", "Policies loaded and running"),
            reloads: registered(
                &mut r,
                "policy_reloads",
                "Policy directory reloads (applied, rejected)",
            ),
            kube_requests: registered(
                &mut r,
                "kube_requests",
                "Requests sent to the Kubernetes API, by HTTP method",
            ),
            experiment_running: registered(
                &mut r,
                "experiment_running",
                "1 while a live experiment's fault is in or settling, by policy, fault and namespace (for Prometheus-based Grafana annotations)",
            ),
            grafana_annotations: registered(
                &mut r,
                "grafana_annotations",
                "Grafana annotation requests by result (created, closed, failed, dropped)",
            ),
            last_passed: registered(
                &mut r,
                "policy_last_passed_timestamp_seconds",
                "Each live policy's last passed experiment in the history (Unix time); for one that never passed, when this replica first loaded it",
            ),
            first_seen: Arc::default(),
            registry: Arc::new(r),
        }
    }

    /// Coverage: `live` are the live policies (dry runs prove nothing), `passed` the end of
    /// each one's last live passed experiment, `loaded` when the policies were loaded
    /// (where the clock of a policy without a pass starts, the first time it is seen).
    /// Policies no longer live lose their series.
    pub fn coverage<'a>(
        &self,
        live: impl IntoIterator<Item = &'a str>,
        passed: &std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>,
        loaded: chrono::DateTime<chrono::Utc>,
    ) {
        let mut first_seen = self
            .first_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let live: Vec<&str> = live.into_iter().collect();
        first_seen.retain(|p, _| live.contains(&p.as_str()));
        self.last_passed.clear();
        for policy in live {
            let seen = *first_seen
                .entry(policy.to_string())
                .or_insert(loaded.timestamp_millis() as f64 / 1000.0);
            let at = passed
                .get(policy)
                .map_or(seen, |t| t.timestamp_millis() as f64 / 1000.0);
            self.last_passed
                .get_or_create(&PolicyLabel {
                    policy: policy.to_string(),
                })
                .set(at);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn experiment(&self, record: &ExperimentRecord) {
        self.experiments
            .get_or_create(&PolicyVerdict {
                policy: record.policy.clone(),
                verdict: record.verdict.label().to_string(),
            })
            .inc();
        if let (Verdict::Skipped, Some(code)) = (record.verdict, &record.reason_code) {
            self.skips
                .get_or_create(&PolicyReason {
                    policy: record.policy.clone(),
                    reason: code.clone(),
                })
                .inc();
        }
        if record.verdict != Verdict::Skipped || record.injected_at.is_some() {
            let secs = (record.ended_at - record.started_at).num_milliseconds() as f64 / 1000.0;
            self.duration
                .get_or_create(&PolicyLabel {
                    policy: record.policy.clone(),
                })
                .observe(secs.max(0.0));
        }
    }

    pub fn fault_injected(&self, policy: &str, fault: &str, targets: u64) {
        self.faults
            .get_or_create(&PolicyFault {
                policy: policy.to_string(),
                fault: fault.to_string(),
            })
            .inc_by(targets);
    }

    pub fn revert(&self, result: crate::record::RevertResult) {
        self.reverts
            .get_or_create(&ResultLabel {
                result: result.label().to_string(),
            })
            .inc();
    }

    /// Reversible changes held in the cluster now (havoc revert records seen).
    pub fn faults_held(&self, n: usize) {
        self.faults_held.set(n as i64);
    }

    /// Revert records whose revert the API server refuses (403) now.
    pub fn reverts_forbidden(&self, n: usize) {
        self.reverts_forbidden.set(n as i64);
    }

    /// 1 while this replica leads.
    pub fn leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn next_run(&self, policy: &str, at: Option<chrono::DateTime<chrono::Utc>>) {
        let key = PolicyLabel {
            policy: policy.to_string(),
        };
        match at {
            Some(t) => {
                self.next_run
                    .get_or_create(&key)
                    .set(t.timestamp_millis() as f64 / 1000.0);
            }
            None => {
                self.next_run.remove(&key);
            }
        }
    }

    pub fn active_experiments(&self, n: usize) {
        self.active.set(n as i64);
    }

    /// Experiments running now in this process.
    pub fn active(&self) -> usize {
        self.active.get().max(0) as usize
    }

    pub fn paused(&self, all: bool, policies: usize) {
        self.paused.set(i64::from(all));
        self.policies_paused.set(policies as i64);
    }

    pub fn notification(&self, receiver: &str, result: crate::engine::notify::DeliveryResult) {
        self.notifications
            .get_or_create(&ReceiverResult {
                receiver: receiver.to_string(),
                result: result.label().to_string(),
            })
            .inc();
    }

    pub fn health_check(&self, source: &str, ok: bool) {
        self.health_checks
            .get_or_create(&SourceResult {
                source: source.to_string(),
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }

    pub fn policies_loaded(&self, n: usize) {
        self.policies.set(n as i64);
    }

    pub fn reload(&self, applied: bool) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: if applied { "applied" } else { "rejected" }.to_string(),
            })
            .inc();
    }

    /// A live experiment's series of `havoc_experiment_running`: 1 while it runs, removed
    /// after.
    pub fn experiment_running(&self, policy: &str, fault: &str, namespace: &str, running: bool) {
        let key = RunningLabels {
            policy: policy.to_string(),
            fault: fault.to_string(),
            namespace: namespace.to_string(),
        };
        if running {
            self.experiment_running.get_or_create(&key).set(1);
        } else {
            self.experiment_running.remove(&key);
        }
    }

    pub fn grafana_annotation(&self, result: crate::engine::annotations::Outcome) {
        self.grafana_annotations
            .get_or_create(&ResultLabel {
                result: result.label().to_string(),
            })
            .inc();
    }

    /// One request to the API server: `verb` and `resource` as the API server's own
    /// `apiserver_request_total` names them ([`crate::client::classify`]).
    pub fn kube_request(&self, verb: &str, resource: &str) {
        self.kube_requests
            .get_or_create(&VerbLabel {
                verb: verb.to_string(),
                resource: resource.to_string(),
            })
            .inc();
    }
}

impl crate::leader::Observer for Metrics {
    fn leading(&self, leading: bool) {
        self.leader(leading);
    }

    fn running(&self) -> usize {
        self.active()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_is_the_last_pass_or_when_first_seen_and_follows_the_live_policies() {
        let m = Metrics::new();
        let t = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().expect("time");
        let passed =
            std::collections::HashMap::from([("a".to_string(), t("2026-12-01T00:00:00Z"))]);
        m.coverage(["a", "b"], &passed, t("2026-12-05T00:00:00Z"));
        let text = m.encode();
        // 2026-12-01 and 2026-12-05 as Unix time.
        assert!(
            text.contains("havoc_policy_last_passed_timestamp_seconds{policy=\"a\"} 1796083200.0"),
            "{text}"
        );
        assert!(
            text.contains("havoc_policy_last_passed_timestamp_seconds{policy=\"b\"} 1796428800.0"),
            "{text}"
        );
        // Later: b's clock still starts when it was first seen; a is no longer live.
        m.coverage(["b"], &passed, t("2026-12-09T00:00:00Z"));
        let text = m.encode();
        assert!(!text.contains("policy=\"a\""), "{text}");
        assert!(
            text.contains("havoc_policy_last_passed_timestamp_seconds{policy=\"b\"} 1796428800.0"),
            "{text}"
        );
    }

    #[test]
    fn the_cluster_label_is_on_every_metric_when_named() {
        let m = Metrics::with_cluster(Some("prod-eu"));
        m.paused(true, 0);
        m.grafana_annotation(crate::engine::annotations::Outcome::Failed);
        let text = m.encode();
        assert!(
            text.contains("havoc_paused{cluster=\"prod-eu\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "havoc_grafana_annotations_total{cluster=\"prod-eu\",result=\"failed\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn exposes_the_design_names() {
        let m = Metrics::new();
        m.notification("oncall", crate::engine::notify::DeliveryResult::Sent);
        m.health_check("prometheus", false);
        m.fault_injected("p", "podDelete", 2);
        m.next_run("p", chrono::DateTime::from_timestamp(1_800_000_000, 0));
        m.paused(true, 0);
        let text = m.encode();
        for line in [
            "havoc_notifications_total{receiver=\"oncall\",result=\"sent\"} 1",
            "havoc_health_checks_total{source=\"prometheus\",result=\"error\"} 1",
            "havoc_faults_injected_total{policy=\"p\",fault=\"podDelete\"} 2",
            "havoc_next_run_timestamp_seconds{policy=\"p\"} 1800000000.0",
            "havoc_paused 1",
            "havoc_active_experiments 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
