//! Persistent sessions: MQTT 3.1.1 `clean session = 0` and an MQTT 5 session expiry interval.
//!
//! A persistent session is an entry of the routing table that outlives its connection: its
//! subscriptions stay, and every QoS 1 or 2 message they match is queued in the store in the
//! commit that stores the message (see the module above), whether the client is connected or
//! not. The connection that resumes it (same client id, same identity, clean start 0) gets
//! `session present` and a writer that sends the queued deliveries in order, with DUP set on
//! those that may have been sent before; the client's PUBACK or PUBCOMP deletes each. The
//! session row (identity, protocol, expiry, subscriptions) is written before the CONNACK,
//! SUBACK or UNSUBACK that depends on it. An offline session past its expiry interval (or
//! `broker.session_expiry_max_secs`) is removed by [`Router::expire_sessions`], which the
//! gateway runs every few seconds. Sessions are loaded from the store at start; the expiry of
//! one whose client had gone counts from its disconnect (stamped in its row then), of one that
//! was connected when the gateway stopped from the start.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use edge_gateway_actors::record::Record;
use edge_gateway_actors::slot::ActorSlot;
use edge_gateway_actors::storage::{SessionChange, SessionOp, StorageMsg, StoredSession as StoredRow, now_ms};
use tokio::sync::{Notify, mpsc, watch};

use super::persist::{StoredSession, StoredSubscription};
use super::table::{Persistent, Subscriber, Table};
use super::{Delivery, Router};
use crate::trust::acl::Who;

/// What the router starts from: the store's retained messages and persistent sessions.
#[derive(Default)]
pub struct Stored {
    /// Retained messages.
    pub retained: Vec<Record>,
    /// Session rows.
    pub sessions: Vec<StoredRow>,
    /// Per session with queued deliveries: how many, and the number after the last one.
    pub heads: HashMap<String, (u64, u64)>,
}

/// The broker's bounds the router applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Live deliveries waiting for one connected subscriber.
    pub max_queued: usize,
    /// The longest an offline persistent session is kept (0: as asked).
    pub session_expiry_max_secs: u32,
    /// Most persistent sessions.
    pub max_sessions: usize,
}

/// What a CONNECT asks about its session.
#[derive(Debug, Clone, Copy)]
pub struct SessionRequest {
    /// Clean session (3.1.1) or clean start (5): discard a stored session.
    pub clean: bool,
    /// Seconds to keep the session after the connection ends: 0 ends it with the connection,
    /// `u32::MAX` never (3.1.1 with clean session 0).
    pub expiry_secs: u32,
}

/// The session a connection got, or `None` from [`Router::open`] when it would be a new
/// persistent session beyond `broker.max_sessions`.
pub struct Opened {
    /// A stored session was resumed (CONNACK session present).
    pub present: bool,
    /// What to commit before the CONNACK (a discarded session, a new or changed one).
    pub changes: Vec<SessionChange>,
    /// For a persistent session: what its connection's writer needs.
    pub replay: Option<Replay>,
}

/// A persistent session's side of its connection's writer.
pub struct Replay {
    /// Woken when deliveries were queued for it.
    pub wake: Arc<Notify>,
    /// Deliveries numbered below this may have been sent before (DUP on resend); raised by the
    /// writer as it sends.
    pub sent_below: Arc<AtomicU64>,
}

impl Router {
    /// Connection `conn` of `who` starts: resume, create or discard its persistent session.
    /// `queue` makes the connection's live queue; it is called only for a persistent session
    /// (resumed or new), whose entry holds the queue from the CONNACK on. A clean session gets
    /// its queue with its first SUBSCRIBE: most devices only publish, and a queue is an
    /// allocation of its first block of slots (docs/BENCHMARKS.md, "eleventh step").
    pub fn open(
        &self,
        who: &Who,
        (conn, mqtt5): (u64, bool),
        req: SessionRequest,
        queue: impl FnOnce() -> mpsc::Sender<Delivery>,
    ) -> Option<Opened> {
        let mut table = self.write_table();
        let stored = table.get(who.client_id).is_some_and(|e| e.persistent.is_some());
        let same_owner = table.get(who.client_id).is_some_and(|e| e.identity == who.identity);
        // Past its expiry but not swept yet (the sweep runs every few seconds): not resumed.
        let expired = table.get(who.client_id).and_then(|e| e.persistent.as_ref()).is_some_and(Persistent::expired);
        let resume = stored && same_owner && !req.clean && !expired;
        let expiry = self.capped(req.expiry_secs);
        if !resume && expiry > 0 && !stored && table.persistent_sessions() >= self.max_sessions {
            return None;
        }
        let old = table.remove(who.client_id);
        let mut changes = Vec::new();
        if !resume && (stored || expiry > 0) {
            // Also clears rows the table does not know (a session row that could not be read).
            changes.push(SessionChange::Remove);
        }
        let entry = match old {
            Some(mut e) if resume => {
                if let Some(p) = e.persistent.as_mut() {
                    // Also when its row says it is offline: it is not any more.
                    if expiry > 0 && (p.stamped || p.expiry_secs != expiry || e.copy_per_subscription != mqtt5) {
                        changes.push(SessionChange::Put(row_of(&e.identity, mqtt5, expiry, &e.subs)));
                        p.stamped = false;
                    }
                    // 0: the session ends with this connection (removed at its end).
                    p.expiry_secs = expiry;
                    p.offline_since = None;
                    p.wake = Some(Arc::new(Notify::new()));
                }
                e.conn = conn;
                e.queue = Some(queue());
                e.copy_per_subscription = mqtt5;
                Some(e)
            }
            _ if expiry > 0 => {
                changes.push(SessionChange::Put(row_of(who.identity, mqtt5, expiry, &[])));
                Some(Subscriber {
                    conn,
                    identity: who.identity.to_string(),
                    queue: Some(queue()),
                    subs: Vec::new(),
                    copy_per_subscription: mqtt5,
                    persistent: Some(Persistent {
                        expiry_secs: expiry,
                        offline_since: None,
                        stamped: false,
                        wake: Some(Arc::new(Notify::new())),
                        sent_below: Arc::default(),
                    }),
                })
            }
            // A clean session: its subscriptions come with its SUBSCRIBEs.
            _ => None,
        };
        let replay = entry
            .as_ref()
            .and_then(|e| e.persistent.as_ref())
            .map(|p| Replay { wake: p.wake.clone().unwrap_or_default(), sent_below: p.sent_below.clone() });
        if let Some(e) = entry {
            table.insert(who.client_id, e);
        }
        self.counted(&table);
        Some(Opened { present: resume, changes, replay })
    }

    /// An MQTT 5 DISCONNECT of connection `conn` set a new session expiry interval: the session
    /// row to store (`None`: nothing to store; 0 ends the session with the connection).
    pub fn set_expiry(&self, client_id: &str, conn: u64, expiry_secs: u32) -> Option<Vec<u8>> {
        let expiry = self.capped(expiry_secs);
        let mut table = self.write_table();
        table.update(client_id, |slot| {
            let e = slot.as_mut().filter(|e| e.conn == conn)?;
            let p = e.persistent.as_mut()?;
            p.expiry_secs = expiry;
            (expiry > 0).then(|| row_of(&e.identity, e.copy_per_subscription, expiry, &e.subs))
        })
    }

    /// Connection `conn` of `client_id` ended: a clean session's subscriptions end with it, a
    /// persistent one waits for its client (or its expiry). A session that ends with its
    /// connection is removed: `remove` is called with the lock held, so the removal reaches the
    /// storage actor before the change of any later connection with this client id.
    pub fn disconnect(&self, client_id: &str, conn: u64, store: impl FnOnce(SessionChange)) {
        let mut table = self.write_table();
        let held = table.update(client_id, |slot| {
            let Some(entry) = slot.as_mut().filter(|e| e.conn == conn) else { return false };
            match &mut entry.persistent {
                Some(p) if p.expiry_secs > 0 => {
                    p.offline_since = Some(Instant::now());
                    p.wake = None;
                    entry.queue = None;
                    if p.expiry_secs != u32::MAX {
                        // Its row says since when, so that a restart does not start its expiry
                        // again.
                        let (identity, mqtt5, subs) = (&entry.identity, entry.copy_per_subscription, &entry.subs);
                        store(SessionChange::Put(stored(identity, mqtt5, p.expiry_secs, subs, Some(now_ms()))));
                        p.stamped = true;
                    }
                }
                Some(_) => {
                    *slot = None;
                    store(SessionChange::Remove);
                }
                None => *slot = None,
            }
            true
        });
        if held {
            self.counted(&table);
        }
    }

    /// Remove the offline sessions whose expiry interval has passed, calling `remove` for each
    /// with the lock held (as [`Router::disconnect`]); their client ids.
    pub fn expire_sessions(&self, mut remove: impl FnMut(&str)) -> Vec<String> {
        let mut table = self.write_table();
        let expired: Vec<String> =
            table.entries().filter(|(_, e)| e.persistent.as_ref().is_some_and(Persistent::expired)).map(|(id, _)| id.clone()).collect();
        for id in &expired {
            table.remove(id);
            remove(id);
        }
        if !expired.is_empty() {
            self.counted(&table);
        }
        expired
    }

    /// The session row to store after a change of `client_id`'s subscriptions, when it holds a
    /// persistent session through connection `conn`.
    pub fn session_row(&self, client_id: &str, conn: u64) -> Option<Vec<u8>> {
        let table = self.read_table();
        let e = table.get(client_id).filter(|e| e.conn == conn)?;
        let p = e.persistent.as_ref().filter(|p| p.expiry_secs > 0)?;
        Some(row_of(&e.identity, e.copy_per_subscription, p.expiry_secs, &e.subs))
    }

    /// For the device view: whether `client_id` has a persistent session, its expiry interval
    /// and whether it is connected.
    pub fn session_of(&self, client_id: &str) -> Option<(u32, bool)> {
        let table = self.read_table();
        let e = table.get(client_id)?;
        e.persistent.as_ref().map(|p| (p.expiry_secs, p.offline_since.is_none()))
    }

    /// How long the will of connection `conn` (which just ended) waits: its delay, at most the
    /// rest of its persistent session (a clean session has ended: at once).
    pub fn will_delay(&self, client_id: &str, conn: u64, delay_secs: u32) -> u32 {
        let table = self.read_table();
        let expiry = table.get(client_id).filter(|e| e.conn == conn).and_then(|e| e.persistent.as_ref()).map_or(0, |p| p.expiry_secs);
        delay_secs.min(expiry)
    }

    /// Whether a connection other than `conn` holds `client_id`'s session now (it came back
    /// within the will delay).
    pub fn taken_since(&self, client_id: &str, conn: u64) -> bool {
        self.read_table().get(client_id).is_some_and(|e| e.conn != conn)
    }

    /// The session expiry interval a client asking for `expiry_secs` gets.
    pub fn granted_expiry(&self, expiry_secs: u32) -> u32 {
        self.capped(expiry_secs)
    }

    fn capped(&self, expiry_secs: u32) -> u32 {
        match self.expiry_cap {
            Some(cap) if expiry_secs > 0 => expiry_secs.min(cap),
            _ => expiry_secs,
        }
    }
}

/// Every few seconds until `stop`: remove the offline sessions past their expiry, from the
/// routing table and (with their queued deliveries) from the store.
pub async fn expire_sessions_every(router: Arc<Router>, storage: ActorSlot<StorageMsg>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        let expired = router.expire_sessions(|client_id| {
            if let Some(storage) = storage.get() {
                let op = SessionOp { client_id: client_id.to_string(), change: SessionChange::Remove, reply: None };
                let _ = storage.send_message(StorageMsg::Session(op));
            }
        });
        for client_id in expired {
            tracing::info!(%client_id, "Persistent session expired; its subscriptions and queued messages are removed.");
        }
    }
}

fn row_of(identity: &str, mqtt5: bool, expiry_secs: u32, subs: &[super::table::Subscription]) -> Vec<u8> {
    stored(identity, mqtt5, expiry_secs, subs, None)
}

fn stored(identity: &str, mqtt5: bool, expiry_secs: u32, subs: &[super::table::Subscription], offline_since_ms: Option<u64>) -> Vec<u8> {
    let subscriptions = subs.iter().map(StoredSubscription::from).collect();
    StoredSession { identity: identity.to_string(), mqtt5, expiry_secs, subscriptions, offline_since_ms }.encode()
}

/// The routing table at start: every stored session, offline since its row says (or since now);
/// queued deliveries
/// numbered below their session's last one count as possibly sent (DUP).
pub(super) fn table_of(rows: Vec<StoredRow>, heads: HashMap<String, (u64, u64)>) -> Table {
    let mut table = Table::default();
    for (client_id, row) in rows {
        let (session, subs) = match StoredSession::decode(&row) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%client_id, error = %e, "A stored session cannot be read; it is not resumed (its client starts a new one).");
                continue;
            }
        };
        let sent_below = heads.get(&client_id).map_or(0, |h| h.1);
        let entry = Subscriber {
            conn: 0,
            identity: session.identity,
            queue: None,
            subs,
            copy_per_subscription: session.mqtt5,
            persistent: Some(Persistent {
                expiry_secs: session.expiry_secs,
                offline_since: Some(session.offline_since_ms.map_or_else(Instant::now, instant_ago)),
                stamped: session.offline_since_ms.is_some(),
                wake: None,
                sent_below: Arc::new(AtomicU64::new(sent_below)),
            }),
        };
        table.insert(&client_id, entry);
    }
    if table.len() > 0 {
        tracing::info!(sessions = table.len(), "Persistent sessions loaded from the store.");
    }
    table
}

/// The instant of a wall-clock time in the past (now if the clock went back; the monotonic
/// clock's start if it is older than that).
fn instant_ago(wall_ms: u64) -> Instant {
    let ago = Duration::from_millis(now_ms().saturating_sub(wall_ms));
    let now = Instant::now();
    now.checked_sub(ago).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use edge_gateway_actors::metrics::Metrics;

    use super::*;
    use crate::config::{AuthConfig, IdentityField, PlainAuth};
    use crate::trust::auth::Authority;

    fn router() -> Arc<Router> {
        let metrics = Metrics::new();
        let auth = AuthConfig {
            plain: PlainAuth::Anonymous,
            password_file: None,
            acl_file: None,
            downlink_identity: "api".into(),
            identity: IdentityField::CommonName,
            client_id_must_match: false,
        };
        let authority = Authority::load(&auth, metrics.clone()).unwrap();
        let limits = Limits { max_queued: 8, session_expiry_max_secs: 0, max_sessions: 10 };
        Router::new(Stored::default(), authority, metrics, limits, None)
    }

    #[test]
    fn only_a_persistent_session_gets_its_queue_at_connect() {
        let router = router();
        let who = Who { identity: "dev", client_id: "c1" };
        let made = Cell::new(0);
        let queue = || {
            made.set(made.get() + 1);
            mpsc::channel(1).0
        };
        let open = |clean, expiry_secs| {
            let conn = router.connection_id();
            router.open(&who, (conn, false), SessionRequest { clean, expiry_secs }, queue).unwrap()
        };
        // 3.1.1 clean session 1, MQTT 5 clean start with no expiry: the first SUBSCRIBE makes it.
        let o = open(true, 0);
        assert!(o.replay.is_none() && !o.present && o.changes.is_empty());
        assert_eq!(made.get(), 0);
        // A new persistent session holds its queue from the CONNACK on.
        let o = open(false, u32::MAX);
        assert!(o.replay.is_some() && !o.present && !o.changes.is_empty());
        assert_eq!(made.get(), 1);
        // Resumed: a new connection, a new queue.
        let o = open(false, u32::MAX);
        assert!(o.replay.is_some() && o.present);
        assert_eq!(made.get(), 2);
        // MQTT 5 clean start with an expiry: a fresh persistent session, with its queue.
        let o = open(true, 60);
        assert!(o.replay.is_some() && !o.present);
        assert_eq!(made.get(), 3);
    }
}
