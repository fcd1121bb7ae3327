//! `havoc serve` against the local cluster: the acceptance tests of the service issue.
//! Each test starts its own havoc process (own port, config, policies and journal) and
//! stops it with SIGTERM. Needs `target/debug/havoc` (tests/run builds it) and
//! `deploy/local/up`.

use std::{process::Stdio, time::Duration};

use anyhow::{Context as _, ensure};
use havoc_e2e::{
    fixtures::{self, PolicyDoc, position_of},
    serve::*,
    *,
};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};

const NS: &str = "go-demo-8";
/// A pod-delete policy (grace 0 s) on pods of the demo namespace, settling 5 s.
fn pod_policy(name: &str, selector: &str) -> PolicyDoc {
    fixtures::policy(name).pods(NS, selector).settle("5s")
}

/// The same, run only when asked (no clock).
fn manual_policy(name: &str, selector: &str) -> PolicyDoc {
    pod_policy(name, selector).manual_only(NS)
}

async fn pod_uids(env: &Env) -> anyhow::Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(env.client().await?, NS);
    let mut uids: Vec<String> = pods
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(kube::ResourceExt::uid)
        .collect();
    uids.sort();
    Ok(uids)
}

fn target_names(r: &Value) -> Vec<String> {
    r["targets"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The classic story: random pods of the go-demo-8 application (its two front-end pods
/// and its single db) with minAvailableReplicas 0. Front-end pods pass silently; the db
/// pod deviates with the alert attributed, notifies once per receiver, and the circuit
/// breaker pauses the policy.
#[tokio::test(flavor = "multi_thread")]
async fn classic_story_deviates_on_the_db_notifies_once_and_pauses() -> anyhow::Result<()> {
    let env = Env::load()?;
    demo_healthy(&env).await?;
    // Floor 0 lets havoc take the last ready pod of any workload, so a strike that came
    // before the previous one's replacement was Ready could take a two-replica front end
    // to zero and deviate there (it did, once, in CI with strikes 10-20 s apart against a
    // 15-20 s readiness delay). Strikes start farther apart than the slowest replacement
    // takes, plus room for a slow scheduler: then only the db can deviate.
    let gap = env.pod_ready_max()? + Duration::from_secs(6);
    let widest = gap + Duration::from_secs(5);
    let classic = pod_policy("classic", "app in (go-demo-8, go-demo-8-db)")
        .interval(
            &format!("{}s", gap.as_secs()),
            &format!("{}s", widest.as_secs()),
        )
        .duration("10s")
        .on_deviation("pausePolicy");
    // The floor that lets the single db pod be hit.
    let setup = Setup::policy("classic.yaml", &classic).limits(json!({"minAvailableReplicas": 0}));
    let serve = Serve::start(&env, setup).await?;
    // Each experiment picks one of three pods, one in three the db (20 strikes, the
    // fewest that fit in this wait, miss it with odds of (2/3)^20, about 1 in 3,300).
    let deviated = serve
        .wait_records(1, widest * 20, "a deviated experiment", |r| {
            r["verdict"] == "deviated"
        })
        .await?
        .remove(0);
    let id = deviated["id"].as_str().context("id")?;
    let targets = target_names(&deviated);
    ensure!(
        targets.len() == 1 && targets[0].starts_with("go-demo-8-db-"),
        "the deviation should come from the db pod: {deviated:#}"
    );
    let alerts = alert_names(&deviated);
    ensure!(
        alerts.contains(&"KubeDeploymentUnavailable"),
        "attributed: {alerts:?}"
    );

    // Kubernetes Events on the pod: the injection and the verdict.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client().await?, NS);
    let db_pod = targets[0].clone();
    poll(Duration::from_secs(20), "Events on the db pod", || async {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(db_pod.as_str())
                    && e.note.as_deref().is_some_and(|n| n.contains(id))
            })
            .filter_map(|e| e.reason)
            .collect();
        Ok((reasons.iter().any(|r| r == "ChaosInjected")
            && reasons.iter().any(|r| r == "ChaosDeviated"))
        .then_some(()))
    })
    .await?;

    // The policy is paused by the circuit breaker.
    let policies = serve.get("/api/v1/policies").await?;
    let classic = &policies["policies"][0];
    ensure!(
        classic["paused"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("circuit breaker") && r.contains(id)),
        "policy should be paused: {classic:#}"
    );
    // Exactly one Slack message and one signed webhook for it (wait for retries to end).
    wait_sink_received(&env, 2, Duration::from_secs(30), |r| {
        r["outcome"] == "ok" && r["body"].as_str().is_some_and(|b| b.contains(id))
    })
    .await?;
    assert_quiet_for(
        Duration::from_secs(3),
        "exactly one Slack message and one webhook",
        || async {
            let (slack, hooks) = serve.notifications(&env, id).await?;
            Ok(slack.len() == 1 && hooks.len() == 1)
        },
    )
    .await?;
    let (_, hooks) = serve.notifications(&env, id).await?;
    verify_signature(&hooks[0])?;

    // Everything else held silently: passed experiments hit only the two-replica
    // front end, and none of them produced a notification.
    let records = serve.records().await?;
    let passed: Vec<&Value> = records
        .iter()
        .filter(|r| r["verdict"] == "passed")
        .collect();
    for r in &passed {
        for t in target_names(r) {
            ensure!(
                t.starts_with("go-demo-8-") && !t.starts_with("go-demo-8-db-"),
                "a passed experiment hit {t}"
            );
        }
        let rid = r["id"].as_str().context("id")?;
        let (s, h) = serve.notifications(&env, rid).await?;
        ensure!(s.is_empty() && h.is_empty(), "{rid} passed but notified");
    }
    ensure!(
        records
            .iter()
            .all(|r| r["verdict"] != "errored" && r["verdict"] != "rollbackFailed"),
        "no experiment may error: {records:#?}"
    );
    // While paused, later fires are recorded as skipped, naming the pause.
    let skipped_paused = poll(
        Duration::from_secs(40),
        "a fire skipped by the pause",
        || async {
            Ok(serve.records().await?.into_iter().find(|r| {
                r["verdict"] == "skipped"
                    && r["reason"]
                        .as_str()
                        .is_some_and(|s| s.contains("policy is paused"))
            }))
        },
    )
    .await?;
    ensure!(
        skipped_paused["targets"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    let metrics = serve.metrics().await?;
    ensure!(
        metrics.contains("havoc_experiments_total{policy=\"classic\",verdict=\"deviated\"} 1"),
        "{metrics}"
    );
    ensure!(metrics.contains("havoc_policies_paused 1"), "{metrics}");
    ensure!(
        metrics.contains("havoc_notifications_total{receiver=\"chat\",result=\"sent\"} 1"),
        "{metrics}"
    );
    drop(serve);
    demo_healthy(&env).await
}

/// With the default minAvailableReplicas (1) the single db pod is never chosen.
#[tokio::test(flavor = "multi_thread")]
async fn default_min_available_never_picks_the_db() -> anyhow::Result<()> {
    let env = Env::load()?;
    // The db's one pod Ready (a test before may have failed while it was replaced): the
    // floor, not a missing pod, is what keeps it.
    demo_healthy(&env).await?;
    let before = pod_uids(&env).await?;
    let guarded = manual_policy("db-guarded", "app=go-demo-8-db").duration("2s");
    let serve = Serve::start(&env, Setup::policy("db.yaml", &guarded)).await?;
    for _ in 0..3 {
        let id = serve.run_now("db-guarded").await?;
        let r = serve.record(&id, Duration::from_secs(30)).await?;
        ensure_verdict(&r, "skipped", "minAvailableReplicas")?;
    }
    ensure!(pod_uids(&env).await? == before, "no pod may be deleted");
    Ok(())
}

/// An alert already firing before the run closes the gate: skipped, not deviated.
#[tokio::test(flavor = "multi_thread")]
async fn an_alert_firing_before_the_run_skips_it() -> anyhow::Result<()> {
    let env = Env::load()?;
    // A firing alert of its own, scoped so that no other test sees it.
    let scope = format!("havoc-e2e-gate-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let starts = chrono::Utc::now() - chrono::Duration::seconds(1);
    let in_5_minutes = chrono::Utc::now() + chrono::Duration::minutes(5);
    post_alert(&env, "HavocE2EGate", &scope, starts, in_5_minutes).await?;
    wait_alert_firing(&env, &[("namespace", &scope)], Duration::from_secs(30)).await?;
    let before = pod_uids(&env).await?;
    let gated = fixtures::policy("gated")
        .manual_only(NS)
        .pods(NS, "app=repeater")
        .fault(json!({"podDelete": {}}))
        .duration("2s")
        .settle("1s")
        .alerts_from(&scope);
    let serve = Serve::start(&env, Setup::policy("gate.yaml", &gated)).await?;
    let id = serve.run_now("gated").await?;
    let r = serve.record(&id, Duration::from_secs(30)).await?;
    // Resolve the alert before checking, so a failure leaves nothing behind.
    post_alert(&env, "HavocE2EGate", &scope, starts, chrono::Utc::now()).await?;
    ensure_verdict(&r, "skipped", "alerts already firing")?;
    ensure_verdict(&r, "skipped", "HavocE2EGate")?;
    ensure!(r["injectedAt"].is_null());
    ensure!(pod_uids(&env).await? == before, "no pod may be deleted");
    Ok(())
}

/// A Prometheus of our own (the Debian server), so stopping it disturbs no other test.
struct OwnPrometheus {
    child: std::process::Child,
    url: String,
}

impl OwnPrometheus {
    fn start(port: u16, dir: &std::path::Path) -> anyhow::Result<Self> {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            "global: {scrape_interval: 5s}\nscrape_configs: []\n",
        )?;
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus (Debian package)")?;
        Ok(OwnPrometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    async fn ready(&self) -> anyhow::Result<()> {
        let url = format!("{}/-/ready", self.url);
        poll(Duration::from_secs(30), "own prometheus ready", || async {
            Ok(reqwest::get(&url)
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ()))
        })
        .await
    }
}

impl Drop for OwnPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus unreachable: experiments are skipped naming it (fail closed); once it is
/// back, experiments run again.
#[tokio::test(flavor = "multi_thread")]
async fn prometheus_down_skips_naming_it_and_resumes() -> anyhow::Result<()> {
    let env = Env::load()?;
    let port = free_port()?;
    let data = tempfile::tempdir()?;
    let prom = OwnPrometheus::start(port, data.path())?;
    prom.ready().await?;
    let guarded = manual_policy("slo-guarded", "app=repeater").duration("2s");
    let setup = Setup {
        dry_run: true,
        prometheus: Some(prom.url.clone()),
        slos: true,
        ..Setup::policy("slo.yaml", &guarded)
    };
    let serve = Serve::start(&env, setup.limits(json!({"minAvailableReplicas": 1}))).await?;
    let id = serve.run_now("slo-guarded").await?;
    let r = serve.record(&id, Duration::from_secs(30)).await?;
    ensure!(r["verdict"] == "passed", "with Prometheus up: {r:#}");

    drop(prom);
    let id = serve.run_now("slo-guarded").await?;
    let r = serve.record(&id, Duration::from_secs(30)).await?;
    // With Prometheus down.
    ensure_verdict(&r, "skipped", "health unreadable")?;
    ensure_verdict(&r, "skipped", "prometheus")?;

    let prom = OwnPrometheus::start(port, data.path())?;
    prom.ready().await?;
    let id = serve.run_now("slo-guarded").await?;
    let r = serve.record(&id, Duration::from_secs(30)).await?;
    ensure!(r["verdict"] == "passed", "with Prometheus back: {r:#}");
    let metrics = serve.metrics().await?;
    ensure!(
        metrics.contains("havoc_health_checks_total{source=\"prometheus\",result=\"error\"}"),
        "{metrics}"
    );
    Ok(())
}

/// The sink fails three times, then answers: the message arrives exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_receiver_is_retried_and_delivers_once() -> anyhow::Result<()> {
    let env = Env::load()?;
    let notify = manual_policy("notify-pass", "app=repeater")
        .duration("1s")
        .notify_on(&["passed"]);
    let setup = Setup {
        dry_run: true,
        receivers: &["chat"],
        ..Setup::policy("notify.yaml", &notify)
    };
    let serve = Serve::start(&env, setup).await?;
    let http = reqwest::Client::new();
    http.post(format!("{}/control/fail", env.sink()?))
        .json(&json!({"mode": "500", "count": 3}))
        .send()
        .await?
        .error_for_status()?;
    let id = serve.run_now("notify-pass").await?;
    let r = serve.record(&id, Duration::from_secs(30)).await?;
    ensure!(r["verdict"] == "passed", "{r:#}");
    // Backoff 1 s, 2 s, 4 s: delivered on the fourth attempt.
    let got = wait_sink_received(&env, 1, Duration::from_secs(40), |x| {
        x["kind"] == "slack"
            && x["outcome"] == "ok"
            && x["body"].as_str().is_some_and(|b| b.contains(&id))
    })
    .await?;
    let failed = sink_received(&env)
        .await?
        .into_iter()
        .filter(|x| {
            x["outcome"] == "injected_500" && x["body"].as_str().is_some_and(|b| b.contains(&id))
        })
        .count();
    ensure!(got.len() == 1, "delivered {} times", got.len());
    assert_quiet_for(Duration::from_secs(3), "delivered exactly once", || async {
        Ok(serve.notifications(&env, &id).await?.0.len() == 1)
    })
    .await?;
    ensure!(failed == 3, "three failed attempts first, saw {failed}");
    Ok(())
}

/// Dry run: the whole lifecycle runs and is recorded, and nothing is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn dry_run_records_everything_and_deletes_nothing() -> anyhow::Result<()> {
    let env = Env::load()?;
    demo_healthy(&env).await?;
    let before = pod_uids(&env).await?;
    let dry = pod_policy("dry", "app").interval("2s", "3s").duration("2s");
    let setup = Setup {
        dry_run: true,
        ..Setup::policy("dry.yaml", &dry)
    };
    let serve = Serve::start(&env, setup.limits(json!({"minAvailableReplicas": 0}))).await?;
    let done = serve
        .wait_records(2, Duration::from_secs(60), "two dry-run experiments", |r| {
            r["verdict"] == "passed"
        })
        .await?;
    for r in &done {
        ensure!(r["dryRun"] == true, "{r:#}");
        ensure!(r["injectedAt"].is_string() && r["revertedAt"].is_string());
        ensure!(r["targets"][0]["outcome"] == "dryRun", "{r:#}");
        ensure!(r["trigger"]["kind"] == "schedule");
    }
    ensure!(pod_uids(&env).await? == before, "a dry run deleted a pod");
    Ok(())
}

/// SIGTERM while an experiment observes: its record is completed and journaled, and the
/// process exits within the shutdown timeout.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_completes_the_running_record() -> anyhow::Result<()> {
    let env = Env::load()?;
    let long = manual_policy("long", "app=repeater").duration("5m");
    let setup = Setup {
        dry_run: true,
        receivers: &["hook"],
        ..Setup::policy("long.yaml", &long)
    };
    let mut serve = Serve::start(&env, setup).await?;
    let id = serve.run_now("long").await?;
    poll(Duration::from_secs(20), "experiment observing", || async {
        let p = serve.get("/api/v1/policies").await?;
        Ok(p["policies"][0]["running"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
            .then_some(()))
    })
    .await?;
    // Well into the observation: two more health reads (every 2 s) after it began.
    let reads = || async {
        Ok::<_, anyhow::Error>(metric_value(
            &serve.metrics().await?,
            "havoc_health_checks_total{source=\"alertmanager\",result=\"ok\"}",
        ))
    };
    let began = reads().await?;
    poll(
        Duration::from_secs(20),
        "two health reads while holding",
        || async { Ok((reads().await? >= began + 2.0).then_some(())) },
    )
    .await?;
    let (code, took) = serve.stop().await?;
    ensure!(code == Some(0), "exit {code:?}\n{}", tail(&serve.log(), 20));
    ensure!(took < Duration::from_secs(10), "shutdown took {took:?}");
    let journal = serve.journal()?;
    let r = journal
        .iter()
        .find(|r| r["id"] == id.as_str())
        .with_context(|| format!("{id} not in the journal: {journal:#?}"))?;
    ensure_verdict(r, "errored", "interrupted by shutdown")?;
    ensure!(r["endedAt"].is_string() && r["injectedAt"].is_string());
    ensure!(r["reasonCode"] == "interrupted", "{r:#}");
    // A routine restart pages nobody: an interrupted run is not a failure notification
    // (the process has exited: anything it sent has arrived).
    let (slack, hooks) = serve.notifications(&env, &id).await?;
    ensure!(
        slack.is_empty() && hooks.is_empty(),
        "notifications for the interrupted run: {} Slack, {} webhooks",
        slack.len(),
        hooks.len()
    );
    Ok(())
}

/// A broken policy file is reported and the last good policies keep running; the fixed
/// file is picked up. Mutating endpoints need the token. A namespace labelled
/// `havoc.dev/paused=true` is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn reload_keeps_the_last_good_policies_and_the_api_needs_the_token() -> anyhow::Result<()> {
    let env = Env::load()?;
    let good = manual_policy("reloadable", "app=repeater")
        .duration("1s")
        .yaml();
    let serve = Serve::start(
        &env,
        Setup {
            dry_run: true,
            policies: vec![("reload.yaml", good.clone())],
            ..Setup::default()
        },
    )
    .await?;
    let names = |v: &Value| -> Vec<String> {
        v["policies"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    ensure!(names(&serve.get("/api/v1/policies").await?) == ["reloadable"]);

    // A broken edit: rejected, the old policy keeps running.
    let path = serve.policies_dir().join("reload.yaml");
    let broken = good.replace("kind: \"Pod\"", "kind: \"Pdo\"");
    let (line, col) = position_of(&broken, "\"Pdo\"").context("the broken value")?;
    std::fs::write(&path, &broken)?;
    poll(Duration::from_secs(15), "reload rejected", || async {
        Ok(serve.log().contains("policy reload rejected").then_some(()))
    })
    .await?;
    ensure!(
        serve.log().contains(&format!("reload.yaml:{line}:{col}")),
        "the log names file, line and column:\n{}",
        tail(&serve.log(), 10)
    );
    ensure!(names(&serve.get("/api/v1/policies").await?) == ["reloadable"]);
    // A good edit (a ConfigMap swap: a new file replaces the old one) is applied.
    std::fs::remove_file(&path)?;
    std::fs::write(
        serve.policies_dir().join("renamed.yaml"),
        good.replace("name: \"reloadable\"", "name: \"renamed\""),
    )?;
    poll(Duration::from_secs(15), "reload applied", || async {
        Ok((names(&serve.get("/api/v1/policies").await?) == ["renamed"]).then_some(()))
    })
    .await?;

    // Mutating endpoints: no token, wrong token -> 401; right token -> 202.
    let (s, _) = serve.post("/api/v1/pause", None, json!({})).await?;
    ensure!(s == 401, "no token: {s}");
    let (s, _) = serve
        .post("/api/v1/policies/renamed/run", Some("wrong"), json!({}))
        .await?;
    ensure!(s == 401, "wrong token: {s}");
    let (s, body) = serve.pause("e2e").await?;
    ensure!(s == 200 && body["all"]["reason"] == "e2e", "{s} {body}");
    let (s, body) = serve.ask_run("renamed").await?;
    ensure!(
        s == 409
            && body["reason"]
                .as_str()
                .is_some_and(|r| r.contains("paused")),
        "{s} {body}"
    );
    let (s, _) = serve.resume().await?;
    ensure!(s == 200);

    // A paused namespace: nothing is chosen there.
    let nss: Api<Namespace> = Api::all(env.client().await?);
    let label =
        |v: Option<&str>| Patch::Merge(json!({"metadata": {"labels": {"havoc.dev/paused": v}}}));
    nss.patch(NS, &PatchParams::default(), &label(Some("true")))
        .await?;
    // Runs until one sees the label (havoc's namespace watch delivers it within
    // moments); from then on every run is skipped for it.
    let result = serve
        .run_until(
            "renamed",
            Duration::from_secs(30),
            "a run skipped in the paused namespace",
            |r| {
                r["verdict"] == "skipped"
                    && r["reason"]
                        .as_str()
                        .is_some_and(|s| s.contains("paused namespaces"))
            },
        )
        .await;
    nss.patch(NS, &PatchParams::default(), &label(None)).await?;
    result.map(drop)
}
