//! Skips are not experiments: a cron fire while chaos is paused, a gate closed by a firing
//! alert. An object each would fill etcd with noise, so the cluster keeps, per policy, how
//! many skips each reason code caused and the last one — in the key `skips.json` of the
//! shared state ConfigMap ([`crate::state`]). The leader adds what it counted since its
//! last write every [`FLUSH_EVERY`] (read, add, replace with the resourceVersion as
//! precondition: counts survive failovers and restarts). The journal keeps every skip.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use serde::{Deserialize, Serialize};

use super::HistoryError;
use crate::{
    labels::MANAGED_BY,
    record::{ExperimentRecord, TriggerInfo, Verdict},
};

/// The ConfigMap key of the counts.
pub const KEY: &str = "skips.json";
/// How often the leader writes what it counted.
pub const FLUSH_EVERY: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: u32 = 5;

/// One policy's skips.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySkips {
    /// Skips by reason code (`paused`, `alertsFiring`, ...).
    pub counts: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<LastSkip>,
}

/// The last skip of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastSkip {
    pub id: String,
    pub at: DateTime<Utc>,
    /// A schedule's planned fire time (where missed fires are counted from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<DateTime<Utc>>,
    pub reason_code: String,
    pub reason: String,
}

/// Skips per policy.
pub type Skips = BTreeMap<String, PolicySkips>;

impl PolicySkips {
    fn add(&mut self, other: &PolicySkips) {
        for (code, n) in &other.counts {
            *self.counts.entry(code.clone()).or_default() += n;
        }
        if other
            .last
            .as_ref()
            .is_some_and(|o| self.last.as_ref().is_none_or(|l| l.at <= o.at))
        {
            self.last.clone_from(&other.last);
        }
    }
}

/// Counts skips in this process until they are written.
#[derive(Debug, Clone, Default)]
pub struct SkipCounter {
    unwritten: Arc<Mutex<Skips>>,
}

impl SkipCounter {
    /// Counts `record` if it is a skip.
    pub fn count(&self, record: &ExperimentRecord) {
        if record.verdict != Verdict::Skipped {
            return;
        }
        let code = record
            .reason_code
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let mut u = lock(&self.unwritten);
        let p = u.entry(record.policy.clone()).or_default();
        *p.counts.entry(code.clone()).or_default() += 1;
        p.last = Some(LastSkip {
            id: record.id.clone(),
            at: record.ended_at,
            scheduled_at: match record.trigger {
                TriggerInfo::Schedule { scheduled_at } => Some(scheduled_at),
                _ => None,
            },
            reason_code: code,
            reason: record.reason.chars().take(300).collect(),
        });
    }

    /// Adds what was counted to the ConfigMap `name` in `namespace` (created if missing).
    /// On failure the counts are kept for the next write.
    pub async fn write(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<(), HistoryError> {
        let delta = std::mem::take(&mut *lock(&self.unwritten));
        if delta.is_empty() {
            return Ok(());
        }
        let result = write(client, namespace, name, &delta).await;
        if result.is_err() {
            let mut u = lock(&self.unwritten);
            for (policy, d) in delta {
                let mut merged = d;
                if let Some(newer) = u.remove(&policy) {
                    merged.add(&newer);
                }
                u.insert(policy, merged);
            }
        }
        result
    }
}

/// Reads the skips written in a state ConfigMap.
pub fn decode(cm: &ConfigMap) -> Skips {
    cm.data
        .as_ref()
        .and_then(|d| d.get(KEY))
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

async fn write(
    client: &Client,
    namespace: &str,
    name: &str,
    delta: &Skips,
) -> Result<(), HistoryError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let err = |e: kube::Error| HistoryError(format!("skip counts: {e}"));
    let bounded = |e: tokio::time::error::Elapsed| HistoryError(format!("skip counts: {e}"));
    for _ in 0..ATTEMPTS {
        let existing = tokio::time::timeout(REQUEST_TIMEOUT, api.get_opt(name))
            .await
            .map_err(bounded)?
            .map_err(err)?;
        let mut skips = existing.as_ref().map(decode).unwrap_or_default();
        for (policy, d) in delta {
            skips.entry(policy.clone()).or_default().add(d);
        }
        let text = serde_json::to_string(&skips).unwrap_or_default();
        let written = match existing {
            Some(mut cm) => {
                cm.data
                    .get_or_insert_with(Default::default)
                    .insert(KEY.into(), text);
                tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    api.replace(name, &PostParams::default(), &cm),
                )
                .await
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        labels: Some([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into()),
                        ..ObjectMeta::default()
                    },
                    data: Some([(KEY.to_string(), text)].into()),
                    ..ConfigMap::default()
                };
                tokio::time::timeout(REQUEST_TIMEOUT, api.create(&PostParams::default(), &cm)).await
            }
        };
        match written.map_err(bounded)? {
            Ok(_) => return Ok(()),
            // A conflict: read again and retry.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(err(e)),
        }
    }
    Err(HistoryError(format!(
        "skip counts: {ATTEMPTS} conflicting writes in a row"
    )))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::record;

    #[test]
    fn skips_are_counted_by_policy_and_reason_with_the_last_one() {
        let c = SkipCounter::default();
        let mut s = record("a", Verdict::Skipped);
        s.reason_code = Some("paused".into());
        c.count(&s);
        s.id = "b".into();
        s.reason_code = Some("alertsFiring".into());
        c.count(&s);
        c.count(&record("c", Verdict::Passed));
        let u = lock(&c.unwritten).clone();
        let p = &u[&s.policy];
        assert_eq!(p.counts["paused"], 1);
        assert_eq!(p.counts["alertsFiring"], 1);
        assert_eq!(p.counts.values().sum::<u64>(), 2, "a pass is not a skip");
        assert_eq!(p.last.as_ref().map(|l| l.id.as_str()), Some("b"));
        let mut total = PolicySkips::default();
        total.add(p);
        total.add(p);
        assert_eq!(total.counts["paused"], 2);
    }
}
