//! PDF, written with `pdf-writer` (the low-level writer of the typst project): no browser,
//! no external program, a few hundred lines of layout. It uses the PDF standard fonts
//! (Courier for text and tables, so columns line up and lines wrap by counting
//! characters; Helvetica-Bold for headings) with WinAnsi encoding, so no font is embedded
//! and the binary grows by the writer alone. The price: characters outside Latin-1 print
//! as `?` ([`escape::win_ansi`]); the HTML report shows them as written.
//!
//! A4 pages, each with a footer `havoc report - page N of M`; the verdicts-over-time
//! chart is drawn as stacked bars.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::{
    Report,
    escape::win_ansi,
    model::{Buckets, VERDICTS, alert_labels, duration_text, slo_value, target_text, timeline},
    time,
};
use crate::record::{ExperimentRecord, Verdict};

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 42.0;
const BODY: f32 = 8.5;
const LEADING: f32 = 11.0;
/// Courier's advance width is 600/1000 of the size.
const CHARS_PER_LINE: usize = ((PAGE_W - 2.0 * MARGIN) / (BODY * 0.6)) as usize;

const MONO: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

fn rgb(v: Verdict) -> (f32, f32, f32) {
    match v {
        Verdict::Passed => (0.18, 0.49, 0.20),
        Verdict::Deviated => (0.78, 0.16, 0.16),
        Verdict::Skipped => (0.46, 0.46, 0.46),
        Verdict::Errored => (0.94, 0.42, 0.0),
        Verdict::RollbackFailed => (0.42, 0.11, 0.60),
    }
}

/// Pages of content, laid out top to bottom.
struct Layout {
    pages: Vec<Content>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Layout {
            pages: vec![Content::new()],
            y: PAGE_H - MARGIN,
        }
    }

    fn page(&mut self) -> &mut Content {
        if self.pages.is_empty() {
            self.pages.push(Content::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Starts a new page unless `height` still fits on this one.
    fn room(&mut self, height: f32) {
        if self.y - height < MARGIN + 14.0 {
            self.pages.push(Content::new());
            self.y = PAGE_H - MARGIN;
        }
    }

    fn text_at(&mut self, font: Name<'_>, size: f32, colour: (f32, f32, f32), x: f32, text: &str) {
        let y = self.y;
        let c = self.page();
        c.begin_text();
        c.set_fill_rgb(colour.0, colour.1, colour.2);
        c.set_font(font, size);
        c.next_line(x, y);
        c.show(Str(&win_ansi(text)));
        c.end_text();
    }

    fn heading(&mut self, size: f32, text: &str) {
        self.room(size * 2.2);
        self.y -= size * 0.6;
        self.y -= size;
        self.text_at(BOLD, size, (0.0, 0.0, 0.0), MARGIN, text);
        self.y -= size * 0.5;
    }

    /// Monospaced text, wrapped at the page's width; continuation lines indented by
    /// `indent` characters.
    fn text(&mut self, indent: usize, text: &str) {
        self.coloured(indent, (0.1, 0.1, 0.1), text);
    }

    fn coloured(&mut self, indent: usize, colour: (f32, f32, f32), text: &str) {
        let chars: Vec<char> = text.chars().collect();
        let mut first = true;
        let mut rest: &[char] = &chars;
        loop {
            let pad = if first { 0 } else { indent };
            let width = CHARS_PER_LINE.saturating_sub(pad).max(10);
            let take = if rest.len() <= width {
                rest.len()
            } else {
                // Break at the last space that fits, else hard.
                rest[..width]
                    .iter()
                    .rposition(|c| *c == ' ')
                    .filter(|&i| i > width / 3)
                    .map_or(width, |i| i + 1)
            };
            let line: String = std::iter::repeat_n(' ', pad)
                .chain(rest[..take].iter().copied())
                .collect();
            self.room(LEADING);
            self.y -= LEADING;
            self.text_at(MONO, BODY, colour, MARGIN, line.trim_end());
            rest = &rest[take..];
            first = false;
            if rest.is_empty() {
                break;
            }
        }
    }

    fn gap(&mut self, points: f32) {
        self.y -= points;
    }

    /// Stacked bars of the verdicts over time, 120 points high.
    fn chart(&mut self, b: &Buckets) {
        let height = 120.0;
        self.room(height + 40.0);
        let top = self.y - 6.0;
        let bottom = top - height;
        let max = b.max().max(1) as f32;
        let width = PAGE_W - 2.0 * MARGIN - 20.0;
        let slot = width / b.buckets.len().max(1) as f32;
        let bar = (slot * 0.8).max(0.5);
        let left = MARGIN + 20.0;
        {
            let c = self.page();
            c.set_stroke_rgb(0.6, 0.6, 0.6);
            c.set_line_width(0.5);
            c.move_to(left, bottom);
            c.line_to(left + width, bottom);
            c.stroke();
            for (i, (_, counts)) in b.buckets.iter().enumerate() {
                let x = left + i as f32 * slot + (slot - bar) / 2.0;
                let mut y = bottom;
                for v in VERDICTS {
                    let k = counts.get(v) as f32;
                    if k == 0.0 {
                        continue;
                    }
                    let h = height * k / max;
                    let (r, g, bl) = rgb(v);
                    c.set_fill_rgb(r, g, bl);
                    c.rect(x, y, bar, h);
                    c.fill_nonzero();
                    y += h;
                }
            }
        }
        self.y = top;
        self.text_at(
            MONO,
            7.0,
            (0.3, 0.3, 0.3),
            MARGIN,
            &format!("{}", max as usize),
        );
        self.y = bottom;
        self.text_at(MONO, 7.0, (0.3, 0.3, 0.3), MARGIN, "0");
        self.y = bottom - 10.0;
        if let (Some((first, _)), Some((last, _))) = (b.buckets.first(), b.buckets.last()) {
            self.text_at(MONO, 7.0, (0.3, 0.3, 0.3), left, &time(*first));
            self.text_at(
                MONO,
                7.0,
                (0.3, 0.3, 0.3),
                left + width - 20.0 * 7.0 * 0.6,
                &time(*last),
            );
        }
        self.y -= 12.0;
        let mut x = left;
        for v in VERDICTS {
            {
                let (r, g, bl) = rgb(v);
                let y = self.y;
                let c = self.page();
                c.set_fill_rgb(r, g, bl);
                c.rect(x, y - 1.0, 7.0, 7.0);
                c.fill_nonzero();
            }
            self.text_at(MONO, 7.5, (0.1, 0.1, 0.1), x + 10.0, v.label());
            x += 10.0 + (v.label().len() as f32 + 3.0) * 7.5 * 0.6;
        }
        self.text_at(
            MONO,
            7.5,
            (0.1, 0.1, 0.1),
            x,
            &format!("(one bar per {})", b.unit),
        );
        self.y -= 8.0;
    }
}

/// `text` cut or padded to `width` characters.
fn col(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n > width {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        s.push('~');
        s
    } else {
        format!("{text}{}", " ".repeat(width - n))
    }
}

fn experiment(l: &mut Layout, r: &ExperimentRecord) {
    l.room(LEADING * 6.0);
    l.gap(6.0);
    l.coloured(
        4,
        rgb(r.verdict),
        &format!("[{}] {}  {}", r.verdict.label(), r.policy, r.id),
    );
    let reason = match &r.reason_code {
        Some(code) => format!("{} ({code})", r.reason),
        None => r.reason.clone(),
    };
    l.text(4, &format!("  {reason}"));
    l.text(
        4,
        &format!(
            "  fault {}{}",
            r.fault,
            if r.dry_run {
                " (dry run: only logged)"
            } else {
                ""
            }
        ),
    );
    for step in timeline(r) {
        l.text(
            32,
            &format!(
                "  {} {} {}",
                col(step.name, 9),
                col(&step.at.map_or("-".to_string(), time), 20),
                step.note
            ),
        );
    }
    for t in &r.targets {
        let mut line = format!("  target {} {}", target_text(t), t.outcome.label());
        if let Some(rv) = &t.revert {
            line.push_str(&format!(", revert {}", rv.result.label()));
            if let Some(d) = &rv.detail {
                line.push_str(&format!(" ({d})"));
            }
        }
        l.text(4, &line);
    }
    for a in &r.alerts {
        l.text(
            4,
            &format!(
                "  alert {} since {} ({})",
                a.name,
                time(a.starts_at),
                alert_labels(a)
            ),
        );
    }
    for x in &r.slos {
        l.text(
            4,
            &format!(
                "  SLO {} = {} (objective {}){}",
                x.name,
                slo_value(x),
                x.objective,
                if x.breached { ", breached" } else { "" }
            ),
        );
    }
}

fn lay_out(report: &Report<'_>) -> Layout {
    let o = &report.overview;
    let mut l = Layout::new();
    l.heading(18.0, "havoc report");
    let mut meta = format!(
        "Generated {}; {}: {} experiment(s)",
        time(report.generated_at),
        report.filters(),
        o.counts.total()
    );
    if let Some((a, b)) = o.span {
        meta.push_str(&format!(" started from {} to {}", time(a), time(b)));
    }
    l.text(0, &meta);
    l.heading(13.0, "Summary");
    let totals: Vec<String> = VERDICTS
        .iter()
        .map(|v| format!("{} {}", v.label(), o.counts.get(*v)))
        .collect();
    l.text(0, &totals.join("   "));
    let f = &o.faults;
    l.text(
        0,
        &format!(
            "Faults: {} target(s) injected in {} live experiment(s), {} only logged in dry runs; {} revert(s) succeeded, {} failed.",
            f.injected, f.experiments, f.dry_run, f.reverted, f.revert_failed
        ),
    );
    l.gap(4.0);
    l.text(
        0,
        &format!(
            "{}{}  pass  dev skip  err  rbf total",
            col("policy", 30),
            col("namespace", 24)
        ),
    );
    for row in &o.rows {
        let n: Vec<String> = VERDICTS
            .iter()
            .map(|v| format!("{:>4}", row.counts.get(*v)))
            .collect();
        l.text(
            0,
            &format!(
                "{}{}{} {:>5}",
                col(&row.policy, 30),
                col(row.namespace.as_deref().unwrap_or("-"), 24),
                n.join(" "),
                row.counts.total()
            ),
        );
    }
    if !o.deviations.is_empty() {
        l.heading(11.0, "Deviations");
        for &i in &o.deviations {
            let r = &report.records[i];
            l.text(4, &format!("{} {} {}", time(r.started_at), r.policy, r.id));
            l.text(4, &format!("    {}", r.reason));
            for a in &r.alerts {
                l.text(8, &format!("    alert {} ({})", a.name, alert_labels(a)));
            }
        }
    }
    if !o.failed_reverts.is_empty() {
        l.heading(11.0, "Failed reverts");
        for fr in &o.failed_reverts {
            let r = &report.records[fr.record];
            l.text(
                4,
                &format!("{} {}: {}: {}", r.id, r.policy, fr.object, fr.detail),
            );
        }
    }
    if !o.skips.is_empty() {
        l.heading(11.0, "Skips by reason");
        for (code, n) in &o.skips {
            l.text(0, &format!("{} {n}", col(code, 30)));
        }
    }
    if !o.policies.is_empty() {
        l.heading(11.0, "Policies");
        l.text(
            0,
            &format!(
                "{}{}{}{}days since pass",
                col("policy", 30),
                col("runs", 7),
                col("last", 16),
                col("last passed", 22)
            ),
        );
        for p in &o.policies {
            l.text(
                0,
                &format!(
                    "{}{}{}{}{}",
                    col(&p.policy, 30),
                    col(&p.experiments.to_string(), 7),
                    col(p.last_verdict.label(), 16),
                    col(&p.last_passed.map_or("never".to_string(), time), 22),
                    p.days_since_pass.map_or("-".to_string(), |d| d.to_string())
                ),
            );
        }
    }
    if !o.buckets.buckets.is_empty() {
        l.heading(11.0, "Verdicts over time");
        l.chart(&o.buckets);
    }
    l.heading(13.0, &format!("Experiments ({})", report.records.len()));
    if report.records.is_empty() {
        l.text(0, "No experiment matches.");
    }
    for r in report.records {
        experiment(&mut l, r);
    }
    if let Some(held) = o.longest_held {
        l.gap(6.0);
        l.text(0, &format!("Longest fault held: {}.", duration_text(held)));
    }
    l
}

pub fn render(report: &Report<'_>) -> Vec<u8> {
    let layout = lay_out(report);
    let total = layout.pages.len();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let mono = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let first_page = 6;
    let page_ids: Vec<Ref> = (0..total)
        .map(|i| Ref::new(first_page + 2 * i as i32))
        .collect();
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(total as i32);
    pdf.type1_font(mono)
        .base_font(Name(b"Courier"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info)
        .title(TextStr("havoc report"))
        .producer(TextStr("havoc"));
    for (i, mut content) in layout.pages.into_iter().enumerate() {
        let footer = format!("havoc report - page {} of {total}", i + 1);
        content.begin_text();
        content.set_fill_rgb(0.45, 0.45, 0.45);
        content.set_font(MONO, 7.0);
        content.next_line(MARGIN, MARGIN - 14.0);
        content.show(Str(&win_ansi(&footer)));
        content.end_text();
        let page_id = page_ids[i];
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree);
        page.contents(content_id);
        let mut resources = page.resources();
        resources.fonts().pair(MONO, mono).pair(BOLD, bold);
        resources.finish();
        page.finish();
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::{history::Query, report::fixtures};

    #[test]
    fn a_pdf_with_a_page_tree_and_every_experiment_in_its_text() {
        let (records, bytes) = fixtures::rendered(render);
        assert!(bytes.starts_with(b"%PDF-"));
        assert!(bytes.ends_with(b"%%EOF") || bytes.ends_with(b"%%EOF\n"));
        // Content streams are not compressed: the text is in the file as written.
        let text = String::from_utf8_lossy(&bytes);
        for r in &records {
            assert!(text.contains(&r.id), "{}", r.id);
        }
        assert!(text.contains("(havoc report - page 1 of "));
        assert!(text.contains("/Courier"));
    }

    #[test]
    fn long_reports_break_into_pages() {
        let mut records = Vec::new();
        for i in 0..200 {
            let mut r = fixtures::records()[i % 5].clone();
            r.id = format!("e{i}");
            records.push(r);
        }
        let q = Query::default();
        let bytes = render(&Report::new(&records, &q, Utc::now()));
        let text = String::from_utf8_lossy(&bytes);
        let total: usize = text
            .split("(havoc report - page 1 of ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|n| n.parse().ok())
            .expect("a footer");
        assert!(total > 10, "{total} pages");
        assert!(text.contains(&format!("(havoc report - page {total} of {total})")));
        assert!(text.contains("e199"));
    }
}
