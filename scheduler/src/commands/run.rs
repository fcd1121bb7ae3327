//! `havoc run POLICY --once`: one experiment now, for CI/CD pipelines. Exit 0 passed,
//! 1 deviated, 2 anything else.

use std::{process::ExitCode, sync::Arc};

use anyhow::{Context as _, anyhow};

use super::{EXIT_INVALID, load_config};
use crate::{
    cli::RunArgs,
    client::{self, Purpose},
    engine::{
        experiment::{self, Env},
        health::Health,
        notify::Notifier,
    },
    journal::{Journal, Rotation},
    policy::{self, Expect},
    record::{TriggerInfo, Verdict},
    target::{Guards, kube::ListSource},
};

/// The exit code of a verdict: 0 passed, 1 deviated, 2 anything else.
pub fn exit_code(v: Verdict) -> u8 {
    match v {
        Verdict::Passed => 0,
        Verdict::Deviated => 1,
        Verdict::Skipped | Verdict::Errored | Verdict::RollbackFailed => 2,
    }
}

pub async fn run_once(args: RunArgs) -> anyhow::Result<ExitCode> {
    if !args.once {
        eprintln!(
            "error: havoc run needs --once: it runs one experiment now (scheduled runs are `havoc serve`)"
        );
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let Some(config) = load_config(&args.sources.config) else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let config = Arc::new(config);
    let ctx = config.context();
    let path = args
        .sources
        .policies
        .clone()
        .unwrap_or_else(|| config.policies.clone());
    let report = policy::load_paths(&[path], &ctx, Expect::Policies);
    for d in report.diagnostics() {
        eprintln!("{d}");
    }
    let policy = report
        .policies()
        .find(|p| p.name == args.policy)
        .cloned()
        .ok_or_else(|| anyhow!("no valid policy named {:?}", args.policy))?;
    let client =
        client::client(args.sources.kubeconfig.as_deref(), Purpose::Requests, None).await?;
    let health = Arc::new(Health::from_config(&config)?);
    let notifier = Notifier::from_config(&config)?;
    let env = Env {
        client: client.clone(),
        guards: Guards::for_service(&config),
        config: config.clone(),
        health,
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
    let record = experiment::execute(&env, &ListSource(client), &policy, trigger, opts).await;
    if let Some(path) = &args.sources.journal {
        Journal::open(path, 1, Rotation::default())
            .and_then(|j| j.append(&record))
            .with_context(|| format!("writing the journal {}", path.display()))?;
    }
    for d in notifier.notify(&policy, &record).await {
        eprintln!(
            "notification to {}: {} after {} attempt(s){}",
            d.receiver,
            d.result.label(),
            d.attempts,
            d.error.map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    println!("{}", serde_json::to_string_pretty(&record)?);
    Ok(ExitCode::from(exit_code(record.verdict)))
}
