//! The storage actor's limits: quota, what happens at the quota, TTL, batching.

use std::time::Duration;

/// What to do when an append would exceed the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse the new message (v5 PUBACK 0x97, v3 no PUBACK).
    Reject,
    /// Delete the oldest stored messages to make room (counted as `reason="quota"`).
    DropOldest,
}

impl Overflow {
    /// The config value: `reject` or `drop_oldest`.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Reject => "reject",
            Overflow::DropOldest => "drop_oldest",
        }
    }
}

/// Limits and switches of the storage actor.
#[derive(Debug, Clone)]
pub struct StoragePolicy {
    /// Most records kept at once.
    pub quota_messages: u64,
    /// Most encoded bytes kept at once.
    pub quota_bytes: u64,
    /// What happens at the quota.
    pub overflow: Overflow,
    /// Records older than this are dropped (counted as `reason="ttl"`); `None` keeps them.
    pub ttl: Option<Duration>,
    /// Most operations in one write transaction.
    pub max_batch: usize,
    /// `false` commits every append on its own (for the benchmark's comparison only).
    pub group_commit: bool,
    /// Most records kept apart in `rejected` (failed their schema); past it the oldest goes
    /// (counted as `reason="rejected_overflow"`).
    pub rejected_max: u64,
    /// Most encoded bytes kept apart in `rejected`; past it the oldest go (the same way).
    pub rejected_max_bytes: u64,
    /// Most retained topics; a retained publish to a new topic beyond it is refused.
    pub retained_max: u64,
    /// Most encoded bytes of retained messages; a retained publish beyond it is refused.
    pub retained_max_bytes: u64,
    /// Most deliveries queued for one persistent session; past it new ones are not queued
    /// (counted as `gateway_deliveries_dropped_total{reason="session_full"}`).
    pub session_max_queued: u64,
}
