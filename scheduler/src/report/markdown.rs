//! Markdown (GitHub-flavoured): headings and tables that fit a pull-request comment or a
//! wiki page. Every cell is escaped ([`escape::markdown`]): a policy name or a reason can
//! neither end its cell nor add markup. A verdict is written with a sign in front
//! (`✅ passed`, `❌ deviated`) so that a table reads at a glance without colour.

use std::fmt::Write as _;

use super::{
    Report,
    escape::markdown as md,
    model::{VERDICTS, alert_labels, duration_text, held, slo_value, target_text},
    time,
};
use crate::record::Verdict;

fn sign(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "✅",
        Verdict::Deviated => "❌",
        Verdict::Skipped => "⏭️",
        Verdict::Errored => "⚠️",
        Verdict::RollbackFailed => "🔥",
    }
}

fn verdict(v: Verdict) -> String {
    format!("{} {}", sign(v), v.label())
}

pub fn render(report: &Report<'_>) -> String {
    let o = &report.overview;
    let mut s = String::with_capacity(512 + report.records.len() * 200);
    let _ = writeln!(s, "# havoc report\n");
    let _ = write!(
        s,
        "Generated {}; {}: **{} experiment(s)**",
        time(report.generated_at),
        md(&report.filters()),
        o.counts.total()
    );
    if let Some((a, b)) = o.span {
        let _ = write!(s, " started from {} to {}", time(a), time(b));
    }
    s.push_str(".\n\n");

    s.push_str("## Summary\n\n| policy | namespace |");
    for v in VERDICTS {
        let _ = write!(s, " {} |", v.label());
    }
    s.push_str(" total |\n|---|---|");
    for _ in 0..=VERDICTS.len() {
        s.push_str("---:|");
    }
    s.push('\n');
    for row in &o.rows {
        let _ = write!(
            s,
            "| {} | {} |",
            md(&row.policy),
            row.namespace.as_deref().map_or("-".to_string(), md)
        );
        for v in VERDICTS {
            let _ = write!(s, " {} |", row.counts.get(v));
        }
        let _ = writeln!(s, " {} |", row.counts.total());
    }
    s.push_str("| **all** | |");
    for v in VERDICTS {
        let _ = write!(s, " **{}** |", o.counts.get(v));
    }
    let _ = writeln!(s, " **{}** |\n", o.counts.total());
    let f = &o.faults;
    let _ = writeln!(
        s,
        "**Faults**: {} target(s) injected in {} live experiment(s), {} only logged in dry runs; {} revert(s) succeeded, {} failed.\n",
        f.injected, f.experiments, f.dry_run, f.reverted, f.revert_failed
    );

    if !o.deviations.is_empty() {
        s.push_str("### Deviations\n\n| experiment | policy | started | reason | alerts and SLOs |\n|---|---|---|---|---|\n");
        for &i in &o.deviations {
            let r = &report.records[i];
            let mut causes: Vec<String> = r
                .alerts
                .iter()
                .map(|a| format!("{} ({})", a.name, alert_labels(a)))
                .collect();
            causes.extend(r.slos.iter().filter(|x| x.breached).map(|x| {
                format!(
                    "SLO {} = {} (objective {})",
                    x.name,
                    slo_value(x),
                    x.objective
                )
            }));
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {} |",
                r.id.replace('`', "'"),
                md(&r.policy),
                time(r.started_at),
                md(&r.reason),
                md(&causes.join("; "))
            );
        }
        s.push('\n');
    }
    if !o.failed_reverts.is_empty() {
        s.push_str(
            "### Failed reverts\n\n| experiment | policy | object | detail |\n|---|---|---|---|\n",
        );
        for fr in &o.failed_reverts {
            let r = &report.records[fr.record];
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} |",
                r.id.replace('`', "'"),
                md(&r.policy),
                md(&fr.object),
                md(&fr.detail)
            );
        }
        s.push('\n');
    }
    if !o.skips.is_empty() {
        s.push_str("### Skips by reason\n\n| reason | experiments |\n|---|---:|\n");
        for (code, n) in &o.skips {
            let _ = writeln!(s, "| {} | {n} |", md(code));
        }
        s.push('\n');
    }
    if !o.policies.is_empty() {
        s.push_str("### Policies\n\n| policy | experiments | last verdict | last passed | days since it passed |\n|---|---:|---|---|---:|\n");
        for p in &o.policies {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                md(&p.policy),
                p.experiments,
                verdict(p.last_verdict),
                p.last_passed.map_or("never".to_string(), time),
                p.days_since_pass.map_or("-".to_string(), |d| d.to_string())
            );
        }
        s.push('\n');
    }
    let used: Vec<_> = o
        .buckets
        .buckets
        .iter()
        .filter(|(_, c)| c.total() > 0)
        .collect();
    if !used.is_empty() {
        let _ = write!(
            s,
            "### Verdicts over time (per {})\n\n| from |",
            o.buckets.unit
        );
        for v in VERDICTS {
            let _ = write!(s, " {} |", v.label());
        }
        s.push_str("\n|---|");
        for _ in VERDICTS {
            s.push_str("---:|");
        }
        s.push('\n');
        for (t, c) in used {
            let _ = write!(s, "| {} |", time(*t));
            for v in VERDICTS {
                let _ = write!(s, " {} |", c.get(v));
            }
            s.push('\n');
        }
        s.push('\n');
    }

    s.push_str("## Experiments\n\n");
    if report.records.is_empty() {
        s.push_str("No experiment matches.\n");
        return s;
    }
    s.push_str("| started | experiment | policy | verdict | fault | targets | held | settled | reason |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in report.records {
        let targets: Vec<String> = r
            .targets
            .iter()
            .map(|t| {
                let revert = t
                    .revert
                    .as_ref()
                    .map(|rv| format!(", revert {}", rv.result.label()))
                    .unwrap_or_default();
                format!("{} ({}{revert})", target_text(t), t.outcome.label())
            })
            .collect();
        let held = held(r).map_or("-".to_string(), duration_text);
        let settled = r
            .reverted_at
            .filter(|_| r.injected_at.is_some())
            .map_or("-".to_string(), |t| duration_text(r.ended_at - t));
        let fault = if r.dry_run {
            format!("{} (dry run)", r.fault)
        } else {
            r.fault.clone()
        };
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} |",
            time(r.started_at),
            r.id.replace('`', "'"),
            md(&r.policy),
            verdict(r.verdict),
            md(&fault),
            if targets.is_empty() {
                "-".to_string()
            } else {
                md(&targets.join("; "))
            },
            held,
            settled,
            md(&r.reason)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::{
        history::Query,
        report::fixtures::{self, HOSTILE},
    };

    #[test]
    fn tables_have_one_cell_per_column_whatever_the_text() {
        let (records, text) = fixtures::rendered(render);
        let mut tables = 0;
        let mut columns = None;
        for line in text.lines() {
            if !line.starts_with('|') {
                columns = None;
                continue;
            }
            // An escaped pipe is not a cell border.
            let cells = line.replace("\\|", "").matches('|').count();
            match columns {
                None => {
                    tables += 1;
                    columns = Some(cells);
                }
                Some(n) => assert_eq!(cells, n, "{line}"),
            }
            assert!(line.ends_with('|'), "{line}");
        }
        assert!(tables >= 6, "{tables} tables in\n{text}");
        // Every experiment and verdict is named; the hostile text shows no markup.
        for r in &records {
            assert!(text.contains(&r.id), "{}", r.id);
            assert!(text.contains(r.verdict.label()));
        }
        assert!(!text.contains("<script>"));
        assert!(!text.replace("\\]", "").contains("]("), "an unescaped link");
        assert!(!text.contains(HOSTILE));
        assert!(text.contains("KubeDeploymentUnavailable"));
        assert!(text.contains("| alertsFiring | 1 |"), "{text}");
    }

    #[test]
    fn an_empty_report_says_so() {
        let q = Query::default();
        let text = render(&Report::new(&[], &q, Utc::now()));
        assert!(text.contains("No experiment matches."), "{text}");
        assert!(text.contains("**0 experiment(s)**"), "{text}");
    }
}
