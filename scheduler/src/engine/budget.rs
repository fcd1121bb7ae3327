//! Error budgets through one experiment (issue "budgets", DESIGN section 5): read with
//! the other health sources ([`super::health`]), checked at the gate ([`gate`]), watched
//! while the fault is held (a burn rate above the limit reverts it) and judged after the
//! settle (the burn rate after may not exceed the one before times the policy's factor).
//!
//! A budget that cannot be read (an error, or no data) always closes the gate and, while
//! a fault is held under a burn-rate limit, ends the hold: the budgets are the guard that
//! says whether chaos is affordable, so not knowing means no.

use std::collections::BTreeMap;

use crate::{policy::domain::Budget, record::BudgetRecord, record::SkipReason};

/// One reading of one budget.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetReading {
    pub budget: Budget,
    /// The remaining share; `None`: unreadable (the observation says why).
    pub remaining: Option<f64>,
    /// `None`: the budget has no burn-rate query, or it could not be read.
    pub burn_rate: Option<f64>,
}

/// A burn rate "before" counts as at least this: a budget spent at its sustainable pace
/// (or slower) is not a baseline a little noise could multiply past `burnRateAfter`.
const BURN_RATE_FLOOR: f64 = 1.0;

/// A reading as people compare it: three decimals at most (`0.835`, `14.5`, `3`).
pub fn value(v: f64) -> String {
    format!("{:.3}", v)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// Whether the budgets let an experiment start: none unreadable, none below its
/// minimum, none burning faster than its limit.
pub fn gate(readings: &[BudgetReading], unreadable: &[String]) -> Result<(), SkipReason> {
    if !unreadable.is_empty() {
        return Err(SkipReason::BudgetUnreadable(format!(
            "error budget unreadable: {}",
            unreadable.join("; ")
        )));
    }
    for r in readings {
        let b = &r.budget;
        if let Some(left) = r.remaining
            && left < b.min_remaining
        {
            return Err(SkipReason::BudgetExhausted(format!(
                "error budget {} ({}): {} remaining, the policy needs {}",
                b.name,
                b.source.text,
                value(left),
                value(b.min_remaining)
            )));
        }
        if let (Some(rate), Some(max)) = (r.burn_rate, b.max_burn_rate)
            && rate > max
        {
            return Err(SkipReason::BudgetBurning(format!(
                "error budget {} ({}) burns at {}, above the limit {}",
                b.name,
                b.source.text,
                value(rate),
                value(max)
            )));
        }
    }
    Ok(())
}

/// One budget through an experiment.
#[derive(Debug, Clone)]
struct Track {
    budget: Budget,
    remaining: Option<f64>,
    before: Option<f64>,
    during: Option<f64>,
    after: Option<f64>,
    /// The first burn rate read above the limit while held.
    exceeded: Option<f64>,
}

/// The budgets of one experiment, from the gate's reading to the end of the settle.
#[derive(Debug, Clone, Default)]
pub struct Tracks {
    tracks: BTreeMap<String, Track>,
    /// Until the revert: readings are "during"; after it, "after".
    reverted: bool,
}

impl Tracks {
    /// From the gate's readings.
    pub fn new(baseline: &[BudgetReading]) -> Self {
        let tracks = baseline
            .iter()
            .map(|r| {
                let t = Track {
                    budget: r.budget.clone(),
                    remaining: r.remaining,
                    before: r.burn_rate,
                    during: None,
                    after: None,
                    exceeded: None,
                };
                (r.budget.name.clone(), t)
            })
            .collect();
        Tracks {
            tracks,
            reverted: false,
        }
    }

    /// From now on, readings are the settle's.
    pub fn reverted(&mut self) {
        self.reverted = true;
    }

    /// Takes one observation's readings. `Err`: while held, a budget with a burn-rate
    /// limit could not be read (the hold must end: it is not watched).
    pub fn observe(
        &mut self,
        readings: &[BudgetReading],
        unreadable: &[String],
    ) -> Result<(), String> {
        if !self.reverted
            && !unreadable.is_empty()
            && self
                .tracks
                .values()
                .any(|t| t.budget.max_burn_rate.is_some())
        {
            return Err(format!(
                "error budget unreadable while the fault is held: {}",
                unreadable.join("; ")
            ));
        }
        for r in readings {
            let Some(t) = self.tracks.get_mut(&r.budget.name) else {
                continue;
            };
            let Some(rate) = r.burn_rate else { continue };
            if self.reverted {
                t.after = Some(rate);
            } else {
                t.during = Some(t.during.map_or(rate, |d| d.max(rate)));
                if t.exceeded.is_none() && t.budget.max_burn_rate.is_some_and(|max| rate > max) {
                    t.exceeded = Some(rate);
                }
            }
        }
        Ok(())
    }

    /// A burn rate above its limit while the fault was held.
    pub fn deviation(&self) -> Option<String> {
        let parts: Vec<String> = self
            .tracks
            .values()
            .filter_map(|t| {
                let rate = t.exceeded?;
                Some(format!(
                    "error budget {} burned at {} while the fault was held (limit {})",
                    t.budget.name,
                    value(rate),
                    value(t.budget.max_burn_rate.unwrap_or_default())
                ))
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The `burnRateAfter` rule, once the settle is over: the burn rate after may not be
    /// more than the one before (at least 1) times the factor.
    pub fn after_rule(&self) -> Option<String> {
        let parts: Vec<String> = self
            .tracks
            .values()
            .filter_map(|t| {
                let k = t.budget.burn_rate_after?;
                let after = t.after?;
                let before = t.before.unwrap_or(0.0).max(BURN_RATE_FLOOR);
                (after > before * k).then(|| {
                    format!(
                        "error budget {} burns at {} after the experiment, more than {} before × {}",
                        t.budget.name,
                        value(after),
                        value(t.before.unwrap_or(0.0)),
                        value(k)
                    )
                })
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// For the record.
    pub fn records(&self) -> Vec<BudgetRecord> {
        self.tracks
            .values()
            .map(|t| BudgetRecord {
                name: t.budget.name.clone(),
                source: t.budget.source.text.clone(),
                remaining: t.remaining,
                min_remaining: t.budget.min_remaining,
                burn_rate_before: t.before,
                burn_rate_during: t.during,
                burn_rate_after: t.after,
                max_burn_rate: t.budget.max_burn_rate,
                burn_rate_after_factor: t.budget.burn_rate_after,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::domain::BudgetSource;

    fn budget(min: f64, max: Option<f64>, after: Option<f64>) -> Budget {
        Budget {
            name: "checkout".into(),
            source: BudgetSource::sloth("checkout", "availability"),
            min_remaining: min,
            max_burn_rate: max,
            burn_rate_after: after,
        }
    }

    fn reading(b: &Budget, remaining: Option<f64>, burn: Option<f64>) -> BudgetReading {
        BudgetReading {
            budget: b.clone(),
            remaining,
            burn_rate: burn,
        }
    }

    #[test]
    fn the_gate_skips_a_spent_a_burning_and_an_unreadable_budget_with_the_values() {
        let b = budget(0.25, Some(10.0), None);
        assert_eq!(gate(&[reading(&b, Some(0.3), Some(2.0))], &[]), Ok(()));
        let spent = gate(&[reading(&b, Some(0.1234), Some(2.0))], &[]).expect_err("refused");
        assert_eq!(spent.label(), "budgetExhausted");
        assert_eq!(
            spent.to_string(),
            "error budget checkout (sloth checkout/availability): 0.123 remaining, the policy needs 0.25"
        );
        let burning = gate(&[reading(&b, Some(0.9), Some(12.5))], &[]).expect_err("refused");
        assert_eq!(burning.label(), "budgetBurning");
        assert!(burning.to_string().contains("12.5"), "{burning}");
        let unreadable = gate(&[], &["checkout: no data".into()]).expect_err("refused");
        assert_eq!(unreadable.label(), "budgetUnreadable");
        assert!(unreadable.to_string().contains("no data"));
        // Exactly the minimum is enough.
        assert_eq!(gate(&[reading(&b, Some(0.25), None)], &[]), Ok(()));
    }

    #[test]
    fn a_burn_rate_above_the_limit_while_held_deviates_and_the_record_keeps_all_three() {
        let b = budget(0.0, Some(10.0), None);
        let mut t = Tracks::new(&[reading(&b, Some(0.8), Some(1.5))]);
        t.observe(&[reading(&b, Some(0.8), Some(4.0))], &[])
            .expect("read");
        assert_eq!(t.deviation(), None);
        t.observe(&[reading(&b, Some(0.7), Some(14.0))], &[])
            .expect("read");
        let why = t.deviation().expect("deviated");
        assert!(
            why.contains("burned at 14") && why.contains("limit 10"),
            "{why}"
        );
        t.reverted();
        // After the revert, a high burn rate is "after", not a new breach of the limit.
        t.observe(&[reading(&b, Some(0.7), Some(20.0))], &[])
            .expect("read");
        t.observe(&[reading(&b, Some(0.7), Some(6.0))], &[])
            .expect("read");
        let r = &t.records()[0];
        assert_eq!(r.burn_rate_before, Some(1.5));
        assert_eq!(r.burn_rate_during, Some(14.0));
        assert_eq!(r.burn_rate_after, Some(6.0));
        assert_eq!(r.remaining, Some(0.8));
    }

    #[test]
    fn an_unreadable_budget_ends_a_hold_only_under_a_burn_rate_limit() {
        let limited = budget(0.0, Some(10.0), None);
        let mut t = Tracks::new(&[reading(&limited, Some(0.8), Some(1.0))]);
        assert!(t.observe(&[], &["checkout: no data".into()]).is_err());
        t.reverted();
        assert!(t.observe(&[], &["checkout: no data".into()]).is_ok());
        let unlimited = budget(0.0, None, None);
        let mut t = Tracks::new(&[reading(&unlimited, Some(0.8), Some(1.0))]);
        assert!(t.observe(&[], &["checkout: no data".into()]).is_ok());
    }

    #[test]
    fn the_after_rule_compares_with_the_burn_rate_before_floored_at_one() {
        let b = budget(0.0, None, Some(2.0));
        // Before 3: after 6 holds, after 6.5 does not.
        let mut t = Tracks::new(&[reading(&b, Some(0.8), Some(3.0))]);
        t.reverted();
        t.observe(&[reading(&b, Some(0.8), Some(6.0))], &[])
            .expect("read");
        assert_eq!(t.after_rule(), None);
        t.observe(&[reading(&b, Some(0.8), Some(6.5))], &[])
            .expect("read");
        assert!(t.after_rule().expect("deviates").contains("6.5"));
        // Before 0.1 counts as 1: after 1.9 holds.
        let mut t = Tracks::new(&[reading(&b, Some(0.8), Some(0.1))]);
        t.reverted();
        t.observe(&[reading(&b, Some(0.8), Some(1.9))], &[])
            .expect("read");
        assert_eq!(t.after_rule(), None);
    }
}
