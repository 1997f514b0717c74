#![allow(clippy::type_complexity)]
use std::{cell::Cell, cell::RefCell, collections::VecDeque, fmt, num, rc::Rc};

use ntex_bytes::{BytePages, Bytes, BytesMut};
use ntex_codec::{Decoder, Encoder};
use ntex_io::IoRef;
use ntex_util::{HashSet, channel::pool};

use crate::error::{DecodeError, EncodeError, MqttProtocolError, PayloadError, SendPacketError};
use crate::v3::codec::{self, Encoded, Publish};
use crate::{payload::PlSender, types::packet_type};

#[derive(Debug)]
pub(super) enum Ack {
    Publish(num::NonZeroU16),
    Receive(num::NonZeroU16),
    Complete(num::NonZeroU16),
    Subscribe {
        packet_id: num::NonZeroU16,
        status: Vec<codec::SubscribeReturnCode>,
    },
    Unsubscribe(num::NonZeroU16),
}

#[derive(Copy, Clone, Debug)]
pub(super) enum AckType {
    Publish,
    Receive,
    Complete,
    Subscribe,
    Unsubscribe,
}

pub(super) struct MqttSinkPool {
    queue: pool::Pool<Ack>,
    pub(super) waiters: pool::Pool<()>,
}

impl Default for MqttSinkPool {
    fn default() -> Self {
        Self {
            queue: pool::new(),
            waiters: pool::new(),
        }
    }
}

bitflags::bitflags! {
    #[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    struct Flags: u8 {
        const CLIENT          = 0b0000_0001;
        const WRB_ENABLED     = 0b0000_0010; // write-backpressure
        const ON_PUBLISH_ACK  = 0b0000_0100; // on-publish-ack callback

        const DISCONNECT      = 0b0010_0000; // Disconnect frame is sent
        const STOPPED         = 0b1000_0000; // DispatchItem::Stop() is sent
    }
}

pub struct MqttShared {
    io: IoRef,
    cap: Cell<usize>,
    queues: RefCell<MqttSharedQueues>,
    inflight_idx: Cell<u16>,
    flags: Cell<Flags>,
    encode_error: Cell<Option<EncodeError>>,
    streaming_waiter: Cell<Option<pool::Sender<()>>>,
    streaming_remaining: Cell<Option<num::NonZeroU32>>,
    on_publish_ack: Cell<Option<Box<dyn Fn(num::NonZeroU16, bool)>>>,
    pub(super) payload: Cell<Option<PlSender>>,
    pub(super) codec: codec::Codec,
    pub(super) pool: Rc<MqttSinkPool>,
}

impl fmt::Debug for MqttShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttShared").finish()
    }
}

#[derive(Debug)]
struct MqttSharedQueues {
    inflight: VecDeque<(num::NonZeroU16, Option<pool::Sender<Ack>>, AckType)>,
    inflight_ids: HashSet<num::NonZeroU16>,
    waiters: VecDeque<pool::Sender<()>>,
    // edge-gateway patch: QoS 2 publishes whose PUBREC came and whose PUBREL is not sent
    // yet (they still count against the receive maximum); each PUBREL's PUBCOMP is queued
    // in `inflight` when the PUBREL is sent, so several exchanges can be open at once.
    releasing: usize,
}

impl MqttSharedQueues {
    /// Places of the receive maximum in use (edge-gateway patch).
    fn in_use(&self) -> usize {
        self.inflight.len() + self.releasing
    }
}

impl MqttShared {
    pub(super) fn new(
        io: IoRef,
        codec: codec::Codec,
        client: bool,
        pool: Rc<MqttSinkPool>,
    ) -> Self {
        Self {
            io,
            codec,
            pool,
            cap: Cell::new(0),
            flags: Cell::new(if client { Flags::CLIENT } else { Flags::empty() }),
            queues: RefCell::new(MqttSharedQueues {
                inflight: VecDeque::new(), // edge-gateway patch: grows when used
                inflight_ids: HashSet::default(),
                waiters: VecDeque::new(),
                releasing: 0,
            }),
            inflight_idx: Cell::new(0),
            encode_error: Cell::new(None),
            streaming_waiter: Cell::new(None),
            streaming_remaining: Cell::new(None),
            on_publish_ack: Cell::new(None),
            payload: Cell::new(None),
        }
    }

    pub(super) fn tag(&self) -> &'static str {
        self.io.tag()
    }

    pub(super) fn close(&self) {
        if self.flags.get().contains(Flags::CLIENT) && !self.is_disconnect_sent() {
            let _ = self.encode_packet(codec::Packet::Disconnect);
        }
        self.io.close();
        self.clear_queues();
    }

    pub(super) fn force_close(&self) {
        self.io.terminate();
        self.clear_queues();
    }

    pub(super) fn streaming_dropped(&self) {
        self.force_close();
        self.encode_error.set(Some(EncodeError::PublishIncomplete));
    }

    pub(super) fn drop_payload<E>(&self, err: &E)
    where
        E: Clone,
        PayloadError: From<E>,
    {
        if let Some(pl) = self.payload.take() {
            pl.set_error(err.clone().into());
        }
    }

    pub(super) fn is_streaming(&self) -> bool {
        self.streaming_remaining.get().is_some()
    }

    pub(super) fn is_closed(&self) -> bool {
        self.io.is_closed()
    }

    pub(super) fn is_ready(&self) -> bool {
        self.credit() > 0 && !self.flags.get().contains(Flags::WRB_ENABLED)
    }

    pub(super) fn is_disconnect_sent(&self) -> bool {
        let mut flags = self.flags.get();
        let sent = flags.contains(Flags::DISCONNECT);
        if !sent {
            flags.insert(Flags::DISCONNECT);
            self.flags.set(flags);
        }
        sent
    }

    pub(super) fn credit(&self) -> usize {
        self.cap
            .get()
            .saturating_sub(self.queues.borrow().in_use())
    }

    pub(super) fn next_id(&self) -> num::NonZeroU16 {
        // edge-gateway patch: skip ids still in flight (the gateway also sends with ids of its
        // own choosing, see PATCHED.md); at most one turn of the id space.
        let mut idx = self.next_id_once();
        for _ in 0..u16::MAX {
            if !self.queues.borrow().inflight_ids.contains(&idx) {
                break;
            }
            idx = self.next_id_once();
        }
        idx
    }

    fn next_id_once(&self) -> num::NonZeroU16 {
        let idx = self.inflight_idx.get() + 1;
        let idx = if idx == u16::MAX {
            self.inflight_idx.set(0);
            u16::MAX
        } else {
            self.inflight_idx.set(idx);
            idx
        };
        num::NonZeroU16::new(idx).unwrap()
    }

    /// publish packet id
    pub(super) fn set_publish_id(&self, pkt: &mut Publish) -> num::NonZeroU16 {
        if let Some(idx) = pkt.packet_id {
            idx
        } else {
            let idx = self.next_id();
            pkt.packet_id = Some(idx);
            idx
        }
    }

    pub(super) fn set_cap(&self, cap: usize) {
        let mut queues = self.queues.borrow_mut();

        // wake up queued request (receive max limit)
        'outer: for _ in 0..cap {
            while let Some(tx) = queues.waiters.pop_front() {
                if tx.send(()).is_ok() {
                    continue 'outer;
                }
            }
            break;
        }
        self.cap.set(cap);
    }

    pub(super) fn set_publish_ack(&self, f: Box<dyn Fn(num::NonZeroU16, bool)>) {
        let mut flags = self.flags.get();
        flags.insert(Flags::ON_PUBLISH_ACK);
        self.flags.set(flags);
        self.on_publish_ack.set(Some(f));
    }

    pub(super) fn encode_packet(&self, pkt: codec::Packet) -> Result<(), EncodeError> {
        self.check_streaming()?;
        self.io.encode(pkt.into(), &self.codec)
    }

    pub(super) fn encode_publish(
        &self,
        pkt: Publish,
        payload: Option<Bytes>,
    ) -> Result<(), EncodeError> {
        self.check_streaming()?;
        self.enable_streaming(&pkt, payload.as_ref());
        self.io.encode(Encoded::Publish(pkt, payload), &self.codec)
    }

    pub(super) fn encode_publish_payload(&self, payload: Bytes) -> Result<bool, EncodeError> {
        if let Some(remaining) = self.streaming_remaining.get() {
            let len = payload.len() as u32;
            if len > remaining.get() {
                self.force_close();
                Err(EncodeError::OverPublishSize)
            } else {
                self.io
                    .encode(Encoded::PayloadChunk(payload), &self.codec)?;
                self.streaming_remaining
                    .set(num::NonZeroU32::new(remaining.get() - len));
                Ok(self.streaming_remaining.get().is_some())
            }
        } else {
            Err(EncodeError::UnexpectedPayload)
        }
    }

    fn clear_queues(&self) {
        let mut queues = self.queues.borrow_mut();
        queues.waiters.clear();
        queues.releasing = 0;

        if let Some(cb) = self.on_publish_ack.take() {
            for (idx, tx, _) in queues.inflight.drain(..) {
                if tx.is_none() {
                    (*cb)(idx, true);
                }
            }
        } else {
            queues.inflight.clear();
        }
    }

    pub(super) fn enable_wr_backpressure(&self) {
        let mut flags = self.flags.get();
        flags.insert(Flags::WRB_ENABLED);
        self.flags.set(flags);
    }

    pub(super) fn disable_wr_backpressure(&self) {
        let mut flags = self.flags.get();
        flags.remove(Flags::WRB_ENABLED);
        self.flags.set(flags);

        // streaming waiter
        if let Some(tx) = self.streaming_waiter.take()
            && tx.send(()).is_ok()
        {
            return;
        }

        // check if there are waiters
        let mut queues = self.queues.borrow_mut();
        if queues.in_use() < self.cap.get() {
            let mut num = self.cap.get() - queues.in_use();
            while num > 0 {
                if let Some(tx) = queues.waiters.pop_front() {
                    if tx.send(()).is_ok() {
                        num -= 1;
                    }
                } else {
                    break;
                }
            }
        }
    }

    pub(super) async fn want_payload_stream(&self) -> Result<(), SendPacketError> {
        if self.is_closed() {
            Err(SendPacketError::Disconnected)
        } else if self.flags.get().contains(Flags::WRB_ENABLED) {
            let (tx, rx) = self.pool.waiters.channel();
            self.streaming_waiter.set(Some(tx));
            if rx.await.is_ok() {
                Ok(())
            } else {
                Err(SendPacketError::Disconnected)
            }
        } else {
            Ok(())
        }
    }

    fn check_streaming(&self) -> Result<(), EncodeError> {
        if self.streaming_remaining.get().is_some() {
            Err(EncodeError::ExpectPayload)
        } else {
            Ok(())
        }
    }

    fn enable_streaming(&self, pkt: &Publish, payload: Option<&Bytes>) {
        let len = payload.map_or(0, Bytes::len);
        self.streaming_remaining
            .set(num::NonZeroU32::new(pkt.payload_size - len as u32));
    }

    pub(super) fn pkt_ack(&self, ack: Ack) -> Result<(), MqttProtocolError> {
        self.pkt_ack_inner(ack).inspect_err(|_| {
            self.close();
        })
    }

    fn pkt_ack_inner(&self, pkt: Ack) -> Result<(), MqttProtocolError> {
        let mut queues = self.queues.borrow_mut();
        let id = pkt.packet_id();

        // edge-gateway patch: an ack answers the in-flight entry of its own type. PUBACK,
        // SUBACK and UNSUBACK answer the oldest of their type (MQTT 4.6: in the order of their
        // requests); PUBREC and PUBCOMP the one with their packet id, wherever it is (a client
        // may answer a PUBREL before a PUBLISH sent ahead of it). Anything else closes the
        // connection, as an ack out of order did.
        let pos = match pkt {
            Ack::Receive(_) | Ack::Complete(_) => queues
                .inflight
                .iter()
                .position(|(idx, _, tp)| *idx == id && pkt.is_match(*tp)),
            _ => queues.inflight.iter().position(|(_, _, tp)| pkt.is_match(*tp)),
        };
        let Some(pos) = pos else {
            log::trace!("Unexpected ack packet: {:?}", pkt);
            return Err(if queues.inflight.is_empty() {
                MqttProtocolError::generic_violation(
                    "Received PUBACK packet while there are no unacknowledged PUBLISH packets",
                )
            } else {
                MqttProtocolError::unexpected_packet(
                    pkt.packet_type(),
                    queues.inflight[0].2.expected_str(),
                )
            });
        };
        if queues.inflight[pos].0 != id {
            log::trace!(
                "MQTT protocol error: packet id order does not match; expected {}, got: {}",
                queues.inflight[pos].0,
                id
            );
            return Err(MqttProtocolError::packet_id_mismatch());
        }
        let (_, tx, _) = queues.inflight.remove(pos).expect("found above");
        log::trace!("Ack packet with id: {}", id);
        if matches!(pkt, Ack::Receive(_)) {
            // The PUBCOMP's entry is queued when the PUBREL is written (`release_publish`);
            // until then the exchange keeps its place of the receive maximum.
            queues.releasing += 1;
            if let Some(tx) = tx {
                let _ = tx.send(pkt);
            }
            return Ok(());
        }
        queues.inflight_ids.remove(&id);
        match tx {
            Some(tx) => {
                let _ = tx.send(pkt);
            }
            None if matches!(pkt, Ack::Publish(_)) => {
                let cb = self.on_publish_ack.take().unwrap();
                (*cb)(id, false);
                self.on_publish_ack.set(Some(cb));
            }
            None => {}
        }

        // wake up queued request (receive max limit)
        while let Some(tx) = queues.waiters.pop_front() {
            if tx.send(()).is_ok() {
                break;
            }
        }
        Ok(())
    }

    /// Register ack in response channel
    pub(super) fn wait_response(
        &self,
        id: num::NonZeroU16,
        ack: AckType,
    ) -> Result<pool::Receiver<Ack>, SendPacketError> {
        let mut queues = self.queues.borrow_mut();
        if queues.inflight_ids.contains(&id) {
            Err(SendPacketError::PacketIdInUse(id))
        } else {
            let (tx, rx) = self.pool.queue.channel();
            queues.inflight.push_back((id, Some(tx), ack));
            queues.inflight_ids.insert(id);
            Ok(rx)
        }
    }

    /// Register ack in response channel
    pub(super) fn wait_publish_response(
        &self,
        id: num::NonZeroU16,
        ack: AckType,
        pkt: Publish,
        payload: Option<Bytes>,
    ) -> Result<pool::Receiver<Ack>, SendPacketError> {
        self.check_streaming()?;
        self.enable_streaming(&pkt, payload.as_ref());

        let mut queues = self.queues.borrow_mut();
        if queues.inflight_ids.contains(&id) {
            Err(SendPacketError::PacketIdInUse(id))
        } else {
            match self.io.encode(Encoded::Publish(pkt, payload), &self.codec) {
                Ok(()) => {
                    let (tx, rx) = self.pool.queue.channel();
                    queues.inflight.push_back((id, Some(tx), ack));
                    queues.inflight_ids.insert(id);
                    Ok(rx)
                }
                Err(e) => Err(SendPacketError::Encode(e)),
            }
        }
    }

    /// Register ack in response channel
    pub(super) fn wait_publish_response_no_block(
        &self,
        id: num::NonZeroU16,
        ack: AckType,
        pkt: Publish,
        payload: Option<Bytes>,
    ) -> Result<(), SendPacketError> {
        self.check_streaming()?;
        self.enable_streaming(&pkt, payload.as_ref());

        let mut queues = self.queues.borrow_mut();
        if queues.inflight_ids.contains(&id) {
            Err(SendPacketError::PacketIdInUse(id))
        } else {
            match self.io.encode(Encoded::Publish(pkt, payload), &self.codec) {
                Ok(()) => {
                    assert!(
                        self.flags.get().contains(Flags::ON_PUBLISH_ACK),
                        "Publish ack callback is not set"
                    );
                    queues.inflight.push_back((id, None, ack));
                    queues.inflight_ids.insert(id);
                    Ok(())
                }
                Err(e) => Err(SendPacketError::Encode(e)),
            }
        }
    }

    pub(super) fn wait_readiness(&self) -> Option<pool::Receiver<()>> {
        let mut queues = self.queues.borrow_mut();

        if queues.in_use() >= self.cap.get() || self.flags.get().contains(Flags::WRB_ENABLED)
        {
            let (tx, rx) = self.pool.waiters.channel();
            queues.waiters.push_back(tx);
            Some(rx)
        } else {
            None
        }
    }

    /// PUBREL for a QoS 2 publish received by the peer on an earlier connection, in flight
    /// until its PUBCOMP (edge-gateway patch, see PATCHED.md).
    pub(super) fn release_again(
        &self,
        id: num::NonZeroU16,
    ) -> Result<pool::Receiver<Ack>, SendPacketError> {
        let mut queues = self.queues.borrow_mut();
        if queues.inflight_ids.contains(&id) {
            return Err(SendPacketError::PacketIdInUse(id));
        }
        match self.io.encode(
            Encoded::Packet(codec::Packet::PublishRelease { packet_id: id }),
            &self.codec,
        ) {
            Ok(()) => {
                let (tx, rx) = self.pool.queue.channel();
                queues.inflight.push_back((id, Some(tx), AckType::Complete));
                queues.inflight_ids.insert(id);
                Ok(rx)
            }
            Err(e) => Err(SendPacketError::Encode(e)),
        }
    }

    /// Register ack in response channel
    pub(super) fn release_publish(
        &self,
        id: num::NonZeroU16,
    ) -> Result<pool::Receiver<Ack>, SendPacketError> {
        // edge-gateway patch: the PUBCOMP is awaited from now on, behind whatever was
        // sent before this PUBREL.
        let mut queues = self.queues.borrow_mut();
        if queues.releasing == 0 {
            return Err(SendPacketError::UnexpectedRelease);
        }
        queues.releasing -= 1;
        match self.io.encode(
            Encoded::Packet(codec::Packet::PublishRelease { packet_id: id }),
            &self.codec,
        ) {
            Ok(()) => {
                let (tx, rx) = self.pool.queue.channel();
                queues.inflight.push_back((id, Some(tx), AckType::Complete));
                Ok(rx)
            }
            Err(e) => {
                queues.inflight_ids.remove(&id);
                Err(SendPacketError::Encode(e))
            }
        }
    }
}

impl Encoder for MqttShared {
    type Item = Encoded;
    type Error = EncodeError;

    #[inline]
    fn encodev(&self, item: Self::Item, dst: &mut BytePages) -> Result<(), Self::Error> {
        self.codec.encodev(item, dst)
    }
}

impl Decoder for MqttShared {
    type Item = codec::Decoded;
    type Error = DecodeError;

    #[inline]
    fn decode(&self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        self.codec.decode(src)
    }
}

impl Ack {
    pub(super) fn packet_type(&self) -> u8 {
        match self {
            Ack::Publish(_) => packet_type::PUBACK,
            Ack::Receive(_) => packet_type::PUBREC,
            Ack::Complete(_) => packet_type::PUBCOMP,
            Ack::Subscribe { .. } => packet_type::SUBACK,
            Ack::Unsubscribe(_) => packet_type::UNSUBACK,
        }
    }

    pub(super) fn packet_id(&self) -> num::NonZeroU16 {
        match self {
            Ack::Subscribe { packet_id, .. } => *packet_id,
            Ack::Publish(id) | Ack::Receive(id) | Ack::Complete(id) | Ack::Unsubscribe(id) => *id,
        }
    }

    pub(super) fn subscribe(self) -> Vec<codec::SubscribeReturnCode> {
        if let Ack::Subscribe { status, .. } = self {
            status
        } else {
            panic!()
        }
    }

    pub(super) fn is_match(&self, tp: AckType) -> bool {
        match (self, tp) {
            (Ack::Publish(_), AckType::Publish)
            | (Ack::Receive(_), AckType::Receive)
            | (Ack::Complete(_), AckType::Complete) // edge-gateway patch
            | (Ack::Subscribe { .. }, AckType::Subscribe)
            | (Ack::Unsubscribe(_), AckType::Unsubscribe) => true,
            (_, _) => false,
        }
    }
}

impl AckType {
    pub(super) fn expected_str(self) -> &'static str {
        match self {
            AckType::Publish => "Expected PUBACK packet",
            AckType::Receive => "Expected PUBREC packet",
            AckType::Complete => "Expected PUBCOMP packet",
            AckType::Subscribe => "Expected SUBACK packet",
            AckType::Unsubscribe => "Expected UNSUBACK packet",
        }
    }
}
