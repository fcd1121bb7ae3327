//! The mutating endpoints: `POST /api/v1/policies/{name}/run`, `/api/v1/pause`,
//! `/api/v1/resume` and `/api/v1/stop` (the emergency stop), their bodies, the checks of
//! those bodies, and their answers.

use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ApiError, App, MAX_REASON_CHARS, Shared, authorize, bad_request, error, limits, quote,
    unavailable,
};
use crate::{
    engine::arbiter::{Pause, Start},
    policy::duration::HumanDuration,
    record::TriggerInfo,
};

fn unknown_policy(name: &str) -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        format!("no policy named {}", quote(name)),
    )
}

pub(super) async fn run_policy(
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
pub(super) struct RunStarted {
    id: String,
    #[schemars(extend("const" = true))]
    started: bool,
}

/// `409` of `POST /api/v1/policies/{name}/run`: the gate said no.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct RunSkipped {
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
pub(super) struct PauseBody {
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
pub(super) struct StopBody {
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

pub(super) async fn pause(
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

pub(super) async fn resume(
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
pub(super) async fn stop(
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
pub(super) struct StopView {
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
