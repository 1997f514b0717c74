//! What the storage actor is sent and answers, and the operations it queues for a transaction.

use std::time::{Duration, Instant};

use ractor::RpcReplyPort;
use thiserror::Error;

use super::reply::AppendReply;
use super::sessions::SessionOp;
use crate::record::NewRecord;

/// The longest an [`StorageMsg::AckLater`] waits for a transaction to join: what a crash can
/// deliver again, at most, beyond what an answered `Ack` allows.
pub const ACK_LATER_WITHIN: Duration = Duration::from_millis(200);

/// A successful append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The record's sequence number.
    pub seq: u64,
    /// Its idempotency key.
    pub key: String,
}

/// Why an append or an acknowledgement did not happen.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AppendError {
    /// The quota is full and the policy is `reject`.
    #[error("storage quota exceeded")]
    QuotaExceeded,
    /// A new retained topic would exceed `broker.retained_max` or `broker.retained_max_bytes`.
    #[error("retained messages full")]
    RetainedFull,
    /// The write transaction failed; nothing in it was stored.
    #[error("commit failed: {0}")]
    CommitFailed(String),
}

/// Messages to the storage actor.
pub enum StorageMsg {
    /// Store messages in this order (the appends one I/O thread collected in one turn
    /// of its event loop); one reply, after the commit that holds them all, with one result per
    /// message: one wake-up of that thread instead of one per message.
    AppendBatch {
        /// The messages, in order.
        records: Vec<NewRecord>,
        /// When they were handed to the actor: `gateway_puback_latency_seconds` counts from
        /// here, so the wait in the mailbox behind a slow commit is in it.
        handed: Instant,
        /// One result per message, after the commit.
        reply: RpcReplyPort<Vec<Result<Appended, AppendError>>>,
    },
    /// `sink` has every record below `next`; the reply comes after the commit that holds it.
    Ack { sink: String, next: u64, reply: RpcReplyPort<Result<(), AppendError>> },
    /// `sink` has every record below `next`, committed with the next write transaction or
    /// within [`ACK_LATER_WITHIN`], without a reply: a forwarder's cursor needs no fsync of its
    /// own. Until then the store still holds those records, and a crash delivers them again,
    /// under the same keys (at least once, as after a crash between a delivery and its `Ack`).
    AckLater { sink: String, next: u64 },
    /// `sink` refused record `seq` for good: move it to `dead_letters` and pass it.
    DeadLetter { sink: String, seq: u64, reason: String, reply: RpcReplyPort<Result<(), AppendError>> },
    /// Commit everything pending (sent by the actor to itself).
    Flush,
    /// Commit the [`StorageMsg::AckLater`]s pending, with anything else pending (sent by the
    /// actor to itself, [`ACK_LATER_WITHIN`] after the first of them).
    FlushLater,
    /// Once a second: refresh gauges, apply the TTL.
    Tick,
    /// Fail the next `n` write transactions before their commit (fault injection for tests
    /// and the chaos admin API). Nothing in a failed transaction is stored or acked.
    InjectFaults(u32),
    /// A reader (a forwarder) could not read the store: redb latches read errors too, so the
    /// store is treated as broken (not writable, reopened with backoff) like after a failed
    /// commit.
    ReadFailed(String),
    /// Change a persistent session (see `sessions.rs`).
    Session(SessionOp),
}

impl StorageMsg {
    /// An [`StorageMsg::AppendBatch`] handed over now.
    pub fn append_batch(records: Vec<NewRecord>, reply: RpcReplyPort<Vec<Result<Appended, AppendError>>>) -> Self {
        StorageMsg::AppendBatch { records, handed: Instant::now(), reply }
    }
}

pub(super) enum Op {
    /// Messages to store, when the actor received them, and where the results go.
    Append(Vec<NewRecord>, Instant, AppendReply),
    /// A cursor move, answered after its commit (`None`: from an `AckLater`, not answered).
    Ack(String, u64, Option<RpcReplyPort<Result<(), AppendError>>>),
    DeadLetter(String, u64, String, RpcReplyPort<Result<(), AppendError>>),
    Expire,
    Session(SessionOp),
}

impl Op {
    /// What the operation counts for against `storage.max_batch`: its messages, or 1.
    pub(super) fn weight(&self) -> usize {
        match self {
            Op::Append(recs, ..) => recs.len(),
            _ => 1,
        }
    }
}
