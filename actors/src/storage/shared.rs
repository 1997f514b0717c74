//! A store file shared by cheap clones that can be closed and opened again.
//!
//! redb latches a failed write or fsync: every later operation on that `Database` fails with
//! `PreviousIo` until the file is closed and opened again. SQLite does not latch, but after a
//! failed fsync its page cache and the kernel's may both hold pages the disk never got, so it
//! is reopened the same way. Whoever writes (the storage actor,
//! the device health actor) calls [`SharedDb::reopen`] after such a failure; readers take the
//! current handle for one transaction at a time with [`SharedDb::get`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::backend::{Backend, BackendKind};
use super::store::StoreError;

/// How long a reopening waits for readers still inside a transaction.
const READERS_WAIT: Duration = Duration::from_secs(2);

/// The open store (`None` only between a close and a successful open), its engine and file.
#[derive(Clone)]
pub struct SharedDb {
    /// The open engine; readers clone the `Arc` for one transaction.
    slot: Arc<RwLock<Option<Arc<dyn Backend>>>>,
    /// Which engine to reopen the file with.
    kind: BackendKind,
    /// The file.
    path: Arc<PathBuf>,
}

/// A [`SharedDb`] that does not keep the file open.
#[derive(Clone)]
pub struct WeakDb {
    slot: std::sync::Weak<RwLock<Option<Arc<dyn Backend>>>>,
    kind: BackendKind,
    path: Arc<PathBuf>,
}

impl WeakDb {
    /// The store, while anything else still holds it open.
    pub fn upgrade(&self) -> Option<SharedDb> {
        Some(SharedDb { slot: self.slot.upgrade()?, kind: self.kind, path: self.path.clone() })
    }
}

/// Why a reopening failed; the database stays closed (or, for `Busy`, open) and the caller
/// tries again later.
#[derive(Debug, thiserror::Error)]
pub enum ReopenError {
    /// Readers held the old handle past [`READERS_WAIT`].
    #[error("cannot reopen {0}: readers still hold it")]
    Busy(String),
    /// The file could not be opened again.
    #[error("cannot reopen {path}: {source}")]
    Open { path: String, source: StoreError },
}

impl SharedDb {
    /// Open (or create) the file at `path` with engine `kind`.
    pub fn open(kind: BackendKind, path: &Path) -> Result<Self, StoreError> {
        let backend = kind.open(path)?;
        Ok(Self { slot: Arc::new(RwLock::new(Some(backend))), kind, path: Arc::new(path.to_path_buf()) })
    }

    /// A handle that does not keep the file open.
    pub fn downgrade(&self) -> WeakDb {
        WeakDb { slot: Arc::downgrade(&self.slot), kind: self.kind, path: self.path.clone() }
    }

    /// The current handle, for one transaction; `None` while closed after a failed reopening.
    pub fn get(&self) -> Option<Arc<dyn Backend>> {
        self.slot.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The engine.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// Close the store and open the file again (the engine's recovery runs). Waits, bounded, for
    /// readers to finish their transaction; if one holds on past that, the old handle stays and
    /// the call fails with [`ReopenError::Busy`] (try again later).
    ///
    /// Before opening, the file's cached pages are dropped: after a failed fsync Linux marks the
    /// pages whose writeback failed clean but keeps their new content in the page cache, so a
    /// plain reopen would read (and build new commits on) data that never reached the disk.
    /// Dropped, they are read again from the disk, and redb's recovery sees what is really there.
    /// The lock is not held while the file is opened (recovery walks the whole file): readers
    /// get "closed" meanwhile instead of waiting.
    pub fn reopen(&self) -> Result<(), ReopenError> {
        {
            let mut slot = self.slot.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(old) = slot.take() {
                // Nobody can take a new clone while the slot is empty and locked: once the count
                // is down to this one, dropping it closes the file.
                let deadline = Instant::now() + READERS_WAIT;
                while Arc::strong_count(&old) > 1 {
                    if Instant::now() >= deadline {
                        *slot = Some(old);
                        return Err(ReopenError::Busy(self.path.display().to_string()));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                drop(old);
            }
        }
        for file in self.kind.files(&self.path) {
            drop_cached_pages(&file);
        }
        let backend = self.kind.open(&self.path).map_err(|source| ReopenError::Open { path: self.path.display().to_string(), source })?;
        *self.slot.write().unwrap_or_else(PoisonError::into_inner) = Some(backend);
        Ok(())
    }
}

/// Ask the kernel to drop `path`'s clean cached pages (dirty ones are written back first).
/// Best effort: an error only means recovery may read stale cached pages; a missing file (no
/// SQLite log yet) has none.
fn drop_cached_pages(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(file) = std::fs::File::open(path) {
        // SAFETY: posix_fadvise only reads its integer arguments; the fd is open for the call.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            tracing::warn!(file = %path.display(), errno = rc, "Cannot drop the cached pages of the store file before reopening it.");
        }
    }
}
