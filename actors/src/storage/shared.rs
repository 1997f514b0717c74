//! A redb database shared by cheap clones that can be closed and opened again.
//!
//! redb latches a failed write or fsync: every later operation on that `Database` fails with
//! `PreviousIo` until the file is closed and opened again. Whoever writes (the storage actor,
//! the device health actor) calls [`SharedDb::reopen`] after such a failure; readers take the
//! current handle for one transaction at a time with [`SharedDb::get`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

/// How long a reopening waits for readers still inside a transaction.
const READERS_WAIT: Duration = Duration::from_secs(2);

/// The open database (`None` only between a close and a successful open) and its file.
#[derive(Clone)]
pub struct SharedDb {
    slot: Arc<RwLock<Option<Arc<Database>>>>,
    path: Arc<PathBuf>,
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
    Open { path: String, source: redb::DatabaseError },
}

impl SharedDb {
    /// Share `db`, opened from `path`.
    pub fn new(db: Database, path: &Path) -> Self {
        Self { slot: Arc::new(RwLock::new(Some(Arc::new(db)))), path: Arc::new(path.to_path_buf()) }
    }

    /// The current handle, for one transaction; `None` while closed after a failed reopening.
    pub fn get(&self) -> Option<Arc<Database>> {
        self.slot.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Close the database and open the file again (redb's recovery runs). Waits, bounded, for
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
            if let Some(mut old) = slot.take() {
                let deadline = Instant::now() + READERS_WAIT;
                loop {
                    match Arc::try_unwrap(old) {
                        Ok(db) => {
                            drop(db);
                            break;
                        }
                        Err(shared) if Instant::now() < deadline => {
                            old = shared;
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(shared) => {
                            *slot = Some(shared);
                            return Err(ReopenError::Busy(self.path.display().to_string()));
                        }
                    }
                }
            }
        }
        drop_cached_pages(&self.path);
        let db = Database::create(&*self.path).map_err(|source| ReopenError::Open { path: self.path.display().to_string(), source })?;
        *self.slot.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
        Ok(())
    }
}

/// Ask the kernel to drop `path`'s clean cached pages (dirty ones are written back first).
/// Best effort: an error only means recovery may read stale cached pages.
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
