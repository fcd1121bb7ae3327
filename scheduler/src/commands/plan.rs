//! `havoc plan PATH --from T --until T [--format text|json] [--seed N]`: every clock fire
//! in a range, sorted by time, in each policy's local time.

use std::{
    io::{self, Write},
    process::ExitCode,
};

use anyhow::{Context as _, anyhow, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::{EXIT_INVALID, context_from};
use crate::{
    cli::{Format, PlanArgs},
    policy::{self, Expect, duration::HumanDuration},
    schedule::plan::plan as plan_fires,
};

/// Parses `--from`/`--until` values.
fn parse_time(
    s: &str,
    now: DateTime<Utc>,
    base: Option<DateTime<Utc>>,
) -> anyhow::Result<DateTime<Utc>> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(rel) = s.strip_prefix('+') {
        let base =
            base.ok_or_else(|| anyhow!("a relative time (+{rel}) is only allowed for --until"))?;
        let d: HumanDuration = rel.parse()?;
        return Ok(base + chrono::Duration::from_std(d.0)?);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).context("midnight")?.and_utc());
    }
    bail!(
        "invalid time {s:?}: expected RFC 3339 (2026-03-30T09:00:00+02:00), YYYY-MM-DD[THH:MM[:SS]] (UTC), `now`, or +DURATION for --until"
    )
}

pub fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let (paths, from, until, format, seed, config) = (
        &args.paths,
        &args.from,
        &args.until,
        args.format,
        args.seed,
        args.config.as_deref(),
    );
    let now = Utc::now();
    let from = parse_time(from, now, None).context("--from")?;
    let until = parse_time(until, now, Some(from)).context("--until")?;
    if until <= from {
        bail!("--until must be later than --from");
    }
    let Ok(ctx) = context_from(config)? else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let report = policy::load_paths(paths, &ctx, Expect::Policies);
    for d in report.diagnostics() {
        eprintln!("{d}");
    }
    // A destructive opt-in (scale's allowVolumeDeletion) is said next to the plan too.
    for w in report.warnings() {
        eprintln!("{}", w.warning_line());
    }
    let seed = seed.unwrap_or_else(rand::random);
    let policies: Vec<_> = report.policies().collect();
    let scheduled = policies
        .iter()
        .filter_map(|p| p.schedule.as_ref().map(|s| (p.name.as_str(), s)));
    let fires = plan_fires(scheduled, from, until, seed);
    let mut out = io::BufWriter::new(io::stdout().lock());
    match format {
        Format::Json => {
            #[derive(serde::Serialize)]
            struct Line<'a> {
                policy: &'a str,
                at: String,
            }
            for f in &fires {
                let line = Line {
                    policy: f.policy,
                    at: f.at.to_rfc3339(),
                };
                writeln!(out, "{}", serde_json::to_string(&line)?)?;
            }
        }
        Format::Text => {
            let mut previous: std::collections::HashMap<&str, DateTime<Utc>> = Default::default();
            let width = fires.iter().map(|f| f.policy.len()).max().unwrap_or(0);
            for f in &fires {
                let at = f.at.with_timezone(&Utc);
                let gap = match previous.insert(f.policy, at) {
                    Some(prev) => format!(
                        "+{}",
                        HumanDuration((at - prev).to_std().unwrap_or_default())
                    ),
                    None => "first".to_string(),
                };
                writeln!(
                    out,
                    "{}  {:width$}  {}",
                    f.at.format("%a %Y-%m-%d %H:%M:%S %:z"),
                    f.policy,
                    gap
                )?;
            }
        }
    }
    out.flush()?;
    drop(out);
    let trigger_only: Vec<&str> = policies
        .iter()
        .filter(|p| p.schedule.is_none())
        .map(|p| p.name.as_str())
        .collect();
    if format == Format::Text {
        eprintln!(
            "{} fires of {} scheduled policies from {} until {} (seed {seed})",
            fires.len(),
            policies.len() - trigger_only.len(),
            from.to_rfc3339(),
            until.to_rfc3339()
        );
        if !trigger_only.is_empty() {
            eprintln!(
                "not planned (event triggers only): {}",
                trigger_only.join(", ")
            );
        }
    }
    Ok(if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arguments() {
        let now = Utc::now();
        let t = |s: &str| parse_time(s, now, None).expect("valid").to_rfc3339();
        assert_eq!(t("2026-03-30T09:00:00+02:00"), "2026-03-30T07:00:00+00:00");
        assert_eq!(t("2026-03-30"), "2026-03-30T00:00:00+00:00");
        assert_eq!(t("2026-03-30T09:15"), "2026-03-30T09:15:00+00:00");
        assert_eq!(parse_time("now", now, None).expect("valid"), now);
        let base = parse_time("2026-01-01", now, None).expect("valid");
        assert_eq!(
            parse_time("+7d", now, Some(base))
                .expect("valid")
                .to_rfc3339(),
            "2026-01-08T00:00:00+00:00"
        );
        assert!(parse_time("+7d", now, None).is_err());
        assert!(parse_time("yesterday", now, None).is_err());
    }
}
