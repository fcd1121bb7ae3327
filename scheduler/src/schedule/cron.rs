//! Cron expressions with standard crontab semantics, evaluated on local wall-clock time.
//!
//! croner parses the expression; this module compiles croner's pattern into bit sets and
//! finds matches itself (see [`Fields`]), then maps each matched local time to an instant:
//! a time skipped by a DST gap runs once at the end of the gap, a time that exists twice
//! runs once, at its first occurrence.
//!
//! # How the next fire is found
//!
//! 1. **Next local match, field by field** ([`Fields::next_match`]). Seconds, minutes,
//!    hours and months are bit sets; "the next allowed value at or after `v`" is one mask
//!    and one `trailing_zeros`. The days of a month that match (day-of-month OR
//!    day-of-week, `L`, `W`, `#`) depend only on the month's length and the weekday of its
//!    1st, so all 4 × 7 possible day masks are computed once at parse time with croner's
//!    own day matcher. The search takes the start's date: if its month and day are
//!    allowed, it looks for the next time of day at or after the start's
//!    (hour, minute, second), carrying into the next allowed hour when no minute/second is
//!    left in this one; when no time is left that day it carries into the next allowed day
//!    of the month at the first allowed time, then into the next allowed month, then the
//!    next year. A typical call touches one month and one day.
//! 2. **DST resolution** ([`CronExpr::next_fire`]). The match is a wall-clock time; it is
//!    turned into an instant by [`resolve_zoned`]: a single instant as is, the first of two
//!    when clocks go back, the end of the gap when clocks go forward. Because several
//!    wall-clock matches can map to the same or to an earlier instant (all of a gap's
//!    matches map to its end; in the repeated hour the first occurrence lies before
//!    instants of the second pass), matches are taken in wall-clock order until one lands
//!    strictly after the starting instant. Outside transitions the first match is it.
//!
//! The previous implementation (croner's own search for step 1) is kept in the tests as
//! the oracle of a differential test (`tests::differential`).

use std::{fmt, sync::OnceLock};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::{
    Cron, YEAR_UPPER_LIMIT,
    parser::{CronParser, Seconds, Year},
    time::{Weekday, days_in_month},
};

use super::calendar::resolve_zoned;

/// A parsed cron expression.
#[derive(Clone)]
pub struct CronExpr {
    source: String,
    /// croner's parse, kept for the differential test's oracle only.
    #[cfg(test)]
    cron: Cron,
    fields: Fields,
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronExpr").field(&self.source).finish()
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Why a cron expression was refused; the message is what validation reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "invalid cron expression {expr:?}: expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, found {found}"
    )]
    FieldCount { expr: String, found: usize },
    #[error("@reboot has no meaning for a service schedule")]
    Reboot,
    #[error("invalid cron expression {expr:?}: {message}")]
    Syntax { expr: String, message: String },
    #[error("cron expression {0:?} never matches any date")]
    NeverMatches(String),
}

impl CronExpr {
    /// Parses 5 fields (minute hour day-of-month month day-of-week), or 6 with a leading
    /// seconds field, or a macro (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
    /// `@midnight`, `@hourly`). Sunday is 0 or 7; names (`MON`, `JAN`) are accepted; when
    /// both day fields are restricted a day matches if *either* does (Vixie cron).
    pub fn parse(source: &str) -> Result<Self, CronError> {
        let trimmed = source.trim();
        let fields = trimmed.split_whitespace().count();
        if !trimmed.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(CronError::FieldCount {
                expr: trimmed.to_string(),
                found: fields,
            });
        }
        if trimmed.eq_ignore_ascii_case("@reboot") {
            return Err(CronError::Reboot);
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .dom_and_dow(false)
            .build();
        let cron = parser.parse(trimmed).map_err(|e| CronError::Syntax {
            expr: trimmed.to_string(),
            message: e.to_string(),
        })?;
        let never = || CronError::NeverMatches(trimmed.to_string());
        let fields = Fields::compile(&cron).ok_or_else(never)?;
        // An expression that can never match (e.g. `0 0 30 2 *`) is a mistake, not a schedule.
        let probe = NaiveDate::from_ymd_opt(2000, 1, 1).ok_or_else(never)?;
        if fields.next_match(probe, (0, 0, 0)).is_none() {
            return Err(never());
        }
        Ok(CronExpr {
            source: trimmed.to_string(),
            #[cfg(test)]
            cron,
            fields,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The next matching local wall-clock time strictly after (or, with `inclusive`, at or
    /// after) `local`. Fractions of a second in `local` are ignored.
    pub fn next_local(&self, local: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        // "Strictly after" is "at or after one second later": the search takes a second of
        // 60 as the start of the next minute, so no date arithmetic is needed here.
        let floor = (
            local.hour(),
            local.minute(),
            local.second() + u32::from(!inclusive),
        );
        self.fields.next_match(local.date(), floor)
    }

    /// The first fire instant strictly after `after` in time zone `tz`.
    pub fn next_after(&self, tz: &Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_from(tz, after, false)
    }

    /// The first fire instant at or after `from` (`inclusive`) or strictly after it.
    pub fn next_from(
        &self,
        tz: &Tz,
        from: DateTime<Utc>,
        inclusive: bool,
    ) -> Option<DateTime<Utc>> {
        self.next_fire(tz, &from.with_timezone(tz), inclusive)
            .map(|at| at.with_timezone(&Utc))
    }

    /// [`Self::next_from`] with both instants in `tz`: the caller usually has `from` in
    /// it already (the previous fire), and the fire's local time is what windows and
    /// blackouts look at and what `plan` prints, so no time zone lookup is repeated.
    pub(crate) fn next_fire(
        &self,
        tz: &Tz,
        from: &DateTime<Tz>,
        inclusive: bool,
    ) -> Option<DateTime<Tz>> {
        // Work on whole seconds: cron has no finer resolution. (UTC offsets are whole
        // seconds, so truncating the UTC and the local time agree.)
        let mut from_utc = from.naive_utc();
        let mut local = from.naive_local();
        let inclusive = if from_utc.nanosecond() == 0 {
            inclusive
        } else {
            from_utc = from_utc.with_nanosecond(0)?;
            local = local.with_nanosecond(0)?;
            false
        };
        let mut incl = inclusive;
        // Each step advances `local` by at least a second; a match is at most a few years
        // away (the parser refuses expressions that never match), and the extra steps
        // (matches that resolve to `from` or before it: the rest of a DST gap, or the first
        // pass of a repeated hour when `from` is in the second) are at most an hour's worth.
        loop {
            let next = self.next_local(local, incl)?;
            incl = false;
            local = next;
            let at = resolve_zoned(tz, next);
            let at_utc = at.naive_utc();
            if at_utc > from_utc || (inclusive && at_utc == from_utc) {
                return Some(at);
            }
        }
    }
}

/// A cron pattern as bit sets, for the field-by-field search (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    /// Bit `s` set: second `s` (0..60) matches.
    seconds: u64,
    /// Bit `m` set: minute `m` (0..60) matches.
    minutes: u64,
    /// Bit `h` set: hour `h` (0..24) matches.
    hours: u32,
    /// Bit `m` set: month `m` (1..=12) matches.
    months: u16,
    /// `days[len - 28][w]`: the matching days (bit `d` for day `d`, 1..=31) of a month of
    /// `len` days whose 1st is weekday `w` (Sunday = 0). Day-of-month OR day-of-week, `L`,
    /// `W` and `#` all depend on nothing else, so these 28 masks are the whole day rule.
    days: [[u32; 7]; 4],
}

impl Fields {
    /// Reads croner's parsed pattern; `None` if some field matches nothing.
    fn compile(cron: &Cron) -> Option<Fields> {
        let p = &cron.pattern;
        let bits = |max: u32, matches: &dyn Fn(u32) -> bool| -> u64 {
            (0..=max)
                .filter(|v| matches(*v))
                .fold(0u64, |acc, v| acc | (1 << v))
        };
        let seconds = bits(59, &|v| p.second_match(v).unwrap_or(false));
        let minutes = bits(59, &|v| p.minute_match(v).unwrap_or(false));
        let hours = bits(23, &|v| p.hour_match(v).unwrap_or(false)) as u32;
        let months = bits(12, &|v| v >= 1 && p.month_match(v).unwrap_or(false)) as u16;
        let mut days = [[0u32; 7]; 4];
        for (len_index, masks) in days.iter_mut().enumerate() {
            let len = 28 + len_index as u32;
            for (first, mask) in masks.iter_mut().enumerate() {
                let (year, month) = sample_month(len, first as u32)?;
                let first_weekday = Weekday::from_days_from_sunday(first as u32);
                for day in 1..=len {
                    let weekday = first_weekday.shift(day as i32 - 1);
                    if p.day_match(year, month, day, weekday).unwrap_or(false) {
                        *mask |= 1 << day;
                    }
                }
            }
        }
        if seconds == 0 || minutes == 0 || hours == 0 || months == 0 {
            return None;
        }
        Some(Fields {
            seconds,
            minutes,
            hours,
            months,
            days,
        })
    }

    /// The first matching local time on or after `date` at or after the time of day
    /// `floor` (which may be one second past the end of a minute: `(h, m, 60)`), or `None`
    /// when there is none before croner's year limit.
    fn next_match(&self, date: NaiveDate, floor: (u32, u32, u32)) -> Option<NaiveDateTime> {
        // Usually the next match is later on the same day.
        if self.day_matches(date)
            && let Some((h, m, s)) = self.next_time(floor)
        {
            return date.and_hms_opt(h, m, s);
        }
        // Otherwise: the first time of the next matching day.
        let (h, m, s) = self.next_time((0, 0, 0))?;
        self.next_day_after(date)?.and_hms_opt(h, m, s)
    }

    /// The matching days of the month that `date` is in (see [`Fields::days`]).
    fn month_days(&self, year: i32, month: u32, weekday_of_1st: u32) -> u32 {
        if self.months & (1 << month) == 0 {
            return 0;
        }
        let len = days_in_month(year, month);
        self.days[(len - 28) as usize][weekday_of_1st as usize]
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let weekday = date.weekday().num_days_from_sunday();
        // The weekday of the 1st, from `date`'s: step back `day - 1` days.
        let first = (weekday + 35 - (date.day() - 1)) % 7;
        self.month_days(date.year(), date.month(), first) & (1 << date.day()) != 0
    }

    /// The first matching day after `date`: the next one left in its month, else the
    /// first one of the next month that has any (carrying into the next year).
    fn next_day_after(&self, date: NaiveDate) -> Option<NaiveDate> {
        let (mut year, mut month) = (date.year(), date.month());
        let mut first_candidate = date.day() + 1;
        while year <= YEAR_UPPER_LIMIT {
            let first = NaiveDate::from_ymd_opt(year, month, 1)?
                .weekday()
                .num_days_from_sunday();
            // Days from `first_candidate` on (none when that is 32).
            let from_candidate = u32::MAX.checked_shl(first_candidate).unwrap_or(0);
            let candidates = self.month_days(year, month, first) & from_candidate;
            if candidates != 0 {
                return NaiveDate::from_ymd_opt(year, month, candidates.trailing_zeros());
            }
            (month, first_candidate) = (month + 1, 1);
            if month > 12 {
                (year, month) = (year + 1, 1);
            }
        }
        None
    }

    /// The first matching time of day at or after `(h, m, s)` (`s` may be 60: the start
    /// of the next minute), or `None` when the day has none left. Each field carries into
    /// the next-larger one: past the last allowed second of a minute, the search moves to
    /// the next allowed minute (at its first allowed second); past the last allowed minute
    /// of an hour, to the next allowed hour (at its first allowed minute and second).
    fn next_time(&self, (h, m, s): (u32, u32, u32)) -> Option<(u32, u32, u32)> {
        let first_second = self.seconds.trailing_zeros();
        let first_minute = self.minutes.trailing_zeros();
        if self.hours & (1 << h) != 0 {
            if self.minutes & (1 << m) != 0
                && let Some(s) = next_bit(self.seconds, s)
            {
                return Some((h, m, s));
            }
            if let Some(m) = next_bit(self.minutes, m + 1) {
                return Some((h, m, first_second));
            }
        }
        let h = next_bit(u64::from(self.hours), h + 1)?;
        Some((h, first_minute, first_second))
    }
}

/// The lowest set bit of `mask` at position `from` or above.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    let above = mask.checked_shr(from)? << from;
    (above != 0).then(|| above.trailing_zeros())
}

/// A real month with `len` days whose 1st is weekday `first` (Sunday = 0), to feed croner's
/// day matcher (which wants a real date: it reads the month's length from the year and
/// month, and takes the weekday as given). Found once, then shared by every parse.
fn sample_month(len: u32, first: u32) -> Option<(i32, u32)> {
    /// `[len - 28][weekday of the 1st]`: (year, month).
    type Samples = [[Option<(i32, u32)>; 7]; 4];
    static SAMPLES: OnceLock<Samples> = OnceLock::new();
    let samples = SAMPLES.get_or_init(|| {
        let mut samples = [[None; 7]; 4];
        // Every length and weekday of the 1st occurs within 28 years.
        for year in 2000..2029 {
            for month in 1..=12 {
                let Some(date) = NaiveDate::from_ymd_opt(year, month, 1) else {
                    continue;
                };
                let len = days_in_month(year, month);
                let first = date.weekday().num_days_from_sunday();
                samples[(len - 28) as usize][first as usize].get_or_insert((year, month));
            }
        }
        samples
    });
    samples
        .get(len.checked_sub(28)? as usize)?
        .get(first as usize)
        .copied()
        .flatten()
}

/// The implementation this module had before the field-by-field search, kept as the
/// oracle of the differential test (`schedule::differential`).
#[cfg(test)]
impl CronExpr {
    /// croner's own walk for the next local match.
    pub(crate) fn reference_next_local(
        &self,
        local: NaiveDateTime,
        inclusive: bool,
    ) -> Option<NaiveDateTime> {
        self.cron.find_next_occurrence(&local, inclusive).ok()
    }

    /// `next_from` as it was, on top of [`Self::reference_next_local`].
    pub(crate) fn reference_next_from(
        &self,
        tz: &Tz,
        from: DateTime<Utc>,
        inclusive: bool,
    ) -> Option<DateTime<Utc>> {
        let (from, inclusive) = if from.nanosecond() == 0 {
            (from, inclusive)
        } else {
            (from.with_nanosecond(0)?, false)
        };
        let mut local = from.with_timezone(tz).naive_local();
        let mut incl = inclusive;
        loop {
            let next = self.reference_next_local(local, incl)?;
            incl = false;
            local = next;
            let at = super::calendar::resolve(tz, next);
            if at > from || (inclusive && at == from) {
                return Some(at);
            }
        }
    }

    /// Whether croner matches this wall-clock time (a direct test, no search).
    pub(crate) fn matches_local(&self, local: NaiveDateTime) -> bool {
        self.cron.is_time_matching(&local).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::{America::New_York, Australia::Sydney, Europe::Berlin, UTC};

    use crate::schedule::testing::utc;

    /// All fires in `[from, until)` as local RFC 3339 strings.
    fn fires(expr: &str, tz: Tz, from: &str, until: &str) -> Vec<String> {
        let cron = CronExpr::parse(expr).expect("valid cron");
        let (mut t, until) = (utc(from), utc(until));
        let mut out = Vec::new();
        let mut inclusive = true;
        while let Some(next) = cron.next_from(&tz, t, inclusive) {
            if next >= until {
                break;
            }
            out.push(next.with_timezone(&tz).to_rfc3339());
            t = next;
            inclusive = false;
        }
        out
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        // 2026-11-22 is a Sunday.
        for expr in ["0 9 * * 0", "0 9 * * 7", "0 9 * * SUN", "0 9 * * sun"] {
            assert_eq!(
                fires(expr, UTC, "2026-11-16T00:00:00Z", "2026-11-30T00:00:00Z"),
                vec!["2026-11-22T09:00:00+00:00", "2026-11-29T09:00:00+00:00"],
                "{expr}"
            );
        }
        // and Monday is 1, not Sunday (the `cron` crate's trap)
        assert_eq!(
            fires(
                "0 9 * * 1",
                UTC,
                "2026-11-22T00:00:00Z",
                "2026-11-24T00:00:00Z"
            ),
            vec!["2026-11-23T09:00:00+00:00"]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Vixie: the 1st of the month OR any Friday.
        let got = fires(
            "0 12 1 * FRI",
            UTC,
            "2026-12-01T00:00:00Z",
            "2027-01-02T00:00:00Z",
        );
        assert_eq!(
            got,
            vec![
                "2026-12-01T12:00:00+00:00",
                "2026-12-04T12:00:00+00:00",
                "2026-12-11T12:00:00+00:00",
                "2026-12-18T12:00:00+00:00",
                "2026-12-25T12:00:00+00:00",
                "2027-01-01T12:00:00+00:00",
            ]
        );
        // One restricted field alone restricts alone.
        assert_eq!(
            fires(
                "0 12 13 * *",
                UTC,
                "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z"
            )
            .len(),
            1
        );
        assert_eq!(
            fires(
                "0 12 * * MON-FRI",
                UTC,
                "2026-12-01T00:00:00Z",
                "2026-12-08T00:00:00Z"
            )
            .len(),
            5
        );
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        assert_eq!(
            fires(
                "*/20 9-10 * * *",
                UTC,
                "2026-11-23T00:00:00Z",
                "2026-11-24T00:00:00Z"
            ),
            vec![
                "2026-11-23T09:00:00+00:00",
                "2026-11-23T09:20:00+00:00",
                "2026-11-23T09:40:00+00:00",
                "2026-11-23T10:00:00+00:00",
                "2026-11-23T10:20:00+00:00",
                "2026-11-23T10:40:00+00:00",
            ]
        );
        assert_eq!(
            fires(
                "15,45 8 * JAN,JUL MON",
                UTC,
                "2027-01-01T00:00:00Z",
                "2027-01-12T00:00:00Z"
            ),
            vec![
                "2027-01-04T08:15:00+00:00",
                "2027-01-04T08:45:00+00:00",
                "2027-01-11T08:15:00+00:00",
                "2027-01-11T08:45:00+00:00",
            ]
        );
        assert_eq!(
            fires(
                "0 0 1-31/10 * *",
                UTC,
                "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z"
            )
            .len(),
            4
        );
    }

    #[test]
    fn macros_and_seconds() {
        assert_eq!(
            fires(
                "@hourly",
                UTC,
                "2026-11-23T00:00:00Z",
                "2026-11-23T03:00:00Z"
            )
            .len(),
            3
        );
        assert_eq!(
            fires(
                "@daily",
                UTC,
                "2026-11-23T00:00:00Z",
                "2026-11-26T00:00:00Z"
            )
            .len(),
            3
        );
        assert_eq!(
            fires(
                "@weekly",
                UTC,
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z"
            )
            .len(),
            5
        );
        assert_eq!(
            fires(
                "@monthly",
                UTC,
                "2026-01-01T00:00:00Z",
                "2027-01-01T00:00:00Z"
            )
            .len(),
            12
        );
        assert_eq!(
            fires(
                "@yearly",
                UTC,
                "2026-01-01T00:00:00Z",
                "2028-01-01T00:00:00Z"
            )
            .len(),
            2
        );
        assert_eq!(
            fires(
                "30 */30 * * * *",
                UTC,
                "2026-11-23T00:00:00Z",
                "2026-11-23T01:00:00Z"
            ),
            vec!["2026-11-23T00:00:30+00:00", "2026-11-23T00:30:30+00:00"]
        );
    }

    #[test]
    fn leap_days() {
        assert_eq!(
            fires(
                "0 6 29 2 *",
                UTC,
                "2026-01-01T00:00:00Z",
                "2033-01-01T00:00:00Z"
            ),
            vec!["2028-02-29T06:00:00+00:00", "2032-02-29T06:00:00+00:00"]
        );
        // the last day of February, whatever the year, through day-of-month OR day-of-week
        assert_eq!(
            fires(
                "0 0 28,29 2 *",
                UTC,
                "2028-01-01T00:00:00Z",
                "2029-01-01T00:00:00Z"
            )
            .len(),
            2
        );
    }

    #[test]
    fn rejects_bad_expressions() {
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 32 * *",
            "* * * 13 *",
            "* * * * 8",
            "* * * * FUNDAY",
            "*/0 * * * *",
            "0 0 30 2 *",
            "@reboot",
            "@sometimes",
            "a b c d e",
        ] {
            assert!(CronExpr::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn berlin_spring_forward_runs_skipped_times_once_after_the_gap() {
        // 2026-03-29 02:00 CET -> 03:00 CEST.
        assert_eq!(
            fires(
                "30 2 * * *",
                Berlin,
                "2026-03-28T00:00:00Z",
                "2026-03-31T00:00:00Z"
            ),
            vec![
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00"
            ]
        );
        // Every 15 minutes: 02:00..02:45 collapse into one run at 03:00, 03:00 itself is that run.
        assert_eq!(
            fires(
                "*/15 * * * *",
                Berlin,
                "2026-03-29T00:30:00Z",
                "2026-03-29T01:31:00Z"
            ),
            vec![
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T01:45:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:15:00+02:00",
                "2026-03-29T03:30:00+02:00",
            ]
        );
    }

    #[test]
    fn berlin_fall_back_runs_repeated_times_once() {
        // 2026-10-25 03:00 CEST -> 02:00 CET: 02:00-02:59 happen twice.
        assert_eq!(
            fires(
                "30 2 * * *",
                Berlin,
                "2026-10-24T00:00:00Z",
                "2026-10-27T00:00:00Z"
            ),
            vec![
                "2026-10-24T02:30:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:30:00+01:00"
            ]
        );
        let got = fires(
            "0,30 * * * *",
            Berlin,
            "2026-10-24T23:00:00Z",
            "2026-10-25T03:00:00Z",
        );
        assert_eq!(
            got,
            vec![
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T01:30:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T03:30:00+01:00",
            ]
        );
        // Starting inside the second pass does not repeat what the first pass ran.
        let cron = CronExpr::parse("30 2 * * *").expect("valid");
        let second_pass = utc("2026-10-25T01:10:00Z"); // 02:10 CET
        assert_eq!(
            cron.next_after(&Berlin, second_pass),
            Some(utc("2026-10-26T01:30:00Z"))
        );
    }

    #[test]
    fn new_york_transitions() {
        // 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
        assert_eq!(
            fires(
                "30 2 * * *",
                New_York,
                "2026-03-07T12:00:00Z",
                "2026-03-09T12:00:00Z"
            ),
            vec!["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
        );
        assert_eq!(
            fires(
                "30 1 * * *",
                New_York,
                "2026-10-31T12:00:00Z",
                "2026-11-02T12:00:00Z"
            ),
            vec!["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
        );
        // A business-hours schedule keeps its local hour across the change.
        assert_eq!(
            fires(
                "0 9 * * MON-FRI",
                New_York,
                "2026-10-30T00:00:00Z",
                "2026-11-03T00:00:00Z"
            ),
            vec!["2026-10-30T09:00:00-04:00", "2026-11-02T09:00:00-05:00"]
        );
    }

    #[test]
    fn sydney_southern_hemisphere_transitions() {
        // DST starts 2026-10-04 02:00 AEST -> 03:00 AEDT, ends 2026-04-05 03:00 AEDT -> 02:00 AEST.
        assert_eq!(
            fires(
                "15 2 * * *",
                Sydney,
                "2026-10-02T12:00:00Z",
                "2026-10-05T12:00:00Z"
            ),
            vec![
                "2026-10-03T02:15:00+10:00",
                "2026-10-04T03:00:00+11:00",
                "2026-10-05T02:15:00+11:00"
            ]
        );
        assert_eq!(
            fires(
                "15 2 * * *",
                Sydney,
                "2026-04-03T12:00:00Z",
                "2026-04-06T12:00:00Z"
            ),
            vec![
                "2026-04-04T02:15:00+11:00",
                "2026-04-05T02:15:00+11:00",
                "2026-04-06T02:15:00+10:00"
            ]
        );
    }

    #[test]
    fn inclusive_start_and_subsecond_start() {
        let cron = CronExpr::parse("0 * * * *").expect("valid");
        let at = UTC
            .with_ymd_and_hms(2026, 1, 1, 5, 0, 0)
            .single()
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(cron.next_from(&UTC, at, true), Some(at));
        assert_eq!(
            cron.next_from(&UTC, at, false),
            Some(at + chrono::Duration::hours(1))
        );
        let just_after = at + chrono::Duration::milliseconds(1);
        assert_eq!(
            cron.next_from(&UTC, just_after, true),
            Some(at + chrono::Duration::hours(1))
        );
    }
}
