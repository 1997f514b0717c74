//! The tables of one SQLite transaction (`Tables` for the SQLite engine): one statement each,
//! cached, with the record count kept in `meta` (SQLite's `count(*)` walks the table).

use rusqlite::{OptionalExtension, params};

use super::{Label, Meta, Tables};
use crate::storage::store::{StoreError, received_at};

/// The `meta` key of the record count.
const MESSAGE_COUNT: &str = "message_count";

/// The tables inside one transaction, with the record count read once and written back by
/// [`SqliteTables::finish`].
pub(super) struct SqliteTables<'a> {
    pub(super) txn: &'a rusqlite::Transaction<'a>,
    /// The record count as of this transaction's changes so far (loaded on first use).
    pub(super) count: Option<u64>,
}

impl SqliteTables<'_> {
    fn add_count(&mut self, delta: i64) -> Result<(), StoreError> {
        let n = self.message_count()?;
        self.count = Some(n.saturating_add_signed(delta));
        Ok(())
    }

    /// Write the record count back.
    pub(super) fn finish(&mut self) -> Result<(), StoreError> {
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

    fn put_session(&mut self, client: &str, value: &[u8]) -> Result<(), StoreError> {
        self.txn.prepare_cached("INSERT OR REPLACE INTO sessions (client, value) VALUES (?1, ?2)")?.execute(params![client, value])?;
        Ok(())
    }

    fn session_queued(&mut self, client: &str) -> Result<Option<u64>, StoreError> {
        let exists = self.txn.prepare_cached("SELECT 1 FROM sessions WHERE client = ?1")?.query_row([client], |_| Ok(())).optional()?;
        if exists.is_none() {
            return Ok(None);
        }
        Ok(Some(self.txn.prepare_cached("SELECT count(*) FROM session_queue WHERE client = ?1")?.query_row([client], |r| r.get(0))?))
    }

    fn remove_session(&mut self, client: &str) -> Result<u64, StoreError> {
        self.txn.prepare_cached("DELETE FROM sessions WHERE client = ?1")?.execute([client])?;
        Ok(self.txn.prepare_cached("DELETE FROM session_queue WHERE client = ?1")?.execute([client])? as u64)
    }

    fn insert_queued(&mut self, client: &str, qseq: u64, value: &[u8]) -> Result<(), StoreError> {
        self.txn
            .prepare_cached("INSERT INTO session_queue (client, qseq, value) VALUES (?1, ?2, ?3)")?
            .execute(params![client, qseq, value])?;
        Ok(())
    }

    fn remove_queued(&mut self, client: &str, qseq: u64) -> Result<bool, StoreError> {
        Ok(self.txn.prepare_cached("DELETE FROM session_queue WHERE client = ?1 AND qseq = ?2")?.execute(params![client, qseq])? > 0)
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
