//! Where the results of the storage actor's appends go: one reply per batch, or gathered for a
//! batch committed one message at a time.

use std::sync::Arc;

use ractor::RpcReplyPort;

use super::messages::Op;
use super::{AppendError, Appended};

/// Where the results of an `Op::Append` go.
pub(super) enum AppendReply {
    /// A batch: one result per message, in order.
    Batch(RpcReplyPort<Vec<Result<Appended, AppendError>>>),
    /// Part of a batch committed one message at a time: the results are gathered here.
    Collect(Arc<std::sync::Mutex<Vec<Result<Appended, AppendError>>>>),
}

impl AppendReply {
    /// Send the results (one per message of the op); a caller that gave up is ignored.
    pub(super) fn send(self, results: Vec<Result<Appended, AppendError>>) {
        match self {
            AppendReply::Batch(port) => {
                let _ = port.send(results);
            }
            AppendReply::Collect(into) => into.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(results),
        }
    }
}

/// Answer every operation of a transaction that failed (or never ran) with `error`.
pub(super) fn reply_all_failed(ops: Vec<Op>, error: &str) {
    for op in ops {
        let err = AppendError::CommitFailed(error.to_string());
        match op {
            Op::Append(recs, _, reply) => reply.send(vec![Err(err); recs.len()]),
            Op::Ack(_, _, Some(reply)) | Op::DeadLetter(_, _, _, reply) => {
                let _ = reply.send(Err(err));
            }
            Op::Ack(_, _, None) => {}
            Op::Session(super::sessions::SessionOp { reply: Some(reply), .. }) => {
                let _ = reply.send(Err(err));
            }
            Op::Session(_) | Op::Expire => {}
        }
    }
}
