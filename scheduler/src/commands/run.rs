//! `havoc run POLICY --once`: one experiment now, for CI/CD pipelines. Exit 0 passed,
//! 1 deviated, 2 anything else.

use std::{process::ExitCode, sync::Arc};

use anyhow::{Context as _, anyhow};

use super::{EXIT_INVALID, load_config};
use crate::{
    access,
    cli::RunArgs,
    client::{self, Purpose},
    engine::{
        experiment::{self, Env},
        health::Health,
        notify::Notifier,
    },
    history::writer::HistoryWriter,
    journal::{Journal, Rotation},
    policy::{self, Expect},
    record::{ExperimentRecord, SkipReason, TriggerInfo, Verdict},
    state::SharedState,
    targets::{Guards, kube::ListSource},
};

/// The exit code of a verdict: 0 passed, 1 deviated, 2 anything else.
pub fn exit_code(v: Verdict) -> u8 {
    match v {
        Verdict::Passed => 0,
        Verdict::Deviated => 1,
        Verdict::Skipped | Verdict::Errored | Verdict::RollbackFailed => 2,
    }
}

/// Why this run may not start now (pauses, the circuit breaker, the concurrency limit
/// shared with the service), or `None` after registering it in the shared state. The
/// decision and the registration are one write (read-modify-write with the state's
/// resourceVersion): two `havoc run`s that start together cannot both be admitted past
/// the limit — the second's write conflicts and it decides again on the first's.
async fn admit(
    shared: &SharedState,
    client: &kube::Client,
    config: &crate::policy::Config,
    policy: &crate::policy::Policy,
    id: &str,
) -> Option<SkipReason> {
    let service = match crate::leader::leader_running(client, &config.leader_election).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the leader Lease");
            return Some(SkipReason::StateUnknown);
        }
    };
    let limit = config.limits.max_concurrent_experiments;
    let until = chrono::Utc::now()
        + chrono::Duration::from_std(policy.duration + policy.health.settle).unwrap_or_default()
        + crate::fault::revert::DEADLINE_GRACE;
    let run = crate::state::ExternalRun {
        policy: policy.name.clone(),
        until,
    };
    let decided = shared
        .try_update(|d| {
            if let Some(p) = &d.all {
                return Err(SkipReason::PausedAll(p.reason.clone()));
            }
            if let Some(p) = d.policies.get(&policy.name) {
                return Err(SkipReason::PausedPolicy(p.reason.clone()));
            }
            let running = service + d.runs.len();
            if running >= limit as usize {
                return Err(SkipReason::Limit { limit, running });
            }
            d.runs.insert(id.to_string(), run.clone());
            Ok(())
        })
        .await;
    match decided {
        Ok(Ok(_)) => None,
        Ok(Err(refused)) => Some(refused),
        Err(e) => {
            tracing::warn!(error = %e, "cannot register this run in the shared state");
            Some(SkipReason::StateUnknown)
        }
    }
}

/// SIGTERM or SIGINT: a cancelled CI job. Installed when called.
fn interrupted() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        #[cfg(unix)]
        if let Ok(mut term) = term {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
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
    let paths = args.sources.policy_paths(&config.policies);
    let report = policy::load_paths(&paths, &ctx, Expect::Policies);
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
    let missing = access::missing(&policy, &access::ApiReviewer::new(client.clone())).await;
    if !missing.is_empty() {
        eprintln!("error: {}", access::refusal(&policy, &missing));
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let health = Arc::new(Health::from_config(&config)?);
    let notifier = Notifier::from_config(&config)?;
    let annotations = crate::engine::annotations::Annotations::from_config(&config, None)?;
    let preflight =
        crate::engine::experiment::preflight_client(&config).map_err(anyhow::Error::msg)?;
    let journal = args
        .sources
        .journal
        .as_deref()
        .map(|p| {
            Journal::open(p, 1, Rotation::default())
                .map(Arc::new)
                .with_context(|| format!("opening the journal {}", p.display()))
        })
        .transpose()?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_string());
    // Not the service's name: the service leaves `havoc run`'s records alone until
    // their deadline.
    let owner = format!("havoc-run/{host}-{}", std::process::id());
    let history_stop = tokio_util::sync::CancellationToken::new();
    let history_tasks = tokio_util::task::TaskTracker::new();
    let history = (!args.no_history).then(|| {
        HistoryWriter::new(
            client.clone(),
            &config.leader_election.namespace,
            crate::history::object::Author {
                installation: config.leader_election.lease.clone(),
                owner: owner.clone(),
                replica: host.clone(),
            },
            history_stop.clone(),
            &history_tasks,
        )
    });
    // Namespace chaos budgets are counted from the history in the cluster, read once.
    let ledger: Option<Arc<dyn crate::history::History>> = match (
        &config.limits.namespace_budget,
        args.no_history,
    ) {
        (Some(_), false) => {
            let h = crate::history::cluster::ClusterHistory::new(
                client.clone(),
                &config.leader_election.namespace,
                Some(&config.leader_election.lease),
            );
            match h.load().await {
                Ok(()) => Some(Arc::new(h)),
                Err(e) => {
                    eprintln!(
                        "warning: the experiment history cannot be read ({e}): namespace chaos budgets cannot be counted, so a live run is skipped"
                    );
                    None
                }
            }
        }
        _ => None,
    };
    let env = Env {
        client: client.clone(),
        guards: Guards::for_service(&config),
        config: config.clone(),
        health,
        events: None,
        metrics: None,
        journal: journal.clone(),
        history: history.clone(),
        owner,
        leader: crate::leader::Leadership::always(),
        claims: Default::default(),
        annotations: annotations.clone(),
        preflight,
        ledger,
    };
    let trigger = TriggerInfo::Manual {
        source: "havoc run".to_string(),
    };
    let id = crate::record::new_id(&policy.name, chrono::Utc::now());
    // The service's pauses, circuit breaker and limit hold for `havoc run` too.
    let shared = SharedState::cluster(
        client.clone(),
        &config.leader_election.namespace,
        &format!("{}-state", config.leader_election.lease),
    );
    let refusal = admit(&shared, &client, &config, &policy, &id).await;
    let record = match refusal {
        Some(why) => {
            let mut r = ExperimentRecord::start(policy.record_of(), trigger, id.clone());
            r.skip(&why);
            r
        }
        None => {
            // SIGINT/SIGTERM (a cancelled pipeline) interrupts the experiment like a
            // shutdown of the service: no further mutation, what is held is reverted, the
            // record says `interrupted`.
            let cancel = tokio_util::sync::CancellationToken::new();
            let signal = interrupted();
            let on_signal = {
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    signal.await;
                    eprintln!("havoc run: interrupted: reverting what this run holds");
                    cancel.cancel();
                })
            };
            let opts = experiment::RunOptions {
                id: id.clone(),
                seed: args.seed,
                cancel: cancel.clone(),
                shutdown: Some(cancel),
                ..Default::default()
            };
            let r = experiment::execute(
                &env,
                &ListSource {
                    client: client.clone(),
                    own_namespace: crate::targets::own_namespace(&config),
                },
                &policy,
                trigger,
                opts,
            )
            .await;
            on_signal.abort();
            if let Err(e) = shared
                .update(|d| {
                    d.runs.remove(&id);
                })
                .await
            {
                tracing::warn!(error = %e, "cannot remove this run from the shared state; it expires on its own");
            }
            r
        }
    };
    // The same emit as the service's: journal, the annotation's end, the breaker, whom to
    // notify.
    let emitter = crate::engine::emit::Emitter {
        config: config.clone(),
        journal: journal.clone(),
        history: history.clone(),
        skips: None,
        metrics: None,
        events: None,
        annotations: annotations.clone(),
    };
    let emitted = emitter.emit(Some(&policy), &record);
    if let Some(h) = &history
        && !h.flush(std::time::Duration::from_secs(10)).await
    {
        eprintln!(
            "the experiment's final record could not be written to the cluster's history within 10 s"
        );
    }
    history_stop.cancel();
    if let Some(e) = journal.as_ref().and_then(|j| j.write_error()) {
        anyhow::bail!("writing the journal: {e}");
    }
    if let Some(b) = emitted.breaker {
        // Written before this process ends: the service and the next run obey it.
        let pause = crate::state::Pause {
            since: chrono::Utc::now(),
            until: Some(b.until),
            reason: b.reason,
        };
        let written = shared
            .update(|d| match &b.policy {
                None => d.all = Some(pause.clone()),
                Some(p) => {
                    d.policies.insert(p.clone(), pause.clone());
                }
            })
            .await;
        if let Err(e) = written {
            eprintln!("circuit breaker: cannot write the pause to the shared state: {e}");
        }
    }
    // A few seconds for the region's end, no more: a Grafana that is down must not hold
    // up the pipeline (the verdict is known).
    let annotated = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    if !annotations.close(annotated).await {
        eprintln!("grafana: annotations still unsent after 5 s; given up");
    }
    for d in notifier.send_to(&emitted.receivers, &record).await {
        eprintln!(
            "notification to {}: {} after {} attempt(s){}",
            d.receiver,
            d.result.label(),
            d.attempts,
            d.error.map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    println!("{}", serde_json::to_string_pretty(&record)?);
    // A report of this one run, for the pipeline (its JUnit test results, a PDF for the
    // change ticket). Written whatever the verdict: a failing run is what CI must show.
    let records = [record];
    let query = crate::history::Query::default();
    let report = crate::report::Report::new(&records, &query, chrono::Utc::now());
    for (format, path) in &args.reports {
        let bytes = crate::report::render(*format, &report)?;
        super::report::write_out(Some(path), &bytes)?;
    }
    Ok(ExitCode::from(exit_code(records[0].verdict)))
}
