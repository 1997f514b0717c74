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

    /// Close the database and open the file again (redb's recovery runs: the file is as of its
    /// last good commit). Waits, bounded, for readers to finish their transaction.
    pub fn reopen(&self) -> Result<(), ReopenError> {
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
        let db = Database::create(&*self.path).map_err(|source| ReopenError::Open { path: self.path.display().to_string(), source })?;
        *slot = Some(Arc::new(db));
        Ok(())
    }
}
