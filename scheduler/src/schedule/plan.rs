//! `havoc plan`: every fire time of a set of schedules in a time range.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{Cursor, Schedule, ScheduleKind, stable_hash};

/// One planned fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire<'a> {
    pub policy: &'a str,
    pub at: DateTime<Tz>,
}

/// How much time `plan` orders at once: an hour of every policy's fires.
const BATCH_SECONDS: i64 = 3600;

/// One cursor, shared by every policy whose schedule gives the same fires.
struct Stream<'a> {
    cursor: Cursor<'a>,
    /// The next fire before `until`, and its whole second (`i64::MAX` when there is none).
    next: Option<DateTime<Tz>>,
    next_second: i64,
    /// The current batch's fires, each with its second after the batch start.
    batch: Vec<(DateTime<Tz>, usize)>,
}

/// Fires of every schedule in `[from, until)`, sorted by time (then policy name, then the
/// order of `schedules`).
///
/// Each policy's random stream is seeded with `seed` mixed with a hash of its name, so a
/// plan is reproducible and adding a policy leaves the others' times unchanged.
///
/// Each cursor yields its fires in order, so nothing needs a general sort: the cursors
/// are drained up to the end of the next hour (from the earliest pending fire), that
/// hour's fires are listed policy by policy in name order, and put in order by a counting
/// sort on their second. The counting sort is stable, so fires of one second stay in
/// policy-name order; only fractions of a second (random schedules) need a sort of their
/// own, within a second. Policies with equal cron schedules (a cron cursor draws no
/// random numbers) share one cursor.
pub fn plan<'a>(
    schedules: impl IntoIterator<Item = (&'a str, &'a Schedule)>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    seed: u64,
) -> Vec<Fire<'a>> {
    let mut sources: Vec<(&'a str, &'a Schedule)> = schedules.into_iter().collect();
    // Stable: equal names keep their given order.
    sources.sort_by(|a, b| a.0.cmp(b.0));

    let mut streams: Vec<Stream<'a>> = Vec::new();
    let mut stream_schedules: Vec<&'a Schedule> = Vec::new();
    // Cron streams by expression and zone, to find an equal schedule quickly.
    let mut cron_streams: HashMap<(&'a str, Tz), Vec<usize>> = HashMap::new();
    // Each policy, in name order, with the stream it reads.
    let mut members: Vec<(&'a str, usize)> = Vec::with_capacity(sources.len());
    for &(name, schedule) in &sources {
        let shared = match &schedule.kind {
            ScheduleKind::Cron(expr) => {
                let candidates = cron_streams
                    .entry((expr.as_str(), schedule.calendar.tz))
                    .or_default();
                let found = candidates
                    .iter()
                    .copied()
                    .find(|&k| stream_schedules[k] == schedule);
                if found.is_none() {
                    candidates.push(streams.len());
                }
                found
            }
            ScheduleKind::Random { .. } | ScheduleKind::Interval { .. } => None,
        };
        let k = shared.unwrap_or_else(|| {
            let mut cursor = schedule.cursor(from, policy_seed(seed, name));
            let next = next_before(&mut cursor, until);
            streams.push(Stream {
                cursor,
                next,
                next_second: second_of(&next),
                batch: Vec::new(),
            });
            stream_schedules.push(schedule);
            streams.len() - 1
        });
        members.push((name, k));
    }

    let mut fires = Vec::new();
    let mut starts = vec![0u32; BATCH_SECONDS as usize + 1];
    loop {
        let start = streams
            .iter()
            .map(|s| s.next_second)
            .min()
            .unwrap_or(i64::MAX);
        if start == i64::MAX {
            break;
        }
        let end = start + BATCH_SECONDS;
        for stream in &mut streams {
            stream.batch.clear();
            while stream.next_second < end {
                if let Some(at) = stream.next {
                    stream
                        .batch
                        .push((at, (stream.next_second - start) as usize));
                }
                stream.next = next_before(&mut stream.cursor, until);
                stream.next_second = second_of(&stream.next);
            }
        }
        // Counting sort by second, straight into `fires`: count each second's fires, turn
        // the counts into where each second starts, then place the fires policy by policy
        // in name order (which the placement keeps within a second).
        starts.fill(0);
        let mut placeholder = None;
        for &(_, k) in &members {
            for &(at, s) in &streams[k].batch {
                starts[s + 1] += 1;
                placeholder.get_or_insert(Fire { policy: "", at });
            }
        }
        let Some(placeholder) = placeholder else {
            continue;
        };
        for s in 1..starts.len() {
            starts[s] += starts[s - 1];
        }
        let base = fires.len();
        fires.resize(base + starts[starts.len() - 1] as usize, placeholder);
        for &(policy, k) in &members {
            for &(at, s) in &streams[k].batch {
                let slot = &mut starts[s];
                fires[base + *slot as usize] = Fire { policy, at };
                *slot += 1;
            }
        }
        let placed = &mut fires[base..];
        if placed.iter().any(|f| f.at.timestamp_subsec_nanos() != 0) {
            for same_second in placed.chunk_by_mut(|a, b| a.at.timestamp() == b.at.timestamp()) {
                same_second.sort_by_key(|f| f.at.timestamp_subsec_nanos());
            }
        }
    }
    fires
}

/// The cursor's next fire, if it is before `until`.
fn next_before(cursor: &mut Cursor<'_>, until: DateTime<Utc>) -> Option<DateTime<Tz>> {
    cursor
        .next_zoned()
        .filter(|t| t.with_timezone(&Utc) < until)
}

/// The whole second of a fire, `i64::MAX` for none.
fn second_of(t: &Option<DateTime<Tz>>) -> i64 {
    t.map_or(i64::MAX, |t| t.timestamp())
}

/// The seed of one policy's random stream.
pub fn policy_seed(seed: u64, policy: &str) -> u64 {
    seed ^ stable_hash(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Calendar, CronExpr, ScheduleKind};
    use chrono_tz::{America::New_York, Europe::Berlin};
    use std::time::Duration;

    use crate::schedule::testing::utc;

    #[test]
    fn merges_and_sorts_with_local_offsets() {
        let a = Schedule {
            kind: ScheduleKind::Cron(Box::new(CronExpr::parse("0 9 * * *").expect("valid"))),
            calendar: Calendar::always(Berlin),
        };
        let b = Schedule {
            kind: ScheduleKind::Cron(Box::new(CronExpr::parse("0 3 * * *").expect("valid"))),
            calendar: Calendar::always(New_York),
        };
        let fires = plan(
            [("a", &a), ("b", &b)],
            utc("2026-03-29T00:00:00Z"),
            utc("2026-03-30T12:00:00Z"),
            0,
        );
        let got: Vec<String> = fires
            .iter()
            .map(|f| format!("{} {}", f.policy, f.at.to_rfc3339()))
            .collect();
        assert_eq!(
            got,
            [
                "a 2026-03-29T09:00:00+02:00",
                "b 2026-03-29T03:00:00-04:00",
                "a 2026-03-30T09:00:00+02:00",
                "b 2026-03-30T03:00:00-04:00",
            ]
        );
    }

    /// `plan` as it was: every cursor collected, then one stable sort.
    fn reference_plan<'a>(
        schedules: &[(&'a str, &'a Schedule)],
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        seed: u64,
    ) -> Vec<Fire<'a>> {
        let mut fires = Vec::new();
        for &(name, schedule) in schedules {
            let tz = schedule.calendar.tz;
            fires.extend(
                schedule
                    .cursor(from, policy_seed(seed, name))
                    .take_while(|t| *t < until)
                    .map(|t| Fire {
                        policy: name,
                        at: t.with_timezone(&tz),
                    }),
            );
        }
        fires.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.policy.cmp(b.policy)));
        fires
    }

    #[test]
    fn merging_cursors_equals_collecting_and_sorting() {
        use crate::schedule::calendar::{Blackout, Window};
        use chrono_tz::{Australia::Lord_Howe, UTC};
        let cron = |expr: &str, tz| Schedule {
            kind: ScheduleKind::Cron(Box::new(CronExpr::parse(expr).expect("valid"))),
            calendar: Calendar::always(tz),
        };
        let mut windowed = cron("*/10 * * * *", Berlin);
        windowed.calendar.windows = vec![Window {
            days: [true, true, true, true, true, false, false],
            start: 120,
            end: 180,
        }];
        windowed.calendar.blackouts = vec![Blackout::Yearly { month: 3, day: 30 }];
        let random = Schedule {
            kind: ScheduleKind::Random {
                mean: Duration::from_secs(1800),
                min: Duration::from_secs(60),
            },
            calendar: Calendar::always(New_York),
        };
        let interval = Schedule {
            kind: ScheduleKind::Interval {
                min: Duration::from_secs(300),
                max: Duration::from_secs(3600),
            },
            calendar: Calendar::always(Lord_Howe),
        };
        let (hourly_utc, hourly_berlin) = (cron("0 * * * *", UTC), cron("0 * * * *", Berlin));
        let never = cron("0 0 29 2 *", UTC);
        let seconds = cron("*/7 * 2 * * *", Lord_Howe);
        // Equal to `hourly_utc` (shares its cursor), and the same expression and zone as
        // `windowed` with another calendar (does not).
        let (hourly_again, unwindowed) = (cron("0 * * * *", UTC), cron("*/10 * * * *", Berlin));
        // Out of name order, a duplicate name, fires at the same instants in different
        // zones, and one schedule with no fire in the range.
        let schedules = [
            ("hourly", &hourly_again),
            ("plain", &unwindowed),
            ("zeta", &hourly_utc),
            ("alpha", &hourly_berlin),
            ("mid", &windowed),
            ("alpha", &hourly_utc),
            ("r", &random),
            ("i", &interval),
            ("never", &never),
            ("s", &seconds),
            ("b", &hourly_utc),
        ];
        // Across Berlin's and New York's spring-forward and Lord Howe's autumn change.
        let (from, until) = (utc("2026-03-01T00:00:00Z"), utc("2026-04-10T00:00:00Z"));
        for seed in [0, 1, 99] {
            let got = plan(schedules, from, until, seed);
            let want = reference_plan(&schedules, from, until, seed);
            assert!(want.len() > 10_000, "{}", want.len());
            assert_eq!(got, want);
            // Equal, down to the offsets printed.
            let show = |f: &[Fire<'_>]| -> Vec<String> {
                f.iter()
                    .map(|f| format!("{} {}", f.policy, f.at.to_rfc3339()))
                    .collect()
            };
            assert_eq!(show(&got), show(&want));
        }
        // Fractions of a second: gaps under a second keep their exact times, so fires of
        // one second interleave by fraction, and ties with whole-second cron fires.
        let fast = |min_ms, max_ms| Schedule {
            kind: ScheduleKind::Interval {
                min: Duration::from_millis(min_ms),
                max: Duration::from_millis(max_ms),
            },
            calendar: Calendar::always(Berlin),
        };
        let (a, b) = (fast(100, 900), fast(0, 400));
        let every_second = cron("* * * * * *", UTC);
        let schedules = [("b", &a), ("a", &b), ("c", &every_second), ("a", &a)];
        let (from, until) = (utc("2026-03-29T00:55:00Z"), utc("2026-03-29T01:05:00Z"));
        let got = plan(schedules, from, until, 3);
        assert_eq!(got, reference_plan(&schedules, from, until, 3));
        assert!(got.iter().any(|f| f.at.timestamp_subsec_nanos() != 0));
        assert!(got.len() > 3_000, "{}", got.len());
        assert!(plan([("never", &never)], from, until, 0).is_empty());
        assert!(plan(std::iter::empty(), from, until, 0).is_empty());
    }

    #[test]
    fn seeds_are_per_policy() {
        let r = Schedule {
            kind: ScheduleKind::Random {
                mean: Duration::from_secs(600),
                min: Duration::ZERO,
            },
            calendar: Calendar::always(Berlin),
        };
        let from = utc("2026-01-01T00:00:00Z");
        let until = utc("2026-01-02T00:00:00Z");
        let alone = plan([("x", &r)], from, until, 5);
        let together = plan([("x", &r), ("y", &r)], from, until, 5);
        let x_again: Vec<_> = together.into_iter().filter(|f| f.policy == "x").collect();
        assert_eq!(alone, x_again);
    }
}
