//! havoc when what it depends on fails: the API server frozen (SIGSTOP) for 30 s, then
//! killed and restarted from its own command line; two replicas over many scheduled
//! fires (one injector at a time, a pause sent to either holds for both and survives
//! restarting both); the journal on a full file system; the emergency stop answering at
//! once while the API server is frozen; the fence of each request while the API server
//! is slowed in bursts and leadership changes (checked in the API server's audit log).
//!
//! These stop the API server and mount file systems: run them alone (tests/run does).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, Utc};
use havoc_e2e::{
    fixtures::{self, node_named, target},
    identity::Identity,
    serve::*,
    workloads::*,
    *,
};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Namespace, Node},
};
use kube::{Api, api::PostParams};
use serde_json::{Value, json};

/// A live pod-delete policy firing every 1-2 s on `app=web` in `ns`.
fn frequent(ns: &str) -> String {
    fixtures::policy("frequent")
        .pods(ns, "app=web")
        .interval("1s", "2s")
        .duration("1s")
        .settle("0s")
        .blind()
        .yaml()
}

fn setup<'a>(ns: &str, policies: Vec<(&'a str, String)>) -> Setup<'a> {
    Setup::live_in(ns, policies).limits(json!({"minAvailableReplicas": 0}))
}

/// Every line of a journal file that parses: (intents, final records).
fn journal_lines(path: &Path) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let (mut intents, mut finals) = (Vec::new(), Vec::new());
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).with_context(|| {
            format!(
                "a partial or broken line: {}",
                String::from_utf8_lossy(line)
            )
        })?;
        if v.get("started").is_some() {
            intents.push(v["started"].clone());
        } else {
            finals.push(v);
        }
    }
    Ok((intents, finals))
}

fn ts(v: &Value) -> anyhow::Result<DateTime<Utc>> {
    Ok(v.as_str().context("a time")?.parse()?)
}

/// Every intent has exactly one final record.
fn all_closed(intents: &[Value], finals: &[Value]) -> anyhow::Result<()> {
    let ids: BTreeSet<&str> = finals.iter().filter_map(|r| r["id"].as_str()).collect();
    ensure!(ids.len() == finals.len(), "a record written twice");
    for i in intents {
        let id = i["id"].as_str().context("id")?;
        ensure!(ids.contains(id), "intent {id} has no final record");
    }
    Ok(())
}

fn apiserver_pid() -> anyhow::Result<u32> {
    let path = repo_root().join("deploy/local/.state/kwok/clusters/havoc/pids/kube-apiserver.pid");
    Ok(std::fs::read_to_string(&path)?.trim().parse()?)
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?
        .success();
    ensure!(ok, "kill {sig} {pid}");
    Ok(())
}

/// Kills the API server and starts it again from its own command line, in its own
/// directory, with its pidfile updated (kwokctl cannot restart one component here).
async fn restart_apiserver(env: &Env) -> anyhow::Result<()> {
    let pid = apiserver_pid()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    signal(pid, "-KILL")?;
    poll(Duration::from_secs(10), "the API server dead", || async {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        Ok((!stat.is_ok_and(|s| !s.contains(") Z "))).then_some(()))
    })
    .await?;
    let log_path = cwd.join("logs/kube-apiserver.log");
    let printed_since = |offset: u64| {
        let printed = std::fs::read(&log_path).unwrap_or_default();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(printed.len());
        String::from_utf8_lossy(&printed[start..]).into_owned()
    };
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_owned))
    };
    let address = format!(
        "{}:{}",
        flag("bind-address").unwrap_or_else(|| "0.0.0.0".into()),
        flag("secure-port").context("the API server's --secure-port")?
    );
    let client = env.client().await?;
    // A start that exits (seen once in CI, cause not in its output) is retried, and the
    // error says what the API server printed.
    let mut exits = Vec::new();
    for _attempt in 0..3 {
        // Each start waits until the port is free again (the killed one may still hold it).
        poll(
            Duration::from_secs(30),
            "the API server's port free",
            || async { Ok(std::net::TcpListener::bind(&address).ok().map(drop)) },
        )
        .await?;
        let offset = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log_path)?;
        let child = std::process::Command::new(&args[0])
            .args(&args[1..])
            .current_dir(&cwd)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        std::fs::write(cwd.join("pids/kube-apiserver.pid"), child.id().to_string())?;
        let child = std::sync::Mutex::new(child);
        let back = poll(Duration::from_secs(60), "the API server back", || async {
            if let Some(status) = child.lock().expect("not poisoned").try_wait()? {
                return Ok(Some(Err(status)));
            }
            Ok(client.apiserver_version().await.ok().map(|_| Ok(())))
        })
        .await;
        match back {
            Ok(Ok(())) => {
                // Detached: it outlives this test, as the one kwokctl started would.
                std::mem::forget(child.into_inner().expect("not poisoned"));
                return Ok(());
            }
            Ok(Err(status)) => {
                exits.push(format!(
                    "exited with {status}:\n{}",
                    tail(&printed_since(offset), 15)
                ));
            }
            Err(e) => {
                let _ = child.lock().expect("not poisoned").kill();
                bail!(
                    "{e:#}; the API server printed:\n{}",
                    tail(&printed_since(offset), 30)
                );
            }
        }
    }
    bail!("the API server did not start again:\n{}", exits.join("\n"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_server_outage_stops_injection_and_loses_no_record() -> anyhow::Result<()> {
    with_namespace("outage", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 4).await?;
        monitoring_settled(&env, &ns, 1).await?;
        let mut serve = Serve::start(&env, setup(&ns, vec![("p.yaml", frequent(&ns))])).await?;
        let journal = serve.dir.path().join("journal.jsonl");
        let intents = |j: &Path| -> anyhow::Result<usize> { Ok(journal_lines(j)?.0.len()) };
        poll(Duration::from_secs(30), "a few experiments", || async {
            Ok((intents(&journal)? >= 3).then_some(()))
        })
        .await?;

        // Frozen for 30 s: renewals time out, the fence passes, nothing is injected.
        let pid = apiserver_pid()?;
        signal(pid, "-STOP")?;
        let frozen = Utc::now();
        // The outage itself (the acceptance asks for 30 s), not a wait for a condition.
        wait_past(frozen + chrono::Duration::seconds(30)).await;
        signal(pid, "-CONT")?;
        let thawed = Utc::now();
        ensure!(
            serve.child.try_wait()?.is_none(),
            "havoc died:\n{}",
            tail(&serve.log(), 30)
        );
        // After the fence (10 s after the last successful renewal, which came before the
        // freeze; 2 s of slack for a start already under way) no intent may start until
        // the API server answers again.
        let fence = frozen + chrono::Duration::seconds(12);
        let (all, _) = journal_lines(&journal)?;
        let during: Vec<&Value> = all
            .iter()
            .filter(|i| ts(&i["startedAt"]).is_ok_and(|t| t > fence && t < thawed))
            .collect();
        ensure!(
            during.is_empty(),
            "injected while the API server was frozen: {during:#?}"
        );
        serve.wait_ready(true).await?;
        let before = intents(&journal)?;
        poll(Duration::from_secs(60), "injecting again", || async {
            Ok((intents(&journal)? > before).then_some(()))
        })
        .await?;

        // Killed and restarted: the same.
        restart_apiserver(&env).await?;
        ensure!(
            serve.child.try_wait()?.is_none(),
            "havoc died:\n{}",
            tail(&serve.log(), 30)
        );
        serve.wait_ready(true).await?;
        let before = intents(&journal)?;
        poll(
            Duration::from_secs(60),
            "injecting again after the restart",
            || async { Ok((intents(&journal)? > before).then_some(())) },
        )
        .await?;
        let (code, _) = serve.stop().await?;
        ensure!(code == Some(0), "exit {code:?}");
        let (intents, finals) = journal_lines(&journal)?;
        all_closed(&intents, &finals)?;
        let web = Api::<Deployment>::namespaced(client.clone(), &ns);
        // Back.
        wait_available(&web, "web", Duration::from_secs(60)).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_one_injector_and_a_pause_to_either_holds_for_both() -> anyhow::Result<()> {
    with_namespace("replicas", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 4).await?;
        monitoring_settled(&env, &ns, 1).await?;
        let lease = format!("havoc-e2e-{}", &ns[ns.len() - 6..]);
        let replica = |pod: &str, leader: bool| Setup {
            lease: Some(lease.clone()),
            pod_name: Some(pod.to_string()),
            wait_leader: leader,
            ..setup(&ns, vec![("p.yaml", frequent(&ns))])
        };
        let mut a = Serve::start(&env, replica("replica-a", true)).await?;
        let mut b = Serve::start(&env, replica("replica-b", false)).await?;
        let ja = a.dir.path().join("journal.jsonl");
        let jb = b.dir.path().join("journal.jsonl");
        // At least 50 scheduled fires, all run (and recorded) by the leader only.
        poll(Duration::from_secs(180), "50 fires", || async {
            Ok((journal_lines(&ja)?.1.len() >= 50).then_some(()))
        })
        .await?;
        ensure!(
            !jb.exists() || journal_lines(&jb)?.1.is_empty(),
            "the follower recorded (and so ran) experiments"
        );
        // The API server agrees: every Event of an injection names the leader.
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
        let reporters: BTreeSet<String> = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("ChaosInjected"))
            .filter_map(|e| e.reporting_instance)
            .collect();
        ensure!(
            reporters.len() == 1 && reporters.iter().all(|r| r == "replica-a"),
            "injected by {reporters:?}"
        );

        // A pause sent to the follower stops the leader.
        let (status, body) = b.pause("sent to the follower").await?;
        ensure!(status == 200, "{status} {body}");
        let paused_at = Utc::now() + chrono::Duration::seconds(2);
        poll(
            Duration::from_secs(20),
            "the leader skips for the pause",
            || async {
                let skipped = journal_lines(&ja)?.1.into_iter().any(|r| {
                    r["reason"]
                        .as_str()
                        .is_some_and(|s| s.contains("sent to the follower"))
                });
                Ok(skipped.then_some(()))
            },
        )
        .await?;
        let late: Vec<Value> = journal_lines(&ja)?
            .0
            .into_iter()
            .filter(|i| ts(&i["startedAt"]).is_ok_and(|t| t > paused_at))
            .collect();
        ensure!(late.is_empty(), "injected while paused: {late:#?}");

        // It survives restarting both.
        a.kill().await?;
        b.kill().await?;
        a.respawn()?;
        b.respawn()?;
        a.wait_ready(false).await?;
        b.wait_ready(false).await?;
        poll(Duration::from_secs(60), "a leader again", || async {
            let la = a.get("/api/v1/policies").await?["leader"] == true;
            let lb = b.get("/api/v1/policies").await?["leader"] == true;
            Ok((la || lb).then_some(()))
        })
        .await?;
        for s in [&a, &b] {
            let p = s.get("/api/v1/policies").await?;
            ensure!(
                p["paused"]["reason"] == "sent to the follower",
                "the pause survived the restart: {p:#}"
            );
        }
        let restarted = Utc::now();
        // For 5 s (several fires of the frequent policy) no replica starts anything.
        assert_quiet_for(
            Duration::from_secs(5),
            "nothing injected while paused after the restart",
            || async {
                for j in [&ja, &jb] {
                    if !j.exists() {
                        continue;
                    }
                    let late: Vec<Value> = journal_lines(j)?
                        .0
                        .into_iter()
                        .filter(|i| ts(&i["startedAt"]).is_ok_and(|t| t > restarted))
                        .collect();
                    ensure!(
                        late.is_empty(),
                        "injected while paused after the restart: {late:#?}"
                    );
                }
                Ok(true)
            },
        )
        .await?;
        a.resume().await?;
        Ok(())
    })
    .await
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("havoc-e2e-fs-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()?
            .success();
        if !ok {
            bail!(
                "cannot mount a tmpfs at {} (this test needs root)",
                dir.display()
            );
        }
        Ok(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_journal_file_system_pauses_chaos_and_space_resumes_it() -> anyhow::Result<()> {
    with_namespace("fullfs", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 4).await?;
        monitoring_settled(&env, &ns, 1).await?;
        let fs = Tmpfs::mount("64k")?;
        let mut serve = Serve::start(&env, setup(&ns, vec![("p.yaml", frequent(&ns))])).await?;
        // The journal moves to the small file system: restart havoc there.
        serve.kill().await?;
        let journal = fs.0.join("journal.jsonl");
        std::os::unix::fs::symlink(&journal, serve.dir.path().join("journal.tmp"))?;
        std::fs::rename(
            serve.dir.path().join("journal.tmp"),
            serve.dir.path().join("journal.jsonl"),
        )?;
        serve.respawn()?;
        serve.wait_ready(true).await?;
        poll(
            Duration::from_secs(30),
            "records on the small file system",
            || async { Ok((journal_lines(&journal)?.1.len() >= 2).then_some(())) },
        )
        .await?;
        // Fill it.
        let filler = fs.0.join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler)?;
            let chunk = vec![b'x'; 1024];
            while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
        }
        let paused = poll(
            Duration::from_secs(30),
            "chaos paused for the journal",
            || async {
                // The skips cannot reach the full journal: the API counts them per policy.
                let policies = serve.get("/api/v1/policies").await?;
                Ok(policies["policies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| p["skips"]["last"].clone())
                    .find(|last| last["reasonCode"] == "journalUnwritable"))
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", tail(&serve.log(), 20)))?;
        ensure!(
            paused["reason"]
                .as_str()
                .is_some_and(|s| s.contains("No space left")),
            "the reason names the disk: {paused:#}"
        );
        // No partial record: every line parses.
        journal_lines(&journal)?;
        std::fs::remove_file(&filler)?;
        let freed = Utc::now();
        poll(
            Duration::from_secs(60),
            "chaos resumes when space returns",
            || async {
                let (intents, _) = journal_lines(&journal)?;
                Ok(intents
                    .iter()
                    .any(|i| ts(&i["startedAt"]).is_ok_and(|t| t > freed))
                    .then_some(()))
            },
        )
        .await?;
        let (code, _) = serve.stop().await?;
        ensure!(code == Some(0), "exit {code:?}");
        let (intents, finals) = journal_lines(&journal)?;
        all_closed(&intents, &finals)?;
        drop(fs);
        Ok(())
    })
    .await
}

/// Sends SIGCONT to the API server when dropped: a test that fails while it is frozen
/// never leaves the cluster frozen for the tests after it.
struct Thaw(u32);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = signal(self.0, "-CONT");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_answers_at_once_while_the_api_server_is_frozen() -> anyhow::Result<()> {
    with_namespace("stop-frozen", move |env, client, ns| async move {
        deployment(&client, &ns, "web", 2).await?;
        let web = target("Deployment", &ns, "app=web");
        let policy = fixtures::manual("hold", &ns, web, json!({"scale": {"replicas": 0}}), "5m")
            .alert_matchers(&["namespace=\"havoc-e2e-nowhere\""]);
        let serve = Serve::start(&env, setup(&ns, vec![("p.yaml", policy.yaml())])).await?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let id = serve.run_now("hold").await?;
        wait_replicas(&api, "web", 0, Duration::from_secs(20)).await?;

        let pid = apiserver_pid()?;
        signal(pid, "-STOP")?;
        let thaw = Thaw(pid);
        let frozen = Utc::now();
        let asked = std::time::Instant::now();
        let (status, body) = serve.emergency_stop("e2e: frozen API server").await?;
        let answered = asked.elapsed();
        // The outage itself (the acceptance asks for 10 s), not a wait for a condition.
        wait_past(frozen + chrono::Duration::seconds(10)).await;
        drop(thaw);
        eprintln!(
            "stop answered in {:.2} s with the API server frozen",
            answered.as_secs_f64()
        );
        ensure!(
            answered < Duration::from_secs(2),
            "the stop waited for the API server: {answered:?}"
        );
        ensure!(
            status == 202 && body["written"] == false && body["reverted"][0] == id.as_str(),
            "cut short first, the pause still on its way: {status} {body}"
        );
        ensure!(
            body["all"]["reason"] == "e2e: frozen API server",
            "obeyed at once: {body}"
        );
        // Once it answers again: the pause lands, the fault is reverted.
        let lease = serve_lease(&serve)?;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "havoc-system");
        poll(
            Duration::from_secs(60),
            "the pause in the shared state",
            || async {
                let cm = cms.get(&format!("{lease}-state")).await?;
                let text = cm
                    .data
                    .unwrap_or_default()
                    .get("state.json")
                    .cloned()
                    .unwrap_or_default();
                Ok(text.contains("e2e: frozen API server").then_some(()))
            },
        )
        .await?;
        // Restored.
        wait_replicas(&api, "web", 2, Duration::from_secs(60)).await?;
        let r = serve.record(&id, Duration::from_secs(60)).await?;
        ensure!(r["reasonCode"] == "stopped", "{r:#}");
        serve.resume().await?;
        Ok(())
    })
    .await
}

/// The Lease of a test's `havoc serve` (its config's leaderElection.lease).
fn serve_lease(serve: &Serve) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(serve.dir.path().join("havoc.yaml"))?;
    let lease = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("lease:"))
        .context("a lease in the config")?;
    Ok(lease.trim().trim_matches('"').to_string())
}

/// One mutation in the API server's audit log.
#[derive(Debug)]
struct Mutation {
    user: String,
    at: DateTime<Utc>,
    what: String,
}

/// The chaos mutations (not Events, Leases, the state ConfigMap or access reviews) of
/// `users` in the audit log, from `since`.
fn mutations(log: &Path, users: &[&str], since: DateTime<Utc>) -> anyhow::Result<Vec<Mutation>> {
    let text = std::fs::read_to_string(log)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let user = e["user"]["username"].as_str().unwrap_or_default();
        if !users.contains(&user) || e["stage"] != "ResponseComplete" {
            continue;
        }
        let verb = e["verb"].as_str().unwrap_or_default();
        let resource = e["objectRef"]["resource"].as_str().unwrap_or_default();
        let chaos = matches!(
            resource,
            "pods"
                | "nodes"
                | "deployments"
                | "statefulsets"
                | "networkpolicies"
                | "virtualservices"
        );
        if !chaos || !matches!(verb, "create" | "update" | "patch" | "delete") {
            continue;
        }
        let at: DateTime<Utc> = e["requestReceivedTimestamp"]
            .as_str()
            .context("requestReceivedTimestamp")?
            .parse()?;
        if at < since {
            continue;
        }
        out.push(Mutation {
            user: user.to_string(),
            at,
            what: format!(
                "{verb} {resource}{} {}/{} ({})",
                e["objectRef"]["subresource"]
                    .as_str()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default(),
                e["objectRef"]["namespace"].as_str().unwrap_or("-"),
                e["objectRef"]["name"].as_str().unwrap_or("-"),
                e["responseStatus"]["code"]
            ),
        });
    }
    out.sort_by_key(|m| m.at);
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_write_of_a_demoted_leader_lands_after_its_successor_took_over() -> anyhow::Result<()> {
    with_node_pool("fence", 2, move |env, client, ns, nodes| async move {
        // The API server's audit log records the requests of ServiceAccounts in this
        // namespace (deploy/local/kwok/audit-policy.yaml): one identity per replica.
        let home = "havoc-footprint";
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": home}}))?;
        match Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &n)
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            other => drop(other?),
        }
        let lease = format!("fence-{}", &ns[ns.len() - 6..]);
        let a =
            Identity::create(&client, home, &format!("{lease}-a"), &["nodeDrain"], &lease).await?;
        let b =
            Identity::create(&client, home, &format!("{lease}-b"), &["nodeDrain"], &lease).await?;
        let result = fence(&env, &client, &ns, &nodes[0], &a, &b).await;
        a.delete(&client).await?;
        b.delete(&client).await?;
        let _ = cordon(&client, &nodes[0], false).await;
        result
    })
    .await
}

/// The drain of `victim` (of the pool named `ns`) by replica `a`, then `b`.
async fn fence(
    env: &Env,
    client: &kube::Client,
    ns: &str,
    victim: &str,
    a: &Identity,
    b: &Identity,
) -> anyhow::Result<()> {
    let audit = PathBuf::from(env.get("HAVOC_AUDIT_LOG")?);
    let since = Utc::now();
    // A drain that keeps evicting: every eviction is refused by the budget and retried.
    deployment_pinned(client, ns, "held", 2, ns, victim).await?;
    disruption_budget(client, ns, "held", 2).await?;
    let fault = json!({"nodeDrain": {"timeout": "5m"}});
    let drain = fixtures::manual("drain", ns, node_named(victim), fault, "5m").blind();
    let setup = |identity: &'static Identity, pod: &str, leader: bool| Setup {
        dry_run: false,
        extra: json!({"limits": {"minAvailableReplicas": 0, "maxUnschedulableNodes": 5}}),
        receivers: &["hook"],
        policies: vec![("drain.yaml", drain.yaml())],
        identity: Some(identity.setup()),
        lease: Some(identity.lease.clone()),
        pod_name: Some(pod.to_string()),
        wait_leader: leader,
        ..Setup::default()
    };
    // Leaked for the setups' lifetime ('static identities in a test process are fine).
    let a: &'static Identity = Box::leak(Box::new(a.clone()));
    let b: &'static Identity = Box::leak(Box::new(b.clone()));
    let mut first = Serve::start(env, setup(a, "fence-a", true)).await?;
    let mut second = Serve::start(env, setup(b, "fence-b", false)).await?;
    // The audit log's names of the two replicas.
    let users = [a, b].map(|i| format!("system:serviceaccount:{}:{}", i.namespace, i.name));
    let outcome = handover(
        client,
        victim,
        &audit,
        since,
        &mut first,
        &mut second,
        &users,
    )
    .await;
    // A failure shows what both replicas said (their logs go with their directories).
    outcome.with_context(|| {
        format!(
            "the first replica's log:\n{}\nthe second replica's log:\n{}",
            tail(&first.log(), 60),
            tail(&second.log(), 60)
        )
    })
}

/// The drain started by `first`, the API server slowed, `second` taking over: checks in the
/// audit log (where they are `users`) that no write of `first` landed after `second`'s first.
async fn handover(
    client: &kube::Client,
    victim: &str,
    audit: &Path,
    since: DateTime<Utc>,
    first: &mut Serve,
    second: &mut Serve,
    [ua, ub]: &[String; 2],
) -> anyhow::Result<()> {
    let nodes_api: Api<Node> = Api::all(client.clone());
    /// Whether the victim is cordoned with havoc's record.
    async fn cordoned(nodes: &Api<Node>, victim: &str) -> anyhow::Result<bool> {
        let n = nodes.get(victim).await?;
        Ok(unschedulable(&n) && has_record(&n))
    }
    /// The first runs the drain; until its cordon is on the victim.
    async fn drain(first: &Serve, nodes: &Api<Node>, victim: &str) -> anyhow::Result<()> {
        first.run_now("drain").await?;
        poll(
            Duration::from_secs(20),
            "the victim cordoned by the first",
            || async { Ok(cordoned(nodes, victim).await?.then_some(())) },
        )
        .await
    }
    drain(first, &nodes_api, victim).await?;
    // The API server slowed in bursts (3 s frozen, 2 s answering) while the drain retries
    // its evictions: requests time out, arrive late, renewals fail.
    let pid = apiserver_pid()?;
    for _ in 0..4 {
        signal(pid, "-STOP")?;
        let thaw = Thaw(pid);
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(thaw);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    async fn led(s: &Serve) -> anyhow::Result<bool> {
        Ok(s.get("/api/v1/policies").await?["leader"] == true)
    }
    let first_leads = poll(
        Duration::from_secs(30),
        "a leader after the bursts",
        || async {
            let (one, two) = (led(first).await?, led(second).await?);
            Ok((one != two).then_some(one))
        },
    )
    .await?;
    // A burst may outlast the first's fence while its Lease, renewed 10-15 s before, is
    // still its own: the first then ends its drain (demoted, the revert not sent), leads
    // again at its next renewal and reverts its own cordon as an orphan. That is right,
    // but leaves the takeover below nothing to hand over: the first drains again.
    if first_leads && !cordoned(&nodes_api, victim).await? {
        eprintln!(
            "fence: the first's fence lapsed in a burst and, leading again, it reverted its own cordon: draining again"
        );
        drain(first, &nodes_api, victim).await?;
    }
    // The first replica is starved (its process stopped) until the second takes over,
    // then goes on where it was: mid-drain, its fence long gone.
    let first_pid = first.child.id().context("first alive")?;
    if !led(second).await.unwrap_or(false) {
        signal(first_pid, "-STOP")?;
        let took_over = poll(Duration::from_secs(60), "the second leads", || async {
            Ok(led(second).await?.then_some(()))
        })
        .await;
        let back = signal(first_pid, "-CONT");
        took_over?;
        back?;
    }
    // The successor's sweep reverts the dead leader's cordon: its first mutation.
    poll(
        Duration::from_secs(60),
        "uncordoned by the second",
        || async {
            let n = nodes_api.get(victim).await?;
            Ok((!unschedulable(&n) && !has_record(&n)).then_some(()))
        },
    )
    .await?;
    // Time for the first to do whatever it would (its drain retries every 2 s).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let _ = first.stop().await;
    let _ = second.stop().await;
    let all = poll(Duration::from_secs(30), "the audit log written", || async {
        let m = mutations(audit, &[ua, ub], since)?;
        Ok(m.iter().any(|m| m.user == *ub).then_some(m))
    })
    .await?;
    let takeover = all
        .iter()
        .find(|m| m.user == *ub)
        .context("the second's first mutation")?;
    let late: Vec<&Mutation> = all
        .iter()
        .filter(|m| m.user == *ua && m.at > takeover.at)
        .collect();
    let before = all
        .iter()
        .filter(|m| m.user == *ua && m.at <= takeover.at)
        .count();
    eprintln!(
        "fence: the first replica made {before} mutation(s) before the second's first ({} at {}), {} after",
        takeover.what,
        takeover.at,
        late.len()
    );
    ensure!(
        late.is_empty(),
        "a demoted leader's writes landed after its successor took over: {late:#?}"
    );
    ensure!(
        before >= 1,
        "the first replica did mutate (the cordon): {all:#?}"
    );
    // The first's record of its drain says what happened: demoted, its revert not sent
    // (handed over) or found done by the next leader (not ours any more).
    let drains: Vec<Value> = first
        .journal()?
        .into_iter()
        .filter(|r| r["policy"] == "drain" && r["verdict"] == "errored")
        .collect();
    let last = drains
        .last()
        .context("the first's errored drain in its journal")?;
    let reason = last["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("the next leader reverts"),
        "the demoted drain's reason: {last:#}"
    );
    let reverts: Vec<&Value> = last["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| &t["revert"]["result"])
        .collect();
    ensure!(
        reverts
            .iter()
            .all(|r| *r == "handedOver" || *r == "notOurs"),
        "the demoted drain's reverts: {last:#}"
    );
    eprintln!("fence: the first's record: {reason}; reverts {reverts:?}");
    Ok(())
}
