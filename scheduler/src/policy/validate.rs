//! Semantic checks: turns the wire model into the domain types the engine uses, and
//! reports every problem with the JSON pointer of the field it concerns.

use std::{collections::BTreeSet, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use chrono::NaiveDateTime;
use chrono_tz::Tz;
use regex::Regex;

use super::{
    expr::{LabelMatcher, Objective},
    model::*,
    selector::LabelSelector,
};
use crate::schedule::{
    Calendar, CronExpr, Schedule as ClockSchedule, ScheduleKind,
    calendar::{Blackout as CalBlackout, Window as CalWindow},
};

/// A problem at a place in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// JSON pointer of the offending field.
    pub pointer: String,
    /// Point at the key rather than the value (for "this field is not allowed here").
    pub at_key: bool,
    pub message: String,
}

impl Issue {
    pub fn value(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            pointer: pointer.into(),
            at_key: false,
            message: message.into(),
        }
    }

    pub fn key(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            pointer: pointer.into(),
            at_key: true,
            message: message.into(),
        }
    }
}

/// What policies are checked against: the service configuration, or defaults.
#[derive(Debug, Clone)]
pub struct Context {
    pub default_tz: Tz,
    pub protected_namespaces: BTreeSet<String>,
    /// Known receivers and SLOs; `None` when validating without a config file.
    pub receivers: Option<BTreeSet<String>>,
    pub slos: Option<BTreeSet<String>>,
}

impl Default for Context {
    fn default() -> Self {
        let mut protected: BTreeSet<String> = DEFAULT_PROTECTED_NAMESPACES
            .iter()
            .map(|s| s.to_string())
            .collect();
        protected.insert(LeaderElection::default().namespace);
        Context {
            default_tz: Tz::UTC,
            protected_namespaces: protected,
            receivers: None,
            slos: None,
        }
    }
}

/// A validated policy, ready for the engine.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// As written (for records and the API).
    pub spec: PolicySpec,
    pub schedule: Option<ClockSchedule>,
    pub triggers: Vec<RolloutRule>,
    pub target: TargetRule,
    pub fault: FaultKind,
    pub alert_matchers: Vec<LabelMatcher>,
}

/// Which namespaces something applies to.
#[derive(Debug, Clone)]
pub enum NamespaceScope {
    /// Every namespace that is not protected (cluster-scoped kinds, or no restriction).
    All,
    Names(Vec<String>),
    Selector(LabelSelector),
}

#[derive(Debug, Clone)]
pub struct TargetRule {
    pub kind: TargetKind,
    pub namespaces: NamespaceScope,
    pub selector: LabelSelector,
    pub exclude_selector: Option<LabelSelector>,
    pub exclude_names: Vec<Regex>,
    pub min_age: Duration,
    pub pick: Pick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Count(u32),
    Percent(u32),
}

#[derive(Debug, Clone)]
pub struct RolloutRule {
    pub kinds: Vec<WorkloadKind>,
    pub namespaces: NamespaceScope,
    pub selector: LabelSelector,
    pub delay: Duration,
    pub cooldown: Duration,
    pub image_change_only: bool,
}

/// The one fault of a policy.
#[derive(Debug, Clone)]
pub enum FaultKind {
    PodDelete(PodDelete),
    PodEvict(PodEvict),
    NodeDrain(NodeDrain),
    Scale(Scale),
    NetworkPartition(NetworkPartition),
    HttpFault(HttpFault),
}

impl FaultKind {
    /// The field name, used in records and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::PodDelete(_) => "podDelete",
            FaultKind::PodEvict(_) => "podEvict",
            FaultKind::NodeDrain(_) => "nodeDrain",
            FaultKind::Scale(_) => "scale",
            FaultKind::NetworkPartition(_) => "networkPartition",
            FaultKind::HttpFault(_) => "httpFault",
        }
    }

    /// The target kinds this fault can act on.
    pub fn target_kinds(&self) -> &'static [TargetKind] {
        match self {
            FaultKind::PodDelete(_) | FaultKind::PodEvict(_) | FaultKind::NetworkPartition(_) => {
                &[TargetKind::Pod]
            }
            FaultKind::NodeDrain(_) => &[TargetKind::Node],
            FaultKind::Scale(_) => &[TargetKind::Deployment, TargetKind::StatefulSet],
            FaultKind::HttpFault(_) => &[TargetKind::VirtualService],
        }
    }

    /// Whether the fault is held for `duration` and then undone.
    pub fn is_reversible(&self) -> bool {
        !matches!(self, FaultKind::PodDelete(_) | FaultKind::PodEvict(_))
    }
}

/// A validated service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub spec: ConfigSpec,
    pub tz: Tz,
    pub alert_matchers: Vec<LabelMatcher>,
    pub slos: Vec<(Slo, Objective)>,
}

impl Config {
    /// The context policies are validated in.
    pub fn context(&self) -> Context {
        let mut protected: BTreeSet<String> =
            self.spec.protected_namespaces.iter().cloned().collect();
        protected.insert(self.spec.leader_election.namespace.clone());
        Context {
            default_tz: self.tz,
            protected_namespaces: protected,
            receivers: Some(self.spec.receivers.iter().map(|r| r.name.clone()).collect()),
            slos: Some(
                self.spec
                    .health
                    .slos
                    .iter()
                    .map(|s| s.name.clone())
                    .collect(),
            ),
        }
    }
}

/// A DNS-1123 label: what Kubernetes allows for namespace names.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn parse_tz(name: &str) -> Result<Tz, String> {
    Tz::from_str(name).map_err(|_| {
        format!("unknown time zone {name:?} (expected an IANA name such as Europe/Berlin)")
    })
}

fn parse_hhmm(s: &str, allow_24: bool) -> Result<u32, String> {
    let bad = || {
        format!(
            "invalid time {s:?}: expected HH:MM (00:00 to 23:59{})",
            if allow_24 { ", or 24:00" } else { "" }
        )
    };
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if (h < 24 && m < 60) || (allow_24 && h == 24 && m == 0) {
        Ok(h * 60 + m)
    } else {
        Err(bad())
    }
}

fn parse_local(s: &str) -> Result<NaiveDateTime, String> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| format!("invalid local time {s:?}: expected YYYY-MM-DDTHH:MM"))
}

fn parse_month_day(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("invalid date {s:?}: expected MM-DD, e.g. 12-24");
    let (m, d) = s.split_once('-').ok_or_else(bad)?;
    if m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (m, d): (u32, u32) = (m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    // 2000 is a leap year, so 02-29 is accepted (it applies in leap years only).
    chrono::NaiveDate::from_ymd_opt(2000, m, d).ok_or_else(bad)?;
    Ok((m, d))
}

fn compile_regex(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            format!(
                "invalid regular expression {pattern:?}: {}",
                regex_reason(&e)
            )
        })
}

/// The one-line reason of a regex error (its Display spans several lines).
pub(crate) fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text.lines().next().unwrap_or_default())
        .to_string()
}

/// Collects issues while validating.
#[derive(Debug, Default)]
struct Checker {
    issues: Vec<Issue>,
}

impl Checker {
    fn value(&mut self, pointer: &str, message: impl Into<String>) {
        self.issues.push(Issue::value(pointer, message));
    }

    fn key(&mut self, pointer: &str, message: impl Into<String>) {
        self.issues.push(Issue::key(pointer, message));
    }

    /// Records the error of `r` at `pointer` and returns its value, if any.
    fn take<T>(&mut self, pointer: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.value(pointer, e)).ok()
    }

    fn selector(&mut self, pointer: &str, s: &Option<String>) -> Option<LabelSelector> {
        let s = s.as_deref()?;
        self.take(
            pointer,
            s.parse::<LabelSelector>().map_err(|e| e.to_string()),
        )
    }

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
        && !f.target_kinds().contains(&spec.target.kind)
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
        && fault.as_ref().is_some_and(FaultKind::is_reversible)
    {
        c.value(
            "/spec/duration",
            "a reversible fault needs a duration above 0s",
        );
    }
    let mut alert_matchers = Vec::new();
    if let Some(h) = &spec.health {
        for (i, m) in h.alert_matchers.iter().enumerate() {
            if let Some(m) = c.take(&format!("/spec/health/alertMatchers/{i}"), m.parse()) {
                alert_matchers.push(m);
            }
        }
        if let (Some(names), Some(known)) = (&h.slos, &ctx.slos) {
            for (i, n) in names.iter().enumerate() {
                if !known.contains(n) {
                    c.value(
                        &format!("/spec/health/slos/{i}"),
                        format!("unknown SLO {n:?}: not defined in the config's health.slos"),
                    );
                }
            }
        }
    }
    if let (Some(n), Some(known)) = (&spec.notify, &ctx.receivers)
        && let Some(names) = &n.receivers
    {
        for (i, r) in names.iter().enumerate() {
            if !known.contains(r) {
                c.value(
                    &format!("/spec/notify/receivers/{i}"),
                    format!("unknown receiver {r:?}: not defined in the config's receivers"),
                );
            }
        }
    }
    match (c.issues.is_empty(), target, fault) {
        (true, Some(target), Some(fault)) => Ok(Policy {
            name: name.clone(),
            file,
            spec: spec.clone(),
            schedule,
            triggers,
            target,
            fault,
            alert_matchers,
        }),
        _ => Err(c.issues),
    }
}

fn schedule(c: &mut Checker, s: &Schedule, ctx: &Context) -> Option<ClockSchedule> {
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
        1 => {
            if let Some(expr) = &s.cron {
                c.take(&format!("{base}/cron"), CronExpr::parse(expr))
                    .map(|e| ScheduleKind::Cron(Box::new(e)))
            } else if let Some(r) = &s.random {
                let (mean, min) = (
                    r.mean_interval.0,
                    r.min_interval.map(|m| m.0).unwrap_or_default(),
                );
                if mean < Duration::from_secs(1) {
                    c.value(
                        &format!("{base}/random/meanInterval"),
                        "meanInterval must be at least 1s",
                    );
                    None
                } else if min >= mean {
                    c.value(
                        &format!("{base}/random/minInterval"),
                        "minInterval must be shorter than meanInterval",
                    );
                    None
                } else {
                    Some(ScheduleKind::Random { mean, min })
                }
            } else if let Some(i) = &s.interval {
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
            } else {
                None
            }
        }
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
        let p = format!("{base}/blackouts/{i}");
        match (&b.date, &b.from, &b.until) {
            (Some(date), None, None) => {
                if let Some((month, day)) = c.take(&format!("{p}/date"), parse_month_day(date)) {
                    blackouts.push(CalBlackout::Yearly { month, day });
                }
            }
            (None, Some(from), Some(until)) => {
                let f = c.take(&format!("{p}/from"), parse_local(from));
                let u = c.take(&format!("{p}/until"), parse_local(until));
                if let (Some(from), Some(until)) = (f, u) {
                    if from < until {
                        blackouts.push(CalBlackout::Range { from, until });
                    } else {
                        c.value(&format!("{p}/until"), "until must be later than from");
                    }
                }
            }
            (Some(_), _, _) => c.key(
                &p,
                "a blackout is either `date` or `from`/`until`, not both",
            ),
            _ => c.key(
                &p,
                "a blackout needs `date` (MM-DD) or both `from` and `until`",
            ),
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

fn trigger(c: &mut Checker, base: &str, t: &Trigger, ctx: &Context) -> Option<RolloutRule> {
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
        r.kinds.clone()
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

fn target(c: &mut Checker, t: &Target, ctx: &Context) -> Option<TargetRule> {
    let base = "/spec/target";
    let namespaced = t.kind != TargetKind::Node;
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
    Some(TargetRule {
        kind: t.kind,
        namespaces,
        selector,
        exclude_selector,
        exclude_names,
        min_age: t.min_age.unwrap_or_default().0,
        pick: pick?,
    })
}

fn fault(c: &mut Checker, f: &Fault) -> Option<FaultKind> {
    let base = "/spec/fault";
    let mut found: Vec<(&str, FaultKind)> = Vec::new();
    if let Some(x) = &f.pod_delete {
        found.push(("podDelete", FaultKind::PodDelete(x.clone())));
    }
    if let Some(x) = &f.pod_evict {
        found.push(("podEvict", FaultKind::PodEvict(x.clone())));
    }
    if let Some(x) = &f.node_drain {
        found.push(("nodeDrain", FaultKind::NodeDrain(x.clone())));
    }
    if let Some(x) = &f.scale {
        found.push(("scale", FaultKind::Scale(x.clone())));
    }
    if let Some(x) = &f.network_partition {
        found.push(("networkPartition", FaultKind::NetworkPartition(x.clone())));
    }
    if let Some(x) = &f.http_fault {
        let p = format!("{base}/httpFault");
        if x.abort.is_none() && x.delay.is_none() {
            c.key(&p, "httpFault needs `abort`, `delay`, or both");
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
        found.push(("httpFault", FaultKind::HttpFault(x.clone())));
    }
    match found.len() {
        0 => {
            c.key(base, "a policy needs exactly one fault: podDelete, podEvict, nodeDrain, scale, networkPartition or httpFault");
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

/// Validates the service configuration.
pub fn validate_config(cfg: &HavocConfig) -> Result<Config, Vec<Issue>> {
    let mut c = Checker::default();
    let s = &cfg.spec;
    let tz = c.take("/spec/timezone", parse_tz(&s.timezone));
    for (i, ns) in s.protected_namespaces.iter().enumerate() {
        if !is_dns_label(ns) {
            c.value(
                &format!("/spec/protectedNamespaces/{i}"),
                format!("invalid namespace name {ns:?}"),
            );
        }
    }
    for (i, ns) in s.live_namespaces.iter().enumerate() {
        let p = format!("/spec/liveNamespaces/{i}");
        if !is_dns_label(ns) {
            c.value(&p, format!("invalid namespace name {ns:?}"));
        } else if s.protected_namespaces.contains(ns) || *ns == s.leader_election.namespace {
            c.value(
                &p,
                format!("namespace {ns:?} is protected; it cannot be live"),
            );
        }
    }
    if !is_dns_label(&s.leader_election.namespace) {
        c.value(
            "/spec/leaderElection/namespace",
            format!("invalid namespace name {:?}", s.leader_election.namespace),
        );
    }
    if s.limits.max_concurrent_experiments == 0 {
        c.value(
            "/spec/limits/maxConcurrentExperiments",
            "maxConcurrentExperiments must be at least 1",
        );
    }
    if s.health.interval.0 < Duration::from_secs(1) {
        c.value(
            "/spec/health/interval",
            "health.interval must be at least 1s",
        );
    }
    let url = |c: &mut Checker, p: &str, u: &str| {
        if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10 {
            c.value(
                p,
                format!("invalid URL {u:?}: expected http:// or https://"),
            );
        }
    };
    if let Some(p) = &s.health.prometheus {
        url(&mut c, "/spec/health/prometheus/url", &p.url);
    }
    let mut alert_matchers = Vec::new();
    if let Some(a) = &s.health.alertmanager {
        url(&mut c, "/spec/health/alertmanager/url", &a.url);
        for (i, m) in a.matchers.iter().enumerate() {
            if let Some(m) = c.take(
                &format!("/spec/health/alertmanager/matchers/{i}"),
                m.parse(),
            ) {
                alert_matchers.push(m);
            }
        }
    }
    let mut slos = Vec::new();
    let mut slo_names = BTreeSet::new();
    for (i, slo) in s.health.slos.iter().enumerate() {
        let p = format!("/spec/health/slos/{i}");
        if !slo_names.insert(slo.name.clone()) {
            c.value(
                &format!("{p}/name"),
                format!("duplicate SLO name {:?}", slo.name),
            );
        }
        if slo.query.trim().is_empty() {
            c.value(&format!("{p}/query"), "empty query");
        }
        if let Some(o) = c.take(&format!("{p}/objective"), slo.objective.parse()) {
            slos.push((slo.clone(), o));
        }
    }
    if !slos.is_empty() && s.health.prometheus.is_none() {
        c.key("/spec/health/slos", "SLO checks need health.prometheus");
    }
    let mut receivers = BTreeSet::new();
    for (i, r) in s.receivers.iter().enumerate() {
        let p = format!("/spec/receivers/{i}");
        if !receivers.insert(r.name.clone()) {
            c.value(
                &format!("{p}/name"),
                format!("duplicate receiver name {:?}", r.name),
            );
        }
        match (&r.slack, &r.webhook) {
            (Some(sl), None) => {
                secret(&mut c, &format!("{p}/slack/token"), &sl.token);
                if let Some(u) = &sl.api_url {
                    url(&mut c, &format!("{p}/slack/apiUrl"), u);
                }
            }
            (None, Some(w)) => {
                url(&mut c, &format!("{p}/webhook/url"), &w.url);
                if let Some(sec) = &w.secret {
                    secret(&mut c, &format!("{p}/webhook/secret"), sec);
                }
            }
            _ => c.key(&p, "a receiver needs exactly one of `slack` or `webhook`"),
        }
    }
    if let Some(names) = &s.notify.receivers {
        for (i, n) in names.iter().enumerate() {
            if !receivers.contains(n) {
                c.value(
                    &format!("/spec/notify/receivers/{i}"),
                    format!("unknown receiver {n:?}"),
                );
            }
        }
    }
    if let Some(t) = &s.server.token {
        secret(&mut c, "/spec/server/token", t);
    }
    if s.server.listen.parse::<SocketAddr>().is_err() {
        c.value(
            "/spec/server/listen",
            format!(
                "invalid listen address {:?}: expected IP:PORT",
                s.server.listen
            ),
        );
    }
    match (c.issues.is_empty(), tz) {
        (true, Some(tz)) => Ok(Config {
            spec: s.clone(),
            tz,
            alert_matchers,
            slos,
        }),
        _ => Err(c.issues),
    }
}

fn secret(c: &mut Checker, p: &str, s: &SecretRef) {
    match (&s.env, &s.file) {
        (Some(e), None) if !e.is_empty() => {}
        (None, Some(f)) if !f.as_os_str().is_empty() => {}
        _ => c.key(p, "a secret reference needs exactly one of `env` or `file`"),
    }
}
