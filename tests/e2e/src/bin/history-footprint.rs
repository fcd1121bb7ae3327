//! What the experiment history in the cluster costs a replica (issue 23): `havoc serve`
//! (the binary in `HAVOC_BIN`, a release build) started over a history of 0 and N
//! finished experiments (`HISTORY_RECORDS`, default 1000) of realistic size, in a
//! namespace of its own. Measured for each: the time until ready (the objects listed
//! once), RSS when ready, RSS and CPU after `HISTORY_IDLE_SECONDS` (60) idle, the latency
//! of `GET /api/v1/experiments?limit=50` (first and then cached) and `?limit=1000`, of
//! `GET /api/v1/report?format=json` over the whole history, and RSS after those reads.
//! The footprint goals (README, Footprint): steady RSS at most 20 MiB.
//!
//! Run by `tests/bench/history-footprint`; needs `deploy/local/up`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use havoc_e2e::{
    Env, bench,
    fixtures::{self, target},
    history,
    serve::{Serve, Setup},
};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use serde_json::{Value, json};

const LEASE: &str = "havoc-history-bench";

/// A finished experiment's object as havoc writes it: 3 pod targets with reverts, an
/// alert, an SLO reading.
fn experiment(i: usize, home: &str) -> anyhow::Result<kube::api::DynamicObject> {
    let at = Utc::now() - chrono::Duration::minutes(i as i64);
    let id = format!("bench-{}-{i:05x}", at.format("%Y%m%dT%H%M%SZ"));
    let targets: Vec<Value> = (0..3)
        .map(|t| {
            json!({"kind": "Pod", "namespace": "shop", "name": format!("web-7b64bd88b5-{i:05}{t}"),
                   "outcome": "injected", "detail": "deleted pod shop/web (grace 0s)"})
        })
        .collect();
    let record = json!({
        "id": id, "policy": format!("policy-{}", i % 20), "verdict": if i.is_multiple_of(7) { "deviated" } else { "passed" },
        "reason": "no new alert, no SLO breach until settle ended", "dryRun": false,
        "trigger": {"kind": "schedule", "scheduledAt": at},
        "targets": targets, "fault": "podDelete",
        "startedAt": at, "injectedAt": at, "revertedAt": at, "endedAt": at + chrono::Duration::seconds(40),
        "alerts": [{"name": "KubePodCrashLooping", "fingerprint": format!("{i:016x}"),
                    "labels": {"namespace": "shop", "pod": "web-0", "severity": "warning"}, "startsAt": at}],
        "slos": [{"name": "error-ratio", "value": 0.001, "objective": "< 0.01", "breached": false, "at": at}],
    });
    let object = json!({
        "apiVersion": "havoc.dev/v1alpha1", "kind": "HavocExperiment",
        "metadata": {"name": id.to_ascii_lowercase(), "namespace": home,
                     "labels": {"app.kubernetes.io/managed-by": "havoc", "havoc.dev/installation": LEASE}},
        "spec": {"id": id, "policy": record["policy"], "fault": "podDelete", "dryRun": false,
                 "trigger": record["trigger"], "startedAt": at, "deadline": at, "owner": format!("{home}/{LEASE}"),
                 "replica": "bench", "targets": [], "targetCount": 3, "targetSummary": "3 Pod"},
        "status": {"phase": "Finished", "verdict": record["verdict"], "record": record},
    });
    Ok(serde_json::from_value(object)?)
}

async fn timed(serve: &Serve, path: &str) -> anyhow::Result<(f64, usize)> {
    let started = Instant::now();
    let r = serve.http.get(serve.url(path)).send().await?;
    anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
    let bytes = r.bytes().await?.len();
    Ok((started.elapsed().as_secs_f64() * 1000.0, bytes))
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

async fn measure(env: &Env, n: usize, idle: u64) -> anyhow::Result<String> {
    let client = env.client().await?;
    let home = format!("havoc-history-bench-{n}-{:04x}", rand::random::<u16>());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": home}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let api = history::experiments(&client, &home);
    let created = Instant::now();
    for i in 0..n {
        api.create(&PostParams::default(), &experiment(i, &home)?)
            .await?;
    }
    let size = serde_json::to_string(&experiment(0, &home)?)?.len();
    println!(
        "{n} objects of {size} bytes created in {:.0} s",
        created.elapsed().as_secs_f64()
    );
    let policy = fixtures::manual(
        "idle",
        "default",
        target("Pod", "default", "app=none"),
        json!({"podDelete": {}}),
        "1s",
    );
    let started = Instant::now();
    let serve = Serve::start(
        env,
        Setup {
            dry_run: true,
            lease: Some(LEASE.to_string()),
            overrides: vec![
                ("/leaderElection/namespace", json!(home)),
                ("/history", json!({"keep": 10_000})),
            ],
            ..Setup::policy("idle.yaml", &policy)
        },
    )
    .await?;
    let ready_s = started.elapsed().as_secs_f64();
    let pid = serve.child.id().context("pid")?;
    let at_ready = bench::proc_stat(pid)?;
    // Steady state first: what a replica holds when nobody reads the history.
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let idle_stat = bench::proc_stat(pid)?;
    let (cold50, _) = timed(&serve, "/api/v1/experiments?limit=50").await?;
    let (warm50, bytes50) = timed(&serve, "/api/v1/experiments?limit=50").await?;
    let (all, bytes_all) = timed(&serve, "/api/v1/experiments?limit=1000").await?;
    let (report, bytes_report) = timed(&serve, "/api/v1/report?format=json").await?;
    let after = bench::proc_stat(pid)?;
    // Ready means the history was listed: every record is there at once.
    let v = serve.get("/api/v1/experiments?limit=1000").await?;
    let listed = v.as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        listed == n.min(1000),
        "{listed} of {n} records listed\nlog tail:\n{}",
        havoc_e2e::serve::tail(&serve.log(), 20)
    );
    drop(serve);
    let _ = namespaces.delete(&home, &DeleteParams::background()).await;
    Ok(format!(
        "| {n} | {ready_s:.1} s | {} | {} | {} | {:.2} s | {cold50:.0} / {warm50:.0} ms ({} KB) | {all:.0} ms ({} KB) | {report:.0} ms ({} KB) | {} | {} |",
        mib(at_ready.rss_kib),
        mib(idle_stat.rss_kib),
        mib(idle_stat.peak_kib),
        idle_stat.cpu_s,
        bytes50 / 1000,
        bytes_all / 1000,
        bytes_report / 1000,
        mib(after.rss_kib),
        mib(after.peak_kib),
    ) + &format!(" <!-- {listed} listed -->"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::load()?;
    anyhow::ensure!(
        std::env::var_os("HAVOC_BIN").is_some(),
        "set HAVOC_BIN to the release build (tests/bench/history-footprint does)"
    );
    let n: usize = havoc_e2e::var_or("HISTORY_RECORDS", 1000);
    let idle: u64 = havoc_e2e::var_or("HISTORY_IDLE_SECONDS", 60);
    let mut rows = Vec::new();
    for records in [0, n] {
        rows.push(measure(&env, records, idle).await?);
    }
    println!(
        "\n| records | ready after | RSS ready (MiB) | RSS after {idle} s idle | peak | CPU until then | `experiments?limit=50` cold / cached | `?limit=1000` | `report?format=json` | RSS after the reads | peak |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
