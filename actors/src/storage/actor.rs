//! The storage actor: the only writer of the store, committing in groups.
//!
//! Group commit: the first operation queued while no `Flush` is in the mailbox sends the actor a
//! `Flush` to itself. That `Flush` lands behind everything already in the mailbox, so every append
//! that arrived while the previous commit ran joins the next write transaction. A forwarder's
//! cursor move (`AckLater`) starts no transaction: it joins the next one, or a `FlushLater` sent
//! `ACK_LATER_WITHIN` after the first one waiting. Replies (and so
//! PUBACKs) go out only after `commit()` returned; a failed commit replies with an error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;

use super::commit::{Outcome, commit_spans};
use super::messages::{ACK_LATER_WITHIN, AppendError, Op, StorageMsg};
use super::policy::StoragePolicy;
use super::recovery::run_prefix;
use super::reply::{AppendReply, reply_all_failed};
use super::sessions::SessionOp;
use super::store::{Store, StoreError};
use crate::health::Health;
use crate::metrics::{DeliveryDrop, DeliveryDropLabels, DropLabels, DropReason, Metrics, SinkLabels};

/// The storage actor (stateless handler; state lives in [`StorageState`]).
pub struct StorageActor;

/// Start-up arguments, handed in again on every restart.
pub struct StorageArgs {
    /// The store, opened once outside the actor.
    pub store: Store,
    /// The gateway id that leads every idempotency key.
    pub gateway_id: String,
    /// Quota, TTL and batching.
    pub policy: StoragePolicy,
    /// Where the metrics go.
    pub metrics: Metrics,
    /// Where writability is reported.
    pub health: Health,
    /// Publishes the next unassigned seq after each commit; forwarders wait on it.
    pub committed: Arc<watch::Sender<u64>>,
    /// Unix milliseconds now, for the TTL: [`now_ms`], or a test's own clock.
    pub clock: fn() -> u64,
}

/// The actor's state: what the store holds, mirrored in memory.
pub struct StorageState {
    pub(super) args: StorageArgs,
    /// Operations waiting for the next transaction.
    pub(super) pending: Vec<Op>,
    /// Messages and other operations in `pending` (a batch counts each message): what
    /// `max_batch` bounds.
    pub(super) pending_weight: usize,
    /// A `Flush` is in the mailbox: what is queued now joins the transaction it starts.
    pub(super) flush_queued: bool,
    /// A `FlushLater` is on its way for the `AckLater`s pending.
    pub(super) later_armed: bool,
    /// `{gateway id}:{run}`: the start of every key written until the store is next opened;
    /// `run` is 64 random bits drawn at each actor start and reopening (see [`run_prefix`]).
    pub(super) key_prefix: String,
    /// Seq for the next record.
    pub(super) next_seq: u64,
    /// Records stored.
    pub(super) messages: u64,
    /// Encoded bytes stored.
    pub(super) bytes: u64,
    /// Next unacknowledged seq per sink.
    pub(super) cursors: HashMap<String, u64>,
    /// Receive time of the oldest record.
    pub(super) oldest_received_ms: Option<u64>,
    /// Records kept apart in `rejected`.
    pub(super) rejected: u64,
    /// Persistent sessions, and the deliveries each has queued.
    pub(super) sessions: HashMap<String, u64>,
    /// Write transactions still to fail on purpose.
    pub(super) injected_faults: u32,
    /// The last real write failure, while the store waits to be reopened: redb fails every
    /// operation after a failed write or fsync until the file is opened again.
    pub(super) broken: Option<String>,
    /// Messages dropped at the quota and by the TTL since the last WARN about it (logged at the
    /// next tick, so at most once a second, with the counts).
    pub(super) unlogged_drops: (u64, u64),
    /// When the next reopening may be tried, and how many were tried since the fault began (the
    /// wait grows by [`REOPEN_BACKOFF`] while the fault lasts: each reopening walks the file).
    pub(super) next_reopen: Option<(Instant, u32)>,
}

impl Actor for StorageActor {
    type Msg = StorageMsg;
    type State = StorageState;
    type Arguments = StorageArgs;

    async fn pre_start(&self, _myself: ActorRef<StorageMsg>, args: StorageArgs) -> Result<StorageState, ActorProcessingErr> {
        // A store left broken by a previous incarnation is reopened first.
        let stats = match args.store.stats() {
            Ok(stats) => stats,
            Err(e) => {
                tracing::warn!(error = %e, "Store unreadable at actor start; reopening it.");
                args.store.reopen()?;
                args.store.stats()?
            }
        };
        let mut cursors = HashMap::new();
        for sink in args.store.sinks() {
            cursors.insert(sink.clone(), args.store.cursor(sink)?);
        }
        let sessions = super::sessions::load(&args.store)?;
        let key_prefix = run_prefix(&args.gateway_id);
        tracing::info!(next_seq = stats.next_seq, backlog = stats.messages, bytes = stats.bytes, %key_prefix, "Storage actor started.");
        args.health.set_storage_writable(true);
        let state = StorageState {
            key_prefix,
            pending: Vec::new(),
            pending_weight: 0,
            flush_queued: false,
            later_armed: false,
            next_seq: stats.next_seq,
            messages: stats.messages,
            bytes: stats.bytes,
            cursors,
            oldest_received_ms: stats.oldest_received_ms,
            rejected: stats.rejected,
            sessions,
            injected_faults: 0,
            broken: None,
            next_reopen: None,
            unlogged_drops: (0, 0),
            args,
        };
        state.publish_gauges();
        Ok(state)
    }

    async fn post_start(&self, myself: ActorRef<StorageMsg>, _state: &mut StorageState) -> Result<(), ActorProcessingErr> {
        myself.send_interval(Duration::from_secs(1), || StorageMsg::Tick);
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<StorageMsg>, state: &mut StorageState) -> Result<(), ActorProcessingErr> {
        // A graceful stop commits what was already taken from the mailbox.
        state.flush();
        Ok(())
    }

    async fn handle(&self, myself: ActorRef<StorageMsg>, msg: StorageMsg, state: &mut StorageState) -> Result<(), ActorProcessingErr> {
        let op = match msg {
            StorageMsg::Flush => {
                state.flush_queued = false;
                tokio::task::block_in_place(|| state.flush());
                return Ok(());
            }
            StorageMsg::FlushLater => {
                state.later_armed = false;
                tokio::task::block_in_place(|| state.flush());
                return Ok(());
            }
            StorageMsg::Tick => {
                if state.broken.is_some() {
                    // Probe without waiting for traffic, so readiness follows the disk.
                    tokio::task::block_in_place(|| state.probe());
                }
                state.publish_gauges();
                state.log_drops();
                if state.args.policy.ttl.is_none() {
                    return Ok(());
                }
                Op::Expire
            }
            StorageMsg::ReadFailed(error) => {
                if state.broken.is_none() {
                    tracing::error!(%error, "Store read failed; reopening it.");
                    state.args.health.set_storage_writable(false);
                    state.broken = Some(error);
                }
                return Ok(());
            }
            StorageMsg::InjectFaults(n) => {
                tracing::warn!(n, "Injecting storage faults: the next write transactions will fail.");
                state.injected_faults = n;
                return Ok(());
            }
            StorageMsg::AppendBatch { records, handed, reply } => Op::Append(records, handed, AppendReply::Batch(reply)),
            StorageMsg::Ack { sink, next, reply } => Op::Ack(sink, next, Some(reply)),
            StorageMsg::AckLater { sink, next } => Op::Ack(sink, next, None),
            StorageMsg::DeadLetter { sink, seq, reason, reply } => Op::DeadLetter(sink, seq, reason, reply),
            StorageMsg::Session(op) => Op::Session(op),
        };
        state.enqueue(&myself, op)
    }
}

impl StorageState {
    fn enqueue(&mut self, myself: &ActorRef<StorageMsg>, op: Op) -> Result<(), ActorProcessingErr> {
        let later = matches!(op, Op::Ack(_, _, None));
        self.pending_weight += op.weight();
        self.pending.push(op);
        if !self.args.policy.group_commit || self.pending_weight >= self.args.policy.max_batch {
            tokio::task::block_in_place(|| self.flush());
        } else if later {
            if !self.later_armed {
                self.later_armed = true;
                myself.send_after(ACK_LATER_WITHIN, || StorageMsg::FlushLater);
            }
        } else if !self.flush_queued {
            // Lands behind everything already queued: all of it joins one transaction.
            self.flush_queued = true;
            myself.send_message(StorageMsg::Flush)?;
        }
        Ok(())
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.pending);
        self.pending_weight = 0;
        if self.args.policy.group_commit {
            self.commit(ops);
        } else {
            ops.into_iter().for_each(|op| self.commit_unbatched(op));
        }
    }

    /// `group_commit = false` (the benchmark's baseline): one transaction per message, also for
    /// the messages of a batch, which get their one reply when the last one is committed.
    fn commit_unbatched(&mut self, op: Op) {
        let Op::Append(recs, received, reply) = op else { return self.commit(vec![op]) };
        let collected = Arc::new(std::sync::Mutex::new(Vec::with_capacity(recs.len())));
        for rec in recs {
            self.commit(vec![Op::Append(vec![rec], received, AppendReply::Collect(collected.clone()))]);
        }
        let results = std::mem::take(&mut *collected.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        reply.send(results);
    }

    /// One write transaction holding `ops`; every reply after it committed (or failed).
    fn commit(&mut self, ops: Vec<Op>) {
        if let Some(error) = self.broken.clone()
            && !self.reopen()
        {
            // Not a word of this reaches the disk, so nothing is acknowledged.
            self.args.metrics.commit_failures.inc();
            reply_all_failed(ops, &format!("store unavailable after a write failure ({error}); retrying"));
            return;
        }
        let started = Instant::now();
        match self.write(&ops) {
            Ok(outcome) => {
                if crate::spans::enabled() {
                    commit_spans(&ops, &outcome, started);
                }
                self.args.metrics.commit_duration.observe(started.elapsed().as_secs_f64());
                self.args.metrics.commit_batch_size.observe(ops.iter().map(Op::weight).sum::<usize>() as f64);
                self.args.metrics.commits.inc();
                self.args.health.set_storage_writable(true);
                self.next_reopen = None;
                self.apply(ops, outcome);
            }
            Err(e) => {
                self.args.metrics.commit_failures.inc();
                self.args.health.set_storage_writable(false);
                let first_traced = ops.iter().find_map(|op| match op {
                    Op::Append(recs, ..) => recs.iter().find_map(|r| r.trace),
                    _ => None,
                });
                let (trace_id, span_id) = crate::spans::log_ids(first_traced.as_ref());
                tracing::error!(error = %e, ops = ops.len(), trace_id, span_id, "Commit failed; nothing in this transaction is acknowledged.");
                if !matches!(e, StoreError::Injected) {
                    self.broken = Some(e.to_string());
                }
                reply_all_failed(ops, &e.to_string());
            }
        }
    }

    pub(super) fn apply(&mut self, ops: Vec<Op>, out: Outcome) {
        let m = &self.args.metrics;
        m.dropped_messages.get_or_create(&DropLabels { reason: DropReason::Quota }).inc_by(out.dropped_quota);
        m.dropped_messages.get_or_create(&DropLabels { reason: DropReason::Ttl }).inc_by(out.dropped_ttl);
        m.dropped_messages.get_or_create(&DropLabels { reason: DropReason::RejectedOverflow }).inc_by(out.dropped_rejected);
        let full = DeliveryDropLabels { reason: DeliveryDrop::SessionFull };
        m.deliveries_dropped.get_or_create(&full).inc_by(out.dropped_session_full);
        self.unlogged_drops.0 += out.dropped_quota;
        self.unlogged_drops.1 += out.dropped_ttl;
        for sink in &out.dead_letters {
            m.dead_letters.get_or_create(&SinkLabels { sink: sink.clone() }).inc();
        }
        self.next_seq = out.next_seq;
        self.messages = out.messages;
        self.bytes = out.bytes;
        self.cursors = out.cursors;
        self.oldest_received_ms = out.oldest_received_ms;
        self.rejected = out.rejected;
        super::sessions::apply(&mut self.sessions, out.sessions);
        // Gauges first: whoever gets a reply sees them as of this commit.
        self.publish_gauges();
        let mut appended = out.appended.into_iter();
        for op in ops {
            match op {
                Op::Append(recs, received, reply) => {
                    let results: Vec<_> =
                        recs.iter().map(|_| appended.next().unwrap_or(Err(AppendError::CommitFailed("lost reply".into())))).collect();
                    let latency = received.elapsed().as_secs_f64();
                    for _ in results.iter().filter(|r| r.is_ok()) {
                        m.puback_latency.observe(latency);
                    }
                    reply.send(results);
                }
                Op::Ack(_, _, Some(reply)) | Op::DeadLetter(_, _, _, reply) => {
                    let _ = reply.send(Ok(()));
                }
                Op::Ack(_, _, None) => {}
                Op::Session(SessionOp { reply: Some(reply), .. }) => {
                    let _ = reply.send(Ok(()));
                }
                Op::Session(_) | Op::Expire => {}
            }
        }
        self.args.committed.send_replace(self.next_seq);
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
