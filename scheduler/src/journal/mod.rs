//! The journal: persists experiment records ([`crate::record`]) as JSON lines in a file
//! (a persistent volume in production) and keeps the newest in memory for
//! `GET /api/v1/experiments`.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::{ExperimentRecord, ObjectRef, TriggerInfo};

/// What is about to happen: written before any mutation (DESIGN section 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    pub id: String,
    pub policy: String,
    pub fault: String,
    pub dry_run: bool,
    pub trigger: TriggerInfo,
    pub started_at: DateTime<Utc>,
    /// The objects about to be changed.
    pub targets: Vec<ObjectRef>,
    /// When its revert records expire.
    pub deadline: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct StartedLine {
    started: Intent,
}

/// Appends records to a JSON-lines file and keeps the newest in memory.
#[derive(Debug)]
pub struct Journal {
    file: Option<Mutex<File>>,
    path: Option<PathBuf>,
    recent: Mutex<VecDeque<ExperimentRecord>>,
    dangling: Mutex<Vec<Intent>>,
    keep: usize,
}

impl Journal {
    /// A journal kept in memory only (`keep` newest records).
    pub fn in_memory(keep: usize) -> Self {
        Journal {
            file: None,
            path: None,
            recent: Mutex::new(VecDeque::new()),
            dangling: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// Opens (or creates) a journal file, loading its newest `keep` records. Lines that do
    /// not parse (a torn last line after a crash, say) are skipped, not fatal.
    pub fn open(path: &Path, keep: usize) -> std::io::Result<Self> {
        let mut recent = VecDeque::new();
        let mut dangling: Vec<Intent> = Vec::new();
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                if let Ok(s) = serde_json::from_str::<StartedLine>(&line) {
                    dangling.push(s.started);
                    continue;
                }
                match serde_json::from_str::<ExperimentRecord>(&line) {
                    Ok(r) => {
                        dangling.retain(|i| i.id != r.id);
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
            dangling: Mutex::new(dangling),
            keep,
        })
    }

    /// Appends an intent line before any mutation.
    pub fn started(&self, intent: &Intent) -> std::io::Result<()> {
        if let Some(file) = &self.file {
            let mut line = serde_json::to_vec(&serde_json::json!({"started": intent}))
                .map_err(std::io::Error::other)?;
            line.push(b'\n');
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            f.write_all(&line)?;
            f.sync_data()?;
        }
        self.dangling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(intent.clone());
        Ok(())
    }

    /// Intents without a final record yet.
    pub fn dangling(&self) -> Vec<Intent> {
        self.dangling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `Some(why)` while the journal cannot write.
    pub fn write_error(&self) -> Option<String> {
        None
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
        self.dangling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|i| i.id != record.id);
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
mod tests {
    use super::*;
    use crate::record::{Verdict, tests::record};

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
