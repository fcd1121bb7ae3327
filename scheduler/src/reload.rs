//! Hot reload of the policy directory: polled, and compared by content, so an edited file
//! and a ConfigMap's symlink swap look the same. Each poll only looks at the files'
//! metadata ([`Watched`]); their contents are read when it changed, and every
//! [`FULL_READ_EVERY`] polls whatever it says. A set with any problem is rejected as a
//! whole and the last good set keeps running: half-applying an edit that touches several
//! files could run a combination nobody wrote.

use crate::policy::set::{Policies, PolicySet};
use std::{
    hash::{Hash, Hasher},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::{
    access::{self, AccessReviewer},
    engine::metrics::Metrics,
    policy::{self, Context, Expect},
    schedule::stable_hash,
    targets::FollowsPolicies,
};

/// What the reload loop reads and replaces.
#[derive(Debug, Clone)]
pub struct Reloader {
    pub paths: Vec<PathBuf>,
    pub ctx: Context,
    pub policies: Policies,
    /// What follows the policy set: the watch caches, the rollout watches, the arbiter
    /// (the clock watches [`Policies`] itself: it sleeps until the next fire or a change).
    pub followers: Vec<Arc<dyn FollowsPolicies>>,
    /// havoc's own namespace (what the policies read includes its pods).
    pub own_namespace: String,
    pub metrics: Metrics,
    pub interval: Duration,
    pub stop: CancellationToken,
    /// Reviews each policy's permissions on every load (`None`: not checked, as in tests
    /// without an API server).
    pub access: Option<Arc<dyn AccessReviewer>>,
    /// What the last loads refused, for the console.
    pub status: ReloadStatus,
}

/// Problems of a load: a reload refused whole, or files left out at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub at: DateTime<Utc>,
    /// `FILE:LINE:COL: error: MESSAGE`, the file without its directory (as the API shows
    /// policy files: the mount path stays private).
    pub diagnostics: Vec<String>,
    /// At start-up the invalid files are left out and the rest runs; a reload with any
    /// problem is refused whole.
    pub at_startup: bool,
}

/// The last refused load and the last applied one: a read-only view for the console.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus(Arc<Mutex<Loads>>);

#[derive(Debug, Clone, Default)]
struct Loads {
    rejected: Option<Rejected>,
    applied: Option<DateTime<Utc>>,
}

impl ReloadStatus {
    /// The last load with problems, and when a set was last applied.
    pub fn get(&self) -> (Option<Rejected>, Option<DateTime<Utc>>) {
        let l = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (l.rejected.clone(), l.applied)
    }

    pub fn rejected(&self, report: &policy::LoadReport, at_startup: bool) {
        let diagnostics: Vec<String> = report
            .diagnostics()
            .map(|d| {
                let file = d
                    .file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!("{file}:{}:{}: error: {}", d.pos.line, d.pos.col, d.message)
            })
            .collect();
        if diagnostics.is_empty() {
            return;
        }
        self.0.lock().unwrap_or_else(|e| e.into_inner()).rejected = Some(Rejected {
            at: Utc::now(),
            diagnostics,
            at_startup,
        });
    }

    fn applied(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).applied = Some(Utc::now());
    }
}

/// The valid policies of a load report.
pub fn policy_set(report: &policy::LoadReport) -> PolicySet {
    PolicySet::new(report.policies().cloned())
}

/// Every this many polls the contents are read even if no metadata changed: a filesystem
/// whose timestamps are coarse, or a writer that puts an old time back, is then noticed
/// within a minute (at the default 5 s interval) rather than never.
pub const FULL_READ_EVERY: u32 = 12;

/// What the reload loop compares every poll: the metadata of the policy paths and of the
/// files found in them (device, inode, size, modification and change times, following
/// symlinks). A ConfigMap's symlink swap renames `..data` in the directory (its times
/// change) and points each file at a new inode; an edit in place changes the file's times.
/// Reading only metadata costs one `stat` per path and file; reading the contents costs a
/// directory listing and an open and a read per file (a poll of one file 1.9 against 7.2
/// µs, of twenty 21 against 102 µs: `benches/reload.rs`). In the service the poll's
/// wakeup costs more than either (README, "Where a kill's CPU goes").
#[derive(Debug)]
pub struct Watched {
    files: Vec<PathBuf>,
    looks: u64,
    content: u64,
    polls: u32,
}

impl Watched {
    /// The policy files as they are now.
    pub fn now(paths: &[PathBuf]) -> Self {
        let files = policy::discover(paths).0;
        // Metadata first: a change while the contents are read shows at the next poll.
        let looks = looks(paths, &files);
        Watched {
            files,
            looks,
            content: fingerprint(paths),
            polls: 0,
        }
    }

    /// Whether the files' names or contents changed since [`Watched::now`] or the last
    /// call that said so. The contents are read only when the metadata changed, or on
    /// every [`FULL_READ_EVERY`]th call.
    pub fn changed(&mut self, paths: &[PathBuf]) -> bool {
        self.polls = self.polls.wrapping_add(1);
        let full = self.polls.is_multiple_of(FULL_READ_EVERY);
        if !full && looks(paths, &self.files) == self.looks {
            return false;
        }
        let now = Watched::now(paths);
        let changed = now.content != self.content;
        (self.files, self.looks, self.content) = (now.files, now.looks, now.content);
        changed
    }
}

/// A hash of the metadata of `paths` and `files` (see [`Watched`]); an error (a file
/// gone) hashes as its kind.
fn looks(paths: &[PathBuf], files: &[PathBuf]) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in paths.iter().chain(files) {
        p.hash(&mut h);
        match std::fs::metadata(p) {
            Ok(m) => (
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
                .hash(&mut h),
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
}

/// A fingerprint of the policy files' names and contents.
pub fn fingerprint(paths: &[PathBuf]) -> u64 {
    let (files, problems) = policy::discover(paths);
    let mut text = String::new();
    for f in files {
        text.push_str(&f.display().to_string());
        text.push('\0');
        // Bounded like the load itself: a huge file costs no more than a valid one.
        match policy::read_file(&f) {
            Ok(b) => text.push_str(&String::from_utf8_lossy(&b)),
            Err(e) => text.push_str(&e.to_string()),
        }
        text.push('\0');
    }
    for p in problems {
        text.push_str(&p.to_string());
    }
    stable_hash(&text)
}

impl Reloader {
    /// Loads the policies once (start-up): invalid files are logged and left out.
    pub async fn load_initial(&self) {
        let report = self.load().await;
        for d in report.diagnostics() {
            tracing::error!(diagnostic = %d, "invalid policy");
        }
        for w in report.warnings() {
            tracing::warn!(diagnostic = %w.warning_line(), "policy warning");
        }
        self.status.rejected(&report, true);
        self.apply(policy_set(&report));
    }

    /// Reads and validates the policies, then refuses those whose fault havoc's identity
    /// may not carry out.
    async fn load(&self) -> policy::LoadReport {
        let mut report = policy::load_paths(&self.paths, &self.ctx, Expect::Policies);
        if let Some(reviewer) = &self.access {
            let outcome = access::check(&mut report, reviewer.as_ref()).await;
            if !outcome.refused.is_empty() {
                tracing::error!(
                    refused = ?outcome.refused,
                    "policies refused: their faults are not allowed by havoc's RBAC"
                );
            }
        }
        report
    }

    /// The one place that follows a new policy set: every follower learns it (with what
    /// it needs), then the clock, the API and the triggers see it.
    fn apply(&self, set: PolicySet) {
        self.metrics.policies_loaded(set.policies.len());
        let needs = crate::fault::needs_of(
            set.policies.values().map(AsRef::as_ref),
            &self.own_namespace,
        );
        for f in &self.followers {
            f.policies_changed(&set, &needs);
        }
        self.policies.replace(set);
        self.status.applied();
    }

    /// Re-reads the policies when the files change, until `stop`.
    pub async fn run(self) {
        let mut watched = Watched::now(&self.paths);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
            if !watched.changed(&self.paths) {
                continue;
            }
            let report = self.load().await;
            for w in report.warnings() {
                tracing::warn!(diagnostic = %w.warning_line(), "policy warning");
            }
            if report.is_valid() {
                let set = policy_set(&report);
                tracing::info!(policies = set.policies.len(), "policies reloaded");
                self.apply(set);
                self.metrics.reload(true);
            } else {
                for d in report.diagnostics() {
                    tracing::error!(diagnostic = %d, "invalid policy");
                }
                self.status.rejected(&report, false);
                tracing::error!(
                    running = self.policies.current().policies.len(),
                    "policy reload rejected: the last good policies keep running"
                );
                self.metrics.reload(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures;

    /// A mounted ConfigMap: `p.yaml -> ..data/p.yaml`, `..data -> ..<timestamp>`; an
    /// update writes a new timestamped directory and swaps the `..data` symlink.
    #[cfg(unix)]
    #[test]
    fn a_configmap_symlink_swap_is_seen_and_loaded() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let write = |version: &str, name: &str| {
            std::fs::create_dir(d.join(version)).expect("mkdir");
            let text = fixtures::policy(name).namespaces(&["d"]).text();
            std::fs::write(d.join(version).join("p.yaml"), text).expect("write");
        };
        write("..2026_11_22_1", "first");
        symlink("..2026_11_22_1", d.join("..data")).expect("link");
        symlink("..data/p.yaml", d.join("p.yaml")).expect("link");
        let paths = vec![d.to_path_buf()];
        let ctx = Context::default();
        let before = fingerprint(&paths);
        let mut watched = Watched::now(&paths);
        let names = || -> Vec<String> {
            policy_set(&policy::load_paths(&paths, &ctx, Expect::Policies))
                .policies
                .into_keys()
                .collect()
        };
        assert_eq!(names(), ["first"]);
        assert_eq!(fingerprint(&paths), before, "nothing changed");
        assert!(!watched.changed(&paths), "nothing changed");

        // The kubelet's atomic update: new directory, new symlink renamed over ..data.
        write("..2026_11_22_2", "second");
        symlink("..2026_11_22_2", d.join("..data_tmp")).expect("link");
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).expect("swap");
        assert_ne!(
            fingerprint(&paths),
            before,
            "the swap changes the fingerprint"
        );
        assert!(watched.changed(&paths), "the swap is seen");
        assert!(!watched.changed(&paths), "and only once");
        assert_eq!(
            names(),
            ["second"],
            "hidden version directories are not loaded"
        );
    }

    fn watched_dir() -> (tempfile::TempDir, Vec<PathBuf>, Watched) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), "one: 1\n").expect("write");
        let paths = vec![dir.path().to_path_buf()];
        let watched = Watched::now(&paths);
        (dir, paths, watched)
    }

    #[test]
    fn an_edit_of_the_same_size_is_seen_and_a_touch_is_not_a_change() {
        let (dir, paths, mut watched) = watched_dir();
        let file = dir.path().join("a.yaml");
        assert!(!watched.changed(&paths));
        let touch = |ahead: u64| {
            let f = std::fs::File::options()
                .write(true)
                .open(&file)
                .expect("open");
            f.set_modified(std::time::SystemTime::now() + Duration::from_secs(ahead))
                .expect("touch");
        };
        std::fs::write(&file, "one: 2\n").expect("write");
        // The file system's clock may be coarse (ext4: a tick of a few ms): the time of an
        // edit made later than this one, whatever the clock's grain.
        touch(1);
        assert!(watched.changed(&paths), "same size, new contents");
        // New times, same contents: read again, and not a change.
        touch(60);
        assert!(!watched.changed(&paths), "same contents");
    }

    #[test]
    fn a_file_added_or_removed_is_seen() {
        let (dir, paths, mut watched) = watched_dir();
        std::fs::write(dir.path().join("b.yaml"), "two: 2\n").expect("write");
        assert!(watched.changed(&paths), "added");
        std::fs::write(dir.path().join("notes.txt"), "not a policy").expect("write");
        assert!(
            !watched.changed(&paths),
            "not a policy file: the same policies"
        );
        std::fs::remove_file(dir.path().join("a.yaml")).expect("rm");
        assert!(watched.changed(&paths), "removed");
    }

    /// While the metadata stays the same, the contents are not read (a stale content
    /// fingerprint goes unnoticed) until the full read every FULL_READ_EVERY polls.
    #[test]
    fn contents_are_read_only_when_the_metadata_changes_or_on_a_full_read() {
        let (_dir, paths, mut watched) = watched_dir();
        watched.content ^= 1;
        for poll in 1..FULL_READ_EVERY {
            assert!(!watched.changed(&paths), "poll {poll}: metadata only");
        }
        assert!(
            watched.changed(&paths),
            "the full read compares the contents"
        );
        assert!(!watched.changed(&paths));
    }
}
