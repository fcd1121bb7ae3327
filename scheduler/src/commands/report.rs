//! `havoc report`: reads the history (the cluster's, or journals given with `--journal`),
//! filters it and writes one report (see [`crate::report`]).

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::Context as _;
use chrono::Utc;

use crate::{
    cli::ReportArgs,
    history::{self, History, InMemory},
    journal,
    record::ExperimentRecord,
    report::{self, Filters, Format, Report},
};

/// The records of several journals (each with its rotated files), merged: a record that
/// is in more than one (a copy, a journal and its backup) counts once, the last one read
/// winning.
pub fn read_journals(paths: &[PathBuf]) -> anyhow::Result<Vec<ExperimentRecord>> {
    let mut by_id: BTreeMap<String, ExperimentRecord> = BTreeMap::new();
    for path in paths {
        let (records, unreadable) = journal::read_records(path)
            .with_context(|| format!("reading the journal {}", path.display()))?;
        if unreadable > 0 {
            eprintln!(
                "warning: {}: {unreadable} unreadable line(s) skipped",
                path.display()
            );
        }
        for r in records {
            by_id.insert(r.id.clone(), r);
        }
    }
    Ok(by_id.into_values().collect())
}

/// Writes `bytes` to `out`, or to stdout.
pub fn write_out(out: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(bytes)?;
            Ok(stdout.flush()?)
        }
    }
}

/// Renders the records matching `query` from `history`.
pub async fn render(
    history: &dyn History,
    query: &history::Query,
    format: Format,
) -> anyhow::Result<Vec<u8>> {
    let records = history.records(query).await?;
    let now = Utc::now();
    Ok(report::render(format, &Report::new(&records, query, now))?)
}

pub async fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let filters = Filters {
        since: args.since,
        until: args.until,
        policy: args.policy,
        namespace: args.namespace,
        verdict: args.verdict,
    };
    let query = filters.query(Utc::now())?;
    let history: Arc<dyn History> = if args.journal.is_empty() {
        history::cluster(args.kubeconfig.as_deref(), &args.havoc_namespace).await?
    } else {
        Arc::new(InMemory(read_journals(&args.journal)?))
    };
    let bytes = render(history.as_ref(), &query, args.format).await?;
    write_out(args.out.as_deref(), &bytes)?;
    Ok(ExitCode::SUCCESS)
}
