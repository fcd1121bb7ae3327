//! Allowed time: windows (an allow-list by weekday and local time) minus blackouts,
//! evaluated in one IANA time zone.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// An allowed stretch of local time: `start..end` minutes after midnight on the given
/// weekdays. `end <= start` wraps into the next day (`end == start` is 24 hours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Monday = 0 .. Sunday = 6.
    pub days: [bool; 7],
    /// Minutes after midnight, 0..1440.
    pub start: u32,
    /// Minutes after midnight, 0..=1440.
    pub end: u32,
}

impl Window {
    fn contains(&self, t: NaiveDateTime) -> bool {
        let day = t.weekday().num_days_from_monday() as usize;
        let prev = (day + 6) % 7;
        let secs = t.num_seconds_from_midnight();
        let (start, end) = (self.start * 60, self.end * 60);
        if start < end {
            self.days[day] && secs >= start && secs < end
        } else {
            (self.days[day] && secs >= start) || (self.days[prev] && secs < end)
        }
    }
}

/// A time when nothing fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blackout {
    /// The whole local day, every year.
    Yearly { month: u32, day: u32 },
    /// `from..until`, local time.
    Range {
        from: NaiveDateTime,
        until: NaiveDateTime,
    },
}

impl Blackout {
    fn contains(&self, t: NaiveDateTime) -> bool {
        match self {
            Blackout::Yearly { month, day } => t.month() == *month && t.day() == *day,
            Blackout::Range { from, until } => *from <= t && t < *until,
        }
    }
}

/// Windows and blackouts in a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    pub tz: Tz,
    pub windows: Vec<Window>,
    pub blackouts: Vec<Blackout>,
}

impl Calendar {
    pub fn always(tz: Tz) -> Self {
        Calendar {
            tz,
            windows: Vec::new(),
            blackouts: Vec::new(),
        }
    }

    /// Whether an instant is allowed.
    pub fn allows(&self, t: DateTime<Utc>) -> bool {
        self.allows_local(t.with_timezone(&self.tz).naive_local())
    }

    /// Whether a local wall-clock time is allowed.
    pub fn allows_local(&self, t: NaiveDateTime) -> bool {
        (self.windows.is_empty() || self.windows.iter().any(|w| w.contains(t)))
            && !self.blackouts.iter().any(|b| b.contains(t))
    }

    /// No windows and no blackouts: every instant is allowed.
    pub fn is_unrestricted(&self) -> bool {
        self.windows.is_empty() && self.blackouts.is_empty()
    }

    /// The allowed segments of one local day, as instants, in order. Segment ends that
    /// fall in a DST gap map to the end of the gap; ones that exist twice map to their
    /// first occurrence.
    pub fn day_segments(&self, date: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        let next_midnight = midnight + Duration::days(1);
        let mut bounds = vec![midnight, next_midnight];
        if !self.is_unrestricted() {
            for w in &self.windows {
                for m in [w.start, w.end] {
                    bounds.push(midnight + Duration::minutes(i64::from(m)));
                }
            }
            for b in &self.blackouts {
                if let Blackout::Range { from, until } = b {
                    bounds.extend([*from, *until]);
                }
            }
            bounds.retain(|b| *b >= midnight && *b <= next_midnight);
            bounds.sort();
            bounds.dedup();
        }
        let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for pair in bounds.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if !self.allows_local(a + (b - a) / 2) {
                continue;
            }
            let (sa, sb) = (resolve(&self.tz, a), resolve(&self.tz, b));
            if sa >= sb {
                continue; // swallowed by a DST gap
            }
            match out.last_mut() {
                Some(last) if last.1 == sa => last.1 = sb,
                _ => out.push((sa, sb)),
            }
        }
        out
    }

    /// Allowed segments from `t` on (the first one clipped to start at `t`), day by day.
    pub fn segments_from(&self, t: DateTime<Utc>) -> Segments<'_> {
        Segments {
            calendar: self,
            date: t.with_timezone(&self.tz).date_naive(),
            pending: Vec::new(),
            from: t,
            last: None,
        }
    }

    /// The first allowed instant at or after `t`, looking at most `horizon_days` ahead.
    pub fn next_allowed(&self, t: DateTime<Utc>, horizon_days: u32) -> Option<DateTime<Utc>> {
        if self.allows(t) {
            return Some(t);
        }
        self.segments_from(t)
            .take_days(horizon_days)
            .next()
            .map(|(s, _)| s.max(t))
    }
}

/// Iterator over allowed segments, see [`Calendar::segments_from`].
#[derive(Debug)]
pub struct Segments<'a> {
    calendar: &'a Calendar,
    date: NaiveDate,
    pending: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    from: DateTime<Utc>,
    last: Option<NaiveDate>,
}

impl Segments<'_> {
    /// Bounds the iteration to this many local days after the first.
    pub fn take_days(mut self, days: u32) -> Self {
        self.last = Some(self.date + Duration::days(i64::from(days)));
        self
    }
}

impl Iterator for Segments<'_> {
    type Item = (DateTime<Utc>, DateTime<Utc>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(seg) = self.pending.pop() {
                if seg.1 <= self.from {
                    continue;
                }
                return Some((seg.0.max(self.from), seg.1));
            }
            if self.last.is_some_and(|last| self.date > last) {
                return None;
            }
            let mut segs = self.calendar.day_segments(self.date);
            segs.reverse();
            self.pending = segs;
            self.date = self.date.succ_opt()?;
        }
    }
}

/// The instant of a local wall-clock time: the single one, the first of two (a time that
/// exists twice when clocks go back), or the end of the gap (a time skipped when clocks go
/// forward runs right after the gap).
pub fn resolve(tz: &Tz, local: NaiveDateTime) -> DateTime<Utc> {
    resolve_zoned(tz, local).with_timezone(&Utc)
}

/// [`resolve`], as an instant in `tz`.
pub fn resolve_zoned(tz: &Tz, local: NaiveDateTime) -> DateTime<Tz> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(a, b) => a.min(b),
        LocalResult::None => gap_end(tz, local).with_timezone(tz),
    }
}

/// The first instant whose local time is later than `local` (which lies in a gap).
fn gap_end(tz: &Tz, local: NaiveDateTime) -> DateTime<Utc> {
    // No zone is more than 15 hours off UTC, so the answer lies in this 30-hour range.
    let mut lo = local.and_utc() - Duration::hours(15);
    let mut hi = local.and_utc() + Duration::hours(15);
    while hi - lo > Duration::seconds(1) {
        let mid = lo + (hi - lo) / 2;
        if mid.with_timezone(tz).naive_local() > local {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    // Offsets change on whole seconds: `hi` is the transition itself.
    hi.with_nanosecond(0).unwrap_or(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Australia::Sydney, Europe::Berlin};

    use crate::schedule::testing::utc;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("valid")
    }

    fn weekdays() -> [bool; 7] {
        [true, true, true, true, true, false, false]
    }

    #[test]
    fn resolve_maps_gaps_forward_and_overlaps_to_the_first() {
        // Berlin 2026-03-29: 02:00 -> 03:00.
        assert_eq!(
            resolve(&Berlin, local("2026-03-29 02:30")),
            utc("2026-03-29T01:00:00Z")
        );
        // Berlin 2026-10-25: 03:00 -> 02:00; 02:30 exists twice.
        assert_eq!(
            resolve(&Berlin, local("2026-10-25 02:30")),
            utc("2026-10-25T00:30:00Z")
        );
        // Sydney 2026-10-04: 02:00 -> 03:00 (southern hemisphere spring).
        assert_eq!(
            resolve(&Sydney, local("2026-10-04 02:15")),
            utc("2026-10-03T16:00:00Z")
        );
        // New York 2026-03-08: 02:00 -> 03:00.
        assert_eq!(
            resolve(&New_York, local("2026-03-08 02:59")),
            utc("2026-03-08T07:00:00Z")
        );
    }

    #[test]
    fn windows_wrap_midnight_into_the_next_day() {
        let cal = Calendar {
            tz: Berlin,
            windows: vec![Window {
                days: [false, false, false, false, true, false, false],
                start: 22 * 60,
                end: 2 * 60,
            }],
            blackouts: vec![],
        };
        // Friday 2026-11-20 22:00 .. Saturday 02:00
        assert!(!cal.allows_local(local("2026-11-20 21:59")));
        assert!(cal.allows_local(local("2026-11-20 22:00")));
        assert!(cal.allows_local(local("2026-11-21 01:59")));
        assert!(!cal.allows_local(local("2026-11-21 02:00")));
        // Thursday night is not in the window, nor is Saturday night.
        assert!(!cal.allows_local(local("2026-11-19 23:00")));
        assert!(!cal.allows_local(local("2026-11-21 23:00")));
        assert!(
            !cal.allows_local(local("2026-11-20 01:00")),
            "Friday early morning belongs to Thursday's window"
        );
    }

    #[test]
    fn equal_start_and_end_is_a_whole_day() {
        let cal = Calendar {
            tz: Berlin,
            windows: vec![Window {
                days: [true; 7],
                start: 0,
                end: 0,
            }],
            blackouts: vec![],
        };
        assert!(cal.allows_local(local("2026-11-20 00:00")));
        assert!(cal.allows_local(local("2026-11-20 23:59")));
    }

    #[test]
    fn blackouts_yearly_and_ranges() {
        let cal = Calendar {
            tz: Berlin,
            windows: vec![],
            blackouts: vec![
                Blackout::Yearly { month: 12, day: 24 },
                Blackout::Yearly { month: 2, day: 29 },
                Blackout::Range {
                    from: local("2026-12-28 12:00"),
                    until: local("2027-01-04 00:00"),
                },
            ],
        };
        assert!(!cal.allows_local(local("2026-12-24 00:00")));
        assert!(!cal.allows_local(local("2031-12-24 23:59")));
        assert!(cal.allows_local(local("2026-12-25 00:00")));
        assert!(cal.allows_local(local("2026-12-28 11:59")));
        assert!(!cal.allows_local(local("2026-12-28 12:00")));
        assert!(!cal.allows_local(local("2027-01-03 23:59")));
        assert!(cal.allows_local(local("2027-01-04 00:00")));
        // leap day blackout only exists in leap years
        assert!(!cal.allows_local(local("2028-02-29 10:00")));
        assert!(cal.allows_local(local("2027-02-28 10:00")));
        assert!(cal.allows_local(local("2027-03-01 10:00")));
    }

    #[test]
    fn day_segments_follow_windows_and_dst() {
        let cal = Calendar {
            tz: Berlin,
            windows: vec![Window {
                days: [true; 7],
                start: 60,
                end: 4 * 60,
            }],
            blackouts: vec![],
        };
        // 01:00-04:00 on the spring-forward day is only two real hours.
        let segs = cal.day_segments(NaiveDate::from_ymd_opt(2026, 3, 29).expect("date"));
        assert_eq!(
            segs,
            vec![(utc("2026-03-29T00:00:00Z"), utc("2026-03-29T02:00:00Z"))]
        );
        // ... and four on the fall-back day.
        let segs = cal.day_segments(NaiveDate::from_ymd_opt(2026, 10, 25).expect("date"));
        assert_eq!(
            segs,
            vec![(utc("2026-10-24T23:00:00Z"), utc("2026-10-25T03:00:00Z"))]
        );
    }

    #[test]
    fn segments_iterate_across_days_and_skip_blackouts() {
        let cal = Calendar {
            tz: New_York,
            windows: vec![Window {
                days: weekdays(),
                start: 9 * 60,
                end: 17 * 60,
            }],
            blackouts: vec![Blackout::Yearly { month: 11, day: 26 }],
        };
        // Wednesday 2026-11-25 18:00 local: next are Fri 27th (Thu 26th is blacked out).
        let from = utc("2026-11-25T23:00:00Z");
        let segs: Vec<_> = cal.segments_from(from).take(2).collect();
        assert_eq!(
            segs[0],
            (utc("2026-11-27T14:00:00Z"), utc("2026-11-27T22:00:00Z"))
        );
        assert_eq!(
            segs[1],
            (utc("2026-11-30T14:00:00Z"), utc("2026-11-30T22:00:00Z"))
        );
        assert_eq!(
            cal.next_allowed(from, 30),
            Some(utc("2026-11-27T14:00:00Z"))
        );
        let inside = utc("2026-11-27T15:00:00Z");
        assert_eq!(cal.next_allowed(inside, 30), Some(inside));
    }

    #[test]
    fn a_calendar_that_never_allows_ends() {
        let cal = Calendar {
            tz: Berlin,
            windows: vec![],
            blackouts: vec![Blackout::Range {
                from: local("2000-01-01 00:00"),
                until: local("2100-01-01 00:00"),
            }],
        };
        assert_eq!(cal.next_allowed(utc("2026-01-01T00:00:00Z"), 400), None);
    }
}
