//! Cron expressions with standard crontab semantics, evaluated on local wall-clock time.
//!
//! croner parses the expression and matches *naive local* times (so its answers do not
//! depend on any time zone); this module maps each matched local time to an instant:
//! a time skipped by a DST gap runs once at the end of the gap, a time that exists twice
//! runs once, at its first occurrence.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};

use super::calendar::resolve;

/// A parsed cron expression.
#[derive(Clone)]
pub struct CronExpr {
    source: String,
    cron: Cron,
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

impl CronExpr {
    /// Parses 5 fields (minute hour day-of-month month day-of-week), or 6 with a leading
    /// seconds field, or a macro (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
    /// `@midnight`, `@hourly`). Sunday is 0 or 7; names (`MON`, `JAN`) are accepted; when
    /// both day fields are restricted a day matches if *either* does (Vixie cron).
    pub fn parse(source: &str) -> Result<Self, String> {
        let trimmed = source.trim();
        let fields = trimmed.split_whitespace().count();
        if !trimmed.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "invalid cron expression {trimmed:?}: expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, found {fields}"
            ));
        }
        if trimmed.eq_ignore_ascii_case("@reboot") {
            return Err("@reboot has no meaning for a service schedule".to_string());
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .dom_and_dow(false)
            .build();
        let cron = parser
            .parse(trimmed)
            .map_err(|e| format!("invalid cron expression {trimmed:?}: {e}"))?;
        // An expression that can never match (e.g. `0 0 30 2 *`) is a mistake, not a schedule.
        let probe = NaiveDateTime::parse_from_str("2000-01-01 00:00:00", "%Y-%m-%d %H:%M:%S")
            .map_err(|e| e.to_string())?;
        if cron.find_next_occurrence(&probe, false).is_err() {
            return Err(format!(
                "cron expression {trimmed:?} never matches any date"
            ));
        }
        Ok(CronExpr {
            source: trimmed.to_string(),
            cron,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The next matching local wall-clock time strictly after (or, with `inclusive`, at or
    /// after) `local`.
    pub fn next_local(&self, local: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        self.cron.find_next_occurrence(&local, inclusive).ok()
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
        // Work on whole seconds: cron has no finer resolution.
        let (from, inclusive) = if from.nanosecond() == 0 {
            (from, inclusive)
        } else {
            (from.with_nanosecond(0)?, false)
        };
        let mut local = from.with_timezone(tz).naive_local();
        let mut incl = inclusive;
        // Each step advances `local` by at least a second; a match is at most a few years
        // away (the parser refuses expressions that never match), and duplicates from DST
        // overlaps are at most an hour's worth of matches.
        loop {
            let next = self.next_local(local, incl)?;
            incl = false;
            local = next;
            let at = resolve(tz, next);
            if at > from || (inclusive && at == from) {
                return Some(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::{America::New_York, Australia::Sydney, Europe::Berlin, UTC};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid")
            .with_timezone(&Utc)
    }

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
