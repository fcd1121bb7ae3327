//! `havoc revert --all [--kubeconfig F] [--dry-run] [--owner NS/LEASE] [--fault F]...
//! [--pause-for D]`: the emergency stop that needs no running service. Finds every havoc
//! revert record in the cluster (annotations on nodes, workloads and VirtualServices; the
//! NetworkPolicies havoc created; every list paginated) and reverts each, whoever owns it
//! and whatever its deadline (or only one installation's, or only some faults', for the
//! chart's upgrade and uninstall hooks), printing what it did.
//!
//! It does what it can: a kind that cannot be listed (no permission, no answer) is
//! reported and the other kinds are still reverted. Exit 0 when nothing is known to be
//! left, 1 when something could not be reverted or a kind could not be listed.

use std::process::ExitCode;

use crate::{
    cli::RevertArgs,
    client::{self, Purpose},
    fault::{self, Mutator, recovery},
    state::{Pause, SharedState},
};

use super::EXIT_INVALID;

pub async fn revert(args: RevertArgs) -> anyhow::Result<ExitCode> {
    if !args.all {
        eprintln!("error: say `--all`: havoc revert undoes every havoc fault in the cluster");
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let installation = match args.owner.as_deref().map(|o| o.split_once('/')) {
        None => None,
        Some(Some((ns, lease))) if !ns.is_empty() && !lease.is_empty() => Some((ns, lease)),
        Some(_) => {
            eprintln!("error: --owner is NAMESPACE/LEASE (the installation's leaderElection)");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    if args.pause_for.is_some() && installation.is_none() {
        eprintln!("error: --pause-for needs --owner: it pauses that installation's chaos");
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let client = client::client(args.kubeconfig.as_deref(), Purpose::Requests, None).await?;
    let mut failed = 0;
    let mut found = recovery::in_cluster(&client).await;
    if let Some(owner) = &args.owner {
        found.held.retain(|h| h.record.owner == *owner);
    }
    if !args.faults.is_empty() {
        found.held.retain(|h| args.faults.contains(&h.record.fault));
    }
    // Only when there is something to revert: the installation's leader then admits
    // nothing new while its faults are reverted (and its RBAC changes, in the chart's
    // upgrade hook).
    if let (Some(pause_for), Some((ns, lease)), false, false) = (
        args.pause_for,
        installation,
        args.dry_run,
        found.held.is_empty(),
    ) {
        let shared = SharedState::cluster(client.clone(), ns, &format!("{lease}-state"));
        let now = chrono::Utc::now();
        let pause = Pause {
            since: now,
            until: Some(now + chrono::Duration::from_std(pause_for.0).unwrap_or_default()),
            reason: args.reason.clone(),
        };
        match shared.update(|d| d.all = Some(pause.clone())).await {
            Ok(_) => println!("paused {ns}/{lease} for {pause_for}: {}", args.reason),
            Err(e) => {
                failed += 1;
                println!("cannot pause {ns}/{lease}: {e}");
            }
        }
    }
    for (kind, why) in &found.unlisted {
        failed += 1;
        println!("{kind}: CANNOT LIST, its records (if any) are left: {why}");
    }
    for (object, why) in &found.unreadable {
        failed += 1;
        println!(
            "{} {}: UNREADABLE record, left for a human: {why}",
            object.kind,
            display(object)
        );
    }
    if found.held.is_empty() && found.unreadable.is_empty() && found.unlisted.is_empty() {
        println!("no havoc fault in the cluster");
    }
    let m = Mutator::unfenced(client);
    for h in &found.held {
        let what = format!(
            "{} {}: {} of experiment {} (policy {}, owner {}, deadline {})",
            h.object.kind,
            display(&h.object),
            h.record.fault,
            h.record.experiment,
            h.record.policy,
            if h.record.owner.is_empty() {
                "-"
            } else {
                &h.record.owner
            },
            h.record.deadline.to_rfc3339()
        );
        if args.dry_run {
            println!("{what}: would revert");
            continue;
        }
        match fault::revert(&m, h).await {
            Ok(r) => println!(
                "{what}: {}{}",
                r.label(),
                r.detail().map(|d| format!(" ({d})")).unwrap_or_default()
            ),
            Err(e) => {
                failed += 1;
                println!("{what}: FAILED: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn display(o: &crate::record::ObjectRef) -> String {
    match &o.namespace {
        Some(ns) => format!("{ns}/{}", o.name),
        None => o.name.clone(),
    }
}
