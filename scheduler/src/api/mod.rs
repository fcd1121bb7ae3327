//! The HTTP layer of the service (DESIGN section 7): metrics, probes, and the API, described
//! by the OpenAPI document served at `GET /api/v1/openapi.json` ([`openapi`]). The server's
//! timeouts, size limits and connection cap are in [`limits`].
//!
//! It reads what the engine publishes (policies, pauses, running experiments, next fires,
//! recent triggers, the journal) and asks the arbiter to act.
//!
//! # Who may see and do what
//!
//! - **Mutating endpoints** (`POST`: run, pause, resume, stop) need
//!   `Authorization: Bearer <server.token>`. The scheme is matched case-insensitively
//!   (RFC 7235: `bearer`, `BEARER`), the token compared in constant time. A wrong or
//!   missing token is `401` with `WWW-Authenticate: Bearer`; without a configured token
//!   these endpoints are off (`403`). The token is checked before anything else of the
//!   request (path, body), so an unauthenticated caller learns nothing from the answer.
//! - **Everything else is unauthenticated** and read-only, for dashboards, probes and
//!   Prometheus: `/metrics`, `/healthz`, `/readyz` (its reasons are fixed texts), the
//!   OpenAPI document, `GET /api/v1/policies`, `GET /api/v1/experiments` and
//!   `GET /api/v1/report` (the same records as a report). These show
//!   policy names, fault kinds, schedules, pauses with their reasons, and experiment
//!   records: targets, verdicts and reasons. They never show a directory: a policy's
//!   `file` is its file name only (the mount path and a ConfigMap's `..data` links stay
//!   inside). A record's reason may quote an upstream error: the health source's URL
//!   (without credentials or query) and at most 200 characters of its answer, which the
//!   integrations crate sanitizes; the Kubernetes API's own message for a refused fault.
//!   Secrets and file paths are never part of them.
//! - **Error answers** are `{"error": MESSAGE}` with a fixed text, plus at most the
//!   caller's own input (a policy name, cut to 100 characters) or a JSON parse error's
//!   position; never an internal path or an error chain.

pub mod console;
pub mod limits;
pub mod openapi;
#[cfg(test)]
pub(crate) mod tests;

use crate::policy::set::Policies;
use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter},
};
use chrono::{DateTime, Utc};
use havoc_integrations::SecretString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use self::limits::Limits;
use crate::{
    engine::{
        arbiter::{Arbiter, Pause, PauseView, Start},
        clock::NextFires,
        metrics::Metrics,
    },
    journal::Journal,
    leader::Leadership,
    policy::duration::HumanDuration,
    record::{ExperimentRecord, TriggerInfo, Verdict},
    trigger::{RecentTriggers, TriggerView},
};
use openapi::{ErrorAnswer as E, Operation};

/// Default and largest `limit` of `GET /api/v1/experiments`.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;
/// Longest pause `reason`, in characters.
pub const MAX_REASON_CHARS: usize = 1024;
/// How much of a caller's input an error answer quotes.
const QUOTE_CHARS: usize = 100;

/// What `/readyz` reports.
pub trait Readiness: Send + Sync {
    /// Why the service is not ready, or `None`.
    fn not_ready(&self) -> Vec<String>;
}

/// What the HTTP layer reads and drives.
pub struct App {
    pub arbiter: Arc<Arbiter>,
    pub policies: Policies,
    pub journal: Arc<Journal>,
    /// Where reports read experiments from (the journal today; the cluster's history
    /// once it holds it).
    pub history: Arc<dyn crate::history::History>,
    pub metrics: Metrics,
    pub next_fires: NextFires,
    pub triggers: RecentTriggers,
    pub leader: Leadership,
    pub token: Option<SecretString>,
    pub readiness: Arc<dyn Readiness>,
    /// The console at `/` and what it reads besides the above.
    pub console: console::Console,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

/// An endpoint: what the OpenAPI document says of it, and its handler.
pub(crate) struct Endpoint {
    pub(crate) op: Operation,
    pub(crate) handler: MethodRouter<Arc<App>>,
}

/// Routes `op`'s method and path to `handler`.
fn endpoint<H, T>(op: Operation, handler: H) -> Endpoint
where
    H: axum::handler::Handler<T, Arc<App>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(op.method.clone())
        .unwrap_or_else(|_| panic!("{} has no method filter", op.method));
    Endpoint {
        op,
        handler: axum::routing::on(filter, handler),
    }
}

/// Every endpoint, with its OpenAPI operation: the router is built from this table and
/// the document generated from it ([`openapi::generate`]), so a new endpoint is one entry
/// here. The schemas come from the types the handlers answer with and read.
pub(crate) fn endpoints() -> Vec<Endpoint> {
    let read_needs_token = "Open, unless `server.readRequiresToken` is true: then it needs \
                            the bearer token like the mutating endpoints.";
    vec![
        endpoint(
            Operation::probe(
                "/metrics",
                "metrics",
                "Prometheus metrics (text exposition format)",
            )
            .text(200, "The metrics, prefix `havoc_`."),
            metrics,
        ),
        endpoint(
            Operation::probe("/healthz", "healthz", "Liveness: the process answers")
                .text(200, "`ok`."),
            || async { "ok\n" },
        ),
        endpoint(
            Operation::probe(
                "/readyz",
                "readyz",
                "Readiness: watch caches synced and the Lease state known",
            )
            .text(200, "`ok`.")
            .json::<NotReady>(503, "Not ready, with the reasons."),
            readyz,
        ),
        endpoint(
            Operation::read("/api/v1/openapi.json", "openapi", "This document")
                .describe(read_needs_token)
                .answer(
                    200,
                    "The OpenAPI document.",
                    vec![(
                        "application/json",
                        |_| schemars::json_schema!({"type": "object"}),
                    )],
                ),
            openapi::document,
        ),
        endpoint(
            Operation::read(
                "/api/v1/policies",
                "listPolicies",
                "The loaded policies with next fire times, pauses, running and last experiments",
            )
            .describe(read_needs_token)
            .json::<PoliciesView>(200, "The policies.")
            .link(
                "RunPolicy",
                json!({
                    "operationId": "runPolicy",
                    "parameters": {"name": "$response.body#/policies/0/name"},
                    "description": "Run the first listed policy.",
                }),
            ),
            policies,
        ),
        endpoint(
            Operation::read(
                "/api/v1/experiments",
                "listExperiments",
                "Experiment records, newest first",
            )
            .describe(read_needs_token)
            .query::<LimitQuery>()
            .answer(
                200,
                "The newest records.",
                vec![("application/json", |g| {
                    let mut s = g.subschema_for::<Vec<ExperimentRecord>>();
                    s.insert("maxItems".into(), MAX_LIMIT.into());
                    s
                })],
            )
            .errors(&[E::BadRequest, E::HistoryUnavailable]),
            experiments,
        ),
        endpoint(
            Operation::read(
                "/api/v1/report",
                "report",
                "A report of experiments (HTML, PDF, Markdown, JUnit XML or JSON)",
            )
            .describe(
                "The report `havoc report` writes, over this service's experiment history, \
                 with the same filters. Times are RFC 3339. HTML is served inline; the other \
                 formats as a download (`Content-Disposition: attachment`) named \
                 `havoc-report-<time>.<extension>`.",
            )
            .describe(read_needs_token)
            .query::<ReportQuery>()
            .answer(
                200,
                "The report.",
                crate::report::Format::ALL
                    .into_iter()
                    .map(|f| (media_type(f.content_type()), report_schema(f)))
                    .collect(),
            )
            .header(
                "Content-Disposition",
                "`inline` for HTML, `attachment` otherwise, with a file name.",
            )
            .errors(&[E::BadRequest])
            .json::<ErrorBody>(503, "The experiment history cannot be read right now."),
            report,
        ),
        endpoint(
            Operation::write(
                "/api/v1/policies/{name}/run",
                "runPolicy",
                "Run one experiment of a policy now (leader only)",
            )
            .describe(
                "The token is checked first. The experiment runs in the background; its \
                 record appears in `/api/v1/experiments` when it ends.",
            )
            .path("name", "The policy's name.")
            .json::<RunStarted>(202, "Started.")
            .json::<RunSkipped>(
                409,
                "Not run: the gate said no (paused, limit, ...). A `skipped` record was \
                 written.",
            )
            .errors(&[E::BadRequest, E::NotFound, E::RequestTimeout])
            .json::<ErrorBody>(
                503,
                "This replica is not the leader: nothing run, nothing recorded.",
            ),
            run_policy,
        ),
        endpoint(
            Operation::write("/api/v1/pause", "pause", "Pause all chaos, or one policy")
                .body::<PauseBody>()
                .json::<PauseView>(200, "Paused.")
                .errors(&[
                    E::BadRequest,
                    E::NotFound,
                    E::RequestTimeout,
                    E::PayloadTooLarge,
                    E::StateUnavailable,
                ]),
            pause,
        ),
        endpoint(
            Operation::write(
                "/api/v1/resume",
                "resume",
                "Resume all chaos (every pause, also per policy), or one policy",
            )
            .body::<PauseBody>()
            .json::<PauseView>(200, "Resumed.")
            .errors(&[
                E::BadRequest,
                E::NotFound,
                E::RequestTimeout,
                E::PayloadTooLarge,
                E::StateUnavailable,
            ]),
            resume,
        ),
        endpoint(
            Operation::write(
                "/api/v1/stop",
                "stop",
                "Emergency stop: end every running experiment (each reverts what it holds), \
                 then pause all chaos until resumed",
            )
            .body::<StopBody>()
            .json::<StopView>(
                200,
                "Experiments cut short, and the pause written to the shared state.",
            )
            .json::<StopView>(
                202,
                "Experiments cut short; the pause is obeyed by this replica and still on its \
                 way to the shared state (retried until it lands: the API server did not \
                 answer within a second).",
            )
            .errors(&[
                E::BadRequest,
                E::NotFound,
                E::RequestTimeout,
                E::PayloadTooLarge,
            ]),
            stop,
        ),
    ]
}

/// A media type without its parameters (`text/html; charset=utf-8` -> `text/html`).
fn media_type(content_type: &'static str) -> &'static str {
    content_type
        .split(';')
        .next()
        .unwrap_or(content_type)
        .trim()
}

/// The schema of a report in `format`.
fn report_schema(format: crate::report::Format) -> openapi::SchemaFn {
    use crate::report::Format;
    match format {
        Format::Json => |g| g.subschema_for::<Vec<ExperimentRecord>>(),
        Format::Pdf => |_| schemars::json_schema!({"type": "string", "format": "binary"}),
        Format::Html | Format::Markdown | Format::Junit => {
            |_| schemars::json_schema!({"type": "string"})
        }
    }
}

/// The router with the default [`Limits`], for [`serve`].
pub fn router(app: App) -> Router {
    router_with(app, &Limits::default())
}

/// The router with the per-request limits (body size, request timeout) of `limits`: the
/// API's endpoints, and the console's pages beside them.
pub fn router_with(app: App, limits: &Limits) -> Router {
    let app = Arc::new(app);
    let api = endpoints()
        .into_iter()
        .fold(Router::new(), |r, e| r.route(e.op.path, e.handler))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            read_guard,
        ));
    let routes = api
        .merge(console::routes())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(app);
    limits::harden(routes, limits)
}

/// With `server.readRequiresToken`, every `GET /api/v1/...` needs the bearer token too;
/// `/metrics`, `/healthz` and `/readyz` stay open (scrapers and probes).
async fn read_guard(
    State(app): Shared,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if app.console.read_requires_token()
        && req.method() == Method::GET
        && req.uri().path().starts_with("/api/v1/")
        && let Err(e) = authorize(&app, req.headers())
    {
        return e.into_response();
    }
    next.run(req).await
}

/// Serves with the default [`Limits`] until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    limits::serve_with(listener, router, Limits::default(), stop).await
}

/// Binds `server.listen`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

type Shared = State<Arc<App>>;

/// An error answer: status and a JSON `{"error": ...}` body.
#[derive(Debug)]
struct ApiError(StatusCode, String);

/// The body of an [`ApiError`].
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "Error", description = "Every error answer of the API.")]
struct ErrorBody {
    /// What went wrong, in a fixed text; never an internal path.
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut answer = (self.0, Json(ErrorBody { error: self.1 })).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        answer
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

/// The shared state could not be written: nothing changed, try again.
fn unavailable(e: crate::state::StateError) -> ApiError {
    tracing::warn!(error = %e, "cannot write the shared state");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the shared pause state cannot be written right now; nothing changed",
    )
}

/// A caller's input as an error answer quotes it: debug-escaped and cut short.
fn quote(input: &str) -> String {
    let quoted = format!("{input:?}");
    if quoted.chars().count() <= QUOTE_CHARS {
        return quoted;
    }
    let mut cut: String = quoted.chars().take(QUOTE_CHARS).collect();
    cut.push_str("...");
    cut
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timing.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The credentials of an `Authorization: Bearer ...` value; the scheme is
/// case-insensitive and followed by one or more spaces (RFC 7235).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &app.token else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "mutating endpoints are off: configure server.token",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match given {
        Some(g) if same(g.as_bytes(), token.expose().as_bytes()) => Ok(()),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        )),
    }
}

async fn metrics(State(app): Shared) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

/// The answer of `/readyz` when the service is not ready.
#[derive(Debug, Serialize, JsonSchema)]
struct NotReady {
    #[schemars(extend("const" = false))]
    ready: bool,
    /// Why not, in fixed texts.
    reasons: Vec<String>,
}

async fn readyz(State(app): Shared) -> Response {
    let why = app.readiness.not_ready();
    if why.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(NotReady {
                ready: false,
                reasons: why,
            }),
        )
            .into_response()
    }
}

/// The answer of `GET /api/v1/policies`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct PoliciesView {
    /// Whether this replica leads (only the leader injects).
    leader: bool,
    /// When the policies were loaded; null before the first load.
    loaded_at: Option<DateTime<Utc>>,
    /// All chaos paused; null when not.
    paused: Option<Pause>,
    policies: Vec<PolicyView>,
}

/// A loaded policy.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct PolicyView {
    name: String,
    /// The policy's file name, without its directory (which stays private).
    file: String,
    #[schemars(with = "openapi::Fault")]
    fault: &'static str,
    dry_run: bool,
    /// The next clock fire, in the policy's time zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "DateTime<chrono::FixedOffset>")]
    next_fire_at: Option<DateTime<chrono::FixedOffset>>,
    /// Whether the policy has a clock schedule.
    scheduled: bool,
    /// How many rollout triggers it has.
    rollout_triggers: usize,
    /// The policy's own pause, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Pause")]
    paused: Option<Pause>,
    /// Ids of its running experiments.
    running: Vec<String>,
    /// Its last experiment that ran (the cluster's history).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "LastRun")]
    last: Option<LastRun>,
    /// Newest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    recent_triggers: Vec<TriggerView>,
    /// Its skips (experiments that did not run), counted by reason code, and the last
    /// one: skips are not kept in the history one by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "crate::history::skips::PolicySkips")]
    skips: Option<crate::history::skips::PolicySkips>,
}

/// The last experiment of a policy.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct LastRun {
    id: String,
    verdict: Verdict,
    ended_at: DateTime<Utc>,
}

/// The name of a policy's file, without its directory.
fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn policies(State(app): Shared) -> Response {
    let arbiter = &app.arbiter;
    let set = app.policies.current();
    let pauses = arbiter.pauses();
    let running = arbiter.running();
    let skips = arbiter.shared_state().skips_seen();
    // The newest experiment of each policy in the history (skips are counted, not kept).
    let mut last: std::collections::HashMap<String, crate::history::Summary> =
        std::collections::HashMap::new();
    for s in app.history.summaries() {
        if last
            .get(&s.policy)
            .is_none_or(|l| (l.started_at, &l.id) < (s.started_at, &s.id))
        {
            last.insert(s.policy.clone(), s);
        }
    }
    let views: Vec<PolicyView> = set
        .policies
        .values()
        .map(|p| PolicyView {
            name: p.name.clone(),
            file: file_name(&p.file),
            fault: p.fault.name(),
            dry_run: p.dry_run,
            next_fire_at: app.next_fires.get(&p.name).and_then(|t| {
                p.schedule
                    .as_ref()
                    .map(|s| t.with_timezone(&s.calendar.tz).fixed_offset())
            }),
            scheduled: p.schedule.is_some(),
            rollout_triggers: p.triggers.len(),
            paused: pauses.policies.get(&p.name).cloned(),
            running: running
                .iter()
                .filter(|(_, name)| **name == p.name)
                .map(|(id, _)| id.clone())
                .collect(),
            last: last.get(&p.name).map(|r| LastRun {
                id: r.id.clone(),
                verdict: r.verdict,
                ended_at: r.ended_at,
            }),
            recent_triggers: app.triggers.of(&p.name),
            skips: skips.get(&p.name).cloned(),
        })
        .collect();
    Json(PoliciesView {
        leader: app.leader.is_leader(),
        loaded_at: set.loaded_at,
        paused: pauses.all,
        policies: views,
    })
    .into_response()
}

/// The query of `GET /api/v1/experiments`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(inline)]
struct LimitQuery {
    /// How many records (default 50).
    #[schemars(range(max = MAX_LIMIT), extend("default" = DEFAULT_LIMIT))]
    limit: Option<usize>,
}

async fn experiments(
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
struct ReportQuery {
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
async fn report(
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

fn unknown_policy(name: &str) -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        format!("no policy named {}", quote(name)),
    )
}

async fn run_policy(
    State(app): Shared,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers)?;
    let Path(name) =
        name.map_err(|_| error(StatusCode::BAD_REQUEST, "invalid policy name in the path"))?;
    let Some(policy) = app.policies.current().get(&name).cloned() else {
        return Err(unknown_policy(&name));
    };
    let trigger = TriggerInfo::Manual {
        source: "http".to_string(),
    };
    Ok(match app.arbiter.start(policy, trigger) {
        Start::Started { id } => {
            (StatusCode::ACCEPTED, Json(RunStarted { id, started: true })).into_response()
        }
        Start::Skipped { id, reason } => (
            StatusCode::CONFLICT,
            Json(RunSkipped {
                id,
                reason: reason.to_string(),
                reason_code: reason.label(),
                started: false,
            }),
        )
            .into_response(),
        Start::NotLeader => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this replica is not the leader",
        )
        .into_response(),
    })
}

/// `202` of `POST /api/v1/policies/{name}/run`.
#[derive(Debug, Serialize, JsonSchema)]
struct RunStarted {
    id: String,
    #[schemars(extend("const" = true))]
    started: bool,
}

/// `409` of `POST /api/v1/policies/{name}/run`: the gate said no.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct RunSkipped {
    /// The id of the `skipped` record.
    id: String,
    reason: String,
    /// The reason's label, as in records.
    reason_code: &'static str,
    #[schemars(extend("const" = false))]
    started: bool,
}

/// The body of pause, resume and stop. Every field is optional and `null` means absent.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(
    description = "Body of pause and resume; optional, and so is every field (null means \
                   absent). Unknown fields are refused."
)]
struct PauseBody {
    /// One policy by name; all chaos when absent.
    policy: Option<String>,
    /// Shown in the pause and in skipped records (pause only); blank or absent: `paused
    /// through the HTTP API`.
    #[schemars(length(max = MAX_REASON_CHARS))]
    reason: Option<String>,
    /// How long the pause lasts (pause only), e.g. 90s, 15m, 2h, 1h30m: units in the order
    /// d, h, m, s, ms, each at most once. Until resumed when absent.
    #[serde(rename = "for")]
    #[schemars(pattern(PAUSE_FOR_PATTERN), length(min = 1))]
    for_: Option<String>,
}

/// What the document says `POST /api/v1/stop` takes. The handler reads a [`PauseBody`]
/// and refuses its other fields, so that an unknown policy is still a `404`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    description = "Body of stop; optional. A stop applies to all chaos until resumed: it \
                   takes only `reason` (null means absent). Other fields are refused."
)]
#[allow(dead_code, reason = "only its schema is used")]
struct StopBody {
    /// Shown in the pause and in the records of the experiments it ends; blank or absent:
    /// `emergency stop through the HTTP API`.
    #[schemars(length(max = MAX_REASON_CHARS))]
    reason: Option<String>,
}

/// A pause request, checked.
#[derive(Debug, Default)]
struct PauseRequest {
    policy: Option<String>,
    reason: Option<String>,
    for_: Option<HumanDuration>,
}

fn bad_request(message: impl Into<String>) -> ApiError {
    error(StatusCode::BAD_REQUEST, message)
}

fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<PauseRequest, ApiError> {
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} bytes", limits::MAX_BODY_BYTES),
        ),
        _ => bad_request("the body could not be read"),
    })?;
    // No body: the defaults. A body that is there must be a JSON object; whitespace alone
    // is not a JSON document (and the OpenAPI document says so, which schemathesis checks).
    if body.is_empty() {
        return Ok(PauseRequest::default());
    }
    let body: PauseBody =
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid body: {e}")))?;
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        return Err(bad_request(format!(
            "reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    let for_ = match body.for_ {
        None => None,
        Some(d) if !pause_for_form(&d) => {
            return Err(bad_request(format!(
                "invalid body: `for` {} is not a duration like 90s, 15m, 2h, 1h30m (units in \
                 the order d, h, m, s, ms; at most ten years)",
                quote(&d)
            )));
        }
        Some(d) => Some(
            d.parse::<HumanDuration>()
                .map_err(|e| bad_request(format!("invalid body: `for`: {e}")))?,
        ),
    };
    Ok(PauseRequest {
        policy: body.policy,
        reason: body.reason,
        for_,
    })
}

/// The form of a pause's `for`, as the OpenAPI document writes it: the parts of a duration
/// in the order d, h, m, s, ms, each at most once, with few enough digits that the longest
/// (999d9999h999999m99999999s9999999999ms, about 9.3 years) stays within the duration
/// parser's ten years. So every string the document allows is accepted, and no other.
pub const PAUSE_FOR_PATTERN: &str =
    "^([0-9]{1,3}d)?([0-9]{1,4}h)?([0-9]{1,6}m)?([0-9]{1,8}s)?([0-9]{1,10}ms)?$";

/// Whether `s` matches [`PAUSE_FOR_PATTERN`] and is not empty.
pub(crate) fn pause_for_form(s: &str) -> bool {
    const UNITS: [(&str, usize); 5] = [("d", 3), ("h", 4), ("m", 6), ("s", 8), ("ms", 10)];
    let mut rest = s;
    let mut allowed = 0; // the first unit still allowed
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let unit_len = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        let unit = &rest[digits..digits + unit_len];
        let Some(i) = UNITS[allowed..].iter().position(|(u, _)| *u == unit) else {
            return false;
        };
        let i = allowed + i;
        if digits == 0 || digits > UNITS[i].1 {
            return false;
        }
        allowed = i + 1;
        rest = &rest[digits + unit_len..];
    }
    !s.is_empty()
}

fn known_policy(app: &App, policy: Option<&str>) -> Result<(), ApiError> {
    match policy {
        Some(p) if app.policies.current().get(p).is_none() => Err(unknown_policy(p)),
        _ => Ok(()),
    }
}

/// The common start of pause, resume and stop: token, body, and a known policy if named.
fn pause_request(
    app: &App,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<PauseRequest, ApiError> {
    authorize(app, headers)?;
    let body = parse_body(body)?;
    known_policy(app, body.policy.as_deref())?;
    Ok(body)
}

async fn pause(
    State(app): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = pause_request(&app, &headers, body)?;
    let until = body
        .for_
        .map(|d| Utc::now() + chrono::Duration::from_std(d.0).unwrap_or_default());
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "paused through the HTTP API".to_string());
    let view = app
        .arbiter
        .pause(body.policy.as_deref(), until, reason)
        .await
        .map_err(unavailable)?;
    Ok(Json(view).into_response())
}

async fn resume(
    State(app): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = pause_request(&app, &headers, body)?;
    let view = app
        .arbiter
        .resume(body.policy.as_deref())
        .await
        .map_err(unavailable)?;
    Ok(Json(view).into_response())
}

/// `POST /api/v1/stop`, the emergency stop: cuts every running experiment short first, so
/// that each reverts what it holds now, then pauses all chaos until resumed (in the shared
/// state: every replica obeys it). It answers within about a second whatever the API
/// server does: `200` when the pause is written, `202` when it is obeyed here and still on
/// its way to the shared state (retried until it lands).
async fn stop(
    State(app): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = pause_request(&app, &headers, body)?;
    if body.policy.is_some() || body.for_.is_some() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "stop applies to all chaos until resumed: it takes only `reason`",
        ));
    }
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "emergency stop through the HTTP API".to_string());
    let stopped = app.arbiter.stop_all(reason).await;
    let pauses = app.arbiter.pauses();
    let status = if stopped.written {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(StopView {
            all: pauses.all,
            policies: pauses.policies,
            reverted: stopped.ids,
            written: stopped.written,
        }),
    )
        .into_response())
}

/// The answer of `POST /api/v1/stop`: the pause switches after a stop, and the
/// experiments it ended here.
#[derive(Debug, Serialize, JsonSchema)]
struct StopView {
    /// All chaos paused (the stop's pause).
    all: Option<Pause>,
    /// Paused policies by name.
    policies: std::collections::BTreeMap<String, Pause>,
    /// The experiments this replica ended (each reverts its faults; the leader of another
    /// replica does the same when it sees the stop).
    reverted: Vec<String>,
    /// Whether the pause is in the shared state (every replica obeys it) yet.
    written: bool,
}
