//! The endpoints that read the experiment history: `GET /api/v1/experiments` (the newest
//! records) and `GET /api/v1/report` (the report `havoc report` writes), with their
//! queries.

use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ApiError, DEFAULT_LIMIT, MAX_LIMIT, Shared, bad_request, error};
use crate::record::Verdict;

/// The query of `GET /api/v1/experiments`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(inline)]
pub(super) struct LimitQuery {
    /// How many records (default 50).
    #[schemars(range(max = MAX_LIMIT), extend("default" = DEFAULT_LIMIT))]
    limit: Option<usize>,
}

pub(super) async fn experiments(
    State(app): Shared,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let invalid = || {
        error(
            StatusCode::BAD_REQUEST,
            format!("limit must be a whole number from 0 to {MAX_LIMIT}"),
        )
    };
    let Query(q) = query.map_err(|_| invalid())?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(invalid());
    }
    let query = crate::history::Query {
        limit: Some(limit),
        ..Default::default()
    };
    match app.history.records(&query).await {
        Ok(records) => Ok(Json(records).into_response()),
        Err(e) => {
            tracing::warn!(error = %e, "GET /api/v1/experiments: the history cannot be read");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the experiment history cannot be read right now".to_string(),
            ))
        }
    }
}

/// The query of `GET /api/v1/report`: the format and the filters of `havoc report`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub(super) struct ReportQuery {
    /// The report's format (default html).
    #[schemars(with = "Option<crate::report::Format>")]
    format: Option<String>,
    /// Experiments started at or after this time.
    #[schemars(with = "Option<DateTime<Utc>>")]
    since: Option<String>,
    /// Experiments started before this time (a range that holds nothing is an empty
    /// report).
    #[schemars(with = "Option<DateTime<Utc>>")]
    until: Option<String>,
    /// Only this policy.
    policy: Option<String>,
    /// Only experiments with a target in this namespace.
    namespace: Option<String>,
    /// Only this verdict.
    #[schemars(with = "Option<Verdict>")]
    verdict: Option<String>,
}

/// A report's format as the query names it: the formats `havoc report` writes.
impl JsonSchema for crate::report::Format {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ReportFormat".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        use crate::report::Format;
        let formats: Vec<&str> = Format::ALL.into_iter().map(Format::label).collect();
        schemars::json_schema!({
            "type": "string",
            "enum": formats,
            "default": Format::Html.label(),
        })
    }
}

/// `GET /api/v1/report?format=...`: the report `havoc report` writes, over the history
/// this service reads, with the same filters (times in RFC 3339). HTML is shown in the
/// browser, the other formats are downloads named after the time of generation.
pub(super) async fn report(
    State(app): Shared,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    use crate::report::{Filters, Format};
    const USAGE: &str = "invalid report query: format is one of html, pdf, markdown, junit, json; \
         since and until are RFC 3339 times; verdict is one of passed, \
         deviated, skipped, errored, rollbackFailed; nothing else is accepted";
    let Query(q) = query.map_err(|_| bad_request(USAGE))?;
    let format = match q.format.as_deref() {
        None => Format::Html,
        Some(f) => f.parse::<Format>().map_err(|_| bad_request(USAGE))?,
    };
    let filters = Filters {
        since: q.since,
        until: q.until,
        policy: q.policy,
        namespace: q.namespace,
        verdict: q.verdict,
    };
    let query = filters.query_rfc3339().map_err(|_| bad_request(USAGE))?;
    let records = app.history.records(&query).await.map_err(|e| {
        tracing::warn!(error = %e, "report: cannot read the history");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the experiment history cannot be read right now",
        )
    })?;
    let now = Utc::now();
    let bytes = crate::report::render(format, &crate::report::Report::new(&records, &query, now))
        .map_err(|e| {
        tracing::error!(error = %e, "report: cannot render");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the report could not be made",
        )
    })?;
    let disposition = format!(
        "{}; filename=\"havoc-report-{}.{}\"",
        if format == Format::Html {
            "inline"
        } else {
            "attachment"
        },
        now.format("%Y%m%dT%H%M%SZ"),
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}
