//! The MQTT bridge sink (`kind = "mqtt"`): stored messages published to an upstream MQTT 5
//! broker, QoS 1, the whole batch in flight at once; the forwarder's cursor moves only after
//! the upstream acknowledged every message of the batch.
//!
//! Each message goes to `topic_prefix` + its topic, with its payload, content type and user
//! properties, plus the user properties `idempotency-key` (its key), `device` (the identity that
//! sent it) and, when traced, `traceparent`. A batch that fails (connection lost, timeout) is
//! resent whole on a fresh connection, under the same keys: upstream consumers deduplicate by
//! `idempotency-key`. The connection is kept between batches and dropped after any failure,
//! so no acknowledgement of an earlier attempt is ever counted for a later one.
//!
//! Not yet (issue 15): TLS, a persistent upstream session, topic rewriting beyond a prefix,
//! the downlink from upstream subscriptions.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use edge_gateway_actors::forwarder::{DeliveryError, Sink};
use edge_gateway_actors::metrics::DeliveryKind;
use edge_gateway_actors::record::Record;
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::Mutex;

/// A bridge to one upstream broker.
pub struct MqttSink {
    host: String,
    port: u16,
    client_id: String,
    topic_prefix: String,
    timeout: Duration,
    /// The open connection, between batches.
    connection: Mutex<Option<(AsyncClient, EventLoop)>>,
}

impl MqttSink {
    /// A sink publishing to `host:port` as `client_id`; nothing is connected until the first
    /// batch.
    pub fn new(host: &str, port: u16, client_id: &str, topic_prefix: &str, timeout: Duration) -> Self {
        Self {
            host: host.to_string(),
            port,
            client_id: client_id.to_string(),
            topic_prefix: topic_prefix.to_string(),
            timeout,
            connection: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<(AsyncClient, EventLoop), DeliveryError> {
        let mut options = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        options.set_keep_alive(Duration::from_secs(30)).set_clean_start(true);
        // A batch is many small publishes: each goes out at once (no Nagle delay).
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        let (client, mut events) = AsyncClient::new(options, 1000);
        loop {
            match events.poll().await.map_err(|e| transient(DeliveryKind::Connect, e))? {
                Event::Incoming(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => return Ok((client, events)),
                Event::Incoming(Packet::ConnAck(ack)) => {
                    return Err(transient(DeliveryKind::Connect, format!("upstream refused the connection: {:?}", ack.code)));
                }
                _ => continue,
            }
        }
    }

    /// Publish the batch and wait for every acknowledgement on `connection` (opened if needed).
    async fn attempt(&self, connection: &mut Option<(AsyncClient, EventLoop)>, batch: &[Record]) -> Result<(), DeliveryError> {
        if connection.is_none() {
            *connection = Some(self.connect().await?);
        }
        let Some((client, events)) = connection.as_mut() else { return Err(transient(DeliveryKind::Connect, "no connection")) };
        let messages: Vec<(String, Vec<u8>, PublishProperties)> = batch.iter().map(|r| self.message(r)).collect();
        let n = messages.len();
        let publisher = client.clone();
        // The requests go through rumqttc's channel, which only drains while the events are
        // polled below: publish from a task of their own.
        let publishing = tokio::spawn(async move {
            for (topic, payload, properties) in messages {
                publisher.publish_with_properties(topic, QoS::AtLeastOnce, false, payload, properties).await?;
            }
            Ok::<_, rumqttc::v5::ClientError>(())
        });
        let (mut in_flight, mut acked) = (HashSet::new(), 0);
        while acked < n {
            match events.poll().await.map_err(|e| transient(DeliveryKind::Io, e))? {
                Event::Outgoing(Outgoing::Publish(pkid)) => {
                    in_flight.insert(pkid);
                }
                Event::Incoming(Packet::PubAck(ack)) if in_flight.remove(&ack.pkid) => match ack.reason {
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers => acked += 1,
                    PubAckReason::NotAuthorized | PubAckReason::TopicNameInvalid | PubAckReason::PayloadFormatInvalid => {
                        return Err(DeliveryError::Rejected { detail: format!("upstream refused a message: {:?}", ack.reason) });
                    }
                    other => return Err(transient(DeliveryKind::Io, format!("upstream PUBACK {other:?}"))),
                },
                _ => {}
            }
        }
        match publishing.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(transient(DeliveryKind::Io, e)),
            Err(e) => Err(transient(DeliveryKind::Io, e)),
        }
    }

    /// One record as its upstream PUBLISH: topic, payload, properties.
    fn message(&self, r: &Record) -> (String, Vec<u8>, PublishProperties) {
        let mut user_properties = r.user_properties.clone();
        user_properties.push(("idempotency-key".into(), r.key.clone()));
        user_properties.push(("device".into(), r.device.clone()));
        if let Some(t) = &r.trace {
            user_properties.push(("traceparent".into(), crate::telemetry::traceparent::format_traceparent(t)));
        }
        let properties = PublishProperties { content_type: r.content_type.clone(), user_properties, ..Default::default() };
        (format!("{}{}", self.topic_prefix, r.topic), r.payload.clone(), properties)
    }
}

fn transient(kind: DeliveryKind, detail: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Transient { kind, detail: detail.to_string() }
}

#[async_trait]
impl Sink for MqttSink {
    async fn deliver(&self, _batch_key: &str, batch: &[Record]) -> Result<(), DeliveryError> {
        let mut connection = self.connection.lock().await;
        let result = match tokio::time::timeout(self.timeout, self.attempt(&mut connection, batch)).await {
            Ok(result) => result,
            Err(_) => Err(transient(DeliveryKind::Timeout, format!("no acknowledgement of the whole batch within {:?}", self.timeout))),
        };
        if result.is_err() {
            // A fresh connection for the next attempt: nothing of this one is counted then.
            *connection = None;
        }
        result
    }
}
