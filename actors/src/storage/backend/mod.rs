//! The two storage engines behind one interface: redb (the default) and SQLite.
//!
//! Everything above this module (the storage actor's write transaction, the forwarders' batch
//! reads, salvage, the device table) is written once against [`Backend`] and [`Tables`]; an
//! engine only maps nine tables onto its own storage and opens, commits and reads them. Both
//! commit with an fsync (redb `Durability::Immediate`; SQLite WAL with `synchronous = FULL`),
//! store the same encoded records under the same sequence numbers, and keep the same
//! counters, so the policy (quota, TTL, cursors, keys) cannot differ between them.

mod no_fsync;
mod redb;
mod redb_errors;
mod sqlite;
mod sqlite_files;
mod sqlite_tables;

use std::path::{Path, PathBuf};

pub use self::redb::RedbBackend;
pub use self::sqlite::SqliteBackend;
use super::store::StoreError;

/// Which engine holds the store (`storage.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendKind {
    /// redb: a copy-on-write B-tree file, one fsync'ed commit per transaction.
    #[default]
    Redb,
    /// SQLite in WAL mode with `synchronous = FULL`.
    Sqlite,
}

impl BackendKind {
    /// Both, in the order tests and benchmarks run them.
    pub const ALL: [BackendKind; 2] = [BackendKind::Redb, BackendKind::Sqlite];

    /// The config value, also the extension of its files (`gateway.redb`, `gateway.sqlite`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Redb => "redb",
            BackendKind::Sqlite => "sqlite",
        }
    }

    /// Open (or create) a store file of this kind, with every table.
    pub fn open(self, path: &Path) -> Result<std::sync::Arc<dyn Backend>, StoreError> {
        Ok(match self {
            BackendKind::Redb => std::sync::Arc::new(RedbBackend::open(path)?),
            BackendKind::Sqlite => std::sync::Arc::new(SqliteBackend::open(path)?),
        })
    }

    /// The files that make up a store at `path`: the file itself and, for SQLite, its
    /// write-ahead log, shared-memory index and the log's second name while a store opens.
    /// Moved together (quarantine), dropped from the page cache together (reopening). Not the
    /// SQLite lock file (`<db>.lock`): it stays with the path, for whichever store opens there.
    pub fn files(self, path: &Path) -> Vec<PathBuf> {
        match self {
            BackendKind::Redb => vec![path.to_path_buf()],
            BackendKind::Sqlite => ["", "-wal", "-shm", sqlite_files::WAL_GUARD].iter().map(|s| suffixed(path, s)).collect(),
        }
    }

    /// Every file opening a store at `path` may leave (for removing a scratch copy).
    pub fn scratch_files(self, path: &Path) -> Vec<PathBuf> {
        let mut files = self.files(path);
        if self == BackendKind::Sqlite {
            files.push(suffixed(path, sqlite_files::LOCK));
        }
        files
    }

    /// The engine that wrote a (possibly damaged) file: by its magic bytes, else by its name
    /// (`*.sqlite*` is SQLite, anything else redb).
    pub fn detect(path: &Path) -> BackendKind {
        let mut head = [0u8; 16];
        let read = std::fs::File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).unwrap_or(0);
        if read == head.len() && head == *sqlite_files::MAGIC {
            return BackendKind::Sqlite;
        }
        if read >= self::redb::MAGIC.len() && head.starts_with(self::redb::MAGIC) {
            return BackendKind::Redb;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.contains(".sqlite") { BackendKind::Sqlite } else { BackendKind::Redb }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `path` with `suffix` appended to its file name (`gateway.sqlite` + `-wal`).
pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Counters kept in the `meta` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    /// The seq the next record gets (greater than every seq ever written).
    NextSeq,
    /// The sum of the encoded sizes of the records in `messages`.
    BacklogBytes,
    /// The seq the next kept-apart record gets in `rejected`.
    RejectedNextSeq,
    /// The sum of the encoded sizes of the records in `rejected`.
    RejectedBytes,
    /// The sum of the encoded sizes of the records in `retained`.
    RetainedBytes,
    /// Records in `rejected` (SQLite's `count(*)` reads the whole table).
    RejectedCount,
    /// Topics in `retained`.
    RetainedCount,
    /// The number the next row of `session_queue` gets (one counter for every session).
    QueuedNextSeq,
}

impl Meta {
    /// The key in the table.
    pub fn key(self) -> &'static str {
        match self {
            Meta::NextSeq => "next_seq",
            Meta::BacklogBytes => "backlog_bytes",
            Meta::RejectedNextSeq => "rejected_next_seq",
            Meta::RejectedBytes => "rejected_bytes",
            Meta::RetainedBytes => "retained_bytes",
            Meta::RejectedCount => "rejected_count",
            Meta::RetainedCount => "retained_count",
            Meta::QueuedNextSeq => "queued_next_seq",
        }
    }
}

/// Strings kept in the `meta_str` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// The gateway id that leads every idempotency key.
    GatewayId,
    /// The store format (`"1"`).
    Format,
}

impl Label {
    /// The key in the table.
    pub fn key(self) -> &'static str {
        match self {
            Label::GatewayId => "gateway_id",
            Label::Format => "format",
        }
    }
}

/// One stored record as a reader sees it: its seq and its encoded bytes.
pub type Visit<'a> = &'a mut dyn FnMut(u64, &[u8]) -> Result<bool, StoreError>;

/// What [`Backend::dead_letters`] calls per dead letter (sink, seq, stored value): `false`
/// stops the walk.
pub type VisitDeadLetter<'a> = &'a mut dyn FnMut(&str, u64, &[u8]) -> Result<bool, StoreError>;

/// A store file opened by one engine. Reads are short read transactions that may run on any
/// thread while a write runs; writes come from one writer at a time (the storage actor, or the
/// device actor on its own file).
pub trait Backend: Send + Sync {
    /// One write transaction: `f` reads and changes the tables; when it returns `Ok` the
    /// transaction commits with an fsync before `write` returns, when it returns `Err` nothing
    /// of it is stored.
    fn write(&self, f: &mut dyn FnMut(&mut dyn Tables) -> Result<(), StoreError>) -> Result<(), StoreError>;

    /// Visit the records with seq >= `from` in seq order, until `visit` returns `false`.
    fn scan(&self, from: u64, visit: Visit<'_>) -> Result<(), StoreError>;

    /// Record count, backlog bytes, next seq and the oldest receive time, as of one snapshot.
    fn stats(&self) -> Result<super::StoreStats, StoreError>;

    /// The durable cursor of `sink`.
    fn cursor(&self, sink: &str) -> Result<Option<u64>, StoreError>;

    /// Visit the dead letters (sink, seq, stored value) by sink then seq, until `visit` returns
    /// `false`.
    fn dead_letters(&self, visit: VisitDeadLetter<'_>) -> Result<(), StoreError>;

    /// Visit every device record (identity, JSON).
    fn devices(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError>;

    /// Visit the kept-apart records with seq >= `from` in seq order, until `visit` returns
    /// `false`.
    fn rejected(&self, from: u64, visit: Visit<'_>) -> Result<(), StoreError>;

    /// Visit every retained message (topic, encoded record).
    fn retained(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError>;

    /// Visit every persistent session (client id, encoded session).
    fn sessions(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError>;

    /// Visit the deliveries queued for `client` with a number >= `from`, in order, until
    /// `visit` returns `false`.
    fn queued(&self, client: &str, from: u64, visit: Visit<'_>) -> Result<(), StoreError>;

    /// Visit the key (client id, number) of every queued delivery.
    fn queued_keys(&self, visit: &mut dyn FnMut(&str, u64)) -> Result<(), StoreError>;
}

/// The tables inside one write transaction.
pub trait Tables {
    /// A counter from `meta`.
    fn meta(&mut self, key: Meta) -> Result<Option<u64>, StoreError>;
    /// Set a counter in `meta`.
    fn set_meta(&mut self, key: Meta, value: u64) -> Result<(), StoreError>;
    /// A string from `meta_str`.
    fn label(&mut self, key: Label) -> Result<Option<String>, StoreError>;
    /// Set a string in `meta_str`.
    fn set_label(&mut self, key: Label, value: &str) -> Result<(), StoreError>;

    /// Records in `messages`.
    fn message_count(&mut self) -> Result<u64, StoreError>;
    /// The receive time of the record with the lowest seq.
    fn oldest_received_ms(&mut self) -> Result<Option<u64>, StoreError>;
    /// The stored value of record `seq`.
    fn message(&mut self, seq: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Store record `seq`.
    fn insert_message(&mut self, seq: u64, value: &[u8]) -> Result<(), StoreError>;
    /// Delete the record with the lowest seq; its encoded size.
    fn pop_oldest(&mut self) -> Result<Option<u64>, StoreError>;
    /// Delete every record with a seq below `seq`; the encoded bytes freed.
    fn delete_below(&mut self, seq: u64) -> Result<u64, StoreError>;

    /// The durable cursor of `sink`.
    fn cursor(&mut self, sink: &str) -> Result<Option<u64>, StoreError>;
    /// Set the cursor of `sink`.
    fn set_cursor(&mut self, sink: &str, next: u64) -> Result<(), StoreError>;
    /// Keep a refused record (`value` = reason and record, see `encode_dead_letter`).
    fn insert_dead_letter(&mut self, sink: &str, seq: u64, value: &[u8]) -> Result<(), StoreError>;

    /// Records in `rejected`.
    fn rejected_count(&mut self) -> Result<u64, StoreError>;
    /// Keep a record that failed its schema apart (`rejected`, never forwarded).
    fn insert_rejected(&mut self, seq: u64, value: &[u8]) -> Result<(), StoreError>;
    /// Delete the kept-apart record with the lowest seq; its encoded size.
    fn pop_oldest_rejected(&mut self) -> Result<Option<u64>, StoreError>;

    /// Topics in `retained`.
    fn retained_count(&mut self) -> Result<u64, StoreError>;
    /// The encoded size of `topic`'s retained message, if it has one.
    fn retained_size(&mut self, topic: &str) -> Result<Option<u64>, StoreError>;
    /// Set `topic`'s retained message.
    fn put_retained(&mut self, topic: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Clear `topic`'s retained message.
    fn remove_retained(&mut self, topic: &str) -> Result<(), StoreError>;

    /// Store (or replace) a persistent session.
    fn put_session(&mut self, client: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Deliveries queued for `client`, if it has a session row.
    fn session_queued(&mut self, client: &str) -> Result<Option<u64>, StoreError>;
    /// Forget a persistent session and its queued deliveries; how many deliveries went.
    fn remove_session(&mut self, client: &str) -> Result<u64, StoreError>;
    /// Queue delivery `qseq` for `client`.
    fn insert_queued(&mut self, client: &str, qseq: u64, value: &[u8]) -> Result<(), StoreError>;
    /// Delete delivery `qseq` of `client`; whether it was there.
    fn remove_queued(&mut self, client: &str, qseq: u64) -> Result<bool, StoreError>;

    /// Store the JSON of one device.
    fn put_device(&mut self, identity: &str, json: &[u8]) -> Result<(), StoreError>;
    /// Forget one device.
    fn remove_device(&mut self, identity: &str) -> Result<(), StoreError>;
}
