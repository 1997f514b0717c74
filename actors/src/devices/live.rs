//! Open sessions per identity, kept by ingress itself (the device health actor reads it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::DeviceStatus;

/// Open sessions per identity, kept by ingress itself: a restarted device health actor starts
/// from it instead of believing every device offline. A hash map: every CONNECT looks its
/// identity up (a B-tree of 10,000 identities with a common prefix took ~30 string comparisons).
#[derive(Clone, Default)]
pub struct LiveSessions(Arc<std::sync::Mutex<HashMap<String, u32>>>);

impl LiveSessions {
    /// A session of `identity` opened (its key is allocated only the first time).
    pub fn opened(&self, identity: &str) {
        let mut map = self.lock();
        match map.get_mut(identity) {
            Some(n) => *n += 1,
            None => {
                map.insert(identity.to_string(), 1);
            }
        }
    }

    /// A session of `identity` closed. The table gives memory back once three quarters of it
    /// are empty (a hash map keeps its largest size: after a storm of 100,000 connections, ~4 MB).
    pub fn closed(&self, identity: &str) {
        let mut map = self.lock();
        if let Some(n) = map.get_mut(identity) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(identity);
                if map.capacity() > 1024 && map.len() < map.capacity() / 4 {
                    let len = map.len();
                    map.shrink_to(len * 2);
                }
            }
        }
    }

    /// Open sessions of `identity`.
    pub fn count(&self, identity: &str) -> u32 {
        self.lock().get(identity).copied().unwrap_or(0)
    }

    /// Set every device's session count from the table, adding the open identities `devices`
    /// does not hold yet (first seen `now`, in ms); the identities added.
    ///
    /// Under the table's lock, which every CONNECT and every closed connection takes: one hash
    /// look-up per device, and the open identities are visited only when some are missing from
    /// `devices` (not a B-tree search of string keys per open identity: 1.45 against 0.27 ms
    /// for 10,000 devices, 17 against 4 ms for 60,000, once a second). Nor is the table copied.
    pub(super) fn count_into(&self, devices: &mut BTreeMap<String, DeviceStatus>, now: u64) -> Vec<String> {
        let live = self.lock();
        let mut known = 0;
        for d in devices.values_mut() {
            d.sessions = live.get(d.identity.as_str()).copied().unwrap_or(0);
            // An identity is in the table only while it has a session.
            known += usize::from(d.sessions > 0);
        }
        if known == live.len() {
            return Vec::new();
        }
        let mut added = Vec::new();
        for (identity, &sessions) in live.iter() {
            if devices.contains_key(identity) {
                continue;
            }
            let d = DeviceStatus {
                identity: identity.clone(),
                sessions,
                first_seen_ms: now,
                connected_at_ms: now,
                last_seen_ms: now,
                ..Default::default()
            };
            devices.insert(identity.clone(), d);
            added.push(identity.clone());
        }
        added
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
