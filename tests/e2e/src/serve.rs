//! A `havoc serve` process for end-to-end tests: its own port, config, policies and
//! journal; stopped with SIGTERM.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

use crate::{
    Env,
    fixtures::{self, PolicyDoc},
    havoc_bin,
    identity::Identity,
    poll, repo_root, run, sink_received,
};

pub const TOKEN: &str = "e2e-api-token";
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret";

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[derive(Debug)]
pub struct Setup<'a> {
    pub dry_run: bool,
    /// More config fields, merged into `spec` (e.g. `{"liveNamespaces": [NS]}`).
    pub extra: Value,
    /// Single config fields set last, by path below `spec` (e.g. `("/health/interval",
    /// json!("10s"))`): for a change inside an object the tests' config already fills.
    pub overrides: Vec<(&'a str, Value)>,
    /// `--reload-interval`: how often the policy files are checked (tests: 1s; the
    /// product's default is 5s).
    pub reload_interval: &'a str,
    pub prometheus: Option<String>,
    /// Receivers the config's `notify` routes to.
    pub receivers: &'a [&'a str],
    pub hook: String,
    pub policies: Vec<(&'a str, String)>,
    /// Adds an SLO read from Prometheus (always met while Prometheus answers).
    pub slos: bool,
    /// The Lease (and shared state) name; default: unique to this process. Two
    /// replicas of one installation share it.
    pub lease: Option<String>,
    /// `POD_NAME` of the process (a restart in the same pod keeps it).
    pub pod_name: Option<String>,
    /// Wait until this process leads (a second replica does not).
    pub wait_leader: bool,
    /// Run as this ServiceAccount (namespace, name) with in-cluster configuration, as
    /// `HAVOC_E2E_IDENTITY` does (which it overrides).
    pub identity: Option<(&'a str, &'a str)>,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            dry_run: false,
            extra: Value::Null,
            overrides: Vec::new(),
            reload_interval: "1s",
            prometheus: None,
            receivers: &["chat", "hook"],
            hook: format!("serve-{:08x}", rand::random::<u32>()),
            policies: Vec::new(),
            slos: false,
            lease: None,
            pod_name: None,
            wait_leader: true,
            identity: None,
        }
    }
}

impl<'a> Setup<'a> {
    /// The tests' usual service: dry run except in `ns` (`liveNamespaces`), notifying
    /// only the webhook, with these policies.
    pub fn live_in(ns: &str, policies: Vec<(&'a str, String)>) -> Self {
        Setup {
            dry_run: true,
            extra: json!({"liveNamespaces": [ns]}),
            receivers: &["hook"],
            policies,
            ..Setup::default()
        }
    }

    /// Sets the config's `limits`.
    pub fn limits(mut self, limits: Value) -> Self {
        self.overrides.push(("/limits", limits));
        self
    }

    /// Dry run off everywhere, for node faults (nodes are not namespaced); the tests'
    /// node policies run only when asked, on nodes of the test's own.
    pub fn live_on_nodes(self) -> Self {
        Setup {
            dry_run: false,
            ..self
        }
    }

    /// A service with this one policy (in `file`), everything else as by default.
    pub fn policy(file: &'a str, policy: &PolicyDoc) -> Self {
        Setup {
            policies: vec![(file, policy.yaml())],
            ..Setup::default()
        }
    }

    /// Runs as `identity` (in-cluster, with its ServiceAccount) and with its Lease.
    pub fn run_as(self, identity: &'a Identity) -> Self {
        Setup {
            identity: Some(identity.setup()),
            lease: Some(identity.lease.clone()),
            ..self
        }
    }
}

/// The receivers of a config that notifies the local sink: `chat` (Slack's API) and
/// `hook` (a webhook at `/webhook/<hook>`, signed with the secret in `secret_file`).
pub fn sink_receivers(env: &Env, hook: &str, secret_file: &Path) -> anyhow::Result<Value> {
    Ok(json!([
        {"name": "chat", "slack": {
            "channel": "#chaos",
            "token": {"env": "HAVOC_TEST_SLACK_TOKEN"},
            "apiUrl": format!("{}/api", env.sink()?),
        }},
        {"name": "hook", "webhook": {
            "url": format!("{}/webhook/{hook}", env.sink()?),
            "secret": {"file": secret_file},
        }},
    ]))
}

/// Checks a webhook the sink received: signed with [`WEBHOOK_SECRET`] over its exact
/// body, as of its arrival (verified here and by the sink).
pub fn verify_signature(hook: &Value) -> anyhow::Result<()> {
    let body = hook["body"].as_str().context("webhook body")?;
    let sig = hook["headers"]["x-havoc-signature"]
        .as_str()
        .context("signature header")?;
    let secret = havoc_integrations::SecretString::from(WEBHOOK_SECRET.to_string());
    let arrived =
        std::time::UNIX_EPOCH + Duration::from_secs_f64(hook["time"].as_f64().context("arrival")?);
    havoc_integrations::webhook::verify(
        &secret,
        sig,
        body.as_bytes(),
        arrived,
        havoc_integrations::webhook::DEFAULT_TOLERANCE,
    )?;
    ensure!(
        hook["signature"] == "valid",
        "sink says {}",
        hook["signature"]
    );
    Ok(())
}

/// `HAVOC_E2E_IDENTITY=NAMESPACE/SERVICEACCOUNT` (tests/install/run sets it): every
/// `havoc serve` runs as that ServiceAccount with in-cluster configuration
/// (tests/install/in-cluster), its Lease and state in NAMESPACE, which proves that the
/// chart's RBAC is enough for the scenario. Unset: the test's own kubeconfig.
fn identity() -> Option<(String, String)> {
    let v = std::env::var("HAVOC_E2E_IDENTITY").ok()?;
    let (ns, sa) = v.split_once('/')?;
    Some((ns.to_string(), sa.to_string()))
}

/// `HAVOC_E2E_LEASE`: with `HAVOC_E2E_IDENTITY`, the installation's Lease (the chart's
/// Role reaches only its own Lease and state ConfigMap, by name): every `havoc serve` uses
/// it, one at a time.
fn identity_lease() -> Option<String> {
    std::env::var("HAVOC_E2E_LEASE")
        .ok()
        .filter(|l| !l.is_empty())
}

/// A running `havoc serve`, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Serve {
    pub child: tokio::process::Child,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub hook: String,
    pub http: reqwest::Client,
    /// How the process is started, to start it again.
    command: Vec<std::ffi::OsString>,
    envs: Vec<(String, String)>,
    /// How many processes were started in this directory (logs are havoc.log, havoc.1.log, ...).
    pub generation: usize,
}

impl Serve {
    pub async fn start(env: &Env, setup: Setup<'_>) -> anyhow::Result<Serve> {
        let identity = match setup.identity {
            Some((ns, sa)) => Some((ns.to_string(), sa.to_string())),
            None => identity(),
        };
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let secret = dir.path().join("webhook-secret");
        std::fs::write(&secret, format!("{WEBHOOK_SECRET}\n"))?;
        let prom = match &setup.prometheus {
            Some(p) => p.clone(),
            None => env.prometheus()?.to_string(),
        };
        let slos = if setup.slos {
            json!([{"name": "prometheus-answers", "query": "vector(1)", "objective": ">= 1"}])
        } else {
            json!([])
        };
        let mut config = fixtures::config()
            .set("/dryRun", json!(setup.dry_run))
            .set(
                "/health",
                json!({
                    "interval": "2s",
                    "prometheus": {"url": prom, "timeout": "2s"},
                    "alertmanager": {
                        "url": env.alertmanager()?,
                        "timeout": "2s",
                        "matchers": ["severity=~\"critical|warning\""],
                    },
                    "slos": slos,
                }),
            )
            .set("/receivers", sink_receivers(env, &setup.hook, &secret)?)
            .set("/notify", json!({"receivers": setup.receivers}))
            .set("/circuitBreaker", json!({"cooldown": "10m"}))
            .set(
                "/server",
                json!({"listen": format!("127.0.0.1:{port}"), "token": {"env": "HAVOC_TEST_API_TOKEN"}}),
            )
            .set(
                "/leaderElection",
                json!({
                    "enabled": true,
                    "namespace": identity.as_ref().map_or("havoc-system", |(ns, _)| ns.as_str()),
                    "lease": setup.lease.clone().or_else(identity_lease).unwrap_or_else(|| format!("havoc-e2e-{port}")),
                }),
            )
            .merge(&setup.extra);
        for (pointer, value) in &setup.overrides {
            config = config.set(pointer, value.clone());
        }
        run::write_dir(dir.path(), &config.yaml(), &setup.policies)?;
        let bin = havoc_bin()?;
        let mut command: Vec<std::ffi::OsString> = Vec::new();
        let in_cluster = identity.is_some();
        if let Some((ns, sa)) = &identity {
            command.push(repo_root().join("tests/install/in-cluster").into());
            for a in ["-n", ns.as_str(), "-s", sa.as_str()] {
                command.push(a.into());
            }
            if let Some(p) = &setup.pod_name {
                command.push("-p".into());
                command.push(p.into());
            }
            command.push("--".into());
        }
        command.push(bin.into());
        for a in [
            "serve",
            "--reload-interval",
            setup.reload_interval,
            "--shutdown-timeout",
            "10s",
        ] {
            command.push(a.into());
        }
        let d = dir.path();
        for (flag, path) in [
            ("--config", d.join("havoc.yaml")),
            ("--policies", d.join("policies")),
            ("--journal", d.join("journal.jsonl")),
        ] {
            command.push(flag.into());
            command.push(path.into());
        }
        if !in_cluster {
            command.push("--kubeconfig".into());
            command.push(env.get("KUBECONFIG")?.into());
        }
        let mut envs = vec![
            (
                "HAVOC_TEST_SLACK_TOKEN".to_string(),
                env.slack_token()?.to_string(),
            ),
            ("HAVOC_TEST_API_TOKEN".to_string(), TOKEN.to_string()),
            ("HAVOC_LOG".to_string(), "info,kube=warn".to_string()),
        ];
        if let Some(p) = &setup.pod_name {
            envs.push(("POD_NAME".to_string(), p.clone()));
        }
        if in_cluster {
            // tests/install/in-cluster mints the ServiceAccount's token with kubectl and
            // the cluster's admin kubeconfig (which havoc itself then does not see).
            envs.push(("KUBECONFIG".to_string(), env.get("KUBECONFIG")?.to_string()));
            let path = std::env::var("PATH").unwrap_or_default();
            envs.push((
                "PATH".to_string(),
                format!("{}:{path}", env.get("HAVOC_BIN_DIR")?),
            ));
        }
        let child = spawn(&command, &envs, d, 0)?;
        let mut serve = Serve {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
            hook: setup.hook,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            command,
            envs,
            generation: 0,
        };
        serve.wait_ready(setup.wait_leader).await?;
        if setup.lease.is_none() && identity_lease().is_some() {
            // One installation's state serves every test in turn: a test starts with none
            // of the pauses (circuit breakers) an earlier one left.
            serve.resume().await?;
        }
        Ok(serve)
    }

    /// Waits until `/readyz` answers 200 and, with `leader`, this process leads.
    pub async fn wait_ready(&mut self, leader: bool) -> anyhow::Result<()> {
        let ready = poll(Duration::from_secs(60), "havoc ready", || async {
            let r = self.http.get(self.url("/readyz")).send().await?;
            if !r.status().is_success() {
                return Ok(None);
            }
            let p = self.get("/api/v1/policies").await?;
            Ok((!leader || p["leader"] == true).then_some(()))
        })
        .await;
        if let Err(e) = ready {
            bail!("{e:#}\nlog:\n{}", tail(&self.log(), 40));
        }
        Ok(())
    }

    /// SIGKILL: no revert, no record, no Lease release — a crash.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .context("havoc did not die from SIGKILL")??;
        Ok(())
    }

    /// Starts the process again in the same directory (config, policies, journal),
    /// without waiting for it.
    pub fn respawn(&mut self) -> anyhow::Result<()> {
        self.generation += 1;
        self.child = spawn(&self.command, &self.envs, self.dir.path(), self.generation)?;
        Ok(())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The current process's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(self.dir.path(), self.generation)).unwrap_or_default()
    }

    /// The log's "watch scope changed" lines of the watch of `kind` (e.g. `Pod`).
    pub fn watch_scopes(&self, kind: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("watch scope changed") && l.contains(&format!(r#""kind":"{kind}""#))
            })
            .map(str::to_string)
            .collect()
    }

    pub fn policies_dir(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(self.url(path))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Asks for a run of `policy` now: the answer's status and body.
    pub async fn ask_run(&self, policy: &str) -> anyhow::Result<(u16, Value)> {
        let path = format!("/api/v1/policies/{policy}/run");
        self.post(&path, Some(TOKEN), json!({})).await
    }

    /// The emergency stop (`POST /api/v1/stop`): every running experiment is cut short
    /// and chaos is paused, for `reason`.
    pub async fn emergency_stop(&self, reason: &str) -> anyhow::Result<(u16, Value)> {
        let body = json!({"reason": reason});
        self.post("/api/v1/stop", Some(TOKEN), body).await
    }

    /// Pauses chaos (`POST /api/v1/pause`) for `reason`.
    pub async fn pause(&self, reason: &str) -> anyhow::Result<(u16, Value)> {
        let body = json!({"reason": reason});
        self.post("/api/v1/pause", Some(TOKEN), body).await
    }

    /// Resumes chaos (`POST /api/v1/resume`).
    pub async fn resume(&self) -> anyhow::Result<(u16, Value)> {
        self.post("/api/v1/resume", Some(TOKEN), json!({})).await
    }

    /// Runs `policy` now; the experiment's id.
    pub async fn run_now(&self, policy: &str) -> anyhow::Result<String> {
        let (status, body) = self.ask_run(policy).await?;
        ensure!(status == 202, "run {policy}: {status} {body}");
        Ok(body["id"].as_str().context("id")?.to_string())
    }

    /// The Prometheus exposition of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// The records of this installation: what ran, from the API (the cluster's
    /// history, the same from every replica), and the skips of this process, from its
    /// journal (skips are only counted in the cluster, kept one by one in the journal).
    /// Newest first.
    pub async fn records(&self) -> anyhow::Result<Vec<Value>> {
        let mut all = self
            .get("/api/v1/experiments?limit=1000")
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default();
        let skips = self
            .journal()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["verdict"] == "skipped" && !all.iter().any(|a| a["id"] == r["id"]));
        let skips: Vec<Value> = skips.collect();
        all.extend(skips);
        all.sort_by(|a, b| {
            let at = |r: &Value| r["startedAt"].as_str().unwrap_or_default().to_string();
            at(b).cmp(&at(a))
        });
        Ok(all)
    }

    /// Runs `policy` again and again until its record satisfies `pred` (a run that comes
    /// after havoc's watches saw a change), and returns that record. A run refused with a
    /// record (409) counts too.
    pub async fn run_until(
        &self,
        policy: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        poll(timeout, what, || async {
            let (status, body) = self.ask_run(policy).await?;
            let Some(id) = body["id"]
                .as_str()
                .filter(|_| status == 202 || status == 409)
            else {
                return Ok(None);
            };
            let r = self.record(id, Duration::from_secs(30)).await?;
            Ok(pred(&r).then_some(r))
        })
        .await
    }

    /// Waits until at least `n` records satisfy `pred`, and returns those.
    pub async fn wait_records(
        &self,
        n: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        let found = poll(timeout, what, || async {
            let rs: Vec<Value> = self.records().await?.into_iter().filter(&pred).collect();
            Ok((rs.len() >= n).then_some(rs))
        })
        .await;
        found.map_err(|e| anyhow::anyhow!("{e:#}\nlog tail:\n{}", tail(&self.log(), 30)))
    }

    /// Waits for the record with this id.
    pub async fn record(&self, id: &str, timeout: Duration) -> anyhow::Result<Value> {
        let found = poll(timeout, &format!("record {id}"), || async {
            Ok(self.records().await?.into_iter().find(|r| r["id"] == id))
        })
        .await;
        found.map_err(|e| anyhow::anyhow!("{e:#}\nlog tail:\n{}", tail(&self.log(), 30)))
    }

    /// SIGTERM; the exit status and how long it took.
    pub async fn stop(&mut self) -> anyhow::Result<(Option<i32>, Duration)> {
        let pid = self.child.id().context("havoc already exited")?;
        let started = Instant::now();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("havoc did not exit within 30 s of SIGTERM")??;
        Ok((status.code(), started.elapsed()))
    }

    pub fn journal(&self) -> anyhow::Result<Vec<Value>> {
        let text = std::fs::read_to_string(self.dir.path().join("journal.jsonl"))?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// The sink's Slack messages and webhooks for one experiment (answered 200).
    pub async fn notifications(
        &self,
        env: &Env,
        id: &str,
    ) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
        let all = sink_received(env).await?;
        let ok = |r: &&Value| r["outcome"] == "ok";
        let slack = all
            .iter()
            .filter(|r| r["kind"] == "slack" && r["body"].as_str().is_some_and(|b| b.contains(id)))
            .filter(ok)
            .cloned()
            .collect();
        let hooks = all
            .iter()
            .filter(|r| r["kind"] == "webhook" && r["name"] == self.hook.as_str())
            .filter(|r| r["body"].as_str().is_some_and(|b| b.contains(id)))
            .filter(ok)
            .cloned()
            .collect();
        Ok((slack, hooks))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn log_path(dir: &std::path::Path, generation: usize) -> PathBuf {
    if generation == 0 {
        dir.join("havoc.log")
    } else {
        dir.join(format!("havoc.{generation}.log"))
    }
}

fn spawn(
    command: &[std::ffi::OsString],
    envs: &[(String, String)],
    dir: &std::path::Path,
    generation: usize,
) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::File::create(log_path(dir, generation))?;
    let (program, args) = command.split_first().context("empty command")?;
    Ok(tokio::process::Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?)
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
