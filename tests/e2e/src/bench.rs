//! What the benchmarks (`src/bin`, run by `tests/bench/*`) measure with: a process's
//! memory and CPU time from `/proc`, counters of a Prometheus exposition, the API server's
//! audit log, percentiles, and the rollout reaction (completed rollout -> injected fault)
//! that both `rollout-latency` and `footprint` report. Programs, not tests: they assert
//! nothing about speed, they measure and print.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};

use crate::{deployment_available, fixtures, poll, serve::Serve, serve::tail, wait_for_object};

/// Memory and CPU of one process.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    /// Resident set size now.
    pub rss_kib: u64,
    /// The highest resident set size since the process started (`VmHWM`).
    pub peak_kib: u64,
    /// User plus system CPU time since the process started.
    pub cpu_s: f64,
}

/// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn proc_stat(pid: u32) -> anyhow::Result<ProcStat> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces) in parentheses; utime and
    // stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    Ok(ProcStat {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
        cpu_s: ticks / clock_ticks(),
    })
}

/// CPU time of a process to the nanosecond: the sum over its threads of their time on a
/// CPU (`/proc/PID/task/TID/schedstat`), each thread at the last value seen, so that a
/// thread that ended still counts (all but what it spent after the last [`update`]).
///
/// [`update`]: ThreadCpu::update
#[derive(Debug, Default)]
pub struct ThreadCpu {
    ns: BTreeMap<u32, u64>,
}

impl ThreadCpu {
    /// Reads every thread of `pid` now; returns the seconds of CPU of every thread seen.
    pub fn update(&mut self, pid: u32) -> anyhow::Result<f64> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .with_context(|| format!("process {pid} is gone"))?;
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread may end between the listing and the read.
            let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
                continue;
            };
            if let Some(ns) = text.split_whitespace().next().and_then(|n| n.parse().ok()) {
                let seen = self.ns.entry(tid).or_insert(0);
                *seen = (*seen).max(ns);
            }
        }
        Ok(self.ns.values().sum::<u64>() as f64 / 1e9)
    }
}

/// Label values (in the order of `labels`) -> value, for every sample of `name`.
pub type Counters = BTreeMap<Vec<String>, f64>;

/// The samples of counter `name` in a Prometheus text exposition, keyed by the values of
/// `labels`.
pub fn counters(exposition: &str, name: &str, labels: &[&str]) -> Counters {
    let mut out = Counters::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((set, v)) => (set, v),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue, // another metric whose name starts with `name`
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let pairs: BTreeMap<&str, &str> = set
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        let key = labels
            .iter()
            .map(|l| pairs.get(l).copied().unwrap_or_default().to_string())
            .collect();
        *out.entry(key).or_default() += value;
    }
    out
}

/// `after - before`, without the keys that did not change.
pub fn delta(before: &Counters, after: &Counters) -> Counters {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

/// The requests of `user` that the API server received in `[from, to)`, from its audit
/// log (deploy/local/kwok/audit-policy.yaml), as (verb, resource[/subresource]) -> count,
/// classified as havoc classifies its own (`discovery` for the API listings). A watch
/// is logged when it ends: read the log after the client has stopped.
pub fn audited_requests(
    log: &Path,
    user: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Counters> {
    let text = std::fs::read_to_string(log)
        .with_context(|| format!("reading the API server's audit log {}", log.display()))?;
    let mut out = Counters::new();
    for event in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        if event["user"]["username"] != user || event["stage"] != "ResponseComplete" {
            continue;
        }
        let Some(received) = event["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        else {
            continue;
        };
        let received = received.to_utc();
        if received < from || received >= to {
            continue;
        }
        let verb = event["verb"].as_str().unwrap_or("other");
        let key = match event["objectRef"]["resource"].as_str() {
            Some(r) => {
                let resource = match event["objectRef"]["subresource"].as_str() {
                    Some(sub) => format!("{r}/{sub}"),
                    None => r.to_string(),
                };
                vec![verb.to_string(), resource]
            }
            // /api, /apis, /apis/GROUP/VERSION: havoc counts them as listings.
            None => vec!["list".to_string(), "discovery".to_string()],
        };
        *out.entry(key).or_default() += 1.0;
    }
    Ok(out)
}

/// Per verb: the sum over resources.
pub fn by_verb(c: &Counters) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (k, v) in c {
        *out.entry(k.first().cloned().unwrap_or_default())
            .or_default() += v;
    }
    out
}

/// The `p` quantile (0..=1, nearest rank) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A Deployment `web` of 4 pods that roll over all at once (maxSurge 100%), Ready about
/// a second after they start: the workload whose rollouts [`measure_reaction`] makes.
pub async fn rollout_workload(client: &Client, ns: &str) -> anyhow::Result<Api<Deployment>> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": "web"}, "annotations": {
                    "pod-ready.stage.kwok.x-k8s.io/delay": "1s",
                    "pod-ready.stage.kwok.x-k8s.io/jitter-delay": "1s"}},
                "spec": {"terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}}}
    }))?;
    api.create(&PostParams::default(), &d).await?;
    wait_for_object(
        api.clone(),
        "web",
        deployment_available(),
        Duration::from_secs(120),
        "web available",
    )
    .await?;
    Ok(api)
}

/// The policy that reacts to every completed rollout in `ns` at once (`delay: 0s`,
/// `cooldown: 0s`) with a dry-run pod delete of `web`.
pub fn reaction_policy(name: &str, ns: &str) -> String {
    fixtures::policy(name)
        .on_rollout(
            json!({"namespaces": [ns], "selector": "app=web", "delay": "0s", "cooldown": "0s"}),
        )
        .pods(ns, "app=web")
        .set("/dryRun", json!(true))
        .duration("1s")
        .settle("1s")
        .yaml()
}

/// Rollout reaction times in milliseconds, sorted.
#[derive(Debug, Clone, Default)]
pub struct Reaction {
    /// From the moment an independent watcher here received the status update that
    /// completed the rollout to havoc's `injectedAt`.
    pub latencies_ms: Vec<f64>,
    /// From the completion havoc itself noted (`trigger.completedAt`) to `injectedAt`.
    pub internal_ms: Vec<f64>,
}

impl Reaction {
    pub fn summary(&self) -> String {
        let l = &self.latencies_ms;
        let i = &self.internal_ms;
        format!(
            "n={} p50={:.1}ms p95={:.1}ms max={:.1}ms (havoc internal: p50={:.1}ms p95={:.1}ms max={:.1}ms)",
            l.len(),
            percentile(l, 0.5),
            percentile(l, 0.95),
            l.last().copied().unwrap_or(f64::NAN),
            percentile(i, 0.5),
            percentile(i, 0.95),
            i.last().copied().unwrap_or(f64::NAN),
        )
    }
}

fn complete(d: &Deployment) -> bool {
    let (Some(spec), Some(st)) = (&d.spec, &d.status) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    st.observed_generation >= d.metadata.generation
        && st.updated_replicas.unwrap_or(0) >= want
        && st.replicas.unwrap_or(0) <= st.updated_replicas.unwrap_or(0)
        && st.available_replicas.unwrap_or(0) >= st.updated_replicas.unwrap_or(0)
}

/// Makes `rollouts` rollouts of `web` (see [`rollout_workload`]), one after the other,
/// while `serve` runs [`reaction_policy`], and measures how long each took to become an
/// injected fault. `print`: one line per rollout.
///
/// An independent watcher in this process notes when it receives the status update that
/// completes each rollout (within a few ms of the API server writing it; havoc's watcher
/// sees the same event). havoc's record gives `injectedAt`, stamped when the (dry-run)
/// delete returned.
pub async fn measure_reaction(
    api: &Api<Deployment>,
    serve: &Serve,
    rollouts: usize,
    print: bool,
) -> anyhow::Result<Reaction> {
    let revision = |d: &Deployment| -> usize {
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .and_then(|r| r.parse().ok())
            .unwrap_or(1)
    };
    let first = revision(&api.get("web").await?) + 1;
    let seen: Arc<Mutex<BTreeMap<String, DateTime<Utc>>>> = Arc::default();
    let observer = {
        let (api, seen) = (api.clone(), seen.clone());
        tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default().fields("metadata.name=web"))
                .default_backoff()
                .applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(d)) = stream.next().await {
                let now = Utc::now();
                if complete(&d)
                    && let Some(rev) = d.annotations().get("deployment.kubernetes.io/revision")
                {
                    seen.lock().expect("lock").entry(rev.clone()).or_insert(now);
                }
            }
        })
    };
    let mut out = Reaction::default();
    let result: anyhow::Result<()> = async {
        for i in 0..rollouts {
            let rev = (first + i).to_string();
            // Alternating images: a return to an older template is a new revision too.
            let image = format!("registry.k8s.io/pause:3.{}", if (first + i) % 2 == 0 { 9 } else { 10 });
            let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}});
            api.patch("web", &PatchParams::default(), &Patch::Strategic(patch)).await?;
            let record = poll(Duration::from_secs(120), &format!("experiment for revision {rev}"), || async {
                Ok(serve.records().await?.into_iter().find(|r| {
                    r["trigger"]["kind"] == "rollout" && r["trigger"]["revision"] == rev.as_str()
                }))
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\nlog tail:\n{}", tail(&serve.log(), 30)))?;
            let observed = *seen
                .lock()
                .expect("lock")
                .get(&rev)
                .context("the observer missed the completion")?;
            let ts = |v: &Value| -> anyhow::Result<DateTime<Utc>> {
                Ok(DateTime::parse_from_rfc3339(v.as_str().context("timestamp")?)?.to_utc())
            };
            let injected = ts(&record["injectedAt"]).with_context(|| format!("{record:#}"))?;
            let completed = ts(&record["trigger"]["completedAt"])?;
            let ms = (injected - observed).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            let inner = (injected - completed).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            if print {
                println!(
                    "rollout {:2} revision {rev}: injected {ms:7.1} ms after the completing update (havoc internal {inner:6.1} ms)",
                    i + 1
                );
            }
            out.latencies_ms.push(ms);
            out.internal_ms.push(inner);
            // The next rollout starts right away; completion is judged on the whole
            // Deployment.
        }
        Ok(())
    }
    .await;
    observer.abort();
    result?;
    out.latencies_ms.sort_by(f64::total_cmp);
    out.internal_ms.sort_by(f64::total_cmp);
    ensure!(out.latencies_ms.len() == rollouts);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_by_the_chosen_labels() {
        let text = "# HELP x\nhavoc_kube_requests_total{verb=\"get\",resource=\"pods\"} 3\n\
                    havoc_kube_requests_total{resource=\"pods\",verb=\"list\"} 2\n\
                    havoc_kube_requests_total_other{verb=\"get\"} 9\n\
                    havoc_kube_requests_total{verb=\"get\",resource=\"leases\"} 4\n";
        let c = counters(text, "havoc_kube_requests_total", &["verb", "resource"]);
        assert_eq!(c[&vec!["get".to_string(), "pods".to_string()]], 3.0);
        assert_eq!(c[&vec!["list".to_string(), "pods".to_string()]], 2.0);
        assert_eq!(c.len(), 3);
        let by = counters(text, "havoc_kube_requests_total", &["verb"]);
        assert_eq!(by[&vec!["get".to_string()]], 7.0);
        let before = counters(
            "havoc_kube_requests_total{verb=\"get\",resource=\"pods\"} 1\n",
            "havoc_kube_requests_total",
            &["verb", "resource"],
        );
        let d = delta(&before, &c);
        assert_eq!(d[&vec!["get".to_string(), "pods".to_string()]], 2.0);
    }

    #[test]
    fn audit_events_are_counted_in_the_window_for_the_user_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("audit.log");
        let ev = |user: &str, verb: &str, res: Value, at: &str| {
            json!({"stage": "ResponseComplete", "user": {"username": user}, "verb": verb,
                   "objectRef": res, "requestReceivedTimestamp": at})
            .to_string()
        };
        let me = "system:serviceaccount:a:b";
        let lines = [
            ev(
                me,
                "delete",
                json!({"resource": "pods"}),
                "2026-01-01T00:00:01.5Z",
            ),
            ev(
                me,
                "create",
                json!({"resource": "pods", "subresource": "eviction"}),
                "2026-01-01T00:00:02Z",
            ),
            ev(
                "someone",
                "delete",
                json!({"resource": "pods"}),
                "2026-01-01T00:00:02Z",
            ),
            ev(me, "get", Value::Null, "2026-01-01T00:00:03Z"),
            ev(
                me,
                "delete",
                json!({"resource": "pods"}),
                "2026-01-01T00:00:09Z",
            ),
        ];
        std::fs::write(&log, lines.join("\n")).expect("write");
        let t = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").to_utc();
        let c = audited_requests(
            &log,
            me,
            t("2026-01-01T00:00:01Z"),
            t("2026-01-01T00:00:05Z"),
        )
        .expect("read");
        let k = |a: &str, b: &str| vec![a.to_string(), b.to_string()];
        assert_eq!(c.get(&k("delete", "pods")), Some(&1.0));
        assert_eq!(c.get(&k("create", "pods/eviction")), Some(&1.0));
        assert_eq!(c.get(&k("list", "discovery")), Some(&1.0));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 11.0);
        assert_eq!(percentile(&v, 0.95), 19.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
