//! JUnit XML, as Jenkins, GitLab, GitHub Actions' test reporters and most CI systems read
//! it: one `<testsuite>` per policy, one `<testcase>` per experiment. `deviated` is a
//! `<failure>`, `errored` and `rollbackFailed` are an `<error>` (its `type` says which),
//! `skipped` is `<skipped>`; the message is the record's reason and the element's text
//! lists the alerts and SLO readings behind it, so that the CI page says why without
//! opening havoc. The timeline and targets go to `<system-out>`.
//!
//! The document keeps to the attributes Jenkins' JUnit schema allows on each element
//! (`tests/fixtures/junit/junit.xsd` checks the same in the e2e test): no `skipped` on
//! `<testsuites>`, for one. Times are seconds from the start to the verdict.

use std::{collections::BTreeMap, fmt::Write as _};

use super::{
    Report,
    escape::{push_xml, xml},
    model::{alert_labels, slo_value, target_text, timeline},
    time,
};
use crate::record::{ExperimentRecord, Verdict};

fn seconds(r: &ExperimentRecord) -> f64 {
    (r.ended_at - r.started_at).num_milliseconds().max(0) as f64 / 1000.0
}

/// Alerts and breached SLOs, one per line.
fn causes(r: &ExperimentRecord) -> String {
    let mut s = String::new();
    for a in &r.alerts {
        let _ = writeln!(
            s,
            "alert {} since {} ({})",
            a.name,
            time(a.starts_at),
            alert_labels(a)
        );
    }
    for x in &r.slos {
        let _ = writeln!(
            s,
            "SLO {} = {} (objective {}){} at {}",
            x.name,
            slo_value(x),
            x.objective,
            if x.breached { ", breached" } else { "" },
            time(x.at)
        );
    }
    s
}

fn output(r: &ExperimentRecord) -> String {
    let mut s = format!(
        "experiment {} of policy {}: fault {}{}\n",
        r.id,
        r.policy,
        r.fault,
        if r.dry_run { " (dry run)" } else { "" }
    );
    for t in &r.targets {
        let _ = write!(s, "target {} {}", target_text(t), t.outcome.label());
        if let Some(rv) = &t.revert {
            let _ = write!(s, ", revert {}", rv.result.label());
            if let Some(d) = &rv.detail {
                let _ = write!(s, " ({d})");
            }
        }
        s.push('\n');
    }
    for step in timeline(r) {
        let _ = writeln!(
            s,
            "{:<9} {} {}",
            step.name,
            step.at.map_or("-".to_string(), time),
            step.note
        );
    }
    s
}

pub fn render(report: &Report<'_>) -> String {
    let mut suites: BTreeMap<&str, Vec<&ExperimentRecord>> = BTreeMap::new();
    for r in report.records {
        suites.entry(r.policy.as_str()).or_default().push(r);
    }
    let count = |rs: &[&ExperimentRecord], f: &dyn Fn(Verdict) -> bool| {
        rs.iter().filter(|r| f(r.verdict)).count()
    };
    let failure = |v| v == Verdict::Deviated;
    let error = |v| matches!(v, Verdict::Errored | Verdict::RollbackFailed);
    let skipped = |v| v == Verdict::Skipped;
    let all: Vec<&ExperimentRecord> = report.records.iter().collect();
    let total_time: f64 = all.iter().map(|r| seconds(r)).sum();
    let mut s = String::with_capacity(256 + report.records.len() * 700);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"havoc\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{total_time:.3}\">",
        all.len(),
        count(&all, &failure),
        count(&all, &error),
    );
    for (policy, rs) in &suites {
        let earliest = rs.iter().map(|r| r.started_at).min();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" package=\"havoc\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\" timestamp=\"{}\">",
            xml(policy),
            rs.len(),
            count(rs, &failure),
            count(rs, &error),
            count(rs, &skipped),
            rs.iter().map(|r| seconds(r)).sum::<f64>(),
            earliest.map(time).unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "    <properties><property name=\"filters\" value=\"{}\"/><property name=\"generatedAt\" value=\"{}\"/></properties>",
            xml(&report.filters()),
            time(report.generated_at)
        );
        for r in rs {
            let _ = writeln!(
                s,
                "    <testcase name=\"{}\" classname=\"havoc.{}\" time=\"{:.3}\" timestamp=\"{}\">",
                xml(&r.id),
                xml(&r.policy),
                seconds(r),
                time(r.started_at)
            );
            let message = match &r.reason_code {
                Some(code) if !r.reason.is_empty() => format!("{} ({code})", r.reason),
                Some(code) => code.clone(),
                None => r.reason.clone(),
            };
            let element = match r.verdict {
                Verdict::Passed => None,
                Verdict::Deviated => Some("failure"),
                Verdict::Errored | Verdict::RollbackFailed => Some("error"),
                Verdict::Skipped => Some("skipped"),
            };
            if let Some(el) = element {
                let _ = write!(
                    s,
                    "      <{el} type=\"{}\" message=\"{}\">",
                    r.verdict.label(),
                    xml(&message)
                );
                push_xml(&mut s, &causes(r));
                let _ = writeln!(s, "</{el}>");
            }
            s.push_str("      <system-out>");
            push_xml(&mut s, &output(r));
            s.push_str("</system-out>\n    </testcase>\n");
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{self, HOSTILE};

    /// The value of `attr="..."` in the first line containing `open`.
    fn attr(doc: &str, open: &str, attr: &str) -> String {
        let line = doc.lines().find(|l| l.contains(open)).expect(open);
        let start = line.find(&format!(" {attr}=\"")).expect(attr) + attr.len() + 3;
        line[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn suites_per_policy_and_counts_per_verdict() {
        let (_, doc) = fixtures::rendered(render);
        assert!(doc.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "));
        assert_eq!(attr(&doc, "<testsuites", "tests"), "5");
        assert_eq!(attr(&doc, "<testsuites", "failures"), "1");
        assert_eq!(attr(&doc, "<testsuites", "errors"), "2");
        assert_eq!(doc.matches("<testsuite ").count(), 2);
        assert_eq!(doc.matches("<testcase ").count(), 5);
        // db-scale: deviated and errored; web-kill: passed, skipped, rollbackFailed.
        assert_eq!(attr(&doc, "name=\"db-scale\"", "tests"), "2");
        assert_eq!(attr(&doc, "name=\"db-scale\"", "failures"), "1");
        assert_eq!(attr(&doc, "name=\"db-scale\"", "errors"), "1");
        assert_eq!(attr(&doc, "name=\"web-kill\"", "skipped"), "1");
        assert_eq!(attr(&doc, "name=\"web-kill\"", "errors"), "1");
        assert_eq!(doc.matches("<failure ").count(), 1);
        assert_eq!(doc.matches("<error ").count(), 2);
        assert_eq!(doc.matches("<skipped ").count(), 1);
        assert!(doc.contains("<error type=\"rollbackFailed\""));
        assert!(doc.contains("message=\"reason of skipped (alertsFiring)\""));
        assert!(doc.contains("alert KubeDeploymentUnavailable since"));
        assert_eq!(attr(&doc, "name=\"exp-passed\"", "time"), "41.000");
    }

    #[test]
    fn user_text_cannot_break_the_document() {
        let (_, doc) = fixtures::rendered(render);
        assert!(!doc.contains("<script>"));
        assert!(!doc.contains(HOSTILE));
        assert!(!doc.contains('\u{1}'));
        // Every element opened is closed: a rough well-formedness check (xmllint
        // against the schema runs in the e2e test).
        for el in [
            "testsuites",
            "testsuite",
            "testcase",
            "system-out",
            "properties",
        ] {
            assert_eq!(
                doc.matches(&format!("<{el}>")).count() + doc.matches(&format!("<{el} ")).count(),
                doc.matches(&format!("</{el}>")).count(),
                "{el}"
            );
        }
    }
}
