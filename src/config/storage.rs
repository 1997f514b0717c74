//! `[storage]` (the engine, quota, overflow, TTL, batching) and `[schemas]` (the registry
//! folder and the bounds of the rejected table, which the storage actor keeps).

use std::path::PathBuf;
use std::time::Duration;

use edge_gateway_actors::storage::{BackendKind, Overflow, StoragePolicy};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSchemas {
    dir: String,
    rejected_max: u64,
    rejected_max_bytes: u64,
}

impl Default for RawSchemas {
    fn default() -> Self {
        Self { dir: String::new(), rejected_max: 10_000, rejected_max_bytes: 64 << 20 }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStorage {
    pub(super) backend: String,
    quota_messages: u64,
    quota_bytes: u64,
    overflow: String,
    ttl_secs: u64,
    max_batch: usize,
    group_commit: bool,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            backend: "redb".into(),
            quota_messages: 1_000_000,
            quota_bytes: 1 << 30,
            overflow: "reject".into(),
            ttl_secs: 0,
            max_batch: 4096,
            group_commit: true,
        }
    }
}

impl RawStorage {
    pub(super) fn backend(&self, e: &mut Vec<String>) -> BackendKind {
        match BackendKind::ALL.into_iter().find(|k| k.as_str() == self.backend) {
            Some(kind) => kind,
            None => {
                e.push(format!("storage.backend: \"{}\" is not one of \"redb\", \"sqlite\"", self.backend));
                BackendKind::Redb
            }
        }
    }

    pub(super) fn validate(&self, e: &mut Vec<String>) -> StoragePolicy {
        if self.quota_messages == 0 {
            e.push("storage.quota_messages: must be > 0".into());
        }
        if self.quota_bytes < 1024 {
            e.push("storage.quota_bytes: must be >= 1024".into());
        }
        if self.max_batch == 0 || self.max_batch > 65_536 {
            e.push("storage.max_batch: must be between 1 and 65536".into());
        }
        let overflow = match self.overflow.as_str() {
            "reject" => Overflow::Reject,
            "drop_oldest" => Overflow::DropOldest,
            other => {
                e.push(format!("storage.overflow: \"{other}\" is not one of \"reject\", \"drop_oldest\""));
                Overflow::Reject
            }
        };
        StoragePolicy {
            quota_messages: self.quota_messages,
            quota_bytes: self.quota_bytes,
            overflow,
            ttl: (self.ttl_secs > 0).then(|| Duration::from_secs(self.ttl_secs)),
            max_batch: self.max_batch,
            group_commit: self.group_commit,
            rejected_max: 10_000,
            rejected_max_bytes: 64 << 20,
            retained_max: 10_000,
            retained_max_bytes: 64 << 20,
            session_max_queued: 1000,
        }
    }
}

impl RawSchemas {
    /// The registry folder, if any; the rejected table's bounds go into the storage policy.
    pub(super) fn validate(&self, max_packet_size: u32, storage: &mut StoragePolicy, e: &mut Vec<String>) -> Option<PathBuf> {
        if !(1..=10_000_000).contains(&self.rejected_max) {
            e.push("schemas.rejected_max: must be between 1 and 10000000".into());
        }
        if !self.dir.is_empty() && self.rejected_max_bytes < u64::from(max_packet_size) {
            e.push(format!("schemas.rejected_max_bytes: must be at least mqtt.max_packet_size ({max_packet_size})"));
        }
        storage.rejected_max = self.rejected_max;
        storage.rejected_max_bytes = self.rejected_max_bytes;
        (!self.dir.is_empty()).then(|| PathBuf::from(&self.dir))
    }
}
