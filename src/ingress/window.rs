//! A connection writer's window: its QoS 1 deliveries in flight, the acknowledgements to hand
//! to the store, the wake-ups they give, and what it counts as dropped.

use std::cell::RefCell;
use std::collections::VecDeque;

use edge_gateway_actors::metrics::DeliveryDrop;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

use crate::routing::Router;

/// Queued deliveries in flight (QoS 1, in the order sent; `None`: a live one) and those
/// acknowledged since the last flush.
#[derive(Default)]
pub(super) struct Acks {
    pub(super) in_flight: VecDeque<Option<u64>>,
    pub(super) acked: Vec<u64>,
}

/// A writer's acknowledgements and the wake-ups they give.
#[derive(Default)]
pub(super) struct Window {
    pub(super) acks: RefCell<Acks>,
    /// Queued deliveries were acknowledged: hand them to the store.
    pub(super) acked: Notify,
    /// No QoS 1 delivery is in flight any more.
    pub(super) drained: Notify,
    /// Deliveries the client refused (`gateway_deliveries_dropped_total{reason="refused"}`).
    pub(super) refused: Counter,
}

impl Window {
    /// Queued delivery `qseq` was acknowledged (its QoS 2 exchange completed).
    pub(super) fn acked(&self, qseq: u64) {
        self.acks.borrow_mut().acked.push(qseq);
        self.acked.notify_one();
    }

    /// A PUBACK came (`refused`: with a reason code of 0x80 or more), or the connection ended
    /// with the first delivery in flight unanswered. Any PUBACK ends its delivery, a refusing one
    /// too (not sent again). Runs inside ntex-mqtt with the sink borrowed: it only records and
    /// wakes.
    pub(super) fn puback(&self, refused: bool, disconnected: bool) {
        if refused {
            self.refused.inc();
        }
        let mut a = self.acks.borrow_mut();
        let qseq = a.in_flight.pop_front().flatten();
        if let (Some(qseq), false) = (qseq, disconnected) {
            a.acked.push(qseq);
            self.acked.notify_one();
        }
        if a.in_flight.is_empty() {
            self.drained.notify_one();
        }
    }
}

/// A writer's counts in `gateway_deliveries_dropped_total`.
pub(super) struct Drops {
    /// Expired while queued: dropped by the writer.
    pub(super) expired: Counter,
    /// Refused by the client.
    pub(super) refused: Counter,
}

impl Drops {
    /// The counters of `router`'s metrics.
    pub(super) fn of(router: &Router) -> Self {
        Drops { expired: router.drop_counter(DeliveryDrop::Expired), refused: router.drop_counter(DeliveryDrop::Refused) }
    }
}
