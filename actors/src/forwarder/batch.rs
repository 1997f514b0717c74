//! One batch as it goes to a sink, and again, unchanged, on every retry.
//!
//! A retry does not re-read the store: it resends exactly the messages it sent before, under
//! the same idempotency key, until the sink acknowledges them or rejects them (then the batch
//! is split to find the offender, see `isolate.rs`). Only a restarted forwarder cuts its batches
//! anew from its cursor.

use crate::record::{Record, TraceCtx};

/// A batch with its idempotency key.
pub(super) struct Batch {
    /// `{first key}..{last key}`: see [`batch_key`].
    pub(super) key: String,
    /// The records, in seq order; never empty.
    pub(super) records: Vec<Record>,
    /// Each record's stored trace context: a send replaces it with its forward span's, a resend
    /// starts from the stored one again (so its forward span is a sibling, not a child, of the
    /// failed attempt's).
    stored_traces: Vec<Option<TraceCtx>>,
}

impl Batch {
    /// `None` for no records.
    pub(super) fn new(records: Vec<Record>) -> Option<Batch> {
        let key = batch_key(&records)?;
        let stored_traces = records.iter().map(|r| r.trace).collect();
        Some(Batch { key, records, stored_traces })
    }

    /// The first record's seq.
    pub(super) fn first(&self) -> u64 {
        self.records[0].seq
    }

    /// The last record's seq.
    pub(super) fn last(&self) -> u64 {
        self.records[self.records.len() - 1].seq
    }

    /// Records as stored, before this attempt's forward spans are attached.
    pub(super) fn for_attempt(&mut self) -> &mut [Record] {
        for (r, t) in self.records.iter_mut().zip(&self.stored_traces) {
            r.trace = *t;
        }
        &mut self.records
    }
}

/// The `Idempotency-Key` of a batch: `{first message key}..{last message key}`.
///
/// Message keys grow with the seq within a run of the store and never repeat (see
/// `storage::recovery::run_prefix`), and the store only ever deletes records, so a later batch
/// with the same first and last key holds at most the messages of the earlier one.
pub(super) fn batch_key(records: &[Record]) -> Option<String> {
    Some(format!("{}..{}", records.first()?.key, records.last()?.key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, trace: Option<TraceCtx>) -> Record {
        Record {
            seq,
            key: format!("gw:00000000000000aa:{seq}"),
            device: "d".into(),
            topic: "devices/d/t".into(),
            qos: 1,
            payload: b"x".to_vec(),
            content_type: None,
            user_properties: Vec::new(),
            received_at_ms: 0,
            trace,
            schema: None,
            mqtt5: None,
        }
    }

    #[test]
    fn the_key_names_the_first_and_last_message_and_an_empty_batch_is_none() {
        let b = Batch::new(vec![record(4, None), record(5, None), record(9, None)]).unwrap();
        assert_eq!(b.key, "gw:00000000000000aa:4..gw:00000000000000aa:9");
        assert_eq!((b.first(), b.last()), (4, 9));
        assert!(Batch::new(Vec::new()).is_none());
    }

    #[test]
    fn each_attempt_starts_from_the_stored_trace_context() {
        let stored = TraceCtx { trace_id: [1; 16], span_id: [2; 8], flags: 1 };
        let mut b = Batch::new(vec![record(1, Some(stored)), record(2, None)]).unwrap();
        b.for_attempt()[0].trace = Some(TraceCtx { span_id: [3; 8], ..stored }); // a forward span
        let again = b.for_attempt();
        assert_eq!((again[0].trace, again[1].trace), (Some(stored), None));
    }
}
