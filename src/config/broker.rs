//! `[broker]`: local routing between clients (subscriptions, retained messages, persistent
//! sessions) and the downlink endpoint's identity.

use edge_gateway_actors::storage::StoragePolicy;
use serde::Deserialize;

/// The local broker's settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Messages waiting to be written to one subscriber; more are dropped and counted.
    pub max_queued: usize,
    /// The identity `POST /api/publish` publishes as (checked against the ACL like a device).
    pub api_identity: String,
    /// The longest an offline persistent session is kept, in seconds (0: as long as the client
    /// asked; an MQTT 3.1.1 session with clean session 0 never expires by itself).
    pub session_expiry_max_secs: u32,
    /// Most persistent sessions (online and offline); a CONNECT that would start another is
    /// refused.
    pub max_sessions: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBroker {
    retained_max: u64,
    retained_max_bytes: u64,
    max_queued: usize,
    api_identity: String,
    session_max_queued: u64,
    session_expiry_max_secs: u32,
    max_sessions: usize,
}

impl Default for RawBroker {
    fn default() -> Self {
        Self {
            retained_max: 10_000,
            retained_max_bytes: 64 << 20,
            max_queued: 1000,
            api_identity: "api".into(),
            session_max_queued: 1000,
            session_expiry_max_secs: 0,
            max_sessions: 10_000,
        }
    }
}

impl RawBroker {
    /// The broker's settings; the retained bounds go into the storage policy (the store keeps them).
    pub(super) fn validate(&self, max_packet_size: u32, storage: &mut StoragePolicy, e: &mut Vec<String>) -> BrokerConfig {
        if !(1..=10_000_000).contains(&self.retained_max) {
            e.push("broker.retained_max: must be between 1 and 10000000".into());
        }
        if self.retained_max_bytes < u64::from(max_packet_size) {
            e.push(format!("broker.retained_max_bytes: must be at least mqtt.max_packet_size ({max_packet_size})"));
        }
        if !(1..=1_000_000).contains(&self.max_queued) {
            e.push("broker.max_queued: must be between 1 and 1000000".into());
        }
        if !(1..=1_000_000).contains(&self.max_sessions) {
            e.push("broker.max_sessions: must be between 1 and 1000000".into());
        }
        if !(1..=10_000_000).contains(&self.session_max_queued) {
            e.push("broker.session_max_queued: must be between 1 and 10000000".into());
        }
        let id = &self.api_identity;
        if id.is_empty() || id.len() > 256 || id.starts_with('$') || id.contains(['/', '+', '#', '\0']) {
            e.push(format!("broker.api_identity: \"{id}\" must be one topic level (no '/', '+', '#', NUL, no leading '$')"));
        }
        storage.retained_max = self.retained_max;
        storage.retained_max_bytes = self.retained_max_bytes;
        storage.session_max_queued = self.session_max_queued;
        BrokerConfig {
            max_queued: self.max_queued,
            api_identity: id.clone(),
            session_expiry_max_secs: self.session_expiry_max_secs,
            max_sessions: self.max_sessions,
        }
    }
}
