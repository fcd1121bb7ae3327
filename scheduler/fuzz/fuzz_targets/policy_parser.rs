//! Fuzzes the policy/config loader (bytes -> size and UTF-8 checks -> YAML -> positions
//! -> serde -> validation) and, for every valid policy with a clock schedule, the
//! schedule engine.
//!
//! Each input is loaded on a thread with the stack of a tokio worker (2 MiB), where
//! `havoc serve` reloads policies: an input that needs more stack than that crashes here,
//! even if the fuzzer's main thread (8 MiB) could have taken it.
//!
//! Checked besides "no panic, no hang, no stack overflow": every diagnostic prints as one
//! line with a 1-based position, a file reports at most MAX_FILE_DIAGNOSTICS + 1
//! problems, and fire times come out strictly increasing and not before the start.

#![no_main]

use std::path::Path;

use chrono::{DateTime, Utc};
use havoc::policy::{Context, Expect, FileReport, MAX_FILE_DIAGNOSTICS, load_bytes};
use libfuzzer_sys::fuzz_target;

/// Fire times pulled from each schedule.
const FIRES: usize = 50;

/// A tokio worker thread's default stack.
const WORKER_STACK: usize = 2 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    let report = std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(move || {
            let ctx = Context::default();
            load_bytes(Path::new("fuzz.yaml"), &data, &ctx, Expect::Any)
        })
        .expect("spawn")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    check(&report);
});

fn check(report: &FileReport) {
    assert!(
        report.diagnostics.len() <= MAX_FILE_DIAGNOSTICS + 1,
        "{} diagnostics",
        report.diagnostics.len()
    );
    for d in &report.diagnostics {
        assert!(d.pos.line >= 1, "line < 1: {d:?}");
        assert!(d.pos.col >= 1, "col < 1: {d:?}");
        let shown = d.to_string();
        assert!(!shown.contains('\n'), "multi-line diagnostic: {shown:?}");
    }

    // Only a valid file's policies are ever loaded.
    if !report.is_valid() {
        return;
    }
    let start: DateTime<Utc> = DateTime::from_timestamp(1_767_225_600, 0) // 2026-01-01T00:00:00Z
        .expect("valid timestamp");
    for (policy, _) in &report.policies {
        let Some(schedule) = policy.schedule.as_ref() else {
            continue;
        };
        let seed = havoc::schedule::stable_hash(&policy.name);
        let mut prev: Option<DateTime<Utc>> = None;
        for at in schedule.cursor(start, seed).take(FIRES) {
            assert!(
                at >= start,
                "{}: fire {at} before start {start}",
                policy.name
            );
            if let Some(p) = prev {
                assert!(at > p, "{}: fire {at} not after {p}", policy.name);
            }
            prev = Some(at);
        }
    }
}
