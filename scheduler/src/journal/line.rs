//! One journal line: its encoding, and reading a file of them as raw bytes.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::Path,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::{ExperimentRecord, ObjectRef, TriggerInfo};

/// The longest line read; a longer one (a file that is not a journal, say) is skipped and
/// counted as unreadable without holding it in memory.
pub(super) const MAX_LINE: usize = 8 << 20;

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
    /// When its final record is due at the latest (the deadline, the settle, a margin):
    /// after it, another havoc may close it as crashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_by: Option<DateTime<Utc>>,
}

/// The one key of an intent line.
const STARTED: &str = "started";

#[derive(Serialize)]
struct StartedLine<'a> {
    started: &'a Intent,
}

/// A line that was read.
#[derive(Debug)]
pub(super) enum Line {
    Started(Box<Intent>),
    Record(Box<ExperimentRecord>),
}

/// `{"started": {...}}` and a newline.
pub(super) fn encode_intent(intent: &Intent) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(&StartedLine { started: intent })?;
    line.push(b'\n');
    Ok(line)
}

/// The record itself and a newline.
pub(super) fn encode_record(record: &ExperimentRecord) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    Ok(line)
}

/// Decodes one line (without its newline). `Ok(None)`: a blank line, which the journal
/// never writes as data (only as a space probe, see `Sink::probe`).
pub(super) fn decode(bytes: &[u8]) -> serde_json::Result<Option<Line>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    // most lines are records: parse them once, straight into the type
    let record_error = match serde_json::from_slice::<ExperimentRecord>(bytes) {
        Ok(record) => return Ok(Some(Line::Record(Box::new(record)))),
        Err(e) => e,
    };
    let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
    match value.as_object_mut() {
        Some(map) if map.len() == 1 && map.contains_key(STARTED) => {
            let intent = map.remove(STARTED).unwrap_or_default();
            Ok(Some(Line::Started(Box::new(serde_json::from_value(
                intent,
            )?))))
        }
        _ => Err(record_error),
    }
}

/// Reads every line of a file as raw bytes, so that a line that is not UTF-8 (or not
/// JSON, or torn) is skipped and counted without hiding the lines after it. Returns how
/// many lines could not be read.
pub(super) fn read_file(path: &Path, mut on_line: impl FnMut(Line)) -> io::Result<u64> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut buf = Vec::new();
    let mut unreadable = 0;
    let mut number = 0u64;
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(unreadable);
        }
        number += 1;
        if buf.last() != Some(&b'\n') && buf.len() > MAX_LINE {
            reader.skip_until(b'\n')?;
            unreadable += 1;
            tracing::warn!(path = %path.display(), line = number, "skipping a journal line longer than {MAX_LINE} bytes");
            continue;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        match decode(&buf) {
            Ok(Some(line)) => on_line(line),
            Ok(None) => {}
            Err(e) => {
                unreadable += 1;
                tracing::warn!(path = %path.display(), line = number, error = %e, "skipping an unreadable journal line");
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::{Verdict, tests::record};

    pub(crate) fn intent(id: &str) -> Intent {
        let t: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().expect("valid");
        Intent {
            id: id.to_string(),
            policy: "p".to_string(),
            fault: "scale".to_string(),
            dry_run: false,
            trigger: TriggerInfo::Schedule { scheduled_at: t },
            started_at: t,
            targets: vec![ObjectRef::namespaced(
                "Deployment",
                "go-demo-8",
                "go-demo-8",
            )],
            deadline: t + chrono::Duration::minutes(10),
            ends_by: None,
        }
    }

    #[test]
    fn an_intent_line_has_the_documented_shape() {
        let line = encode_intent(&intent("x")).expect("encodes");
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).expect("json");
        let started = v
            .as_object()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.get("started"))
            .expect("one key, started");
        for key in [
            "id",
            "policy",
            "fault",
            "dryRun",
            "trigger",
            "startedAt",
            "targets",
            "deadline",
        ] {
            assert!(started.get(key).is_some(), "missing {key}");
        }
        assert_eq!(started["targets"][0]["kind"], "Deployment");
        assert_eq!(started["deadline"], "2026-11-22T10:10:00Z");
    }

    #[test]
    fn lines_decode_to_what_was_encoded() {
        let i = intent("x");
        let bytes = encode_intent(&i).expect("encodes");
        assert!(matches!(decode(&bytes[..bytes.len() - 1]), Ok(Some(Line::Started(d))) if *d == i));
        let r = record("x", Verdict::Passed);
        let bytes = encode_record(&r).expect("encodes");
        assert!(matches!(decode(&bytes), Ok(Some(Line::Record(d))) if *d == r));
        assert!(matches!(decode(b"  \r"), Ok(None)));
        // a record carrying an extra `started` field is still a record, not an intent
        let mut v = serde_json::to_value(&r).expect("json");
        v["started"] = serde_json::json!(true);
        let bytes = serde_json::to_vec(&v).expect("json");
        assert!(matches!(decode(&bytes), Ok(Some(Line::Record(_)))));
        for bad in [
            &b"{\"started\": {\"id\": 1}}"[..],
            b"{\"id\":\"torn",
            b"\xff\xfe{}",
            b"[]",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} decodes");
        }
    }
}
