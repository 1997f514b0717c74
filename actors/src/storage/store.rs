//! Synchronous access to the redb file: opening it, reading batches, cursors and stats.
//!
//! Everything here is a short read transaction or (for [`Store::open`]) the one-time creation
//! of the tables; the write path lives in the storage actor.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use thiserror::Error;

use super::shared::SharedDb;
use crate::record::{DecodeError, Record};

pub(crate) const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
pub(crate) const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
pub(crate) const DEAD_LETTERS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letters");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const META_STR: TableDefinition<&str, &str> = TableDefinition::new("meta_str");

pub(crate) const NEXT_SEQ: &str = "next_seq";
pub(crate) const BACKLOG_BYTES: &str = "backlog_bytes";
const GATEWAY_ID: &str = "gateway_id";
const FORMAT: &str = "format";
const FORMAT_VERSION: &str = "1";

/// Errors from the store, each naming what failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database file could not be created or opened.
    #[error("cannot open store {path}: {source}")]
    Open { path: String, source: redb::DatabaseError },
    /// The file was written by an incompatible version.
    #[error("store {path} has format {found}, this build reads format {FORMAT_VERSION}")]
    Format { path: String, found: String },
    /// A redb operation failed.
    #[error("store: {0}")]
    Redb(String),
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

/// An I/O error of the disk (or one redb latched from before), as opposed to bad content.
fn is_io(e: &redb::StorageError) -> bool {
    matches!(e, redb::StorageError::Io(_) | redb::StorageError::PreviousIo)
}

fn classify(io: bool, message: String) -> StoreError {
    if io { StoreError::Io(message) } else { StoreError::Redb(message) }
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        classify(is_io(&e), e.to_string())
    }
}

macro_rules! redb_from {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for StoreError {
            fn from(e: redb::$t) -> Self {
                let io = matches!(&e, redb::$t::Storage(s) if is_io(s));
                classify(io, e.to_string())
            }
        }
    )*};
}
redb_from!(TransactionError, TableError, CommitError);

impl From<redb::SetDurabilityError> for StoreError {
    fn from(e: redb::SetDurabilityError) -> Self {
        StoreError::Redb(e.to_string())
    }
}

/// A handle to the open database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The open database, shared by every clone (redb refuses a second open of the same file);
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

impl Store {
    /// Open (or create) the store at `path` and make sure every table exists.
    pub fn open(path: &Path, sinks: Vec<String>) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        let store = Self { db: SharedDb::new(db, path), sinks: Arc::new(sinks) };
        store.init_tables(path)?;
        Ok(store)
    }

    /// Close the database and open the file again: the way back after a failed write or fsync
    /// (see [`SharedDb`]). On failure the store stays closed and the caller retries later.
    pub fn reopen(&self) -> Result<(), StoreError> {
        self.db.reopen().map_err(|e| StoreError::Redb(e.to_string()))
    }

    fn init_tables(&self, path: &Path) -> Result<(), StoreError> {
        let db = self.db()?;
        let txn = db.begin_write()?;
        {
            txn.open_table(MESSAGES)?;
            txn.open_table(CURSORS)?;
            txn.open_table(DEAD_LETTERS)?;
            txn.open_table(META)?;
            let mut meta = txn.open_table(META_STR)?;
            let found = meta.get(FORMAT)?.map(|v| v.value().to_string());
            match found {
                None => {
                    meta.insert(FORMAT, FORMAT_VERSION)?;
                }
                Some(f) if f == FORMAT_VERSION => {}
                Some(found) => return Err(StoreError::Format { path: path.display().to_string(), found }),
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The underlying database, held for one transaction at a time.
    pub(crate) fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db.get().ok_or_else(|| StoreError::Closed { path: self.db.path().display().to_string() })
    }

    /// The sinks whose cursors hold records back.
    pub fn sinks(&self) -> &[String] {
        &self.sinks
    }

    /// The gateway id: the stored one, else `configured`, else a new random one; stored once.
    pub fn gateway_id(&self, configured: Option<&str>) -> Result<String, StoreError> {
        let db = self.db()?;
        let txn = db.begin_write()?;
        let id = {
            let mut meta = txn.open_table(META_STR)?;
            let stored = meta.get(GATEWAY_ID)?.map(|v| v.value().to_string());
            match (stored, configured) {
                (Some(stored), Some(conf)) if stored != conf => {
                    // The configured id wins for new records; old records keep their stored keys.
                    meta.insert(GATEWAY_ID, conf)?;
                    conf.to_string()
                }
                (Some(stored), _) => stored,
                (None, conf) => {
                    let id = conf.map(str::to_string).unwrap_or_else(random_id);
                    meta.insert(GATEWAY_ID, id.as_str())?;
                    id
                }
            }
        };
        txn.commit()?;
        Ok(id)
    }

    /// Up to `max_messages` records (and about `max_bytes`) with seq >= `from`, in seq order.
    /// Always returns at least one record when one exists, however large.
    pub fn read_batch(&self, from: u64, max_messages: usize, max_bytes: usize) -> Result<Vec<Record>, StoreError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(MESSAGES)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for entry in table.range(from..)? {
            let (k, v) = entry?;
            let value = v.value();
            if !out.is_empty() && (out.len() >= max_messages || bytes + value.len() > max_bytes) {
                break;
            }
            bytes += value.len();
            let seq = k.value();
            out.push(Record::decode(seq, value).map_err(|source| StoreError::Decode { seq, source })?);
        }
        Ok(out)
    }

    /// The next seq `sink` has not acknowledged (0 for a sink never seen).
    pub fn cursor(&self, sink: &str) -> Result<u64, StoreError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(CURSORS)?;
        Ok(table.get(sink)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Record counts and sizes.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let messages = txn.open_table(MESSAGES)?;
        let meta = txn.open_table(META)?;
        let oldest_received_ms = messages.first()?.and_then(|(_, v)| received_at(v.value()));
        Ok(StoreStats {
            messages: messages.len()?,
            bytes: meta.get(BACKLOG_BYTES)?.map(|v| v.value()).unwrap_or(0),
            next_seq: meta.get(NEXT_SEQ)?.map(|v| v.value()).unwrap_or(0),
            oldest_received_ms,
        })
    }

    /// Up to `limit` dead letters, by sink then seq.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(DEAD_LETTERS)?;
        let mut out = Vec::new();
        for entry in table.iter()?.take(limit) {
            let (k, v) = entry?;
            let (sink, seq) = k.value();
            let (reason, record) = decode_dead_letter(seq, v.value())?;
            out.push(DeadLetter { sink: sink.to_string(), reason, record });
        }
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
        match self {
            StoreError::Open { source: redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)), .. } => true,
            StoreError::Open { source: redb::DatabaseError::Storage(redb::StorageError::Io(e)), .. } => {
                matches!(e.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof)
            }
            StoreError::Redb(_) | StoreError::Decode { .. } => true,
            _ => false,
        }
    }
}
