//! `/policies`, `/faults`, the login and the one-line message pages.

use maud::{Markup, html};

use super::*;
use crate::{api::console::view::*, history::Summary};

/// One policy's row: the view, its pause, whether it runs, its last experiment.
#[derive(Debug, Clone)]
pub struct PolicyRow<'a> {
    pub view: &'a PolicyView,
    pub paused: Option<&'a crate::state::Pause>,
    pub running: Option<&'a str>,
    pub last: Option<&'a Summary>,
}

/// The pause durations the policies page offers.
pub const PAUSE_CHOICES: [(&str, &str); 5] = [
    ("15m", "15 minutes"),
    ("1h", "1 hour"),
    ("4h", "4 hours"),
    ("24h", "24 hours"),
    ("", "until resumed"),
];

/// `/policies`.
pub fn policies_page(v: &Viewer, live: &Live, rows: &[PolicyRow]) -> Markup {
    let now = live.now;
    let body = html! {
        @if let Some(r) = &live.rejected {
            @let superseded = live.applied_at.is_some_and(|a| a > r.at) && !r.at_startup;
            section.rejected aria-labelledby="h-rejected" {
                h2 #h-rejected {
                    @if r.at_startup { "Files left out at start-up" } @else { "Last rejected reload" }
                }
                p {
                    (stamp(r.at)) " (" (when(r.at, now)) "). "
                    @if r.at_startup {
                        "These files had problems and were not loaded; the others run."
                    } @else if superseded {
                        "A later reload was applied since."
                    } @else {
                        "The whole set was refused: the last good policies keep running."
                    }
                }
                pre.diagnostics { @for d in &r.diagnostics { (d) "\n" } }
            }
        }
        @if rows.is_empty() {
            p { "No policy is loaded." }
        } @else {
            table.list {
                caption { "Policies loaded" @if let Some(a) = live.applied_at { ", last applied " (stamp(a)) } }
                thead { tr {
                    th scope="col" { "Policy" } th scope="col" { "Mode" } th scope="col" { "Fault and target" }
                    th scope="col" { "Next fires" } th scope="col" { "Last verdict" } th scope="col" { "State" }
                } }
                tbody {
                    @for row in rows {
                        @let p = row.view;
                        tr {
                            th scope="row" {
                                a href=(v.href(&format!("experiments?policy={}", crate::api::console::timeline::query_value(&p.name)))) { (p.name) }
                                br; small { code { (p.file) ":" (p.line) } }
                            }
                            td { @if p.dry_run { "dry run" } @else { strong { "LIVE" } } }
                            td.wrap { code { (p.fault) } " for " (span(p.duration.as_secs())) br; small { (p.target) } }
                            td {
                                @if !p.schedule.is_empty() { small { (p.schedule) } br; }
                                @if p.rollout_triggers > 0 { small { (p.rollout_triggers) " rollout trigger(s)" } br; }
                                @for f in p.fires.iter().take(3) {
                                    time datetime=(f.to_rfc3339()) { (f.format("%a %H:%M:%S %:z")) } br;
                                }
                                @if p.fires.len() > 3 { small { "+" (p.fires.len() - 3) " more in 24 h" } }
                                @if p.fires.is_empty() && !p.schedule.is_empty() { small { "no fire in the next 24 h" } }
                            }
                            td {
                                @if let Some(l) = row.last {
                                    a href=(v.href(&format!("experiments/{}", crate::api::console::timeline::query_value(&l.id)))) { (verdict(l.verdict)) }
                                    br; small { (when(l.ended_at, now)) }
                                } @else { "–" }
                            }
                            td {
                                @if let Some(id) = row.running { "running " a href=(v.href(&format!("experiments/{}", crate::api::console::timeline::query_value(id)))) { (id) } br; }
                                @if let Some(pause) = row.paused {
                                    "⏸ paused"
                                    @if let Some(u) = pause.until { " until " (stamp(u)) } @else { " until resumed" }
                                    br; small { (pause.reason) }
                                    @if v.session.is_some() {
                                        form.inline method="post" action=(v.href("resume")) {
                                            (v.csrf())
                                            input type="hidden" name="policy" value=(p.name);
                                            input type="hidden" name="confirm" value="yes";
                                            button type="submit" aria-label={"Resume " (p.name)} { "Resume" }
                                        }
                                    }
                                } @else {
                                    "▶ active"
                                    @if v.session.is_some() {
                                        form.pause method="post" action=(v.href("pause")) {
                                            (v.csrf())
                                            input type="hidden" name="policy" value=(p.name);
                                            label for={"for-" (p.name)} { "Pause for" }
                                            select id={"for-" (p.name)} name="for" {
                                                @for (value, label) in PAUSE_CHOICES { option value=(value) { (label) } }
                                            }
                                            label for={"why-" (p.name)} { "Reason" }
                                            input id={"why-" (p.name)} type="text" name="reason" maxlength="500";
                                            button type="submit" aria-label={"Pause " (p.name)} { "Pause" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(v, live, "Policies", Nav::Policies, body)
}

/// `/faults`: every revert record the recovery watches see.
pub fn faults_page(v: &Viewer, live: &Live) -> Markup {
    let body = html! {
        p { "Every object that carries a havoc revert record (annotation " code { "havoc.dev/revert" } "), whoever owns it. The leader's recovery sweep reverts orphaned records at once and anyone's after its deadline; " code { "havoc revert --all" } " reverts them all without the service." }
        (held_table(v, live, "Revert records in the cluster", true))
        @if !live.unreadable.is_empty() {
            h2 { "Records havoc cannot read" }
            p { "havoc never guesses what to restore: look at these objects." }
            ul { @for (o, why) in &live.unreadable { li { (object(o)) ": " (why) } } }
        }
    };
    layout(v, live, "Faults in the cluster", Nav::Faults, body)
}

/// `/login`.
pub fn login_page(v: &Viewer, live: &Live, csrf: &str, error: Option<&str>) -> Markup {
    let body = html! {
        @if !v.login_enabled {
            p.warn { "Logging in needs the API token, and none is configured (server.token): the console is read-only." }
        } @else {
            @if let Some(e) = error { p.warn role="alert" { (e) } }
            form.login method="post" action=(v.href("login")) {
                input type="hidden" name="csrf" value=(csrf);
                div {
                    label for="login-token" { "API token" }
                    input #login-token type="password" name="token" required autocomplete="current-password";
                }
                div {
                    label for="login-name" { "Your name (shown in pause and stop reasons)" }
                    input #login-name type="text" name="name" maxlength="64" autocomplete="name";
                }
                button type="submit" { "Log in" }
            }
            p.muted { "The session lasts 8 hours. The token is sent only in this form's body." }
        }
    };
    layout(v, live, "Log in", Nav::Login, body)
}

/// A page for an error (404 of an experiment, a history that cannot be read).
pub fn message_page(v: &Viewer, live: &Live, title: &str, text: &str) -> Markup {
    layout(v, live, title, Nav::Now, html! { p { (text) } })
}
