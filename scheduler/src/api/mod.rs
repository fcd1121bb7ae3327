//! The HTTP layer of the service (DESIGN section 7): metrics, probes, and the API, described
//! by the OpenAPI document served at `GET /api/v1/openapi.json` ([`openapi`]). The server's
//! timeouts, size limits and connection cap are in [`limits`]. The endpoints' handlers are
//! by resource: `policies` (the policies view), `experiments` (records and reports) and
//! `control` (run, pause, resume, stop); the table of endpoints is here.
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

pub(crate) mod budgets;
pub mod console;
mod control;
mod experiments;
pub mod limits;
pub mod openapi;
mod policies;
#[cfg(test)]
pub(crate) mod tests;

use crate::policy::set::Policies;
use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter},
};
use havoc_integrations::SecretString;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

pub(crate) use self::control::pause_for_form;
pub use self::{control::PAUSE_FOR_PATTERN, limits::Limits};
use self::{
    control::{
        PauseBody, RunSkipped, RunStarted, StopBody, StopView, pause, resume, run_policy, stop,
    },
    experiments::{LimitQuery, ReportQuery, experiments, report},
    policies::{PoliciesView, policies},
};
use crate::{
    engine::{
        arbiter::{Arbiter, PauseView},
        clock::NextFires,
        metrics::Metrics,
    },
    journal::Journal,
    leader::Leadership,
    record::ExperimentRecord,
    trigger::RecentTriggers,
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
/// What pause and resume may answer besides success (they share their body and checks).
const PAUSE_ERRORS: &[E] = &[
    E::BadRequest,
    E::NotFound,
    E::RequestTimeout,
    E::PayloadTooLarge,
    E::StateUnavailable,
];

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
                "/api/v1/budgets",
                "listBudgets",
                "What is left of each namespace's chaos budget, and the error budgets",
            )
            .describe(
                "Namespace budgets are counted from the experiment history in the cluster \
                 (the same on every replica); error budgets show this replica's last reading.",
            )
            .describe(read_needs_token)
            .json::<budgets::BudgetsView>(200, "The budgets.")
            .errors(&[E::HistoryUnavailable]),
            budgets::budgets,
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
                .errors(PAUSE_ERRORS),
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
            .errors(PAUSE_ERRORS),
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

fn bad_request(message: impl Into<String>) -> ApiError {
    error(StatusCode::BAD_REQUEST, message)
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
    // Coverage from the history (the same on every replica), read at each scrape; not
    // before the history is listed (a replica just started would report stale coverage).
    if app.history.is_ready() {
        let set = app.policies.current();
        let live = set
            .policies
            .values()
            .filter(|p| !p.dry_run)
            .map(|p| p.name.as_str());
        let passed = crate::history::last_passed(app.history.summaries());
        // A policy without a pass counts from when its set was loaded (the first set
        // this replica saw it in, unless the first scrape came after a reload).
        let loaded = set.loaded_at.unwrap_or_else(chrono::Utc::now);
        app.metrics.coverage(live, &passed, loaded);
    }
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
