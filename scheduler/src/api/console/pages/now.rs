//! `/`: what havoc is doing now.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::*;
use crate::{api::console::view::*, history::Summary};

/// `/`: what havoc is doing now.
pub fn now_page(v: &Viewer, live: &Live, today: &[Summary], today_since: DateTime<Utc>) -> Markup {
    let now = live.now;
    let body = html! {
        section aria-labelledby="h-service" {
            h2 #h-service { "Service" }
            dl.facts {
                dt { "This replica" }
                dd {
                    @if live.leader { strong { "leads" } " (it injects)" } @else { "follows (another replica leads and injects)" }
                    @if let Some(p) = &live.pod { " · pod " code { (p) } }
                }
                dt { "Circuit breaker" }
                dd {
                    @let breakers = live.breakers();
                    @if breakers.is_empty() {
                        "closed: no policy paused by a deviation"
                    } @else {
                        "open for " (breakers.len()) " policy(ies): "
                        @for (i, (name, p)) in breakers.iter().enumerate() {
                            @if i > 0 { ", " }
                            (name)
                            @if let Some(u) = p.until { " until " (stamp(u)) }
                        }
                    }
                    " (a deviation pauses for " (span(live.breaker_cooldown.as_secs())) ")"
                }
            }
        }
        section aria-labelledby="h-running" {
            h2 #h-running { "Experiments running" }
            (table_of(&live.running, "None.", "Experiments running in this replica", &["Experiment", "Policy", "Started", "Action"], |r| html! {
                tr {
                    td { a href=(v.href(&format!("experiments/{}", crate::api::console::timeline::query_value(&r.id)))) { (r.id) } }
                    td { (r.policy) }
                    td { @if let Some(t) = r.started { (when(t, now)) } }
                    td {
                        @if v.session.is_some() {
                            form.inline method="post" action=(v.href("end")) {
                                (v.csrf())
                                input type="hidden" name="experiment" value=(r.id);
                                button type="submit" aria-label={"End " (r.id) " and revert its faults now"} { "End and revert now" }
                            }
                        }
                    }
                }
            }))
        }
        section aria-labelledby="h-held" {
            h2 #h-held { "Faults held now" }
            (held_table(v, live, "Faults held in the cluster now", false))
        }
        section aria-labelledby="h-health" {
            h2 #h-health { "Health sources" }
            (table_of(&live.sources, "No health source is configured (health: {none: true}).", "Last reading of each source, as experiments read them", &["Source", "Reads", "Last reading", "Age", "Latency"], |s| html! {
                tr {
                    td { code { (s.name) } }
                    td.wrap { code { (s.what) } }
                    @if let Some(r) = &s.last {
                        td {
                            @match &r.outcome {
                                Ok(text) => { span.ok { "✓ " } (text) }
                                Err(e) => { span.bad { "✕ unreadable: " } (e) }
                            }
                        }
                        td { (when(r.at, now)) }
                        td { (r.latency.as_millis()) " ms" }
                    } @else {
                        td colspan="3" { "not read yet (sources are read by experiments)" }
                    }
                }
            }))
        }
        @if let Some((period, spends)) = &live.namespace_budgets {
            section aria-labelledby="h-budgets" {
                h2 #h-budgets { "Namespace chaos budgets" }
                p { "Fault time each namespace may take in any " (span(*period)) ", counted from the history in the cluster (the same on every replica). An experiment starts only if its hold fits in what is left." }
                (table_of(spends, "No namespace yet.", "Chaos budget of each namespace", &["Namespace", "Spent", "Left", "Budget"], |s| html! {
                    tr {
                        td { code { (s.namespace) } }
                        td { (span(s.spent_seconds)) }
                        td {
                            @if s.left_seconds == 0 { span.bad { "✕ spent" } } @else { (span(s.left_seconds)) }
                        }
                        td { (span(s.budget_seconds)) }
                    }
                }))
            }
        }
        section aria-labelledby="h-today" {
            h2 #h-today { "Today's experiments" }
            p { "Since " (stamp(today_since)) " (midnight in " (live.tz.name()) "): " (today.len()) " experiment(s)." }
            ul.counts {
                @for (verdict_, n) in by_verdict(today) {
                    li {
                        a href=(v.href(&format!("experiments?verdict={}&since={}", verdict_.label(), crate::api::console::timeline::query_value(&today_since.format("%Y-%m-%dT%H:%M:%SZ").to_string())))) {
                            (verdict(verdict_)) ": " strong { (n) }
                        }
                    }
                }
            }
        }
    };
    layout(v, live, "Now", Nav::Now, body)
}
