//! The MQTT bridge's downlink: messages the upstream broker sends for the bridge's `downlink`
//! subscriptions are published locally (`crate::routing::inject`): the topic without the
//! sink's `topic_prefix` (the uplink's mapping, reversed), checked against the ACL as the
//! downlink identity, stored like a device's publish and delivered to local subscribers.

use std::sync::{Arc, OnceLock};

use edge_gateway_actors::slot::ActorSlot;
use edge_gateway_actors::storage::{AppendError, StorageMsg};
use ntex_bytes::Bytes;
use ntex_mqtt::QoS;
use ntex_mqtt::v5::codec::Publish;

use crate::routing::inject::{self, InjectError};
use crate::routing::{Message, Router};
use crate::throttle::Throttle;

/// What a bridge subscribes to upstream, and where it delivers.
pub struct Downlink {
    /// Upstream topic filters, subscribed at QoS 1.
    pub filters: Vec<String>,
    /// The identity the messages are published as (ACL).
    pub identity: String,
    /// The local broker, once the gateway has started it.
    target: OnceLock<(Arc<Router>, ActorSlot<StorageMsg>)>,
}

impl Downlink {
    /// A downlink that delivers nothing until [`Downlink::attach`].
    pub fn new(filters: Vec<String>, identity: String) -> Self {
        Self { filters, identity, target: OnceLock::new() }
    }

    /// Deliver into this router through this storage actor from now on.
    pub fn attach(&self, router: Arc<Router>, storage: ActorSlot<StorageMsg>) {
        let _ = self.target.set((router, storage));
    }

    /// Publish one upstream message locally (refusals are logged, once a second at most).
    pub(super) async fn deliver(&self, prefix: &str, p: &Publish, payload: Bytes) -> Taken {
        let Some((router, storage)) = self.target.get() else { return Taken::Retry("the local broker is not attached yet".into()) };
        let upstream = &p.topic;
        let topic = upstream.strip_prefix(prefix).unwrap_or(upstream);
        if topic.is_empty() || topic.contains(['+', '#', '\0']) {
            warn(upstream, "not a topic name after the prefix");
            return Taken::Handled;
        }
        let props = &p.properties;
        let message = Message {
            topic: topic.into(),
            payload,
            qos: if p.qos == QoS::AtMostOnce { 0 } else { 1 },
            retain: p.retain,
            content_type: props.content_type.clone(),
            user_properties: props.user_properties.clone(),
            response_topic: props.response_topic.clone(),
            correlation_data: props.correlation_data.clone(),
            expires_at: props
                .message_expiry_interval
                .map(|s| std::time::Instant::now() + std::time::Duration::from_secs(u64::from(s.get()))),
        };
        match inject::publish(router, storage, &self.identity, message).await {
            Ok(_) => Taken::Handled,
            // Refused for good (the ACL, the quota or retained bound with `reject`): like a
            // device's refused publish, acknowledged, or it would come back for ever.
            Err(
                e @ (InjectError::NotAuthorized { .. }
                | InjectError::ArchiveFull(_)
                | InjectError::Store(AppendError::QuotaExceeded | AppendError::RetainedFull)),
            ) => {
                warn(upstream, &e.to_string());
                Taken::Handled
            }
            // Not stored (a failed commit, the storage actor restarting or stopping): not
            // acknowledged, so the upstream sends it again.
            Err(e) => Taken::Retry(e.to_string()),
        }
    }
}

/// What became of one downlink message.
pub(super) enum Taken {
    /// Stored, or refused for good: acknowledge it upstream.
    Handled,
    /// Not stored for now (why): leave it unacknowledged for the upstream to send again.
    Retry(String),
}

fn warn(topic: &str, why: &str) {
    if REFUSALS.allow() {
        tracing::warn!(topic = ?crate::ingress::clip(topic), why, "Downlink message from the upstream broker not delivered (more this second are not logged).");
    }
}

/// Downlink refusals: one WARN line per second.
static REFUSALS: Throttle = Throttle::new();
