//! How long `havoc plan` takes to compute one year of fires for 1,000 policies:
//! cron policies (a mix of business-hours and frequent expressions in DST zones, with
//! windows and blackouts; the same with no two schedules alike) and random policies
//! (Poisson and uniform, some in windows).
//!
//! Run: `cargo bench -p havoc --bench plan`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use havoc::policy::{Context, Expect, Policy, load_str};
use havoc::schedule::plan::plan;

const ZONES: [&str; 4] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "UTC",
];

fn cron_policy(i: usize) -> String {
    let cron = [
        "*/30 10-16 * * MON-FRI",
        "0 * * * *",
        "15 2 * * *",
        "0 9 1 * FRI",
        "*/10 * * * SAT,SUN",
    ][i % 5];
    let windows = if i.is_multiple_of(3) {
        "    windows:\n      - days: [Mon, Tue, Wed, Thu, Fri]\n        start: \"09:00\"\n        end: \"17:00\"\n"
    } else {
        ""
    };
    policy(i, &format!("    cron: \"{cron}\"\n{windows}"))
}

/// The same mix with a seconds field that differs per policy, so that no two policies
/// share a schedule (and `plan` cannot share a cursor between them): the cost of the
/// search itself. Same number of fires.
fn distinct_cron_policy(i: usize) -> String {
    let cron = [
        "*/30 10-16 * * MON-FRI",
        "0 * * * *",
        "15 2 * * *",
        "0 9 1 * FRI",
        "*/10 * * * SAT,SUN",
    ][i % 5];
    let windows = if i.is_multiple_of(3) {
        "    windows:\n      - days: [Mon, Tue, Wed, Thu, Fri]\n        start: \"09:00\"\n        end: \"17:00\"\n"
    } else {
        ""
    };
    policy(i, &format!("    cron: \"{} {cron}\"\n{windows}", i / 20))
}

fn random_policy(i: usize) -> String {
    let kind = if i.is_multiple_of(2) {
        "    random: {meanInterval: 2h, minInterval: 15m}\n"
    } else {
        "    interval: {min: 30m, max: 3h}\n"
    };
    let windows = if i.is_multiple_of(3) {
        "    windows:\n      - days: [Mon, Tue, Wed, Thu, Fri]\n        start: \"22:00\"\n        end: \"06:00\"\n"
    } else {
        ""
    };
    policy(i, &format!("{kind}{windows}"))
}

fn policy(i: usize, schedule: &str) -> String {
    format!(
        "apiVersion: havoc.dev/v1alpha1\nkind: ChaosPolicy\nmetadata:\n  name: p-{i}\nspec:\n  schedule:\n    timezone: {}\n{schedule}    blackouts:\n      - date: \"12-24\"\n      - from: \"2026-12-20T00:00\"\n        until: \"2027-01-04T00:00\"\n  target:\n    kind: Pod\n    namespaces: [go-demo-8]\n  fault:\n    podDelete: {{}}\n",
        ZONES[i % ZONES.len()]
    )
}

/// The policies as ten files of 100 each: one file of 1,000 would exceed the size limit
/// for one policy file (256 KiB).
fn files(make: fn(usize) -> String) -> Vec<(String, String)> {
    (0..10)
        .map(|f| {
            let text = (f * 100..(f + 1) * 100)
                .map(|i| make(i) + "---\n")
                .collect();
            (format!("bench-{f}.yaml"), text)
        })
        .collect()
}

fn load(make: fn(usize) -> String) -> Vec<Policy> {
    let mut policies = Vec::new();
    for (name, text) in files(make) {
        let report = load_str(name.as_ref(), &text, &Context::default(), Expect::Policies);
        assert!(report.is_valid(), "{:?}", report.diagnostics.first());
        policies.extend(report.policies.into_iter().map(|(p, _)| p));
    }
    assert_eq!(policies.len(), 1000);
    policies
}

fn year_of_fires(policies: &[Policy]) -> usize {
    let from: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("valid");
    let until: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().expect("valid");
    let schedules = policies
        .iter()
        .filter_map(|p| p.schedule.as_ref().map(|s| (p.name.as_str(), s)));
    plan(schedules, from, until, 42).len()
}

fn bench(c: &mut Criterion) {
    let cron = load(cron_policy);
    let distinct = load(distinct_cron_policy);
    let random = load(random_policy);
    eprintln!(
        "fires in one year: 1,000 cron policies {}, 1,000 distinct cron policies {}, 1,000 random policies {}",
        year_of_fires(&cron),
        year_of_fires(&distinct),
        year_of_fires(&random)
    );
    let mut g = c.benchmark_group("plan one year");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("1000 cron policies", |b| b.iter(|| year_of_fires(&cron)));
    g.bench_function("1000 cron policies, no two alike", |b| {
        b.iter(|| year_of_fires(&distinct));
    });
    g.bench_function("1000 random policies", |b| {
        b.iter(|| year_of_fires(&random));
    });
    g.finish();
    let files = files(cron_policy);
    c.bench_function("parse + validate 1000 policies", |b| {
        b.iter(|| {
            files
                .iter()
                .map(|(name, text)| {
                    load_str(name.as_ref(), text, &Context::default(), Expect::Policies)
                        .policies
                        .len()
                })
                .sum::<usize>()
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
