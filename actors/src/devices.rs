//! The device health actor: who is online, offline or silent, since when, and how much each
//! device sent, kept across restarts.
//!
//! Ingress reports sessions opening and closing and, in batches, messages seen (at most one
//! report per connection per second). The actor keeps one [`DeviceStatus`] per identity, answers
//! the local API, sets the `gateway_devices{state}` gauges, and every `persist_every` writes the
//! records that changed to its own store file (`devices.redb` or `devices.sqlite`, as
//! `storage.backend`; table `devices`: key = identity, value = the JSON of [`DeviceStatus`]):
//! at most one small transaction per round, in a file of its own, so it never contends with the
//! message store's writer. A device is *silent* when it
//! is connected but has sent nothing for `silent_after`. Session counts come from ingress's own
//! table of open sessions ([`LiveSessions`]): after a gateway restart every device is offline;
//! after a restart of this actor alone, the devices still connected stay online. At most
//! [`MAX_DEVICES`] records are kept (the offline ones seen longest ago go first).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::metrics::{DeviceLabels, DeviceState, Metrics};
use crate::storage::backend::Backend;
use crate::storage::{SharedDb, StoreError, now_ms};

/// Most device records kept (in memory and in the file).
pub const MAX_DEVICES: usize = 100_000;

mod live;
pub use live::LiveSessions;

/// One device as the gateway has seen it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// The identity (certificate CN, username, or client id on a lab listener).
    pub identity: String,
    /// `online`, `silent` or `offline` (computed when read).
    #[serde(default)]
    pub state: String,
    /// Open sessions right now.
    #[serde(default)]
    pub sessions: u32,
    /// Client id of the latest session.
    pub client_id: String,
    /// `v3` or `v5` of the latest session.
    pub protocol: String,
    /// First time ever seen (unix ms).
    pub first_seen_ms: u64,
    /// Latest CONNECT accepted (unix ms).
    pub connected_at_ms: u64,
    /// Latest session end (unix ms; 0 if never).
    pub disconnected_at_ms: u64,
    /// Latest message or connect (unix ms).
    pub last_seen_ms: u64,
    /// Messages accepted, all time.
    pub messages: u64,
    /// Sessions opened, all time.
    pub connects: u64,
}

/// The device health actor.
pub struct DevicesActor;

/// When a device is silent and how often status is saved (`[devices]` in the config).
#[derive(Debug, Clone)]
pub struct DevicesPolicy {
    /// A connected device quiet this long is `silent`.
    pub silent_after: Duration,
    /// Changed device records are written this often.
    pub persist_every: Duration,
}

/// Start-up arguments.
pub struct DevicesArgs {
    /// The device file, opened once outside the actor (a restart must not reopen it); reopened
    /// after a failed write (redb fails everything after one until then).
    pub db: SharedDb,
    /// Gauges.
    pub metrics: Metrics,
    /// Connected but quiet this long: silent.
    pub silent_after: Duration,
    /// How often changed records are written.
    pub persist_every: Duration,
    /// Sessions open right now, kept by ingress.
    pub live: LiveSessions,
}

/// The actor's state.
pub struct DevicesState {
    args: DevicesArgs,
    /// Every device ever seen.
    devices: BTreeMap<String, DeviceStatus>,
    /// Changed since the last write.
    dirty: BTreeSet<String>,
    /// When changed records were last written.
    last_saved: std::time::Instant,
}

/// Messages to the device health actor.
pub enum DevicesMsg {
    /// A session was accepted.
    Connected { identity: String, client_id: String, protocol: &'static str },
    /// A session ended.
    Disconnected { identity: String },
    /// `count` messages were accepted from `identity` since its last report.
    Seen { identity: String, count: u64 },
    /// Every device (sorted by identity).
    List(RpcReplyPort<Vec<DeviceStatus>>),
    /// One device.
    Get(String, RpcReplyPort<Option<DeviceStatus>>),
    /// Periodic: silent detection, gauges, persistence.
    Tick,
}

impl Actor for DevicesActor {
    type Msg = DevicesMsg;
    type State = DevicesState;
    type Arguments = DevicesArgs;

    async fn pre_start(&self, myself: ActorRef<DevicesMsg>, args: DevicesArgs) -> Result<DevicesState, ActorProcessingErr> {
        let db = args.db.clone();
        let mut devices = tokio::task::block_in_place(|| {
            if db.get().is_none() {
                db.reopen()?; // closed by a failed reopening: try once more
            }
            let handle = db.get().ok_or_else(|| format!("{} is closed", db.path().display()))?;
            load(&*handle)
        })?;
        // Sessions come from ingress: none after a gateway restart; after a restart of this
        // actor alone, the ones still open.
        for d in devices.values_mut() {
            d.sessions = 0;
        }
        tracing::info!(devices = devices.len(), "Device health actor started.");
        myself.send_interval(Duration::from_secs(1), || DevicesMsg::Tick);
        let mut state = DevicesState { args, devices, dirty: BTreeSet::new(), last_saved: std::time::Instant::now() };
        state.reconcile();
        state.publish_gauges();
        Ok(state)
    }

    async fn post_stop(&self, _: ActorRef<DevicesMsg>, state: &mut DevicesState) -> Result<(), ActorProcessingErr> {
        state.persist();
        Ok(())
    }

    async fn handle(&self, _: ActorRef<DevicesMsg>, msg: DevicesMsg, state: &mut DevicesState) -> Result<(), ActorProcessingErr> {
        match msg {
            DevicesMsg::Connected { identity, client_id, protocol } => state.on_connected(identity, client_id, protocol),
            DevicesMsg::Disconnected { identity } => state.on_disconnected(&identity),
            DevicesMsg::Seen { identity, count } => state.on_seen(&identity, count),
            DevicesMsg::List(reply) => {
                let _ = reply.send(state.devices.values().map(|d| state.view(d)).collect());
            }
            DevicesMsg::Get(identity, reply) => {
                let _ = reply.send(state.devices.get(&identity).map(|d| state.view(d)));
            }
            DevicesMsg::Tick => state.on_tick(),
        }
        Ok(())
    }
}

fn load(db: &dyn Backend) -> Result<BTreeMap<String, DeviceStatus>, ActorProcessingErr> {
    let mut out = BTreeMap::new();
    db.devices(&mut |identity, json| {
        // A record that does not decode (a newer format) is skipped, not fatal.
        if let Ok(d) = serde_json::from_slice::<DeviceStatus>(json) {
            out.insert(identity.to_string(), d);
        }
    })?;
    Ok(out)
}

impl DevicesState {
    fn entry(&mut self, identity: &str) -> &mut DeviceStatus {
        self.dirty.insert(identity.to_string());
        let now = now_ms();
        self.devices.entry(identity.to_string()).or_insert_with(|| DeviceStatus {
            identity: identity.to_string(),
            first_seen_ms: now,
            ..Default::default()
        })
    }

    /// Session counts come from ingress's own table ([`LiveSessions`]), the source of truth:
    /// a report lost while this actor restarted cannot leave a device online (or offline) for
    /// good. Devices connected since before the last save are added.
    fn reconcile(&mut self) {
        for identity in self.args.live.count_into(&mut self.devices, now_ms()) {
            self.dirty.insert(identity);
        }
    }

    fn on_connected(&mut self, identity: String, client_id: String, protocol: &'static str) {
        let now = now_ms();
        let sessions = self.args.live.count(&identity);
        let d = self.entry(&identity);
        d.sessions = sessions;
        d.connects += 1;
        d.client_id = client_id;
        d.protocol = protocol.to_string();
        d.connected_at_ms = now;
        d.last_seen_ms = now;
    }

    fn on_disconnected(&mut self, identity: &str) {
        let sessions = self.args.live.count(identity);
        let d = self.entry(identity);
        d.sessions = sessions;
        d.disconnected_at_ms = now_ms();
    }

    fn on_seen(&mut self, identity: &str, count: u64) {
        let d = self.entry(identity);
        d.messages += count;
        d.last_seen_ms = now_ms();
    }

    fn on_tick(&mut self) {
        self.reconcile();
        self.evict();
        self.publish_gauges();
        if self.last_saved.elapsed() >= self.args.persist_every && !self.dirty.is_empty() {
            tokio::task::block_in_place(|| self.persist());
        }
    }

    /// Keep at most [`MAX_DEVICES`] records: the offline ones seen longest ago go first (a lab
    /// listener with made-up client ids must not grow the table without end).
    fn evict(&mut self) {
        let excess = self.devices.len().saturating_sub(MAX_DEVICES);
        if excess == 0 {
            return;
        }
        let mut offline: Vec<(u64, String)> =
            self.devices.values().filter(|d| d.sessions == 0).map(|d| (d.last_seen_ms, d.identity.clone())).collect();
        offline.sort();
        let gone: Vec<String> = offline.into_iter().take(excess).map(|(_, id)| id).collect();
        let remove = || -> Result<(), StoreError> {
            let Some(db) = self.args.db.get() else { return Ok(()) };
            db.write(&mut |t| gone.iter().try_for_each(|id| t.remove_device(id)))
        };
        if let Err(e) = tokio::task::block_in_place(remove) {
            tracing::warn!(error = %e, "Cannot remove evicted device records.");
        }
        for id in &gone {
            self.devices.remove(id);
            self.dirty.remove(id);
        }
        tracing::warn!(evicted = gone.len(), max = MAX_DEVICES, "Device table full; forgot the offline devices seen longest ago.");
    }

    fn state_of(&self, d: &DeviceStatus) -> DeviceState {
        self.state_at(d, now_ms())
    }

    /// The state of `d` at unix time `now` (ms).
    fn state_at(&self, d: &DeviceStatus, now: u64) -> DeviceState {
        if d.sessions == 0 {
            DeviceState::Offline
        } else if now.saturating_sub(d.last_seen_ms) > self.args.silent_after.as_millis() as u64 {
            DeviceState::Silent
        } else {
            DeviceState::Online
        }
    }

    fn view(&self, d: &DeviceStatus) -> DeviceStatus {
        DeviceStatus { state: self.state_of(d).to_string(), ..d.clone() }
    }

    /// Count every device by state: once a second (at each tick) and at start, never per
    /// connect or disconnect (that visited every device per CONNECT: accepting 10,000
    /// connections took quadratic time).
    fn publish_gauges(&self) {
        let now = now_ms();
        let mut counts: BTreeMap<DeviceState, i64> = DeviceState::ALL.iter().map(|s| (*s, 0)).collect();
        for d in self.devices.values() {
            *counts.entry(self.state_at(d, now)).or_default() += 1;
        }
        for (state, n) in counts {
            self.args.metrics.devices.get_or_create(&DeviceLabels { state }).set(n);
        }
    }

    /// Write the changed records; a failure is logged and retried at the next round.
    fn persist(&mut self) {
        self.last_saved = std::time::Instant::now();
        if self.args.db.get().is_none() && !self.reopen() {
            return;
        }
        let Some(db) = self.args.db.get() else { return };
        let result = db.write(&mut |t| {
            for id in &self.dirty {
                if let Some(d) = self.devices.get(id) {
                    t.put_device(id, &serde_json::to_vec(d).unwrap_or_default())?;
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => self.dirty.clear(),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot save device status; reopening the file and retrying later.");
                drop(db);
                self.reopen();
            }
        }
    }

    /// After a failed write redb fails everything until the file is opened again; whether it
    /// is open now.
    fn reopen(&self) -> bool {
        match tokio::task::block_in_place(|| self.args.db.reopen()) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot reopen the device status file yet.");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
