//! Durable chaos state, shared by every replica and by `havoc run`: a ConfigMap
//! (`havoc-state` by default) in havoc's namespace holding the pause switches (all, per
//! policy, with expiry — the circuit breaker's included), the runs of `havoc run` in
//! progress, and the last emergency stop. It survives restarts and leader changes.
//!
//! Every replica watches it (one object: a field-selected watch) and obeys it; any
//! replica may write it: read-modify-write with the resourceVersion as precondition,
//! read again on conflict. A replica that has not read it yet, or cannot, treats chaos
//! as paused (fail closed).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::labels::MANAGED_BY;

/// The ConfigMap's key holding the state as JSON.
pub const KEY: &str = "state.json";
/// The key of "all chaos" in [`Doc::resumed`].
pub const ALL: &str = "*";
/// How long a resume is remembered (longer than any sensible circuit breaker cooldown).
const RESUME_MEMORY: chrono::Duration = chrono::Duration::days(30);
/// Bound of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Writes retried on conflicts (someone else wrote in between).
const ATTEMPTS: u32 = 5;

/// A pause switch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    pub since: DateTime<Utc>,
    /// `None`: until resumed.
    #[schemars(description = "null: until resumed.")]
    pub until: Option<DateTime<Utc>>,
    pub reason: String,
}

impl Pause {
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// A `havoc run` in progress: it counts against `maxConcurrentExperiments`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRun {
    pub policy: String,
    /// It is forgotten after this (a run that died holds no slot forever).
    pub until: DateTime<Utc>,
}

/// What the ConfigMap holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Doc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Pause>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, Pause>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub runs: BTreeMap<String, ExternalRun>,
    /// The last `POST /api/v1/stop`: the leader ends every experiment it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<DateTime<Utc>>,
    /// When each policy ([`ALL`]: everything) was last resumed: a circuit breaker
    /// restored after a restart never re-pauses what a human resumed since.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resumed: BTreeMap<String, DateTime<Utc>>,
}

impl Doc {
    /// Drops what expired.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        if self.all.as_ref().is_some_and(|p| !p.active(now)) {
            self.all = None;
        }
        self.policies.retain(|_, p| p.active(now));
        self.runs.retain(|_, r| now < r.until);
        self.resumed.retain(|_, at| now - *at < RESUME_MEMORY);
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the shared state ConfigMap: {0}")]
    Api(#[from] kube::Error),
    #[error("the shared state ConfigMap: no answer within {0:?}")]
    Timeout(Duration),
    #[error("the shared state ConfigMap kept changing (conflicts after {0} attempts)")]
    Conflicts(u32),
    #[error("the shared state ConfigMap holds unreadable state: {0}")]
    Unreadable(#[from] serde_json::Error),
}

async fn bounded<T>(call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, StateError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StateError::Timeout(REQUEST_TIMEOUT)),
    }
}

fn decode(cm: &ConfigMap) -> Result<Doc, serde_json::Error> {
    match cm.data.as_ref().and_then(|d| d.get(KEY)) {
        Some(text) => serde_json::from_str(text),
        None => Ok(Doc::default()),
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Cluster {
        api: Box<Api<ConfigMap>>,
        namespace: String,
        name: String,
    },
    Memory(Arc<Mutex<Doc>>),
}

/// The shared state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedState {
    backend: Backend,
    /// The last state read (`None`: not read yet, or unreadable).
    current: watch::Receiver<Option<Doc>>,
    tx: Arc<watch::Sender<Option<Doc>>>,
    /// The skip counts in the same ConfigMap, as last seen ([`crate::history::skips`]).
    skips: Arc<watch::Sender<crate::history::skips::Skips>>,
    /// This process's writers, one at a time. Two HTTP requests at once (a pause and a
    /// resume, say) would otherwise read the same version, conflict with each other and
    /// use up the attempts meant for other replicas' writes: a fuzzer's two workers got
    /// a 503 that way (CI, 2026-12-07).
    writing: Arc<tokio::sync::Mutex<()>>,
}

impl SharedState {
    /// State kept in this process only (tests).
    pub fn in_memory() -> Self {
        let (tx, current) = watch::channel(Some(Doc::default()));
        SharedState {
            backend: Backend::Memory(Arc::default()),
            current,
            tx: Arc::new(tx),
            skips: Arc::new(watch::Sender::new(Default::default())),
            writing: Arc::default(),
        }
    }

    /// The ConfigMap `name` in `namespace`, not watched (`havoc run` reads it once).
    pub fn cluster(client: Client, namespace: &str, name: &str) -> Self {
        let (tx, current) = watch::channel(None);
        SharedState {
            backend: Backend::Cluster {
                api: Box::new(Api::namespaced(client, namespace)),
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            current,
            tx: Arc::new(tx),
            skips: Arc::new(watch::Sender::new(Default::default())),
            writing: Arc::default(),
        }
    }

    /// The skip counts per policy, as the watch last saw them.
    pub fn skips_seen(&self) -> crate::history::skips::Skips {
        self.skips.borrow().clone()
    }

    /// Watches the ConfigMap on `tasks` until `stop`, with `client`: one for watches
    /// (client::Purpose::Watches), whose read timeout outlasts the API server's quiet
    /// watch connections; a request client's 30 s ends every quiet watch in an error.
    pub fn watch(&self, client: Client, stop: CancellationToken, tasks: &TaskTracker) {
        let Backend::Cluster {
            namespace, name, ..
        } = &self.backend
        else {
            return;
        };
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let api: Api<ConfigMap> = Api::namespaced(client, namespace);
        let stream = watcher(api, config).default_backoff();
        let tx = self.tx.clone();
        let skips = self.skips.clone();
        tasks.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut seen_any = false;
            loop {
                let ev = tokio::select! {
                    () = stop.cancelled() => return,
                    ev = stream.next() => ev,
                };
                match ev {
                    Some(Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm))) => {
                        seen_any = true;
                        skips.send_replace(crate::history::skips::decode(&cm));
                        match decode(&cm) {
                            Ok(doc) => {
                                tx.send_replace(Some(doc));
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "unreadable shared state: chaos stays paused until it is fixed");
                                tx.send_replace(None);
                            }
                        }
                    }
                    Some(Ok(watcher::Event::Delete(_))) => {
                        tx.send_replace(Some(Doc::default()));
                    }
                    Some(Ok(watcher::Event::InitDone)) if !seen_any => {
                        // No ConfigMap yet: nothing is paused.
                        tx.send_replace(Some(Doc::default()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!(error = %e, "shared state watch error; retrying"),
                    None => return,
                }
            }
        });
    }

    /// The state as last read, expired entries dropped; `None` when it is not known.
    /// The skips counted per policy ([`crate::history::skips`]), read now.
    pub async fn skips(&self) -> Result<crate::history::skips::Skips, StateError> {
        match &self.backend {
            Backend::Memory(_) => Ok(Default::default()),
            Backend::Cluster { api, name, .. } => Ok(bounded(api.get_opt(name))
                .await?
                .as_ref()
                .map(crate::history::skips::decode)
                .unwrap_or_default()),
        }
    }

    pub fn doc(&self) -> Option<Doc> {
        let mut doc = self.current.borrow().clone()?;
        doc.prune(Utc::now());
        Some(doc)
    }

    /// Wakes on every change.
    pub fn changes(&self) -> watch::Receiver<Option<Doc>> {
        self.current.clone()
    }

    /// Reads the state now (not from the watch).
    pub async fn read(&self) -> Result<Doc, StateError> {
        let doc = match &self.backend {
            Backend::Memory(m) => m.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            Backend::Cluster { api, name, .. } => match bounded(api.get_opt(name)).await? {
                Some(cm) => decode(&cm)?,
                None => Doc::default(),
            },
        };
        self.tx.send_replace(Some(doc.clone()));
        let mut doc = doc;
        doc.prune(Utc::now());
        Ok(doc)
    }

    /// Changes the state with `change`, atomically against other writers.
    pub async fn update(&self, change: impl Fn(&mut Doc)) -> Result<Doc, StateError> {
        self.try_update(|d| {
            change(d);
            Ok::<(), std::convert::Infallible>(())
        })
        .await
        .map(|r| match r {
            Ok(doc) => doc,
            Err(never) => match never {},
        })
    }

    /// Decides on the state as it is now and changes it, atomically against other
    /// writers: `change` sees the current state (read again after a conflict) and either
    /// changes it (`Ok`) or refuses (`Err`, nothing is written). Two writers that decide
    /// on the same state cannot both win: the second's write conflicts, and it decides
    /// again on the first's result.
    pub async fn try_update<E>(
        &self,
        change: impl Fn(&mut Doc) -> Result<(), E>,
    ) -> Result<Result<Doc, E>, StateError> {
        let now = Utc::now();
        let (api, name) = match &self.backend {
            Backend::Memory(m) => {
                let mut doc = m.lock().unwrap_or_else(|e| e.into_inner());
                doc.prune(now);
                let mut next = doc.clone();
                if let Err(refused) = change(&mut next) {
                    return Ok(Err(refused));
                }
                *doc = next;
                self.tx.send_replace(Some(doc.clone()));
                return Ok(Ok(doc.clone()));
            }
            Backend::Cluster { api, name, .. } => (api, name),
        };
        let _one_writer = self.writing.lock().await;
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                // Another replica (or `havoc run`) wrote in between: let it finish, and
                // do not meet it again in lockstep.
                let ms = rand::random_range(20..100) * u64::from(attempt);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let existing = bounded(api.get_opt(name)).await?;
            let mut doc = match &existing {
                Some(cm) => decode(cm)?,
                None => Doc::default(),
            };
            doc.prune(now);
            if let Err(refused) = change(&mut doc) {
                return Ok(Err(refused));
            }
            let text = serde_json::to_string_pretty(&doc)?;
            let written = match existing {
                Some(mut cm) => {
                    cm.data
                        .get_or_insert_with(Default::default)
                        .insert(KEY.into(), text);
                    bounded(api.replace(name, &PostParams::default(), &cm)).await
                }
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            labels: Some(
                                [(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into(),
                            ),
                            ..ObjectMeta::default()
                        },
                        data: Some([(KEY.to_string(), text)].into()),
                        ..ConfigMap::default()
                    };
                    bounded(api.create(&PostParams::default(), &cm)).await
                }
            };
            match written {
                Ok(_) => {
                    self.tx.send_replace(Some(doc.clone()));
                    return Ok(Ok(doc));
                }
                // A conflict: read again and retry.
                Err(StateError::Api(kube::Error::Api(s))) if s.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Err(StateError::Conflicts(ATTEMPTS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pauses_expire_and_runs_are_forgotten_after_their_time() {
        let s = SharedState::in_memory();
        let now = Utc::now();
        s.update(|d| {
            d.all = Some(Pause {
                since: now,
                until: Some(now - chrono::Duration::seconds(1)),
                reason: "over".into(),
            });
            d.policies.insert(
                "p".into(),
                Pause {
                    since: now,
                    until: None,
                    reason: "breaker".into(),
                },
            );
            d.runs.insert(
                "r1".into(),
                ExternalRun {
                    policy: "p".into(),
                    until: now + chrono::Duration::minutes(5),
                },
            );
        })
        .await
        .expect("update");
        let doc = s.doc().expect("known");
        assert!(doc.all.is_none(), "an expired pause is gone");
        assert_eq!(doc.policies["p"].reason, "breaker");
        assert_eq!(doc.runs.len(), 1);
        let text = serde_json::to_string(&doc).expect("json");
        assert_eq!(serde_json::from_str::<Doc>(&text).expect("round trip"), doc);
    }

    /// Two writers of one process take turns: the second reads only after the first
    /// wrote, so they never conflict with each other (a scripted API server with kube's
    /// `tower_test` mock; the paused clock makes "no second request meanwhile" exact).
    #[tokio::test(start_paused = true)]
    async fn writers_of_one_process_take_turns() {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let s = SharedState::cluster(Client::new(service, "havoc-system"), "havoc-system", "st");
        let cm = |rv: &str| {
            let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "st", "namespace": "havoc-system", "resourceVersion": rv},
                "data": {KEY: "{}"}});
            Response::builder()
                .body(Body::from(serde_json::to_vec(&cm).expect("json")))
                .expect("response")
        };
        let server = tokio::spawn(async move {
            for (method, rv) in [("GET", "1"), ("PUT", "2"), ("GET", "2"), ("PUT", "3")] {
                let (req, send) = handle.next_request().await.expect("a request");
                assert_eq!(req.method().as_str(), method);
                if method == "GET" {
                    // Nothing else is sent while this writer reads and writes.
                    let other =
                        tokio::time::timeout(Duration::from_secs(1), handle.next_request()).await;
                    assert!(other.is_err(), "a second writer read meanwhile");
                }
                send.send_response(cm(rv));
            }
        });
        let pause = |reason: &str| Pause {
            since: Utc::now(),
            until: None,
            reason: reason.into(),
        };
        let (a, b) = tokio::join!(
            s.update(|d| d.all = Some(pause("a"))),
            s.update(|d| d.all = Some(pause("b"))),
        );
        a.expect("the first writes");
        b.expect("the second writes");
        server.await.expect("GET, PUT, GET, PUT in turn");
    }
}
