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
//! The pages' handlers are in `read`, the actions' (and the login's) in `actions`; the
//! routes, the request context, the live state and its digest are here.
//!
//! Links are relative to the page, so the console works behind `kubectl port-forward`
//! and under an Ingress path prefix (which the Ingress strips).
//!
//! It reads the history only through [`History`](crate::history::History), and everything
//! else through read-only views the engine publishes: pauses and running experiments (the
//! arbiter), the shared state (the last stop), the revert records in the watch caches
//! ([`ClusterFaults`]), health readings ([`Readings`]), and the last refused reload
//! ([`ReloadStatus`]).

mod actions;
pub mod auth;
pub mod pages;
mod read;
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
    Extension, Router,
    extract::{ConnectInfo, Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    middleware::{self, Next},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use maud::Markup;

pub use self::{
    actions::{RevertPlan, revert_plan},
    read::{ListParams, last_of_each, list_page, list_query, policy_rows, timeline_svg},
};
use self::{
    auth::{FLASH_COOKIE, Keys, LoginLimiter, SESSION_COOKIE},
    pages::Viewer,
    view::{Chaos, Live, RunningView},
};
use super::App;
use crate::{
    engine::health::Readings, fault::recovery, history::Query as HistoryQuery, policy::Config,
    record::ObjectRef, reload::ReloadStatus, schedule::stable_hash, state::SharedState,
    targets::cache::Caches,
};

/// How often the event stream checks whether anything shown changed.
pub const LIVE_CHECK: Duration = Duration::from_millis(250);
/// The event stream reads the history every this many checks (once a second).
const HISTORY_CHECKS: u32 = 4;
/// An event stream ends after this; the browser reconnects at once. Shorter than the
/// server's connection lifetime (60 s), which would otherwise cut it.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(45);

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
    /// Reverts orphaned records ("revert now"), behind the fence (`client::fenced`);
    /// `None`: that action is off.
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
        .route("/", get(read::now_page))
        .route("/timeline", get(read::timeline_page))
        .route("/experiments", get(read::experiments_page))
        .route("/experiments/{id}", get(read::experiment_page))
        .route("/policies", get(read::policies_page))
        .route("/faults", get(read::faults_page))
        .route("/login", get(actions::login_form).post(actions::login))
        .route("/logout", post(actions::logout))
        // Actions sit at the top level, beside the pages: a cookie set by their answer
        // (the one-time message) has the pages' default path, under any prefix.
        .route("/stop", post(actions::stop))
        .route("/resume", post(actions::resume))
        .route("/pause", post(actions::pause))
        .route("/end", post(actions::cut))
        .route("/revert", post(actions::revert))
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
        namespace_budgets: c
            .config
            .limits
            .namespace_budget
            .as_ref()
            .filter(|_| with_policies && app.history.is_ready())
            .map(|b| {
                let named =
                    crate::api::budgets::named_namespaces(set.policies.values().map(AsRef::as_ref));
                let spends = crate::history::ledger::spends(b, app.history.as_ref(), named, now);
                (b.per.as_secs(), spends)
            }),
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
