//! Reports of experiments, for people and for CI: `havoc report`, `havoc run --report`
//! and `GET /api/v1/report` all turn records into one of five formats here.
//!
//! A report is pure: the records (as a [`History`](crate::history::History) returned
//! them, newest first), the [`Query`] that chose them and the time of generation go in,
//! bytes come out. [`model`] computes what every format shows (the summary, the chart's
//! buckets, each experiment's timeline); one module per format lays it out:
//!
//! - [`html`]: one self-contained page (inline CSS, an SVG chart, no script, no request
//!   to anywhere: a Content-Security-Policy says so to the browser), readable printed.
//! - [`pdf`]: written with `pdf-writer` (no browser, no external program), in the PDF
//!   standard fonts, so that nothing is embedded and the binary stays small.
//! - [`markdown`]: tables that fit a pull-request comment or a wiki page.
//! - [`junit`]: one test suite per policy, one test case per experiment, for CI.
//! - JSON: the records themselves, as `GET /api/v1/experiments` serves them.
//!
//! Everything that comes from users or upstream systems (policy names, reasons, alert
//! labels, target names) is escaped for the format it lands in ([`escape`]).

pub mod escape;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod model;
pub mod pdf;

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};

pub use model::Overview;

use crate::{history::Query, record::ExperimentRecord};

/// A report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Format {
    Html,
    Pdf,
    Markdown,
    Junit,
    Json,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Html,
        Format::Pdf,
        Format::Markdown,
        Format::Junit,
        Format::Json,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Markdown => "markdown",
            Format::Junit => "junit",
            Format::Json => "json",
        }
    }

    /// The media type an HTTP answer carries.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
            Format::Markdown => "text/markdown; charset=utf-8",
            Format::Junit => "application/xml",
            Format::Json => "application/json",
        }
    }

    /// The file name extension of a download.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Markdown => "md",
            Format::Junit => "xml",
            Format::Json => "json",
        }
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("unknown report format {0:?}: expected html, pdf, markdown, junit or json")]
    UnknownFormat(String),
    #[error(
        "invalid time {0:?}: expected RFC 3339 (2026-03-30T09:00:00Z), YYYY-MM-DD[THH:MM[:SS]] (UTC), `now`, or -DURATION before now (-7d)"
    )]
    Time(String),
    #[error("unknown verdict {0:?}: expected passed, deviated, skipped, errored or rollbackFailed")]
    Verdict(String),
    #[error("--since {since} is not before --until {until}")]
    EmptyRange { since: String, until: String },
    #[error("cannot encode the report: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A report's filters as a person or a URL writes them (`havoc report`'s flags, the
/// query string of `GET /api/v1/report`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    pub since: Option<String>,
    pub until: Option<String>,
    pub policy: Option<String>,
    pub namespace: Option<String>,
    pub verdict: Option<String>,
}

impl Filters {
    /// The [`Query`] these filters mean, relative times counted back from `now` (the
    /// forms of [`parse_time`]: for people).
    pub fn query(&self, now: DateTime<Utc>) -> Result<Query, ReportError> {
        let q = self.query_with(|s| parse_time(s, now))?;
        // A person who writes a range that holds nothing most likely swapped its ends.
        if let (Some(a), Some(b)) = (q.since, q.until)
            && a >= b
        {
            return Err(ReportError::EmptyRange {
                since: time(a),
                until: time(b),
            });
        }
        Ok(q)
    }

    /// The [`Query`] these filters mean, times in RFC 3339 only (for the HTTP API, whose
    /// OpenAPI document says `date-time`: a machine's form, one meaning). A range that
    /// holds nothing (`since` not before `until`) is a valid query with an empty report:
    /// the document cannot say that one parameter must precede another.
    pub fn query_rfc3339(&self) -> Result<Query, ReportError> {
        self.query_with(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ReportError::Time(s.chars().take(100).collect()))
        })
    }

    fn query_with(
        &self,
        parse: impl Fn(&str) -> Result<DateTime<Utc>, ReportError>,
    ) -> Result<Query, ReportError> {
        let since = self.since.as_deref().map(&parse).transpose()?;
        let until = self.until.as_deref().map(&parse).transpose()?;
        let verdict = self
            .verdict
            .as_deref()
            .map(|v| {
                serde_json::from_value::<crate::record::Verdict>(serde_json::Value::String(
                    v.to_string(),
                ))
                .map_err(|_| ReportError::Verdict(v.to_string()))
            })
            .transpose()?;
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Ok(Query {
            since,
            until,
            policy: nonempty(&self.policy),
            namespace: nonempty(&self.namespace),
            verdict,
            limit: None,
        })
    }
}

/// A time for `--since`/`--until`: RFC 3339, `YYYY-MM-DD[THH:MM[:SS]]` in UTC, `now`, or
/// `-DURATION` that long before `now` (`-7d`, `-12h`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ReportError> {
    let s = s.trim();
    let invalid = || ReportError::Time(s.chars().take(100).collect());
    if s == "now" {
        return Ok(now);
    }
    if let Some(rel) = s.strip_prefix('-') {
        let d: crate::policy::duration::HumanDuration = rel.parse().map_err(|_| invalid())?;
        let d = chrono::Duration::from_std(d.0).map_err(|_| invalid())?;
        return now.checked_sub_signed(d).ok_or_else(invalid);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(invalid)
}

impl FromStr for Format {
    type Err = ReportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.label() == s)
            .ok_or_else(|| ReportError::UnknownFormat(s.to_string()))
    }
}

/// What a report is made of.
#[derive(Debug)]
pub struct Report<'a> {
    /// Newest first, as a history returns them.
    pub records: &'a [ExperimentRecord],
    pub query: &'a Query,
    pub generated_at: DateTime<Utc>,
    pub overview: Overview,
}

impl<'a> Report<'a> {
    pub fn new(
        records: &'a [ExperimentRecord],
        query: &'a Query,
        generated_at: DateTime<Utc>,
    ) -> Self {
        Report {
            records,
            query,
            generated_at,
            overview: Overview::of(records, generated_at),
        }
    }

    /// The filters, as a reader reads them: `policy web, since 2026-11-01T00:00:00Z`, or
    /// `all experiments`.
    pub fn filters(&self) -> String {
        let q = self.query;
        let mut parts = Vec::new();
        if let Some(p) = &q.policy {
            parts.push(format!("policy {p}"));
        }
        if let Some(n) = &q.namespace {
            parts.push(format!("namespace {n}"));
        }
        if let Some(v) = q.verdict {
            parts.push(format!("verdict {}", v.label()));
        }
        if let Some(t) = q.since {
            parts.push(format!("since {}", time(t)));
        }
        if let Some(t) = q.until {
            parts.push(format!("until {}", time(t)));
        }
        if parts.is_empty() {
            "all experiments".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// Renders `report` as `format`.
pub fn render(format: Format, report: &Report<'_>) -> Result<Vec<u8>, ReportError> {
    Ok(match format {
        Format::Html => html::render(report).into_bytes(),
        Format::Pdf => pdf::render(report),
        Format::Markdown => markdown::render(report).into_bytes(),
        Format::Junit => junit::render(report).into_bytes(),
        Format::Json => {
            let mut out = serde_json::to_vec_pretty(report.records)?;
            out.push(b'\n');
            out
        }
    })
}

/// A time as every report writes it: RFC 3339 in UTC, whole seconds.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use chrono::{Duration, Utc};

    use super::Report;
    use crate::{
        history::Query,
        record::{
            AlertRecord, ExperimentRecord, ObjectRef, RevertResult, SloRecord, TargetRevert,
            Verdict, tests::record,
        },
    };

    /// Hostile text: markup, quotes, Markdown table syntax, a control character.
    pub const HOSTILE: &str =
        "<script>alert('x')</script> & \"q\" | *b* `c` [l](http://evil.example)\u{1}";

    /// One record of each verdict, every field that reports show filled in, newest first;
    /// user-controlled text carries [`HOSTILE`].
    pub fn records() -> Vec<ExperimentRecord> {
        let t0: chrono::DateTime<chrono::Utc> = "2026-11-22T10:00:00Z".parse().expect("t");
        let mut out = Vec::new();
        for (i, v) in [
            Verdict::Passed,
            Verdict::Deviated,
            Verdict::Skipped,
            Verdict::Errored,
            Verdict::RollbackFailed,
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = record(&format!("exp-{}", v.label()), v);
            r.policy = if i % 2 == 0 { "web-kill" } else { "db-scale" }.into();
            r.started_at = t0 + Duration::hours(i as i64);
            r.injected_at = Some(r.started_at + Duration::seconds(1));
            r.reverted_at = Some(r.started_at + Duration::seconds(31));
            r.ended_at = r.started_at + Duration::seconds(41);
            r.reason = format!("reason of {}", v.label());
            match v {
                Verdict::Deviated => {
                    r.reason = format!("alert fired: {HOSTILE}");
                    r.alerts.push(AlertRecord {
                        name: "KubeDeploymentUnavailable".into(),
                        fingerprint: "f1".into(),
                        labels: BTreeMap::from([
                            ("alertname".into(), "KubeDeploymentUnavailable".into()),
                            ("deployment".into(), HOSTILE.into()),
                        ]),
                        starts_at: r.started_at + Duration::seconds(5),
                    });
                    r.slos.push(SloRecord {
                        name: "error-ratio".into(),
                        value: Some(0.2),
                        objective: "< 0.01".into(),
                        breached: true,
                        at: r.started_at + Duration::seconds(6),
                    });
                    r.budgets.push(crate::record::tests::budget_record(HOSTILE));
                }
                Verdict::Skipped => {
                    r.injected_at = None;
                    r.reverted_at = None;
                    r.targets.clear();
                    r.reason_code = Some("alertsFiring".into());
                }
                Verdict::Errored => r.reason_code = Some("injection".into()),
                Verdict::RollbackFailed => {
                    r.targets[0].revert = Some(TargetRevert {
                        result: RevertResult::Failed,
                        object: ObjectRef::namespaced("Deployment", "go-demo-8", "go-demo-8-db"),
                        detail: Some("the API server said 500".into()),
                        at: r.started_at + Duration::seconds(31),
                    });
                }
                Verdict::Passed => {}
            }
            out.push(r);
        }
        out.reverse();
        out
    }

    /// The [`records`] and what `render` makes of them: a report of all experiments,
    /// generated now.
    pub fn rendered<T>(render: impl Fn(&Report<'_>) -> T) -> (Vec<ExperimentRecord>, T) {
        let records = records();
        let out = render(&Report::new(&records, &Query::default(), Utc::now()));
        (records, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_from_their_labels() {
        for f in Format::ALL {
            assert_eq!(f.label().parse::<Format>().expect("parses"), f);
        }
        assert!("xml".parse::<Format>().is_err());
    }

    #[test]
    fn json_round_trips_the_records() {
        let (records, bytes) = fixtures::rendered(|r| render(Format::Json, r).expect("json"));
        let back: Vec<ExperimentRecord> = serde_json::from_slice(&bytes).expect("parses");
        assert_eq!(back, records);
    }

    #[test]
    fn filters_become_a_query() {
        let now: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().expect("t");
        let f = Filters {
            since: Some("-7d".into()),
            until: Some("2026-11-22".into()),
            policy: Some("web".into()),
            namespace: Some(String::new()),
            verdict: Some("rollbackFailed".into()),
        };
        let q = f.query(now).expect("valid");
        assert_eq!(q.since, Some("2026-11-15T10:00:00Z".parse().expect("t")));
        assert_eq!(q.until, Some("2026-11-22T00:00:00Z".parse().expect("t")));
        assert_eq!(q.policy.as_deref(), Some("web"));
        assert_eq!(q.namespace, None);
        assert_eq!(q.verdict, Some(crate::record::Verdict::RollbackFailed));
        for bad in [
            Filters {
                since: Some("yesterday".into()),
                ..Filters::default()
            },
            Filters {
                verdict: Some("failed".into()),
                ..Filters::default()
            },
            Filters {
                since: Some("now".into()),
                until: Some("-1h".into()),
                ..Filters::default()
            },
        ] {
            assert!(f.query(now).is_ok() && bad.query(now).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_time("2026-11-22T11:00:00+01:00", now).expect("rfc 3339"),
            now
        );
    }

    #[test]
    fn filters_read_as_text() {
        let records = fixtures::records();
        let q = Query {
            policy: Some("web".into()),
            since: Some("2026-11-01T00:00:00Z".parse().expect("t")),
            verdict: Some(crate::record::Verdict::Deviated),
            ..Query::default()
        };
        let r = Report::new(&records, &q, Utc::now());
        assert_eq!(
            r.filters(),
            "policy web, verdict deviated, since 2026-11-01T00:00:00Z"
        );
        let all = Query::default();
        assert_eq!(
            Report::new(&records, &all, Utc::now()).filters(),
            "all experiments"
        );
    }
}
