//! HTTP (DESIGN section 7): metrics, probes, and the API. Mutating endpoints need
//! `Authorization: Bearer <server.token>`; without a configured token they are off.

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
        arbiter::{Arbiter, Start},
        experiment::Snapshot,
    },
    journal::TriggerInfo,
};

/// Default and largest `limit` of `GET /api/v1/experiments`.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

/// What `/readyz` reports.
pub trait Readiness: Send + Sync {
    /// Why the service is not ready, or `None`.
    fn not_ready(&self) -> Vec<String>;
}

struct App<S> {
    arbiter: Arc<Arbiter<S>>,
    token: Option<SecretString>,
    readiness: Arc<dyn Readiness>,
}

/// The router, for tests and for [`serve`].
pub fn router<S: Snapshot + Send + Sync + 'static>(
    arbiter: Arc<Arbiter<S>>,
    token: Option<SecretString>,
    readiness: Arc<dyn Readiness>,
) -> Router {
    let app = Arc::new(App {
        arbiter,
        token,
        readiness,
    });
    Router::new()
        .route("/metrics", get(metrics::<S>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<S>))
        .route("/api/v1/policies", get(policies::<S>))
        .route("/api/v1/policies/{name}/run", post(run_policy::<S>))
        .route("/api/v1/experiments", get(experiments::<S>))
        .route("/api/v1/pause", post(pause::<S>))
        .route("/api/v1/resume", post(resume::<S>))
        .with_state(app)
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
pub async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| anyhow::anyhow!("server.listen {listen:?}: {e}"))?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

type Shared<S> = State<Arc<App<S>>>;

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

/// Constant-time comparison, so the token cannot be guessed byte by byte from timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize<S>(app: &App<S>, headers: &HeaderMap) -> Result<(), ApiError> {
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

async fn metrics<S: Snapshot + Send + Sync + 'static>(State(app): Shared<S>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.arbiter.metrics().encode(),
    )
        .into_response()
}

async fn readyz<S: Snapshot + Send + Sync + 'static>(State(app): Shared<S>) -> Response {
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
    paused: Option<crate::engine::arbiter::Pause>,
    running: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last: Option<LastRun>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    recent_triggers: Vec<crate::engine::arbiter::TriggerView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LastRun {
    id: String,
    verdict: &'static str,
    ended_at: DateTime<Utc>,
}

async fn policies<S: Snapshot + Send + Sync + 'static>(State(app): Shared<S>) -> Response {
    let arbiter = &app.arbiter;
    let set = arbiter.policies();
    let pauses = arbiter.pauses();
    let running = arbiter.running();
    let recent = arbiter.journal().newest(MAX_LIMIT);
    let views: Vec<PolicyView> = set
        .policies
        .values()
        .map(|p| PolicyView {
            name: p.name.clone(),
            file: p.file.display().to_string(),
            fault: p.fault.name(),
            dry_run: crate::engine::experiment::is_dry_run(arbiter.config(), p),
            next_fire_at: arbiter.next_fire(&p.name).and_then(|t| {
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
                verdict: r.verdict.as_str(),
                ended_at: r.ended_at,
            }),
            recent_triggers: arbiter.recent_triggers(&p.name),
        })
        .collect();
    Json(json!({
        "leader": arbiter.is_leader(),
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

async fn experiments<S: Snapshot + Send + Sync + 'static>(
    State(app): Shared<S>,
    Query(q): Query<LimitQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    Json(app.arbiter.journal().newest(limit)).into_response()
}

async fn run_policy<S: Snapshot + Send + Sync + 'static>(
    State(app): Shared<S>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&app, &headers)?;
    let Some(policy) = app.arbiter.policies().policies.get(&name).cloned() else {
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
            Json(json!({"id": id, "started": false, "reason": reason})),
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

fn known_policy<S: Snapshot + Send + Sync + 'static>(
    app: &App<S>,
    policy: Option<&str>,
) -> Result<(), ApiError> {
    match policy {
        Some(p) if !app.arbiter.policies().policies.contains_key(p) => Err(error(
            StatusCode::NOT_FOUND,
            format!("no policy named {p:?}"),
        )),
        _ => Ok(()),
    }
}

/// The common start of pause and resume: token, body, and a known policy if named.
fn pause_request<S: Snapshot + Send + Sync + 'static>(
    app: &App<S>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PauseBody, ApiError> {
    authorize(app, headers)?;
    let body = parse_body(body)?;
    known_policy(app, body.policy.as_deref())?;
    Ok(body)
}

async fn pause<S: Snapshot + Send + Sync + 'static>(
    State(app): Shared<S>,
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
    app.arbiter.pause(body.policy.as_deref(), until, reason);
    Ok(Json(app.arbiter.pauses()).into_response())
}

async fn resume<S: Snapshot + Send + Sync + 'static>(
    State(app): Shared<S>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body = pause_request(&app, &headers, &body)?;
    app.arbiter.resume(body.policy.as_deref());
    Ok(Json(app.arbiter.pauses()).into_response())
}
