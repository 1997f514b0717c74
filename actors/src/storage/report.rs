//! What the storage actor reports besides its replies: the store's gauges after each commit and
//! tick, and a WARN (at most once a tick) about acknowledged messages the policy deleted.

use super::actor::{StorageState, now_ms};

impl StorageState {
    /// Acknowledged messages deleted by policy are data loss the operator chose: say so, with
    /// the counts, at most once per tick.
    pub(super) fn log_drops(&mut self) {
        let (quota, ttl) = std::mem::take(&mut self.unlogged_drops);
        if quota > 0 {
            tracing::warn!(
                dropped = quota,
                backlog = self.messages,
                "Deleted the oldest stored messages at the quota (storage.overflow = \"drop_oldest\"); they had been acknowledged to their devices."
            );
        }
        if ttl > 0 {
            let ttl_secs = self.args.policy.ttl.map(|t| t.as_secs()).unwrap_or_default();
            tracing::warn!(
                dropped = ttl,
                ttl_secs,
                "Deleted stored messages older than storage.ttl_secs; they had been acknowledged to their devices."
            );
        }
    }

    pub(super) fn publish_gauges(&self) {
        let m = &self.args.metrics;
        m.backlog_messages.set(self.messages as i64);
        m.backlog_bytes.set(self.bytes as i64);
        m.rejected_messages.set(self.rejected as i64);
        m.sessions_persistent.set(self.sessions.len() as i64);
        m.session_queued.set(self.sessions.values().sum::<u64>() as i64);
        let age = self.oldest_received_ms.map(|t| now_ms().saturating_sub(t) as f64 / 1000.0).unwrap_or(0.0);
        m.backlog_oldest_age.set(age);
    }
}
