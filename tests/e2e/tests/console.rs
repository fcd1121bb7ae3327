//! The console in a real browser against a real `havoc serve` on the local cluster
//! (tests/console/test_console.py: Playwright from PyPI driving Debian's chromium).
//!
//! Rust starts the service, because the e2e support crate already knows how (its own
//! port, config, policies and journal; a namespace of its own, deleted afterwards), and
//! checks the cluster before and after; Python drives the browser, because Playwright's
//! Python package comes from PyPI and brings its driver without a browser download.
//!
//! The story: a live `scale` policy in the test's namespace runs once to completion (the
//! timeline must show it), then a second run holds `web` at 0 replicas for 5 minutes; the
//! browser logs in, presses the emergency stop, and the API server must show the
//! replicas back. Needs `target/debug/havoc`, `deploy/local/up` and
//! `deploy/local/install-deps` (chromium, playwright, axe-core).

use std::{process::Stdio, time::Duration};

use anyhow::{Context as _, ensure};
use havoc_e2e::{
    fixtures::{self, target},
    serve::*,
    workloads::*,
    *,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::json;

/// How long the browser test may take (it takes about a minute).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_stops_and_resumes_in_a_browser() -> anyhow::Result<()> {
    with_namespace("console", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 2).await?;
        monitoring_settled(&env, &ns, 1).await?;
        // No alert counts against these experiments: the hold must last until the browser
        // stops it, not end early because scaling to 0 fires an availability alert.
        let policy = |name: &str, replicas: u32, hold: &str| {
            let scale = json!({"scale": {"replicas": replicas}});
            fixtures::manual(name, &ns, target("Deployment", &ns, "app=web"), scale, hold)
                .alert_matchers(&["alertname=\"HavocConsoleE2ENeverFires\""])
                .yaml()
        };
        let policies = vec![
            ("quick.yaml", policy("quick", 1, "1s")),
            ("hold.yaml", policy("hold", 0, "5m")),
        ];
        let serve = Serve::start(&env, Setup::live_in(&ns, policies)).await?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);

        let done = serve.run_now("quick").await?;
        let r = serve.record(&done, Duration::from_secs(60)).await?;
        ensure!(r["verdict"] == "passed", "{r:#}");
        let held = serve.run_now("hold").await?;
        poll(Duration::from_secs(30), "web held at 0", || async {
            let d = api.get("web").await?;
            Ok((replicas(&d) == 0 && has_record(&d)).then_some(()))
        })
        .await?;

        let bin_dir = env.get("HAVOC_BIN_DIR")?;
        let mut browser = tokio::process::Command::new("python3");
        browser
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-s"])
            .arg(repo_root().join("tests/console"))
            .current_dir(repo_root())
            .env("HAVOC_CONSOLE_URL", serve.url("/"))
            .env("HAVOC_CONSOLE_TOKEN", TOKEN)
            .env("HAVOC_E2E_NS", &ns)
            .env("HAVOC_DONE_ID", &done)
            .env("HAVOC_HELD_ID", &held)
            .env("KUBECONFIG", env.get("KUBECONFIG")?)
            .env("HAVOC_KUBECTL", format!("{bin_dir}/kubectl"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let status = tokio::time::timeout(BROWSER_TIMEOUT, browser.status())
            .await
            .context("the browser test did not finish in time")??;
        ensure!(
            status.success(),
            "the browser test failed ({status}); havoc's log:\n{}",
            tail(&serve.log(), 40)
        );

        // What the browser saw, checked again from here: restored, record gone, the held
        // experiment ended as stopped, and chaos resumed.
        let d = api.get("web").await?;
        ensure!(replicas(&d) == 2 && !has_record(&d), "web restored");
        let r = serve.record(&held, Duration::from_secs(30)).await?;
        ensure!(r["reasonCode"] == "stopped", "{r:#}");
        ensure!(r["targets"][0]["revert"]["result"] == "restored", "{r:#}");
        let p = serve.get("/api/v1/policies").await?;
        ensure!(p["paused"].is_null(), "resumed: {p:#}");
        Ok(())
    })
    .await
}
