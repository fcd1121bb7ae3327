//! Experiment records: what happened, when, to what, and the verdict.
//!
//! Every experiment produces one [`ExperimentRecord`]. The [`Journal`] appends records as
//! JSON lines to a file (a persistent volume in production) and keeps the newest in
//! memory for `GET /api/v1/experiments`.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The outcome of an experiment (DESIGN section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// Fault injected and reverted; no new alert, no SLO breach until settle ended.
    Passed,
    /// A new alert fired or an SLO was breached during the fault or settle.
    Deviated,
    /// The gate was closed; not a failure.
    Skipped,
    /// The experiment could not be carried out.
    Errored,
    /// A revert did not succeed: the most serious outcome.
    RollbackFailed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Deviated => "deviated",
            Verdict::Skipped => "skipped",
            Verdict::Errored => "errored",
            Verdict::RollbackFailed => "rollbackFailed",
        }
    }
}

/// What started an experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TriggerInfo {
    /// A clock schedule; `scheduledAt` is the planned fire time.
    #[serde(rename_all = "camelCase")]
    Schedule { scheduled_at: DateTime<Utc> },
    /// A completed rollout.
    #[serde(rename_all = "camelCase")]
    Rollout {
        workload: ObjectRef,
        revision: String,
        completed_at: DateTime<Utc>,
    },
    /// HTTP `POST /api/v1/policies/{name}/run` or `havoc run`.
    #[serde(rename_all = "camelCase")]
    Manual { source: String },
}

/// A Kubernetes object an experiment touched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn namespaced(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
        }
    }
}

/// A target and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRecord {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// `injected`, `dryRun`, `skipped` (e.g. a PDB refused the eviction, the pod was gone).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An alert attributed to the experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertRecord {
    pub name: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
}

/// An SLO reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloRecord {
    pub name: String,
    /// `None`: the query returned no data.
    pub value: Option<f64>,
    pub objective: String,
    pub breached: bool,
    pub at: DateTime<Utc>,
}

/// One experiment, from start to verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentRecord {
    pub id: String,
    pub policy: String,
    pub verdict: Verdict,
    /// Why: the gate reason, the deviation, the error.
    pub reason: String,
    pub dry_run: bool,
    pub trigger: TriggerInfo,
    pub targets: Vec<TargetRecord>,
    /// The fault's field name, e.g. `podDelete`.
    pub fault: String,
    pub started_at: DateTime<Utc>,
    pub injected_at: Option<DateTime<Utc>>,
    pub reverted_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    pub alerts: Vec<AlertRecord>,
    pub slos: Vec<SloRecord>,
}

/// Appends records to a JSON-lines file and keeps the newest in memory.
#[derive(Debug)]
pub struct Journal {
    file: Option<Mutex<File>>,
    path: Option<PathBuf>,
    recent: Mutex<VecDeque<ExperimentRecord>>,
    keep: usize,
}

impl Journal {
    /// A journal kept in memory only (`keep` newest records).
    pub fn in_memory(keep: usize) -> Self {
        Journal {
            file: None,
            path: None,
            recent: Mutex::new(VecDeque::new()),
            keep,
        }
    }

    /// Opens (or creates) a journal file, loading its newest `keep` records. Lines that do
    /// not parse (a torn last line after a crash, say) are skipped, not fatal.
    pub fn open(path: &Path, keep: usize) -> std::io::Result<Self> {
        let mut recent = VecDeque::new();
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<ExperimentRecord>(&line) {
                    Ok(r) => {
                        recent.push_back(r);
                        if recent.len() > keep {
                            recent.pop_front();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "skipping unreadable journal line")
                    }
                }
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        // A crash mid-write leaves a torn last line: end it, so the next record starts clean.
        let len = file.metadata()?.len();
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            let mut reader = File::open(path)?;
            reader.seek(SeekFrom::Start(len - 1))?;
            reader.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(Journal {
            file: Some(Mutex::new(file)),
            path: Some(path.to_path_buf()),
            recent: Mutex::new(recent),
            keep,
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Appends a record (one line, flushed and synced, so a crash loses nothing written).
    pub fn append(&self, record: &ExperimentRecord) -> std::io::Result<()> {
        if let Some(file) = &self.file {
            let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
            line.push(b'\n');
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            f.write_all(&line)?;
            f.sync_data()?;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.push_back(record.clone());
        while recent.len() > self.keep {
            recent.pop_front();
        }
        Ok(())
    }

    /// The newest `limit` records, newest first.
    pub fn newest(&self, limit: usize) -> Vec<ExperimentRecord> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().rev().take(limit).cloned().collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record with every field set, for tests.
    pub(crate) fn record(id: &str, verdict: Verdict) -> ExperimentRecord {
        let t: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().expect("valid");
        ExperimentRecord {
            id: id.to_string(),
            policy: "p".to_string(),
            verdict,
            reason: "because".to_string(),
            dry_run: false,
            trigger: TriggerInfo::Schedule { scheduled_at: t },
            targets: vec![TargetRecord {
                kind: "Pod".to_string(),
                namespace: Some("go-demo-8".to_string()),
                name: "go-demo-8-db-1".to_string(),
                outcome: "injected".to_string(),
                detail: None,
            }],
            fault: "podDelete".to_string(),
            started_at: t,
            injected_at: Some(t),
            reverted_at: None,
            ended_at: t,
            alerts: vec![],
            slos: vec![],
        }
    }

    #[test]
    fn records_serialize_with_the_documented_names() {
        let v = serde_json::to_value(record("x", Verdict::RollbackFailed)).expect("serializes");
        for key in [
            "id",
            "policy",
            "verdict",
            "reason",
            "dryRun",
            "trigger",
            "targets",
            "fault",
            "startedAt",
            "injectedAt",
            "revertedAt",
            "endedAt",
            "alerts",
            "slos",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["verdict"], "rollbackFailed");
        assert_eq!(v["trigger"]["kind"], "schedule");
        assert_eq!(v["trigger"]["scheduledAt"], "2026-11-22T10:00:00Z");
        assert_eq!(v["targets"][0]["namespace"], "go-demo-8");
    }

    #[test]
    fn journal_appends_lines_and_reloads_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/journal.jsonl");
        let j = Journal::open(&path, 2).expect("open");
        for id in ["a", "b", "c"] {
            j.append(&record(id, Verdict::Passed)).expect("append");
        }
        let ids = |v: Vec<ExperimentRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(j.newest(10)), ["c", "b"]);
        // a torn last line (crash mid-write) is skipped on reload
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"id\":\"torn"))
            .expect("tear");
        let again = Journal::open(&path, 10).expect("reopen");
        assert_eq!(ids(again.newest(10)), ["c", "b", "a"]);
        again
            .append(&record("d", Verdict::Deviated))
            .expect("append after tear");
        let third = Journal::open(&path, 10).expect("reopen");
        assert_eq!(
            ids(third.newest(10)),
            ["d", "c", "b", "a"],
            "the record after a torn line survives"
        );
    }
}
