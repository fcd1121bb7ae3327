//! Namespace chaos budgets (`limits.namespaceBudget`): the fault time each namespace took
//! in the last period, counted from the history in the cluster, so that every replica,
//! and a restarted havoc, count the same.
//!
//! An experiment's fault time runs from its injection (its start, for one a crash cut
//! short before it said) to its revert (its end; now, while it runs), and is charged in
//! full to every namespace of its targets. Skipped and dry-run experiments took none. A
//! pod kill is charged its observation `duration`: that is how long havoc watches the
//! namespace recover from it.
//!
//! An experiment starts only when its own hold fits in what is left of every namespace it
//! touches (`spent + duration <= budget`), so a budget is never overspent by a long
//! experiment started at its end. Spent time is counted in whole seconds (rounded down),
//! so that the milliseconds each injection and revert take do not add up to a refusal.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::History;
use crate::{policy::domain::NamespaceBudget, record::Verdict};

/// Fault time each namespace took between `since` and `now`.
pub fn fault_time(
    history: &dyn History,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> BTreeMap<String, Duration> {
    let mut spent: BTreeMap<String, Duration> = BTreeMap::new();
    let mut charge =
        |namespaces: &mut dyn Iterator<Item = String>, from: DateTime<Utc>, to: DateTime<Utc>| {
            let (from, to) = (from.max(since), to.min(now));
            let Ok(d) = (to - from).to_std() else { return };
            for ns in namespaces {
                *spent.entry(ns).or_default() += d;
            }
        };
    for s in history.summaries() {
        if s.dry_run || s.verdict == Verdict::Skipped {
            continue;
        }
        let from = s.injected_at.unwrap_or(s.started_at);
        let to = s.reverted_at.unwrap_or(s.ended_at);
        charge(&mut s.namespaces.into_iter(), from, to);
    }
    for r in history.running() {
        if r.intent.dry_run {
            continue;
        }
        let namespaces =
            super::namespaces_of(r.intent.targets.iter().map(|t| t.namespace.as_ref()));
        charge(&mut namespaces.into_iter(), r.intent.started_at, now);
    }
    spent
}

/// One namespace's chaos budget now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSpend {
    pub namespace: String,
    /// Fault time it may take per period, in seconds.
    pub budget_seconds: u64,
    /// Taken in the last period, in whole seconds.
    pub spent_seconds: u64,
    /// What is left, in seconds (0 when spent).
    pub left_seconds: u64,
    /// The period, in seconds (a window ending now).
    pub period_seconds: u64,
}

/// The budgets of `namespaces` (plus every namespace that took fault time, and every one
/// with its own budget), sorted by name.
pub fn spends(
    budget: &NamespaceBudget,
    history: &dyn History,
    namespaces: impl IntoIterator<Item = String>,
    now: DateTime<Utc>,
) -> Vec<NamespaceSpend> {
    let since = now - chrono::Duration::from_std(budget.per).unwrap_or_default();
    let spent = fault_time(history, since, now);
    let mut all: std::collections::BTreeSet<String> = namespaces.into_iter().collect();
    all.extend(spent.keys().cloned());
    all.extend(budget.namespaces.keys().cloned());
    all.into_iter()
        .map(|ns| {
            let total = budget.of(&ns).as_secs();
            let used = spent.get(&ns).map_or(0, Duration::as_secs);
            NamespaceSpend {
                budget_seconds: total,
                spent_seconds: used,
                left_seconds: total.saturating_sub(used),
                period_seconds: budget.per.as_secs(),
                namespace: ns,
            }
        })
        .collect()
}

/// Whether an experiment holding its fault for `hold` may touch `namespaces`: `Err` names
/// the first namespace whose budget has not that much left.
pub fn check(
    budget: &NamespaceBudget,
    history: &dyn History,
    namespaces: &[String],
    hold: Duration,
    now: DateTime<Utc>,
) -> Result<(), String> {
    for s in spends(budget, history, namespaces.iter().cloned(), now) {
        if !namespaces.contains(&s.namespace) {
            continue;
        }
        if s.spent_seconds + hold.as_secs() > s.budget_seconds {
            return Err(format!(
                "namespace {} has {}s of its chaos budget left ({}s of {}s spent in the last {}); this experiment holds its fault {}s",
                s.namespace,
                s.left_seconds,
                s.spent_seconds,
                s.budget_seconds,
                crate::policy::duration::HumanDuration(budget.per),
                hold.as_secs()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        history::InMemory,
        record::{TargetOutcome, TargetRecord, Verdict, tests::record},
    };

    fn t(s: &str) -> DateTime<Utc> {
        format!("2026-12-05T{s}Z").parse().expect("time")
    }

    fn held(
        id: &str,
        ns: &str,
        from: &str,
        to: &str,
        verdict: Verdict,
    ) -> crate::record::ExperimentRecord {
        let mut r = record(id, verdict);
        r.targets = vec![TargetRecord {
            kind: "Deployment".into(),
            namespace: Some(ns.into()),
            name: "web".into(),
            outcome: TargetOutcome::Injected,
            detail: None,
            revert: None,
        }];
        r.started_at = t(from);
        r.injected_at = Some(t(from));
        r.reverted_at = Some(t(to));
        r.ended_at = t(to);
        r
    }

    fn budget(secs: u64) -> NamespaceBudget {
        NamespaceBudget {
            fault_time: Duration::from_secs(secs),
            per: Duration::from_secs(24 * 3600),
            namespaces: BTreeMap::from([("payments".to_string(), Duration::ZERO)]),
        }
    }

    #[test]
    fn the_third_experiment_does_not_fit_a_budget_of_two() {
        let b = budget(120);
        let ns = vec!["shop".to_string()];
        let mut h = InMemory(vec![held(
            "a",
            "shop",
            "10:00:00",
            "10:01:00.400",
            Verdict::Passed,
        )]);
        assert_eq!(
            check(&b, &h, &ns, Duration::from_secs(60), t("11:00:00")),
            Ok(())
        );
        h.0.push(held(
            "b",
            "shop",
            "10:05:00",
            "10:06:00.300",
            Verdict::Deviated,
        ));
        let why = check(&b, &h, &ns, Duration::from_secs(60), t("11:00:00")).expect_err("refused");
        assert!(why.contains("namespace shop has 0s"), "{why}");
        // Another namespace, a skipped or dry-run experiment, or one outside the period
        // does not count.
        assert_eq!(
            check(
                &b,
                &h,
                &["cart".into()],
                Duration::from_secs(60),
                t("11:00:00")
            ),
            Ok(())
        );
        let mut dry = held("c", "cart", "10:00:00", "10:59:00", Verdict::Passed);
        dry.dry_run = true;
        h.0.push(dry);
        h.0.push(held("d", "cart", "10:00:00", "10:59:00", Verdict::Skipped));
        assert_eq!(
            check(
                &b,
                &h,
                &["cart".into()],
                Duration::from_secs(60),
                t("11:00:00")
            ),
            Ok(())
        );
        let next_day = t("11:00:00") + chrono::Duration::hours(24);
        assert_eq!(
            check(&b, &h, &ns, Duration::from_secs(60), next_day),
            Ok(())
        );
        // Half of "a" is still in the window 24 h after its middle.
        let spent = fault_time(&h, t("10:00:30"), t("11:00:00"));
        assert_eq!(spent["shop"].as_secs(), 30 + 60);
    }

    #[test]
    fn a_namespace_may_have_its_own_budget_and_the_report_lists_it() {
        let b = budget(120);
        let h = InMemory(vec![held(
            "a",
            "shop",
            "10:00:00",
            "10:01:00",
            Verdict::Passed,
        )]);
        let why = check(
            &b,
            &h,
            &["payments".into()],
            Duration::from_secs(1),
            t("11:00:00"),
        )
        .expect_err("refused");
        assert!(why.contains("payments has 0s"), "{why}");
        let spends = spends(&b, &h, ["web".to_string()], t("11:00:00"));
        let names: Vec<&str> = spends.iter().map(|s| s.namespace.as_str()).collect();
        assert_eq!(names, ["payments", "shop", "web"]);
        assert_eq!((spends[1].spent_seconds, spends[1].left_seconds), (60, 60));
    }
}
