//! The console's pages (GET): the extractor every page handler starts from ([`Page`]),
//! the handlers of `/`, `/timeline`, `/experiments`, `/experiments/{id}`, `/policies` and
//! `/faults`, and the history queries behind them (the experiment list's filters, the
//! last experiment of each policy, the timeline's past).

use std::sync::Arc;

use axum::{
    extract::{FromRequestParts, Path, Query, State},
    http::{StatusCode, request},
    response::Response,
};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;

use super::{
    Ctx, Shared, digest, live,
    pages::{self, Filter, PAGE_SIZE, PolicyRow},
    timeline,
    view::{self, Live},
};
use crate::{
    api::App,
    history::{History, Query as HistoryQuery, Summary},
};

/// What every page handler starts from: the request's context, with the digest of what
/// the page shows, and the live state. Where reading needs a login and the request has
/// none, the answer is a redirect to the login page.
pub(super) struct Page {
    ctx: Ctx,
    live: Live,
}

impl FromRequestParts<Arc<App>> for Page {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, Response> {
        let mut ctx = Ctx::new(app, &parts.headers, &parts.uri);
        if !ctx.may_read(app) {
            return Err(ctx.to_login());
        }
        ctx.viewer.digest = digest(app).await;
        Ok(Page {
            ctx,
            live: live(app),
        })
    }
}

pub(super) async fn now_page(State(app): Shared, Page { ctx, live }: Page) -> Response {
    let since = view::start_of_day(live.now, live.tz);
    let today = match app
        .history
        .list(&HistoryQuery {
            since: Some(since),
            ..HistoryQuery::default()
        })
        .await
    {
        Ok(t) => t,
        Err(e) => return history_error(&ctx, &live, e),
    };
    ctx.page(
        StatusCode::OK,
        pages::now_page(&ctx.viewer, &live, &today, since),
    )
}

fn history_error(ctx: &Ctx, live: &Live, e: crate::history::HistoryError) -> Response {
    tracing::warn!(error = %e, "console: the history cannot be read");
    ctx.page(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::message_page(&ctx.viewer, live, "History unavailable", &e.to_string()),
    )
}

/// The timeline's SVG at `live.now`, from the history.
pub async fn timeline_svg(
    history: &dyn History,
    live: &Live,
) -> Result<String, crate::history::HistoryError> {
    let past = history
        .list(&HistoryQuery {
            since: Some(live.now - chrono::Duration::hours(24)),
            ..HistoryQuery::default()
        })
        .await?;
    Ok(timeline::svg(
        live.now,
        &live.policies,
        &past,
        &live.running,
    ))
}

pub(super) async fn timeline_page(State(app): Shared, Page { ctx, live }: Page) -> Response {
    match timeline_svg(app.history.as_ref(), &live).await {
        Ok(svg) => ctx.page(
            StatusCode::OK,
            pages::timeline_page(&ctx.viewer, &live, &svg),
        ),
        Err(e) => history_error(&ctx, &live, e),
    }
}

/// The experiment list's query string, as typed.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub verdict: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub page: usize,
}

/// A time as the filter form takes it: RFC 3339, `YYYY-MM-DDTHH:MM[:SS]` or
/// `YYYY-MM-DD`, UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The history query of the filters, or what is wrong with them.
pub fn list_query(p: &ListParams) -> Result<(HistoryQuery, Filter), String> {
    let keep = |s: &str| s.trim().chars().take(200).collect::<String>();
    let filter = Filter {
        policy: keep(&p.policy),
        namespace: keep(&p.namespace),
        verdict: keep(&p.verdict),
        since: keep(&p.since),
        until: keep(&p.until),
        page: p.page.min(10_000),
    };
    let verdict = match filter.verdict.as_str() {
        "" => None,
        v => Some(
            view::VERDICTS
                .into_iter()
                .find(|x| x.label() == v)
                .ok_or_else(|| format!("unknown verdict {v:?}"))?,
        ),
    };
    let time = |s: &str, what: &str| -> Result<Option<DateTime<Utc>>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        parse_time(s)
            .map(Some)
            .ok_or_else(|| format!("{what}: {s:?} is not a time like 2026-12-01T10:00 (UTC)"))
    };
    let query = HistoryQuery {
        since: time(&filter.since, "From")?,
        until: time(&filter.until, "Until")?,
        policy: (!filter.policy.is_empty()).then(|| filter.policy.clone()),
        namespace: (!filter.namespace.is_empty()).then(|| filter.namespace.clone()),
        verdict,
        limit: Some((filter.page + 1) * PAGE_SIZE + 1),
    };
    Ok((query, filter))
}

/// The rows of one page of the list, and whether there are older ones.
pub async fn list_page(
    history: &dyn History,
    query: &HistoryQuery,
    page: usize,
) -> Result<(Vec<Summary>, bool), crate::history::HistoryError> {
    let all = history.list(query).await?;
    let rows: Vec<Summary> = all
        .iter()
        .skip(page * PAGE_SIZE)
        .take(PAGE_SIZE)
        .cloned()
        .collect();
    Ok((rows, all.len() > (page + 1) * PAGE_SIZE))
}

pub(super) async fn experiments_page(
    State(app): Shared,
    Page { ctx, live }: Page,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let mut names: Vec<String> = live.policies.iter().map(|p| p.name.clone()).collect();
    let (rows, more, error, filter) = match list_query(&params) {
        Ok((q, filter)) => match list_page(app.history.as_ref(), &q, filter.page).await {
            Ok((rows, more)) => (rows, more, None, filter),
            Err(e) => return history_error(&ctx, &live, e),
        },
        Err(e) => (Vec::new(), false, Some(e), Filter::default()),
    };
    if !filter.policy.is_empty() && !names.contains(&filter.policy) {
        names.push(filter.policy.clone());
    }
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    ctx.page(
        status,
        pages::experiments_page(
            &ctx.viewer,
            &live,
            &filter,
            &names,
            &rows,
            more,
            error.as_deref(),
        ),
    )
}

pub(super) async fn experiment_page(
    State(app): Shared,
    Path(id): Path<String>,
    Page { ctx, live }: Page,
) -> Response {
    match app.history.get(&id).await {
        Ok(Some(r)) => ctx.page(
            StatusCode::OK,
            pages::experiment_page(&ctx.viewer, &live, &r),
        ),
        Ok(None) => {
            let running = live.running.iter().any(|r| r.id == id);
            let text = if running {
                "This experiment is running: its record is written when it ends."
            } else {
                "No experiment with this id is in the history."
            };
            let status = if running {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            ctx.page(status, pages::message_page(&ctx.viewer, &live, &id, text))
        }
        Err(e) => history_error(&ctx, &live, e),
    }
}

/// The last experiment of each policy: from the newest summaries, and by a query of its
/// own for a policy that has none among them.
pub async fn last_of_each(
    history: &dyn History,
    names: &[String],
) -> Result<Vec<Option<Summary>>, crate::history::HistoryError> {
    let recent = history
        .list(&HistoryQuery {
            limit: Some(1000),
            ..HistoryQuery::default()
        })
        .await?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let found = recent.iter().find(|s| s.policy == *name).cloned();
        let found = match found {
            Some(f) => Some(f),
            None if recent.len() >= 1000 => history
                .list(&HistoryQuery {
                    policy: Some(name.clone()),
                    limit: Some(1),
                    ..HistoryQuery::default()
                })
                .await?
                .into_iter()
                .next(),
            None => None,
        };
        out.push(found);
    }
    Ok(out)
}

/// The rows of the policies page: each live policy with its pause, its running
/// experiment and `last` (its newest experiment, in the same order: [`last_of_each`]).
pub fn policy_rows<'a>(live: &'a Live, last: &'a [Option<Summary>]) -> Vec<PolicyRow<'a>> {
    live.policies
        .iter()
        .zip(last)
        .map(|(p, l)| PolicyRow {
            view: p,
            paused: live.policy_pauses.get(&p.name),
            running: live
                .running
                .iter()
                .find(|r| r.policy == p.name)
                .map(|r| r.id.as_str()),
            last: l.as_ref(),
        })
        .collect()
}

pub(super) async fn policies_page(State(app): Shared, Page { ctx, live }: Page) -> Response {
    let names: Vec<String> = live.policies.iter().map(|p| p.name.clone()).collect();
    let last = match last_of_each(app.history.as_ref(), &names).await {
        Ok(l) => l,
        Err(e) => return history_error(&ctx, &live, e),
    };
    let rows = policy_rows(&live, &last);
    ctx.page(
        StatusCode::OK,
        pages::policies_page(&ctx.viewer, &live, &rows),
    )
}

pub(super) async fn faults_page(Page { ctx, live }: Page) -> Response {
    ctx.page(StatusCode::OK, pages::faults_page(&ctx.viewer, &live))
}
