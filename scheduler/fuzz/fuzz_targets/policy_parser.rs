//! Fuzzes the policy/config loader (YAML -> positions -> serde -> validation) and, for
//! every valid policy with a clock schedule, the schedule engine.
//!
//! Checked besides "no panic, no hang": every diagnostic prints as one line with a
//! 1-based position, and fire times come out strictly increasing and not before the start.

#![no_main]

use std::path::Path;

use chrono::{DateTime, Utc};
use havoc::policy::{Context, Expect, load_str};
use libfuzzer_sys::fuzz_target;

/// Fire times pulled from each schedule.
const FIRES: usize = 50;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = Context::default();
    let report = load_str(Path::new("fuzz.yaml"), text, &ctx, Expect::Any);

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
});
