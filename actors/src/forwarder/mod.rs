//! One forwarder actor per sink: reads the store in sequence order and delivers batches.
//!
//! The loop is a `Poll` message the actor sends itself; exactly one is outstanding at a time.
//! - Store empty past the cursor: wait for the next commit (or 1 s), then `Poll`.
//! - Delivered: the cursor move goes to the storage actor (`AckLater`: committed with the next
//!   transaction, within 200 ms), then `Poll` at once from the new cursor, so a backlog drains as
//!   fast as the sink accepts, without an fsync per batch.
//! - Transient failure (connect, timeout, 5xx, 429): backoff with full jitter, retry without end.
//! - Rejected (other 4xx): a batch of several is resent one message at a time to find the
//!   offender; a single rejected message goes to the dead-letter table, and the queue moves on.
//!
//! Delivery is at least once: a crash between delivery and the cursor's commit resends the batch
//! with the same idempotency keys, and the sink drops the duplicates. A restarted forwarder
//! first has the cursor moves of its previous incarnation committed, so it does not resend them.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use ractor::{Actor, ActorProcessingErr, ActorRef, rpc::CallResult};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::liveness::Liveness;
use crate::metrics::{DeliveryKind, DeliveryLabels, Metrics, SinkLabels};
use crate::record::Record;
use crate::slot::ActorSlot;
use crate::storage::{AppendError, StorageMsg, Store};

mod batch;
mod cursor;
mod device_time;
mod isolate;
mod live;
mod observe;

use batch::Batch;
use cursor::commit_cursor_moves;
pub use device_time::device_timestamp_ms;
use isolate::{Isolation, Rejection};
pub use live::LiveSink;
use observe::{forward_spans, observe_latency};

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// Worth retrying as is; `kind` is a metric label (`connect`, `timeout`, `http_5xx`, ...).
    Transient { kind: DeliveryKind, detail: String },
    /// The sink refused the content; resending it will not help.
    Rejected { detail: String },
}

/// Why an acknowledgement or dead-lettering the forwarder asked of the storage actor failed
/// (retried after backoff; the cursor does not move).
#[derive(Debug, thiserror::Error)]
pub enum StorageCallError {
    /// No storage actor is running (it is being restarted).
    #[error("storage actor is down")]
    Down,
    /// The storage actor refused or failed the write.
    #[error(transparent)]
    Refused(AppendError),
    /// No answer within 30 s.
    #[error("storage call timed out")]
    Timeout,
    /// The storage actor stopped before it answered.
    #[error("storage actor dropped the request")]
    Dropped,
    /// The message could not be sent.
    #[error("storage actor unreachable: {0}")]
    Unreachable(String),
}

/// Where a forwarder delivers to. Implemented in the root crate (HTTP, file).
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Deliver `batch` (in seq order) with idempotency key `batch_key`; `Ok` means the sink has it.
    async fn deliver(&self, batch_key: &str, batch: &[Record]) -> Result<(), DeliveryError>;
}

/// Batch limits and retry policy of one sink.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwarderPolicy {
    /// Most messages per batch.
    pub max_messages: usize,
    /// About the most encoded bytes per batch.
    pub max_bytes: usize,
    /// Retry delays.
    pub backoff: Backoff,
    /// No progress for this long, with messages waiting and the sink reachable, is a stall
    /// (the watchdog restarts the forwarder); zero: never.
    pub stuck_after: Duration,
}

/// The forwarder (stateless handler).
pub struct ForwarderActor;

/// Start-up arguments.
pub struct ForwarderArgs {
    /// Sink name (config key; metric label).
    pub name: String,
    /// Where to deliver, with limits and retries (a reload may replace them).
    pub live: LiveSink,
    /// Read access to the store.
    pub store: Store,
    /// The storage actor, for moving the cursor.
    pub storage: ActorSlot<StorageMsg>,
    /// Next unassigned seq, published after each commit.
    pub committed: watch::Receiver<u64>,
    /// Counters.
    pub metrics: Metrics,
    /// Progress reports for the watchdog.
    pub liveness: Liveness,
}

/// Messages to a forwarder.
pub enum ForwarderMsg {
    /// Try to deliver the next batch.
    Poll,
}

/// The forwarder's state.
pub struct ForwarderState {
    args: ForwarderArgs,
    /// Next seq to deliver (its durable copy in the store's `cursors` table follows within
    /// `ACK_LATER_WITHIN`).
    cursor: u64,
    /// The cursor as last seen durable (read from the store, or an answered `Ack`).
    confirmed: u64,
    /// When the last `AckLater` was sent.
    ack_sent: Instant,
    /// Whether `cursor` was read from the store (not yet when the store was unreadable at start).
    cursor_known: bool,
    /// Consecutive failed attempts.
    attempt: u32,
    /// After a rejected batch: one message per batch until the offender is found.
    isolation: Isolation,
    /// The batch to send again, unchanged, after a failed attempt.
    retry: Option<Batch>,
    /// Trace context of the batch's first message that has one (its forward span's when
    /// sampled): the `trace_id` / `span_id` of the log lines about that batch.
    batch_trace: Option<crate::record::TraceCtx>,
}

impl Actor for ForwarderActor {
    type Msg = ForwarderMsg;
    type State = ForwarderState;
    type Arguments = ForwarderArgs;

    async fn pre_start(&self, myself: ActorRef<ForwarderMsg>, args: ForwarderArgs) -> Result<ForwarderState, ActorProcessingErr> {
        // The cursor moves of an earlier incarnation may still wait for their commit: an `Ack`
        // (that moves nothing) is answered after a commit that holds them. Best effort: without
        // it they are delivered again, under the same keys.
        commit_cursor_moves(&args, 0).await;
        // Unreadable now (a disk fault): read it at the first poll instead, so a store that is
        // being reopened does not turn into start failures of the forwarder.
        let cursor = match args.store.cursor(&args.name) {
            Ok(cursor) => Some(cursor),
            Err(e) => {
                tracing::warn!(sink = %args.name, error = %e, "Cannot read the cursor yet; reading it at the first poll.");
                None
            }
        };
        tracing::info!(sink = %args.name, ?cursor, "Forwarder started.");
        args.liveness.started(&args.name, args.live.policy().stuck_after);
        myself.send_message(ForwarderMsg::Poll)?;
        Ok(ForwarderState {
            args,
            cursor: cursor.unwrap_or(0),
            confirmed: cursor.unwrap_or(0),
            ack_sent: Instant::now(),
            cursor_known: cursor.is_some(),
            attempt: 0,
            isolation: Isolation::default(),
            retry: None,
            batch_trace: None,
        })
    }

    async fn post_stop(&self, _myself: ActorRef<ForwarderMsg>, state: &mut ForwarderState) -> Result<(), ActorProcessingErr> {
        // Forwarders stop before the storage actor, whose stop does not wait for the messages
        // still in its mailbox: the last cursor moves are committed now, or a restart would
        // deliver those batches again.
        if state.cursor_known {
            commit_cursor_moves(&state.args, state.cursor).await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ForwarderMsg>,
        msg: ForwarderMsg,
        state: &mut ForwarderState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ForwarderMsg::Poll => state.on_poll(&myself).await,
        }
    }
}

impl ForwarderState {
    async fn on_poll(&mut self, myself: &ActorRef<ForwarderMsg>) -> Result<(), ActorProcessingErr> {
        if !self.cursor_known {
            let store = self.args.store.clone();
            match tokio::task::block_in_place(|| store.cursor(&self.args.name)) {
                Ok(cursor) => (self.cursor, self.cursor_known) = (cursor, true),
                Err(e) => {
                    self.store_failed(myself, e);
                    return Ok(());
                }
            }
        }
        self.batch_trace = None;
        let mut batch = match self.retry.take() {
            Some(batch) => batch,
            None => match self.next_batch(myself)? {
                Some(batch) => batch,
                None => {
                    self.confirm_cursor().await;
                    return Ok(());
                }
            },
        };
        let (first, last, n) = (batch.first(), batch.last(), batch.records.len());
        self.args.liveness.sending(&self.args.name);
        let spans = forward_spans(&self.args.name, batch.for_attempt());
        self.batch_trace = batch.records.iter().find_map(|r| r.trace);
        let (sink, _) = self.args.live.get();
        let delivered = sink.deliver(&batch.key, &batch.records).await;
        spans.end(&delivered);
        // A rejected batch of several is split (see isolate.rs): it is not sent again as a whole.
        let (accepted, split) = (delivered.is_ok(), n > 1 && matches!(delivered, Err(DeliveryError::Rejected { .. })));
        let result = match delivered {
            Ok(()) => self.on_delivered(myself, n, last).await,
            Err(DeliveryError::Transient { kind, detail }) => {
                self.retry_later(myself, kind, &detail);
                Ok(())
            }
            Err(DeliveryError::Rejected { detail }) => self.on_rejected(myself, n, first, last, detail).await,
        };
        if self.cursor > last {
            if accepted {
                observe_latency(&self.args.metrics, &self.args.name, &batch.records);
            }
        } else if !split {
            // Not acknowledged (a failed attempt, or an ack or dead letter the store did not
            // take) and not split: the same batch goes again.
            self.retry = Some(batch);
        }
        result
    }

    /// The next batch from the cursor, or `None` (nothing to send yet, or the store failed:
    /// the next poll is scheduled either way).
    fn next_batch(&mut self, myself: &ActorRef<ForwarderMsg>) -> Result<Option<Batch>, ActorProcessingErr> {
        let policy = self.args.live.policy();
        let max = self.isolation.batch_limit(self.cursor, policy.max_messages);
        // Everything below this seq is committed; read it before the batch.
        let committed = *self.args.committed.borrow();
        let (store, cursor, max_bytes) = (self.args.store.clone(), self.cursor, policy.max_bytes);
        let records = match tokio::task::block_in_place(|| store.read_batch(cursor, max, max_bytes)) {
            Ok(records) => records,
            Err(e) => {
                self.store_failed(myself, e);
                return Ok(None);
            }
        };
        let batch = Batch::new(records);
        if batch.is_none() {
            // Nothing at or past the cursor although seqs up to `committed` exist: they were
            // dropped (TTL, quota). Skip them, or the next poll would find the same gap at once.
            self.cursor = self.cursor.max(committed);
            self.args.liveness.progressed(&self.args.name, false);
            self.wait_for_commit(myself);
        }
        Ok(batch)
    }

    fn wait_for_commit(&self, myself: &ActorRef<ForwarderMsg>) {
        let mut committed = self.args.committed.clone();
        let cursor = self.cursor;
        let me = myself.clone();
        tokio::spawn(async move {
            if *committed.borrow_and_update() <= cursor {
                let _ = tokio::time::timeout(Duration::from_secs(1), committed.changed()).await;
            }
            let _ = me.send_message(ForwarderMsg::Poll);
        });
    }

    async fn on_delivered(&mut self, myself: &ActorRef<ForwarderMsg>, n: usize, last: u64) -> Result<(), ActorProcessingErr> {
        if let Err(detail) = self.move_cursor_later(last + 1) {
            self.retry_later(myself, DeliveryKind::Store, &detail.to_string());
            return Ok(());
        }
        let labels = SinkLabels { sink: self.args.name.clone() };
        self.args.metrics.forwarded_messages.get_or_create(&labels).inc_by(n as u64);
        self.args.metrics.forwarded_batches.get_or_create(&labels).inc();
        self.cursor = last + 1;
        self.attempt = 0;
        self.args.liveness.progressed(&self.args.name, true);
        myself.send_message(ForwarderMsg::Poll)?;
        Ok(())
    }

    async fn on_rejected(
        &mut self,
        myself: &ActorRef<ForwarderMsg>,
        n: usize,
        first: u64,
        last: u64,
        detail: String,
    ) -> Result<(), ActorProcessingErr> {
        self.count_error(DeliveryKind::Rejected);
        let (trace_id, span_id) = crate::spans::log_ids(self.batch_trace.as_ref());
        let Rejection::DeadLetter(seq) = self.isolation.rejected(n, first, last) else {
            tracing::warn!(sink = %self.args.name, first, last, %detail, trace_id, span_id, "Batch rejected; resending one message at a time to find the offender.");
            myself.send_message(ForwarderMsg::Poll)?;
            return Ok(());
        };
        tracing::warn!(sink = %self.args.name, seq, %detail, trace_id, span_id, "Message rejected; moved to the dead-letter table.");
        let (sink, reason) = (self.args.name.clone(), detail);
        match self.storage_call(|reply| StorageMsg::DeadLetter { sink, seq, reason, reply }).await {
            Ok(()) => {
                self.cursor = seq + 1;
                self.args.liveness.progressed(&self.args.name, true);
                myself.send_message(ForwarderMsg::Poll)?;
            }
            Err(detail) => self.retry_later(myself, DeliveryKind::Store, &detail.to_string()),
        }
        Ok(())
    }

    /// The store could not be read: tell the storage actor when the engine failed (redb latches read
    /// errors too; the storage actor reopens the file) and try again after backoff, without
    /// exiting. A record that does not decode is not a disk fault: it only holds this sink back
    /// (logged and counted as `kind="store"` until an operator removes it).
    fn store_failed(&mut self, myself: &ActorRef<ForwarderMsg>, e: crate::storage::StoreError) {
        if matches!(e, crate::storage::StoreError::Damaged(_) | crate::storage::StoreError::Io(_))
            && let Some(storage) = self.args.storage.get()
        {
            let _ = storage.send_message(StorageMsg::ReadFailed(e.to_string()));
        }
        self.retry_later(myself, DeliveryKind::Store, &e.to_string());
    }

    fn retry_later(&mut self, myself: &ActorRef<ForwarderMsg>, kind: DeliveryKind, detail: &str) {
        self.attempt = self.attempt.saturating_add(1);
        self.count_error(kind);
        self.args.liveness.failed(&self.args.name, kind);
        let delay = self.args.live.policy().backoff.full_jitter(self.attempt);
        let (trace_id, span_id) = crate::spans::log_ids(self.batch_trace.as_ref());
        tracing::warn!(
            sink = %self.args.name, %kind, attempt = self.attempt, delay_ms = delay.as_millis() as u64, %detail, trace_id, span_id,
            "Forward failed; backing off."
        );
        myself.send_after(delay, || ForwarderMsg::Poll);
    }

    fn count_error(&self, kind: DeliveryKind) {
        let labels = DeliveryLabels { sink: self.args.name.clone(), kind };
        self.args.metrics.forward_errors.get_or_create(&labels).inc();
    }

    async fn storage_call(
        &self,
        msg: impl FnOnce(ractor::RpcReplyPort<Result<(), AppendError>>) -> StorageMsg,
    ) -> Result<(), StorageCallError> {
        let Some(storage) = self.args.storage.get() else {
            return Err(StorageCallError::Down);
        };
        match storage.call(msg, Some(Duration::from_secs(30))).await {
            Ok(CallResult::Success(Ok(()))) => Ok(()),
            Ok(CallResult::Success(Err(e))) => Err(StorageCallError::Refused(e)),
            Ok(CallResult::Timeout) => Err(StorageCallError::Timeout),
            Ok(CallResult::SenderError) => Err(StorageCallError::Dropped),
            Err(e) => Err(StorageCallError::Unreachable(e.to_string())),
        }
    }
}
