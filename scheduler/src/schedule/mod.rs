//! Clock triggers: when a policy fires. Pure: no I/O, no clock of its own; given a start
//! instant and a seed, the fire times are fully determined.
//!
//! - [`cron`]: crontab expressions on local wall-clock time, DST-exact;
//! - random kinds: a Poisson process (`random`) or uniform gaps (`interval`), whose clock
//!   runs only during allowed time;
//! - [`calendar`]: windows and blackouts, applied to all kinds.

pub mod calendar;
pub mod cron;
#[cfg(test)]
mod differential;
pub mod plan;

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use self::{
    calendar::Calendar,
    cron::{CronError, CronExpr},
};

/// How far ahead a cursor looks for allowed time before deciding a schedule never fires
/// again (a blackout covering years, say).
pub const HORIZON_DAYS: u32 = 3 * 366;

/// A policy's clock schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub calendar: Calendar,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleKind {
    Cron(Box<CronExpr>),
    /// Gaps are `min + Exp(mean - min)`: never below `min`, averaging `mean`.
    Random {
        mean: Duration,
        min: Duration,
    },
    /// Gaps uniform in `[min, max]`.
    Interval {
        min: Duration,
        max: Duration,
    },
}

impl Schedule {
    /// A cursor producing fire times from `start` on (a cron fire exactly at `start`
    /// counts; random processes start their first gap at `start`).
    pub fn cursor(&self, start: DateTime<Utc>, seed: u64) -> Cursor<'_> {
        Cursor {
            schedule: self,
            position: start,
            zoned: None,
            inclusive: true,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The first fire strictly after `after`. The service steps schedules with this one
    /// fire at a time; random gaps draw from `seed`, which the caller varies per step.
    pub fn next_after(&self, after: DateTime<Utc>, seed: u64) -> Option<DateTime<Utc>> {
        Cursor {
            schedule: self,
            position: after,
            zoned: None,
            inclusive: false,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
        .next()
    }
}

/// Iterates over fire times in increasing order.
#[derive(Debug)]
pub struct Cursor<'a> {
    schedule: &'a Schedule,
    position: DateTime<Utc>,
    /// `position` in the schedule's time zone, once a fire has set it.
    zoned: Option<DateTime<Tz>>,
    inclusive: bool,
    rng: ChaCha8Rng,
}

impl Iterator for Cursor<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        self.next_zoned().map(|t| t.with_timezone(&Utc))
    }
}

impl Cursor<'_> {
    /// The next fire time, as an instant in the schedule's time zone (what `plan` prints;
    /// for cron it comes out of the search without a second time zone lookup).
    pub(crate) fn next_zoned(&mut self) -> Option<DateTime<Tz>> {
        let tz = self.schedule.calendar.tz;
        let next = match &self.schedule.kind {
            ScheduleKind::Cron(expr) => self.next_cron(expr),
            ScheduleKind::Random { mean, min } => {
                let gap = exponential_gap(&mut self.rng, *mean, *min);
                self.walk_allowed(gap).map(|t| t.with_timezone(&tz))
            }
            ScheduleKind::Interval { min, max } => {
                let gap = uniform_gap(&mut self.rng, *min, *max);
                self.walk_allowed(gap).map(|t| t.with_timezone(&tz))
            }
        }?;
        self.position = next.with_timezone(&Utc);
        self.zoned = Some(next);
        self.inclusive = false;
        Some(next)
    }

    fn next_cron(&mut self, expr: &CronExpr) -> Option<DateTime<Tz>> {
        let cal = &self.schedule.calendar;
        let mut from = self
            .zoned
            .unwrap_or_else(|| self.position.with_timezone(&cal.tz));
        let mut inclusive = self.inclusive;
        loop {
            let at = expr.next_fire(&cal.tz, &from, inclusive)?;
            if beyond_horizon(self.position, at.with_timezone(&Utc)) {
                return None;
            }
            // `at` is in the calendar's zone: its local time is what the calendar reads.
            if cal.allows_local(at.naive_local()) {
                return Some(at);
            }
            // Jump to the next allowed time instead of stepping through every match of
            // a long blackout.
            let at_utc = at.with_timezone(&Utc);
            let allowed = cal.next_allowed(at_utc, HORIZON_DAYS)?;
            if allowed > at_utc {
                (from, inclusive) = (allowed.with_timezone(&cal.tz), true);
            } else {
                (from, inclusive) = (at, false);
            }
        }
    }

    /// Moves forward through allowed time until `gap` of it has passed.
    fn walk_allowed(&mut self, gap: Duration) -> Option<DateTime<Utc>> {
        let mut remaining = chrono::Duration::from_std(gap).ok()?;
        if self.schedule.calendar.is_unrestricted() {
            return Some(whole_second(
                self.position + remaining,
                self.position,
                self.position,
            ));
        }
        let segments = self
            .schedule
            .calendar
            .segments_from(self.position)
            .take_days(HORIZON_DAYS);
        for (start, end) in segments {
            let fire = start + remaining;
            if fire < end {
                return Some(whole_second(fire, self.position, start));
            }
            remaining -= end - start;
        }
        None
    }
}

/// Whether `at` is later than `position` + [`HORIZON_DAYS`] (compared on whole seconds and
/// nanoseconds, which is cheaper than adding days to a date).
fn beyond_horizon(position: DateTime<Utc>, at: DateTime<Utc>) -> bool {
    let horizon = i64::from(HORIZON_DAYS) * 86_400;
    (
        at.timestamp() - position.timestamp(),
        at.timestamp_subsec_nanos(),
    ) > (horizon, position.timestamp_subsec_nanos())
}

/// A fire time truncated to whole seconds, like cron: the gap between two fires is then
/// the whole seconds of the drawn gap, so integral minInterval/min/max still hold. Keeps
/// the exact time when truncating would not stay after `after` and at or after `from`.
fn whole_second(fire: DateTime<Utc>, after: DateTime<Utc>, from: DateTime<Utc>) -> DateTime<Utc> {
    let whole = fire.with_nanosecond(0).unwrap_or(fire);
    if whole > after && whole >= from {
        whole
    } else {
        fire
    }
}

/// `min + Exp(mean - min)`; a memoryless process with a floor and the configured mean.
fn exponential_gap(rng: &mut ChaCha8Rng, mean: Duration, min: Duration) -> Duration {
    let excess = mean.saturating_sub(min).as_secs_f64();
    let u: f64 = rng.random(); // [0, 1)
    let draw = -excess * (1.0 - u).ln();
    // Bound pathological draws (probability ~e^-40) so arithmetic stays finite.
    min + Duration::from_secs_f64(draw.min(excess * 40.0))
}

fn uniform_gap(rng: &mut ChaCha8Rng, min: Duration, max: Duration) -> Duration {
    let (lo, hi) = (min.as_nanos() as u64, max.as_nanos() as u64);
    Duration::from_nanos(rng.random_range(lo..=hi))
}

/// A stable 64-bit hash (FNV-1a) used to derive per-policy seeds, so that adding a policy
/// does not change the fire times of the others.
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the schedule's tests share.
#[cfg(test)]
pub(crate) mod testing {
    use chrono::{DateTime, Utc};

    /// An RFC 3339 time, in UTC.
    pub fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid")
            .with_timezone(&Utc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calendar::{Blackout, Window};
    use chrono_tz::{Europe::Berlin, UTC};
    use testing::utc;

    fn local(s: &str) -> chrono::NaiveDateTime {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").expect("valid")
    }

    fn random(mean: u64, min: u64) -> Schedule {
        Schedule {
            kind: ScheduleKind::Random {
                mean: Duration::from_secs(mean),
                min: Duration::from_secs(min),
            },
            calendar: Calendar::always(UTC),
        }
    }

    fn gaps(s: &Schedule, seed: u64, n: usize) -> Vec<f64> {
        let start = utc("2026-01-01T00:00:00Z");
        let times: Vec<_> = std::iter::once(start)
            .chain(s.cursor(start, seed).take(n))
            .collect();
        times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_seconds_f64())
            .collect()
    }

    fn mean_sd(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt())
    }

    #[test]
    fn poisson_gaps_have_the_configured_mean_and_spread() {
        // Exponential: mean = sd = meanInterval. 20,000 gaps: standard error of the mean
        // is 1/sqrt(20000) ~ 0.7%; we allow 3%.
        let s = random(3600, 0);
        for seed in [1, 2, 3] {
            let g = gaps(&s, seed, 20_000);
            let (mean, sd) = mean_sd(&g);
            assert!((mean / 3600.0 - 1.0).abs() < 0.03, "mean {mean}");
            assert!((sd / 3600.0 - 1.0).abs() < 0.05, "sd {sd}");
            // memorylessness: P(gap > mean) = e^-1
            let over = g.iter().filter(|x| **x > 3600.0).count() as f64 / g.len() as f64;
            assert!(
                (over - (-1f64).exp()).abs() < 0.015,
                "P(gap > mean) = {over}"
            );
        }
    }

    #[test]
    fn poisson_floor_keeps_the_mean_and_no_gap_is_shorter() {
        let s = random(2 * 3600, 15 * 60);
        let g = gaps(&s, 7, 20_000);
        assert!(g.iter().all(|x| *x >= 900.0), "a gap below minInterval");
        let (mean, sd) = mean_sd(&g);
        assert!((mean / 7200.0 - 1.0).abs() < 0.03, "mean {mean}");
        // the excess over the floor is exponential with mean 6300 s
        assert!((sd / 6300.0 - 1.0).abs() < 0.05, "sd {sd}");
    }

    #[test]
    fn the_number_of_fires_in_a_year_is_poisson() {
        // mean 1h over 365 days: 8760 expected, sd sqrt(8760) ~ 94; 4 sd = 375.
        let s = random(3600, 0);
        let start = utc("2026-01-01T00:00:00Z");
        let end = utc("2027-01-01T00:00:00Z");
        for seed in 0..5 {
            let n = s.cursor(start, seed).take_while(|t| *t < end).count() as f64;
            assert!((n - 8760.0).abs() < 375.0, "seed {seed}: {n} fires");
        }
    }

    #[test]
    fn uniform_gaps_stay_inside_bounds_and_spread_evenly() {
        let s = Schedule {
            kind: ScheduleKind::Interval {
                min: Duration::from_secs(5 * 60),
                max: Duration::from_secs(20 * 60),
            },
            calendar: Calendar::always(UTC),
        };
        let g = gaps(&s, 42, 20_000);
        assert!(g.iter().all(|x| (300.0..=1200.0).contains(x)));
        let (mean, sd) = mean_sd(&g);
        assert!((mean - 750.0).abs() < 750.0 * 0.01, "mean {mean}");
        // uniform sd = (max - min) / sqrt(12)
        let expected_sd = 900.0 / 12f64.sqrt();
        assert!((sd / expected_sd - 1.0).abs() < 0.03, "sd {sd}");
        // each fifth of the range holds about a fifth of the gaps
        for k in 0..5 {
            let lo = 300.0 + 180.0 * f64::from(k);
            let share =
                g.iter().filter(|x| **x >= lo && **x < lo + 180.0).count() as f64 / g.len() as f64;
            assert!((share - 0.2).abs() < 0.015, "bucket {k}: {share}");
        }
    }

    #[test]
    fn same_seed_same_times_other_seed_other_times() {
        let s = random(600, 60);
        let start = utc("2026-01-01T00:00:00Z");
        let a: Vec<_> = s.cursor(start, 9).take(50).collect();
        let b: Vec<_> = s.cursor(start, 9).take(50).collect();
        let c: Vec<_> = s.cursor(start, 10).take(50).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn random_processes_run_only_inside_windows() {
        // Weekdays 10:00-16:00 Berlin, Christmas Eve off.
        let calendar = Calendar {
            tz: Berlin,
            windows: vec![Window {
                days: [true, true, true, true, true, false, false],
                start: 600,
                end: 960,
            }],
            blackouts: vec![Blackout::Yearly { month: 12, day: 24 }],
        };
        let s = Schedule {
            kind: ScheduleKind::Random {
                mean: Duration::from_secs(1800),
                min: Duration::from_secs(60),
            },
            calendar: calendar.clone(),
        };
        let start = utc("2026-12-01T00:00:00Z");
        let end = utc("2027-01-01T00:00:00Z");
        let fires: Vec<_> = s.cursor(start, 3).take_while(|t| *t < end).collect();
        assert!(fires.iter().all(|t| calendar.allows(*t)));
        assert!(
            fires
                .iter()
                .all(|t| t.with_timezone(&Berlin).format("%m-%d").to_string() != "12-24")
        );
        // 22 working days (23 weekdays minus the 24th) x 6 h = 132 h of allowed time,
        // mean 30 min: ~264 fires, sd ~16.
        let n = fires.len() as f64;
        assert!((n - 264.0).abs() < 65.0, "{n} fires");
    }

    #[test]
    fn cron_respects_windows_and_blackouts() {
        let s = Schedule {
            kind: ScheduleKind::Cron(Box::new(CronExpr::parse("0 * * * *").expect("valid"))),
            calendar: Calendar {
                tz: Berlin,
                windows: vec![Window {
                    days: [true; 7],
                    start: 22 * 60,
                    end: 2 * 60,
                }],
                blackouts: vec![Blackout::Range {
                    from: local("2026-12-24T00:00"),
                    until: local("2026-12-26T00:00"),
                }],
            },
        };
        let start = utc("2026-12-23T12:00:00Z");
        let local: Vec<String> = s
            .cursor(start, 0)
            .take(6)
            .map(|t| t.with_timezone(&Berlin).format("%d %H:%M").to_string())
            .collect();
        // 23rd 22:00, 23:00, then the blackout eats 24th 00:00-25th, resumes 26th 00:00
        assert_eq!(
            local,
            [
                "23 22:00", "23 23:00", "26 00:00", "26 01:00", "26 22:00", "26 23:00"
            ]
        );
    }

    #[test]
    fn a_schedule_that_can_never_fire_ends() {
        let s = Schedule {
            kind: ScheduleKind::Interval {
                min: Duration::from_secs(60),
                max: Duration::from_secs(60),
            },
            calendar: Calendar {
                tz: UTC,
                windows: vec![],
                blackouts: vec![Blackout::Range {
                    from: local("2020-01-01T00:00"),
                    until: local("2099-01-01T00:00"),
                }],
            },
        };
        assert_eq!(s.cursor(utc("2026-01-01T00:00:00Z"), 0).next(), None);
        let cron = Schedule {
            kind: ScheduleKind::Cron(Box::new(CronExpr::parse("* * * * *").expect("valid"))),
            calendar: s.calendar.clone(),
        };
        assert_eq!(cron.cursor(utc("2026-01-01T00:00:00Z"), 0).next(), None);
    }

    #[test]
    fn stable_hash_is_stable() {
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
