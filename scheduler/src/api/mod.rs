//! The HTTP layer of the service (DESIGN section 7): metrics, probes, and the API.
//! Mutating endpoints need `Authorization: Bearer <server.token>`; without a configured
//! token they are off. It reads what the engine publishes (policies, pauses, running
//! experiments, next fires, recent triggers, the journal) and asks the arbiter to act.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use havoc_integrations::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    engine::{
        arbiter::{Arbiter, Pause, Start},
        clock::NextFires,
        metrics::Metrics,
        policies::Policies,
    },
    journal::Journal,
    leader::Leadership,
    record::TriggerInfo,
    trigger::{RecentTriggers, TriggerView},
};

/// Default and largest `limit` of `GET /api/v1/experiments`.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

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
    pub metrics: Metrics,
    pub next_fires: NextFires,
    pub triggers: RecentTriggers,
    pub leader: Leadership,
    pub token: Option<SecretString>,
    pub readiness: Arc<dyn Readiness>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

/// The router, for tests and for [`serve`].
pub fn router(app: App) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/policies", get(policies))
        .route("/api/v1/policies/{name}/run", post(run_policy))
        .route("/api/v1/experiments", get(experiments))
        .route("/api/v1/pause", post(pause))
        .route("/api/v1/resume", post(resume))
        .route("/api/v1/stop", post(stop))
        .with_state(Arc::new(app))
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

/// Binds `server.listen`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

type Shared = State<Arc<App>>;

/// An error answer: status and a JSON `{"error": ...}` body.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
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

/// Constant-time comparison, so the token cannot be guessed byte by byte from timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        .and_then(|v| v.strip_prefix("Bearer "));
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

async fn readyz(State(app): Shared) -> Response {
    let why = app.readiness.not_ready();
    if why.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reasons": why})),
        )
            .into_response()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyView {
    name: String,
    file: String,
    fault: &'static str,
    dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_fire_at: Option<DateTime<chrono::FixedOffset>>,
    scheduled: bool,
    rollout_triggers: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    paused: Option<Pause>,
    running: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last: Option<LastRun>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    recent_triggers: Vec<TriggerView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LastRun {
    id: String,
    verdict: &'static str,
    ended_at: DateTime<Utc>,
}

async fn policies(State(app): Shared) -> Response {
    let arbiter = &app.arbiter;
    let set = app.policies.current();
    let pauses = arbiter.pauses();
    let running = arbiter.running();
    let recent = app.journal.newest(MAX_LIMIT);
    let views: Vec<PolicyView> = set
        .policies
        .values()
        .map(|p| PolicyView {
            name: p.name.clone(),
            file: p.file.display().to_string(),
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
            last: recent.iter().find(|r| r.policy == p.name).map(|r| LastRun {
                id: r.id.clone(),
                verdict: r.verdict.label(),
                ended_at: r.ended_at,
            }),
            recent_triggers: app.triggers.of(&p.name),
        })
        .collect();
    Json(json!({
        "leader": app.leader.is_leader(),
        "paused": pauses.all,
        "loadedAt": set.loaded_at,
        "policies": views,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn experiments(State(app): Shared, Query(q): Query<LimitQuery>) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    Json(app.journal.newest(limit)).into_response()
}

async fn run_policy(
    State(app): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&app, &headers)?;
    let Some(policy) = app.policies.current().get(&name).cloned() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no policy named {name:?}"),
        ));
    };
    let trigger = TriggerInfo::Manual {
        source: "http".to_string(),
    };
    Ok(match app.arbiter.start(policy, trigger) {
        Start::Started { id } => (
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "started": true})),
        )
            .into_response(),
        Start::Skipped { id, reason } => (
            StatusCode::CONFLICT,
            Json(json!({
                "id": id,
                "started": false,
                "reason": reason.to_string(),
                "reasonCode": reason.label(),
            })),
        )
            .into_response(),
        Start::NotLeader => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this replica is not the leader",
        )
        .into_response(),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PauseBody {
    /// One policy; all chaos when absent.
    policy: Option<String>,
    reason: Option<String>,
    /// A duration like `2h`; until resumed when absent.
    #[serde(rename = "for")]
    for_: Option<crate::policy::duration::HumanDuration>,
}

fn parse_body(body: &[u8]) -> Result<PauseBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(PauseBody::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")))
}

fn known_policy(app: &App, policy: Option<&str>) -> Result<(), ApiError> {
    match policy {
        Some(p) if app.policies.current().get(p).is_none() => Err(error(
            StatusCode::NOT_FOUND,
            format!("no policy named {p:?}"),
        )),
        _ => Ok(()),
    }
}

/// The common start of pause and resume: token, body, and a known policy if named.
fn pause_request(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<PauseBody, ApiError> {
    authorize(app, headers)?;
    let body = parse_body(body)?;
    known_policy(app, body.policy.as_deref())?;
    Ok(body)
}

async fn pause(
    State(app): Shared,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body = pause_request(&app, &headers, &body)?;
    let until = body
        .for_
        .map(|d| Utc::now() + chrono::Duration::from_std(d.0).unwrap_or_default());
    let reason = body
        .reason
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
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body = pause_request(&app, &headers, &body)?;
    let view = app
        .arbiter
        .resume(body.policy.as_deref())
        .await
        .map_err(unavailable)?;
    Ok(Json(view).into_response())
}

/// The emergency stop: pauses all chaos (until resumed) and cuts every running
/// experiment short, so that each reverts what it holds now.
async fn stop(
    State(app): Shared,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body = pause_request(&app, &headers, &body)?;
    if body.policy.is_some() || body.for_.is_some() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "stop applies to all chaos until resumed: it takes only `reason`",
        ));
    }
    let reason = body
        .reason
        .unwrap_or_else(|| "emergency stop through the HTTP API".to_string());
    let reverted = app.arbiter.stop_all(reason).await.map_err(unavailable)?;
    let pauses = app.arbiter.pauses();
    Ok(Json(json!({
        "all": pauses.all,
        "policies": pauses.policies,
        "reverted": reverted,
    }))
    .into_response())
}
