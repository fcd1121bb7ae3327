//! Verdict rules and alert attribution (DESIGN section 4). Pure: the engine feeds it
//! health observations; it says whether the system deviated and what to blame.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::budget::{BudgetReading, Tracks};
use crate::record::{
    AlertRecord, BudgetRecord, ErrorReason, ExperimentRecord, SkipReason, SloRecord, Verdict,
};

/// How much earlier than the injection an alert's `startsAt` may be and still count as
/// caused by it: Prometheus and havoc clocks differ a little, and rule evaluation stamps
/// `startsAt` at its own evaluation time.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::seconds(5);

/// One reading of every health source.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Active alerts that match the service and policy matchers.
    pub alerts: Vec<AlertRecord>,
    /// SLO readings of the checks that apply.
    pub slos: Vec<SloRecord>,
    /// Sources that could not be read, with why (e.g. `prometheus: connection refused`).
    pub unreadable: Vec<String>,
    /// The error budgets that apply, as read.
    pub budgets: Vec<BudgetReading>,
    /// Budgets that could not be read (an error or no data), with why: these always
    /// close the gate (see [`super::budget`]).
    pub budget_unreadable: Vec<String>,
}

/// Whether an experiment may start, judged before injection.
pub fn gate(obs: &Observation, fail_closed: bool) -> Result<(), SkipReason> {
    if fail_closed && !obs.unreadable.is_empty() {
        return Err(SkipReason::HealthUnreadable(obs.unreadable.join("; ")));
    }
    if !obs.alerts.is_empty() {
        let names: BTreeSet<&str> = obs.alerts.iter().map(|a| a.name.as_str()).collect();
        return Err(SkipReason::AlertsFiring(
            names.into_iter().collect::<Vec<_>>().join(", "),
        ));
    }
    let breached: Vec<String> = obs
        .slos
        .iter()
        .filter(|s| s.breached)
        .map(describe_slo)
        .collect();
    if !breached.is_empty() {
        return Err(SkipReason::SloBreached(breached.join(", ")));
    }
    super::budget::gate(&obs.budgets, &obs.budget_unreadable)
}

fn describe_slo(s: &SloRecord) -> String {
    match s.value {
        Some(v) => format!("{} = {v} (objective {})", s.name, s.objective),
        None => format!("{} (no data)", s.name),
    }
}

/// What one observation during an experiment means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    Holding,
    /// Revert now: the system deviated.
    Deviated(String),
    /// Revert now: health cannot be read (fail closed).
    Unreadable(String),
}

/// How an experiment that injected its fault ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conclusion {
    Passed,
    Deviated(String),
    Errored(ErrorReason),
    RollbackFailed(String),
}

impl Conclusion {
    pub fn verdict(&self) -> Verdict {
        match self {
            Conclusion::Passed => Verdict::Passed,
            Conclusion::Deviated(_) => Verdict::Deviated,
            Conclusion::Errored(_) => Verdict::Errored,
            Conclusion::RollbackFailed(_) => Verdict::RollbackFailed,
        }
    }

    /// Ends `record` with this conclusion.
    pub fn apply(self, record: &mut ExperimentRecord) {
        match self {
            Conclusion::Passed => record.finish(
                Verdict::Passed,
                "no new alert and no SLO breach".to_string(),
                None,
            ),
            Conclusion::Deviated(reason) => record.finish(Verdict::Deviated, reason, None),
            Conclusion::Errored(why) => record.error(&why),
            Conclusion::RollbackFailed(reason) => {
                record.finish(Verdict::RollbackFailed, reason, Some("revertFailed"));
            }
        }
    }
}

/// Accumulates observations from injection to the end of settle.
#[derive(Debug, Clone)]
pub struct Judge {
    injected_at: DateTime<Utc>,
    baseline: BTreeSet<String>,
    fail_closed: bool,
    attributed: BTreeMap<String, AlertRecord>,
    breaches: Vec<SloRecord>,
    latest_slos: BTreeMap<String, SloRecord>,
    unreadable: Option<String>,
    budgets: Tracks,
}

impl Judge {
    /// `baseline`: alerts active at injection (never attributed to this experiment).
    pub fn new(injected_at: DateTime<Utc>, baseline: &Observation, fail_closed: bool) -> Self {
        Judge {
            injected_at,
            baseline: baseline
                .alerts
                .iter()
                .map(|a| a.fingerprint.clone())
                .collect(),
            fail_closed,
            attributed: BTreeMap::new(),
            breaches: Vec::new(),
            latest_slos: baseline
                .slos
                .iter()
                .map(|s| (s.name.clone(), s.clone()))
                .collect(),
            unreadable: None,
            budgets: Tracks::new(&baseline.budgets),
        }
    }

    /// The fault is reverted: from now on, burn rates are "after" (the settle's).
    pub fn reverted(&mut self) {
        self.budgets.reverted();
    }

    /// The error budgets through the experiment, for the record.
    pub fn budgets(&self) -> Vec<BudgetRecord> {
        self.budgets.records()
    }

    /// Takes one observation (during the fault or the settle window).
    pub fn observe(&mut self, obs: &Observation) -> Assessment {
        for s in &obs.slos {
            self.latest_slos.insert(s.name.clone(), s.clone());
            // The first breach of each SLO is kept; the latest reading comes from
            // `latest_slos`, so a long breach does not repeat in the record.
            if s.breached && !self.breaches.iter().any(|b| b.name == s.name) {
                self.breaches.push(s.clone());
            }
        }
        for a in &obs.alerts {
            if !self.baseline.contains(&a.fingerprint)
                && a.starts_at >= self.injected_at - CLOCK_SKEW_ALLOWANCE
            {
                self.attributed
                    .entry(a.fingerprint.clone())
                    .or_insert_with(|| a.clone());
            }
        }
        let budgets = self.budgets.observe(&obs.budgets, &obs.budget_unreadable);
        if let Some(reason) = self.deviation() {
            return Assessment::Deviated(reason);
        }
        if let Err(reason) = budgets {
            self.unreadable.get_or_insert(reason.clone());
            return Assessment::Unreadable(reason);
        }
        if self.fail_closed && !obs.unreadable.is_empty() {
            let reason = format!(
                "health unreadable during the experiment: {}",
                obs.unreadable.join("; ")
            );
            self.unreadable.get_or_insert(reason.clone());
            return Assessment::Unreadable(reason);
        }
        Assessment::Holding
    }

    fn deviation(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.attributed.is_empty() {
            let names: BTreeSet<&str> = self.attributed.values().map(|a| a.name.as_str()).collect();
            parts.push(format!(
                "alert{} fired: {}",
                if names.len() == 1 { "" } else { "s" },
                names.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(first) = self.breaches.first() {
            parts.push(format!("SLO breached: {}", describe_slo(first)));
        }
        parts.extend(self.budgets.deviation());
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The verdict once the experiment is over. `revert_failed` wins over everything.
    pub fn verdict(&self, revert_failed: Option<&str>) -> Conclusion {
        if let Some(why) = revert_failed {
            return Conclusion::RollbackFailed(format!("revert failed: {why}"));
        }
        if let Some(reason) = self.deviation() {
            return Conclusion::Deviated(reason);
        }
        if let Some(reason) = self.budgets.after_rule() {
            return Conclusion::Deviated(reason);
        }
        if let Some(reason) = &self.unreadable {
            return Conclusion::Errored(ErrorReason::HealthUnreadable(reason.clone()));
        }
        Conclusion::Passed
    }

    /// Alerts blamed on the experiment, in order of appearance.
    pub fn alerts(&self) -> Vec<AlertRecord> {
        let mut v: Vec<AlertRecord> = self.attributed.values().cloned().collect();
        v.sort_by(|a, b| {
            a.starts_at
                .cmp(&b.starts_at)
                .then_with(|| a.name.cmp(&b.name))
        });
        v
    }

    /// SLO readings for the record: every breach, plus the latest reading of each check.
    pub fn slos(&self) -> Vec<SloRecord> {
        let mut v = self.breaches.clone();
        for s in self.latest_slos.values() {
            if !v.iter().any(|b| b.name == s.name && b.at == s.at) {
                v.push(s.clone());
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        format!("2026-11-22T10:{s}Z").parse().expect("valid")
    }

    fn alert(fp: &str, name: &str, starts: &str) -> AlertRecord {
        AlertRecord {
            name: name.to_string(),
            fingerprint: fp.to_string(),
            labels: BTreeMap::from([("alertname".to_string(), name.to_string())]),
            starts_at: t(starts),
        }
    }

    fn slo(value: f64, breached: bool, at: &str) -> SloRecord {
        SloRecord {
            name: "error-ratio".to_string(),
            value: Some(value),
            objective: "< 0.01".to_string(),
            breached,
            at: t(at),
        }
    }

    fn obs(alerts: Vec<AlertRecord>) -> Observation {
        Observation {
            alerts,
            ..Observation::default()
        }
    }

    #[test]
    fn gate_refuses_firing_alerts_breaches_and_unreadable_sources() {
        assert!(gate(&obs(vec![]), true).is_ok());
        let err = gate(
            &obs(vec![alert("a", "KubeDeploymentUnavailable", "00:00")]),
            true,
        )
        .expect_err("closed");
        assert!(
            err.to_string().contains("KubeDeploymentUnavailable"),
            "{err}"
        );
        let o = Observation {
            slos: vec![slo(0.2, true, "00:00")],
            ..Observation::default()
        };
        assert!(
            gate(&o, true)
                .expect_err("closed")
                .to_string()
                .contains("error-ratio = 0.2")
        );
        let o = Observation {
            unreadable: vec!["prometheus: connection refused".into()],
            ..Observation::default()
        };
        assert!(
            gate(&o, true)
                .expect_err("closed")
                .to_string()
                .contains("prometheus")
        );
        assert!(
            gate(&o, false).is_ok(),
            "failClosed: false ignores unreadable sources"
        );
    }

    #[test]
    fn a_new_alert_after_injection_is_a_deviation_and_attributed() {
        let mut j = Judge::new(t("00:00"), &obs(vec![]), true);
        assert_eq!(j.observe(&obs(vec![])), Assessment::Holding);
        let a = alert("f1", "KubeDeploymentUnavailable", "00:20");
        assert!(
            matches!(j.observe(&obs(vec![a.clone()])), Assessment::Deviated(r) if r.contains("KubeDeploymentUnavailable"))
        );
        // it resolves before the end: still a deviation
        j.observe(&obs(vec![]));
        let Conclusion::Deviated(reason) = j.verdict(None) else {
            panic!("deviated");
        };
        assert!(reason.contains("KubeDeploymentUnavailable"));
        assert_eq!(j.alerts(), vec![a]);
    }

    #[test]
    fn alerts_from_before_the_injection_are_not_blamed() {
        // firing at injection (baseline) -> never attributed, even if seen again later
        let old = alert("f0", "Old", "00:00");
        let mut j = Judge::new(t("01:00"), &obs(vec![old.clone()]), true);
        assert_eq!(j.observe(&obs(vec![old])), Assessment::Holding);
        // started well before the injection but first seen later (e.g. group_wait) -> not ours
        assert_eq!(
            j.observe(&obs(vec![alert("f2", "Earlier", "00:50")])),
            Assessment::Holding
        );
        // within the clock-skew allowance -> ours
        assert!(matches!(
            j.observe(&obs(vec![alert("f3", "Skewed", "00:57")])),
            Assessment::Deviated(_)
        ));
        assert_eq!(j.verdict(None).verdict(), Verdict::Deviated);
        assert_eq!(j.alerts().len(), 1);
    }

    #[test]
    fn slo_breach_is_a_deviation_and_recorded() {
        let mut j = Judge::new(t("00:00"), &obs(vec![]), true);
        let ok = Observation {
            slos: vec![slo(0.001, false, "00:10")],
            ..Observation::default()
        };
        assert_eq!(j.observe(&ok), Assessment::Holding);
        let bad = Observation {
            slos: vec![slo(0.3, true, "00:20")],
            ..Observation::default()
        };
        assert!(
            matches!(j.observe(&bad), Assessment::Deviated(r) if r.contains("error-ratio = 0.3"))
        );
        assert_eq!(j.verdict(None).verdict(), Verdict::Deviated);
        assert!(j.slos().iter().any(|s| s.breached && s.value == Some(0.3)));
    }

    #[test]
    fn unreadable_health_during_the_fault_is_an_error_not_a_pass() {
        let mut j = Judge::new(t("00:00"), &obs(vec![]), true);
        let o = Observation {
            unreadable: vec!["alertmanager: timeout".into()],
            ..Observation::default()
        };
        assert!(matches!(j.observe(&o), Assessment::Unreadable(_)));
        let Conclusion::Errored(why) = j.verdict(None) else {
            panic!("errored");
        };
        assert!(why.to_string().contains("alertmanager"));
        assert_eq!(why.label(), "healthUnreadable");
        let mut open = Judge::new(t("00:00"), &obs(vec![]), false);
        assert_eq!(open.observe(&o), Assessment::Holding);
        assert_eq!(open.verdict(None), Conclusion::Passed);
    }

    #[test]
    fn a_failed_revert_wins() {
        let mut j = Judge::new(t("00:00"), &obs(vec![]), true);
        j.observe(&obs(vec![alert("f", "X", "00:30")]));
        assert_eq!(
            j.verdict(Some("409 conflict")).verdict(),
            Verdict::RollbackFailed
        );
        assert_eq!(
            Judge::new(t("00:00"), &obs(vec![]), true).verdict(None),
            Conclusion::Passed
        );
    }
}
