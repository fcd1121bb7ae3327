//! How long a report over 10,000 records takes in each format (the target: under 2 s).
//! The records are a realistic mix: every verdict, a few targets each, deviations with
//! alerts and SLO readings, over 30 days and 20 policies.
//!
//! Run: `cargo bench -p havoc --bench report`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use havoc::{
    history::Query,
    record::{
        AlertRecord, ExperimentRecord, ObjectRef, RevertResult, SloRecord, TargetOutcome,
        TargetRecord, TargetRevert, TriggerInfo, Verdict,
    },
    report::{Format, Report, render},
};

pub const RECORDS: usize = 10_000;

fn records(n: usize) -> Vec<ExperimentRecord> {
    let t0: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().expect("time");
    let verdicts = [
        Verdict::Passed,
        Verdict::Passed,
        Verdict::Passed,
        Verdict::Passed,
        Verdict::Skipped,
        Verdict::Passed,
        Verdict::Deviated,
        Verdict::Passed,
        Verdict::Errored,
        Verdict::RollbackFailed,
    ];
    (0..n)
        .map(|i| {
            let verdict = verdicts[i % verdicts.len()];
            let started = t0 + Duration::seconds((i * 259) as i64);
            let policy = format!("policy-{}", i % 20);
            let ns = format!("team-{}", i % 7);
            let injected = verdict != Verdict::Skipped;
            let targets = if injected {
                (0..3)
                    .map(|k| TargetRecord {
                        kind: "Deployment".into(),
                        namespace: Some(ns.clone()),
                        name: format!("app-{k}"),
                        outcome: TargetOutcome::Injected,
                        detail: None,
                        revert: Some(TargetRevert {
                            result: if verdict == Verdict::RollbackFailed {
                                RevertResult::Failed
                            } else {
                                RevertResult::Restored
                            },
                            object: ObjectRef::namespaced("Deployment", &ns, &format!("app-{k}")),
                            detail: None,
                            at: started + Duration::seconds(61),
                        }),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let deviated = verdict == Verdict::Deviated;
            ExperimentRecord {
                id: format!("{policy}-{i:06}"),
                policy,
                verdict,
                reason: format!("{} after the fault was held", verdict.label()),
                reason_code: match verdict {
                    Verdict::Skipped => Some("alertsFiring".into()),
                    Verdict::Errored => Some("injection".into()),
                    _ => None,
                },
                dry_run: false,
                trigger: TriggerInfo::Schedule {
                    scheduled_at: started,
                },
                targets,
                fault: "scale".into(),
                started_at: started,
                injected_at: injected.then(|| started + Duration::seconds(1)),
                reverted_at: injected.then(|| started + Duration::seconds(61)),
                ended_at: started + Duration::seconds(91),
                alerts: if deviated {
                    vec![AlertRecord {
                        name: "KubeDeploymentUnavailable".into(),
                        fingerprint: format!("{i:x}"),
                        labels: BTreeMap::from([
                            ("alertname".into(), "KubeDeploymentUnavailable".into()),
                            ("namespace".into(), ns.clone()),
                            ("severity".into(), "warning".into()),
                        ]),
                        starts_at: started + Duration::seconds(20),
                    }]
                } else {
                    Vec::new()
                },
                slos: vec![SloRecord {
                    name: "error-ratio".into(),
                    value: Some(if deviated { 0.2 } else { 0.001 }),
                    objective: "< 0.01".into(),
                    breached: deviated,
                    at: started + Duration::seconds(90),
                }],
                budgets: Vec::new(),
            }
        })
        .rev()
        .collect()
}

fn bench(c: &mut Criterion) {
    let records = records(RECORDS);
    let query = Query::default();
    let mut group = c.benchmark_group("report");
    group.sample_size(10);
    for format in Format::ALL {
        group.bench_function(format!("{}_10000_records", format.label()), |b| {
            b.iter(|| {
                let report = Report::new(&records, &query, Utc::now());
                render(format, &report).expect("renders")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
