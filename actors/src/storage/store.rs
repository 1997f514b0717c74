//! Synchronous access to the store: opening it, reading batches, cursors and stats, through
//! whichever engine holds it ([`super::backend`]).
//!
//! Everything here is a short read transaction or (for [`Store::open`]) the one-time check of
//! the format; the write path lives in the storage actor.

use std::path::Path;
use std::sync::Arc;

use thiserror::Error;

use super::backend::{Backend, BackendKind, Label};
use super::shared::SharedDb;
use crate::record::{DecodeError, Record};

/// The store's table layout this build reads and writes (exactly this one).
pub const FORMAT_VERSION: &str = "1";

/// Errors from the store, each naming what failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The file could not be created or opened; `damaged` when its content is the reason
    /// (then it is quarantined), not a lock, a permission or the disk.
    #[error("cannot open store {path}: {reason}")]
    Open { path: String, reason: String, damaged: bool },
    /// The file was written by an incompatible version.
    #[error("store {path} has format {found}, this build reads format {FORMAT_VERSION}")]
    Format { path: String, found: String },
    /// The engine found damaged content (redb: anything but an I/O error; SQLite: corrupt).
    #[error("store: {0}")]
    Damaged(String),
    /// Any other engine error (SQLite: a constraint, misuse).
    #[error("store: {0}")]
    Engine(String),
    /// The disk failed a read, write or fsync (redb then fails everything until reopened).
    #[error("store: I/O: {0}")]
    Io(String),
    /// A stored record cannot be decoded.
    #[error("store: record {seq}: {source}")]
    Decode { seq: u64, source: DecodeError },
    /// The database is closed between a failed write and its reopening.
    #[error("store {path} is closed after an I/O error and not yet reopened")]
    Closed { path: String },
    /// A fault injected on purpose (chaos admin API, tests).
    #[error("injected fault: transaction aborted before commit")]
    Injected,
}

/// A handle to the open database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The open store, shared by every clone (a second open of the same file is refused);
    /// reopened after a failed write or fsync ([`Store::reopen`]).
    db: SharedDb,
    /// Sinks that hold records back from deletion (the configured ones).
    sinks: Arc<Vec<String>>,
}

/// Sizes of what is stored, as of one read transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Records in `messages`.
    pub messages: u64,
    /// Sum of encoded record sizes in `messages`.
    pub bytes: u64,
    /// The sequence number the next record will get.
    pub next_seq: u64,
    /// Receive time of the oldest record, if any.
    pub oldest_received_ms: Option<u64>,
    /// Kept-apart records in `rejected`.
    pub rejected: u64,
}

/// A message a sink refused for good, kept for an operator to inspect.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The sink that refused it.
    pub sink: String,
    /// Why (e.g. `HTTP 400: ...`).
    pub reason: String,
    /// The message itself.
    pub record: Record,
}

/// A [`Store`] handle that does not keep the file open: for readers that may outlive the
/// gateway's stop (the writers of MQTT connections).
#[derive(Clone)]
pub struct WeakStore {
    db: super::shared::WeakDb,
    sinks: Arc<Vec<String>>,
}

impl WeakStore {
    /// The store, while the gateway holds it open.
    pub fn upgrade(&self) -> Option<Store> {
        Some(Store { db: self.db.upgrade()?, sinks: self.sinks.clone() })
    }
}

impl Store {
    /// A handle that does not keep the file open.
    pub fn downgrade(&self) -> WeakStore {
        WeakStore { db: self.db.downgrade(), sinks: self.sinks.clone() }
    }

    /// Open (or create) the store at `path` with engine `kind`, every table in it.
    pub fn open(kind: BackendKind, path: &Path, sinks: Vec<String>) -> Result<Self, StoreError> {
        let store = Self { db: SharedDb::open(kind, path)?, sinks: Arc::new(sinks) };
        store.check_format(path)?;
        Ok(store)
    }

    /// Close the store and open the file again: the way back after a failed write or fsync
    /// (see [`SharedDb`]). On failure the store stays closed and the caller retries later.
    pub fn reopen(&self) -> Result<(), StoreError> {
        self.db.reopen().map_err(|e| StoreError::Io(e.to_string()))
    }

    fn check_format(&self, path: &Path) -> Result<(), StoreError> {
        let mut result = Ok(());
        self.backend()?.write(&mut |t| {
            match t.label(Label::Format)? {
                None => t.set_label(Label::Format, FORMAT_VERSION)?,
                Some(f) if f == FORMAT_VERSION => {}
                Some(found) => result = Err(StoreError::Format { path: path.display().to_string(), found }),
            }
            Ok(())
        })?;
        result
    }

    /// The open engine, held for one transaction at a time.
    pub(crate) fn backend(&self) -> Result<Arc<dyn Backend>, StoreError> {
        self.db.get().ok_or_else(|| StoreError::Closed { path: self.db.path().display().to_string() })
    }

    /// Which engine holds the store.
    pub fn kind(&self) -> BackendKind {
        self.db.kind()
    }

    /// The sinks whose cursors hold records back.
    pub fn sinks(&self) -> &[String] {
        &self.sinks
    }

    /// The gateway id: the stored one, else `configured`, else a new random one; stored once.
    pub fn gateway_id(&self, configured: Option<&str>) -> Result<String, StoreError> {
        let mut id = String::new();
        self.backend()?.write(&mut |t| {
            id = match (t.label(Label::GatewayId)?, configured) {
                // The configured id wins for new records; old records keep their stored keys.
                (Some(stored), Some(conf)) if stored != conf => {
                    t.set_label(Label::GatewayId, conf)?;
                    conf.to_string()
                }
                (Some(stored), _) => stored,
                (None, conf) => {
                    let id = conf.map(str::to_string).unwrap_or_else(random_id);
                    t.set_label(Label::GatewayId, &id)?;
                    id
                }
            };
            Ok(())
        })?;
        Ok(id)
    }

    /// Up to `max_messages` records (and about `max_bytes`) with seq >= `from`, in seq order.
    /// Always returns at least one record when one exists, however large.
    pub fn read_batch(&self, from: u64, max_messages: usize, max_bytes: usize) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        self.backend()?.scan(from, &mut |seq, value| {
            if !out.is_empty() && (out.len() >= max_messages || bytes + value.len() > max_bytes) {
                return Ok(false);
            }
            bytes += value.len();
            out.push(Record::decode(seq, value).map_err(|source| StoreError::Decode { seq, source })?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The next seq `sink` has not acknowledged (0 for a sink never seen).
    pub fn cursor(&self, sink: &str) -> Result<u64, StoreError> {
        Ok(self.backend()?.cursor(sink)?.unwrap_or(0))
    }

    /// Record counts and sizes.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        self.backend()?.stats()
    }

    /// Up to `limit` kept-apart records (failed their schema) with seq >= `from`, in seq order.
    pub fn rejected(&self, from: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        self.backend()?.rejected(from, &mut |seq, value| {
            if out.len() >= limit {
                return Ok(false);
            }
            out.push(Record::decode(seq, value).map_err(|source| StoreError::Decode { seq, source })?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Every retained message, by topic (read at start by the router).
    pub fn retained(&self) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        let mut failed = None;
        self.backend()?.retained(&mut |topic, value| match Record::decode(0, value) {
            Ok(record) => out.push(record),
            Err(e) => failed = Some(format!("retained message of {topic:?}: {e}")),
        })?;
        match failed {
            Some(e) => Err(StoreError::Damaged(e)),
            None => Ok(out),
        }
    }

    /// Up to `limit` dead letters, by sink then seq.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut out = Vec::new();
        self.backend()?.dead_letters(&mut |sink, seq, value| {
            if out.len() >= limit {
                return Ok(false);
            }
            let (reason, record) = decode_dead_letter(seq, value)?;
            out.push(DeadLetter { sink: sink.to_string(), reason, record });
            Ok(true)
        })?;
        Ok(out)
    }
}

/// The receive time stored in an encoded record (bytes 1..9), without decoding the rest.
pub(crate) fn received_at(encoded: &[u8]) -> Option<u64> {
    encoded.get(1..9).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

pub(crate) fn encode_dead_letter(reason: &str, record: &[u8]) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(1024)];
    let mut out = Vec::with_capacity(2 + reason.len() + record.len());
    out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
    out.extend_from_slice(reason);
    out.extend_from_slice(record);
    out
}

fn decode_dead_letter(seq: u64, value: &[u8]) -> Result<(String, Record), StoreError> {
    let truncated = StoreError::Decode { seq, source: DecodeError::Truncated };
    let len = value.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize).ok_or(truncated)?;
    let reason = value.get(2..2 + len).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
    let record = Record::decode(seq, value.get(2 + len..).unwrap_or(&[])).map_err(|source| StoreError::Decode { seq, source })?;
    Ok((reason, record))
}

fn random_id() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("gw-{n:016x}")
}

impl StoreError {
    /// Whether the file itself is damaged (or not a store at all): then it is quarantined and a
    /// fresh store started. Not for a lock held by another process, a newer format, or an I/O
    /// error of the disk (permissions, full, gone): those need an operator, not a new file.
    pub fn is_corruption(&self) -> bool {
        matches!(self, StoreError::Open { damaged: true, .. } | StoreError::Damaged(_) | StoreError::Decode { .. })
    }
}
