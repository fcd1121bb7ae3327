//! Differential test of the cron search: the field-by-field search ([`CronExpr::next_local`]
//! and everything above it) against the implementation it replaced (croner's own walk,
//! kept as [`CronExpr::reference_next_local`]), and both against a plain
//! minute-by-minute (or second-by-second) scan of wall-clock time. Random expressions
//! in DST zones, starting around real transitions in both directions, with and without
//! windows and blackouts, compared fire for fire.
//!
//! `cargo test -p havoc --lib schedule` runs a sample; the full size runs in release:
//! `HAVOC_DIFFERENTIAL_FULL=1 cargo test --release -p havoc --lib differential`.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::calendar::{Blackout, Window, resolve};
use super::{Calendar, CronExpr, HORIZON_DAYS, Schedule, ScheduleKind};

/// Zones with the transitions that matter: northern and southern hemisphere DST, Lord
/// Howe's 30-minute shift, Kathmandu's +05:45, São Paulo's (historical, until 2019)
/// transitions at midnight, Dublin's negative DST, Chatham's +12:45/+13:45, and UTC.
const ZONES: [(&str, i32, i32); 9] = [
    ("Europe/Berlin", 2024, 2029),
    ("America/New_York", 2024, 2029),
    ("Australia/Lord_Howe", 2024, 2029),
    ("Asia/Kathmandu", 2024, 2029),
    ("UTC", 2024, 2029),
    ("America/Sao_Paulo", 2016, 2020),
    ("Australia/Sydney", 2024, 2029),
    ("Europe/Dublin", 2024, 2029),
    ("Pacific/Chatham", 2024, 2029),
];

/// Counts of what was compared, for the report.
#[derive(Debug, Default)]
struct Tally {
    expressions: usize,
    rejected: usize,
    local_matches: usize,
    fires: usize,
    calendar_fires: usize,
    scanned_fires: usize,
}

struct Zone {
    tz: Tz,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    /// Instants where the UTC offset changes, with the change in seconds (> 0: clocks
    /// go forward, a gap; < 0: back, a repeated stretch).
    transitions: Vec<(DateTime<Utc>, i32)>,
}

fn utc_offset(tz: &Tz, t: DateTime<Utc>) -> i32 {
    t.with_timezone(tz).offset().fix().local_minus_utc()
}

fn zone(name: &str, from_year: i32, until_year: i32) -> Zone {
    let tz: Tz = name.parse().expect("zone");
    let at = |y| {
        Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0)
            .single()
            .expect("date")
    };
    let (from, until) = (at(from_year), at(until_year));
    let mut transitions = Vec::new();
    let step = Duration::hours(6);
    let mut t = from;
    while t < until {
        let (a, b) = (utc_offset(&tz, t), utc_offset(&tz, t + step));
        if a != b {
            // Offsets change on whole seconds: find the first instant with the new one.
            let (mut lo, mut hi) = (t, t + step);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if utc_offset(&tz, mid) == a {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            transitions.push((hi, b - a));
        }
        t += step;
    }
    Zone {
        tz,
        from,
        until,
        transitions,
    }
}

fn zones() -> Vec<Zone> {
    let zones: Vec<Zone> = ZONES.iter().map(|(n, a, b)| zone(n, *a, *b)).collect();
    // The zones really have what they are here for.
    for (z, (name, ..)) in zones.iter().zip(ZONES) {
        let n = z.transitions.len();
        match name {
            "UTC" | "Asia/Kathmandu" => assert_eq!(n, 0, "{name}"),
            _ => assert!(n >= 6, "{name}: {n} transitions"),
        }
        if name == "Australia/Lord_Howe" {
            assert!(z.transitions.iter().all(|(_, d)| d.abs() == 1800));
        }
    }
    zones
}

// ---- random expressions ---------------------------------------------------------------

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// One part of a list: a value, a range, a step over `*` or over a range.
fn part(rng: &mut ChaCha8Rng, lo: u32, hi: u32) -> String {
    let v = |rng: &mut ChaCha8Rng| rng.random_range(lo..=hi);
    match rng.random_range(0..6) {
        0 | 1 => v(rng).to_string(),
        2 => {
            let (a, b) = (v(rng), v(rng));
            format!("{}-{}", a.min(b), a.max(b))
        }
        3 => format!("*/{}", rng.random_range(1..=(hi - lo + 1).min(30))),
        4 => {
            let (a, b) = (v(rng), v(rng));
            format!("{}-{}/{}", a.min(b), a.max(b), rng.random_range(1..=7))
        }
        // croner refuses `a/n` (write `a-max/n`); it is left out
        _ => v(rng).to_string(),
    }
}

/// A field: `*` (weighted by `star`), one part, or a list of two or three.
fn field(rng: &mut ChaCha8Rng, lo: u32, hi: u32, star: f64) -> String {
    if rng.random_bool(star) {
        return "*".to_string();
    }
    let n = if rng.random_bool(0.7) {
        1
    } else {
        rng.random_range(2..=3)
    };
    (0..n)
        .map(|_| part(rng, lo, hi))
        .collect::<Vec<_>>()
        .join(",")
}

fn random_expr(rng: &mut ChaCha8Rng) -> String {
    if rng.random_bool(0.03) {
        // (`@midnight` is documented but croner refuses it, so `parse` does too.)
        return pick(
            rng,
            &[
                "@hourly",
                "@daily",
                "@weekly",
                "@monthly",
                "@yearly",
                "@annually",
            ],
        )
        .to_string();
    }
    // Minutes and seconds are mostly restricted, so that a few hundred fires cover days,
    // not minutes; hours around the usual transition times (00:00-03:00) are common.
    let minute = field(rng, 0, 59, 0.15);
    let hour = if rng.random_bool(0.3) {
        pick(rng, &["0", "1", "2", "3", "1-3", "2,3", "*/2", "0-2", "2"]).to_string()
    } else {
        field(rng, 0, 23, 0.4)
    };
    let dom = match rng.random_range(0..10) {
        0 => pick(
            rng,
            &[
                "L", "LW", "15W", "1W", "31W", "?", "29", "30", "31", "28-31", "29,L",
            ],
        )
        .to_string(),
        1..=5 => "*".to_string(),
        _ => field(rng, 1, 31, 0.0),
    };
    let month = match rng.random_range(0..8) {
        0 => pick(
            rng,
            &["FEB", "JAN,JUL", "MAR-OCT", "feb", "2", "3,10,11", "4,10"],
        )
        .to_string(),
        1..=4 => "*".to_string(),
        _ => field(rng, 1, 12, 0.0),
    };
    let dow = match rng.random_range(0..10) {
        0 => pick(
            rng,
            &[
                "5L", "1#2", "SUN#1", "0#5", "7", "0", "SUN", "sat,sun", "MON-FRI", "?", "+FRI",
                "5-7", "0,7", "6L", "7#3",
            ],
        )
        .to_string(),
        1..=5 => "*".to_string(),
        _ => field(rng, 0, 7, 0.0),
    };
    let five = format!("{minute} {hour} {dom} {month} {dow}");
    if rng.random_bool(0.25) {
        format!("{} {five}", field(rng, 0, 59, 0.1))
    } else {
        five
    }
}

// ---- random calendars -----------------------------------------------------------------

fn random_calendar(rng: &mut ChaCha8Rng, zone: &Zone) -> Calendar {
    let mut windows = Vec::new();
    for _ in 0..rng.random_range(0..=2) {
        let mut days = [false; 7];
        for d in &mut days {
            *d = rng.random_bool(0.6);
        }
        // Edges at the usual transition times, on whole hours, or anywhere.
        let minute = |rng: &mut ChaCha8Rng| match rng.random_range(0..3) {
            0 => [0, 60, 90, 120, 150, 180][rng.random_range(0..6)],
            1 => 60 * rng.random_range(0..24),
            _ => rng.random_range(0..1440),
        };
        windows.push(Window {
            days,
            start: minute(rng),
            end: minute(rng),
        });
    }
    let mut blackouts = Vec::new();
    for _ in 0..rng.random_range(0..=2) {
        if rng.random_bool(0.4) {
            let (month, day) =
                [(2, 29), (3, 29), (10, 25), (12, 24), (11, 1), (4, 6)][rng.random_range(0..6)];
            blackouts.push(Blackout::Yearly { month, day });
        } else {
            // A range of local time near a transition, up to three days long.
            let at = start_near_transition(rng, zone).with_timezone(&zone.tz);
            let from = at.naive_local() - Duration::minutes(rng.random_range(0..3000));
            let until = from + Duration::minutes(rng.random_range(1..4320));
            blackouts.push(Blackout::Range { from, until });
        }
    }
    Calendar {
        tz: zone.tz,
        windows,
        blackouts,
    }
}

// ---- start points ---------------------------------------------------------------------

/// Somewhere in the zone's period, with a fraction of a second now and then.
fn start_anywhere(rng: &mut ChaCha8Rng, zone: &Zone) -> DateTime<Utc> {
    let span = (zone.until - zone.from).num_seconds();
    let t = zone.from + Duration::seconds(rng.random_range(0..span));
    with_fraction(rng, t)
}

/// Up to two days before a transition, or inside the repeated stretch after one that
/// sets clocks back (the second pass through the same wall-clock times).
fn start_near_transition(rng: &mut ChaCha8Rng, zone: &Zone) -> DateTime<Utc> {
    if zone.transitions.is_empty() {
        return start_anywhere(rng, zone);
    }
    let (at, shift) = zone.transitions[rng.random_range(0..zone.transitions.len())];
    let t = if shift < 0 && rng.random_bool(0.4) {
        at + Duration::seconds(rng.random_range(0..i64::from(-shift)))
    } else if rng.random_bool(0.5) {
        at - Duration::seconds(rng.random_range(0..7200))
    } else {
        at - Duration::seconds(rng.random_range(0..2 * 86_400))
    };
    with_fraction(rng, t)
}

fn with_fraction(rng: &mut ChaCha8Rng, t: DateTime<Utc>) -> DateTime<Utc> {
    if rng.random_bool(0.1) {
        t + Duration::milliseconds(rng.random_range(1..1000))
    } else {
        t
    }
}

// ---- the references -------------------------------------------------------------------

/// `Cursor::next_cron` as it was, on top of the reference search.
fn reference_cursor(
    expr: &CronExpr,
    cal: &Calendar,
    start: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let (mut position, mut inclusive) = (start, true);
    while out.len() < n {
        let horizon = position + Duration::days(i64::from(HORIZON_DAYS));
        let (mut from, mut incl) = (position, inclusive);
        let next = loop {
            let Some(at) = expr.reference_next_from(&cal.tz, from, incl) else {
                break None;
            };
            if at > horizon {
                break None;
            }
            if cal.allows(at) {
                break Some(at);
            }
            let Some(allowed) = cal.next_allowed(at, HORIZON_DAYS) else {
                break None;
            };
            (from, incl) = if allowed > at {
                (allowed, true)
            } else {
                (at, false)
            };
        };
        let Some(at) = next else { break };
        out.push(at);
        (position, inclusive) = (at, false);
    }
    out
}

/// Fires from `start` (inclusive) to `end` by scanning every wall-clock minute (or
/// second, `step`) from the local time of `start`: a matching time fires at its instant
/// (see [`resolve`]) unless that is not after the previous fire (or before `start`).
/// This is the semantics, stated without any search.
fn scanned(
    expr: &CronExpr,
    tz: &Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step: Duration,
) -> Vec<DateTime<Utc>> {
    let mut out: Vec<DateTime<Utc>> = Vec::new();
    let first = start.with_timezone(tz).naive_local();
    // The first candidate: the local time of `start`, rounded up to the step.
    let step_s = step.num_seconds();
    let mut secs = first.and_utc().timestamp() + i64::from(first.nanosecond() > 0);
    secs += (step_s - secs.rem_euclid(step_s)) % step_s;
    let mut local = DateTime::from_timestamp(secs, 0)
        .expect("in range")
        .naive_utc();
    let local_end = end.with_timezone(tz).naive_local() + Duration::hours(4);
    while local <= local_end {
        if expr.matches_local(local) {
            let at = resolve(tz, local);
            let after_last = out.last().is_none_or(|last| at > *last);
            if at >= start && at < end && after_last {
                out.push(at);
            }
        }
        local += step;
    }
    out
}

fn fast_chain(expr: &CronExpr, tz: &Tz, start: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    chain(|t, incl| expr.next_from(tz, t, incl), start, n)
}

fn reference_chain(expr: &CronExpr, tz: &Tz, start: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    chain(|t, incl| expr.reference_next_from(tz, t, incl), start, n)
}

fn chain(
    next: impl Fn(DateTime<Utc>, bool) -> Option<DateTime<Utc>>,
    start: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Utc>> {
    let mut out = Vec::with_capacity(n);
    let (mut t, mut inclusive) = (start, true);
    while out.len() < n {
        let Some(at) = next(t, inclusive) else { break };
        out.push(at);
        (t, inclusive) = (at, false);
    }
    out
}

fn show(zone: &Zone, expr: &str, what: &str, start: DateTime<Utc>) -> String {
    format!(
        "{what}: {expr:?} in {} from {} ({})",
        zone.tz.name(),
        start.to_rfc3339(),
        start.with_timezone(&zone.tz).to_rfc3339()
    )
}

// ---- the test -------------------------------------------------------------------------

struct Size {
    expressions: usize,
    fires: usize,
    starts: usize,
    scans: usize,
}

fn run(size: &Size, seed: u64) -> Tally {
    let zones = zones();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tally = Tally::default();
    while tally.expressions < size.expressions {
        let source = random_expr(&mut rng);
        let Ok(expr) = CronExpr::parse(&source) else {
            tally.rejected += 1;
            continue;
        };
        tally.expressions += 1;
        let zone = &zones[tally.expressions % zones.len()];
        let tz = &zone.tz;
        for k in 0..size.starts {
            let start = if k % 2 == 0 {
                start_near_transition(&mut rng, zone)
            } else {
                start_anywhere(&mut rng, zone)
            };
            // 1. The wall-clock search alone, inclusive and exclusive.
            let local = start.with_timezone(tz).naive_local();
            for inclusive in [true, false] {
                let (mut a, mut b) = (Some(local), Some(local));
                for _ in 0..8 {
                    a = a.and_then(|t| expr.next_local(t, inclusive));
                    b = b.and_then(|t| expr.reference_next_local(t, inclusive));
                    assert_eq!(a, b, "{}", show(zone, &source, "next_local", start));
                    tally.local_matches += 1;
                }
            }
            // 2. Fire instants, fire for fire.
            let fast = fast_chain(&expr, tz, start, size.fires);
            let reference = reference_chain(&expr, tz, start, size.fires);
            assert_eq!(fast, reference, "{}", show(zone, &source, "fires", start));
            tally.fires += fast.len();
            // 3. Through a schedule with random windows and blackouts.
            let calendar = random_calendar(&mut rng, zone);
            let schedule = Schedule {
                kind: ScheduleKind::Cron(Box::new(expr.clone())),
                calendar: calendar.clone(),
            };
            let fast: Vec<_> = schedule.cursor(start, 0).take(size.fires).collect();
            let reference = reference_cursor(&expr, &calendar, start, size.fires);
            assert_eq!(
                fast,
                reference,
                "{} with {calendar:?}",
                show(zone, &source, "schedule", start)
            );
            tally.calendar_fires += fast.len();
        }
        // 4. Against a plain scan of wall-clock time across a transition.
        for _ in 0..size.scans {
            let start = start_near_transition(&mut rng, zone);
            let seconds = expr.as_str().split_whitespace().count() == 6;
            let (step, span) = if seconds {
                (Duration::seconds(1), Duration::hours(3))
            } else {
                (Duration::minutes(1), Duration::hours(60))
            };
            let end = start + span;
            let expected = scanned(&expr, tz, start, end, step);
            let got: Vec<_> = fast_chain(&expr, tz, start, expected.len() + 1)
                .into_iter()
                .filter(|t| *t < end)
                .collect();
            assert_eq!(got, expected, "{}", show(zone, &source, "scan", start));
            tally.scanned_fires += got.len();
        }
    }
    eprintln!("differential: {tally:?} over {} zones", zones.len());
    tally
}

/// 300 expressions in CI; the full size (20,000 expressions, minutes in a debug build):
/// `HAVOC_DIFFERENTIAL_FULL=1 cargo test --release -p havoc --lib differential`.
#[test]
fn fast_search_matches_the_reference_fire_for_fire() {
    let full = std::env::var_os("HAVOC_DIFFERENTIAL_FULL").is_some();
    let (size, seed) = if full {
        (
            Size {
                expressions: 20_000,
                fires: 200,
                starts: 4,
                scans: 2,
            },
            2,
        )
    } else {
        (
            Size {
                expressions: 300,
                fires: 40,
                starts: 2,
                scans: 1,
            },
            1,
        )
    };
    let tally = run(&size, seed);
    assert!(tally.fires > 10_000, "{tally:?}");
    assert!(tally.scanned_fires > 1_000, "{tally:?}");
}

// ---- hidden edges, spelled out ----------------------------------------------------------

fn local(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("valid")
}

fn both(expr: &str, tz: Tz, from: &str, n: usize) -> Vec<String> {
    let cron = CronExpr::parse(expr).expect("valid");
    let start = tz
        .from_local_datetime(&local(from))
        .earliest()
        .expect("exists")
        .with_timezone(&Utc);
    let fast = fast_chain(&cron, &tz, start, n);
    assert_eq!(fast, reference_chain(&cron, &tz, start, n), "{expr}");
    fast.iter()
        .map(|t| t.with_timezone(&tz).to_rfc3339())
        .collect()
}

#[test]
fn edges_lord_howe_half_hour_shift() {
    use chrono_tz::Australia::Lord_Howe;
    // 2026-10-04 02:00 +10:30 -> 02:30 +11:00; 2026-04-05 02:00 +11:00 -> 01:30 +10:30.
    assert_eq!(
        both("15 2 * * *", Lord_Howe, "2026-10-03 12:00:00", 3),
        [
            "2026-10-04T02:30:00+11:00",
            "2026-10-05T02:15:00+11:00",
            "2026-10-06T02:15:00+11:00"
        ]
    );
    // 01:30-01:59 happen twice; each time runs once, in the first pass.
    assert_eq!(
        both("*/20 1 * * *", Lord_Howe, "2026-04-05 01:00:00", 4),
        [
            "2026-04-05T01:00:00+11:00",
            "2026-04-05T01:20:00+11:00",
            "2026-04-05T01:40:00+11:00",
            "2026-04-06T01:00:00+10:30"
        ]
    );
}

#[test]
fn edges_sao_paulo_midnight_gap() {
    use chrono_tz::America::Sao_Paulo;
    // 2018-11-04 00:00 -03:00 -> 01:00 -02:00: midnight does not exist that day.
    assert_eq!(
        both("0 0 * * *", Sao_Paulo, "2018-11-03 12:00:00", 2),
        ["2018-11-04T01:00:00-02:00", "2018-11-05T00:00:00-02:00"]
    );
    // and the day's first hour, where the gap is, runs once at its end
    assert_eq!(
        both("*/30 0 * * *", Sao_Paulo, "2018-11-03 23:50:00", 2),
        ["2018-11-04T01:00:00-02:00", "2018-11-05T00:00:00-02:00"]
    );
}

#[test]
fn edges_fall_back_every_minute_runs_once_per_wall_clock_minute() {
    use chrono_tz::Europe::Berlin;
    // 2026-10-25 03:00 CEST -> 02:00 CET. `* * * * *` fires 60 times from 02:00 CEST to
    // 02:59 CEST, then not at all in the second pass, then 03:00 CET: a gap of an hour.
    let got = both("* * * * *", Berlin, "2026-10-25 02:58:00", 3);
    assert_eq!(
        got,
        [
            "2026-10-25T02:58:00+02:00",
            "2026-10-25T02:59:00+02:00",
            "2026-10-25T03:00:00+01:00"
        ]
    );
}

#[test]
fn edges_day_fields_sunday_leap_and_seconds() {
    use chrono_tz::UTC;
    // Sunday as 0 and 7, in lists and ranges.
    for expr in ["0 9 * * 0", "0 9 * * 7", "0 9 * * 0,7", "0 9 * * SUN"] {
        assert_eq!(
            both(expr, UTC, "2026-11-16 00:00:00", 2),
            ["2026-11-22T09:00:00+00:00", "2026-11-29T09:00:00+00:00"],
            "{expr}"
        );
    }
    assert_eq!(
        both("0 9 * * 5-7", UTC, "2026-11-20 10:00:00", 3),
        [
            "2026-11-21T09:00:00+00:00",
            "2026-11-22T09:00:00+00:00",
            "2026-11-27T09:00:00+00:00"
        ]
    );
    // day-of-month OR day-of-week: the 13th or any Friday.
    assert_eq!(
        both("0 0 13 * FRI", UTC, "2026-11-01 00:00:00", 4),
        [
            "2026-11-06T00:00:00+00:00",
            "2026-11-13T00:00:00+00:00",
            "2026-11-20T00:00:00+00:00",
            "2026-11-27T00:00:00+00:00"
        ]
    );
    // Feb 29 only in leap years; the 29th of every month includes it.
    assert_eq!(
        both("0 0 29 2 *", UTC, "2026-01-01 00:00:00", 2),
        ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]
    );
    assert_eq!(
        both("0 0 29 * *", UTC, "2028-01-30 00:00:00", 2),
        ["2028-02-29T00:00:00+00:00", "2028-03-29T00:00:00+00:00"]
    );
    // `L`, `W`, `#`, as croner reads them.
    assert_eq!(
        both("0 0 L 2 *", UTC, "2027-01-01 00:00:00", 2),
        ["2027-02-28T00:00:00+00:00", "2028-02-29T00:00:00+00:00"]
    );
    assert_eq!(
        both("0 0 * * FRI#2", UTC, "2026-11-01 00:00:00", 2),
        ["2026-11-13T00:00:00+00:00", "2026-12-11T00:00:00+00:00"]
    );
    // 6 fields: seconds carry into minutes, minutes into hours, hours into days.
    assert_eq!(
        both("58-59 59 23 * * *", UTC, "2026-12-31 23:59:58", 3),
        [
            "2026-12-31T23:59:58+00:00",
            "2026-12-31T23:59:59+00:00",
            "2027-01-01T23:59:58+00:00"
        ]
    );
    // A year boundary and a 30-day month after a 31-day one.
    assert_eq!(
        both("0 0 31 * *", UTC, "2026-12-31 00:00:01", 2),
        ["2027-01-31T00:00:00+00:00", "2027-03-31T00:00:00+00:00"]
    );
}

#[test]
fn scan_reference_agrees_on_a_known_case() {
    // The scan states the semantics; check it on the Berlin cases of `cron::tests`.
    use chrono_tz::Europe::Berlin;
    let cron = CronExpr::parse("*/15 * * * *").expect("valid");
    let start = Utc
        .with_ymd_and_hms(2026, 3, 29, 0, 30, 0)
        .single()
        .expect("t");
    let end = Utc
        .with_ymd_and_hms(2026, 3, 29, 1, 31, 0)
        .single()
        .expect("t");
    let got: Vec<String> = scanned(&cron, &Berlin, start, end, Duration::minutes(1))
        .iter()
        .map(|t| t.with_timezone(&Berlin).format("%H:%M%z").to_string())
        .collect();
    assert_eq!(
        got,
        [
            "01:30+0100",
            "01:45+0100",
            "03:00+0200",
            "03:15+0200",
            "03:30+0200"
        ]
    );
    let _ = NaiveDate::from_ymd_opt(2026, 1, 1);
}

#[test]
fn edges_kept_as_croner_reads_them() {
    use chrono_tz::UTC;
    // Only a literal `*` (or `?`) leaves a day field out of day-of-month OR day-of-week:
    // `*/2` restricts, so this is odd days OR Mondays (Vixie cron would AND them).
    assert_eq!(
        both("0 0 */2 * MON", UTC, "2026-11-01 00:00:00", 5),
        [
            "2026-11-01T00:00:00+00:00",
            "2026-11-02T00:00:00+00:00",
            "2026-11-03T00:00:00+00:00",
            "2026-11-05T00:00:00+00:00",
            "2026-11-07T00:00:00+00:00"
        ]
    );
    // A `+` before day-of-week asks for AND: the 1st, when it is a Sunday.
    assert_eq!(
        both("0 0 1 * +SUN", UTC, "2026-01-01 00:00:00", 2),
        ["2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"]
    );
    // `@midnight` is refused (croner does not know it), and so is `a/n` without a range.
    assert!(CronExpr::parse("@midnight").is_err());
    assert!(CronExpr::parse("5/15 * * * *").is_err());
}
