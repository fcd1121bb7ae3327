//! Scoped watches: one kind watched in a set of namespaces (one watch each) or in the
//! whole cluster (one watch), following a [`Namespaces`] that changes with the policies.
//! The one mechanism behind every watch cache and the rollout triggers: a kind watched
//! cluster-wide is the same code with the scope `All`.
//!
//! Changing the scope starts the watches it adds at once and stops those it drops only
//! when every wanted watch has listed: an unchanged namespace keeps its watch, and a
//! namespace moving from its own watch to the cluster's (or back) is served by the old
//! one until the new one is current — no gap in which a policy reads an empty cache.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use futures::StreamExt;
use kube::{Api, Client, Resource, ResourceExt, core::NamespaceResourceScope, runtime::watcher};
use serde::de::DeserializeOwned;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::scope::Namespaces;

/// How long a watch may keep failing before its cache counts as unreadable (the
/// experiments that need it are skipped).
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// Whether one watch delivers: failing since when, if it is failing.
#[derive(Debug, Default)]
pub struct WatchHealth {
    failing_since: Mutex<Option<Instant>>,
}

impl WatchHealth {
    pub fn ok(&self) {
        *self.failing_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn failed(&self) {
        self.failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Instant::now);
    }

    /// Failing for longer than [`STALE_AFTER`]: since when.
    pub fn stale(&self) -> Option<Duration> {
        let since = (*self.failing_since.lock().unwrap_or_else(|e| e.into_inner()))?;
        let for_ = since.elapsed();
        (for_ > STALE_AFTER).then_some(for_)
    }
}

/// What a running watch tells its set.
pub trait Watch: Send + Sync + 'static {
    /// Its first list has arrived.
    fn synced(&self) -> bool;
    /// Failing for longer than [`STALE_AFTER`].
    fn stale(&self) -> Option<Duration>;
}

/// Why a namespace cannot be read from a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unserved {
    /// No watch covering it has listed yet (or none is running).
    NotSynced,
    /// The watch serving it has failed for this long.
    Stale(Duration),
}

type Starter<H> = dyn Fn(Option<&str>, CancellationToken) -> Arc<H> + Send + Sync;

struct Running<H> {
    handle: Arc<H>,
    stop: CancellationToken,
}

struct SetState<H> {
    wanted: Option<Namespaces>,
    /// By namespace; `None` is the cluster-wide watch.
    running: BTreeMap<Option<String>, Running<H>>,
    /// Bumped by every [`WatchSet::set`]: a pending prune of an older scope gives up.
    generation: u64,
}

/// One kind's watches.
pub struct WatchSet<H> {
    pub kind: &'static str,
    state: Arc<Mutex<SetState<H>>>,
    start: Arc<Starter<H>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl<H> Clone for WatchSet<H> {
    fn clone(&self) -> Self {
        WatchSet {
            kind: self.kind,
            state: self.state.clone(),
            start: self.start.clone(),
            stop: self.stop.clone(),
            tasks: self.tasks.clone(),
        }
    }
}

impl<H> std::fmt::Debug for WatchSet<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchSet")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn keys(wanted: &Option<Namespaces>) -> Vec<Option<String>> {
    match wanted {
        None => Vec::new(),
        // Unresolved selectors (a follower that does not resolve them): the whole cluster.
        Some(Namespaces::All | Namespaces::Matching { .. }) => vec![None],
        Some(Namespaces::Names(n)) => n.iter().cloned().map(Some).collect(),
    }
}

/// How often a scope change checks whether the watches it started have listed.
const PRUNE_POLL: Duration = Duration::from_millis(100);

impl<H: Watch> WatchSet<H> {
    /// A set that starts no watch until [`WatchSet::set`]. `start(namespace, stop)` starts
    /// one watch (`None`: cluster-wide) running until `stop`; the set's watches end with
    /// `stop` at the latest, and run on `tasks`.
    pub fn new(
        kind: &'static str,
        stop: &CancellationToken,
        tasks: &TaskTracker,
        start: impl Fn(Option<&str>, CancellationToken) -> Arc<H> + Send + Sync + 'static,
    ) -> Self {
        WatchSet {
            kind,
            state: Arc::new(Mutex::new(SetState {
                wanted: None,
                running: BTreeMap::new(),
                generation: 0,
            })),
            start: Arc::new(start),
            stop: stop.clone(),
            tasks: tasks.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SetState<H>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches `wanted` from now on (`None`: nothing).
    pub fn set(&self, wanted: Option<Namespaces>) {
        let mut st = self.lock();
        if st.wanted == wanted {
            return;
        }
        tracing::info!(kind = self.kind, scope = ?wanted, "watch scope changed");
        st.generation += 1;
        for key in keys(&wanted) {
            if let std::collections::btree_map::Entry::Vacant(slot) = st.running.entry(key) {
                let stop = self.stop.child_token();
                let handle = (self.start)(slot.key().as_deref(), stop.clone());
                slot.insert(Running { handle, stop });
            }
        }
        st.wanted = wanted;
        let generation = st.generation;
        if Self::prune(&mut st) {
            return;
        }
        drop(st);
        // Some wanted watch has not listed yet: the dropped ones keep serving until it has.
        let (this, stop) = (self.clone(), self.stop.clone());
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(PRUNE_POLL) => {}
                }
                let mut st = this.lock();
                if st.generation != generation || Self::prune(&mut st) {
                    return;
                }
            }
        });
    }

    /// Stops the watches no longer wanted if every wanted one has listed; whether it did.
    fn prune(st: &mut SetState<H>) -> bool {
        let wanted = keys(&st.wanted);
        let ready = wanted
            .iter()
            .all(|k| st.running.get(k).is_some_and(|r| r.handle.synced()));
        if ready {
            st.running.retain(|k, r| {
                let keep = wanted.contains(k);
                if !keep {
                    r.stop.cancel();
                }
                keep
            });
        }
        ready
    }

    /// Every wanted watch has listed.
    pub fn is_synced(&self) -> bool {
        let st = self.lock();
        keys(&st.wanted)
            .iter()
            .all(|k| st.running.get(k).is_some_and(|r| r.handle.synced()))
    }

    /// A wanted watch failing for longer than [`STALE_AFTER`]: for how long.
    pub fn stale(&self) -> Option<Duration> {
        let st = self.lock();
        keys(&st.wanted)
            .iter()
            .filter_map(|k| st.running.get(k))
            .find_map(|r| r.handle.stale())
    }

    /// The watch that serves namespace `ns` (`None`: the whole cluster): its own when it
    /// has listed, else the cluster-wide one when that has.
    pub fn serving(&self, ns: Option<&str>) -> Result<Arc<H>, Unserved> {
        let st = self.lock();
        let own = ns.and_then(|n| st.running.get(&Some(n.to_string())));
        let handle = [own, st.running.get(&None)]
            .into_iter()
            .flatten()
            .find(|r| r.handle.synced())
            .map(|r| r.handle.clone())
            .ok_or(Unserved::NotSynced)?;
        match handle.stale() {
            Some(d) => Err(Unserved::Stale(d)),
            None => Ok(handle),
        }
    }

    /// Every running watch (wanted or about to stop).
    pub fn running(&self) -> Vec<Arc<H>> {
        self.lock()
            .running
            .values()
            .map(|r| r.handle.clone())
            .collect()
    }

    /// The current scope.
    pub fn wanted(&self) -> Option<Namespaces> {
        self.lock().wanted.clone()
    }
}

/// Objects by namespace and name.
type ByNamespace<T> = BTreeMap<String, BTreeMap<String, Arc<T>>>;

/// One watch's cache: what a conversion kept of each object, indexed by namespace (so that
/// reading one namespace costs what it holds, also from a cluster-wide watch).
#[derive(Debug)]
pub struct Index<T> {
    health: WatchHealth,
    state: RwLock<IndexState<T>>,
    /// Told after every event applied (whoever follows the objects: the namespaces a
    /// selector matches).
    changed: tokio::sync::Notify,
}

#[derive(Debug)]
struct IndexState<T> {
    synced: bool,
    items: ByNamespace<T>,
    /// A (re-)list in progress: replaces `items` when complete, so that a re-list serves
    /// the previous objects until it is done.
    listing: Option<ByNamespace<T>>,
}

impl<T> Default for Index<T> {
    fn default() -> Self {
        Index {
            health: WatchHealth::default(),
            state: RwLock::new(IndexState {
                synced: false,
                items: BTreeMap::new(),
                listing: None,
            }),
            changed: tokio::sync::Notify::new(),
        }
    }
}

impl<T: Send + Sync + 'static> Watch for Index<T> {
    fn synced(&self) -> bool {
        self.read().synced
    }

    fn stale(&self) -> Option<Duration> {
        self.health.stale()
    }
}

fn insert<T>(map: &mut ByNamespace<T>, ns: String, name: String, value: Option<T>) {
    match value {
        Some(v) => {
            map.entry(ns).or_default().insert(name, Arc::new(v));
        }
        None => remove(map, &ns, &name),
    }
}

fn remove<T>(map: &mut ByNamespace<T>, ns: &str, name: &str) {
    if let Some(m) = map.get_mut(ns) {
        m.remove(name);
        if m.is_empty() {
            map.remove(ns);
        }
    }
}

impl<T> Index<T> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, IndexState<T>> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IndexState<T>> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one watch event; `convert` keeps what havoc reads of an object (`None`:
    /// nothing, the object is left out).
    pub fn apply<K: Resource>(&self, event: watcher::Event<K>, convert: fn(K) -> Option<T>) {
        let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        let mut st = self.write();
        match event {
            watcher::Event::Init => st.listing = Some(BTreeMap::new()),
            watcher::Event::InitApply(o) => {
                let (ns, name) = key(&o);
                let value = convert(o);
                insert(st.listing.get_or_insert_default(), ns, name, value);
            }
            watcher::Event::InitDone => {
                st.items = st.listing.take().unwrap_or_default();
                st.synced = true;
            }
            watcher::Event::Apply(o) => {
                let (ns, name) = key(&o);
                let value = convert(o);
                insert(&mut st.items, ns, name, value);
            }
            watcher::Event::Delete(o) => {
                let (ns, name) = key(&o);
                remove(&mut st.items, &ns, &name);
            }
        }
        drop(st);
        // One follower at most: a permit is kept until it looks.
        self.changed.notify_one();
    }

    /// Completes after an event was applied since the last call (or now, if one was).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The objects of namespace `ns` (`""` for cluster-scoped kinds).
    pub fn in_namespace(&self, ns: &str) -> Vec<Arc<T>> {
        self.read()
            .items
            .get(ns)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One object.
    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<T>> {
        self.read().items.get(ns)?.get(name).cloned()
    }

    /// Every object.
    pub fn all(&self) -> Vec<Arc<T>> {
        self.read()
            .items
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().items.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Initial backoff of a failing watch; doubles up to [`MAX_BACKOFF`], and resets once
/// the watch delivers again.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A set of watches of kind `K` feeding one [`Index`] each; `api(namespace)` is the API
/// of one watch ([`namespaced`], [`cluster`]). `K` may be a `PartialObjectMeta<_>`: then
/// the API server sends metadata only.
pub fn index_set<K, T>(
    kind: &'static str,
    api: impl Fn(Option<&str>) -> Api<K> + Send + Sync + 'static,
    config: watcher::Config,
    convert: fn(K) -> Option<T>,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) -> WatchSet<Index<T>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    keyed_set(kind, api, move |_| config.clone(), convert, stop, tasks)
}

/// A set of watches of a cluster-scoped kind whose keys are filters, not namespaces:
/// `config(key)` is the watch of one key (`None`: every object), each with its own
/// [`Index`] (the objects two filters both match are in both).
pub fn filtered_set<K, T>(
    kind: &'static str,
    api: Api<K>,
    config: impl Fn(Option<&str>) -> watcher::Config + Send + Sync + 'static,
    convert: fn(K) -> Option<T>,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) -> WatchSet<Index<T>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    keyed_set(kind, move |_| api.clone(), config, convert, stop, tasks)
}

/// A set whose watch of key `k` lists `api(k)` with `config(k)`.
fn keyed_set<K, T>(
    kind: &'static str,
    api: impl Fn(Option<&str>) -> Api<K> + Send + Sync + 'static,
    config: impl Fn(Option<&str>) -> watcher::Config + Send + Sync + 'static,
    convert: fn(K) -> Option<T>,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) -> WatchSet<Index<T>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    let spawn_on = tasks.clone();
    WatchSet::new(kind, stop, tasks, move |key, stop| {
        let index = Arc::new(Index::default());
        spawn_on.spawn(run(
            kind,
            api(key),
            config(key),
            index.clone(),
            convert,
            stop,
        ));
        index
    })
}

/// The API of a namespaced kind in one namespace, or in the whole cluster.
pub fn namespaced<K>(client: &Client) -> impl Fn(Option<&str>) -> Api<K> + Send + Sync + 'static
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    let client = client.clone();
    move |ns| match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The API of a cluster-scoped kind (only ever watched as a whole).
pub fn cluster<K>(client: &Client) -> impl Fn(Option<&str>) -> Api<K> + Send + Sync + 'static
where
    K: Resource,
    K::DynamicType: Default,
{
    let client = client.clone();
    move |_| Api::all(client.clone())
}

/// Runs one watch until `stop`, feeding `index`. After an error the watch is started
/// afresh (a new list, with backoff) rather than resumed: a fresh list always delivers,
/// so a cache is known to be current again as soon as it has one — what [`WatchHealth`]
/// reports.
async fn run<K, T>(
    kind: &'static str,
    api: Api<K>,
    config: watcher::Config,
    index: Arc<Index<T>>,
    convert: fn(K) -> Option<T>,
    stop: CancellationToken,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        let stream = watcher(api.clone(), config.clone());
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = tokio::select! {
                () = stop.cancelled() => return,
                item = stream.next() => item,
            };
            match item {
                Some(Ok(event)) => {
                    // `Init` comes before the list is made (the index swaps only at
                    // `InitDone`): only a finished list or a live event proves the index
                    // current, and only that may reset the backoff - else a list that keeps
                    // failing (a 403, say) is retried every half second.
                    let proves =
                        !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_));
                    index.apply(event, convert);
                    if proves {
                        index.health.ok();
                        backoff = FIRST_BACKOFF;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(kind, error = %e, "watch error; listing again");
                    index.health.failed();
                    break;
                }
                None => break,
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A watch whose sync the test decides.
    #[derive(Default)]
    struct Fake {
        synced: AtomicBool,
        stop: Mutex<Option<CancellationToken>>,
    }

    impl Watch for Fake {
        fn synced(&self) -> bool {
            self.synced.load(Ordering::SeqCst)
        }
        fn stale(&self) -> Option<Duration> {
            None
        }
    }

    impl Fake {
        fn stopped(&self) -> bool {
            self.stop
                .lock()
                .expect("lock")
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
        }
    }

    type Started = Arc<Mutex<Vec<(Option<String>, Arc<Fake>)>>>;

    fn set() -> (WatchSet<Fake>, Started) {
        let started: Started = Arc::default();
        let s = started.clone();
        let w = WatchSet::new(
            "Pod",
            &CancellationToken::new(),
            &TaskTracker::new(),
            move |ns, stop| {
                let f = Arc::new(Fake::default());
                *f.stop.lock().expect("lock") = Some(stop);
                s.lock()
                    .expect("lock")
                    .push((ns.map(str::to_string), f.clone()));
                f
            },
        );
        (w, started)
    }

    fn handle(started: &Started, ns: Option<&str>) -> Arc<Fake> {
        started
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .find(|(k, _)| k.as_deref() == ns)
            .map(|(_, f)| f.clone())
            .expect("started")
    }

    #[tokio::test(start_paused = true)]
    async fn unchanged_namespaces_keep_their_watch_and_a_wider_scope_has_no_gap() {
        let (w, started) = set();
        w.set(Some(Namespaces::names(["a", "b"])));
        assert!(!w.is_synced());
        assert_eq!(w.serving(Some("a")).err(), Some(Unserved::NotSynced));
        let (a, b) = (handle(&started, Some("a")), handle(&started, Some("b")));
        a.synced.store(true, Ordering::SeqCst);
        b.synced.store(true, Ordering::SeqCst);
        assert!(w.is_synced());

        // b dropped, c added: a keeps its watch (not restarted); b serves until c lists
        w.set(Some(Namespaces::names(["a", "c"])));
        assert_eq!(started.lock().expect("lock").len(), 3, "only c started");
        assert!(!b.stopped(), "kept until the new scope has listed");
        let c = handle(&started, Some("c"));
        c.synced.store(true, Ordering::SeqCst);
        tokio::time::sleep(PRUNE_POLL * 2).await;
        assert!(b.stopped() && !a.stopped() && !c.stopped());

        // a selector policy arrives: the cluster-wide watch starts; until it has listed,
        // a is served by its own watch, then by the cluster's, and its own one stops
        w.set(Some(Namespaces::All));
        let all = handle(&started, None);
        assert!(Arc::ptr_eq(&w.serving(Some("a")).expect("served"), &a));
        assert_eq!(w.serving(None).err(), Some(Unserved::NotSynced));
        assert!(!w.is_synced(), "the cluster scope has not synced");
        all.synced.store(true, Ordering::SeqCst);
        tokio::time::sleep(PRUNE_POLL * 2).await;
        assert!(a.stopped() && c.stopped() && !all.stopped());
        assert!(Arc::ptr_eq(&w.serving(Some("a")).expect("served"), &all));

        // nothing wanted: nothing watched
        w.set(None);
        assert!(all.stopped());
        assert!(w.running().is_empty() && w.is_synced());
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_scope_cancels_a_pending_prune() {
        let (w, started) = set();
        w.set(Some(Namespaces::names(["a"])));
        let a = handle(&started, Some("a"));
        a.synced.store(true, Ordering::SeqCst);
        w.set(Some(Namespaces::names(["b"])));
        // back to a before b listed: a was never stopped, b goes once a is synced
        w.set(Some(Namespaces::names(["a"])));
        let b = handle(&started, Some("b"));
        assert!(b.stopped() && !a.stopped());
        assert_eq!(started.lock().expect("lock").len(), 2);
    }

    #[test]
    fn an_index_relists_without_a_gap_and_by_namespace() {
        use k8s_openapi::api::core::v1::Pod;
        let pod = |ns: &str, name: &str| Pod {
            metadata: kube::api::ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Pod::default()
        };
        let idx: Index<String> = Index::default();
        let name = |p: Pod| p.metadata.name;
        idx.apply(watcher::Event::Init, name);
        idx.apply(watcher::Event::InitApply(pod("a", "1")), name);
        assert!(!idx.synced() && idx.is_empty());
        idx.apply(watcher::Event::InitApply(pod("b", "2")), name);
        idx.apply(watcher::Event::InitDone, name);
        assert!(idx.synced());
        assert_eq!(idx.in_namespace("a").len(), 1);
        // a re-list serves the old objects until it is done, then replaces them
        idx.apply(watcher::Event::Init, name);
        idx.apply(watcher::Event::InitApply(pod("a", "3")), name);
        assert_eq!(idx.len(), 2);
        idx.apply(watcher::Event::InitDone, name);
        assert_eq!(idx.len(), 1);
        assert_eq!(*idx.in_namespace("a")[0], "3");
        idx.apply(watcher::Event::Apply(pod("c", "4")), name);
        idx.apply(watcher::Event::Delete(pod("a", "3")), name);
        assert!(idx.in_namespace("a").is_empty());
        assert!(idx.get("c", "4").is_some());
    }
}
