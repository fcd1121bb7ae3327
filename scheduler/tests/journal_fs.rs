//! The journal on a real full file system: a small tmpfs mounted for each test.
//!
//! Mounting needs root (CAP_SYS_ADMIN), as in CI; elsewhere set `HAVOC_SKIP_MOUNT_TESTS=1`
//! to skip these tests explicitly.

use std::{
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
    process::Command,
};

use chrono::{DateTime, Utc};
use havoc::{
    journal::{Intent, Journal, JournalError, MAX_PENDING, Rotation},
    record::{ExperimentRecord, ObjectRef, TargetOutcome, TargetRecord, TriggerInfo, Verdict},
};

/// A tmpfs of a given size, unmounted when dropped (also when a test fails). Declare it
/// before the journals on it, so that they are closed first.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None`: skipped on purpose (`HAVOC_SKIP_MOUNT_TESTS`).
    fn mount(size: &str) -> Option<Tmpfs> {
        if std::env::var_os("HAVOC_SKIP_MOUNT_TESTS").is_some() {
            eprintln!("skipped: HAVOC_SKIP_MOUNT_TESTS is set");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (these tests need root; HAVOC_SKIP_MOUNT_TESTS=1 skips them): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Tmpfs { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Writes `bytes` zeros into a new file, or until the file system is full if `None`.
fn filler(path: &Path, bytes: Option<usize>) {
    let mut f = File::create(path).expect("create filler");
    let block = [0u8; 4096];
    let mut written = 0;
    loop {
        let n = bytes.map_or(block.len(), |b| (b - written).min(block.len()));
        if n == 0 {
            break;
        }
        match f.write(&block[..n]) {
            Ok(0) => break,
            Ok(w) => written += w,
            Err(e) if bytes.is_none() && e.kind() == io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filler: {e}"),
        }
    }
    f.sync_all().expect("sync filler");
}

fn t0() -> DateTime<Utc> {
    "2026-11-22T10:00:00Z".parse().expect("valid")
}

fn record(id: &str) -> ExperimentRecord {
    ExperimentRecord {
        id: id.to_string(),
        policy: "random-pod-go-demo".to_string(),
        verdict: Verdict::Passed,
        reason: "no new alert, no SLO breach".to_string(),
        reason_code: None,
        dry_run: false,
        trigger: TriggerInfo::Schedule { scheduled_at: t0() },
        targets: vec![TargetRecord {
            kind: "Pod".to_string(),
            namespace: Some("go-demo-8".to_string()),
            name: "go-demo-8-5d9f8b7c6-x2x4z".to_string(),
            outcome: TargetOutcome::Injected,
            detail: None,
            revert: None,
        }],
        fault: "podDelete".to_string(),
        started_at: t0(),
        injected_at: Some(t0()),
        reverted_at: Some(t0()),
        ended_at: t0(),
        alerts: vec![],
        slos: vec![],
        budgets: vec![],
    }
}

fn intent(id: &str) -> Intent {
    Intent {
        id: id.to_string(),
        policy: "night-shift-scale".to_string(),
        fault: "scale".to_string(),
        dry_run: false,
        trigger: TriggerInfo::Schedule { scheduled_at: t0() },
        started_at: t0(),
        targets: vec![ObjectRef::namespaced(
            "Deployment",
            "go-demo-8",
            "go-demo-8",
        )],
        deadline: t0() + chrono::Duration::minutes(10),
        ends_by: None,
    }
}

fn is_enospc(e: &JournalError) -> bool {
    e.io()
        .is_some_and(|e| e.kind() == io::ErrorKind::StorageFull)
}

/// Every line of the file is a whole JSON object; returns the ids of the final records.
fn whole_lines(path: &Path) -> Vec<String> {
    let bytes = fs::read(path).expect("read journal");
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "the file ends in a partial line: {:?}",
        String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(80)..])
    );
    let mut ids = Vec::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_else(|e| {
            panic!(
                "a line is not whole ({e}): {}",
                String::from_utf8_lossy(line)
            )
        });
        if v.get("started").is_none() {
            serde_json::from_value::<ExperimentRecord>(v.clone())
                .unwrap_or_else(|e| panic!("not a record ({e}): {v}"));
            ids.push(v["id"].as_str().unwrap_or_default().to_string());
        }
    }
    ids
}

fn ids(records: Vec<ExperimentRecord>) -> Vec<String> {
    let mut ids: Vec<String> = records.into_iter().map(|r| r.id).collect();
    ids.reverse();
    ids
}

#[test]
fn a_full_file_system_leaves_only_whole_lines_pauses_and_resumes() {
    let Some(fs) = Tmpfs::mount("16k") else {
        return;
    };
    let room = fs.path("room-to-free-later");
    filler(&room, Some(8 << 10));
    let path = fs.path("journal.jsonl");
    let j = Journal::open(&path, 1000, Rotation::default()).expect("open");

    let mut appended = Vec::new();
    let failed = loop {
        assert!(appended.len() < 100, "16 KiB never filled up");
        let id = format!("r{:03}", appended.len());
        let result = j.append(&record(&id));
        appended.push(id);
        if let Err(e) = result {
            break e;
        }
        assert_eq!(j.write_error(), None);
    };
    assert!(is_enospc(&failed), "{failed}");
    assert_eq!(failed.label(), "write");
    let on_disk = whole_lines(&path);
    assert_eq!(
        on_disk,
        appended[..appended.len() - 1],
        "all but the failed one"
    );
    let why = j.write_error().expect("write_error is set");
    assert!(
        why.contains("No space left on device") && why.contains(&path.display().to_string()),
        "{why}"
    );
    assert_eq!(j.pending_records(), 1, "the failed record waits in memory");
    assert_eq!(ids(j.newest(1000)), appended, "and is served meanwhile");

    // still full: an intent is refused (nothing may be mutated), a record waits behind
    // the first one, the file stays whole
    let refused = j.started(&intent("x")).expect_err("no room for an intent");
    assert!(is_enospc(&refused), "{refused}");
    assert!(j.dangling().is_empty(), "a refused intent is not dangling");
    let late = format!("r{:03}", appended.len());
    assert!(j.append(&record(&late)).is_err());
    appended.push(late);
    assert!(j.retry_pending().is_err(), "still full");
    assert_eq!(j.pending_records(), 2);
    assert_eq!(whole_lines(&path), on_disk);

    fs::remove_file(&room).expect("free space");
    j.retry_pending().expect("retry once space is back");
    assert_eq!(j.write_error(), None);
    assert_eq!(j.pending_records(), 0);
    assert_eq!(whole_lines(&path), appended);
    drop(j);

    let again = Journal::open(&path, 1000, Rotation::default()).expect("reopen");
    assert_eq!(
        ids(again.newest(1000)),
        appended,
        "every record exactly once"
    );
    assert_eq!(again.unreadable_lines(), 0);
    assert!(again.dangling().is_empty());
}

#[test]
fn a_refused_intent_keeps_the_error_until_a_probe_fits() {
    let Some(fs) = Tmpfs::mount("16k") else {
        return;
    };
    let path = fs.path("journal.jsonl");
    let j = Journal::open(&path, 10, Rotation::default()).expect("open");
    let full = fs.path("full");
    filler(&full, None);

    assert!(j.started(&intent("a")).is_err());
    assert!(j.write_error().is_some());
    assert!(j.dangling().is_empty());
    assert_eq!(
        j.pending_records(),
        0,
        "intents never wait: the experiment does not run"
    );
    assert!(j.retry_pending().is_err(), "the probe does not fit either");
    assert!(j.write_error().is_some(), "chaos stays paused");

    fs::remove_file(&full).expect("free space");
    j.retry_pending().expect("the probe fits");
    assert_eq!(j.write_error(), None, "chaos may resume");
    assert_eq!(whole_lines(&path), Vec::<String>::new());
    assert_eq!(
        fs::metadata(&path).expect("stat").len(),
        0,
        "the probe is cut back"
    );
    j.started(&intent("a")).expect("started");
    assert_eq!(j.dangling(), [intent("a")]);
}

#[test]
fn records_wait_in_memory_up_to_a_bound_and_are_written_in_order() {
    let Some(fs) = Tmpfs::mount("2m") else {
        return;
    };
    let path = fs.path("journal.jsonl");
    let j = Journal::open(&path, 2 * MAX_PENDING, Rotation::default()).expect("open");
    j.append(&record("before")).expect("append");
    let full = fs.path("full");
    filler(&full, None);

    // the file's last page may still hold a few lines
    let mut written = vec!["before".to_string()];
    let mut n = 0;
    while j.append(&record(&format!("r{n:04}"))).is_ok() {
        written.push(format!("r{n:04}"));
        n += 1;
        assert!(n < 100, "the disk never filled up");
    }
    let failed: Vec<String> = (n..=n + MAX_PENDING).map(|i| format!("r{i:04}")).collect();
    for id in &failed[1..] {
        assert!(
            j.append(&record(id)).is_err(),
            "{id} written on a full disk"
        );
    }
    assert_eq!(j.pending_records(), MAX_PENDING);
    assert_eq!(j.dropped_records(), 1);
    let why = j.write_error().expect("write_error");
    assert!(why.contains(&format!("{MAX_PENDING} record(s)")), "{why}");
    assert_eq!(whole_lines(&path), written);

    fs::remove_file(&full).expect("free space");
    j.retry_pending().expect("retry");
    assert_eq!(j.write_error(), None);
    let mut expected = written;
    expected.extend(failed[1..].iter().cloned());
    assert_eq!(
        whole_lines(&path),
        expected,
        "in order; the oldest was dropped"
    );
    drop(j);
    let again = Journal::open(&path, 2 * MAX_PENDING, Rotation::default()).expect("reopen");
    assert_eq!(ids(again.newest(usize::MAX)), expected);
}

#[test]
fn a_rotation_on_a_full_disk_leaves_the_file_as_it_was() {
    let Some(fs) = Tmpfs::mount("64k") else {
        return;
    };
    let path = fs.path("journal.jsonl");
    let line_len = serde_json::to_vec(&record("r00")).expect("json").len() as u64 + 1;
    let rotation = Rotation {
        max_bytes: 8 * line_len,
        keep_files: 2,
    };
    let j = Journal::open(&path, 100, rotation).expect("open");
    j.started(&intent("held")).expect("started");
    let mut appended = Vec::new();
    while fs::metadata(&path).expect("stat").len() + line_len <= rotation.max_bytes {
        let id = format!("r{:02}", appended.len());
        j.append(&record(&id)).expect("append");
        appended.push(id);
    }
    let before = fs::read(&path).expect("read");
    let full = fs.path("full");
    filler(&full, None);

    let id = format!("r{:02}", appended.len());
    let e = j
        .append(&record(&id))
        .expect_err("no room for the new file");
    appended.push(id);
    assert_eq!(e.label(), "rotate", "{e}");
    assert!(is_enospc(&e), "{e}");
    assert_eq!(
        fs::read(&path).expect("read"),
        before,
        "the current file is untouched"
    );
    let mut names: Vec<String> = fs::read_dir(fs.dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["full", "journal.jsonl"], "nothing half rotated");

    fs::remove_file(&full).expect("free space");
    j.retry_pending().expect("retry");
    assert_eq!(j.write_error(), None);
    assert!(fs.path("journal.jsonl.1").exists(), "rotated now");
    let first = fs::read(&path).expect("read");
    assert!(
        first.starts_with(b"{\"started\":{\"id\":\"held\""),
        "the new file starts with the open intent"
    );
    drop(j);
    let again = Journal::open(&path, 100, rotation).expect("reopen");
    assert_eq!(again.dangling(), [intent("held")]);
    assert_eq!(ids(again.newest(100)), appended);
}
