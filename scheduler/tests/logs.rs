//! The log output of the built binary with stderr piped, as in a container: JSON lines by
//! default, plain text with `--log-format text`, and never an ANSI escape code.
//!
//! The binary runs `havoc serve` against an API server that is not there (a closed
//! loopback port), which logs its start and its failing watches, and stops on SIGTERM.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

const CONFIG: &str = r#"apiVersion: havoc.dev/v1alpha1
kind: HavocConfig
spec:
  health:
    alertmanager: {url: "http://127.0.0.1:9"}
  server: {listen: "127.0.0.1:0"}
  leaderElection: {enabled: false}
"#;

const KUBECONFIG: &str = r#"apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}
users:
  - name: nobody
    user: {token: not-a-token}
contexts:
  - name: nowhere
    context: {cluster: nowhere, user: nobody}
current-context: nowhere
"#;

/// How long the whole run may take.
const PATIENCE: Duration = Duration::from_secs(60);

/// Kills the child if the test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `havoc serve` with these extra arguments until it logged its start, stops it with
/// SIGTERM, and returns every stderr line.
fn serve_lines(dir: &Path, args: &[&str]) -> Vec<String> {
    std::fs::write(dir.join("havoc.yaml"), CONFIG).expect("config");
    std::fs::write(dir.join("kubeconfig"), KUBECONFIG).expect("kubeconfig");
    std::fs::create_dir_all(dir.join("policies")).expect("policies");
    let child = Command::new(env!("CARGO_BIN_EXE_havoc"))
        .arg("serve")
        .args(args)
        .arg("--config")
        .arg(dir.join("havoc.yaml"))
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--policies")
        .arg(dir.join("policies"))
        .args(["--shutdown-timeout", "5s"])
        .env("HAVOC_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("havoc starts");
    let mut child = Running(child);
    let stderr = child.0.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + PATIENCE;
    let mut lines = Vec::new();
    let mut stopped = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if !stopped && line.contains("havoc serve starting") {
                    let pid = child.0.id().to_string();
                    let killed = Command::new("kill").args(["-TERM", &pid]).status();
                    assert!(killed.is_ok_and(|s| s.success()), "SIGTERM");
                    stopped = true;
                }
                lines.push(line);
            }
            // The pipe closed: havoc exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "havoc did not start and stop in time:\n{}",
                    lines.join("\n")
                )
            }
        }
    }
    let status = child.0.wait().expect("exit status");
    assert!(
        stopped,
        "never logged its start ({status}):\n{}",
        lines.join("\n")
    );
    lines
}

fn no_escape_codes(lines: &[String]) {
    for line in lines {
        assert!(!line.contains("\x1b["), "ANSI escape code in {line:?}");
    }
}

#[test]
fn logs_are_json_lines_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = serve_lines(dir.path(), &[]);
    no_escape_codes(&lines);
    assert!(lines.len() >= 2, "{lines:#?}");
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    for e in &events {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(e.get(key).is_some_and(Value::is_string), "no {key} in {e}");
        }
        let ts = e["timestamp"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
            "timestamp {ts:?}"
        );
    }
    let start = events
        .iter()
        .find(|e| e["message"] == "havoc serve starting")
        .expect("the start is logged");
    assert_eq!(start["level"], "INFO");
    assert_eq!(start["target"], "havoc::commands::serve");
    // Fields are top-level keys beside the message.
    assert_eq!(start["policies"], 0, "{start}");
    assert_eq!(start["dry_run"], true, "{start}");
    assert!(
        events.iter().any(|e| e["message"] == "havoc serve stopped"),
        "{lines:#?}"
    );
}

#[test]
fn text_logs_on_request_are_plain_lines_without_colours() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A global option: accepted after the subcommand too.
    let lines = serve_lines(dir.path(), &["--log-format", "text"]);
    no_escape_codes(&lines);
    for line in &lines {
        assert!(
            serde_json::from_str::<Value>(line).is_err(),
            "JSON in text mode: {line}"
        );
    }
    let start = lines
        .iter()
        .find(|l| l.contains("havoc serve starting"))
        .expect("the start is logged");
    assert!(start.contains(" INFO "), "{start}");
    assert!(start.contains("policies=0"), "{start}");
    assert!(start.contains("havoc::commands::serve"), "{start}");
}
