//! Writing the experiment objects: the intent before the first change (awaited: no
//! change without it), the final record after the verdict (queued, retried in order until
//! it lands), and, on the leader, pruning to the retention bounds.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    History, HistoryError,
    object::{self, Author, HavocExperiment, VERDICT_LABEL},
};
use crate::{journal::Intent, record::ExperimentRecord};

/// Bound of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a final record is retried before it is given up (the journal keeps it).
const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);
/// How long an experiment this process finished counts as its own after its record
/// landed (the watch that shows it finished may lag).
const REMEMBER: Duration = Duration::from_secs(10 * 60);
/// Objects deleted per pruning round at most.
const PRUNE_BATCH: usize = 100;

/// Writes the experiment objects of one havoc: a `havoc serve` replica, or a `havoc run`.
/// Cheap to clone.
#[derive(Clone)]
pub struct HistoryWriter {
    api: Api<HavocExperiment>,
    author: Author,
    queue: mpsc::UnboundedSender<ExperimentRecord>,
    /// The experiments of this process: written as intents, or finished (pending or
    /// landed recently). One map, so that an experiment moves from one to the other in
    /// one step and is never seen in neither.
    ours: Arc<Mutex<HashMap<String, Mine>>>,
    pending: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriter")
            .field("author", &self.author)
            .finish_non_exhaustive()
    }
}

fn timeout_error() -> HistoryError {
    HistoryError(format!(
        "the API server did not answer within {}s",
        REQUEST_TIMEOUT.as_secs()
    ))
}

async fn bounded<T>(
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Result<kube::Error, HistoryError>> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(r) => r.map_err(Ok),
        Err(_) => Err(Err(timeout_error())),
    }
}

fn code(e: &Result<kube::Error, HistoryError>) -> Option<u16> {
    match e {
        Ok(kube::Error::Api(s)) => Some(s.code),
        _ => None,
    }
}

fn text(e: Result<kube::Error, HistoryError>) -> HistoryError {
    match e {
        Ok(e) => HistoryError(e.to_string()),
        Err(e) => e,
    }
}

/// An experiment of this process, as its writer knows it.
#[derive(Debug, Clone, Copy)]
enum Mine {
    /// Its intent is written; its final record is not queued yet.
    Open,
    /// Its final record was queued then (pending, or landed).
    Finished(Instant),
}

/// What became of one final record.
enum Landed {
    Written,
    /// Someone else wrote a final record first (a successor closed it as crashed).
    ClosedBefore,
}

impl HistoryWriter {
    /// A writer into `namespace` for `author`; its queue runs on `tasks` until `stop`
    /// (then [`Self::flush`] drains it).
    pub fn new(
        client: Client,
        namespace: &str,
        author: Author,
        stop: CancellationToken,
        tasks: &TaskTracker,
    ) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<ExperimentRecord>();
        let w = HistoryWriter {
            api: Api::namespaced(client, namespace),
            author,
            queue,
            ours: Arc::default(),
            pending: Arc::default(),
            drained: Arc::new(Notify::new()),
        };
        let this = w.clone();
        tasks.spawn(async move {
            while let Some(record) = rx.recv().await {
                this.land(&record, &stop).await;
                if this.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                    this.drained.notify_waiters();
                }
            }
        });
        w
    }

    /// Writes the intent of an experiment about to change the cluster. `Err`: it is not
    /// written, and the experiment must not change anything.
    pub async fn intent(&self, intent: &Intent) -> Result<(), HistoryError> {
        let object = object::intent_object(intent, &self.author);
        match bounded(self.api.create(&PostParams::default(), &object)).await {
            Ok(_) => {
                lock(&self.ours).insert(intent.id.clone(), Mine::Open);
                Ok(())
            }
            Err(e) => Err(text(e)),
        }
    }

    /// Whether this process wrote the intent of experiment `id` and has not queued its
    /// final record yet: its object is in the cluster, running, and waits for one.
    pub fn wrote_intent(&self, id: &str) -> bool {
        matches!(lock(&self.ours).get(id), Some(Mine::Open))
    }

    /// Queues the final record of an experiment this process ran (or closed).
    pub fn finished(&self, record: &ExperimentRecord) {
        self.forget_old();
        lock(&self.ours).insert(record.id.clone(), Mine::Finished(Instant::now()));
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.queue.send(record.clone()).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(id = %record.id, "the experiment history writer has stopped: the record stays in the journal only");
        }
    }

    /// Whether experiment `id` is this process's: its intent written here and its record
    /// not queued yet, or its record queued here (pending or just written). Never one to
    /// close as crashed.
    pub fn is_ours(&self, id: &str) -> bool {
        lock(&self.ours).contains_key(id)
    }

    fn forget_old(&self) {
        lock(&self.ours).retain(|_, mine| match mine {
            Mine::Open => true,
            Mine::Finished(at) => at.elapsed() < REMEMBER,
        });
    }

    /// Waits until every queued record was written or given up, at most `within`.
    /// Whether the queue is empty.
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.drained.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending.load(Ordering::SeqCst) == 0;
            }
        }
    }

    /// Writes one final record, retrying until it lands, is refused for good, or
    /// [`GIVE_UP_AFTER`] passed (then only the journal has it).
    async fn land(&self, record: &ExperimentRecord, stop: &CancellationToken) {
        let started = Instant::now();
        let mut wait = Duration::from_millis(500);
        loop {
            match self.write_final(record).await {
                Ok(Landed::Written) => return,
                Ok(Landed::ClosedBefore) => {
                    tracing::warn!(id = %record.id, verdict = record.verdict.label(), "the experiment's object was closed by another havoc first; this record stays in the journal only");
                    return;
                }
                Err((e, retry)) => {
                    if !retry || started.elapsed() > GIVE_UP_AFTER {
                        tracing::error!(id = %record.id, error = %e, "cannot write the experiment's final record to the cluster; it stays in the journal only");
                        return;
                    }
                    tracing::warn!(id = %record.id, error = %e, "cannot write the experiment's final record yet; retrying");
                }
            }
            // Once stopping, the queue is drained without waiting (flush bounds it).
            if !stop.is_cancelled() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => {}
                }
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// One attempt: the final status on the running object (conditionally on its phase),
    /// or the object with its final status if there is none (an experiment that ended
    /// before its intent was written). `Err`: why, and whether to retry.
    async fn write_final(&self, record: &ExperimentRecord) -> Result<Landed, (HistoryError, bool)> {
        let name = object::object_name(&record.id);
        let status = object::final_status(record);
        let patch = json!([
            {"op": "test", "path": "/status/phase", "value": "Running"},
            {"op": "replace", "path": "/status", "value": status},
            {"op": "add", "path": format!("/metadata/labels/{}", VERDICT_LABEL.replace('/', "~1")),
             "value": record.verdict.label()},
        ]);
        let patched = bounded(self.api.patch(
            &name,
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(patch).unwrap_or_default()),
        ))
        .await;
        let Err(e) = patched else {
            return Ok(Landed::Written);
        };
        match code(&e) {
            // Not running any more: someone else's final record is there.
            Some(422) => return Ok(Landed::ClosedBefore),
            Some(404) => {}
            Some(409 | 429 | 500..) | None => return Err((text(e), true)),
            Some(_) => return Err((text(e), false)),
        }
        let mut object = object::intent_object(&object::intent_of(record), &self.author);
        object.status = Some(status);
        if let Some(labels) = object.metadata.labels.as_mut() {
            labels.insert(VERDICT_LABEL.into(), record.verdict.label().into());
        }
        match bounded(self.api.create(&PostParams::default(), &object)).await {
            Ok(_) => Ok(Landed::Written),
            // Created meanwhile: the next attempt patches it.
            Err(e) if code(&e) == Some(409) => Err((text(e), true)),
            Err(e) => {
                let retry = matches!(code(&e), Some(429 | 500..) | None);
                Err((text(e), retry))
            }
        }
    }

    /// Deletes the finished experiments beyond the newest `keep`, and those that ended
    /// more than `max_age` ago (at most [`PRUNE_BATCH`] per call). How many it deleted.
    pub async fn prune(
        &self,
        history: &dyn History,
        keep: usize,
        max_age: Duration,
    ) -> Result<usize, HistoryError> {
        let mut finished = history.summaries();
        finished.sort_by(|a, b| b.ended_at.cmp(&a.ended_at).then(b.id.cmp(&a.id)));
        let cutoff = Utc::now() - chrono::Duration::from_std(max_age).unwrap_or_default();
        let victims: Vec<String> = finished
            .iter()
            .enumerate()
            .filter(|(i, s)| *i >= keep || s.ended_at < cutoff)
            .map(|(_, s)| s.id.clone())
            .take(PRUNE_BATCH)
            .collect();
        let mut deleted = 0;
        for id in &victims {
            match bounded(
                self.api
                    .delete(&object::object_name(id), &DeleteParams::default()),
            )
            .await
            {
                Ok(_) => deleted += 1,
                Err(e) if code(&e) == Some(404) => {}
                Err(e) => return Err(text(e)),
            }
        }
        if deleted > 0 {
            tracing::info!(
                deleted,
                keep,
                max_age_days = max_age.as_secs() / 86_400,
                "pruned the experiment history"
            );
        }
        Ok(deleted)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    //! The kube `tower_test` mock pattern: a scripted API server.
    use super::*;
    use crate::record::{Verdict, tests::record};
    use http::{Request, Response};
    use kube::client::Body;
    use tower_test::mock;

    /// An experiment is this process's from its intent on: the sweep never closes as
    /// crashed a run that wrote its intent and has not ended yet, nor one whose end is
    /// queued (the CI failure of 2026-12-07 was a run that ended as a skip after its
    /// intent; `wrote_intent` is what closes such an object).
    #[tokio::test]
    async fn an_experiment_is_ours_from_its_intent_until_long_after_its_record() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let author = Author {
            installation: "havoc".into(),
            owner: "havoc-system/havoc".into(),
            replica: "havoc-0".into(),
        };
        let w = HistoryWriter::new(
            Client::new(service, "havoc-system"),
            "havoc-system",
            author.clone(),
            stop.clone(),
            &tasks,
        );
        let rec = record("web-20261207T000630Z-cf9c", Verdict::Skipped);
        assert!(!w.is_ours(&rec.id) && !w.wrote_intent(&rec.id));

        let intent = object::intent_of(&rec);
        let created = serde_json::to_vec(&object::intent_object(&intent, &author)).expect("json");
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("the intent's create");
            assert_eq!(req.method().as_str(), "POST");
            let answer = Response::builder().status(201).body(Body::from(created));
            send.send_response(answer.expect("response"));
            handle
        });
        w.intent(&intent).await.expect("written");
        let _handle = server.await.expect("server");
        assert!(w.wrote_intent(&rec.id) && w.is_ours(&rec.id));

        w.finished(&rec);
        assert!(!w.wrote_intent(&rec.id), "its record is queued");
        assert!(w.is_ours(&rec.id), "ours until the watch shows it finished");
        stop.cancel();
    }
}
