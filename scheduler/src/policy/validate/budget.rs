//! Budgets: the config's error budgets (`health.budgets`), a policy's choice of them
//! (`health.budgets`), and the namespaces' chaos budget (`limits.namespaceBudget`).

use std::collections::BTreeSet;

use super::{Checker, Context, is_dns_label};
use crate::policy::{
    domain::{
        Budget, BudgetSelection, BudgetSource, BudgetUse, DEFAULT_BUDGET_PERIOD, NamespaceBudget,
    },
    model,
};

/// The source an entry names (`sloth`, `pyrra`, or `remaining` with `burnRate`), if any;
/// more than one is an error.
fn source(c: &mut Checker, p: &str, b: &model::Budget) -> Option<BudgetSource> {
    let given = [b.sloth.is_some(), b.pyrra.is_some(), b.remaining.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if given > 1 {
        c.key(
            p,
            "a budget's source is one of sloth, pyrra, or remaining (with burnRate): not several",
        );
        return None;
    }
    if b.burn_rate.is_some() && b.remaining.is_none() {
        c.key(
            &format!("{p}/burnRate"),
            "burnRate goes with remaining (sloth and pyrra bring their own)",
        );
    }
    if let Some(s) = &b.sloth {
        if s.service.trim().is_empty() {
            c.value(&format!("{p}/sloth/service"), "empty Sloth service");
        }
        if s.slo.trim().is_empty() {
            c.value(&format!("{p}/sloth/slo"), "empty Sloth SLO");
        }
        return Some(BudgetSource::sloth(&s.service, &s.slo));
    }
    if let Some(py) = &b.pyrra {
        if py.slo.trim().is_empty() {
            c.value(&format!("{p}/pyrra/slo"), "empty Pyrra SLO name");
        }
        return Some(BudgetSource::pyrra(&py.slo));
    }
    let remaining = b.remaining.as_ref()?;
    if remaining.trim().is_empty() {
        c.value(&format!("{p}/remaining"), "empty query");
    }
    if b.burn_rate.as_ref().is_some_and(|q| q.trim().is_empty()) {
        c.value(&format!("{p}/burnRate"), "empty query");
    }
    Some(BudgetSource {
        remaining: remaining.clone(),
        burn_rate: b.burn_rate.clone(),
        text: "query".to_string(),
    })
}

/// The thresholds of an entry, checked: `(minRemaining, maxBurnRate, burnRateAfter)`.
fn thresholds(
    c: &mut Checker,
    p: &str,
    b: &model::Budget,
    has_burn_rate: Option<bool>,
) -> (Option<f64>, Option<f64>, Option<f64>) {
    if let Some(m) = b.min_remaining
        && !(0.0..=1.0).contains(&m)
    {
        c.value(
            &format!("{p}/minRemaining"),
            format!("minRemaining is a share of the budget, 0..1: not {m}"),
        );
    }
    for (field, v) in [
        ("maxBurnRate", b.max_burn_rate),
        ("burnRateAfter", b.burn_rate_after),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0)
        {
            c.value(
                &format!("{p}/{field}"),
                format!("{field} must be a positive number: not {v}"),
            );
        }
    }
    if has_burn_rate == Some(false) {
        for (field, v) in [
            ("maxBurnRate", b.max_burn_rate),
            ("burnRateAfter", b.burn_rate_after),
        ] {
            if v.is_some() {
                c.key(
                    &format!("{p}/{field}"),
                    format!("{field} needs a burn rate: this budget has no burnRate query"),
                );
            }
        }
    }
    (b.min_remaining, b.max_burn_rate, b.burn_rate_after)
}

/// The config's `health.budgets`.
pub(super) fn config_budgets(c: &mut Checker, list: &[model::Budget]) -> Vec<Budget> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, b) in list.iter().enumerate() {
        let p = format!("/spec/health/budgets/{i}");
        if !names.insert(b.name.clone()) {
            c.value(
                &format!("{p}/name"),
                format!("duplicate budget name {:?}", b.name),
            );
        }
        if b.name.trim().is_empty() {
            c.value(&format!("{p}/name"), "empty budget name");
        }
        let Some(source) = source(c, &p, b) else {
            if b.sloth.is_none() && b.pyrra.is_none() && b.remaining.is_none() {
                c.key(
                    &p,
                    "a budget needs a source: sloth {service, slo}, pyrra {slo}, or remaining (PromQL)",
                );
            }
            continue;
        };
        let (min, max, after) = thresholds(c, &p, b, Some(source.burn_rate.is_some()));
        out.push(Budget {
            name: b.name.clone(),
            source,
            min_remaining: min.unwrap_or(0.0),
            max_burn_rate: max,
            burn_rate_after: after,
        });
    }
    out
}

/// A policy's `health.budgets`: config budgets by name, or its own.
pub(super) fn policy_budgets(
    c: &mut Checker,
    list: Option<&[model::Budget]>,
    ctx: &Context,
) -> BudgetSelection {
    let Some(list) = list else {
        return BudgetSelection::All;
    };
    let mut uses = Vec::new();
    for (i, b) in list.iter().enumerate() {
        let p = format!("/spec/health/budgets/{i}");
        let own = source(c, &p, b);
        let known = ctx.budgets.as_ref().map(|k| k.contains(&b.name));
        if own.is_none()
            && b.remaining.is_none()
            && b.sloth.is_none()
            && b.pyrra.is_none()
            && known == Some(false)
        {
            c.value(
                &format!("{p}/name"),
                format!(
                    "unknown budget {:?}: not defined in the config's health.budgets (or give its source here: sloth, pyrra or remaining)",
                    b.name
                ),
            );
        }
        let has_burn_rate = own.as_ref().map(|s| s.burn_rate.is_some());
        let (min_remaining, max_burn_rate, burn_rate_after) = thresholds(c, &p, b, has_burn_rate);
        uses.push(BudgetUse {
            name: b.name.clone(),
            source: own,
            min_remaining,
            max_burn_rate,
            burn_rate_after,
        });
    }
    BudgetSelection::Named(uses)
}

/// The config's `limits.namespaceBudget`.
pub(super) fn namespace_budget(
    c: &mut Checker,
    b: Option<&model::NamespaceBudget>,
) -> Option<NamespaceBudget> {
    let b = b?;
    let p = "/spec/limits/namespaceBudget";
    let per = b.per.map_or(DEFAULT_BUDGET_PERIOD, |d| d.0);
    if per.is_zero() {
        c.value(&format!("{p}/per"), "the period must be longer than 0s");
    }
    for (field, d) in std::iter::once(("faultTime".to_string(), b.fault_time.0)).chain(
        b.namespaces
            .iter()
            .map(|(ns, d)| (format!("namespaces/{ns}"), d.0)),
    ) {
        if d > per {
            c.value(
                &format!("{p}/{field}"),
                format!(
                    "{}s of fault time is more than the period ({}s): the budget would never bind",
                    d.as_secs(),
                    per.as_secs()
                ),
            );
        }
    }
    for ns in b.namespaces.keys() {
        if !is_dns_label(ns) {
            c.key(
                &format!("{p}/namespaces/{ns}"),
                format!("invalid namespace name {ns:?}"),
            );
        }
    }
    Some(NamespaceBudget {
        fault_time: b.fault_time.0,
        per,
        namespaces: b.namespaces.iter().map(|(k, v)| (k.clone(), v.0)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::policy::{Context, Expect, fixtures, load_str};

    /// Every problem of a config or policy document, as `LINE:COL: MESSAGE`.
    fn problems(text: &str, ctx: &Context) -> Vec<String> {
        load_str(std::path::Path::new("x.yaml"), text, ctx, Expect::Any)
            .diagnostics
            .iter()
            .map(|d| format!("{}:{}: {}", d.pos.line, d.pos.col, d.message))
            .collect()
    }

    const PROM: &str = "http://prometheus:9090";

    #[test]
    fn config_budgets_take_one_source_and_sane_thresholds() {
        let config = fixtures::config()
            .set("/health/prometheus", json!({"url": PROM}))
            .set(
                "/health/budgets",
                json!([
                    {"name": "a", "sloth": {"service": "s", "slo": "o"}, "minRemaining": 0.2, "maxBurnRate": 10},
                    {"name": "b", "pyrra": {"slo": "p"}, "burnRateAfter": 2},
                    {"name": "c", "remaining": "vector(0.5)"},
                ]),
            )
            .build();
        let b = &config.health.budgets;
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].min_remaining, b[0].max_burn_rate), (0.2, Some(10.0)));
        assert_eq!(b[1].source.text, "pyrra p");
        assert_eq!(
            (
                b[2].source.remaining.as_str(),
                b[2].source.burn_rate.as_ref()
            ),
            ("vector(0.5)", None)
        );

        let bad = fixtures::config()
            .set("/health/none", json!(false))
            .set("/health/prometheus", json!({"url": PROM}))
            .set(
                "/health/budgets",
                json!([
                    {"name": "a", "sloth": {"service": "s", "slo": "o"}, "pyrra": {"slo": "p"}},
                    {"name": "b", "remaining": "vector(1)", "maxBurnRate": 3},
                    {"name": "c", "pyrra": {"slo": "p"}, "minRemaining": 2},
                    {"name": "c"},
                ]),
            )
            .set(
                "/limits/namespaceBudget",
                json!({"faultTime": "2d", "namespaces": {"Bad_NS": "1m"}}),
            );
        let all = problems(&bad.text(), &Context::default()).join("\n");
        for needle in [
            "one of sloth, pyrra, or remaining",
            "maxBurnRate needs a burn rate",
            "minRemaining is a share of the budget, 0..1: not 2",
            "duplicate budget name \"c\"",
            "a budget needs a source",
            "more than the period (86400s)",
            "invalid namespace name \"Bad_NS\"",
        ] {
            assert!(all.contains(needle), "{needle}:\n{all}");
        }
        // Every problem is located (a line and a column, not 0:0).
        assert!(all.lines().all(|l| !l.starts_with("0:")), "{all}");
    }

    #[test]
    fn a_policy_names_config_budgets_or_brings_its_own() {
        let config = fixtures::config()
            .set("/health/prometheus", json!({"url": PROM}))
            .set(
                "/health/budgets",
                json!([{"name": "checkout", "sloth": {"service": "c", "slo": "a"}}]),
            )
            .build();
        let ok = fixtures::policy("p")
            .namespaces(&["d"])
            .set(
                "/health/budgets",
                json!([
                    {"name": "checkout", "minRemaining": 0.5},
                    {"name": "own", "pyrra": {"slo": "x"}, "maxBurnRate": 6},
                ]),
            )
            .within(&config)
            .build();
        let resolved = ok
            .health
            .budgets
            .resolve(&config.health.budgets)
            .expect("resolves");
        assert_eq!(resolved[0].min_remaining, 0.5);
        assert_eq!(resolved[1].source.text, "pyrra x");
        let unknown = fixtures::policy("p")
            .namespaces(&["d"])
            .set("/health/budgets", json!([{"name": "nope"}]));
        let all = problems(&unknown.text(), &config.context()).join("\n");
        assert!(all.contains("unknown budget \"nope\""), "{all}");
    }
}
