//! The SQLite engine: the same nine tables in one database in WAL mode with
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
//! sessions     (client TEXT PRIMARY KEY, value BLOB)           -- a persistent session
//! session_queue (client TEXT, qseq INTEGER, value BLOB, PRIMARY KEY (client, qseq)) -- its queue
//! ```
//!
//! `count(*)` walks the whole table in SQLite, so the record count is a counter in `meta`
//! (`message_count`) kept by every change `sqlite_tables.rs` makes. One connection writes (behind a
//! mutex); readers take a connection from a small pool, so forwarders read while the writer
//! commits. A file lock (`flock` on `<db>.lock`, independent of SQLite's own locks) refuses a
//! second gateway on the same file, as redb does. Opening checks both files' headers by hand and runs
//! `PRAGMA quick_check`: a damaged file is reported as damage (and quarantined, with its log
//! kept: see [`super::sqlite_files`]) instead of failing later, mid-stream.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::sqlite_files::{WalGuard, check_headers};
use super::sqlite_tables::SqliteTables;
use super::{Backend, Meta, Tables, Visit, VisitDeadLetter};
use crate::storage::StoreStats;
use crate::storage::store::StoreError;

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
CREATE TABLE IF NOT EXISTS sessions (client TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session_queue (client TEXT NOT NULL, qseq INTEGER NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (client, qseq)) WITHOUT ROWID;
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
        super::no_fsync::announce();
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
    let synchronous = if super::no_fsync::enabled() { "OFF" } else { "FULL" };
    conn.pragma_update(None, "synchronous", synchronous)?;
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
        self.by_seq("SELECT seq, value FROM messages WHERE seq >= ?1 ORDER BY seq", from, visit)
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

    fn dead_letters(&self, visit: VisitDeadLetter<'_>) -> Result<(), StoreError> {
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
        self.by_name("SELECT identity, value FROM devices", visit)
    }

    fn retained(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        self.by_name("SELECT topic, value FROM retained", visit)
    }

    fn rejected(&self, from: u64, visit: Visit<'_>) -> Result<(), StoreError> {
        self.by_seq("SELECT seq, value FROM rejected WHERE seq >= ?1 ORDER BY seq", from, visit)
    }

    fn sessions(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        self.by_name("SELECT client, value FROM sessions", visit)
    }

    fn queued(&self, client: &str, from: u64, visit: Visit<'_>) -> Result<(), StoreError> {
        self.read(|txn| {
            let mut stmt = txn.prepare_cached("SELECT qseq, value FROM session_queue WHERE client = ?1 AND qseq >= ?2 ORDER BY qseq")?;
            let mut rows = stmt.query(rusqlite::params![client, from])?;
            while let Some(row) = rows.next()? {
                let value = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
                if !visit(row.get(0)?, value)? {
                    break;
                }
            }
            Ok(())
        })
    }

    fn queued_keys(&self, visit: &mut dyn FnMut(&str, u64)) -> Result<(), StoreError> {
        self.read(|txn| {
            let mut stmt = txn.prepare_cached("SELECT client, qseq FROM session_queue ORDER BY client, qseq")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                visit(row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?, row.get(1)?);
            }
            Ok(())
        })
    }
}

impl SqliteBackend {
    /// Visit the (seq, value) rows `sql` selects from `from` on, until `visit` returns `false`.
    fn by_seq(&self, sql: &str, from: u64, visit: Visit<'_>) -> Result<(), StoreError> {
        self.read(|txn| {
            let mut stmt = txn.prepare_cached(sql)?;
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

    /// Visit every (text key, value) row `sql` selects.
    fn by_name(&self, sql: &str, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        self.read(|txn| {
            let mut stmt = txn.prepare_cached(sql)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let key = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                visit(key, row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?);
            }
            Ok(())
        })
    }
}
