//! The retention tier: a local archive of messages in Parquet files, kept by retention class
//! for a window nothing can shorten, tamper-evident, and uploaded in bulk.
//!
//! ```text
//! store ──(cursor "archive")──▶ actor ──▶ <class>/<yyyy-mm-dd>/<hh>-<n>.parquet ──▶ upload
//!                                  │            manifest.jsonl (hash chain), audit.jsonl
//!                                  └─ sweep: max_keep_days, quota, holds ─▶ Classes (ingress)
//! ```
//!
//! - [`actor`]: the archive actor, a consumer of the store like a forwarder, under the
//!   forwarders supervisor; its cursor moves only after the files holding the messages are
//!   fsync'ed and in the manifest.
//! - [`columns`]: the Parquet schema, writing and reading rows (time-range pushdown).
//! - [`files`]: paths, atomic closing, recovery after a crash.
//! - [`manifest`]: the hash-chained list of files; [`verify`] checks files against it.
//! - [`retention`]: windows, deletions, quotas, legal holds; [`audit`]: the audit log.
//! - [`classes`]: topic to class, and the classes refusing ingest at their quota.
//! - [`query`]: reading a time range back (the CLI's `list`, `query`, `export`).
//! - [`upload`]: copying closed files and the manifest to a folder or an S3 bucket.
//!
//! `docs/RETENTION.md` is the operator's view.

pub mod actor;
pub mod audit;
pub mod classes;
pub mod columns;
pub mod files;
pub mod manifest;
pub mod query;
pub mod retention;
pub mod status;
pub mod upload;
pub mod verify;

use std::path::Path;

pub use classes::Classes;

/// What went wrong in the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A Parquet file could not be written or read.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The manifest could not be extended.
    #[error("manifest: {0}")]
    Manifest(String),
    /// An operator's request that retention forbids (a hold, the window without `--force`).
    #[error("refused: {0}")]
    Refused(String),
    /// An upload failed.
    #[error("upload: {0}")]
    Upload(String),
}

impl ArchiveError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ArchiveError::Io { path: path.display().to_string(), source }
    }
}
#[cfg(test)]
mod tests;
