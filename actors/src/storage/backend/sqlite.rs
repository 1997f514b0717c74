//! The SQLite engine: the same seven tables in one database in WAL mode with
//! `synchronous = FULL` (every commit fsyncs the write-ahead log before it returns).
//!
//! ```sql
//! messages     (seq INTEGER PRIMARY KEY, value BLOB)           -- encoded record
//! cursors      (sink TEXT PRIMARY KEY, next INTEGER)
//! dead_letters (sink TEXT, seq INTEGER, value BLOB, PRIMARY KEY (sink, seq))
//! rejected     (seq INTEGER PRIMARY KEY, value BLOB)           -- record that failed its schema
//! retained     (topic TEXT PRIMARY KEY, value BLOB)            -- the topic's retained message
//! meta         (key TEXT PRIMARY KEY, value INTEGER)           -- next_seq, backlog_bytes, message_count
//! meta_str     (key TEXT PRIMARY KEY, value TEXT)              -- gateway_id, format
//! devices      (identity TEXT PRIMARY KEY, value BLOB)         -- JSON of the device status
//! ```
//!
//! `count(*)` walks the whole table in SQLite, so the record count is a counter in `meta`
//! (`message_count`) kept by every change this module makes. One connection writes (behind a
//! mutex); readers take a connection from a small pool, so forwarders read while the writer
//! commits. A file lock (`flock` on `<db>.lock`, independent of SQLite's own locks) refuses a
//! second gateway on the same file, as redb does. Opening checks both files' headers by hand and runs
//! `PRAGMA quick_check`: a damaged file is reported as damage (and quarantined, with its log
//! kept: see [`super::sqlite_files`]) instead of failing later, mid-stream.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use super::sqlite_files::{WalGuard, check_headers};
use super::{Backend, Label, Meta, Tables, Visit};
use crate::storage::StoreStats;
use crate::storage::store::{StoreError, received_at};

/// The `meta` key of the record count.
const MESSAGE_COUNT: &str = "message_count";

/// Readers kept open between reads.
const IDLE_READERS: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, next INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (sink TEXT NOT NULL, seq INTEGER NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (sink, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejected (seq INTEGER PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS retained (topic TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta_str (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (identity TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
";

/// An open SQLite store.
pub struct SqliteBackend {
    /// The one writing connection.
    writer: Mutex<Connection>,
    /// Idle reading connections.
    readers: Mutex<Vec<Connection>>,
    /// The database file, for opening more readers.
    path: std::path::PathBuf,
    /// Held open for its `flock`: released when the backend is dropped.
    _lock: std::fs::File,
}

impl SqliteBackend {
    /// Open (or create) the database, lock it, check it and create the tables.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let lock = lock(path)?;
        check_headers(path)?;
        let guard = WalGuard::keep(path)?;
        let writer = connect(path).map_err(|e| open_error(&shown, e))?;
        let mode: String = writer.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(|e| open_error(&shown, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open { path: shown, reason: format!("journal_mode is {mode}, not WAL"), damaged: false });
        }
        let check: String = writer.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| open_error(&shown, e))?;
        if check != "ok" {
            return Err(StoreError::Open { path: shown, reason: format!("quick_check: {check}"), damaged: true });
        }
        writer.execute_batch(SCHEMA).map_err(|e| open_error(&shown, e))?;
        let backend = Self { writer: Mutex::new(writer), readers: Mutex::new(Vec::new()), path: path.to_path_buf(), _lock: lock };
        backend.write(&mut |t| t.message_count().map(drop))?; // the counter exists from here on
        guard.release();
        Ok(backend)
    }

    /// Run `f` on an idle reader (or a new one), inside one read transaction (one snapshot).
    fn read<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let result = {
            let txn = conn.transaction()?;
            f(&txn)
        };
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.len() < IDLE_READERS {
            readers.push(conn);
        }
        result
    }
}

/// A connection with the pragmas every connection needs (`synchronous` is per connection).
fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Take an exclusive `flock` on `<db>.lock` (created if missing): a second gateway on the same
/// store is refused instead of writing next to this one. Not on the database itself: closing
/// any descriptor of it would drop this process's POSIX locks, SQLite's own among them.
fn lock(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::fd::AsRawFd;
    let lock_file = super::suffixed(path, super::sqlite_files::LOCK);
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock_file).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
            damaged: false,
        })?;
    // SAFETY: flock only reads its integer arguments; the fd is open for the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(StoreError::Open {
            path: path.display().to_string(),
            reason: format!("locked: another gateway or `store salvage` has it open ({e})"),
            damaged: false,
        });
    }
    Ok(file)
}

fn open_error(path: &str, e: rusqlite::Error) -> StoreError {
    let damaged = matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase));
    StoreError::Open { path: path.to_string(), reason: e.to_string(), damaged }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Damaged(e.to_string()),
            Some(
                ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::ReadOnly
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked,
            ) => StoreError::Io(e.to_string()),
            _ => StoreError::Engine(e.to_string()),
        }
    }
}

impl Backend for SqliteBackend {
    fn write(&self, f: &mut dyn FnMut(&mut dyn Tables) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let txn = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut tables = SqliteTables { txn: &txn, count: None };
            f(&mut tables)?; // an error drops the transaction: rolled back
            tables.finish()?;
        }
        txn.commit()?;
        Ok(())
    }

    fn scan(&self, from: u64, visit: Visit<'_>) -> Result<(), StoreError> {
        self.read(|txn| {
            let mut stmt = txn.prepare_cached("SELECT seq, value FROM messages WHERE seq >= ?1 ORDER BY seq")?;
            let mut rows = stmt.query([from])?;
            while let Some(row) = rows.next()? {
                let value = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
                if !visit(row.get(0)?, value)? {
                    break;
                }
            }
            Ok(())
        })
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        self.read(|txn| {
            let mut t = SqliteTables { txn, count: None };
            Ok(StoreStats {
                messages: t.message_count()?,
                bytes: t.meta(Meta::BacklogBytes)?.unwrap_or(0),
                next_seq: t.meta(Meta::NextSeq)?.unwrap_or(0),
                oldest_received_ms: t.oldest_received_ms()?,
                rejected: t.rejected_count()?,
            })
        })
    }

    fn cursor(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        self.read(|txn| SqliteTables { txn, count: None }.cursor(sink))
    }

    fn dead_letters(&self, visit: &mut dyn FnMut(&str, u64, &[u8]) -> Result<bool, StoreError>) -> Result<(), StoreError> {
        self.read(|txn| {
            let mut stmt = txn.prepare_cached("SELECT sink, seq, value FROM dead_letters ORDER BY sink, seq")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let value = row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
                if !visit(row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?, row.get(1)?, value)? {
                    break;
                }
            }
            Ok(())
        })
    }

    fn devices(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        self.read(|txn| {
            let mut stmt = txn.prepare_cached("SELECT identity, value FROM devices")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let identity = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                visit(identity, row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?);
            }
            Ok(())
        })
    }

    fn retained(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        self.read(|txn| {
            let mut stmt = txn.prepare_cached("SELECT topic, value FROM retained")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let topic = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                visit(topic, row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?);
            }
            Ok(())
        })
    }

    fn rejected(&self, from: u64, visit: Visit<'_>) -> Result<(), StoreError> {
        self.read(|txn| {
            let mut stmt = txn.prepare_cached("SELECT seq, value FROM rejected WHERE seq >= ?1 ORDER BY seq")?;
            let mut rows = stmt.query([from])?;
            while let Some(row) = rows.next()? {
                let value = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
                if !visit(row.get(0)?, value)? {
                    break;
                }
            }
            Ok(())
        })
    }
}

/// The tables inside one transaction, with the record count read once and written back by
/// [`SqliteTables::finish`].
struct SqliteTables<'a> {
    txn: &'a rusqlite::Transaction<'a>,
    /// The record count as of this transaction's changes so far (loaded on first use).
    count: Option<u64>,
}

impl SqliteTables<'_> {
    fn add_count(&mut self, delta: i64) -> Result<(), StoreError> {
        let n = self.message_count()?;
        self.count = Some(n.saturating_add_signed(delta));
        Ok(())
    }

    /// Write the record count back.
    fn finish(&mut self) -> Result<(), StoreError> {
        if let Some(n) = self.count {
            self.txn.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?.execute(params![MESSAGE_COUNT, n])?;
        }
        Ok(())
    }

    fn get_meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let mut stmt = self.txn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
        Ok(stmt.query_row([key], |r| r.get(0)).optional()?)
    }
}

impl Tables for SqliteTables<'_> {
    fn meta(&mut self, key: Meta) -> Result<Option<u64>, StoreError> {
        self.get_meta(key.key())
    }

    fn set_meta(&mut self, key: Meta, value: u64) -> Result<(), StoreError> {
        self.txn.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?.execute(params![key.key(), value])?;
        Ok(())
    }

    fn label(&mut self, key: Label) -> Result<Option<String>, StoreError> {
        let mut stmt = self.txn.prepare_cached("SELECT value FROM meta_str WHERE key = ?1")?;
        Ok(stmt.query_row([key.key()], |r| r.get(0)).optional()?)
    }

    fn set_label(&mut self, key: Label, value: &str) -> Result<(), StoreError> {
        self.txn.prepare_cached("INSERT OR REPLACE INTO meta_str (key, value) VALUES (?1, ?2)")?.execute(params![key.key(), value])?;
        Ok(())
    }

    fn message_count(&mut self) -> Result<u64, StoreError> {
        if let Some(n) = self.count {
            return Ok(n);
        }
        let n = match self.get_meta(MESSAGE_COUNT)? {
            Some(n) => n,
            // A new file (or one from before the counter): counted once.
            None => self.txn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?,
        };
        self.count = Some(n);
        Ok(n)
    }

    fn oldest_received_ms(&mut self) -> Result<Option<u64>, StoreError> {
        let mut stmt = self.txn.prepare_cached("SELECT substr(value, 1, 9) FROM messages ORDER BY seq LIMIT 1")?;
        let head: Option<Vec<u8>> = stmt.query_row([], |r| r.get(0)).optional()?;
        Ok(head.and_then(|h| received_at(&h)))
    }

    fn message(&mut self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut stmt = self.txn.prepare_cached("SELECT value FROM messages WHERE seq = ?1")?;
        Ok(stmt.query_row([seq], |r| r.get(0)).optional()?)
    }

    fn insert_message(&mut self, seq: u64, value: &[u8]) -> Result<(), StoreError> {
        self.txn.prepare_cached("INSERT INTO messages (seq, value) VALUES (?1, ?2)")?.execute(params![seq, value])?;
        self.add_count(1)
    }

    fn pop_oldest(&mut self) -> Result<Option<u64>, StoreError> {
        let mut stmt =
            self.txn.prepare_cached("DELETE FROM messages WHERE seq = (SELECT min(seq) FROM messages) RETURNING length(value)")?;
        let freed: Option<u64> = stmt.query_row([], |r| r.get(0)).optional()?;
        drop(stmt);
        if freed.is_some() {
            self.add_count(-1)?;
        }
        Ok(freed)
    }

    fn delete_below(&mut self, seq: u64) -> Result<u64, StoreError> {
        let (n, freed): (u64, u64) = self
            .txn
            .prepare_cached("SELECT count(*), coalesce(sum(length(value)), 0) FROM messages WHERE seq < ?1")?
            .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if n > 0 {
            self.txn.prepare_cached("DELETE FROM messages WHERE seq < ?1")?.execute([seq])?;
            self.add_count(-(n as i64))?;
        }
        Ok(freed)
    }

    fn cursor(&mut self, sink: &str) -> Result<Option<u64>, StoreError> {
        let mut stmt = self.txn.prepare_cached("SELECT next FROM cursors WHERE sink = ?1")?;
        Ok(stmt.query_row([sink], |r| r.get(0)).optional()?)
    }

    fn set_cursor(&mut self, sink: &str, next: u64) -> Result<(), StoreError> {
        self.txn.prepare_cached("INSERT OR REPLACE INTO cursors (sink, next) VALUES (?1, ?2)")?.execute(params![sink, next])?;
        Ok(())
    }

    fn insert_dead_letter(&mut self, sink: &str, seq: u64, value: &[u8]) -> Result<(), StoreError> {
        self.txn
            .prepare_cached("INSERT OR REPLACE INTO dead_letters (sink, seq, value) VALUES (?1, ?2, ?3)")?
            .execute(params![sink, seq, value])?;
        Ok(())
    }

    fn rejected_count(&mut self) -> Result<u64, StoreError> {
        // The table is bounded (`schemas.rejected_max`): counting it is cheap.
        Ok(self.txn.prepare_cached("SELECT count(*) FROM rejected")?.query_row([], |r| r.get(0))?)
    }

    fn insert_rejected(&mut self, seq: u64, value: &[u8]) -> Result<(), StoreError> {
        self.txn.prepare_cached("INSERT INTO rejected (seq, value) VALUES (?1, ?2)")?.execute(params![seq, value])?;
        Ok(())
    }

    fn pop_oldest_rejected(&mut self) -> Result<Option<u64>, StoreError> {
        let mut stmt =
            self.txn.prepare_cached("DELETE FROM rejected WHERE seq = (SELECT min(seq) FROM rejected) RETURNING length(value)")?;
        Ok(stmt.query_row([], |r| r.get(0)).optional()?)
    }

    fn retained_count(&mut self) -> Result<u64, StoreError> {
        // Bounded by `broker.retained_max`: counting it is cheap.
        Ok(self.txn.prepare_cached("SELECT count(*) FROM retained")?.query_row([], |r| r.get(0))?)
    }

    fn retained_size(&mut self, topic: &str) -> Result<Option<u64>, StoreError> {
        let mut stmt = self.txn.prepare_cached("SELECT length(value) FROM retained WHERE topic = ?1")?;
        Ok(stmt.query_row([topic], |r| r.get(0)).optional()?)
    }

    fn put_retained(&mut self, topic: &str, value: &[u8]) -> Result<(), StoreError> {
        self.txn.prepare_cached("INSERT OR REPLACE INTO retained (topic, value) VALUES (?1, ?2)")?.execute(params![topic, value])?;
        Ok(())
    }

    fn remove_retained(&mut self, topic: &str) -> Result<(), StoreError> {
        self.txn.prepare_cached("DELETE FROM retained WHERE topic = ?1")?.execute([topic])?;
        Ok(())
    }

    fn put_device(&mut self, identity: &str, json: &[u8]) -> Result<(), StoreError> {
        self.txn.prepare_cached("INSERT OR REPLACE INTO devices (identity, value) VALUES (?1, ?2)")?.execute(params![identity, json])?;
        Ok(())
    }

    fn remove_device(&mut self, identity: &str) -> Result<(), StoreError> {
        self.txn.prepare_cached("DELETE FROM devices WHERE identity = ?1")?.execute([identity])?;
        Ok(())
    }
}
