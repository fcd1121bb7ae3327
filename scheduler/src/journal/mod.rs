//! The journal: persists what experiments are about to do and what they did
//! ([`crate::record`]) as JSON lines in a file (a persistent volume in production), and
//! keeps the newest records in memory for `GET /api/v1/experiments`.
//!
//! # On disk
//!
//! One JSON object per line, each line written whole (flushed and `fdatasync`ed) before
//! the call that writes it returns `Ok`:
//!
//! - a **final record** is exactly an [`ExperimentRecord`] (so journals written before
//!   intents existed still load);
//! - an **intent** is `{"started": {...}}`: an object whose only key is `started`, holding
//!   an [`Intent`]. It is written before any mutation; the final record with the same
//!   `id` closes it. An intent without a final record is *dangling*: havoc stopped (or
//!   crashed) in between, and the next start closes it ([`Journal::dangling`]).
//! - a blank line carries nothing (the journal writes one only to probe for free space and
//!   cuts it back at once; readers skip it).
//!
//! # Failures
//!
//! - **A failed write** (a full disk, an I/O error; also half a line written before
//!   `ENOSPC`) is cut back to where it began (`set_len`), so no partial line is glued to
//!   the next one; the call returns the error and [`Journal::write_error`] says why until a
//!   write succeeds again (the engine pauses chaos meanwhile). A final record that could
//!   not be written is kept in memory (at most [`MAX_PENDING`], the oldest dropped and
//!   counted) and written, in order, before anything else on the next
//!   [`started`](Journal::started), [`append`](Journal::append) or
//!   [`retry_pending`](Journal::retry_pending). An intent that could not be written is not
//!   kept: its experiment must not start.
//! - **Unreadable lines** (not UTF-8, not JSON, torn by a crash, longer than 8 MiB) are
//!   skipped and counted ([`Journal::unreadable_lines`]); they never hide the lines after
//!   them. A torn last line is ended with a newline by the next write.
//! - **Rotation by size** ([`Rotation`]): when a write would take `journal.jsonl` beyond
//!   `max_bytes`, it becomes `journal.jsonl.1` (older ones shift to `.2`, ...; beyond
//!   `keep_files` they are deleted) and a new file starts with the intents still open, so
//!   the dangling ones are never lost with an old file. [`Journal::open`] reads the rotated
//!   files too, oldest first.

mod file;
mod line;

use std::{
    collections::VecDeque,
    io,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

pub use line::Intent;

use crate::record::ExperimentRecord;

/// How many final records that could not be written are kept for a later retry.
pub const MAX_PENDING: usize = 1_000;

/// Writes are retried in chunks of about this many bytes (one sync each).
const RETRY_CHUNK: usize = 64 << 10;

/// When the journal file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The file is rotated before a write would take it beyond this size. A single write
    /// larger than this still goes, into a new file of its own.
    pub max_bytes: u64,
    /// How many rotated files (`journal.jsonl.1` ...) are kept.
    pub keep_files: usize,
}

impl Default for Rotation {
    /// 64 MiB, 3 rotated files: 256 MiB at most, some 300,000 records.
    fn default() -> Self {
        Rotation {
            max_bytes: 64 << 20,
            keep_files: 3,
        }
    }
}

/// Why the journal could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot open the journal {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the journal {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the journal {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot rotate the journal {}: {source}", path.display())]
    Rotate {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot encode a journal line: {0}")]
    Encode(#[source] serde_json::Error),
}

impl JournalError {
    /// For metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            JournalError::Open { .. } => "open",
            JournalError::Read { .. } => "read",
            JournalError::Write { .. } => "write",
            JournalError::Rotate { .. } => "rotate",
            JournalError::Encode(_) => "encode",
        }
    }

    /// The I/O error underneath, if any (`ENOSPC`, say).
    pub fn io(&self) -> Option<&io::Error> {
        match self {
            JournalError::Open { source, .. }
            | JournalError::Read { source, .. }
            | JournalError::Write { source, .. }
            | JournalError::Rotate { source, .. } => Some(source),
            JournalError::Encode(_) => None,
        }
    }
}

/// The final records of the journal at `path` and its rotated files (`path.1` ...),
/// oldest first, and how many lines could not be read; intents are skipped. For offline
/// readers (`havoc report --journal`): it only reads, creates nothing and takes no lock,
/// so it also reads the journal of a running service, or a copy.
pub fn read_records(path: &Path) -> Result<(Vec<ExperimentRecord>, u64), JournalError> {
    let mut records = Vec::new();
    let unreadable = read_lines(path, false, |l| {
        if let line::Line::Record(r) = l {
            records.push(*r);
        }
    })?;
    Ok((records, unreadable))
}

/// Reads every line of the journal at `path` and its rotated files, oldest first, into
/// `each`; returns how many lines could not be read. `missing_ok`: a file that does not
/// exist (yet, or any more) is no error.
fn read_lines(
    path: &Path,
    missing_ok: bool,
    mut each: impl FnMut(line::Line),
) -> Result<u64, JournalError> {
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| JournalError::Read { path, source }
    };
    let mut files: Vec<PathBuf> = file::rotated(path)
        .map_err(read_error(path))?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    files.push(path.to_path_buf());
    let mut unreadable = 0;
    for f in &files {
        match line::read_file(f, &mut each) {
            Ok(n) => unreadable += n,
            Err(e) if missing_ok && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(read_error(f)(e)),
        }
    }
    Ok(unreadable)
}

/// Intents and final records, in a JSON-lines file or in memory only.
#[derive(Debug)]
pub struct Journal {
    path: Option<PathBuf>,
    keep: usize,
    unreadable: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// `None`: in memory only.
    sink: Option<file::Sink>,
    /// The newest `keep` final records, oldest first.
    recent: VecDeque<ExperimentRecord>,
    /// Intents whose final record is not on disk yet, oldest first.
    open: Vec<OpenIntent>,
    /// Final records not written yet, oldest first.
    pending: VecDeque<Pending>,
    dropped: u64,
    /// The last write error, while writes fail.
    error: Option<String>,
    /// The size of the write that failed: what a probe must fit.
    failed_len: usize,
}

#[derive(Debug)]
struct OpenIntent {
    intent: Intent,
    /// Its final record exists in memory (pending, or dropped from pending) but not on
    /// disk: not dangling for this process, still carried into a new file on rotation.
    finished: bool,
}

#[derive(Debug)]
struct Pending {
    id: String,
    line: Vec<u8>,
}

impl Journal {
    /// A journal kept in memory only (`keep` newest records). Never fails to write.
    pub fn in_memory(keep: usize) -> Self {
        Journal {
            path: None,
            keep,
            unreadable: 0,
            state: Mutex::new(State::default()),
        }
    }

    /// Opens (or creates) the journal file at `path` and reads it with its rotated files,
    /// oldest first: the newest `keep` final records, and the intents that have none
    /// (dangling). Unreadable lines are skipped and counted, never fatal. Opening writes
    /// nothing, so it also succeeds on a full disk.
    pub fn open(path: &Path, keep: usize, rotation: Rotation) -> Result<Self, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| JournalError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let mut state = State::default();
        let unreadable = read_lines(path, true, |l| state.replay(l, keep))?;
        state.sink = Some(file::Sink::open(path, rotation)?);
        tracing::info!(
            path = %path.display(),
            records = state.recent.len(),
            dangling = state.open.len(),
            unreadable,
            "opened the journal"
        );
        Ok(Journal {
            path: Some(path.to_path_buf()),
            keep,
            unreadable,
            state: Mutex::new(state),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Appends an intent line (flushed and synced) before any mutation; records that
    /// wait for a retry are written first. `Err`: the intent is not on disk and the
    /// experiment must not mutate anything.
    pub fn started(&self, intent: &Intent) -> Result<(), JournalError> {
        let line = line::encode_intent(intent).map_err(JournalError::Encode)?;
        let mut st = self.lock();
        if st.sink.is_some() {
            st.flush_pending()?;
            st.write(&line)?;
        }
        st.open.retain(|o| o.intent.id != intent.id);
        st.open.push(OpenIntent {
            intent: intent.clone(),
            finished: false,
        });
        Ok(())
    }

    /// Appends a final record (flushed and synced) and closes its intent. `Err`: the
    /// record could not be written; it is kept in memory (and in [`Journal::newest`]) and
    /// written by a later call, and [`Journal::write_error`] says why meanwhile.
    pub fn append(&self, record: &ExperimentRecord) -> Result<(), JournalError> {
        let line = line::encode_record(record).map_err(JournalError::Encode)?;
        let mut st = self.lock();
        st.recent.push_back(record.clone());
        while st.recent.len() > self.keep {
            st.recent.pop_front();
        }
        if st.sink.is_none() {
            st.open.retain(|o| o.intent.id != record.id);
            return Ok(());
        }
        if let Some(o) = st.open.iter_mut().find(|o| o.intent.id == record.id) {
            o.finished = true;
        }
        st.pending.push_back(Pending {
            id: record.id.clone(),
            line,
        });
        if st.pending.len() > MAX_PENDING
            && let Some(lost) = st.pending.pop_front()
        {
            st.dropped += 1;
            tracing::warn!(
                id = %lost.id,
                dropped = st.dropped,
                "journal: dropping the oldest record that could not be written ({MAX_PENDING} wait already)"
            );
        }
        st.flush_pending()
    }

    /// Writes the records that wait for a retry, in order. With none waiting but a write
    /// error set (an intent failed), checks that a line of that size fits now. `Ok`: the
    /// journal writes again and [`Journal::write_error`] is `None`. The engine calls this
    /// periodically while chaos is paused for the journal.
    pub fn retry_pending(&self) -> Result<(), JournalError> {
        let mut st = self.lock();
        if st.sink.is_none() {
            return Ok(());
        }
        if !st.pending.is_empty() {
            return st.flush_pending();
        }
        if st.error.is_some() {
            return st.probe();
        }
        Ok(())
    }

    /// Intents that have no final record yet: those found at open (a crash) plus those
    /// started since and not finished, oldest first.
    pub fn dangling(&self) -> Vec<Intent> {
        let st = self.lock();
        st.open
            .iter()
            .filter(|o| !o.finished)
            .map(|o| o.intent.clone())
            .collect()
    }

    /// The newest `limit` final records, newest first (also those waiting to be written).
    pub fn newest(&self, limit: usize) -> Vec<ExperimentRecord> {
        let st = self.lock();
        st.recent.iter().rev().take(limit).cloned().collect()
    }

    /// `Some(why)` while the journal cannot write: the engine pauses chaos with this
    /// reason until writes succeed again. Always `None` in memory.
    pub fn write_error(&self) -> Option<String> {
        let st = self.lock();
        let error = st.error.as_ref()?;
        Some(match st.pending.len() {
            0 => error.clone(),
            n => format!("{error}; {n} record(s) wait in memory to be written"),
        })
    }

    /// Final records that could not be written yet.
    pub fn pending_records(&self) -> usize {
        self.lock().pending.len()
    }

    /// Final records dropped (never written) because more than [`MAX_PENDING`] waited.
    pub fn dropped_records(&self) -> u64 {
        self.lock().dropped
    }

    /// Lines at open that could not be read (skipped, counted).
    pub fn unreadable_lines(&self) -> u64 {
        self.unreadable
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// One line read at open.
    fn replay(&mut self, l: line::Line, keep: usize) {
        match l {
            line::Line::Started(intent) => {
                // rotation carries open intents into the new file: the same id again
                self.open.retain(|o| o.intent.id != intent.id);
                self.open.push(OpenIntent {
                    intent: *intent,
                    finished: false,
                });
            }
            line::Line::Record(record) => {
                self.open.retain(|o| o.intent.id != record.id);
                self.recent.push_back(*record);
                while self.recent.len() > keep {
                    self.recent.pop_front();
                }
            }
        }
    }

    /// Writes the pending records, oldest first, in chunks; stops at the first failure.
    fn flush_pending(&mut self) -> Result<(), JournalError> {
        while !self.pending.is_empty() {
            let mut chunk = Vec::new();
            let mut n = 0;
            for p in &self.pending {
                if n > 0 && chunk.len() + p.line.len() > RETRY_CHUNK {
                    break;
                }
                chunk.extend_from_slice(&p.line);
                n += 1;
            }
            self.write(&chunk)?;
            for p in self.pending.drain(..n) {
                self.open.retain(|o| o.intent.id != p.id);
            }
            self.succeeded();
        }
        Ok(())
    }

    /// Writes whole lines to the file (a no-op in memory); notes the outcome.
    fn write(&mut self, lines: &[u8]) -> Result<(), JournalError> {
        let carry = self.carry()?;
        let result = match self.sink.as_mut() {
            Some(sink) => sink.append(lines, &carry),
            None => Ok(()),
        };
        self.noted(result, lines.len())
    }

    /// Checks that a line of the size that failed last fits now (see [`file::Sink::probe`]).
    fn probe(&mut self) -> Result<(), JournalError> {
        let (len, carry) = (self.failed_len, self.carry()?);
        let result = match self.sink.as_mut() {
            Some(sink) => sink.probe(len, &carry),
            None => Ok(()),
        };
        self.noted(result, len)
    }

    fn noted(&mut self, result: Result<(), JournalError>, len: usize) -> Result<(), JournalError> {
        match &result {
            Ok(()) => self.succeeded(),
            Err(e) => {
                if self.error.is_none() {
                    tracing::error!(error = %e, "the journal cannot write");
                }
                self.error = Some(e.to_string());
                self.failed_len = len;
            }
        }
        result
    }

    /// A write succeeded: the error clears once nothing waits any more.
    fn succeeded(&mut self) {
        if self.pending.is_empty()
            && let Some(was) = self.error.take()
        {
            tracing::info!(was = %was, "the journal writes again");
        }
    }

    /// The intent lines a new file starts with: every intent whose final record is not on
    /// disk.
    fn carry(&self) -> Result<Vec<u8>, JournalError> {
        let mut carry = Vec::new();
        for o in &self.open {
            carry.extend(line::encode_intent(&o.intent).map_err(JournalError::Encode)?);
        }
        Ok(carry)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::record::{Verdict, tests::record};
    use line::tests::intent;

    #[test]
    fn journal_appends_lines_and_reloads_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/journal.jsonl");
        let j = Journal::open(&path, 2, Rotation::default()).expect("open");
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
        let again = Journal::open(&path, 10, Rotation::default()).expect("reopen");
        assert_eq!(ids(again.newest(10)), ["c", "b", "a"]);
        assert_eq!(again.unreadable_lines(), 1);
        again
            .append(&record("d", Verdict::Deviated))
            .expect("append after tear");
        let third = Journal::open(&path, 10, Rotation::default()).expect("reopen");
        assert_eq!(
            ids(third.newest(10)),
            ["d", "c", "b", "a"],
            "the record after a torn line survives"
        );
        assert_eq!(third.unreadable_lines(), 1, "the torn line stays one line");
    }

    fn ids(v: Vec<ExperimentRecord>) -> Vec<String> {
        v.into_iter().map(|r| r.id).collect()
    }

    fn dangling_ids(j: &Journal) -> Vec<String> {
        j.dangling().into_iter().map(|i| i.id).collect()
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        let bytes = std::fs::read(path).expect("read");
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("every line is JSON"))
            .collect()
    }

    #[test]
    fn an_intent_then_its_record_is_not_dangling() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let file = Journal::open(&path, 10, Rotation::default()).expect("open");
        for j in [&file, &Journal::in_memory(10)] {
            j.started(&intent("a")).expect("started");
            assert_eq!(dangling_ids(j), ["a"]);
            j.append(&record("a", Verdict::Passed)).expect("append");
            assert!(j.dangling().is_empty());
            assert_eq!(ids(j.newest(10)), ["a"]);
            assert_eq!(j.write_error(), None);
        }
        drop(file);
        let again = Journal::open(&path, 10, Rotation::default()).expect("reopen");
        assert!(again.dangling().is_empty());
        assert_eq!(ids(again.newest(10)), ["a"], "an intent is not a record");
        let on_disk = lines(&path);
        assert_eq!(on_disk.len(), 2);
        assert_eq!(on_disk[0]["started"]["id"], "a");
        assert_eq!(on_disk[1]["id"], "a");
        assert_eq!(on_disk[1]["verdict"], "passed");
    }

    #[test]
    fn an_intent_without_its_record_is_dangling_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let j = Journal::open(&path, 10, Rotation::default()).expect("open");
        j.started(&intent("a")).expect("started");
        j.started(&intent("b")).expect("started");
        j.append(&record("b", Verdict::Passed)).expect("append");
        assert_eq!(dangling_ids(&j), ["a"]);
        drop(j); // a crash: nothing else is written

        let again = Journal::open(&path, 10, Rotation::default()).expect("reopen");
        assert_eq!(
            again.dangling(),
            [intent("a")],
            "the whole intent comes back"
        );
        let mut closed = record("a", Verdict::Errored);
        closed.reason = "interrupted: havoc stopped while the fault was held".to_string();
        again.append(&closed).expect("close");
        assert!(again.dangling().is_empty());
        drop(again);
        let third = Journal::open(&path, 10, Rotation::default()).expect("reopen");
        assert!(third.dangling().is_empty());
        assert_eq!(ids(third.newest(10)), ["a", "b"]);
    }

    #[test]
    fn a_complete_last_line_without_newline_loads_and_the_next_starts_clean() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let mut bytes = line::encode_record(&record("a", Verdict::Passed)).expect("json");
        bytes.pop();
        std::fs::write(&path, bytes).expect("write");
        let j = Journal::open(&path, 10, Rotation::default()).expect("open");
        assert_eq!(ids(j.newest(10)), ["a"]);
        assert_eq!(j.unreadable_lines(), 0);
        j.append(&record("b", Verdict::Passed)).expect("append");
        let again = Journal::open(&path, 10, Rotation::default()).expect("reopen");
        assert_eq!(ids(again.newest(10)), ["b", "a"]);
        assert_eq!(lines(&path).len(), 2);
    }

    #[test]
    fn unreadable_lines_in_the_middle_hide_nothing_after_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let mut bytes = Vec::new();
        bytes.extend(line::encode_record(&record("a", Verdict::Passed)).expect("json"));
        bytes.extend(b"\xff\xfe not UTF-8 \xc3\x28\n");
        bytes.extend(line::encode_intent(&intent("x")).expect("json"));
        bytes.extend(b"{\"id\": \"not a record\"}\n");
        bytes.extend(b"\n   \n");
        bytes.extend(line::encode_record(&record("b", Verdict::Deviated)).expect("json"));
        bytes.extend(b"{\"started\": {\"id\": \"x\"}}\n");
        bytes.extend(line::encode_intent(&intent("y")).expect("json"));
        std::fs::write(&path, bytes).expect("write");

        let j = Journal::open(&path, 10, Rotation::default()).expect("open");
        assert_eq!(ids(j.newest(10)), ["b", "a"]);
        assert_eq!(dangling_ids(&j), ["x", "y"]);
        assert_eq!(
            j.unreadable_lines(),
            3,
            "not UTF-8, not a record, a broken intent; blank lines are not counted"
        );
    }

    #[test]
    fn a_line_longer_than_the_limit_is_skipped_without_hiding_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let mut bytes = vec![b'x'; line::MAX_LINE + 10];
        bytes.push(b'\n');
        bytes.extend(line::encode_record(&record("a", Verdict::Passed)).expect("json"));
        std::fs::write(&path, bytes).expect("write");
        let j = Journal::open(&path, 10, Rotation::default()).expect("open");
        assert_eq!(ids(j.newest(10)), ["a"]);
        assert_eq!(j.unreadable_lines(), 1);
    }

    #[test]
    fn rotation_keeps_newest_and_dangling_across_files_and_deletes_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let stale = dir.path().join("journal.jsonl.7");
        std::fs::write(&stale, b"left by a larger keepFiles\n").expect("write");
        let line_len = line::encode_record(&record("r000", Verdict::Passed))
            .expect("json")
            .len() as u64;
        let rotation = Rotation {
            max_bytes: 10 * line_len,
            keep_files: 2,
        };
        let j = Journal::open(&path, 100, rotation).expect("open");
        j.started(&intent("held")).expect("started");
        let all: Vec<String> = (0..30).map(|i| format!("r{i:03}")).collect();
        for (i, id) in all.iter().enumerate() {
            j.started(&intent(id)).expect("started");
            j.append(&record(id, Verdict::Passed)).expect("append");
            if i == 20 {
                j.started(&intent("late")).expect("started");
            }
        }
        assert_eq!(dangling_ids(&j), ["held", "late"]);
        assert!(!stale.exists(), "files beyond keepFiles are deleted");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["journal.jsonl", "journal.jsonl.1", "journal.jsonl.2"]
        );
        for n in &names {
            let p = dir.path().join(n);
            let len = std::fs::metadata(&p).expect("stat").len();
            assert!(len <= rotation.max_bytes, "{n} has {len} bytes");
            // each file starts with the intents still open when it was started
            assert_eq!(lines(&p)[0]["started"]["id"], "held", "{n}");
        }
        drop(j);

        let again = Journal::open(&path, 100, rotation).expect("reopen");
        assert_eq!(dangling_ids(&again), ["held", "late"]);
        let newest = ids(again.newest(100));
        assert!(
            newest.len() > 3 && newest.len() < all.len(),
            "the deleted file took the oldest: {newest:?}"
        );
        let expected: Vec<String> = all.iter().rev().take(newest.len()).cloned().collect();
        assert_eq!(newest, expected, "the newest, in order, once each");
        assert_eq!(again.unreadable_lines(), 0);
    }

    #[test]
    fn rotation_without_rotated_files_still_carries_the_dangling() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let rotation = Rotation {
            max_bytes: 2_000,
            keep_files: 0,
        };
        let j = Journal::open(&path, 100, rotation).expect("open");
        j.started(&intent("held")).expect("started");
        for i in 0..20 {
            j.append(&record(&format!("r{i}"), Verdict::Passed))
                .expect("append");
        }
        drop(j);
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(names.len(), 1, "only journal.jsonl");
        let again = Journal::open(&path, 100, rotation).expect("reopen");
        assert_eq!(dangling_ids(&again), ["held"]);
        assert_eq!(ids(again.newest(1)), ["r19"]);
    }

    #[test]
    fn a_second_writer_follows_the_file_another_rotated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let rotation = Rotation {
            max_bytes: 2_000,
            keep_files: 5,
        };
        let first = Journal::open(&path, 100, rotation).expect("open");
        let second = Journal::open(&path, 100, rotation).expect("open");
        for i in 0..10 {
            first
                .append(&record(&format!("a{i}"), Verdict::Passed))
                .expect("append");
        }
        assert!(dir.path().join("journal.jsonl.1").exists(), "rotated");
        second
            .append(&record("b", Verdict::Passed))
            .expect("append");
        let ids_in = |p: &Path| {
            lines(p)
                .iter()
                .map(|v| v["id"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids_in(&path).last().map(String::as_str),
            Some("b"),
            "written to the current file, not to the rotated one it had open"
        );
        let again = Journal::open(&path, 100, rotation).expect("reopen");
        assert_eq!(again.newest(100).len(), 11);
    }

    #[test]
    fn in_memory_never_fails_and_keeps_the_bound() {
        let j = Journal::in_memory(2);
        for id in ["a", "b", "c"] {
            j.started(&intent(id)).expect("started");
        }
        j.append(&record("b", Verdict::Passed)).expect("append");
        j.append(&record("x", Verdict::Skipped)).expect("append");
        j.append(&record("y", Verdict::Skipped)).expect("append");
        assert_eq!(dangling_ids(&j), ["a", "c"]);
        assert_eq!(ids(j.newest(10)), ["y", "x"]);
        assert_eq!(j.write_error(), None);
        assert_eq!(j.pending_records(), 0);
        assert!(j.retry_pending().is_ok());
        assert_eq!(j.path(), None);
    }

    #[test]
    fn a_file_that_went_missing_gets_the_open_intents_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let j = Journal::open(&path, 10, Rotation::default()).expect("open");
        j.started(&intent("held")).expect("started");
        std::fs::remove_file(&path).expect("someone deletes the journal");
        j.append(&record("a", Verdict::Passed)).expect("append");
        let on_disk = lines(&path);
        assert_eq!(on_disk[0]["started"]["id"], "held");
        assert_eq!(on_disk[1]["id"], "a");
        drop(j);

        // a crash in the middle of a rotation: the intent is only in the rotated file
        std::fs::rename(&path, dir.path().join("journal.jsonl.1")).expect("rename");
        let again = Journal::open(&path, 10, Rotation::default()).expect("reopen");
        assert_eq!(dangling_ids(&again), ["held"]);
        again.append(&record("b", Verdict::Passed)).expect("append");
        assert_eq!(lines(&path)[0]["started"]["id"], "held");
        drop(again);
        std::fs::remove_file(dir.path().join("journal.jsonl.1")).expect("rm");
        let third = Journal::open(&path, 10, Rotation::default()).expect("reopen");
        assert_eq!(dangling_ids(&third), ["held"]);
    }
}
