//! MQTT 5: ntex-mqtt's v5 packets to the shared paths and back; refusals are reason codes.

use ntex_mqtt::{Control, v5};

use super::conn::Conn;
use super::deliver::Outbound;
use super::protocol::{self, SubOptions, SubRefusal, count_stop};
use super::publish::{self, Inbound, Outcome};
use super::session::{Admission, Hello, Will};
use super::{Ingress, IngressError, Protocol};
use crate::routing::Message;
use crate::routing::RetainHandling;
use crate::routing::sessions::SessionRequest;
use crate::telemetry::traceparent::parse_traceparent;
use crate::trust::auth::Refusal;

/// CONNECT: the shared admission, answered with a CONNACK (with the assigned client id when the
/// device sent none).
pub(crate) async fn connect(ingress: Ingress, c: v5::Connect) -> Result<v5::ConnectAck<Conn>, IngressError> {
    use v5::codec::ConnectAckReason as R;
    let pkt = c.packet();
    let assigned = pkt.client_id.is_empty();
    let sink = c.sink();
    // Topic aliases towards the client, as many as its CONNECT allows.
    let aliases = std::rc::Rc::new(std::cell::RefCell::new(super::aliases::Aliases::new(pkt.topic_alias_max)));
    let outbound = Outbound::V5(sink.clone(), aliases);
    let will = pkt.last_will.as_ref().map(|w| Will {
        message: Message {
            topic: w.topic.clone(),
            payload: w.message.clone(),
            qos: u8::from(w.qos),
            retain: w.retain,
            content_type: w.content_type.clone(),
            user_properties: w.user_properties.clone(),
            response_topic: w.response_topic.clone(),
            correlation_data: w.correlation_data.clone(),
            expires_at: None,
        },
        delay_secs: w.will_delay_interval_sec.unwrap_or(0),
        // Counted from when it is published (Will::published).
        expiry_secs: w.message_expiry_interval.map(|s| s.get()),
    });
    let asked_expiry = pkt.session_expiry_interval_secs;
    let session = SessionRequest { clean: pkt.clean_start, expiry_secs: asked_expiry };
    let hello = Hello { client_id: &pkt.client_id, username: pkt.username.as_deref(), password: pkt.password.as_deref(), will, session };
    let admission = ingress.admit(c.io(), hello, Protocol::V5, outbound, move || sink.close()).await;
    Ok(match admission {
        Admission::Accepted { conn, client_id, present } => {
            // broker.session_expiry_max_secs may shorten the interval asked for: the client is
            // told (MQTT 5 3.2.2.3.2).
            let granted = conn.0.ingress.router.granted_expiry(asked_expiry);
            conn.0.start_writer();
            c.ack(conn).with(|a| {
                a.session_present = present;
                if assigned {
                    a.assigned_client_id = Some(client_id.into());
                }
                if granted != asked_expiry {
                    a.session_expiry_interval_secs = Some(granted);
                }
            })
        }
        Admission::Refused(Refusal::ClientIdMismatch) => c.failed(R::ClientIdentifierNotValid),
        Admission::Refused(Refusal::BadPassword | Refusal::NoCredentials) => c.failed(R::BadUserNameOrPassword),
        Admission::Refused(_) => c.failed(R::NotAuthorized),
        Admission::Unavailable => c.failed(R::ServerUnavailable),
    })
}

/// PUBLISH: the PUBACK's reason code says what became of it (QoS 0 gets none: a refusal is
/// only counted and logged; a payload failing its schema is 0x99 with the first failing path
/// as the reason string). A revoked certificate closes the connection.
pub(crate) async fn publish(conn: &v5::Session<Conn>, p: v5::Publish) -> Result<v5::PublishAck, IngressError> {
    use v5::codec::PublishAckReason as R;
    let props = &p.packet().properties;
    let device_trace = props.user_properties.iter().find(|(k, _)| &**k == "traceparent").and_then(|(_, v)| parse_traceparent(v));
    let msg = Inbound {
        topic: p.publish_topic().to_string(),
        qos: u8::from(p.qos()),
        device_trace,
        content_type: props.content_type.as_ref().map(|s| s.to_string()),
        user_properties: props.user_properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        retain: p.packet().retain,
        response_topic: props.response_topic.clone(),
        correlation_data: props.correlation_data.clone(),
        expiry_secs: props.message_expiry_interval.map(|s| s.get()),
        payload_size: p.packet().payload_size,
    };
    let (qos1, qos2) = (msg.qos > 0, msg.qos == 2);
    let outcome = publish::publish(&conn.0, msg, Protocol::V5, p.read_all()).await?;
    if qos2 && !matches!(outcome, Outcome::Stored) {
        return Err(refuse_exactly_once(conn, outcome));
    }
    Ok(match outcome {
        Outcome::Stored => p.ack(),
        Outcome::InvalidTopic(_) => p.ack().reason_code(R::TopicNameInvalid),
        Outcome::Untrusted(e) => {
            // The session must not continue on a revoked certificate.
            conn.sink().close_with_reason(v5::codec::Disconnect::new(v5::codec::DisconnectReasonCode::NotAuthorized));
            return Err(e);
        }
        Outcome::NotAuthorized(_) => p.ack().reason_code(R::NotAuthorized),
        Outcome::FormatInvalid(first_error) => p.ack().reason_code(R::PayloadFormatInvalid).reason(first_error.into()),
        Outcome::Refused(_) if !qos1 => p.ack(),
        Outcome::Refused(edge_gateway_actors::storage::AppendError::QuotaExceeded) => p.ack().reason_code(R::QuotaExceeded),
        Outcome::Refused(edge_gateway_actors::storage::AppendError::RetainedFull) => {
            p.ack().reason_code(R::QuotaExceeded).reason("retained messages full (broker.retained_max)".into())
        }
        Outcome::Refused(_) => p.ack().reason_code(R::UnspecifiedError),
        Outcome::ArchiveFull(_) if !qos1 => p.ack(),
        Outcome::ArchiveFull(class) => p.ack().reason_code(R::QuotaExceeded).reason(format!("archive class {class} is full").into()),
    })
}

/// A refused QoS 2 publish closes the connection with the reason: an error PUBREC would keep
/// its packet id taken in ntex-mqtt (the client sends no PUBREL after one), and enough of them
/// would wedge the connection. The error closes it.
fn refuse_exactly_once(conn: &v5::Session<Conn>, outcome: Outcome) -> IngressError {
    use edge_gateway_actors::storage::AppendError;
    use v5::codec::DisconnectReasonCode as D;
    let (code, error) = match outcome {
        Outcome::InvalidTopic(topic) => (D::TopicNameInvalid, IngressError::InvalidTopic(topic)),
        Outcome::NotAuthorized(topic) => (D::NotAuthorized, IngressError::NotAuthorized(topic)),
        Outcome::FormatInvalid(why) => (D::PayloadFormatInvalid, IngressError::Payload(why)),
        Outcome::Untrusted(e) => (D::NotAuthorized, e),
        Outcome::Refused(e @ (AppendError::QuotaExceeded | AppendError::RetainedFull)) => (D::QuotaExceeded, e.into()),
        Outcome::Refused(e) => (D::UnspecifiedError, e.into()),
        Outcome::ArchiveFull(class) => (D::QuotaExceeded, IngressError::ArchiveFull(class)),
        Outcome::Stored => (D::NormalDisconnection, IngressError::Unit),
    };
    conn.sink().close_with_reason(v5::codec::Disconnect::new(code));
    error
}

/// Control messages: count why a connection stops.
pub(crate) async fn control(conn: &v5::Session<Conn>, ctl: Control<IngressError>) -> Result<Option<v5::codec::Encoded>, IngressError> {
    count_stop(&conn.0, &ctl);
    Ok(None)
}

/// SUBSCRIBE (checked against the ACL per filter), UNSUBSCRIBE, PINGREQ, DISCONNECT, PUBREL, AUTH.
pub(crate) async fn protocol(conn: &v5::Session<Conn>, msg: v5::ProtocolMessage) -> Result<v5::ProtocolMessageAck, IngressError> {
    Ok(match msg {
        v5::ProtocolMessage::Subscribe(mut s) => {
            use v5::codec::{RetainHandling as H, SubscribeAckReason as R};
            let id = s.packet().id.map(|id| id.get());
            for mut topic in s.iter_mut() {
                let o = *topic.options();
                let handling = match o.retain_handling {
                    H::AtSubscribe => RetainHandling::Send,
                    H::AtSubscribeNew => RetainHandling::SendIfNew,
                    H::NoAtSubscribe => RetainHandling::DontSend,
                };
                let opts = SubOptions { no_local: o.no_local, retain_as_published: o.retain_as_published, id, handling };
                match protocol::subscribe(&conn.0, topic.topic(), o.qos, opts) {
                    Ok(qos) => topic.confirm(qos),
                    Err(SubRefusal::NotAuthorized) => topic.fail(R::NotAuthorized),
                    Err(SubRefusal::InvalidFilter) => topic.fail(R::TopicFilterInvalid),
                }
            }
            // A persistent session's subscriptions are stored before the SUBACK.
            if let Err(e) = conn.0.persist_subscriptions().await {
                tracing::warn!(client_id = %conn.0.client_id, error = %e, "Cannot store the session's subscriptions; refusing them.");
                for mut topic in s.iter_mut() {
                    topic.fail(R::UnspecifiedError);
                }
            }
            s.ack()
        }
        v5::ProtocolMessage::Unsubscribe(mut u) => {
            for mut topic in u.iter_mut() {
                if protocol::unsubscribe(&conn.0, topic.topic()) {
                    topic.success();
                } else {
                    topic.fail(v5::codec::UnsubscribeAckReason::NoSubscriptionExisted);
                }
            }
            if let Err(e) = conn.0.persist_subscriptions().await {
                tracing::warn!(client_id = %conn.0.client_id, error = %e, "Cannot store the session's subscriptions after an UNSUBSCRIBE.");
                for mut topic in u.iter_mut() {
                    topic.fail(v5::codec::UnsubscribeAckReason::UnspecifiedError);
                }
            }
            u.ack()
        }
        v5::ProtocolMessage::Ping(p) => p.ack(),
        v5::ProtocolMessage::Disconnect(d) => {
            // A clean end takes the will back, unless the client asks for it (reason 0x04).
            if d.packet().reason_code != v5::codec::DisconnectReasonCode::DisconnectWithWillMessage {
                conn.0.will.take();
            }
            // A new session expiry interval (0: the session ends now).
            if let Some(secs) = d.packet().session_expiry_interval_secs
                && let Some(row) = conn.0.ingress.router.set_expiry(&conn.0.client_id, conn.0.conn_id, secs)
                && let Err(e) = conn.0.commit_session(edge_gateway_actors::storage::SessionChange::Put(row)).await
            {
                tracing::warn!(client_id = %conn.0.client_id, error = %e, "Cannot store the session expiry interval a DISCONNECT set.");
            }
            d.ack()
        }
        v5::ProtocolMessage::PublishRelease(r) => r.ack(),
        auth @ v5::ProtocolMessage::Auth(_) => {
            auth.disconnect_with(v5::codec::Disconnect::new(v5::codec::DisconnectReasonCode::BadAuthenticationMethod))
        }
    })
}
