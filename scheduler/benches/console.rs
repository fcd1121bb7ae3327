//! How long the console takes to render each page server-side, and how much each page
//! weighs, with 1,000 experiments in the history (10 policies over the last 48 hours, so
//! about 500 fall in the timeline's 24 hours; some deviated with alerts and SLO
//! readings, reversible ones with their reverts) and 20 revert records in the cluster.
//!
//! Each measurement is what a request costs after the live state is read: the history
//! queries the page makes (through the `History` trait, implemented by the journal as
//! the service keeps it: its newest 1,000 records in memory) plus building its views and
//! rendering the HTML. The sizes are printed once.
//!
//! Run: `cargo bench -p havoc --bench console`.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use havoc::{
    api::console::{
        self, list_page, list_query,
        pages::{self, Viewer},
        view::{self, Chaos, HeldView, Holder, Live, SourceView},
    },
    engine::health::Reading,
    fault::{Held, revert::RevertRecord},
    history::{History, Query},
    journal::Journal,
    policy::{Context, Expect, Policy, load_str},
    record::{
        AlertRecord, ExperimentRecord, ObjectRef, RevertResult, SloRecord, TargetOutcome,
        TargetRecord, TargetRevert, TriggerInfo, Verdict,
    },
};

const POLICIES: usize = 10;
const EXPERIMENTS: usize = 1000;

fn policy_yaml(i: usize) -> String {
    let schedule = match i % 4 {
        0 => "  schedule:\n    cron: \"*/15 * * * *\"\n    timezone: Europe/Berlin\n    windows:\n      - days: [Mon, Tue, Wed, Thu, Fri]\n        start: \"08:00\"\n        end: \"18:00\"\n".to_string(),
        1 => "  schedule:\n    random: {meanInterval: 30m, minInterval: 5m}\n".to_string(),
        2 => "  schedule:\n    cron: \"0 * * * *\"\n    blackouts:\n      - date: \"12-24\"\n".to_string(),
        _ => "  triggers:\n    - rollout: {kinds: [Deployment], namespaces: [shop], selector: \"app=web\"}\n".to_string(),
    };
    let fault = if i.is_multiple_of(2) {
        "  target: {kind: Pod, namespaces: [shop], selector: \"app=web\"}\n  fault: {podDelete: {}}\n"
    } else {
        "  target: {kind: Deployment, namespaces: [shop], selector: \"app=web\"}\n  fault: {scale: {replicas: 0}}\n  duration: 2m\n"
    };
    format!(
        "apiVersion: havoc.dev/v1alpha1\nkind: ChaosPolicy\nmetadata:\n  name: policy-{i:02}\nspec:\n{schedule}{fault}"
    )
}

fn policies() -> Vec<Policy> {
    (0..POLICIES)
        .map(|i| {
            let report = load_str(
                std::path::Path::new(&format!("policy-{i:02}.yaml")),
                &policy_yaml(i),
                &Context::default(),
                Expect::Policies,
            );
            assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
            report.policies.into_iter().next().expect("one").0
        })
        .collect()
}

fn record(i: usize, now: DateTime<Utc>) -> ExperimentRecord {
    let policy = i % POLICIES;
    let started =
        now - chrono::Duration::seconds(((i as i64) * 48 * 3600) / EXPERIMENTS as i64 + 30);
    let verdict = match i % 20 {
        0 => Verdict::Deviated,
        1 => Verdict::Skipped,
        2 => Verdict::Errored,
        _ => Verdict::Passed,
    };
    let scale = policy % 2 == 1;
    let target = |n: usize| TargetRecord {
        kind: if scale { "Deployment" } else { "Pod" }.to_string(),
        namespace: Some("shop".to_string()),
        name: format!("web-{n}"),
        outcome: TargetOutcome::Injected,
        detail: Some(format!("delete pod shop/web-{n} (grace 30s)")),
        revert: scale.then(|| TargetRevert {
            result: RevertResult::Restored,
            object: ObjectRef::namespaced("Deployment", "shop", &format!("web-{n}")),
            detail: None,
            at: started + chrono::Duration::seconds(121),
        }),
    };
    ExperimentRecord {
        id: format!(
            "policy-{policy:02}-{}-{:04x}",
            started.format("%Y%m%dT%H%M%SZ"),
            i
        ),
        policy: format!("policy-{policy:02}"),
        verdict,
        reason: "no new alert and no SLO breach".to_string(),
        reason_code: None,
        dry_run: false,
        trigger: if policy % 4 == 3 {
            TriggerInfo::Rollout {
                workload: ObjectRef::namespaced("Deployment", "shop", "web"),
                revision: i.to_string(),
                completed_at: started,
            }
        } else {
            TriggerInfo::Schedule {
                scheduled_at: started,
            }
        },
        targets: vec![target(1), target(2)],
        fault: if scale { "scale" } else { "podDelete" }.to_string(),
        started_at: started,
        injected_at: Some(started + chrono::Duration::seconds(1)),
        reverted_at: scale.then(|| started + chrono::Duration::seconds(121)),
        ended_at: started + chrono::Duration::seconds(150),
        alerts: if verdict == Verdict::Deviated {
            vec![AlertRecord {
                name: "KubeDeploymentUnavailable".to_string(),
                fingerprint: format!("{i:x}"),
                labels: [
                    ("namespace".to_string(), "shop".to_string()),
                    ("severity".to_string(), "warning".to_string()),
                ]
                .into(),
                starts_at: started + chrono::Duration::seconds(40),
            }]
        } else {
            Vec::new()
        },
        slos: vec![SloRecord {
            name: "error-ratio".to_string(),
            value: Some(0.001),
            objective: "< 0.01".to_string(),
            breached: false,
            at: started + chrono::Duration::seconds(60),
        }],
        budgets: Vec::new(),
    }
}

fn held(i: usize, now: DateTime<Utc>) -> HeldView {
    HeldView {
        held: Held {
            object: ObjectRef::namespaced("Deployment", "shop", &format!("web-{i}")),
            record: RevertRecord {
                experiment: format!("policy-01-x-{i}"),
                policy: "policy-01".to_string(),
                fault: "scale".to_string(),
                original: serde_json::json!({"replicas": 3, "set": 0}),
                deadline: now + chrono::Duration::minutes(3),
                owner: if i.is_multiple_of(2) {
                    "havoc-system/havoc".to_string()
                } else {
                    "havoc-run/host-1".to_string()
                },
            },
        },
        holder: if i.is_multiple_of(2) {
            Holder::Orphaned
        } else {
            Holder::Foreign
        },
    }
}

fn live(now: DateTime<Utc>, policies: &[Policy]) -> Live {
    Live {
        now,
        tz: chrono_tz::UTC,
        chaos: Chaos::Running,
        leader: true,
        pod: Some("havoc-0".to_string()),
        running: Vec::new(),
        policy_pauses: BTreeMap::new(),
        held: (0..20).map(|i| held(i, now)).collect(),
        unreadable: Vec::new(),
        faults_synced: true,
        sources: vec![SourceView {
            name: "alertmanager".to_string(),
            what: "http://alertmanager:9093".to_string(),
            last: Some(Reading {
                at: now,
                latency: Duration::from_millis(3),
                outcome: Ok("no alert firing".to_string()),
            }),
        }],
        breaker_cooldown: Duration::from_secs(3600),
        rejected: None,
        applied_at: Some(now),
        grafana: Some("https://grafana.example.com/d/havoc/havoc".to_string()),
        policies: policies
            .iter()
            .map(|p| view::policy_view(p, Some(now + chrono::Duration::minutes(7)), now))
            .collect(),
        namespace_budgets: None,
    }
}

fn viewer() -> Viewer {
    Viewer {
        root: "./".to_string(),
        session: None,
        csrf: String::new(),
        login_enabled: true,
        flash: None,
        digest: "0123456789abcdef".to_string(),
    }
}

/// Every page, rendered as the handler does after reading the live state.
fn render(
    page: &str,
    history: &Journal,
    probe: &str,
    live: &Live,
    rt: &tokio::runtime::Runtime,
) -> String {
    let v = viewer();
    rt.block_on(async {
        match page {
            "now" => {
                let since = view::start_of_day(live.now, live.tz);
                let today = history
                    .list(&Query {
                        since: Some(since),
                        ..Query::default()
                    })
                    .await
                    .expect("list");
                pages::now_page(&v, live, &today, since).into_string()
            }
            "timeline" => {
                let svg = console::timeline_svg(history, live).await.expect("svg");
                pages::timeline_page(&v, live, &svg).into_string()
            }
            "experiments" | "experiments?policy&verdict" => {
                let params = if page == "experiments" {
                    console::ListParams::default()
                } else {
                    console::ListParams {
                        policy: "policy-03".to_string(),
                        verdict: "passed".to_string(),
                        ..console::ListParams::default()
                    }
                };
                let (q, filter) = list_query(&params).expect("query");
                let (rows, more) = list_page(history, &q, filter.page).await.expect("page");
                let names: Vec<String> = live.policies.iter().map(|p| p.name.clone()).collect();
                pages::experiments_page(&v, live, &filter, &names, &rows, more, None).into_string()
            }
            "experiment" => {
                let r = history.get(probe).await.expect("get").expect("found");
                pages::experiment_page(&v, live, &r).into_string()
            }
            "policies" => {
                let names: Vec<String> = live.policies.iter().map(|p| p.name.clone()).collect();
                let last = console::last_of_each(history, &names).await.expect("last");
                let rows = console::policy_rows(live, &last);
                pages::policies_page(&v, live, &rows).into_string()
            }
            "faults" => pages::faults_page(&v, live).into_string(),
            other => panic!("no page {other}"),
        }
    })
}

const PAGES: [&str; 7] = [
    "now",
    "timeline",
    "experiments",
    "experiments?policy&verdict",
    "experiment",
    "policies",
    "faults",
];

fn bench(c: &mut Criterion) {
    let now = Utc::now();
    let policies = policies();
    // Appended oldest first, as the service appends them.
    let history = Journal::in_memory(EXPERIMENTS);
    for i in (0..EXPERIMENTS).rev() {
        history.append(&record(i, now)).expect("in memory");
    }
    let probe = record(EXPERIMENTS / 2, now).id;
    let live = live(now, &policies);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for page in PAGES {
        let html = render(page, &history, &probe, &live, &rt);
        eprintln!(
            "console page {page:<28} {:>7.1} KB ({} bytes)",
            html.len() as f64 / 1024.0,
            html.len()
        );
    }
    let mut group = c.benchmark_group("console page, 1,000 experiments");
    group.sample_size(20);
    for page in PAGES {
        group.bench_function(page, |b| {
            b.iter(|| render(page, &history, &probe, &live, &rt));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
