//! The console's POSTs: the login and logout, and the actions of a logged-in session
//! (the extractor [`Action`] checks its CSRF token): the emergency stop, resume, pause,
//! ending one experiment, and "revert now" ([`revert_plan`] decides what that does).

use std::{sync::Arc, time::Duration};

use axum::{
    Form,
    extract::{FromRequest, Request, State, rejection::FormRejection},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde::{Deserialize, de::DeserializeOwned};

use super::{
    Ctx, Peer, Shared,
    auth::{self, LOGIN_COOKIE, SESSION_COOKIE, Session},
    live, pages, peer_ip, redirect,
    view::RunningView,
};
use crate::{
    api::{App, MAX_REASON_CHARS, pause_for_form, same},
    fault::Held,
    policy::duration::HumanDuration,
    record::ObjectRef,
};

/// How long "revert now" waits for an orphaned record's revert.
const REVERT_TIMEOUT: Duration = Duration::from_secs(8);

pub(super) async fn login_form(State(app): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&app, &headers, &uri);
    login_answer(&app, &ctx, &headers, StatusCode::OK, None)
}

/// The login form with its CSRF nonce, also set as a cookie (double submit).
///
/// The nonce the browser already holds is kept: the page's live updates fetch the login
/// page again whenever havoc's state changes, and a second tab may open it too; a new
/// nonce each time would replace the cookie under a form already shown, and that login
/// would fail with "wrong form token". Keeping it is as safe as a fresh one: the cookie
/// is HttpOnly and SameSite=Strict, so a page that could not read or set it before
/// cannot now.
fn login_answer(
    app: &App,
    ctx: &Ctx,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let live = live(app);
    let nonce = auth::cookie(headers, LOGIN_COOKIE)
        .filter(|c| auth::is_login_nonce(c))
        .map_or_else(auth::login_nonce, str::to_string);
    let mut res = ctx.page(status, pages::login_page(&ctx.viewer, &live, &nonce, error));
    res.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(LOGIN_COOKIE, &nonce, Some(3600), ctx.tls),
    );
    res
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
}

fn forbidden(why: auth::Refusal) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "403 forbidden: {why}. Open the console page again{}.\n",
            if why == auth::Refusal::NoSession {
                " and log in"
            } else {
                ""
            }
        ),
    )
        .into_response()
}

pub(super) async fn login(
    State(app): Shared,
    headers: HeaderMap,
    uri: Uri,
    peer: Peer,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let ctx = Ctx::new(&app, &headers, &uri);
    if auth::cross_site(&headers) {
        return forbidden(auth::Refusal::CrossSite);
    }
    let Ok(Form(form)) = form else {
        return forbidden(auth::Refusal::BadCsrf);
    };
    let expected = auth::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(expected.as_bytes(), form.csrf.as_bytes()) {
        return forbidden(auth::Refusal::BadCsrf);
    }
    let Some(token) = &app.token else {
        return login_answer(&app, &ctx, &headers, StatusCode::FORBIDDEN, None);
    };
    let ip = peer_ip(&peer);
    if let Err(wait) = app.console.limiter.attempt(ip, std::time::Instant::now()) {
        tracing::warn!(client = ?ip, "console login refused: too many attempts");
        let mut res = login_answer(
            &app,
            &ctx,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many login attempts: try again in {} s.",
                wait.as_secs().max(1)
            )),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    if !same(form.token.as_bytes(), token.expose().as_bytes()) {
        tracing::warn!(client = ?ip, "console login failed: wrong token");
        return login_answer(
            &app,
            &ctx,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("Wrong token."),
        );
    }
    let identity = auth::identity(&form.name, ip);
    let Some((_, cookie)) = app.console.keys.issue(&identity, Utc::now()) else {
        return login_answer(&app, &ctx, &headers, StatusCode::FORBIDDEN, None);
    };
    tracing::info!(%identity, "console login");
    let mut res = redirect(&ctx.viewer.root, Some("Logged in."), ctx.tls);
    res.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(
            SESSION_COOKIE,
            &cookie,
            Some(auth::SESSION_LIFETIME.num_seconds()),
            ctx.tls,
        ),
    );
    res.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(LOGIN_COOKIE, "", None, ctx.tls),
    );
    res
}

/// An action's form: the CSRF token every action form carries, and the action's own
/// fields.
#[derive(Debug, Deserialize)]
struct Signed<F> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    fields: F,
}

/// What every action handler starts from: the request's context, the session that sent
/// it and its form's fields. Refused with 403 unless [`authorize`] admits the request
/// with the form's CSRF token (a form that does not parse has none).
pub(super) struct Action<F> {
    ctx: Ctx,
    session: Session,
    form: F,
}

impl<F: DeserializeOwned + Send> FromRequest<Arc<App>> for Action<F> {
    type Rejection = Response;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let ctx = Ctx::new(app, &headers, req.uri());
        let form = Form::<Signed<F>>::from_request(req, app).await;
        let csrf = form.as_ref().ok().map(|Form(f)| f.csrf.as_str());
        let session = authorize(&ctx, app, &headers, csrf).map_err(forbidden)?;
        let Ok(Form(form)) = form else {
            return Err(StatusCode::BAD_REQUEST.into_response());
        };
        Ok(Action {
            ctx,
            session,
            form: form.fields,
        })
    }
}

/// The session of a mutating request, after its CSRF token: 403 otherwise.
fn authorize(
    ctx: &Ctx,
    app: &App,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<Session, auth::Refusal> {
    if auth::cross_site(headers) {
        return Err(auth::Refusal::CrossSite);
    }
    let Some(session) = ctx.viewer.session.clone() else {
        return Err(auth::Refusal::NoSession);
    };
    match csrf {
        Some(t) if app.console.keys.csrf_ok(&session, t) => Ok(session),
        _ => Err(auth::Refusal::BadCsrf),
    }
}

pub(super) async fn logout(
    State(app): Shared,
    Action { ctx, session, .. }: Action<()>,
) -> Response {
    app.console.keys.revoke(&session, Utc::now());
    tracing::info!(identity = %session.identity, "console logout");
    let mut res = redirect(&ctx.viewer.root, Some("Logged out."), ctx.tls);
    res.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(SESSION_COOKIE, "", None, ctx.tls),
    );
    res
}

/// The pages an action may return to.
fn back(page: &str) -> &'static str {
    match page {
        "policies" => "policies",
        "faults" => "faults",
        "timeline" => "timeline",
        _ => "",
    }
}

fn state_unavailable(ctx: &Ctx, e: crate::state::StateError) -> Response {
    tracing::warn!(error = %e, "console: cannot write the shared state");
    redirect(
        &ctx.viewer.root,
        Some(
            "The shared pause state cannot be written right now: nothing changed. Try again, or use `havoc revert --all`.",
        ),
        ctx.tls,
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct StopForm {
    #[serde(default)]
    reason: String,
}

fn reason_with(reason: &str, verb: &str, who: &str, default: &str) -> String {
    let reason: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS - 200)
        .collect();
    let reason = reason.trim();
    let reason = if reason.is_empty() { default } else { reason };
    format!("{reason} [{verb} by {who}]")
}

pub(super) async fn stop(
    State(app): Shared,
    Action { ctx, session, form }: Action<StopForm>,
) -> Response {
    if form.reason.trim().is_empty() {
        return redirect(
            &ctx.viewer.root,
            Some("The emergency stop needs a reason."),
            ctx.tls,
        );
    }
    let reason = reason_with(&form.reason, "stopped", &session.identity, "");
    tracing::warn!(identity = %session.identity, %reason, "emergency stop from the console");
    let stopped = app.arbiter.stop_all(reason).await;
    redirect(
        &ctx.viewer.root,
        Some(&format!(
            "Emergency stop: {} experiment(s) cut short here, their faults reverted; all chaos paused until resumed{}.",
            stopped.ids.len(),
            if stopped.written {
                ""
            } else {
                " (obeyed here at once; the pause reaches the other replicas as soon as the API server answers)"
            }
        )),
        ctx.tls,
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct ResumeForm {
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    policy: String,
}

pub(super) async fn resume(
    State(app): Shared,
    Action { ctx, session, form }: Action<ResumeForm>,
) -> Response {
    let policy = (!form.policy.is_empty()).then_some(form.policy.as_str());
    let target = if policy.is_some() { "policies" } else { "" };
    let location = format!("{}{target}", ctx.viewer.root);
    if form.confirm != "yes" {
        return redirect(
            &location,
            Some("Resuming needs confirmation: tick the box."),
            ctx.tls,
        );
    }
    if let Some(p) = policy
        && app.policies.current().get(p).is_none()
    {
        return redirect(&location, Some("No such policy."), ctx.tls);
    }
    tracing::warn!(identity = %session.identity, policy = policy.unwrap_or("*"), "chaos resumed from the console");
    match app.arbiter.resume(policy).await {
        Ok(_) => redirect(
            &location,
            Some(&match policy {
                Some(p) => format!("Policy {p} resumed."),
                None => "Chaos resumed: every pause is lifted.".to_string(),
            }),
            ctx.tls,
        ),
        Err(e) => state_unavailable(&ctx, e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct PauseForm {
    #[serde(default)]
    policy: String,
    #[serde(default, rename = "for")]
    for_: String,
    #[serde(default)]
    reason: String,
}

pub(super) async fn pause(
    State(app): Shared,
    Action { ctx, session, form }: Action<PauseForm>,
) -> Response {
    let location = format!("{}policies", ctx.viewer.root);
    if app.policies.current().get(&form.policy).is_none() {
        return redirect(&location, Some("No such policy."), ctx.tls);
    }
    let until = match form.for_.as_str() {
        "" => None,
        d if pause_for_form(d) => match d.parse::<HumanDuration>() {
            Ok(d) => Some(Utc::now() + chrono::Duration::from_std(d.0).unwrap_or_default()),
            Err(_) => return redirect(&location, Some("Invalid duration."), ctx.tls),
        },
        _ => return redirect(&location, Some("Invalid duration."), ctx.tls),
    };
    let reason = reason_with(
        &form.reason,
        "paused",
        &session.identity,
        "paused from the console",
    );
    match app.arbiter.pause(Some(&form.policy), until, reason).await {
        Ok(_) => redirect(
            &location,
            Some(&format!("Policy {} paused.", form.policy)),
            ctx.tls,
        ),
        Err(e) => state_unavailable(&ctx, e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CutForm {
    #[serde(default)]
    experiment: String,
}

pub(super) async fn cut(
    State(app): Shared,
    Action { ctx, session, form }: Action<CutForm>,
) -> Response {
    let flash = if app.arbiter.cut_short_one(&form.experiment) {
        tracing::warn!(identity = %session.identity, id = %form.experiment, "experiment ended from the console");
        format!("{} ended: its faults are being reverted.", form.experiment)
    } else {
        format!(
            "{} is not running here (it may have ended).",
            form.experiment
        )
    };
    redirect(&ctx.viewer.root, Some(&flash), ctx.tls)
}

#[derive(Debug, Deserialize)]
pub(super) struct RevertForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    experiment: String,
    #[serde(default)]
    back: String,
}

/// What "revert now" does with a held record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevertPlan {
    /// Its experiment runs here: end it (it reverts everything it holds).
    EndExperiment(String),
    /// Nobody here holds it: revert the record.
    Revert,
    /// This installation's record, and this replica does not lead: the leader may be
    /// running its experiment.
    AskTheLeader,
}

/// Decides what "revert now" does (pure).
pub fn revert_plan(held: &Held, owner: &str, running: &[RunningView], leader: bool) -> RevertPlan {
    let experiment = &held.record.experiment;
    if running.iter().any(|r| r.id == *experiment) {
        RevertPlan::EndExperiment(experiment.clone())
    } else if held.record.owner == owner && !leader {
        RevertPlan::AskTheLeader
    } else {
        RevertPlan::Revert
    }
}

pub(super) async fn revert(
    State(app): Shared,
    Action { ctx, session, form }: Action<RevertForm>,
) -> Response {
    let location = format!("{}{}", ctx.viewer.root, back(&form.back));
    let live = live(&app);
    let object = ObjectRef {
        kind: form.kind.clone(),
        namespace: (!form.namespace.is_empty()).then(|| form.namespace.clone()),
        name: form.name.clone(),
    };
    let Some(held) = live
        .held
        .iter()
        .map(|h| &h.held)
        .find(|h| h.object == object && h.record.experiment == form.experiment)
    else {
        return redirect(
            &location,
            Some("That revert record is gone: nothing to revert."),
            ctx.tls,
        );
    };
    let owner = app.console.parts.config.owner();
    let flash = match revert_plan(held, &owner, &live.running, live.leader) {
        RevertPlan::EndExperiment(id) => {
            app.arbiter.cut_short_one(&id);
            tracing::warn!(identity = %session.identity, %id, "revert now: experiment ended from the console");
            format!("{id} ended: it reverts what it holds now.")
        }
        RevertPlan::AskTheLeader => {
            "This replica does not lead; the leader may be running that experiment. Use the emergency stop, which reaches every replica.".to_string()
        }
        RevertPlan::Revert => match &app.console.parts.client {
            None => "Reverting is not available here.".to_string(),
            Some(client) => {
                tracing::warn!(identity = %session.identity, object = ?held.object, experiment = %held.record.experiment, "revert now from the console");
                // Through the leader's fence: a replica that no longer leads sends nothing.
                let m = crate::fault::Mutator::new(
                    client.clone(),
                    app.leader.clone(),
                    tokio_util::sync::CancellationToken::new(),
                );
                // After a lapse the fenced client drops its reads too: say "fenced", not
                // "connection closed".
                let reverting = async {
                    let r = crate::fault::revert(&m, held).await;
                    r.map_err(|e| m.or_fenced(e))
                };
                match tokio::time::timeout(REVERT_TIMEOUT, reverting).await {
                    Ok(Ok(r)) => {
                        app.metrics.revert(crate::engine::experiment::revert_result(&r));
                        format!(
                            "{} {}: {}{}",
                            held.object.kind,
                            held.object.name,
                            r.label(),
                            r.detail().map(|d| format!(" ({d})")).unwrap_or_default()
                        )
                    }
                    Ok(Err(e)) => {
                        app.metrics.revert(crate::record::RevertResult::Failed);
                        format!("The revert failed: {e}. The recovery sweep keeps trying.")
                    }
                    Err(_) => format!(
                        "The revert did not finish within {} s; the recovery sweep keeps trying.",
                        REVERT_TIMEOUT.as_secs()
                    ),
                }
            }
        },
    };
    redirect(&location, Some(&flash), ctx.tls)
}
