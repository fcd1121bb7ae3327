//! The console (DESIGN section 7): what havoc does, and the emergency stop, in a browser,
//! on the port the API already listens on.
//!
//! - Pages, server-rendered ([`pages`], compile-time templates) from plain views
//!   ([`view`]) and one SVG ([`timeline`]): `/` (now), `/timeline`, `/experiments`,
//!   `/experiments/{id}`, `/policies`, `/faults`, `/login`.
//! - Actions (POST, logged-in session and CSRF token required, see [`auth`]):
//!   `/stop` (the emergency stop: `Arbiter::stop_all`), `/resume` (all, or one policy;
//!   asks for confirmation), `/pause` (one policy, for a chosen duration), `/end` (end
//!   one running experiment: it reverts now), `/revert` (a held fault: its experiment
//!   is ended if it runs here, an
//!   orphaned record is reverted through [`crate::fault::revert`]), `/login`, `/logout`.
//!   Each answers with a redirect to a page (a one-time message in a cookie).
//! - Live updates: `/events` is a Server-Sent Events stream that says when what the pages
//!   show changed (checked every [`LIVE_CHECK`]); `console.js` then fetches the page again
//!   and swaps the parts marked `data-live`, unless the user is typing in them. A stream
//!   ends itself after [`STREAM_LIFETIME`] (the browser reconnects at once), inside the
//!   server's connection lifetime.
//! - Assets (CSS, JS, icon) are compiled into the binary; no JavaScript build step.
//!
//! Links are relative to the page, so the console works behind `kubectl port-forward`
//! and under an Ingress path prefix (which the Ingress strips).
//!
//! It reads the history only through [`History`], and everything else through read-only
//! views the engine publishes: pauses and running experiments (the arbiter), the shared
//! state (the last stop), the revert records in the watch caches ([`ClusterFaults`]),
//! health readings ([`Readings`]), and the last refused reload ([`ReloadStatus`]).

pub mod auth;
pub mod pages;
#[cfg(test)]
mod tests;
pub mod timeline;
pub mod view;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    Extension, Form, Router,
    extract::{
        ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State,
        rejection::FormRejection,
    },
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header, request},
    middleware::{self, Next},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use maud::Markup;
use serde::{Deserialize, de::DeserializeOwned};

use self::{
    auth::{FLASH_COOKIE, Keys, LOGIN_COOKIE, LoginLimiter, SESSION_COOKIE, Session},
    pages::{Filter, PAGE_SIZE, PolicyRow, Viewer},
    view::{Chaos, Live, RunningView},
};
use super::{App, MAX_REASON_CHARS};
use crate::{
    engine::health::Readings,
    fault::{Held, recovery},
    history::{History, Query as HistoryQuery, Summary},
    policy::{Config, duration::HumanDuration},
    record::ObjectRef,
    reload::ReloadStatus,
    schedule::stable_hash,
    state::SharedState,
    targets::cache::Caches,
};

/// How often the event stream checks whether anything shown changed.
pub const LIVE_CHECK: Duration = Duration::from_millis(250);
/// The event stream reads the history every this many checks (once a second).
const HISTORY_CHECKS: u32 = 4;
/// An event stream ends after this; the browser reconnects at once. Shorter than the
/// server's connection lifetime (60 s), which would otherwise cut it.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(45);
/// How long "revert now" waits for an orphaned record's revert.
const REVERT_TIMEOUT: Duration = Duration::from_secs(8);

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// The revert records in the cluster, as the recovery watches see them.
pub trait ClusterFaults: Send + Sync {
    /// Every record; `None` while the watches have not listed.
    fn found(&self) -> Option<recovery::Found>;
}

/// The watch caches the recovery sweep reads, read the same way: live (a revert shows at
/// the next page update, not at the next sweep 30 s later) and without another request
/// to the API server.
impl ClusterFaults for Caches {
    fn found(&self) -> Option<recovery::Found> {
        self.recovery_synced().then(|| recovery::in_caches(self))
    }
}

/// Fixed records (tests, benchmarks).
impl ClusterFaults for recovery::Found {
    fn found(&self) -> Option<recovery::Found> {
        Some(self.clone())
    }
}

/// What the console reads besides the API's parts, and its logins.
pub struct Console {
    pub parts: Parts,
    keys: Keys,
    limiter: LoginLimiter,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

/// Everything a [`Console`] is built from.
pub struct Parts {
    pub config: Arc<Config>,
    pub shared: SharedState,
    pub faults: Arc<dyn ClusterFaults>,
    pub health: Readings,
    pub reload: ReloadStatus,
    /// Reverts orphaned records ("revert now"); `None`: that action is off.
    pub client: Option<kube::Client>,
    /// This replica's pod (`POD_NAME`).
    pub pod: Option<String>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

impl Console {
    /// The console; `token` is the API token (sessions are signed with a key derived
    /// from it; without it nobody logs in and the console is read-only).
    pub fn new(parts: Parts, token: Option<&str>) -> Self {
        Console {
            parts,
            keys: Keys::new(token),
            limiter: LoginLimiter::default(),
        }
    }

    /// Whether reading needs a login (`server.readRequiresToken`).
    pub fn read_requires_token(&self) -> bool {
        self.parts.config.server.read_requires_token
    }
}

type Shared = State<Arc<App>>;

/// The console's routes, with the security headers on every answer.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(now_page))
        .route("/timeline", get(timeline_page))
        .route("/experiments", get(experiments_page))
        .route("/experiments/{id}", get(experiment_page))
        .route("/policies", get(policies_page))
        .route("/faults", get(faults_page))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        // Actions sit at the top level, beside the pages: a cookie set by their answer
        // (the one-time message) has the pages' default path, under any prefix.
        .route("/stop", post(stop))
        .route("/resume", post(resume))
        .route("/pause", post(pause))
        .route("/end", post(cut))
        .route("/revert", post(revert))
        .route("/events", get(events))
        .route("/assets/{name}", get(asset))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    auth::secure_headers(res.headers_mut());
    res
}

/// The console's root relative to a page at `path`: `./` at the top, `../` one down.
pub fn root(path: &str) -> String {
    let depth = path.trim_start_matches('/').matches('/').count();
    if depth == 0 {
        "./".to_string()
    } else {
        "../".repeat(depth)
    }
}

/// The client's address, when the server knows it.
type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

fn peer_ip(peer: &Peer) -> Option<IpAddr> {
    peer.as_ref().map(|Extension(ConnectInfo(a))| a.ip())
}

/// The request's session and the viewer built from it.
struct Ctx {
    viewer: Viewer,
    tls: bool,
    had_flash: bool,
}

impl Ctx {
    fn new(app: &App, headers: &HeaderMap, uri: &Uri) -> Self {
        let keys = &app.console.keys;
        let session =
            auth::cookie(headers, SESSION_COOKIE).and_then(|c| keys.verify(c, Utc::now()));
        let flash = auth::cookie(headers, FLASH_COOKIE)
            .and_then(|f| B64.decode(f).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .map(|f| f.chars().take(500).collect::<String>());
        Ctx {
            viewer: Viewer {
                root: root(uri.path()),
                csrf: session.as_ref().map(|s| keys.csrf(s)).unwrap_or_default(),
                session,
                login_enabled: keys.enabled(),
                flash: flash.clone(),
                digest: String::new(),
            },
            tls: auth::over_tls(headers),
            had_flash: flash.is_some() || auth::cookie(headers, FLASH_COOKIE).is_some(),
        }
    }

    /// Pages need a login when `server.readRequiresToken` says so.
    fn may_read(&self, app: &App) -> bool {
        !app.console.read_requires_token() || self.viewer.session.is_some()
    }

    fn page(&self, status: StatusCode, markup: Markup) -> Response {
        let mut res = (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            markup.into_string(),
        )
            .into_response();
        if self.had_flash {
            res.headers_mut().append(
                header::SET_COOKIE,
                auth::set_cookie(FLASH_COOKIE, "", None, self.tls),
            );
        }
        res
    }

    fn to_login(&self) -> Response {
        redirect(&format!("{}login", self.viewer.root), None, self.tls)
    }
}

/// A 303 to `location` (relative to the request), with an optional one-time message.
fn redirect(location: &str, flash: Option<&str>, tls: bool) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(f) = flash {
        res.headers_mut().append(
            header::SET_COOKIE,
            auth::set_cookie(FLASH_COOKIE, &B64.encode(f), Some(30), tls),
        );
    }
    res
}

/// Reads everything the pages show that is not the history.
pub fn live(app: &App) -> Live {
    live_with(app, true)
}

/// [`live`]; `with_policies: false` leaves out the policies' views (their next 24 hours
/// of fires cost the most, and the event stream's checks do not need them).
fn live_with(app: &App, with_policies: bool) -> Live {
    let now = Utc::now();
    let c = &app.console.parts;
    let pauses = app.arbiter.pauses();
    let doc = c.shared.doc();
    let chaos = Chaos::of(
        doc.is_some(),
        pauses.all.clone(),
        doc.as_ref().and_then(|d| d.stopped_at),
    );
    let running: Vec<RunningView> = app
        .arbiter
        .running()
        .into_iter()
        .map(|(id, policy)| RunningView {
            started: view::started_from_id(&id),
            id,
            policy,
        })
        .collect();
    let found = c.faults.found();
    let owner = c.config.owner();
    let (held, unreadable) = match &found {
        Some(f) => (
            view::held_views(f, &owner, &running, now),
            f.unreadable.clone(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let (rejected, applied_at) = c.reload.get();
    let set = app.policies.current();
    let policies = if with_policies {
        set.policies
            .values()
            .map(|p| view::policy_view(p, app.next_fires.get(&p.name), now))
            .collect()
    } else {
        Vec::new()
    };
    Live {
        now,
        tz: c.config.timezone,
        chaos,
        leader: app.leader.is_leader(),
        pod: c.pod.clone(),
        running,
        policy_pauses: pauses.policies,
        held,
        unreadable,
        faults_synced: found.is_some(),
        sources: view::sources(&c.config, &c.health.snapshot()),
        breaker_cooldown: c.config.circuit_breaker_cooldown,
        rejected,
        applied_at,
        grafana: c.config.server.grafana_url.clone(),
        policies,
    }
}

/// A fingerprint of what the pages show: when it changes, the event stream says so.
pub async fn digest(app: &App) -> String {
    digest_with(app, &newest(app).await)
}

/// The newest experiment in the history (id and verdict): a new record changes it.
pub async fn newest(app: &App) -> Option<(String, &'static str)> {
    app.history
        .list(&HistoryQuery {
            limit: Some(1),
            ..HistoryQuery::default()
        })
        .await
        .ok()
        .and_then(|v| v.into_iter().next())
        .map(|s| (s.id, s.verdict.label()))
}

/// [`digest`] with the history's newest experiment already read.
fn digest_with(app: &App, newest: &Option<(String, &'static str)>) -> String {
    let live = live_with(app, false);
    let held: Vec<(&ObjectRef, &str, String)> = live
        .held
        .iter()
        .map(|h| {
            (
                &h.held.object,
                h.held.record.experiment.as_str(),
                format!("{:?}", h.holder),
            )
        })
        .collect();
    let readings: Vec<(&String, Option<DateTime<Utc>>)> = live
        .sources
        .iter()
        .map(|s| (&s.name, s.last.as_ref().map(|r| r.at)))
        .collect();
    let text = format!(
        "{:?}|{}|{:?}|{:?}|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}",
        live.chaos,
        live.leader,
        live.running,
        live.policy_pauses,
        held,
        live.unreadable.len(),
        newest,
        app.policies.current().loaded_at,
        live.rejected.as_ref().map(|r| r.at),
        live.applied_at,
        readings,
    );
    format!("{:016x}", stable_hash(&text))
}

/// What every page handler starts from: the request's context, with the digest of what
/// the page shows, and the live state. Where reading needs a login and the request has
/// none, the answer is a redirect to the login page.
struct Page {
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

async fn now_page(State(app): Shared, Page { ctx, live }: Page) -> Response {
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

async fn timeline_page(State(app): Shared, Page { ctx, live }: Page) -> Response {
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

async fn experiments_page(
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

async fn experiment_page(
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

async fn policies_page(State(app): Shared, Page { ctx, live }: Page) -> Response {
    let names: Vec<String> = live.policies.iter().map(|p| p.name.clone()).collect();
    let last = match last_of_each(app.history.as_ref(), &names).await {
        Ok(l) => l,
        Err(e) => return history_error(&ctx, &live, e),
    };
    let rows: Vec<PolicyRow> = live
        .policies
        .iter()
        .zip(&last)
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
        .collect();
    ctx.page(
        StatusCode::OK,
        pages::policies_page(&ctx.viewer, &live, &rows),
    )
}

async fn faults_page(Page { ctx, live }: Page) -> Response {
    ctx.page(StatusCode::OK, pages::faults_page(&ctx.viewer, &live))
}

async fn login_form(State(app): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&app, &headers, &uri);
    login_answer(&app, &ctx, StatusCode::OK, None)
}

/// The login form with a fresh CSRF nonce (also set as a cookie: double submit).
fn login_answer(app: &App, ctx: &Ctx, status: StatusCode, error: Option<&str>) -> Response {
    let live = live(app);
    let nonce = auth::random_token(24);
    let mut res = ctx.page(status, pages::login_page(&ctx.viewer, &live, &nonce, error));
    res.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(LOGIN_COOKIE, &nonce, Some(3600), ctx.tls),
    );
    res
}

#[derive(Debug, Deserialize)]
struct LoginForm {
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

async fn login(
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
    if expected.is_empty() || !super::same(expected.as_bytes(), form.csrf.as_bytes()) {
        return forbidden(auth::Refusal::BadCsrf);
    }
    let Some(token) = &app.token else {
        return login_answer(&app, &ctx, StatusCode::FORBIDDEN, None);
    };
    let ip = peer_ip(&peer);
    if let Err(wait) = app.console.limiter.attempt(ip, std::time::Instant::now()) {
        tracing::warn!(client = ?ip, "console login refused: too many attempts");
        let mut res = login_answer(
            &app,
            &ctx,
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
    if !super::same(form.token.as_bytes(), token.expose().as_bytes()) {
        tracing::warn!(client = ?ip, "console login failed: wrong token");
        return login_answer(&app, &ctx, StatusCode::UNAUTHORIZED, Some("Wrong token."));
    }
    let identity = auth::identity(&form.name, ip);
    let Some((_, cookie)) = app.console.keys.issue(&identity, Utc::now()) else {
        return login_answer(&app, &ctx, StatusCode::FORBIDDEN, None);
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
struct Action<F> {
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

async fn logout(State(app): Shared, Action { ctx, session, .. }: Action<()>) -> Response {
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
struct StopForm {
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

async fn stop(State(app): Shared, Action { ctx, session, form }: Action<StopForm>) -> Response {
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
struct ResumeForm {
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    policy: String,
}

async fn resume(State(app): Shared, Action { ctx, session, form }: Action<ResumeForm>) -> Response {
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
struct PauseForm {
    #[serde(default)]
    policy: String,
    #[serde(default, rename = "for")]
    for_: String,
    #[serde(default)]
    reason: String,
}

async fn pause(State(app): Shared, Action { ctx, session, form }: Action<PauseForm>) -> Response {
    let location = format!("{}policies", ctx.viewer.root);
    if app.policies.current().get(&form.policy).is_none() {
        return redirect(&location, Some("No such policy."), ctx.tls);
    }
    let until = match form.for_.as_str() {
        "" => None,
        d if super::pause_for_form(d) => match d.parse::<HumanDuration>() {
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
struct CutForm {
    #[serde(default)]
    experiment: String,
}

async fn cut(State(app): Shared, Action { ctx, session, form }: Action<CutForm>) -> Response {
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
struct RevertForm {
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

async fn revert(State(app): Shared, Action { ctx, session, form }: Action<RevertForm>) -> Response {
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
                match tokio::time::timeout(REVERT_TIMEOUT, crate::fault::revert(&m, held)).await {
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

/// `/events`: a Server-Sent Events stream with one `change` event (the digest) at once
/// and one whenever the digest changes.
async fn events(State(app): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&app, &headers, &uri);
    if !ctx.may_read(&app) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let deadline = tokio::time::Instant::now() + STREAM_LIFETIME;
    // The live state is checked every LIVE_CHECK; the history (a list query) every
    // HISTORY_CHECKS of them, at most a second apart. A finished experiment also leaves
    // the running list at once; only skipped ones are seen by the history check alone.
    let stream = futures::stream::unfold(
        (app, None::<String>, None, 0u32),
        move |(app, last, mut newest_seen, mut tick)| async move {
            loop {
                if last.is_some() {
                    if tokio::time::Instant::now() >= deadline {
                        return None;
                    }
                    tokio::time::sleep(LIVE_CHECK).await;
                }
                if last.is_none() || tick % HISTORY_CHECKS == 0 {
                    newest_seen = newest(&app).await;
                }
                tick = tick.wrapping_add(1);
                let d = digest_with(&app, &newest_seen);
                if last.as_ref() != Some(&d) {
                    let event = Event::default()
                        .event("change")
                        .data(d.clone())
                        .retry(Duration::from_secs(1));
                    let next = (app, Some(d), newest_seen, tick);
                    return Some((Ok::<_, std::convert::Infallible>(event), next));
                }
            }
        },
    );
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn asset(Path(name): Path<String>) -> Response {
    let (media, body) = match name.as_str() {
        "console.css" => ("text/css; charset=utf-8", CSS),
        "console.js" => ("text/javascript; charset=utf-8", JS),
        "favicon.svg" => ("image/svg+xml", FAVICON),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, media),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
