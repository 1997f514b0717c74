//! The other direction: a task on a client's I/O thread that writes the messages routed to it
//! (`crate::routing`) as PUBLISH packets. Started at the client's first SUBSCRIBE, so a client
//! that only publishes costs nothing here; it ends when the connection's queue closes.
//!
//! QoS 1 goes out without waiting for each PUBACK, within the client's receive maximum
//! (ntex-mqtt's readiness); the packet ids and PUBACKs are ntex-mqtt's.

use std::num::NonZeroU32;

use ntex_mqtt::{v3, v5};
use tokio::sync::mpsc;

use crate::routing::Delivery;

/// Where a connection's outgoing packets are written.
#[derive(Clone)]
pub enum Outbound {
    /// MQTT 3.1.1.
    V3(v3::MqttSink),
    /// MQTT 5.
    V5(v5::MqttSink),
}

impl Outbound {
    /// Write the deliveries of `queue` until it closes or the connection does.
    pub(super) fn start(self, mut queue: mpsc::Receiver<Delivery>) {
        // Non-blocking QoS 1 sends need an acknowledgement callback; ntex-mqtt matches the ids.
        match &self {
            Outbound::V3(s) => s.publish_ack_cb(|_, _| {}),
            Outbound::V5(s) => s.publish_ack_cb(|_, _| {}),
        }
        ntex_rt::spawn(async move {
            while let Some(d) = queue.recv().await {
                if !self.send(d).await {
                    break;
                }
            }
        });
    }

    /// Write one delivery; `false` when the connection is gone.
    async fn send(&self, d: Delivery) -> bool {
        let m = &d.message;
        match self {
            Outbound::V3(sink) => {
                let mut publish = sink.publish(m.topic.clone());
                if d.retain {
                    publish = publish.retain();
                }
                if d.qos == 0 {
                    return publish.send_at_most_once(m.payload.clone()).is_ok();
                }
                sink.ready().await && publish.send_at_least_once_no_block(m.payload.clone()).is_ok()
            }
            Outbound::V5(sink) => {
                let publish = sink.publish(m.topic.clone()).retain(d.retain).properties(|p| {
                    p.content_type = m.content_type.clone();
                    p.user_properties = m.user_properties.clone();
                    p.response_topic = m.response_topic.clone();
                    p.correlation_data = m.correlation_data.clone();
                    p.subscription_ids = d.subscription_ids.iter().filter_map(|id| NonZeroU32::new(*id)).collect();
                });
                if d.qos == 0 {
                    return publish.send_at_most_once(m.payload.clone()).is_ok();
                }
                sink.ready().await && publish.send_at_least_once_no_block(m.payload.clone()).is_ok()
            }
        }
    }
}
