//! The history kept in the cluster: the `HavocExperiment` objects of havoc's namespace
//! ([`super::object`]), the same for every replica and for `havoc report`.
//!
//! Every replica watches them (one watch on one namespace) and keeps, per experiment, a
//! [`Summary`] (finished) or its intent (running) — not the records: a full record is
//! read from the API server when a reader asks for it (a page per experiment, a report).
//! An object that is not an experiment havoc can read (made by hand, corrupted) is logged
//! once and ignored.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
};

use futures::{StreamExt, future::BoxFuture};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, ListParams},
    runtime::{WatchStreamExt, watcher},
};
use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    History, HistoryError, Query, Summary,
    object::{self, HavocExperiment, Read, Running},
};
use crate::record::ExperimentRecord;

/// Objects per page of a list (the watch's first, a report's): kube reads a whole page
/// into memory (as a tree of JSON values) before it hands out its objects, so the page
/// bounds what a list costs at its peak, and what the allocator keeps of it after: with
/// 1,000 records in the history, steady RSS measured +4.2 MiB at 50 a page, +3.5 at 25,
/// +2.1 to +2.8 at 10 (`tests/bench/history-footprint`, debug build). 10 it is: a
/// 10,000-record history is then 1,000 small requests at start, about 2 s here.
const PAGE: u32 = 10;
/// Full records kept after a read (a finished record never changes): the API's newest
/// 50 and the console's pages are read once, not on every request.
const CACHED: usize = 200;
/// More missing records than this are read with one list instead of a GET each.
const GETS_AT_MOST: usize = 20;

/// The full records read lately, by id, least recently used first out.
#[derive(Debug, Default)]
struct Cache {
    tick: u64,
    records: HashMap<String, (u64, Arc<ExperimentRecord>)>,
}

impl Cache {
    fn get(&mut self, id: &str) -> Option<Arc<ExperimentRecord>> {
        self.tick += 1;
        let tick = self.tick;
        self.records.get_mut(id).map(|(t, r)| {
            *t = tick;
            r.clone()
        })
    }

    fn put(&mut self, record: ExperimentRecord) -> Arc<ExperimentRecord> {
        self.tick += 1;
        let r = Arc::new(record);
        self.records.insert(r.id.clone(), (self.tick, r.clone()));
        if self.records.len() > CACHED
            && let Some(oldest) = self
                .records
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(id, _)| id.clone())
        {
            self.records.remove(&oldest);
        }
        r
    }
}

/// What the watch has seen, by object name.
#[derive(Debug, Default)]
struct Seen {
    finished: HashMap<String, Summary>,
    running: HashMap<String, Running>,
    /// Objects that could not be read (logged once each).
    unreadable: HashSet<String>,
}

impl Seen {
    fn apply(&mut self, o: HavocExperiment) {
        let name = o.name_any();
        match object::read(o) {
            Ok(Read::Finished(r)) => {
                self.running.remove(&name);
                self.unreadable.remove(&name);
                self.finished.insert(name, Summary::of(&r));
            }
            Ok(Read::Running(r)) => {
                self.finished.remove(&name);
                self.unreadable.remove(&name);
                self.running.insert(name, *r);
            }
            Err(why) => {
                self.finished.remove(&name);
                self.running.remove(&name);
                if self.unreadable.insert(name.clone()) {
                    tracing::warn!(object = %name, error = %why, "ignoring a HavocExperiment that is not an experiment havoc can read");
                }
            }
        }
    }

    fn delete(&mut self, o: &HavocExperiment) {
        let name = o.name_any();
        self.finished.remove(&name);
        self.running.remove(&name);
        self.unreadable.remove(&name);
    }
}

/// The experiment objects of one namespace, as this process has seen them.
#[derive(Clone)]
pub struct ClusterHistory {
    api: Api<HavocExperiment>,
    namespace: String,
    /// `havoc.dev/installation=LEASE`, or none (every object of the namespace).
    selector: Option<String>,
    seen: Arc<RwLock<Seen>>,
    cache: Arc<std::sync::Mutex<Cache>>,
    synced: watch::Receiver<bool>,
    synced_tx: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for ClusterHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHistory")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// The API resource of the experiment objects.
pub fn resource() -> ApiResource {
    ApiResource::erase::<HavocExperiment>(&())
}

impl ClusterHistory {
    /// The history in `namespace` (of one `installation`, or all), read with `client`
    /// (not watched yet: [`Self::watch`]).
    pub fn new(client: Client, namespace: &str, installation: Option<&str>) -> Self {
        let (synced_tx, synced) = watch::channel(false);
        ClusterHistory {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            selector: installation.map(|i| format!("{}={i}", object::INSTALLATION_LABEL)),
            seen: Arc::default(),
            cache: Arc::default(),
            synced,
            synced_tx: Arc::new(synced_tx),
        }
    }

    /// Watches the objects on `tasks` until `stop`, with `client`: one for watches
    /// (`client::Purpose::Watches`), whose read timeout outlasts quiet watch connections.
    pub fn watch(&self, client: Client, stop: CancellationToken, tasks: &TaskTracker) {
        let api: Api<HavocExperiment> = Api::namespaced(client, &self.namespace);
        let mut config = watcher::Config::default().page_size(PAGE);
        if let Some(s) = &self.selector {
            config = config.labels(s);
        }
        let stream = watcher(api, config).default_backoff();
        let seen = self.seen.clone();
        let synced = self.synced_tx.clone();
        tasks.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut listing: Option<Seen> = None;
            loop {
                let ev = tokio::select! {
                    () = stop.cancelled() => return,
                    ev = stream.next() => ev,
                };
                match ev {
                    Some(Ok(watcher::Event::Init)) => listing = Some(Seen::default()),
                    Some(Ok(watcher::Event::InitApply(o))) => {
                        if let Some(l) = listing.as_mut() {
                            l.apply(o);
                        }
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        if let Some(l) = listing.take() {
                            *write(&seen) = l;
                        }
                        synced.send_replace(true);
                    }
                    Some(Ok(watcher::Event::Apply(o))) => write(&seen).apply(o),
                    Some(Ok(watcher::Event::Delete(o))) => write(&seen).delete(&o),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "experiment history watch error; retrying");
                    }
                    None => return,
                }
            }
        });
    }

    /// The experiments whose final record is not written, as last seen.
    pub fn running(&self) -> Vec<Running> {
        read(&self.seen).running.values().cloned().collect()
    }

    /// Waits until the objects were listed once.
    pub async fn synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// How many experiments it holds (finished, running).
    pub fn counts(&self) -> (usize, usize) {
        let s = read(&self.seen);
        (s.finished.len(), s.running.len())
    }

    /// Lists every object once (a reader without a watch: `havoc report`).
    pub async fn load(&self) -> Result<(), HistoryError> {
        let mut seen = Seen::default();
        self.each_page(|page| {
            for o in page {
                seen.apply(o);
            }
        })
        .await?;
        *write(&self.seen) = seen;
        self.synced_tx.send_replace(true);
        Ok(())
    }

    /// Lists every object, a page at a time: `f` sees each page, which is dropped before
    /// the next is read (a list of the whole history never sits in memory at once).
    async fn each_page(&self, mut f: impl FnMut(Vec<HavocExperiment>)) -> Result<(), HistoryError> {
        let mut params = ListParams::default().limit(PAGE);
        if let Some(s) = &self.selector {
            params = params.labels(s);
        }
        loop {
            let page = self.api.list(&params).await.map_err(err)?;
            let next = page.metadata.continue_.filter(|c| !c.is_empty());
            f(page.items);
            match next {
                Some(c) => params = params.continue_token(&c),
                None => return Ok(()),
            }
        }
    }
}

fn err(e: kube::Error) -> HistoryError {
    HistoryError(format!("the experiment history cannot be read: {e}"))
}

fn read(seen: &RwLock<Seen>) -> std::sync::RwLockReadGuard<'_, Seen> {
    seen.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(seen: &RwLock<Seen>) -> std::sync::RwLockWriteGuard<'_, Seen> {
    seen.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl History for ClusterHistory {
    fn summaries(&self) -> Vec<Summary> {
        read(&self.seen).finished.values().cloned().collect()
    }

    fn running(&self) -> Vec<Running> {
        ClusterHistory::running(self)
    }

    fn is_ready(&self) -> bool {
        *self.synced.borrow()
    }

    /// The records matching `query`, newest first: those its summaries choose, from the
    /// cache, else read (a GET each, or one list when many are missing).
    fn records<'a>(
        &'a self,
        query: &'a Query,
    ) -> BoxFuture<'a, Result<Vec<ExperimentRecord>, HistoryError>> {
        Box::pin(async move {
            let chosen = self.list(query).await?;
            let mut found: HashMap<String, Arc<ExperimentRecord>> = HashMap::new();
            let mut missing = Vec::new();
            {
                let mut cache = lock(&self.cache);
                for s in &chosen {
                    match cache.get(&s.id) {
                        Some(r) => {
                            found.insert(s.id.clone(), r);
                        }
                        None => missing.push(s.id.clone()),
                    }
                }
            }
            if missing.len() > GETS_AT_MOST {
                let wanted: HashSet<&String> = missing.iter().collect();
                self.each_page(|page| {
                    for o in page {
                        if let Ok(Read::Finished(r)) = object::read(o)
                            && wanted.contains(&r.id)
                        {
                            found.insert(r.id.clone(), lock(&self.cache).put(*r));
                        }
                    }
                })
                .await?;
            } else {
                for id in &missing {
                    if let Some(r) = self.read_one(id).await? {
                        found.insert(id.clone(), r);
                    }
                }
            }
            Ok(chosen
                .iter()
                .filter_map(|s| found.get(&s.id).map(|r| (**r).clone()))
                .collect())
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ExperimentRecord>, HistoryError>> {
        Box::pin(async move {
            if let Some(r) = lock(&self.cache).get(id) {
                return Ok(Some((*r).clone()));
            }
            Ok(self.read_one(id).await?.map(|r| (*r).clone()))
        })
    }
}

impl ClusterHistory {
    /// Reads one finished record from the API server (and caches it).
    async fn read_one(&self, id: &str) -> Result<Option<Arc<ExperimentRecord>>, HistoryError> {
        let Some(o) = self
            .api
            .get_opt(&object::object_name(id))
            .await
            .map_err(err)?
        else {
            return Ok(None);
        };
        Ok(match object::read(o) {
            Ok(Read::Finished(r)) if r.id == id => Some(lock(&self.cache).put(*r)),
            _ => None,
        })
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
