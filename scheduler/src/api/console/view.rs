//! What the console's pages show, as plain data: built from the engine's read-only views
//! (pauses, running experiments, revert records, health readings, reloads, policies) and
//! the history, and rendered by [`super::pages`]. Pure: no I/O, the time is a parameter.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use chrono_tz::Tz;

use crate::{
    engine::health::Reading,
    fault::{Held, recovery::Found, revert::DEADLINE_GRACE},
    history::Summary,
    policy::{
        Policy,
        domain::{NamespaceScope, Pick},
        duration::HumanDuration,
    },
    record::{ObjectRef, Verdict},
    reload::Rejected,
    schedule::ScheduleKind,
    state::Pause,
};

/// Every verdict, in the order pages list them (worst last).
pub const VERDICTS: [Verdict; 5] = [
    Verdict::Passed,
    Verdict::Skipped,
    Verdict::Deviated,
    Verdict::Errored,
    Verdict::RollbackFailed,
];

/// How bad a verdict is, for the colour of a group of experiments.
pub fn severity(v: Verdict) -> u8 {
    match v {
        Verdict::Skipped => 0,
        Verdict::Passed => 1,
        Verdict::Errored => 2,
        Verdict::Deviated => 3,
        Verdict::RollbackFailed => 4,
    }
}

/// The text symbol that goes with every verdict colour: colour is never the only signal.
pub fn symbol(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "✓",
        Verdict::Skipped => "–",
        Verdict::Deviated => "!",
        Verdict::Errored => "✕",
        Verdict::RollbackFailed => "‼",
    }
}

/// Whether chaos may run, as every page's banner says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chaos {
    Running,
    /// All chaos paused (the API, a `pauseAll` circuit breaker).
    Paused(Pause),
    /// The emergency stop: paused until resumed, running experiments were cut short.
    Stopped(Pause),
    /// The shared pause state has not been read: chaos is held (fail closed).
    Unknown,
}

impl Chaos {
    /// From the pause in force for all chaos and the last emergency stop. A stop writes
    /// its pause and its time together (`Arbiter::stop_all`); a pause that started within
    /// a few seconds of the last stop is that stop's.
    pub fn of(known: bool, all: Option<Pause>, stopped_at: Option<DateTime<Utc>>) -> Self {
        match (known, all) {
            (false, _) => Chaos::Unknown,
            (true, None) => Chaos::Running,
            (true, Some(p)) => {
                let from_stop = stopped_at.is_some_and(|t| (t - p.since).num_seconds().abs() <= 5);
                if from_stop && p.until.is_none() {
                    Chaos::Stopped(p)
                } else {
                    Chaos::Paused(p)
                }
            }
        }
    }
}

/// An experiment running in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningView {
    pub id: String,
    pub policy: String,
    pub started: Option<DateTime<Utc>>,
}

/// When an experiment id (`POLICY-YYYYMMDDTHHMMSSZ-XXXX`) says it started.
pub fn started_from_id(id: &str) -> Option<DateTime<Utc>> {
    let mut parts = id.rsplitn(3, '-');
    let _hex = parts.next()?;
    let stamp = parts.next()?;
    NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Who holds a revert record, and what happens to it next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// An experiment running here; its planned revert.
    Running { revert_at: DateTime<Utc> },
    /// This installation's, and its experiment is not running here: the leader's sweep
    /// reverts it at once (or this replica follows and the leader runs it).
    Orphaned,
    /// Another owner's (`havoc run`, another installation), before its deadline.
    Foreign,
    /// Another owner's, past its deadline: the sweep reverts it.
    Expired,
}

/// One revert record found in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldView {
    pub held: Held,
    pub holder: Holder,
}

/// Classifies every record the watch caches hold.
pub fn held_views(
    found: &Found,
    owner: &str,
    running: &[RunningView],
    now: DateTime<Utc>,
) -> Vec<HeldView> {
    let mut out: Vec<HeldView> = found
        .held
        .iter()
        .map(|h| {
            let r = &h.record;
            let holder = if r.owner == owner {
                if running.iter().any(|x| x.id == r.experiment) {
                    Holder::Running {
                        revert_at: r.deadline - DEADLINE_GRACE,
                    }
                } else {
                    Holder::Orphaned
                }
            } else if r.is_expired(now) {
                Holder::Expired
            } else {
                Holder::Foreign
            };
            HeldView {
                held: h.clone(),
                holder,
            }
        })
        .collect();
    out.sort_by_key(|v| v.held.record.deadline);
    out
}

/// One health source: what it is and its last reading.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceView {
    /// `alertmanager`, `slo/NAME`.
    pub name: String,
    /// Where it is read (a URL, or a query).
    pub what: String,
    pub last: Option<Reading>,
}

/// The health sources of the config, each with its last reading.
pub fn sources(
    config: &crate::policy::Config,
    readings: &BTreeMap<String, Reading>,
) -> Vec<SourceView> {
    let mut out = Vec::new();
    if let Some(am) = &config.health.alertmanager {
        out.push(SourceView {
            name: "alertmanager".into(),
            what: am.endpoint.url.clone(),
            last: readings.get("alertmanager").cloned(),
        });
    }
    for slo in &config.health.slos {
        let name = format!("slo/{}", slo.name);
        out.push(SourceView {
            what: format!("{} {}", slo.query, slo.objective_text),
            last: readings.get(&name).cloned(),
            name,
        });
    }
    for b in &config.health.budgets {
        let name = format!("budget/{}", b.name);
        out.push(SourceView {
            what: format!(
                "{}: at least {} remaining{}",
                b.source.text,
                b.min_remaining,
                b.max_burn_rate
                    .map(|m| format!(", burn rate at most {m} while held"))
                    .unwrap_or_default()
            ),
            last: readings.get(&name).cloned(),
            name,
        });
    }
    out
}

/// Everything the pages show that is not the history: read once per request.
#[derive(Debug, Clone)]
pub struct Live {
    pub now: DateTime<Utc>,
    /// The service's time zone ("today" starts at its midnight).
    pub tz: Tz,
    pub chaos: Chaos,
    pub leader: bool,
    /// This replica's pod name, when it has one.
    pub pod: Option<String>,
    pub running: Vec<RunningView>,
    pub policy_pauses: BTreeMap<String, Pause>,
    /// Revert records in the cluster (none while the recovery watches are not synced).
    pub held: Vec<HeldView>,
    pub unreadable: Vec<(ObjectRef, String)>,
    pub faults_synced: bool,
    pub sources: Vec<SourceView>,
    pub breaker_cooldown: Duration,
    pub rejected: Option<Rejected>,
    pub applied_at: Option<DateTime<Utc>>,
    pub grafana: Option<String>,
    pub policies: Vec<PolicyView>,
    /// Each namespace's chaos budget (`limits.namespaceBudget`; `None`: not configured,
    /// or the history not read yet), with the period in seconds.
    pub namespace_budgets: Option<(u64, Vec<crate::history::ledger::NamespaceSpend>)>,
}

impl Live {
    /// Policies paused by their circuit breaker.
    pub fn breakers(&self) -> Vec<(&String, &Pause)> {
        self.policy_pauses
            .iter()
            .filter(|(_, p)| p.reason.starts_with("circuit breaker"))
            .collect()
    }
}

/// One policy as the pages show it.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyView {
    pub name: String,
    /// The file name (no directory) and the line of its name.
    pub file: String,
    pub line: usize,
    pub fault: &'static str,
    pub dry_run: bool,
    /// `Pod in shop, app=web (count 1)`.
    pub target: String,
    /// `cron */30 10-16 * * 1-5 (Europe/Berlin)`, `random, mean 2h`, or empty.
    pub schedule: String,
    pub rollout_triggers: usize,
    /// Fires in the next 24 hours (a random schedule: only its next fire is known).
    pub fires: Vec<DateTime<FixedOffset>>,
    pub random: bool,
    /// Allowed time (windows minus blackouts) from 24 h ago to 24 h ahead; `None` when
    /// the schedule is unrestricted.
    pub allowed: Option<Vec<(DateTime<Utc>, DateTime<Utc>)>>,
    pub duration: Duration,
}

/// Most fires drawn per policy and day (an every-minute cron has 1,440).
pub const MAX_FIRES: usize = 300;

fn describe_target(p: &Policy) -> String {
    let t = &p.target;
    let ns = match &t.namespaces {
        NamespaceScope::All => String::new(),
        NamespaceScope::Names(n) => format!(" in {}", n.join(", ")),
        NamespaceScope::Selector(s) => format!(" in namespaces {s}"),
    };
    let sel = t.selector.to_string();
    let sel = if sel.is_empty() {
        String::new()
    } else {
        format!(", {sel}")
    };
    let pick = match t.pick {
        Pick::Count(n) => format!("count {n}"),
        Pick::Percent(n) => format!("{n}%"),
    };
    format!("{}{ns}{sel} ({pick})", t.kind)
}

/// A policy's view at `now`: the fires of the next 24 hours come from the schedule
/// engine (cron and allowed time are deterministic); a random schedule's later fires are
/// drawn when its next one fires, so only `next` (the clock's) is known.
pub fn policy_view(p: &Policy, next: Option<DateTime<Utc>>, now: DateTime<Utc>) -> PolicyView {
    let day = chrono::Duration::hours(24);
    let (schedule, fires, random, allowed) = match &p.schedule {
        None => (String::new(), Vec::new(), false, None),
        Some(s) => {
            let tz = s.calendar.tz;
            let (text, random) = match &s.kind {
                ScheduleKind::Cron(c) => (format!("cron {}", c.as_str()), false),
                ScheduleKind::Random { mean, min } => (
                    format!(
                        "random: mean {}, at least {} apart",
                        HumanDuration(*mean),
                        HumanDuration(*min)
                    ),
                    true,
                ),
                ScheduleKind::Interval { min, max } => (
                    format!("every {} to {}", HumanDuration(*min), HumanDuration(*max)),
                    true,
                ),
            };
            let fires: Vec<DateTime<Utc>> = if random {
                next.into_iter().filter(|t| *t < now + day).collect()
            } else {
                s.cursor(now, 0)
                    .take_while(|t| *t < now + day)
                    .take(MAX_FIRES)
                    .collect()
            };
            let allowed = (!s.calendar.is_unrestricted()).then(|| {
                s.calendar
                    .segments_from(now - day)
                    .take_days(3)
                    .take_while(|(a, _)| *a < now + day)
                    .map(|(a, b)| (a, b.min(now + day)))
                    .collect()
            });
            (
                format!("{text} ({tz})"),
                fires
                    .into_iter()
                    .map(|t| t.with_timezone(&tz).fixed_offset())
                    .collect(),
                random,
                allowed,
            )
        }
    };
    PolicyView {
        name: p.name.clone(),
        file: p
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        line: p.line,
        fault: p.fault.name(),
        dry_run: p.dry_run,
        target: describe_target(p),
        schedule,
        rollout_triggers: p.triggers.len(),
        fires,
        random,
        allowed,
        duration: p.duration,
    }
}

/// Experiments counted by verdict.
pub fn by_verdict(summaries: &[Summary]) -> Vec<(Verdict, usize)> {
    VERDICTS
        .iter()
        .map(|v| (*v, summaries.iter().filter(|s| s.verdict == *v).count()))
        .collect()
}

/// The start of the day that contains `now`, in `tz`.
pub fn start_of_day(now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let local = now.with_timezone(&tz).date_naive();
    let midnight = local.and_hms_opt(0, 0, 0).unwrap_or_default();
    crate::schedule::calendar::resolve(&tz, midnight)
}

/// `3 min ago`, `in 2 h 5 min`.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    if secs == 0 {
        return "just now".to_string();
    }
    let text = span(secs.unsigned_abs());
    if secs < 0 {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

/// A length of time in words: `42 s`, `3 min 5 s`, `2 h 5 min`, `3 d 4 h`.
pub fn span(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => {
            let s = secs % 60;
            if s == 0 {
                format!("{} min", secs / 60)
            } else {
                format!("{} min {s} s", secs / 60)
            }
        }
        // A whole number of hours or days says so: `24 h` is `1 d`, not `1 d 0 h`.
        3600..86400 => match secs % 3600 / 60 {
            0 => format!("{} h", secs / 3600),
            m => format!("{} h {m} min", secs / 3600),
        },
        _ => match secs % 86400 / 3600 {
            0 => format!("{} d", secs / 86400),
            h => format!("{} d {h} h", secs / 86400),
        },
    }
}

/// A time as pages print it: `2026-12-01 10:04:05 UTC`.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The Grafana link of a time range: the dashboard with `from`/`to` in milliseconds,
/// a minute of margin either side.
pub fn grafana_link(base: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let margin = chrono::Duration::minutes(1);
    format!(
        "{base}?from={}&to={}",
        (from - margin).timestamp_millis(),
        (to + margin).timestamp_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::revert::RevertRecord;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn pause(since: &str, until: Option<&str>) -> Pause {
        Pause {
            since: t(since),
            until: until.map(t),
            reason: "why".into(),
        }
    }

    #[test]
    fn a_pause_written_with_a_stop_is_the_stopped_state() {
        assert_eq!(Chaos::of(false, None, None), Chaos::Unknown);
        assert_eq!(Chaos::of(true, None, None), Chaos::Running);
        let p = pause("2026-12-01T10:00:00Z", None);
        assert_eq!(
            Chaos::of(true, Some(p.clone()), Some(t("2026-12-01T10:00:01Z"))),
            Chaos::Stopped(p.clone())
        );
        // An older stop, then a plain pause: paused.
        assert_eq!(
            Chaos::of(true, Some(p.clone()), Some(t("2026-11-30T10:00:00Z"))),
            Chaos::Paused(p.clone())
        );
        let timed = pause("2026-12-01T10:00:00Z", Some("2026-12-01T11:00:00Z"));
        assert_eq!(
            Chaos::of(true, Some(timed.clone()), Some(t("2026-12-01T10:00:00Z"))),
            Chaos::Paused(timed)
        );
    }

    #[test]
    fn ids_say_when_they_started() {
        assert_eq!(
            started_from_id("my-policy-20261201T120000Z-ab12"),
            Some(t("2026-12-01T12:00:00Z"))
        );
        assert_eq!(started_from_id("nonsense"), None);
    }

    #[test]
    fn records_are_classified_by_holder() {
        let now = t("2026-12-01T12:00:00Z");
        let record = |experiment: &str, owner: &str, deadline: &str| Held {
            object: ObjectRef::namespaced("Deployment", "shop", experiment),
            record: RevertRecord {
                experiment: experiment.into(),
                policy: "p".into(),
                fault: "scale".into(),
                original: serde_json::json!({"replicas": 2, "set": 0}),
                deadline: t(deadline),
                owner: owner.into(),
            },
        };
        let found = Found {
            held: vec![
                record("live", "me", "2026-12-01T12:05:00Z"),
                record("orphan", "me", "2026-12-01T12:04:00Z"),
                record("theirs", "other", "2026-12-01T12:03:00Z"),
                record("late", "other", "2026-12-01T11:00:00Z"),
            ],
            unreadable: vec![],
            ..Found::default()
        };
        let running = vec![RunningView {
            id: "live".into(),
            policy: "p".into(),
            started: None,
        }];
        let views = held_views(&found, "me", &running, now);
        let by: BTreeMap<&str, &Holder> = views
            .iter()
            .map(|v| (v.held.record.experiment.as_str(), &v.holder))
            .collect();
        assert_eq!(
            by["live"],
            &Holder::Running {
                revert_at: t("2026-12-01T12:03:00Z")
            }
        );
        assert_eq!(by["orphan"], &Holder::Orphaned);
        assert_eq!(by["theirs"], &Holder::Foreign);
        assert_eq!(by["late"], &Holder::Expired);
        assert_eq!(views[0].held.record.experiment, "late", "by deadline");
    }

    #[test]
    fn times_read_naturally() {
        let now = t("2026-12-01T12:00:00Z");
        assert_eq!(relative(t("2026-12-01T11:59:18Z"), now), "42 s ago");
        assert_eq!(relative(t("2026-12-01T14:05:00Z"), now), "in 2 h 5 min");
        assert_eq!(span(185), "3 min 5 s");
        assert_eq!(span(120), "2 min");
        assert_eq!(span(2 * 86400 + 3600), "2 d 1 h");
        let berlin: Tz = "Europe/Berlin".parse().expect("tz");
        assert_eq!(
            start_of_day(t("2026-12-01T00:30:00Z"), berlin),
            t("2026-11-30T23:00:00Z")
        );
        assert_eq!(
            grafana_link(
                "https://g/d/x",
                t("2026-12-01T12:00:00Z"),
                t("2026-12-01T12:01:00Z")
            ),
            "https://g/d/x?from=1796126340000&to=1796126520000"
        );
    }
}
