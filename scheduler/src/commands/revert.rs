//! `havoc revert --all [--kubeconfig F] [--dry-run]`: the emergency stop that needs no
//! running service. Finds every havoc revert record in the cluster (annotations on nodes,
//! workloads and VirtualServices; the NetworkPolicies havoc created) and reverts each,
//! whoever owns it and whatever its deadline, printing what it did. Exit 0 when nothing
//! is left, 1 when something could not be reverted.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::{
    cli::RevertArgs,
    client::{self, Purpose},
    fault::{self, recovery},
};

use super::EXIT_INVALID;

pub async fn revert(args: RevertArgs) -> anyhow::Result<ExitCode> {
    if !args.all {
        eprintln!("error: say `--all`: havoc revert undoes every havoc fault in the cluster");
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let client = client::client(args.kubeconfig.as_deref(), Purpose::Requests, None).await?;
    let found = recovery::in_cluster(&client)
        .await
        .context("listing the cluster for havoc records")?;
    let mut failed = 0;
    for (object, why) in &found.unreadable {
        failed += 1;
        println!(
            "{} {}: UNREADABLE record, left for a human: {why}",
            object.kind,
            display(object)
        );
    }
    if found.held.is_empty() && found.unreadable.is_empty() {
        println!("no havoc fault in the cluster");
    }
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
        match fault::revert(&client, h).await {
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
