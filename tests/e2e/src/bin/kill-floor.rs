//! Benchmark helper: chaoskube's work, and nothing else, written with havoc's stack (tokio,
//! kube-rs, rustls): every interval, list the pods of one namespace that match a label
//! selector, delete one of them, and create an Event on it — the three requests per kill
//! chaoskube v0.39.1 `--client-namespace-scope` makes (the API server's audit log,
//! tests/bench/footprint). No leader election, no records, no health gate.
//!
//! It answers two questions for issue 27 (`tests/bench/cpu-split`, variants `floor` and
//! `floor-required`): what a pod kill costs in Rust when it does only what the leanest
//! peer does; and, with `--required`, what it costs when it also does, the plainest way,
//! what havoc's safety rules and health gate ask of every kill (../shared/DESIGN.md,
//! section 5), but nothing else:
//!
//! - a Lease renewed every 4 s (one write; havoc's `RENEW_PERIOD`);
//! - before the delete: Alertmanager read once (the gate: alerts firing skip the kill), a
//!   journal line written and `fdatasync`ed, the experiment's record created in the
//!   cluster (a ConfigMap, about 1 KB; a `HavocExperiment` is about 1.8 KB);
//! - after it: the 1 s hold and 2 s settle, Alertmanager read twice (during and after),
//!   the record completed (a merge patch), the final journal line synced.
//!
//! The targets are still found by a list at each kill, as chaoskube does (havoc keeps a
//! watch instead). What havoc spends above `floor-required` is its own overhead; what
//! `floor-required` spends above half of chaoskube's is the price of the rules, not of
//! the code.
//! `--without lease,health,sync,record` leaves pieces of it out, to price each (`sync`:
//! the journal lines are written but not `fdatasync`ed).
//!
//!   kill-floor --kubeconfig F --namespace NS --selector app=victim [--interval-secs 10]
//!              [--current-thread] [--required --alertmanager URL --journal FILE
//!              [--without PIECE,...]]
//!
//! Prints one line per kill (`killed NS/NAME`) on standard output.

use std::{io::Write, time::Duration};

use anyhow::{Context, bail};
use k8s_openapi::{
    api::{
        coordination::v1::{Lease, LeaseSpec},
        core::v1::{ConfigMap, Pod},
    },
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client, Config, Resource,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use rand::seq::IndexedRandom;

struct Args {
    kubeconfig: String,
    namespace: String,
    selector: String,
    interval: Duration,
    current_thread: bool,
    /// `--required`: the Alertmanager to read and the journal to append to.
    required: Option<(String, String)>,
    /// The pieces of `--required` done (`--without` leaves them out).
    pieces: Pieces,
}

/// The pieces of `--required`, each on unless `--without` names it.
#[derive(Clone, Copy)]
struct Pieces {
    lease: bool,
    health: bool,
    /// The journal lines `fdatasync`ed (they are written either way).
    sync: bool,
    record: bool,
}

impl Pieces {
    const ALL: Pieces = Pieces {
        lease: true,
        health: true,
        sync: true,
        record: true,
    };

    /// All but those `list` (`lease,health`) names.
    fn without(list: &str) -> anyhow::Result<Self> {
        let mut p = Pieces::ALL;
        for piece in list.split(',').filter(|p| !p.is_empty()) {
            match piece {
                "lease" => p.lease = false,
                "health" => p.health = false,
                "sync" => p.sync = false,
                "record" => p.record = false,
                odd => bail!("--without: no piece {odd} (lease, health, sync, record)"),
            }
        }
        Ok(p)
    }
}

fn args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let (mut kubeconfig, mut namespace, mut selector) = (None, None, None);
    let (mut interval, mut current_thread) = (Duration::from_secs(10), false);
    let (mut required, mut alertmanager, mut journal) = (false, None, None);
    let mut pieces = Pieces::ALL;
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kubeconfig" => kubeconfig = Some(value()?),
            "--namespace" => namespace = Some(value()?),
            "--selector" => selector = Some(value()?),
            "--interval-secs" => interval = Duration::from_secs(value()?.parse()?),
            "--current-thread" => current_thread = true,
            "--required" => required = true,
            "--alertmanager" => alertmanager = Some(value()?),
            "--journal" => journal = Some(value()?),
            "--without" => pieces = Pieces::without(&value()?)?,
            _ => bail!("unknown argument {flag}"),
        }
    }
    Ok(Args {
        kubeconfig: kubeconfig.context("--kubeconfig is required")?,
        namespace: namespace.context("--namespace is required")?,
        selector: selector.context("--selector is required")?,
        interval,
        current_thread,
        required: if required {
            Some((
                alertmanager.context("--required needs --alertmanager")?,
                journal.context("--required needs --journal")?,
            ))
        } else {
            None
        },
        pieces,
    })
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    havoc_e2e::install_crypto_provider();
    let runtime = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        // havoc's runtime: two workers on this machine's two cores
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&args.kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    config.default_retry = false; // as havoc's clients
    let client = Client::try_from(config)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &args.namespace);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "kill-floor".into(),
            instance: None,
        },
    );
    let mut required = match &args.required {
        Some((alertmanager, journal)) => {
            Some(Required::start(&client, &args, alertmanager, journal).await?)
        }
        None => None,
    };
    let list = ListParams::default().labels(&args.selector);
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is at once; chaoskube waits an interval too
    let mut kills = 0u64;
    loop {
        tick.tick().await;
        let candidates = pods.list(&list).await?.items;
        let Some(victim) = candidates.choose(&mut rand::rng()) else {
            continue;
        };
        let name = victim.metadata.name.clone().unwrap_or_default();
        kills += 1;
        let id = format!("floor-{}-{kills}", std::process::id());
        if let Some(r) = &mut required
            && !r.before(&id, &name).await?
        {
            println!("skipped: alerts firing");
            continue;
        }
        pods.delete(&name, &DeleteParams::default()).await?;
        recorder
            .publish(
                &Event {
                    type_: EventType::Normal,
                    reason: "Killing".into(),
                    note: Some("Pod was killed by kill-floor".into()),
                    action: "Killing".into(),
                    secondary: None,
                },
                &victim.object_ref(&()),
            )
            .await?;
        if let Some(r) = &mut required {
            r.after(&id).await?;
        }
        println!("killed {}/{name}", args.namespace);
    }
}

/// What havoc's rules ask of every kill, done the plainest way (module docs).
struct Required {
    alertmanager: havoc_integrations::alertmanager::Client,
    matchers: Vec<String>,
    journal: std::fs::File,
    records: Api<ConfigMap>,
    namespace: String,
    pieces: Pieces,
}

/// Label of the record ConfigMaps (deleted when the next run starts).
const RECORD_LABEL: &str = "havoc.dev/kill-floor";

impl Required {
    async fn start(
        client: &Client,
        args: &Args,
        alertmanager: &str,
        journal: &str,
    ) -> anyhow::Result<Self> {
        let records: Api<ConfigMap> = Api::namespaced(client.clone(), &args.namespace);
        records
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels(RECORD_LABEL),
            )
            .await?;
        if args.pieces.lease {
            let leases = Api::namespaced(client.clone(), "havoc-system");
            tokio::spawn(async move {
                // a Lease that cannot be renewed ends the run: its cost would be missing
                if let Err(e) = renew(leases).await {
                    eprintln!("the Lease: {e:#}");
                    std::process::exit(1);
                }
            });
        }
        Ok(Required {
            alertmanager: havoc_integrations::alertmanager::Client::new(
                alertmanager,
                Duration::from_secs(2),
            )?,
            matchers: vec![
                r#"severity=~"critical|warning""#.into(),
                format!(r#"namespace="{}""#, args.namespace),
            ],
            journal: std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(journal)?,
            records,
            namespace: args.namespace.clone(),
            pieces: args.pieces,
        })
    }

    fn journal(&mut self, line: &serde_json::Value) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec(line)?;
        bytes.push(b'\n');
        self.journal.write_all(&bytes)?;
        if self.pieces.sync {
            self.journal.sync_data()?;
        }
        Ok(())
    }

    /// Whether no alert fires (havoc's gate: an alert skips the kill, and the verdict of
    /// one that was made reads them again).
    async fn healthy(&self) -> anyhow::Result<bool> {
        if !self.pieces.health {
            return Ok(true);
        }
        Ok(self
            .alertmanager
            .active_alerts(&self.matchers)
            .await?
            .is_empty())
    }

    /// The work before the delete; `false`: the gate refused (alerts firing).
    async fn before(&mut self, id: &str, pod: &str) -> anyhow::Result<bool> {
        if !self.healthy().await? {
            return Ok(false);
        }
        let intent = serde_json::json!({"started": {
            "id": id, "policy": "cpu-split", "fault": "podDelete", "dryRun": false,
            "trigger": {"schedule": "*/10 * * * * *"}, "startedAt": chrono::Utc::now(),
            "targets": [{"kind": "Pod", "namespace": self.namespace, "name": pod}],
            "deadline": chrono::Utc::now(), "endsBy": chrono::Utc::now()}});
        self.journal(&intent)?;
        if self.pieces.record {
            let record = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(id.into()),
                    labels: Some([(RECORD_LABEL.to_string(), "true".to_string())].into()),
                    ..ObjectMeta::default()
                },
                data: Some([("intent".to_string(), intent.to_string())].into()),
                ..ConfigMap::default()
            };
            self.records.create(&PostParams::default(), &record).await?;
        }
        Ok(true)
    }

    async fn after(&mut self, id: &str) -> anyhow::Result<()> {
        tokio::time::sleep(Duration::from_secs(1)).await; // the hold
        let mut passed = self.healthy().await?;
        tokio::time::sleep(Duration::from_secs(2)).await; // the settle
        passed &= self.healthy().await?;
        let last = serde_json::json!({
            "id": id, "verdict": if passed { "passed" } else { "deviated" }, "endedAt": chrono::Utc::now(),
            "alerts": [], "slos": [], "budgets": [], "reverts": [],
            "targets": [{"outcome": "injected"}]});
        if self.pieces.record {
            self.records
                .patch(
                    id,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"data": {"record": last.to_string()}})),
                )
                .await?;
        }
        self.journal(&last)
    }
}

/// Holds the Lease `kill-floor` in havoc-system: renewed every 4 s, one write each.
async fn renew(leases: Api<Lease>) -> anyhow::Result<()> {
    let name = "kill-floor";
    let spec = || LeaseSpec {
        holder_identity: Some(format!("kill-floor-{}", std::process::id())),
        lease_duration_seconds: Some(15),
        renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        ..LeaseSpec::default()
    };
    let mut lease = match leases.get_opt(name).await? {
        Some(l) => l,
        None => {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec()),
            };
            leases.create(&PostParams::default(), &fresh).await?
        }
    };
    loop {
        lease.spec = Some(spec());
        lease.metadata.managed_fields = None;
        lease = leases.replace(name, &PostParams::default(), &lease).await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
}
