//! The other direction: a task on a client's I/O thread that writes the messages routed to it
//! (`crate::routing`) as PUBLISH packets. Started at the client's first SUBSCRIBE, so a client
//! that only publishes costs nothing here; it ends when the connection's queue closes.
//!
//! QoS 1 goes out without waiting for each PUBACK, within the client's receive maximum
//! (ntex-mqtt's readiness); QoS 2 one exchange at a time (PUBLISH, PUBREC, PUBREL, PUBCOMP).
//! The packet ids and acknowledgements are ntex-mqtt's.

use std::num::NonZeroU32;

use ntex_mqtt::{v3, v5};
use prometheus_client::metrics::counter::Counter;
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

/// Send a v3 or v5 `publish` builder on `sink` at `qos` (their methods share names, not a
/// trait); `false` when the connection is gone.
macro_rules! send_at {
    ($sink:expr, $publish:expr, $qos:expr, $payload:expr) => {{
        // Wait for the client's receive maximum and the write buffer (`is_ready` again after
        // each wake-up: ntex-mqtt's non-blocking send asserts it).
        while !$sink.is_ready() {
            if !$sink.ready().await {
                return;
            }
        }
        let _ = match $qos {
            0 => $publish.send_at_most_once($payload),
            1 => $publish.send_at_least_once_no_block($payload),
            // One QoS 2 exchange at a time: ntex-mqtt keeps one pending release per connection.
            _ => match $publish.send_exactly_once($payload).await {
                Ok(received) => received.release().await,
                Err(e) => Err(e),
            },
        };
    }};
}

impl Outbound {
    /// Write the deliveries of `queue` until it closes or the connection does.
    pub(super) fn start(self, mut queue: mpsc::Receiver<Delivery>, expired: Counter) {
        // Non-blocking QoS 1 sends need an acknowledgement callback; ntex-mqtt matches the ids.
        match &self {
            Outbound::V3(s) => s.publish_ack_cb(|_, _| {}),
            Outbound::V5(s) => s.publish_ack_cb(|_, _| {}),
        }
        ntex_rt::spawn(async move {
            while let Some(d) = queue.recv().await {
                if d.message.expired() {
                    expired.inc();
                    continue;
                }
                // A message this client cannot take (over its maximum packet size) is skipped;
                // only a closed connection ends the writer.
                self.send(d).await;
                if !self.is_open() {
                    break;
                }
            }
        });
    }

    fn is_open(&self) -> bool {
        match self {
            Outbound::V3(s) => s.is_open(),
            Outbound::V5(s) => s.is_open(),
        }
    }

    /// Write one delivery (what fails, fails for this message only, or the connection is gone).
    async fn send(&self, d: Delivery) {
        let m = &d.message;
        match self {
            Outbound::V3(sink) => {
                let mut publish = sink.publish(m.topic.clone());
                if d.retain {
                    publish = publish.retain();
                }
                send_at!(sink, publish, d.qos, m.payload.clone())
            }
            Outbound::V5(sink) => {
                let publish = sink.publish(m.topic.clone()).retain(d.retain).properties(|p| {
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
                send_at!(sink, publish, d.qos, m.payload.clone())
            }
        }
    }
}
