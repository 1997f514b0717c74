//! The way back from a disk fault: reopen the store with backoff, and probe an idle broken store
//! so readiness follows the disk. A new run of keys starts with each reopening.

use std::time::{Duration, Instant};

use super::actor::StorageState;
use crate::backoff::Backoff;
use crate::metrics::{Attempt, AttemptLabels};

/// Waits between reopenings of a broken store: 0.5 s before the second, doubling up to 5 s.
const REOPEN_BACKOFF: Backoff = Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(5) };

impl StorageState {
    /// Reopen a broken store, with backoff; whether it is open now. The first attempt after
    /// a failure runs at once.
    pub(super) fn reopen(&mut self) -> bool {
        let now = Instant::now();
        let attempt = match self.next_reopen {
            Some((at, _)) if now < at => return false,
            Some((_, attempt)) => attempt + 1,
            None => 1,
        };
        self.next_reopen = Some((now + REOPEN_BACKOFF.ceiling(attempt), attempt));
        match self.args.store.reopen() {
            Ok(()) => {
                self.args.metrics.store_reopens.get_or_create(&AttemptLabels { result: Attempt::Ok }).inc();
                tracing::warn!(after = self.broken.as_deref().unwrap_or(""), "Store reopened after an I/O failure.");
                self.broken = None;
                self.key_prefix = run_prefix(&self.args.gateway_id);
                true
            }
            Err(e) => {
                self.args.metrics.store_reopens.get_or_create(&AttemptLabels { result: Attempt::Failed }).inc();
                tracing::error!(error = %e, "Store still failing; reopening again shortly.");
                false
            }
        }
    }

    /// While broken and idle: reopen and commit an empty transaction, so readiness returns as
    /// soon as the disk takes writes again.
    pub(super) fn probe(&mut self) {
        if !self.pending.is_empty() || !self.reopen() {
            return;
        }
        match self.write(&[]) {
            Ok(outcome) => {
                self.args.health.set_storage_writable(true);
                self.next_reopen = None;
                tracing::info!("Store writable again.");
                self.apply(Vec::new(), outcome);
            }
            Err(e) => {
                tracing::error!(error = %e, "Store still failing after reopening.");
                self.broken = Some(e.to_string());
            }
        }
    }
}

/// The key prefix for one run of the store: `{gateway_id}:{16 hex digits}`.
///
/// A key is `{gateway_id}:{run}:{seq}`. The seq alone repeats whenever a store starts again
/// from an older state: a quarantined store replaced by a fresh one, a lost or restored data
/// dir, two gateways with a copied config. The run is drawn at random every time the store is
/// opened for writing, so keys differ across all of those (two runs share a run id with
/// probability 2^-64), and it is never derived from the store's contents, so a restored copy
/// cannot bring an old run id back.
pub(super) fn run_prefix(gateway_id: &str) -> String {
    format!("{gateway_id}:{:016x}", rand::random::<u64>())
}
