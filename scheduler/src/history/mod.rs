//! The experiment history as readers see it: the console, reports, the API, missed-fire
//! counting, the circuit breakers restored at start. One query type ([`Query`]) and one
//! small summary per experiment ([`Summary`]) that every reader shares; where the records
//! come from is behind [`History`]:
//!
//! - [`cluster`]: the experiment objects in havoc's namespace ([`object`]), the authority
//!   for `havoc serve`, the same for every replica; written by [`writer`] (the intent
//!   before the first change, the final record after), pruned by the leader
//!   ([`writer::HistoryWriter::prune`]); skips are counted per policy ([`skips`]);
//! - the journal (`havoc run --journal`, `havoc report --journal`) and records in memory
//!   (tests): [`AtHand`].
//!
//! Readers list [`Summary`]s (kept in memory: what lists, timelines and counts need) and
//! read a full [`ExperimentRecord`] on demand (a page per experiment, a report).

pub mod cluster;
pub mod ledger;
pub mod object;
pub mod skips;
pub mod writer;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::record::{ExperimentRecord, TriggerInfo, Verdict};

/// Which experiments a reader wants. Every field is optional; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Query {
    /// Started at or after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Started before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Touches a target in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// At most this many, newest first (`None`: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl Query {
    /// Whether `s` passes every filter (the limit is the lister's).
    pub fn matches(&self, s: &Summary) -> bool {
        self.since.is_none_or(|t| s.started_at >= t)
            && self.until.is_none_or(|t| s.started_at < t)
            && self.policy.as_ref().is_none_or(|p| *p == s.policy)
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| s.namespaces.iter().any(|x| x == n))
            && self.verdict.is_none_or(|v| v == s.verdict)
    }

    /// Filters and orders `records` (newest first) and applies the limit.
    pub fn apply(
        &self,
        records: impl IntoIterator<Item = ExperimentRecord>,
    ) -> Vec<ExperimentRecord> {
        let mut out: Vec<ExperimentRecord> = records
            .into_iter()
            .filter(|r| self.matches(&Summary::of(r)))
            .collect();
        out.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        if let Some(n) = self.limit {
            out.truncate(n);
        }
        out
    }
}

/// Characters of a reason a summary keeps.
const SUMMARY_REASON: usize = 300;

/// What a list, a timeline or a count needs of one experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub id: String,
    pub policy: String,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    pub fault: String,
    pub dry_run: bool,
    /// `schedule`, `rollout` or `manual`.
    pub trigger: &'static str,
    /// The namespaces of its targets (sorted, no duplicates).
    pub namespaces: Vec<String>,
    pub targets: usize,
    /// The reason, cut to 300 characters.
    pub reason: String,
    /// A schedule's planned fire time (missed-fire counting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
}

/// The end of each policy's last live (not dry-run) passed experiment among `summaries`.
pub fn last_passed(
    summaries: impl IntoIterator<Item = Summary>,
) -> std::collections::HashMap<String, DateTime<Utc>> {
    let mut last = std::collections::HashMap::new();
    for s in summaries {
        if s.verdict == Verdict::Passed && !s.dry_run {
            let at = last.entry(s.policy).or_insert(s.ended_at);
            *at = (*at).max(s.ended_at);
        }
    }
    last
}

/// The namespaces among targets' (sorted, no duplicates).
pub fn namespaces_of<'a>(namespaces: impl Iterator<Item = Option<&'a String>>) -> Vec<String> {
    let mut out: Vec<String> = namespaces.flatten().cloned().collect();
    out.sort();
    out.dedup();
    out
}

impl Summary {
    pub fn of(r: &ExperimentRecord) -> Self {
        let mut namespaces = namespaces_of(r.targets.iter().map(|t| t.namespace.as_ref()));
        // Kept for every experiment of the history: no spare capacity.
        namespaces.shrink_to_fit();
        let mut reason: String = r.reason.chars().take(SUMMARY_REASON).collect();
        reason.shrink_to_fit();
        Summary {
            id: r.id.clone(),
            policy: r.policy.clone(),
            verdict: r.verdict,
            reason_code: r.reason_code.clone(),
            fault: r.fault.clone(),
            dry_run: r.dry_run,
            trigger: match r.trigger {
                TriggerInfo::Schedule { .. } => "schedule",
                TriggerInfo::Rollout { .. } => "rollout",
                TriggerInfo::Manual { .. } => "manual",
            },
            namespaces,
            targets: r.targets.len(),
            reason,
            scheduled_at: match r.trigger {
                TriggerInfo::Schedule { scheduled_at } => Some(scheduled_at),
                _ => None,
            },
            started_at: r.started_at,
            injected_at: r.injected_at,
            reverted_at: r.reverted_at,
            ended_at: r.ended_at,
        }
    }
}

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HistoryError(pub String);

/// Why a history could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot reach the cluster: {0}")]
    Client(String),
    #[error("cannot read the experiment history in namespace {namespace}: {error}")]
    Read { namespace: String, error: String },
}

/// The history kept in `namespace` of the cluster, listed once (`havoc report` without
/// `--journal`).
pub async fn cluster(
    kubeconfig: Option<&std::path::Path>,
    namespace: &str,
) -> Result<std::sync::Arc<dyn History>, OpenError> {
    let client = crate::client::client(kubeconfig, crate::client::Purpose::Requests, None)
        .await
        .map_err(|e| OpenError::Client(e.to_string()))?;
    let history = cluster::ClusterHistory::new(client, namespace, None);
    history.load().await.map_err(|e| OpenError::Read {
        namespace: namespace.to_string(),
        error: e.0,
    })?;
    Ok(std::sync::Arc::new(history))
}

/// Where experiment records are read from.
pub trait History: Send + Sync + std::fmt::Debug {
    /// The summary of every experiment it holds, in any order (kept in memory).
    fn summaries(&self) -> Vec<Summary>;

    /// The experiments whose final record is not written yet (the cluster's history
    /// knows them by their intents; a history at hand has none).
    fn running(&self) -> Vec<object::Running> {
        Vec::new()
    }

    /// Whether it has read what it holds (a cluster history has listed the objects once);
    /// until then its summaries are not the history.
    fn is_ready(&self) -> bool {
        true
    }

    /// Summaries matching `query`, newest first.
    fn list<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Summary>, HistoryError>> {
        let mut out: Vec<Summary> = self
            .summaries()
            .into_iter()
            .filter(|s| query.matches(s))
            .collect();
        out.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        if let Some(n) = query.limit {
            out.truncate(n);
        }
        Box::pin(futures::future::ready(Ok(out)))
    }

    /// Full records matching `query`, newest first (reports).
    fn records<'a>(
        &'a self,
        query: &'a Query,
    ) -> BoxFuture<'a, Result<Vec<ExperimentRecord>, HistoryError>>;

    /// One full record.
    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ExperimentRecord>, HistoryError>>;
}

/// The records in memory (offline journals read whole, tests).
#[derive(Debug, Clone, Default)]
pub struct InMemory(pub Vec<ExperimentRecord>);

/// A history whose records are all at hand, in this process's memory: it answers at once.
pub trait AtHand: Send + Sync + std::fmt::Debug {
    /// Every record, in any order.
    fn all(&self) -> Vec<ExperimentRecord>;
}

impl AtHand for InMemory {
    fn all(&self) -> Vec<ExperimentRecord> {
        self.0.clone()
    }
}

impl AtHand for crate::journal::Journal {
    fn all(&self) -> Vec<ExperimentRecord> {
        self.newest(usize::MAX)
    }
}

impl<T: AtHand> History for T {
    fn summaries(&self) -> Vec<Summary> {
        self.all().iter().map(Summary::of).collect()
    }

    fn records<'a>(
        &'a self,
        query: &'a Query,
    ) -> BoxFuture<'a, Result<Vec<ExperimentRecord>, HistoryError>> {
        Box::pin(futures::future::ready(Ok(query.apply(self.all()))))
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ExperimentRecord>, HistoryError>> {
        let found = self.all().into_iter().find(|r| r.id == id);
        Box::pin(futures::future::ready(Ok(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::record;

    #[test]
    fn last_passed_counts_live_passes_only() {
        let at = |r: &mut ExperimentRecord, t: &str| r.ended_at = t.parse().expect("t");
        let mut old = record("old", Verdict::Passed);
        at(&mut old, "2026-11-01T00:00:00Z");
        let mut new = record("new", Verdict::Passed);
        at(&mut new, "2026-11-20T00:00:00Z");
        let mut dry = record("dry", Verdict::Passed);
        at(&mut dry, "2026-11-25T00:00:00Z");
        dry.dry_run = true;
        let mut deviated = record("dev", Verdict::Deviated);
        at(&mut deviated, "2026-11-26T00:00:00Z");
        let mut other = record("other", Verdict::Deviated);
        other.policy = "q".into();
        let last = last_passed([&new, &old, &dry, &deviated, &other].map(Summary::of));
        assert_eq!(last.len(), 1, "{last:?}");
        assert_eq!(
            last.get(&new.policy).map(|t| t.to_rfc3339()),
            Some("2026-11-20T00:00:00+00:00".to_string())
        );
    }

    #[tokio::test]
    async fn queries_filter_and_order_newest_first() {
        let mut a = record("a", Verdict::Passed);
        let mut b = record("b", Verdict::Deviated);
        let mut c = record("c", Verdict::Passed);
        a.started_at = "2026-11-22T10:00:00Z".parse().expect("t");
        b.started_at = "2026-11-22T11:00:00Z".parse().expect("t");
        c.started_at = "2026-11-22T12:00:00Z".parse().expect("t");
        c.policy = "other".into();
        let h = InMemory(vec![a, b, c]);
        let ids = |q: Query| {
            let h = &h;
            async move {
                let listed = h.list(&q).await.expect("list");
                listed.into_iter().map(|s| s.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(ids(Query::default()).await, ["c", "b", "a"]);
        let q = Query {
            policy: Some("p".into()),
            verdict: Some(Verdict::Passed),
            ..Query::default()
        };
        assert_eq!(ids(q).await, ["a"]);
        let q = Query {
            since: Some("2026-11-22T11:00:00Z".parse().expect("t")),
            until: Some("2026-11-22T12:00:00Z".parse().expect("t")),
            namespace: Some("go-demo-8".into()),
            ..Query::default()
        };
        assert_eq!(ids(q).await, ["b"]);
        let q = Query {
            limit: Some(1),
            ..Query::default()
        };
        assert_eq!(h.records(&q).await.expect("records").len(), 1);
        assert_eq!(
            h.get("b").await.expect("get").map(|r| r.id),
            Some("b".into())
        );
        assert!(h.get("zz").await.expect("get").is_none());
    }
}
