//! `havoc plan`: every fire time of a set of schedules in a time range.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{Schedule, stable_hash};

/// One planned fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire<'a> {
    pub policy: &'a str,
    pub at: DateTime<Tz>,
}

/// Fires of every schedule in `[from, until)`, sorted by time (then policy name).
///
/// Each policy's random stream is seeded with `seed` mixed with a hash of its name, so a
/// plan is reproducible and adding a policy leaves the others' times unchanged.
pub fn plan<'a>(
    schedules: impl IntoIterator<Item = (&'a str, &'a Schedule)>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    seed: u64,
) -> Vec<Fire<'a>> {
    let mut fires = Vec::new();
    for (name, schedule) in schedules {
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

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid")
            .with_timezone(&Utc)
    }

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
