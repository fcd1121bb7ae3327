//! The experiment history as readers see it: the console, reports, the API, missed-fire
//! counting. One query type ([`Query`]) and one small summary per experiment
//! ([`Summary`]) that every reader shares; where the records come from is behind
//! [`History`] (the journal today; the experiment objects in the cluster once they hold
//! the history).
//!
//! Readers list [`Summary`]s (cheap: what lists, timelines and counts need) and read a
//! full [`ExperimentRecord`] on demand (a page per experiment, a report).

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

/// What a list, a timeline or a count needs of one experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub trigger: String,
    /// The namespaces of its targets (sorted, no duplicates).
    pub namespaces: Vec<String>,
    pub targets: usize,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
}

impl Summary {
    pub fn of(r: &ExperimentRecord) -> Self {
        let mut namespaces: Vec<String> = r
            .targets
            .iter()
            .filter_map(|t| t.namespace.clone())
            .collect();
        namespaces.sort();
        namespaces.dedup();
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
            }
            .to_string(),
            namespaces,
            targets: r.targets.len(),
            started_at: r.started_at,
            injected_at: r.injected_at,
            reverted_at: r.reverted_at,
            ended_at: r.ended_at,
        }
    }
}

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the experiment history cannot be read: {0}")]
pub struct HistoryError(pub String);

/// Why a history could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The experiment objects in the cluster do not hold the history yet.
    #[error("the cluster history is not available in this build; pass --journal")]
    ClusterUnavailable,
}

/// The history kept in the cluster, as `havoc report` reads it without `--journal`.
///
/// The one place the cluster history is opened: it answers
/// [`OpenError::ClusterUnavailable`] until the experiment objects hold the history, and
/// will then return their [`History`] (reading through `kubeconfig`).
pub async fn cluster(
    kubeconfig: Option<&std::path::Path>,
) -> Result<std::sync::Arc<dyn History>, OpenError> {
    let _ = kubeconfig;
    Err(OpenError::ClusterUnavailable)
}

/// Where experiment records are read from.
pub trait History: Send + Sync {
    /// Summaries matching `query`, newest first.
    fn list<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Summary>, HistoryError>>;

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
pub trait AtHand: Send + Sync {
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
    fn list<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Summary>, HistoryError>> {
        let out = query.apply(self.all()).iter().map(Summary::of).collect();
        Box::pin(futures::future::ready(Ok(out)))
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
        let all = h.list(&Query::default()).await.expect("list");
        let ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
        let q = Query {
            policy: Some("p".into()),
            verdict: Some(Verdict::Passed),
            ..Query::default()
        };
        let ids: Vec<String> = h
            .list(&q)
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, ["a"]);
        let q = Query {
            since: Some("2026-11-22T11:00:00Z".parse().expect("t")),
            until: Some("2026-11-22T12:00:00Z".parse().expect("t")),
            namespace: Some("go-demo-8".into()),
            ..Query::default()
        };
        let ids: Vec<String> = h
            .list(&q)
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, ["b"]);
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
