//! The journal file: all-or-nothing appends, repair of failed writes, size rotation.
//!
//! Every write happens under an advisory lock (`flock`) on the file and starts from the
//! file's length at that moment, so the cut-back after a failed write never removes
//! anything but the bytes of that write, even if another process (`havoc run` with the
//! same `--journal`) appends to the same file.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
};

use super::{JournalError, Rotation};

/// An open journal file.
#[derive(Debug)]
pub(super) struct Sink {
    path: PathBuf,
    file: File,
    rotation: Rotation,
}

impl Sink {
    /// Opens (or creates) the journal file for appending.
    pub(super) fn open(path: &Path, rotation: Rotation) -> Result<Self, JournalError> {
        let file = open_append(path).map_err(|source| JournalError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Sink {
            path: path.to_path_buf(),
            file,
            rotation,
        })
    }

    /// Appends `lines` (complete lines, each ending in a newline): all of them, flushed and
    /// synced, or none. A failed write is cut back to where it began, so no partial line is
    /// ever left for the next record to be glued to. When the file would grow beyond
    /// `max_bytes`, it is rotated first; a new or empty file starts with `carry` (the
    /// intents still open).
    pub(super) fn append(&mut self, lines: &[u8], carry: &[u8]) -> Result<(), JournalError> {
        self.locked(|sink| sink.append_locked(lines, carry, false))
    }

    /// Writes a blank line of `len` bytes where the next record would go, syncs it and cuts
    /// it back: `Ok` says a line of that size fits now. A blank line left behind by a crash
    /// in between is ignored by readers.
    pub(super) fn probe(&mut self, len: usize, carry: &[u8]) -> Result<(), JournalError> {
        let mut blank = vec![b' '; len.max(1)];
        if let Some(last) = blank.last_mut() {
            *last = b'\n';
        }
        self.locked(|sink| sink.append_locked(&blank, carry, true))
    }

    /// Runs `f` holding the lock on the file that is at `path` now (another writer may
    /// have rotated it away since it was opened).
    fn locked<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        loop {
            lock(&self.file).map_err(|e| self.write_error(e))?;
            match self.is_at_path() {
                Ok(true) => break,
                Ok(false) => {
                    let _ = self.file.unlock();
                    self.file = open_append(&self.path).map_err(|e| self.write_error(e))?;
                }
                Err(e) => {
                    let _ = self.file.unlock();
                    return Err(self.write_error(e));
                }
            }
        }
        let result = f(self);
        let _ = self.file.unlock();
        result
    }

    fn append_locked(
        &mut self,
        lines: &[u8],
        carry: &[u8],
        probe: bool,
    ) -> Result<(), JournalError> {
        let mut len = self.file.metadata().map_err(|e| self.write_error(e))?.len();
        if len > 0 && len.saturating_add(lines.len() as u64) > self.rotation.max_bytes {
            self.rotate(carry)?;
            len = self.file.metadata().map_err(|e| self.write_error(e))?.len();
        }
        let mut buf = Vec::with_capacity(lines.len() + 1);
        if len == 0 {
            // a file that holds nothing yet (deleted by someone, or left empty by a crash
            // during a rotation) starts with the open intents, like a rotated one
            buf.extend_from_slice(carry);
        } else if !self
            .ends_with_newline(len)
            .map_err(|e| self.write_error(e))?
        {
            // a line torn by a crash before this process opened the file: end it, so it
            // stays one unreadable line and does not swallow this one
            buf.push(b'\n');
        }
        buf.extend_from_slice(lines);
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) if !probe => Ok(()),
            Ok(()) => {
                self.cut_back(len);
                Ok(())
            }
            Err(e) => {
                self.cut_back(len);
                Err(self.write_error(e))
            }
        }
    }

    /// Truncates the file to `len` after a failed write (or a probe). If even that fails,
    /// the partial line stays and the next write ends it with a newline first: it is then
    /// one unreadable line, never glued to a record.
    fn cut_back(&mut self, len: u64) {
        if let Err(e) = self.file.set_len(len).and_then(|()| self.file.sync_data()) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot cut a failed journal write back");
        }
    }

    fn ends_with_newline(&self, len: u64) -> io::Result<bool> {
        let mut last = [0u8; 1];
        self.file.read_exact_at(&mut last, len - 1)?;
        Ok(last[0] == b'\n')
    }

    fn is_at_path(&self) -> io::Result<bool> {
        let ours = self.file.metadata()?;
        match fs::metadata(&self.path) {
            Ok(there) => Ok(there.dev() == ours.dev() && there.ino() == ours.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `journal.jsonl` → `journal.jsonl.1` → ... → `journal.jsonl.{keep_files}`, older ones
    /// deleted, and a new `journal.jsonl` that starts with `carry`. The new file is written
    /// and synced under a temporary name before anything is renamed, so a crash at any
    /// step leaves every open intent in a file that `open` reads, and a failure (a full
    /// disk) leaves the current file as it was.
    fn rotate(&mut self, carry: &[u8]) -> Result<(), JournalError> {
        let rotate_error = |source| JournalError::Rotate {
            path: self.path.clone(),
            source,
        };
        let fresh_path = with_suffix(&self.path, "new");
        let fresh = (|| {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&fresh_path)?;
            f.write_all(carry)?;
            f.sync_data()?;
            Ok(f)
        })();
        let fresh = match fresh {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&fresh_path);
                return Err(rotate_error(e));
            }
        };
        // `fresh` was opened for writing; appends need O_APPEND (a second writer)
        drop(fresh);
        let keep = self.rotation.keep_files;
        (|| {
            for (n, old) in rotated(&self.path)? {
                if n >= keep {
                    fs::remove_file(old)?;
                }
            }
            for n in (1..keep).rev() {
                let from = with_suffix(&self.path, &n.to_string());
                match fs::rename(&from, with_suffix(&self.path, &(n + 1).to_string())) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            if keep > 0 {
                fs::rename(&self.path, with_suffix(&self.path, "1"))?;
            }
            fs::rename(&fresh_path, &self.path)?;
            sync_dir(&self.path)
        })()
        .map_err(rotate_error)?;
        let file = open_append(&self.path).map_err(rotate_error)?;
        lock(&file).map_err(rotate_error)?;
        // the old file's lock is released when it is dropped here
        self.file = file;
        tracing::info!(path = %self.path.display(), keep_files = keep, "rotated the journal");
        Ok(())
    }

    fn write_error(&self, source: io::Error) -> JournalError {
        JournalError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

/// Rotated files of the journal at `path` (`path.N`), oldest (highest `N`) first.
pub(super) fn rotated(path: &Path) -> io::Result<Vec<(usize, PathBuf)>> {
    let (Some(dir), Some(name)) = (parent(path), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(n) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n > 0)
        else {
            continue;
        };
        found.push((n, entry.path()));
    }
    found.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    Ok(found)
}

fn open_append(path: &Path) -> io::Result<File> {
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    if !existed {
        sync_dir(path)?;
    }
    Ok(file)
}

/// Blocks until this process holds the file's write lock. A file system without locks
/// (`Unsupported`) is written without.
fn lock(file: &File) -> io::Result<()> {
    match file.lock() {
        Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
        other => other,
    }
}

/// Makes a file's creation or renaming durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(parent(path).unwrap_or(Path::new(".")))?.sync_all()
}

fn parent(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}
