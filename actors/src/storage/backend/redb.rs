//! The redb engine: nine tables in one copy-on-write file, every commit `Durability::Immediate`.
//!
//! | table          | key                    | value                       |
//! |----------------|------------------------|-----------------------------|
//! | `messages`     | `u64` seq              | encoded record              |
//! | `cursors`      | `&str` sink            | `u64` next unacknowledged   |
//! | `dead_letters` | `(&str sink, u64 seq)` | reason and encoded record   |
//! | `rejected`     | `u64` seq (own counter)| encoded record that failed its schema |
//! | `retained`     | `&str` topic           | encoded record: the topic's retained message |
//! | `meta`         | `&str`                 | `u64` (`next_seq`, `backlog_bytes`, `rejected_next_seq`, `rejected_bytes`) |
//! | `meta_str`     | `&str`                 | `&str` (`gateway_id`, `format`) |
//! | `devices`      | `&str` identity        | JSON of the device status   |
//! | `sessions`     | `&str` client id       | a persistent session (the broker's encoding) |
//! | `session_queue`| `(&str client, u64 n)` | a delivery queued for that session |

use std::path::Path;

use ::redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction};

use super::redb_errors::open_error;
use super::{Backend, Label, Meta, Tables, Visit, VisitDeadLetter};
use crate::storage::StoreStats;
use crate::storage::store::{StoreError, received_at};

/// The first bytes of every redb file.
pub(super) const MAGIC: &[u8] = b"redb\x1A\x0A\xA9\x0D\x0A";

const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
const DEAD_LETTERS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letters");
const REJECTED: TableDefinition<u64, &[u8]> = TableDefinition::new("rejected");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_STR: TableDefinition<&str, &str> = TableDefinition::new("meta_str");
const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const SESSION_QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("session_queue");

/// An open redb store file (redb locks it against a second open, also from this process).
pub struct RedbBackend {
    /// The database.
    db: Database,
}

impl RedbBackend {
    /// Open (or create) the file and make sure every table exists.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = if super::no_fsync::enabled() {
            super::no_fsync::announce();
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string(), damaged: false })?;
            super::no_fsync::NoSync::new(file).and_then(|b| Database::builder().create_with_backend(b))
        } else {
            Database::create(path)
        }
        .map_err(|e| open_error(path, e))?;
        let txn = db.begin_write()?;
        {
            let mut t = RedbTables::new(&txn);
            t.messages_table()?;
            t.cursors_table()?;
            t.dead_table()?;
            t.rejected_table()?;
            t.retained_table()?;
            t.meta_table()?;
            t.meta_str_table()?;
            t.devices_table()?;
            t.sessions_table()?;
            t.queue_table()?;
        }
        txn.commit()?;
        Ok(Self { db })
    }
}

impl Backend for RedbBackend {
    fn write(&self, f: &mut dyn FnMut(&mut dyn Tables) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut tables = RedbTables::new(&txn);
            f(&mut tables)?; // an error drops the transaction: aborted
        }
        txn.commit()?;
        Ok(())
    }

    fn scan(&self, from: u64, visit: Visit<'_>) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MESSAGES)?;
        for entry in table.range(from..)? {
            let (k, v) = entry?;
            if !visit(k.value(), v.value())? {
                break;
            }
        }
        Ok(())
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.db.begin_read()?;
        let messages = txn.open_table(MESSAGES)?;
        let meta = txn.open_table(META)?;
        Ok(StoreStats {
            messages: messages.len()?,
            bytes: meta.get(Meta::BacklogBytes.key())?.map(|v| v.value()).unwrap_or(0),
            next_seq: meta.get(Meta::NextSeq.key())?.map(|v| v.value()).unwrap_or(0),
            oldest_received_ms: messages.first()?.and_then(|(_, v)| received_at(v.value())),
            rejected: txn.open_table(REJECTED)?.len()?,
        })
    }

    fn cursor(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(CURSORS)?.get(sink)?.map(|v| v.value()))
    }

    fn dead_letters(&self, visit: VisitDeadLetter<'_>) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        for entry in txn.open_table(DEAD_LETTERS)?.iter()? {
            let (k, v) = entry?;
            let (sink, seq) = k.value();
            if !visit(sink, seq, v.value())? {
                break;
            }
        }
        Ok(())
    }

    fn devices(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        for entry in txn.open_table(DEVICES)?.iter()? {
            let (k, v) = entry?;
            visit(k.value(), v.value());
        }
        Ok(())
    }

    fn retained(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        for entry in txn.open_table(RETAINED)?.iter()? {
            let (k, v) = entry?;
            visit(k.value(), v.value());
        }
        Ok(())
    }

    fn rejected(&self, from: u64, visit: Visit<'_>) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        for entry in txn.open_table(REJECTED)?.range(from..)? {
            let (k, v) = entry?;
            if !visit(k.value(), v.value())? {
                break;
            }
        }
        Ok(())
    }

    fn sessions(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        for entry in txn.open_table(SESSIONS)?.iter()? {
            let (k, v) = entry?;
            visit(k.value(), v.value());
        }
        Ok(())
    }

    fn queued(&self, client: &str, from: u64, visit: Visit<'_>) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        for entry in txn.open_table(SESSION_QUEUE)?.range((client, from)..=(client, u64::MAX))? {
            let (k, v) = entry?;
            if !visit(k.value().1, v.value())? {
                break;
            }
        }
        Ok(())
    }

    fn queued_keys(&self, visit: &mut dyn FnMut(&str, u64)) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        for entry in txn.open_table(SESSION_QUEUE)?.iter()? {
            let (k, _) = entry?;
            let (client, qseq) = k.value();
            visit(client, qseq);
        }
        Ok(())
    }
}

/// The tables of one write transaction, each opened on first use.
pub(super) struct RedbTables<'t> {
    txn: &'t WriteTransaction,
    messages: Option<Table<'t, u64, &'static [u8]>>,
    cursors: Option<Table<'t, &'static str, u64>>,
    dead: Option<Table<'t, (&'static str, u64), &'static [u8]>>,
    rejected: Option<Table<'t, u64, &'static [u8]>>,
    retained: Option<Table<'t, &'static str, &'static [u8]>>,
    meta: Option<Table<'t, &'static str, u64>>,
    meta_str: Option<Table<'t, &'static str, &'static str>>,
    devices: Option<Table<'t, &'static str, &'static [u8]>>,
    sessions: Option<Table<'t, &'static str, &'static [u8]>>,
    queue: Option<Table<'t, (&'static str, u64), &'static [u8]>>,
}

/// `fn name(&mut self) -> &mut Table`: open the table on first use, then reuse it.
macro_rules! lazy_table {
    ($($fn_name:ident, $name:ident: $def:ident => $k:ty, $v:ty;)*) => {$(
        fn $fn_name(&mut self) -> Result<&mut Table<'t, $k, $v>, StoreError> {
            let table = match self.$name.take() {
                Some(table) => table,
                None => self.txn.open_table($def)?,
            };
            Ok(self.$name.insert(table))
        }
    )*};
}

impl<'t> RedbTables<'t> {
    fn new(txn: &'t WriteTransaction) -> Self {
        Self {
            txn,
            messages: None,
            cursors: None,
            dead: None,
            rejected: None,
            retained: None,
            meta: None,
            meta_str: None,
            devices: None,
            sessions: None,
            queue: None,
        }
    }

    lazy_table! {
        messages_table, messages: MESSAGES => u64, &'static [u8];
        cursors_table, cursors: CURSORS => &'static str, u64;
        dead_table, dead: DEAD_LETTERS => (&'static str, u64), &'static [u8];
        rejected_table, rejected: REJECTED => u64, &'static [u8];
        retained_table, retained: RETAINED => &'static str, &'static [u8];
        meta_table, meta: META => &'static str, u64;
        meta_str_table, meta_str: META_STR => &'static str, &'static str;
        devices_table, devices: DEVICES => &'static str, &'static [u8];
        sessions_table, sessions: SESSIONS => &'static str, &'static [u8];
        queue_table, queue: SESSION_QUEUE => (&'static str, u64), &'static [u8];
    }
}

impl Tables for RedbTables<'_> {
    fn meta(&mut self, key: Meta) -> Result<Option<u64>, StoreError> {
        Ok(self.meta_table()?.get(key.key())?.map(|v| v.value()))
    }

    fn set_meta(&mut self, key: Meta, value: u64) -> Result<(), StoreError> {
        self.meta_table()?.insert(key.key(), value)?;
        Ok(())
    }

    fn label(&mut self, key: Label) -> Result<Option<String>, StoreError> {
        Ok(self.meta_str_table()?.get(key.key())?.map(|v| v.value().to_string()))
    }

    fn set_label(&mut self, key: Label, value: &str) -> Result<(), StoreError> {
        self.meta_str_table()?.insert(key.key(), value)?;
        Ok(())
    }

    fn message_count(&mut self) -> Result<u64, StoreError> {
        Ok(self.messages_table()?.len()?)
    }

    fn oldest_received_ms(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(self.messages_table()?.first()?.and_then(|(_, v)| received_at(v.value())))
    }

    fn message(&mut self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.messages_table()?.get(seq)?.map(|v| v.value().to_vec()))
    }

    fn insert_message(&mut self, seq: u64, value: &[u8]) -> Result<(), StoreError> {
        self.messages_table()?.insert(seq, value)?;
        Ok(())
    }

    fn pop_oldest(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(self.messages_table()?.pop_first()?.map(|(_, v)| v.value().len() as u64))
    }

    fn delete_below(&mut self, seq: u64) -> Result<u64, StoreError> {
        let mut freed = 0u64;
        self.messages_table()?.retain_in(..seq, |_, v| {
            freed += v.len() as u64;
            false
        })?;
        Ok(freed)
    }

    fn cursor(&mut self, sink: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.cursors_table()?.get(sink)?.map(|v| v.value()))
    }

    fn set_cursor(&mut self, sink: &str, next: u64) -> Result<(), StoreError> {
        self.cursors_table()?.insert(sink, next)?;
        Ok(())
    }

    fn insert_dead_letter(&mut self, sink: &str, seq: u64, value: &[u8]) -> Result<(), StoreError> {
        self.dead_table()?.insert((sink, seq), value)?;
        Ok(())
    }

    fn rejected_count(&mut self) -> Result<u64, StoreError> {
        Ok(self.rejected_table()?.len()?)
    }

    fn insert_rejected(&mut self, seq: u64, value: &[u8]) -> Result<(), StoreError> {
        self.rejected_table()?.insert(seq, value)?;
        Ok(())
    }

    fn pop_oldest_rejected(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(self.rejected_table()?.pop_first()?.map(|(_, v)| v.value().len() as u64))
    }

    fn retained_count(&mut self) -> Result<u64, StoreError> {
        Ok(self.retained_table()?.len()?)
    }

    fn retained_size(&mut self, topic: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.retained_table()?.get(topic)?.map(|v| v.value().len() as u64))
    }

    fn put_retained(&mut self, topic: &str, value: &[u8]) -> Result<(), StoreError> {
        self.retained_table()?.insert(topic, value)?;
        Ok(())
    }

    fn remove_retained(&mut self, topic: &str) -> Result<(), StoreError> {
        self.retained_table()?.remove(topic)?;
        Ok(())
    }

    fn put_session(&mut self, client: &str, value: &[u8]) -> Result<(), StoreError> {
        self.sessions_table()?.insert(client, value)?;
        Ok(())
    }

    fn session_queued(&mut self, client: &str) -> Result<Option<u64>, StoreError> {
        if self.sessions_table()?.get(client)?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.queue_table()?.range((client, 0)..=(client, u64::MAX))?.count() as u64))
    }

    fn remove_session(&mut self, client: &str) -> Result<u64, StoreError> {
        self.sessions_table()?.remove(client)?;
        let mut removed = 0u64;
        self.queue_table()?.retain_in((client, 0)..=(client, u64::MAX), |_, _| {
            removed += 1;
            false
        })?;
        Ok(removed)
    }

    fn insert_queued(&mut self, client: &str, qseq: u64, value: &[u8]) -> Result<(), StoreError> {
        self.queue_table()?.insert((client, qseq), value)?;
        Ok(())
    }

    fn remove_queued(&mut self, client: &str, qseq: u64) -> Result<bool, StoreError> {
        Ok(self.queue_table()?.remove((client, qseq))?.is_some())
    }

    fn put_device(&mut self, identity: &str, json: &[u8]) -> Result<(), StoreError> {
        self.devices_table()?.insert(identity, json)?;
        Ok(())
    }

    fn remove_device(&mut self, identity: &str) -> Result<(), StoreError> {
        self.devices_table()?.remove(identity)?;
        Ok(())
    }
}
