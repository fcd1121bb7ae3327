//! Slack's limits on what `chat.postMessage` accepts, and cutting a message to fit them.
//!
//! Slack refuses blocks that break a limit with `invalid_blocks`, an error retrying does
//! not fix: a deviation with many alerts or long label values would never be delivered.
//! [`SlackMessage::fit_to_limits`](super::SlackMessage::fit_to_limits) cuts every text
//! and list that is too long, so the message goes through, and says so where it cut:
//! a text ends with `… (cut: 1234 more characters)`, a list with an item
//! `… (cut: 3 more fields)`, all within the limit.
//!
//! Lengths are counted in characters (Unicode scalar values) and texts are cut on a
//! character boundary. The limits, from Slack's Block Kit reference:
//!
//! | what                                   | at most            |
//! |----------------------------------------|--------------------|
//! | blocks in a message                    | [`MAX_BLOCKS`]     |
//! | `header` text (`plain_text`)           | [`MAX_HEADER_TEXT`] |
//! | `section` text                         | [`MAX_SECTION_TEXT`] |
//! | `section` fields                       | [`MAX_SECTION_FIELDS`], each [`MAX_FIELD_TEXT`] |
//! | `context` elements                     | [`MAX_CONTEXT_ELEMENTS`], each text [`MAX_CONTEXT_TEXT`] |
//! | the top-level `text`                   | [`MAX_TEXT`]       |
//!
//! Two are stricter than Slack's own on purpose: a context element's text object may
//! have 3,000 characters, but context is small print and 2,000 leaves room; and Slack
//! cuts the top-level `text` only at 40,000 characters, but that text is the fallback
//! shown in notifications and to screen readers, where a few thousand characters is
//! already more than anyone reads. Blocks of other types are left as they are.

use serde_json::{Value, json};

/// Blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// Characters of a `header` block's `plain_text`.
pub const MAX_HEADER_TEXT: usize = 150;
/// Characters of a `section` block's `text`.
pub const MAX_SECTION_TEXT: usize = 3_000;
/// Fields of a `section` block.
pub const MAX_SECTION_FIELDS: usize = 10;
/// Characters of one field of a `section` block.
pub const MAX_FIELD_TEXT: usize = 2_000;
/// Elements of a `context` block.
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
/// Characters of the text of one `context` element.
pub const MAX_CONTEXT_TEXT: usize = 2_000;
/// Characters of the top-level `text` (the fallback).
pub const MAX_TEXT: usize = 4_000;

/// The note that ends a cut text or list.
fn note(count: usize, what: &str) -> String {
    format!("… (cut: {count} more {what})")
}

/// `text` cut to at most `max` characters, ending with a note of how many were cut;
/// `None` when it fits.
pub(crate) fn cut(text: &str, max: usize) -> Option<String> {
    let total = text.chars().count();
    if total <= max {
        return None;
    }
    // The note for `total` cut characters is at least as long as the real one.
    let room = note(total, "characters").chars().count();
    if room > max {
        // Only for limits shorter than a note, which Slack has none of.
        let mut kept: String = text.chars().take(max.saturating_sub(1)).collect();
        kept.push('…');
        return Some(kept);
    }
    // Fewer characters cut may need fewer digits: keep as many as still fit.
    let mut keep = max - room;
    while keep + 1 + note(total - keep - 1, "characters").chars().count() <= max {
        keep += 1;
    }
    let mut kept: String = text.chars().take(keep).collect();
    kept.push_str(&note(total - keep, "characters"));
    Some(kept)
}

/// Cuts `blocks` to Slack's limits; true if anything was cut.
pub(crate) fn fit_blocks(blocks: &mut Vec<Value>) -> bool {
    let mut changed = false;
    if blocks.len() > MAX_BLOCKS {
        let dropped = blocks.len() - (MAX_BLOCKS - 1);
        blocks.truncate(MAX_BLOCKS - 1);
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": note(dropped, "blocks")}],
        }));
        changed = true;
    }
    for block in blocks.iter_mut() {
        changed |= fit_block(block);
    }
    changed
}

fn fit_block(block: &mut Value) -> bool {
    let kind = block
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind {
        "header" => fit_text_object(block.get_mut("text"), MAX_HEADER_TEXT),
        "section" => {
            let mut changed = fit_text_object(block.get_mut("text"), MAX_SECTION_TEXT);
            changed |= fit_list(block.get_mut("fields"), MAX_SECTION_FIELDS, "fields");
            if let Some(Value::Array(fields)) = block.get_mut("fields") {
                for field in fields {
                    changed |= fit_text_object(Some(field), MAX_FIELD_TEXT);
                }
            }
            changed
        }
        "context" => {
            let mut changed = fit_list(block.get_mut("elements"), MAX_CONTEXT_ELEMENTS, "elements");
            if let Some(Value::Array(elements)) = block.get_mut("elements") {
                for element in elements {
                    changed |= fit_text_object(Some(element), MAX_CONTEXT_TEXT);
                }
            }
            changed
        }
        _ => false,
    }
}

/// Cuts the `text` string of a text object (`{"type": "mrkdwn", "text": …}`).
fn fit_text_object(object: Option<&mut Value>, max: usize) -> bool {
    let Some(Value::String(text)) = object.and_then(|o| o.get_mut("text")) else {
        return false;
    };
    match cut(text, max) {
        Some(shorter) => {
            *text = shorter;
            true
        }
        None => false,
    }
}

/// Keeps `max - 1` items of a list and adds one saying how many were dropped.
fn fit_list(list: Option<&mut Value>, max: usize, what: &str) -> bool {
    let Some(Value::Array(items)) = list else {
        return false;
    };
    if items.len() <= max {
        return false;
    }
    let dropped = items.len() - (max - 1);
    items.truncate(max - 1);
    items.push(json!({"type": "mrkdwn", "text": note(dropped, what)}));
    true
}

/// The texts of the blocks, one per line: a fallback when a message has no `text`.
pub(crate) fn blocks_text(blocks: &[Value]) -> String {
    let mut lines = Vec::new();
    let mut push = |object: Option<&Value>| {
        if let Some(text) = object.and_then(|o| o.get("text")).and_then(Value::as_str) {
            lines.push(text.to_string());
        }
    };
    for block in blocks {
        push(block.get("text"));
        for list in ["fields", "elements"] {
            if let Some(Value::Array(items)) = block.get(list) {
                for item in items {
                    push(Some(item));
                }
            }
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> usize {
        s.chars().count()
    }

    #[test]
    fn cut_fits_exactly_and_says_how_much_was_cut() {
        assert_eq!(cut("short", 10), None);
        assert_eq!(cut(&"x".repeat(10), 10), None);
        let long = "é".repeat(5000);
        let shorter = cut(&long, 3000).expect("cut");
        assert_eq!(chars(&shorter), 3000);
        let kept = shorter.chars().take_while(|c| *c == 'é').count();
        assert!(
            shorter.ends_with(&format!("… (cut: {} more characters)", 5000 - kept)),
            "{shorter}"
        );
        // Multi-byte characters are never split: this is still valid UTF-8 by construction,
        // and emoji survive whole.
        let emoji = "🔥".repeat(200);
        let shorter = cut(&emoji, 150).expect("cut");
        assert_eq!(chars(&shorter), 150);
        assert!(shorter.starts_with("🔥🔥"));
        // A limit shorter than the note still holds.
        assert_eq!(cut("abcdefghij", 4).as_deref(), Some("abc…"));
    }

    #[test]
    fn blocks_are_cut_to_every_limit() {
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": "h".repeat(400)}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": "s".repeat(9000)},
                   "fields": (0..14).map(|i| json!({"type": "mrkdwn", "text": format!("{i}{}", "f".repeat(2500))})).collect::<Vec<_>>()}),
            json!({"type": "context", "elements": (0..12).map(|_| json!({"type": "mrkdwn", "text": "c".repeat(2500)})).collect::<Vec<_>>()}),
            json!({"type": "divider"}),
        ];
        blocks.extend((0..60).map(|i| json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("alert {i}")}})));
        assert!(fit_blocks(&mut blocks));
        assert_eq!(blocks.len(), MAX_BLOCKS);
        let text = |v: &Value| v["text"].as_str().map(str::to_string).unwrap_or_default();
        assert_eq!(chars(&text(&blocks[0]["text"])), MAX_HEADER_TEXT);
        assert_eq!(chars(&text(&blocks[1]["text"])), MAX_SECTION_TEXT);
        let fields = blocks[1]["fields"].as_array().expect("fields");
        assert_eq!(fields.len(), MAX_SECTION_FIELDS);
        assert!(
            fields[..9]
                .iter()
                .all(|f| chars(&text(f)) == MAX_FIELD_TEXT)
        );
        assert!(text(&fields[0]).starts_with("0fff"));
        assert_eq!(text(&fields[9]), "… (cut: 5 more fields)");
        let elements = blocks[2]["elements"].as_array().expect("elements");
        assert_eq!(elements.len(), MAX_CONTEXT_ELEMENTS);
        assert!(
            elements[..9]
                .iter()
                .all(|e| chars(&text(e)) == MAX_CONTEXT_TEXT)
        );
        assert_eq!(text(&elements[9]), "… (cut: 3 more elements)");
        assert_eq!(blocks[3], json!({"type": "divider"}));
        // 64 blocks: 49 kept, the 50th says 15 were cut.
        assert_eq!(text(&blocks[48]["text"]), "alert 44");
        assert_eq!(blocks[49]["type"], "context");
        assert_eq!(text(&blocks[49]["elements"][0]), "… (cut: 15 more blocks)");
        // Fitting again changes nothing.
        let fitted = blocks.clone();
        assert!(!fit_blocks(&mut blocks));
        assert_eq!(blocks, fitted);
    }

    #[test]
    fn blocks_within_limits_and_unknown_blocks_are_untouched() {
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": "h".repeat(150)}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": "s".repeat(3000)}}),
            json!({"type": "rich_text", "elements": [{"type": "rich_text_section", "text": "r".repeat(9000)}]}),
            json!({"type": "section", "fields": "not a list"}),
        ];
        let before = blocks.clone();
        assert!(!fit_blocks(&mut blocks));
        assert_eq!(blocks, before);
    }

    #[test]
    fn blocks_text_collects_every_text() {
        let blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": "havoc: nightly deviated"}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": "why"},
                   "fields": [{"type": "mrkdwn", "text": "*Policy*\nnightly"}]}),
            json!({"type": "context", "elements": [{"type": "mrkdwn", "text": "experiment e1"}]}),
            json!({"type": "divider"}),
        ];
        assert_eq!(
            blocks_text(&blocks),
            "havoc: nightly deviated\nwhy\n*Policy*\nnightly\nexperiment e1"
        );
    }
}
