//! The other direction: a task on a client's I/O thread that writes the messages routed to it
//! (`crate::routing`) as PUBLISH packets. Started at the client's first SUBSCRIBE, so a client
//! that only publishes costs nothing here; it ends when the connection's queue closes.
//!
//! QoS 1 goes out without waiting for each PUBACK, within the client's receive maximum
//! (ntex-mqtt's readiness); QoS 2 as a task per message (PUBLISH, PUBREC, PUBREL, PUBCOMP),
//! started in order. The packet ids and acknowledgements are ntex-mqtt's.

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
    ($sink:expr, $publish:expr, $qos:expr, $payload:expr) => {
        match $qos {
            0 => $publish.send_at_most_once($payload).is_ok(),
            1 => $sink.ready().await && $publish.send_at_least_once_no_block($payload).is_ok(),
            _ => {
                let (publish, payload) = ($publish, $payload);
                exactly_once($sink.ready().await, async move {
                    if let Ok(received) = publish.send_exactly_once(payload).await {
                        let _ = received.release().await;
                    }
                })
            }
        }
    };
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

/// Start one QoS 2 exchange on this thread if the connection is still `open`.
fn exactly_once(open: bool, exchange: impl Future<Output = ()> + 'static) -> bool {
    if open {
        ntex_rt::spawn(exchange);
    }
    open
}
