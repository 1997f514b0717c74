//! The connection gate in front of both MQTT listeners: limits before any TLS or MQTT work.
//!
//! ```text
//! plain:  socket ─ Gate ─────────────── MQTT (v3.1.1 / v5)
//! tls:    socket ─ Gate ─ RotatingTls ─ MQTT
//! ```
//!
//! [`Gate`] refuses a socket when the gateway already holds `max_connections` or the source
//! address opened too many connections in the last second (a token bucket per address). Every
//! refusal is counted by listener and reason; WARN lines are limited to one per second.

use edge_gateway_actors::metrics::{GateLabels, GateRefusal, Listener};
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use edge_gateway_actors::metrics::Metrics;
use ntex_io::types::PeerAddr;
use ntex_io::{Filter, Io};
use ntex_service::{Ctx, Service};

use crate::throttle::Throttle;

/// Connection limits shared by both listeners.
#[derive(Clone)]
pub struct Gate(Arc<GateInner>);

struct GateInner {
    /// Most open connections (0: no limit).
    max_connections: usize,
    /// New connections per second per source address (0: no limit).
    per_source: u32,
    /// Open sockets that passed the gate.
    open: AtomicUsize,
    /// Token buckets by source address.
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    /// Counters.
    metrics: Metrics,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Gate {
    /// A gate with these limits.
    pub fn new(max_connections: usize, per_source: u32, metrics: Metrics) -> Gate {
        let inner = GateInner { max_connections, per_source, open: AtomicUsize::new(0), buckets: Mutex::new(HashMap::new()), metrics };
        Gate(Arc::new(inner))
    }

    /// `inner`, one listener's whole chain (TLS handshake, MQTT), behind these limits, with
    /// `listener` as the metric label; a refusal becomes the chain's error through `refused`.
    /// The slot a socket takes is held by the connection's own future and given back when it
    /// ends (no task per connection waiting for the disconnect).
    pub fn around<S, E>(&self, listener: Listener, refused: fn(io::Error) -> E, inner: S) -> Gated<S, E> {
        Gated { gate: self.clone(), listener, refused, inner }
    }

    /// Whether a socket from `peer` may pass at `now` (the caller's clock, so tests control it).
    fn admit(&self, peer: Option<IpAddr>, now: Instant) -> Result<(), GateRefusal> {
        let g = &self.0;
        if g.max_connections > 0 && g.open.load(Ordering::Relaxed) >= g.max_connections {
            return Err(GateRefusal::MaxConnections);
        }
        // (`call` reserves the slot with a compare-and-swap; this early check only spares the
        // token bucket.)
        if let (Some(ip), true) = (peer, g.per_source > 0) {
            let mut buckets = g.buckets.lock().unwrap_or_else(|e| e.into_inner());
            if buckets.len() > 100_000 {
                buckets.retain(|_, b| now.saturating_duration_since(b.at).as_secs() < 2);
            }
            let rate = f64::from(g.per_source);
            let bucket = buckets.entry(ip).or_insert(Bucket { tokens: rate, at: now });
            if !bucket.take(rate, now) {
                return Err(GateRefusal::RateLimited);
            }
        }
        Ok(())
    }
}

impl Bucket {
    /// Refill at `rate` tokens per second up to `rate`, then take one if there is one.
    fn take(&mut self, rate: f64, now: Instant) -> bool {
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// A listener's chain behind the gate.
pub struct Gated<S, E> {
    gate: Gate,
    listener: Listener,
    refused: fn(io::Error) -> E,
    inner: S,
}

/// An open connection's slot; given back on drop.
struct Slot(Arc<GateInner>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S, E> Gated<S, E> {
    /// Admit the socket and take a slot, or refuse it (counted, closed).
    fn enter<F: Filter>(&self, io: &Io<F>) -> Result<Slot, io::Error> {
        let peer = io.query::<PeerAddr>().as_ref().map(|p| p.0.ip());
        if let Err(reason) = self.gate.admit(peer, Instant::now()) {
            self.gate.0.metrics.connections_refused.get_or_create(&GateLabels { listener: self.listener, reason }).inc();
            if REFUSALS.allow() {
                tracing::warn!(
                    listener = %self.listener,
                    ?peer,
                    %reason,
                    "Connection refused (further refusals this second are only counted)."
                );
            }
            io.close();
            return Err(io::Error::other(reason.as_str()));
        }
        let inner = &self.gate.0;
        let max = inner.max_connections;
        let reserved = inner.open.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (max == 0 || n < max).then_some(n + 1));
        if reserved.is_err() {
            inner
                .metrics
                .connections_refused
                .get_or_create(&GateLabels { listener: self.listener, reason: GateRefusal::MaxConnections })
                .inc();
            io.close();
            return Err(io::Error::other("max_connections"));
        }
        Ok(Slot(inner.clone()))
    }
}

impl<F: Filter, St, S: Service<St, Io<F>, Error = E>, E> Service<St, Io<F>> for Gated<S, E> {
    type Res = S::Res;
    type Error = E;

    async fn ready(&self, ctx: Ctx<'_, Self, St>) -> Result<(), E> {
        ctx.ready(&self.inner).await
    }

    async fn call(&self, io: Io<F>, ctx: Ctx<'_, Self, St>) -> Result<S::Res, E> {
        let _slot = self.enter(&io).map_err(self.refused)?;
        // The chain's call lasts as long as the connection: the slot is held until it ends.
        // Without a readiness check of the chain as a whole: each of its parts checks the
        // service it calls before it calls it (ntex-mqtt's `MqttServer` the v3 or v5 one,
        // `and_then` and `map_err` theirs), and none has a readiness of its own. The whole
        // chain's check walked both protocol versions once more per CONNECT (docs/BENCHMARKS.md,
        // "Idle connections", eleventh step). A part added here with a readiness of its own
        // (a limit on handshakes in flight, say) needs `ctx.call` back.
        ctx.call_nowait(&self.inner, io).await
    }

    ntex_service::forward_shutdown!(St, inner);
}

/// WARN lines for refused sockets: one per second, the rest only counted.
static REFUSALS: Throttle = Throttle::new();

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_rate_then_refills_with_time() {
        let t0 = Instant::now();
        let mut b = Bucket { tokens: 3.0, at: t0 };
        assert_eq!((0..5).filter(|_| b.take(3.0, t0)).count(), 3);
        assert!(!b.take(3.0, t0 + Duration::from_millis(300)), "0.9 tokens after 300 ms");
        assert!(b.take(3.0, t0 + Duration::from_millis(340)), "1.02 tokens after 340 ms");
        assert_eq!((0..10).filter(|_| b.take(3.0, t0 + Duration::from_secs(60))).count(), 3, "refill is capped at the rate");
    }

    #[test]
    fn each_source_address_has_its_own_bucket() {
        let gate = Gate::new(0, 2, Metrics::new());
        let (a, b) = (Some(IpAddr::from([127, 0, 0, 2])), Some(IpAddr::from([127, 0, 0, 3])));
        let now = Instant::now();
        assert_eq!(gate.admit(a, now), Ok(()));
        assert_eq!(gate.admit(a, now), Ok(()));
        assert_eq!(gate.admit(a, now), Err(GateRefusal::RateLimited));
        assert_eq!(gate.admit(b, now), Ok(()), "another address is not limited by the first");
        assert_eq!(gate.admit(a, now + Duration::from_millis(500)), Ok(()));
    }

    #[test]
    fn the_connection_limit_is_checked_first() {
        let gate = Gate::new(1, 0, Metrics::new());
        gate.0.open.store(1, Ordering::Relaxed);
        assert_eq!(gate.admit(None, Instant::now()), Err(GateRefusal::MaxConnections));
    }
}
