//! The other direction: a task on a client's I/O thread that writes what is routed to it as
//! PUBLISH packets: the live deliveries of its queue (`crate::routing`) and, when the
//! connection holds a persistent session, the deliveries queued for it in the store, read in
//! order from the first (so what an earlier connection left unacknowledged goes again, with
//! DUP) and then whenever the router wakes it. A clean session's writer starts at its first
//! SUBSCRIBE, so a client that only publishes costs nothing here; a persistent session's at
//! CONNECT. It ends when the connection's queue closes.
//!
//! QoS 1 goes out without waiting for each PUBACK, within the client's receive maximum
//! (ntex-mqtt's readiness); QoS 2 one exchange at a time (PUBLISH, PUBREC, PUBREL, PUBCOMP).
//! The packet ids are ntex-mqtt's, which also checks that PUBACKs come in order: so the
//! queued delivery each PUBACK answers is the first of the ones in flight. An acknowledged
//! (QoS 1) or completed (QoS 2) queued delivery is deleted from the store in a later commit.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use edge_gateway_actors::metrics::{DeliveryDrop, QosLabels};
use edge_gateway_actors::storage::{SessionChange, SessionOp, StorageMsg};
use ntex_bytes::ByteString;
use ntex_mqtt::{v3, v5};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Notify, mpsc};

use super::Ingress;
use super::aliases::{AliasUse, Aliases};
use crate::routing::Delivery;
use crate::routing::persist::decode_delivery;
use crate::routing::sessions::Replay;
use crate::throttle::Throttle;
use crate::trust::acl::Who;

/// Queued deliveries read from the store at once.
const READ_BATCH: usize = 64;

/// Where a connection's outgoing packets are written.
#[derive(Clone)]
pub enum Outbound {
    /// MQTT 3.1.1.
    V3(v3::MqttSink),
    /// MQTT 5, with the topic aliases given to the client.
    V5(v5::MqttSink, Rc<RefCell<Aliases>>),
}

/// A persistent session's part of its connection's writer.
pub(super) struct Replayer {
    /// The session.
    pub(super) client_id: String,
    /// Its owner, for the ACL check before each send.
    pub(super) identity: String,
    /// Its wake-ups and resend mark.
    pub(super) replay: Replay,
    /// The store (reads) and the storage actor (acknowledgements).
    pub(super) ingress: Ingress,
}

/// Queued deliveries in flight (QoS 1, in the order sent; `None`: a live one) and those
/// acknowledged since the last flush.
#[derive(Default)]
struct Acks {
    in_flight: VecDeque<Option<u64>>,
    acked: Vec<u64>,
}

/// How one read of a session's queue ended.
enum Step {
    /// A full batch: read again.
    More,
    /// Everything queued was handed out.
    Done,
    /// The store could not be read: try again in a second.
    Failed,
    /// The connection (or the gateway) is gone.
    Closed,
}

/// How one send ended.
enum Sent {
    /// Written (QoS 0) or in flight (QoS 1: its PUBACK comes through the callback).
    Written,
    /// QoS 2 exchange completed (PUBCOMP received).
    Exchanged,
    /// Not sent: too large for this client, or the connection is gone.
    Lost,
}

/// Send a v3 or v5 `publish` builder on `sink` at `qos` (their methods share names, not a
/// trait); QoS 1 also records `qseq` as in flight.
macro_rules! send_at {
    ($sink:expr, $publish:expr, $qos:expr, $payload:expr, $acks:expr, $qseq:expr) => {{
        // Wait for the client's receive maximum and the write buffer (`is_ready` again after
        // each wake-up: ntex-mqtt's non-blocking send asserts it).
        while !$sink.is_ready() {
            if !$sink.ready().await {
                return Sent::Lost;
            }
        }
        match $qos {
            0 => $publish.send_at_most_once($payload).map_or(Sent::Lost, |()| Sent::Written),
            1 => match $publish.send_at_least_once_no_block($payload) {
                Ok(()) => {
                    // After the send: no PUBACK can come for a send that failed.
                    $acks.borrow_mut().in_flight.push_back($qseq);
                    Sent::Written
                }
                Err(_) => Sent::Lost,
            },
            // One QoS 2 exchange at a time: ntex-mqtt keeps one pending release per connection.
            _ => match $publish.send_exactly_once($payload).await {
                Ok(received) => received.release().await.map_or(Sent::Lost, |()| Sent::Exchanged),
                Err(_) => Sent::Lost,
            },
        }
    }};
}

impl Outbound {
    /// Write the deliveries of `queue` (and, for a persistent session, its queued ones) until
    /// the queue closes or the connection does.
    pub(super) fn start(self, mut queue: mpsc::Receiver<Delivery>, expired: Counter, replay: Option<Replayer>) {
        let acks = Rc::new(RefCell::new(Acks::default()));
        // Wakes the writer to hand acknowledgements to the store (not to read it).
        let acked = Arc::new(Notify::new());
        let on_ack = {
            let (acks, acked) = (acks.clone(), acked.clone());
            // Runs inside ntex-mqtt with the sink borrowed: it only records and wakes.
            move |disconnected: bool| {
                let mut a = acks.borrow_mut();
                let qseq = a.in_flight.pop_front().flatten();
                if let (Some(qseq), false) = (qseq, disconnected) {
                    a.acked.push(qseq);
                    acked.notify_one();
                }
            }
        };
        // Any PUBACK ends the exchange (an MQTT 5 one with an error code too: no resend).
        match &self {
            Outbound::V3(s) => s.publish_ack_cb(move |_, disconnected| on_ack(disconnected)),
            Outbound::V5(s, _) => s.publish_ack_cb(move |_, disconnected| on_ack(disconnected)),
        }
        ntex_rt::spawn(async move {
            let mut next = 0u64;
            // Read the session's queue first, then whenever the router wakes the writer.
            let mut read = replay.is_some();
            let mut retry = false;
            loop {
                if let Some(r) = &replay {
                    r.flush(&acks);
                    if read {
                        match self.replay_batch(r, &mut next, &acks, &expired).await {
                            Step::More => continue,
                            Step::Done => (read, retry) = (false, false),
                            Step::Failed => (read, retry) = (false, true),
                            Step::Closed => break,
                        }
                    }
                }
                let woken = async {
                    match &replay {
                        Some(_) if retry => ntex_util::time::sleep(Duration::from_secs(1)).await,
                        Some(r) => r.replay.wake.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    d = queue.recv() => {
                        let Some(d) = d else { break };
                        if d.message.expired() {
                            expired.inc();
                            continue;
                        }
                        // A message this client cannot take (over its maximum packet size) is
                        // skipped; only a closed connection ends the writer.
                        self.send(d, false, None, &acks).await;
                        if !self.is_open() {
                            break;
                        }
                    }
                    () = woken => read = true,
                    () = acked.notified() => {}
                }
            }
            if let Some(r) = &replay {
                r.flush(&acks);
            }
        });
    }

    /// Send the next queued deliveries of a persistent session (at most [`READ_BATCH`]).
    async fn replay_batch(&self, r: &Replayer, next: &mut u64, acks: &RefCell<Acks>, expired: &Counter) -> Step {
        let Some(store) = r.ingress.store.upgrade() else { return Step::Closed };
        let rows = match store.queued(&r.client_id, *next, READ_BATCH) {
            Ok(rows) => rows,
            Err(e) => {
                if READ_FAILURES.allow() {
                    tracing::warn!(client_id = %r.client_id, error = %e, "Cannot read a session's queued messages; retrying in a second.");
                }
                return Step::Failed;
            }
        };
        drop(store);
        let full = rows.len() == READ_BATCH;
        for (qseq, value) in rows {
            *next = qseq + 1;
            let Some(d) = r.sendable(qseq, &value, acks, expired) else { continue };
            let dup = r.replay.sent_below.fetch_max(qseq + 1, Ordering::Relaxed) > qseq;
            let qos = d.qos;
            match self.send(d, dup, Some(qseq), acks).await {
                Sent::Exchanged => {
                    acks.borrow_mut().acked.push(qseq);
                    r.sent(qos);
                }
                Sent::Written => r.sent(qos),
                Sent::Lost if !self.is_open() => return Step::Closed,
                // The client cannot take it (over its maximum packet size): dropped, or it would
                // come back on every connection and hold a place in the queue for good.
                Sent::Lost => {
                    acks.borrow_mut().acked.push(qseq);
                    r.ingress.router.dropped(DeliveryDrop::Unsendable);
                }
            }
        }
        if full { Step::More } else { Step::Done }
    }

    fn is_open(&self) -> bool {
        match self {
            Outbound::V3(s) => s.is_open(),
            Outbound::V5(s, _) => s.is_open(),
        }
    }

    /// Write one delivery (what fails, fails for this message only, or the connection is gone).
    async fn send(&self, d: Delivery, dup: bool, qseq: Option<u64>, acks: &RefCell<Acks>) -> Sent {
        let m = &d.message;
        match self {
            Outbound::V3(sink) => {
                let mut publish = sink.publish(m.topic.clone()).dup(dup);
                if d.retain {
                    publish = publish.retain();
                }
                send_at!(sink, publish, d.qos, m.payload.clone(), acks, qseq)
            }
            Outbound::V5(sink, aliases) => {
                let alias = aliases.borrow_mut().pick(&m.topic);
                let (topic, topic_alias) = match alias {
                    AliasUse::Plain => (m.topic.clone(), None),
                    AliasUse::Assign(a) => (m.topic.clone(), Some(a)),
                    AliasUse::Reuse(a) => (ByteString::new(), Some(a)),
                };
                let publish = sink.publish(topic).dup(dup).retain(d.retain).properties(|p| {
                    p.topic_alias = topic_alias;
                    p.content_type = m.content_type.clone();
                    p.user_properties = m.user_properties.clone();
                    p.response_topic = m.response_topic.clone();
                    p.correlation_data = m.correlation_data.clone();
                    p.subscription_ids = d.subscription_ids.iter().filter_map(|id| NonZeroU32::new(*id)).collect();
                    // What is left of the expiry interval, rounded up (MQTT 5 3.3.2.3.3).
                    p.message_expiry_interval = m.expires_at.and_then(|at| {
                        let left = at.saturating_duration_since(std::time::Instant::now());
                        NonZeroU32::new(left.as_secs().saturating_add(u64::from(left.subsec_nanos() > 0)).min(u64::from(u32::MAX)) as u32)
                    });
                });
                let sent = send_at!(sink, publish, d.qos, m.payload.clone(), acks, qseq);
                if let (Sent::Lost, AliasUse::Assign(a)) = (&sent, alias) {
                    aliases.borrow_mut().forget(&m.topic, a);
                }
                sent
            }
        }
    }
}

impl Replayer {
    /// A queued delivery to send, or `None` when it is dropped instead (deleted like an
    /// acknowledged one): unreadable, expired, or outside the client's ACL as it is now.
    fn sendable(&self, qseq: u64, value: &[u8], acks: &RefCell<Acks>, expired: &Counter) -> Option<Delivery> {
        let drop = |acks: &RefCell<Acks>| acks.borrow_mut().acked.push(qseq);
        let d = match decode_delivery(value) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(client_id = %self.client_id, qseq, error = %e, "A queued message cannot be read; dropped.");
                drop(acks);
                return None;
            }
        };
        if d.message.expired() {
            expired.inc();
            drop(acks);
            return None;
        }
        let who = Who { identity: &self.identity, client_id: &self.client_id };
        if !self.ingress.authority.may_subscribe(&who, &d.message.topic).is_allowed() {
            self.ingress.router.dropped(DeliveryDrop::NotAuthorized);
            drop(acks);
            return None;
        }
        Some(d)
    }

    /// Count a queued delivery handed to the client.
    fn sent(&self, qos: u8) {
        self.ingress.metrics.deliveries.get_or_create(&QosLabels { qos }).inc();
    }

    /// Hand the acknowledged deliveries to the storage actor (deleted in its next commit; if
    /// that never happens they are sent again, as QoS 1 allows).
    fn flush(&self, acks: &RefCell<Acks>) {
        let acked = std::mem::take(&mut acks.borrow_mut().acked);
        if acked.is_empty() {
            return;
        }
        if let Some(storage) = self.ingress.storage.get() {
            let op = SessionOp { client_id: self.client_id.clone(), change: SessionChange::Acked(acked), reply: None };
            let _ = storage.send_message(StorageMsg::Session(op));
        }
    }
}

/// A store that cannot be read warns once a second at most.
static READ_FAILURES: Throttle = Throttle::new();
