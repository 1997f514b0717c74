//! The durable store: one file, written only by the storage actor, held by one of two engines
//! behind one interface ([`backend`]): redb (`<data_dir>/gateway.redb`, the default) or SQLite
//! (`<data_dir>/gateway.sqlite` with its `-wal` log, `storage.backend = "sqlite"`).
//!
//! # On-disk format (the same tables in both engines)
//!
//! | table          | key                | value                                          |
//! |----------------|--------------------|------------------------------------------------|
//! | `messages`     | `u64` seq          | encoded [`Record`](crate::record) (version 3; versions 1 and 2 still read) |
//! | `cursors`      | `&str` sink name   | `u64`: next seq the sink has not acknowledged  |
//! | `dead_letters` | `(&str sink, u64 seq)` | `u16` reason length, reason, encoded record |
//! | `rejected`     | `u64` seq (own counter) | encoded record that failed its schema and is kept apart: never forwarded, no key, at most `rejected_max` records and `rejected_max_bytes` (oldest dropped, counted) |
//! | `meta`         | `&str`             | `u64` counters: `next_seq`, `backlog_bytes`, `rejected_next_seq`, `rejected_bytes` (SQLite also `message_count`) |
//! | `meta_str`     | `&str`             | `&str`: `gateway_id`, `format` (= "1")         |
//! | `devices`      | `&str` identity    | JSON device status (used in the device file only) |
//! | `retained`     | `&str` topic       | encoded record: the topic's retained message   |
//! | `sessions`     | `&str` client id   | a persistent session (subscriptions, expiry; the broker's encoding) |
//! | `session_queue`| `(&str client, u64 n)` | a delivery queued for that session, `n` from `meta.queued_next_seq` (see `sessions.rs`) |
//!
//! The engine-specific layout (redb table definitions, SQLite schema) is in
//! `backend/redb.rs` and `backend/sqlite.rs`. The policy above the tables (quota, TTL, cursors,
//! keys, what a commit holds) is written once, in `commit.rs`, against [`backend::Tables`].
//!
//! Records are written in version 3: version 2 followed by the schema check of the payload
//! (`u8 has_schema`, then subject, version, valid, errors; see `docs/SCHEMAS.md`). Version 2 is
//! version 1 (`u8` version, `u64 received_at_ms`, `u8 qos`,
//! key, device, topic, content type, user properties, payload) followed by the message's trace
//! context: `u8 has_trace`, then if 1 a 16-byte trace id, an 8-byte span id and a `u8` of trace
//! flags (the W3C context of its receive span, or the device's; see `docs/TRACING.md`). A record
//! without a context ends in a single 0 byte, one with a context in 26 bytes. Both count in
//! `backlog_bytes` and against the byte quota. Version 1 records (no trace section) are still
//! decoded, so `messages` and `dead_letters` may hold every version. The version is per record,
//! so the store's `format` stays "1". A build from before version 3 refuses version 3 records
//! (`unknown record version 3`): do not roll a gateway back to such a build while its store
//! holds undelivered or dead-lettered records written by a newer one. The byte layout is in
//! [`crate::record`].
//!
//! # Invariants
//!
//! 1. A record is in `messages` from the commit that wrote it until every configured sink's
//!    cursor has passed it (or a quota/TTL policy dropped it, which is counted).
//! 2. Sequence numbers strictly increase and are never reused: `meta.next_seq` is greater than
//!    every key ever written, and is written in the same transaction as the record.
//! 3. A PUBACK (the reply to an append) is sent only after the transaction holding the record
//!    committed with an fsync (redb `Durability::Immediate`; SQLite WAL with
//!    `synchronous = FULL`). A failed commit replies with an error.
//! 4. A cursor only moves forward. Everything below `min(cursor of every configured sink)` is
//!    deleted in the same transaction that moves the cursor.
//! 5. `meta.backlog_bytes` equals the sum of the encoded value lengths in `messages`.
//! 6. Only the storage actor opens write transactions; forwarders read with read transactions.
//!    The store is opened once, outside the actor, so a restarted actor reuses it.
//! 7. The actor's in-memory counters are caches: every write transaction reloads `next_seq`,
//!    `backlog_bytes` and the record count from the file, and moves a cursor only past its
//!    durable value, so an earlier incarnation that committed late (killed during an fsync)
//!    can never make this one reuse a sequence number or move a cursor back.

mod actor;
pub mod backend;
mod commit;
mod messages;
mod policy;
mod recovery;
mod reply;
mod report;
mod salvage;
mod sessions;
mod shared;
mod store;

pub use actor::{StorageActor, StorageArgs, now_ms};
pub use backend::BackendKind;
pub use messages::{ACK_LATER_WITHIN, AppendError, Appended, StorageMsg};
pub use policy::{Overflow, StoragePolicy};
pub use salvage::{Salvaged, scan_records};
pub use sessions::{SessionChange, SessionOp, StoredSession};
pub use shared::{ReopenError, SharedDb};
pub use store::{DeadLetter, FORMAT_VERSION, Store, StoreError, StoreStats, WeakStore};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod model_tests;
