//! `havoc run POLICY --once`: one experiment now, for CI/CD pipelines.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context as _, anyhow};

use crate::{
    engine::{
        experiment::{self, ListSnapshot},
        health::Health,
        notify::Notifier,
    },
    journal::{Journal, TriggerInfo, Verdict},
    policy::{self, Expect},
    target::Guards,
};

#[derive(Debug)]
pub struct RunArgs {
    pub policy: String,
    pub config: PathBuf,
    pub kubeconfig: Option<PathBuf>,
    pub policies: Option<PathBuf>,
    pub journal: Option<PathBuf>,
    pub seed: Option<u64>,
}

/// The exit code of a verdict: 0 passed, 1 deviated, 2 anything else.
pub fn exit_code(v: Verdict) -> u8 {
    match v {
        Verdict::Passed => 0,
        Verdict::Deviated => 1,
        Verdict::Skipped | Verdict::Errored | Verdict::RollbackFailed => 2,
    }
}

/// Read timeout of API calls that are not watches.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A kube client from an explicit kubeconfig, or inferred ($KUBECONFIG, in-cluster).
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(kube_config(kubeconfig).await?)?)
}

/// The client configuration havoc uses everywhere: see the comments for why.
pub async fn kube_config(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Config> {
    install_crypto_provider();
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer().await?,
    };
    // Bound every request that is not a watch (kube's default of 295 s suits watches;
    // the service's watch client puts it back).
    config.read_timeout = Some(READ_TIMEOUT);
    config.connect_timeout = Some(std::time::Duration::from_secs(10));
    // kube 5 retries 429/503/504 by default, up to 15 times and minutes apart. For havoc a
    // 429 on an eviction is a PodDisruptionBudget saying no: retrying it would hang the
    // experiment and then evict the pod anyway once the budget frees up. havoc retries
    // transient errors itself, boundedly (fault::is_transient).
    config.default_retry = false;
    Ok(config)
}

/// kube's rustls needs a process-wide provider; havoc uses ring everywhere.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn run_once(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = match policy::load_config(&args.config) {
        Ok(c) => Arc::new(c),
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let ctx = config.context();
    let path = args
        .policies
        .clone()
        .unwrap_or_else(|| config.spec.policies.clone());
    let report = policy::load_paths(&[path], &ctx, Expect::Policies);
    for d in report.diagnostics() {
        eprintln!("{d}");
    }
    let policy = report
        .policies()
        .find(|p| p.name == args.policy)
        .cloned()
        .ok_or_else(|| anyhow!("no valid policy named {:?}", args.policy))?;
    let client = kube_client(args.kubeconfig.as_deref()).await?;
    let health = Arc::new(Health::from_config(&config)?);
    let notifier = Notifier::from_config(&config)?;
    let guards = Guards::for_service(&config);
    let ectx = experiment::Context {
        client: client.clone(),
        config: config.clone(),
        health,
        guards,
        events: None,
        metrics: None,
    };
    let trigger = TriggerInfo::Manual {
        source: "havoc run".to_string(),
    };
    let opts = experiment::RunOptions {
        seed: args.seed,
        ..Default::default()
    };
    let record = experiment::run(&ectx, &ListSnapshot(client), &policy, trigger, opts).await;
    if let Some(path) = &args.journal {
        Journal::open(path, 1)?.append(&record)?;
    }
    for d in notifier.notify(&policy, &record).await {
        eprintln!(
            "notification to {}: {} after {} attempt(s){}",
            d.receiver,
            d.result,
            d.attempts,
            d.error.map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    println!("{}", serde_json::to_string_pretty(&record)?);
    Ok(ExitCode::from(exit_code(record.verdict)))
}
