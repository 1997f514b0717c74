//! The MQTT bridge sink (`kind = "mqtt"`): stored messages published to an upstream MQTT 5
//! broker (`mqtt://` plain, `mqtts://` TLS or mTLS with the sink's rotated certificates), QoS 1,
//! as many in flight as the upstream's receive maximum allows, written in runs of packets; the
//! forwarder's cursor moves only after the upstream acknowledged every message of the batch.
//! With `downlink` filters, the bridge also subscribes upstream and hands what arrives to the
//! local broker (`../downlink.rs`).
//!
//! Each message goes to the topic its `topic_rewrite` rules give (`topics.rs`), else to
//! `topic_prefix` + its topic, with its payload, content type and user
//! properties, plus the user properties `idempotency-key` (its key), `device` (the identity that
//! sent it), `topic` (its topic as sent) and, when traced, `traceparent`. A batch that fails (connection lost, timeout) is
//! resent whole on a fresh connection, under the same keys: upstream consumers deduplicate by
//! `idempotency-key`. The connection is kept between batches (a task of its own owns it,
//! `link.rs`) and dropped after any failure, so no acknowledgement of an earlier attempt is ever
//! counted for a later one.

mod link;
mod reader;
pub mod topics;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use edge_gateway_actors::forwarder::{DeliveryError, Sink};
use edge_gateway_actors::metrics::DeliveryKind;
use edge_gateway_actors::record::Record;
use ntex_bytes::{BytePages, Bytes};
use ntex_codec::Encoder;
use ntex_mqtt::QoS;
use ntex_mqtt::v5::codec::{Codec, Encoded, Publish, PublishAckReason, PublishProperties};
use tokio::sync::Mutex;

use super::downlink::Downlink;
use link::{Link, LinkError, Report, Target};

pub use link::Target as BridgeTarget;

/// A bridge to one upstream broker.
pub struct MqttSink {
    target: Target,
    topics: topics::TopicMap,
    timeout: Duration,
    /// Upstream subscriptions delivered locally, if configured.
    downlink: Option<Arc<Downlink>>,
    /// The open connection, between batches.
    link: Arc<Mutex<Option<Link>>>,
}

impl MqttSink {
    /// A sink publishing to `target`; nothing is connected until the first batch (or, with a
    /// downlink, until the gateway has started: [`MqttSink::keep_connected`]).
    pub fn new(mut target: Target, topics: topics::TopicMap, timeout: Duration, downlink: Option<Arc<Downlink>>) -> Self {
        // A persistent upstream session: the upstream keeps the subscriptions and queues what
        // comes for them while the bridge is away; each is acknowledged after its commit.
        target.session_secs = downlink.is_some().then_some(DOWNLINK_SESSION_SECS);
        Self { target, topics, timeout, downlink, link: Arc::new(Mutex::new(None)) }
    }

    async fn connect(&self) -> Result<Link, DeliveryError> {
        link::open(&self.target, self.downlink.clone(), self.topics.prefix.clone())
            .await
            .map_err(|e: LinkError| transient(DeliveryKind::Connect, e))
    }

    /// Publish the batch and wait for every acknowledgement on `link` (opened if needed): the
    /// first `window` messages in one write, then one more for each acknowledgement, written
    /// together with the others that the same read freed.
    async fn attempt(&self, link: &mut Option<Link>, batch: &[Record]) -> Result<(), DeliveryError> {
        if link.as_ref().is_none_or(|l| l.task.is_finished()) {
            *link = Some(self.connect().await?);
        }
        let Some(l) = link.as_mut() else { return Err(transient(DeliveryKind::Connect, "no connection")) };
        let (mut in_flight, mut sent, mut acked, mut unheard) = (HashSet::new(), 0, 0, 0);
        let mut free = l.window.max(1);
        while acked < batch.len() {
            if free > 0 && sent < batch.len() {
                let upto = (sent + free).min(batch.len());
                let mut pages = BytePages::default();
                let codec = Codec::new();
                if l.max_packet > 0 {
                    codec.set_max_outbound_size(l.max_packet);
                }
                for r in &batch[sent..upto] {
                    let id = l.packet_id();
                    let (publish, payload) = self.message(r, id);
                    codec.encodev(Encoded::Publish(publish, Some(payload)), &mut pages).map_err(|e| DeliveryError::Rejected {
                        detail: format!("message {} cannot go upstream: {e:?} (upstream maximum packet size {})", r.key, l.max_packet),
                    })?;
                    in_flight.insert(id.get());
                }
                free -= upto - sent;
                sent = upto;
                l.out.send(pages.freeze()).map_err(|_| transient(DeliveryKind::Io, "the connection's task ended"))?;
            }
            let mut report = l.reports.recv().await;
            loop {
                match report {
                    Some(Report::Acked(id, reason)) if in_flight.remove(&id) => {
                        free += 1;
                        match reason {
                            PublishAckReason::Success => acked += 1,
                            PublishAckReason::NoMatchingSubscribers => {
                                // Accepted, and dropped upstream: nobody there subscribes to it.
                                acked += 1;
                                unheard += 1;
                            }
                            PublishAckReason::NotAuthorized
                            | PublishAckReason::TopicNameInvalid
                            | PublishAckReason::PayloadFormatInvalid => {
                                return Err(DeliveryError::Rejected { detail: format!("upstream refused a message: {reason:?}") });
                            }
                            other => return Err(transient(DeliveryKind::Io, format!("upstream PUBACK {other:?}"))),
                        }
                    }
                    Some(Report::Acked(..)) => {}
                    Some(Report::Failed(e)) => return Err(transient(DeliveryKind::Io, e)),
                    None => return Err(transient(DeliveryKind::Io, "the connection's task ended")),
                }
                // Every report already here before writing more.
                match l.reports.try_recv() {
                    Ok(next) => report = Some(next),
                    Err(_) => break,
                }
            }
        }
        if unheard > 0 && NO_SUBSCRIBERS.allow() {
            tracing::warn!(
                messages = unheard,
                of = batch.len(),
                "The upstream broker accepted messages that no subscriber there takes (PUBACK 0x10): they are delivered, and dropped upstream (more this second are not logged)."
            );
        }
        Ok(())
    }

    /// One record as its upstream PUBLISH and payload.
    fn message(&self, r: &Record, id: std::num::NonZeroU16) -> (Publish, Bytes) {
        let mut user_properties: Vec<(ntex_bytes::ByteString, ntex_bytes::ByteString)> =
            r.user_properties.iter().map(|(k, v)| (k.as_str().into(), v.as_str().into())).collect();
        user_properties.push(("idempotency-key".into(), r.key.as_str().into()));
        user_properties.push(("device".into(), r.device.as_str().into()));
        // The topic as the device sent it (the upstream topic has a prefix or a rewrite).
        user_properties.push(("topic".into(), r.topic.as_str().into()));
        if let Some(t) = &r.trace {
            user_properties.push(("traceparent".into(), crate::telemetry::traceparent::format_traceparent(t).into()));
        }
        let publish = Publish {
            dup: false,
            retain: false,
            qos: QoS::AtLeastOnce,
            packet_id: Some(id),
            topic: self.topics.upstream(&r.topic).into(),
            payload_size: r.payload.len() as u32,
            properties: PublishProperties {
                content_type: r.content_type.as_deref().map(Into::into),
                user_properties,
                ..PublishProperties::default()
            },
        };
        (publish, Bytes::copy_from_slice(&r.payload))
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

/// Batches with PUBACK 0x10 (no matching subscribers): one WARN line per second.
static NO_SUBSCRIBERS: crate::throttle::Throttle = crate::throttle::Throttle::new();

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
