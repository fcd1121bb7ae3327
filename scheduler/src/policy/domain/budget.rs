//! Budgets: error budgets read from Prometheus (the gate, the burn-rate abort, the
//! burn-rate verdict) and each namespace's chaos budget (fault time per period).

use std::{collections::BTreeMap, time::Duration};

/// An error budget as an experiment spends it: where it is read and what it must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub name: String,
    pub source: BudgetSource,
    /// Skip while less than this share remains.
    pub min_remaining: f64,
    /// While a fault is held, a burn rate above this reverts it.
    pub max_burn_rate: Option<f64>,
    /// Deviated when the burn rate after the settle exceeds the one before (at least 1)
    /// times this.
    pub burn_rate_after: Option<f64>,
}

/// The PromQL queries of one budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSource {
    /// The remaining share of the budget (1 untouched, 0 spent).
    pub remaining: String,
    /// The current burn rate, when the budget has one.
    pub burn_rate: Option<String>,
    /// How it was named, for records: `sloth checkout/availability`, `pyrra X`, `query`.
    pub text: String,
}

/// A PromQL string literal's content: `"` and `\` escaped.
fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl BudgetSource {
    /// Sloth's recording rules of `service`'s SLO `slo` (the lowest remaining and the
    /// highest burn rate, should several Sloth SLO groups share the labels).
    pub fn sloth(service: &str, slo: &str) -> Self {
        let labels = format!(
            r#"sloth_service="{}",sloth_slo="{}""#,
            quoted(service),
            quoted(slo)
        );
        BudgetSource {
            remaining: format!("min(slo:period_error_budget_remaining:ratio{{{labels}}})"),
            burn_rate: Some(format!("max(slo:current_burn_rate:ratio{{{labels}}})")),
            text: format!("sloth {service}/{slo}"),
        }
    }

    /// Pyrra's generic recording rules of the SLO `slo`: the remaining budget is the
    /// availability's margin over the objective, relative to the budget
    /// (`(availability - objective) / (1 - objective)`); the burn rate is the last five
    /// minutes' error ratio relative to the budget.
    pub fn pyrra(slo: &str) -> Self {
        let l = format!(r#"slo="{}""#, quoted(slo));
        BudgetSource {
            remaining: format!(
                "(min(pyrra_availability{{{l}}}) - max(pyrra_objective{{{l}}})) / (1 - max(pyrra_objective{{{l}}}))"
            ),
            burn_rate: Some(format!(
                "(sum(pyrra_errors:rate5m{{{l}}}) / sum(pyrra_requests:rate5m{{{l}}})) / (1 - max(pyrra_objective{{{l}}}))"
            )),
            text: format!("pyrra {slo}"),
        }
    }
}

/// Which error budgets a policy spends.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum BudgetSelection {
    /// Every budget of the config, with its thresholds.
    #[default]
    All,
    /// These (`[]`: none).
    Named(Vec<BudgetUse>),
}

/// A policy's entry: a config budget (by name) or its own, with thresholds that replace
/// the config's.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetUse {
    pub name: String,
    /// Its own source; `None`: the config's budget of that name.
    pub source: Option<BudgetSource>,
    pub min_remaining: Option<f64>,
    pub max_burn_rate: Option<f64>,
    pub burn_rate_after: Option<f64>,
}

impl BudgetSelection {
    /// The budgets that apply, given the config's; an entry naming a budget the config
    /// does not define is an error (the gate then fails closed).
    pub fn resolve(&self, defined: &[Budget]) -> Result<Vec<Budget>, String> {
        let uses = match self {
            BudgetSelection::All => return Ok(defined.to_vec()),
            BudgetSelection::Named(uses) => uses,
        };
        uses.iter()
            .map(|u| {
                let base = defined.iter().find(|b| b.name == u.name);
                let source = match (&u.source, base) {
                    (Some(s), _) => s.clone(),
                    (None, Some(b)) => b.source.clone(),
                    (None, None) => {
                        return Err(format!(
                            "budget {:?} is not defined in the config's health.budgets",
                            u.name
                        ));
                    }
                };
                Ok(Budget {
                    name: u.name.clone(),
                    source,
                    min_remaining: u
                        .min_remaining
                        .or(base.map(|b| b.min_remaining))
                        .unwrap_or(0.0),
                    max_burn_rate: u.max_burn_rate.or(base.and_then(|b| b.max_burn_rate)),
                    burn_rate_after: u.burn_rate_after.or(base.and_then(|b| b.burn_rate_after)),
                })
            })
            .collect()
    }
}

/// Default period of a namespace's chaos budget.
pub const DEFAULT_BUDGET_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// How much fault time each namespace may take per period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceBudget {
    pub fault_time: Duration,
    pub per: Duration,
    /// Other fault times for some namespaces.
    pub namespaces: BTreeMap<String, Duration>,
}

impl NamespaceBudget {
    /// The fault time `namespace` may take per period.
    pub fn of(&self, namespace: &str) -> Duration {
        self.namespaces
            .get(namespace)
            .copied()
            .unwrap_or(self.fault_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(name: &str, min: f64) -> Budget {
        Budget {
            name: name.into(),
            source: BudgetSource::sloth("checkout", name),
            min_remaining: min,
            max_burn_rate: Some(10.0),
            burn_rate_after: None,
        }
    }

    #[test]
    fn sloth_and_pyrra_queries_name_their_labels_escaped() {
        let s = BudgetSource::sloth("check\"out", "avail");
        assert_eq!(
            s.remaining,
            r#"min(slo:period_error_budget_remaining:ratio{sloth_service="check\"out",sloth_slo="avail"})"#
        );
        assert_eq!(
            s.burn_rate.as_deref(),
            Some(
                r#"max(slo:current_burn_rate:ratio{sloth_service="check\"out",sloth_slo="avail"})"#
            )
        );
        let p = BudgetSource::pyrra("api-errors");
        assert!(
            p.remaining
                .starts_with(r#"(min(pyrra_availability{slo="api-errors"})"#)
        );
        assert!(
            p.burn_rate
                .expect("burn")
                .contains(r#"pyrra_errors:rate5m{slo="api-errors"}"#)
        );
    }

    #[test]
    fn a_policy_takes_all_config_budgets_or_names_them_with_its_own_thresholds() {
        let defined = vec![budget("a", 0.1), budget("b", 0.2)];
        assert_eq!(BudgetSelection::All.resolve(&defined), Ok(defined.clone()));
        assert_eq!(BudgetSelection::Named(vec![]).resolve(&defined), Ok(vec![]));
        let named = BudgetSelection::Named(vec![BudgetUse {
            name: "b".into(),
            source: None,
            min_remaining: Some(0.5),
            max_burn_rate: None,
            burn_rate_after: Some(2.0),
        }]);
        let got = named.resolve(&defined).expect("resolves");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].min_remaining, 0.5);
        assert_eq!(got[0].max_burn_rate, Some(10.0), "kept from the config");
        assert_eq!(got[0].burn_rate_after, Some(2.0));
        let unknown = BudgetSelection::Named(vec![BudgetUse {
            name: "c".into(),
            source: None,
            min_remaining: None,
            max_burn_rate: None,
            burn_rate_after: None,
        }]);
        assert!(
            unknown
                .resolve(&defined)
                .expect_err("refused")
                .contains("\"c\"")
        );
    }
}
