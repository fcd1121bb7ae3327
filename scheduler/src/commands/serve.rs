//! `havoc serve`: wires the long-running service together — config, policies (with hot
//! reload), watch caches, leader election, the arbiter and its clock, rollout triggers,
//! the HTTP layer — and shuts it down in order on SIGTERM/SIGINT.
//!
//! Every task belongs to one of three layers, stopped one after the other: the engine
//! (clock, rollout triggers, reload, experiments, Events, notifications), then the watch
//! caches, then the Lease — released last, so that no other replica starts injecting
//! while this one still completes what it holds.

use crate::policy::set::Policies;
use std::{process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::time::Instant;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{EXIT_INVALID, load_config};
use crate::{
    access::ApiReviewer,
    api::{self, App, Readiness},
    cli::ServeArgs,
    client::{self, Purpose},
    engine::{
        annotations::Annotations,
        arbiter::{Arbiter, Parts},
        clock::{Clock, NextFires},
        events::Events,
        experiment::Env,
        health::Health,
        metrics::Metrics,
        notify::Notifier,
        sweeper::{SWEEP_INTERVAL, Sweeper},
    },
    history::{
        History, cluster::ClusterHistory, object::Author, skips::SkipCounter, writer::HistoryWriter,
    },
    journal::{Journal, Rotation},
    leader::{self, Leadership},
    reload::{ReloadStatus, Reloader},
    state::SharedState,
    targets::{Guards, cache::Caches},
    trigger::{RecentTriggers, Rollouts},
};

/// How long the last Grafana annotations may take at shutdown.
const ANNOTATIONS_GRACE: Duration = Duration::from_secs(5);

/// Records kept in memory for the API (the journal file keeps all of them).
pub const JOURNAL_KEEP: usize = 1000;

struct Ready {
    caches: Caches,
    leader: Leadership,
    shared: SharedState,
    history: ClusterHistory,
}

impl Readiness for Ready {
    fn not_ready(&self) -> Vec<String> {
        let mut why = Vec::new();
        if !self.caches.is_synced() {
            why.push("watch caches are not synced".to_string());
        }
        if !self.leader.is_known() {
            why.push("leader election state is not known yet".to_string());
        }
        if self.shared.doc().is_none() {
            why.push("the shared pause state has not been read yet".to_string());
        }
        if !self.history.is_ready() {
            why.push("the experiment history has not been read yet".to_string());
        }
        why
    }
}

/// This replica's name in the experiment objects it writes: its pod, else its host.
fn replica_name() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "havoc".to_string())
}

/// A group of tasks stopped together.
#[derive(Debug, Clone, Default)]
struct Layer {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Layer {
    /// Stops the layer and waits for its tasks until `deadline`; whether they all ended.
    async fn stop(&self, deadline: Instant, name: &str) -> bool {
        self.stop.cancel();
        self.tasks.close();
        let done = tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_ok();
        if !done {
            tracing::error!(
                layer = name,
                pending = self.tasks.len(),
                "shutdown timeout: tasks still running"
            );
        }
        done
    }
}

/// The shutdown signal: SIGTERM or SIGINT. The SIGTERM handler is installed when this is
/// called, not when it is first awaited: a SIGTERM that arrives while the service is still
/// starting (after it said so in the log) is a clean shutdown, not the default kill.
fn signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        #[cfg(unix)]
        {
            match term {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Another running replica of this pod's workload, when havoc runs in a pod
/// (`POD_NAMESPACE`, `POD_NAME`): without leader election, two would both inject. A pod
/// of a ReplicaSet belongs to its Deployment (the ReplicaSet's name without its hash), so
/// the old replica of a rolling update counts too. A failure to look is logged and not a
/// refusal (the chart's schema refuses the configuration already; this catches a
/// Deployment scaled by hand).
async fn another_replica(client: &kube::Client) -> Option<String> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::{Api, ResourceExt, api::ListParams};
    let ns = std::env::var("POD_NAMESPACE").ok()?;
    let me = std::env::var("POD_NAME").ok()?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let look = async {
        let mine = pods.get(&me).await?;
        let workload = |p: &Pod| {
            p.owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .map(|o| match o.name.rsplit_once('-') {
                    Some((deployment, _)) if o.kind == "ReplicaSet" => {
                        ("Deployment".to_string(), deployment.to_string())
                    }
                    _ => (o.kind.clone(), o.name.clone()),
                })
        };
        let Some(owner) = workload(&mine) else {
            return Ok(None);
        };
        let all = pods.list(&ListParams::default()).await?;
        Ok::<_, kube::Error>(
            all.items
                .into_iter()
                .filter(|p| p.name_any() != me && p.metadata.deletion_timestamp.is_none())
                .filter(|p| workload(p).as_ref() == Some(&owner))
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.phase.as_deref())
                        .is_some_and(|ph| ph == "Running" || ph == "Pending")
                })
                .map(|p| format!("{ns}/{}", p.name_any()))
                .next(),
        )
    };
    match tokio::time::timeout(Duration::from_secs(10), look).await {
        Ok(Ok(other)) => other,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot look for other replicas");
            None
        }
        Err(_) => {
            tracing::warn!("cannot look for other replicas: no answer within 10s");
            None
        }
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let Some(config) = load_config(&args.sources.config) else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let config = Arc::new(config);
    let paths = args.sources.policy_paths(&config.policies);
    let metrics = Metrics::with_cluster(config.cluster_name.as_deref());
    let kubeconfig = args.sources.kubeconfig.as_deref();
    let requests = client::client(kubeconfig, Purpose::Requests, Some(&metrics)).await?;
    let watches_client = client::client(kubeconfig, Purpose::Watches, Some(&metrics)).await?;
    let token = config
        .server
        .token
        .as_ref()
        .map(|t| t.resolve())
        .transpose()
        .context("server.token")?;
    let health = Health::from_config(&config)?.with_metrics(metrics.clone());
    let readings = health.readings();
    let health = Arc::new(health);
    let notifier = Arc::new(Notifier::from_config(&config)?);
    let annotations = Annotations::from_config(&config, Some(metrics.clone()))?;
    let preflight =
        crate::engine::experiment::preflight_client(&config).map_err(anyhow::Error::msg)?;
    let journal = Arc::new(match &args.sources.journal {
        Some(p) => Journal::open(p, JOURNAL_KEEP, Rotation::default())
            .with_context(|| format!("opening the journal {}", p.display()))?,
        None => Journal::in_memory(JOURNAL_KEEP),
    });
    if !config.leader_election.enabled
        && let Some(other) = another_replica(&requests).await
    {
        eprintln!(
            "error: leaderElection.enabled is false, and another replica of this Deployment runs ({other}): both would inject faults at once. Run one replica, or turn leader election on."
        );
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let listen = config.server.listen;
    let listener = api::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;

    let (engine, watches) = (Layer::default(), Layer::default());
    let lease_stop = CancellationToken::new();
    let caches = Caches::start(&watches_client, &watches.stop, &watches.tasks);
    let (publisher, leader) = leader::channel();
    let publisher = publisher.with_metrics(metrics.clone());
    // Every fault and revert goes through this client: its connections stop when the
    // fence lapses (client::fenced), so nothing handed to them earlier is written later.
    let mutations = client::fenced(kubeconfig, Some(&metrics), leader.clone()).await?;
    let lease_task = if config.leader_election.enabled {
        Some(tokio::spawn(leader::elect(
            requests.clone(),
            config.leader_election.clone(),
            publisher,
            lease_stop.clone(),
        )))
    } else {
        publisher.publish(true);
        None
    };
    // The experiment history: the objects in havoc's namespace, watched by every replica,
    // written by the one that runs an experiment. Its writer drains after the engine
    // stopped (the last records), so it has a stop of its own.
    let namespace = &config.leader_election.namespace;
    let installation = &config.leader_election.lease;
    let history = ClusterHistory::new(requests.clone(), namespace, Some(installation));
    history.watch(watches_client.clone(), watches.stop.clone(), &watches.tasks);
    let history_stop = CancellationToken::new();
    let history_tasks = TaskTracker::new();
    let writer = HistoryWriter::new(
        requests.clone(),
        namespace,
        Author {
            installation: installation.clone(),
            owner: config.owner(),
            replica: replica_name(),
        },
        history_stop.clone(),
        &history_tasks,
    );
    let skips = SkipCounter::default();
    let env = Env {
        client: mutations.clone(),
        guards: Guards::for_service(&config),
        config: config.clone(),
        health,
        events: Some(Events::new(
            requests.clone(),
            std::env::var("POD_NAME").ok(),
            engine.tasks.clone(),
            config.event_verdicts.clone(),
        )),
        metrics: Some(metrics.clone()),
        journal: Some(journal.clone()),
        history: Some(writer.clone()),
        owner: config.owner(),
        leader: leader.clone(),
        claims: Default::default(),
        annotations: annotations.clone(),
        preflight,
        ledger: Some(Arc::new(history.clone())),
    };
    // The shared state lives beside the Lease: one per installation.
    let shared = SharedState::cluster(
        requests.clone(),
        &config.leader_election.namespace,
        &format!("{}-state", config.leader_election.lease),
    );
    shared.watch(watches_client.clone(), watches.stop.clone(), &watches.tasks);
    let arbiter = Arbiter::new(Parts {
        shared: shared.clone(),
        env: env.clone(),
        source: Arc::new(caches.clone()),
        journal: journal.clone(),
        history: Arc::new(history.clone()),
        skips: Some(skips.clone()),
        notifier,
        metrics: metrics.clone(),
        leader: leader.clone(),
        stop: engine.stop.clone(),
        seed: args.seed,
    });
    let policies = Policies::default();
    let triggers = RecentTriggers::default();
    let rollouts = Rollouts {
        arbiter: arbiter.clone(),
        policies: policies.clone(),
        caches: caches.clone(),
        client: watches_client,
        protected_namespaces: config.protected_namespaces.clone(),
        recent: triggers.clone(),
        stop: engine.stop.clone(),
        tasks: engine.tasks.clone(),
    }
    .start();
    // The one place that follows the policy set: the watch caches, the rollout watches
    // and the arbiter learn each new set from the reloader.
    let reloader = Reloader {
        paths,
        ctx: config.context(),
        policies: policies.clone(),
        followers: vec![Arc::new(caches.clone()), rollouts, arbiter.clone()],
        own_namespace: crate::targets::own_namespace(&config),
        metrics: metrics.clone(),
        interval: args.reload_interval.0,
        stop: engine.stop.clone(),
        access: Some(Arc::new(ApiReviewer::new(requests.clone()))),
        status: ReloadStatus::default(),
    };
    let reload_status = reloader.status.clone();
    let shutdown = signal();
    reloader.load_initial().await;
    tracing::info!(
        policies = policies.current().policies.len(),
        dry_run = config.dry_run,
        listen = %listen,
        "havoc serve starting"
    );

    let next_fires = NextFires::new(metrics.clone());
    let console = api::console::Console::new(
        api::console::Parts {
            config: config.clone(),
            shared: shared.clone(),
            faults: Arc::new(caches.clone()),
            health: readings,
            reload: reload_status,
            client: Some(mutations),
            pod: std::env::var("POD_NAME").ok(),
        },
        token.as_ref().map(|t| t.expose()),
    );
    let router = api::router(App {
        arbiter: arbiter.clone(),
        policies: policies.clone(),
        journal: journal.clone(),
        metrics: metrics.clone(),
        next_fires: next_fires.clone(),
        triggers: triggers.clone(),
        leader: leader.clone(),
        token,
        readiness: Arc::new(Ready {
            caches: caches.clone(),
            leader: leader.clone(),
            shared: shared.clone(),
            history: history.clone(),
        }),
        history: Arc::new(history.clone()),
        console,
    });
    let server_stop = CancellationToken::new();
    let server_task = tokio::spawn(api::serve(listener, router, server_stop.clone()));
    engine.tasks.spawn(
        Clock {
            arbiter: arbiter.clone(),
            policies: policies.clone(),
            leader: leader.clone(),
            history: Arc::new(history.clone()),
            shared: shared.clone(),
            next_fires,
            stop: engine.stop.clone(),
            seed: args.seed.unwrap_or_else(rand::random),
        }
        .drive(),
    );
    engine.tasks.spawn(reloader.run());
    engine.tasks.spawn(arbiter.clone().follow_stops());
    engine.tasks.spawn(arbiter.clone().keep_pauses_written());
    engine
        .tasks
        .spawn(arbiter.clone().keep_journal_writing(Duration::from_secs(5)));
    engine.tasks.spawn(
        Sweeper {
            env,
            caches: caches.clone(),
            arbiter: arbiter.clone(),
            journal: journal.clone(),
            history: Some(history),
            skips: Some(skips),
            shared_name: format!("{}-state", config.leader_election.lease),
            policies: policies.clone(),
            leader: leader.clone(),
            interval: SWEEP_INTERVAL,
            stop: engine.stop.clone(),
        }
        .run(),
    );

    shutdown.await;
    let started = Instant::now();
    let deadline = started + args.shutdown_timeout.0;
    // 1. The engine: experiments complete their records and notify, then every other
    //    engine task (clock, triggers, reload, Event publishes) ends.
    let mut clean = arbiter.shut_down(deadline).await;
    //    The experiments' last annotations get a few seconds, not the whole deadline: a
    //    Grafana that is down must not hold up (or fail) havoc's exit.
    let annotated = deadline.min(Instant::now() + ANNOTATIONS_GRACE);
    if !annotations.close(annotated).await {
        tracing::warn!("shutdown: Grafana annotations still unsent; given up");
    }
    clean &= engine.stop(deadline, "engine").await;
    //    The final records still queued for the cluster's history.
    if !writer
        .flush(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        tracing::warn!(
            "shutdown: final records not written to the cluster's history (the journal has them)"
        );
        clean = false;
    }
    history_stop.cancel();
    history_tasks.close();
    // 2. The watch caches.
    clean &= watches.stop(deadline, "watches").await;
    // 3. The Lease, last.
    lease_stop.cancel();
    if let Some(t) = lease_task {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left.max(Duration::from_secs(1)), t).await;
    }
    server_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), server_task).await;
    tracing::info!(
        clean,
        took_ms = started.elapsed().as_millis() as u64,
        "havoc serve stopped"
    );
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
