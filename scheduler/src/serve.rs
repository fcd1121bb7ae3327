//! `havoc serve`: wires the long-running service together: config, policies (with hot
//! reload), watch caches, leader election, the arbiter and its clock, the HTTP server, and
//! an orderly shutdown on SIGTERM/SIGINT.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    engine::{
        arbiter::{Arbiter, Parts, PolicySet},
        clock,
        events::Events,
        experiment,
        health::Health,
        metrics::Metrics,
        notify::Notifier,
    },
    journal::Journal,
    policy::{self, Config, Expect, model::LeaderElection},
    schedule::stable_hash,
    server::{self, Readiness},
    target::{Guards, cache::Caches},
};

/// Records kept in memory for the API (the journal file keeps all of them).
pub const JOURNAL_KEEP: usize = 1000;
/// kube's default read timeout, for watch connections.
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(295);
/// Lease duration and renewal grace of leader election, in seconds.
const LEASE_SECONDS: u64 = 15;
const LEASE_GRACE_SECONDS: u64 = 5;

#[derive(Debug, Clone)]
pub struct ServeArgs {
    pub config: PathBuf,
    pub kubeconfig: Option<PathBuf>,
    /// Overrides the config's `policies`.
    pub policies: Option<PathBuf>,
    pub journal: Option<PathBuf>,
    /// How long shutdown may take: experiments complete their records, notifications
    /// drain, the lease is released.
    pub shutdown_timeout: Duration,
    /// How often the policy directory is checked for changes.
    pub reload_interval: Duration,
    /// Seeds schedules and target choice (tests); random otherwise.
    pub seed: Option<u64>,
}

struct Ready {
    caches: Caches,
    lease_known: Arc<AtomicBool>,
}

impl Readiness for Ready {
    fn not_ready(&self) -> Vec<String> {
        let mut why = Vec::new();
        if !self.caches.is_synced() {
            why.push("watch caches are not synced".to_string());
        }
        if !self.lease_known.load(Ordering::Acquire) {
            why.push("leader election state is not known yet".to_string());
        }
        why
    }
}

/// A kube client counting its requests in `havoc_kube_requests_total`. `read_timeout`:
/// `None` for watches (kube's default), bounded for everything else.
async fn client(
    kubeconfig: Option<&std::path::Path>,
    read_timeout: Option<Duration>,
    metrics: &Metrics,
) -> anyhow::Result<kube::Client> {
    let mut config = crate::run::kube_config(kubeconfig).await?;
    // Watches are long requests (kube asks the server to end them after 290 s): they get
    // kube's default read timeout back.
    config.read_timeout = read_timeout.or(Some(WATCH_READ_TIMEOUT));
    let m = metrics.clone();
    let count = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        m.kube_request(req.method().as_str());
        req
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}

/// The identity of this replica in the Lease: the pod name, else the host name, plus a
/// random suffix so two processes on one host differ.
fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "havoc".to_string());
    format!("{base}-{:08x}", rand::random::<u32>())
}

/// Holds the Lease while running; publishes whether this replica leads.
async fn lead(
    client: kube::Client,
    cfg: LeaderElection,
    tx: watch::Sender<bool>,
    known: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let id = identity();
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &cfg.lease)
            .with_namespace(&cfg.namespace)
            .with_identity(&id)
            .with_duration(LEASE_SECONDS)
            .with_grace(LEASE_GRACE_SECONDS)
            .build()
            .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                tracing::warn!(error = %e, lease = %cfg.lease, namespace = %cfg.namespace, "cannot reach the leader Lease; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    };
    let (mut rx, task) = manager.watch().await;
    known.store(true, Ordering::Release);
    loop {
        let leading = *rx.borrow_and_update();
        if tx.send_replace(leading) != leading {
            tracing::info!(identity = %id, leading, "leadership changed");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            changed = rx.changed() => if changed.is_err() { break },
        }
    }
    tx.send_replace(false);
    drop(rx);
    match task.await {
        Ok(Ok(manager)) => {
            if let Err(e) = manager.release().await {
                tracing::warn!(error = %e, "cannot release the Lease");
            } else {
                tracing::info!("Lease released");
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "lease manager stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "lease manager task failed"),
    }
}

fn policy_set(report: &policy::LoadReport) -> PolicySet {
    PolicySet {
        policies: report
            .policies()
            .map(|p| (p.name.clone(), Arc::new(p.clone())))
            .collect(),
        loaded_at: Some(chrono::Utc::now()),
    }
}

/// A fingerprint of the policy files' names and contents.
fn fingerprint(paths: &[PathBuf]) -> u64 {
    let (files, problems) = policy::discover(paths);
    let mut text = String::new();
    for f in files {
        text.push_str(&f.display().to_string());
        text.push('\0');
        match std::fs::read(&f) {
            Ok(b) => text.push_str(&String::from_utf8_lossy(&b)),
            Err(e) => text.push_str(&e.to_string()),
        }
        text.push('\0');
    }
    for p in problems {
        text.push_str(&p.to_string());
    }
    stable_hash(&text)
}

/// Re-reads the policies when the files change. A set with any problem is rejected as a
/// whole and the last good set keeps running: half-applying an edit that touches several
/// files could run a combination nobody wrote.
async fn reload_loop<S: experiment::Snapshot + Send + Sync + 'static>(
    arbiter: Arc<Arbiter<S>>,
    paths: Vec<PathBuf>,
    ctx: policy::validate::Context,
    interval: Duration,
) {
    let stop = arbiter.shutdown_token().clone();
    let mut last = fingerprint(&paths);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let now = fingerprint(&paths);
        if now == last {
            continue;
        }
        last = now;
        let report = policy::load_paths(&paths, &ctx, Expect::Policies);
        if report.is_valid() {
            let set = policy_set(&report);
            tracing::info!(policies = set.policies.len(), "policies reloaded");
            arbiter.set_policies(set);
            arbiter.metrics().reload(true);
        } else {
            for d in report.diagnostics() {
                tracing::error!(diagnostic = %d, "invalid policy");
            }
            tracing::error!(
                running = arbiter.policies().policies.len(),
                "policy reload rejected: the last good policies keep running"
            );
            arbiter.metrics().reload(false);
        }
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
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

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::run::install_crypto_provider();
    let config: Arc<Config> = match policy::load_config(&args.config) {
        Ok(c) => Arc::new(c),
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let vctx = config.context();
    let paths = vec![
        args.policies
            .clone()
            .unwrap_or_else(|| config.spec.policies.clone()),
    ];
    let metrics = Metrics::new();
    let api = client(
        args.kubeconfig.as_deref(),
        Some(crate::run::READ_TIMEOUT),
        &metrics,
    )
    .await?;
    let watch_client = client(args.kubeconfig.as_deref(), None, &metrics).await?;
    let token = config
        .spec
        .server
        .token
        .as_ref()
        .map(|t| havoc_integrations::secret::resolve(t.env.as_deref(), t.file.as_deref()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("server.token: {e}"))?;
    let health = Arc::new(Health::from_config(&config)?.with_metrics(metrics.clone()));
    let notifier = Arc::new(Notifier::from_config(&config)?);
    let journal = match &args.journal {
        Some(p) => Journal::open(p, JOURNAL_KEEP)
            .with_context(|| format!("opening the journal {}", p.display()))?,
        None => Journal::in_memory(JOURNAL_KEEP),
    };
    let listener = server::bind(&config.spec.server.listen).await?;

    // Background parts stop with `stop`; the arbiter's token stops experiments first.
    let stop = CancellationToken::new();
    let engine_stop = CancellationToken::new();
    let caches = Caches::start(&watch_client, &stop);
    let lease_known = Arc::new(AtomicBool::new(false));
    let (leader_tx, leader_rx) = watch::channel(false);
    let lead_task = if config.spec.leader_election.enabled {
        Some(tokio::spawn(lead(
            api.clone(),
            config.spec.leader_election.clone(),
            leader_tx,
            lease_known.clone(),
            stop.clone(),
        )))
    } else {
        leader_tx.send_replace(true);
        lease_known.store(true, Ordering::Release);
        None
    };
    let guards = Guards::for_service(&config);
    let ectx = experiment::Context {
        client: api.clone(),
        config: config.clone(),
        health,
        guards,
        events: Some(Events::new(api.clone(), std::env::var("POD_NAME").ok())),
        metrics: Some(metrics.clone()),
    };
    let arbiter = Arbiter::new(Parts {
        ctx: ectx,
        snapshot: caches.clone(),
        journal,
        notifier,
        metrics: metrics.clone(),
        leader: leader_rx,
        shutdown: engine_stop.clone(),
        seed: args.seed,
    });

    let report = policy::load_paths(&paths, &vctx, Expect::Policies);
    for d in report.diagnostics() {
        tracing::error!(diagnostic = %d, "invalid policy");
    }
    let set = policy_set(&report);
    tracing::info!(
        policies = set.policies.len(),
        dry_run = config.spec.dry_run,
        listen = %config.spec.server.listen,
        "havoc serve starting"
    );
    arbiter.set_policies(set);

    let router = server::router(
        arbiter.clone(),
        token,
        Arc::new(Ready {
            caches: caches.clone(),
            lease_known,
        }),
    );
    let server_task = tokio::spawn(server::serve(listener, router, stop.clone()));
    let base_seed = args.seed.unwrap_or_else(rand::random);
    let clock_task = tokio::spawn(clock::run(arbiter.clone(), base_seed));
    tokio::spawn(crate::trigger::run(
        arbiter.clone(),
        caches.clone(),
        watch_client.clone(),
        engine_stop.clone(),
    ));
    let reload_task = tokio::spawn(reload_loop(
        arbiter.clone(),
        paths,
        vctx,
        args.reload_interval,
    ));

    signal().await;
    let started = tokio::time::Instant::now();
    let clean = arbiter.shut_down(args.shutdown_timeout).await;
    let _ = clock_task.await;
    let _ = reload_task.await;
    stop.cancel();
    if let Some(t) = lead_task {
        let left = args.shutdown_timeout.saturating_sub(started.elapsed());
        let _ = tokio::time::timeout(left.max(Duration::from_secs(1)), t).await;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "apiVersion: havoc.dev/v1alpha1\nkind: ChaosPolicy\nmetadata: {name: NAME}\nspec:\n  schedule: {cron: '@hourly'}\n  target: {kind: Pod, namespaces: [d]}\n  fault: {podDelete: {}}\n";

    /// A mounted ConfigMap: `p.yaml -> ..data/p.yaml`, `..data -> ..<timestamp>`; an
    /// update writes a new timestamped directory and swaps the `..data` symlink.
    #[cfg(unix)]
    #[test]
    fn a_configmap_symlink_swap_is_seen_and_loaded() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let write = |version: &str, name: &str| {
            std::fs::create_dir(d.join(version)).expect("mkdir");
            std::fs::write(d.join(version).join("p.yaml"), POLICY.replace("NAME", name))
                .expect("write");
        };
        write("..2026_11_22_1", "first");
        symlink("..2026_11_22_1", d.join("..data")).expect("link");
        symlink("..data/p.yaml", d.join("p.yaml")).expect("link");
        let paths = vec![d.to_path_buf()];
        let ctx = policy::validate::Context::default();
        let before = fingerprint(&paths);
        let names = || -> Vec<String> {
            policy_set(&policy::load_paths(&paths, &ctx, Expect::Policies))
                .policies
                .into_keys()
                .collect()
        };
        assert_eq!(names(), ["first"]);
        assert_eq!(fingerprint(&paths), before, "nothing changed");

        // The kubelet's atomic update: new directory, new symlink renamed over ..data.
        write("..2026_11_22_2", "second");
        symlink("..2026_11_22_2", d.join("..data_tmp")).expect("link");
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).expect("swap");
        assert_ne!(
            fingerprint(&paths),
            before,
            "the swap changes the fingerprint"
        );
        assert_eq!(
            names(),
            ["second"],
            "hidden version directories are not loaded"
        );
    }
}
