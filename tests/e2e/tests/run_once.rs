//! `havoc run POLICY --config F --once` against the local cluster: the whole experiment
//! lifecycle for pod faults, judged by the real Alertmanager, reported to the sink.
//! Needs `target/debug/havoc` (tests/run builds it) and `deploy/local/up`.

use std::{path::Path, process::Stdio};

use anyhow::{Context as _, ensure};
use havoc_e2e::{fixtures, *};
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
        .set(
            "/receivers",
            json!([
                {"name": "chat", "slack": {
                    "channel": "#chaos",
                    "token": {"env": "HAVOC_TEST_SLACK_TOKEN"},
                    "apiUrl": format!("{}/api", env.sink()?),
                }},
                {"name": "hook", "webhook": {
                    "url": format!("{}/webhook/{hook}", env.sink()?),
                    "secret": {"file": secret_file},
                }},
            ]),
        )
        .set("/notify", json!({"receivers": ["chat", "hook"]}))
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

async fn havoc_run(dir: &Path, policy: &str, env: &Env) -> anyhow::Result<Run> {
    let bin = repo_root().join("target/debug/havoc");
    ensure!(
        bin.exists(),
        "{} missing: build it with `cargo build -p havoc`",
        bin.display()
    );
    let out = tokio::process::Command::new(bin)
        .args(["run", policy, "--once", "--config"])
        .arg(dir.join("havoc.yaml"))
        .arg("--policies")
        .arg(dir.join("policies"))
        .arg("--kubeconfig")
        .arg(env.get("KUBECONFIG")?)
        .env("HAVOC_TEST_SLACK_TOKEN", env.slack_token()?)
        .stdin(Stdio::null())
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
    std::fs::write(&secret, "e2e-webhook-secret\n")?;
    std::fs::write(
        dir.path().join("havoc.yaml"),
        config(env, dry_run, hook, &secret)?,
    )?;
    std::fs::create_dir(dir.path().join("policies"))?;
    for (file, text) in [
        (
            "db-kill.yaml",
            policy("db-kill", "go-demo-8-db", Some(0), "40s"),
        ),
        (
            "db-guarded.yaml",
            policy("db-guarded", "go-demo-8-db", Some(1), "40s"),
        ),
        ("front.yaml", policy("front", "go-demo-8", None, "25s")),
    ] {
        std::fs::write(dir.path().join("policies").join(file), text)?;
    }
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
    let dir = setup(&env, false, &hook)?;
    let run = havoc_run(dir.path(), "db-kill", &env).await?;
    let r = &run.record;
    ensure!(
        run.code == Some(1),
        "exit {:?}, record {r:#}\n{}",
        run.code,
        run.stderr
    );
    ensure!(r["verdict"] == "deviated", "{r:#}");
    ensure!(r["dryRun"] == false);
    ensure!(r["trigger"]["kind"] == "manual");
    ensure!(
        r["targets"][0]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("go-demo-8-db-")),
        "{r:#}"
    );
    let alerts: Vec<&str> = r["alerts"]
        .as_array()
        .context("alerts")?
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
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
    let sig = hooks[0]["headers"]["x-havoc-signature"]
        .as_str()
        .context("signature header")?;
    let arrived = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs_f64(hooks[0]["time"].as_f64().context("arrival")?);
    havoc_integrations::webhook::verify(
        &"e2e-webhook-secret".to_string().into(),
        sig,
        body.as_bytes(),
        arrived,
        havoc_integrations::webhook::DEFAULT_TOLERANCE,
    )?;
    ensure!(
        hooks[0]["signature"] == "valid",
        "sink says {}",
        hooks[0]["signature"]
    );
    demo_healthy(&env).await
}

#[tokio::test(flavor = "multi_thread")]
async fn default_min_available_never_takes_the_single_db_pod() -> anyhow::Result<()> {
    let env = Env::load()?;
    demo_healthy(&env).await?;
    let hook = hook_name();
    let dir = setup(&env, false, &hook)?;
    let run = havoc_run(dir.path(), "db-guarded", &env).await?;
    ensure!(run.code == Some(2), "exit {:?}: {:#}", run.code, run.record);
    ensure!(run.record["verdict"] == "skipped");
    ensure!(
        run.record["reason"]
            .as_str()
            .is_some_and(|s| s.contains("minAvailableReplicas")),
        "{:#}",
        run.record
    );
    ensure!(run.record["targets"].as_array().is_some_and(Vec::is_empty));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_survivable_delete_passes_silently_and_dry_run_deletes_nothing() -> anyhow::Result<()> {
    let env = Env::load()?;
    let client = env.client().await?;
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let names = |l: Vec<Pod>| l.iter().map(|p| p.name_any()).collect::<Vec<_>>();

    // dry run: the full lifecycle, recorded, but no pod deleted
    demo_healthy(&env).await?;
    let hook = hook_name();
    let dir = setup(&env, true, &hook)?;
    let before = names(
        pods.list(&ListParams::default().labels("app=go-demo-8"))
            .await?
            .items,
    );
    let run = havoc_run(dir.path(), "front", &env).await?;
    ensure!(
        run.code == Some(0),
        "exit {:?}: {:#}\n{}",
        run.code,
        run.record,
        run.stderr
    );
    ensure!(
        run.record["dryRun"] == true && run.record["verdict"] == "passed",
        "{:#}",
        run.record
    );
    ensure!(run.record["targets"][0]["outcome"] == "dryRun");
    let after = names(
        pods.list(&ListParams::default().labels("app=go-demo-8"))
            .await?
            .items,
    );
    ensure!(
        before == after,
        "dry run deleted pods: {before:?} -> {after:?}"
    );

    // for real: one of two replicas goes, the system holds, nobody is told
    let dir = setup(&env, false, &hook)?;
    let run = havoc_run(dir.path(), "front", &env).await?;
    ensure!(
        run.code == Some(0),
        "exit {:?}: {:#}\n{}",
        run.code,
        run.record,
        run.stderr
    );
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
