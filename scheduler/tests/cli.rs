//! End-to-end tests of the `havoc` binary's file-facing verbs: validate, plan, schema.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs havoc from the repository root, so paths in messages are repo-relative.
fn havoc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_havoc"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("havoc runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const POLICY: &str = "apiVersion: havoc.dev/v1alpha1
kind: ChaosPolicy
metadata:
  name: NAME
spec:
  schedule:
    timezone: Europe/Berlin
    cron: \"30 2 * * *\"
  target:
    kind: Pod
    namespaces: [go-demo-8]
  fault:
    podDelete: {}
";

#[test]
fn invalid_corpus_reports_every_expected_location() {
    let out = havoc(&["validate", "tests/fixtures/invalid"]);
    assert_eq!(out.status.code(), Some(2));
    let expected = std::fs::read_to_string(repo().join("tests/fixtures/invalid/expected.txt"))
        .expect("expected.txt");
    let got = text(&out.stderr);
    // Compare line by line for a readable failure.
    let (got_lines, want_lines): (Vec<_>, Vec<_>) =
        (got.lines().collect(), expected.lines().collect());
    for (g, w) in got_lines.iter().zip(&want_lines) {
        assert_eq!(g, w);
    }
    assert_eq!(got_lines.len(), want_lines.len(), "got:\n{got}");
    // every invalid file of the corpus is named with a FILE:LINE:COL prefix
    let re = regex::Regex::new(r"^tests/fixtures/invalid/[a-z0-9-]+\.yaml:\d+:\d+: error: .+$")
        .expect("regex");
    assert!(got_lines.iter().all(|l| re.is_match(l)), "{got}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("tests/fixtures/invalid/duplicate-a.yaml: ok (1 policy)"),
        "{stdout}"
    );
}

#[test]
fn examples_are_valid_with_and_without_the_config() {
    let out = havoc(&["validate", "policies/examples"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = havoc(&[
        "validate",
        "--config",
        "policies/config/havoc.example.yaml",
        "policies/examples",
        "policies/config/havoc.example.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("havoc.example.yaml: ok (config)"));
}

#[test]
fn one_bad_file_does_not_hide_ten_good_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..10 {
        std::fs::write(
            dir.path().join(format!("good-{i:02}.yaml")),
            POLICY.replace("NAME", &format!("good-{i}")),
        )
        .expect("write");
    }
    std::fs::write(
        dir.path().join("bad.yaml"),
        POLICY
            .replace("NAME", "bad")
            .replace("30 2 * * *", "30 2 * *"),
    )
    .expect("write");
    let out = havoc(&["validate", dir.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.ends_with(": ok (1 policy)"))
            .count(),
        10,
        "{stdout}"
    );
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("bad.yaml:8:11: error: invalid cron expression"),
        "{stderr}"
    );
}

#[test]
fn config_references_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = POLICY.replace("NAME", "refs")
        + "  health:\n    slos: [error-ratio, latency]\n  notify:\n    receivers: [oncall, nobody]\n";
    std::fs::write(dir.path().join("refs.yaml"), policy).expect("write");
    let config = repo().join("policies/config/havoc.example.yaml");
    let out = havoc(&[
        "validate",
        "--config",
        config.to_str().expect("utf-8"),
        dir.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("refs.yaml:15:25: error: unknown SLO \"latency\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("refs.yaml:17:25: error: unknown receiver \"nobody\""),
        "{stderr}"
    );
    // without the config, references cannot be checked and the policy is fine
    let out = havoc(&["validate", dir.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn plan_json_is_sorted_rfc3339_with_local_offsets_across_dst() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), POLICY.replace("NAME", "nightly")).expect("write");
    let random = "apiVersion: havoc.dev/v1alpha1\nkind: ChaosPolicy\nmetadata:\n  name: poisson\nspec:\n  schedule:\n    timezone: America/New_York\n    random: {meanInterval: 6h, minInterval: 1h}\n  target:\n    kind: Pod\n    namespaces: [go-demo-8]\n  fault:\n    podDelete: {}\n";
    std::fs::write(dir.path().join("r.yaml"), random).expect("write");
    let d = dir.path().to_str().expect("utf-8");
    let args = [
        "plan",
        d,
        "--from",
        "2026-03-28T00:00:00Z",
        "--until",
        "2026-03-31T00:00:00Z",
        "--format",
        "json",
        "--seed",
        "7",
    ];
    let out = havoc(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let nightly: Vec<&str> = lines
        .iter()
        .filter(|v| v["policy"] == "nightly")
        .map(|v| v["at"].as_str().expect("at"))
        .collect();
    // 02:30 does not exist on 2026-03-29 in Berlin: it runs once, right after the gap.
    assert_eq!(
        nightly,
        [
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00"
        ]
    );
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = lines
        .iter()
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v["at"].as_str().expect("at")).expect("RFC 3339")
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "sorted by time");
    assert!(lines.iter().any(|v| v["policy"] == "poisson"));
    // keys in the documented order
    assert!(text(&out.stdout).starts_with("{\"policy\":"));
    // the same seed gives the same plan; another seed another one
    assert_eq!(havoc(&args).stdout, out.stdout);
    let mut other = args;
    other[9] = "8";
    assert_ne!(havoc(&other).stdout, out.stdout);
}

#[test]
fn plan_text_shows_local_time_weekday_and_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), POLICY.replace("NAME", "nightly")).expect("write");
    let out = havoc(&[
        "plan",
        dir.path().to_str().expect("utf-8"),
        "--from",
        "2026-03-28",
        "--until",
        "+2d",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "Sat 2026-03-28 02:30:00 +01:00  nightly  first",
            "Sun 2026-03-29 03:00:00 +02:00  nightly  +23h30m"
        ]
    );
}

#[test]
fn plan_reports_bad_arguments() {
    let out = havoc(&[
        "plan",
        "policies/examples",
        "--from",
        "2026-03-28",
        "--until",
        "2026-03-01",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--until must be later than --from"));
    let out = havoc(&[
        "plan",
        "policies/examples",
        "--from",
        "tomorrow",
        "--until",
        "+1d",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn schema_prints_both_kinds() {
    let out = havoc(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let titles: Vec<&str> = v["oneOf"]
        .as_array()
        .expect("oneOf")
        .iter()
        .map(|s| s["title"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(titles, ["ChaosPolicy", "HavocConfig"]);
}

/// `havoc schema openapi` prints the document the service serves.
#[test]
fn schema_openapi_prints_the_served_document() {
    let out = havoc(&["schema", "openapi"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let served = std::fs::read_to_string(repo().join("scheduler/src/api/openapi.json"))
        .expect("openapi.json");
    assert_eq!(text(&out.stdout), served);
}

#[test]
fn a_destructive_opt_in_is_valid_with_a_located_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("volumes.yaml");
    let policy = "apiVersion: havoc.dev/v1alpha1
kind: ChaosPolicy
metadata:
  name: shrink-db
spec:
  schedule: {cron: \"@hourly\"}
  target: {kind: StatefulSet, namespaces: [shop], selector: app=db}
  fault:
    scale:
      replicas: 1
      allowVolumeDeletion: true
  duration: 1m
";
    std::fs::write(&path, policy).expect("write");
    let out = havoc(&["validate", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let want = format!(
        "{}:11:7: warning: allowVolumeDeletion is destructive",
        path.display()
    );
    assert!(err.starts_with(&want), "{err}");
    assert!(text(&out.stdout).contains("ok (1 policy)"));
}
