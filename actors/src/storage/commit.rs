//! One write transaction of the storage actor: cursor moves and dead letters first (so appends
//! see the room they free), then appends with the quota and TTL applied, all committed with an
//! fsync by whichever engine holds the store. What it changed comes back as an [`Outcome`] that
//! the actor applies to its state only after the commit returned.

use std::collections::HashMap;
use std::time::Instant;

use super::actor::StorageState;
use super::backend::{Meta, Tables};
use super::messages::Op;
use super::store::{StoreError, encode_dead_letter};
use super::{AppendError, Appended, Overflow};
use crate::record::NewRecord;

/// What one transaction changed, applied to the state only after it committed.
pub(super) struct Outcome {
    pub(super) next_seq: u64,
    pub(super) messages: u64,
    pub(super) bytes: u64,
    pub(super) cursors: HashMap<String, u64>,
    pub(super) oldest_received_ms: Option<u64>,
    pub(super) rejected: u64,
    pub(super) appended: Vec<Result<Appended, AppendError>>,
    pub(super) dropped_quota: u64,
    pub(super) dropped_ttl: u64,
    pub(super) dropped_rejected: u64,
    pub(super) dead_letters: Vec<String>,
    /// Sessions this transaction changed: deliveries queued, or `None` when removed.
    pub(super) sessions: HashMap<String, Option<u64>>,
    pub(super) dropped_session_full: u64,
}

impl StorageState {
    pub(super) fn write(&mut self, ops: &[Op]) -> Result<Outcome, StoreError> {
        let backend = self.args.store.backend()?;
        let inject = self.injected_faults > 0;
        let mut out = None;
        let result = backend.write(&mut |t| {
            let mut o = self.fresh_outcome();
            self.reload_meta(t, &mut o)?;
            // Cursor moves (and the deletions they allow) first, so appends see the room they free.
            self.write_cursor_ops(t, ops, &mut o)?;
            self.write_session_ops(t, ops, &mut o)?;
            self.retain(t, &mut o)?;
            self.write_appends(t, ops, &mut o)?;
            t.set_meta(Meta::NextSeq, o.next_seq)?;
            t.set_meta(Meta::BacklogBytes, o.bytes)?;
            o.messages = t.message_count()?;
            o.oldest_received_ms = t.oldest_received_ms()?;
            if inject {
                return Err(StoreError::Injected);
            }
            out = Some(o);
            Ok(())
        });
        if matches!(result, Err(StoreError::Injected)) {
            self.injected_faults -= 1;
        }
        result?;
        out.ok_or_else(|| StoreError::Engine("the write transaction produced no outcome".into()))
    }

    fn fresh_outcome(&self) -> Outcome {
        Outcome {
            next_seq: self.next_seq,
            messages: self.messages,
            bytes: self.bytes,
            cursors: self.cursors.clone(),
            oldest_received_ms: self.oldest_received_ms,
            rejected: self.rejected,
            appended: Vec::new(),
            dropped_quota: 0,
            dropped_ttl: 0,
            dropped_rejected: 0,
            dead_letters: Vec::new(),
            sessions: HashMap::new(),
            dropped_session_full: 0,
        }
    }

    /// The file is the authority for the counters: a previous incarnation of this actor (killed
    /// while its commit was still running) may have committed after this one read them.
    fn reload_meta(&self, t: &mut dyn Tables, out: &mut Outcome) -> Result<(), StoreError> {
        let stored_next = t.meta(Meta::NextSeq)?.unwrap_or(0);
        if stored_next > out.next_seq {
            tracing::warn!(stored_next, in_memory = out.next_seq, "Store is ahead of this actor; continuing from the stored sequence.");
            out.next_seq = stored_next;
        }
        out.bytes = t.meta(Meta::BacklogBytes)?.unwrap_or(out.bytes);
        out.messages = t.message_count()?;
        Ok(())
    }

    fn write_cursor_ops(&self, t: &mut dyn Tables, ops: &[Op], out: &mut Outcome) -> Result<(), StoreError> {
        for op in ops {
            let (sink, next) = match op {
                Op::Append(..) | Op::Session(_) => continue,
                Op::Expire => {
                    out.dropped_ttl += self.expire(t, out)?;
                    continue;
                }
                Op::Ack(sink, next, _) => (sink, *next),
                Op::DeadLetter(sink, seq, reason, _) => {
                    if let Some(v) = t.message(*seq)? {
                        t.insert_dead_letter(sink, *seq, &encode_dead_letter(reason, &v))?;
                        out.dead_letters.push(sink.clone());
                    }
                    (sink, seq + 1)
                }
            };
            // Cursors only move forward, also against a value written by an earlier incarnation.
            let durable = t.cursor(sink)?.unwrap_or(0);
            let cur = out.cursors.entry(sink.clone()).or_insert(0);
            *cur = (*cur).max(durable).max(next);
            t.set_cursor(sink, *cur)?;
        }
        Ok(())
    }

    fn write_appends(&self, t: &mut dyn Tables, ops: &[Op], out: &mut Outcome) -> Result<(), StoreError> {
        let policy = &self.args.policy;
        for rec in ops.iter().flat_map(|op| if let Op::Append(recs, ..) = op { recs.as_slice() } else { &[] }) {
            if rec.kept_apart {
                let seq = self.keep_apart(t, rec, out)?;
                out.appended.push(Ok(Appended { seq, key: String::new() }));
                continue;
            }
            if rec.retain && !self.retained_fits(t, rec)? {
                out.appended.push(Err(AppendError::RetainedFull));
                continue;
            }
            let key = format!("{}:{}", self.key_prefix, out.next_seq);
            let value = rec.encode(&key);
            let size = value.len() as u64;
            let fits = |out: &Outcome| out.messages < policy.quota_messages && out.bytes + size <= policy.quota_bytes;
            // A record larger than the whole quota never fits: refuse it without dropping anything.
            if policy.overflow == Overflow::DropOldest && size <= policy.quota_bytes {
                while !fits(out) {
                    let Some(freed) = t.pop_oldest()? else { break };
                    out.bytes = out.bytes.saturating_sub(freed);
                    out.messages = out.messages.saturating_sub(1);
                    out.dropped_quota += 1;
                }
            }
            if !fits(out) {
                out.appended.push(Err(AppendError::QuotaExceeded));
                continue;
            }
            // Only a record that is stored changes the retained message.
            if rec.retain {
                self.set_retained(t, rec)?;
            }
            t.insert_message(out.next_seq, &value)?;
            self.write_copies(t, rec, out)?;
            out.appended.push(Ok(Appended { seq: out.next_seq, key }));
            out.next_seq += 1;
            out.messages += 1;
            out.bytes += size;
        }
        Ok(())
    }

    /// A record that failed its schema goes to `rejected` under its own counter (it takes no
    /// seq and no key from `messages`: it is never forwarded), without an idempotency key; past
    /// `rejected_max` records or `rejected_max_bytes` the oldest kept-apart records go. Its seq
    /// in `rejected`.
    fn keep_apart(&self, t: &mut dyn Tables, rec: &NewRecord, out: &mut Outcome) -> Result<u64, StoreError> {
        let value = rec.encode("");
        let seq = t.meta(Meta::RejectedNextSeq)?.unwrap_or(0);
        let mut count = counter(t, Meta::RejectedCount, |t| t.rejected_count())? + 1;
        t.insert_rejected(seq, &value)?;
        t.set_meta(Meta::RejectedNextSeq, seq + 1)?;
        let policy = &self.args.policy;
        let mut bytes = t.meta(Meta::RejectedBytes)?.unwrap_or(0) + value.len() as u64;
        // Never the record just kept: it was acknowledged (a single record over the byte bound
        // stays until the next one pushes it out).
        while count > 1 && (count > policy.rejected_max || bytes > policy.rejected_max_bytes) {
            let Some(freed) = t.pop_oldest_rejected()? else { break };
            count -= 1;
            bytes = bytes.saturating_sub(freed);
            out.dropped_rejected += 1;
        }
        t.set_meta(Meta::RejectedBytes, bytes)?;
        t.set_meta(Meta::RejectedCount, count)?;
        out.rejected = count;
        Ok(seq)
    }

    /// The retained bytes and topic count without `rec.topic`'s current retained message, and
    /// whether it has one.
    fn retained_others(&self, t: &mut dyn Tables, topic: &str) -> Result<(u64, u64, bool), StoreError> {
        let old = t.retained_size(topic)?;
        let bytes = t.meta(Meta::RetainedBytes)?.unwrap_or(0).saturating_sub(old.unwrap_or(0));
        let count = counter(t, Meta::RetainedCount, |t| t.retained_count())?.saturating_sub(u64::from(old.is_some()));
        Ok((bytes, count, old.is_some()))
    }

    /// Whether `rec` (a retained publish) fits `retained_max` / `retained_max_bytes`; if not,
    /// the record is refused as a whole, so the device knows. Clearing always fits.
    fn retained_fits(&self, t: &mut dyn Tables, rec: &NewRecord) -> Result<bool, StoreError> {
        if rec.payload.is_empty() {
            return Ok(true);
        }
        let (bytes, count, _) = self.retained_others(t, &rec.topic)?;
        let policy = &self.args.policy;
        Ok(count < policy.retained_max && bytes + rec.encode("").len() as u64 <= policy.retained_max_bytes)
    }

    /// Replace (an empty payload: clear) `rec.topic`'s retained message.
    fn set_retained(&self, t: &mut dyn Tables, rec: &NewRecord) -> Result<(), StoreError> {
        let (bytes, count, had) = self.retained_others(t, &rec.topic)?;
        if rec.payload.is_empty() {
            if had {
                t.remove_retained(&rec.topic)?;
                t.set_meta(Meta::RetainedBytes, bytes)?;
                t.set_meta(Meta::RetainedCount, count)?;
            }
            return Ok(());
        }
        let value = rec.encode("");
        t.put_retained(&rec.topic, &value)?;
        t.set_meta(Meta::RetainedBytes, bytes + value.len() as u64)?;
        t.set_meta(Meta::RetainedCount, count + 1)?;
        Ok(())
    }

    fn expire(&self, t: &mut dyn Tables, out: &mut Outcome) -> Result<u64, StoreError> {
        let Some(ttl) = self.args.policy.ttl else { return Ok(0) };
        let cutoff = (self.args.clock)().saturating_sub(ttl.as_millis() as u64);
        let mut dropped = 0;
        while t.oldest_received_ms()?.is_some_and(|received| received < cutoff) {
            let Some(freed) = t.pop_oldest()? else { break };
            out.bytes = out.bytes.saturating_sub(freed);
            out.messages = out.messages.saturating_sub(1);
            dropped += 1;
        }
        Ok(dropped)
    }

    /// Delete every record all configured sinks have.
    fn retain(&self, t: &mut dyn Tables, out: &mut Outcome) -> Result<(), StoreError> {
        let sinks = self.args.store.sinks();
        let Some(min) = sinks.iter().map(|s| out.cursors.get(s).copied().unwrap_or(0)).min() else {
            return Ok(());
        };
        let freed = t.delete_below(min)?;
        out.bytes = out.bytes.saturating_sub(freed);
        out.messages = t.message_count()?;
        Ok(())
    }
}

/// A counter kept in `meta`, counted from its table once when a store from before it has none.
fn counter(t: &mut dyn Tables, key: Meta, count: impl FnOnce(&mut dyn Tables) -> Result<u64, StoreError>) -> Result<u64, StoreError> {
    match t.meta(key)? {
        Some(n) => Ok(n),
        None => count(t),
    }
}

/// One `store commit` span per sampled message (a child of its receive span) and one batch span
/// linking them, covering the write transaction.
pub(super) fn commit_spans(ops: &[Op], outcome: &Outcome, started: Instant) {
    use opentelemetry::KeyValue;
    let start = std::time::SystemTime::now() - started.elapsed();
    let appends = ops.iter().flat_map(|op| if let Op::Append(recs, ..) = op { recs.as_slice() } else { &[] });
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
