#![allow(clippy::type_complexity)]
use std::{cell::Cell, cell::RefCell, collections::VecDeque, fmt, num, rc::Rc};

use ntex_bytes::{BytePages, Bytes, BytesMut};
use ntex_codec::{Decoder, Encoder};
use ntex_io::IoRef;
use ntex_util::{HashSet, channel::pool};

use crate::v5::codec::{self, Decoded, Encoded, Packet, Publish};
use crate::{QoS, error, error::SendPacketError, payload::PlSender, types::packet_type};

bitflags::bitflags! {
    #[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub(crate) struct Flags: u8 {
        const WRB_ENABLED     = 0b0000_0001; // write-backpressure
        const ON_PUBLISH_ACK  = 0b0000_0010; // on-publish-ack callback

        const QOS_ATLEAST     = 0b0000_0100; // AtLeastOnce
        const QOS_EXACTLY     = 0b0000_1000; // ExactlyOnce

        const ZERO_SES_EXPIRY = 0b0001_0000; // Session expiry is zero in Connect

        const DISCONNECT      = 0b0010_0000; // Disconnect frame is sent
        const DISCONNECT_RECV = 0b0100_0000; // Disconnect frame is received
        const STOPPED         = 0b1000_0000; // DispatchItem::Stop() is sent
    }
}

pub struct MqttShared {
    io: IoRef,
    cap: Cell<usize>,
    receive_max: Cell<u16>,
    topic_alias_max: Cell<u16>,
    inflight_idx: Cell<u16>,
    queues: RefCell<MqttSharedQueues>,
    encode_error: Cell<Option<error::EncodeError>>,
    streaming_waiter: Cell<Option<pool::Sender<()>>>,
    streaming_remaining: Cell<Option<num::NonZeroU32>>,
    on_publish_ack: Cell<Option<Box<dyn Fn(codec::PublishAck, bool)>>>,
    pub(super) payload: Cell<Option<PlSender>>,
    pub(super) flags: Cell<Flags>,
    pub(super) pool: Rc<MqttSinkPool>,
    pub(super) codec: codec::Codec,
}

impl fmt::Debug for MqttShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttShared").finish()
    }
}

#[derive(Debug)]
pub(super) struct MqttSharedQueues {
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

impl MqttShared {
    pub(super) fn new(io: IoRef, codec: codec::Codec, pool: Rc<MqttSinkPool>) -> Self {
        Self {
            io,
            pool,
            codec,
            cap: Cell::new(0),
            queues: RefCell::new(MqttSharedQueues {
                inflight: VecDeque::new(), // edge-gateway patch: grows when used
                inflight_ids: HashSet::default(),
                waiters: VecDeque::new(),
                releasing: 0,
            }),
            receive_max: Cell::new(0),
            topic_alias_max: Cell::new(0),
            inflight_idx: Cell::new(0),
            flags: Cell::new(Flags::QOS_ATLEAST),
            payload: Cell::new(None),
            on_publish_ack: Cell::new(None),
            encode_error: Cell::new(None),
            streaming_waiter: Cell::new(None),
            streaming_remaining: Cell::new(None),
        }
    }

    pub(super) fn tag(&self) -> &'static str {
        self.io.tag()
    }

    pub(super) fn credit(&self) -> usize {
        self.cap
            .get()
            .saturating_sub(self.queues.borrow().in_use())
    }

    pub(super) fn receive_max(&self) -> u16 {
        self.receive_max.get()
    }

    pub(super) fn topic_alias_max(&self) -> u16 {
        self.topic_alias_max.get()
    }

    pub(super) fn max_qos(&self) -> QoS {
        let flags = self.flags.get();
        if flags.contains(Flags::QOS_ATLEAST) {
            QoS::AtLeastOnce
        } else if flags.contains(Flags::QOS_EXACTLY) {
            QoS::ExactlyOnce
        } else {
            QoS::AtMostOnce
        }
    }

    pub(super) fn set_receive_max(&self, val: u16) {
        self.receive_max.set(val);
    }

    pub(super) fn set_topic_alias_max(&self, val: u16) {
        self.topic_alias_max.set(val);
    }

    pub(super) fn set_max_qos(&self, val: QoS) {
        let mut flags = self.flags.get();
        match val {
            QoS::AtLeastOnce => {
                flags.insert(Flags::QOS_ATLEAST);
                flags.remove(Flags::QOS_EXACTLY);
            }
            QoS::ExactlyOnce => {
                flags.insert(Flags::QOS_EXACTLY);
                flags.remove(Flags::QOS_ATLEAST);
            }
            QoS::AtMostOnce => {
                flags.remove(Flags::QOS_ATLEAST);
                flags.remove(Flags::QOS_EXACTLY);
            }
        }
        self.flags.set(flags);
    }

    pub(super) fn is_zero_session_expiry(&self) -> bool {
        self.flags.get().contains(Flags::ZERO_SES_EXPIRY)
    }

    pub(super) fn set_zero_session_expiry(&self) {
        let mut flags = self.flags.get();
        flags.insert(Flags::ZERO_SES_EXPIRY);
        self.flags.set(flags);
    }

    pub(super) fn close(&self, pkt: Option<codec::Disconnect>) {
        if !self.is_closed() {
            if let Some(pkt) = pkt
                && !self.is_disconnect_sent()
            {
                let _ = self
                    .io
                    .encode(Encoded::Packet(Packet::Disconnect(pkt)), &self.codec);
            }
            self.io.close();
        }
        self.clear_queues();
    }

    pub(super) fn force_close(&self) {
        self.io.terminate();
        self.clear_queues();
    }

    pub(super) fn streaming_dropped(&self) {
        self.force_close();
        self.encode_error
            .set(Some(error::EncodeError::PublishIncomplete));
    }

    pub(super) fn is_closed(&self) -> bool {
        self.io.is_closed()
    }

    pub(super) fn is_streaming(&self) -> bool {
        self.streaming_remaining.get().is_some()
    }

    pub(super) fn is_ready(&self) -> bool {
        self.credit() > 0 && !self.flags.get().contains(Flags::WRB_ENABLED)
    }

    pub(super) fn is_disconnect_sent(&self) -> bool {
        let mut flags = self.flags.get();
        let disconnect = flags.contains(Flags::DISCONNECT);
        if !disconnect {
            flags.insert(Flags::DISCONNECT);
            self.flags.set(flags);
        }
        disconnect
    }

    pub(super) fn set_disconnect_recv(&self) {
        let mut flags = self.flags.get();
        flags.insert(Flags::DISCONNECT_RECV);
        self.flags.set(flags);
    }

    pub(super) fn is_disconnect_recv(&self) -> bool {
        self.flags.get().contains(Flags::DISCONNECT_RECV)
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
        self.inflight_idx.set(idx);
        let idx = if idx == u16::MAX {
            self.inflight_idx.set(0);
            u16::MAX
        } else {
            self.inflight_idx.set(idx);
            idx
        };
        num::NonZeroU16::new(idx).unwrap()
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

    pub(super) fn set_publish_ack(&self, f: Box<dyn Fn(codec::PublishAck, bool)>) {
        let mut flags = self.flags.get();
        flags.insert(Flags::ON_PUBLISH_ACK);
        self.flags.set(flags);
        self.on_publish_ack.set(Some(f));
    }

    /// Close mqtt connection, dont send disconnect message
    pub(super) fn drop_sink(&self, io: bool) {
        self.clear_queues();
        if io {
            self.io.close();
        }
    }

    pub(super) fn drop_payload<E>(&self, err: &E)
    where
        E: Clone,
        error::PayloadError: From<E>,
    {
        if let Some(pl) = self.payload.take() {
            pl.set_error(err.clone().into());
        }
    }

    fn clear_queues(&self) {
        let mut queues = self.queues.borrow_mut();
        queues.waiters.clear();
        queues.releasing = 0;

        if let Some(cb) = self.on_publish_ack.take() {
            for (idx, tx, _) in queues.inflight.drain(..) {
                if tx.is_none() {
                    (*cb)(
                        codec::PublishAck {
                            packet_id: idx,
                            ..Default::default()
                        },
                        true,
                    );
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

    fn check_streaming(&self) -> Result<(), error::EncodeError> {
        if self.streaming_remaining.get().is_some() {
            Err(error::EncodeError::ExpectPayload)
        } else {
            Ok(())
        }
    }

    fn enable_streaming(&self, pkt: &Publish, payload: Option<&Bytes>) {
        let len = payload.map_or(0, Bytes::len);
        self.streaming_remaining
            .set(num::NonZeroU32::new(pkt.payload_size - len as u32));
    }

    pub(super) fn encode_packet(&self, pkt: codec::Packet) -> Result<(), error::EncodeError> {
        self.check_streaming()?;
        self.io.encode(Encoded::Packet(pkt), &self.codec)
    }

    pub(super) fn encode_publish(
        &self,
        pkt: Publish,
        payload: Option<Bytes>,
    ) -> Result<(), error::EncodeError> {
        self.check_streaming()?;
        self.enable_streaming(&pkt, payload.as_ref());
        self.io.encode(Encoded::Publish(pkt, payload), &self.codec)
    }

    pub(super) fn encode_publish_payload(
        &self,
        payload: Bytes,
    ) -> Result<bool, error::EncodeError> {
        if let Some(remaining) = self.streaming_remaining.get() {
            let len = payload.len() as u32;
            if len > remaining.get() {
                self.force_close();
                Err(error::EncodeError::OverPublishSize)
            } else {
                self.io
                    .encode(Encoded::PayloadChunk(payload), &self.codec)?;
                self.streaming_remaining
                    .set(num::NonZeroU32::new(remaining.get() - len));
                Ok(self.streaming_remaining.get().is_some())
            }
        } else {
            Err(error::EncodeError::UnexpectedPayload)
        }
    }

    pub(super) fn pkt_ack(&self, ack: Ack) -> Result<(), error::MqttProtocolError> {
        self.pkt_ack_inner(ack).inspect_err(|_| {
            self.close(Some(codec::Disconnect {
                reason_code: codec::DisconnectReasonCode::ImplementationSpecificError,
                ..Default::default()
            }));
        })
    }

    fn pkt_ack_inner(&self, pkt: Ack) -> Result<(), error::MqttProtocolError> {
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
                error::MqttProtocolError::generic_violation(
                    "Received PUBACK packet while there are no unacknowledged PUBLISH packets",
                )
            } else {
                error::MqttProtocolError::unexpected_packet(
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
            return Err(error::MqttProtocolError::packet_id_mismatch());
        }
        let (_, tx, _) = queues.inflight.remove(pos).expect("found above");
        log::trace!("Ack packet with id: {}", id);
        // edge-gateway patch: a PUBREC with a reason code of 0x80 or more ends the exchange
        // (MQTT 5, 4.3.3: no PUBREL; its packet id is free again), like a PUBACK.
        if matches!(&pkt, Ack::Receive(p) if u8::from(p.reason_code) < 0x80) {
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
                (*cb)(pkt.publish(), false);
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
        let pkt = codec::PublishAck2 {
            packet_id: id,
            reason_code: codec::PublishAck2Reason::Success,
            properties: codec::UserProperties::default(),
            reason_string: None,
        };
        match self.io.encode(Encoded::Packet(codec::Packet::PublishRelease(pkt)), &self.codec) {
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
        pkt: codec::PublishAck2,
    ) -> Result<pool::Receiver<Ack>, SendPacketError> {
        // edge-gateway patch: the PUBCOMP is awaited from now on, behind whatever was
        // sent before this PUBREL.
        let mut queues = self.queues.borrow_mut();
        if queues.releasing == 0 {
            return Err(SendPacketError::UnexpectedRelease);
        }
        queues.releasing -= 1;
        let id = pkt.packet_id;
        match self.io.encode(
            Encoded::Packet(codec::Packet::PublishRelease(pkt)),
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
    type Error = error::EncodeError;

    #[inline]
    fn encodev(&self, item: Self::Item, dst: &mut BytePages) -> Result<(), Self::Error> {
        self.codec.encodev(item, dst)
    }
}

impl Decoder for MqttShared {
    type Item = Decoded;
    type Error = error::DecodeError;

    #[inline]
    fn decode(&self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        self.codec.decode(src)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum AckType {
    Publish,
    Receive,
    Complete,
    Subscribe,
    Unsubscribe,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ack {
    Publish(codec::PublishAck),
    Receive(codec::PublishAck),
    Complete(codec::PublishAck2),
    Subscribe(codec::SubscribeAck),
    Unsubscribe(codec::UnsubscribeAck),
}

impl Ack {
    pub(super) fn packet_type(&self) -> u8 {
        match self {
            Ack::Publish(_) => packet_type::PUBACK,
            Ack::Receive(_) => packet_type::PUBREC,
            Ack::Complete(_) => packet_type::PUBCOMP,
            Ack::Subscribe(_) => packet_type::SUBACK,
            Ack::Unsubscribe(_) => packet_type::UNSUBACK,
        }
    }

    pub(super) fn packet_id(&self) -> num::NonZeroU16 {
        match self {
            Ack::Publish(pkt) | Ack::Receive(pkt) => pkt.packet_id,
            Ack::Complete(pkt) => pkt.packet_id,
            Ack::Subscribe(pkt) => pkt.packet_id,
            Ack::Unsubscribe(pkt) => pkt.packet_id,
        }
    }

    pub(super) fn publish(self) -> codec::PublishAck {
        if let Ack::Publish(pkt) = self {
            pkt
        } else {
            panic!()
        }
    }

    pub(super) fn receive(self) -> codec::PublishAck {
        if let Ack::Receive(pkt) = self {
            pkt
        } else {
            panic!()
        }
    }

    pub(super) fn subscribe(self) -> codec::SubscribeAck {
        if let Ack::Subscribe(pkt) = self {
            pkt
        } else {
            panic!()
        }
    }

    pub(super) fn unsubscribe(self) -> codec::UnsubscribeAck {
        if let Ack::Unsubscribe(pkt) = self {
            pkt
        } else {
            panic!()
        }
    }

    pub(super) fn is_match(&self, tp: AckType) -> bool {
        match (self, tp) {
            (Ack::Publish(_), AckType::Publish)
            | (Ack::Receive(_), AckType::Receive)
            | (Ack::Complete(_), AckType::Complete)
            | (Ack::Subscribe(_), AckType::Subscribe)
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
