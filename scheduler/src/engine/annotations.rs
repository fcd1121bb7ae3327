//! Marks on dashboards for every live experiment: a gauge that Prometheus-based Grafana
//! annotations read (`havoc_experiment_running{policy,fault,namespace}`, 1 from injection
//! to the end of the settle, then removed; `cluster` comes with every metric when
//! `clusterName` is set), and, with `grafana` configured, a region annotation through
//! Grafana's HTTP API: created at injection, its end patched when the revert and settle
//! are over.
//!
//! Dry runs change nothing and get neither. The experiment calls
//! [`Annotations::injected`] once its fault is in, whoever emits its record calls
//! [`Annotations::ended`]; both return at once.
//!
//! # Grafana never holds up an experiment
//!
//! Requests go through one bounded queue ([`QUEUE_CAPACITY`] events) and one sender task,
//! in order (a region is created before it is closed), each with a timeout and bounded
//! retries (1 s, 2 s, 4 s, 8 s: five attempts). A full queue drops the event; a request
//! given up is dropped too. Both are counted in
//! `havoc_grafana_annotations_total{result="dropped"|"failed"}`, next to `created` and
//! `closed`. An experiment whose region could not be created (Grafana was down at
//! injection) gets its whole region, end and verdict included, when it ends.
//!
//! The region is created ending at the experiment's planned end (injection + duration +
//! settle), so that one whose end never comes (havoc killed) still shows a bounded region
//! rather than a point.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use havoc_integrations::{
    Backoff,
    grafana::{AnnotationPatch, Client, NewAnnotation},
    retry,
};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::metrics::Metrics;
use crate::{
    policy::{Config, Policy},
    record::ExperimentRecord,
    report::escape::xml,
};

/// Grafana events waiting before new ones are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 64;

/// Why the Grafana client could not be set up (its token is missing, its URL is wrong).
#[derive(Debug, thiserror::Error)]
#[error("grafana: {0}")]
pub struct AnnotationsError(#[source] pub havoc_integrations::Error);

/// What becomes of annotation requests, as `havoc_grafana_annotations_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Closed,
    /// Given up after retries, or refused for good (a bad token).
    Failed,
    /// The queue was full.
    Dropped,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Closed => "closed",
            Outcome::Failed => "failed",
            Outcome::Dropped => "dropped",
        }
    }
}

#[derive(Debug)]
enum Event {
    Start {
        id: String,
        annotation: NewAnnotation,
    },
    End {
        id: String,
        /// The whole region, for an experiment whose start never reached Grafana.
        annotation: NewAnnotation,
    },
}

/// Where running experiments are marked. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Annotations {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    metrics: Option<Metrics>,
    cluster: Option<String>,
    grafana: Option<Queue>,
    /// Live experiments marked and not ended: their gauge series and tags.
    running: Mutex<HashMap<String, Running>>,
}

#[derive(Debug)]
struct Running {
    /// (policy, fault, namespace) of each gauge series set.
    series: Vec<(String, String, String)>,
    tags: Vec<String>,
    time: i64,
}

#[derive(Debug)]
struct Queue {
    tx: Mutex<Option<mpsc::Sender<Event>>>,
    tasks: TaskTracker,
    metrics: Option<Metrics>,
    dashboard_uid: Option<String>,
    tags: Vec<String>,
    console_url: Option<String>,
}

impl Annotations {
    /// From the config: the gauge in `metrics` (if any), and the Grafana client with its
    /// sender task when `grafana` is configured (its token is read now: a missing one
    /// fails start-up rather than every annotation later).
    pub fn from_config(
        config: &Config,
        metrics: Option<Metrics>,
    ) -> Result<Self, AnnotationsError> {
        Self::with_backoff(config, metrics, Backoff::default())
    }

    /// [`Annotations::from_config`] with its own retry schedule (tests).
    pub(crate) fn with_backoff(
        config: &Config,
        metrics: Option<Metrics>,
        backoff: Backoff,
    ) -> Result<Self, AnnotationsError> {
        let grafana = match &config.grafana {
            None => None,
            Some(g) => {
                let token = g.token.resolve().map_err(AnnotationsError)?;
                let client = Client::new(&g.url, token, g.timeout).map_err(AnnotationsError)?;
                Some(Queue::start(
                    client,
                    backoff,
                    metrics.clone(),
                    g.dashboard_uid.clone(),
                    g.tags.clone(),
                    g.console_url.clone(),
                ))
            }
        };
        Ok(Annotations {
            inner: Arc::new(Inner {
                metrics,
                cluster: config.cluster_name.clone(),
                grafana,
                running: Mutex::default(),
            }),
        })
    }

    /// A live experiment's fault is in: its gauge series go to 1 and its region is
    /// created. Dry runs and experiments that injected nothing are not marked.
    pub fn injected(&self, record: &ExperimentRecord, policy: &Policy) {
        let Some(injected_at) = record.injected_at.filter(|_| !record.dry_run) else {
            return;
        };
        let namespaces = namespaces(record);
        let series: Vec<(String, String, String)> = namespaces
            .iter()
            .map(|ns| (record.policy.clone(), record.fault.clone(), ns.clone()))
            .collect();
        if let Some(m) = &self.inner.metrics {
            for (p, f, ns) in &series {
                m.experiment_running(p, f, ns, true);
            }
        }
        let mut tags = vec![
            "havoc".to_string(),
            format!("policy:{}", record.policy),
            format!("fault:{}", record.fault),
        ];
        tags.extend(
            namespaces
                .iter()
                .filter(|n| !n.is_empty())
                .map(|n| format!("namespace:{n}")),
        );
        if let Some(c) = &self.inner.cluster {
            tags.push(format!("cluster:{c}"));
        }
        let time = injected_at.timestamp_millis();
        let planned =
            chrono::Duration::from_std(policy.duration + policy.health.settle).unwrap_or_default();
        if let Some(q) = &self.inner.grafana {
            tags.extend(q.tags.iter().cloned());
            q.send(Event::Start {
                id: record.id.clone(),
                annotation: q.annotation(
                    record,
                    time,
                    (injected_at + planned).timestamp_millis(),
                    tags.clone(),
                ),
            });
        }
        self.lock()
            .insert(record.id.clone(), Running { series, tags, time });
    }

    /// An experiment's record is final: its gauge series are removed and its region
    /// ends now, tagged with the verdict. Records that were never marked are ignored.
    pub fn ended(&self, record: &ExperimentRecord) {
        let Some(running) = self.lock().remove(&record.id) else {
            return;
        };
        if let Some(m) = &self.inner.metrics {
            for (p, f, ns) in &running.series {
                m.experiment_running(p, f, ns, false);
            }
        }
        if let Some(q) = &self.inner.grafana {
            let mut tags = running.tags;
            tags.push(format!("verdict:{}", record.verdict.label()));
            let end = record.ended_at.timestamp_millis().max(running.time);
            q.send(Event::End {
                id: record.id.clone(),
                annotation: q.annotation(record, running.time, end, tags),
            });
        }
    }

    /// No more events: the sender task ends once it has sent what is queued, or at
    /// `deadline`. Whether it finished.
    pub async fn close(&self, deadline: tokio::time::Instant) -> bool {
        let Some(q) = &self.inner.grafana else {
            return true;
        };
        q.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        q.tasks.close();
        tokio::time::timeout_at(deadline, q.tasks.wait())
            .await
            .is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The namespaces of a record's targets; `[""]` for cluster-scoped ones (nodes).
fn namespaces(record: &ExperimentRecord) -> Vec<String> {
    let mut ns: Vec<String> = record
        .targets
        .iter()
        .filter_map(|t| t.namespace.clone())
        .collect();
    ns.sort();
    ns.dedup();
    if ns.is_empty() {
        ns.push(String::new());
    }
    ns
}

impl Queue {
    fn start(
        client: Client,
        backoff: Backoff,
        metrics: Option<Metrics>,
        dashboard_uid: Option<String>,
        tags: Vec<String>,
        console_url: Option<String>,
    ) -> Queue {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let tasks = TaskTracker::new();
        tasks.spawn(send_all(client, backoff, metrics.clone(), rx));
        Queue {
            tx: Mutex::new(Some(tx)),
            tasks,
            metrics,
            dashboard_uid,
            tags,
            console_url,
        }
    }

    fn annotation(
        &self,
        r: &ExperimentRecord,
        time: i64,
        time_end: i64,
        tags: Vec<String>,
    ) -> NewAnnotation {
        let targets: Vec<String> = r
            .injected()
            .map(|t| match &t.namespace {
                Some(ns) => format!("{} {ns}/{}", t.kind, t.name),
                None => format!("{} {}", t.kind, t.name),
            })
            .collect();
        let mut text = format!(
            "havoc: {} by policy {} on {}",
            xml(&r.fault),
            xml(&r.policy),
            xml(&targets.join(", "))
        );
        match &self.console_url {
            Some(base) => text.push_str(&format!(
                "<br><a href=\"{}/experiments/{}\">experiment {}</a>",
                xml(base),
                xml(&r.id),
                xml(&r.id)
            )),
            None => text.push_str(&format!("<br>experiment {}", xml(&r.id))),
        }
        NewAnnotation {
            dashboard_uid: self.dashboard_uid.clone(),
            time,
            time_end,
            tags,
            text,
        }
    }

    fn send(&self, event: Event) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let queued = tx.as_ref().is_some_and(|tx| tx.try_send(event).is_ok());
        drop(tx);
        if !queued {
            tracing::warn!("grafana annotation dropped: the queue is full");
            if let Some(m) = &self.metrics {
                m.grafana_annotation(Outcome::Dropped);
            }
        }
    }
}

/// The sender task: one event at a time, in order.
async fn send_all(
    client: Client,
    backoff: Backoff,
    metrics: Option<Metrics>,
    mut rx: mpsc::Receiver<Event>,
) {
    let count = |o: Outcome| {
        if let Some(m) = &metrics {
            m.grafana_annotation(o);
        }
    };
    // Annotation ids of the experiments whose region exists.
    let mut ids: HashMap<String, i64> = HashMap::new();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Start { id, annotation } => {
                match retry(&backoff, || client.create(&annotation)).await {
                    Ok((aid, _)) => {
                        ids.insert(id, aid);
                        count(Outcome::Created);
                    }
                    Err(f) => {
                        tracing::warn!(experiment = %id, attempts = f.attempts, error = %f.error, "grafana: cannot create the annotation");
                        count(Outcome::Failed);
                    }
                }
            }
            Event::End { id, annotation } => match ids.remove(&id) {
                Some(aid) => {
                    let patch = AnnotationPatch {
                        time_end: Some(annotation.time_end),
                        tags: Some(annotation.tags.clone()),
                        text: None,
                    };
                    match retry(&backoff, || client.update(aid, &patch)).await {
                        Ok(_) => count(Outcome::Closed),
                        Err(f) => {
                            tracing::warn!(experiment = %id, attempts = f.attempts, error = %f.error, "grafana: cannot close the annotation");
                            count(Outcome::Failed);
                        }
                    }
                }
                // Its start never reached Grafana: the whole region now.
                None => match retry(&backoff, || client.create(&annotation)).await {
                    Ok(_) => count(Outcome::Created),
                    Err(f) => {
                        tracing::warn!(experiment = %id, attempts = f.attempts, error = %f.error, "grafana: cannot create the annotation");
                        count(Outcome::Failed);
                    }
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{
        Json, Router,
        extract::{Path, State},
        http::{HeaderMap, StatusCode},
        routing::{patch, post},
    };
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        policy::fixtures,
        record::{Verdict, tests::record},
    };

    /// A request the fake Grafana accepted.
    #[derive(Debug, Clone)]
    struct Seen {
        method: &'static str,
        id: i64,
        body: Value,
    }

    #[derive(Default)]
    struct Fake {
        seen: Mutex<Vec<Seen>>,
        problems: Mutex<Vec<String>>,
    }

    /// Checks a request against the annotations API's contract; the problems found.
    fn check(headers: &HeaderMap, body: &Value, creating: bool) -> Vec<String> {
        let mut out = Vec::new();
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some("Bearer grafana-test-token")
        {
            out.push(format!("authorization: {:?}", headers.get("authorization")));
        }
        if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
            out.push("content-type".into());
        }
        let Some(map) = body.as_object() else {
            out.push("not an object".into());
            return out;
        };
        for k in map.keys() {
            if !["dashboardUID", "time", "timeEnd", "tags", "text"].contains(&k.as_str()) {
                out.push(format!("unknown field {k}"));
            }
        }
        let int = |k: &str| map.get(k).is_some_and(Value::is_i64);
        if creating && !(int("time") && int("timeEnd") && map["text"].is_string()) {
            out.push(format!("create needs time, timeEnd, text: {body}"));
        }
        if let (Some(a), Some(b)) = (
            map.get("time").and_then(Value::as_i64),
            map.get("timeEnd").and_then(Value::as_i64),
        ) && b < a
        {
            out.push("timeEnd before time".into());
        }
        if map
            .get("tags")
            .is_some_and(|t| !t.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        {
            out.push("tags is not a list of strings".into());
        }
        out
    }

    async fn create(
        State(f): State<Arc<Fake>>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        let problems = check(&headers, &body, true);
        if !problems.is_empty() {
            f.problems.lock().expect("lock").extend(problems);
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"message": "bad request"})),
            );
        }
        let mut seen = f.seen.lock().expect("lock");
        let id = seen.iter().filter(|s| s.method == "POST").count() as i64 + 1;
        seen.push(Seen {
            method: "POST",
            id,
            body,
        });
        (
            StatusCode::OK,
            Json(json!({"message": "Annotation added", "id": id})),
        )
    }

    async fn update(
        State(f): State<Arc<Fake>>,
        Path(id): Path<i64>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        let problems = check(&headers, &body, false);
        let mut seen = f.seen.lock().expect("lock");
        if !seen.iter().any(|s| s.method == "POST" && s.id == id) {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"message": "Could not find annotation to update"})),
            );
        }
        if !problems.is_empty() {
            f.problems.lock().expect("lock").extend(problems);
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"message": "bad request"})),
            );
        }
        seen.push(Seen {
            method: "PATCH",
            id,
            body,
        });
        (
            StatusCode::OK,
            Json(json!({"message": "Annotation patched"})),
        )
    }

    /// A fake Grafana on loopback; its URL.
    async fn grafana(fake: Arc<Fake>) -> String {
        let app = Router::new()
            .route("/api/annotations", post(create))
            .route("/api/annotations/{id}", patch(update))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        url
    }

    fn quick() -> Backoff {
        Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            factor: 2.0,
            max_attempts: 3,
        }
    }

    fn annotations(url: &str, dir: &tempfile::TempDir, metrics: &Metrics) -> Annotations {
        let token = dir.path().join("token");
        std::fs::write(&token, "grafana-test-token\n").expect("token");
        let config = fixtures::config()
            .set("/clusterName", json!("prod-eu"))
            .set(
                "/grafana",
                json!({"url": url, "token": {"file": token}, "dashboardUID": "havoc", "tags": ["chaos"], "consoleUrl": "https://havoc.example/"}),
            )
            .build();
        Annotations::with_backoff(&config, Some(metrics.clone()), quick()).expect("annotations")
    }

    /// `havoc_grafana_annotations_total` for `result`, whatever other labels it has.
    fn count(metrics: &Metrics, result: &str) -> f64 {
        metrics
            .encode()
            .lines()
            .find(|l| {
                l.starts_with("havoc_grafana_annotations_total{")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    async fn wait_for(metrics: &Metrics, result: &str, n: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while count(metrics, result) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{result} never reached {n}:\n{}",
                metrics.encode()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_live_experiment_is_a_region_created_at_injection_and_closed_at_its_end() {
        let fake = Arc::new(Fake::default());
        let url = grafana(fake.clone()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Metrics::with_cluster(Some("prod-eu"));
        let a = annotations(&url, &dir, &metrics);
        let policy = fixtures::policy("p")
            .namespaces(&["go-demo-8"])
            .duration_secs(30)
            .settle_secs(10)
            .build();
        let mut r = record("e1", Verdict::Passed);
        a.injected(&r, &policy);
        assert!(
            metrics.encode().contains("havoc_experiment_running{cluster=\"prod-eu\",policy=\"p\",fault=\"podDelete\",namespace=\"go-demo-8\"} 1"),
            "{}",
            metrics.encode()
        );
        wait_for(&metrics, "created", 1.0).await;
        r.ended_at = r.started_at + chrono::Duration::seconds(45);
        a.ended(&r);
        assert!(
            !metrics.encode().contains("havoc_experiment_running{"),
            "{}",
            metrics.encode()
        );
        assert!(
            a.close(tokio::time::Instant::now() + Duration::from_secs(20))
                .await
        );
        assert_eq!(count(&metrics, "closed"), 1.0);
        assert!(
            fake.problems.lock().expect("lock").is_empty(),
            "{:?}",
            fake.problems.lock()
        );
        let seen = fake.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        let t = r.injected_at.expect("injected").timestamp_millis();
        let post = &seen[0].body;
        assert_eq!(post["time"], t);
        assert_eq!(
            post["timeEnd"],
            t + 40_000,
            "planned end: duration + settle"
        );
        assert_eq!(post["dashboardUID"], "havoc");
        assert_eq!(
            post["tags"],
            json!([
                "havoc",
                "policy:p",
                "fault:podDelete",
                "namespace:go-demo-8",
                "cluster:prod-eu",
                "chaos"
            ])
        );
        let text = post["text"].as_str().expect("text");
        assert!(
            text.contains("href=\"https://havoc.example/experiments/e1\""),
            "{text}"
        );
        assert!(text.contains("Pod go-demo-8/go-demo-8-db-1"), "{text}");
        let patch = &seen[1];
        assert_eq!((patch.method, patch.id), ("PATCH", seen[0].id));
        assert_eq!(patch.body["timeEnd"], r.ended_at.timestamp_millis());
        assert!(
            patch.body["tags"]
                .as_array()
                .expect("tags")
                .contains(&json!("verdict:passed"))
        );
        assert!(
            patch.body["tags"]
                .as_array()
                .expect("tags")
                .contains(&json!("cluster:prod-eu"))
        );
    }

    #[tokio::test]
    async fn dry_runs_and_unmarked_records_are_left_alone() {
        let fake = Arc::new(Fake::default());
        let url = grafana(fake.clone()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Metrics::new();
        let a = annotations(&url, &dir, &metrics);
        let policy = fixtures::policy("p").namespaces(&["go-demo-8"]).build();
        let mut dry = record("dry", Verdict::Passed);
        dry.dry_run = true;
        a.injected(&dry, &policy);
        a.ended(&dry);
        let mut skipped = record("skip", Verdict::Skipped);
        skipped.injected_at = None;
        a.injected(&skipped, &policy);
        a.ended(&skipped);
        a.ended(&record("never-marked", Verdict::Errored));
        assert!(
            a.close(tokio::time::Instant::now() + Duration::from_secs(20))
                .await
        );
        assert!(fake.seen.lock().expect("lock").is_empty());
        assert!(!metrics.encode().contains("havoc_experiment_running{"));
        assert!(
            !metrics
                .encode()
                .contains("havoc_grafana_annotations_total{"),
            "{}",
            metrics.encode()
        );
    }

    #[tokio::test]
    async fn a_grafana_that_is_down_costs_the_experiment_nothing_and_is_counted() {
        // A port nobody listens on.
        let url = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Metrics::new();
        let a = annotations(&url, &dir, &metrics);
        let policy = fixtures::policy("p").namespaces(&["go-demo-8"]).build();
        let r = record("e1", Verdict::Passed);
        let started = std::time::Instant::now();
        a.injected(&r, &policy);
        a.ended(&r);
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "the calls returned at once"
        );
        assert!(
            a.close(tokio::time::Instant::now() + Duration::from_secs(20))
                .await
        );
        // The create at injection and the whole region at the end, each given up.
        assert_eq!(count(&metrics, "failed"), 2.0, "{}", metrics.encode());
    }

    #[tokio::test]
    async fn a_start_that_failed_becomes_the_whole_region_at_the_end() {
        let fake = Arc::new(Fake::default());
        let dir = tempfile::tempdir().expect("tempdir");
        // Grafana is down at injection: nothing listens yet on the port it will use.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let metrics = Metrics::new();
        let a = annotations(&format!("http://{addr}"), &dir, &metrics);
        let policy = fixtures::policy("p").namespaces(&["go-demo-8"]).build();
        let r = record("e1", Verdict::Deviated);
        a.injected(&r, &policy);
        wait_for(&metrics, "failed", 1.0).await;
        let app = Router::new()
            .route("/api/annotations", post(create))
            .route("/api/annotations/{id}", patch(update))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        a.ended(&r);
        assert!(
            a.close(tokio::time::Instant::now() + Duration::from_secs(20))
                .await
        );
        let seen = fake.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].method, "POST");
        assert!(
            seen[0].body["tags"]
                .as_array()
                .expect("tags")
                .contains(&json!("verdict:deviated"))
        );
        assert_eq!(count(&metrics, "created"), 1.0);
    }

    fn problems(config: fixtures::ConfigFixture) -> Vec<String> {
        crate::policy::load_str(
            std::path::Path::new("c.yaml"),
            &config.text(),
            &crate::policy::Context::default(),
            crate::policy::Expect::Any,
        )
        .diagnostics
        .iter()
        .map(|d| d.message.clone())
        .collect()
    }

    #[test]
    fn grafana_needs_a_cluster_name_a_url_and_a_token_by_reference() {
        let grafana = json!({"url": "http://grafana.example", "token": {"env": "GRAFANA_TOKEN"}});
        let all = problems(fixtures::config().set("/grafana", grafana.clone())).join("\n");
        assert!(
            all.contains("grafana annotations need clusterName"),
            "{all}"
        );
        let all = problems(
            fixtures::config()
                .set("/clusterName", json!("prod eu"))
                .set(
                    "/grafana",
                    json!({"url": "grafana.example", "token": {"env": "T"}}),
                ),
        )
        .join("\n");
        for needle in ["invalid clusterName", "invalid URL"] {
            assert!(all.contains(needle), "{needle}: {all}");
        }
        let all = problems(
            fixtures::config()
                .set("/clusterName", json!("prod-eu"))
                .set(
                    "/grafana",
                    json!({"url": "http://g.example", "token": "glsa_inline"}),
                ),
        )
        .join("\n");
        assert!(all.contains("must not be written inline"), "{all}");
        assert!(!all.contains("glsa_inline"), "{all}");
        assert!(
            problems(
                fixtures::config()
                    .set("/clusterName", json!("prod-eu"))
                    .set("/grafana", grafana)
            )
            .is_empty()
        );
    }
}
