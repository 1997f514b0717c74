//! One write transaction of the storage actor: cursor moves and dead letters first (so appends
//! see the room they free), then appends with the quota and TTL applied, all committed with
//! `Durability::Immediate` (fsync). What it changed comes back as an [`Outcome`] that the actor
//! applies to its state only after the commit returned.

use std::collections::HashMap;
use std::time::Instant;

use redb::{Durability, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::actor::{Op, StorageState};
use super::store::{BACKLOG_BYTES, CURSORS, DEAD_LETTERS, MESSAGES, META, NEXT_SEQ, StoreError, encode_dead_letter, received_at};
use super::{AppendError, Appended, Overflow};

/// What one transaction changed, applied to the state only after it committed.
pub(super) struct Outcome {
    pub(super) next_seq: u64,
    pub(super) messages: u64,
    pub(super) bytes: u64,
    pub(super) cursors: HashMap<String, u64>,
    pub(super) oldest_received_ms: Option<u64>,
    pub(super) appended: Vec<Result<Appended, AppendError>>,
    pub(super) dropped_quota: u64,
    pub(super) dropped_ttl: u64,
    pub(super) dead_letters: Vec<String>,
}

impl StorageState {
    pub(super) fn write(&mut self, ops: &[Op]) -> Result<Outcome, StoreError> {
        let db = self.args.store.db()?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let mut out = Outcome {
            next_seq: self.next_seq,
            messages: self.messages,
            bytes: self.bytes,
            cursors: self.cursors.clone(),
            oldest_received_ms: self.oldest_received_ms,
            appended: Vec::new(),
            dropped_quota: 0,
            dropped_ttl: 0,
            dead_letters: Vec::new(),
        };
        self.reload_meta(&txn, &mut out)?;
        // Cursor moves (and the deletions they allow) first, so appends see the room they free.
        self.write_cursor_ops(&txn, ops, &mut out)?;
        self.retain(&txn, &mut out)?;
        self.write_appends(&txn, ops, &mut out)?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(NEXT_SEQ, out.next_seq)?;
            meta.insert(BACKLOG_BYTES, out.bytes)?;
            let messages = txn.open_table(MESSAGES)?;
            out.messages = messages.len()?;
            out.oldest_received_ms = messages.first()?.and_then(|(_, v)| received_at(v.value()));
        }
        if self.injected_faults > 0 {
            self.injected_faults -= 1;
            txn.abort()?;
            return Err(StoreError::Injected);
        }
        txn.commit()?;
        Ok(out)
    }

    /// The file is the authority for the counters: a previous incarnation of this actor (killed
    /// while its commit was still running) may have committed after this one read them.
    fn reload_meta(&self, txn: &WriteTransaction, out: &mut Outcome) -> Result<(), StoreError> {
        let meta = txn.open_table(META)?;
        let stored_next = meta.get(NEXT_SEQ)?.map(|v| v.value()).unwrap_or(0);
        if stored_next > out.next_seq {
            tracing::warn!(stored_next, in_memory = out.next_seq, "Store is ahead of this actor; continuing from the stored sequence.");
            out.next_seq = stored_next;
        }
        out.bytes = meta.get(BACKLOG_BYTES)?.map(|v| v.value()).unwrap_or(out.bytes);
        out.messages = txn.open_table(MESSAGES)?.len()?;
        Ok(())
    }

    fn write_cursor_ops(&self, txn: &WriteTransaction, ops: &[Op], out: &mut Outcome) -> Result<(), StoreError> {
        let mut messages = txn.open_table(MESSAGES)?;
        let mut cursors = txn.open_table(CURSORS)?;
        let mut dead = txn.open_table(DEAD_LETTERS)?;
        for op in ops {
            let (sink, next) = match op {
                Op::Append(..) => continue,
                Op::Expire => {
                    out.dropped_ttl += self.expire(&mut messages, out)?;
                    continue;
                }
                Op::Ack(sink, next, _) => (sink, *next),
                Op::DeadLetter(sink, seq, reason, _) => {
                    if let Some(v) = messages.get(*seq)? {
                        dead.insert((sink.as_str(), *seq), encode_dead_letter(reason, v.value()).as_slice())?;
                        out.dead_letters.push(sink.clone());
                    }
                    (sink, seq + 1)
                }
            };
            // Cursors only move forward, also against a value written by an earlier incarnation.
            let durable = cursors.get(sink.as_str())?.map(|v| v.value()).unwrap_or(0);
            let cur = out.cursors.entry(sink.clone()).or_insert(0);
            *cur = (*cur).max(durable).max(next);
            cursors.insert(sink.as_str(), *cur)?;
        }
        Ok(())
    }

    fn write_appends(&self, txn: &WriteTransaction, ops: &[Op], out: &mut Outcome) -> Result<(), StoreError> {
        let mut messages = txn.open_table(MESSAGES)?;
        let policy = &self.args.policy;
        for op in ops {
            let Op::Append(rec, _, _) = op else { continue };
            let key = format!("{}:{}", self.key_prefix, out.next_seq);
            let value = rec.encode(&key);
            let size = value.len() as u64;
            let fits = |out: &Outcome| out.messages < policy.quota_messages && out.bytes + size <= policy.quota_bytes;
            // A record larger than the whole quota never fits: refuse it without dropping anything.
            if policy.overflow == Overflow::DropOldest && size <= policy.quota_bytes {
                while !fits(out) {
                    let Some((_, v)) = messages.pop_first()? else { break };
                    out.bytes = out.bytes.saturating_sub(v.value().len() as u64);
                    out.messages = out.messages.saturating_sub(1);
                    out.dropped_quota += 1;
                }
            }
            if !fits(out) {
                out.appended.push(Err(AppendError::QuotaExceeded));
                continue;
            }
            messages.insert(out.next_seq, value.as_slice())?;
            out.appended.push(Ok(Appended { seq: out.next_seq, key }));
            out.next_seq += 1;
            out.messages += 1;
            out.bytes += size;
        }
        Ok(())
    }

    fn expire(&self, messages: &mut redb::Table<u64, &[u8]>, out: &mut Outcome) -> Result<u64, StoreError> {
        let Some(ttl) = self.args.policy.ttl else { return Ok(0) };
        let cutoff = (self.args.clock)().saturating_sub(ttl.as_millis() as u64);
        let mut dropped = 0;
        loop {
            let expired = match messages.first()? {
                Some((_, v)) => received_at(v.value()).is_some_and(|t| t < cutoff),
                None => false,
            };
            if !expired {
                return Ok(dropped);
            }
            if let Some((_, v)) = messages.pop_first()? {
                out.bytes = out.bytes.saturating_sub(v.value().len() as u64);
                out.messages = out.messages.saturating_sub(1);
                dropped += 1;
            }
        }
    }

    /// Delete every record all configured sinks have.
    fn retain(&self, txn: &WriteTransaction, out: &mut Outcome) -> Result<(), StoreError> {
        let sinks = self.args.store.sinks();
        let Some(min) = sinks.iter().map(|s| out.cursors.get(s).copied().unwrap_or(0)).min() else {
            return Ok(());
        };
        let mut messages = txn.open_table(MESSAGES)?;
        let mut freed = 0u64;
        messages.retain_in(..min, |_, v| {
            freed += v.len() as u64;
            false
        })?;
        out.bytes = out.bytes.saturating_sub(freed);
        Ok(())
    }
}

/// One `store commit` span per sampled message (a child of its receive span) and one batch span
/// linking them, covering the write transaction.
pub(super) fn commit_spans(ops: &[Op], outcome: &Outcome, started: Instant) {
    use opentelemetry::KeyValue;
    let start = std::time::SystemTime::now() - started.elapsed();
    let appends = ops.iter().filter_map(|op| if let Op::Append(rec, _, _) = op { Some(rec) } else { None });
    let mut linked = Vec::new();
    for (rec, result) in appends.zip(&outcome.appended) {
        let (Some(trace), Ok(appended)) = (rec.trace, result) else { continue };
        if !trace.sampled() {
            continue;
        }
        let attributes =
            vec![KeyValue::new("messaging.message.id", appended.key.clone()), KeyValue::new("gateway.batch_size", ops.len() as i64)];
        crate::spans::record_child("store commit", &trace, opentelemetry::trace::SpanKind::Internal, start, attributes);
        linked.push(trace);
    }
    if !linked.is_empty() {
        crate::spans::record_linked("store commit batch", &linked, start, vec![KeyValue::new("gateway.batch_size", ops.len() as i64)]);
    }
}
