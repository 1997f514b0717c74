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

/// What `store salvage` could read from a quarantined file.
#[derive(Debug, Default)]
pub struct Salvaged {
    /// Encoded records (each still carries its original idempotency key), in seq order.
    pub values: Vec<Vec<u8>>,
    /// Rows that could not be read or decoded (redb read only).
    pub skipped: usize,
    /// How they were found: `"redb"` (the file still opens) or `"raw scan"` (it does not: the
    /// records were found in its bytes).
    pub method: &'static str,
    /// Why redb could not open the file, when it was scanned instead.
    pub open_error: Option<String>,
}

/// Receive times a record found by a raw scan must lie between (2017 .. 2100, in ms).
const PLAUSIBLE_RECEIVED_MS: std::ops::RangeInclusive<u64> = 1_500_000_000_000..=4_102_444_800_000;

impl Store {
    /// Read every record that can still be read from a (quarantined) store file: through redb
    /// when it opens, else by scanning its bytes for encoded records (see [`scan_records`]).
    /// The file itself is not modified: redb repairs on open, so it opens a copy
    /// (`<file>.salvage-copy`, removed afterwards; needs that much free space).
    pub fn salvage(path: &Path) -> Result<Salvaged, StoreError> {
        let copy = path.with_extension("salvage-copy");
        std::fs::copy(path, &copy).map_err(|e| StoreError::Io(format!("cannot copy {} to {}: {e}", path.display(), copy.display())))?;
        let result = Self::salvage_in_place(&copy);
        let _ = std::fs::remove_file(&copy);
        result
    }

    fn salvage_in_place(path: &Path) -> Result<Salvaged, StoreError> {
        match Database::open(path) {
            Ok(db) => {
                let txn = db.begin_read()?;
                let table = txn.open_table(MESSAGES)?;
                let mut out = Salvaged { method: "redb", ..Salvaged::default() };
                for row in table.iter()? {
                    match row {
                        Ok((seq, v)) if Record::decode(seq.value(), v.value()).is_ok() => out.values.push(v.value().to_vec()),
                        _ => out.skipped += 1,
                    }
                }
                Ok(out)
            }
            Err(e) => {
                // Only a damaged file is scanned: one that is locked, of another version or
                // unreadable is an error to fix, not a reason to resurrect stale page copies.
                let open_error = e.to_string();
                let err = StoreError::Open { path: path.display().to_string(), source: e };
                if !err.is_corruption() {
                    return Err(err);
                }
                let bytes = std::fs::read(path).map_err(|io| StoreError::Io(format!("cannot read {}: {io}", path.display())))?;
                Ok(Salvaged { values: scan_records(&bytes), skipped: 0, method: "raw scan", open_error: Some(open_error) })
            }
        }
    }

    /// Append already-encoded records (from [`Store::salvage`]) after the current ones, keeping
    /// their idempotency keys (so the cloud drops the ones it already has). Only while no
    /// gateway runs on this store: it writes outside the storage actor.
    pub fn import(&self, values: &[Vec<u8>]) -> Result<u64, StoreError> {
        let db = self.db()?;
        let txn = db.begin_write()?;
        {
            let mut messages = txn.open_table(MESSAGES)?;
            let mut meta = txn.open_table(META)?;
            let mut next = meta.get(NEXT_SEQ)?.map(|v| v.value()).unwrap_or(0);
            let mut bytes = meta.get(BACKLOG_BYTES)?.map(|v| v.value()).unwrap_or(0);
            for v in values {
                messages.insert(next, v.as_slice())?;
                next += 1;
                bytes += v.len() as u64;
            }
            meta.insert(NEXT_SEQ, next)?;
            meta.insert(BACKLOG_BYTES, bytes)?;
        }
        txn.commit()?;
        Ok(values.len() as u64)
    }
}

/// Records found in the raw bytes of a store file that redb can no longer open, in key order,
/// one per idempotency key.
///
/// A record is recognised by its header (version 1 or 2, a receive time between 2017 and
/// 2100, QoS 0 or 1, a key `<gateway id>:<seq>`) and must then decode completely. redb writes
/// copy-on-write, so a scan also finds older copies of pages, including records that were
/// already delivered and deleted: they come back with their original keys, so the cloud drops
/// them as duplicates. The record format has no checksum of its own: a payload damaged inside
/// an otherwise intact record is not detected.
pub fn scan_records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut found: std::collections::BTreeMap<(String, u64), Vec<u8>> = std::collections::BTreeMap::new();
    let mut i = 0;
    while i + 12 <= bytes.len() {
        if let Some((prefix, seq)) = plausible_header(&bytes[i..]) {
            if let Ok((_, used)) = Record::decode_prefix(seq, &bytes[i..]) {
                found.entry((prefix, seq)).or_insert_with(|| bytes[i..i + used].to_vec());
                i += used;
                continue;
            }
        }
        i += 1;
    }
    found.into_values().collect()
}

/// The key's gateway id and seq when `b` starts like an encoded record.
fn plausible_header(b: &[u8]) -> Option<(String, u64)> {
    if b[0] != 1 && b[0] != 2 {
        return None;
    }
    let received = u64::from_le_bytes(b[1..9].try_into().ok()?);
    if !PLAUSIBLE_RECEIVED_MS.contains(&received) || b[9] > 1 {
        return None;
    }
    let len = u16::from_le_bytes([b[10], b[11]]) as usize;
    let key = std::str::from_utf8(b.get(12..12 + len)?).ok()?;
    let (prefix, seq) = key.rsplit_once(':')?;
    if prefix.is_empty() || seq.is_empty() || !seq.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((prefix.to_string(), seq.parse().ok()?))
}
