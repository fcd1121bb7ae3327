//! The console's pages: HTML rendered from views with compile-time templates (maud: the
//! markup is Rust, checked by the compiler, and every interpolated value is escaped).
//!
//! Every link and form target is relative to the console's root (`root`: `./` or
//! `../`), so the pages work behind `kubectl port-forward` and under an Ingress path
//! prefix alike. Mutating controls (stop, resume, pause, revert now, logout) are
//! rendered only for a logged-in session, each form with its CSRF token. Elements marked
//! `data-live` are replaced by `console.js` when the server says something changed.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{
    auth::Session,
    view::{
        Chaos, HeldView, Holder, Live, PolicyView, VERDICTS, by_verdict, grafana_link, relative,
        span, stamp, symbol,
    },
};
use crate::{
    history::Summary,
    record::{ExperimentRecord, TriggerInfo, Verdict},
};

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
    /// The fingerprint of what the page shows ([`super::digest`]): the live updates
    /// fetch the page again when the server's differs.
    pub digest: String,
}

impl Viewer {
    fn href(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    fn csrf(&self) -> Markup {
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

const NAV: [(Nav, &str, &str); 5] = [
    (Nav::Now, "", "Now"),
    (Nav::Timeline, "timeline", "Timeline"),
    (Nav::Experiments, "experiments", "Experiments"),
    (Nav::Policies, "policies", "Policies"),
    (Nav::Faults, "faults", "Faults in the cluster"),
];

fn verdict(v: Verdict) -> Markup {
    html! { span class={"verdict v-" (v.label())} { (symbol(v)) " " (v.label()) } }
}

fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) title=(stamp(t)) data-since=(t.to_rfc3339()) { (relative(t, now)) } }
}

fn countdown(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
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
fn banner(v: &Viewer, live: &Live) -> Markup {
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

fn held_state(h: &HeldView, now: DateTime<Utc>) -> Markup {
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

fn revert_form(v: &Viewer, h: &HeldView, live: &Live) -> Markup {
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

fn object(o: &crate::record::ObjectRef) -> Markup {
    html! {
        (o.kind) " "
        @if let Some(ns) = &o.namespace { (ns) "/" }
        (o.name)
    }
}

fn held_table(v: &Viewer, live: &Live, caption: &str, all: bool) -> Markup {
    let now = live.now;
    html! {
        @if !live.faults_synced {
            p.warn { "The watches that find revert records are not synced yet." }
        }
        @if live.held.is_empty() {
            p { "No fault is held in the cluster: no havoc revert record was found." }
        } @else {
            table {
                caption { (caption) }
                thead { tr {
                    th scope="col" { "Target" } th scope="col" { "Fault" } th scope="col" { "Experiment" }
                    @if all { th scope="col" { "Owner" } th scope="col" { "Deadline" } th scope="col" { "Original state" } }
                    th scope="col" { "State" } th scope="col" { "Action" }
                } }
                tbody {
                    @for h in &live.held {
                        tr {
                            td { (object(&h.held.object)) }
                            td { code { (h.held.record.fault) } }
                            td { a href=(v.href(&format!("experiments/{}", super::timeline::query_value(&h.held.record.experiment)))) { (h.held.record.experiment) } }
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
                    }
                }
            }
        }
    }
}

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
            @if live.running.is_empty() {
                p { "None." }
            } @else {
                table {
                    caption { "Experiments running in this replica" }
                    thead { tr { th scope="col" { "Experiment" } th scope="col" { "Policy" } th scope="col" { "Started" } th scope="col" { "Action" } } }
                    tbody {
                        @for r in &live.running {
                            tr {
                                td { a href=(v.href(&format!("experiments/{}", super::timeline::query_value(&r.id)))) { (r.id) } }
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
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-held" {
            h2 #h-held { "Faults held now" }
            (held_table(v, live, "Faults held in the cluster now", false))
        }
        section aria-labelledby="h-health" {
            h2 #h-health { "Health sources" }
            @if live.sources.is_empty() {
                p { "No health source is configured (health: {none: true})." }
            } @else {
                table {
                    caption { "Last reading of each source, as experiments read them" }
                    thead { tr { th scope="col" { "Source" } th scope="col" { "Reads" } th scope="col" { "Last reading" } th scope="col" { "Age" } th scope="col" { "Latency" } } }
                    tbody {
                        @for s in &live.sources {
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
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-today" {
            h2 #h-today { "Today's experiments" }
            p { "Since " (stamp(today_since)) " (midnight in " (live.tz.name()) "): " (today.len()) " experiment(s)." }
            ul.counts {
                @for (verdict_, n) in by_verdict(today) {
                    li {
                        a href=(v.href(&format!("experiments?verdict={}&since={}", verdict_.label(), super::timeline::query_value(&today_since.format("%Y-%m-%dT%H:%M:%SZ").to_string())))) {
                            (verdict(verdict_)) ": " strong { (n) }
                        }
                    }
                }
            }
        }
    };
    layout(v, live, "Now", Nav::Now, body)
}

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
                parts.push(format!("{k}={}", super::timeline::query_value(val)));
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
                            td { a href=(v.href(&format!("experiments/{}", super::timeline::query_value(&s.id)))) { (s.id) } }
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

fn trigger(t: &TriggerInfo) -> Markup {
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

fn took(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Markup {
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
            dt { "Policy" } dd { a href=(v.href(&format!("experiments?policy={}", super::timeline::query_value(&r.policy)))) { (r.policy) } }
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
        @if r.targets.is_empty() {
            p { "No target." }
        } @else {
            table {
                caption { "What was injected into each target, and what its revert did" }
                thead { tr { th scope="col" { "Target" } th scope="col" { "Outcome" } th scope="col" { "Injected" } th scope="col" { "Revert" } } }
                tbody {
                    @for t in &r.targets {
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
                    }
                }
            }
        }
        h2 { "Alerts that fired" }
        @if r.alerts.is_empty() {
            p { "None attributed to this experiment." }
        } @else {
            table {
                caption { "Alerts attributed to this experiment" }
                thead { tr { th scope="col" { "Alert" } th scope="col" { "Started" } th scope="col" { "Labels" } } }
                tbody {
                    @for a in &r.alerts {
                        tr {
                            td { (a.name) }
                            td { (stamp(a.starts_at)) }
                            td.wrap { @for (k, val) in &a.labels { code { (k) "=" (val) } " " } }
                        }
                    }
                }
            }
        }
        h2 { "SLO readings" }
        @if r.slos.is_empty() {
            p { "None." }
        } @else {
            table {
                caption { "SLO readings during the experiment" }
                thead { tr { th scope="col" { "SLO" } th scope="col" { "Value" } th scope="col" { "Objective" } th scope="col" { "Breached" } th scope="col" { "At" } } }
                tbody {
                    @for s in &r.slos {
                        tr {
                            td { (s.name) }
                            td { @if let Some(x) = s.value { (x) } @else { "no data" } }
                            td { code { (s.objective) } }
                            td { @if s.breached { span.bad { "✕ yes" } } @else { span.ok { "✓ no" } } }
                            td { (stamp(s.at)) }
                        }
                    }
                }
            }
        }
        details {
            summary { "The record as JSON" }
            pre { (json) }
        }
    };
    layout(v, live, &r.id, Nav::Experiments, body)
}

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
                                a href=(v.href(&format!("experiments?policy={}", super::timeline::query_value(&p.name)))) { (p.name) }
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
                                    a href=(v.href(&format!("experiments/{}", super::timeline::query_value(&l.id)))) { (verdict(l.verdict)) }
                                    br; small { (when(l.ended_at, now)) }
                                } @else { "–" }
                            }
                            td {
                                @if let Some(id) = row.running { "running " a href=(v.href(&format!("experiments/{}", super::timeline::query_value(id)))) { (id) } br; }
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
