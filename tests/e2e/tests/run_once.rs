//! `havoc run POLICY --config F --once` against the local cluster: the whole experiment
//! lifecycle for pod faults, judged by the real Alertmanager, reported to the sink.
//! Needs `target/debug/havoc` (tests/run builds it) and `deploy/local/up`.

use std::path::Path;

use anyhow::{Context as _, ensure};
use havoc_e2e::{
    fixtures,
    serve::{WEBHOOK_SECRET, sink_receivers, verify_signature},
    *,
};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt, api::ListParams};
use serde_json::{Value, json};

const NS: &str = "go-demo-8";

fn config(env: &Env, dry_run: bool, hook: &str, secret_file: &Path) -> anyhow::Result<String> {
    Ok(fixtures::config()
        .set("/dryRun", json!(dry_run))
        // The floor is 0 here; the policies that must spare the db raise it.
        .set("/limits/minAvailableReplicas", json!(0))
        .set(
            "/health",
            json!({
                "interval": "2s",
                "prometheus": {"url": env.prometheus()?},
                "alertmanager": {
                    "url": env.alertmanager()?,
                    "matchers": ["severity=~\"critical|warning\""],
                },
            }),
        )
        .set("/receivers", sink_receivers(env, hook, secret_file)?)
        .set("/notify", json!({"receivers": ["chat", "hook"]}))
        // Its own shared state (pauses, circuit breakers) per test: a deviation of an
        // earlier run must not pause this one.
        .set("/leaderElection/lease", json!(hook))
        .yaml())
}

fn policy(name: &str, app: &str, min_available: Option<u32>, duration: &str) -> String {
    let p = fixtures::policy(name)
        .on_rollout(json!({"namespaces": [NS]}))
        .pods(NS, &format!("app={app}"))
        .duration(duration)
        .settle("4s");
    match min_available {
        Some(m) => p.min_available(m),
        None => p,
    }
    .yaml()
}

struct Run {
    code: Option<i32>,
    record: Value,
    stderr: String,
}

impl Run {
    /// The run exited with `code`.
    fn exited(&self, code: i32) -> anyhow::Result<()> {
        ensure!(
            self.code == Some(code),
            "exit {:?}, record {:#}\n{}",
            self.code,
            self.record,
            self.stderr
        );
        Ok(())
    }
}

/// `havoc run POLICY --once` with a fresh directory of [`setup`]'s.
async fn havoc_run(env: &Env, dry_run: bool, hook: &str, policy: &str) -> anyhow::Result<Run> {
    let dir = setup(env, dry_run, hook)?;
    let out = run::once(env, dir.path(), policy)?
        .env("HAVOC_TEST_SLACK_TOKEN", env.slack_token()?)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let record: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("record on stdout; stderr:\n{stderr}"))?;
    Ok(Run {
        code: out.status.code(),
        record,
        stderr,
    })
}

fn setup(env: &Env, dry_run: bool, hook: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("webhook-secret");
    std::fs::write(&secret, format!("{WEBHOOK_SECRET}\n"))?;
    let policies = [
        (
            "db-kill.yaml",
            policy("db-kill", "go-demo-8-db", Some(0), "40s"),
        ),
        (
            "db-guarded.yaml",
            policy("db-guarded", "go-demo-8-db", Some(1), "40s"),
        ),
        ("front.yaml", policy("front", "go-demo-8", None, "25s")),
    ];
    run::write_dir(dir.path(), &config(env, dry_run, hook, &secret)?, &policies)?;
    Ok(dir)
}

fn hook_name() -> String {
    format!("run-once-{:08x}", rand::random::<u32>())
}

async fn sink_for(env: &Env, hook: &str, id: &str) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let all = sink_received(env).await?;
    let slack = all
        .iter()
        .filter(|r| r["kind"] == "slack" && r["body"].as_str().is_some_and(|b| b.contains(id)))
        .cloned()
        .collect();
    let hooks = all
        .iter()
        .filter(|r| r["kind"] == "webhook" && r["name"] == hook)
        .cloned()
        .collect();
    Ok((slack, hooks))
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_single_db_pod_deviates_and_notifies_once() -> anyhow::Result<()> {
    let env = Env::load()?;
    demo_healthy(&env).await?;
    let hook = hook_name();
    let run = havoc_run(&env, false, &hook, "db-kill").await?;
    let r = &run.record;
    run.exited(1)?;
    ensure!(r["verdict"] == "deviated", "{r:#}");
    ensure!(r["dryRun"] == false);
    ensure!(r["trigger"]["kind"] == "manual");
    ensure!(
        r["targets"][0]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("go-demo-8-db-")),
        "{r:#}"
    );
    let alerts = alert_names(r);
    ensure!(
        alerts.contains(&"KubeDeploymentUnavailable"),
        "attributed alerts: {alerts:?}"
    );
    ensure!(r["injectedAt"].is_string() && r["endedAt"].is_string());

    let id = r["id"].as_str().context("id")?;
    let (slack, hooks) = sink_for(&env, &hook, id).await?;
    ensure!(
        slack.len() == 1,
        "one Slack message for {id}, got {}",
        slack.len()
    );
    ensure!(
        slack[0]["body"]
            .as_str()
            .is_some_and(|b| b.contains("KubeDeploymentUnavailable"))
    );
    ensure!(hooks.len() == 1, "one webhook, got {}", hooks.len());
    let body = hooks[0]["body"].as_str().context("webhook body")?;
    let sent: Value = serde_json::from_str(body)?;
    ensure!(sent["id"] == id, "the webhook body is the record");
    verify_signature(&hooks[0])?;
    demo_healthy(&env).await
}

#[tokio::test(flavor = "multi_thread")]
async fn default_min_available_never_takes_the_single_db_pod() -> anyhow::Result<()> {
    let env = Env::load()?;
    demo_healthy(&env).await?;
    let run = havoc_run(&env, false, &hook_name(), "db-guarded").await?;
    run.exited(2)?;
    ensure_verdict(&run.record, "skipped", "minAvailableReplicas")?;
    ensure!(run.record["targets"].as_array().is_some_and(Vec::is_empty));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_survivable_delete_passes_silently_and_dry_run_deletes_nothing() -> anyhow::Result<()> {
    let env = Env::load()?;
    let client = env.client().await?;
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let front_pods = || async {
        let pods = pods
            .list(&ListParams::default().labels("app=go-demo-8"))
            .await?;
        anyhow::Ok(pods.iter().map(|p| p.name_any()).collect::<Vec<_>>())
    };

    // dry run: the full lifecycle, recorded, but no pod deleted
    demo_healthy(&env).await?;
    let hook = hook_name();
    let before = front_pods().await?;
    let run = havoc_run(&env, true, &hook, "front").await?;
    run.exited(0)?;
    ensure!(
        run.record["dryRun"] == true && run.record["verdict"] == "passed",
        "{:#}",
        run.record
    );
    ensure!(run.record["targets"][0]["outcome"] == "dryRun");
    let after = front_pods().await?;
    ensure!(
        before == after,
        "dry run deleted pods: {before:?} -> {after:?}"
    );

    // for real: one of two replicas goes, the system holds, nobody is told
    let run = havoc_run(&env, false, &hook, "front").await?;
    run.exited(0)?;
    ensure!(
        run.record["verdict"] == "passed" && run.record["targets"][0]["outcome"] == "injected",
        "{:#}",
        run.record
    );
    let id = run.record["id"].as_str().context("id")?;
    let (slack, hooks) = sink_for(&env, &hook, id).await?;
    ensure!(
        slack.is_empty() && hooks.is_empty(),
        "a passed experiment must not notify"
    );
    demo_healthy(&env).await
}
