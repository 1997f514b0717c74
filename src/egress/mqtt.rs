//! The MQTT bridge sink (`kind = "mqtt"`): stored messages published to an upstream MQTT 5
//! broker, QoS 1, the whole batch in flight at once; the forwarder's cursor moves only after
//! the upstream acknowledged every message of the batch. With `downlink` filters, the bridge
//! also subscribes upstream and hands what arrives to the local broker (`downlink.rs`).
//!
//! Each message goes to `topic_prefix` + its topic, with its payload, content type and user
//! properties, plus the user properties `idempotency-key` (its key), `device` (the identity that
//! sent it) and, when traced, `traceparent`. A batch that fails (connection lost, timeout) is
//! resent whole on a fresh connection, under the same keys: upstream consumers deduplicate by
//! `idempotency-key`. The connection is kept between batches (its event loop runs in a task of
//! its own) and dropped after any failure, so no acknowledgement of an earlier attempt is ever
//! counted for a later one.
//!
//! Not yet (issue 15): TLS, topic rewriting beyond a prefix.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use edge_gateway_actors::forwarder::{DeliveryError, Sink};
use edge_gateway_actors::metrics::DeliveryKind;
use edge_gateway_actors::record::Record;
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, ConnectReturnCode, Packet, PubAckReason, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::{Mutex, mpsc};

use super::downlink::Downlink;

/// A bridge to one upstream broker.
pub struct MqttSink {
    host: String,
    port: u16,
    client_id: String,
    topic_prefix: String,
    timeout: Duration,
    /// Upstream subscriptions delivered locally, if configured.
    downlink: Option<Arc<Downlink>>,
    /// The open connection, between batches.
    link: Arc<Mutex<Option<Link>>>,
}

/// One connection: the client, what its event loop reports about publishes, and the loop.
struct Link {
    client: AsyncClient,
    reports: mpsc::UnboundedReceiver<Report>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the event loop saw of the bridge's own publishes.
enum Report {
    /// A PUBLISH went out with this packet id.
    Sent(u16),
    /// The upstream acknowledged this packet id.
    Acked(u16, PubAckReason),
    /// The connection failed; the loop has ended.
    Failed(String),
}

impl MqttSink {
    /// A sink publishing to `host:port` as `client_id`; nothing is connected until the first
    /// batch (or, with a downlink, until the gateway has started: [`MqttSink::keep_connected`]).
    pub fn new(host: &str, port: u16, client_id: &str, topic_prefix: &str, timeout: Duration, downlink: Option<Arc<Downlink>>) -> Self {
        Self {
            host: host.to_string(),
            port,
            client_id: client_id.to_string(),
            topic_prefix: topic_prefix.to_string(),
            timeout,
            downlink,
            link: Arc::new(Mutex::new(None)),
        }
    }

    async fn connect(&self) -> Result<Link, DeliveryError> {
        let mut options = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        options.set_keep_alive(Duration::from_secs(30));
        // A batch is many small publishes: each goes out at once (no Nagle delay).
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        if self.downlink.is_some() {
            // A persistent upstream session: the upstream keeps the subscriptions and queues what
            // comes for them while the bridge is away; each is acknowledged after its commit.
            options.set_clean_start(false).set_manual_acks(true);
            options.set_connect_properties(ConnectProperties {
                session_expiry_interval: Some(DOWNLINK_SESSION_SECS),
                ..ConnectProperties::new()
            });
        } else {
            options.set_clean_start(true);
        }
        let (client, mut events) = AsyncClient::new(options, 1000);
        loop {
            match events.poll().await.map_err(|e| transient(DeliveryKind::Connect, e))? {
                Event::Incoming(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => break,
                Event::Incoming(Packet::ConnAck(ack)) => {
                    return Err(transient(DeliveryKind::Connect, format!("upstream refused the connection: {:?}", ack.code)));
                }
                _ => continue,
            }
        }
        if let Some(d) = &self.downlink {
            for filter in &d.filters {
                client.try_subscribe(filter.clone(), QoS::AtLeastOnce).map_err(|e| transient(DeliveryKind::Connect, e))?;
            }
        }
        let (tx, reports) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_events(events, client.clone(), tx, self.downlink.clone(), self.topic_prefix.clone()));
        Ok(Link { client, reports, task })
    }

    /// Publish the batch and wait for every acknowledgement on `link` (opened if needed).
    async fn attempt(&self, link: &mut Option<Link>, batch: &[Record]) -> Result<(), DeliveryError> {
        if link.as_ref().is_none_or(|l| l.task.is_finished()) {
            *link = Some(self.connect().await?);
        }
        let Some(Link { client, reports, .. }) = link.as_mut() else { return Err(transient(DeliveryKind::Connect, "no connection")) };
        let n = batch.len();
        let publisher = client.clone();
        let messages: Vec<(String, Vec<u8>, PublishProperties)> = batch.iter().map(|r| self.message(r)).collect();
        // The requests go through rumqttc's channel, drained by the event loop's task.
        let publishing = tokio::spawn(async move {
            for (topic, payload, properties) in messages {
                publisher.publish_with_properties(topic, QoS::AtLeastOnce, false, payload, properties).await?;
            }
            Ok::<_, rumqttc::v5::ClientError>(())
        });
        let (mut in_flight, mut acked) = (HashSet::new(), 0);
        while acked < n {
            match reports.recv().await {
                Some(Report::Sent(pkid)) => {
                    in_flight.insert(pkid);
                }
                Some(Report::Acked(pkid, reason)) if in_flight.remove(&pkid) => match reason {
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers => acked += 1,
                    PubAckReason::NotAuthorized | PubAckReason::TopicNameInvalid | PubAckReason::PayloadFormatInvalid => {
                        return Err(DeliveryError::Rejected { detail: format!("upstream refused a message: {reason:?}") });
                    }
                    other => return Err(transient(DeliveryKind::Io, format!("upstream PUBACK {other:?}"))),
                },
                Some(Report::Acked(..)) => {}
                Some(Report::Failed(e)) => return Err(transient(DeliveryKind::Io, e)),
                None => return Err(transient(DeliveryKind::Io, "the connection's event loop ended")),
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

    /// Deliver the downlink into this router through this storage actor, and keep a connection
    /// up from now on.
    pub fn attach(
        self: &Arc<Self>,
        router: Arc<crate::routing::Router>,
        storage: edge_gateway_actors::slot::ActorSlot<edge_gateway_actors::storage::StorageMsg>,
    ) {
        if let Some(d) = &self.downlink {
            d.attach(router, storage);
        }
        self.keep_connected();
    }

    /// With a downlink: keep a connection up even while there is nothing to forward, checking
    /// every second (a task that runs for the life of the gateway's runtime).
    fn keep_connected(self: &Arc<Self>) {
        if self.downlink.is_none() {
            return;
        }
        let sink = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(sink) = sink.upgrade() else { return };
                let mut link = sink.link.lock().await;
                if link.as_ref().is_none_or(|l| l.task.is_finished()) {
                    *link = tokio::time::timeout(sink.timeout, sink.connect()).await.ok().and_then(Result::ok);
                }
            }
        });
    }
}

/// How long the upstream keeps the bridge's session (and its downlink messages) while the
/// bridge is away: a day.
const DOWNLINK_SESSION_SECS: u32 = 86_400;

/// The connection's event loop: reports about the bridge's publishes, and downlink messages
/// handed to the local broker one at a time (each acknowledged upstream after its commit; one
/// that is refused locally is acknowledged too, or it would come back for ever).
async fn run_events(
    mut events: EventLoop,
    client: AsyncClient,
    tx: mpsc::UnboundedSender<Report>,
    downlink: Option<Arc<Downlink>>,
    prefix: String,
) {
    loop {
        match events.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let _ = tx.send(Report::Sent(pkid));
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let _ = tx.send(Report::Acked(ack.pkid, ack.reason));
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let taken = match &downlink {
                    Some(d) => d.deliver(&prefix, &p).await,
                    None => super::downlink::Taken::Handled,
                };
                match taken {
                    super::downlink::Taken::Handled => {
                        if p.qos != QoS::AtMostOnce {
                            let _ = client.try_ack(&p);
                        }
                    }
                    // The upstream resends an unacknowledged message only when the session
                    // resumes: end this connection (the bridge reconnects within a second).
                    super::downlink::Taken::Retry(why) => {
                        tracing::warn!(topic = ?crate::ingress::clip(&String::from_utf8_lossy(&p.topic)), why, "A downlink message could not be stored; not acknowledged, reconnecting to receive it again.");
                        let _ = tx.send(Report::Failed(format!("a downlink message could not be stored: {why}")));
                        return;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Report::Failed(e.to_string()));
                return;
            }
        }
    }
}

fn transient(kind: DeliveryKind, detail: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Transient { kind, detail: detail.to_string() }
}

#[async_trait]
impl Sink for MqttSink {
    async fn deliver(&self, _batch_key: &str, batch: &[Record]) -> Result<(), DeliveryError> {
        let mut link = self.link.lock().await;
        let result = match tokio::time::timeout(self.timeout, self.attempt(&mut link, batch)).await {
            Ok(result) => result,
            Err(_) => Err(transient(DeliveryKind::Timeout, format!("no acknowledgement of the whole batch within {:?}", self.timeout))),
        };
        if result.is_err() {
            // A fresh connection for the next attempt: nothing of this one is counted then.
            *link = None;
        }
        result
    }
}
