//! MQTT 3.1.1: ntex-mqtt's v3 packets to the shared paths and back. 3.1.1 has no negative
//! PUBACK: a refused publish closes the connection, the only refusal the client sees.

use edge_gateway_actors::metrics::IngressReason;
use ntex_mqtt::{Control, v3};

use super::conn::Conn;
use super::deliver::Outbound;
use super::protocol::{self, SubOptions, count_stop};
use super::publish::{self, Inbound, Outcome};
use super::session::{Admission, Hello, Will};
use super::{Ingress, IngressError, Protocol};
use crate::routing::Message;
use crate::routing::sessions::SessionRequest;
use crate::trust::auth::Refusal;

/// CONNECT: the shared admission, answered with a CONNACK. 3.1.1 refuses an empty client id
/// with clean session 0 (there is no session to resume for it).
pub(crate) async fn connect(ingress: Ingress, c: v3::Connect) -> Result<v3::ConnectAck<Conn>, IngressError> {
    use v3::codec::ConnectAckReason as R;
    let pkt = c.packet();
    if pkt.client_id.is_empty() && !pkt.clean_session {
        ingress.metrics.reject(IngressReason::EmptyClientId);
        tracing::warn!("CONNECT with an empty client id and clean session 0 refused.");
        return Ok(c.identifier_rejected());
    }
    let sink = c.sink();
    let outbound = Outbound::V3(sink.clone());
    let will = pkt.last_will.as_ref().map(|w| Will {
        message: Message {
            topic: w.topic.clone(),
            payload: w.message.clone(),
            qos: u8::from(w.qos),
            retain: w.retain,
            ..Default::default()
        },
        delay_secs: 0,
        expiry_secs: None,
    });
    // Clean session 0: kept until the client starts a clean one (or broker.session_expiry_max_secs).
    let session = SessionRequest { clean: pkt.clean_session, expiry_secs: if pkt.clean_session { 0 } else { u32::MAX } };
    let hello = Hello { client_id: &pkt.client_id, username: pkt.username.as_deref(), password: pkt.password.as_deref(), will, session };
    let admission = ingress.admit(c.io(), hello, Protocol::V3, outbound, move || sink.close()).await;
    Ok(match admission {
        Admission::Accepted { conn, present, .. } => {
            conn.0.start_writer();
            c.ack(conn, present)
        }
        Admission::Refused(Refusal::ClientIdMismatch) => c.identifier_rejected(),
        Admission::Refused(Refusal::BadPassword | Refusal::NoCredentials) => c.failed(R::BadUserNameOrPassword),
        Admission::Refused(_) => c.failed(R::NotAuthorized),
        Admission::Unavailable => c.service_unavailable(),
    })
}

/// PUBLISH: `Ok` sends the PUBACK (QoS 1); any refusal closes the connection.
pub(crate) async fn publish(conn: &v3::Session<Conn>, p: v3::Publish) -> Result<(), IngressError> {
    // MQTT 3.1.1 has no user properties: the gateway starts the trace (if sampled).
    let msg = Inbound {
        topic: p.publish_topic().to_string(),
        qos: u8::from(p.qos()),
        device_trace: None,
        content_type: None,
        user_properties: Vec::new(),
        retain: p.packet().retain,
        response_topic: None,
        correlation_data: None,
        expiry_secs: None,
        payload_size: p.packet().payload_size,
    };
    match publish::publish(&conn.0, msg, Protocol::V3, p.read_all()).await? {
        Outcome::Stored => Ok(()),
        Outcome::InvalidTopic(topic) => Err(IngressError::InvalidTopic(topic)),
        Outcome::Untrusted(e) => Err(e),
        Outcome::NotAuthorized(topic) => Err(IngressError::NotAuthorized(topic)),
        Outcome::Refused(e) => Err(e.into()),
        Outcome::ArchiveFull(class) => Err(IngressError::ArchiveFull(class)),
        // 3.1.1 cannot refuse one message: a binding that refuses keeps it apart instead
        // (acknowledged, never forwarded), so this is only reached if that ever changes.
        Outcome::FormatInvalid(e) => Err(IngressError::Payload(e)),
    }
}

/// Control messages: count why a connection stops.
pub(crate) async fn control(conn: &v3::Session<Conn>, ctl: Control<IngressError>) -> Result<Option<v3::codec::Encoded>, IngressError> {
    count_stop(&conn.0, &ctl);
    Ok(None)
}

/// SUBSCRIBE (checked against the ACL per filter), UNSUBSCRIBE, PINGREQ, DISCONNECT, PUBREL.
pub(crate) async fn protocol(conn: &v3::Session<Conn>, msg: v3::ProtocolMessage) -> Result<v3::ProtocolMessageAck, IngressError> {
    Ok(match msg {
        v3::ProtocolMessage::Subscribe(mut s) => {
            for mut topic in s.iter_mut() {
                match protocol::subscribe(&conn.0, topic.topic(), topic.qos(), SubOptions::default()) {
                    Ok(qos) => topic.confirm(qos),
                    Err(_) => topic.fail(),
                }
            }
            // A persistent session's subscriptions are stored before the SUBACK; if they cannot
            // be, the connection closes (3.1.1 has no reason to give).
            conn.0.persist_subscriptions().await?;
            s.ack()
        }
        v3::ProtocolMessage::Unsubscribe(u) => {
            for filter in u.iter() {
                protocol::unsubscribe(&conn.0, filter);
            }
            conn.0.persist_subscriptions().await?;
            u.ack()
        }
        v3::ProtocolMessage::Ping(p) => p.ack(),
        v3::ProtocolMessage::Disconnect(d) => {
            // A clean end: the will is not published.
            conn.0.will.take();
            d.ack()
        }
        v3::ProtocolMessage::PublishRelease(r) => r.ack(),
    })
}
