//! What both protocol versions share besides PUBLISH: why a connection's dispatcher stopped
//! (counted by a bounded reason), and SUBSCRIBE / UNSUBSCRIBE.
//!
//! Subscriptions are checked against the ACL per filter: a refused one gets a SUBACK failure
//! without closing the connection. A granted one joins the routing table (`crate::routing`):
//! every accepted publish on a matching topic is delivered to it, checked against the ACL again
//! at each delivery.

use edge_gateway_actors::metrics::{IngressLabels, IngressReason};
use ntex_mqtt::error::MqttProtocolError;
use ntex_mqtt::v5::codec::DisconnectReasonCode;
use ntex_mqtt::{Control, Reason};

use super::IngressError;
use super::conn::ConnInner;
use crate::routing::table::Subscription;
use crate::routing::{Client, RetainHandling};

/// A SUBSCRIBE's options for one filter (MQTT 3.1.1: the defaults).
#[derive(Debug, Clone, Copy)]
pub(super) struct SubOptions {
    /// MQTT 5 no-local.
    pub no_local: bool,
    /// MQTT 5 retain-as-published.
    pub retain_as_published: bool,
    /// MQTT 5 subscription identifier.
    pub id: Option<u32>,
    /// MQTT 5 retain handling.
    pub handling: RetainHandling,
}

impl Default for SubOptions {
    fn default() -> Self {
        Self { no_local: false, retain_as_published: false, id: None, handling: RetainHandling::Send }
    }
}

/// Why a filter was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SubRefusal {
    /// The ACL does not allow it.
    NotAuthorized,
    /// Not a valid filter (or a shared one with no-local, MQTT 5 3.8.3-4).
    InvalidFilter,
}

/// One filter of a SUBSCRIBE: checked, granted, routed to; the QoS granted.
pub(super) fn subscribe(c: &ConnInner, filter: &str, requested: ntex_mqtt::QoS, opts: SubOptions) -> Result<ntex_mqtt::QoS, SubRefusal> {
    let qos = granted(requested);
    let sub = Subscription::new(filter, u8::from(qos), opts.no_local, opts.retain_as_published, opts.id)
        .map_err(|_| SubRefusal::InvalidFilter)?;
    if sub.share.is_some() && opts.no_local {
        return Err(SubRefusal::InvalidFilter);
    }
    // A shared subscription is authorized for the filter it shares.
    let acl_filter = if sub.share.is_some() { filter.splitn(3, '/').nth(2).unwrap_or(filter) } else { filter };
    if !c.may_subscribe(acl_filter) {
        return Err(SubRefusal::NotAuthorized);
    }
    let queue = c.queue();
    let client = Client { conn: c.conn_id, queue: &queue, mqtt5: matches!(c.outbound, super::deliver::Outbound::V5(..)) };
    c.ingress.router.subscribe(&c.who(), client, sub, opts.handling);
    Ok(qos)
}

/// One filter of an UNSUBSCRIBE; whether there was such a subscription.
pub(super) fn unsubscribe(c: &ConnInner, filter: &str) -> bool {
    c.ingress.router.unsubscribe(&c.client_id, c.conn_id, filter)
}

/// Count and log why a connection's dispatcher stops (protocol errors, handler errors).
pub(super) fn count_stop(c: &ConnInner, ctl: &Control<IngressError>) {
    let Control::Stop(reason) = ctl else { return };
    let (label, detail) = match reason {
        Reason::PeerGone(_) => return,
        Reason::Error(e) => match e.get_ref() {
            IngressError::Malformed(_) => (IngressReason::ProtocolError, e.get_ref().to_string()),
            _ => (IngressReason::HandlerError, e.get_ref().to_string()),
        },
        Reason::Protocol(p) => (classify_protocol_error(p.get_ref()), p.get_ref().to_string()),
    };
    c.ingress.metrics.connections_closed.get_or_create(&IngressLabels { reason: label }).inc();
    if label != IngressReason::HandlerError {
        c.ingress.metrics.reject(label);
    }
    tracing::warn!(client_id = %c.client_id, reason = %label, %detail, "Closing connection.");
}

/// The `gateway_ingress_rejected_total` / `gateway_connections_closed_total` reason for a
/// protocol error, from ntex-mqtt's error kinds.
pub(super) fn classify_protocol_error(e: &MqttProtocolError) -> IngressReason {
    use ntex_mqtt::error::DecodeError as D;
    match e {
        MqttProtocolError::Decode(D::MaxSizeExceeded { .. }) => IngressReason::Oversize,
        MqttProtocolError::Decode(D::UnsupportedPacketType | D::UnexpectedPayload) => IngressReason::UnexpectedPacket,
        MqttProtocolError::Decode(_) | MqttProtocolError::Encode(_) | MqttProtocolError::ReadTimeout => IngressReason::ProtocolError,
        MqttProtocolError::KeepAliveTimeout => IngressReason::KeepaliveTimeout,
        MqttProtocolError::ProtocolViolation(v) => classify_violation(v.reason(), &v.to_string()),
    }
}

/// A protocol violation's label. ntex-mqtt keeps which rule was broken private: it shows only
/// a reason code and a text naming the MQTT spec's statement (and, for a packet that should not
/// have come, "received packet with type"), so this is the one place that reads error text.
fn classify_violation(reason: DisconnectReasonCode, message: &str) -> IngressReason {
    if reason == DisconnectReasonCode::QosNotSupported || message.contains("3.2.2-11") {
        IngressReason::QosUnsupported
    } else if message.contains("3.3.2-2") || message.contains("wildcard") || message.contains("3.3.4-7") {
        IngressReason::InvalidTopic
    } else if message.contains("received packet with type") || message.contains("Unexpected") {
        IngressReason::UnexpectedPacket
    } else {
        IngressReason::ProtocolError
    }
}

/// Every QoS is granted as requested (QoS 2 too: exactly once, both ways).
pub(super) fn granted(requested: ntex_mqtt::QoS) -> ntex_mqtt::QoS {
    requested
}

#[cfg(test)]
mod tests {
    use ntex_mqtt::error::{DecodeError, SpecViolation};

    use super::*;

    #[test]
    fn decode_errors_are_labelled_by_kind() {
        let oversize = MqttProtocolError::Decode(DecodeError::MaxSizeExceeded { size: 2, max_size: 1 });
        assert_eq!(classify_protocol_error(&oversize).as_str(), "oversize");
        let second_connect = MqttProtocolError::Decode(DecodeError::UnsupportedPacketType);
        assert_eq!(classify_protocol_error(&second_connect).as_str(), "unexpected_packet");
        assert_eq!(classify_protocol_error(&MqttProtocolError::Decode(DecodeError::UnexpectedPayload)).as_str(), "unexpected_packet");
        assert_eq!(classify_protocol_error(&MqttProtocolError::Decode(DecodeError::MalformedPacket)).as_str(), "protocol_error");
        assert_eq!(classify_protocol_error(&MqttProtocolError::Decode(DecodeError::Utf8Error)).as_str(), "protocol_error");
    }

    #[test]
    fn timeouts_are_labelled_by_kind() {
        assert_eq!(classify_protocol_error(&MqttProtocolError::KeepAliveTimeout).as_str(), "keepalive_timeout");
        assert_eq!(classify_protocol_error(&MqttProtocolError::ReadTimeout).as_str(), "protocol_error");
    }

    #[test]
    fn spec_violations_are_labelled_by_the_statement_they_break() {
        let cases = [
            (SpecViolation::Pub_3_3_2_2, "invalid_topic"),
            (SpecViolation::Pub_3_3_4_7, "invalid_topic"),
            (SpecViolation::Connack_3_2_2_11, "qos_unsupported"),
            (SpecViolation::PacketId_2_2_1_3_Pub, "protocol_error"),
            (SpecViolation::Subs_4_7_1, "protocol_error"),
        ];
        for (spec, label) in cases {
            assert_eq!(classify_protocol_error(&MqttProtocolError::spec(spec)).as_str(), label, "{spec:?}");
        }
    }

    #[test]
    fn an_unexpected_packet_is_labelled_as_such() {
        // ntex-mqtt builds these itself (the constructor is private): its text is the input.
        let text = "Expected CONNECT packet [MQTT-3.1.0-1]; received packet with type `00110000`";
        assert_eq!(classify_violation(DisconnectReasonCode::ProtocolError, text).as_str(), "unexpected_packet");
        assert_eq!(classify_protocol_error(&MqttProtocolError::generic_violation("broken")).as_str(), "protocol_error");
    }
}
