//! The console's pages: HTML rendered from views with compile-time templates (maud: the
//! markup is Rust, checked by the compiler, and every interpolated value is escaped).
//!
//! Every link and form target is relative to the console's root (`root`: `./` or
//! `../`), so the pages work behind `kubectl port-forward` and under an Ingress path
//! prefix alike. Mutating controls (stop, resume, pause, revert now, logout) are
//! rendered only for a logged-in session, each form with its CSRF token. Elements marked
//! `data-live` are replaced by `console.js` when the server says something changed.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::{
    auth::Session,
    view::{
        Chaos, HeldView, Holder, Live, VERDICTS, by_verdict, grafana_link, relative, span, stamp,
        symbol,
    },
};
use crate::record::Verdict;

/// Who is looking, and where the console's root is from this page.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// `./` or `../`: the console's root relative to this page.
    pub root: String,
    pub session: Option<Session>,
    /// The CSRF token of this session's forms.
    pub csrf: String,
    /// Whether a login is possible (a token is configured).
    pub login_enabled: bool,
    /// A one-time message after an action.
    pub flash: Option<String>,
    /// The fingerprint of what the page shows ([`crate::api::console::digest`]): the live updates
    /// fetch the page again when the server's differs.
    pub digest: String,
}

impl Viewer {
    pub(super) fn href(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    pub(super) fn csrf(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

/// The pages of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Now,
    Timeline,
    Experiments,
    Policies,
    Faults,
    Login,
}

pub(super) const NAV: [(Nav, &str, &str); 5] = [
    (Nav::Now, "", "Now"),
    (Nav::Timeline, "timeline", "Timeline"),
    (Nav::Experiments, "experiments", "Experiments"),
    (Nav::Policies, "policies", "Policies"),
    (Nav::Faults, "faults", "Faults in the cluster"),
];

pub(super) fn verdict(v: Verdict) -> Markup {
    html! { span class={"verdict v-" (v.label())} { (symbol(v)) " " (v.label()) } }
}

pub(super) fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) title=(stamp(t)) data-since=(t.to_rfc3339()) { (relative(t, now)) } }
}

pub(super) fn countdown(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) title=(stamp(t)) data-countdown=(t.to_rfc3339()) { (relative(t, now)) } }
}

/// The page around every body: navigation, the chaos banner and the emergency stop.
pub fn layout(v: &Viewer, live: &Live, title: &str, nav: Nav, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · havoc" }
                link rel="icon" href=(v.href("assets/favicon.svg")) type="image/svg+xml";
                link rel="stylesheet" href=(v.href("assets/console.css"));
                script src=(v.href("assets/console.js")) defer {}
            }
            body data-events=(v.href("events")) data-digest=(v.digest) {
                a.skip href="#main" { "Skip to content" }
                header {
                    div.brand { a href=(v.href("")) { "havoc" } }
                    nav aria-label="Console" {
                        ul {
                            @for (item, path, label) in NAV {
                                li {
                                    @if item == nav {
                                        a href=(v.href(path)) aria-current="page" { (label) }
                                    } @else {
                                        a href=(v.href(path)) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        @if let Some(s) = &v.session {
                            span { "Logged in: " (s.identity) }
                            form method="post" action=(v.href("logout")) {
                                (v.csrf())
                                button type="submit" { "Log out" }
                            }
                        } @else if nav != Nav::Login {
                            a href=(v.href("login")) { "Log in" }
                        }
                    }
                    (banner(v, live))
                }
                @if let Some(f) = &v.flash {
                    p.flash role="status" { (f) }
                }
                main #main data-live tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
                footer {
                    span #updated data-live { "Rendered " (stamp(live.now)) }
                    " · "
                    span #live-state aria-live="polite" { "" }
                }
            }
        }
    }
}

/// The chaos state and the emergency stop / resume control, on every page.
pub(super) fn banner(v: &Viewer, live: &Live) -> Markup {
    let now = live.now;
    let (class, text): (&str, Markup) = match &live.chaos {
        Chaos::Running => (
            "running",
            html! { strong { "▶ Chaos is running." } " " (live.running.len()) " experiment(s) running now." },
        ),
        Chaos::Paused(p) => (
            "paused",
            html! {
                strong { "⏸ All chaos is paused" }
                " since " (when(p.since, now))
                @if let Some(u) = p.until { ", until " (stamp(u)) " (" (countdown(u, now)) ")" } @else { ", until resumed" }
                ". Reason: " q { (p.reason) }
            },
        ),
        Chaos::Stopped(p) => (
            "stopped",
            html! {
                strong { "■ EMERGENCY STOP" }
                " at " (stamp(p.since)) " (" (when(p.since, now)) "). "
                "No experiment starts on any replica until chaos is resumed. Reason: " q { (p.reason) }
            },
        ),
        Chaos::Unknown => (
            "unknown",
            html! { strong { "? The shared pause state cannot be read." } " Chaos stays paused until it can (fail closed)." },
        ),
    };
    html! {
        section.banner.(class) #status data-live aria-label="Chaos state" {
            p.state role="status" { (text) }
            div.control {
                @if v.session.is_none() {
                    @if v.login_enabled {
                        p { a href=(v.href("login")) { "Log in" } " to stop or resume chaos." }
                    } @else {
                        p { "Stopping and resuming need the API token (server.token), which is not configured." }
                    }
                } @else {
                    @if matches!(live.chaos, Chaos::Running | Chaos::Paused(_)) {
                        form.stop method="post" action=(v.href("stop")) {
                            (v.csrf())
                            label for="stop-reason" { "Reason" }
                            input #stop-reason type="text" name="reason" required maxlength="500" placeholder="e.g. incident INC-123";
                            button.danger type="submit" { "■ Emergency stop" }
                        }
                    }
                    @if matches!(live.chaos, Chaos::Paused(_) | Chaos::Stopped(_)) {
                        form.resume method="post" action=(v.href("resume")) {
                            (v.csrf())
                            input #resume-confirm type="checkbox" name="confirm" value="yes" required;
                            label for="resume-confirm" { "I confirm: resume all chaos on every replica" }
                            button type="submit" { "▶ Resume chaos" }
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn held_state(h: &HeldView, now: DateTime<Utc>) -> Markup {
    match &h.holder {
        Holder::Running { revert_at } => {
            html! { "held by a running experiment; reverts " (countdown(*revert_at, now)) }
        }
        Holder::Orphaned => {
            html! { "orphaned (its experiment is not running here): the leader's recovery sweep reverts it" }
        }
        Holder::Foreign => html! {
            "held by " code { (h.held.record.owner) } "; anyone may revert it after its deadline "
            (countdown(h.held.record.deadline, now))
        },
        Holder::Expired => html! { "past its deadline: the recovery sweep reverts it" },
    }
}

pub(super) fn revert_form(v: &Viewer, h: &HeldView, live: &Live) -> Markup {
    if v.session.is_none() {
        return html! {};
    }
    // A follower cannot end the leader's experiment: the emergency stop can.
    if matches!(h.holder, Holder::Orphaned) && !live.leader {
        return html! { span.muted { "Use the emergency stop: this replica does not lead." } };
    }
    let o = &h.held.object;
    html! {
        form.inline method="post" action=(v.href("revert")) {
            (v.csrf())
            input type="hidden" name="kind" value=(o.kind);
            input type="hidden" name="namespace" value=(o.namespace.clone().unwrap_or_default());
            input type="hidden" name="name" value=(o.name);
            input type="hidden" name="experiment" value=(h.held.record.experiment);
            button type="submit" aria-label={"Revert " (o.kind) " " (o.name) " now"} { "Revert now" }
        }
    }
}

pub(super) fn object(o: &crate::record::ObjectRef) -> Markup {
    html! {
        (o.kind) " "
        @if let Some(ns) = &o.namespace { (ns) "/" }
        (o.name)
    }
}

/// A table of `items`, a row each (`row`), under `caption` and a header row of
/// `columns`; the paragraph `none` instead when there is no item.
pub(super) fn table_of<T>(
    items: &[T],
    none: &str,
    caption: &str,
    columns: &[&str],
    row: impl Fn(&T) -> Markup,
) -> Markup {
    html! {
        @if items.is_empty() {
            p { (none) }
        } @else {
            table {
                caption { (caption) }
                thead { tr { @for c in columns { th scope="col" { (c) } } } }
                tbody { @for item in items { (row(item)) } }
            }
        }
    }
}

pub(super) fn held_table(v: &Viewer, live: &Live, caption: &str, all: bool) -> Markup {
    let now = live.now;
    let mut columns = vec!["Target", "Fault", "Experiment"];
    if all {
        columns.extend(["Owner", "Deadline", "Original state"]);
    }
    columns.extend(["State", "Action"]);
    html! {
        @if !live.faults_synced {
            p.warn { "The watches that find revert records are not synced yet." }
        }
        (table_of(&live.held, "No fault is held in the cluster: no havoc revert record was found.", caption, &columns, |h| html! {
            tr {
                td { (object(&h.held.object)) }
                td { code { (h.held.record.fault) } }
                td { a href=(v.href(&format!("experiments/{}", crate::api::console::timeline::query_value(&h.held.record.experiment)))) { (h.held.record.experiment) } }
                @if all {
                    td {
                        code { (h.held.record.owner) }
                        @if matches!(h.holder, Holder::Running { .. } | Holder::Orphaned) { br; small { "this installation" } }
                    }
                    td { (stamp(h.held.record.deadline)) " (" (countdown(h.held.record.deadline, now)) ")" }
                    td { code { (h.held.record.original.to_string()) } }
                }
                td { (held_state(h, now)) }
                td { (revert_form(v, h, live)) }
            }
        }))
    }
}

mod admin;
mod history;
mod now;

pub use self::{admin::*, history::*, now::*};
