//! End-to-end tests of `havoc-integrations` against the local real Prometheus,
//! Alertmanager and notification sink (`deploy/local/up`). The sink is shared: every test
//! marks what it sends with a random marker and looks only at its own records.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, ensure};
use chrono::{SubsecRound as _, Utc};
use havoc_e2e::{Env, install_crypto_provider, poll, sink_received, wait_sink_received};
use havoc_integrations::{
    Backoff, Error, NotifyError, SecretString, alertmanager, prometheus, retry,
    slack::{Notifier, SlackConfig, SlackMessage},
    webhook,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(5);

/// The support crate's reqwest client (same build) needs a process-wide provider.
fn setup() -> anyhow::Result<Env> {
    install_crypto_provider();
    Env::load()
}

fn marker(what: &str) -> String {
    format!("havoc-e2e-{what}-{:016x}", rand::random::<u64>())
}

fn quick_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        factor: 2.0,
        max_attempts: 5,
    }
}

/// Tells the sink to fail its next `count` Slack/webhook requests (`500`, `ratelimited`
/// with `retry_after`, `invalid_blocks` for messages with blocks) or to delay them
/// (`delay`, `seconds`).
async fn sink_fail(env: &Env, spec: Value) -> anyhow::Result<()> {
    reqwest::Client::new()
        .post(format!("{}/control/fail", env.sink()?))
        .header("content-type", "application/json")
        .body(spec.to_string())
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Records of the sink whose raw body contains `marker`, in arrival order.
async fn records_with(env: &Env, marker: &str) -> anyhow::Result<Vec<Value>> {
    Ok(sink_received(env)
        .await?
        .into_iter()
        .filter(|r| r["body"].as_str().is_some_and(|b| b.contains(marker)))
        .collect())
}

fn slack(env: &Env, token: &str, channel: &str) -> anyhow::Result<Notifier> {
    let mut config = SlackConfig::new(SecretString::new(token), channel);
    config.api_url = format!("{}/api", env.sink()?);
    config.timeout = TIMEOUT;
    Ok(Notifier::new(config)?)
}

/// A notifier to `#chaos` at the sink, with the sink's token.
fn chaos(env: &Env) -> anyhow::Result<Notifier> {
    slack(env, env.slack_token()?, "#chaos")
}

/// The outcome of each of the sink's records.
fn outcomes(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or("?"))
        .collect()
}

/// The sink's URL for webhooks named `name`.
fn hook_url(env: &Env, name: &str) -> anyhow::Result<String> {
    Ok(format!("{}/webhook/{name}", env.sink()?))
}

fn message(marker: &str) -> SlackMessage {
    SlackMessage {
        text: format!("havoc: experiment deviated ({marker})"),
        blocks: vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": "havoc: deviated"}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{marker}*")}}),
        ],
    }
}

// --- Prometheus

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_yields_single_numbers() -> anyhow::Result<()> {
    let env = setup()?;
    let prom = prometheus::Client::new(env.prometheus()?, TIMEOUT)?;
    ensure!(prom.slo_value("vector(1)").await? == Some(1.0));
    ensure!(prom.slo_value("0.25").await? == Some(0.25), "a scalar");
    let nan = prom.slo_value("0/0").await?;
    ensure!(nan.is_some_and(f64::is_nan), "NaN stays NaN, got {nan:?}");
    ensure!(
        prom.slo_value(r#"kube_deployment_spec_replicas{namespace="havoc-no-such-namespace"}"#)
            .await?
            .is_none(),
        "an empty vector is no data"
    );
    // kube-state-metrics: go-demo-8 (2) + go-demo-8-db (1) + repeater (2).
    let replicas = poll(
        Duration::from_secs(60),
        "kube-state-metrics scraped",
        || async {
            Ok(prom
                .slo_value(r#"sum(kube_deployment_spec_replicas{namespace="go-demo-8"})"#)
                .await?
                .filter(|v| *v == 5.0))
        },
    )
    .await?;
    ensure!(replicas == 5.0);
    match prom
        .slo_value(r#"kube_deployment_spec_replicas{namespace="go-demo-8"}"#)
        .await
    {
        Err(Error::Ambiguous(n)) => ensure!(n == 3, "3 deployments, got {n}"),
        other => anyhow::bail!("expected Ambiguous, got {other:?}"),
    }
    let value = prom
        .instant_query(
            r#"kube_deployment_spec_replicas{namespace="go-demo-8",deployment="go-demo-8-db"}"#,
        )
        .await?;
    let prometheus::QueryValue::Vector(samples) = value else {
        anyhow::bail!("expected a vector, got {value:?}");
    };
    ensure!(samples.len() == 1 && samples[0].value == 1.0, "{samples:?}");
    ensure!(samples[0].metric["deployment"] == "go-demo-8-db");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_refuses_invalid_promql() -> anyhow::Result<()> {
    let env = setup()?;
    let prom = prometheus::Client::new(env.prometheus()?, TIMEOUT)?;
    match prom.slo_value("sum(rate(http_requests_total[5m]").await {
        Err(Error::Query {
            error_type,
            message,
        }) => {
            ensure!(error_type == "bad_data", "{error_type}: {message}");
            ensure!(message.contains("parse error"), "{message}");
        }
        other => anyhow::bail!("expected a query error, got {other:?}"),
    }
    match prom.slo_value("http_requests_total[5m]").await {
        Err(e) => ensure!(e.kind() == "not_a_number", "{e}"),
        Ok(v) => anyhow::bail!("a range vector is not a number, got {v:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_sources_are_connect_errors() -> anyhow::Result<()> {
    let prom = prometheus::Client::new("http://127.0.0.1:9", TIMEOUT)?;
    let err = prom
        .slo_value("vector(1)")
        .await
        .expect_err("nothing listens on port 9");
    ensure!(err.kind() == "connect", "{err:?}");
    ensure!(err.to_string().contains("127.0.0.1:9"), "{err}");
    let am = alertmanager::Client::new("http://127.0.0.1:9", TIMEOUT)?;
    let err = am
        .active_alerts(&[])
        .await
        .expect_err("nothing listens on port 9");
    ensure!(err.kind() == "connect", "{err:?}");
    Ok(())
}

// --- Alertmanager

async fn post_alert(env: &Env, labels: &Value, starts: &str, ends: &str) -> anyhow::Result<()> {
    let alert = json!([{
        "labels": labels,
        "annotations": {"summary": "synthetic alert of havoc's end-to-end tests"},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://havoc-e2e.invalid/",
    }]);
    reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", env.alertmanager()?))
        .header("content-type", "application/json")
        .body(alert.to_string())
        .send()
        .await?
        .error_for_status()
        .context("POST /api/v2/alerts")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_reports_a_posted_alert_through_its_filters() -> anyhow::Result<()> {
    let env = setup()?;
    let am = alertmanager::Client::new(env.alertmanager()?, TIMEOUT)?;
    let mark = marker("alert");
    // severity "info": invisible to gates that match critical|warning.
    let labels = json!({"alertname": "HavocE2ETest", "havoc_e2e_marker": mark, "severity": "info"});
    let starts = Utc::now().trunc_subsecs(0);
    let starts_text = starts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ends_text =
        (starts + chrono::Duration::minutes(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    post_alert(&env, &labels, &starts_text, &ends_text).await?;

    let matching = vec![
        r#"alertname="HavocE2ETest""#.to_string(),
        format!(r#"havoc_e2e_marker="{mark}""#),
    ];
    let result = async {
        let found = poll(Duration::from_secs(20), "posted alert active", || async {
            let alerts = am.active_alerts(&matching).await?;
            Ok(alerts
                .into_iter()
                .find(|a| a.labels.get("havoc_e2e_marker") == Some(&mark)))
        })
        .await?;
        ensure!(found.name == "HavocE2ETest");
        ensure!(found.labels["severity"] == "info");
        ensure!(found.starts_at == starts, "{} != {starts}", found.starts_at);
        ensure!(found.state == alertmanager::AlertState::Active);
        ensure!(found.annotations["summary"].contains("synthetic"));
        // The fingerprint is Alertmanager's own.
        let raw = havoc_e2e::active_alerts(&env).await?;
        let raw = raw
            .iter()
            .find(|a| a["labels"]["havoc_e2e_marker"] == mark.as_str())
            .context("raw alert")?;
        ensure!(raw["fingerprint"] == found.fingerprint.as_str(), "{raw}");

        // Alertmanager does the matching: the alertname alone finds it too (among
        // possibly others'), regular expressions work, a non-matching filter does not.
        let by_name = am
            .active_alerts(&[r#"alertname="HavocE2ETest""#.to_string()])
            .await?;
        ensure!(by_name.iter().any(|a| a.fingerprint == found.fingerprint));
        ensure!(by_name.iter().all(|a| a.name == "HavocE2ETest"));
        let by_regex = am
            .active_alerts(&[
                format!(r#"havoc_e2e_marker="{mark}""#),
                r#"severity=~"info|debug""#.to_string(),
            ])
            .await?;
        ensure!(by_regex.len() == 1, "{by_regex:?}");
        for filter in [
            [
                r#"alertname="HavocE2ETest""#.to_string(),
                format!(r#"havoc_e2e_marker="{mark}-other""#),
            ],
            [
                format!(r#"havoc_e2e_marker="{mark}""#),
                r#"severity=~"critical|warning""#.to_string(),
            ],
        ] {
            let none = am.active_alerts(&filter).await?;
            ensure!(none.is_empty(), "{filter:?} matched {none:?}");
        }
        Ok(())
    }
    .await;
    // Resolve it whatever happened, so that it does not linger for others.
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    post_alert(&env, &labels, &starts_text, &now).await?;
    result?;
    poll(Duration::from_secs(20), "posted alert resolved", || async {
        Ok(am.active_alerts(&matching).await?.is_empty().then_some(()))
    })
    .await
}

// --- Slack through the sink

#[tokio::test(flavor = "multi_thread")]
async fn slack_message_is_delivered_with_blocks() -> anyhow::Result<()> {
    let env = setup()?;
    let mark = marker("slack-ok");
    let posted = chaos(&env)?.send(&message(&mark)).await?;
    ensure!(posted.channel.starts_with('C'), "{posted:?}");
    ensure!(!posted.ts.is_empty(), "{posted:?}");
    let got = wait_sink_received(&env, 1, TIMEOUT, |r| {
        r["body"].as_str().is_some_and(|b| b.contains(&mark))
    })
    .await?;
    let r = &got[0];
    ensure!(
        r["method_name"] == "chat.postMessage" && r["outcome"] == "ok",
        "{r}"
    );
    ensure!(r["json"]["channel"] == "#chaos", "{r}");
    ensure!(
        r["json"]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&mark))
    );
    ensure!(r["json"]["blocks"][0]["type"] == "header", "{r}");
    ensure!(
        r["json"]["blocks"][1]["text"]["text"] == format!("*{mark}*"),
        "{r}"
    );
    ensure!(r["response"]["body"]["ts"] == posted.ts.as_str());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_refusals_are_permanent() -> anyhow::Result<()> {
    let env = setup()?;
    let mark = marker("slack-refused");
    let secret_token = "wrong-test-token-never-shown";
    let err = slack(&env, secret_token, "#chaos")?
        .send(&message(&mark))
        .await
        .expect_err("a wrong token is refused");
    ensure!(
        err == NotifyError::Permanent {
            reason: "slack: invalid_auth".into()
        },
        "{err:?}"
    );
    ensure!(!format!("{err} {err:?}").contains(secret_token));
    let err = slack(&env, env.slack_token()?, "")?
        .send(&message(&mark))
        .await
        .expect_err("no channel");
    ensure!(err.reason() == "slack: channel_not_found", "{err:?}");
    ensure!(!err.is_retryable());
    // A retry loop stops at the first permanent failure.
    let notifier = slack(&env, secret_token, "#chaos")?;
    let msg = message(&mark);
    let failure = retry(&quick_backoff(), || notifier.send(&msg))
        .await
        .expect_err("permanent");
    ensure!(failure.attempts == 1, "{failure}");
    ensure!(records_with(&env, &mark).await?.len() == 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_is_retried_through_server_errors_and_delivered_once() -> anyhow::Result<()> {
    let env = setup()?;
    let mark = marker("slack-retry");
    let notifier = chaos(&env)?;
    sink_fail(&env, json!({"mode": "500", "count": 3})).await?;
    let msg = message(&mark);
    let (posted, attempts) = retry(&quick_backoff(), || notifier.send(&msg))
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    ensure!(attempts == 4, "attempts: {attempts}");
    ensure!(!posted.ts.is_empty());
    let records = records_with(&env, &mark).await?;
    let outcomes = outcomes(&records);
    ensure!(
        outcomes == ["injected_500", "injected_500", "injected_500", "ok"],
        "{outcomes:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_rate_limit_is_retryable_with_retry_after() -> anyhow::Result<()> {
    let env = setup()?;
    let mark = marker("slack-ratelimited");
    let notifier = chaos(&env)?;
    sink_fail(&env, json!({"mode": "ratelimited", "count": 1})).await?;
    let err = notifier
        .send(&message(&mark))
        .await
        .expect_err("rate limited");
    ensure!(err.is_retryable(), "{err:?}");
    ensure!(err.retry_after() == Some(Duration::from_secs(1)), "{err:?}");
    // The retry loop waits what Slack asked for (it is within the backoff's max; see
    // a_day_long_retry_after_is_capped for one that is not), then gets through.
    sink_fail(&env, json!({"mode": "ratelimited", "count": 1})).await?;
    let started = std::time::Instant::now();
    let msg = message(&mark);
    let patient = Backoff {
        max: Duration::from_secs(2),
        ..quick_backoff()
    };
    let (_, attempts) = retry(&patient, || notifier.send(&msg))
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    ensure!(attempts == 2, "attempts: {attempts}");
    ensure!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_long_retry_after_is_capped() -> anyhow::Result<()> {
    let env = setup()?;
    let mark = marker("slack-retry-after-day");
    let notifier = chaos(&env)?;
    sink_fail(
        &env,
        json!({"mode": "ratelimited", "count": 1, "retry_after": 86400}),
    )
    .await?;
    let msg = message(&mark);
    let (_, attempts) = tokio::time::timeout(
        Duration::from_secs(30),
        retry(&quick_backoff(), || notifier.send(&msg)),
    )
    .await
    .context("a Retry-After of a day stalled the delivery")?
    .map_err(|f| anyhow::anyhow!("{f}"))?;
    ensure!(attempts == 2, "attempts: {attempts}");
    let records = records_with(&env, &mark).await?;
    ensure!(
        records[0]["response"]["headers"]["Retry-After"] == "86400",
        "{}",
        records[0]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_long_sections_are_cut_and_delivered() -> anyhow::Result<()> {
    let env = setup()?;
    let mark = marker("slack-long");
    let alerts: String = (0..300)
        .map(|i| {
            format!(
                "• *KubePodCrashLooping* since 10:{:02} (pod=go-demo-8-{i})\n",
                i % 60
            )
        })
        .collect();
    let long = SlackMessage {
        text: format!("havoc: nightly deviated ({mark}) {}", "x".repeat(10_000)),
        blocks: vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": format!("havoc: {}", "p".repeat(300))}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{mark}*\n{alerts}")}}),
        ],
    };
    // As it is, the sink refuses it, as Slack would.
    let refused: Value = reqwest::Client::new()
        .post(format!("{}/api/chat.postMessage", env.sink()?))
        .bearer_auth(env.slack_token()?)
        .json(&json!({"channel": "#chaos", "text": long.text, "blocks": long.blocks}))
        .send()
        .await?
        .json()
        .await?;
    ensure!(refused["error"] == "invalid_blocks", "{refused}");

    let posted = chaos(&env)?.send(&long).await?;
    ensure!(!posted.text_only);
    let records = records_with(&env, &mark).await?;
    let r = records.last().context("delivered")?;
    ensure!(r["outcome"] == "ok", "{}", r["response"]);
    let header = r["json"]["blocks"][0]["text"]["text"]
        .as_str()
        .context("header")?;
    let section = r["json"]["blocks"][1]["text"]["text"]
        .as_str()
        .context("section")?;
    let text = r["json"]["text"].as_str().context("text")?;
    ensure!(
        header.chars().count() <= 150 && header.contains("(cut: "),
        "{header}"
    );
    ensure!(
        section.chars().count() <= 3000,
        "{}",
        section.chars().count()
    );
    ensure!(section.starts_with(&format!("*{mark}*\n• *KubePodCrashLooping*")));
    ensure!(section.contains("more characters)"), "{section}");
    ensure!(text.chars().count() <= 4000 && text.contains(&mark));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_refused_blocks_fall_back_to_the_text() -> anyhow::Result<()> {
    let env = setup()?;
    let mark = marker("slack-fallback");
    sink_fail(&env, json!({"mode": "invalid_blocks", "count": 1})).await?;
    let msg = message(&mark);
    let posted = chaos(&env)?.send(&msg).await?;
    ensure!(posted.text_only, "{posted:?}");
    let records = records_with(&env, &mark).await?;
    let outcomes = outcomes(&records);
    ensure!(
        outcomes == ["injected_invalid_blocks", "ok"],
        "{outcomes:?}"
    );
    ensure!(records[1]["json"].get("blocks").is_none(), "{}", records[1]);
    ensure!(records[1]["json"]["text"] == msg.text.as_str());
    ensure!(records[1]["response"]["body"]["ts"] == posted.ts.as_str());
    Ok(())
}

// --- Webhooks through the sink

#[tokio::test(flavor = "multi_thread")]
async fn webhook_is_signed_over_the_exact_body() -> anyhow::Result<()> {
    let env = setup()?;
    let name = marker("hook");
    let secret = SecretString::new("e2e-webhook-secret");
    let hook = webhook::Notifier::new(&hook_url(&env, &name)?, Some(secret.clone()), TIMEOUT)?;
    let body = json!({"verdict": "deviated", "policy": "nightly", "marker": name}).to_string();
    hook.send(body.as_bytes()).await?;
    let got = wait_sink_received(&env, 1, TIMEOUT, |r| r["name"] == name.as_str()).await?;
    let r = &got[0];
    ensure!(r["method"] == "POST" && r["outcome"] == "ok", "{r}");
    ensure!(r["body"] == body.as_str(), "{r}");
    ensure!(r["headers"]["content-type"] == "application/json", "{r}");
    let header = r["headers"]["x-havoc-signature"]
        .as_str()
        .context("signature header")?;
    let stamp = r["headers"]["x-havoc-timestamp"]
        .as_str()
        .context("timestamp header")?;
    ensure!(header.starts_with(&format!("t={stamp},v1=")), "{header}");
    ensure!(
        header.len() == format!("t={stamp},v1=").len() + 64,
        "{header}"
    );
    // Verified as of its arrival at the sink, and by the sink itself.
    let arrived = UNIX_EPOCH + Duration::from_secs_f64(r["time"].as_f64().context("time")?);
    webhook::verify(
        &secret,
        header,
        body.as_bytes(),
        arrived,
        webhook::DEFAULT_TOLERANCE,
    )?;
    ensure!(r["signature"] == "valid", "{r}");
    // Another body, another secret or a timestamp an hour off do not verify.
    ensure!(
        webhook::verify(&secret, header, b"{}", arrived, webhook::DEFAULT_TOLERANCE)
            .is_err_and(|e| e.kind() == "mismatch")
    );
    ensure!(
        webhook::verify(
            &SecretString::new("another-secret"),
            header,
            body.as_bytes(),
            arrived,
            webhook::DEFAULT_TOLERANCE
        )
        .is_err_and(|e| e.kind() == "mismatch")
    );
    ensure!(
        webhook::verify(
            &secret,
            header,
            body.as_bytes(),
            arrived + Duration::from_secs(3600),
            webhook::DEFAULT_TOLERANCE
        )
        .is_err_and(|e| e.kind() == "stale")
    );

    // The same delivery sent again is a replay.
    reqwest::Client::new()
        .post(hook_url(&env, &name)?)
        .header("content-type", "application/json")
        .header(webhook::TIMESTAMP_HEADER, stamp)
        .header(webhook::SIGNATURE_HEADER, header)
        .body(body.clone())
        .send()
        .await?
        .error_for_status()?;
    let got = wait_sink_received(&env, 2, TIMEOUT, |r| r["name"] == name.as_str()).await?;
    ensure!(got[1]["signature"] == "replayed", "{}", got[1]);

    // Unsigned when no secret is configured.
    let unsigned = webhook::Notifier::new(&hook_url(&env, &name)?, None, TIMEOUT)?;
    unsigned.send(b"{\"unsigned\":true}").await?;
    let got = wait_sink_received(&env, 3, TIMEOUT, |r| r["name"] == name.as_str()).await?;
    ensure!(
        got[2]["headers"].get("x-havoc-signature").is_none(),
        "{}",
        got[2]
    );
    ensure!(got[2]["signature"] == "missing", "{}", got[2]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_retries_are_signed_afresh() -> anyhow::Result<()> {
    let env = setup()?;
    let name = marker("hook-resign");
    let secret = SecretString::new("e2e-webhook-secret");
    let hook = webhook::Notifier::from_secret_url(
        &SecretString::new(hook_url(&env, &name)?),
        Some(secret.clone()),
        TIMEOUT,
    )?;
    let body = format!("{{\"marker\":\"{name}\"}}");
    sink_fail(&env, json!({"mode": "500", "count": 1})).await?;
    // 1 s apart at least, so that the second attempt has a later timestamp.
    let backoff = Backoff {
        initial: Duration::from_millis(1100),
        max: Duration::from_secs(2),
        ..quick_backoff()
    };
    let ((), attempts) = retry(&backoff, || hook.send(body.as_bytes()))
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    ensure!(attempts == 2, "attempts: {attempts}");
    let got = wait_sink_received(&env, 2, TIMEOUT, |r| r["name"] == name.as_str()).await?;
    let stamps = got
        .iter()
        .map(|r| {
            r["headers"]["x-havoc-timestamp"]
                .as_str()
                .and_then(|t| t.parse::<u64>().ok())
                .context("timestamp header")
        })
        .collect::<anyhow::Result<Vec<u64>>>()?;
    ensure!(stamps[0] < stamps[1], "timestamps {stamps:?}");
    for r in &got {
        ensure!(r["signature"] == "valid", "{r}");
    }
    ensure!(got[0]["outcome"] == "injected_500" && got[1]["outcome"] == "ok");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_failures_are_classified() -> anyhow::Result<()> {
    let env = setup()?;
    let name = marker("hook-fail");
    let hook = webhook::Notifier::new(&hook_url(&env, &name)?, None, TIMEOUT)?;
    let body = format!("{{\"marker\":\"{name}\"}}");

    sink_fail(&env, json!({"mode": "500", "count": 2})).await?;
    let ((), attempts) = retry(&quick_backoff(), || hook.send(body.as_bytes()))
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    ensure!(attempts == 3, "attempts: {attempts}");

    sink_fail(&env, json!({"mode": "ratelimited", "count": 1})).await?;
    let err = hook.send(body.as_bytes()).await.expect_err("429");
    ensure!(
        err.is_retryable() && err.retry_after() == Some(Duration::from_secs(1)),
        "{err:?}"
    );

    // The sink answers 404 outside /webhook/: permanent.
    let missing =
        webhook::Notifier::new(&format!("{}/nowhere/{name}", env.sink()?), None, TIMEOUT)?;
    let err = missing.send(body.as_bytes()).await.expect_err("404");
    ensure!(
        !err.is_retryable() && err.reason().contains("404"),
        "{err:?}"
    );
    ensure!(
        !err.reason().contains("nowhere"),
        "the URL path is not shown: {err:?}"
    );

    // Nothing listening: retryable.
    let closed = webhook::Notifier::new("http://127.0.0.1:9/hook", None, TIMEOUT)?;
    ensure!(closed.send(b"{}").await.expect_err("closed").is_retryable());

    // An answer slower than the timeout: retryable.
    sink_fail(&env, json!({"mode": "delay", "count": 1, "seconds": 3})).await?;
    let impatient = webhook::Notifier::new(&hook_url(&env, &name)?, None, Duration::from_secs(1))?;
    let err = impatient.send(body.as_bytes()).await.expect_err("timeout");
    ensure!(
        err.is_retryable() && err.reason().contains("timeout"),
        "{err:?}"
    );

    let outcomes: Vec<Value> = sink_received(&env)
        .await?
        .into_iter()
        .filter(|r| r["name"] == name.as_str())
        .map(|r| r["outcome"].clone())
        .collect();
    ensure!(
        outcomes[..4]
            == [
                json!("injected_500"),
                json!("injected_500"),
                json!("ok"),
                json!("injected_ratelimited")
            ],
        "{outcomes:?}"
    );
    Ok(())
}
