//! The API through its router: authorization, what unauthenticated callers see, input
//! checks, and every answer held against the OpenAPI document.

use crate::policy::set::{Policies, PolicySet};
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use futures::{FutureExt as _, future::BoxFuture};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::{App, PAUSE_FOR_PATTERN, Readiness, endpoints, openapi::check, pause_for_form, router};
use crate::{
    engine::{
        arbiter::{Arbiter, Parts},
        clock::NextFires,
        experiment::Env,
        metrics::Metrics,
        notify::Notifier,
    },
    journal::Journal,
    leader::Publisher,
    policy::{duration::HumanDuration, fixtures},
    record::{
        AlertRecord, ObjectRef, RevertResult, SloRecord, TargetOutcome, TargetRecord, TargetRevert,
        TriggerInfo, Verdict, tests::record,
    },
    targets::{Snapshot, SnapshotError, SnapshotSource},
    trigger::RecentTriggers,
};

const TOKEN: &str = "s3cret-token";

/// A readiness that tests switch.
#[derive(Default)]
pub(crate) struct Switch(AtomicBool);

impl Readiness for Switch {
    fn not_ready(&self) -> Vec<String> {
        if self.0.load(Ordering::Relaxed) {
            vec![]
        } else {
            vec!["watch caches are not synced".to_string()]
        }
    }
}

/// Watch caches that never sync: an experiment that starts is skipped at once.
struct Unsynced;

impl SnapshotSource for Unsynced {
    fn snapshot<'a>(
        &'a self,
        _: &'a crate::targets::scope::Needs,
    ) -> BoxFuture<'a, Result<Snapshot, SnapshotError>> {
        futures::future::ready(Err(SnapshotError::NotSynced { what: "Pod".into() })).boxed()
    }
}

/// An API over one policy `p` (from a file deep in a directory) and a few records.
pub(crate) struct Fixture {
    pub(crate) app: Option<App>,
    pub(crate) leader: Publisher,
    pub(crate) ready: Arc<Switch>,
    pub(crate) arbiter: Arc<Arbiter>,
    pub(crate) journal: Arc<Journal>,
}

impl Fixture {
    fn new(token: Option<&str>) -> Fixture {
        Fixture::custom(
            token,
            fixtures::config().build(),
            Arc::new(crate::fault::recovery::Found::default()),
        )
    }

    /// With `config` (the console reads it) and the revert records `faults`.
    pub(crate) fn custom(
        token: Option<&str>,
        config: crate::policy::Config,
        faults: Arc<dyn super::console::ClusterFaults>,
    ) -> Fixture {
        let config = Arc::new(config);
        let (svc, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let (publisher, leader) = crate::leader::channel();
        publisher.publish(true);
        let journal = Arc::new(Journal::in_memory(100));
        let metrics = Metrics::new();
        let shared = crate::state::SharedState::in_memory();
        let arbiter = Arbiter::new(Parts {
            env: Env::for_tests(
                kube::Client::new(svc, "default"),
                config.clone(),
                Some(journal.clone()),
                leader.clone(),
            ),
            source: Arc::new(Unsynced),
            journal: journal.clone(),
            history: journal.clone(),
            skips: None,
            notifier: Arc::new(Notifier::from_config(&config).expect("notifier")),
            metrics: metrics.clone(),
            leader: leader.clone(),
            shared: shared.clone(),
            stop: tokio_util::sync::CancellationToken::new(),
            seed: Some(1),
        });
        // As `havoc serve` does: decided pauses (stop, circuit breaker) are written.
        tokio::spawn(arbiter.clone().keep_pauses_written());
        let mut policy = fixtures::policy("p").namespaces(&["d"]).build();
        policy.file = PathBuf::from("/etc/havoc/policies/..2026_01_01/p.yaml");
        let policies = Policies::default();
        policies.replace(PolicySet::new([policy]));
        let mut rollout = record("r-rollout", Verdict::Passed);
        rollout.policy = "p".into();
        rollout.trigger = TriggerInfo::Rollout {
            workload: ObjectRef::namespaced("Deployment", "d", "web"),
            revision: "7".into(),
            completed_at: rollout.started_at,
        };
        let mut manual = record("r-manual", Verdict::Skipped);
        manual.trigger = TriggerInfo::Manual {
            source: "http".into(),
        };
        manual.reason_code = Some("paused".into());
        manual.injected_at = None;
        // Newest last: each a minute after the one before.
        for (i, mut r) in [record("r-schedule", Verdict::Deviated), rollout, manual]
            .into_iter()
            .enumerate()
        {
            r.started_at += chrono::Duration::minutes(i as i64);
            journal.append(&r).expect("in memory");
        }
        let ready = Arc::new(Switch::default());
        let console = super::console::Console::new(
            super::console::Parts {
                config: config.clone(),
                shared,
                faults,
                health: crate::engine::health::Readings::default(),
                reload: crate::reload::ReloadStatus::default(),
                client: None,
                pod: Some("havoc-0".into()),
            },
            token,
        );
        Fixture {
            app: Some(App {
                arbiter: arbiter.clone(),
                policies,
                journal: journal.clone(),
                metrics: metrics.clone(),
                next_fires: NextFires::new(metrics),
                triggers: RecentTriggers::default(),
                leader,
                token: token.map(havoc_integrations::SecretString::new),
                readiness: ready.clone(),
                history: journal.clone(),
                console,
            }),
            leader: publisher,
            ready,
            arbiter,
            journal,
        }
    }

    pub(crate) fn router(&mut self) -> axum::Router {
        router(self.app.take().expect("one router per fixture"))
    }
}

struct Answer {
    status: u16,
    media: String,
    headers: http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

async fn send(
    router: &axum::Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    let res = router.clone().oneshot(req).await.expect("infallible");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_string();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("body");
    Answer {
        status,
        media,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// The documented path of a request path (`/api/v1/policies/x/run` ->
/// `/api/v1/policies/{name}/run`).
fn documented(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    match path.strip_prefix("/api/v1/policies/") {
        Some(rest) if rest.ends_with("/run") => "/api/v1/policies/{name}/run".to_string(),
        _ => path.to_string(),
    }
}

/// Asserts that the answer is documented (operation, status, media type) and conforms.
fn conforms(doc: &Value, method: &Method, uri: &str, a: &Answer) {
    let m = method.as_str().to_ascii_lowercase();
    let path = documented(uri);
    let schema = check::answer_schema(doc, &m, &path, a.status, &a.media).unwrap_or_else(|| {
        panic!(
            "{method} {uri}: {} {} is not documented: {}",
            a.status, a.media, a.text
        )
    });
    let value = if a.media == "application/json" {
        serde_json::from_str(&a.text).expect("JSON answer")
    } else {
        Value::String(a.text.clone())
    };
    let problems = check::problems(doc, schema, &value);
    assert!(
        problems.is_empty(),
        "{method} {uri} {}: {problems:#?}\n{value:#}",
        a.status
    );
}

/// A request and the status it must get: method, uri, auth, body, status.
type Case<'a> = (Method, &'a str, Option<&'a str>, Option<&'a str>, u16);

#[tokio::test]
async fn every_answer_is_documented_and_conforms() {
    let doc = check::document();
    let mut f = Fixture::new(Some(TOKEN));
    let r = f.router();
    let t = bearer();
    let t = Some(t.as_str());
    let big = format!(
        r#"{{"reason": "{}"}}"#,
        "x".repeat(super::limits::MAX_BODY_BYTES)
    );
    let cases: Vec<Case> = vec![
        (Method::GET, "/metrics", None, None, 200),
        (Method::GET, "/healthz", None, None, 200),
        (Method::GET, "/readyz", None, None, 503),
        (Method::GET, "/api/v1/openapi.json", None, None, 200),
        (Method::GET, "/api/v1/experiments", None, None, 200),
        (Method::GET, "/api/v1/experiments?limit=2", None, None, 200),
        (
            Method::GET,
            "/api/v1/experiments?limit=1001",
            None,
            None,
            400,
        ),
        (Method::GET, "/api/v1/experiments?limit=-1", None, None, 400),
        (
            Method::GET,
            "/api/v1/experiments?limit=many",
            None,
            None,
            400,
        ),
        (Method::GET, "/api/v1/report", None, None, 200),
        (Method::GET, "/api/v1/report?format=json", None, None, 200),
        (Method::GET, "/api/v1/report?format=pdf", None, None, 200),
        (
            Method::GET,
            "/api/v1/report?format=markdown",
            None,
            None,
            200,
        ),
        (
            Method::GET,
            "/api/v1/report?format=junit&verdict=deviated&since=2026-01-01T00:00:00Z",
            None,
            None,
            200,
        ),
        (Method::GET, "/api/v1/report?format=docx", None, None, 400),
        (
            Method::GET,
            "/api/v1/report?since=yesterday",
            None,
            None,
            400,
        ),
        (
            Method::GET,
            "/api/v1/report?verdict=failed",
            None,
            None,
            400,
        ),
        (Method::GET, "/api/v1/report?colour=red", None, None, 400),
        (
            Method::GET,
            "/api/v1/report?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            None,
            None,
            200,
        ),
        (Method::POST, "/api/v1/policies/p/run", None, None, 401),
        (Method::POST, "/api/v1/policies/nope/run", t, None, 404),
        (Method::POST, "/api/v1/policies/%FF/run", t, None, 400),
        (Method::POST, "/api/v1/policies/p/run", t, None, 202),
        (Method::POST, "/api/v1/pause", None, Some("{}"), 401),
        (
            Method::POST,
            "/api/v1/pause",
            t,
            Some(r#"{"policy": "nope"}"#),
            404,
        ),
        (
            Method::POST,
            "/api/v1/pause",
            t,
            Some(r#"{"colour": "red"}"#),
            400,
        ),
        (
            Method::POST,
            "/api/v1/pause",
            t,
            Some(r#"{"for": "2 hours"}"#),
            400,
        ),
        // Only a body of no bytes means "no body": whitespace is not a JSON document.
        (Method::POST, "/api/v1/pause", t, Some("\x0c"), 400),
        (Method::POST, "/api/v1/pause", t, Some("\r"), 400),
        (Method::POST, "/api/v1/resume", t, Some(" \r\n\t"), 400),
        (Method::POST, "/api/v1/resume", t, Some(""), 200),
        (Method::POST, "/api/v1/pause", t, Some(&big), 413),
        (
            Method::POST,
            "/api/v1/pause",
            t,
            Some(r#"{"policy": "p", "for": "1h"}"#),
            200,
        ),
        (Method::POST, "/api/v1/pause", t, None, 200),
        (Method::GET, "/api/v1/policies", None, None, 200),
        (Method::POST, "/api/v1/policies/p/run", t, None, 409),
        (
            Method::POST,
            "/api/v1/resume",
            t,
            Some(r#"{"policy": null}"#),
            200,
        ),
        (Method::POST, "/api/v1/stop", None, None, 401),
        (
            Method::POST,
            "/api/v1/stop",
            t,
            Some(r#"{"policy": "nope"}"#),
            404,
        ),
        (Method::POST, "/api/v1/stop", t, None, 200),
    ];
    for (method, uri, auth, body, want) in cases {
        let a = send(&r, method.clone(), uri, auth, body).await;
        assert_eq!(a.status, want, "{method} {uri}: {}", a.text);
        conforms(&doc, &method, uri, &a);
    }
    // Ready, and not the leader.
    f.ready.0.store(true, Ordering::Relaxed);
    f.leader.publish(false);
    for (method, uri, auth, want) in [
        (Method::GET, "/readyz", None, 200),
        (Method::POST, "/api/v1/policies/p/run", t, 503),
        (Method::GET, "/api/v1/policies", None, 200),
    ] {
        let a = send(&r, method.clone(), uri, auth, None).await;
        assert_eq!(a.status, want, "{method} {uri}: {}", a.text);
        conforms(&doc, &method, uri, &a);
    }
    // Without a configured token the mutating endpoints are off.
    let mut off = Fixture::new(None);
    let r = off.router();
    for uri in [
        "/api/v1/policies/p/run",
        "/api/v1/pause",
        "/api/v1/resume",
        "/api/v1/stop",
    ] {
        let a = send(&r, Method::POST, uri, t, None).await;
        assert_eq!(a.status, 403, "{uri}");
        conforms(&doc, &Method::POST, uri, &a);
    }
}

/// A record with every optional part (a cluster-scoped target, reverts, alerts, an SLO
/// reading without data) conforms too, in the list and in the JSON report.
#[tokio::test]
async fn records_with_every_part_conform() {
    let doc = check::document();
    let mut f = Fixture::new(Some(TOKEN));
    let mut r = record("r-full", Verdict::RollbackFailed);
    // The newest of the fixture's records.
    r.started_at += chrono::Duration::hours(1);
    let at = r.started_at;
    let node = ObjectRef {
        kind: "Node".into(),
        namespace: None,
        name: "n1".into(),
    };
    r.reason_code = Some("injection".into());
    r.reverted_at = Some(at);
    r.targets[0].revert = Some(TargetRevert {
        result: RevertResult::Restored,
        object: ObjectRef::namespaced("Deployment", "go-demo-8", "db"),
        detail: None,
        at,
    });
    r.targets.push(TargetRecord {
        kind: node.kind.clone(),
        namespace: None,
        name: node.name.clone(),
        outcome: TargetOutcome::Errored,
        detail: Some("cordon refused".into()),
        revert: Some(TargetRevert {
            result: RevertResult::Forbidden,
            object: node,
            detail: Some("forbidden".into()),
            at,
        }),
    });
    r.alerts.push(AlertRecord {
        name: "KubePodCrashLooping".into(),
        fingerprint: "f1".into(),
        labels: [("namespace".to_string(), "go-demo-8".to_string())].into(),
        starts_at: at,
    });
    r.slos.push(SloRecord {
        name: "error-ratio".into(),
        value: None,
        objective: "< 0.01".into(),
        breached: false,
        at,
    });
    f.journal.append(&r).expect("in memory");
    let router = f.router();
    for uri in ["/api/v1/experiments?limit=1", "/api/v1/report?format=json"] {
        let a = send(&router, Method::GET, uri, None, None).await;
        assert_eq!(a.status, 200, "{uri}: {}", a.text);
        assert!(a.text.contains(r#""revert":"#), "{uri}: {}", a.text);
        conforms(&doc, &Method::GET, uri, &a);
    }
}

#[tokio::test]
async fn every_endpoint_answers_its_method_and_only_that() {
    let mut f = Fixture::new(Some(TOKEN));
    let r = f.router();
    for e in endpoints() {
        let (method, path) = (e.op.method, e.op.path);
        let uri = path.replace("{name}", "p");
        let a = send(&r, method.clone(), &uri, Some(&bearer()), None).await;
        assert!(
            a.status != 404 || a.text.contains("no policy"),
            "{method} {uri}: not routed"
        );
        assert_ne!(a.status, 405, "{method} {uri}");
        let other = if method == Method::GET {
            Method::POST
        } else {
            Method::GET
        };
        let a = send(&r, other.clone(), &uri, None, None).await;
        assert_eq!(a.status, 405, "{other} {uri}");
    }
    let a = send(&r, Method::GET, "/api/v2/anything", None, None).await;
    assert_eq!((a.status, a.json()["error"].is_string()), (404, true));
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
    let mut f = Fixture::new(Some(TOKEN));
    let r = f.router();
    for good in [
        format!("Bearer {TOKEN}"),
        format!("bearer {TOKEN}"),
        format!("BEARER {TOKEN}"),
        format!("bEaReR   {TOKEN}"),
    ] {
        let a = send(&r, Method::POST, "/api/v1/resume", Some(&good), None).await;
        assert_eq!(a.status, 200, "{good:?}: {}", a.text);
    }
    for bad in [
        format!("Basic {TOKEN}"),
        format!("Bearer{TOKEN}"),
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}", &TOKEN[1..]),
        "Bearer ".to_string(),
        TOKEN.to_string(),
    ] {
        let a = send(&r, Method::POST, "/api/v1/resume", Some(&bad), None).await;
        assert_eq!(a.status, 401, "{bad:?} was let in");
        assert_eq!(
            a.headers
                .get(header::WWW_AUTHENTICATE)
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
    }
}

#[tokio::test]
async fn unauthenticated_callers_learn_nothing_from_a_mutating_request() {
    let mut f = Fixture::new(Some(TOKEN));
    let r = f.router();
    // A bad body, an unknown policy, an invalid path: all 401 before they are looked at.
    for (uri, body) in [
        ("/api/v1/pause", Some("{not json")),
        ("/api/v1/pause", Some(r#"{"policy": "nope"}"#)),
        ("/api/v1/policies/nope/run", None),
        ("/api/v1/policies/%FF/run", None),
    ] {
        let a = send(&r, Method::POST, uri, Some("Bearer wrong"), body).await;
        assert_eq!(a.status, 401, "{uri} {body:?}: {}", a.text);
        assert_eq!(a.json(), json!({"error": "missing or wrong bearer token"}));
    }
    assert!(f.arbiter.pauses().all.is_none());
}

#[tokio::test]
async fn the_policies_view_shows_file_names_without_directories() {
    let mut f = Fixture::new(Some(TOKEN));
    let r = f.router();
    let a = send(&r, Method::GET, "/api/v1/policies", None, None).await;
    let v = a.json();
    assert_eq!(v["policies"][0]["file"], "p.yaml", "{v:#}");
    assert!(!a.text.contains("/etc/havoc"), "{}", a.text);
    assert!(!a.text.contains("..2026"), "{}", a.text);
}

#[tokio::test]
async fn error_answers_quote_only_the_callers_input_briefly() {
    let mut f = Fixture::new(Some(TOKEN));
    let r = f.router();
    let long = "n".repeat(5000);
    let a = send(
        &r,
        Method::POST,
        "/api/v1/pause",
        Some(&bearer()),
        Some(&json!({ "policy": long }).to_string()),
    )
    .await;
    assert_eq!(a.status, 404);
    let message = a.json()["error"].as_str().expect("error").to_string();
    assert!(message.len() < 200, "{message}");
    let a = send(
        &r,
        Method::POST,
        "/api/v1/pause",
        Some(&bearer()),
        Some(&json!({ "reason": "r".repeat(super::MAX_REASON_CHARS + 1) }).to_string()),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(f.arbiter.pauses().all.is_none());
}

#[tokio::test]
async fn pause_fields_may_be_null_or_absent_and_for_must_be_exact() {
    let mut f = Fixture::new(Some(TOKEN));
    let r = f.router();
    let t = bearer();
    let a = send(
        &r,
        Method::POST,
        "/api/v1/pause",
        Some(&t),
        Some(r#"{"policy": null, "reason": null, "for": null}"#),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["all"]["reason"], "paused through the HTTP API");
    assert_eq!(a.json()["all"]["until"], Value::Null);
    for bad in [
        " 1h",
        "1h ",
        "1",
        "1y",
        "11000d",
        "",
        "30m1h",
        "1h1h",
        "99999999999999999999s",
    ] {
        let body = json!({ "for": bad }).to_string();
        let a = send(&r, Method::POST, "/api/v1/pause", Some(&t), Some(&body)).await;
        assert_eq!(a.status, 400, "for {bad:?}: {}", a.text);
    }
    let a = send(
        &r,
        Method::POST,
        "/api/v1/pause",
        Some(&t),
        Some(r#"{"policy": "p", "reason": "deploy", "for": "1h30m"}"#),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let p = &a.json()["policies"]["p"];
    let since = chrono::DateTime::parse_from_rfc3339(p["since"].as_str().expect("since"))
        .expect("rfc 3339");
    let until = chrono::DateTime::parse_from_rfc3339(p["until"].as_str().expect("until"))
        .expect("rfc 3339");
    // `until` is computed just before the arbiter stamps `since`.
    let held = (until - since).num_milliseconds();
    assert!((5_399_000..=5_400_000).contains(&held), "{held} ms");
    assert_eq!(p["reason"], "deploy");
}

#[tokio::test]
async fn experiments_are_newest_first_and_limited() {
    let mut f = Fixture::new(Some(TOKEN));
    let r = f.router();
    let a = send(&r, Method::GET, "/api/v1/experiments?limit=2", None, None).await;
    let ids: Vec<Value> = a
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, [json!("r-manual"), json!("r-rollout")]);
    let a = send(&r, Method::GET, "/api/v1/experiments?limit=0", None, None).await;
    assert_eq!(a.json(), json!([]));
    let a = send(
        &r,
        Method::GET,
        "/api/v1/experiments?limit=1000",
        None,
        None,
    )
    .await;
    assert_eq!(a.json().as_array().map(Vec::len), Some(3));
}

/// Every string of the documented pattern is accepted and parses, and no other: what
/// schemathesis generates from the pattern is what the API takes.
#[test]
fn the_pause_for_form_is_the_documented_pattern() {
    let doc = check::document();
    assert_eq!(
        doc["components"]["schemas"]["PauseBody"]["properties"]["for"]["pattern"],
        PAUSE_FOR_PATTERN
    );
    let pattern = regex::Regex::new(PAUSE_FOR_PATTERN).expect("pattern");
    let alphabet = ['0', '1', '9', 'd', 'h', 'm', 's', 'x'];
    let mut strings = vec![String::new()];
    let mut frontier = vec![String::new()];
    for _ in 0..5 {
        frontier = frontier
            .iter()
            .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
            .collect();
        strings.extend(frontier.iter().cloned());
    }
    for s in [
        "1h30m", "999d", "1000d", "99999h", "5ms", "1m5ms", "0s", "１h",
    ] {
        strings.push(s.to_string());
    }
    let mut accepted = 0;
    for s in &strings {
        let want = !s.is_empty() && pattern.is_match(s);
        assert_eq!(pause_for_form(s), want, "{s:?}");
        if want {
            accepted += 1;
            assert!(s.parse::<HumanDuration>().is_ok(), "{s:?} does not parse");
        }
    }
    assert!(accepted > 100, "{accepted}");
    let longest = "999d9999h999999m99999999s9999999999ms";
    assert!(pause_for_form(longest));
    assert!(longest.parse::<HumanDuration>().is_ok(), "within ten years");
}

#[tokio::test]
async fn reports_come_in_every_format_with_their_media_type_and_file_name() {
    let mut f = Fixture::new(Some(TOKEN));
    let r = f.router();
    for (format, media, inline) in [
        ("html", "text/html", true),
        ("pdf", "application/pdf", false),
        ("markdown", "text/markdown", false),
        ("junit", "application/xml", false),
        ("json", "application/json", false),
    ] {
        let a = send(
            &r,
            Method::GET,
            &format!("/api/v1/report?format={format}"),
            None,
            None,
        )
        .await;
        assert_eq!((a.status, a.media.as_str()), (200, media), "{format}");
        let disposition = a
            .headers
            .get(header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .expect("Content-Disposition");
        assert_eq!(disposition.starts_with("inline;"), inline, "{disposition}");
        let ext = crate::report::Format::ALL
            .into_iter()
            .find(|f| f.label() == format)
            .map(|f| f.extension())
            .expect("format");
        assert!(
            disposition.contains("filename=\"havoc-report-")
                && disposition.ends_with(&format!(".{ext}\"")),
            "{disposition}"
        );
        for id in ["r-schedule", "r-rollout", "r-manual"] {
            assert!(a.text.contains(id), "{format}: {id}");
        }
    }
    // The filters of havoc report: one record is deviated.
    let a = send(
        &r,
        Method::GET,
        "/api/v1/report?format=json&verdict=deviated",
        None,
        None,
    )
    .await;
    let ids: Vec<Value> = a
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, [json!("r-schedule")]);
    let a = send(
        &r,
        Method::GET,
        "/api/v1/report?format=junit&policy=p",
        None,
        None,
    )
    .await;
    assert!(
        a.text
            .contains("<testsuites name=\"havoc\" tests=\"3\" failures=\"1\" errors=\"0\""),
        "{}",
        a.text
    );
    // A bad filter is a fixed message: the input is not echoed.
    let a = send(
        &r,
        Method::GET,
        "/api/v1/report?since=%3Cscript%3E",
        None,
        None,
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(!a.text.contains("script"), "{}", a.text);
}

/// `server.readRequiresToken`: every `GET /api/v1/...` needs the bearer token (a
/// documented 401 without it); metrics and probes stay open.
#[tokio::test]
async fn reading_needs_the_token_when_the_config_says_so() {
    let doc = check::document();
    let config = fixtures::config()
        .set("/server/token", json!({"env": "HAVOC_API_TOKEN"}))
        .set("/server/readRequiresToken", json!(true))
        .build();
    let mut f = Fixture::custom(
        Some(TOKEN),
        config,
        Arc::new(crate::fault::recovery::Found::default()),
    );
    let r = f.router();
    let t = bearer();
    for path in [
        "/api/v1/policies",
        "/api/v1/experiments",
        "/api/v1/openapi.json",
    ] {
        let a = send(&r, Method::GET, path, None, None).await;
        assert_eq!(a.status, 401, "{path}: {}", a.text);
        conforms(&doc, &Method::GET, path, &a);
        let a = send(&r, Method::GET, path, Some("Bearer wrong"), None).await;
        assert_eq!(a.status, 401, "{path}");
        let a = send(&r, Method::GET, path, Some(&t), None).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
    }
    for (path, status) in [("/metrics", 200), ("/healthz", 200), ("/readyz", 503)] {
        let a = send(&r, Method::GET, path, None, None).await;
        assert_eq!(a.status, status, "{path} stays open");
    }
    assert_eq!(f.journal.newest(10).len(), 3);
}
