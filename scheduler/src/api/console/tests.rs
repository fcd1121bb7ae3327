//! The console through the router: what a visitor without a login sees (no mutating
//! control), forged and cross-site POSTs (403), the login (cookie flags, rate limit), the
//! emergency stop and resume, pauses, "revert now", and each page rendered from its views.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{Method, Request, header},
};
use chrono::{Duration, Utc};
use futures::StreamExt as _;
use serde_json::json;
use tower::ServiceExt as _;

use super::{RevertPlan, auth, revert_plan, root, view::RunningView};
use crate::{
    api::tests::Fixture,
    fault::{Held, recovery::Found, revert::RevertRecord},
    policy::fixtures,
    record::{
        AlertRecord, ObjectRef, RevertResult, SloRecord, TargetRevert, Verdict, tests::record,
    },
};

const TOKEN: &str = "console-token";

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    text: String,
}

impl Answer {
    fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    /// The value a `Set-Cookie` gives `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies().iter().find_map(|c| {
            c.split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A browser: its cookies and its address.
#[derive(Default, Clone)]
struct Browser {
    cookies: Vec<(String, String)>,
    peer: Option<SocketAddr>,
    headers: Vec<(&'static str, String)>,
}

impl Browser {
    fn from(ip: &str) -> Browser {
        Browser {
            peer: Some(SocketAddr::new(ip.parse().expect("ip"), 40000)),
            ..Browser::default()
        }
    }

    fn keep(&mut self, a: &Answer) {
        for c in a.cookies() {
            let Some((k, v)) = c.split(';').next().and_then(|kv| kv.split_once('=')) else {
                continue;
            };
            self.cookies.retain(|(n, _)| n != k);
            if !v.is_empty() {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
    }

    async fn send(
        &mut self,
        r: &axum::Router,
        method: Method,
        uri: &str,
        form: &[(&str, &str)],
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header(header::COOKIE, jar.join("; "));
        }
        for (k, v) in &self.headers {
            req = req.header(*k, v);
        }
        let body = if form.is_empty() {
            Body::empty()
        } else {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            let encoded: Vec<String> = form
                .iter()
                .map(|(k, v)| format!("{k}={}", super::timeline::query_value(v)))
                .collect();
            Body::from(encoded.join("&"))
        };
        let mut req = req.body(body).expect("request");
        if let Some(p) = self.peer {
            req.extensions_mut().insert(ConnectInfo(p));
        }
        let res = r.clone().oneshot(req).await.expect("infallible");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = if headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
        {
            // A stream that lasts: its first event only.
            let mut body = res.into_body().into_data_stream();
            let first = body.next().await.and_then(Result::ok).unwrap_or_default();
            String::from_utf8_lossy(&first).into_owned()
        } else {
            let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .expect("body");
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let a = Answer {
            status,
            headers,
            text,
        };
        self.keep(&a);
        a
    }

    async fn get(&mut self, r: &axum::Router, uri: &str) -> Answer {
        self.send(r, Method::GET, uri, &[]).await
    }

    async fn post(&mut self, r: &axum::Router, uri: &str, form: &[(&str, &str)]) -> Answer {
        self.send(r, Method::POST, uri, form).await
    }

    /// Logs in through the form; the session's CSRF token.
    async fn login(&mut self, r: &axum::Router, name: &str) -> String {
        let form = self.get(r, "/login").await;
        assert_eq!(form.status, 200);
        let csrf = form.cookie(auth::LOGIN_COOKIE).expect("login csrf cookie");
        let a = self
            .post(
                r,
                "/login",
                &[("csrf", &csrf), ("token", TOKEN), ("name", name)],
            )
            .await;
        assert_eq!(a.status, 303, "{}", a.text);
        let page = self.get(r, "/").await;
        csrf_of(&page.text).expect("a logged-in page carries its CSRF token")
    }
}

/// The CSRF token in a page's forms.
fn csrf_of(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf" value=""#)? + r#"name="csrf" value=""#.len();
    Some(html[at..].split('"').next()?.to_string())
}

fn held(kind: &str, name: &str, experiment: &str, owner: &str) -> Held {
    Held {
        object: ObjectRef::namespaced(kind, "shop", name),
        record: RevertRecord {
            experiment: experiment.into(),
            policy: "p".into(),
            fault: "scale".into(),
            original: json!({"replicas": 3, "set": 0}),
            deadline: Utc::now() + Duration::minutes(3),
            owner: owner.into(),
        },
    }
}

/// A console with the token, one policy `p`, three records, and two revert records.
fn fixture(read_requires_token: bool) -> Fixture {
    let mut config = fixtures::config()
        .set("/server/token", json!({"env": "HAVOC_API_TOKEN"}))
        .set(
            "/server/grafanaUrl",
            json!("https://grafana.example.com/d/havoc/havoc"),
        )
        .set("/limits/namespaceBudget", json!({"faultTime": "2m"}));
    if read_requires_token {
        config = config.set("/server/readRequiresToken", json!(true));
    }
    let config = config.build();
    let owner = config.owner();
    let found = Found {
        held: vec![
            held("Deployment", "web", "p-20261201T120000Z-0001", &owner),
            held("StatefulSet", "db", "e-other", "havoc-run/host-1"),
        ],
        unreadable: vec![(
            ObjectRef::namespaced("Deployment", "shop", "broken"),
            "not JSON".into(),
        )],
        ..Found::default()
    };
    let f = Fixture::custom(Some(TOKEN), config, Arc::new(found));
    let mut r = record("p-20261201T110000Z-00aa", Verdict::Deviated);
    r.started_at = Utc::now() - Duration::hours(1);
    r.injected_at = Some(r.started_at + Duration::seconds(1));
    r.reverted_at = Some(r.started_at + Duration::seconds(31));
    r.ended_at = r.started_at + Duration::seconds(40);
    r.targets[0].detail = Some("delete pod shop/web-1 (grace 0s)".into());
    r.targets[0].revert = Some(TargetRevert {
        result: RevertResult::Restored,
        object: ObjectRef::namespaced("Deployment", "shop", "web"),
        detail: None,
        at: r.started_at + Duration::seconds(31),
    });
    r.alerts.push(AlertRecord {
        name: "KubeDeploymentUnavailable".into(),
        fingerprint: "f1".into(),
        labels: [("namespace".to_string(), "shop".to_string())].into(),
        starts_at: r.started_at + Duration::seconds(10),
    });
    r.slos.push(SloRecord {
        name: "error-ratio".into(),
        value: Some(0.2),
        objective: "< 0.01".into(),
        breached: true,
        at: r.started_at + Duration::seconds(20),
    });
    r.budgets
        .push(crate::record::tests::budget_record("checkout"));
    f.journal.append(&r).expect("in memory");
    f
}

/// Every form that changes something, by its action.
const MUTATIONS: [&str; 6] = ["stop", "resume", "pause", "revert", "end", "logout"];

/// Whether a page has a form posting to `action`.
fn has_form(html: &str, action: &str) -> bool {
    html.contains(&format!("action=\"./{action}\""))
        || html.contains(&format!("action=\"../{action}\""))
}

#[tokio::test]
async fn without_login_every_page_renders_and_no_mutating_control_is_there() {
    let mut f = fixture(false);
    let r = f.router();
    let mut b = Browser::default();
    for path in [
        "/",
        "/timeline",
        "/experiments",
        "/experiments/p-20261201T110000Z-00aa",
        "/policies",
        "/faults",
        "/login",
    ] {
        let a = b.get(&r, path).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
        assert_eq!(
            a.headers[header::CONTENT_TYPE],
            "text/html; charset=utf-8",
            "{path}"
        );
        let csp = a.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("csp");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert!(!a.text.contains("<script>"), "{path}: no inline script");
        assert!(!a.text.contains("style=\""), "{path}: no inline style");
        for m in MUTATIONS {
            assert!(
                !has_form(&a.text, m),
                "{path}: the control {m} is shown without a login"
            );
        }
        if path != "/login" {
            assert!(a.text.contains("Log in"), "{path}");
        }
    }
}

#[tokio::test]
async fn forged_posts_are_refused_and_change_nothing() {
    let mut f = fixture(false);
    let r = f.router();
    let arbiter = f.arbiter.clone();
    // No session at all.
    let mut stranger = Browser::default();
    for action in MUTATIONS {
        let a = stranger
            .post(
                &r,
                &format!("/{action}"),
                &[("reason", "x"), ("confirm", "yes")],
            )
            .await;
        assert_eq!(a.status, 403, "{action} without a session");
    }
    // A session, but no CSRF token, a wrong one, or another session's.
    let mut user = Browser::from("10.0.0.1");
    let csrf = user.login(&r, "alice").await;
    let mut other = Browser::from("10.0.0.2");
    let other_csrf = other.login(&r, "bob").await;
    assert_ne!(csrf, other_csrf);
    for bad in ["", "nonsense", other_csrf.as_str()] {
        let a = user
            .post(&r, "/stop", &[("csrf", bad), ("reason", "forged")])
            .await;
        assert_eq!(a.status, 403, "csrf {bad:?}");
    }
    // A cross-site request, even with the right token.
    let mut cross = user.clone();
    cross.headers.push(("sec-fetch-site", "cross-site".into()));
    let a = cross
        .post(&r, "/stop", &[("csrf", &csrf), ("reason", "forged")])
        .await;
    assert_eq!(a.status, 403);
    assert!(arbiter.pauses().all.is_none(), "nothing was paused");
    // A login without its CSRF cookie.
    let mut fresh = Browser::from("10.0.0.3");
    let a = fresh
        .post(&r, "/login", &[("csrf", "x"), ("token", TOKEN)])
        .await;
    assert_eq!(a.status, 403);
    assert!(a.cookie(auth::SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn the_login_form_survives_its_page_being_fetched_again() {
    // The live updates fetch the login page again when havoc's state changes, and a
    // second tab may open it: the form already shown must still log in.
    let mut f = fixture(false);
    let r = f.router();
    let mut b = Browser::from("10.0.0.12");
    let shown = b.get(&r, "/login").await;
    let csrf = shown.cookie(auth::LOGIN_COOKIE).expect("csrf cookie");
    let again = b.get(&r, "/login").await;
    assert_eq!(again.cookie(auth::LOGIN_COOKIE).as_deref(), Some(&*csrf));
    let ok = b
        .post(
            &r,
            "/login",
            &[("csrf", &csrf), ("token", TOKEN), ("name", "bob")],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    // A cookie no login form made (planted, or garbage) is replaced, not echoed.
    for planted in ["x", "AAAA", "not base64 !"] {
        let mut other = Browser::from("10.0.0.13");
        other
            .cookies
            .push((auth::LOGIN_COOKIE.to_string(), planted.to_string()));
        let form = other.get(&r, "/login").await;
        let nonce = form.cookie(auth::LOGIN_COOKIE).expect("a fresh csrf");
        assert_ne!(nonce, planted);
        assert!(auth::is_login_nonce(&nonce), "{nonce}");
        assert!(!form.text.contains(&format!("value=\"{planted}\"")));
    }
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_is_rate_limited() {
    let mut f = fixture(false);
    let r = f.router();
    let mut b = Browser::from("10.0.0.9");
    b.headers.push(("x-forwarded-proto", "https".into()));
    let form = b.get(&r, "/login").await;
    let csrf = form.cookie(auth::LOGIN_COOKIE).expect("csrf cookie");
    assert!(form.text.contains(&format!("value=\"{csrf}\"")));
    let wrong = b
        .post(&r, "/login", &[("csrf", &csrf), ("token", "guess")])
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text.contains("Wrong token"));
    assert!(!wrong.text.contains("guess"), "the attempt is not echoed");
    let csrf = wrong
        .cookie(auth::LOGIN_COOKIE)
        .expect("the csrf cookie again");
    let ok = b
        .post(
            &r,
            "/login",
            &[("csrf", &csrf), ("token", TOKEN), ("name", "alice")],
        )
        .await;
    assert_eq!(ok.status, 303);
    assert_eq!(ok.location(), "./");
    let session = ok
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("havoc_session="))
        .expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(!session.contains(TOKEN));
    let page = b.get(&r, "/").await;
    assert!(page.text.contains("alice (console login from 10.0.0.9)"));
    assert!(has_form(&page.text, "stop"), "the stop is offered");
    // Guessing: the sixth attempt from one address within the window is refused.
    let mut guesser = Browser::from("10.0.0.66");
    let mut statuses = Vec::new();
    for _ in 0..auth::LOGIN_ATTEMPTS_PER_CLIENT + 1 {
        let form = guesser.get(&r, "/login").await;
        let csrf = form.cookie(auth::LOGIN_COOKIE).expect("csrf");
        let a = guesser
            .post(&r, "/login", &[("csrf", &csrf), ("token", "guess")])
            .await;
        statuses.push(a.status);
        if a.status == 429 {
            assert!(a.headers.contains_key(header::RETRY_AFTER));
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    // Logout ends the session.
    let csrf = csrf_of(&page.text).expect("csrf");
    let out = b.post(&r, "/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    let after = b.get(&r, "/").await;
    assert!(!has_form(&after.text, "stop"));
}

#[tokio::test]
async fn the_stop_latches_with_who_and_why_and_resume_asks_for_confirmation() {
    let mut f = fixture(false);
    let r = f.router();
    let arbiter = f.arbiter.clone();
    let mut b = Browser::from("10.1.1.1");
    let csrf = b.login(&r, "alice").await;
    let empty = b
        .post(&r, "/stop", &[("csrf", &csrf), ("reason", "  ")])
        .await;
    assert_eq!(empty.status, 303);
    assert!(arbiter.pauses().all.is_none(), "a stop needs a reason");
    let a = b
        .post(
            &r,
            "/stop",
            &[("csrf", &csrf), ("reason", "INC-42 payments down")],
        )
        .await;
    assert_eq!(a.status, 303);
    assert_eq!(a.location(), "./", "back to the console's root");
    let pause = arbiter.pauses().all.expect("paused");
    assert!(pause.until.is_none());
    assert_eq!(
        pause.reason,
        "INC-42 payments down [stopped by alice (console login from 10.1.1.1)]"
    );
    let page = b.get(&r, "/").await;
    assert!(page.text.contains("EMERGENCY STOP"), "{}", page.text);
    assert!(page.text.contains("INC-42 payments down"));
    assert!(
        page.text.contains("Emergency stop:")
            && page.text.contains("all chaos paused until resumed"),
        "the flash"
    );
    assert!(has_form(&page.text, "resume"));
    assert!(
        !has_form(&page.text, "stop"),
        "stopped: only resume is offered"
    );
    // Resume without the confirmation: nothing changes.
    let a = b.post(&r, "/resume", &[("csrf", &csrf)]).await;
    assert_eq!(a.status, 303);
    assert!(arbiter.pauses().all.is_some());
    let a = b
        .post(&r, "/resume", &[("csrf", &csrf), ("confirm", "yes")])
        .await;
    assert_eq!(a.status, 303);
    assert!(arbiter.pauses().all.is_none());
    let page = b.get(&r, "/").await;
    assert!(page.text.contains("Chaos is running"));
}

#[tokio::test]
async fn a_policy_pauses_for_a_chosen_duration_and_resumes() {
    let mut f = fixture(false);
    let r = f.router();
    let arbiter = f.arbiter.clone();
    let mut b = Browser::from("10.1.1.2");
    let csrf = b.login(&r, "").await;
    let page = b.get(&r, "/policies").await;
    assert!(has_form(&page.text, "pause"));
    for bad in ["1 hour", "-1h"] {
        b.post(
            &r,
            "/pause",
            &[("csrf", &csrf), ("policy", "p"), ("for", bad)],
        )
        .await;
        assert!(arbiter.pauses().policies.is_empty(), "{bad}");
    }
    let a = b
        .post(
            &r,
            "/pause",
            &[
                ("csrf", &csrf),
                ("policy", "p"),
                ("for", "1h"),
                ("reason", "deploy"),
            ],
        )
        .await;
    assert_eq!(a.status, 303);
    assert_eq!(a.location(), "./policies");
    let p = arbiter.pauses().policies.get("p").cloned().expect("paused");
    let left = p.until.expect("timed") - Utc::now();
    assert!(
        left > Duration::minutes(59) && left <= Duration::hours(1),
        "{left}"
    );
    assert_eq!(p.reason, "deploy [paused by console login from 10.1.1.2]");
    let page = b.get(&r, "/policies").await;
    assert!(page.text.contains("⏸ paused"));
    b.post(
        &r,
        "/resume",
        &[("csrf", &csrf), ("policy", "p"), ("confirm", "yes")],
    )
    .await;
    assert!(arbiter.pauses().policies.is_empty());
}

#[tokio::test]
async fn pages_show_what_the_issue_asks_for() {
    let mut f = fixture(false);
    let r = f.router();
    let mut b = Browser::default();
    // The experiment: targets, injection, revert, alert, SLO, phases, Grafana.
    let a = b.get(&r, "/experiments/p-20261201T110000Z-00aa").await;
    for text in [
        "delete pod shop/web-1 (grace 0s)",
        "restored",
        "KubeDeploymentUnavailable",
        "error-ratio",
        "Fault held",
        "30.0 s",
        "https://grafana.example.com/d/havoc/havoc?from=",
        "! deviated",
        "Error budgets",
        "sloth checkout/availability",
        "✕ 14.500",
        "after ≤ before × 2",
    ] {
        assert!(a.text.contains(text), "missing {text:?}");
    }
    assert!(
        a.text.contains("href=\"../assets/console.css\""),
        "relative to the page"
    );
    assert_eq!(b.get(&r, "/experiments/nope").await.status, 404);
    // The faults: every record with owner and deadline, the unreadable one too.
    let a = b.get(&r, "/faults").await;
    for text in [
        "Deployment shop/web",
        "StatefulSet shop/db",
        "havoc-run/host-1",
        "broken",
        "orphaned",
    ] {
        assert!(a.text.contains(text), "missing {text:?}");
    }
    // Policies: file and line.
    let a = b.get(&r, "/policies").await;
    assert!(a.text.contains("<code>p.yaml:5</code>"), "{}", a.text);
    // Timeline: the picture, with the experiment that ran an hour ago.
    let a = b.get(&r, "/timeline").await;
    assert!(a.text.contains("<svg class=\"timeline\""));
    assert!(a.text.contains("experiments/p-20261201T110000Z-00aa"));
    // Now: today's counts, health sources (none configured), running none.
    let a = b.get(&r, "/").await;
    assert!(a.text.contains("Today&#39;s experiments") || a.text.contains("Today's experiments"));
    // The namespace chaos budgets: the deviated experiment held its fault 30 s in its
    // target's namespace, of 2 minutes.
    let budgets = a
        .text
        .split("Namespace chaos budgets")
        .nth(1)
        .expect("the budgets section");
    let row = budgets
        .split("<tr>")
        .find(|r| r.contains("go-demo-8"))
        .expect("its namespace");
    for cell in ["<td>30 s</td>", "<td>1 min 30 s</td>", "<td>2 min</td>"] {
        assert!(row.contains(cell), "{cell}: {row}");
    }
    // The list: filters by verdict and time; a bad time is a 400 with the reason.
    let a = b.get(&r, "/experiments?verdict=deviated").await;
    assert!(a.text.contains("p-20261201T110000Z-00aa"));
    let a = b.get(&r, "/experiments?verdict=passed").await;
    assert!(!a.text.contains("p-20261201T110000Z-00aa"));
    assert!(a.text.contains("r-rollout") || a.text.contains("No experiment"));
    let a = b.get(&r, "/experiments?since=yesterday").await;
    assert_eq!(a.status, 400);
    assert!(a.text.contains("is not a time"));
    // Assets are served with their types, and unknown ones are not.
    let a = b.get(&r, "/assets/console.js").await;
    assert_eq!(
        a.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(b.get(&r, "/assets/nope").await.status, 404);
}

#[tokio::test]
async fn with_read_requires_token_pages_need_a_login() {
    let mut f = fixture(true);
    let r = f.router();
    let mut b = Browser::from("10.2.2.2");
    let a = b.get(&r, "/experiments/x").await;
    assert_eq!(a.status, 303);
    assert_eq!(a.location(), "../login");
    assert_eq!(b.get(&r, "/events").await.status, 401);
    assert_eq!(b.get(&r, "/login").await.status, 200);
    b.login(&r, "").await;
    assert_eq!(b.get(&r, "/timeline").await.status, 200);
}

#[tokio::test]
async fn the_event_stream_starts_with_the_digest_of_the_page() {
    let mut f = fixture(false);
    let r = f.router();
    let mut b = Browser::default();
    let page = b.get(&r, "/").await;
    let at = page.text.find("data-digest=\"").expect("digest") + "data-digest=\"".len();
    let digest = &page.text[at..at + 16];
    let a = b.get(&r, "/events").await;
    assert_eq!(a.status, 200);
    assert!(a.text.contains("event: change"), "{}", a.text);
    assert!(
        a.text.contains(&format!("data: {digest}")),
        "{} vs {digest}",
        a.text
    );
}

#[test]
fn links_are_relative_to_the_page() {
    assert_eq!(root("/"), "./");
    assert_eq!(root("/timeline"), "./");
    assert_eq!(root("/experiments/x"), "../");
    assert_eq!(root("/stop"), "./");
}

#[test]
fn revert_now_ends_a_running_experiment_or_reverts_an_orphan() {
    let running = vec![RunningView {
        id: "e1".into(),
        policy: "p".into(),
        started: None,
    }];
    let mine = held("Deployment", "web", "e1", "me");
    assert_eq!(
        revert_plan(&mine, "me", &running, true),
        RevertPlan::EndExperiment("e1".into())
    );
    let orphan = held("Deployment", "web", "e0", "me");
    assert_eq!(
        revert_plan(&orphan, "me", &running, true),
        RevertPlan::Revert
    );
    assert_eq!(
        revert_plan(&orphan, "me", &running, false),
        RevertPlan::AskTheLeader,
        "a follower does not know what the leader runs"
    );
    let foreign = held("Deployment", "web", "e9", "havoc-run/x");
    assert_eq!(
        revert_plan(&foreign, "me", &running, false),
        RevertPlan::Revert
    );
}
