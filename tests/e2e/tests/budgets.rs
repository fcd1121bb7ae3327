//! Budgets against the real local cluster and Prometheus: error budgets read from the
//! Sloth-shaped recording rules of `deploy/local/monitoring/slo.rules.yaml` (a capacity
//! SLI of every Deployment, from kube-state-metrics), and namespace chaos budgets counted
//! from the history in the cluster, across a restart and on another replica.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use havoc_e2e::{
    fixtures::{manual, target},
    serve::*,
    workloads::*,
    *,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{Value, json};

/// The value of a Sloth recording rule for the Deployment `deployment` of `ns`.
async fn sloth(env: &Env, rule: &str, ns: &str, deployment: &str) -> anyhow::Result<Option<f64>> {
    let results = prometheus_query(
        env,
        &format!(r#"{rule}{{sloth_service="{ns}",sloth_slo="{deployment}"}}"#),
    )
    .await?;
    Ok(results
        .first()
        .and_then(|r| r["value"][1].as_str())
        .and_then(|v| v.parse().ok()))
}

/// Waits until Prometheus judges the Deployment's SLO (it is 30 s old) and its budget is
/// whole.
async fn budget_whole(env: &Env, ns: &str, deployment: &str) -> anyhow::Result<()> {
    poll(
        Duration::from_secs(120),
        "the Sloth rules judge the Deployment",
        || async {
            let left = sloth(
                env,
                "slo:period_error_budget_remaining:ratio",
                ns,
                deployment,
            )
            .await?;
            let burn = sloth(env, "slo:current_burn_rate:ratio", ns, deployment).await?;
            Ok((left == Some(1.0) && burn == Some(0.0)).then_some(()))
        },
    )
    .await
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// A held scale fault makes the capacity SLI burn its budget: the burn rate rises above
/// the policy's limit and havoc reverts long before the hold ends, with the burn rates in
/// the record; the budget it spent then keeps the next experiment from starting
/// (`budgetExhausted`, with the value); a budget nobody records skips
/// (`budgetUnreadable`).
#[tokio::test(flavor = "multi_thread")]
async fn error_budgets_gate_abort_and_judge_by_the_burn_rate() -> anyhow::Result<()> {
    with_namespace("budget", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 3).await?;
        monitoring_settled(&env, &ns, 1).await?;
        budget_whole(&env, &ns, "web").await?;
        let scale = manual(
            "web-scale",
            &ns,
            target("Deployment", &ns, "app=web"),
            json!({"scale": {"replicas": 1}}),
            "120s",
        )
        .alerts_from(&ns)
        // The deviation must not pause the policy: the next run shows the spent budget.
        .on_deviation("continue")
        .set("/health/budgets", json!([{"name": "web"}]));
        let unknown = manual(
            "nobody-records",
            &ns,
            target("Deployment", &ns, "app=web"),
            json!({"scale": {"replicas": 2}}),
            "5s",
        )
        .alerts_from(&ns)
        .set(
            "/health/budgets",
            json!([{"name": "ghost", "sloth": {"service": "no-such-service", "slo": "web"}}]),
        );
        let serve = Serve::start(
            &env,
            Setup {
                overrides: vec![(
                    "/health/budgets",
                    json!([{
                        "name": "web",
                        "sloth": {"service": ns, "slo": "web"},
                        "minRemaining": 0.5,
                        "maxBurnRate": 3,
                        "burnRateAfter": 100,
                    }]),
                )],
                ..Setup::live_in(
                    &ns,
                    vec![
                        ("scale.yaml", scale.yaml()),
                        ("unknown.yaml", unknown.yaml()),
                    ],
                )
            },
        )
        .await?;

        // 1. The burn-rate abort.
        let id = serve.run_now("web-scale").await?;
        let r = serve.record(&id, Duration::from_secs(150)).await?;
        ensure!(r["verdict"] == "deviated", "{r:#}");
        let reason = r["reason"].as_str().unwrap_or_default();
        ensure!(
            reason.contains("error budget web burned at") && reason.contains("limit 3"),
            "{r:#}"
        );
        let injected: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(r["injectedAt"].clone()).context("injectedAt")?;
        let reverted: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(r["revertedAt"].clone()).context("revertedAt")?;
        let held = (reverted - injected).num_seconds();
        ensure!(held < 90, "held {held} s of 120: not reverted early");
        let b = &r["budgets"][0];
        ensure!(b["source"] == format!("sloth {ns}/web"), "{b:#}");
        ensure!(number(&b["remaining"]) >= 0.5, "{b:#}");
        ensure!(number(&b["burnRateBefore"]) <= 3.0, "{b:#}");
        ensure!(number(&b["burnRateDuring"]) > 3.0, "{b:#}");
        ensure!(b["burnRateAfter"].is_number(), "{b:#}");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        ensure!(
            replicas(&deployments.get("web").await?) == 3,
            "not restored"
        );
        eprintln!(
            "burn-rate abort: held {held} s of 120 s; burn rate before {} during {} after {}",
            b["burnRateBefore"], b["burnRateDuring"], b["burnRateAfter"]
        );

        // 2. The budget it spent closes the gate, with the value.
        poll(Duration::from_secs(60), "the budget below 0.5", || async {
            let left = sloth(&env, "slo:period_error_budget_remaining:ratio", &ns, "web").await?;
            Ok(left.filter(|l| *l < 0.5))
        })
        .await?;
        let id = serve.run_now("web-scale").await?;
        let r = serve.record(&id, Duration::from_secs(30)).await?;
        ensure!(
            r["verdict"] == "skipped" && r["reasonCode"] == "budgetExhausted",
            "{r:#}"
        );
        ensure!(
            r["reason"].as_str().is_some_and(|s| s
                .contains(&format!("error budget web (sloth {ns}/web)"))
                && s.contains("remaining, the policy needs 0.5")),
            "{r:#}"
        );
        ensure!(number(&r["budgets"][0]["remaining"]) < 0.5, "{r:#}");
        eprintln!("budget gate: {}", r["reason"]);
        ensure!(
            replicas(&deployments.get("web").await?) == 3,
            "changed while skipped"
        );

        // 3. A budget nobody records is unreadable: fail closed.
        let id = serve.run_now("nobody-records").await?;
        let r = serve.record(&id, Duration::from_secs(30)).await?;
        ensure!(
            r["verdict"] == "skipped" && r["reasonCode"] == "budgetUnreadable",
            "{r:#}"
        );
        ensure!(
            r["reason"].as_str().is_some_and(|s| s.contains("no data")),
            "{r:#}"
        );

        // The API shows the budget with its last reading.
        let budgets = serve.get("/api/v1/budgets").await?;
        let web = &budgets["errorBudgets"][0];
        ensure!(
            web["name"] == "web" && web["reading"].is_string(),
            "{budgets:#}"
        );
        Ok(())
    })
    .await
}

/// With 25 s of fault time a day, the third 10 s experiment in the namespace does not
/// fit (10 + 10 spent): skipped, also after a restart, and on the other replica once it
/// leads; the API shows the same spend on both. (The issue's example, a 2-minute budget
/// and 60 s experiments, scaled down by six to keep the suite short.)
#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_budget_holds_across_restarts_and_replicas() -> anyhow::Result<()> {
    with_namespace("nsbudget", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 3).await?;
        monitoring_settled(&env, &ns, 1).await?;
        let policy = manual(
            "web-scale",
            &ns,
            target("Deployment", &ns, "app=web"),
            json!({"scale": {"replicas": 2}}),
            "10s",
        )
        .alerts_from(&ns);
        let lease = format!("havoc-e2e-{ns}");
        let setup = || Setup {
            lease: Some(lease.clone()),
            wait_leader: false,
            ..Setup::live_in(&ns, vec![("p.yaml", policy.yaml())])
                .limits(json!({"namespaceBudget": {"faultTime": "25s", "per": "24h"}}))
        };
        let mut first = Serve::start(
            &env,
            Setup {
                wait_leader: true,
                ..setup()
            },
        )
        .await?;
        for n in 1..=2 {
            let id = first.run_now("web-scale").await?;
            let r = first.record(&id, Duration::from_secs(60)).await?;
            ensure!(r["verdict"] == "passed", "experiment {n}: {r:#}");
        }
        let spent = |v: &Value| {
            v["namespaceBudget"]["namespaces"]
                .as_array()
                .and_then(|a| a.iter().find(|n| n["namespace"] == ns.as_str()).cloned())
                .unwrap_or_default()
        };
        // Two holds of 10 s, plus the milliseconds of their injections and reverts.
        let on_first = spent(&first.get("/api/v1/budgets").await?);
        let used = on_first["spentSeconds"].as_u64().unwrap_or_default();
        ensure!(
            (20..=21).contains(&used)
                && on_first["leftSeconds"].as_u64() == Some(25 - used)
                && on_first["budgetSeconds"] == 25,
            "{on_first:#}"
        );
        let left = format!("namespace {ns} has {}s", 25 - used);
        let skipped = |r: &Value| {
            r["verdict"] == "skipped"
                && r["reasonCode"] == "namespaceBudgetSpent"
                && r["reason"].as_str().is_some_and(|s| s.contains(&left))
        };
        let id = first.run_now("web-scale").await?;
        let r = first.record(&id, Duration::from_secs(30)).await?;
        ensure!(skipped(&r), "third: {r:#}");

        // A restart (the same pod, an empty memory) reads the spend from the cluster.
        first.stop().await?;
        first.respawn()?;
        first.wait_ready(true).await?;
        let id = first.run_now("web-scale").await?;
        let r = first.record(&id, Duration::from_secs(30)).await?;
        ensure!(skipped(&r), "after the restart: {r:#}");

        // Another replica sees the same, and refuses the same once it leads.
        let mut second = Serve::start(&env, setup()).await?;
        second.wait_ready(false).await?;
        let on_second = spent(&second.get("/api/v1/budgets").await?);
        ensure!(on_second == on_first, "{on_second:#} vs {on_first:#}");
        first.stop().await?;
        second.wait_ready(true).await?;
        let id = second.run_now("web-scale").await?;
        let r = second.record(&id, Duration::from_secs(30)).await?;
        ensure!(skipped(&r), "on the other replica: {r:#}");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        ensure!(
            replicas(&deployments.get("web").await?) == 3,
            "changed while skipped"
        );
        Ok(())
    })
    .await
}
