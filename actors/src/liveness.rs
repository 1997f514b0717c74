//! Progress-based liveness of the forwarders: "connected but forwarding nothing" is detected from
//! outside the forwarder and ended by a restart.
//!
//! Each forwarder reports what it is doing ([`Liveness::progressed`] when its cursor moves or it
//! has nothing to send, [`Liveness::failed`] after a failed delivery). The [`watchdog`] task
//! looks at every sink once per `check_every`: a sink with messages waiting whose forwarder has
//! not progressed for its `stuck_after`, while its sink is reachable (the last failure, if any,
//! was not a connection failure: an unreachable cloud is an outage that backoff handles, not a
//! stuck forwarder), is counted in `gateway_forwarder_stalls_total{sink}`, logged at ERROR, and
//! its forwarder is killed so that its supervisor starts a fresh one (new HTTP client, new
//! connections). A delivery that hangs inside the sink is caught the same way, since the
//! forwarder cannot report progress while it waits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// tokio's clock, so that tests can pause and advance it.
use tokio::time::Instant;

use crate::health::Health;
use crate::metrics::{DeliveryKind, Metrics, SinkLabels};

/// What the watchdog knows about one sink's forwarder.
#[derive(Debug, Clone)]
struct Progress {
    /// Last time the cursor moved or there was nothing to send.
    at: Instant,
    /// Messages were waiting at the last report.
    pending: bool,
    /// The last failure was a connection failure (the sink is unreachable).
    unreachable: bool,
    /// No progress for this long (with messages waiting) is a stall; zero: never.
    stuck_after: Duration,
}

/// Shared between the forwarders (writers) and the watchdog (reader).
#[derive(Clone, Default)]
pub struct Liveness {
    inner: Arc<Mutex<BTreeMap<String, Progress>>>,
}

impl Liveness {
    /// A forwarder for `sink` started: its clock starts now.
    pub fn started(&self, sink: &str, stuck_after: Duration) {
        let p = Progress { at: Instant::now(), pending: false, unreachable: false, stuck_after };
        self.lock().insert(sink.to_string(), p);
    }

    /// The cursor moved, or nothing is waiting (`pending` = more is waiting).
    pub fn progressed(&self, sink: &str, pending: bool) {
        if let Some(p) = self.lock().get_mut(sink) {
            p.at = Instant::now();
            p.pending = pending;
            p.unreachable = false;
        }
    }

    /// A delivery failed with error `kind`. A connection failure marks the sink unreachable (an
    /// outage, not a stall). An answer from the sink (`http_*`: 5xx, 429, auth...) is activity:
    /// the cloud is talking, a fresh forwarder would hear the same. A timeout or an I/O error
    /// leaves the clock running: that is how "connected but forwarding nothing" looks.
    pub fn failed(&self, sink: &str, kind: DeliveryKind) {
        if let Some(p) = self.lock().get_mut(sink) {
            p.pending = true;
            // A sink that cannot be reached, or a store that cannot be read (a disk fault, which
            // the storage actor handles), is not a forwarder that stopped working.
            p.unreachable = kind.is_unreachable();
            if kind.is_answer() {
                p.at = Instant::now();
            }
        }
    }

    /// A batch is about to be sent; the clock starts when messages start waiting.
    pub fn sending(&self, sink: &str) {
        if let Some(p) = self.lock().get_mut(sink) {
            if !p.pending {
                p.at = Instant::now();
            }
            p.pending = true;
        }
    }

    /// The watchdog just restarted the forwarder: its clock starts again.
    fn reset(&self, sink: &str) {
        if let Some(p) = self.lock().get_mut(sink) {
            p.at = Instant::now();
            p.pending = false;
        }
    }

    /// Sinks whose forwarder is stalled now, with how long it has been.
    pub fn stalled(&self) -> Vec<(String, Duration)> {
        self.lock()
            .iter()
            .filter(|(_, p)| !p.stuck_after.is_zero() && p.pending && !p.unreachable && p.at.elapsed() > p.stuck_after)
            .map(|(sink, p)| (sink.clone(), p.at.elapsed()))
            .collect()
    }

    /// Seconds since each sink's forwarder last progressed (for the API and logs).
    pub fn idle_secs(&self) -> BTreeMap<String, f64> {
        self.lock().iter().map(|(s, p)| (s.clone(), p.at.elapsed().as_secs_f64())).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Progress>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Check every `check_every` until `stop` is set; restart stalled forwarders.
pub async fn watchdog(
    liveness: Liveness,
    health: Health,
    metrics: Metrics,
    check_every: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(check_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tick.tick().await;
        for (sink, idle) in liveness.stalled() {
            let path = format!("root/forwarders/forwarder:{sink}");
            // Not running (restarting already, or stopped): nothing to restart, nothing to count.
            let Some(cell) = health.actor(&path) else { continue };
            metrics.forwarder_stalls.get_or_create(&SinkLabels { sink: sink.clone() }).inc();
            tracing::error!(%sink, idle_s = idle.as_secs(), "Forwarder made no progress although its sink is reachable; restarting it.");
            liveness.reset(&sink);
            cell.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn liveness(stuck_after: Duration) -> Liveness {
        let l = Liveness::default();
        l.started("cloud", stuck_after);
        l
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_with_messages_waiting_become_a_stall_and_progress_ends_it() {
        let l = liveness(Duration::from_millis(20));
        l.sending("cloud");
        l.failed("cloud", DeliveryKind::Timeout);
        tokio::time::advance(Duration::from_millis(19)).await;
        assert!(l.stalled().is_empty(), "not yet stuck_after");
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_eq!(l.stalled().len(), 1);
        l.progressed("cloud", false);
        assert!(l.stalled().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_sink_or_an_answering_one_is_not_a_stall() {
        let l = liveness(Duration::from_millis(20));
        l.sending("cloud");
        l.failed("cloud", DeliveryKind::Connect);
        tokio::time::advance(Duration::from_millis(30)).await;
        assert!(l.stalled().is_empty(), "connection refused is an outage");
        l.failed("cloud", DeliveryKind::Http5xx);
        assert!(l.stalled().is_empty(), "a 5xx answer is activity");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_waiting_or_zero_stuck_after_is_never_a_stall() {
        let l = liveness(Duration::from_millis(1));
        tokio::time::advance(Duration::from_millis(5)).await;
        assert!(l.stalled().is_empty(), "idle");
        let off = liveness(Duration::ZERO);
        off.sending("cloud");
        off.failed("cloud", DeliveryKind::Timeout);
        tokio::time::advance(Duration::from_millis(5)).await;
        assert!(off.stalled().is_empty(), "disabled");
    }
}
