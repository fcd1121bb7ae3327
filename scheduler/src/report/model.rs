//! What every report format shows, computed once from the records: counts by verdict per
//! policy and namespace, faults injected and reverted, deviations and the alerts behind
//! them, failed reverts, skips by reason, days since each policy last passed, verdicts
//! over time, and each experiment's timeline. The formats only lay it out.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::record::{
    AlertRecord, ExperimentRecord, RevertResult, SloRecord, TargetOutcome, TriggerInfo, Verdict,
};

/// Every verdict, in the order reports show them (best first, worst last).
pub const VERDICTS: [Verdict; 5] = [
    Verdict::Passed,
    Verdict::Deviated,
    Verdict::Skipped,
    Verdict::Errored,
    Verdict::RollbackFailed,
];

/// How many buckets the verdicts-over-time chart has at most.
pub const MAX_BUCKETS: usize = 60;

/// Experiments counted by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts(pub [usize; 5]);

impl Counts {
    fn index(v: Verdict) -> usize {
        match v {
            Verdict::Passed => 0,
            Verdict::Deviated => 1,
            Verdict::Skipped => 2,
            Verdict::Errored => 3,
            Verdict::RollbackFailed => 4,
        }
    }

    pub fn add(&mut self, v: Verdict) {
        self.0[Self::index(v)] += 1;
    }

    pub fn get(&self, v: Verdict) -> usize {
        self.0[Self::index(v)]
    }

    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }
}

/// One line of the table of verdicts per policy and namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub policy: String,
    /// `None`: the experiment touched no namespaced target (nodes, or nothing: a skip).
    pub namespace: Option<String>,
    pub counts: Counts,
}

/// Faults injected and reverted, counted by target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Live experiments that injected something.
    pub experiments: usize,
    /// Targets a live fault reached.
    pub injected: usize,
    /// Targets a dry run only logged.
    pub dry_run: usize,
    /// Reverts that left the cluster as it was (restored, gone, left as someone else
    /// changed it, no longer ours).
    pub reverted: usize,
    pub revert_failed: usize,
}

/// A revert that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRevert {
    /// Index into the report's records.
    pub record: usize,
    /// `Kind namespace/name`.
    pub object: String,
    pub detail: String,
}

/// Where each policy stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatus {
    pub policy: String,
    pub experiments: usize,
    pub last_verdict: Verdict,
    pub last_at: DateTime<Utc>,
    pub last_passed: Option<DateTime<Utc>>,
    /// Whole days from the last pass to the report's generation; `None`: no pass among
    /// the records.
    pub days_since_pass: Option<i64>,
}

/// The verdicts-over-time chart: equal buckets over the records' start times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    pub width: Duration,
    /// `hour`, `6 hours`, `day`, `week` or `30 days`.
    pub unit: &'static str,
    /// Each bucket's start and its counts, oldest first, gaps included.
    pub buckets: Vec<(DateTime<Utc>, Counts)>,
}

impl Buckets {
    /// The largest count in one bucket (the chart's scale).
    pub fn max(&self) -> usize {
        self.buckets
            .iter()
            .map(|(_, c)| c.total())
            .max()
            .unwrap_or(0)
    }
}

/// The summary every format starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    pub counts: Counts,
    pub rows: Vec<Row>,
    pub faults: Faults,
    /// Indices into the records of the deviated experiments, in report order.
    pub deviations: Vec<usize>,
    pub failed_reverts: Vec<FailedRevert>,
    /// `reasonCode` of skipped experiments and how many, most frequent first.
    pub skips: Vec<(String, usize)>,
    pub policies: Vec<PolicyStatus>,
    pub buckets: Buckets,
    /// The earliest and latest start among the records.
    pub span: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The longest time a fault was held ([`held`]) among the records.
    pub longest_held: Option<Duration>,
}

impl Overview {
    /// Summarizes `records` as of `now` (for the days since a policy last passed).
    pub fn of(records: &[ExperimentRecord], now: DateTime<Utc>) -> Overview {
        let mut counts = Counts::default();
        let mut rows: BTreeMap<(String, Option<String>), Counts> = BTreeMap::new();
        let mut faults = Faults::default();
        let mut deviations = Vec::new();
        let mut failed_reverts = Vec::new();
        let mut skips: BTreeMap<String, usize> = BTreeMap::new();
        let mut policies: BTreeMap<&str, PolicyStatus> = BTreeMap::new();
        let mut span: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
        let mut namespaces: Vec<&str> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            counts.add(r.verdict);
            namespaces.clear();
            namespaces.extend(r.targets.iter().filter_map(|t| t.namespace.as_deref()));
            namespaces.sort_unstable();
            namespaces.dedup();
            if namespaces.is_empty() {
                rows.entry((r.policy.clone(), None))
                    .or_default()
                    .add(r.verdict);
            }
            for ns in &namespaces {
                rows.entry((r.policy.clone(), Some((*ns).to_string())))
                    .or_default()
                    .add(r.verdict);
            }
            let mut reached = false;
            for t in &r.targets {
                match t.outcome {
                    TargetOutcome::Injected if !r.dry_run => {
                        faults.injected += 1;
                        reached = true;
                    }
                    TargetOutcome::DryRun | TargetOutcome::Injected => faults.dry_run += 1,
                    _ => {}
                }
                if let Some(rv) = &t.revert {
                    if rv.result == RevertResult::Failed {
                        faults.revert_failed += 1;
                        failed_reverts.push(FailedRevert {
                            record: i,
                            object: format!(
                                "{} {}{}",
                                rv.object.kind,
                                rv.object
                                    .namespace
                                    .as_deref()
                                    .map(|n| format!("{n}/"))
                                    .unwrap_or_default(),
                                rv.object.name
                            ),
                            detail: rv.detail.clone().unwrap_or_else(|| "failed".into()),
                        });
                    } else {
                        faults.reverted += 1;
                    }
                }
            }
            if reached {
                faults.experiments += 1;
            }
            if r.verdict == Verdict::Deviated {
                deviations.push(i);
            }
            if r.verdict == Verdict::Skipped {
                *skips
                    .entry(r.reason_code.clone().unwrap_or_else(|| "unknown".into()))
                    .or_default() += 1;
            }
            let p = policies
                .entry(r.policy.as_str())
                .or_insert_with(|| PolicyStatus {
                    policy: r.policy.clone(),
                    experiments: 0,
                    last_verdict: r.verdict,
                    last_at: r.started_at,
                    last_passed: None,
                    days_since_pass: None,
                });
            p.experiments += 1;
            if r.started_at > p.last_at {
                p.last_at = r.started_at;
                p.last_verdict = r.verdict;
            }
            if r.verdict == Verdict::Passed && p.last_passed.is_none_or(|t| r.ended_at > t) {
                p.last_passed = Some(r.ended_at);
            }
            span = Some(match span {
                None => (r.started_at, r.started_at),
                Some((a, b)) => (a.min(r.started_at), b.max(r.started_at)),
            });
        }
        let mut policies: Vec<PolicyStatus> = policies.into_values().collect();
        for p in &mut policies {
            p.days_since_pass = p.last_passed.map(|t| (now - t).num_days().max(0));
        }
        let mut skips: Vec<(String, usize)> = skips.into_iter().collect();
        skips.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Overview {
            counts,
            rows: rows
                .into_iter()
                .map(|((policy, namespace), counts)| Row {
                    policy,
                    namespace,
                    counts,
                })
                .collect(),
            faults,
            deviations,
            failed_reverts,
            skips,
            policies,
            buckets: buckets(records, span),
            span,
            longest_held: records.iter().filter_map(held).max(),
        }
    }
}

/// The smallest bucket width that shows the span in at most [`MAX_BUCKETS`] buckets.
fn buckets(records: &[ExperimentRecord], span: Option<(DateTime<Utc>, DateTime<Utc>)>) -> Buckets {
    const WIDTHS: [(i64, &str); 5] = [
        (3_600, "hour"),
        (6 * 3_600, "6 hours"),
        (86_400, "day"),
        (7 * 86_400, "week"),
        (30 * 86_400, "30 days"),
    ];
    let Some((first, last)) = span else {
        return Buckets {
            width: Duration::hours(1),
            unit: "hour",
            buckets: Vec::new(),
        };
    };
    let floor = |t: DateTime<Utc>, w: i64| t.timestamp().div_euclid(w) * w;
    let count = |w: i64| (floor(last, w) - floor(first, w)) / w + 1;
    // Wider than the widest: the widest with more buckets (a span of over five years).
    let (secs, unit) = WIDTHS
        .iter()
        .copied()
        .find(|(w, _)| count(*w) <= MAX_BUCKETS as i64)
        .unwrap_or(WIDTHS[WIDTHS.len() - 1]);
    let start = floor(first, secs);
    let n = usize::try_from(count(secs)).unwrap_or(0);
    let mut buckets: Vec<(DateTime<Utc>, Counts)> = (0..n)
        .map(|i| {
            let t = DateTime::from_timestamp(start + i as i64 * secs, 0).unwrap_or(first);
            (t, Counts::default())
        })
        .collect();
    for r in records {
        let i = usize::try_from((floor(r.started_at, secs) - start) / secs).unwrap_or(0);
        if let Some((_, c)) = buckets.get_mut(i) {
            c.add(r.verdict);
        }
    }
    Buckets {
        width: Duration::seconds(secs),
        unit,
        buckets,
    }
}

/// One step of an experiment's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `scheduled`, `gate`, `inject`, `hold`, `revert`, `settle`, `verdict`.
    pub name: &'static str,
    /// When it happened (the start, for `hold` and `settle`); `None`: it did not.
    pub at: Option<DateTime<Utc>>,
    pub note: String,
}

/// `12.3 s`, `4 min 5 s`, `2 h 3 min`.
pub fn duration_text(d: Duration) -> String {
    let ms = d.num_milliseconds().max(0);
    if ms < 60_000 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    let s = ms / 1000;
    if s < 3_600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3_600, (s % 3_600) / 60)
    }
}

/// How long an experiment held its fault: from the injection to the revert; `None` when
/// either did not happen.
pub fn held(r: &ExperimentRecord) -> Option<Duration> {
    Some(r.reverted_at? - r.injected_at?)
}

/// An alert's labels as `key=value, key=value`, without `alertname` (the alert's name
/// says it already). Not escaped: each format escapes it for itself.
pub fn alert_labels(a: &AlertRecord) -> String {
    let labels: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.join(", ")
}

/// An SLO reading's value, or `no data` when its query returned none.
pub fn slo_value(x: &SloRecord) -> String {
    x.value.map_or("no data".to_string(), |v| v.to_string())
}

/// `Kind namespace/name` of a target.
pub fn target_text(t: &crate::record::TargetRecord) -> String {
    match &t.namespace {
        Some(ns) => format!("{} {ns}/{}", t.kind, t.name),
        None => format!("{} {}", t.kind, t.name),
    }
}

/// The experiment's timeline: scheduled, gate, inject, hold, revert, settle, verdict.
pub fn timeline(r: &ExperimentRecord) -> Vec<Step> {
    let (scheduled_at, scheduled) = match &r.trigger {
        TriggerInfo::Schedule { scheduled_at } => (*scheduled_at, "schedule".to_string()),
        TriggerInfo::Rollout {
            workload,
            revision,
            completed_at,
        } => (
            *completed_at,
            format!(
                "rollout of {} {}{} (revision {revision}) completed",
                workload.kind,
                workload
                    .namespace
                    .as_deref()
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default(),
                workload.name
            ),
        ),
        TriggerInfo::Manual { source } => (r.started_at, format!("manual ({source})")),
    };
    let injected = r
        .targets
        .iter()
        .filter(|t| t.outcome != TargetOutcome::Skipped && t.outcome != TargetOutcome::Errored)
        .count();
    let gate = match (r.verdict, r.injected_at) {
        (Verdict::Skipped, None) => format!("closed: {}", r.reason),
        _ => "open".to_string(),
    };
    let mut steps = vec![
        Step {
            name: "scheduled",
            at: Some(scheduled_at),
            note: scheduled,
        },
        Step {
            name: "gate",
            at: Some(r.started_at),
            note: gate,
        },
        Step {
            name: "inject",
            at: r.injected_at,
            note: match r.injected_at {
                Some(_) if r.dry_run => format!("{injected} target(s), dry run: only logged"),
                Some(_) => format!("{injected} target(s)"),
                None => "nothing injected".to_string(),
            },
        },
    ];
    let reverts: Vec<RevertResult> = r
        .targets
        .iter()
        .filter_map(|t| t.revert.as_ref().map(|rv| rv.result))
        .collect();
    if let Some(inj) = r.injected_at {
        let held_until = r.reverted_at.unwrap_or(r.ended_at);
        steps.push(Step {
            name: "hold",
            at: Some(inj),
            note: duration_text(held_until - inj),
        });
        let failed = reverts
            .iter()
            .filter(|x| **x == RevertResult::Failed)
            .count();
        steps.push(Step {
            name: "revert",
            at: r.reverted_at,
            note: if reverts.is_empty() {
                "nothing to revert".to_string()
            } else if failed > 0 {
                format!("{failed} of {} failed", reverts.len())
            } else {
                format!("{} reverted", reverts.len())
            },
        });
        if let Some(rev) = r.reverted_at {
            steps.push(Step {
                name: "settle",
                at: Some(rev),
                note: duration_text(r.ended_at - rev),
            });
        }
    }
    steps.push(Step {
        name: "verdict",
        at: Some(r.ended_at),
        note: r.verdict.label().to_string(),
    });
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ObjectRef, TargetRevert, tests::record};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn counts_rows_faults_skips_and_days_since_a_pass() {
        let mut a = record("a", Verdict::Passed);
        a.ended_at = at("2026-11-20T10:00:00Z");
        let mut b = record("b", Verdict::Deviated);
        b.started_at = at("2026-11-22T11:00:00Z");
        let mut c = record("c", Verdict::Skipped);
        c.targets.clear();
        c.injected_at = None;
        c.reason_code = Some("alertsFiring".into());
        let mut d = record("d", Verdict::RollbackFailed);
        d.policy = "q".into();
        d.targets[0].revert = Some(TargetRevert {
            result: RevertResult::Failed,
            object: ObjectRef::namespaced("Deployment", "go-demo-8", "db"),
            detail: Some("409".into()),
            at: d.started_at,
        });
        let mut e = record("e", Verdict::Passed);
        e.dry_run = true;
        let records = vec![a, b, c, d, e];
        let o = Overview::of(&records, at("2026-11-25T12:00:00Z"));
        assert_eq!(o.counts.total(), 5);
        assert_eq!(o.counts.get(Verdict::Passed), 2);
        assert_eq!(o.deviations, [1]);
        assert_eq!(o.skips, [("alertsFiring".to_string(), 1)]);
        assert_eq!(o.failed_reverts.len(), 1);
        assert_eq!(o.failed_reverts[0].object, "Deployment go-demo-8/db");
        assert_eq!(
            o.faults,
            Faults {
                experiments: 3,
                injected: 3,
                dry_run: 1,
                reverted: 0,
                revert_failed: 1
            }
        );
        let p = &o.policies[0];
        assert_eq!((p.policy.as_str(), p.experiments), ("p", 4));
        assert_eq!(p.last_verdict, Verdict::Deviated);
        // e (dry run, passed) ended at the fixture's 2026-11-22T10:00: 3 days before.
        assert_eq!(p.days_since_pass, Some(3));
        assert_eq!(o.policies[1].days_since_pass, None);
        let rows: Vec<(&str, Option<&str>, usize)> = o
            .rows
            .iter()
            .map(|r| (r.policy.as_str(), r.namespace.as_deref(), r.counts.total()))
            .collect();
        assert_eq!(
            rows,
            [
                ("p", None, 1),
                ("p", Some("go-demo-8"), 3),
                ("q", Some("go-demo-8"), 1)
            ]
        );
    }

    #[test]
    fn buckets_cover_the_span_with_at_most_sixty() {
        let mut records = Vec::new();
        for h in 0..30 {
            let mut r = record(&format!("r{h}"), Verdict::Passed);
            r.started_at = at("2026-11-01T00:30:00Z") + Duration::hours(h * 5);
            records.push(r);
        }
        let o = Overview::of(&records, Utc::now());
        // 145 hours: too many hourly buckets, 25 of six hours.
        assert_eq!(o.buckets.unit, "6 hours");
        assert_eq!(o.buckets.buckets.len(), 25);
        assert_eq!(
            o.buckets
                .buckets
                .iter()
                .map(|(_, c)| c.total())
                .sum::<usize>(),
            30
        );
        assert_eq!(o.buckets.buckets[0].0, at("2026-11-01T00:00:00Z"));
        assert!(Overview::of(&[], Utc::now()).buckets.buckets.is_empty());
    }

    #[test]
    fn a_timeline_names_every_step_that_happened() {
        let mut r = record("x", Verdict::Passed);
        r.reverted_at = Some(r.started_at + Duration::seconds(30));
        r.ended_at = r.started_at + Duration::seconds(40);
        let names: Vec<&str> = timeline(&r).iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "scheduled",
                "gate",
                "inject",
                "hold",
                "revert",
                "settle",
                "verdict"
            ]
        );
        assert_eq!(timeline(&r)[3].note, "30.0 s");
        let mut s = record("y", Verdict::Skipped);
        s.injected_at = None;
        s.reason = "alerts already firing: X".into();
        let steps = timeline(&s);
        assert_eq!(steps.len(), 4);
        assert_eq!(steps[1].note, "closed: alerts already firing: X");
        assert_eq!(duration_text(Duration::seconds(3_725)), "1 h 2 min");
        assert_eq!(duration_text(Duration::seconds(65)), "1 min 5 s");
    }
}
