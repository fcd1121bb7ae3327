//! `havoc report` as a user runs it on journals: merged and deduplicated, filtered, each
//! format written; bad input exits 2 with a clear message.

use std::process::{Command, Output};

/// Runs havoc with no cluster to reach, whatever the shell running the tests points at
/// (a `source deploy/local/.state/env` made the "cannot reach the cluster" case reach one).
fn havoc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_havoc"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("havoc runs")
}

/// A final record line.
fn record(id: &str, policy: &str, verdict: &str, started: &str) -> String {
    serde_json::json!({
        "id": id, "policy": policy, "verdict": verdict, "reason": format!("{verdict} because"),
        "dryRun": false, "trigger": {"kind": "schedule", "scheduledAt": started},
        "targets": [{"kind": "Pod", "namespace": "shop", "name": format!("{id}-pod"), "outcome": "injected"}],
        "fault": "podDelete", "startedAt": started, "injectedAt": started, "revertedAt": started,
        "endedAt": started, "alerts": [], "slos": [],
    })
    .to_string()
}

/// Two journals: `a` with a rotated file and an intent line, `b` repeating one record.
fn journals(dir: &std::path::Path) -> (String, String) {
    let a = dir.join("a.jsonl");
    let b = dir.join("b.jsonl");
    let intent = serde_json::json!({"started": {
        "id": "open", "policy": "web", "fault": "podDelete", "dryRun": false,
        "trigger": {"kind": "manual", "source": "test"}, "startedAt": "2026-11-22T12:00:00Z",
        "targets": [], "deadline": "2026-11-22T12:10:00Z"}});
    std::fs::write(
        dir.join("a.jsonl.1"),
        format!(
            "{}\n",
            record("r1", "web", "passed", "2026-11-20T10:00:00Z")
        ),
    )
    .expect("write");
    std::fs::write(
        &a,
        format!(
            "{intent}\n{}\n{}\n",
            record("r2", "web", "deviated", "2026-11-21T10:00:00Z"),
            record("r3", "db", "skipped", "2026-11-22T10:00:00Z"),
        ),
    )
    .expect("write");
    std::fs::write(
        &b,
        format!(
            "{}\n{}\n",
            record("r3", "db", "skipped", "2026-11-22T10:00:00Z"),
            record("r4", "db", "errored", "2026-11-23T10:00:00Z"),
        ),
    )
    .expect("write");
    (
        a.to_string_lossy().into_owned(),
        b.to_string_lossy().into_owned(),
    )
}

#[test]
fn journals_are_merged_once_per_record_and_filtered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = journals(dir.path());
    let out = havoc(&["report", "--journal", &a, &b, "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<&str> = records.iter().filter_map(|r| r["id"].as_str()).collect();
    // Newest first; r3 once; the intent is not a record.
    assert_eq!(ids, ["r4", "r3", "r2", "r1"]);
    let out = havoc(&[
        "report",
        "--journal",
        &a,
        "--journal",
        &b,
        "--format",
        "json",
        "--policy",
        "db",
        "--since",
        "2026-11-22",
        "--verdict",
        "skipped",
    ]);
    let records: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["id"], "r3");
}

#[test]
fn every_format_is_written_to_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = journals(dir.path());
    for (format, magic) in [
        ("html", "<!DOCTYPE html>"),
        ("pdf", "%PDF-"),
        ("markdown", "# havoc report"),
        ("junit", "<?xml"),
        ("json", "["),
    ] {
        let out_file = dir.path().join(format!("report.{format}"));
        let out = havoc(&[
            "report",
            "--journal",
            &a,
            &b,
            "--format",
            format,
            "--out",
            &out_file.to_string_lossy(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty());
        let bytes = std::fs::read(&out_file).expect("written");
        assert!(bytes.starts_with(magic.as_bytes()), "{format}");
    }
    let junit = std::fs::read_to_string(dir.path().join("report.junit")).expect("junit");
    assert!(
        junit.contains("tests=\"4\" failures=\"1\" errors=\"1\""),
        "{junit}"
    );
}

#[test]
fn bad_input_exits_2_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, _) = journals(dir.path());
    let missing = dir.path().join("missing.jsonl");
    for (args, says) in [
        (
            vec!["report", "--format", "json"],
            "cannot reach the cluster",
        ),
        (
            vec![
                "report",
                "--journal",
                &a,
                "--format",
                "json",
                "--since",
                "last week",
            ],
            "invalid time \"last week\"",
        ),
        (
            vec![
                "report",
                "--journal",
                &a,
                "--format",
                "json",
                "--verdict",
                "failed",
            ],
            "unknown verdict \"failed\"",
        ),
        (
            vec![
                "report",
                "--journal",
                &missing.to_string_lossy(),
                "--format",
                "json",
            ],
            "reading the journal",
        ),
        (
            vec!["report", "--journal", &a, "--format", "docx"],
            "invalid value 'docx'",
        ),
    ] {
        let out = havoc(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
