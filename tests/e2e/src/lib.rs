//! Support for end-to-end tests against the local real cluster started by
//! `deploy/local/up`: its environment, a fresh namespace per test, and waits for
//! conditions with deadlines (never a fixed sleep).

use std::{
    collections::BTreeMap,
    future::Future,
    path::PathBuf,
    sync::Once,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Namespace};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DeleteParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{Condition, await_condition},
};
use serde_json::Value;

pub mod bench;
pub mod fixtures;
pub mod grafana;
pub mod history;
pub mod identity;
pub mod run;
pub mod serve;
pub mod workloads;

/// The environment written by `deploy/local/up` (`deploy/local/.state/env`).
#[derive(Debug, Clone)]
pub struct Env {
    pub vars: BTreeMap<String, String>,
}

impl Env {
    /// Reads the state file; fails with a hint when the local cluster is not up.
    pub fn load() -> anyhow::Result<Self> {
        // Every test starts here; its HTTP clients need the provider.
        install_crypto_provider();
        let path = repo_root().join("deploy/local/.state/env");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} missing: run deploy/local/up first", path.display()))?;
        let vars = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_string(),
                    v.trim().trim_matches(['"', '\'']).to_string(),
                )
            })
            .collect();
        Ok(Env { vars })
    }

    pub fn get(&self, key: &str) -> anyhow::Result<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("{key} is not in deploy/local/.state/env"))
    }

    pub fn prometheus(&self) -> anyhow::Result<&str> {
        self.get("HAVOC_PROMETHEUS_URL")
    }

    pub fn alertmanager(&self) -> anyhow::Result<&str> {
        self.get("HAVOC_ALERTMANAGER_URL")
    }

    pub fn sink(&self) -> anyhow::Result<&str> {
        self.get("HAVOC_SINK_URL")
    }

    pub fn slack_token(&self) -> anyhow::Result<&str> {
        self.get("HAVOC_SINK_SLACK_TOKEN")
    }

    /// The longest a replacement pod takes from Running to Ready on the local cluster
    /// (KWOK's fake readiness probe: `HAVOC_POD_READY_DELAY` plus up to
    /// `HAVOC_POD_READY_JITTER` seconds).
    pub fn pod_ready_max(&self) -> anyhow::Result<Duration> {
        let secs = |key| -> anyhow::Result<u64> {
            self.get(key)?
                .parse()
                .with_context(|| format!("{key} is not a number of seconds"))
        };
        Ok(Duration::from_secs(
            secs("HAVOC_POD_READY_DELAY")? + secs("HAVOC_POD_READY_JITTER")?,
        ))
    }

    /// A client for the local API server.
    pub async fn client(&self) -> anyhow::Result<Client> {
        install_crypto_provider();
        let kubeconfig = Kubeconfig::read_from(self.get("KUBECONFIG")?)?;
        let mut config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        // kube 5 retries 429/503/504 by default (up to 15 times, minutes apart): an eviction
        // refused by a PodDisruptionBudget would hang, then succeed once the budget frees up.
        // havoc's own client turns this off too (scheduler/src/run.rs).
        config.default_retry = false;
        Ok(Client::try_from(config)?)
    }
}

/// The repository root (this crate lives in `tests/e2e`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The havoc binary the tests run: `HAVOC_BIN` (another build; the benchmarks use the
/// release one), else this checkout's `target/debug/havoc`.
pub fn havoc_bin() -> anyhow::Result<PathBuf> {
    let bin = std::env::var_os("HAVOC_BIN")
        .map_or_else(|| repo_root().join("target/debug/havoc"), PathBuf::from);
    ensure!(
        bin.exists(),
        "{} missing: build it with `cargo build -p havoc`",
        bin.display()
    );
    Ok(bin)
}

/// The environment variable `name` parsed as a `T`; `default` when it is unset or does
/// not parse (a knob of a test or benchmark, e.g. `ROLLOUTS=20`).
pub fn var_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// rustls needs exactly one process-wide crypto provider when more than one is compiled in.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Runs `body` with a fresh namespace (`havoc-e2e-<prefix>-<random>`), deleting the
/// namespace afterwards whether the body passed, failed or panicked. `body` gets the
/// local cluster's environment, a client and the namespace's name.
pub async fn with_namespace<F, Fut>(prefix: &str, body: F) -> anyhow::Result<()>
where
    F: FnOnce(Env, Client, String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let env = Env::load()?;
    let client = env.client().await?;
    let name = format!(
        "havoc-e2e-{prefix}-{:06x}",
        rand::random::<u32>() & 0xff_ffff
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"havoc.dev/e2e": "true"}}
    }))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let body = body(env, client.clone(), name.clone());
    cleaned_up(body, async {
        let _ = namespaces.delete(&name, &DeleteParams::background()).await;
        Ok(())
    })
    .await
}

/// [`with_namespace`], with a node pool of the test's own named like the namespace: `n`
/// Ready KWOK nodes, tainted so that no other test's pods land there
/// ([`workloads::node_pool`]). `body` gets what [`with_namespace`]'s does (the
/// namespace's name is the pool's too) and the nodes' names; the pool is deleted
/// afterwards whatever the body did.
pub async fn with_node_pool<F, Fut>(prefix: &str, n: usize, body: F) -> anyhow::Result<()>
where
    F: FnOnce(Env, Client, String, Vec<String>) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    with_namespace(prefix, move |env, client, ns| async move {
        let pool = workloads::node_pool(&client, &ns, n).await;
        with_pool_deleted(env, client, ns, pool, body).await
    })
    .await
}

/// [`with_node_pool`], the pool over zones ([`workloads::zoned_pool`]): `body` gets the
/// nodes by zone.
pub async fn with_zoned_pool<F, Fut>(
    prefix: &str,
    zones: &'static [(&'static str, usize)],
    body: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Env, Client, String, BTreeMap<String, Vec<String>>) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    with_namespace(prefix, move |env, client, ns| async move {
        let pool = workloads::zoned_pool(&client, &ns, zones).await;
        with_pool_deleted(env, client, ns, pool, body).await
    })
    .await
}

/// Runs `body` on the pool just made (or fails with the error that made none), then
/// deletes the pool named `ns`.
async fn with_pool_deleted<T, F, Fut>(
    env: Env,
    client: Client,
    ns: String,
    pool: anyhow::Result<T>,
    body: F,
) -> anyhow::Result<()>
where
    T: Send + 'static,
    F: FnOnce(Env, Client, String, T) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let run = {
        let (client, ns) = (client.clone(), ns.clone());
        async move { body(env, client, ns, pool?).await }
    };
    cleaned_up(run, workloads::delete_node_pool(&client, &ns)).await
}

/// Runs `body` in a task of its own, then `cleanup` whether the body passed, failed or
/// panicked; the body's error (or panic) comes first, then the cleanup's.
pub async fn cleaned_up<Fut>(
    body: Fut,
    cleanup: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()>
where
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let outcome = tokio::spawn(body).await;
    let cleaned = cleanup.await;
    match outcome {
        Ok(result) => result.and(cleaned),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => bail!("test task failed: {e}"),
    }
}

/// Waits until a kube object satisfies `cond`, or fails after `timeout`.
pub async fn wait_for_object<K>(
    api: Api<K>,
    name: &str,
    cond: impl Condition<K>,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api, name, cond)).await {
        Ok(Ok(Some(obj))) => Ok(obj),
        Ok(Ok(None)) => bail!("{what}: {name} was deleted while waiting"),
        Ok(Err(e)) => bail!("{what}: watch failed: {e}"),
        Err(_) => bail!("{what}: not reached within {timeout:?}"),
    }
}

/// A Deployment whose available replicas equal its desired replicas, observed at the
/// current generation.
pub fn deployment_available() -> impl Condition<Deployment> {
    |d: Option<&Deployment>| {
        let Some(d) = d else { return false };
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let Some(s) = &d.status else { return false };
        s.observed_generation == d.metadata.generation
            && s.available_replicas.unwrap_or(0) == want
            && s.updated_replicas.unwrap_or(0) == want
            && s.replicas.unwrap_or(0) == want
    }
}

/// Waits until Deployment `name` of `api` is available ([`deployment_available`]).
pub async fn wait_available(
    api: &Api<Deployment>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Deployment> {
    let what = format!("{name} available");
    wait_for_object(api.clone(), name, deployment_available(), timeout, &what).await
}

/// Polls `check` every 250 ms until it returns `Some`, or fails after `timeout`.
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => bail!("{what}: not reached within {timeout:?} (last error: {e:#})"),
                None => bail!("{what}: not reached within {timeout:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Checks for `period` that `check` keeps holding (returns `Ok(true)`): for a test that
/// means "nothing more happens for N seconds" (no second notification, no other
/// experiment). Fails at the first check that does not hold.
pub async fn assert_quiet_for<F, Fut>(
    period: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let end = Instant::now() + period;
    loop {
        if !check().await? {
            bail!("{what}: no longer true");
        }
        if Instant::now() >= end {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The value of one series (`name{labels}` exactly as exposed) in a Prometheus text
/// exposition; 0 when absent.
pub fn metric_value(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// An experiment's record with this `verdict`, for a reason that says `why`.
pub fn ensure_verdict(record: &Value, verdict: &str, why: &str) -> anyhow::Result<()> {
    ensure!(record["verdict"] == verdict, "{record:#}");
    ensure!(
        record["reason"].as_str().is_some_and(|s| s.contains(why)),
        "{verdict}, but not for {why:?}: {record:#}"
    );
    Ok(())
}

/// The names of the alerts a record attributes its verdict to (`alerts[].name`).
pub fn alert_names(record: &Value) -> Vec<&str> {
    record["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str())
        .collect()
}

/// Waits until the wall clock passes `t` (a cooldown or a deadline the test is about).
pub async fn wait_past(t: chrono::DateTime<chrono::Utc>) {
    if let Ok(left) = (t - chrono::Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
}

/// Active alerts (not silenced or inhibited) from Alertmanager's v2 API.
pub async fn active_alerts(env: &Env) -> anyhow::Result<Vec<Value>> {
    let url = format!(
        "{}/api/v2/alerts?active=true&silenced=false&inhibited=false",
        env.alertmanager()?
    );
    let alerts: Vec<Value> = reqwest::get(url).await?.error_for_status()?.json().await?;
    Ok(alerts)
}

/// The series of a Prometheus instant query (`data.result`).
pub async fn prometheus_query(env: &Env, query: &str) -> anyhow::Result<Vec<Value>> {
    let v: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", env.prometheus()?))
        .query(&[("query", query)])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Whether an alert's labels include every `(name, value)` pair.
pub fn alert_has_labels(alert: &Value, labels: &[(&str, &str)]) -> bool {
    labels.iter().all(|(k, v)| alert["labels"][*k] == *v)
}

/// Waits until an alert with these labels is firing in Alertmanager.
pub async fn wait_alert_firing(
    env: &Env,
    labels: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<Value> {
    poll(timeout, &format!("alert {labels:?} firing"), || async {
        Ok(active_alerts(env)
            .await?
            .into_iter()
            .find(|a| alert_has_labels(a, labels)))
    })
    .await
}

/// Waits until no alert with these labels is firing.
pub async fn wait_alert_gone(
    env: &Env,
    labels: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<()> {
    poll(timeout, &format!("alert {labels:?} resolved"), || async {
        Ok((!active_alerts(env)
            .await?
            .iter()
            .any(|a| alert_has_labels(a, labels)))
        .then_some(()))
    })
    .await
}

/// A command that runs `COMMAND...` (added by the caller) as ServiceAccount `sa` of
/// namespace `ns` with in-cluster configuration (tests/install/in-cluster), as a pod of
/// that identity would.
pub fn in_cluster(env: &Env, ns: &str, sa: &str) -> anyhow::Result<tokio::process::Command> {
    let mut cmd = tokio::process::Command::new(repo_root().join("tests/install/in-cluster"));
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.args(["-n", ns, "-s", sa, "--"])
        .env("KUBECONFIG", env.get("KUBECONFIG")?)
        .env("PATH", format!("{}:{path}", env.get("HAVOC_BIN_DIR")?))
        .stdin(std::process::Stdio::null());
    Ok(cmd)
}

/// Posts a firing alert `name` (severity warning) scoped to `namespace` to Alertmanager;
/// it resolves at `ends` (post it again with `ends` now to resolve it).
pub async fn post_alert(
    env: &Env,
    name: &str,
    namespace: &str,
    starts: chrono::DateTime<chrono::Utc>,
    ends: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", env.alertmanager()?))
        .json(&serde_json::json!([{
            "labels": {"alertname": name, "severity": "warning", "namespace": namespace},
            "startsAt": starts.to_rfc3339(),
            "endsAt": ends.to_rfc3339(),
        }]))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// [`post_alert`] `HavocE2EDeviation`: the alert a test raises to make a running
/// experiment deviate.
pub async fn post_deviation_alert(
    env: &Env,
    namespace: &str,
    starts: chrono::DateTime<chrono::Utc>,
    ends: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    post_alert(env, "HavocE2EDeviation", namespace, starts, ends).await
}

/// Everything the notification sink received, in order.
pub async fn sink_received(env: &Env) -> anyhow::Result<Vec<Value>> {
    Ok(reqwest::get(format!("{}/received", env.sink()?))
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits until the sink holds at least `n` requests matching `pred`.
pub async fn wait_sink_received(
    env: &Env,
    n: usize,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Vec<Value>> {
    poll(timeout, &format!("{n} requests at the sink"), || async {
        let got: Vec<Value> = sink_received(env)
            .await?
            .into_iter()
            .filter(|r| pred(r))
            .collect();
        Ok((got.len() >= n).then_some(got))
    })
    .await
}

/// Name of an object, for messages.
pub fn name_of<K: ResourceExt>(obj: &K) -> String {
    obj.name_any()
}

/// Runs one API call with a hard deadline, naming it in the error.
pub async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => bail!("{what}: {e}"),
        Err(_) => bail!("{what}: no answer within {limit:?}"),
    }
}

/// The demo namespace `go-demo-8` is healthy: every Deployment available, no alert in it.
pub async fn demo_healthy(env: &Env) -> anyhow::Result<()> {
    let client = env.client().await?;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client, "go-demo-8");
    for d in ["go-demo-8", "go-demo-8-db", "repeater"] {
        wait_available(&deployments, d, Duration::from_secs(90)).await?;
    }
    wait_alert_gone(env, &[("namespace", "go-demo-8")], Duration::from_secs(90)).await
}
