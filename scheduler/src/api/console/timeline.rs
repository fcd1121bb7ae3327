//! The timeline: one SVG, drawn by the server, with one row per policy on a shared time
//! axis from 24 hours ago to 24 hours ahead. The past half shows experiments as bars
//! coloured by verdict, each with the verdict's symbol (colour is never the only signal)
//! and rollout-triggered ones marked with a triangle; the future half shows the fires
//! the schedule engine plans, and both halves shade the time a policy's windows and
//! blackouts forbid.
//!
//! Size stays bounded whatever the history holds: experiments are grouped into
//! [`BUCKET_MINUTES`]-minute buckets per policy (one bar per bucket, the worst verdict's
//! colour, a link to the list of that bucket's experiments), and fires are drawn at most
//! one per pixel column.

use std::{collections::BTreeMap, fmt::Write as _};

use chrono::{DateTime, Duration, Timelike, Utc};

use super::view::{PolicyView, RunningView, VERDICTS, severity, symbol};
use crate::{history::Summary, record::Verdict, report::escape::xml};

/// The widths an experiment group may have: the narrowest that keeps the picture within
/// [`MAX_GROUPS`] groups.
pub const BUCKET_MINUTES: [i64; 5] = [10, 20, 30, 60, 120];
/// Most groups (bars) in one picture: about 200 bytes each.
pub const MAX_GROUPS: usize = 400;
const WIDTH: f64 = 1200.0;
const LABEL: f64 = 200.0;
const RIGHT: f64 = 16.0;
const ROW: f64 = 40.0;
const TOP: f64 = 28.0;

/// Percent-encodes a query value.
pub fn query_value(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The time axis: 48 hours centred on `now`.
struct Axis {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Axis {
    fn x(&self, t: DateTime<Utc>) -> f64 {
        let t = t.clamp(self.start, self.end);
        let span = (self.end - self.start).num_milliseconds() as f64;
        let at = (t - self.start).num_milliseconds() as f64;
        LABEL + (WIDTH - LABEL - RIGHT) * at / span
    }
}

/// A group of experiments of one policy in one bucket.
#[derive(Default)]
struct Group<'a> {
    items: Vec<&'a Summary>,
}

/// The timeline SVG. `summaries` are the experiments of the last 24 hours (any order);
/// experiments of policies no longer loaded get rows of their own.
pub fn svg(
    now: DateTime<Utc>,
    policies: &[PolicyView],
    summaries: &[Summary],
    running: &[RunningView],
) -> String {
    let axis = Axis {
        start: now - Duration::hours(24),
        end: now + Duration::hours(24),
    };
    let mut rows: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
    for s in summaries {
        if !rows.contains(&s.policy.as_str()) {
            rows.push(&s.policy);
        }
    }
    let height = TOP + ROW * rows.len().max(1) as f64 + 24.0;
    let mut o = String::with_capacity(16 * 1024);
    let _ = write!(
        o,
        r#"<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="group" aria-labelledby="tl-title tl-desc"><title id="tl-title">Experiments of the last 24 hours and fires of the next 24 hours, per policy</title><desc id="tl-desc">{}</desc>"#,
        xml(&describe(summaries, policies))
    );
    o.push_str(r#"<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" class="hatch-line"/></pattern></defs>"#);
    // Hour grid every 3 hours, labelled in UTC.
    let nx = axis.x(now);
    let mut h = (axis.start + Duration::hours(1))
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(axis.start);
    while h < axis.end {
        // Every 3 hours, but no label under the "now" line's.
        if h.hour().is_multiple_of(3) && (axis.x(h) - nx).abs() > 30.0 {
            let x = axis.x(h);
            let _ = write!(
                o,
                r#"<line class="grid" x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{:.1}"/><text class="tick" x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
                TOP - 4.0,
                height - 20.0,
                TOP - 10.0,
                h.format("%H:%M")
            );
        }
        h += Duration::hours(1);
    }
    let _ = write!(
        o,
        r#"<line class="now" x1="{nx:.1}" y1="{}" x2="{nx:.1}" y2="{:.1}"/><text class="now-label" x="{nx:.1}" y="{:.1}" text-anchor="middle">now (UTC {})</text>"#,
        TOP - 20.0,
        height - 20.0,
        height - 6.0,
        now.format("%H:%M")
    );
    let past: Vec<&Summary> = summaries
        .iter()
        .filter(|s| s.started_at >= axis.start)
        .collect();
    let minutes = bucket_minutes(&axis, &past);
    let mut by_policy: BTreeMap<&str, BTreeMap<i64, Group>> = BTreeMap::new();
    for s in past {
        let bucket = (s.started_at - axis.start).num_minutes() / minutes;
        by_policy
            .entry(&s.policy)
            .or_default()
            .entry(bucket)
            .or_default()
            .items
            .push(s);
    }
    for (i, name) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let policy = policies.iter().find(|p| p.name == *name);
        let _ = write!(
            o,
            r#"<g class="row"><rect class="band{}" x="0" y="{y:.1}" width="{WIDTH}" height="{ROW}"/><text class="label" x="8" y="{:.1}">{}</text>"#,
            if i % 2 == 1 { " odd" } else { "" },
            y + ROW / 2.0 + 4.0,
            xml(&shorten(name, 26))
        );
        if let Some(allowed) = policy.and_then(|p| p.allowed.as_ref()) {
            // Shade what the windows and blackouts forbid: the gaps between allowed spans.
            let mut from = axis.start;
            for (a, b) in allowed.iter().chain(std::iter::once(&(axis.end, axis.end))) {
                if *a > from {
                    let (x1, x2) = (axis.x(from), axis.x(*a));
                    let _ = write!(
                        o,
                        r#"<rect class="blocked" fill="url(#hatch)" x="{x1:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{} may not fire: outside its windows or in a blackout</title></rect>"#,
                        y + 2.0,
                        (x2 - x1).max(0.5),
                        ROW - 4.0,
                        xml(name)
                    );
                }
                from = from.max(*b);
            }
        }
        if let Some(groups) = by_policy.get(name) {
            for g in groups.values() {
                bar(&mut o, &axis, y, name, g);
            }
        }
        for r in running.iter().filter(|r| r.policy == *name) {
            let start = r.started.unwrap_or(now);
            let (x1, x2) = (axis.x(start), nx);
            let _ = write!(
                o,
                r#"<a href="experiments/{}"><title>{} running since {}</title><rect class="running" x="{x1:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/></a>"#,
                query_value(&r.id),
                xml(&r.id),
                start.format("%H:%M:%S UTC"),
                y + 8.0,
                (x2 - x1).max(3.0),
                ROW - 22.0,
            );
        }
        if let Some(p) = policy {
            fires(&mut o, &axis, y, p);
        }
        o.push_str("</g>");
    }
    o.push_str("</svg>");
    o
}

/// The narrowest group width that keeps the bars within [`MAX_GROUPS`].
fn bucket_minutes(axis: &Axis, past: &[&Summary]) -> i64 {
    for minutes in BUCKET_MINUTES {
        let groups: std::collections::BTreeSet<(&str, i64)> = past
            .iter()
            .map(|s| {
                (
                    s.policy.as_str(),
                    (s.started_at - axis.start).num_minutes() / minutes,
                )
            })
            .collect();
        if groups.len() <= MAX_GROUPS {
            return minutes;
        }
    }
    BUCKET_MINUTES[BUCKET_MINUTES.len() - 1]
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// The text alternative of the picture.
fn describe(summaries: &[Summary], policies: &[PolicyView]) -> String {
    let counts: Vec<String> = VERDICTS
        .iter()
        .map(|v| {
            let n = summaries.iter().filter(|s| s.verdict == *v).count();
            format!("{n} {}", v.label())
        })
        .collect();
    let fires: usize = policies.iter().map(|p| p.fires.len()).sum();
    format!(
        "Last 24 hours: {} experiments ({}). Next 24 hours: {fires} planned fires.",
        summaries.len(),
        counts.join(", ")
    )
}

fn bar(o: &mut String, axis: &Axis, y: f64, policy: &str, g: &Group) {
    let Some(first) = g.items.iter().map(|s| s.started_at).min() else {
        return;
    };
    let last = g.items.iter().map(|s| s.ended_at).max().unwrap_or(first);
    let worst = g
        .items
        .iter()
        .map(|s| s.verdict)
        .max_by_key(|v| severity(*v))
        .unwrap_or(Verdict::Passed);
    let x1 = axis.x(first);
    let w = (axis.x(last) - x1).max(4.0);
    let counts: Vec<String> = VERDICTS
        .iter()
        .filter_map(|v| {
            let n = g.items.iter().filter(|s| s.verdict == *v).count();
            (n > 0).then(|| format!("{n} {}", v.label()))
        })
        .collect();
    let (href, label) = match g.items.as_slice() {
        [one] => (
            format!("experiments/{}", query_value(&one.id)),
            format!(
                "{}: {} at {}",
                one.id,
                one.verdict.label(),
                one.started_at.format("%H:%M:%S UTC")
            ),
        ),
        many => (
            format!(
                "experiments?policy={}&amp;since={}&amp;until={}",
                query_value(policy),
                query_value(&first.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                query_value(
                    &(g.items.iter().map(|s| s.started_at).max().unwrap_or(first)
                        + Duration::seconds(1))
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
                ),
            ),
            format!(
                "{policy}: {} experiments from {} to {}: {}",
                many.len(),
                first.format("%H:%M UTC"),
                last.format("%H:%M UTC"),
                counts.join(", ")
            ),
        ),
    };
    // The <title> names the link (SVG accessibility mapping): no aria-label copy of it.
    let label = xml(&label);
    let _ = write!(
        o,
        r#"<a href="{href}"><title>{label}</title><rect class="bar v-{}" x="{x1:.1}" y="{:.1}" width="{w:.1}" height="{:.1}"/><text class="glyph" x="{:.1}" y="{:.1}">{}</text></a>"#,
        worst.label(),
        y + 8.0,
        ROW - 22.0,
        x1 + w / 2.0,
        y + ROW - 3.0,
        symbol(worst),
    );
    // One triangle per group that a rollout triggered.
    let rollouts = g.items.iter().filter(|s| s.trigger == "rollout").count();
    if let Some(s) = g.items.iter().find(|s| s.trigger == "rollout") {
        let x = axis.x(s.started_at);
        let _ = write!(
            o,
            r#"<path class="rollout" d="M{:.1} {:.1}l4 -7l4 7z"><title>{rollouts} triggered by a rollout</title></path>"#,
            x - 4.0,
            y + 8.0,
        );
    }
}

/// The planned fires of one policy: one path of ticks (at most one per pixel column),
/// titled with how many and the next ones.
fn fires(o: &mut String, axis: &Axis, y: f64, p: &PolicyView) {
    if let Some(first) = p.fires.first() {
        let mut d = String::new();
        let mut last_x = f64::MIN;
        for f in &p.fires {
            let x = axis.x(f.to_utc());
            if x - last_x < 1.0 {
                continue;
            }
            last_x = x;
            let _ = write!(d, "M{x:.1} {:.1}v{:.0}", y + 8.0, ROW - 18.0);
        }
        let next: Vec<String> = p
            .fires
            .iter()
            .take(5)
            .map(|f| f.format("%H:%M:%S").to_string())
            .collect();
        let _ = write!(
            o,
            r#"<path class="fire" d="{d}"><title>{}: {} planned fire(s) in the next 24 hours, next at {} ({})</title></path>"#,
            xml(&p.name),
            p.fires.len(),
            next.join(", "),
            first.format("%:z")
        );
    }
    if p.random {
        // Beside its next fire (or the now line), kept inside the picture.
        let mid = (axis.x(axis.start) + axis.x(axis.end)) / 2.0;
        let x = p.fires.first().map_or(mid, |f| axis.x(f.to_utc())) + 6.0;
        let (x, anchor) = if x > WIDTH - RIGHT - 260.0 {
            (WIDTH - RIGHT - 4.0, "end")
        } else {
            (x, "start")
        };
        let text = if p.fires.is_empty() {
            "random: no fire known within 24 h"
        } else {
            "random: later fires are drawn as it fires"
        };
        let _ = write!(
            o,
            r#"<text class="note" x="{x:.1}" y="{:.1}" text-anchor="{anchor}">{text}</text>"#,
            y + ROW / 2.0 + 4.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        history::Summary,
        policy::{Policy, fixtures},
    };

    fn summary(id: &str, policy: &str, verdict: Verdict, at: DateTime<Utc>) -> Summary {
        Summary {
            reason: String::new(),
            scheduled_at: None,
            id: id.into(),
            policy: policy.into(),
            verdict,
            reason_code: None,
            fault: "podDelete".into(),
            dry_run: false,
            trigger: "schedule",
            namespaces: vec!["d".into()],
            targets: 1,
            started_at: at,
            injected_at: Some(at),
            reverted_at: None,
            ended_at: at + Duration::seconds(30),
        }
    }

    fn policy(p: &Policy, now: DateTime<Utc>) -> PolicyView {
        super::super::view::policy_view(p, None, now)
    }

    #[test]
    fn experiments_are_bars_with_symbols_and_links_and_groups_stay_bounded() {
        let now: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().expect("t");
        let p = fixtures::policy("web").namespaces(&["d"]).build();
        let views = vec![policy(&p, now)];
        let one = summary("web-1", "web", Verdict::Deviated, now - Duration::hours(2));
        let svg1 = svg(now, &views, std::slice::from_ref(&one), &[]);
        assert!(svg1.contains(r#"href="experiments/web-1""#), "{svg1}");
        assert!(svg1.contains("v-deviated"));
        assert!(svg1.contains(">!</text>"), "the deviated symbol");
        assert!(svg1.contains("aria-labelledby") && svg1.contains("<desc"));
        // A thousand experiments in 24 hours: at most one bar per bucket.
        let many: Vec<Summary> = (0..1000)
            .map(|i| {
                let mut s = summary(
                    &format!("web-{i}"),
                    "web",
                    if i % 7 == 0 {
                        Verdict::Errored
                    } else {
                        Verdict::Passed
                    },
                    now - Duration::seconds(86 * i),
                );
                if i % 100 == 0 {
                    s.trigger = "rollout";
                }
                s
            })
            .collect();
        let big = svg(now, &views, &many, &[]);
        let bars = big.matches("class=\"bar ").count();
        assert!(
            bars <= 24 * 60 / 10 + 1,
            "one bar per 10-minute group at most: {bars}"
        );
        let rollouts = big.matches("class=\"rollout\"").count();
        assert!((1..=10).contains(&rollouts), "{rollouts}");
        assert!(big.contains("experiments?policy=web&amp;since="));
    }

    #[test]
    fn policies_no_longer_loaded_get_a_row_and_names_are_escaped() {
        let now: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().expect("t");
        let s = summary("x", "<gone>", Verdict::Passed, now - Duration::hours(1));
        let out = svg(now, &[], &[s], &[]);
        assert!(out.contains("&lt;gone&gt;") && !out.contains("<gone>"));
    }
}
