//! One self-contained HTML page: inline CSS, an inline SVG chart, no script, no image, no
//! font, no link to anywhere but its own anchors. A Content-Security-Policy meta tag
//! (`default-src 'none'`) tells the browser to fetch nothing, so the page stays private
//! wherever it is opened. Printed, each experiment stays on one page where it fits and
//! the colours are kept.

use std::fmt::Write as _;

use super::{
    Report,
    escape::{push_xml, xml},
    model::{Buckets, VERDICTS, alert_labels, duration_text, slo_value, target_text, timeline},
    time,
};
use crate::record::{ExperimentRecord, Verdict};

/// The colour of a verdict (also the CSS class `v-<label>`).
pub fn colour(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "#2e7d32",
        Verdict::Deviated => "#c62828",
        Verdict::Skipped => "#757575",
        Verdict::Errored => "#ef6c00",
        Verdict::RollbackFailed => "#6a1b9a",
    }
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1c1c1c;max-width:1100px;margin:24px auto;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.meta{color:#555}table{border-collapse:collapse;margin:6px 0 12px;width:100%}th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}code{font:12px ui-monospace,Menlo,Consolas,monospace}
.badge{display:inline-block;color:#fff;border-radius:3px;padding:0 6px;font-size:12px;font-weight:600}
.tiles{display:flex;gap:10px;flex-wrap:wrap;margin:8px 0}.tile{border:1px solid #ddd;border-radius:4px;padding:6px 12px;min-width:110px}
.tile b{display:block;font-size:22px}section.exp{border:1px solid #ddd;border-left-width:6px;border-radius:4px;padding:6px 12px;margin:10px 0;break-inside:avoid}
section.exp h3{margin:2px 0 6px}.legend span{margin-right:14px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
@media print{body{margin:0;max-width:none}*{-webkit-print-color-adjust:exact;print-color-adjust:exact}h2{break-after:avoid}}
";

fn badge(s: &mut String, v: Verdict) {
    let _ = write!(
        s,
        "<span class=\"badge\" style=\"background:{}\">{}</span>",
        colour(v),
        v.label()
    );
}

/// An id usable as an anchor: the experiment id, escaped.
fn anchor(r: &ExperimentRecord) -> String {
    format!("exp-{}", xml(&r.id))
}

/// The verdicts-over-time chart: stacked bars, one per bucket.
pub fn chart(s: &mut String, b: &Buckets) {
    const W: f64 = 1000.0;
    const H: f64 = 180.0;
    const LEFT: f64 = 36.0;
    const BOTTOM: f64 = 22.0;
    let max = b.max().max(1);
    let n = b.buckets.len().max(1) as f64;
    let slot = (W - LEFT) / n;
    let bar = (slot * 0.8).max(1.0);
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"verdicts over time\" viewBox=\"0 0 {W} {H}\" width=\"100%\" style=\"max-width:{W}px\">"
    );
    let plot = H - BOTTOM - 6.0;
    let _ = write!(
        s,
        "<line x1=\"{LEFT}\" y1=\"{0}\" x2=\"{W}\" y2=\"{0}\" stroke=\"#999\"/><text x=\"{1}\" y=\"12\" font-size=\"11\" text-anchor=\"end\">{max}</text><text x=\"{1}\" y=\"{0}\" font-size=\"11\" text-anchor=\"end\">0</text>",
        H - BOTTOM,
        LEFT - 4.0
    );
    let label_every = (b.buckets.len() / 8).max(1);
    for (i, (t, c)) in b.buckets.iter().enumerate() {
        let x = LEFT + i as f64 * slot + (slot - bar) / 2.0;
        let mut y = H - BOTTOM;
        for v in VERDICTS {
            let k = c.get(v);
            if k == 0 {
                continue;
            }
            let h = plot * k as f64 / max as f64;
            y -= h;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{} {}: {k}</title></rect>",
                colour(v),
                time(*t),
                v.label()
            );
        }
        if i % label_every == 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{}</text>",
                x,
                H - 6.0,
                t.format(if b.width.num_hours() < 24 {
                    "%m-%d %H:%M"
                } else {
                    "%Y-%m-%d"
                })
            );
        }
    }
    s.push_str("</svg><div class=\"legend\">");
    for v in VERDICTS {
        let _ = write!(
            s,
            "<span><i style=\"background:{}\"></i>{}</span>",
            colour(v),
            v.label()
        );
    }
    let _ = write!(s, " (one bar per {})</div>", b.unit);
}

fn experiment(s: &mut String, r: &ExperimentRecord) {
    let _ = write!(
        s,
        "<section class=\"exp\" id=\"{}\" style=\"border-left-color:{}\"><h3>",
        anchor(r),
        colour(r.verdict)
    );
    badge(s, r.verdict);
    s.push(' ');
    push_xml(s, &r.policy);
    s.push_str(" <code>");
    push_xml(s, &r.id);
    s.push_str("</code></h3><p>");
    push_xml(s, &r.reason);
    if let Some(code) = &r.reason_code {
        s.push_str(" <code>");
        push_xml(s, code);
        s.push_str("</code>");
    }
    let _ = write!(
        s,
        "</p><p>Fault <code>{}</code>{}</p>",
        xml(&r.fault),
        if r.dry_run {
            " (dry run: only logged)"
        } else {
            ""
        }
    );
    s.push_str("<table><tr><th>step</th><th>at</th><th></th></tr>");
    for step in timeline(r) {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>",
            step.name,
            step.at.map_or("-".to_string(), time)
        );
        push_xml(s, &step.note);
        s.push_str("</td></tr>");
    }
    s.push_str("</table>");
    if !r.targets.is_empty() {
        s.push_str("<table><tr><th>target</th><th>outcome</th><th>revert</th></tr>");
        for t in &r.targets {
            s.push_str("<tr><td>");
            push_xml(s, &target_text(t));
            s.push_str("</td><td>");
            s.push_str(t.outcome.label());
            if let Some(d) = &t.detail {
                s.push_str(": ");
                push_xml(s, d);
            }
            s.push_str("</td><td>");
            match &t.revert {
                Some(rv) => {
                    let _ = write!(s, "{} at {}", rv.result.label(), time(rv.at));
                    if let Some(d) = &rv.detail {
                        s.push_str(": ");
                        push_xml(s, d);
                    }
                }
                None => s.push('-'),
            }
            s.push_str("</td></tr>");
        }
        s.push_str("</table>");
    }
    if !r.alerts.is_empty() {
        s.push_str("<table><tr><th>alert</th><th>since</th><th>labels</th></tr>");
        for a in &r.alerts {
            s.push_str("<tr><td>");
            push_xml(s, &a.name);
            let _ = write!(s, "</td><td>{}</td><td>", time(a.starts_at));
            for (k, v) in a.labels.iter().filter(|(k, _)| *k != "alertname") {
                s.push_str("<code>");
                push_xml(s, k);
                s.push('=');
                push_xml(s, v);
                s.push_str("</code> ");
            }
            s.push_str("</td></tr>");
        }
        s.push_str("</table>");
    }
    if !r.slos.is_empty() {
        s.push_str("<table><tr><th>SLO</th><th>value</th><th>objective</th><th>at</th></tr>");
        for x in &r.slos {
            s.push_str("<tr><td>");
            push_xml(s, &x.name);
            let _ = write!(
                s,
                "</td><td class=\"n\">{}</td><td>{}{}</td><td>{}</td></tr>",
                slo_value(x),
                xml(&x.objective),
                if x.breached { " <b>breached</b>" } else { "" },
                time(x.at)
            );
        }
        s.push_str("</table>");
    }
    if !r.budgets.is_empty() {
        s.push_str(
            "<table><tr><th>error budget</th><th>remaining</th><th>burn rate before</th>\
             <th>while held</th><th>after</th></tr>",
        );
        let n = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.3}"));
        for b in &r.budgets {
            s.push_str("<tr><td>");
            push_xml(s, &b.name);
            s.push_str(" (");
            push_xml(s, &b.source);
            let _ = write!(
                s,
                ")</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                n(b.remaining),
                n(b.burn_rate_before),
                n(b.burn_rate_during),
                n(b.burn_rate_after)
            );
        }
        s.push_str("</table>");
    }
    s.push_str("</section>\n");
}

pub fn render(report: &Report<'_>) -> String {
    let o = &report.overview;
    let mut s = String::with_capacity(8192 + report.records.len() * 2048);
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    s.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(
        s,
        "<title>havoc report {}</title><style>{STYLE}</style></head><body>",
        time(report.generated_at)
    );
    let _ = write!(
        s,
        "<h1>havoc report</h1><p class=\"meta\">Generated {}; {}: {} experiment(s)",
        time(report.generated_at),
        xml(&report.filters()),
        o.counts.total()
    );
    if let Some((a, b)) = o.span {
        let _ = write!(s, " started from {} to {}", time(a), time(b));
    }
    s.push_str(".</p>\n<h2>Summary</h2><div class=\"tiles\">");
    for v in VERDICTS {
        let _ = write!(
            s,
            "<div class=\"tile\" style=\"border-top:4px solid {}\"><b>{}</b>{}</div>",
            colour(v),
            o.counts.get(v),
            v.label()
        );
    }
    let f = &o.faults;
    let _ = write!(
        s,
        "</div><p><b>Faults</b>: {} target(s) injected in {} live experiment(s), {} only logged in dry runs; {} revert(s) succeeded, {} failed.</p>",
        f.injected, f.experiments, f.dry_run, f.reverted, f.revert_failed
    );
    s.push_str("<h3>By policy and namespace</h3><table><tr><th>policy</th><th>namespace</th>");
    for v in VERDICTS {
        let _ = write!(s, "<th>{}</th>", v.label());
    }
    s.push_str("<th>total</th></tr>");
    for row in &o.rows {
        s.push_str("<tr><td>");
        push_xml(&mut s, &row.policy);
        s.push_str("</td><td>");
        push_xml(&mut s, row.namespace.as_deref().unwrap_or("-"));
        s.push_str("</td>");
        for v in VERDICTS {
            let _ = write!(s, "<td class=\"n\">{}</td>", row.counts.get(v));
        }
        let _ = write!(s, "<td class=\"n\">{}</td></tr>", row.counts.total());
    }
    s.push_str("</table>");
    if !o.deviations.is_empty() {
        s.push_str("<h3>Deviations</h3><table><tr><th>experiment</th><th>policy</th><th>started</th><th>reason</th><th>alerts and SLOs</th></tr>");
        for &i in &o.deviations {
            let r = &report.records[i];
            let _ = write!(
                s,
                "<tr><td><a href=\"#{}\"><code>{}</code></a></td><td>",
                anchor(r),
                xml(&r.id)
            );
            push_xml(&mut s, &r.policy);
            let _ = write!(s, "</td><td>{}</td><td>", time(r.started_at));
            push_xml(&mut s, &r.reason);
            s.push_str("</td><td>");
            for a in &r.alerts {
                push_xml(&mut s, &a.name);
                s.push_str(" (");
                push_xml(&mut s, &alert_labels(a));
                s.push_str(")<br>");
            }
            for x in r.slos.iter().filter(|x| x.breached) {
                s.push_str("SLO ");
                push_xml(&mut s, &x.name);
                let _ = write!(
                    s,
                    " = {} (objective {})<br>",
                    slo_value(x),
                    xml(&x.objective)
                );
            }
            s.push_str("</td></tr>");
        }
        s.push_str("</table>");
    }
    if !o.failed_reverts.is_empty() {
        s.push_str("<h3>Failed reverts</h3><table><tr><th>experiment</th><th>policy</th><th>object</th><th>detail</th></tr>");
        for fr in &o.failed_reverts {
            let r = &report.records[fr.record];
            let _ = write!(
                s,
                "<tr><td><a href=\"#{}\"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                anchor(r),
                xml(&r.id),
                xml(&r.policy),
                xml(&fr.object),
                xml(&fr.detail)
            );
        }
        s.push_str("</table>");
    }
    if !o.skips.is_empty() {
        s.push_str("<h3>Skips by reason</h3><table><tr><th>reason</th><th>experiments</th></tr>");
        for (code, n) in &o.skips {
            let _ = write!(
                s,
                "<tr><td><code>{}</code></td><td class=\"n\">{n}</td></tr>",
                xml(code)
            );
        }
        s.push_str("</table>");
    }
    if !o.policies.is_empty() {
        s.push_str("<h3>Policies</h3><table><tr><th>policy</th><th>experiments</th><th>last verdict</th><th>last passed</th><th>days since it passed</th></tr>");
        for p in &o.policies {
            s.push_str("<tr><td>");
            push_xml(&mut s, &p.policy);
            let _ = write!(s, "</td><td class=\"n\">{}</td><td>", p.experiments);
            badge(&mut s, p.last_verdict);
            let _ = write!(
                s,
                "</td><td>{}</td><td class=\"n\">{}</td></tr>",
                p.last_passed.map_or("never".to_string(), time),
                p.days_since_pass.map_or("-".to_string(), |d| d.to_string())
            );
        }
        s.push_str("</table>");
    }
    if !o.buckets.buckets.is_empty() {
        s.push_str("<h2>Verdicts over time</h2>");
        chart(&mut s, &o.buckets);
    }
    let _ = writeln!(s, "<h2>Experiments ({})</h2>", report.records.len());
    if report.records.is_empty() {
        s.push_str("<p>No experiment matches.</p>");
    }
    for r in report.records {
        experiment(&mut s, r);
    }
    if let Some(held) = o.longest_held {
        let _ = write!(
            s,
            "<p class=\"meta\">Longest fault held: {}.</p>",
            duration_text(held)
        );
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::report::fixtures::{self, HOSTILE};

    #[test]
    fn the_page_requests_nothing_and_escapes_user_text() {
        let (records, page) = fixtures::rendered(render);
        for banned in [
            "src=",
            "href=\"http",
            "href='http",
            "url(",
            "@import",
            "<script",
            "<link",
            "<img",
            "<iframe",
        ] {
            assert!(!page.contains(banned), "{banned} in the page");
        }
        assert!(page.contains("default-src 'none'"));
        assert!(!page.contains(HOSTILE));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        for r in &records {
            assert!(page.contains(&format!("id=\"exp-{}\"", r.id)), "{}", r.id);
            assert!(page.contains(r.verdict.label()));
        }
        assert!(page.contains("<svg"));
        assert_eq!(page.matches("<section class=\"exp\"").count(), 5);
        assert!(page.contains("Deployment go-demo-8/go-demo-8-db"));
        // The deviated experiment's error budget, with its burn rates.
        assert!(page.contains("(sloth checkout/availability)</td><td class=\"n\">0.800</td><td class=\"n\">1.000</td><td class=\"n\">14.500</td><td class=\"n\">3.000</td>"), "budgets");
    }

    #[test]
    fn the_chart_has_a_bar_part_per_verdict_present() {
        let records = fixtures::records();
        let o = crate::report::Overview::of(&records, Utc::now());
        let mut s = String::new();
        chart(&mut s, &o.buckets);
        // Five records in five hourly buckets, one verdict each.
        assert_eq!(s.matches("<rect").count(), 5);
        assert!(s.contains("fill=\"#c62828\""));
    }
}
