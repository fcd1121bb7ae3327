//! havoc when what it depends on fails: the API server frozen (SIGSTOP) for 30 s, then
//! killed and restarted from its own command line; two replicas over many scheduled
//! fires (one injector at a time, a pause sent to either holds for both and survives
//! restarting both); the journal on a full file system.
//!
//! These stop the API server and mount file systems: run them alone (tests/run does).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, Utc};
use havoc_e2e::{fixtures, serve::*, workloads::*, *};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{Value, json};

/// A live pod-delete policy firing every 1-2 s on `app=web` in `ns`.
fn frequent(ns: &str) -> String {
    fixtures::policy("frequent")
        .pods(ns, "app=web")
        .interval("1s", "2s")
        .duration("1s")
        .settle("0s")
        .alert_matchers(&["namespace=\"havoc-e2e-nowhere\""])
        .on_deviation("continue")
        .yaml()
}

fn setup<'a>(ns: &str, policies: Vec<(&'a str, String)>) -> Setup<'a> {
    Setup {
        dry_run: true,
        extra: json!({"liveNamespaces": [ns], "limits": {"minAvailableReplicas": 0}}),
        receivers: &["hook"],
        policies,
        ..Setup::default()
    }
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
        let offset = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
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
    let env = Env::load()?;
    with_namespace("outage", move |client, ns| async move {
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
        wait_for_object(
            web,
            "web",
            deployment_available(),
            Duration::from_secs(60),
            "web back",
        )
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_one_injector_and_a_pause_to_either_holds_for_both() -> anyhow::Result<()> {
    let env = Env::load()?;
    with_namespace("replicas", move |client, ns| async move {
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
        let (status, body) = b
            .post(
                "/api/v1/pause",
                Some(TOKEN),
                json!({"reason": "sent to the follower"}),
            )
            .await?;
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
        a.post("/api/v1/resume", Some(TOKEN), json!({})).await?;
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
    let env = Env::load()?;
    with_namespace("fullfs", move |client, ns| async move {
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
            while f.write_all(&chunk).and_then(|_| f.sync_data()).is_ok() {}
        }
        let paused = poll(
            Duration::from_secs(30),
            "chaos paused for the journal",
            || async {
                let records = serve.records().await?;
                Ok(records
                    .into_iter()
                    .find(|r| r["reasonCode"] == "journalUnwritable"))
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
