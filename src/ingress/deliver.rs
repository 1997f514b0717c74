//! The other direction: a task on a client's I/O thread that writes what is routed to it as
//! PUBLISH packets: the live deliveries of its queue (`crate::routing`) and, when the
//! connection holds a persistent session, the deliveries queued for it in the store, read in
//! order from the first (so what an earlier connection left unacknowledged goes again, with
//! DUP) and then whenever the router wakes it. A clean session's writer starts at its first
//! SUBSCRIBE, so a client that only publishes costs nothing here; a persistent session's at
//! CONNECT. It ends when the connection's queue closes.
//!
//! QoS 1 goes out without waiting for each PUBACK, within the client's receive maximum
//! (ntex-mqtt's readiness). The packet ids are ntex-mqtt's, which also checks that PUBACKs
//! come in order: so the queued delivery each PUBACK answers is the first of the ones in
//! flight. QoS 2 goes out the same way, several exchanges at once: the writer writes the
//! PUBLISH and `exchanges.rs` takes it through PUBREC, PUBREL and PUBCOMP. An acknowledged
//! (QoS 1) or completed (QoS 2) queued delivery is deleted from the store in a later commit.
//!
//! A queued QoS 2 delivery is exactly once across connections and restarts (MQTT 4.4): it goes
//! with a packet id derived from its queue number (the same on every connection, so a client
//! that already has it knows the resend as a duplicate); its PUBREC rewrites its row before the
//! PUBREL goes ([`SessionChange::Rewrite`](edge_gateway_actors::storage::SessionChange)), and a
//! rewritten row sends only the PUBREL again on the next connection (`release_again`, added to
//! ntex-mqtt: vendor/ntex-mqtt/PATCHED.md).

use std::cell::RefCell;
use std::num::{NonZeroU16, NonZeroU32};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use edge_gateway_actors::metrics::DeliveryDrop;
use ntex_bytes::ByteString;
use ntex_mqtt::error::SendPacketError;
use ntex_mqtt::{v3, v5};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Notify, mpsc};

use super::aliases::{AliasUse, Aliases};
use super::exchanges::{Exchanges, Opened, Pubcomp, Received};
use super::replay::{READ_FAILURES, Replayer};
use super::window::{Drops, Window};
use crate::routing::Delivery;
use crate::routing::persist::Queued;

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

/// The packet id of queued delivery `qseq` (the same on every connection).
pub(super) fn packet_id(qseq: u64) -> NonZeroU16 {
    NonZeroU16::MIN.saturating_add((qseq % u64::from(u16::MAX)) as u16)
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
    /// Written (QoS 0) or in flight (QoS 1: its PUBACK comes through the callback; QoS 2: its
    /// exchange goes on in `exchanges.rs`).
    Written,
    /// Not sent: too large for this client, or the connection is gone.
    Lost,
    /// Not sent: its packet id is still in flight (a queued delivery: sent once it is not).
    Later,
}

/// How a send that failed ended.
fn failed(e: &SendPacketError) -> Sent {
    match e {
        SendPacketError::PacketIdInUse(_) => Sent::Later,
        _ => Sent::Lost,
    }
}

/// Send a v3 or v5 `publish` builder at `qos` (their methods share names, not a trait); QoS 1
/// also records queued delivery `qseq` (`None`: a live one) as in flight; QoS 2 opens an
/// exchange in `x`, a queued one exactly once (`$received`: the protocol's [`Received`]).
macro_rules! send_at {
    ($self:expr, $publish:expr, $qos:expr, $payload:expr, $w:expr, $qseq:expr, $x:expr, $received:path) => {{
        // A queued delivery: QoS 1 and QoS 2 ones are never in flight together (their packet
        // ids come from ntex-mqtt and from the queue number), nor two with the same id.
        if let Some(qseq) = $qseq {
            let clear = match $qos {
                1 => $x.settled().await,
                2 => $self.drain($w).await && (!$x.in_use(packet_id(qseq)) || $x.settled().await),
                _ => true,
            };
            if !clear {
                return Sent::Lost;
            }
        }
        if !$self.ready().await {
            return Sent::Lost;
        }
        match $qos {
            0 => $publish.send_at_most_once($payload).map_or(Sent::Lost, |()| Sent::Written),
            1 => match $publish.send_at_least_once_no_block($payload) {
                Ok(()) => {
                    // After the send: no PUBACK can come for a send that failed.
                    $w.acks.borrow_mut().in_flight.push_back($qseq);
                    Sent::Written
                }
                Err(e) => failed(&e),
            },
            _ => {
                let publish = match $qseq {
                    Some(qseq) => $publish.packet_id(packet_id(qseq).get()),
                    None => $publish,
                };
                match publish.send_exactly_once_no_block($payload) {
                    Ok(pubrec) => {
                        $x.open(Opened::Published { qseq: $qseq, pubrec: Box::pin(async move { pubrec.await.map($received) }) });
                        Sent::Written
                    }
                    Err(e) => failed(&e),
                }
            }
        }
    }};
}

impl Outbound {
    /// Write the deliveries of `queue` (and, for a persistent session, its queued ones) until
    /// the queue closes or the connection does.
    pub(super) fn start(self, mut queue: mpsc::Receiver<Delivery>, drops: Drops, replay: Option<Replayer>) {
        let Drops { expired, refused } = drops;
        let w = Rc::new(Window { refused, ..Window::default() });
        let replay = replay.map(Rc::new);
        let x = Exchanges::new(self.clone(), replay.clone(), w.clone());
        // Any PUBACK ends the exchange (an MQTT 5 one with an error code too: no resend, counted).
        let w2 = w.clone();
        match &self {
            Outbound::V3(s) => s.publish_ack_cb(move |_, disconnected| w2.puback(false, disconnected)),
            Outbound::V5(s, _) => s.publish_ack_cb(move |ack, disconnected| w2.puback(u8::from(ack.reason_code) >= 0x80, disconnected)),
        }
        ntex_rt::spawn(async move {
            let mut next = 0u64;
            // Read the session's queue first, then whenever the router wakes the writer.
            let mut read = replay.is_some();
            let mut retry = false;
            loop {
                if let Some(r) = &replay {
                    r.flush(&w.acks);
                    if read {
                        match self.replay_batch(r, &x, &mut next, &w, &expired).await {
                            Step::More => continue,
                            Step::Done => (read, retry) = (false, false),
                            Step::Failed => (read, retry) = (false, true),
                            Step::Closed => break,
                        }
                        r.flush(&w.acks);
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
                        self.send(d, false, None, &x, &w).await;
                        if !self.is_open() {
                            break;
                        }
                    }
                    () = woken => read = true,
                    () = w.acked.notified() => {}
                }
            }
            if let Some(r) = &replay {
                r.flush(&w.acks);
            }
        });
    }

    /// Send the next queued deliveries of a persistent session (at most [`READ_BATCH`]).
    async fn replay_batch(&self, r: &Replayer, x: &Exchanges, next: &mut u64, w: &Window, expired: &Counter) -> Step {
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
        let acks = &w.acks;
        for (qseq, value) in rows {
            *next = qseq + 1;
            let d = match r.sendable(qseq, &value, acks, expired) {
                Some(Queued::Delivery(d)) => d,
                Some(Queued::Released(id)) => {
                    // Its packet id is the queue number's, as for a QoS 2 delivery.
                    let clear = self.drain(w).await && (!x.in_use(id) || x.settled().await) && self.ready().await;
                    match clear.then(|| self.release_again(id)) {
                        Some(Ok(pubcomp)) => x.open(Opened::Released { qseq, pubcomp }),
                        _ if !self.is_open() => return Step::Closed,
                        // Left queued: the next connection sends it again.
                        _ => {}
                    }
                    continue;
                }
                None => continue,
            };
            let dup = r.replay.sent_below.fetch_max(qseq + 1, Ordering::Relaxed) > qseq;
            let qos = d.qos;
            match self.send(d, dup, Some(qseq), x, w).await {
                Sent::Written => r.sent(qos),
                Sent::Lost if !self.is_open() => return Step::Closed,
                // Sent again from this row once what holds its id is done.
                Sent::Later => {
                    *next = qseq;
                    return if x.settled().await { Step::More } else { Step::Closed };
                }
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

    pub(super) fn is_open(&self) -> bool {
        match self {
            Outbound::V3(s) => s.is_open(),
            Outbound::V5(s, _) => s.is_open(),
        }
    }

    pub(super) fn force_close(&self) {
        match self {
            Outbound::V3(s) => s.force_close(),
            Outbound::V5(s, _) => s.force_close(),
        }
    }

    /// Wait for a place in the client's receive maximum and room in the write buffer
    /// (`is_ready` again after each wake-up: ntex-mqtt's non-blocking sends assert it); false
    /// when the connection is gone.
    async fn ready(&self) -> bool {
        match self {
            Outbound::V3(s) => {
                while !s.is_ready() {
                    if !s.ready().await {
                        return false;
                    }
                }
            }
            Outbound::V5(s, _) => {
                while !s.is_ready() {
                    if !s.ready().await {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Wait until no QoS 1 delivery is in flight (so no packet id of ntex-mqtt's is in use);
    /// false when the connection is gone.
    async fn drain(&self, w: &Window) -> bool {
        self.wait_until(&w.drained, || w.acks.borrow().in_flight.is_empty()).await
    }

    /// Wait until `done` holds, checked whenever `woken` is notified (and every second); false
    /// when the connection is gone.
    pub(super) async fn wait_until(&self, woken: &Notify, done: impl Fn() -> bool) -> bool {
        while !done() {
            if !self.is_open() {
                return false;
            }
            let _ = ntex_util::time::timeout(Duration::from_secs(1), woken.notified()).await;
        }
        self.is_open()
    }

    /// Write the PUBREL of a queued QoS 2 delivery the client received on an earlier
    /// connection again, with its packet id; the wait for its PUBCOMP.
    fn release_again(&self, id: NonZeroU16) -> Result<Pubcomp, SendPacketError> {
        match self {
            Outbound::V3(s) => s.release_again(id).map(|f| Box::pin(f) as Pubcomp),
            Outbound::V5(s, _) => s.release_again(id).map(|f| Box::pin(f) as Pubcomp),
        }
    }

    /// Write one delivery (what fails, fails for this message only, or the connection is gone).
    async fn send(&self, d: Delivery, dup: bool, qseq: Option<u64>, x: &Exchanges, w: &Window) -> Sent {
        let m = &d.message;
        match self {
            Outbound::V3(sink) => {
                let mut publish = sink.publish(m.topic.clone()).dup(dup);
                if d.retain {
                    publish = publish.retain();
                }
                send_at!(self, publish, d.qos, m.payload.clone(), w, qseq, x, Received::V3)
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
                let sent = send_at!(self, publish, d.qos, m.payload.clone(), w, qseq, x, Received::V5);
                if let (Sent::Lost | Sent::Later, AliasUse::Assign(a)) = (&sent, alias) {
                    aliases.borrow_mut().forget(&m.topic, a);
                }
                sent
            }
        }
    }
}
