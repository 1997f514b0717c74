//! The forwarder's cursor in the store: moved after each delivery without a commit of its own
//! (`AckLater`), committed with an answered `Ack` when the forwarder starts and stops, and
//! committed again by an idle forwarder that finds the stored cursor behind its own.

use std::time::{Duration, Instant};

use super::{ForwarderArgs, ForwarderState, StorageCallError};
use crate::storage::{ACK_LATER_WITHIN, StorageMsg};

/// Move `args`'s cursor to at least `next` and wait (2 s at most) for a commit that holds it and
/// every `AckLater` sent before. Best effort: without it those batches are delivered again,
/// under the same keys.
pub(super) async fn commit_cursor_moves(args: &ForwarderArgs, next: u64) {
    if let Some(storage) = args.storage.get() {
        let sink = args.name.clone();
        let _ = storage.call(|reply| StorageMsg::Ack { sink, next, reply }, Some(Duration::from_secs(2))).await;
    }
}

impl ForwarderState {
    /// Send the storage actor the move of this sink's cursor to `next`. Not awaited: it joins the
    /// next commit (within `ACK_LATER_WITHIN`), so a delivered batch costs no fsync of its own;
    /// the next batch is read past it already.
    pub(super) fn move_cursor_later(&mut self, next: u64) -> Result<(), StorageCallError> {
        let Some(storage) = self.args.storage.get() else { return Err(StorageCallError::Down) };
        self.ack_sent = Instant::now();
        let sink = self.args.name.clone();
        storage.cast(StorageMsg::AckLater { sink, next }).map_err(|e| StorageCallError::Unreachable(e.to_string()))
    }

    /// With nothing to send: a cursor move the store should hold by now but does not (its
    /// transaction failed, or the storage actor was restarted with it in its mailbox) is
    /// committed with an answered `Ack`, since no later move comes to carry it. Otherwise
    /// delivered records would stay (quota, backlog gauges) until the next delivery. Costs a read
    /// of the cursor, at most once per idle poll (every second).
    pub(super) async fn confirm_cursor(&mut self) {
        if !self.cursor_known || self.cursor <= self.confirmed || self.ack_sent.elapsed() < 2 * ACK_LATER_WITHIN {
            return;
        }
        let store = self.args.store.clone();
        if let Ok(durable) = tokio::task::block_in_place(|| store.cursor(&self.args.name))
            && durable >= self.cursor
        {
            self.confirmed = self.cursor;
            return;
        }
        let (sink, next) = (self.args.name.clone(), self.cursor);
        match self.storage_call(|reply| StorageMsg::Ack { sink, next, reply }).await {
            Ok(()) => self.confirmed = next,
            // Tried again at the next idle poll; the store's failure is logged where it happens.
            Err(e) => tracing::debug!(sink = %self.args.name, error = %e, "Cannot commit the cursor yet; trying again."),
        }
    }
}
