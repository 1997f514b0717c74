//! A deliberately unsafe mode for one purpose: the power-cut harness's negative control
//! (`chaos/power-cut --no-fsync`), which must show that the harness catches a store that does
//! not flush. With `EDGE_GATEWAY_UNSAFE_NO_FSYNC=1` in the environment, redb's file writes go to
//! the page cache without an fsync (a wrapper of its file backend whose `sync_data` does
//! nothing) and SQLite runs with `synchronous = OFF`. A process kill loses nothing (the kernel
//! still writes the page cache out); a power cut loses what was acknowledged since the last
//! writeback. Every open logs an ERROR while it is on. Never set it anywhere else.

use std::fs::File;
use std::ops::Bound;

use ::redb::backends::FileBackend;
use ::redb::{BackendError, StorageBackend};

/// The environment variable that turns fsync off.
pub const ENV: &str = "EDGE_GATEWAY_UNSAFE_NO_FSYNC";

/// Whether fsync is off.
pub fn enabled() -> bool {
    std::env::var(ENV).is_ok_and(|v| v == "1")
}

/// Say so, loudly (each time a store opens with it).
pub fn announce() {
    if enabled() {
        tracing::error!(
            env = ENV,
            "UNSAFE: the store does not fsync; acknowledged messages are lost on a power cut. For the power-cut harness's negative control only."
        );
    }
}

/// redb's file backend without `sync_data`.
#[derive(Debug)]
pub struct NoSync(pub FileBackend);

impl NoSync {
    /// Wrap `file`.
    pub fn new(file: File) -> Result<NoSync, ::redb::DatabaseError> {
        Ok(NoSync(FileBackend::new(file)?))
    }
}

impl StorageBackend for NoSync {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.0.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.0.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.query_lock_range(start, end)
    }
}
