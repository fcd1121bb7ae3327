//! The history: `/timeline`, `/experiments` and a page per experiment.

use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, html};

use super::*;
use crate::{
    api::console::view::*,
    history::Summary,
    record::{ExperimentRecord, TriggerInfo},
    report::model::slo_value,
};

/// `/timeline`.
pub fn timeline_page(v: &Viewer, live: &Live, svg: &str) -> Markup {
    let body = html! {
        p { "One row per policy. Left of the line: the experiments of the last 24 hours (grouped per 10 minutes; select a bar for its experiments). Right: the fires planned for the next 24 hours. Hatched: time the policy's windows or blackouts forbid." }
        figure {
            (PreEscaped(svg))
            figcaption {
                ul.legend {
                    @for v_ in VERDICTS { li { (verdict(v_)) } }
                    li { span.legend-running { "▬" } " running" }
                    li { span.legend-rollout { "▲" } " triggered by a rollout" }
                    li { span.legend-fire { "|" } " planned fire" }
                    li { span.legend-blocked { "▨" } " outside windows / in a blackout" }
                }
            }
        }
    };
    layout(v, live, "Timeline", Nav::Timeline, body)
}

/// The filters of the experiment list, as the form shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub policy: String,
    pub namespace: String,
    pub verdict: String,
    pub since: String,
    pub until: String,
    pub page: usize,
}

impl Filter {
    /// The query string of these filters on page `page`.
    pub fn query(&self, page: usize) -> String {
        let mut parts = Vec::new();
        for (k, val) in [
            ("policy", &self.policy),
            ("namespace", &self.namespace),
            ("verdict", &self.verdict),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !val.is_empty() {
                parts.push(format!(
                    "{k}={}",
                    crate::api::console::timeline::query_value(val)
                ));
            }
        }
        if page > 0 {
            parts.push(format!("page={page}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// Experiments per page of the list.
pub const PAGE_SIZE: usize = 100;

/// `/experiments`: the history with filters.
pub fn experiments_page(
    v: &Viewer,
    live: &Live,
    filter: &Filter,
    policies: &[String],
    rows: &[Summary],
    more: bool,
    error: Option<&str>,
) -> Markup {
    let now = live.now;
    let body = html! {
        form.filters method="get" action=(v.href("experiments")) role="search" aria-label="Filter experiments" {
            div {
                label for="f-policy" { "Policy" }
                select #f-policy name="policy" {
                    option value="" { "any" }
                    @for p in policies {
                        option value=(p) selected[*p == filter.policy] { (p) }
                    }
                }
            }
            div {
                label for="f-namespace" { "Namespace" }
                input #f-namespace type="text" name="namespace" value=(filter.namespace);
            }
            div {
                label for="f-verdict" { "Verdict" }
                select #f-verdict name="verdict" {
                    option value="" { "any" }
                    @for v_ in VERDICTS {
                        option value=(v_.label()) selected[v_.label() == filter.verdict] { (symbol(v_)) " " (v_.label()) }
                    }
                }
            }
            div {
                label for="f-since" { "From (UTC)" }
                input #f-since type="text" name="since" value=(filter.since) placeholder="2026-12-01T10:00";
            }
            div {
                label for="f-until" { "Until (UTC)" }
                input #f-until type="text" name="until" value=(filter.until) placeholder="2026-12-02";
            }
            div { button type="submit" { "Filter" } }
        }
        @if let Some(e) = error { p.warn role="alert" { (e) } }
        @if rows.is_empty() {
            p { "No experiment matches." }
        } @else {
            table.list {
                caption { "Experiments, newest first (page " (filter.page + 1) ")" }
                thead { tr {
                    th scope="col" { "Started" } th scope="col" { "Policy" } th scope="col" { "Verdict" }
                    th scope="col" { "Fault" } th scope="col" { "Trigger" } th scope="col" { "Namespaces" } th scope="col" { "Took" } th scope="col" { "Experiment" }
                } }
                tbody {
                    @for s in rows {
                        tr {
                            td { time datetime=(s.started_at.to_rfc3339()) { (s.started_at.format("%m-%d %H:%M:%S")) } }
                            td { (s.policy) }
                            td { (verdict(s.verdict)) @if let Some(c) = &s.reason_code { " " small { "(" (c) ")" } } }
                            td { (s.fault) @if s.dry_run { " " small { "(dry run)" } } }
                            td { (s.trigger) }
                            td { (s.namespaces.join(", ")) }
                            td { (span((s.ended_at - s.started_at).num_seconds().max(0) as u64)) }
                            td { a href=(v.href(&format!("experiments/{}", crate::api::console::timeline::query_value(&s.id)))) { (s.id) } }
                        }
                    }
                }
            }
        }
        nav.pages aria-label="Pages" {
            @if filter.page > 0 {
                a href=(format!("{}experiments{}", v.root, filter.query(filter.page - 1))) rel="prev" { "← Newer" }
            }
            @if more {
                a href=(format!("{}experiments{}", v.root, filter.query(filter.page + 1))) rel="next" { "Older →" }
            }
        }
        p.muted { "Times in UTC; now " (stamp(now)) "." }
    };
    layout(v, live, "Experiments", Nav::Experiments, body)
}

pub(super) fn trigger(t: &TriggerInfo) -> Markup {
    match t {
        TriggerInfo::Schedule { scheduled_at } => {
            html! { "schedule, planned for " (stamp(*scheduled_at)) }
        }
        TriggerInfo::Rollout {
            workload,
            revision,
            completed_at,
        } => html! {
            "rollout of " (object(workload)) " revision " (revision) ", completed " (stamp(*completed_at))
        },
        TriggerInfo::Manual { source } => html! { "manual (" (source) ")" },
    }
}

pub(super) fn took(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Markup {
    match (a, b) {
        (Some(a), Some(b)) => {
            let ms = (b - a).num_milliseconds().max(0);
            html! { (format!("{:.1} s", ms as f64 / 1000.0)) }
        }
        _ => html! { "–" },
    }
}

/// `/experiments/{id}`: one experiment.
pub fn experiment_page(v: &Viewer, live: &Live, r: &ExperimentRecord) -> Markup {
    let json = serde_json::to_string_pretty(r).unwrap_or_default();
    let body = html! {
        p.lead { (verdict(r.verdict)) @if let Some(c) = &r.reason_code { " (" code { (c) } ")" } " — " (r.reason) }
        dl.facts {
            dt { "Policy" } dd { a href=(v.href(&format!("experiments?policy={}", crate::api::console::timeline::query_value(&r.policy)))) { (r.policy) } }
            dt { "Fault" } dd { code { (r.fault) } @if r.dry_run { " — dry run: nothing was changed" } }
            dt { "Trigger" } dd { (trigger(&r.trigger)) }
            @if let Some(g) = &live.grafana {
                dt { "Grafana" } dd { a href=(grafana_link(g, r.started_at, r.ended_at)) rel="noreferrer" target="_blank" { "Dashboards for this time range" } }
            }
        }
        h2 { "Phases" }
        table {
            caption { "Timings of each phase" }
            thead { tr { th scope="col" { "Phase" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Took" } } }
            tbody {
                tr { th scope="row" { "Gate and selection" } td { (stamp(r.started_at)) } td { @if let Some(t) = r.injected_at { (stamp(t)) } @else { "not injected" } } td { (took(Some(r.started_at), r.injected_at)) } }
                tr { th scope="row" { "Fault held" } td { @if let Some(t) = r.injected_at { (stamp(t)) } } td { @if let Some(t) = r.reverted_at { (stamp(t)) } } td { (took(r.injected_at, r.reverted_at)) } }
                tr { th scope="row" { "Settle and verdict" } td { @if let Some(t) = r.reverted_at.or(r.injected_at) { (stamp(t)) } } td { (stamp(r.ended_at)) } td { (took(r.reverted_at.or(r.injected_at), Some(r.ended_at))) } }
                tr { th scope="row" { "Whole experiment" } td { (stamp(r.started_at)) } td { (stamp(r.ended_at)) } td { (took(Some(r.started_at), Some(r.ended_at))) } }
            }
        }
        h2 { "Targets" }
        (table_of(&r.targets, "No target.", "What was injected into each target, and what its revert did", &["Target", "Outcome", "Injected", "Revert"], |t| html! {
            tr {
                td { (t.kind) " " @if let Some(ns) = &t.namespace { (ns) "/" } (t.name) }
                td { (t.outcome.label()) }
                td.wrap { (t.detail.clone().unwrap_or_default()) }
                td.wrap {
                    @if let Some(rv) = &t.revert {
                        strong { (rv.result.label()) } " — " (object(&rv.object)) " at " (stamp(rv.at))
                        @if let Some(d) = &rv.detail { ": " (d) }
                    } @else { "–" }
                }
            }
        }))
        h2 { "Alerts that fired" }
        (table_of(&r.alerts, "None attributed to this experiment.", "Alerts attributed to this experiment", &["Alert", "Started", "Labels"], |a| html! {
            tr {
                td { (a.name) }
                td { (stamp(a.starts_at)) }
                td.wrap { @for (k, val) in &a.labels { code { (k) "=" (val) } " " } }
            }
        }))
        h2 { "SLO readings" }
        (table_of(&r.slos, "None.", "SLO readings during the experiment", &["SLO", "Value", "Objective", "Breached", "At"], |s| html! {
            tr {
                td { (s.name) }
                td { (slo_value(s)) }
                td { code { (s.objective) } }
                td { @if s.breached { span.bad { "✕ yes" } } @else { span.ok { "✓ no" } } }
                td { (stamp(s.at)) }
            }
        }))
        @if !r.budgets.is_empty() {
            h2 { "Error budgets" }
            (table_of(&r.budgets, "None.", "Error budgets through the experiment", &["Budget", "Remaining at the start", "Burn rate before", "Highest while held", "After", "Limits"], |b| html! {
                tr {
                    td { (b.name) " " code { (b.source) } }
                    td { (opt_number(b.remaining)) " (minimum " (b.min_remaining) ")" }
                    td { (opt_number(b.burn_rate_before)) }
                    td {
                        @if b.max_burn_rate.zip(b.burn_rate_during).is_some_and(|(max, d)| d > max) {
                            span.bad { "✕ " (opt_number(b.burn_rate_during)) }
                        } @else { (opt_number(b.burn_rate_during)) }
                    }
                    td { (opt_number(b.burn_rate_after)) }
                    td { (budget_limits(b)) }
                }
            }))
        }
        details {
            summary { "The record as JSON" }
            pre { (json) }
        }
    };
    layout(v, live, &r.id, Nav::Experiments, body)
}

/// A reading for a person: three decimals, or a dash when there is none.
fn opt_number(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.3}"))
}

/// A budget's burn-rate limits, as a policy sets them (`—`: none).
fn budget_limits(b: &crate::record::BudgetRecord) -> String {
    let limits: Vec<String> = [
        b.max_burn_rate.map(|m| format!("at most {m} while held")),
        b.burn_rate_after_factor
            .map(|k| format!("after ≤ before × {k}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if limits.is_empty() {
        "—".to_string()
    } else {
        limits.join("; ")
    }
}
