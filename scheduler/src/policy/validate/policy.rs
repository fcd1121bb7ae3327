//! `ChaosPolicy` documents: meaning, checked against the service [`Context`], into a
//! domain [`Policy`] with every default resolved.

use std::{path::PathBuf, time::Duration};

use super::{
    Checker, Context, Issue, compile_regex, domain_all, is_dns_label, parse_hhmm, parse_local,
    parse_month_day, parse_tz,
};
use crate::{
    policy::{
        domain::{
            DEFAULT_DRAIN_TIMEOUT, DEFAULT_DURATION, DEFAULT_SETTLE, DEFAULT_ZONE_TIMEOUT, Fault,
            HttpAbort, HttpDelay, HttpFault, NamespaceScope, NotifyRule, Pick, Policy,
            PolicyHealth, RolloutRule, SloSelection, TargetRule,
        },
        domain::{OnDeviation, TargetKind, WorkloadKind},
        model::{self, ChaosPolicy},
    },
    schedule::{
        Calendar, CronExpr, Schedule as ClockSchedule, ScheduleKind,
        calendar::{Blackout as CalBlackout, Window as CalWindow},
        stable_hash,
    },
};

impl Checker {
    fn namespaces(
        &mut self,
        base: &str,
        names: &[String],
        selector: &Option<String>,
        ctx: &Context,
        required: bool,
    ) -> NamespaceScope {
        if !names.is_empty() && selector.is_some() {
            self.key(
                &format!("{base}/namespaceSelector"),
                "use either namespaces or namespaceSelector, not both",
            );
        }
        for (i, ns) in names.iter().enumerate() {
            let p = format!("{base}/namespaces/{i}");
            if !is_dns_label(ns) {
                self.value(
                    &p,
                    format!("invalid namespace name {ns:?} (a DNS-1123 label)"),
                );
            } else if ctx.protected_namespaces.contains(ns) {
                self.value(
                    &p,
                    format!("namespace {ns:?} is protected: havoc never injects faults there"),
                );
            }
        }
        if let Some(sel) = self.selector(&format!("{base}/namespaceSelector"), selector) {
            return NamespaceScope::Selector(sel);
        }
        if !names.is_empty() {
            return NamespaceScope::Names(names.to_vec());
        }
        if required {
            self.key(
                base,
                "namespaced targets need `namespaces` or `namespaceSelector`",
            );
        }
        NamespaceScope::All
    }
}

/// Validates a policy. Returns the domain policy, or every issue found.
/// What is valid but deserves a second look: each a warning (`FILE:LINE:COL: warning:`),
/// never a reason to reject the policy.
pub fn policy_warnings(p: &ChaosPolicy) -> Vec<Issue> {
    let mut out = Vec::new();
    if let Some(scale) = &p.spec.fault.scale
        && scale.allow_volume_deletion == Some(true)
    {
        out.push(Issue::key(
            "/spec/fault/scale/allowVolumeDeletion",
            "allowVolumeDeletion is destructive: a StatefulSet whose persistentVolumeClaimRetentionPolicy.whenScaled is Delete loses the PersistentVolumeClaims (and their data) of the ordinals this fault scales away",
        ));
    }
    out
}

pub fn validate_policy(
    p: &ChaosPolicy,
    file: PathBuf,
    ctx: &Context,
) -> Result<Policy, Vec<Issue>> {
    let mut c = Checker::default();
    let name = &p.metadata.name;
    if !is_dns_label(name) {
        c.value(
            "/metadata/name",
            format!("invalid policy name {name:?}: lower-case letters, digits and '-', at most 63 characters"),
        );
    }
    let spec = &p.spec;
    if spec.schedule.is_none() && spec.triggers.is_empty() {
        c.key("/spec", "a policy needs a `schedule`, `triggers`, or both");
    }
    let schedule = spec
        .schedule
        .as_ref()
        .and_then(|s| schedule(&mut c, s, ctx));
    let triggers = spec
        .triggers
        .iter()
        .enumerate()
        .filter_map(|(i, t)| trigger(&mut c, &format!("/spec/triggers/{i}"), t, ctx))
        .collect();
    let fault = fault(&mut c, &spec.fault);
    let target = target(&mut c, &spec.target, ctx);
    if let Some(f) = &fault
        && !f.target_kinds().contains(&spec.target.kind.into())
    {
        let kinds: Vec<String> = f.target_kinds().iter().map(|k| k.to_string()).collect();
        c.value(
            "/spec/target/kind",
            format!(
                "fault {} acts on {}, not on {}",
                f.name(),
                kinds.join(" or "),
                spec.target.kind
            ),
        );
    }
    if let Some(d) = spec.duration
        && d.0.is_zero()
        && fault.as_ref().is_some_and(Fault::is_reversible)
    {
        c.value(
            "/spec/duration",
            "a reversible fault needs a duration above 0s",
        );
    }
    let health = health(&mut c, spec.health.as_ref(), ctx);
    let notify = notify(&mut c, spec.notify.as_ref(), ctx);
    // A policy may raise the service's replica floor, never lower it.
    let asked = spec.limits.as_ref().and_then(|l| l.min_available_replicas);
    if let Some(n) = asked.filter(|n| *n < ctx.min_available_replicas) {
        c.value(
            "/spec/limits/minAvailableReplicas",
            format!(
                "minAvailableReplicas {n} is below the service's {}: a policy may raise the floor, never lower it",
                ctx.min_available_replicas
            ),
        );
    }
    let min_available_replicas = asked.unwrap_or(0).max(ctx.min_available_replicas);
    let max_unschedulable_nodes = spec.limits.as_ref().and_then(|l| l.max_unschedulable_nodes);
    // A zone outage cordons a whole zone: how many nodes that may be is said on purpose,
    // by the policy, not inherited from the service's default of one.
    if spec.fault.zone_outage.is_some() && max_unschedulable_nodes.is_none() {
        c.key(
            "/spec/fault/zoneOutage",
            "zoneOutage cordons every node of a zone: set limits.maxUnschedulableNodes on this policy to at least the largest zone's node count (counting nodes others cordoned)",
        );
    }
    let value = match (target, fault) {
        (Some(target), Some(fault)) => Some(Policy {
            name: name.clone(),
            file,
            line: 0,
            fingerprint: stable_hash(&serde_json::to_string(spec).unwrap_or_default()),
            dry_run: is_dry_run(spec.dry_run, &target.namespaces, ctx),
            schedule,
            triggers,
            target,
            fault,
            duration: spec.duration.map_or(DEFAULT_DURATION, |d| d.0),
            health,
            notify,
            on_deviation: spec
                .on_deviation
                .map_or(OnDeviation::PausePolicy, Into::into),
            min_available_replicas,
            max_unschedulable_nodes,
        }),
        _ => None,
    };
    c.finish(value)
}

/// A policy may ask for a dry run; the service-level dryRun wins unless every namespace
/// the policy's target names is one of `liveNamespaces`.
fn is_dry_run(asked: Option<bool>, scope: &NamespaceScope, ctx: &Context) -> bool {
    if asked == Some(true) {
        return true;
    }
    if !ctx.dry_run {
        return false;
    }
    match scope {
        NamespaceScope::Names(names) => {
            names.is_empty() || !names.iter().all(|n| ctx.live_namespaces.contains(n))
        }
        NamespaceScope::All | NamespaceScope::Selector(_) => true,
    }
}

fn health(c: &mut Checker, h: Option<&model::PolicyHealth>, ctx: &Context) -> PolicyHealth {
    let mut alert_matchers = Vec::new();
    let mut slos = SloSelection::All;
    if let Some(h) = h {
        for (i, m) in h.alert_matchers.iter().enumerate() {
            if let Some(m) = c.take(&format!("/spec/health/alertMatchers/{i}"), m.parse()) {
                alert_matchers.push(m);
            }
        }
        if let Some(names) = &h.slos {
            if let Some(known) = &ctx.slos {
                for (i, n) in names.iter().enumerate() {
                    if !known.contains(n) {
                        c.value(
                            &format!("/spec/health/slos/{i}"),
                            format!("unknown SLO {n:?}: not defined in the config's health.slos"),
                        );
                    }
                }
            }
            slos = SloSelection::Named(names.clone());
        }
    }
    PolicyHealth {
        settle: h.and_then(|h| h.settle).map_or(DEFAULT_SETTLE, |d| d.0),
        slos,
        alert_matchers,
        budgets: super::budget::policy_budgets(c, h.and_then(|h| h.budgets.as_deref()), ctx),
    }
}

fn notify(c: &mut Checker, n: Option<&model::Notify>, ctx: &Context) -> NotifyRule {
    let receivers = n.and_then(|n| n.receivers.clone());
    if let (Some(names), Some(known)) = (&receivers, &ctx.receivers) {
        for (i, r) in names.iter().enumerate() {
            if !known.contains(r) {
                c.value(
                    &format!("/spec/notify/receivers/{i}"),
                    format!("unknown receiver {r:?}: not defined in the config's receivers"),
                );
            }
        }
    }
    NotifyRule {
        receivers: receivers.unwrap_or_else(|| ctx.notify.receivers.clone()),
        on: n
            .and_then(|n| n.on.as_deref())
            .map_or_else(|| ctx.notify.on.clone(), domain_all),
    }
}

fn schedule(c: &mut Checker, s: &model::Schedule, ctx: &Context) -> Option<ClockSchedule> {
    let base = "/spec/schedule";
    let tz = match &s.timezone {
        Some(name) => c.take(&format!("{base}/timezone"), parse_tz(name)),
        None => Some(ctx.default_tz),
    };
    let given = [s.cron.is_some(), s.random.is_some(), s.interval.is_some()];
    let kind = match given.iter().filter(|g| **g).count() {
        0 => {
            c.key(
                base,
                "a schedule needs exactly one of `cron`, `random` or `interval`",
            );
            None
        }
        1 => clock_kind(c, base, s),
        _ => {
            for (field, g) in ["cron", "random", "interval"].iter().zip(given).skip(1) {
                if g {
                    c.key(
                        &format!("{base}/{field}"),
                        "a schedule takes exactly one of `cron`, `random` or `interval`",
                    );
                }
            }
            None
        }
    };
    let mut windows = Vec::new();
    for (i, w) in s.windows.iter().enumerate() {
        let p = format!("{base}/windows/{i}");
        let start = c.take(&format!("{p}/start"), parse_hhmm(&w.start, false));
        let end = c.take(&format!("{p}/end"), parse_hhmm(&w.end, true));
        let mut days = [w.days.is_empty(); 7];
        for d in &w.days {
            days[*d as usize] = true;
        }
        if let (Some(start), Some(end)) = (start, end) {
            windows.push(CalWindow { days, start, end });
        }
    }
    let mut blackouts = Vec::new();
    for (i, b) in s.blackouts.iter().enumerate() {
        if let Some(b) = blackout(c, &format!("{base}/blackouts/{i}"), b) {
            blackouts.push(b);
        }
    }
    Some(ClockSchedule {
        kind: kind?,
        calendar: Calendar {
            tz: tz?,
            windows,
            blackouts,
        },
    })
}

/// The one clock kind of a schedule that names exactly one.
fn clock_kind(c: &mut Checker, base: &str, s: &model::Schedule) -> Option<ScheduleKind> {
    if let Some(expr) = &s.cron {
        return c
            .take(&format!("{base}/cron"), CronExpr::parse(expr))
            .map(|e| ScheduleKind::Cron(Box::new(e)));
    }
    if let Some(r) = &s.random {
        let (mean, min) = (
            r.mean_interval.0,
            r.min_interval.map(|m| m.0).unwrap_or_default(),
        );
        if mean < Duration::from_secs(1) {
            c.value(
                &format!("{base}/random/meanInterval"),
                "meanInterval must be at least 1s",
            );
            return None;
        }
        if min >= mean {
            c.value(
                &format!("{base}/random/minInterval"),
                "minInterval must be shorter than meanInterval",
            );
            return None;
        }
        return Some(ScheduleKind::Random { mean, min });
    }
    let i = s.interval.as_ref()?;
    if i.max.0 < Duration::from_secs(1) {
        c.value(&format!("{base}/interval/max"), "max must be at least 1s");
        None
    } else if i.min > i.max {
        c.value(
            &format!("{base}/interval/min"),
            "min must not be longer than max",
        );
        None
    } else {
        Some(ScheduleKind::Interval {
            min: i.min.0,
            max: i.max.0,
        })
    }
}

fn blackout(c: &mut Checker, p: &str, b: &model::Blackout) -> Option<CalBlackout> {
    match (&b.date, &b.from, &b.until) {
        (Some(date), None, None) => {
            let (month, day) = c.take(&format!("{p}/date"), parse_month_day(date))?;
            Some(CalBlackout::Yearly { month, day })
        }
        (None, Some(from), Some(until)) => {
            let f = c.take(&format!("{p}/from"), parse_local(from));
            let u = c.take(&format!("{p}/until"), parse_local(until));
            let (from, until) = (f?, u?);
            if from < until {
                Some(CalBlackout::Range { from, until })
            } else {
                c.value(&format!("{p}/until"), "until must be later than from");
                None
            }
        }
        (Some(_), _, _) => {
            c.key(p, "a blackout is either `date` or `from`/`until`, not both");
            None
        }
        _ => {
            c.key(
                p,
                "a blackout needs `date` (MM-DD) or both `from` and `until`",
            );
            None
        }
    }
}

fn trigger(c: &mut Checker, base: &str, t: &model::Trigger, ctx: &Context) -> Option<RolloutRule> {
    let Some(r) = &t.rollout else {
        c.key(base, "a trigger needs exactly one kind: `rollout`");
        return None;
    };
    let base = format!("{base}/rollout");
    let namespaces = c.namespaces(&base, &r.namespaces, &r.namespace_selector, ctx, false);
    let selector = c
        .selector(&format!("{base}/selector"), &r.selector)
        .unwrap_or_default();
    let kinds = if r.kinds.is_empty() {
        vec![WorkloadKind::Deployment]
    } else {
        domain_all(&r.kinds)
    };
    Some(RolloutRule {
        kinds,
        namespaces,
        selector,
        delay: r.delay.unwrap_or_default().0,
        cooldown: r.cooldown.unwrap_or_default().0,
        image_change_only: r.image_change_only,
    })
}

fn target(c: &mut Checker, t: &model::Target, ctx: &Context) -> Option<TargetRule> {
    let base = "/spec/target";
    let namespaced = TargetKind::from(t.kind) != TargetKind::Node;
    let namespaces = if namespaced {
        c.namespaces(base, &t.namespaces, &t.namespace_selector, ctx, true)
    } else {
        if !t.namespaces.is_empty() {
            c.key(&format!("{base}/namespaces"), "nodes are not namespaced");
        }
        if t.namespace_selector.is_some() {
            c.key(
                &format!("{base}/namespaceSelector"),
                "nodes are not namespaced",
            );
        }
        NamespaceScope::All
    };
    let selector = c
        .selector(&format!("{base}/selector"), &t.selector)
        .unwrap_or_default();
    let (mut exclude_selector, mut exclude_names) = (None, Vec::new());
    if let Some(e) = &t.exclude {
        exclude_selector = c.selector(&format!("{base}/exclude/selector"), &e.selector);
        for (i, n) in e.names.iter().enumerate() {
            if let Some(r) = c.take(&format!("{base}/exclude/names/{i}"), compile_regex(n)) {
                exclude_names.push(r);
            }
        }
    }
    let pick = match (t.count, t.percent) {
        (Some(_), Some(_)) => {
            c.key(
                &format!("{base}/percent"),
                "use either count or percent, not both",
            );
            None
        }
        (Some(0), None) => {
            c.value(&format!("{base}/count"), "count must be at least 1");
            None
        }
        (Some(n), None) => Some(Pick::Count(n)),
        (None, Some(p)) if (1..=100).contains(&p) => Some(Pick::Percent(p)),
        (None, Some(p)) => {
            c.value(
                &format!("{base}/percent"),
                format!("percent must be between 1 and 100, not {p}"),
            );
            None
        }
        (None, None) => Some(Pick::Count(1)),
    };
    if !t.with_pods_in.is_empty() && namespaced {
        c.key(
            &format!("{base}/withPodsIn"),
            "withPodsIn is for nodes: it picks nodes that run pods of these namespaces",
        );
    }
    for (i, ns) in t.with_pods_in.iter().enumerate() {
        if !is_dns_label(ns) {
            c.value(
                &format!("{base}/withPodsIn/{i}"),
                format!("invalid namespace name {ns:?} (a DNS-1123 label)"),
            );
        }
    }
    Some(TargetRule {
        kind: t.kind.into(),
        namespaces,
        selector,
        exclude_selector,
        exclude_names,
        min_age: t.min_age.unwrap_or_default().0,
        pick: pick?,
        hosting: t.with_pods_in.clone(),
    })
}

fn http_fault(c: &mut Checker, p: &str, x: &model::HttpFault) -> HttpFault {
    if x.abort.is_none() && x.delay.is_none() {
        c.key(p, "httpFault needs `abort`, `delay`, or both");
    }
    if let Some(a) = &x.abort {
        if !(0.0..=100.0).contains(&a.percent) {
            c.value(
                &format!("{p}/abort/percent"),
                format!("percent must be between 0 and 100, not {}", a.percent),
            );
        }
        if !(200..=599).contains(&a.status) {
            c.value(
                &format!("{p}/abort/status"),
                format!(
                    "status must be an HTTP status code 200..599, not {}",
                    a.status
                ),
            );
        }
    }
    if let Some(d) = &x.delay
        && !(0.0..=100.0).contains(&d.percent)
    {
        c.value(
            &format!("{p}/delay/percent"),
            format!("percent must be between 0 and 100, not {}", d.percent),
        );
    }
    HttpFault {
        abort: x.abort.as_ref().map(|a| HttpAbort {
            percent: a.percent,
            status: a.status,
        }),
        delay: x.delay.as_ref().map(|d| HttpDelay {
            percent: d.percent,
            fixed: d.fixed.0,
        }),
    }
}

fn fault(c: &mut Checker, f: &model::Fault) -> Option<Fault> {
    let base = "/spec/fault";
    let mut found: Vec<(&str, Fault)> = Vec::new();
    if let Some(x) = &f.pod_delete {
        let grace = x.grace_period.map(|g| g.0);
        found.push(("podDelete", Fault::PodDelete { grace }));
    }
    if let Some(x) = &f.pod_evict {
        let grace = x.grace_period.map(|g| g.0);
        found.push(("podEvict", Fault::PodEvict { grace }));
    }
    if let Some(x) = &f.node_drain {
        let timeout = x.timeout.map_or(DEFAULT_DRAIN_TIMEOUT, |t| t.0);
        found.push(("nodeDrain", Fault::NodeDrain { timeout }));
    }
    if let Some(x) = &f.scale {
        found.push((
            "scale",
            Fault::Scale {
                replicas: x.replicas,
                allow_volume_deletion: x.allow_volume_deletion.unwrap_or(false),
            },
        ));
    }
    if let Some(x) = &f.network_partition {
        let direction = x.direction.into();
        found.push(("networkPartition", Fault::NetworkPartition { direction }));
    }
    if let Some(x) = &f.http_fault {
        let h = http_fault(c, &format!("{base}/httpFault"), x);
        found.push(("httpFault", Fault::HttpFault(h)));
    }
    if let Some(x) = &f.zone_outage {
        let timeout = x.timeout.map_or(DEFAULT_ZONE_TIMEOUT, |t| t.0);
        found.push(("zoneOutage", Fault::ZoneOutage { timeout }));
    }
    match found.len() {
        0 => {
            c.key(base, "a policy needs exactly one fault: podDelete, podEvict, nodeDrain, zoneOutage, scale, networkPartition or httpFault");
            None
        }
        1 => found.pop().map(|(_, f)| f),
        _ => {
            for (name, _) in &found[1..] {
                c.key(
                    &format!("{base}/{name}"),
                    "a policy takes exactly one fault",
                );
            }
            None
        }
    }
}
