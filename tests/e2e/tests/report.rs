//! Reports and Grafana annotations against the local cluster (issue 25). A `havoc serve`
//! in the test's own namespace runs experiments that pass, deviate, are skipped and
//! error (plus a dry run); then every report format is produced from the service's
//! history (`GET /api/v1/report`) and from its journal (`havoc report --journal`) and
//! checked with the tools a reader would use: `pdftotext`, headless Chromium (a
//! screenshot under `target/`), `xmllint` against a JUnit schema. A fake Grafana
//! (Grafana cannot run here) receives a region per live experiment; with Grafana down
//! the experiments still pass and the failures are counted.
//!
//! Needs `target/debug/havoc`, `deploy/local/up`, and poppler-utils, libxml2-utils and
//! chromium (deploy/local/install-deps).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, ensure};
use havoc_e2e::{
    fixtures::{self, target},
    grafana::FakeGrafana,
    serve::*,
    workloads::{deployment, monitoring_settled, wait_replicas},
    *,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-grafana-token";
const CLUSTER: &str = "e2e-report";

/// A manual policy on `target` in `ns`, alerts counted only from `ns`.
fn manual(name: &str, ns: &str, target: Value, fault: Value, hold: &str) -> fixtures::PolicyDoc {
    fixtures::manual(name, ns, target, fault, hold)
        .settle("2s")
        .alerts_from(ns)
        .on_deviation("continue")
        .set("/health/slos", json!([]))
}

/// The file (in `dir`) that holds the fake Grafana's token.
fn grafana_token(dir: &Path) -> anyhow::Result<PathBuf> {
    let token = dir.join("grafana-token");
    std::fs::write(&token, format!("{TOKEN}\n"))?;
    Ok(token)
}

/// The service: live in `ns`, annotating `grafana`, with an SLO on the db's replicas.
async fn start(env: &Env, ns: &str, grafana: &str, dir: &Path) -> anyhow::Result<Serve> {
    let token = grafana_token(dir)?;
    let pods = |sel: &str| target("Pod", ns, sel);
    let db = target("Deployment", ns, "app=db");
    let web = target("Deployment", ns, "app=web");
    let policies = vec![
        (
            "pass.yaml",
            manual(
                "web-kill",
                ns,
                pods("app=web"),
                json!({"podDelete": {"gracePeriod": "0s"}}),
                "1s",
            )
            .alerts_from(ns)
            .yaml(),
        ),
        (
            "skip.yaml",
            manual(
                "nobody-kill",
                ns,
                pods("app=nobody"),
                json!({"podDelete": {}}),
                "1s",
            )
            .alerts_from(ns)
            .yaml(),
        ),
        (
            "deviate.yaml",
            manual("db-down", ns, db, json!({"scale": {"replicas": 0}}), "60s")
                .set("/health/slos", json!(["db-replicas"]))
                .alerts_from(ns)
                .yaml(),
        ),
        (
            "stop.yaml",
            manual(
                "web-shrink",
                ns,
                web,
                json!({"scale": {"replicas": 1}}),
                "120s",
            )
            .alerts_from(ns)
            .yaml(),
        ),
        (
            "dry.yaml",
            manual(
                "web-kill-dry",
                ns,
                pods("app=web"),
                json!({"podDelete": {}}),
                "1s",
            )
            .set("/dryRun", json!(true))
            .alerts_from(ns)
            .yaml(),
        ),
    ];
    Serve::start(
        env,
        Setup {
            dry_run: true,
            extra: json!({
                "liveNamespaces": [ns],
                "clusterName": CLUSTER,
                "grafana": {"url": grafana, "token": {"file": token}, "dashboardUID": "havoc"},
            }),
            overrides: vec![(
                "/health/slos",
                json!([{
                    "name": "db-replicas",
                    "query": format!("sum(kube_deployment_spec_replicas{{namespace=\"{ns}\",deployment=\"db\"}})"),
                    "objective": ">= 1",
                }]),
            )],
            receivers: &[],
            policies,
            ..Setup::default()
        },
    )
    .await
}

/// Runs a policy now and waits for its record.
async fn run(serve: &Serve, policy: &str) -> anyhow::Result<Value> {
    let id = serve.run_now(policy).await?;
    serve.record(&id, Duration::from_secs(120)).await
}

fn tool(program: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("{program} missing: deploy/local/install-deps installs it"))?;
    ensure!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// Every experiment's id and verdict appears in `text`.
fn names_all(what: &str, text: &str, records: &[Value]) -> anyhow::Result<()> {
    for r in records {
        let id = r["id"].as_str().context("id")?;
        ensure!(text.contains(id), "{what} does not name {id}");
        let verdict = r["verdict"].as_str().context("verdict")?;
        ensure!(text.contains(verdict), "{what} does not name {verdict}");
    }
    Ok(())
}

/// The value of the `attr` attribute of the first `<el ` in `xml`.
fn attribute(xml: &str, el: &str, attr: &str) -> Option<usize> {
    let start = xml.find(&format!("<{el} "))?;
    let tag = &xml[start..start + xml[start..].find('>')?];
    let v = tag
        .split(&format!(" {attr}=\""))
        .nth(1)?
        .split('"')
        .next()?;
    v.parse().ok()
}

/// Checks `junit` against the JUnit schema.
fn valid_junit(junit: &Path) -> anyhow::Result<()> {
    let xsd = repo_root().join("tests/fixtures/junit/junit.xsd");
    tool(
        "xmllint",
        &[
            "--noout",
            "--schema",
            &xsd.to_string_lossy(),
            &junit.to_string_lossy(),
        ],
    )?;
    Ok(())
}

/// Checks the five formats of one report source against the records.
fn check_formats(
    what: &str,
    files: &[(&str, std::path::PathBuf)],
    records: &[Value],
) -> anyhow::Result<()> {
    let file = |f: &str| {
        files
            .iter()
            .find(|(n, _)| *n == f)
            .map(|(_, p)| p.clone())
            .context("format")
    };
    let pdf = file("pdf")?;
    let text =
        String::from_utf8(tool("pdftotext", &["-layout", &pdf.to_string_lossy(), "-"])?.stdout)?;
    names_all(&format!("{what} PDF"), &text, records)?;

    let html = file("html")?;
    let url = format!("file://{}", html.display());
    let chromium = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ];
    let mut args: Vec<String> = chromium.iter().map(|s| s.to_string()).collect();
    args.push("--dump-dom".into());
    args.push(url.clone());
    let dom = String::from_utf8(
        tool(
            "chromium",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )?
        .stdout,
    )?;
    names_all(&format!("{what} HTML in Chromium"), &dom, records)?;
    let shot = repo_root().join(format!("target/e2e-report-{what}.png"));
    let _ = std::fs::remove_file(&shot);
    let mut args: Vec<String> = chromium.iter().map(|s| s.to_string()).collect();
    args.push(format!("--screenshot={}", shot.display()));
    args.push("--window-size=1200,1600".into());
    args.push(url);
    tool(
        "chromium",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let png = std::fs::read(&shot).with_context(|| format!("no screenshot {}", shot.display()))?;
    ensure!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot of {} bytes",
        png.len()
    );

    let junit = file("junit")?;
    valid_junit(&junit)?;
    let xml = std::fs::read_to_string(&junit)?;
    let count = |v: &str| records.iter().filter(|r| r["verdict"] == v).count();
    ensure!(
        attribute(&xml, "testsuites", "tests") == Some(records.len()),
        "tests in {xml}"
    );
    ensure!(
        attribute(&xml, "testsuites", "failures") == Some(count("deviated")),
        "failures"
    );
    ensure!(
        attribute(&xml, "testsuites", "errors") == Some(count("errored") + count("rollbackFailed")),
        "errors"
    );
    ensure!(
        xml.matches("<testcase ").count() == records.len(),
        "test cases"
    );
    ensure!(
        xml.matches("<skipped ").count() == count("skipped"),
        "skipped"
    );
    let policies: std::collections::BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["policy"].as_str())
        .collect();
    ensure!(
        xml.matches("<testsuite ").count() == policies.len(),
        "one suite per policy"
    );

    let md = std::fs::read_to_string(file("markdown")?)?;
    let lines: Vec<&str> = md.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("| started | experiment |"))
        .context("the experiments table")?;
    ensure!(
        lines
            .get(header + 1)
            .is_some_and(|l| l.starts_with("|---|")),
        "a table's separator row"
    );
    let columns = lines[header].matches('|').count();
    for r in records {
        let id = r["id"].as_str().context("id")?;
        let row = lines[header + 2..]
            .iter()
            .find(|l| l.contains(id))
            .with_context(|| format!("no row for {id}"))?;
        ensure!(
            row.replace("\\|", "").matches('|').count() == columns,
            "{row}"
        );
    }

    let json: Vec<Value> = serde_json::from_slice(&std::fs::read(file("json")?)?)?;
    ensure!(json == records, "{what} JSON is not the records");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_format_from_the_history_and_regions_for_live_experiments() -> anyhow::Result<()> {
    with_namespace("report", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 3).await?;
        deployment(&client, &ns, "db", 1).await?;
        // New Deployments are briefly unavailable: that alert must not land in web-kill.
        monitoring_settled(&env, &ns, 2).await?;
        let grafana = FakeGrafana::start(TOKEN).await?;
        let work = tempfile::tempdir()?;
        let serve = start(&env, &ns, &grafana.url, work.path()).await?;

        let passed = run(&serve, "web-kill").await?;
        ensure!(passed["verdict"] == "passed", "{passed:#}");
        let skipped = run(&serve, "nobody-kill").await?;
        ensure!(skipped["verdict"] == "skipped", "{skipped:#}");
        let deviated = run(&serve, "db-down").await?;
        ensure!(deviated["verdict"] == "deviated", "{deviated:#}");
        // Errored: the emergency stop cuts a held fault short (then chaos resumes).
        let id = serve.run_now("web-shrink").await?;
        poll(Duration::from_secs(30), "web-shrink holding", || async {
            let p = serve.get("/api/v1/policies").await?;
            Ok(p["policies"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == "web-shrink"))
                .filter(|p| p["running"].as_array().is_some_and(|r| !r.is_empty()))
                .map(|_| ()))
        })
        .await?;
        // Injected, not only started (a stop before the injection skips the run).
        let web: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        wait_replicas(&web, "web", 1, Duration::from_secs(30)).await?;
        let (status, body) = serve.emergency_stop("e2e: cut web-shrink short").await?;
        ensure!(status == 200, "stop: {status} {body}");
        let errored = serve.record(&id, Duration::from_secs(60)).await?;
        ensure!(errored["verdict"] == "errored", "{errored:#}");
        let (status, body) = serve.resume().await?;
        ensure!(status == 200, "resume: {status} {body}");
        // The stop scaled web back to 3; until the new pods are ready, the dry run would
        // find one pod and skip (minAvailableReplicas), as it did once on a busy machine.
        wait_available(&web, "web", Duration::from_secs(60)).await?;
        let dry = run(&serve, "web-kill-dry").await?;
        ensure!(
            dry["verdict"] == "passed" && dry["dryRun"] == true,
            "{dry:#}"
        );

        // Coverage: the live policy that passed shows its pass; one that never passed
        // shows when havoc loaded it (before its deviation); the dry run none.
        let metrics = serve.metrics().await?;
        let last_passed = |policy: &str| {
            metrics
                .lines()
                .filter(|l| l.starts_with("havoc_policy_last_passed_timestamp_seconds{"))
                .find(|l| l.contains(&format!("policy=\"{policy}\"")))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        };
        let seconds = |r: &Value| {
            chrono::DateTime::parse_from_rfc3339(r["endedAt"].as_str().unwrap_or_default())
                .map(|t| t.timestamp_millis() as f64 / 1000.0)
        };
        ensure!(
            last_passed("web-kill") == Some(seconds(&passed)?),
            "web-kill: {:?} vs {passed:#}",
            last_passed("web-kill")
        );
        let deviated_at = seconds(&deviated)?;
        ensure!(
            last_passed("db-down").is_some_and(|t| t <= deviated_at),
            "db-down: {:?}",
            last_passed("db-down")
        );
        ensure!(last_passed("web-kill-dry").is_none(), "{metrics}");

        // Annotations: one region per live experiment that injected, created at
        // injection and closed at its end, tagged with the cluster; none for the dry run
        // or the skip.
        let live: Vec<&Value> = [&passed, &deviated, &errored].into_iter().collect();
        poll(Duration::from_secs(60), "every region closed", || async {
            let patches = grafana
                .accepted()
                .iter()
                .filter(|a| a.method == "PATCH")
                .count();
            Ok((patches >= live.len()).then_some(()))
        })
        .await?;
        let accepted = grafana.accepted();
        ensure!(grafana.problems().is_empty(), "{:?}", grafana.problems());
        let posts: Vec<_> = accepted.iter().filter(|a| a.method == "POST").collect();
        ensure!(
            posts.len() == live.len(),
            "{} regions for {} live experiments: {accepted:#?}",
            posts.len(),
            live.len()
        );
        for r in &live {
            let id = r["id"].as_str().context("id")?;
            let post = posts
                .iter()
                .find(|a| a.body["text"].as_str().is_some_and(|t| t.contains(id)))
                .with_context(|| format!("no region for {id}"))?;
            let injected = chrono::DateTime::parse_from_rfc3339(
                r["injectedAt"].as_str().context("injectedAt")?,
            )?;
            ensure!(
                post.body["time"] == injected.timestamp_millis(),
                "{:?}",
                post.body
            );
            let tags = post.body["tags"].as_array().context("tags")?;
            for tag in [
                format!("cluster:{CLUSTER}"),
                format!("policy:{}", r["policy"].as_str().unwrap_or_default()),
                format!("namespace:{ns}"),
            ] {
                ensure!(tags.contains(&json!(tag)), "{tag} missing: {tags:?}");
            }
            let patch = accepted
                .iter()
                .find(|a| a.method == "PATCH" && a.id == post.id)
                .with_context(|| format!("region of {id} never closed"))?;
            let ended =
                chrono::DateTime::parse_from_rfc3339(r["endedAt"].as_str().context("endedAt")?)?;
            ensure!(
                patch.body["timeEnd"] == ended.timestamp_millis(),
                "{:?}",
                patch.body
            );
            let verdict = format!("verdict:{}", r["verdict"].as_str().unwrap_or_default());
            ensure!(
                patch.body["tags"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!(verdict))),
                "{:?}",
                patch.body
            );
        }
        let dry_id = dry["id"].as_str().context("id")?;
        ensure!(
            !accepted.iter().any(|a| a.body.to_string().contains(dry_id)),
            "the dry run was annotated"
        );
        let metrics = serve.metrics().await?;
        ensure!(
            metric_value(
                &metrics,
                &format!(
                    "havoc_grafana_annotations_total{{cluster=\"{CLUSTER}\",result=\"closed\"}}"
                )
            ) == live.len() as f64,
            "{metrics}"
        );
        ensure!(
            !metrics.contains("havoc_experiment_running{"),
            "a gauge left behind"
        );

        // Reports from the service's history and from its journal.
        let records = serve.records().await?;
        ensure!(records.len() == 5, "{} records", records.len());
        let out = work.path();
        let mut api_files = Vec::new();
        let mut cli_files = Vec::new();
        let journal = serve.dir.path().join("journal.jsonl");
        for format in ["html", "pdf", "markdown", "junit", "json"] {
            let r = serve
                .http
                .get(serve.url(&format!("/api/v1/report?format={format}")))
                .send()
                .await?;
            ensure!(r.status() == 200, "{format}: {}", r.status());
            let p = out.join(format!("api.{format}"));
            std::fs::write(&p, r.bytes().await?)?;
            api_files.push((format, p));
            let p = out.join(format!("cli.{format}"));
            let o = Command::new(havoc_bin()?)
                .args(["report", "--journal"])
                .arg(&journal)
                .args(["--format", format, "--out"])
                .arg(&p)
                .output()?;
            ensure!(
                o.status.success(),
                "havoc report {format}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            cli_files.push((format, p));
        }
        // The service's report is over its history in the cluster: what ran (skips are
        // counted per policy there); the journal keeps the skip too.
        let ran: Vec<Value> = records
            .iter()
            .filter(|r| r["verdict"] != "skipped")
            .cloned()
            .collect();
        ensure!(ran.len() == 4, "{} ran", ran.len());
        check_formats("api", &api_files, &ran)?;
        check_formats("journal", &cli_files, &records)?;
        drop(serve);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn grafana_down_leaves_experiments_passing_and_counts_the_failures() -> anyhow::Result<()> {
    with_namespace("report-down", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 3).await?;
        monitoring_settled(&env, &ns, 1).await?;
        // Nothing listens on this port.
        let down = format!("http://127.0.0.1:{}", free_port()?);
        let work = tempfile::tempdir()?;
        let serve = start(&env, &ns, &down, work.path()).await?;
        let passed = run(&serve, "web-kill").await?;
        ensure!(passed["verdict"] == "passed", "{passed:#}");
        let series =
            format!("havoc_grafana_annotations_total{{cluster=\"{CLUSTER}\",result=\"failed\"}}");
        // The region at injection and the whole region at the end, each after retries.
        poll(
            Duration::from_secs(90),
            "both annotation failures counted",
            || async { Ok((metric_value(&serve.metrics().await?, &series) >= 2.0).then_some(())) },
        )
        .await?;
        Ok(())
    })
    .await
}

/// `havoc run --once --report FORMAT:FILE`: a pipeline's one-shot run writes its JUnit
/// results and a Markdown summary, and annotates Grafana like the service.
#[tokio::test(flavor = "multi_thread")]
async fn a_one_shot_run_writes_its_reports_and_annotates() -> anyhow::Result<()> {
    with_namespace("report-run", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 3).await?;
        let grafana = FakeGrafana::start(TOKEN).await?;
        let dir = tempfile::tempdir()?;
        let token = grafana_token(dir.path())?;
        // Its own Lease and shared state: no other `havoc run` counts against its limit.
        let lease = format!("havoc-e2e-report-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let config = fixtures::config()
            .set("/dryRun", json!(true))
            .set("/liveNamespaces", json!([ns]))
            .set("/clusterName", json!(CLUSTER))
            .set("/grafana", json!({"url": grafana.url, "token": {"file": token}}))
            .set(
                "/health",
                json!({
                    "interval": "2s",
                    "alertmanager": {"url": env.alertmanager()?, "matchers": ["severity=~\"critical|warning\""]},
                }),
            )
            .set("/leaderElection", json!({"namespace": "havoc-system", "lease": lease}))
            .yaml();
        let pods = target("Pod", &ns, "app=web");
        let kill = manual("web-kill", &ns, pods, json!({"podDelete": {"gracePeriod": "0s"}}), "1s")
            .alerts_from(&ns);
        monitoring_settled(&env, &ns, 1).await?;
        run::write_dir(dir.path(), &config, &[("web.yaml", kill.yaml())])?;
        let junit = dir.path().join("results.xml");
        let markdown = dir.path().join("summary.md");
        let out = run::once(&env, dir.path(), "web-kill")?
            .arg("--report")
            .arg(format!("junit:{}", junit.display()))
            .arg("--report")
            .arg(format!("markdown:{}", markdown.display()))
            .output()
            .await?;
        let states: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client.clone(), "havoc-system");
        let _ = states
            .delete(&format!("{lease}-state"), &Default::default())
            .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(0), "exit {:?}: {stderr}", out.status.code());
        let record: Value = serde_json::from_slice(&out.stdout)?;
        let id = record["id"].as_str().context("id")?;
        valid_junit(&junit)?;
        let xml = std::fs::read_to_string(&junit)?;
        ensure!(attribute(&xml, "testsuites", "tests") == Some(1), "{xml}");
        ensure!(attribute(&xml, "testsuites", "failures") == Some(0), "{xml}");
        ensure!(xml.contains(&format!("<testcase name=\"{id}\"")), "{xml}");
        let md = std::fs::read_to_string(&markdown)?;
        ensure!(md.contains(id) && md.contains("passed"), "{md}");
        // The region was created and closed before the process exited.
        let accepted = grafana.accepted();
        ensure!(grafana.problems().is_empty(), "{:?}", grafana.problems());
        let methods: Vec<&str> = accepted.iter().map(|a| a.method.as_str()).collect();
        ensure!(methods == ["POST", "PATCH"], "{accepted:#?}");
        ensure!(
            accepted[0].body["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&json!(format!("cluster:{CLUSTER}")))),
            "{accepted:#?}"
        );
        Ok(())
    })
    .await
}
